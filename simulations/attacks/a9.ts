import type { Transcript } from '../../runtime/scx/transcript.ts';
import { PrefixCache, appendToken, type AttackerModel } from './forward.ts';
import { estimateSharedOffset } from './a6.ts';
import { observationsOf, publicMeta, sessionsOf } from './observe.ts';

/**
 * A9: key reuse and key recovery across the sessions of a transcript.
 *  - Permutation reuse: the head-dim permutations (sigma, tau) each session shares at key sharing,
 *    compared across every pair of (session, layer). Equal ones mean a key was reused.
 *  - Head-dim key recovery without key sharing: the P2 row of BOS (position 0) is prompt-independent,
 *    so the attacker knows its plain K/V and reads sigma_g/tau_g off the permuted row by matching
 *    values. Checked against the keys shared later, where the transcript has them.
 *  - Noise reuse: with noise, two P1 crossings whose rows coincide exactly (the BOS rows, which are
 *    equal without noise) or whose estimated shared offsets (A6) coincide used the same noise.
 */

export interface KeyPair { a: string; b: string; layerA: number; layerB: number; what: string }

export interface A9Report {
  /** (session, layer) keyshare entries compared. */
  keysharesCompared: number;
  /** Comparisons made: pairs of keyshare entries times the permutations (sigma, tau) both have. */
  permutationPairsCompared: number;
  /** Pairs of (session, layer) with equal sigma or tau. */
  reusedPermutations: KeyPair[];
  /** P1 crossings (with noise) compared pairwise. */
  noiseCrossingsCompared: number;
  /** Pairs of P1 crossings that share noise. */
  reusedNoise: KeyPair[];
  /** kv-group permutations (sigma and tau, per session and layer) read off the BOS row. */
  headPermsTotal: number;
  headPermsRecovered: number;
  /** Of those the keyshare lets us check: how many were right. */
  headPermsChecked: number;
  headPermsCorrect: number;
  /** Shared noise offsets recovered exactly by A6 (self-verified by the RMSNorm invariant). */
  noiseOffsetsTotal: number;
  noiseOffsetsRecovered: number;
  seconds: number;
}

