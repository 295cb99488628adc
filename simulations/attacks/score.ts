import { forwardSequence, type AttackerModel } from './forward.ts';
import { sortSegments, type Observation } from './observe.ts';

/**
 * The scorer: the only code that sees the true prompts and generated tokens. Attacks never import
 * from here except types.
 */
export interface TruthSession {
  session: string;
  /** Prompt token ids including BOS, as the tokenizer gives them. */
  promptIds: number[];
  /** Generated ids in order: generatedIds[0] is sampled from the prefill, generatedIds[s + 1] from decode step s. */
  generatedIds: number[];
}

export interface Truth { sessions: TruthSession[] }

export interface Score { correct: number; total: number }

/** Positions where recovered equals truth; position 0 (BOS by the tokenizer's convention) is not counted by default. */
export function positionalAccuracy(recovered: ArrayLike<number>, truth: ArrayLike<number>, skipFirst = true): Score {
  let correct = 0, total = 0;
  for (let i = skipFirst ? 1 : 0; i < truth.length; i++) {
    total++;
    if (i < recovered.length && recovered[i] === truth[i]) correct++;
  }
  return { correct, total };
}

/** Multiset recall: how many of the truth tokens appear among the predicted ones (each used once). */
export function bagRecall(predicted: ArrayLike<number>, truth: ArrayLike<number>): Score {
  const counts = new Map<number, number>();
  for (let i = 0; i < predicted.length; i++) counts.set(predicted[i], (counts.get(predicted[i]) ?? 0) + 1);
  let correct = 0;
  for (let i = 0; i < truth.length; i++) {
    const c = counts.get(truth[i]) ?? 0;
    if (c > 0) { correct++; counts.set(truth[i], c - 1); }
  }
  return { correct, total: truth.length };
}

/** Prompt tokens without the leading BOS (what bag metrics count). */
export function promptBody(ids: number[], bos: number): number[] {
  return ids.length > 0 && ids[0] === bos ? ids.slice(1) : ids.slice();
}

/**
 * Which observed rows are real prompt rows, by the scorer's own computation: the true probe values of
 * the prompt, then a greedy one-to-one assignment of observed rows to them by L1 distance. The
 * rows left over are the decoys. (With noise, real rows sit about the noise scale away from their
 * true values; decoys sit as far as another token's state.)
 */
export function realRowsByTruth(m: AttackerModel, obs: Observation, promptIds: number[]): Set<number> {
  const { captures: [truthRows] } = forwardSequence(m, promptIds, [obs.probe]);
  const N = promptIds.length, D = obs.D;
  sortSegments(truthRows, N, D, obs.segment);
  const rows = sortSegments(obs.rows.slice(), obs.R, D, obs.segment);
  const pairs: { r: number; j: number; dist: number }[] = [];
  for (let r = 0; r < obs.R; r++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < D; k++) s += Math.abs(rows[r * D + k] - truthRows[j * D + k]);
      pairs.push({ r, j, dist: s / D });
    }
  }
  pairs.sort((a, b) => a.dist - b.dist);
  const usedR = new Set<number>(), usedJ = new Set<number>();
  for (const p of pairs) {
    if (usedR.has(p.r) || usedJ.has(p.j)) continue;
    usedR.add(p.r); usedJ.add(p.j);
    if (usedJ.size === N) break;
  }
  return usedR;
}

export interface DecoyScore { flagged: number; decoys: number; truePositives: number; precision: number | null; recall: number | null }

export function decoyScore(flagged: number[], realRows: Set<number>, R: number): DecoyScore {
  const decoys = R - realRows.size;
  const tp = flagged.filter((r) => !realRows.has(r)).length;
  return {
    flagged: flagged.length, decoys, truePositives: tp,
    precision: flagged.length > 0 ? tp / flagged.length : null,
    recall: decoys > 0 ? tp / decoys : null,
  };
}
