import type { FreshNoiseSource } from './keys.ts';

/**
 * SCX encode/decode primitives (SCX.md, stage 1). Small pure functions on row-major Float32Array.
 * Each returns a new array (except the *InPlace ones) and checks shapes, throwing ShapeError.
 *
 * Row permutation convention (used everywhere in Hush):
 *   permuteRows:   out[i] = x[perm[i]]      (row i of what is sent is row perm[i] of the true order)
 *   unpermuteRows: out[perm[i]] = y[i]      (exact inverse: unpermuteRows(permuteRows(x, p), p) == x)
 * Head-dim permutations follow the same convention inside each head vector of length hd:
 *   permuted[j] = v[perm[j]],  so  sum_j q'[j] k'[j] = sum_j q[perm[j]] k[perm[j]] = q . k
 * when q and k use the same perm; that is why sigma_g is applied to K of kv head g and to Q of every
 * query head that reads g.
 */

export class ShapeError extends Error {
  override name = 'ShapeError';
}

/** A permutation that is not a permutation of [0, n) (e.g. a corrupt key received from the network). */
export class InvalidPermutationError extends ShapeError {
  override name = 'InvalidPermutationError';
}

export class NoisePoolError extends Error {
  override name = 'NoisePoolError';
}

function dim(v: number, what: string, min = 0): void {
  if (!Number.isSafeInteger(v) || v < min) throw new ShapeError(`${what} must be an integer >= ${min}, got ${v}`);
}

function len(a: ArrayLike<number>, expected: number, what: string): void {
  if (a.length !== expected) throw new ShapeError(`${what}: expected ${expected} elements, got ${a.length}`);
}

/** Throws InvalidPermutationError unless perm[off .. off+n) is a permutation of [0, n). */
export function assertPermutation(perm: Int32Array, n: number, off = 0, what = 'permutation'): void {
  if (off + n > perm.length) throw new ShapeError(`${what}: needs ${off + n} entries, got ${perm.length}`);
  const seen = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const p = perm[off + i];
    if (p < 0 || p >= n || seen[p] === 1) throw new InvalidPermutationError(`${what}: not a permutation of [0, ${n}) (entry ${i} = ${p})`);
    seen[p] = 1;
  }
}

/** inv such that inv[perm[i]] = i. */
export function invertPermutation(perm: Int32Array): Int32Array {
  assertPermutation(perm, perm.length);
  const inv = new Int32Array(perm.length);
  for (let i = 0; i < perm.length; i++) inv[perm[i]] = i;
  return inv;
}

// ---------------------------------------------------------------------------------------------
// Rows

/** out[i] = x[perm[i]] for x of shape [rows, cols]. */
export function permuteRows(x: Float32Array, rows: number, cols: number, perm: Int32Array): Float32Array {
  dim(rows, 'rows');
  dim(cols, 'cols', 1);
  len(x, rows * cols, 'permuteRows x');
  len(perm, rows, 'permuteRows perm');
  assertPermutation(perm, rows);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const s = perm[i] * cols;
    out.set(x.subarray(s, s + cols), i * cols);
  }
  return out;
}

/** Inverse of permuteRows: out[perm[i]] = y[i]. */
export function unpermuteRows(y: Float32Array, rows: number, cols: number, perm: Int32Array): Float32Array {
  dim(rows, 'rows');
  dim(cols, 'cols', 1);
  len(y, rows * cols, 'unpermuteRows y');
  len(perm, rows, 'unpermuteRows perm');
  assertPermutation(perm, rows);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) out.set(y.subarray(i * cols, (i + 1) * cols), perm[i] * cols);
  return out;
}

/** [x; extra]: x [rows, cols] followed by extra [extraRows, cols]. */
export function appendRows(x: Float32Array, rows: number, cols: number, extra: Float32Array, extraRows: number): Float32Array {
  dim(rows, 'rows');
  dim(extraRows, 'extraRows');
  dim(cols, 'cols', 1);
  len(x, rows * cols, 'appendRows x');
  len(extra, extraRows * cols, 'appendRows extra');
  const out = new Float32Array((rows + extraRows) * cols);
  out.set(x, 0);
  out.set(extra, rows * cols);
  return out;
}

/** The first `count` rows of x [*, cols] (drops the decoys appended after the real rows). */
export function takeRows(x: Float32Array, cols: number, count: number): Float32Array {
  dim(cols, 'cols', 1);
  dim(count, 'count');
  if (x.length % cols !== 0) throw new ShapeError(`takeRows: ${x.length} elements is not a whole number of rows of ${cols}`);
  if (count * cols > x.length) throw new ShapeError(`takeRows: asked for ${count} rows, have ${x.length / cols}`);
  return x.slice(0, count * cols);
}

