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
 *
 * Every variant in GraphOptions keeps these layouts at graph inputs and outputs (inside a stage the fused
 * attention ops may keep q/k/v sequence-major); they differ only in which onnxruntime kernels compute the
 * same function, to float rounding (test/engine-ops.test.ts; measurements in runtime/bench/ops.ts).
 */

/**
 * RMSNorm as standard ops (Mul/ReduceMean/Add/Sqrt/Div/Mul); as SimplifiedLayerNormalization (onnxruntime's,
 * default domain); as that plus com.microsoft SkipSimplifiedLayerNormalization fusing the residual add in front of
 * each norm; or as opset 23 RMSNormalization. 'skip' fuses only within a stage, so a cut changes which kernel
 * normalises the rows at the boundary: logits then differ across cuts by float rounding, where the others agree.
 */
export type RmsNormImpl = 'standard' | 'simplified' | 'skip' | 'onnx23';
/** RoPE as Gather/Mul/Add over precomputed full-width tables, as com.microsoft RotaryEmbedding, or as opset 23 RotaryEmbedding. */
export type RopeImpl = 'standard' | 'contrib' | 'onnx23';
/**
 * Attention as MatMul/Softmax with GQA folded into the row axis; as com.microsoft GroupQueryAttention (stage graphs
 * hand it the packed QKV and let it apply RoPE itself, so `rope` does not apply there; head sizes it cannot rotate
 * keep the standard attention, see gqaRotarySupported); or as opset 23 Attention.
 */
export type AttentionImpl = 'standard' | 'gqa' | 'onnx23';

export interface GraphOptions {
  rmsNorm: RmsNormImpl;
  rope: RopeImpl;
  attention: AttentionImpl;
}

/** The graphs as first written: standard ONNX ops only, opset 17. The reference every variant is tested against. */
export const STANDARD_GRAPH_OPTIONS: Readonly<GraphOptions> = Object.freeze({ rmsNorm: 'standard', rope: 'standard', attention: 'standard' });

/**
 * The fastest exact combination, measured by runtime/bench/ops.ts on the embedded model (2-core machine): opset 23
 * RMSNormalization + RotaryEmbedding + Attention, about 0.8-0.87x the standard graph's prefill+decode time and 0.75x
 * for the SCX attention op. GroupQueryAttention combinations measured within noise of it; standard ONNX ops won the
 * tie (portable, no head-size limit, and SCX's attention op is faster with Attention). 'skip' is not default: its
 * fused add makes logits depend on where stages are cut (1e-5 apart across cuts, where other variants agree).
 */
const FASTEST_GRAPH_OPTIONS: Readonly<GraphOptions> = Object.freeze({ rmsNorm: 'onnx23', rope: 'onnx23', attention: 'onnx23' });

/** A GraphOptions value (from code or from a `key=value,...` string) that names no known variant. */
export class GraphOptionsError extends Error {
  override name = 'GraphOptionsError';
}

const CHOICES: { [K in keyof GraphOptions]: readonly GraphOptions[K][] } = {
  rmsNorm: ['standard', 'simplified', 'skip', 'onnx23'],
  rope: ['standard', 'contrib', 'onnx23'],
  attention: ['standard', 'gqa', 'onnx23'],
};

export function checkGraphOptions(o: GraphOptions): GraphOptions {
  for (const key of Object.keys(CHOICES) as (keyof GraphOptions)[]) {
    if (!(CHOICES[key] as readonly string[]).includes(o[key])) {
      throw new GraphOptionsError(`graph option ${key}=${JSON.stringify(o[key])} is not one of ${CHOICES[key].join(', ')}`);
    }
  }
  return o;
}

