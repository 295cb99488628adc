import { describe, it, expect, beforeAll } from 'vitest';
import { loadModel } from '../runtime/model/index.ts';
import { attackerModel } from '../simulations/attacks/forward.ts';
import { buildScxLikeTranscript } from '../simulations/attacks/synth.ts';
import { loadAttackPrompts } from '../simulations/attacks/prompts.ts';
import { observationsOf, type Observation } from '../simulations/attacks/observe.ts';
import { vocabularyMatch } from '../simulations/attacks/match.ts';
import { estimateSharedOffset } from '../simulations/attacks/a6.ts';
import { positionalAccuracy } from '../simulations/attacks/score.ts';
import { formatReportTable, runAttacks, type AttackReport, type SummaryRow } from '../simulations/attacks/index.ts';

/**
 * An SCX-like prefill built by the test itself (synth.ts): P1 rows normed, decoyed, noised and
 * row-permuted; P2 q/k/v in true order with per-kv-group head-dim permutations; P3 residuals
 * row-permuted. Checks that the attacks undo exactly what each permutation hides, and (negative
 * controls) that they fail when they ignore it.
 */
const lm = loadModel();
const m = attackerModel(lm);
const prompts = loadAttackPrompts().slice(3, 5).map((p) => lm.tokenizer.encode(p.split(' ').slice(0, 6).join(' ')));
const sessions = prompts.map((promptIds, i) => ({ session: `s${i}`, promptIds }));
const built = buildScxLikeTranscript(m, lm.name, sessions, { h: 1, t: 1, noise: 'shared', noiseScale: 0.5, decoys: 3, layers: [1] });
let report: AttackReport;

function find(attack: string, observable: string, metric: string, variant = ''): SummaryRow {
  const row = report.summary.find((s) => s.attack === attack && s.observable === observable && s.metric === metric && s.variant.startsWith(variant));
  if (!row) throw new Error(`no ${attack} ${variant} ${observable} ${metric} in the report:\n${formatReportTable(report)}`);
  return row;
}

function obs(session: string, label: string): Observation {
  return observationsOf(built.transcript, m, session).find((o) => o.label === label)!;
}

beforeAll(() => {
  report = runAttacks(built.transcript, lm, built.truth, { attacks: ['A1', 'A2', 'A3', 'A6'] });
});

describe('attacks on an SCX-like prefill (rows and head dims permuted, shared noise, decoys)', () => {
  it('A6 finds the shared noise offset, then A3 recovers the prompt from P1 and rejects every decoy', () => {
    expect(find('A6', 'P1 x', 'offset-recovered').value).toBe(1);
    expect(find('A6', 'P1 x', 'positional-accuracy', 'A3').value!).toBeGreaterThanOrEqual(0.9);
    expect(find('A6', 'P1 x', 'decoy-precision', 'A3').value).toBe(1);
    expect(find('A6', 'P1 x', 'decoy-recall', 'A3').value).toBe(1);
  });

  it('A2: sorting each head removes the head-dim permutation of K and V', () => {
    expect(find('A2', 'P2 k', 'positional-accuracy', 'sorted, sequential').value!).toBeGreaterThanOrEqual(0.9);
    expect(find('A2', 'P2 v', 'positional-accuracy', 'sorted, sequential').value!).toBeGreaterThanOrEqual(0.9);
    // With the keys shared after prefill, the contextless table does at least as well as sorted.
    expect(find('A2', 'P2 k', 'positional-accuracy', 'keyshare').value!).toBeGreaterThanOrEqual(find('A2', 'P2 k', 'positional-accuracy', 'sorted, contextless').value!);
  });

  it('A3: min over rows undoes the P3 row permutation', () => {
    expect(find('A3', 'P3 h in', 'positional-accuracy').value!).toBeGreaterThanOrEqual(0.9);
  });

  it('A1: nearest neighbours give a bag of tokens, better with the single-token table', () => {
    const single = find('A1', 'P1 x', 'bag-recall', 'single-token denoised').value!;
    const embed = find('A1', 'P1 x', 'bag-recall', 'embed denoised').value!;
    expect(single).toBeGreaterThanOrEqual(0.5);
    expect(single).toBeGreaterThanOrEqual(embed);
  });

  it('negative controls: ignoring the head-dim or row permutation breaks the match', () => {
    const budget = { maxCandidateForwards: 400 };
    const k = obs('s0', 'P2 k');
    const unsorted = vocabularyMatch(m, { ...k, segment: 0 }, budget);
    expect(positionalAccuracy(unsorted.tokens, prompts[0]).correct / (prompts[0].length - 1)).toBeLessThan(0.3);
    const p3 = obs('s0', 'P3 h in');
    const asIfOrdered = vocabularyMatch(m, { ...p3, rowsPermuted: false }, budget);
    expect(positionalAccuracy(asIfOrdered.tokens, prompts[0]).correct / (prompts[0].length - 1)).toBeLessThan(0.3);
  });

  it('A6 reports no shared offset when every row has its own noise', () => {
    const rowsNoise = buildScxLikeTranscript(m, lm.name, sessions.slice(0, 1), { h: 1, t: 1, noise: 'rows', noiseScale: 0.5, decoys: 3, layers: [1] });
    const p1 = observationsOf(rowsNoise.transcript, m, 's0').find((o) => o.label === 'P1 x')!;
    expect(estimateSharedOffset(m, p1).found).toBe(false);
    expect(estimateSharedOffset(m, obs('s0', 'P1 x')).found).toBe(true);
  });
});
