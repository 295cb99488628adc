import { describe, expect, it } from 'vitest';
import { makeDecoys } from '../runtime/scx/decoys.ts';
import {
  InvalidPermutationError,
  NoisePool,
  NoisePoolError,
  ShapeError,
  addRowNoise,
  appendRows,
  invertPermutation,
  kvHeadToGroup,
  linearRows,
  permuteHeadDims,
  permuteHeadDimsTokenMajor,
  permuteRows,
  queryHeadToGroup,
  subtractInPlace,
  subtractRowInPlace,
  takeRows,
  unpermuteHeadDims,
  unpermuteHeadDimsTokenMajor,
  unpermuteRows,
} from '../runtime/scx/encoding.ts';
import { OsRandom, SessionKeys } from '../runtime/scx/keys.ts';

const SEED = Uint8Array.from({ length: 32 }, (_, i) => (i * 91 + 5) & 0xff);

/** Deterministic test data (not a secret): xorshift32 -> floats in [-1, 1). */
function data(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/** Max |a - b| / (max |b| + eps). */
function relErr(a: Float32Array, b: Float32Array): number {
  let m = 0;
  let mb = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    mb = Math.max(mb, Math.abs(b[i]));
  }
  return m / (mb + 1e-30);
}

function naiveLinear(a: Float32Array, rows: number, inDim: number, W: Float32Array, outDim: number): Float64Array {
  const out = new Float64Array(rows * outDim);
  for (let r = 0; r < rows; r++) for (let o = 0; o < outDim; o++) {
    let s = 0;
    for (let i = 0; i < inDim; i++) s += a[r * inDim + i] * W[o * inDim + i];
    out[r * outDim + o] = s;
  }
  return out;
}

describe('row permutation', () => {
  it('follows out[i] = x[perm[i]] and round-trips exactly', () => {
    const keys = SessionKeys.fromSeed(SEED);
    const rows = 37;
    const cols = 11;
    const x = data(rows * cols, 1);
    const perm = keys.permutation(0, 'P1', 'pi1', rows);
    const y = permuteRows(x, rows, cols, perm);
    for (let i = 0; i < rows; i++) expect(y.subarray(i * cols, (i + 1) * cols)).toEqual(x.subarray(perm[i] * cols, (perm[i] + 1) * cols));
    expect(y).not.toEqual(x);
    expect(unpermuteRows(y, rows, cols, perm)).toEqual(x);
    // unpermuteRows is permuteRows with the inverse permutation.
    expect(permuteRows(y, rows, cols, invertPermutation(perm))).toEqual(x);
    // Zero rows is a valid (empty) prompt slice.
    expect(permuteRows(new Float32Array(0), 0, 4, new Int32Array(0)).length).toBe(0);
  });

  it('appendRows / takeRows add and drop decoys', () => {
    const x = data(12, 2);
    const extra = data(8, 3);
    const z = appendRows(x, 3, 4, extra, 2);
    expect(z.length).toBe(20);
    expect(z.subarray(12)).toEqual(extra);
    expect(takeRows(z, 4, 3)).toEqual(x);
    expect(takeRows(z, 4, 0).length).toBe(0);
  });

  it('throws typed errors for bad shapes and non-permutations', () => {
    const x = data(12, 4);
    expect(() => permuteRows(x, 4, 4, new Int32Array([0, 1, 2, 3]))).toThrow(ShapeError);
    expect(() => permuteRows(x, 3, 4, new Int32Array([0, 1]))).toThrow(ShapeError);
    expect(() => permuteRows(x, 3, 4, new Int32Array([0, 1, 1]))).toThrow(InvalidPermutationError);
    expect(() => unpermuteRows(x, 3, 4, new Int32Array([0, 1, 3]))).toThrow(InvalidPermutationError);
    expect(() => unpermuteRows(x, 3, 4, new Int32Array([0, -1, 2]))).toThrow(InvalidPermutationError);
    expect(() => appendRows(x, 3, 4, data(5, 1), 1)).toThrow(ShapeError);
    expect(() => takeRows(x, 5, 1)).toThrow(ShapeError);
    expect(() => takeRows(x, 4, 4)).toThrow(ShapeError);
    expect(() => permuteRows(x, 3, 0, new Int32Array([0, 1, 2]))).toThrow(ShapeError);
    expect(() => addRowNoise(x, 3, 4, data(3, 1), 'shared')).toThrow(ShapeError);
    expect(() => addRowNoise(x, 3, 4, data(4, 1), 'rows')).toThrow(ShapeError);
    expect(() => linearRows(x, 3, 4, data(10, 1), 3)).toThrow(ShapeError);
    expect(() => subtractInPlace(x, data(11, 1))).toThrow(ShapeError);
    expect(() => queryHeadToGroup(6, 4)).toThrow(ShapeError);
    try {
      permuteRows(x, 3, 4, new Int32Array([0, 0, 0]));
    } catch (e) {
      expect((e as Error).name).toBe('InvalidPermutationError');
      expect(e).toBeInstanceOf(ShapeError);
    }
  });
});

