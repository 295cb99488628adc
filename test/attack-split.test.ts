import { describe, it, expect, beforeAll } from 'vitest';
import { loadModel } from '../runtime/model/index.ts';
import { Transcript } from '../runtime/scx/transcript.ts';
import { attackerModel } from '../simulations/attacks/forward.ts';
import { buildSplitTranscript } from '../simulations/attacks/synth.ts';
import { loadAttackPrompts } from '../simulations/attacks/prompts.ts';
import { formatReportTable, runAttacks, type AttackReport, type SummaryRow } from '../simulations/attacks/index.ts';

/**
 * Mode split on the embedded model: the cloud sees the plaintext residual entering layer h. We lay
 * out that transcript with the attacker's own forward, save and reload it (the file format the
 * harness reads), and check vocabulary matching recovers the prompts.
 */
const lm = loadModel();
const m = attackerModel(lm);
// The first three attack prompts, cut to 10 words to keep CI fast.
const prompts = loadAttackPrompts().slice(0, 3).map((p) => lm.tokenizer.encode(p.split(' ').slice(0, 10).join(' ')));
let report: AttackReport;

function find(r: AttackReport, attack: string, observable: string, metric: string, variant?: string): SummaryRow {
  const row = r.summary.find((s) => s.attack === attack && s.observable === observable && s.metric === metric && (!variant || s.variant.startsWith(variant)));
  if (!row) throw new Error(`no ${attack} ${variant ?? ''} ${observable} ${metric} in the report:\n${formatReportTable(r)}`);
  return row;
}

beforeAll(() => {
  const built = buildSplitTranscript(m, lm.name, prompts.map((promptIds, i) => ({ session: `s${i}`, promptIds })), { h: 1, t: 1, generate: 4 });
  const reloaded = Transcript.decode(built.transcript.encode());
  report = runAttacks(reloaded, lm, built.truth, { attacks: ['A0', 'A3', 'A7'], singleTokenTable: false });
});

describe('attacks on mode split (h = 1)', () => {
  it('A3 vocabulary matching recovers at least 90% of prompt tokens, and far more than the prior', () => {
    const a3 = find(report, 'A3', 'S h in', 'positional-accuracy');
    const prior = find(report, 'A0', '-', 'positional-accuracy');
    expect(a3.total).toBe(prompts.reduce((a, p) => a + p.length - 1, 0));
    expect(a3.value!).toBeGreaterThanOrEqual(0.9);
    expect(a3.value! - prior.value!).toBeGreaterThan(0.5);
    expect(a3.cost.candidateForwards).toBeGreaterThan(0);
    expect(a3.cost.seconds).toBeGreaterThan(0);
  });

  it('A7 recovers the generated tokens from the decode vectors and reports the logit lens', () => {
    const dec = find(report, 'A7', 'D h in', 'positional-accuracy');
    expect(dec.total).toBe(3 * 3); // 4 generated tokens, 3 decode steps per session
    expect(dec.value!).toBeGreaterThanOrEqual(0.9);
    const lens = find(report, 'A7', 'D h out', 'next-token-agreement');
    expect(lens.total).toBe(3 * 3);
    expect(lens.value).not.toBeNull();
  });

  it('the attacker output needs no truth: an unscored run still recovers the text', () => {
    const built = buildSplitTranscript(m, lm.name, [{ session: 'solo', promptIds: prompts[1] }], { h: 1, t: 1 });
    const r = runAttacks(built.transcript, lm, undefined, { attacks: ['A3'], singleTokenTable: false });
    expect(r.scored).toBe(false);
    expect(r.rows.every((x) => x.value === null)).toBe(true);
    expect(r.recoveredText.solo).toBe(lm.tokenizer.decode(prompts[1]));
    expect(formatReportTable(r)).toContain('unscored');
  });
});
