/**
 * An independent float64 forward pass of Hugging Face LlamaForCausalLM / Qwen2ForCausalLM, for tests
 * only. It shares nothing with the engine except reading weights through ModelWeights: plain loops
 * over Float64Array, written from the HF modelling code's semantics, so an engine bug cannot hide in
 * a shared helper.
 */
import type { ModelConfig, ModelWeights } from '../../runtime/model/index.ts';

export interface Reference64Model { config: ModelConfig; weights: ModelWeights }

export interface Forward64Result {
  /** Logits per position (vocab entries each); with `lastOnly`, only the last position's. */
  logits: Float64Array[];
  /** hidden[layer][position]: the residual stream after that decoder layer (before the final norm). */
  hidden: Float64Array[][];
  /** Embedding output per position. */
  embeddings: Float64Array[];
  /** After the final RMSNorm, per position (the LM head's input). */
  finalNorm: Float64Array[];
}

interface Layer64 {
  inNorm: Float64Array; postNorm: Float64Array;
  q: Float64Array; k: Float64Array; v: Float64Array; o: Float64Array;
  qb: Float64Array | null; kb: Float64Array | null; vb: Float64Array | null;
  gate: Float64Array; up: Float64Array; down: Float64Array;
}

interface Weights64 { embed: Float64Array; layers: Layer64[]; norm: Float64Array; head: Float64Array; invFreq: Float64Array }

/** Float64 copies per weights object and config (a test may run one checkpoint under an edited config). */
const cache = new WeakMap<ModelWeights, Map<string, Weights64>>();

function weights64(m: Reference64Model): Weights64 {
  const key = JSON.stringify(m.config);
  let perConfig = cache.get(m.weights);
  if (!perConfig) { perConfig = new Map(); cache.set(m.weights, perConfig); }
  let w = perConfig.get(key);
  if (w) return w;
  const get = (name: string) => Float64Array.from(m.weights.get(name));
  const c = m.config;
  const layers: Layer64[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    layers.push({
      inNorm: get(p + 'input_layernorm.weight'), postNorm: get(p + 'post_attention_layernorm.weight'),
      q: get(p + 'self_attn.q_proj.weight'), k: get(p + 'self_attn.k_proj.weight'),
      v: get(p + 'self_attn.v_proj.weight'), o: get(p + 'self_attn.o_proj.weight'),
      qb: c.qkvBias ? get(p + 'self_attn.q_proj.bias') : null,
      kb: c.qkvBias ? get(p + 'self_attn.k_proj.bias') : null,
      vb: c.qkvBias ? get(p + 'self_attn.v_proj.bias') : null,
      gate: get(p + 'mlp.gate_proj.weight'), up: get(p + 'mlp.up_proj.weight'), down: get(p + 'mlp.down_proj.weight'),
    });
  }
  const embed = get('model.embed_tokens.weight');
  w = {
    embed, layers, norm: get('model.norm.weight'),
    head: c.tieWordEmbeddings ? embed : get('lm_head.weight'),
    invFreq: ropeInvFreq64(c),
  };
  perConfig.set(key, w);
  return w;
}

/**
 * RoPE inverse frequencies theta^(-2i/hd), i < hd/2, with HF's `_compute_llama3_parameters` applied
 * when the config has llama3 rope scaling (its attention factor is 1, so nothing else changes).
 */
export function ropeInvFreq64(c: Pick<ModelConfig, 'headDim' | 'ropeTheta' | 'ropeScaling'>): Float64Array {
  const half = c.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(c.ropeTheta, (2 * i) / c.headDim);
  const s = c.ropeScaling;
  if (!s) return inv;
  const lowFreqWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highFreqWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    const scaled = wavelen > lowFreqWavelen ? inv[i] / s.factor : inv[i];
    const medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    if (medium) {
      const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
      inv[i] = (1 - smooth) * scaled / s.factor + smooth * scaled;
    } else {
      inv[i] = scaled;
    }
  }
  return inv;
}

/** y[t] = W x[t] (+ b), W row-major [rows, cols]. Rows outermost so each weight row is read once. */
function linear(w: Float64Array, rows: number, cols: number, xs: Float64Array[], b: Float64Array | null): Float64Array[] {
  const ys = xs.map(() => new Float64Array(rows));
  for (let r = 0; r < rows; r++) {
    const off = r * cols;
    for (let t = 0; t < xs.length; t++) {
      const x = xs[t];
      // Four partial sums: about twice as fast in V8 as one running sum, still plain float64.
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0, c = 0;
      for (; c + 3 < cols; c += 4) {
        s0 += w[off + c] * x[c];
        s1 += w[off + c + 1] * x[c + 1];
        s2 += w[off + c + 2] * x[c + 2];
        s3 += w[off + c + 3] * x[c + 3];
      }
      for (; c < cols; c++) s0 += w[off + c] * x[c];
      const s = s0 + s1 + s2 + s3;
      ys[t][r] = b ? s + b[r] : s;
    }
  }
  return ys;
}

/** HF LlamaRMSNorm: weight * x / sqrt(mean(x^2) + eps). */
function rmsNorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = w[i] * x[i] * inv;
  return y;
}

/** HF rotate_half RoPE in place on `heads` heads: dimension i is paired with i + hd/2. */
function rope(v: Float64Array, heads: number, hd: number, pos: number, invFreq: Float64Array): void {
  const half = hd / 2;
  for (let i = 0; i < half; i++) {
    const a = pos * invFreq[i], cos = Math.cos(a), sin = Math.sin(a);
    for (let h = 0; h < heads; h++) {
      const o = h * hd, x1 = v[o + i], x2 = v[o + i + half];
      v[o + i] = x1 * cos - x2 * sin;
      v[o + i + half] = x2 * cos + x1 * sin;
    }
  }
}

