import type { ModelConfig } from '../../runtime/model/config.ts';
import type { ModelWeights } from '../../runtime/model/weights.ts';

/**
 * The attacker's own float32 forward pass of a LLaMA-family model (llama, qwen2, mistral), written
 * for one job: running many candidate next tokens one step forward on a shared prefix KV cache and
 * capturing intermediate tensors (the "probes") that a cloud peer observes. It uses only public
 * things: config and weights. It is independent of the runtime's engine on purpose, so an attack
 * result never depends on the code under attack.
 */

export class AttackInputError extends Error {
  override name = 'AttackInputError';
}

/** Where in layer `layer` a tensor is taken; every probe gives one vector per token. */
export type ProbeKind =
  /** residual stream entering `layer` (layer = L: the final residual, before the final norm); dim d */
  | 'resid'
  /** RMSNorm_layer(resid) with the layer's input_layernorm weight: what SCX P1 sends; dim d */
  | 'normed'
  /** RoPE'd queries, head-major [H*hd] */
  | 'q'
  /** RoPE'd keys, head-major [Hkv*hd] */
  | 'k'
  /** values, head-major [Hkv*hd] */
  | 'v'
  /** attention output before o_proj, head-major [H*hd] */
  | 'attn';

export interface Probe { kind: ProbeKind; layer: number }

const PROBE_STEP: Record<ProbeKind, number> = { resid: 0, normed: 1, q: 2, k: 2, v: 2, attn: 3 };
/** Sub-steps of one layer; FULL means the whole layer runs. */
const FULL = 4;

interface LayerWeights {
  inNorm: Float32Array;
  /** q, k, v projections stacked: [(H + 2 Hkv) hd, d] */
  qkv: Float32Array;
  qkvBias: Float32Array | null;
  o: Float32Array;
  postNorm: Float32Array;
  /** gate and up stacked: [2 ff, d] */
  gateUp: Float32Array;
  down: Float32Array;
}

export interface AttackerModel {
  config: ModelConfig;
  L: number; d: number; H: number; Hkv: number; hd: number; ff: number; V: number;
  eps: number;
  bos: number;
  embed: Float32Array;
  layers: LayerWeights[];
  finalNorm: Float32Array;
  lmHead: Float32Array;
  /** RoPE inverse frequencies, hd/2 of them (llama3 scaling applied when configured). */
  invFreq: Float64Array;
}

const modelCache = new WeakMap<object, AttackerModel>();

function concatRows(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

/** HF's RoPE inverse frequencies, including the llama3 frequency-dependent scaling. */
export function ropeInvFreq(c: ModelConfig): Float64Array {
  const half = c.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.fround(1 / Math.pow(c.ropeTheta, (2 * i) / c.headDim));
  const rs = c.ropeScaling;
  if (rs) {
    const lowWavelen = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
    const highWavelen = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) { inv[i] /= rs.factor; continue; }
      const smooth = (rs.originalMaxPositionEmbeddings / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
      inv[i] = (1 - smooth) * (inv[i] / rs.factor) + smooth * inv[i];
    }
  }
  return inv;
}

/** Build (once per weights object) the attacker's view of a model from its public config and weights. */
export function attackerModel(m: { config: ModelConfig; weights: ModelWeights }): AttackerModel {
  const hit = modelCache.get(m.weights);
  if (hit) return hit;
  const c = m.config;
  const w = (n: string) => m.weights.get(n);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    layers.push({
      inNorm: w(p + 'input_layernorm.weight'),
      qkv: concatRows([w(p + 'self_attn.q_proj.weight'), w(p + 'self_attn.k_proj.weight'), w(p + 'self_attn.v_proj.weight')]),
      qkvBias: c.qkvBias ? concatRows([w(p + 'self_attn.q_proj.bias'), w(p + 'self_attn.k_proj.bias'), w(p + 'self_attn.v_proj.bias')]) : null,
      o: w(p + 'self_attn.o_proj.weight'),
      postNorm: w(p + 'post_attention_layernorm.weight'),
      gateUp: concatRows([w(p + 'mlp.gate_proj.weight'), w(p + 'mlp.up_proj.weight')]),
      down: w(p + 'mlp.down_proj.weight'),
    });
  }
  const am: AttackerModel = {
    config: c, L: c.numLayers, d: c.hiddenSize, H: c.numHeads, Hkv: c.numKvHeads, hd: c.headDim,
    ff: c.intermediateSize, V: c.vocabSize, eps: c.rmsNormEps, bos: c.bosTokenId ?? 1,
    embed: w('model.embed_tokens.weight'), layers, finalNorm: w('model.norm.weight'), lmHead: m.weights.lmHead(),
    invFreq: ropeInvFreq(c),
  };
  modelCache.set(m.weights, am);
  return am;
}

