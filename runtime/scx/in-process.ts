import type { LoadedModel } from '../model/index.ts';
import { StageRunner } from '../engine/stage-runner.ts';
import { SubLayerOps } from '../engine/sublayer-ops.ts';
import { ScxCloud } from './cloud.ts';
import { ScxCoordinator, type Mode, type ScxOptions, type TrustedPath } from './coordinator.ts';
import type { Transcript } from './transcript.ts';

/** Trusted head and tail stages as local stage runners. */
export class LocalTrustedPath implements TrustedPath {
  constructor(private readonly headStage: StageRunner, private readonly tailStage: StageRunner) {}

  async head(session: string, ids: number[]): Promise<Float32Array> {
    if (this.headStage.numLayers > 0 && !this.headStage.hasSession(session)) this.headStage.openSession(session);
    return (await this.headStage.forward(session, { ids })).hidden!;
  }

  async tail(session: string, hidden: Float32Array): Promise<Float32Array> {
    if (this.tailStage.numLayers > 0 && !this.tailStage.hasSession(session)) this.tailStage.openSession(session);
    return (await this.tailStage.forward(session, { hidden })).logits!;
  }

  async drop(session: string): Promise<void> {
    this.headStage.dropSession(session);
    this.tailStage.dropSession(session);
  }
}

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
  private readonly stages = new Map<string, Promise<StageRunner>>();
  readonly cloud: ScxCloud;
  readonly ops: SubLayerOps;

  constructor(readonly model: LoadedModel, opts: { capture?: Transcript } = {}) {
    this.cloud = new ScxCloud(model, { capture: opts.capture });
    this.ops = new SubLayerOps(model.config, model.weights);
  }

  private stage(embed: boolean, start: number, end: number, head: boolean): Promise<StageRunner> {
    const key = `${embed}-${start}-${end}-${head}`;
    let s = this.stages.get(key);
    if (!s) {
      s = StageRunner.create(this.model.config, this.model.weights, { embed, start, end, head });
      this.stages.set(key, s);
    }
    return s;
  }

  async forwarder(run: RunConfig): Promise<ScxCoordinator> {
    const L = this.model.config.numLayers;
    const h = run.mode === 'local' ? L : run.h ?? 1;
    const t = run.mode === 'local' ? 0 : run.t ?? 1;
    const trusted = new LocalTrustedPath(await this.stage(true, 0, h, false), await this.stage(false, L - t, L, true));
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
    for (const s of this.stages.values()) await (await s).release();
  }
}
