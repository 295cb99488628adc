import { GraphBuilder } from './onnx-graph.ts';
import { ropeTables } from './rope.ts';
import type { ModelConfig } from './config.ts';
import type { ModelWeights } from './weights.ts';

/**
 * ONNX graphs for Hush's stages and for the sub-layer operations SCX splits a layer into.
 * A layer is built from the same four pieces in both cases (norm+QKV, RoPE, attention core,
 * O-projection+MLP), so a stage and the SCX exchange compute the same function.
 *
 * Tensor layout (no batch dimension; one request per session):
 *   hidden  [S, d]                 rows in sequence order
 *   q       [H, S, hd], k/v [Hkv, S, hd]   head-major, RoPE applied to q and k
 *   KV cache per layer [Hkv, P, hd] (k after RoPE)
 */

/** A stage: optional embedding, decoder layers [start, end), optional final norm + LM head. */
export interface StageSpec {
  embed: boolean;
  start: number;
  end: number;
  head: boolean;
}

export function stageName(s: StageSpec): string {
  return `${s.embed ? 'embed+' : ''}layers[${s.start},${s.end})${s.head ? '+head' : ''}`;
}

const NEG = -1e9; // large finite negative: exp underflows to exactly 0 without inf arithmetic

class LayerPieces {
  readonly H: number; readonly Hkv: number; readonly hd: number; readonly d: number;
  constructor(readonly g: GraphBuilder, readonly c: ModelConfig, readonly w: ModelWeights) {
    this.H = c.numHeads; this.Hkv = c.numKvHeads; this.hd = c.headDim; this.d = c.hiddenSize;
  }