export function probeDim(m: AttackerModel, p: Probe): number {
  switch (p.kind) {
    case 'resid': case 'normed': return m.d;
    case 'q': case 'attn': return m.H * m.hd;
    case 'k': case 'v': return m.Hkv * m.hd;
  }
}

function checkProbe(m: AttackerModel, p: Probe): void {
  const max = p.kind === 'resid' ? m.L : m.L - 1;
  if (!Number.isInteger(p.layer) || p.layer < 0 || p.layer > max) {
    throw new AttackInputError(`probe ${p.kind} at layer ${p.layer} is outside the model's layers [0, ${max}]`);
  }
}

// ---------------------------------------------------------------- small math kernels

/**
 * out[b, o] = sum_k x[b, k] * w[o, k] (+ bias[o]): a batch through a Linear with HF's [out, in]
 * weight layout. A 4x4 register tile keeps the inner loop to 8 loads per 16 multiply-adds, which is
 * what makes full-vocabulary candidate batches affordable in plain JS (about 4 GFLOP/s per core).
 */
export function linear(x: Float32Array, B: number, K: number, w: Float32Array, O: number,
  bias: Float32Array | null = null, out: Float32Array = new Float32Array(B * O)): Float32Array {
  let b = 0;
  for (; b + 4 <= B; b += 4) {
    const x0 = b * K, x1 = x0 + K, x2 = x1 + K, x3 = x2 + K;
    let o = 0;
    for (; o + 4 <= O; o += 4) {
      const w0 = o * K, w1 = w0 + K, w2 = w1 + K, w3 = w2 + K;
      let a00 = 0, a01 = 0, a02 = 0, a03 = 0, a10 = 0, a11 = 0, a12 = 0, a13 = 0;
      let a20 = 0, a21 = 0, a22 = 0, a23 = 0, a30 = 0, a31 = 0, a32 = 0, a33 = 0;
      for (let k = 0; k < K; k++) {
        const wa = w[w0 + k], wb = w[w1 + k], wc = w[w2 + k], wd = w[w3 + k];
        let v = x[x0 + k]; a00 += v * wa; a01 += v * wb; a02 += v * wc; a03 += v * wd;
        v = x[x1 + k]; a10 += v * wa; a11 += v * wb; a12 += v * wc; a13 += v * wd;
        v = x[x2 + k]; a20 += v * wa; a21 += v * wb; a22 += v * wc; a23 += v * wd;
        v = x[x3 + k]; a30 += v * wa; a31 += v * wb; a32 += v * wc; a33 += v * wd;
      }
      let p = b * O + o;
      out[p] = a00; out[p + 1] = a01; out[p + 2] = a02; out[p + 3] = a03; p += O;
      out[p] = a10; out[p + 1] = a11; out[p + 2] = a12; out[p + 3] = a13; p += O;
      out[p] = a20; out[p + 1] = a21; out[p + 2] = a22; out[p + 3] = a23; p += O;
      out[p] = a30; out[p + 1] = a31; out[p + 2] = a32; out[p + 3] = a33;
    }
    for (; o < O; o++) {
      const w0 = o * K;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let k = 0; k < K; k++) { const wk = w[w0 + k]; a0 += x[x0 + k] * wk; a1 += x[x1 + k] * wk; a2 += x[x2 + k] * wk; a3 += x[x3 + k] * wk; }
      out[b * O + o] = a0; out[(b + 1) * O + o] = a1; out[(b + 2) * O + o] = a2; out[(b + 3) * O + o] = a3;
    }
  }
  for (; b < B; b++) {
    const x0 = b * K;
    let o = 0;
    for (; o + 4 <= O; o += 4) {
      const w0 = o * K, w1 = w0 + K, w2 = w1 + K, w3 = w2 + K;
      let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
      for (let k = 0; k < K; k++) { const v = x[x0 + k]; a0 += v * w[w0 + k]; a1 += v * w[w1 + k]; a2 += v * w[w2 + k]; a3 += v * w[w3 + k]; }
      const p = b * O + o;
      out[p] = a0; out[p + 1] = a1; out[p + 2] = a2; out[p + 3] = a3;
    }
    for (; o < O; o++) {
      const w0 = o * K;
      let a = 0;
      for (let k = 0; k < K; k++) a += x[x0 + k] * w[w0 + k];
      out[b * O + o] = a;
    }
  }
  if (bias) for (let r = 0; r < B; r++) for (let o = 0; o < O; o++) out[r * O + o] += bias[o];
  return out;
}

