/** Sampling settings. temperature 0 means greedy (argmax; ties go to the lowest id). */
export interface SamplingOptions {
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
}

/** A small seeded PRNG (splitmix64 via BigInt-free 32-bit halves: mulberry32 pairs) giving doubles in [0,1). */
export class SeededRandom {
  private a: number; private b: number;
  constructor(seed: number) {
    this.a = (seed >>> 0) ^ 0x9e3779b9;
    this.b = Math.floor(seed / 2 ** 32) ^ 0x85ebca6b;
  }
  private next32(which: 'a' | 'b'): number {
    let t = (this[which] = (this[which] + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  next(): number {
    return (this.next32('a') * 2 ** 21 + (this.next32('b') >>> 11)) / 2 ** 53;
  }
}

export function argmax(logits: Float32Array, offset = 0, n = logits.length - offset): number {
  let best = 0, bv = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = logits[offset + i];
    if (v > bv) { bv = v; best = i; }
  }
  return best;
}

/** Pick the next token from one row of logits. */
export function sampleToken(logits: Float32Array, opts: SamplingOptions, rng: SeededRandom): number {
  const T = opts.temperature ?? 0;
  if (!(T > 0)) return argmax(logits);
  const n = logits.length;
  let idx = Array.from({ length: n }, (_, i) => i).sort((x, y) => logits[y] - logits[x] || x - y);
  const k = opts.topK && opts.topK > 0 ? Math.min(opts.topK, n) : n;
  idx = idx.slice(0, k);
  const max = logits[idx[0]];
  let probs = idx.map((i) => Math.exp((logits[i] - max) / T));
  let sum = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / sum);
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    let acc = 0, cut = probs.length;
    for (let i = 0; i < probs.length; i++) {
      acc += probs[i];
      if (acc >= topP) { cut = i + 1; break; }
    }
    idx = idx.slice(0, cut);
    probs = probs.slice(0, cut);
    sum = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / sum);
  }
  let r = rng.next();
  for (let i = 0; i < probs.length; i++) {
    r -= probs[i];
    if (r < 0) return idx[i];
  }
  return idx[idx.length - 1];
}
