/**
 * A device micro-benchmark in the regime a federated pipeline runs in: every decode step follows an
 * idle wait of about one network round trip. The daemon's start-up benchmark (peers/daemon/profile.ts)
 * times one layer back to back, with its weights hot in cache and the onnxruntime threads awake; on
 * a CPU a step after a 20 ms wait is 2-4x slower (measured here: caches refilled by other processes,
 * sleeping threads woken). The cost model predicts a pipeline with network waits only when its
 * profile is measured the same way.
 *
 * Same layer, token counts and context as the daemon's benchmark, with `gapMs` of sleep before each
 * timed run, and the launch overhead timed as a near-empty run (the embedding of one token) after
 * the same gap (Measured.overheadMsPerLayer).
 */
import { StageRunner } from '../../runtime/engine/stage-runner.ts';
import type { LoadedModel } from '../../runtime/model/index.ts';
import { median } from '../../runtime/bench/report.ts';
import type { Measured } from '../../runtime/scheduler/index.ts';

const PREFILL_TOKENS = 32, DECODE_CONTEXT = 64;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface IdleGapMeasurement extends Measured {
  gapMs: number;
  /** Decode of six layers in one run after the gap (how the cloud runs its layers), ms. */
  sixLayerDecodeMs: number;
}

/** Time layer 0 of `model` (prefill 32 tokens, decode at context 64) with `gapMs` idle before each timed run. */
export async function measureAfterIdle(model: LoadedModel, gapMs: number, opts: { reps?: number; memoryBytes?: number } = {}): Promise<IdleGapMeasurement> {
  if (!(gapMs >= 0 && gapMs <= 1000)) throw new RangeError(`gapMs must be in [0, 1000] (got ${gapMs})`);
  const reps = opts.reps ?? 9;
  const c = model.config;
  const layer = await StageRunner.create(c, model.weights, { embed: false, start: 0, end: 1, head: false });
  const six = await StageRunner.create(c, model.weights, { embed: false, start: 0, end: Math.min(6, c.numLayers), head: false });
  const embed = await StageRunner.create(c, model.weights, { embed: true, start: 0, end: 0, head: false });
  const hidden = (n: number) => Float32Array.from({ length: n * c.hiddenSize }, (_, i) => Math.sin(i * 0.37));
  const pre: number[] = [], dec: number[] = [], dec6: number[] = [], ov: number[] = [];
  const timed = async (run: () => Promise<unknown>, into: number[] | null) => {
    if (gapMs > 0) await sleep(gapMs);
    const t = performance.now();
    await run();
    into?.push(performance.now() - t);
  };
  try {
    for (let r = 0; r < reps + 1; r++) {
      const keep = r > 0; // the first repetition warms the sessions up
      layer.openSession('m'); six.openSession('m');
      await timed(() => layer.forward('m', { hidden: hidden(PREFILL_TOKENS) }), keep ? pre : null);
      await layer.forward('m', { hidden: hidden(DECODE_CONTEXT - PREFILL_TOKENS) });
      await six.forward('m', { hidden: hidden(DECODE_CONTEXT) });
      await timed(() => layer.forward('m', { hidden: hidden(1) }), keep ? dec : null);
      await timed(() => six.forward('m', { hidden: hidden(1) }), keep ? dec6 : null);
      await timed(() => embed.forward('m', { ids: [1] }), keep ? ov : null);
      layer.dropSession('m'); six.dropSession('m');
    }
  } finally {
    await Promise.all([layer.release(), six.release(), embed.release()]);
  }
  const ref = model.manifest.layers[0];
  const decodeMs = median(dec), prefillMs = median(pre);
  // A near-empty run cannot cost more than a layer; on a noisy machine keep it just below.
  const overhead = Math.min(median(ov), 0.95 * Math.min(decodeMs, prefillMs));
  return {
    memoryBytes: opts.memoryBytes ?? 1 << 30,
    reference: { flopsPerToken: ref.flopsPerToken, flopsPerTokenPerContext: ref.flopsPerTokenPerContext, bytes: ref.bytes },
    prefillTokens: PREFILL_TOKENS, prefillMsPerLayer: prefillMs,
    decodeContext: DECODE_CONTEXT, decodeMsPerLayer: decodeMs,
    overheadMsPerLayer: overhead,
    label: `${model.name} layer 0, onnxruntime CPU, ${gapMs} ms idle before each run`,
    gapMs, sixLayerDecodeMs: median(dec6),
  };
}
