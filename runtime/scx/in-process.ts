import type { LoadedModel } from '../model/index.ts';
import { SubLayerOps } from '../engine/sublayer-ops.ts';
import { LocalStageHost, StageServer } from '../engine/stage-service.ts';
import { StageChainPath } from './trusted-path.ts';
import { ScxCloud } from './cloud.ts';
import { ScxCoordinator, type Mode, type ScxOptions } from './coordinator.ts';
import type { Transcript } from './transcript.ts';

export interface RunConfig {
  mode: Mode;
  /** Head layers (default 1) and tail layers (default 1) kept on trusted devices. */
  h?: number;
  t?: number;
  scx?: ScxOptions;
  seed?: Uint8Array;
  session?: string;
}

/**
 * Every role in one process: trusted stages, the coordinator and an in-process cloud peer that speaks
 * the same messages as the libp2p one. Used by tests, the simulator, the attack harness and the CLI
 * without daemons.
 */
export class InProcessRuntime {
  readonly stages: StageServer;
  private readonly host: LocalStageHost;
  readonly cloud: ScxCloud;
  readonly ops: SubLayerOps;

  constructor(readonly model: LoadedModel, opts: { capture?: Transcript } = {}) {
    this.cloud = new ScxCloud(model, { capture: opts.capture });
    this.ops = new SubLayerOps(model.config, model.weights);
    this.stages = new StageServer(model.config, model.weights, this.cloud.modelName);
    this.host = new LocalStageHost(this.stages);
  }

  async forwarder(run: RunConfig): Promise<ScxCoordinator> {
    const L = this.model.config.numLayers;
    const h = run.mode === 'local' ? L : run.h ?? 1;
    const t = run.mode === 'local' ? 0 : run.t ?? 1;
    const trusted = new StageChainPath(
      [{ stage: { embed: true, start: 0, end: h, head: false }, host: this.host }],
      [{ stage: { embed: false, start: L - t, end: L, head: true }, host: this.host }]);
    if (run.mode === 'scx') await this.ops.warm(['attn_norm', 'qkv'], Array.from({ length: L - t - h }, (_, i) => h + i));
    return new ScxCoordinator({
      config: this.model.config, weights: this.model.weights, modelName: this.cloud.modelName,
      mode: run.mode, h: run.mode === 'local' ? 0 : h, t, trusted,
      cloud: run.mode === 'local' ? undefined : this.cloud.transport(),
      ops: this.ops, scx: run.scx, seed: run.seed, session: run.session,
    });
  }

  async release(): Promise<void> {
    await this.cloud.release();
    await this.ops.release();
    await this.stages.release();
  }
}
