import type { LoadedModel } from '../../runtime/model/index.ts';
import type { ModelConfig } from '../../runtime/model/config.ts';
import type { NoiseKind } from '../../runtime/scx/coordinator.ts';
import { InProcessPipeline } from '../../runtime/engine/pipeline.ts';
import { generateTokens } from '../../runtime/engine/generate.ts';
import { attackerModel, forwardSequence } from './forward.ts';
import { recordSessions } from './real.ts';
import { ALL_ATTACKS, runAttacks, type AttackId, type AttackOptions, type AttackReport, type Metric, type ResultRow } from './index.ts';

/**
 * One measured setting of `hush attack`: real sessions through the in-process runtime with capture
 * on (recordSessions), every attack of the harness on the transcript (runAttacks), each result
 * compared with its chance level, and the utility cost of the setting against a plaintext run of the
 * whole model in one process.
 */

export type AttackMode = 'local' | 'split' | 'scx';

export interface AttackSetting {
  mode: AttackMode;
  /** Head and tail layers on trusted devices (split/scx). */
  h: number;
  t: number;
  /** scx only; 'none' / 0 / 0 in the other modes. */
  noise: NoiseKind;
  /** Laplace scale b of the P1 noise (absolute). */
  noiseScale: number;
  decoys: number | 'N';
  /** b as a multiple of the P1 rows' RMS, when the scale was chosen that way (labels only). */
  noiseRelative?: number;
}

export class AttackSettingError extends Error {
  override name = 'AttackSettingError';
}

/** The setting as the mode runs it: noise and decoys exist only in scx. */
export function normalizeSetting(s: AttackSetting): AttackSetting {
  if (!['local', 'split', 'scx'].includes(s.mode)) throw new AttackSettingError(`mode must be local, split or scx, got ${JSON.stringify(s.mode)}`);
  if (s.mode !== 'scx') return { mode: s.mode, h: s.h, t: s.t, noise: 'none', noiseScale: 0, decoys: 0 };
  if (!['none', 'shared', 'rows'].includes(s.noise)) throw new AttackSettingError(`noise must be none, shared or rows, got ${JSON.stringify(s.noise)}`);
  if (!(Number.isFinite(s.noiseScale) && s.noiseScale >= 0)) throw new AttackSettingError(`noise scale must be a number >= 0, got ${s.noiseScale}`);
  // A scale without noise (or noise at scale 0) is no noise: label and meta say so.
  const off = s.noise === 'none' || s.noiseScale === 0;
  return { ...s, noise: off ? 'none' : s.noise, noiseScale: off ? 0 : s.noiseScale, noiseRelative: off ? undefined : s.noiseRelative };
}

/** Short human label: "split", "scx, no noise, 4 decoys", "scx, rows noise b=0.8 (1x RMS), 4 decoys". */
export function settingLabel(s: AttackSetting): string {
  if (s.mode !== 'scx') return s.mode;
  const noise = s.noise === 'none' ? 'no noise'
    : `${s.noise} noise b=${fmtNum(s.noiseScale)}${s.noiseRelative !== undefined ? ` (${fmtNum(s.noiseRelative)}x RMS)` : ''}`;
  const decoys = s.decoys === 'N' ? 'N decoys' : `${s.decoys} decoy${s.decoys === 1 ? '' : 's'}`;
  return `scx, ${noise}, ${decoys}`;
}

export function fmtNum(x: number): string {
  return Number(x.toPrecision(3)).toString();
}

/** Round to two significant digits (noise scales derived from a measured RMS stay readable and stable). */
export function round2(x: number): number {
  return x === 0 ? 0 : Number(x.toPrecision(2));
}

/**
 * RMS of the rows the cloud receives at P1 of cloud layer `layer` (RMSNorm_layer of the residual,
 * with the layer's norm weight), over every position of every prompt, computed with the attacker's
 * own forward of the public model. Noise scales relative to it say how loud the noise is next to the
 * signal it hides.
 */
