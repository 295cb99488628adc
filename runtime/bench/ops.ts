import { loadModel, type LoadedModel } from '../model/index.ts';
import {
  buildStageGraph, buildSubLayerGraph, graphOptionsName, pastKey, pastValue, presentKey, presentValue,
  DEFAULT_GRAPH_OPTIONS, STANDARD_GRAPH_OPTIONS, type GraphOptions,
} from '../model/stage-graphs.ts';
import { ort, createSession, floatTensor, int64Tensor } from '../engine/ort.ts';
import { benchPromptIds } from './prompts.ts';
import { median, type BenchSection } from './report.ts';

/**
 * The whole model as one stage graph built with given GraphOptions, with its own KV cache: what
 * StageRunner runs, minus sessions by id, so variants can be compared side by side (StageRunner builds
 * DEFAULT_GRAPH_OPTIONS only).
 */
export class GraphVariantModel {
  private k: ort.Tensor[] = [];
  private v: ort.Tensor[] = [];
  private length = 0;

  private constructor(readonly model: Pick<LoadedModel, 'config' | 'weights'>, readonly options: GraphOptions, private readonly session: ort.InferenceSession) {
    this.reset();
  }

  static async create(model: Pick<LoadedModel, 'config' | 'weights'>, options: GraphOptions): Promise<GraphVariantModel> {
    const c = model.config;
    const bytes = buildStageGraph(c, model.weights, { embed: true, start: 0, end: c.numLayers, head: true }, options);
    return new GraphVariantModel(model, options, await createSession(bytes));
  }

  get name(): string {
    return graphOptionsName(this.options);
  }

  reset(): void {
    const { numKvHeads: Hkv, headDim: hd, numLayers } = this.model.config;
    const empty = () => floatTensor(new Float32Array(0), [Hkv, 0, hd]);
    this.k = Array.from({ length: numLayers }, empty);
    this.v = Array.from({ length: numLayers }, empty);
    this.length = 0;
  }

  /** Append `ids` at the cache's end; logits [rows from logitsFrom.., vocab] (default: last row only). */
  async forward(ids: number[], logitsFrom = ids.length - 1): Promise<Float32Array> {
    const c = this.model.config;
    if (this.length + ids.length > c.maxPositionEmbeddings) throw new RangeError(`context of ${this.length + ids.length} exceeds ${c.maxPositionEmbeddings}`);
    const feeds: Record<string, ort.Tensor> = { ids: int64Tensor(ids), logits_from: int64Tensor([logitsFrom]) };
    for (let l = 0; l < c.numLayers; l++) { feeds[pastKey(l)] = this.k[l]; feeds[pastValue(l)] = this.v[l]; }
    const out = await this.session.run(feeds);
    for (let l = 0; l < c.numLayers; l++) { this.k[l] = out[presentKey(l)]; this.v[l] = out[presentValue(l)]; }
    this.length += ids.length;
    return out.logits.data as Float32Array;
  }