/** `rmsNorm=skip,attention=gqa` (missing keys keep `base`) -> GraphOptions. */
export function parseGraphOptions(spec: string, base: GraphOptions = DEFAULT_GRAPH_OPTIONS): GraphOptions {
  const o: Record<string, string> = { ...base };
  for (const part of spec.split(/[,\s]+/).filter(Boolean)) {
    const [key, value, extra] = part.split('=');
    if (!(key in CHOICES) || value === undefined || extra !== undefined) {
      throw new GraphOptionsError(`graph option ${JSON.stringify(part)} is not key=value with key one of ${Object.keys(CHOICES).join(', ')}`);
    }
    o[key] = value;
  }
  return checkGraphOptions(o as unknown as GraphOptions);
}

/**
 * What StageRunner and SubLayerOps build: FASTEST_GRAPH_OPTIONS, or what HUSH_GRAPH_OPTIONS says (same syntax as
 * parseGraphOptions), an escape hatch should a fused kernel misbehave on some platform. Every option computes the
 * same function to float rounding (logits within 1e-5 relative, test/engine-ops.test.ts), so peers need not agree.
 */
export const DEFAULT_GRAPH_OPTIONS: Readonly<GraphOptions> = Object.freeze(defaultGraphOptions(globalThis.process?.env?.HUSH_GRAPH_OPTIONS));

function defaultGraphOptions(env: string | undefined): GraphOptions {
  try {
    return parseGraphOptions(env ?? '', FASTEST_GRAPH_OPTIONS);
  } catch (e) {
    throw new GraphOptionsError(`HUSH_GRAPH_OPTIONS: ${(e as Error).message}`);
  }
}

/** The default-domain opset a graph with these options needs: opset 23 ops force 23, else 17. */
export function graphOpset(o: GraphOptions): number {
  return o.rmsNorm === 'onnx23' || o.rope === 'onnx23' || o.attention === 'onnx23' ? 23 : 17;
}

export function graphOptionsName(o: GraphOptions): string {
  return `rmsNorm=${o.rmsNorm} rope=${o.rope} attention=${o.attention}`;
}

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

/**
 * The residual stream: `base` alone when materialised, or base + delta with the add still pending, so that
 * SkipSimplifiedLayerNormalization can fuse it into the norm that follows.
 */
interface Residual { base: string; delta?: string }

/** Positions, mask and RoPE inputs of a stage run, built on first use (each attention variant needs a different few). */
interface StagePositions {
  /** int64 [S]: past .. past+S-1 */
  positions(): string;
  /** float [S, past+S]: 0 where causal attention is allowed, NEG elsewhere */
  mask(): string;
  /** float [S, hd] rows of the full-width tables (standard RoPE) */
  cosRows(): string;
  sinRows(): string;
  /** int32 [1] = past+S-1 and int32 scalar past+S (GroupQueryAttention's seqlens_k and total_sequence_length) */
  seqlensK(): string;
  totalLength(): string;
}

class LayerPieces {
  readonly H: number; readonly Hkv: number; readonly hd: number; readonly d: number;
  constructor(readonly g: GraphBuilder, readonly c: ModelConfig, readonly w: ModelWeights, readonly o: GraphOptions) {
    this.H = c.numHeads; this.Hkv = c.numKvHeads; this.hd = c.headDim; this.d = c.hiddenSize;
  }

  /** Values shared by every layer of a graph (RoPE caches, 2-D positions), built once. */
  private readonly shared = new Map<string, unknown>();
  private memo<T>(key: string, make: () => T): T {
    if (!this.shared.has(key)) this.shared.set(key, make());
    return this.shared.get(key) as T;
  }