export function p1Rms(model: LoadedModel, prompts: number[][], layer: number): number {
  const m = attackerModel(model);
  if (!(Number.isInteger(layer) && layer >= 0 && layer < m.L)) throw new AttackSettingError(`p1Rms: layer ${layer} is not in [0, ${m.L})`);
  let sum = 0, n = 0;
  for (const ids of prompts) {
    const { captures: [rows] } = forwardSequence(m, ids, [{ kind: 'normed', layer }]);
    for (let i = 0; i < rows.length; i++) sum += rows[i] * rows[i];
    n += rows.length;
  }
  if (n === 0) throw new AttackSettingError('p1Rms: no prompt tokens');
  return Math.sqrt(sum / n);
}

/** Weights one decoder layer multiplies per token: q, k, v, o and the gated MLP. */
export function layerMatmulParams(c: Pick<ModelConfig, 'hiddenSize' | 'numHeads' | 'numKvHeads' | 'headDim' | 'intermediateSize'>): number {
  const d = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim;
  return d * q + 2 * d * kv + q * d + 3 * d * c.intermediateSize;
}

/** debprose-7m's layer (d 256, 8/4 heads of 32, ffn 704), where the reference budget was measured. */
const REFERENCE_LAYER_PARAMS = layerMatmulParams({ hiddenSize: 256, numHeads: 8, numKvHeads: 4, headDim: 32, intermediateSize: 704 });
/** Candidate forwards per vocabulary-matching run on debprose-7m (one full vocabulary). */
export const REFERENCE_FORWARD_BUDGET = 4096;

/**
 * Default candidate-forward budget of each A3-engine run: about the compute of
 * REFERENCE_FORWARD_BUDGET forwards on debprose-7m (a candidate forward costs about one layer's
 * weights), and never less than one full vocabulary. debprose-7m: 4096; the default tiny test model
 * (d 64): 81920, enough for a full-vocabulary search at every position of short prompts. Past the
 * budget a position tries the model's top-k and the row proposals only. Measured on debprose-7m,
 * 2 prompts, row noise b = 0.1x RMS: 66% positional accuracy on P1 with this budget, 60% with none
 * (different noise draws), at a ninth of the cost.
 */
export function defaultForwardBudget(c: ModelConfig): number {
  return Math.max(c.vocabSize, Math.round(REFERENCE_FORWARD_BUDGET * REFERENCE_LAYER_PARAMS / layerMatmulParams(c)));
}

export interface PlaintextReference {
  /** Prefill (last-row) logits per prompt. */
  prefillLogits: Float32Array[];
  /** Greedy tokens per prompt (no stop on EOS, as recordSessions generates). */
  greedy: number[][];
  seconds: number;
}

/** The whole model in one process (InProcessPipeline): what every mode must reproduce. */
export async function plaintextReference(model: LoadedModel, prompts: number[][], generate: number): Promise<PlaintextReference> {
  const t0 = performance.now();
  const pipe = await InProcessPipeline.create(model);
  const prefillLogits: Float32Array[] = [];
  const greedy: number[][] = [];
  try {
    for (const ids of prompts) {
      const got: number[] = [];
      for await (const tok of generateTokens(pipe.forwarder(), ids, { maxTokens: generate, temperature: 0 })) {
        if (tok.index === 0) prefillLogits.push(new Float32Array(tok.logits));
        got.push(tok.id);
      }
      greedy.push(got);
    }
  } finally {
    await pipe.release();
  }
  return { prefillLogits, greedy, seconds: (performance.now() - t0) / 1000 };
}

export interface UtilityCost {
  /** max over prompts and vocabulary of |logit - plaintext logit| (prefill logits). */
  maxAbsLogitError: number;
  /** max over prompts of (max |logit - plaintext logit|) / (max |plaintext logit|). */
  maxRelLogitError: number;
  /** Prompts whose greedy tokens all equal the plaintext run's. */
  greedyMatchedPrompts: number;
  prompts: number;
  greedyMatch: boolean;
}

