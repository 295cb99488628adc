import { loadModel } from '../model/index.ts';
import { InProcessPipeline, cutStages, generateTokens, type TokenForwarder } from '../engine/index.ts';
import { InProcessRuntime } from '../scx/in-process.ts';
import { benchPromptIds } from './prompts.ts';
import { median, type BenchSection } from './report.ts';

const PROMPT = 128, DECODE = 64, REPS = 5;

/** Prefill ms and decode ms/token of one greedy run. */
async function timeRun(fw: TokenForwarder, ids: number[]): Promise<{ prefillMs: number; decodeMs: number }> {
  const t0 = performance.now();
  let t1 = 0;
  for await (const t of generateTokens(fw, ids, { maxTokens: DECODE + 1, temperature: 0 })) if (t.index === 0) t1 = performance.now();
  return { prefillMs: t1 - t0, decodeMs: (performance.now() - t1) / DECODE };
}

/** Interleave the variants rep by rep so drift hits them alike; report medians. */
async function compare(variants: Record<string, () => Promise<TokenForwarder>>, ids: number[]) {
  const res: Record<string, { prefill: number[]; decode: number[] }> = {};
  for (const k of Object.keys(variants)) { res[k] = { prefill: [], decode: [] }; await timeRun(await variants[k](), ids); } // warm-up
  for (let r = 0; r < REPS; r++) {
    for (const [k, make] of Object.entries(variants)) {
      const t = await timeRun(await make(), ids);
      res[k].prefill.push(t.prefillMs); res[k].decode.push(t.decodeMs);
    }
  }
  return Object.fromEntries(Object.entries(res).map(([k, v]) => [k, { prefillMs: median(v.prefill), decodeMs: median(v.decode) }]));
}

/** Memory bandwidth from a 256 MiB copy: each byte is read once and written once. */
function copyBandwidth(): number {
  const n = 256 * 1024 * 1024;
  const a = Buffer.alloc(n, 1), b = Buffer.alloc(n);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) { const t = performance.now(); a.copy(b); times.push(performance.now() - t); }
  return (2 * n) / (median(times) / 1000);
}

