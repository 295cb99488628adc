import { linear, PrefixCache, appendToken, type AttackerModel } from './forward.ts';
import { unpermuteSegments, l1Row, type Observation } from './observe.ts';
import { rowProposals } from './hints.ts';
import type { Cost } from './match.ts';

/**
 * A2: per-head sorted-value matching of P2 K/V rows. A permutation of the head dimension only
 * reorders a head's values, so sorting each head's values removes it. Candidates here come from the
 * single-token table (no context: every position is matched on its own against the whole
 * vocabulary, RoPE applied at the row's position); the sequential variant with context is the A3
 * engine run on the same observation.
 */

/** Pre-RoPE K or V of every single-token-table row: [V, Hkv*hd]. */
export function kvTable(m: AttackerModel, layer: number, normedTable: Float32Array, which: 'k' | 'v', cost: Cost): Float32Array {
  const t0 = performance.now();
  const { H, Hkv, hd, d } = m;
  const lw = m.layers[layer];
  const first = which === 'k' ? H * hd : (H + Hkv) * hd;
  const w = lw.qkv.subarray(first * d, (first + Hkv * hd) * d);
  const bias = lw.qkvBias ? lw.qkvBias.subarray(first, first + Hkv * hd) : null;
  const out = linear(normedTable, m.V, d, w, Hkv * hd, bias);
  cost.seconds += (performance.now() - t0) / 1000;
  return out;
}

/** Contextless sorted matching: for each position i, the vocabulary token whose (RoPE_i'd) sorted K/V row is nearest. */
export function a2Contextless(m: AttackerModel, obs: Observation, table: Float32Array, cost: Cost): { tokens: number[] } {
  const t0 = performance.now();
  const near = rowProposals(m, obs, obs.probe.layer, new Float32Array(0), () => table, 1);
  if (!near) throw new RangeError(`A2 works on true-order K/V rows, not ${obs.label}`);
  cost.seconds += (performance.now() - t0) / 1000;
  return { tokens: near.map((r) => r[0]) };
}

/**
 * Undo the head-dim permutations with the keys the cloud gets at key sharing. Which way the
 * permutation is applied is notation, so the attacker settles it from the BOS row (position 0),
 * whose K/V it can compute exactly: the convention that reproduces it wins.
 */
export function unpermuteWithKeyshare(m: AttackerModel, obs: Observation, perms: Int32Array[]): Observation {
  const cache = new PrefixCache(m, 2);
  const [bos] = appendToken(m, cache, m.bos, [obs.probe]);
  const gather = unpermuteSegments(obs, perms, 'gather');
  const scatter = unpermuteSegments(obs, perms, 'scatter');
  return l1Row(gather.rows, 0, bos, 0, obs.D) <= l1Row(scatter.rows, 0, bos, 0, obs.D) ? gather : scatter;
}