/**
 * A growing sequence with a per-layer K/V cache, so greedy decoding costs one position per step.
 * `forward64` is this with a fresh session; the two give the same numbers.
 */
export class Reference64Session {
  private readonly w: Weights64;
  private readonly keys: Float64Array[][];
  private readonly values: Float64Array[][];
  length = 0;

  constructor(readonly model: Reference64Model) {
    this.w = weights64(model);
    this.keys = Array.from({ length: model.config.numLayers }, () => []);
    this.values = Array.from({ length: model.config.numLayers }, () => []);
  }

  /** Run `ids` at positions length, length+1, ... and return the result for those positions. */
  append(ids: number[], opts: { lastOnly?: boolean } = {}): Forward64Result {
    const c = this.model.config, w = this.w;
    const d = c.hiddenSize, hd = c.headDim, H = c.numHeads, Hkv = c.numKvHeads, F = c.intermediateSize;
    const group = H / Hkv, scale = 1 / Math.sqrt(hd);
    const start = this.length;
    let xs = ids.map((id) => {
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new RangeError(`token id ${id} outside [0, ${c.vocabSize})`);
      return w.embed.slice(id * d, (id + 1) * d);
    });
    const embeddings = xs.map((x) => x.slice());
    const hidden: Float64Array[][] = [];
    for (let l = 0; l < c.numLayers; l++) {
      const L = w.layers[l];
      const normed = xs.map((x) => rmsNorm(x, L.inNorm, c.rmsNormEps));
      const qs = linear(L.q, H * hd, d, normed, L.qb);
      const ks = linear(L.k, Hkv * hd, d, normed, L.kb);
      const vs = linear(L.v, Hkv * hd, d, normed, L.vb);
      const attn: Float64Array[] = [];
      for (let t = 0; t < xs.length; t++) {
        const pos = start + t;
        rope(qs[t], H, hd, pos, w.invFreq);
        rope(ks[t], Hkv, hd, pos, w.invFreq);
        this.keys[l].push(ks[t]);
        this.values[l].push(vs[t]);
        // Causal: position pos sees cache entries 0..pos, which are exactly those pushed so far.
        const n = pos + 1;
        const out = new Float64Array(H * hd);
        const scores = new Float64Array(n);
        for (let h = 0; h < H; h++) {
          const kvo = Math.floor(h / group) * hd, qo = h * hd;
          let max = -Infinity;
          for (let j = 0; j < n; j++) {
            const k = this.keys[l][j];
            let s = 0;
            for (let i = 0; i < hd; i++) s += qs[t][qo + i] * k[kvo + i];
            s *= scale;
            scores[j] = s;
            if (s > max) max = s;
          }
          let sum = 0;
          for (let j = 0; j < n; j++) { scores[j] = Math.exp(scores[j] - max); sum += scores[j]; }
          for (let j = 0; j < n; j++) {
            const p = scores[j] / sum, v = this.values[l][j];
            for (let i = 0; i < hd; i++) out[qo + i] += p * v[kvo + i];
          }
        }
        attn.push(out);
      }
      const os = linear(L.o, d, H * hd, attn, null);
      xs = xs.map((x, t) => { const y = x.slice(); for (let i = 0; i < d; i++) y[i] += os[t][i]; return y; });
      const normed2 = xs.map((x) => rmsNorm(x, L.postNorm, c.rmsNormEps));
      const gs = linear(L.gate, F, d, normed2, null);
      const us = linear(L.up, F, d, normed2, null);
      const acts = gs.map((g, t) => {
        const a = new Float64Array(F);
        for (let i = 0; i < F; i++) a[i] = (g[i] / (1 + Math.exp(-g[i]))) * us[t][i];
        return a;
      });
      const downs = linear(L.down, d, F, acts, null);
      xs = xs.map((x, t) => { const y = x.slice(); for (let i = 0; i < d; i++) y[i] += downs[t][i]; return y; });
      hidden.push(xs.map((x) => x.slice()));
    }
    this.length += ids.length;
    const finalNorm = xs.map((x) => rmsNorm(x, w.norm, c.rmsNormEps));
    const headIn = opts.lastOnly ? finalNorm.slice(-1) : finalNorm;
    const logits = linear(w.head, c.vocabSize, d, headIn, null);
    return { logits, hidden, embeddings, finalNorm };
  }
}

/** Full-sequence float64 forward pass: logits (and hidden states) at every position of `ids`. */
export function forward64(model: Reference64Model, ids: number[], opts: { lastOnly?: boolean } = {}): Forward64Result {
  return new Reference64Session(model).append(ids, opts);
}

export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** Top-k ids, highest logit first. */
export function topK(v: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: v.length }, (_, i) => i).sort((a, b) => v[b] - v[a] || a - b).slice(0, k);
}

/** Greedy decoding of `n` tokens after `ids` (no EOS stop), with each step's top-1 minus top-2 margin. */
export function greedy64(model: Reference64Model, ids: number[], n: number): { ids: number[]; margins: number[] } {
  const s = new Reference64Session(model);
  return continueGreedy64(s, s.append(ids, { lastOnly: true }).logits[0], n);
}

/** Greedy decoding from a session whose last position produced `logits` (reuses its KV cache). */
export function continueGreedy64(s: Reference64Session, logits: Float64Array, n: number): { ids: number[]; margins: number[] } {
  const out: number[] = [], margins: number[] = [];
  for (let step = 0; step < n; step++) {
    const [a, b] = topK(logits, 2);
    out.push(a);
    margins.push(logits[a] - logits[b]);
    if (step + 1 < n) logits = s.append([a], { lastOnly: true }).logits[0];
  }
  return { ids: out, margins };
}
