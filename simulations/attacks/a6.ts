import { PrefixCache, appendToken, type AttackerModel } from './forward.ts';
import type { Observation } from './observe.ts';

/**
 * A6: remove a shared noise offset from P1 rows by differencing against a row of known content.
 *
 * With `noise: "shared"` every row of a P1 crossing carries the same vector a. Differences between
 * rows cancel it, so one row whose clean value is known gives a exactly. BOS at position 0 is such
 * a row: it attends only to itself, so its normed state at any layer is prompt-independent and the
 * attacker computes it from the public weights. Which observed row is BOS is unknown (pi1); every
 * hypothesis r0 gives a candidate a = o[r0] - x_BOS, and the right one is the hypothesis under which
 * every other row looks like an RMSNorm output: x / w has RMS 1 (up to eps) for x = RMSNorm(h) * w.
 * Wrong hypotheses break that invariant on almost every row. With `noise: "rows"` no hypothesis
 * fits and the estimate is reported as not found.
 */

export interface OffsetEstimate {
  found: boolean;
  /** Row taken as BOS. */
  bosRow: number;
  /** Estimated additive offset (d values). */
  offset: Float32Array;
  /** Median over rows of |RMS(x/w) - 1| under the chosen hypothesis (0 = perfect fit). */
  score: number;
  /** The same for the second-best hypothesis (how clearly the best one wins). */
  runnerUp: number;
}

/** RMSNorm_l output of BOS at position 0: what its P1 row is without noise. */
export function bosNormed(m: AttackerModel, layer: number): Float32Array {
  const cache = new PrefixCache(m, 2);
  return appendToken(m, cache, m.bos, [{ kind: 'normed', layer }])[0];
}

/** |RMS(x / w) - 1| of row r of `rows` minus `offset`, over dims where w is not zero. */
function invariantError(rows: Float32Array, r: number, offset: Float32Array, w: Float32Array, D: number): number {
  let ss = 0, n = 0;
  for (let k = 0; k < D; k++) {
    if (w[k] === 0) continue;
    const z = (rows[r * D + k] - offset[k]) / w[k];
    ss += z * z; n++;
  }
  return n === 0 ? Infinity : Math.abs(Math.sqrt(ss / n) - 1);
}

function median(a: number[]): number {
  const s = a.slice().sort((x, y) => x - y);
  return s.length === 0 ? Infinity : s[Math.floor((s.length - 1) / 2)];
}

export function estimateSharedOffset(m: AttackerModel, obs: Observation, tolerance = 1e-2): OffsetEstimate {
  if (obs.probe.kind !== 'normed') throw new RangeError(`A6 works on normed (P1 x) rows, not ${obs.probe.kind}`);
  const { R, D, rows } = obs;
  const w = m.layers[obs.probe.layer].inNorm;
  const xb = bosNormed(m, obs.probe.layer);
  let best = { r: -1, score: Infinity, offset: new Float32Array(D) };
  let runnerUp = Infinity;
  for (let r0 = 0; r0 < R; r0++) {
    const a = new Float32Array(D);
    for (let k = 0; k < D; k++) a[k] = rows[r0 * D + k] - xb[k];
    const errs: number[] = [];
    for (let s = 0; s < R; s++) if (s !== r0) errs.push(invariantError(rows, s, a, w, D));
    const score = median(errs);
    if (score < best.score) { runnerUp = best.score; best = { r: r0, score, offset: a }; }
    else if (score < runnerUp) runnerUp = score;
  }
  return { found: best.score <= tolerance, bosRow: best.r, offset: best.offset, score: best.score, runnerUp };
}

/** Rows minus an offset. */
export function subtractOffset(rows: Float32Array, R: number, D: number, offset: Float32Array): Float32Array {
  const out = new Float32Array(R * D);
  for (let r = 0; r < R; r++) for (let k = 0; k < D; k++) out[r * D + k] = rows[r * D + k] - offset[k];
  return out;
}
