import type { Transcript } from '../../runtime/scx/transcript.ts';
import type { LoadedModel } from '../../runtime/model/index.ts';
import { attackerModel, greedyContinue, PrefixCache, appendToken, rmsNorm, type AttackerModel } from './forward.ts';
import { observationsOf, publicMeta, sessionsOf, withRows, type Observation, type PublicMeta } from './observe.ts';
import { addCost, vocabularyMatch, zeroCost, type Cost, type MatchOptions, type MatchResult } from './match.ts';
import { a1, embedTable, singleTokenTable } from './a1.ts';
import { a2Contextless, kvTable, unpermuteWithKeyshare } from './a2.ts';
import { estimateSharedOffset, subtractOffset } from './a6.ts';
import { decodeMatch, logitLens } from './a7.ts';
import { a9, type A9Report } from './a9.ts';
import { rowProposals } from './hints.ts';
import { bagRecall, decoyScore, positionalAccuracy, promptBody, realRowsByTruth, type Score, type Truth, type TruthSession } from './score.ts';

export type { Truth, TruthSession } from './score.ts';
export type { Cost, MatchOptions } from './match.ts';
export type { A9Report } from './a9.ts';
export { AttackInputError } from './forward.ts';

/**
 * The attack harness: everything a cloud peer could recover from exactly what it saw.
 *
 * runAttacks(transcript, model, truth?) runs the attacks of SCX.md on every session of a transcript.
 * The attacks use only the transcript, the public weights, tokenizer conventions (BOS) and config,
 * and the non-secret session parameters in header.meta. `truth` (the real prompt and generated ids)
 * is read only by the scorer, after each attack has produced its output.
 *
 *   A0  prior baseline: the model's greedy text from BOS, same length (what an attacker gets for free)
 *   A1  nearest neighbour of (normed) rows to a vocabulary table; bag-of-tokens recall, decoy rejection
 *   A2  sorted per-head K/V matching (contextless table; keyshare-unpermuted; sequential = A3 engine)
 *   A3  vocabulary matching left to right (min over rows when rows are permuted)
 *   A6  shared-noise offset removal, then A1/A3 on the cleaned rows
 *   A7  decode vectors: A3 per generated token; logit lens on the last cloud layer's output
 *   A9  key reuse across sessions and key recovery
 */

export type AttackId = 'A0' | 'A1' | 'A2' | 'A3' | 'A6' | 'A7' | 'A9';
export const ALL_ATTACKS: readonly AttackId[] = ['A0', 'A1', 'A2', 'A3', 'A6', 'A7', 'A9'];

export type Metric =
  | 'positional-accuracy' | 'bag-recall' | 'decoy-precision' | 'decoy-recall' | 'next-token-agreement'
  | 'offset-recovered' | 'key-recovery' | 'reuse-flagged';

export interface AttackOptions extends MatchOptions {
  attacks?: readonly AttackId[];
  /** Cloud layers attacked by A1/A2/A3/A6: 'first' (default), 'all', or a list of layer indices. */
  layers?: 'first' | 'all' | number[];
  /** Observation labels A3 runs on, in addition to the defaults "S h in", "P1 x", "P3 h in" (e.g. "S h out", "P3 o", "P2 q"). */
  a3Labels?: string[];
  /**
   * Build the single-token table (V forwards through l layers, once per attacked layer) for A1, A2 and
   * for A3's candidate proposals. Default true.
   */
  singleTokenTable?: boolean;
  /** Only these sessions (default all). */
  sessions?: string[];
  onProgress?: (message: string) => void;
}

export interface ResultRow {
  /** Session id, or "*" for cross-session results (A9). */
  session: string;
  attack: AttackId;
  variant: string;
  /** Observation label ("P1 x", "S h in", ...) or "-" when not tied to one. */
  observable: string;
  layer: number | null;
  metric: Metric;
  correct: number | null;
  total: number | null;
  /** correct / total, or null without truth. */
  value: number | null;
  /** What the attacker recovered (token ids), where the attack outputs tokens. */
  recovered?: number[];
  detail?: Record<string, number | string | boolean | null>;
  cost: Cost;
}