describe('head-dim permutation (P2)', () => {
  const H = 8;
  const Hkv = 2;
  const hd = 16;
  const n = 5;

  function dot(a: Float32Array, ao: number, b: Float32Array, bo: number): number {
    let s = 0;
    for (let j = 0; j < hd; j++) s += a[ao + j] * b[bo + j];
    return s;
  }

  it('preserves q.k for every query head against the kv head it reads (GQA)', () => {
    const keys = SessionKeys.fromSeed(SEED);
    const sigma = keys.headPermutations(3, 'sigma', Hkv, hd);
    const Q = data(H * n * hd, 10);
    const K = data(Hkv * n * hd, 11);
    const qg = queryHeadToGroup(H, Hkv);
    expect([0, 3, 4, 7].map(qg)).toEqual([0, 0, 1, 1]);
    const Qp = permuteHeadDims(Q, H, n, hd, sigma, qg);
    const Kp = permuteHeadDims(K, Hkv, n, hd, sigma, kvHeadToGroup);
    expect(Kp).not.toEqual(K);
    let worst = 0;
    let wrongGroupChanges = 0;
    for (let h = 0; h < H; h++) {
      const g = qg(h);
      for (let t = 0; t < n; t++) for (let s = 0; s < n; s++) {
        const plain = dot(Q, (h * n + t) * hd, K, (g * n + s) * hd);
        const enc = dot(Qp, (h * n + t) * hd, Kp, (g * n + s) * hd);
        worst = Math.max(worst, Math.abs(plain - enc));
        // Against the other kv head's permuted K, the product is NOT preserved: the mapping matters.
        const other = 1 - g;
        const wrong = dot(Qp, (h * n + t) * hd, Kp, (other * n + s) * hd);
        if (Math.abs(wrong - dot(Q, (h * n + t) * hd, K, (other * n + s) * hd)) > 1e-6) wrongGroupChanges++;
      }
    }
    // fp32 products are exact in float64; only the summation order differs.
    expect(worst).toBeLessThan(1e-12);
    expect(wrongGroupChanges).toBeGreaterThan(H * n * n * 0.9);
  });

  it('round-trips exactly in head-major and token-major layouts, which agree', () => {
    const keys = SessionKeys.fromSeed(SEED);
    const tau = keys.headPermutations(1, 'tau', Hkv, hd);
    const qg = queryHeadToGroup(H, Hkv);
    const X = data(H * n * hd, 12); // head-major [H, n, hd]
    const Xp = permuteHeadDims(X, H, n, hd, tau, qg);
    expect(unpermuteHeadDims(Xp, H, n, hd, tau, qg)).toEqual(X);
    // Token-major [n, H, hd] copy of X.
    const T = new Float32Array(X.length);
    for (let h = 0; h < H; h++) for (let t = 0; t < n; t++) T.set(X.subarray((h * n + t) * hd, (h * n + t + 1) * hd), (t * H + h) * hd);
    const Tp = permuteHeadDimsTokenMajor(T, n, H, hd, tau, qg);
    for (let h = 0; h < H; h++) for (let t = 0; t < n; t++) {
      expect(Tp.subarray((t * H + h) * hd, (t * H + h + 1) * hd)).toEqual(Xp.subarray((h * n + t) * hd, (h * n + t + 1) * hd));
    }
    expect(unpermuteHeadDimsTokenMajor(Tp, n, H, hd, tau, qg)).toEqual(T);
    expect(() => permuteHeadDims(X, H, n, hd, tau, () => 2)).toThrow(ShapeError);
    expect(() => permuteHeadDims(X, H, n, hd, new Int32Array(hd * 2 - 1), qg)).toThrow(ShapeError);
    const bad = new Int32Array(tau);
    bad[hd + 1] = bad[hd];
    expect(() => permuteHeadDims(X, H, n, hd, bad, qg)).toThrow(InvalidPermutationError);
  });

  it('causal attention on sigma/tau-permuted Q, K, V, then undoing tau, equals plain attention', () => {
    const keys = SessionKeys.fromSeed(SEED);
    const sigma = keys.headPermutations(2, 'sigma', Hkv, hd);
    const tau = keys.headPermutations(2, 'tau', Hkv, hd);
    const qg = queryHeadToGroup(H, Hkv);
    const Q = data(H * n * hd, 20);
    const K = data(Hkv * n * hd, 21);
    const V = data(Hkv * n * hd, 22);
    const attention = (q: Float32Array, k: Float32Array, v: Float32Array): Float32Array => {
      const out = new Float32Array(H * n * hd);
      const w = new Float64Array(n);
      for (let h = 0; h < H; h++) {
        const g = qg(h);
        for (let t = 0; t < n; t++) {
          let mx = -Infinity;
          for (let s = 0; s <= t; s++) {
            w[s] = dot(q, (h * n + t) * hd, k, (g * n + s) * hd) / Math.sqrt(hd);
            mx = Math.max(mx, w[s]);
          }
          let z = 0;
          for (let s = 0; s <= t; s++) z += w[s] = Math.exp(w[s] - mx);
          for (let j = 0; j < hd; j++) {
            let acc = 0;
            for (let s = 0; s <= t; s++) acc += (w[s] / z) * v[(g * n + s) * hd + j];
            out[(h * n + t) * hd + j] = acc;
          }
        }
      }
      return out;
    };
    const plain = attention(Q, K, V);
    const enc = attention(
      permuteHeadDims(Q, H, n, hd, sigma, qg),
      permuteHeadDims(K, Hkv, n, hd, sigma, kvHeadToGroup),
      permuteHeadDims(V, Hkv, n, hd, tau, kvHeadToGroup),
    );
    expect(enc).not.toEqual(plain);
    // O'' of query head h is in the tau basis of the kv head it reads.
    const decoded = unpermuteHeadDims(enc, H, n, hd, tau, qg);
    expect(relErr(decoded, plain)).toBeLessThan(1e-6);
  });
});

