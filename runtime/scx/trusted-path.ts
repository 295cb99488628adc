import type { StageHost } from '../engine/stage-service.ts';
import type { StageSpec } from '../model/stage-graphs.ts';
import type { TrustedPath } from './coordinator.ts';

/** A stage placed on a host: the unit of a plan's trusted part. */
export interface PlacedStage {
  stage: StageSpec;
  host: StageHost;
}

/**
 * The trusted part of a plan as a chain of placed stages: `head` runs embedding + layers [0, h),
 * `tail` runs layers [L-t, L) + final norm + LM head, each possibly spread over several devices.
 * Stages open lazily on first use of a session.
 */
export class StageChainPath implements TrustedPath {
  private readonly opened = new Map<string, Set<number>>();

  constructor(readonly headStages: PlacedStage[], readonly tailStages: PlacedStage[]) {
    if (!headStages[0]?.stage.embed) throw new Error('the first head stage must hold the embedding');
    if (!tailStages[tailStages.length - 1]?.stage.head) throw new Error('the last tail stage must hold the LM head');
  }

  private async run(session: string, stages: PlacedStage[], offset: number, input: { ids?: number[]; hidden?: Float32Array }, signal?: AbortSignal) {
    let set = this.opened.get(session);
    if (!set) this.opened.set(session, (set = new Set()));
    let cur = input;
    let out: { hidden?: Float32Array; logits?: Float32Array } = {};
    for (let i = 0; i < stages.length; i++) {
      const { stage, host } = stages[i];
      if (!set.has(offset + i)) { await host.open(session, stage, signal); set.add(offset + i); }
      out = await host.forward(session, stage, cur, signal);
      cur = { hidden: out.hidden };
    }
    return out;
  }

  async head(session: string, ids: number[], signal?: AbortSignal): Promise<Float32Array> {
    return (await this.run(session, this.headStages, 0, { ids }, signal)).hidden!;
  }

  async tail(session: string, hidden: Float32Array, signal?: AbortSignal): Promise<Float32Array> {
    return (await this.run(session, this.tailStages, this.headStages.length, { hidden }, signal)).logits!;
  }

  async drop(session: string): Promise<void> {
    this.opened.delete(session);
    const hosts = new Set([...this.headStages, ...this.tailStages].map((p) => p.host));
    await Promise.all([...hosts].map((h) => h.drop(session)));
  }

  /** Who runs what, for reports. */
  describe(): { host: string; stage: StageSpec }[] {
    return [...this.headStages, ...this.tailStages].map((p) => ({ host: p.host.label, stage: p.stage }));
  }
}
