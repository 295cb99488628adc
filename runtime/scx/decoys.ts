import { ShapeError } from './encoding.ts';
import type { SessionKeys } from './keys.ts';

/**
 * Decoy rows for SCX crossing P1 (SCX.md, "Decoys"): r extra rows, appended to the N real rows before
 * noise and the row permutation, that the cloud should not be able to tell from real ones.
 *
 * Input rows are RMSNorm'd hidden states with the layer's norm weight applied, so real rows share the
 * layer's per-dimension scale (the norm weight, and the few "massive activation" dims every token
 * carries) and their RMS varies within a narrow band. The prototype's N(0,1) rows failed on exactly
 * these: wrong norm, wrong per-dim scale.
 *
 * Schemes (all randomness from the session keys, labels (layer, "P1", "decoy", extra), so a session
 * replays; calling twice for one layer returns the same decoys: one call per layer per session):
 *
 *   "resample" (default). Decoy k, dimension j takes x[s_kj, j] for a fresh uniform real row s_kj,
 *     then the whole decoy is rescaled to the RMS of another uniformly chosen real row m_k.
 *     + every dimension has exactly the empirical marginal of the real rows (norm weight, outlier dims,
 *       signs); the row RMS follows the real RMS distribution;
 *     + decoys are generically linearly independent of the real rows, so the rank of the N+r rows
 *       does not reveal N (mixtures would: they lie in the span of the real rows);
 *     - cross-dimension correlations are destroyed: a cloud with a reference of typical hidden states
 *       (it has the weights) can see that a decoy has too little energy along the top principal
 *       directions and too much along the rest;
 *     - a row with unusual values (e.g. the BOS/attention-sink row with its massive activations)
 *       lends single huge values to random decoys, which look like neither a sink nor a normal token;
 *     - a decoy is no hidden state of any token prefix, so forward matching (A3: run candidate
 *       prefixes to layer l and match by L1) rejects it as surely as it accepts real rows. Only
 *       decoys that ARE hidden states of fake tokens (a real forward pass of decoy tokens on trusted
 *       devices) could survive A3; that needs the engine and is left to the coordinator.
 *   "moment". Decoy = mu + sum_{k in S} c_k (x_k - mu) for m = min(n, 8) random real rows S and
 *     c_k ~ N(0, 1/m), then RMS-rescaled as above. Matches the real rows' mean and covariance in
 *     expectation (keeps the principal-direction structure that "resample" loses), at r*m*d cost.
 *     - every decoy lies in the affine span of the real rows: with noise off or "shared" and
 *       N + r <= d, the affine rank of what the cloud sees is N - 1, which reveals the prompt length;
 *     - Gaussian coefficients give Gaussian-ish, not heavy-tailed, per-token deviations.
 *
 *   n = 1: both schemes would return the real row itself (a duplicate points the cloud straight at
 *     the real row and hides nothing), so each decoy is instead a fresh permutation of the real row's
 *     values across dimensions: same value set and RMS, no alignment with the real row. Weakness:
 *     the per-dimension structure (norm weight, outlier dims) moves to random places, which a cloud
 *     can see; with a single real row there is no other source of plausible values.
 *   r = 0: an empty array.
 *
 * The attack harness decides which scheme (if any) passes its decoy test; this module only promises
 * the statistics above.
 */

export type DecoyScheme = 'resample' | 'moment';

export interface DecoyOptions {
  scheme?: DecoyScheme;
}

/** Limits on sizes: these come from the prompt, which can come from the network. */
export const MAX_DECOY_ELEMENTS = 1 << 26;
const MOMENT_ROWS = 8;