export interface SummaryRow {
  attack: AttackId;
  variant: string;
  observable: string;
  layer: number | null;
  metric: Metric;
  correct: number;
  total: number;
  value: number | null;
  sessions: number;
  cost: Cost;
}

export interface AttackReport {
  model: string;
  mode: string;
  meta: PublicMeta;
  sessions: string[];
  /** Whether a truth was given (else every value is null). */
  scored: boolean;
  rows: ResultRow[];
  summary: SummaryRow[];
  a9?: A9Report;
  /** One-off work (tables), by name. */
  setupCost: Record<string, Cost>;
  /** Per session: the attacker's best recovered prompt (by its own match evidence), decoded. */
  recoveredText: Record<string, string>;
  seconds: number;
}

interface Ctx {
  transcript: Transcript;
  m: AttackerModel;
  lm: LoadedModel;
  meta: PublicMeta;
  opts: AttackOptions;
  attacks: Set<AttackId>;
  embedTables: Map<number, Float32Array>;
  singleTables: Map<number, Float32Array>;
  kvTables: Map<string, Float32Array>;
  setupCost: Record<string, Cost>;
  keyshare: Map<string, { sigma?: Int32Array; tau?: Int32Array }>;
}

const DEFAULT_A3 = ['S h in', 'P1 x', 'P3 h in'];

function score(s: Score | null): Pick<ResultRow, 'correct' | 'total' | 'value'> {
  if (!s) return { correct: null, total: null, value: null };
  return { correct: s.correct, total: s.total, value: s.total > 0 ? s.correct / s.total : null };
}

function progress(ctx: Ctx, msg: string): void {
  ctx.opts.onProgress?.(msg);
}

function getEmbedTable(ctx: Ctx, layer: number): Float32Array {
  let t = ctx.embedTables.get(layer);
  if (!t) { t = embedTable(ctx.m, layer); ctx.embedTables.set(layer, t); }
  return t;
}

function getSingleTable(ctx: Ctx, layer: number): Float32Array | null {
  if (ctx.opts.singleTokenTable === false) return null;
  let t = ctx.singleTables.get(layer);
  if (!t) {
    progress(ctx, `building single-token table at layer ${layer} (${ctx.m.V} forwards)`);
    const cost = zeroCost();
    t = singleTokenTable(ctx.m, layer, cost);
    ctx.singleTables.set(layer, t);
    ctx.setupCost[`single-token table L${layer}`] = cost;
  }
  return t;
}

function getKvTable(ctx: Ctx, layer: number, which: 'k' | 'v'): Float32Array | null {
  const single = getSingleTable(ctx, layer);
  if (!single) return null;
  const key = `${which}${layer}`;
  let t = ctx.kvTables.get(key);
  if (!t) {
    const cost = zeroCost();
    t = kvTable(ctx.m, layer, single, which, cost);
    ctx.kvTables.set(key, t);
    ctx.setupCost[`${which} table L${layer}`] = cost;
  }
  return t;
}

/** Cloud layers A1/A2/A3/A6 attack in this session. */
function attackedLayers(ctx: Ctx, obs: Observation[]): number[] {
  const present = [...new Set(obs.filter((o) => o.stage === 'prefill' && o.direction === 'received' && o.crossing !== 'D').map((o) => o.layer))].sort((a, b) => a - b);
  const sel = ctx.opts.layers ?? 'first';
  if (sel === 'first') return present.slice(0, 1);
  if (sel === 'all') return present;
  return present.filter((l) => sel.includes(l));
}

function a3Wanted(ctx: Ctx, label: string): boolean {
  return DEFAULT_A3.includes(label) || (ctx.opts.a3Labels ?? []).includes(label);
}

