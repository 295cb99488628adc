import { ort, createSession, floatTensor } from './ort.ts';
import { buildSubLayerGraph, type SubLayerOp } from '../model/stage-graphs.ts';
import type { ModelConfig } from '../model/config.ts';
import type { ModelWeights } from '../model/weights.ts';
import { ShapeMismatchError } from './errors.ts';

/**
 * The sub-layer operations SCX splits a layer into, as onnxruntime sessions built on first use.
 * The cloud runs qkv / attention / post for its layers; the coordinator runs attn_norm.
 */
export class SubLayerOps {
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();

  constructor(readonly config: ModelConfig, private readonly weights: ModelWeights) {}

  private session(op: SubLayerOp, layer: number): Promise<ort.InferenceSession> {
    const key = op === 'attention' ? 'attention' : `${op}:${layer}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = createSession(buildSubLayerGraph(this.config, this.weights, op, op === 'attention' ? 0 : layer));
      this.sessions.set(key, s);
    }
    return s;
  }

  /** Build every session these layers will need now, so the first request pays no build cost. */
  async warm(ops: SubLayerOp[], layers: number[]): Promise<void> {
    await Promise.all(ops.flatMap((op) => layers.map((l) => this.session(op, l))));
  }

  private rowsOf(x: Float32Array, width: number, what: string): number {
    if (x.length === 0 || x.length % width !== 0) throw new ShapeMismatchError(`${what}: ${x.length} values is not a whole number of ${width}-wide rows`);
    return x.length / width;
  }

  async attnNorm(layer: number, hidden: Float32Array): Promise<Float32Array> {
    const d = this.config.hiddenSize;
    const rows = this.rowsOf(hidden, d, 'attn_norm hidden');
    const out = await (await this.session('attn_norm', layer)).run({ hidden: floatTensor(hidden, [rows, d]) });
    return out.out.data as Float32Array;
  }

  async qkv(layer: number, x: Float32Array): Promise<Float32Array> {
    const d = this.config.hiddenSize;
    const rows = this.rowsOf(x, d, 'qkv x');
    const out = await (await this.session('qkv', layer)).run({ x: floatTensor(x, [rows, d]) });
    return out.out.data as Float32Array;
  }

  /** q [H,N,hd], k/v [Hkv,N,hd] -> o [H,N,hd] (causal, positions 0..N-1). */
  async attention(q: Float32Array, k: Float32Array, v: Float32Array, n: number): Promise<Float32Array> {
    const { numHeads: H, numKvHeads: Hkv, headDim: hd } = this.config;
    if (q.length !== H * n * hd || k.length !== Hkv * n * hd || v.length !== Hkv * n * hd) {
      throw new ShapeMismatchError(`attention: q/k/v of ${q.length}/${k.length}/${v.length} values do not fit N=${n}`);
    }
    const out = await (await this.session('attention', 0)).run({
      q: floatTensor(q, [H, n, hd]), k: floatTensor(k, [Hkv, n, hd]), v: floatTensor(v, [Hkv, n, hd]),
    });
    return out.out.data as Float32Array;
  }

  /** o [N, H·hd], hidden [N, d] -> next hidden [N, d]. */
  async post(layer: number, o: Float32Array, hidden: Float32Array): Promise<Float32Array> {
    const { hiddenSize: d, numHeads: H, headDim: hd } = this.config;
    const n = this.rowsOf(hidden, d, 'post hidden');
    if (o.length !== n * H * hd) throw new ShapeMismatchError(`post: o of ${o.length} values does not fit N=${n}`);
    const out = await (await this.session('post', layer)).run({ o: floatTensor(o, [n, H * hd]), hidden: floatTensor(hidden, [n, d]) });
    return out.out.data as Float32Array;
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}