export function utilityCost(ref: PlaintextReference, prefillLogits: Float32Array[], generated: number[][]): UtilityCost {
  if (prefillLogits.length !== ref.prefillLogits.length || generated.length !== ref.greedy.length) {
    throw new AttackSettingError(`utilityCost: ${prefillLogits.length} logits / ${generated.length} generations for ${ref.prefillLogits.length} reference prompts`);
  }
  let maxAbs = 0, maxRel = 0, matched = 0;
  for (let p = 0; p < prefillLogits.length; p++) {
    const a = prefillLogits[p], b = ref.prefillLogits[p];
    if (a.length !== b.length) throw new AttackSettingError(`utilityCost: prompt ${p} has ${a.length} logits, plaintext ${b.length}`);
    let err = 0, scale = 0;
    for (let i = 0; i < a.length; i++) {
      const e = Math.abs(a[i] - b[i]);
      // NaN must count as an error, not vanish in a comparison.
      if (!(e <= err)) err = Number.isNaN(e) ? Infinity : e;
      scale = Math.max(scale, Math.abs(b[i]));
    }
    maxAbs = Math.max(maxAbs, err);
    maxRel = Math.max(maxRel, scale > 0 ? err / scale : err);
    const g = generated[p], r = ref.greedy[p];
    if (g.length === r.length && g.every((x, i) => x === r[i])) matched++;
  }
  return { maxAbsLogitError: maxAbs, maxRelLogitError: maxRel, greedyMatchedPrompts: matched, prompts: prefillLogits.length, greedyMatch: matched === prefillLogits.length };
}

/** One line of the verdict: the strongest variant of an attack on one (observable, layer, metric), next to chance. */
export interface PrivacyLine {
  attack: AttackId;
  /** The variant that recovered the most (e.g. "single-token raw"). */
  variant: string;
  /** What the cloud saw that the attack used ("S h in", "P1 x", "P3 h in", "D h in", ...). */
  observable: string;
  layer: number | null;
  metric: Metric;
  /** Best value over the variants; 0 when the cloud saw nothing. */
  value: number;
  correct: number;
  total: number;
  /** What a guess that uses no observation gets (see chanceOf). */
  chance: number;
  /** Every variant of this (attack, observable, layer, metric) is at chance level (see atChanceLevel). */
  atChance: boolean;
  /** Summed over all variants of this (attack, observable, layer, metric). */
  candidateForwards: number;
  seconds: number;
}

/** Significance of "above chance": one-sided binomial test at this level. */
export const CHANCE_TEST_LEVEL = 0.01;

/** P(X >= k) for X ~ Binomial(n, p), in log space (n up to thousands). */
export function binomialUpperTail(k: number, n: number, p: number): number {
  if (k <= 0) return 1;
  if (k > n) return 0;
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  const lp = Math.log(p), lq = Math.log1p(-p);
  // log C(n, i) built incrementally from i = 0.
  let logC = 0, sum = 0;
  for (let i = 0; i <= n; i++) {
    if (i > 0) logC += Math.log((n - i + 1) / i);
    if (i >= k) sum += Math.exp(logC + i * lp + (n - i) * lq);
  }
  return Math.min(1, sum);
}

/**
 * At chance level: the attack did no better than chance, or not significantly so (one-sided binomial
 * test, level CHANCE_TEST_LEVEL, with the chance rate as the null). `floor` is the rate of a blind
 * uniform guess (1/V for tokens), used when the measured chance is lower.
 */
export function atChanceLevel(correct: number, total: number, chance: number, floor = 0): boolean {
  if (total <= 0) return true;
  if (correct / total <= chance) return true;
  return binomialUpperTail(correct, total, Math.max(chance, floor)) >= CHANCE_TEST_LEVEL;
}