/** Prompt length as the attacker knows it: rows of a true-order or P3 observation, or P1 rows minus decoys. */
function promptLength(obs: Observation[]): number | null {
  const o = obs.find((x) => x.stage === 'prefill' && (x.label === 'S h in' || x.label === 'P2 k' || x.label === 'P3 h in'))
    ?? obs.find((x) => x.stage === 'prefill' && x.label === 'P1 x');
  return o ? o.numReal : null;
}

function attackSession(ctx: Ctx, session: string, truth: TruthSession | undefined): { rows: ResultRow[]; best: MatchResult | null } {
  const { m } = ctx;
  const rows: ResultRow[] = [];
  const obs = observationsOf(ctx.transcript, m, session);
  const layers = attackedLayers(ctx, obs);
  const prompt = truth?.promptIds;
  const body = prompt ? promptBody(prompt, m.bos) : null;
  const engineRuns: MatchResult[] = [];
  const push = (r: Omit<ResultRow, 'session'>) => rows.push({ session, ...r });
  // Scorer: which rows of an observation are real, computed once per observation (raw and denoised share rows).
  const realRowCache = new Map<string, Set<number>>();
  const realRows = (o: Observation, ids: number[]) => {
    const key = `${o.crossing}/${o.name}/${o.layer}`;
    let v = realRowCache.get(key);
    if (!v) { v = realRowsByTruth(m, o, ids); realRowCache.set(key, v); }
    return v;
  };

  // A0: the prior, for the chance level.
  const N = promptLength(obs);
  if (ctx.attacks.has('A0') && N) {
    const t0 = performance.now();
    const cache = new PrefixCache(m, N + 2);
    appendToken(m, cache, m.bos);
    const toks = [m.bos, ...greedyContinue(m, cache, N - 1)];
    const cost = { ...zeroCost(), prefixForwards: N, seconds: (performance.now() - t0) / 1000 };
    push({ attack: 'A0', variant: 'greedy prior', observable: '-', layer: null, metric: 'positional-accuracy', ...score(prompt ? positionalAccuracy(toks, prompt) : null), recovered: toks, cost });
    push({ attack: 'A0', variant: 'greedy prior', observable: '-', layer: null, metric: 'bag-recall', ...score(body ? bagRecall(toks.slice(1), body) : null), cost: zeroCost() });
  }

  const runA3 = (attack: AttackId, variant: string, o: Observation, decoysFlag = false) => {
    progress(ctx, `${session}: ${attack} ${variant} on ${o.label} layer ${o.layer}`);
    const t0 = performance.now();
    const single = ['normed', 'resid', 'k', 'v'].includes(o.probe.kind) && o.probe.layer < m.L ? getSingleTable(ctx, o.probe.layer) : null;
    const hints = single ? rowProposals(m, o, o.probe.layer, single, (which) => getKvTable(ctx, o.probe.layer, which)) : null;
    const hintSeconds = (performance.now() - t0) / 1000;
    const r = vocabularyMatch(m, o, ctx.opts, hints);
    r.cost.seconds += hintSeconds;
    engineRuns.push(r);
    const accepted = r.positions.filter((p) => p.accepted).length;
    push({ attack, variant, observable: o.label, layer: o.layer, metric: 'positional-accuracy', ...score(prompt ? positionalAccuracy(r.tokens, prompt) : null),
      recovered: r.tokens, detail: { accepted, positions: r.tokens.length, truncated: r.truncated, meanRank: r.positions.reduce((a, p) => a + p.rank, 0) / Math.max(1, r.positions.length) }, cost: r.cost });
    if (o.rowsPermuted) {
      // With permuted rows a wrong prefix can still pick the right rows' tokens: the bag is a separate leak.
      push({ attack, variant, observable: o.label, layer: o.layer, metric: 'bag-recall', ...score(body ? bagRecall(r.tokens.slice(1), body) : null), cost: zeroCost() });
    }
    if (decoysFlag && o.R > o.numReal && prompt) {
      const ds = decoyScore(r.unmatchedRows, realRows(o, prompt), o.R);
      push({ attack, variant, observable: o.label, layer: o.layer, metric: 'decoy-precision', ...score(ds.flagged ? { correct: ds.truePositives, total: ds.flagged } : null), cost: zeroCost() });
      push({ attack, variant, observable: o.label, layer: o.layer, metric: 'decoy-recall', ...score(ds.decoys ? { correct: ds.truePositives, total: ds.decoys } : null), cost: zeroCost() });
    }
    return r;
  };

  const runA1 = (variant: string, o: Observation, rowsNormed: Float32Array, layer: number) => {
    const tables: [string, Float32Array | null][] = [['embed', getEmbedTable(ctx, layer)], ['single-token', getSingleTable(ctx, layer)]];
    for (const [tname, table] of tables) {
      if (!table) continue;
      const t0 = performance.now();
      const decoys = o.R - o.numReal;
      const res = a1(table, m.V, rowsNormed, o.R, o.D, decoys);
      const cost = { ...zeroCost(), seconds: (performance.now() - t0) / 1000 };
      const v = `${tname}${variant ? ' ' + variant : ''}`;
      // Bag without one BOS: BOS is position 0 by convention and not counted.
      const bag = Array.from(res.bag);
      const bi = bag.indexOf(m.bos);
      if (bi >= 0) bag.splice(bi, 1);
      push({ attack: 'A1', variant: v, observable: o.label, layer: o.layer, metric: 'bag-recall', ...score(body ? bagRecall(bag, body) : null), recovered: Array.from(res.token), cost });
      if (!o.rowsPermuted) {
        push({ attack: 'A1', variant: v, observable: o.label, layer: o.layer, metric: 'positional-accuracy', ...score(prompt ? positionalAccuracy(res.token, prompt) : null), cost: zeroCost() });
      }
      if (decoys > 0 && prompt) {
        const ds = decoyScore(res.flaggedDecoys, realRows(o, prompt), o.R);
        push({ attack: 'A1', variant: v, observable: o.label, layer: o.layer, metric: 'decoy-precision', ...score(ds.flagged ? { correct: ds.truePositives, total: ds.flagged } : null), cost: zeroCost() });
        push({ attack: 'A1', variant: v, observable: o.label, layer: o.layer, metric: 'decoy-recall', ...score(ds.decoys ? { correct: ds.truePositives, total: ds.decoys } : null), cost: zeroCost() });
      }
    }
  };

  for (const layer of layers) {
    const at = obs.filter((o) => o.stage === 'prefill' && o.layer === layer);
    // split: plaintext residual entering the first cloud layer
    const sIn = at.find((o) => o.label === 'S h in');
    if (sIn) {
      if (ctx.attacks.has('A1')) runA1('', sIn, rmsNorm(sIn.rows, sIn.R, sIn.D, m.layers[layer].inNorm, m.eps), layer);
      if (ctx.attacks.has('A3')) runA3('A3', 'sequential', sIn);
    }
    // scx P1: normed, permuted, decoyed, noised
    const p1 = at.find((o) => o.label === 'P1 x');
    if (p1) {
      let clean: Observation | null = null;
      if (ctx.meta.noise !== 'none' && ctx.meta.noiseScale > 0 && (ctx.attacks.has('A6'))) {
        const t0 = performance.now();
        const est = estimateSharedOffset(m, p1);
        push({ attack: 'A6', variant: `offset (${ctx.meta.noise})`, observable: p1.label, layer, metric: 'offset-recovered', correct: est.found ? 1 : 0, total: 1, value: est.found ? 1 : 0,
          detail: { invariantError: est.score, runnerUp: est.runnerUp, noiseScale: ctx.meta.noiseScale }, cost: { ...zeroCost(), seconds: (performance.now() - t0) / 1000 } });
        if (est.found) clean = withRows(p1, subtractOffset(p1.rows, p1.R, p1.D, est.offset), { noiseScale: 0, noise: 'removed', label: 'P1 x' });
      }
      if (ctx.attacks.has('A1')) {
        runA1(ctx.meta.noiseScale > 0 ? 'raw' : '', p1, p1.rows, layer);
        if (clean) runA1('denoised', clean, clean.rows, layer);
      }
      if (ctx.attacks.has('A3') && a3Wanted(ctx, 'P1 x')) {
        if (clean) runA3('A6', 'A3 after offset removal', clean, true);
        else runA3('A3', ctx.meta.noiseScale > 0 ? 'sequential (raw noisy rows, L1 = Laplace MLE)' : 'sequential', p1, true);
      }
    }
    // scx P2: head-dim permuted K/V in true order
    if (ctx.attacks.has('A2')) {
      for (const name of ['k', 'v'] as const) {
        const o = at.find((x) => x.label === `P2 ${name}`);
        if (!o) continue;
        const table = getKvTable(ctx, layer, name);
        if (table) {
          const cost = zeroCost();
          const r = a2Contextless(m, o, table, cost);
          push({ attack: 'A2', variant: 'sorted, contextless', observable: o.label, layer, metric: 'positional-accuracy', ...score(prompt ? positionalAccuracy(r.tokens, prompt) : null), recovered: r.tokens, cost });
          const ks = ctx.keyshare.get(`${session}\u0000${layer}`)?.[name === 'k' ? 'sigma' : 'tau'];
          if (ks) {
            const perms = Array.from({ length: m.Hkv }, (_, g) => ks.subarray(g * m.hd, (g + 1) * m.hd));
            const un = unpermuteWithKeyshare(m, o, perms);
            const cost2 = zeroCost();
            const r2 = a2Contextless(m, un, table, cost2);
            push({ attack: 'A2', variant: 'keyshare-unpermuted, contextless', observable: o.label, layer, metric: 'positional-accuracy', ...score(prompt ? positionalAccuracy(r2.tokens, prompt) : null), recovered: r2.tokens, cost: cost2 });
          }
        }
        runA3('A2', 'sorted, sequential (A3 engine)', o);
      }
    }
    // scx P3: plaintext residuals, rows permuted
    const p3 = at.find((o) => o.label === 'P3 h in');
    if (p3 && ctx.attacks.has('A3')) runA3('A3', 'sequential, min over rows', p3);
  }
  // Extra A3 targets by label: at the attacked layers, plus the split output (recorded at layer L-t-1).
  if (ctx.attacks.has('A3')) {
    for (const o of obs) {
      if (o.stage === 'generate' || DEFAULT_A3.includes(o.label) || !(ctx.opts.a3Labels ?? []).includes(o.label)) continue;
      if (!layers.includes(o.layer) && o.label !== 'S h out') continue;
      runA3('A3', o.rowsPermuted ? 'sequential, min over rows' : o.segment ? 'sorted, sequential' : 'sequential', o);
    }
  }

  // The attacker's best prompt: the run with the most self-verified (accepted) positions; no truth used.
  let best: MatchResult | null = null;
  for (const r of engineRuns) {
    const acc = r.positions.filter((p) => p.accepted).length;
    if (!best || acc > best.positions.filter((p) => p.accepted).length) best = r;
  }

  if (ctx.attacks.has('A7')) {
    const gen = truth?.generatedIds;
    // Logit lens on the last cloud layer's output: prefill (split, true order) and every decode step.
    const sOut = obs.find((o) => o.stage === 'prefill' && o.label === 'S h out');
    if (sOut) {
      const t0 = performance.now();
      const guess = logitLens(m, sOut);
      const cost = { ...zeroCost(), seconds: (performance.now() - t0) / 1000 };
      let sc: Score | null = null;
      if (prompt) {
        // Row i predicts prompt token i+1; the last row predicts the first generated token.
        const target = [...prompt.slice(1), ...(gen && gen.length ? [gen[0]] : [])];
        sc = { correct: target.filter((t, i) => guess[i] === t).length, total: target.length };
      }
      push({ attack: 'A7', variant: 'logit lens, prefill', observable: sOut.label, layer: sOut.layer, metric: 'next-token-agreement', ...score(sc), recovered: guess, cost });
    }
    const dOut = obs.filter((o) => o.stage === 'generate' && o.label === 'D h out').sort((a, b) => (a.step ?? 0) - (b.step ?? 0));
    if (dOut.length) {
      const t0 = performance.now();
      const guess = dOut.map((o) => logitLens(m, o)[0]);
      const cost = { ...zeroCost(), seconds: (performance.now() - t0) / 1000 };
      let sc: Score | null = null;
      if (gen) {
        const pairs = dOut.map((o, i) => [guess[i], gen[(o.step ?? 0) + 1]] as const).filter(([, t]) => t !== undefined);
        sc = { correct: pairs.filter(([g, t]) => g === t).length, total: pairs.length };
      }
      push({ attack: 'A7', variant: 'logit lens, decode', observable: 'D h out', layer: dOut[0].layer, metric: 'next-token-agreement', ...score(sc), recovered: guess, cost });
    }
    const dIn = obs.filter((o) => o.stage === 'generate' && o.label === 'D h in');
    if (dIn.length) {
      progress(ctx, `${session}: A7 decode matching (${dIn.length} steps)`);
      // Continue from the attacker's own best prompt; without one, from BOS plus the prior (positions still line up).
      let cache: PrefixCache;
      if (best) cache = best.cache.clone();
      else {
        cache = new PrefixCache(m, (N ?? 1) + dIn.length + 2);
        appendToken(m, cache, m.bos);
        greedyContinue(m, cache, Math.max(0, (N ?? 1) - 1));
      }
      const r = decodeMatch(m, cache, dIn, ctx.opts);
      let sc: Score | null = null;
      if (gen) {
        const pairs = r.steps.map((s, i) => [r.tokens[i], gen[s]] as const).filter(([, t]) => t !== undefined);
        sc = { correct: pairs.filter(([g, t]) => g === t).length, total: pairs.length };
      }
      push({ attack: 'A7', variant: best ? 'A3 per token, after recovered prompt' : 'A3 per token, after prior', observable: 'D h in', layer: dIn[0].layer,
        metric: 'positional-accuracy', ...score(sc), recovered: r.tokens, detail: { accepted: r.positions.filter((p) => p.accepted).length }, cost: r.cost });
    }
  }
  return { rows, best };
}