describe('noise and its compensation', () => {
  const rows = 7; // a 4-row block plus a remainder of 3
  const inDim = 64;
  const outDim = 96;
  const W = data(outDim * inDim, 30, 0.2);
  const x = data(rows * inDim, 31);

  it('linearRows computes a . W^T (HF layout) across tiles and every row-block remainder', () => {
    // float64 accumulation in a different order than the naive loop: equal up to the final fp32 rounding.
    const close = (got: Float32Array, ref: Float64Array): number => {
      let bad = 0;
      for (let i = 0; i < got.length; i++) if (Math.abs(got[i] - ref[i]) > Math.abs(ref[i]) * 2 ** -23 + 1e-12) bad++;
      return bad;
    };
    const ref = naiveLinear(x, rows, inDim, W, outDim);
    expect(close(linearRows(x, rows, inDim, W, outDim), ref)).toBe(0);
    // Row counts 1..5 cover the 4-row block and the single-row path.
    for (const rr of [1, 2, 3, 4, 5]) expect(close(linearRows(x.subarray(0, rr * inDim), rr, inDim, W, outDim), naiveLinear(x, rr, inDim, W, outDim))).toBe(0);
    // A different W is caught: the comparison can fail.
    expect(close(linearRows(x, rows, inDim, data(inDim * outDim, 99), outDim), ref)).toBeGreaterThan(0);
    // inDim large enough that one tile holds fewer W rows than outDim.
    const bigIn = 40_000;
    const a = data(3 * bigIn, 32);
    const Wb = data(13 * bigIn, 33, 0.01);
    const r2 = naiveLinear(a, 3, bigIn, Wb, 13);
    expect(close(linearRows(a, 3, bigIn, Wb, 13), r2)).toBe(0);
  });

  it("'shared': (x + a)W - aW == xW within fp32 rounding", () => {
    const keys = SessionKeys.fromSeed(SEED);
    const a = keys.laplace(4, 'P1', 'noise', inDim, 2);
    const noisy = addRowNoise(x, rows, inDim, a, 'shared');
    for (let r = 0; r < rows; r++) for (let j = 0; j < inDim; j++) expect(noisy[r * inDim + j]).toBe(Math.fround(x[r * inDim + j] + a[j]));
    const y = linearRows(noisy, rows, inDim, W, outDim); // what the cloud computes
    subtractRowInPlace(y, rows, outDim, linearRows(a, 1, inDim, W, outDim));
    const clean = linearRows(x, rows, inDim, W, outDim);
    // Rounding of x + a in fp32 is relative to |a| (scale 2), so allow a few ulps of that.
    expect(relErr(y, clean)).toBeLessThan(1e-5);
    // Without compensation the result is far off: the test can fail.
    expect(relErr(linearRows(noisy, rows, inDim, W, outDim), clean)).toBeGreaterThan(0.1);
  });

  it("'rows': (x + A)W - AW == xW within fp32 rounding", () => {
    const keys = SessionKeys.fromSeed(SEED);
    const A = keys.laplace(4, 'P1', 'noise', rows * inDim, 2);
    const y = linearRows(addRowNoise(x, rows, inDim, A, 'rows'), rows, inDim, W, outDim);
    subtractInPlace(y, linearRows(A, rows, inDim, W, outDim));
    expect(relErr(y, linearRows(x, rows, inDim, W, outDim))).toBeLessThan(1e-5);
  });

  it('a whole P1/P2 row path (decoys, noise, pi1, cloud matmul, decode) returns xW in true order', () => {
    const keys = SessionKeys.fromSeed(SEED);
    const layer = 6;
    const r = 4;
    const decoys = makeDecoys(x, rows, inDim, r, keys, layer);
    const all = appendRows(x, rows, inDim, decoys, r);
    for (const mode of ['shared', 'rows'] as const) {
      const a = keys.laplace(layer, 'P1', `noise.${mode}`, mode === 'shared' ? inDim : (rows + r) * inDim, 1);
      const pi1 = keys.permutation(layer, 'P1', 'pi1', rows + r);
      const sent = permuteRows(addRowNoise(all, rows + r, inDim, a, mode), rows + r, inDim, pi1);
      const returned = linearRows(sent, rows + r, inDim, W, outDim); // cloud
      const y = unpermuteRows(returned, rows + r, outDim, pi1);
      if (mode === 'shared') subtractRowInPlace(y, rows + r, outDim, linearRows(a, 1, inDim, W, outDim));
      else subtractInPlace(y, linearRows(a, rows + r, inDim, W, outDim));
      expect(relErr(takeRows(y, outDim, rows), linearRows(x, rows, inDim, W, outDim))).toBeLessThan(1e-5);
    }
  });
});