  rmsNorm(x: string, weightName: string): string {
    const { g } = this;
    const w = g.float(weightName, this.w.get(weightName), [this.d]);
    const eps = this.c.rmsNormEps;
    if (this.o.rmsNorm === 'simplified' || this.o.rmsNorm === 'skip') {
      // onnxruntime registers SimplifiedLayerNormalization in the default domain (STACK.md); stash_type 1 = float.
      return g.op('SimplifiedLayerNormalization', [x, w], { axis: -1, epsilon: eps, stash_type: 1 });
    }
    if (this.o.rmsNorm === 'onnx23') return g.op('RMSNormalization', [x, w], { axis: -1, epsilon: eps, stash_type: 1 });
    const sq = g.op('Mul', [x, x]);
    // Opset 18 moved ReduceMean's axes from an attribute to an input.
    const ms = g.opset >= 18
      ? g.op('ReduceMean', [sq, g.int64('axes_last', [-1])], { keepdims: 1 })
      : g.op('ReduceMean', [sq], { axes: [-1], keepdims: 1 });
    const den = g.op('Sqrt', [g.op('Add', [ms, g.scalar(eps)])]);
    return g.op('Mul', [g.op('Div', [x, den]), w]);
  }

  /** RMSNorm of the residual stream; returns the normalised rows and the materialised stream. */
  normResidual(r: Residual, weightName: string): { x: string; h: string } {
    const { g } = this;
    if (r.delta === undefined) return { x: this.rmsNorm(r.base, weightName), h: r.base };
    if (this.o.rmsNorm === 'skip') {
      const w = g.float(weightName, this.w.get(weightName), [this.d]);
      // Outputs: normalised, mean (unused), inv_std_var (unused), input + skip.
      const [x, , , h] = g.contrib('SkipSimplifiedLayerNormalization', [r.delta, r.base, w], { epsilon: this.c.rmsNormEps },
        [g.fresh('skipnorm'), '', '', g.fresh('residual')]);
      return { x, h };
    }
    const h = this.materialise(r);
    return { x: this.rmsNorm(h, weightName), h };
  }