// ---------------------------------------------------------------------------------------------
// Head dims

/** Query head h of H reads kv head floor(h / (H / Hkv)) (grouped-query attention; MHA when H == Hkv). */
export function queryHeadToGroup(numHeads: number, numKvHeads: number): (h: number) => number {
  dim(numHeads, 'numHeads', 1);
  dim(numKvHeads, 'numKvHeads', 1);
  if (numHeads % numKvHeads !== 0) throw new ShapeError(`numHeads ${numHeads} is not a multiple of numKvHeads ${numKvHeads}`);
  const per = numHeads / numKvHeads;
  return (h) => Math.floor(h / per);
}

/** K and V head g uses group g. */
export const kvHeadToGroup = (h: number): number => h;

/**
 * Shared core: `blocks` vectors of length hd; vector b belongs to head headOf(b); perm of that head's
 * group applied (inverse = false: out[j] = v[p[j]]; inverse = true: out[p[j]] = v[j]).
 */
function headDimCore(
  x: Float32Array,
  heads: number,
  n: number,
  hd: number,
  perms: Int32Array,
  headToGroup: (h: number) => number,
  tokenMajor: boolean,
  inverse: boolean,
  fn: string,
): Float32Array {
  dim(heads, 'heads', 1);
  dim(n, 'n');
  dim(hd, 'hd', 1);
  len(x, heads * n * hd, `${fn} x`);
  if (perms.length % hd !== 0 || perms.length === 0) throw new ShapeError(`${fn}: perms must be [groups, ${hd}], got ${perms.length} entries`);
  const groups = perms.length / hd;
  for (let g = 0; g < groups; g++) assertPermutation(perms, hd, g * hd, `${fn} perms[${g}]`);
  const groupOf = new Int32Array(heads);
  for (let h = 0; h < heads; h++) {
    const g = headToGroup(h);
    if (!Number.isInteger(g) || g < 0 || g >= groups) throw new ShapeError(`${fn}: head ${h} maps to group ${g}, have ${groups} groups`);
    groupOf[h] = g;
  }
  const out = new Float32Array(x.length);
  for (let h = 0; h < heads; h++) {
    const po = groupOf[h] * hd;
    for (let t = 0; t < n; t++) {
      // head-major [heads, n, hd] or token-major [n, heads, hd]
      const base = tokenMajor ? (t * heads + h) * hd : (h * n + t) * hd;
      if (inverse) for (let j = 0; j < hd; j++) out[base + perms[po + j]] = x[base + j];
      else for (let j = 0; j < hd; j++) out[base + j] = x[base + perms[po + j]];
    }
  }
  return out;
}

/**
 * Permute the head dimension of a head-major tensor x [heads, n, hd]: head h uses perms[headToGroup(h)]
 * (perms is [groups, hd]): out[h, t, j] = x[h, t, perm[j]].
 */
export function permuteHeadDims(x: Float32Array, heads: number, n: number, hd: number, perms: Int32Array, headToGroup: (h: number) => number): Float32Array {
  return headDimCore(x, heads, n, hd, perms, headToGroup, false, false, 'permuteHeadDims');
}

/** Inverse of permuteHeadDims: out[h, t, perm[j]] = y[h, t, j]. */
export function unpermuteHeadDims(y: Float32Array, heads: number, n: number, hd: number, perms: Int32Array, headToGroup: (h: number) => number): Float32Array {
  return headDimCore(y, heads, n, hd, perms, headToGroup, false, true, 'unpermuteHeadDims');
}

/** As permuteHeadDims for the token-major layout [n, heads, hd] (the layout a projection produces). */
export function permuteHeadDimsTokenMajor(x: Float32Array, n: number, heads: number, hd: number, perms: Int32Array, headToGroup: (h: number) => number): Float32Array {
  return headDimCore(x, heads, n, hd, perms, headToGroup, true, false, 'permuteHeadDimsTokenMajor');
}

/** Inverse of permuteHeadDimsTokenMajor. */
export function unpermuteHeadDimsTokenMajor(y: Float32Array, n: number, heads: number, hd: number, perms: Int32Array, headToGroup: (h: number) => number): Float32Array {
  return headDimCore(y, heads, n, hd, perms, headToGroup, true, true, 'unpermuteHeadDimsTokenMajor');
}