  rmsNorm(x: string, weightName: string): string {
    const { g } = this;
    const w = g.float(weightName, this.w.get(weightName), [this.d]);
    const ms = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 });
    const den = g.op('Sqrt', [g.op('Add', [ms, g.scalar(this.c.rmsNormEps)])]);
    return g.op('Mul', [g.op('Div', [x, den]), w]);
  }

  /** x [S, d] -> x·W_qkvᵀ (+ bias) [S, (H + 2Hkv)·hd]: the matmul the cloud runs in P1. */
  qkv(x: string, l: number): string {
    const { g } = this;
    const name = `l${l}.wqkv`;
    const p = `model.layers.${l}.self_attn.`;
    const rows = (this.H + 2 * this.Hkv) * this.hd;
    const W = concatRows([this.w.get(p + 'q_proj.weight'), this.w.get(p + 'k_proj.weight'), this.w.get(p + 'v_proj.weight')]);
    const inputs = [x, g.float(name, W, [rows, this.d])];
    if (this.c.qkvBias) {
      inputs.push(g.float(`l${l}.bqkv`, concatRows([this.w.get(p + 'q_proj.bias'), this.w.get(p + 'k_proj.bias'), this.w.get(p + 'v_proj.bias')]), [rows]));
    }
    return g.op('Gemm', inputs, { transB: 1 });
  }

  /** [S, heads·hd] -> [heads, S, hd] */
  toHeads(x: string, heads: number): string {
    const { g } = this;
    return g.op('Transpose', [g.op('Reshape', [x, g.int64(`shape_s_${heads}_${this.hd}`, [-1, heads, this.hd])])], { perm: [1, 0, 2] });
  }

  rope(x: string, cosRows: string, sinRows: string): string {
    const { g } = this;
    const half = this.hd / 2;
    const swapIdx = g.int64('rope_swap', Array.from({ length: this.hd }, (_, i) => (i < half ? i + half : i - half)));
    const swapped = g.op('Gather', [x, swapIdx], { axis: 2 });
    return g.op('Add', [g.op('Mul', [x, cosRows]), g.op('Mul', [swapped, sinRows])]);
  }

  /** Causal attention core: q [H,S,hd], k/v [Hkv,T,hd], mask [S,T] -> o [H,S,hd]. */
  attention(q: string, k: string, v: string, mask: string): string {
    const { g, H, Hkv, hd } = this;
    const group = H / Hkv;
    // Query head h reads kv head floor(h / group): fold the group into the row axis instead of copying K/V.
    const qg = g.op('Reshape', [q, g.int64('shape_qg', [Hkv, -1, hd])]);
    const scores = g.op('MatMul', [qg, g.op('Transpose', [k], { perm: [0, 2, 1] })]);
    const scaled = g.op('Mul', [scores, g.scalar(1 / Math.sqrt(hd))]);
    const maskG = group === 1 ? mask : g.op('Tile', [mask, g.int64(`tile_${group}`, [group, 1])]);
    const probs = g.op('Softmax', [g.op('Add', [scaled, maskG])], { axis: -1 });
    const o = g.op('MatMul', [probs, v]);
    return g.op('Reshape', [o, g.int64('shape_o', [H, -1, hd])]);
  }

  /** o [H,S,hd] -> [S, H·hd] */
  fromHeads(o: string): string {
    const { g } = this;
    return g.op('Reshape', [g.op('Transpose', [o], { perm: [1, 0, 2] }), g.int64('shape_flat_o', [-1, this.H * this.hd])]);
  }

  /** h2 = h + o·Woᵀ; h3 = h2 + MLP(RMSNorm(h2)): what the cloud runs in P3. */
  post(oFlat: string, h: string, l: number): string {
    const { g } = this;
    const p = `model.layers.${l}.`;
    const wo = g.float(p + 'self_attn.o_proj.weight', this.w.get(p + 'self_attn.o_proj.weight'), [this.d, this.H * this.hd]);
    const h2 = g.op('Add', [h, g.op('Gemm', [oFlat, wo], { transB: 1 })]);
    const x2 = this.rmsNorm(h2, p + 'post_attention_layernorm.weight');
    const ffn = this.c.intermediateSize;
    const wgu = g.float(`l${l}.wgateup`, concatRows([this.w.get(p + 'mlp.gate_proj.weight'), this.w.get(p + 'mlp.up_proj.weight')]), [2 * ffn, this.d]);
    const [gate, up] = g.opN('Split', [g.op('Gemm', [x2, wgu], { transB: 1 }), g.int64(`split_ffn`, [ffn, ffn])], 2, { axis: 1 });
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
    const wd = g.float(p + 'mlp.down_proj.weight', this.w.get(p + 'mlp.down_proj.weight'), [this.d, ffn]);
    return g.op('Add', [h2, g.op('Gemm', [act, wd], { transB: 1 })]);
  }

  splitQkv(qkv: string): [string, string, string] {
    const { g, H, Hkv, hd } = this;
    const [q, k, v] = g.opN('Split', [qkv, g.int64('split_qkv', [H * hd, Hkv * hd, Hkv * hd])], 3, { axis: 1 });
    return [this.toHeads(q, H), this.toHeads(k, Hkv), this.toHeads(v, Hkv)];
  }

  /** Positions [S] = past .. past+S-1 and the causal mask [S, past+S]. */
  positionsAndMask(pastK: string, hidden: string): { positions: string; mask: string; cos: string; sin: string } {
    const { g } = this;
    const toScalar = (x: string) => g.op('Reshape', [x, g.int64('shape_scalar', [], [0])]);
    const past = toScalar(g.op('Shape', [pastK], { start: 1, end: 2 }));
    const rows = toScalar(g.op('Shape', [hidden], { start: 0, end: 1 }));
    const total = g.op('Add', [past, rows]);
    const one = g.int64('i_one', [1], []);
    const zero = g.int64('i_zero', [0], []);
    const positions = g.op('Range', [past, total, one]);
    const cols = g.op('Range', [zero, total, one]);
    const allowed = g.op('LessOrEqual', [g.op('Unsqueeze', [cols, g.int64('axes0', [0])]), g.op('Unsqueeze', [positions, g.int64('axes1', [1])])]);
    const mask = g.op('Where', [allowed, g.scalar(0), g.scalar(NEG)]);
    const tables = ropeTables(this.c, this.c.maxPositionEmbeddings);
    const cosT = g.float('rope_cos', tables.cos, [this.c.maxPositionEmbeddings, this.hd]);
    const sinT = g.float('rope_sin', tables.sinSigned, [this.c.maxPositionEmbeddings, this.hd]);
    return { positions, mask, cos: g.op('Gather', [cosT, positions], { axis: 0 }), sin: g.op('Gather', [sinT, positions], { axis: 0 }) };
  }

  layer(h: string, l: number, pm: { mask: string; cos: string; sin: string }, pastK: string, pastV: string): { h: string; k: string; v: string } {
    const { g } = this;
    const x = this.rmsNorm(h, `model.layers.${l}.input_layernorm.weight`);
    const [q, k, v] = this.splitQkv(this.qkv(x, l));
    const qr = this.rope(q, pm.cos, pm.sin);
    const kr = this.rope(k, pm.cos, pm.sin);
    const presentK = g.op('Concat', [pastK, kr], { axis: 1 });
    const presentV = g.op('Concat', [pastV, v], { axis: 1 });
    const o = this.attention(qr, presentK, presentV, pm.mask);
    return { h: this.post(this.fromHeads(o), h, l), k: presentK, v: presentV };
  }
}