describe('NoisePool', () => {
  const inDim = 32;
  const outDim = 48;
  const W = data(outDim * inDim, 40, 0.3);

  it('hands each pair out once, with aW = a . W^T', () => {
    const keys = SessionKeys.fromSeed(SEED);
    const pool = new NoisePool(16);
    expect(pool.fill(3, 5, keys, 1.5, W, inDim, outDim)).toBe(5);
    expect(pool.size(3)).toBe(5);
    expect(pool.size(4)).toBe(0);
    const seen: Float32Array[] = [];
    for (let k = 0; k < 5; k++) {
      const p = pool.take(3)!;
      expect(p).toBeDefined();
      expect(p.layer).toBe(3);
      expect(p.scale).toBe(1.5);
      expect(p.aW).toEqual(linearRows(p.a, 1, inDim, W, outDim));
      for (const q of seen) expect(p.a).not.toEqual(q);
      seen.push(new Float32Array(p.a));
      expect(pool.size(3)).toBe(4 - k);
      NoisePool.zeroPair(p);
      expect(p.a.every((v) => v === 0) && p.aW.every((v) => v === 0)).toBe(true);
    }
    expect(pool.take(3)).toBeUndefined();
    // A refill from the same keys continues the sequence: still no repeats.
    pool.fill(3, 3, keys, 1.5, W, inDim, outDim);
    for (let k = 0; k < 3; k++) {
      const p = pool.take(3)!;
      for (const q of seen) expect(p.a).not.toEqual(q);
      seen.push(new Float32Array(p.a));
    }
    // Two pools filled from one SessionKeys do not share vectors either.
    const other = new NoisePool();
    other.fill(3, 2, keys, 1.5, W, inDim, outDim);
    for (let k = 0; k < 2; k++) {
      const p = other.take(3)!;
      for (const q of seen) expect(p.a).not.toEqual(q);
    }
  });

  it('replays from the seed, fills from the OS CSPRNG, keeps copies the keys cannot zero', () => {
    const p1 = new NoisePool();
    const p2 = new NoisePool();
    const k1 = SessionKeys.fromSeed(SEED);
    p1.fill(0, 1, k1, 1, W, inDim, outDim);
    p2.fill(0, 1, SessionKeys.fromSeed(SEED), 1, W, inDim, outDim);
    k1.destroy();
    expect(k1.allBuffersZeroed()).toBe(true);
    const a = p1.take(0)!;
    expect(a.a.some((v) => v !== 0)).toBe(true);
    expect(a.a).toEqual(p2.take(0)!.a);

    const os = new NoisePool();
    os.fill(1, 2, new OsRandom(), 1, W, inDim, outDim);
    const o1 = os.take(1)!;
    const o2 = os.take(1)!;
    expect(o1.a).not.toEqual(o2.a);
    expect(o1.aW).toEqual(linearRows(o1.a, 1, inDim, W, outDim));
  });

  it('enforces its limit and per-layer dims; clear() zeroes what it holds', () => {
    const pool = new NoisePool(4);
    const keys = SessionKeys.fromSeed(SEED);
    pool.fill(0, 4, keys, 1, W, inDim, outDim);
    expect(() => pool.fill(0, 1, keys, 1, W, inDim, outDim)).toThrow(NoisePoolError);
    expect(() => pool.fill(0, 0, keys, 1, data(outDim * 16, 1), 16, outDim)).toThrow(ShapeError);
    expect(() => pool.fill(1, 1, keys, 1, W, inDim, outDim + 1)).toThrow(ShapeError);
    const held = pool.take(0)!;
    pool.fill(2, 1, keys, 1, W, inDim, outDim);
    const before = [pool.size(0), pool.size(2)];
    expect(before).toEqual([3, 1]);
    pool.clear();
    expect(pool.size(0) + pool.size(2)).toBe(0);
    // A pair already taken belongs to the caller and is untouched by clear().
    expect(held.a.some((v) => v !== 0)).toBe(true);
  });
});

