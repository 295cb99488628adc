import { randomUUID } from 'node:crypto';
import { StageRunner } from './stage-runner.ts';
import type { TokenForwarder } from './generate.ts';
import type { StageSpec } from '../model/stage-graphs.ts';
import type { LoadedModel } from '../model/index.ts';
import type { ModelConfig } from '../model/config.ts';

/** Cut [0, L) at the given layer indices into stages; the first embeds, the last has the head. */
export function cutStages(numLayers: number, cuts: number[]): StageSpec[] {
  const points = [...new Set(cuts)].filter((c) => c > 0 && c < numLayers).sort((a, b) => a - b);
  const bounds = [0, ...points, numLayers];
  return bounds.slice(0, -1).map((start, i) => ({ embed: i === 0, start, end: bounds[i + 1], head: i === bounds.length - 2 }));
}

/**
 * All stages in one process, chained. With one stage holding the whole model this is the reference
 * every other mode is compared with; with several it is the `local` mode's in-process form.
 */
export class InProcessPipeline {
  private constructor(readonly config: ModelConfig, readonly stages: StageRunner[]) {}

  static async create(model: Pick<LoadedModel, 'config' | 'weights'>, specs: StageSpec[] = cutStages(model.config.numLayers, [])): Promise<InProcessPipeline> {
    const stages: StageRunner[] = [];
    for (const s of specs) stages.push(await StageRunner.create(model.config, model.weights, s));
    return new InProcessPipeline(model.config, stages);
  }

  /** Run rows through every stage; returns logits rows from `logitsFrom` (default: last row). */
  async forward(session: string, ids: number[], opts: { logitsFrom?: number } = {}): Promise<Float32Array> {
    let hidden: Float32Array | undefined;
    for (const st of this.stages) {
      if (!st.hasSession(session) && st.numLayers > 0) st.openSession(session);
      const out = await st.forward(session, st.spec.embed ? { ids } : { hidden }, opts);
      if (out.logits) return out.logits;
      hidden = out.hidden;
    }
    throw new Error('pipeline has no head stage');
  }

  dropSession(session: string): void {
    for (const st of this.stages) st.dropSession(session);
  }

  /** A TokenForwarder over a fresh session of this pipeline. */
  forwarder(session: string = randomUUID()): TokenForwarder {
    return {
      prefill: (ids) => this.forward(session, ids),
      decode: (id) => this.forward(session, [id]),
      close: async () => this.dropSession(session),
    };
  }

  async release(): Promise<void> {
    for (const s of this.stages) await s.release();
  }
}