  materialise(r: Residual): string {
    return r.delta === undefined ? r.base : this.g.op('Add', [r.base, r.delta]);
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

  /** [heads, S, hd] -> [S, heads·hd] */
  fromHeadsN(x: string, heads: number): string {
    const { g } = this;
    return g.op('Reshape', [g.op('Transpose', [x], { perm: [1, 0, 2] }), g.int64(`shape_flat_${heads}`, [-1, heads * this.hd])]);
  }

  /** Half-width cos/sin caches [maxPositions, hd/2], the layout every fused RoPE kernel takes. */
  halfTables(): { cos: string; sin: string } {
    return this.memo('halfTables', () => {
      const { g, hd } = this;
      const half = hd / 2, P = this.c.maxPositionEmbeddings;
      const t = ropeTables(this.c, P);
      const cos = new Float32Array(P * half), sin = new Float32Array(P * half);
      for (let p = 0; p < P; p++) {
        for (let i = 0; i < half; i++) {
          cos[p * half + i] = t.cos[p * hd + i];
          sin[p * half + i] = t.sinSigned[p * hd + half + i]; // the second half holds +sin
        }
      }
      return { cos: g.float('rope_cos_half', cos, [P, half]), sin: g.float('rope_sin_half', sin, [P, half]) };
    });
  }

  /** RoPE of x [heads, S, hd] whose rows sit at pm.positions(). */
  rope(x: string, pm: StagePositions): string {
    const { g } = this;
    if (this.o.rope === 'standard') {
      const half = this.hd / 2;
      const swapIdx = g.int64('rope_swap', Array.from({ length: this.hd }, (_, i) => (i < half ? i + half : i - half)));
      const swapped = g.op('Gather', [x, swapIdx], { axis: 2 });
      return g.op('Add', [g.op('Mul', [x, pm.cosRows()]), g.op('Mul', [swapped, pm.sinRows()])]);
    }
    const { cos, sin } = this.halfTables();
    const x4 = g.op('Unsqueeze', [x, g.int64('axes0', [0])]); // [1, heads, S, hd]: the BNSH form both ops take
    const pos = this.memo('pos2d', () => g.op('Unsqueeze', [pm.positions(), g.int64('axes0', [0])])); // [1, S]
    const y = this.o.rope === 'contrib'
      ? g.contrib('RotaryEmbedding', [x4, pos, cos, sin], { interleaved: 0 })[0]
      : g.op('RotaryEmbedding', [x4, cos, sin, pos], { interleaved: 0 });
    return g.op('Squeeze', [y, g.int64('axes0', [0])]);
  }

  /** RoPE of x [1, S, heads·hd] (sequence-major, as the fused attention ops take it) with a fused kernel. */
  ropeSeqMajor(x: string, heads: number, pm: StagePositions): string {
    const { g } = this;
    const { cos, sin } = this.halfTables();
    const pos = this.memo('pos2d', () => g.op('Unsqueeze', [pm.positions(), g.int64('axes0', [0])]));
    return this.o.rope === 'contrib'
      ? g.contrib('RotaryEmbedding', [x, pos, cos, sin], { interleaved: 0, num_heads: heads, rotary_embedding_dim: this.hd })[0]
      : g.op('RotaryEmbedding', [x, cos, sin, pos], { interleaved: 0, num_heads: heads });
  }

  /** Causal attention core: q [H,S,hd], k/v [Hkv,T,hd], mask [S,T] -> o [H,S,hd]. */
  attentionStandard(q: string, k: string, v: string, mask: string): string {
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

  /** Opset 23 Attention on head-major 4D tensors; with past K/V it returns the presents [1,Hkv,P+S,hd]. */
  attentionOnnx23(q: string, k: string, v: string, mask: string | null, past?: { k: string; v: string }): { o: string; k?: string; v?: string } {
    const { g } = this;
    const u = (x: string) => g.op('Unsqueeze', [x, g.int64('axes0', [0])]);
    const inputs = [u(q), u(k), u(v), mask ?? ''];
    // Without a mask (no past) is_causal is unambiguous; with a past the explicit mask aligns the causal band.
    const attrs = { is_causal: mask === null ? 1 : 0, scale: 1 / Math.sqrt(this.hd) };
    if (!past) return { o: g.op('Squeeze', [g.op('Attention', inputs, attrs), g.int64('axes0', [0])]) };
    const [o, pk, pv] = g.opN('Attention', [...inputs, u(past.k), u(past.v)], 3, attrs);
    const sq = (x: string) => g.op('Squeeze', [x, g.int64('axes0', [0])]);
    return { o: sq(o), k: sq(pk), v: sq(pv) };
  }

  /** h2 = h + o·Woᵀ; h3 = h2 + MLP(RMSNorm(h2)): what the cloud runs in P3. h3's add is left pending. */
  post(oFlat: string, h: string, l: number): Residual {
    const { g } = this;
    const p = `model.layers.${l}.`;
    const wo = g.float(p + 'self_attn.o_proj.weight', this.w.get(p + 'self_attn.o_proj.weight'), [this.d, this.H * this.hd]);
    const { x: x2, h: h2 } = this.normResidual({ base: h, delta: g.op('Gemm', [oFlat, wo], { transB: 1 }) }, p + 'post_attention_layernorm.weight');
    const ffn = this.c.intermediateSize;
    const wgu = g.float(`l${l}.wgateup`, concatRows([this.w.get(p + 'mlp.gate_proj.weight'), this.w.get(p + 'mlp.up_proj.weight')]), [2 * ffn, this.d]);
    const [gate, up] = g.opN('Split', [g.op('Gemm', [x2, wgu], { transB: 1 }), g.int64(`split_ffn`, [ffn, ffn])], 2, { axis: 1 });
    const act = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up]);
    const wd = g.float(p + 'mlp.down_proj.weight', this.w.get(p + 'mlp.down_proj.weight'), [this.d, ffn]);
    return { base: h2, delta: g.op('Gemm', [act, wd], { transB: 1 }) };
  }

  splitQkv(qkv: string): [string, string, string] {
    const { g, H, Hkv, hd } = this;
    const [q, k, v] = g.opN('Split', [qkv, g.int64('split_qkv', [H * hd, Hkv * hd, Hkv * hd])], 3, { axis: 1 });
    return [this.toHeads(q, H), this.toHeads(k, Hkv), this.toHeads(v, Hkv)];
  }