const TOKEN_METRICS: ReadonlySet<Metric> = new Set(['positional-accuracy', 'bag-recall', 'next-token-agreement']);

/**
 * Chance levels, from the report itself (never from the attack's own output):
 *   positional-accuracy, next-token-agreement: A0's positional accuracy (the model's greedy text
 *     from BOS: a guess that uses no observation);
 *   bag-recall: A0's bag recall;
 *   decoy-precision / decoy-recall: flagging as many rows as the attack did, uniformly at random
 *     (expected precision decoys/R, expected recall flagged/R, per session);
 *   offset-recovered, key-recovery, reuse-flagged: 0 (fresh keys have nothing to recover or share).
 */
function chanceFor(report: AttackReport, rows: ResultRow[], metric: Metric, promptLen: Map<string, number>): number {
  const a0 = (mt: Metric) => {
    const s = report.summary.find((x) => x.attack === 'A0' && x.metric === mt);
    return s && s.value !== null ? s.value : 0;
  };
  if (metric === 'positional-accuracy' || metric === 'next-token-agreement') return a0('positional-accuracy');
  if (metric === 'bag-recall') return a0('bag-recall');
  if (metric === 'decoy-precision' || metric === 'decoy-recall') {
    const decoysOf = (n: number) => (report.meta.decoys === 'N' ? n : report.meta.decoys);
    let num = 0, den = 0;
    for (const r of rows) {
      const n = promptLen.get(r.session);
      if (n === undefined) continue;
      const d = decoysOf(n), R = n + d;
      const sibling = report.rows.find((x) => x.session === r.session && x.attack === r.attack && x.variant === r.variant && x.observable === r.observable
        && x.layer === r.layer && x.metric === 'decoy-precision');
      const flagged = sibling?.total ?? 0;
      if (metric === 'decoy-precision') { num += flagged * d / R; den += flagged; } else { num += d * flagged / R; den += d; }
    }
    return den > 0 ? num / den : 0;
  }
  return 0;
}

/** The verdict lines of a report: per (attack, observable, layer, metric) the best variant, with chance and cost. A0 is the chance reference, not a line. */
export function privacyLines(report: AttackReport, promptLengths: Map<string, number>, vocabSize: number): PrivacyLine[] {
  const groups = new Map<string, ResultRow[]>();
  for (const r of report.rows) {
    if (r.attack === 'A0') continue;
    const key = [r.attack, r.observable, r.layer, r.metric].join('\u0000');
    const g = groups.get(key) ?? [];
    g.push(r);
    groups.set(key, g);
  }
  const lines: PrivacyLine[] = [];
  for (const rows of groups.values()) {
    const { attack, layer, metric } = rows[0];
    const chance = chanceFor(report, rows, metric, promptLengths);
    const floor = TOKEN_METRICS.has(metric) ? 1 / vocabSize : 0;
    // Aggregate per variant over sessions, then take the strongest variant.
    const byVariant = new Map<string, { variant: string; observable: string; correct: number; total: number; rows: ResultRow[] }>();
    const observable = rows[0].observable;
    let forwards = 0, seconds = 0;
    for (const r of rows) {
      forwards += r.cost.candidateForwards;
      seconds += r.cost.seconds;
      const v = byVariant.get(r.variant) ?? { variant: r.variant, observable, correct: 0, total: 0, rows: [] };
      if (r.correct !== null && r.total !== null) { v.correct += r.correct; v.total += r.total; }
      v.rows.push(r);
      byVariant.set(r.variant, v);
    }
    const variants = [...byVariant.values()].filter((v) => v.total > 0);
    if (variants.length === 0) continue;
    let best = variants[0];
    for (const v of variants) if (v.correct / v.total > best.correct / best.total) best = v;
    const atChance = variants.every((v) => {
      // Decoy chance depends on how many rows this variant flagged.
      const c = metric === 'decoy-precision' || metric === 'decoy-recall' ? chanceFor(report, v.rows, metric, promptLengths) : chance;
      return atChanceLevel(v.correct, v.total, c, floor);
    });
    const bestChance = metric === 'decoy-precision' || metric === 'decoy-recall' ? chanceFor(report, best.rows, metric, promptLengths) : chance;
    lines.push({ attack, variant: best.variant, observable: best.observable, layer, metric, value: best.correct / best.total, correct: best.correct, total: best.total,
      chance: bestChance, atChance, candidateForwards: forwards, seconds });
  }
  return lines;
}