  /** Layer l's cache [Hkv, length, hd] (K after RoPE). */
  cache(l: number): { k: Float32Array; v: Float32Array } {
    return { k: this.k[l].data as Float32Array, v: this.v[l].data as Float32Array };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** Every variant the graphs offer, one piece changed at a time from the standard graph, plus the combinations that won. */
export const GRAPH_VARIANTS: Record<string, GraphOptions> = {
  standard: { ...STANDARD_GRAPH_OPTIONS },
  'rmsNorm=simplified': { ...STANDARD_GRAPH_OPTIONS, rmsNorm: 'simplified' },
  'rmsNorm=skip': { ...STANDARD_GRAPH_OPTIONS, rmsNorm: 'skip' },
  'rmsNorm=onnx23': { ...STANDARD_GRAPH_OPTIONS, rmsNorm: 'onnx23' },
  'rope=contrib': { ...STANDARD_GRAPH_OPTIONS, rope: 'contrib' },
  'rope=onnx23': { ...STANDARD_GRAPH_OPTIONS, rope: 'onnx23' },
  'attention=gqa': { ...STANDARD_GRAPH_OPTIONS, attention: 'gqa' },
  'attention=onnx23': { ...STANDARD_GRAPH_OPTIONS, attention: 'onnx23' },
  'skip+gqa': { rmsNorm: 'skip', rope: 'standard', attention: 'gqa' },
  'simplified+gqa': { rmsNorm: 'simplified', rope: 'standard', attention: 'gqa' },
  'onnx23, contrib rope': { rmsNorm: 'onnx23', rope: 'contrib', attention: 'onnx23' },
  'all onnx23': { rmsNorm: 'onnx23', rope: 'onnx23', attention: 'onnx23' },
};

const PROMPT = 128, DECODE = 64, REPS = 15;

function argmaxRow(x: Float32Array): number {
  let b = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[b]) b = i;
  return b;
}

/** Rotate the order each rep, so no variant always runs right after the same neighbour. */
function rotated<T>(xs: T[], r: number): T[] {
  return xs.map((_, i) => xs[(i + r) % xs.length]);
}

const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

/**
 * Prefill and decode times of every variant, interleaved at the finest grain the work allows (the machine is
 * shared, so load drifts within a rep): each rep runs every variant's prefill back to back, then the 64 decode
 * steps step by step across variants. Ratios are medians of per-rep ratios against `baseline`, which pairs
 * samples taken moments apart. Wall time is what a user waits; process CPU time (all onnxruntime threads) is
 * the work done, which other processes' load disturbs less.
 */
async function timeVariants(models: Record<string, GraphVariantModel>, ids: number[], reps: number, baseline: string) {
  const names = Object.keys(models);
  const metrics = ['prefill', 'decode', 'prefillCpu', 'decodeCpu'] as const;
  const s: Record<string, Record<(typeof metrics)[number], number[]>> = {};
  for (const k of names) s[k] = { prefill: [], decode: [], prefillCpu: [], decodeCpu: [] };
  for (let r = -1; r < reps; r++) { // rep -1 warms every session up
    const next: Record<string, number> = {}, wall: Record<string, number> = {}, cpu: Record<string, number> = {};
    for (const k of rotated(names, r + 1)) {
      const m = models[k];
      m.reset();
      const t = performance.now(), c = cpuMs();
      next[k] = argmaxRow(await m.forward(ids));
      if (r >= 0) { s[k].prefill.push(performance.now() - t); s[k].prefillCpu.push(cpuMs() - c); }
      wall[k] = 0; cpu[k] = 0;
    }
    for (let i = 0; i < DECODE; i++) {
      for (const k of rotated(names, r + 1 + i)) {
        const t = performance.now(), c = cpuMs();
        next[k] = argmaxRow(await models[k].forward([next[k]]));
        wall[k] += performance.now() - t; cpu[k] += cpuMs() - c;
      }
    }
    if (r >= 0) for (const k of names) { s[k].decode.push(wall[k] / DECODE); s[k].decodeCpu.push(cpu[k] / DECODE); }
  }
  const ratio = (k: string, m: (typeof metrics)[number]) => median(s[k][m].map((x, i) => x / s[baseline][m][i]));
  const total = (k: string, p: 'prefill' | 'prefillCpu', d: 'decode' | 'decodeCpu') =>
    median(s[k][p].map((x, i) => (x + DECODE * s[k][d][i]) / (s[baseline][p][i] + DECODE * s[baseline][d][i])));
  return Object.fromEntries(names.map((k) => [k, {
    prefillMs: median(s[k].prefill), prefillRatio: ratio(k, 'prefill'),
    decodeMs: median(s[k].decode), decodeRatio: ratio(k, 'decode'), totalRatio: total(k, 'prefill', 'decode'),
    prefillCpuRatio: ratio(k, 'prefillCpu'), decodeCpuRatio: ratio(k, 'decodeCpu'), totalCpuRatio: total(k, 'prefillCpu', 'decodeCpu'),
  }]));
}

/** Time `run` for each item, interleaved rep by rep in rotating order after one warm-up each; medians and paired ratios. */
async function interleaved<T>(items: Record<string, T>, run: (x: T) => Promise<number>, reps: number, baseline: string) {
  const names = Object.keys(items);
  const samples: Record<string, number[]> = {};
  for (const k of names) { await run(items[k]); samples[k] = []; }
  for (let r = 0; r < reps; r++) for (const k of rotated(names, r)) samples[k].push(await run(items[k]));
  return Object.fromEntries(names.map((k) => [k, { ms: median(samples[k]), ratio: median(samples[k].map((x, i) => x / samples[baseline][i])) }]));
}

export async function benchOps(opts: { variants?: Record<string, GraphOptions>; reps?: number } = {}): Promise<BenchSection[]> {
  const model = loadModel();
  // The standard graph is every ratio's baseline and the default is what users get: both always run.
  const variants: Record<string, GraphOptions> = { standard: { ...STANDARD_GRAPH_OPTIONS }, ...(opts.variants ?? GRAPH_VARIANTS) };
  const defaultName = graphOptionsName(DEFAULT_GRAPH_OPTIONS);
  if (!Object.values(variants).some((o) => graphOptionsName(o) === defaultName)) variants['default'] = { ...DEFAULT_GRAPH_OPTIONS };
  const reps = opts.reps ?? REPS;
  const ids = benchPromptIds(model.tokenizer, PROMPT);

  const models: Record<string, GraphVariantModel> = {};
  for (const [k, o] of Object.entries(variants)) models[k] = await GraphVariantModel.create(model, o);
  const r = await timeVariants(models, ids, reps, 'standard');
  const stage: BenchSection = {
    title: `Graph op variants, embedded model (${model.name}), one stage, prefill ${PROMPT} + decode ${DECODE}, median of ${reps} interleaved reps`,
    rows: Object.entries(r).map(([k, v]) => ({
      variant: k, options: graphOptionsName(variants[k]), is_default: graphOptionsName(variants[k]) === defaultName,
      prefill_ms: v.prefillMs, prefill_ratio: v.prefillRatio,
      decode_ms_per_token: v.decodeMs, decode_ratio: v.decodeRatio, total_ratio: v.totalRatio,
      cpu_prefill_ratio: v.prefillCpuRatio, cpu_decode_ratio: v.decodeCpuRatio, cpu_total_ratio: v.totalCpuRatio,
    })),
    notes: [
      'ratios: median over reps of (variant / standard) within the same rep; below 1 is faster',
      'cpu_*: the same ratios in process CPU time (all onnxruntime threads), less disturbed by other processes on a shared machine',
      `total = prefill + ${DECODE} x decode`,
      `default now: ${defaultName}`,
    ],
  };
  for (const m of Object.values(models)) await m.release();

  // The SCX cloud's P2 op: attention over N prefill rows, RoPE'd head-major inputs.
  const c = model.config, N = PROMPT;
  const rnd = (n: number, seed: number) => { const a = new Float32Array(n); let s = seed; for (let i = 0; i < n; i++) { s = (s * 16807) % 2147483647; a[i] = s / 2147483647 - 0.5; } return a; };
  const q = floatTensor(rnd(c.numHeads * N * c.headDim, 1), [c.numHeads, N, c.headDim]);
  const k = floatTensor(rnd(c.numKvHeads * N * c.headDim, 2), [c.numKvHeads, N, c.headDim]);
  const v = floatTensor(rnd(c.numKvHeads * N * c.headDim, 3), [c.numKvHeads, N, c.headDim]);
  const attn: Record<string, ort.InferenceSession> = {};
  for (const a of ['standard', 'gqa', 'onnx23'] as const) {
    attn[a] = await createSession(buildSubLayerGraph(c, model.weights, 'attention', 0, { ...STANDARD_GRAPH_OPTIONS, attention: a }));
  }
  const defaultAttention = DEFAULT_GRAPH_OPTIONS.attention;
  const RUNS = 20;
  const ra = await interleaved(attn, async (s) => {
    const t = performance.now();
    for (let i = 0; i < RUNS; i++) await s.run({ q, k, v });
    return (performance.now() - t) / RUNS;
  }, 3 * reps, 'standard');
  const sub: BenchSection = {
    title: `SCX 'attention' sub-layer op, N=${N}, ${c.numHeads} q heads / ${c.numKvHeads} kv heads, mean of ${RUNS} runs, median of ${3 * reps} interleaved reps`,
    rows: Object.entries(ra).map(([kk, vv]) => ({ attention: kk, ms: vv.ms, ratio: vv.ratio, is_default: kk === defaultAttention })),
    notes: ['ratio: median over reps of (variant / standard) within the same rep'],
  };
  for (const s of Object.values(attn)) await s.release();
  return [stage, sub];
}
