import type { LoadedModel } from '../../runtime/model/index.ts';
import { InProcessRuntime, type RunConfig } from '../../runtime/scx/in-process.ts';
import { Transcript } from '../../runtime/scx/transcript.ts';
import { generateTokens } from '../../runtime/engine/generate.ts';
import type { Truth } from './score.ts';

/**
 * Real sessions for the harness: every prompt runs through the runtime's own in-process SCX stack
 * (coordinator, trusted stages, cloud peer with capture on), greedy, and the cloud's transcript
 * comes back with the truth the scorer needs. `hush attack` can be this plus runAttacks.
 */
export interface RecordOptions {
  run: Omit<RunConfig, 'session' | 'seed'>;
  /** Tokens to generate per prompt, at least 1 (the first comes from the prefill; 1 = prefill only). */
  generate: number;
  /** Session ids (default p0, p1, ...). */
  sessionIds?: string[];
  /** Per-session seeds, only to replay sessions or to test key reuse; fresh CSPRNG seeds by default. */
  seeds?: (Uint8Array | undefined)[];
  /**
   * Called with every sampled token's logits (index 0 = the prefill's last-row logits), e.g. to
   * measure the utility cost of a setting against a plaintext run. Not part of the transcript.
   */
  onToken?: (session: string, index: number, id: number, logits: Float32Array) => void;
}

export async function recordSessions(model: LoadedModel, prompts: number[][], o: RecordOptions): Promise<{ transcript: Transcript; truth: Truth }> {
  if (!(Number.isInteger(o.generate) && o.generate >= 1)) throw new RangeError(`recordSessions: generate must be an integer >= 1 (the prefill samples the first token), got ${o.generate}`);
  const L = model.config.numLayers;
  const h = o.run.h ?? 1, t = o.run.t ?? 1;
  const scx = o.run.scx ?? {};
  const decoys = scx.decoys ?? 0;
  const tx = new Transcript({
    model: model.name, mode: o.run.mode,
    meta: { h, t, numLayers: L, noise: scx.noise ?? 'none', noiseScale: scx.noiseScale ?? 0, decoys },
  });
  const truth: Truth = { sessions: [] };
  const rt = new InProcessRuntime(model, { capture: tx });
  try {
    for (let i = 0; i < prompts.length; i++) {
      const session = o.sessionIds?.[i] ?? `p${i}`;
      const fw = await rt.forwarder({ ...o.run, session, seed: o.seeds?.[i] });
      const generatedIds: number[] = [];
      for await (const tok of generateTokens(fw, prompts[i], { maxTokens: o.generate, temperature: 0 })) {
        generatedIds.push(tok.id);
        o.onToken?.(session, tok.index, tok.id, tok.logits);
      }
      truth.sessions.push({ session, promptIds: prompts[i], generatedIds });
    }
  } finally {
    await rt.release();
  }
  return { transcript: tx, truth };
}
