import { createCipheriv, hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KeyLabelError, KeySizeError, KeysDestroyedError, MAX_DERIVED_ELEMENTS, OsRandom, SessionKeys } from '../runtime/scx/keys.ts';
import { assertPermutation } from '../runtime/scx/encoding.ts';

const SEED = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff);

function isPerm(p: Int32Array, n = p.length): boolean {
  try {
    assertPermutation(p, n);
    return true;
  } catch {
    return false;
  }
}

describe('SessionKeys derivation', () => {
  it('pins the derivation: HKDF-SHA256(seed, "hush/scx/v1|layer|crossing|purpose") -> ChaCha20 keystream -> 53-bit uniforms', () => {
    const keys = SessionKeys.fromSeed(SEED);
    const got = keys.uniform(3, 'P1', 'noise', 2);
    // Independent recomputation of the documented construction.
    const key = new Uint8Array(hkdfSync('sha256', SEED, new Uint8Array(0), 'hush/scx/v1|3|P1|noise', 32));
    const ks = createCipheriv('chacha20', key, new Uint8Array(16)).update(new Uint8Array(16));
    const expected = [0, 8].map((o) => ((ks.readUInt32LE(o) >>> 5) * 2 ** 26 + (ks.readUInt32LE(o + 4) >>> 6)) / 2 ** 53);
    expect(Array.from(got)).toEqual(expected);
    // The extra component is appended with one more "|".
    const withExtra = keys.uniform(3, 'P1', 'noise', 1, 'k=0');
    const key2 = new Uint8Array(hkdfSync('sha256', SEED, new Uint8Array(0), 'hush/scx/v1|3|P1|noise|k=0', 32));
    const ks2 = createCipheriv('chacha20', key2, new Uint8Array(16)).update(new Uint8Array(8));
    expect(withExtra[0]).toBe(((ks2.readUInt32LE(0) >>> 5) * 2 ** 26 + (ks2.readUInt32LE(4) >>> 6)) / 2 ** 53);
  });

  it('replays exactly from a seed, and copies the seed it was given', () => {
    const seed = new Uint8Array(SEED);
    const a = SessionKeys.fromSeed(seed);
    seed.fill(0); // must not affect a
    const b = SessionKeys.fromSeed(SEED);
    expect(a.permutation(2, 'P1', 'pi1', 100)).toEqual(b.permutation(2, 'P1', 'pi1', 100));
    expect(a.headPermutations(2, 'sigma', 4, 16)).toEqual(b.headPermutations(2, 'sigma', 4, 16));
    expect(a.laplace(2, 'P1', 'noise', 50, 0.5)).toEqual(b.laplace(2, 'P1', 'noise', 50, 0.5));
    expect(a.uniform(2, 'P1', 'u', 10)).toEqual(b.uniform(2, 'P1', 'u', 10));
    expect(a.integers(2, 'P1', 'i', 10, 7)).toEqual(b.integers(2, 'P1', 'i', 10, 7));
    expect(a.fingerprint()).toBe(b.fingerprint());
    expect(a.fingerprint()).toMatch(/^[0-9a-f]{16}$/);
    // A different seed gives a different fingerprint.
    expect(SessionKeys.fromSeed(new Uint8Array(32)).fingerprint()).not.toBe(a.fingerprint());
  });

  it('gives unrelated outputs for every label component', () => {
    const k = SessionKeys.fromSeed(SEED);
    const base = k.permutation(1, 'P1', 'pi1', 64);
    const variants = [
      k.permutation(2, 'P1', 'pi1', 64),
      k.permutation(1, 'P3', 'pi1', 64),
      k.permutation(1, 'P1', 'pi2', 64),
      k.permutation(1, 'P1', 'pi1', 64, 'x'),
    ];
    for (const v of variants) expect(v).not.toEqual(base);
    const sigma = k.headPermutations(1, 'sigma', 2, 32);
    const tau = k.headPermutations(1, 'tau', 2, 32);
    expect(sigma).not.toEqual(tau);
    expect(sigma.subarray(0, 32)).not.toEqual(sigma.subarray(32, 64)); // heads independent
  });

  it('two fresh sessions share no permutation or noise', () => {
    const a = SessionKeys.fresh();
    const b = SessionKeys.fresh();
    expect(a.fingerprint()).not.toBe(b.fingerprint());
    expect(a.permutation(0, 'P1', 'pi1', 64)).not.toEqual(b.permutation(0, 'P1', 'pi1', 64));
    expect(a.headPermutations(0, 'sigma', 2, 64)).not.toEqual(b.headPermutations(0, 'sigma', 2, 64));
    const na = a.laplace(0, 'P1', 'noise', 256, 1);
    const nb = b.laplace(0, 'P1', 'noise', 256, 1);
    let equal = 0;
    for (let i = 0; i < 256; i++) if (na[i] === nb[i]) equal++;
    expect(equal).toBe(0);
  });

  it('permutations are valid at every size, including 0 and 1', () => {
    const k = SessionKeys.fromSeed(SEED);
    for (const n of [0, 1, 2, 3, 7, 100, 10_000]) {
      const p = k.permutation(0, 'P1', 'pi1', n);
      expect(p.length).toBe(n);
      expect(isPerm(p)).toBe(true);
    }
    const h = k.headPermutations(0, 'tau', 3, 5);
    expect(h.length).toBe(15);
    for (let g = 0; g < 3; g++) expect(isPerm(h.subarray(g * 5, g * 5 + 5), 5)).toBe(true);
  });

  it('permutations are uniform: every value at every position, every permutation of 4', () => {
    const k = SessionKeys.fromSeed(SEED);
    // Position x value counts for n = 8.
    const n = 8;
    const T = 2000;
    const counts = new Float64Array(n * n);
    for (let t = 0; t < T; t++) {
      const p = k.permutation(0, 'P1', 'chi', n, `t${t}`);
      for (let i = 0; i < n; i++) counts[i * n + p[i]]++;
      k.release(p);
    }
    const e = T / n;
    let chi = 0;
    for (const c of counts) chi += ((c - e) * (c - e)) / e;
    // 49 degrees of freedom: mean 49, p(chi > 100) ~ 2e-5.
    expect(chi).toBeLessThan(100);
    // All 24 permutations of 4 equally often (this catches naive "swap with any index" shuffles,
    // whose per-position counts can look fine).
    const T4 = 1200;
    const perms = new Map<string, number>();
    for (let t = 0; t < T4; t++) {
      const p = k.permutation(0, 'P1', 'chi4', 4, `t${t}`);
      const key = p.join('');
      perms.set(key, (perms.get(key) ?? 0) + 1);
      k.release(p);
    }
    expect(perms.size).toBe(24);
    let chi4 = 0;
    for (const c of perms.values()) chi4 += ((c - 50) * (c - 50)) / 50;
    // 23 degrees of freedom: p(chi > 60) ~ 4e-5.
    expect(chi4).toBeLessThan(60);
  });

  it('Laplace(0, b) has the right mean, mean |x| = b, variance 2b^2 and median 0', () => {
    const k = SessionKeys.fromSeed(SEED);
    const b = 2;
    const n = 200_000;
    const x = k.laplace(5, 'P1', 'noise', n, b);
    let s = 0;
    let sa = 0;
    let s2 = 0;
    let pos = 0;
    let nonFinite = 0;
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(x[i])) nonFinite++;
      s += x[i];
      sa += Math.abs(x[i]);
      s2 += x[i] * x[i];
      if (x[i] > 0) pos++;
    }
    expect(nonFinite).toBe(0);
    const mean = s / n;
    // Standard errors: mean sqrt(2)b/sqrt(n) = 0.0063; mean|x| b/sqrt(n) = 0.0045.
    expect(Math.abs(mean)).toBeLessThan(0.035);
    expect(Math.abs(sa / n - b)).toBeLessThan(0.03);
    expect(Math.abs(s2 / n - 2 * b * b) / (2 * b * b)).toBeLessThan(0.03);
    expect(Math.abs(pos / n - 0.5)).toBeLessThan(0.01);
    // P(|X| > b ln 10) = 0.1 for Laplace: checks the tails, not only the moments.
    let tail = 0;
    for (let i = 0; i < n; i++) if (Math.abs(x[i]) > b * Math.log(10)) tail++;
    expect(Math.abs(tail / n - 0.1)).toBeLessThan(0.005);
    // Scale 0 switches noise off.
    expect(k.laplace(5, 'P1', 'off', 10, 0).every((v) => v === 0)).toBe(true);
  });

  it('uniform doubles lie in [0, 1) and integers in [0, bound), both uniform', () => {
    const k = SessionKeys.fromSeed(SEED);
    const u = k.uniform(0, 'P1', 'u', 100_000);
    let s = 0;
    let outside = 0;
    for (const v of u) {
      if (!(v >= 0 && v < 1)) outside++;
      s += v;
    }
    expect(outside).toBe(0);
    expect(Math.abs(s / u.length - 0.5)).toBeLessThan(0.005);
    const ints = k.integers(0, 'P1', 'i', 60_000, 3);
    const c = [0, 0, 0];
    for (const v of ints) c[v]++;
    for (const x of c) expect(Math.abs(x - 20_000)).toBeLessThan(600);
  });

  it('freshLaplace never repeats a vector, and replays from the seed', () => {
    const a = SessionKeys.fromSeed(SEED);
    const b = SessionKeys.fromSeed(SEED);
    const v1 = a.freshLaplace(4, 16, 1);
    const v2 = a.freshLaplace(4, 16, 1);
    expect(v1).not.toEqual(v2);
    expect(b.freshLaplace(4, 16, 1)).toEqual(v1);
    // Other layers have their own counter and their own labels.
    expect(a.freshLaplace(5, 16, 1)).not.toEqual(v1);
    const os = new OsRandom();
    expect(os.freshLaplace(4, 16, 1)).not.toEqual(os.freshLaplace(4, 16, 1));
  });

  it('rejects ambiguous labels and bad sizes with typed errors', () => {
    const k = SessionKeys.fromSeed(SEED);
    expect(() => k.permutation(0, 'P1|x', 'pi', 4)).toThrow(KeyLabelError);
    expect(() => k.permutation(0, 'P1', '', 4)).toThrow(KeyLabelError);
    expect(() => k.permutation(-1, 'P1', 'pi', 4)).toThrow(KeyLabelError);
    expect(() => k.permutation(1.5, 'P1', 'pi', 4)).toThrow(KeyLabelError);
    expect(() => k.laplace(0, 'P1', 'n', 4, 1, 'a|b')).toThrow(KeyLabelError);
    expect(() => k.headPermutations(0, 'rho' as 'sigma', 1, 4)).toThrow(KeyLabelError);
    expect(() => k.permutation(0, 'P1', 'pi', -1)).toThrow(KeySizeError);
    expect(() => k.permutation(0, 'P1', 'pi', 2.5)).toThrow(KeySizeError);
    expect(() => k.laplace(0, 'P1', 'n', MAX_DERIVED_ELEMENTS + 1, 1)).toThrow(KeySizeError);
    expect(() => k.laplace(0, 'P1', 'n', 4, -1)).toThrow(KeySizeError);
    expect(() => k.laplace(0, 'P1', 'n', 4, Number.NaN)).toThrow(KeySizeError);
    expect(() => k.integers(0, 'P1', 'i', 4, 0)).toThrow(KeySizeError);
    expect(() => SessionKeys.fromSeed(new Uint8Array(16))).toThrow(KeySizeError);
    try {
      k.permutation(0, 'P1|x', 'pi', 4);
    } catch (e) {
      expect((e as Error).name).toBe('KeyLabelError');
    }
  });
});