/** Aggregate per (attack, variant, observable, layer, metric) over sessions. */
export function summarize(rows: ResultRow[]): SummaryRow[] {
  const groups = new Map<string, SummaryRow>();
  for (const r of rows) {
    const key = [r.attack, r.variant, r.observable, r.layer, r.metric].join('\u0000');
    let g = groups.get(key);
    if (!g) {
      g = { attack: r.attack, variant: r.variant, observable: r.observable, layer: r.layer, metric: r.metric, correct: 0, total: 0, value: null, sessions: 0, cost: zeroCost() };
      groups.set(key, g);
    }
    g.sessions++;
    if (r.correct !== null && r.total !== null) { g.correct += r.correct; g.total += r.total; }
    addCost(g.cost, r.cost);
  }
  for (const g of groups.values()) g.value = g.total > 0 ? g.correct / g.total : null;
  return [...groups.values()];
}

/**
 * Run the harness on a transcript. `model` is the public model (weights, config, tokenizer).
 * Synchronous and CPU-bound; pass opts.onProgress to follow long runs.
 */
export function runAttacks(transcript: Transcript, model: LoadedModel, truth?: Truth, opts: AttackOptions = {}): AttackReport {
  const t0 = performance.now();
  const m = attackerModel(model);
  const meta = publicMeta(transcript);
  const keyshare = new Map<string, { sigma?: Int32Array; tau?: Int32Array }>();
  for (const e of transcript.entries) {
    if (e.crossing !== 'K' || !(e.data instanceof Int32Array) || (e.name !== 'sigma' && e.name !== 'tau')) continue;
    if (e.data.length !== m.Hkv * m.hd) continue;
    const k = `${e.session}\u0000${e.layer}`;
    const v = keyshare.get(k) ?? {};
    v[e.name] = e.data;
    keyshare.set(k, v);
  }
  const ctx: Ctx = {
    transcript, m, lm: model, meta, opts, attacks: new Set(opts.attacks ?? ALL_ATTACKS),
    embedTables: new Map(), singleTables: new Map(), kvTables: new Map(), setupCost: {}, keyshare,
  };
  const sessions = sessionsOf(transcript).filter((s) => !opts.sessions || opts.sessions.includes(s));
  const rows: ResultRow[] = [];
  const recoveredText: Record<string, string> = {};
  for (const s of sessions) {
    const tr = truth?.sessions.find((x) => x.session === s);
    const { rows: r, best } = attackSession(ctx, s, tr);
    rows.push(...r);
    if (best && model.tokenizer) recoveredText[s] = model.tokenizer.decode(best.tokens);
  }
  let a9r: A9Report | undefined;
  if (ctx.attacks.has('A9')) {
    progress(ctx, 'A9 key reuse');
    a9r = a9(transcript, m);
    const cost = { ...zeroCost(), seconds: a9r.seconds };
    rows.push({ session: '*', attack: 'A9', variant: 'sigma/tau read off the BOS row', observable: 'P2 k/v', layer: null, metric: 'key-recovery',
      correct: a9r.headPermsChecked > 0 ? a9r.headPermsCorrect : a9r.headPermsRecovered, total: a9r.headPermsChecked > 0 ? a9r.headPermsChecked : a9r.headPermsTotal,
      value: null, detail: { recovered: a9r.headPermsRecovered, total: a9r.headPermsTotal, checkedAgainstKeyshare: a9r.headPermsChecked }, cost });
    rows.push({ session: '*', attack: 'A9', variant: 'shared noise offset (A6)', observable: 'P1 x', layer: null, metric: 'key-recovery',
      correct: a9r.noiseOffsetsRecovered, total: a9r.noiseOffsetsTotal, value: null, cost: zeroCost() });
    rows.push({ session: '*', attack: 'A9', variant: 'reused sigma/tau (keyshare)', observable: 'K', layer: null, metric: 'reuse-flagged',
      correct: a9r.reusedPermutations.length, total: a9r.permutationPairsCompared, value: null, cost: zeroCost() });
    rows.push({ session: '*', attack: 'A9', variant: 'reused noise', observable: 'P1 x', layer: null, metric: 'reuse-flagged',
      correct: a9r.reusedNoise.length, total: a9r.noiseCrossingsCompared, value: null, cost: zeroCost() });
    // Keep only the A9 lines this transcript has material for (e.g. none in split mode).
    const a9rows = rows.splice(rows.length - 4, 4).filter((r) => (r.total ?? 0) > 0);
    for (const r of a9rows) r.value = (r.correct ?? 0) / r.total!;
    rows.push(...a9rows);
  }
  return {
    model: transcript.header.model, mode: transcript.header.mode, meta, sessions, scored: !!truth,
    rows, summary: summarize(rows), a9: a9r, setupCost: ctx.setupCost, recoveredText, seconds: (performance.now() - t0) / 1000,
  };
}