export async function benchEngine(): Promise<BenchSection[]> {
  const t0 = performance.now();
  const model = loadModel();
  const one = await InProcessPipeline.create(model);
  const loadMs = performance.now() - t0;
  const four = await InProcessPipeline.create(model, cutStages(model.config.numLayers, [2, 4, 6]));
  const ids = benchPromptIds(model.tokenizer, PROMPT);
  const r = await compare({ '1-stage': async () => one.forwarder(), '4-stage': async () => four.forwarder() }, ids);
  const weightBytes = (model.manifest.embedding.bytes + model.manifest.layers.reduce((a, l) => a + l.bytes, 0) + model.manifest.head.bytes
    - (model.config.tieWordEmbeddings ? model.manifest.embedding.bytes : 0));
  const bw = copyBandwidth();
  const boundTps = bw / weightBytes;
  const engine: BenchSection = {
    title: `Engine, embedded model (${model.name}), prefill ${PROMPT} tokens + decode ${DECODE}, median of ${REPS}`,
    rows: [
      { variant: '1-stage', prefill_ms: r['1-stage'].prefillMs, decode_ms_per_token: r['1-stage'].decodeMs, decode_tokens_per_s: 1000 / r['1-stage'].decodeMs, ratio_vs_1stage: 1 },
      { variant: '4-stage in-process', prefill_ms: r['4-stage'].prefillMs, decode_ms_per_token: r['4-stage'].decodeMs, decode_tokens_per_s: 1000 / r['4-stage'].decodeMs, ratio_vs_1stage: r['4-stage'].decodeMs / r['1-stage'].decodeMs },
    ],
    notes: [
      `4-stage / 1-stage total time (prefill + ${DECODE} decode): ${((r['4-stage'].prefillMs + DECODE * r['4-stage'].decodeMs) / (r['1-stage'].prefillMs + DECODE * r['1-stage'].decodeMs)).toFixed(3)} (goal <= 1.10)`,
      `decode bound from memory bandwidth: weights ${(weightBytes / 1e6).toFixed(1)} MB fp32 read once per token, memory bandwidth ${(bw / 1e9).toFixed(2)} GB/s (bytes read + written by a 256 MiB copy) -> ${boundTps.toFixed(0)} tokens/s; measured 1-stage ${(1000 / r['1-stage'].decodeMs).toFixed(0)} tokens/s (${((1000 / r['1-stage'].decodeMs) / boundTps * 100).toFixed(1)}% of the bound; weights this small partly stay in the CPU caches)`,
      `load (read weights, build graph, create session): ${loadMs.toFixed(0)} ms`,
    ],
  };
  await one.release(); await four.release();

  // SCX vs split, in-process (issue: scx prefill <= 1.5x split, per-token <= 1.05x).
  const rt = new InProcessRuntime(model);
  const s = await compare({
    split: () => rt.forwarder({ mode: 'split', h: 1, t: 1 }),
    scx: () => rt.forwarder({ mode: 'scx', h: 1, t: 1 }),
    'scx+shared noise+4 decoys': () => rt.forwarder({ mode: 'scx', h: 1, t: 1, scx: { noise: 'shared', noiseScale: 1, decoys: 4 } }),
    'scx+row noise+N decoys': () => rt.forwarder({ mode: 'scx', h: 1, t: 1, scx: { noise: 'rows', noiseScale: 1, decoys: 'N' } }),
  }, ids);
  const scx: BenchSection = {
    title: `SCX vs split in-process, embedded model, h=1 t=1 (${model.config.numLayers - 2} cloud layers), prompt ${PROMPT}, ${DECODE} generated, median of ${REPS}`,
    rows: Object.entries(s).map(([k, v]) => ({
      mode: k, prefill_ms: v.prefillMs, prefill_ratio_vs_split: v.prefillMs / s.split.prefillMs,
      decode_ms_per_token: v.decodeMs, decode_ratio_vs_split: v.decodeMs / s.split.decodeMs,
    })),
    notes: ['goals: scx prefill <= 1.5x split, per-token generation <= 1.05x split'],
  };

  // Bytes per crossing, measured against SCX.md's formula.
  const fw = await rt.forwarder({ mode: 'scx', h: 1, t: 1 });
  await timeRun(fw, ids.slice(0, 16));
  const c = model.config, d = c.hiddenSize, n = 16, qkvW = (c.numHeads + 2 * c.numKvHeads) * c.headDim, oW = c.numHeads * c.headDim;
  const formula: Record<string, [number, number]> = {
    P1: [n * d * 4, n * qkvW * 4],
    P2: [(c.numHeads + 2 * c.numKvHeads) * n * c.headDim * 4, c.numHeads * n * c.headDim * 4],
    P3: [(n * oW + n * d) * 4, n * d * 4],
    decode: [d * 4, d * 4],
  };
  const bytes: BenchSection = {
    title: 'Bytes per crossing (tensor payload), scx, N=16, no decoys: measured vs SCX.md formula',
    rows: Object.entries(formula).map(([k, [to, from]]) => {
      const m = fw.stats.byKind[k];
      return { crossing: k, count: m.count, measured_to_cloud: m.bytesToCloud / m.count, formula_to_cloud: to, measured_from_cloud: m.bytesFromCloud / m.count, formula_from_cloud: from, equal: m.bytesToCloud / m.count === to && m.bytesFromCloud / m.count === from };
    }),
    notes: [`prefill d-vectors per token per cloud layer: ${((formula.P1[0] + formula.P1[1] + formula.P2[0] + formula.P2[1] + formula.P3[0] + formula.P3[1]) / (n * d * 4)).toFixed(2)} (SCX.md: about 11 for MHA; GQA carries fewer K/V)`],
  };
  await rt.release();
  return [engine, scx, bytes, await scxByWidth()];
}

/**
 * The fixed per-layer costs of SCX (five onnxruntime runs, the coordinator's encodings) shrink
 * relative to the layer's compute as models widen: the same prefill on a wider random model.
 */
async function scxByWidth(): Promise<BenchSection> {
  const { writeTinyModel } = await import('../model/tiny.ts');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const rows = [];
  const dir = mkdtempSync(join(tmpdir(), 'hush-bench-wide-'));
  try {
    writeTinyModel(dir, { seed: 3, layers: 6, hidden: 1024, heads: 16, kvHeads: 8, ffn: 2816, vocab: 2048 });
    for (const [label, model] of [['debprose-7m (d=256, 8 layers)', loadModel()], ['random 75M (d=1024, 6 layers)', loadModel(dir)]] as const) {
      const rt = new InProcessRuntime(model);
      const ids = Array.from({ length: PROMPT }, (_, i) => 3 + ((i * 37) % (model.config.vocabSize - 3)));
      const t: Record<'split' | 'scx', number[]> = { split: [], scx: [] };
      for (let r = 0; r < REPS + 2; r++) {
        for (const mode of ['split', 'scx'] as const) {
          const fw = await rt.forwarder({ mode, h: 1, t: 1 });
          const t0 = performance.now();
          await fw.prefill(ids);
          if (r >= 2) t[mode].push(performance.now() - t0);
          await fw.close();
        }
      }
      rows.push({ model: label, split_prefill_ms: median(t.split), scx_prefill_ms: median(t.scx), ratio: median(t.scx) / median(t.split), goal_met: median(t.scx) / median(t.split) <= 1.5 });
      await rt.release();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { title: `SCX vs split prefill of ${PROMPT} tokens by model width (h=1 t=1, no noise or decoys), median of ${REPS}`, rows, notes: ['goal: scx prefill <= 1.5x split'] };
}