/** Local mode: the cloud received nothing, so every attack recovers nothing. Explicit lines, not an empty table. */
export function nothingSeenLines(): PrivacyLine[] {
  return ALL_ATTACKS.filter((a) => a !== 'A0').map((attack) => ({
    attack, variant: 'nothing to attack: the cloud received no tensor', observable: '-', layer: null,
    metric: attack === 'A9' ? 'key-recovery' as const : attack === 'A7' ? 'next-token-agreement' as const : 'positional-accuracy' as const,
    value: 0, correct: 0, total: 0, chance: 0, atChance: true, candidateForwards: 0, seconds: 0,
  }));
}

export interface MeasureOptions {
  /** Tokens generated per prompt, >= 1 (1 = prefill only). */
  generate: number;
  attack?: AttackOptions;
  /** A plaintext reference for the same prompts and `generate` (computed when absent). */
  reference?: PlaintextReference;
  /** Session ids (default p0, p1, ...). */
  sessionIds?: string[];
}

export interface SettingResult {
  model: string;
  setting: AttackSetting;
  label: string;
  prompts: number;
  promptTokens: number;
  generate: number;
  /** What the cloud saw. */
  cloud: { tensors: number; bytes: number };
  utility: UtilityCost;
  lines: PrivacyLine[];
  /** Every line at chance level. */
  confidential: boolean;
  seconds: { record: number; attack: number; reference: number };
  /** The harness's full report; null when the cloud saw nothing. */
  report: AttackReport | null;
}

/** Record real sessions of one setting, attack the transcript, score against chance, and measure the utility cost. */
export async function measureSetting(model: LoadedModel, prompts: number[][], setting: AttackSetting, opts: MeasureOptions): Promise<SettingResult> {
  if (prompts.length === 0) throw new AttackSettingError('no prompts');
  const s = normalizeSetting(setting);
  const reference = opts.reference ?? await plaintextReference(model, prompts, opts.generate);
  const sessionIds = opts.sessionIds ?? prompts.map((_, i) => `p${i}`);
  const index = new Map(sessionIds.map((id, i) => [id, i]));
  const prefill: Float32Array[] = new Array(prompts.length);
  const t0 = performance.now();
  const { transcript, truth } = await recordSessions(model, prompts, {
    run: { mode: s.mode, h: s.h, t: s.t, scx: s.mode === 'scx' ? { noise: s.noise, noiseScale: s.noiseScale, decoys: s.decoys } : {} },
    generate: opts.generate, sessionIds,
    onToken: (session, i, _id, logits) => { if (i === 0) prefill[index.get(session)!] = new Float32Array(logits); },
  });
  const record = (performance.now() - t0) / 1000;
  const utility = utilityCost(reference, prefill, sessionIds.map((id) => truth.sessions.find((x) => x.session === id)!.generatedIds));
  const cloud = { tensors: transcript.entries.length, bytes: transcript.totalBytes() };
  const t1 = performance.now();
  let report: AttackReport | null = null;
  let lines: PrivacyLine[];
  if (cloud.tensors === 0) {
    lines = nothingSeenLines();
  } else {
    report = runAttacks(transcript, model, truth, opts.attack ?? {});
    lines = privacyLines(report, new Map(truth.sessions.map((x) => [x.session, x.promptIds.length])), model.config.vocabSize);
  }
  return {
    model: model.name, setting: s, label: settingLabel(s), prompts: prompts.length, promptTokens: prompts.reduce((a, p) => a + p.length, 0),
    generate: opts.generate, cloud, utility, lines, confidential: lines.every((l) => l.atChance),
    seconds: { record, attack: (performance.now() - t1) / 1000, reference: opts.reference ? 0 : reference.seconds }, report,
  };
}