// ---------------------------------------------------------------------------------------------
// Noise

export type NoiseMode = 'shared' | 'rows';

/** x + noise: 'shared' adds one vector noise [cols] to every row; 'rows' adds noise [rows, cols] elementwise. */
export function addRowNoise(x: Float32Array, rows: number, cols: number, noise: Float32Array, mode: NoiseMode): Float32Array {
  dim(rows, 'rows');
  dim(cols, 'cols', 1);
  len(x, rows * cols, 'addRowNoise x');
  const out = new Float32Array(x.length);
  if (mode === 'shared') {
    len(noise, cols, 'addRowNoise noise (shared)');
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      for (let j = 0; j < cols; j++) out[o + j] = x[o + j] + noise[j];
    }
  } else if (mode === 'rows') {
    len(noise, rows * cols, 'addRowNoise noise (rows)');
    for (let i = 0; i < x.length; i++) out[i] = x[i] + noise[i];
  } else {
    throw new ShapeError(`addRowNoise: mode must be 'shared' or 'rows', got ${String(mode)}`);
  }
  return out;
}

/** target -= sub, elementwise (same length). Returns target. */
export function subtractInPlace(target: Float32Array, sub: Float32Array): Float32Array {
  len(sub, target.length, 'subtractInPlace sub');
  for (let i = 0; i < target.length; i++) target[i] -= sub[i];
  return target;
}

/** target[r, :] -= row for every r of target [rows, cols] (compensation of 'shared' noise). Returns target. */
export function subtractRowInPlace(target: Float32Array, rows: number, cols: number, row: Float32Array): Float32Array {
  dim(rows, 'rows');
  dim(cols, 'cols', 1);
  len(target, rows * cols, 'subtractRowInPlace target');
  len(row, cols, 'subtractRowInPlace row');
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let j = 0; j < cols; j++) target[o + j] -= row[j];
  }
  return target;
}

// Output rows of W processed per tile: 32 rows of a 4096-wide W is 512 KiB, about an L2, so each tile of W
// is read from memory once and reused for every input row.
const TILE_BYTES = 512 * 1024;

/**
 * a · Wᵀ for a [rows, inDim] and W in HF layout [outDim, inDim]: out [rows, outDim],
 * out[r, o] = sum_i a[r, i] * W[o, i]. Accumulates in float64, rounds once to fp32.
 * Loop order: tiles of W rows (fit in cache) x input rows in blocks of 4 x W rows in the tile, so both
 * inner operands are contiguous, each W element loaded serves four input rows, and the four
 * independent sums hide the add latency. A single row uses four partial sums for the same reason.
 */