describe('decoys', () => {
  // Real rows shaped like RMSNorm'd hidden states: a per-dim norm weight, one massive dim, varying row RMS.
  const n = 24;
  const d = 64;
  const weight = Float32Array.from({ length: d }, (_, j) => (j === 5 ? 20 : 0.2 + (j % 7) * 0.3));
  const real = (() => {
    const base = data(n * d, 50);
    const out = new Float32Array(n * d);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += base[i * d + j] ** 2;
      const inv = 1 / Math.sqrt(s / d);
      for (let j = 0; j < d; j++) out[i * d + j] = base[i * d + j] * inv * weight[j] * (j === 5 ? Math.sign(base[i * d + j]) || 1 : 1);
      out[i * d + 5] = 20; // massive dim, same sign for every token
    }
    return out;
  })();
  const rmsOf = (x: Float32Array, o: number): number => {
    let s = 0;
    for (let j = 0; j < d; j++) s += x[o + j] ** 2;
    return Math.sqrt(s / d);
  };
  const realRms = Array.from({ length: n }, (_, i) => rmsOf(real, i * d));

  for (const scheme of ['resample', 'moment'] as const) {
    it(`${scheme}: RMS of a real row, per-dim scale of the real rows, no copies, replayable`, () => {
      const r = 200;
      const dec = makeDecoys(real, n, d, r, SessionKeys.fromSeed(SEED), 7, { scheme });
      expect(dec.length).toBe(r * d);
      expect(makeDecoys(real, n, d, r, SessionKeys.fromSeed(SEED), 7, { scheme })).toEqual(dec);
      expect(makeDecoys(real, n, d, r, SessionKeys.fromSeed(SEED), 8, { scheme })).not.toEqual(dec);
      let worstRms = 0;
      let copies = 0;
      for (let k = 0; k < r; k++) {
        const rms = rmsOf(dec, k * d);
        worstRms = Math.max(worstRms, Math.min(...realRms.map((v) => Math.abs(v - rms) / v)));
        for (let i = 0; i < n; i++) {
          let same = true;
          for (let j = 0; j < d && same; j++) same = dec[k * d + j] === real[i * d + j];
          if (same) copies++;
        }
      }
      // Rescaled to some real row's RMS: a norm filter cannot separate them (the prototype's N(0,1) failure).
      expect(worstRms).toBeLessThan(1e-5);
      expect(copies).toBe(0);
      // Per-dimension mean |value| of decoys tracks the real rows' (the norm weight and the massive dim).
      const mr = new Float64Array(d);
      const md = new Float64Array(d);
      for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mr[j] += Math.abs(real[i * d + j]) / n;
      for (let k = 0; k < r; k++) for (let j = 0; j < d; j++) md[j] += Math.abs(dec[k * d + j]) / r;
      let maxRatio = 0;
      for (let j = 0; j < d; j++) maxRatio = Math.max(maxRatio, Math.abs(Math.log(md[j] / mr[j])));
      expect(maxRatio).toBeLessThan(Math.log(1.6));
      // The massive dim keeps its sign and size.
      let minMassive = Infinity;
      for (let k = 0; k < r; k++) minMassive = Math.min(minMassive, dec[k * d + 5]);
      expect(minMassive).toBeGreaterThan(5);
    });
  }

  it('n = 1: each decoy holds the real row\'s values in other positions', () => {
    const one = real.slice(0, d);
    const dec = makeDecoys(one, 1, d, 3, SessionKeys.fromSeed(SEED), 0);
    const sorted = Array.from(one).sort((a, b) => a - b);
    for (let k = 0; k < 3; k++) {
      const row = dec.subarray(k * d, (k + 1) * d);
      expect(Array.from(row).sort((a, b) => a - b)).toEqual(sorted);
      expect(row).not.toEqual(one);
    }
  });

  it('r = 0 gives no rows; bad shapes throw ShapeError; decoy randomness is released', () => {
    const keys = SessionKeys.fromSeed(SEED);
    expect(makeDecoys(real, n, d, 0, keys, 0).length).toBe(0);
    expect(() => makeDecoys(new Float32Array(0), 0, d, 2, keys, 0)).toThrow(ShapeError);
    expect(() => makeDecoys(real, n, d + 1, 2, keys, 0)).toThrow(ShapeError);
    expect(() => makeDecoys(real, n, d, -1, keys, 0)).toThrow(ShapeError);
    makeDecoys(real, n, d, 5, keys, 0);
    makeDecoys(real, n, d, 5, keys, 1, { scheme: 'moment' });
    expect(keys.trackedBuffers).toBe(0);
  });
});