export const ATTACK_TITLES: Record<AttackId, string> = {
  A0: 'prior (chance)',
  A1: 'embedding nearest neighbour',
  A2: 'sorted K/V matching',
  A3: 'vocabulary matching',
  A6: 'noise removal, then A1/A3',
  A7: 'decode vectors / logit lens',
  A9: 'key reuse / key recovery',
};

export function pct(v: number | null): string {
  return v === null ? '-' : `${(100 * v).toFixed(1)}%`;
}

export function markdownTable(head: string[], body: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (r: string[]) => '| ' + r.map((c, i) => c.padEnd(w[i])).join(' | ') + ' |';
  return [line(head), '|' + w.map((x) => '-'.repeat(x + 2)).join('|') + '|', ...body.map(line)].join('\n');
}

/** The readable verdict of one setting: one line per attack, layer and metric, then utility and cost. */
export function formatSettingResult(r: SettingResult): string {
  const head = ['attack', 'observable', 'layer', 'metric', 'recovered', 'n', 'chance', 'at chance', 'best variant', 'cand. forwards', 'seconds'];
  const body = r.lines.map((l) => [
    `${l.attack} ${ATTACK_TITLES[l.attack]}`, l.observable, l.layer === null ? '-' : String(l.layer), l.metric,
    pct(l.value), l.total > 0 ? `${l.correct}/${l.total}` : '-', pct(l.chance), l.atChance ? 'yes' : 'NO', l.variant, String(l.candidateForwards), l.seconds.toFixed(2),
  ]);
  const u = r.utility;
  const s = r.setting;
  const lines = [
    `hush attack: ${r.label}${s.mode === 'local' ? '' : `, h=${s.h} t=${s.t}`}; model ${r.model}; ${r.prompts} prompt(s), ${r.promptTokens} tokens, ${r.generate} generated each`,
    s.mode === 'local' && r.cloud.tensors === 0
      ? 'the cloud received nothing (0 tensors): every attack recovers nothing, which is chance level'
      : `the cloud saw ${r.cloud.tensors} tensors, ${(r.cloud.bytes / 1024).toFixed(1)} KiB`,
    '',
    markdownTable(head, body),
    '',
    `utility vs the plaintext one-process run: prefill logits max abs error ${u.maxAbsLogitError.toExponential(2)}, max relative error ${u.maxRelLogitError.toExponential(2)}; ` +
      `greedy tokens ${u.greedyMatch ? 'match' : 'DIFFER'} (${u.greedyMatchedPrompts}/${u.prompts} prompts)`,
  ];
  if (r.report) {
    const setup = Object.entries(r.report.setupCost);
    if (setup.length) lines.push('attack setup: ' + setup.map(([k, c]) => `${k} ${c.seconds.toFixed(2)} s`).join(', '));
  }
  lines.push(`time: sessions ${r.seconds.record.toFixed(1)} s, attacks ${r.seconds.attack.toFixed(1)} s, plaintext reference ${r.seconds.reference.toFixed(1)} s`);
  const above = r.lines.filter((l) => !l.atChance);
  lines.push(r.confidential
    ? `verdict: every attack at chance level${s.mode === 'local' ? ' (local: the cloud sees nothing)' : ''}`
    : `verdict: NOT confidential: ${above.length} result(s) above chance (${[...new Set(above.map((l) => l.attack))].join(', ')})`);
  return lines.join('\n');
}
