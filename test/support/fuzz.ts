/** Seeded mutations of protocol messages for fuzz tests: every run is reproducible from its seed. */
export class FuzzRandom {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0 || 1; }
  next(): number {
    // xorshift32
    let x = this.s;
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    this.s = x;
    return x / 2 ** 32;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]; }
}

const WEIRD_VALUES = (r: FuzzRandom): unknown[] => [
  undefined, null, true, 0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 31, -(2 ** 53), Number.MAX_SAFE_INTEGER,
  '', 'x'.repeat(1 + r.int(300)), '../../etc/passwd', '\u0000', {}, [], [1, 2, 3], { nested: { deep: [null] } },
  new Float32Array(r.int(64)), new Float64Array(r.int(16)), new Int32Array(r.int(16)), new Uint8Array(r.int(32)),
  new Float32Array(r.int(4096)).fill(NaN), new Float32Array(1 + r.int(8)).fill(1e38),
];

/** A mutated copy of a valid message: fields dropped, replaced, retyped, arrays resized, or extra junk. */
export function mutate(msg: Record<string, unknown>, r: FuzzRandom): unknown {
  const kind = r.int(10);
  if (kind === 0) return r.pick(WEIRD_VALUES(r));
  const m: Record<string, unknown> = { ...msg };
  const keys = Object.keys(m);
  const k = r.pick(keys);
  switch (kind) {
    case 1: delete m[k]; break;
    case 2: m[k] = r.pick(WEIRD_VALUES(r)); break;
    case 3: {
      const v = m[k];
      if (v instanceof Float32Array) m[k] = v.slice(0, r.int(v.length + 1));
      else if (typeof v === 'number') m[k] = v + r.pick([-1, 1, 1000, -1000, 1 << 20]);
      else m[k] = r.pick(WEIRD_VALUES(r));
      break;
    }
    case 4: m.type = r.pick(['open', 'P1', 'P2', 'P3', 'keyshare', 'decode', 'end', 'split', 'forward', 'drop', 'nope', 7]); break;
    case 5: m.session = r.pick(['', 'a'.repeat(65), 'has space', 'ok-session', 'unknown-' + r.int(1000), 42]); break;
    case 6: m[`junk${r.int(5)}`] = r.pick(WEIRD_VALUES(r)); break;
    case 7: for (const kk of keys) if (m[kk] instanceof Float32Array) m[kk] = new Float32Array((m[kk] as Float32Array).length + 1 + r.int(64)); break;
    case 8: m.layer = r.pick([-1, 0, 1, 2, 3, 100, 4096, 1.5]); break;
    default: m.rows = r.pick([0, 1, 3, 1 << 20, -5]); m.n = r.pick([0, 1, 2, 600, -1]); break;
  }
  return m;
}