describe('SessionKeys.destroy', () => {
  it('zeroes the seed and every buffer it handed out, then refuses to derive', () => {
    const k = SessionKeys.fromSeed(SEED);
    const bufs = [
      k.permutation(0, 'P1', 'pi1', 50),
      k.headPermutations(0, 'sigma', 2, 8),
      k.laplace(0, 'P1', 'noise', 50, 1),
      k.uniform(0, 'P1', 'u', 50),
      k.integers(0, 'P1', 'i', 50, 9),
      k.freshLaplace(0, 50, 1),
    ];
    expect(k.allBuffersZeroed()).toBe(false);
    expect(k.trackedBuffers).toBe(bufs.length);
    k.destroy();
    expect(k.isDestroyed).toBe(true);
    expect(k.allBuffersZeroed()).toBe(true);
    for (const b of bufs) expect(Array.from(b).every((v) => v === 0)).toBe(true);
    const calls: Array<() => unknown> = [
      () => k.permutation(0, 'P1', 'pi1', 5),
      () => k.headPermutations(0, 'tau', 1, 4),
      () => k.laplace(0, 'P1', 'noise', 5, 1),
      () => k.uniform(0, 'P1', 'u', 5),
      () => k.integers(0, 'P1', 'i', 5, 2),
      () => k.freshLaplace(0, 5, 1),
      () => k.fingerprint(),
    ];
    for (const c of calls) {
      expect(c).toThrow(KeysDestroyedError);
      try {
        c();
      } catch (e) {
        expect((e as Error).name).toBe('KeysDestroyedError');
      }
    }
  });

  it('release() zeroes a buffer early and stops tracking it', () => {
    const k = SessionKeys.fromSeed(SEED);
    const p = k.permutation(0, 'P1', 'pi1', 50);
    const keep = k.laplace(0, 'P1', 'noise', 10, 1);
    k.release(p);
    expect(p.every((v) => v === 0)).toBe(true);
    expect(k.trackedBuffers).toBe(1);
    expect(keep.some((v) => v !== 0)).toBe(true);
    k.destroy();
    expect(keep.every((v) => v === 0)).toBe(true);
  });
});
