import { ort, createSession, floatTensor, int64Tensor } from './ort.ts';
import { buildStageGraph, pastKey, pastValue, presentKey, presentValue, stageName, type StageSpec } from '../model/stage-graphs.ts';
import type { ModelConfig } from '../model/config.ts';
import type { ModelWeights } from '../model/weights.ts';
import { ContextOverflowError, ShapeMismatchError, UnknownSessionError } from './errors.ts';

/** Per-session KV cache of one stage: K (after RoPE) and V per layer, [Hkv, P, hd]. */
export interface StageKv {
  length: number;
  k: ort.Tensor[];
  v: ort.Tensor[];
}

export interface StageInput {
  /** Token ids (embedding stages). */
  ids?: ArrayLike<number>;
  /** Hidden rows [rows, d] (other stages). */
  hidden?: Float32Array;
}

export interface StageOutput {
  rows: number;
  hidden?: Float32Array;
  /** Logits [logitRows, vocab] (head stages). */
  logits?: Float32Array;
  logitRows?: number;
}

/**
 * One stage (embedding?, layers [start, end), head?) as an onnxruntime session, holding a KV cache
 * per generation session. This is what a trusted device or the cloud peer runs for its share.
 */
export class StageRunner {
  private readonly kv = new Map<string, StageKv>();

  private constructor(readonly config: ModelConfig, readonly spec: StageSpec, private readonly session: ort.InferenceSession) {}

  static async create(config: ModelConfig, weights: ModelWeights, spec: StageSpec): Promise<StageRunner> {
    return new StageRunner(config, spec, await createSession(buildStageGraph(config, weights, spec)));
  }

  get name(): string {
    return stageName(this.spec);
  }

  get numLayers(): number {
    return this.spec.end - this.spec.start;
  }

  hasSession(id: string): boolean {
    return this.kv.has(id);
  }

  sessionLength(id: string): number {
    return this.kv.get(id)?.length ?? 0;
  }

  /** Start (or restart) a session with an empty cache. */
  openSession(id: string): void {
    const { numKvHeads: Hkv, headDim: hd } = this.config;
    const empty = () => floatTensor(new Float32Array(0), [Hkv, 0, hd]);
    this.kv.set(id, {
      length: 0,
      k: Array.from({ length: this.numLayers }, empty),
      v: Array.from({ length: this.numLayers }, empty),
    });
  }

  /** Install a KV cache built elsewhere (SCX key sharing: the cloud's unpermuted K/V). */
  setSessionKv(id: string, length: number, k: Float32Array[], v: Float32Array[]): void {
    const { numKvHeads: Hkv, headDim: hd } = this.config;
    if (k.length !== this.numLayers || v.length !== this.numLayers) throw new ShapeMismatchError(`KV for ${k.length} layers given to a stage of ${this.numLayers}`);
    for (const t of [...k, ...v]) if (t.length !== Hkv * length * hd) throw new ShapeMismatchError(`KV tensor of ${t.length} values, expected ${Hkv}x${length}x${hd}`);
    this.kv.set(id, { length, k: k.map((t) => floatTensor(t, [Hkv, length, hd])), v: v.map((t) => floatTensor(t, [Hkv, length, hd])) });
  }

  /** Read a session's cache (tests and statelessness audits). */
  sessionKv(id: string): StageKv | undefined {
    return this.kv.get(id);
  }

  dropSession(id: string): boolean {
    const s = this.kv.get(id);
    if (s) for (const t of [...s.k, ...s.v]) (t.data as Float32Array).fill(0);
    return this.kv.delete(id);
  }

  sessions(): string[] {
    return [...this.kv.keys()];
  }

  /**
   * Run `rows` new positions through the stage, appending to the session's KV cache.
   * `logitsFrom` selects the first row whose logits a head stage returns (default: last row only).
   */
  async forward(id: string, input: StageInput, opts: { logitsFrom?: number } = {}): Promise<StageOutput> {
    const c = this.config;
    let state = this.kv.get(id);
    if (!state) {
      if (this.numLayers > 0) throw new UnknownSessionError(id);
      state = { length: 0, k: [], v: [] };
    }
    const feeds: Record<string, ort.Tensor> = {};
    let rows: number;
    if (this.spec.embed) {
      if (!input.ids) throw new ShapeMismatchError(`stage ${this.name} takes token ids`);
      rows = input.ids.length;
      for (let i = 0; i < rows; i++) {
        const t = input.ids[i];
        if (!Number.isInteger(t) || t < 0 || t >= c.vocabSize) throw new ShapeMismatchError(`token id ${t} outside the vocabulary [0, ${c.vocabSize})`);
      }
      feeds.ids = int64Tensor(input.ids);
    } else {
      if (!input.hidden) throw new ShapeMismatchError(`stage ${this.name} takes hidden rows`);
      if (input.hidden.length % c.hiddenSize !== 0 || input.hidden.length === 0) {
        throw new ShapeMismatchError(`hidden of ${input.hidden.length} values is not a whole number of ${c.hiddenSize}-wide rows`);
      }
      rows = input.hidden.length / c.hiddenSize;
      feeds.hidden = floatTensor(input.hidden, [rows, c.hiddenSize]);
    }
    if (rows === 0) throw new ShapeMismatchError('no rows to run');
    if (this.numLayers > 0 && state.length + rows > c.maxPositionEmbeddings) {
      throw new ContextOverflowError(`context of ${state.length + rows} tokens exceeds the model's ${c.maxPositionEmbeddings}`);
    }
    for (let i = 0; i < this.numLayers; i++) {
      const l = this.spec.start + i;
      feeds[pastKey(l)] = state.k[i];
      feeds[pastValue(l)] = state.v[i];
    }
    if (this.spec.head) feeds.logits_from = int64Tensor([opts.logitsFrom ?? rows - 1]);
    const out = await this.session.run(feeds);
    for (let i = 0; i < this.numLayers; i++) {
      const l = this.spec.start + i;
      state.k[i] = out[presentKey(l)];
      state.v[i] = out[presentValue(l)];
    }
    state.length += this.numLayers > 0 ? rows : 0;
    if (this.spec.head) {
      const logits = out.logits.data as Float32Array;
      return { rows, logits, logitRows: logits.length / c.vocabSize };
    }
    return { rows, hidden: out.hidden_out.data as Float32Array };
  }

  async release(): Promise<void> {
    for (const id of [...this.kv.keys()]) this.dropSession(id);
    await this.session.release();
  }
}
