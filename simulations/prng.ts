/**
 * Seeded PRNG for the simulator: xoshiro128** seeded through splitmix32, so a run is a pure function
 * of its seed. `fork(label)` derives an independent stream, so adding draws in one part of a simulation
 * (say, the workload) does not shift the numbers another part (say, the world's devices) sees.
 */
function splitmix32(state: number): [number, number] {
  state = (state + 0x9e3779b9) | 0;
  let z = state;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [state, (z ^ (z >>> 16)) >>> 0];
}

/** FNV-1a over a string's UTF-16 code units. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193); }
  return h >>> 0;
}

export class Prng {
  private a: number; private b: number; private c: number; private d: number;
  readonly seed: number;

  constructor(seed: number | string) {
    this.seed = typeof seed === 'string' ? hashString(seed) : seed >>> 0;
    let st = this.seed;
    let v: number;
    [st, v] = splitmix32(st); this.a = v;
    [st, v] = splitmix32(st); this.b = v;
    [st, v] = splitmix32(st); this.c = v;
    [st, v] = splitmix32(st); this.d = v;
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** Next 32 random bits. */
  nextU32(): number {
    const r = Math.imul(this.rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a; this.d ^= this.b; this.b ^= this.c; this.a ^= this.d;
    this.c ^= t;
    this.d = this.rotl(this.d, 11);
    return r;
  }
  private rotl(x: number, k: number): number { return (x << k) | (x >>> (32 - k)); }

  /** Uniform in [0, 1). */
  next(): number { return this.nextU32() / 4294967296; }
  /** Uniform integer in [0, n). */
  int(n: number): number { return Math.floor(this.next() * n); }
  /** Uniform in [lo, hi). */
  range(lo: number, hi: number): number { return lo + (hi - lo) * this.next(); }
  /** Exponential with the given mean (0 when mean is 0). */
  exp(mean: number): number { return mean > 0 ? -mean * Math.log(1 - this.next()) : 0; }
  /** Standard normal (Box-Muller). */
  normal(): number {
    const u = 1 - this.next(), v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
  /** Losses before a message gets through, each with probability p (geometric). */
  losses(p: number): number {
    let n = 0;
    while (p > 0 && n < 64 && this.next() < p) n++;
    return n;
  }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]; }
  /** Pick a key of a weight table. */
  weighted(weights: Record<string, number>): string {
    const keys = Object.keys(weights).sort();
    const total = keys.reduce((s, k) => s + weights[k], 0);
    let x = this.next() * total;
    for (const k of keys) { x -= weights[k]; if (x < 0) return k; }
    return keys[keys.length - 1];
  }
  /** An independent stream derived from this seed and a label. */
  fork(label: string): Prng { return new Prng((this.seed ^ hashString(label)) >>> 0 ^ 0x5bd1e995); }
}