/** RMSNorm of each of B rows of width D, times weight (HF LlamaRMSNorm). */
export function rmsNorm(x: Float32Array, B: number, D: number, weight: Float32Array, eps: number,
  out: Float32Array = new Float32Array(B * D)): Float32Array {
  for (let b = 0; b < B; b++) {
    const o = b * D;
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[o + i] * x[o + i];
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) out[o + i] = weight[i] * Math.fround(x[o + i] * inv);
  }
  return out;
}

/** Rotate `heads` consecutive head vectors of width hd at `offset` in place (HF rotate_half). */
export function applyRope(v: Float32Array, offset: number, heads: number, hd: number, cos: Float64Array, sin: Float64Array): void {
  const half = hd / 2;
  for (let h = 0; h < heads; h++) {
    const base = offset + h * hd;
    for (let i = 0; i < half; i++) {
      const x1 = v[base + i], x2 = v[base + i + half];
      v[base + i] = x1 * cos[i] - x2 * sin[i];
      v[base + i + half] = x2 * cos[i] + x1 * sin[i];
    }
  }
}

export function ropeTables(m: AttackerModel, pos: number): { cos: Float64Array; sin: Float64Array } {
  const half = m.hd / 2;
  const cos = new Float64Array(half), sin = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    // HF computes the angle in float32; rounding it the same way keeps long positions aligned.
    const ang = Math.fround(pos * m.invFreq[i]);
    cos[i] = Math.fround(Math.cos(ang));
    sin[i] = Math.fround(Math.sin(ang));
  }
  return { cos, sin };
}

/** Logits of B final-residual rows: final norm, then the LM head. */
export function logitsOf(m: AttackerModel, resid: Float32Array, B: number): Float32Array {
  const x = rmsNorm(resid, B, m.d, m.finalNorm, m.eps);
  return linear(x, B, m.d, m.lmHead, m.V);
}

export function argmax(a: Float32Array, from = 0, len = a.length - from): number {
  let best = from, bv = -Infinity;
  for (let i = from; i < from + len; i++) if (a[i] > bv) { bv = a[i]; best = i; }
  return best - from;
}

// ---------------------------------------------------------------- prefix cache and batched steps

/** KV cache of a token prefix for every layer, plus the logits that predict the next token. */
export class PrefixCache {
  readonly tokens: number[] = [];
  k: Float32Array[];
  v: Float32Array[];
  cap: number;
  /** Logits predicting position `len`, or null while the prefix is empty. */
  logits: Float32Array | null = null;

  constructor(readonly m: AttackerModel, capacity = 64) {
    this.cap = Math.max(1, capacity);
    this.k = m.layers.map(() => new Float32Array(m.Hkv * this.cap * m.hd));
    this.v = m.layers.map(() => new Float32Array(m.Hkv * this.cap * m.hd));
  }

  get len(): number { return this.tokens.length; }

