import type { ModelConfig } from './config.ts';

/** RoPE inverse frequencies (HF convention), with llama3 scaling when configured. */
export function ropeInvFreq(c: ModelConfig): Float64Array {
  const half = c.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(c.ropeTheta, (2 * i) / c.headDim);
  const s = c.ropeScaling;
  if (s) {
    // transformers' _compute_llama3_parameters
    const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] = inv[i] / s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i] / s.factor) + smooth * inv[i];
      }
    }
  }
  return inv;
}

/**
 * cos and signed-sin tables [positions, headDim] such that
 * rope(x) = x * cos + swapHalves(x) * sinSigned, which equals HF's x*cos + rotate_half(x)*sin.
 */
export function ropeTables(c: ModelConfig, positions: number): { cos: Float32Array; sinSigned: Float32Array } {
  const hd = c.headDim, half = hd / 2;
  const inv = ropeInvFreq(c);
  const cos = new Float32Array(positions * hd);
  const sinSigned = new Float32Array(positions * hd);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * inv[i];
      const co = Math.cos(a), si = Math.sin(a);
      cos[p * hd + i] = co;
      cos[p * hd + half + i] = co;
      sinSigned[p * hd + i] = -si;
      sinSigned[p * hd + half + i] = si;
    }
  }
  return { cos, sinSigned };
}

/**
 * Apply RoPE to a head-major tensor [heads, n, hd] whose row j sits at position start + j (the SCX
 * coordinator's side of P2). The stage graphs' fused RotaryEmbedding computes the same function; the
 * two agree to float32 rounding (about 1e-6 relative).
 */
export function applyRope(x: Float32Array, heads: number, n: number, hd: number, start: number,
  tables: { cos: Float32Array; sinSigned: Float32Array }): Float32Array {
  const half = hd / 2;
  const out = new Float32Array(x.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < n; j++) {
      const base = (h * n + j) * hd, t = (start + j) * hd;
      for (let i = 0; i < hd; i++) {
        const swapped = x[base + (i < half ? i + half : i - half)];
        out[base + i] = Math.fround(x[base + i] * tables.cos[t + i]) + Math.fround(swapped * tables.sinSigned[t + i]);
      }
    }
  }
  return out;
}