  /** Positions [S] = past .. past+S-1 and what is derived from them, each built once when first asked for. */
  stagePositions(pastK: string, hidden: string): StagePositions {
    const { g } = this;
    const toScalar = (x: string) => g.op('Reshape', [x, g.int64('shape_scalar', [], [0])]);
    const once = <T>(f: () => T) => { let v: T | undefined; return () => (v ??= f()); };
    const past = once(() => toScalar(g.op('Shape', [pastK], { start: 1, end: 2 })));
    const rows = once(() => toScalar(g.op('Shape', [hidden], { start: 0, end: 1 })));
    const total = once(() => g.op('Add', [past(), rows()]));
    const one = g.int64('i_one', [1], []);
    const positions = once(() => g.op('Range', [past(), total(), one]));
    const mask = once(() => {
      const cols = g.op('Range', [g.int64('i_zero', [0], []), total(), one]);
      const allowed = g.op('LessOrEqual', [g.op('Unsqueeze', [cols, g.int64('axes0', [0])]), g.op('Unsqueeze', [positions(), g.int64('axes1', [1])])]);
      return g.op('Where', [allowed, g.scalar(0), g.scalar(NEG)]);
    });
    const tables = once(() => {
      const t = ropeTables(this.c, this.c.maxPositionEmbeddings);
      return {
        cos: g.float('rope_cos', t.cos, [this.c.maxPositionEmbeddings, this.hd]),
        sin: g.float('rope_sin', t.sinSigned, [this.c.maxPositionEmbeddings, this.hd]),
      };
    });
    const int32 = { to: 6 }; // TensorProto.INT32
    const totalLength = once(() => g.op('Cast', [total()], int32));
    return {
      positions, mask, totalLength,
      cosRows: once(() => g.op('Gather', [tables().cos, positions()], { axis: 0 })),
      sinRows: once(() => g.op('Gather', [tables().sin, positions()], { axis: 0 })),
      seqlensK: once(() => g.op('Cast', [g.op('Reshape', [g.op('Sub', [total(), one]), g.int64('shape_1', [1])])], int32)),
    };
  }