function equalI32(a: Int32Array | Float32Array, b: Int32Array | Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The permutation p with observed[j] = plain[p[j]], read by value matching; null when values do not
 * pair up one to one within tolerance (ties or a wrong row).
 */
export function readPermutation(observed: Float32Array, plain: Float32Array, relTol = 1e-3): Int32Array | null {
  const n = observed.length;
  const oi = Array.from({ length: n }, (_, i) => i).sort((x, y) => observed[x] - observed[y]);
  const pi = Array.from({ length: n }, (_, i) => i).sort((x, y) => plain[x] - plain[y]);
  let scale = 0;
  for (let i = 0; i < n; i++) scale = Math.max(scale, Math.abs(plain[i]));
  const p = new Int32Array(n);
  let err = 0;
  for (let k = 0; k < n; k++) {
    err = Math.max(err, Math.abs(observed[oi[k]] - plain[pi[k]]));
    p[oi[k]] = pi[k];
  }
  if (err > relTol * scale + 1e-12) return null;
  // Plain values closer together than twice the observed error could be swapped: refuse rather than guess.
  for (let k = 0; k + 1 < n; k++) if (plain[pi[k + 1]] - plain[pi[k]] <= 2 * err) return null;
  return p;
}

export function a9(t: Transcript, m: AttackerModel): A9Report {
  const t0 = performance.now();
  const { Hkv, hd } = m;
  const meta = publicMeta(t);
  const sessions = sessionsOf(t);
  const rep: A9Report = {
    keysharesCompared: 0, permutationPairsCompared: 0, reusedPermutations: [], noiseCrossingsCompared: 0, reusedNoise: [],
    headPermsTotal: 0, headPermsRecovered: 0, headPermsChecked: 0, headPermsCorrect: 0,
    noiseOffsetsTotal: 0, noiseOffsetsRecovered: 0, seconds: 0,
  };
  // 1. keyshare reuse
  const shares = t.entries.filter((e) => e.crossing === 'K' && (e.name === 'sigma' || e.name === 'tau'));
  const keyed = new Map<string, { session: string; layer: number; sigma?: Int32Array; tau?: Int32Array }>();
  for (const e of shares) {
    const k = `${e.session}\u0000${e.layer}`;
    const v = keyed.get(k) ?? { session: e.session, layer: e.layer };
    if (e.data instanceof Int32Array) (v as Record<string, unknown>)[e.name] = e.data;
    keyed.set(k, v);
  }
  const ks = [...keyed.values()];
  rep.keysharesCompared = ks.length;
  for (let i = 0; i < ks.length; i++) {
    for (let j = i + 1; j < ks.length; j++) {
      for (const what of ['sigma', 'tau'] as const) {
        const a = ks[i][what], b = ks[j][what];
        if (a && b) rep.permutationPairsCompared++;
        if (a && b && equalI32(a, b)) rep.reusedPermutations.push({ a: ks[i].session, b: ks[j].session, layerA: ks[i].layer, layerB: ks[j].layer, what });
      }
    }
  }
  // 2. head-dim permutations from the BOS row, per session and layer
  const bosKv = new Map<number, { k: Float32Array; v: Float32Array }>();
  const plainBos = (layer: number) => {
    let r = bosKv.get(layer);
    if (!r) {
      const cache = new PrefixCache(m, 2);
      const [k, v] = appendToken(m, cache, m.bos, [{ kind: 'k', layer }, { kind: 'v', layer }]);
      r = { k, v };
      bosKv.set(layer, r);
    }
    return r;
  };
  const p1: { session: string; layer: number; rows: Float32Array; R: number; offset: Float32Array | null }[] = [];
  for (const s of sessions) {
    for (const o of observationsOf(t, m, s)) {
      if (o.crossing === 'P2' && o.direction === 'received' && (o.name === 'k' || o.name === 'v')) {
        const plain = plainBos(o.layer)[o.name];
        const shared = keyed.get(`${s}\u0000${o.layer}`)?.[o.name === 'k' ? 'sigma' : 'tau'];
        for (let g = 0; g < Hkv; g++) {
          rep.headPermsTotal++;
          const got = readPermutation(o.rows.subarray(g * hd, (g + 1) * hd), plain.subarray(g * hd, (g + 1) * hd));
          if (!got) continue;
          rep.headPermsRecovered++;
          if (shared) {
            rep.headPermsChecked++;
            const key = shared.subarray(g * hd, (g + 1) * hd);
            // Either notation of the same permutation counts: observed[j] = plain[key[j]] or observed[key[j]] = plain[j].
            const inv = new Int32Array(hd);
            for (let j = 0; j < hd; j++) inv[got[j]] = j;
            if (equalI32(got, key) || equalI32(inv, key)) rep.headPermsCorrect++;
          }
        }
      }
      if (o.crossing === 'P1' && o.name === 'x' && meta.noiseScale > 0) {
        const est = estimateSharedOffset(m, o);
        rep.noiseOffsetsTotal++;
        if (est.found) rep.noiseOffsetsRecovered++;
        p1.push({ session: s, layer: o.layer, rows: o.rows, R: o.R, offset: est.found ? est.offset : null });
      }
    }
  }
  // 3. noise reuse between P1 crossings (any sessions, any layers)
  const d = m.d;
  const rowScale = (rows: Float32Array) => { let s = 0; for (let i = 0; i < rows.length; i++) s += Math.abs(rows[i]); return s / Math.max(1, rows.length); };
  for (let i = 0; i < p1.length; i++) {
    for (let j = i + 1; j < p1.length; j++) {
      const A = p1[i], B = p1[j];
      rep.noiseCrossingsCompared++;
      const tol = 1e-5 * Math.max(rowScale(A.rows), rowScale(B.rows));
      let reused = false;
      if (A.offset && B.offset) {
        let s = 0;
        for (let k = 0; k < d; k++) s += Math.abs(A.offset[k] - B.offset[k]);
        reused = s / d <= tol;
      }
      if (!reused && A.layer === B.layer) {
        // Same layer: identical rows (the BOS rows are equal before noise) can only come from equal noise.
        outer: for (let ra = 0; ra < A.R; ra++) {
          for (let rb = 0; rb < B.R; rb++) {
            let s = 0;
            for (let k = 0; k < d && s <= tol * d; k++) s += Math.abs(A.rows[ra * d + k] - B.rows[rb * d + k]);
            if (s <= tol * d) { reused = true; break outer; }
          }
        }
      }
      if (reused) rep.reusedNoise.push({ a: A.session, b: B.session, layerA: A.layer, layerB: B.layer, what: 'noise' });
    }
  }
  rep.seconds = (performance.now() - t0) / 1000;
  return rep;
}