/** Decoys [r, d] for real rows [n, d] (see the module comment). */
export function makeDecoys(real: Float32Array, n: number, d: number, r: number, keys: SessionKeys, layer: number, options: DecoyOptions = {}): Float32Array {
  for (const [v, what, min] of [[n, 'n', 0], [d, 'd', 1], [r, 'r', 0]] as const) {
    if (!Number.isSafeInteger(v) || v < min) throw new ShapeError(`makeDecoys: ${what} must be an integer >= ${min}, got ${v}`);
  }
  if (real.length !== n * d) throw new ShapeError(`makeDecoys: real has ${real.length} elements, expected n*d = ${n * d}`);
  if (r * d > MAX_DECOY_ELEMENTS) throw new ShapeError(`makeDecoys: r*d = ${r * d} exceeds ${MAX_DECOY_ELEMENTS}`);
  const scheme = options.scheme ?? 'resample';
  if (scheme !== 'resample' && scheme !== 'moment') throw new ShapeError(`makeDecoys: unknown scheme ${String(scheme)}`);
  const out = new Float32Array(r * d);
  if (r === 0) return out;
  if (n === 0) throw new ShapeError('makeDecoys: cannot make decoys without at least one real row');

  if (n === 1) {
    for (let k = 0; k < r; k++) {
      const perm = keys.permutation(layer, 'P1', 'decoy', d, `shuffle.${k}`);
      const o = k * d;
      for (let j = 0; j < d; j++) out[o + j] = real[perm[j]];
      keys.release(perm);
    }
    return out;
  }

  const rms = rowRms(real, n, d);
  if (scheme === 'resample') {
    const src = keys.integers(layer, 'P1', 'decoy', r * d, n, 'src');
    for (let k = 0; k < r; k++) {
      const o = k * d;
      for (let j = 0; j < d; j++) out[o + j] = real[src[o + j] * d + j];
    }
    keys.release(src);
  } else {
    momentDecoys(real, n, d, r, keys, layer, out);
  }

  const donor = keys.integers(layer, 'P1', 'decoy', r, n, 'rms');
  for (let k = 0; k < r; k++) rescaleRow(out, k * d, d, rms[donor[k]]);
  keys.release(donor);
  rms.fill(0);
  return out;
}

function rowRms(x: Float32Array, n: number, d: number): Float64Array {
  const rms = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    const o = i * d;
    for (let j = 0; j < d; j++) s += x[o + j] * x[o + j];
    rms[i] = Math.sqrt(s / d);
  }
  return rms;
}

function rescaleRow(x: Float32Array, o: number, d: number, target: number): void {
  let s = 0;
  for (let j = 0; j < d; j++) s += x[o + j] * x[o + j];
  const cur = Math.sqrt(s / d);
  if (cur === 0 || !Number.isFinite(cur)) return; // all-zero real rows: nothing sensible to scale to
  const f = target / cur;
  for (let j = 0; j < d; j++) x[o + j] *= f;
}

function momentDecoys(real: Float32Array, n: number, d: number, r: number, keys: SessionKeys, layer: number, out: Float32Array): void {
  const m = Math.min(n, MOMENT_ROWS);
  const mu = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    for (let j = 0; j < d; j++) mu[j] += real[o + j];
  }
  for (let j = 0; j < d; j++) mu[j] /= n;
  // Row subsets: m distinct rows per decoy by a partial Fisher–Yates over idx (one stream for all
  // decoys; floor(u * k) has a 2^-53-level bias, irrelevant here).
  const u = keys.uniform(layer, 'P1', 'decoy', 2 * r * m, 'coef');
  const pu = keys.uniform(layer, 'P1', 'decoy', r * m, 'pick');
  const idx = new Int32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  const acc = new Float64Array(d);
  const sd = 1 / Math.sqrt(m);
  for (let k = 0; k < r; k++) {
    for (let q = 0; q < m; q++) {
      const j = q + Math.floor(pu[k * m + q] * (n - q));
      const t = idx[q];
      idx[q] = idx[j];
      idx[j] = t;
    }
    acc.set(mu);
    for (let q = 0; q < m; q++) {
      // Box–Muller: 1 - u in (0, 1] keeps the log finite.
      const u1 = 1 - u[2 * (k * m + q)];
      const u2 = u[2 * (k * m + q) + 1];
      const c = sd * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
      const o = idx[q] * d;
      for (let j = 0; j < d; j++) acc[j] += c * (real[o + j] - mu[j]);
    }
    const o = k * d;
    for (let j = 0; j < d; j++) out[o + j] = acc[j];
  }
  keys.release(u, pu);
  idx.fill(0);
  mu.fill(0);
  acc.fill(0);
}
