import { appendToken, PrefixCache, stepBatch, type AttackerModel, type Probe } from './forward.ts';
import { meanAbs, nearestRows, sortSegments, type Observation } from './observe.ts';
import { mergeProposals } from './hints.ts';

/**
 * Vocabulary matching (Thomas et al., ICML 2025), the engine behind A2/A3/A7: recover a token
 * sequence left to right. At position i, candidate next tokens run one step forward on the prefix
 * recovered so far, to the probe the cloud observed; a candidate matches when its probe vector is
 * within float error (or, with noise, within the noise's expected L1) of an observed row. Candidates
 * come first from the model's own next-token ranking on the recovered prefix, then from the rest of
 * the vocabulary in chunks, so the search is exhaustive when it has to be.
 */

export interface Cost {
  seconds: number;
  /** One-token candidate forwards (each runs up to the probe's layer). */
  candidateForwards: number;
  /** Sum over candidate forwards of the layers they ran (a device-independent work measure). */
  layerForwards: number;
  /** Full-model forwards that grow the recovered prefix. */
  prefixForwards: number;
}

export const zeroCost = (): Cost => ({ seconds: 0, candidateForwards: 0, layerForwards: 0, prefixForwards: 0 });

export function addCost(a: Cost, b: Cost): Cost {
  a.seconds += b.seconds; a.candidateForwards += b.candidateForwards; a.layerForwards += b.layerForwards; a.prefixForwards += b.prefixForwards;
  return a;
}

export interface MatchOptions {
  /** Candidates first taken from the model's next-token ranking (default 32). */
  topK?: number;
  /** Largest chunk of the full-vocabulary fallback (default 512; chunks double from topK up to it). */
  chunk?: number;
  /** A candidate is accepted early when its mean |diff| <= relTol * mean |row| (+ noise allowance); default 2e-3. */
  relTol?: number;
  /** Candidate-forward budget for one run; past it, positions use the top-k candidates only. */
  maxCandidateForwards?: number;
  /** Never accept early: always the argmin over the whole vocabulary. */
  alwaysFullVocab?: boolean;
  /** With noise: posterior margin (nats) by which an early-accepted candidate must beat all others evaluated (default 4). */
  gapNats?: number;
}

export interface PositionMatch {
  token: number;
  /** Mean absolute distance of the chosen candidate to its row. */
  dist: number;
  /** Observed row it matched. */
  row: number;
  /** True when the match passed the acceptance threshold (an exact match up to float error or noise). */
  accepted: boolean;
  /** Rank of the token in the model's next-token ranking on the recovered prefix (0 = top-1). */
  rank: number;
  /** Candidates evaluated at this position (in search order: top-k, proposals, the rest). */
  evaluated: number;
}

/** What one position is matched against: rows already in matching form (segments sorted). */
export interface MatchTarget {
  probe: Probe;
  rows: Float32Array;
  D: number;
  segment: number;
  /** Rows a candidate may match (min over them). */
  rowIdx: number[];
  /** Accept threshold per observed row (index by row number). */
  threshold: Float64Array;
  /** Laplace scale of the noise on the rows (0 = none). */
  noiseScale: number;
  /** Tokens to try right after the model's top-k (cheap proposals, see hints.ts). */
  proposals?: Int32Array | null;
}

export function probeLayers(m: AttackerModel, p: Probe): number {
  return Math.min(m.L, p.layer + (p.kind === 'resid' ? 0 : 1));
}

/** The model's ranking of next tokens on the prefix (BOS first when the prefix is empty). */
export function candidateOrder(m: AttackerModel, cache: PrefixCache): Int32Array {
  const order = new Int32Array(m.V);
  if (!cache.logits) {
    order[0] = m.bos;
    let k = 1;
    for (let t = 0; t < m.V; t++) if (t !== m.bos) order[k++] = t;
    return order;
  }
  const lg = cache.logits;
  const idx = Array.from({ length: m.V }, (_, i) => i).sort((a, b) => lg[b] - lg[a]);
  order.set(idx);
  return order;
}

/** Thresholds for every observed row: float tolerance relative to the row's size plus the noise's expected mean |n|. */
export function rowThresholds(rows: Float32Array, R: number, D: number, noiseScale: number, relTol: number): Float64Array {
  const thr = new Float64Array(R);
  // Laplace(0, b): E|n| = b, sd(|n|) = b; the mean over D dims has sd b / sqrt(D). Three sd of slack.
  const noise = noiseScale > 0 ? noiseScale * (1 + 3 / Math.sqrt(D)) : 0;
  for (let r = 0; r < R; r++) thr[r] = noise + relTol * meanAbs(rows, r * D, D);
  return thr;
}

/** log-softmax of logits (float64). */
function logSoftmax(logits: Float32Array): Float64Array {
  let mx = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > mx) mx = logits[i];
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += Math.exp(logits[i] - mx);
  const lz = mx + Math.log(z);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lz;
  return out;
}

/**
 * Recover the token at position cache.len.
 *
 * Without noise a candidate is accepted when it matches a row to float error. With Laplace noise of
 * scale b the mean |diff| of the right candidate is about b, and so may be a wrong token's (the same
 * token at another position of a permuted set is close at early layers). Candidates are then ranked
 * by their posterior, D * dist / b - log p(token | prefix) (Laplace likelihood and the model's own
 * prior), and one is accepted early only when its distance is within the noise band and it beats
 * every other evaluated candidate by `gapNats`; otherwise the search runs over the whole vocabulary
 * and takes the best posterior.
 */