function pct(v: number | null): string {
  return v === null ? '-' : `${(100 * v).toFixed(1)}%`;
}

function table(head: string[], body: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (r: string[]) => '| ' + r.map((c, i) => c.padEnd(w[i])).join(' | ') + ' |';
  return [line(head), '|' + w.map((x) => '-'.repeat(x + 2)).join('|') + '|', ...body.map(line)].join('\n');
}

/** A Markdown table of the summary: one line per attack, variant, observable, layer and metric, with cost. */
export function formatReportTable(report: AttackReport): string {
  const head = ['attack', 'variant', 'observable', 'layer', 'metric', 'value', 'n', 'cand. forwards', 'seconds'];
  const body = report.summary.map((s) => [
    s.attack, s.variant, s.observable, s.layer === null ? '-' : String(s.layer), s.metric, pct(s.value),
    s.total > 0 ? `${s.correct}/${s.total}` : '-', String(s.cost.candidateForwards), s.cost.seconds.toFixed(2),
  ]);
  const m = report.meta;
  const lines = [
    `mode ${report.mode}, model ${report.model}, h=${m.h ?? '?'} t=${m.t ?? '?'} noise=${m.noise} b=${m.noiseScale} decoys=${m.decoys}, ` +
    `${report.sessions.length} session(s), ${report.scored ? 'scored' : 'unscored (no truth)'}, ${report.seconds.toFixed(1)} s`,
    '',
    table(head, body),
  ];
  const setup = Object.entries(report.setupCost);
  if (setup.length) lines.push('', 'setup: ' + setup.map(([k, c]) => `${k} ${c.seconds.toFixed(2)} s`).join(', '));
  if (report.a9) {
    const a = report.a9;
    lines.push('', `A9: ${a.reusedPermutations.length} reused sigma/tau pair(s) over ${a.keysharesCompared} keyshare(s); ` +
      `${a.reusedNoise.length} reused-noise pair(s) over ${a.noiseCrossingsCompared} P1 pair(s); ` +
      `head-dim perms read off BOS ${a.headPermsRecovered}/${a.headPermsTotal} (correct ${a.headPermsCorrect}/${a.headPermsChecked} checked); ` +
      `noise offsets ${a.noiseOffsetsRecovered}/${a.noiseOffsetsTotal}`);
  }
  return lines.join('\n');
}