  /** Make room for one more position (layout [Hkv, cap, hd] keeps one head's keys contiguous). */
  reserve(n: number): void {
    if (n <= this.cap) return;
    const m = this.m;
    let cap = this.cap;
    while (cap < n) cap *= 2;
    const grow = (a: Float32Array) => {
      const b = new Float32Array(m.Hkv * cap * m.hd);
      for (let g = 0; g < m.Hkv; g++) b.set(a.subarray(g * this.cap * m.hd, (g * this.cap + this.len) * m.hd), g * cap * m.hd);
      return b;
    };
    this.k = this.k.map(grow);
    this.v = this.v.map(grow);
    this.cap = cap;
  }

  clone(): PrefixCache {
    const c = new PrefixCache(this.m, this.cap);
    c.tokens.push(...this.tokens);
    c.k = this.k.map((a) => a.slice());
    c.v = this.v.map((a) => a.slice());
    c.logits = this.logits ? this.logits.slice() : null;
    return c;
  }
}

/**
 * Run B candidate tokens one step forward at position cache.len, each attending to the shared
 * prefix and itself, and return each probe's values as a [B, probeDim] array. Layers run only as far
 * as the deepest probe needs. With `append` (B must be 1) the token's K/V are written to the cache,
 * every layer runs and cache.logits is updated: this is how a prefix grows.
 */