export function matchPosition(m: AttackerModel, cache: PrefixCache, target: MatchTarget, opts: MatchOptions, cost: Cost,
  budgetLeft: () => boolean): PositionMatch {
  const topK = Math.max(1, opts.topK ?? 32);
  const chunk = Math.max(1, opts.chunk ?? 512);
  const gapNats = opts.gapNats ?? 4;
  const modelOrder = candidateOrder(m, cache);
  const modelRank = new Int32Array(m.V);
  for (let i = 0; i < m.V; i++) modelRank[modelOrder[i]] = i;
  // Search order: the model's top-k, then the proposals, then the rest in the model's order.
  let order = modelOrder;
  let proposed = 0;
  if (target.proposals && target.proposals.length > 0) {
    const head = new Set(modelOrder.subarray(0, topK));
    const props = Array.from(target.proposals).filter((t) => !head.has(t));
    const inProps = new Set(props);
    order = Int32Array.from([...modelOrder.subarray(0, topK), ...props, ...Array.from(modelOrder.subarray(topK)).filter((t) => !inProps.has(t))]);
    proposed = props.length;
  }
  const layers = probeLayers(m, target.probe);
  const b = target.noiseScale;
  const logp = b > 0 && cache.logits ? logSoftmax(cache.logits) : null;
  let best: PositionMatch = { token: order[0], dist: Infinity, row: -1, accepted: false, rank: 0, evaluated: 0 };
  let bestScore = Infinity, runnerUp = Infinity;
  let start = 0;
  while (start < m.V) {
    // Chunks grow geometrically from top-k to the chunk cap: true tokens mostly sit at modest ranks.
    // With noise a wrong token (e.g. the next position's token, whose state is nearly the same) can sit
    // inside the noise band, so the first decision waits for the proposals too.
    const size = start === 0 ? (b > 0 ? topK + proposed : topK)
      : start === topK && proposed > 0 ? proposed : Math.min(chunk, Math.max(topK, start));
    const cands = order.subarray(start, Math.min(m.V, start + size));
    const t0 = performance.now();
    const [feat] = stepBatch(m, cache, cands, [target.probe]);
    sortSegments(feat, cands.length, target.D, target.segment);
    const { dist, row } = nearestRows(feat, cands.length, target.rows, target.rowIdx, target.D);
    cost.seconds += (performance.now() - t0) / 1000;
    cost.candidateForwards += cands.length;
    cost.layerForwards += cands.length * layers;
    for (let i = 0; i < cands.length; i++) {
      const sc = b > 0 ? (target.D * dist[i]) / b - (logp ? logp[cands[i]] : 0) : dist[i];
      if (sc < bestScore) {
        runnerUp = bestScore; bestScore = sc;
        best = { token: cands[i], dist: dist[i], row: row[i], accepted: false, rank: modelRank[cands[i]], evaluated: 0 };
      } else if (sc < runnerUp) runnerUp = sc;
    }
    start += cands.length;
    best.evaluated = start;
    const inBand = best.row >= 0 && best.dist <= target.threshold[best.row];
    if (!opts.alwaysFullVocab && inBand && (b === 0 || runnerUp - bestScore >= gapNats)) { best.accepted = true; break; }
    if (!budgetLeft()) break;
  }
  return best;
}

export interface MatchResult {
  tokens: number[];
  positions: PositionMatch[];
  cost: Cost;
  /** The candidate budget ran out; later positions searched the top-k only. */
  truncated: boolean;
  /** The recovered prefix with its KV cache (A7 continues from it). */
  cache: PrefixCache;
  /** Rows that no position matched (for row-permuted observations: the attacker's decoy guess). */
  unmatchedRows: number[];
}

/**
 * A3 over one observation: recover numReal tokens (true order: one per row; permuted rows: the
 * min over all rows at every position).
 */
export function vocabularyMatch(m: AttackerModel, obs: Observation, opts: MatchOptions = {}, rowHints: Int32Array[] | null = null): MatchResult {
  const rows = sortSegments(obs.rows.slice(), obs.R, obs.D, obs.segment);
  const threshold = rowThresholds(rows, obs.R, obs.D, obs.noiseScale, opts.relTol ?? 2e-3);
  const N = obs.rowsPermuted ? obs.numReal : obs.R;
  const cache = new PrefixCache(m, N + 8);
  const cost = zeroCost();
  const max = opts.maxCandidateForwards ?? Infinity;
  const budgetLeft = () => cost.candidateForwards < max;
  const positions: PositionMatch[] = [];
  const all = Array.from({ length: obs.R }, (_, i) => i);
  // A row that an accepted match explained is not offered to later positions.
  const taken = new Set<number>();
  let truncated = false;
  for (let i = 0; i < N; i++) {
    const rowIdx = obs.rowsPermuted ? all.filter((r) => !taken.has(r)) : [i];
    // Proposals: the row's own nearest tokens (true order), or a few of every open row's (permuted).
    const proposals = !rowHints ? null : obs.rowsPermuted ? mergeProposals(rowIdx.map((r) => rowHints[r].subarray(0, 3))) : rowHints[i];
    const target: MatchTarget = { probe: obs.probe, rows, D: obs.D, segment: obs.segment, rowIdx, threshold, noiseScale: obs.noiseScale, proposals };
    const pm = matchPosition(m, cache, target, opts, cost, budgetLeft);
    if (!pm.accepted && pm.evaluated < m.V && !opts.alwaysFullVocab) truncated = true;
    if (pm.accepted && obs.rowsPermuted) taken.add(pm.row);
    positions.push(pm);
    const t0 = performance.now();
    appendToken(m, cache, pm.token);
    cost.seconds += (performance.now() - t0) / 1000;
    cost.prefixForwards++;
  }
  const used = new Set(positions.map((p) => p.row));
  return { tokens: positions.map((p) => p.token), positions, cost, truncated, cache,
    unmatchedRows: obs.rowsPermuted ? all.filter((r) => !used.has(r)) : [] };
}