  /** One decoder layer on the residual stream; returns the stream (last add pending) and the present K/V [Hkv,P+S,hd]. */
  layer(r: Residual, l: number, pm: StagePositions, pastK: string, pastV: string): { r: Residual; k: string; v: string } {
    const { g, H, Hkv } = this;
    const { x, h } = this.normResidual(r, `model.layers.${l}.input_layernorm.weight`);
    const qkv = this.qkv(x, l);
    if (this.o.attention === 'gqa' && gqaRotarySupported(this.c)) {
      // Packed QKV [1, S, (H+2Hkv)·hd] in, RoPE inside (non-interleaved = HF's rotate_half), caches BNSH [1,Hkv,T,hd].
      const u = (t: string) => g.op('Unsqueeze', [t, g.int64('axes0', [0])]);
      const { cos, sin } = this.halfTables();
      const [o, pk, pv] = g.contrib('GroupQueryAttention',
        [u(qkv), '', '', u(pastK), u(pastV), pm.seqlensK(), pm.totalLength(), cos, sin],
        { num_heads: H, kv_num_heads: Hkv, do_rotary: 1, rotary_interleaved: 0, scale: 1 / Math.sqrt(this.hd) }, 3);
      const sq = (t: string) => g.op('Squeeze', [t, g.int64('axes0', [0])]);
      const oFlat = g.op('Reshape', [o, g.int64('shape_flat_o', [-1, H * this.hd])]);
      return { r: this.post(oFlat, h, l), k: sq(pk), v: sq(pv) };
    }
    if (this.o.attention === 'onnx23' && this.o.rope !== 'standard') {
      // Both fused ops take sequence-major [1, S, heads·hd] with a heads attribute, so the packed QKV rows go in
      // as they are and the head-major transposes drop out; only the caches are head-major [1, Hkv, T, hd].
      const u = (t: string) => g.op('Unsqueeze', [t, g.int64('axes0', [0])]);
      const [q, k, v] = g.opN('Split', [u(qkv), g.int64('split_qkv', [H * this.hd, Hkv * this.hd, Hkv * this.hd])], 3, { axis: 2 });
      // An explicit mask, not is_causal: the ONNX spec aligns is_causal's band to the upper left, which is wrong once
      // there is a past (onnxruntime 1.30 aligns it lower-right, but nothing promises it stays that way).
      const [o, pk, pv] = g.opN('Attention', [this.ropeSeqMajor(q, H, pm), this.ropeSeqMajor(k, Hkv, pm), v, pm.mask(), u(pastK), u(pastV)], 3,
        { q_num_heads: H, kv_num_heads: Hkv, is_causal: 0, scale: 1 / Math.sqrt(this.hd) });
      const sq = (t: string) => g.op('Squeeze', [t, g.int64('axes0', [0])]);
      return { r: this.post(sq(o), h, l), k: sq(pk), v: sq(pv) };
    }
    const [q, k, v] = this.splitQkv(qkv);
    const qr = this.rope(q, pm);
    const kr = this.rope(k, pm);
    if (this.o.attention === 'onnx23') {
      const a = this.attentionOnnx23(qr, kr, v, pm.mask(), { k: pastK, v: pastV });
      return { r: this.post(this.fromHeadsN(a.o, H), h, l), k: a.k!, v: a.v! };
    }
    const presentK = g.op('Concat', [pastK, kr], { axis: 1 });
    const presentV = g.op('Concat', [pastV, v], { axis: 1 });
    const o = this.attentionStandard(qr, presentK, presentV, pm.mask());
    return { r: this.post(this.fromHeadsN(o, H), h, l), k: presentK, v: presentV };
  }
}

/**
 * onnxruntime 1.30's CPU GroupQueryAttention refuses do_rotary for head sizes that are not a multiple of 16
 * ("head_size shall be a multiple of 16"); such models keep the standard attention in stage graphs under 'gqa'.
 * (The sub-layer 'attention' op does not rotate, so it runs GroupQueryAttention at any head size.)
 */