function concatRows(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** Graph input/output names of a stage. */
export const pastKey = (l: number) => `past_k_${l}`;
export const pastValue = (l: number) => `past_v_${l}`;
export const presentKey = (l: number) => `present_k_${l}`;
export const presentValue = (l: number) => `present_v_${l}`;

/**
 * A stage graph. Inputs: `ids` int64 [S] (embed) or `hidden` [S, d]; past_k_l/past_v_l [Hkv, P, hd]
 * for each layer; `logits_from` int64 [1] (head: first row to compute logits for).
 * Outputs: `logits` [S', vocab] (head) or `hidden_out` [S, d]; present_k_l/present_v_l [Hkv, P+S, hd].
 */
export function buildStageGraph(c: ModelConfig, w: ModelWeights, s: StageSpec): Uint8Array {
  if (s.start < 0 || s.end > c.numLayers || s.start > s.end) throw new RangeError(`stage ${stageName(s)} is outside [0, ${c.numLayers})`);
  const g = new GraphBuilder(stageName(s));
  const P = new LayerPieces(g, c, w);
  let h: string;
  if (s.embed) {
    const ids = g.input('ids', 'int64', ['S']);
    h = g.op('Gather', [g.float('model.embed_tokens.weight', w.get('model.embed_tokens.weight'), [c.vocabSize, c.hiddenSize]), ids], { axis: 0 });
  } else {
    h = g.input('hidden', 'float', ['S', c.hiddenSize]);
  }
  if (s.end > s.start) {
    for (let l = s.start; l < s.end; l++) {
      g.input(pastKey(l), 'float', [c.numKvHeads, 'P', c.headDim]);
      g.input(pastValue(l), 'float', [c.numKvHeads, 'P', c.headDim]);
    }
    const pm = P.positionsAndMask(pastKey(s.start), h);
    for (let l = s.start; l < s.end; l++) {
      const r = P.layer(h, l, pm, pastKey(l), pastValue(l));
      h = r.h;
      g.alias(r.k, presentKey(l));
      g.alias(r.v, presentValue(l));
      g.output(presentKey(l), 'float', [c.numKvHeads, 'T', c.headDim]);
      g.output(presentValue(l), 'float', [c.numKvHeads, 'T', c.headDim]);
    }
  }
  if (s.head) {
    const from = g.input('logits_from', 'int64', [1]);
    const rows = g.op('Slice', [h, from, g.int64('i_max', [2 ** 31 - 1]), g.int64('axes0', [0])]);
    const n = P.rmsNorm(rows, 'model.norm.weight');
    const lm = c.tieWordEmbeddings
      ? g.float('model.embed_tokens.weight', w.get('model.embed_tokens.weight'), [c.vocabSize, c.hiddenSize])
      : g.float('lm_head.weight', w.get('lm_head.weight'), [c.vocabSize, c.hiddenSize]);
    g.alias(g.op('Gemm', [n, lm], { transB: 1 }), 'logits');
    g.output('logits', 'float', ['S2', c.vocabSize]);
  } else {
    g.alias(h, 'hidden_out');
    g.output('hidden_out', 'float', ['S', c.hiddenSize]);
  }
  return g.encode();
}

export type SubLayerOp = 'attn_norm' | 'qkv' | 'attention' | 'post';

/**
 * The sub-layer operations SCX splits layer l into:
 *   attn_norm  hidden [S,d] -> x [S,d]                         (trusted: RMSNorm before P1)
 *   qkv        x [M,d] -> qkv [M,(H+2Hkv)·hd]                  (cloud, P1; also trusted noise compensation)
 *   attention  q [H,N,hd], k/v [Hkv,N,hd] -> o [H,N,hd]        (cloud, P2; causal, positions 0..N-1)
 *   post       o [N,H·hd], hidden [N,d] -> hidden_out [N,d]    (cloud, P3)
 */
export function buildSubLayerGraph(c: ModelConfig, w: ModelWeights, op: SubLayerOp, l: number): Uint8Array {
  const g = new GraphBuilder(`${op}_${l}`);
  const P = new LayerPieces(g, c, w);
  const d = c.hiddenSize, H = c.numHeads, Hkv = c.numKvHeads, hd = c.headDim;
  let out: string;
  let outDims: (number | string)[];
  if (op === 'attn_norm') {
    out = P.rmsNorm(g.input('hidden', 'float', ['S', d]), `model.layers.${l}.input_layernorm.weight`);
    outDims = ['S', d];
  } else if (op === 'qkv') {
    out = P.qkv(g.input('x', 'float', ['M', d]), l);
    outDims = ['M', (H + 2 * Hkv) * hd];
  } else if (op === 'attention') {
    const q = g.input('q', 'float', [H, 'N', hd]);
    const k = g.input('k', 'float', [Hkv, 'N', hd]);
    const v = g.input('v', 'float', [Hkv, 'N', hd]);
    // Positions 0..N-1: a prefill without past. Build the mask from k's length.
    const total = g.op('Reshape', [g.op('Shape', [k], { start: 1, end: 2 }), g.int64('shape_scalar', [], [0])]);
    const one = g.int64('i_one', [1], []);
    const pos = g.op('Range', [g.int64('i_zero', [0], []), total, one]);
    const mask = g.op('Where', [
      g.op('LessOrEqual', [g.op('Unsqueeze', [pos, g.int64('axes0', [0])]), g.op('Unsqueeze', [pos, g.int64('axes1', [1])])]),
      g.scalar(0), g.scalar(NEG)]);
    out = P.attention(q, k, v, mask);
    outDims = [H, 'N', hd];
  } else {
    out = P.post(g.input('o', 'float', ['N', H * hd]), g.input('hidden', 'float', ['N', d]), l);
    outDims = ['N', d];
  }
  g.alias(out, 'out');
  g.output('out', 'float', outDims);
  return g.encode();
}