export function linearRows(a: Float32Array, rows: number, inDim: number, W: Float32Array, outDim: number): Float32Array {
  dim(rows, 'rows');
  dim(inDim, 'inDim', 1);
  dim(outDim, 'outDim', 1);
  len(a, rows * inDim, 'linearRows a');
  len(W, outDim * inDim, 'linearRows W');
  const out = new Float32Array(rows * outDim);
  const tile = Math.max(1, Math.floor(TILE_BYTES / (inDim * 4)));
  for (let o0 = 0; o0 < outDim; o0 += tile) {
    const o1 = Math.min(outDim, o0 + tile);
    let r = 0;
    for (; r + 3 < rows; r += 4) {
      const a0 = r * inDim;
      const a1 = a0 + inDim;
      const a2 = a1 + inDim;
      const a3 = a2 + inDim;
      for (let o = o0; o < o1; o++) {
        const w = o * inDim;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        for (let i = 0; i < inDim; i++) {
          const wv = W[w + i];
          s0 += a[a0 + i] * wv;
          s1 += a[a1 + i] * wv;
          s2 += a[a2 + i] * wv;
          s3 += a[a3 + i] * wv;
        }
        out[r * outDim + o] = s0;
        out[(r + 1) * outDim + o] = s1;
        out[(r + 2) * outDim + o] = s2;
        out[(r + 3) * outDim + o] = s3;
      }
    }
    for (; r < rows; r++) {
      const a0 = r * inDim;
      const i4 = inDim - (inDim % 4);
      for (let o = o0; o < o1; o++) {
        const w = o * inDim;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        let i = 0;
        for (; i < i4; i += 4) {
          s0 += a[a0 + i] * W[w + i];
          s1 += a[a0 + i + 1] * W[w + i + 1];
          s2 += a[a0 + i + 2] * W[w + i + 2];
          s3 += a[a0 + i + 3] * W[w + i + 3];
        }
        for (; i < inDim; i++) s0 += a[a0 + i] * W[w + i];
        out[r * outDim + o] = s0 + s1 + (s2 + s3);
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Noise pool

export interface NoisePair {
  layer: number;
  /** Laplace noise vector [inDim], added to every row at P1 ('shared' mode). */
  a: Float32Array;
  /** a · W_qkvᵀ [outDim], subtracted from every returned row. */
  aW: Float32Array;
  scale: number;
  inDim: number;
  outDim: number;
}

interface LayerPool {
  inDim: number;
  outDim: number;
  pairs: NoisePair[];
}

/**
 * Precomputed (a, a·W_qkv) pairs per layer for noise "shared", so the coordinator need not do the
 * vector-matrix product on the request path. Any trusted device holding a layer's W_qkv may fill it
 * while idle (with OsRandom) or a session may fill it from its SessionKeys (replayable).
 *
 * A pair is used ONCE: take() removes it and the pool keeps no reference, so the same noise vector
 * is never added to rows of two sessions, layers, crossings or steps (reusing one lets a cloud
 * difference it away). The caller zeroes the pair (zeroPair) when it has compensated.
 * Vectors always come from a CSPRNG (SessionKeys' ChaCha20 stream or the OS).
 */
export class NoisePool {
  private readonly layers = new Map<number, LayerPool>();

  /** maxPerLayer bounds memory: each pair holds inDim + outDim floats. */
  constructor(readonly maxPerLayer = 64) {
    dim(maxPerLayer, 'maxPerLayer', 1);
  }

  /**
   * Add `count` fresh pairs for `layer`, noise Laplace(0, scale), W in HF layout [outDim, inDim].
   * All pairs of one layer must share inDim/outDim. Returns the layer's pool size.
   */
  fill(layer: number, count: number, keysOrRng: FreshNoiseSource, scale: number, W: Float32Array, inDim: number, outDim: number): number {
    dim(layer, 'layer');
    dim(count, 'count');
    dim(inDim, 'inDim', 1);
    dim(outDim, 'outDim', 1);
    len(W, outDim * inDim, 'NoisePool.fill W');
    let lp = this.layers.get(layer);
    if (lp && (lp.inDim !== inDim || lp.outDim !== outDim)) {
      throw new ShapeError(`NoisePool.fill: layer ${layer} holds pairs of [${lp.inDim}] -> [${lp.outDim}], got [${inDim}] -> [${outDim}]`);
    }
    const have = lp?.pairs.length ?? 0;
    if (have + count > this.maxPerLayer) throw new NoisePoolError(`NoisePool.fill: layer ${layer} would hold ${have + count} pairs, max ${this.maxPerLayer}`);
    if (count === 0) return have;
    // Draw every vector, then one [count, inDim] x W product so W is streamed once for the batch.
    const A = new Float32Array(count * inDim);
    for (let k = 0; k < count; k++) {
      const a = keysOrRng.freshLaplace(layer, inDim, scale);
      len(a, inDim, 'NoisePool.fill noise');
      A.set(a, k * inDim);
      // The pool owns its copy from here on (the source may zero its buffers, e.g. SessionKeys.destroy,
      // independently of the pool); do not leave a second copy of the secret behind.
      a.fill(0);
    }
    const AW = linearRows(A, count, inDim, W, outDim);
    if (!lp) {
      lp = { inDim, outDim, pairs: [] };
      this.layers.set(layer, lp);
    }
    for (let k = 0; k < count; k++) {
      lp.pairs.push({ layer, a: A.slice(k * inDim, (k + 1) * inDim), aW: AW.slice(k * outDim, (k + 1) * outDim), scale, inDim, outDim });
    }
    A.fill(0);
    AW.fill(0);
    return lp.pairs.length;
  }

  /** Remove and return one pair for `layer`, or undefined when empty (compute a · W on the spot then). */
  take(layer: number): NoisePair | undefined {
    const lp = this.layers.get(layer);
    return lp?.pairs.shift();
  }

  size(layer: number): number {
    return this.layers.get(layer)?.pairs.length ?? 0;
  }

  /** Zero a used pair. */
  static zeroPair(p: NoisePair): void {
    p.a.fill(0);
    p.aW.fill(0);
  }

  /** Zero and drop every pair. */
  clear(): void {
    for (const lp of this.layers.values()) for (const p of lp.pairs) NoisePool.zeroPair(p);
    this.layers.clear();
  }
}