export function gqaRotarySupported(c: ModelConfig): boolean {
  return c.headDim % 16 === 0;
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
export function buildStageGraph(c: ModelConfig, w: ModelWeights, s: StageSpec, opts: GraphOptions = DEFAULT_GRAPH_OPTIONS): Uint8Array {
  if (s.start < 0 || s.end > c.numLayers || s.start > s.end) throw new RangeError(`stage ${stageName(s)} is outside [0, ${c.numLayers})`);
  const g = new GraphBuilder(stageName(s), { opset: graphOpset(checkGraphOptions(opts)) });
  const P = new LayerPieces(g, c, w, opts);
  let r: Residual;
  if (s.embed) {
    const ids = g.input('ids', 'int64', ['S']);
    r = { base: g.op('Gather', [g.float('model.embed_tokens.weight', w.get('model.embed_tokens.weight'), [c.vocabSize, c.hiddenSize]), ids], { axis: 0 }) };
  } else {
    r = { base: g.input('hidden', 'float', ['S', c.hiddenSize]) };
  }
  if (s.end > s.start) {
    for (let l = s.start; l < s.end; l++) {
      g.input(pastKey(l), 'float', [c.numKvHeads, 'P', c.headDim]);
      g.input(pastValue(l), 'float', [c.numKvHeads, 'P', c.headDim]);
    }
    const pm = P.stagePositions(pastKey(s.start), r.base);
    for (let l = s.start; l < s.end; l++) {
      const out = P.layer(r, l, pm, pastKey(l), pastValue(l));
      r = out.r;
      g.alias(out.k, presentKey(l));
      g.alias(out.v, presentValue(l));
      g.output(presentKey(l), 'float', [c.numKvHeads, 'T', c.headDim]);
      g.output(presentValue(l), 'float', [c.numKvHeads, 'T', c.headDim]);
    }
  }
  if (s.head) {
    const from = g.input('logits_from', 'int64', [1]);
    // Slice before the final norm: a prefill computes logits for the rows asked for only.
    const slice = (x: string) => g.op('Slice', [x, from, g.int64('i_max', [2 ** 31 - 1]), g.int64('axes0', [0])]);
    const rows: Residual = r.delta === undefined ? { base: slice(r.base) } : { base: slice(r.base), delta: slice(r.delta) };
    const n = P.normResidual(rows, 'model.norm.weight').x;
    const lm = c.tieWordEmbeddings
      ? g.float('model.embed_tokens.weight', w.get('model.embed_tokens.weight'), [c.vocabSize, c.hiddenSize])
      : g.float('lm_head.weight', w.get('lm_head.weight'), [c.vocabSize, c.hiddenSize]);
    g.alias(g.op('Gemm', [n, lm], { transB: 1 }), 'logits');
    g.output('logits', 'float', ['S2', c.vocabSize]);
  } else {
    g.alias(P.materialise(r), 'hidden_out');
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
 * q and k arrive with RoPE applied (the trusted side rotates them, runtime/model/rope.ts), so no variant
 * rotates here; `rope` only matters to stage graphs.
 */
export function buildSubLayerGraph(c: ModelConfig, w: ModelWeights, op: SubLayerOp, l: number, opts: GraphOptions = DEFAULT_GRAPH_OPTIONS): Uint8Array {
  const g = new GraphBuilder(`${op}_${l}`, { opset: graphOpset(checkGraphOptions(opts)) });
  const P = new LayerPieces(g, c, w, opts);
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
    // Positions 0..N-1: a prefill without past.
    const total = g.op('Reshape', [g.op('Shape', [k], { start: 1, end: 2 }), g.int64('shape_scalar', [], [0])]);
    if (opts.attention === 'gqa') {
      // GroupQueryAttention takes sequence-major [1, N, heads·hd]; no past, so this is its "first prompt" case.
      const bsd = (x: string, heads: number) => g.op('Unsqueeze', [P.fromHeadsN(x, heads), g.int64('axes0', [0])]);
      const int32 = { to: 6 };
      const seqlensK = g.op('Cast', [g.op('Reshape', [g.op('Sub', [total, g.int64('i_one', [1], [])]), g.int64('shape_1', [1])])], int32);
      const [o] = g.contrib('GroupQueryAttention', [bsd(q, H), bsd(k, Hkv), bsd(v, Hkv), '', '', seqlensK, g.op('Cast', [total], int32)],
        { num_heads: H, kv_num_heads: Hkv, do_rotary: 0, scale: 1 / Math.sqrt(hd) });
      out = P.toHeads(g.op('Squeeze', [o, g.int64('axes0', [0])]), H);
    } else if (opts.attention === 'onnx23') {
      out = P.attentionOnnx23(q, k, v, null).o;
    } else {
      const one = g.int64('i_one', [1], []);
      const pos = g.op('Range', [g.int64('i_zero', [0], []), total, one]);
      const mask = g.op('Where', [
        g.op('LessOrEqual', [g.op('Unsqueeze', [pos, g.int64('axes0', [0])]), g.op('Unsqueeze', [pos, g.int64('axes1', [1])])]),
        g.scalar(0), g.scalar(NEG)]);
      out = P.attentionStandard(q, k, v, mask);
    }
    outDims = [H, 'N', hd];
  } else {
    out = P.materialise(P.post(g.input('o', 'float', ['N', H * hd]), g.input('hidden', 'float', ['N', d]), l));
    outDims = ['N', d];
  }
  g.alias(out, 'out');
  g.output('out', 'float', outDims);
  return g.encode();
}
