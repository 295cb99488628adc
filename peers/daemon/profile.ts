import { freemem } from 'node:os';
import type { LoadedModel } from '../../runtime/model/index.ts';
import { StageRunner } from '../../runtime/engine/stage-runner.ts';
import { loadOrMeasureProfile, type CachedProfile } from '../../runtime/scheduler/profile.ts';
import type { Measured } from '../../runtime/scheduler/types.ts';
import { median } from '../../runtime/bench/report.ts';

const PREFILL_TOKENS = 32, DECODE_CONTEXT = 64, REPS = 5;
export const PROFILE_MAX_AGE_MS = 24 * 3600_000;

/** Time one decoder layer of the served model: prefill of 32 tokens and a decode step at context 64. */
export async function measureDevice(model: Pick<LoadedModel, 'config' | 'weights' | 'manifest' | 'name'>, memoryBytes?: number): Promise<Measured> {
  const c = model.config;
  const layer = await StageRunner.create(c, model.weights, { embed: false, start: 0, end: 1, head: false });
  const hidden = (n: number) => Float32Array.from({ length: n * c.hiddenSize }, (_, i) => Math.sin(i * 0.37));
  const pre: number[] = [], dec: number[] = [];
  for (let r = 0; r < REPS + 1; r++) {
    layer.openSession('m');
    let t = performance.now();
    await layer.forward('m', { hidden: hidden(PREFILL_TOKENS) });
    if (r > 0) pre.push(performance.now() - t);
    await layer.forward('m', { hidden: hidden(DECODE_CONTEXT - PREFILL_TOKENS) });
    t = performance.now();
    await layer.forward('m', { hidden: hidden(1) });
    if (r > 0) dec.push(performance.now() - t);
    layer.dropSession('m');
  }
  await layer.release();
  const ref = model.manifest.layers[0];
  return {
    memoryBytes: memoryBytes ?? Math.floor(freemem() * 0.8),
    reference: { flopsPerToken: ref.flopsPerToken, flopsPerTokenPerContext: ref.flopsPerTokenPerContext, bytes: ref.bytes },
    prefillTokens: PREFILL_TOKENS, prefillMsPerLayer: median(pre),
    decodeContext: DECODE_CONTEXT, decodeMsPerLayer: median(dec),
    label: `${model.name} layer 0, onnxruntime CPU`,
  };
}

export function deviceMeasurement(home: string, model: Pick<LoadedModel, 'config' | 'weights' | 'manifest' | 'name'>, memoryBytes?: number): Promise<CachedProfile> {
  return loadOrMeasureProfile(home, () => measureDevice(model, memoryBytes), PROFILE_MAX_AGE_MS);
}