export function stepBatch(m: AttackerModel, cache: PrefixCache, tokens: ArrayLike<number>, probes: Probe[],
  append = false): Float32Array[] {
  const B = tokens.length;
  if (B === 0) return probes.map(() => new Float32Array(0));
  if (append && B !== 1) throw new AttackInputError('stepBatch: append needs exactly one token');
  for (const p of probes) checkProbe(m, p);
  const { L, d, H, Hkv, hd, ff } = m;
  const pos = cache.len;
  // How far each layer must run.
  const need = new Int32Array(L + 1).fill(-1);
  for (const p of probes) {
    for (let j = 0; j < p.layer; j++) need[j] = FULL;
    need[p.layer] = Math.max(need[p.layer], p.layer === L ? 0 : PROBE_STEP[p.kind]);
  }
  if (append) need.fill(FULL, 0, L);
  const outs = probes.map((p) => new Float32Array(B * probeDim(m, p)));
  const capture = (kind: ProbeKind, layer: number, src: Float32Array, width: number, off: number, dim: number) => {
    probes.forEach((p, i) => {
      if (p.kind !== kind || p.layer !== layer) return;
      const o = outs[i];
      for (let b = 0; b < B; b++) o.set(src.subarray(b * width + off, b * width + off + dim), b * dim);
    });
  };

  const h = new Float32Array(B * d);
  for (let b = 0; b < B; b++) {
    const t = tokens[b];
    if (!Number.isInteger(t) || t < 0 || t >= m.V) throw new AttackInputError(`token id ${t} is outside the vocabulary [0, ${m.V})`);
    h.set(m.embed.subarray(t * d, (t + 1) * d), b * d);
  }
  if (append) cache.reserve(pos + 1);
  const { cos, sin } = ropeTables(m, pos);
  const QKV = (H + 2 * Hkv) * hd;
  const x = new Float32Array(B * d);
  const attn = new Float32Array(B * H * hd);
  const scores = new Float64Array(pos + 1);
  const group = H / Hkv;
  const scale = 1 / Math.sqrt(hd);
  for (let j = 0; j <= L; j++) {
    capture('resid', j, h, d, 0, d);
    if (j === L || need[j] < 1) break;
    const lw = m.layers[j];
    rmsNorm(h, B, d, lw.inNorm, m.eps, x);
    capture('normed', j, x, d, 0, d);
    if (need[j] < 2) break;
    const qkv = linear(x, B, d, lw.qkv, QKV, lw.qkvBias);
    for (let b = 0; b < B; b++) applyRope(qkv, b * QKV, H + Hkv, hd, cos, sin); // q and k heads are adjacent
    capture('q', j, qkv, QKV, 0, H * hd);
    capture('k', j, qkv, QKV, H * hd, Hkv * hd);
    capture('v', j, qkv, QKV, (H + Hkv) * hd, Hkv * hd);
    if (need[j] < 3) break;
    const Kc = cache.k[j], Vc = cache.v[j], cap = cache.cap;
    if (append) {
      for (let g = 0; g < Hkv; g++) {
        Kc.set(qkv.subarray(H * hd + g * hd, H * hd + (g + 1) * hd), (g * cap + pos) * hd);
        Vc.set(qkv.subarray((H + Hkv) * hd + g * hd, (H + Hkv) * hd + (g + 1) * hd), (g * cap + pos) * hd);
      }
    }
    for (let b = 0; b < B; b++) {
      const rb = b * QKV;
      for (let hq = 0; hq < H; hq++) {
        const g = (hq / group) | 0;
        const qo = rb + hq * hd, ko = rb + (H + g) * hd, vo = rb + (H + Hkv + g) * hd;
        const kBase = g * cap * hd;
        let mx = -Infinity;
        for (let t = 0; t < pos; t++) {
          let s = 0;
          const kt = kBase + t * hd;
          for (let i = 0; i < hd; i++) s += qkv[qo + i] * Kc[kt + i];
          s *= scale; scores[t] = s; if (s > mx) mx = s;
        }
        let s = 0;
        for (let i = 0; i < hd; i++) s += qkv[qo + i] * qkv[ko + i];
        s *= scale; scores[pos] = s; if (s > mx) mx = s;
        let z = 0;
        for (let t = 0; t <= pos; t++) { const e = Math.exp(scores[t] - mx); scores[t] = e; z += e; }
        const ao = (b * H + hq) * hd;
        for (let i = 0; i < hd; i++) attn[ao + i] = 0;
        for (let t = 0; t < pos; t++) {
          const p = scores[t] / z, vt = kBase + t * hd;
          for (let i = 0; i < hd; i++) attn[ao + i] += p * Vc[vt + i];
        }
        const p = scores[pos] / z;
        for (let i = 0; i < hd; i++) attn[ao + i] += p * qkv[vo + i];
      }
    }
    capture('attn', j, attn, H * hd, 0, H * hd);
    if (need[j] < FULL) break;
    const o = linear(attn, B, H * hd, lw.o, d);
    for (let i = 0; i < B * d; i++) h[i] += o[i];
    rmsNorm(h, B, d, lw.postNorm, m.eps, x);
    const gu = linear(x, B, d, lw.gateUp, 2 * ff);
    const act = new Float32Array(B * ff);
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < ff; i++) {
        const g = gu[b * 2 * ff + i], u = gu[b * 2 * ff + ff + i];
        act[b * ff + i] = (g / (1 + Math.exp(-g))) * u;
      }
    }
    const dn = linear(act, B, ff, lw.down, d);
    for (let i = 0; i < B * d; i++) h[i] += dn[i];
  }
  if (append) {
    cache.tokens.push(tokens[0]);
    cache.logits = logitsOf(m, h, 1);
  }
  return outs;
}

/** Append one token to the prefix (all layers) and return its probes, each [1, dim]. */
export function appendToken(m: AttackerModel, cache: PrefixCache, token: number, probes: Probe[] = []): Float32Array[] {
  return stepBatch(m, cache, [token], probes, true);
}

/** Run a whole token sequence (one token at a time) and return every probe as [N, dim], plus the cache. */
export function forwardSequence(m: AttackerModel, ids: number[], probes: Probe[]): { captures: Float32Array[]; cache: PrefixCache } {
  const cache = new PrefixCache(m, ids.length + 8);
  const captures = probes.map((p) => new Float32Array(ids.length * probeDim(m, p)));
  ids.forEach((t, i) => {
    const got = appendToken(m, cache, t, probes);
    got.forEach((g, j) => captures[j].set(g, i * g.length));
  });
  return { captures, cache };
}

/** Greedy continuation of a cache by n tokens (no EOS stop); returns the new ids. */
export function greedyContinue(m: AttackerModel, cache: PrefixCache, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (!cache.logits) throw new AttackInputError('greedyContinue: empty prefix has no next-token logits');
    const t = argmax(cache.logits);
    out.push(t);
    appendToken(m, cache, t);
  }
  return out;
}