/**
 * Accuracy vs noise scale across reports of the same prompts at different noise settings: for each
 * report, A6 offset recovery and the P1 attacks' values.
 */
export function formatNoiseSweep(reports: AttackReport[]): string {
  const pick = (r: AttackReport, attack: AttackId, variantStart: string, metric: Metric) =>
    r.summary.find((s) => s.attack === attack && s.observable === 'P1 x' && s.variant.startsWith(variantStart) && s.metric === metric);
  const head = ['noise', 'b', 'A6 offset found', 'A1 embed raw', 'A1 single raw', 'A1 single denoised', 'A3/A6 P1 x', 'P1 x cand. forwards'];
  const body = reports.map((r) => {
    const a3 = pick(r, 'A6', 'A3', 'positional-accuracy') ?? pick(r, 'A3', 'sequential', 'positional-accuracy');
    return [r.meta.noise, String(r.meta.noiseScale), pct(pick(r, 'A6', 'offset', 'offset-recovered')?.value ?? null),
      pct((pick(r, 'A1', 'embed raw', 'bag-recall') ?? pick(r, 'A1', 'embed', 'bag-recall'))?.value ?? null),
      pct((pick(r, 'A1', 'single-token raw', 'bag-recall') ?? pick(r, 'A1', 'single-token', 'bag-recall'))?.value ?? null),
      pct(pick(r, 'A1', 'single-token denoised', 'bag-recall')?.value ?? null),
      pct(a3?.value ?? null), String(a3?.cost.candidateForwards ?? '-')];
  });
  return table(head, body);
}
