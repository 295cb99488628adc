import { PrefixCache, appendToken, rmsNorm, stepBatch, type AttackerModel } from './forward.ts';
import { nearestRows } from './observe.ts';
import type { Cost } from './match.ts';

/**
 * A1: nearest neighbour of normed rows to a vocabulary table, rows taken one by one (no context).
 * Two tables: the embedding table through layer l's input RMSNorm (what the rows are at the first
 * layer), and the "single-token" table: RMSNorm_l of the residual each token has at layer l when it
 * follows BOS (position 1), which is what a lone token looks like after the head layers.
 */

/** RMSNorm_l(embedding) for every token: [V, d]. */
export function embedTable(m: AttackerModel, layer: number): Float32Array {
  return rmsNorm(m.embed, m.V, m.d, m.layers[layer].inNorm, m.eps);
}

/** RMSNorm_l(residual at layer l) of every token placed after BOS: [V, d]. Costs V forwards through l layers. */
export function singleTokenTable(m: AttackerModel, layer: number, cost: Cost, chunk = 512): Float32Array {
  const t0 = performance.now();
  const cache = new PrefixCache(m, 4);
  appendToken(m, cache, m.bos);
  const out = new Float32Array(m.V * m.d);
  for (let s = 0; s < m.V; s += chunk) {
    const toks = Array.from({ length: Math.min(chunk, m.V - s) }, (_, i) => s + i);
    const [x] = stepBatch(m, cache, toks, [{ kind: 'normed', layer }]);
    out.set(x, s * m.d);
  }
  cost.candidateForwards += m.V;
  cost.layerForwards += m.V * (layer + 1);
  cost.prefixForwards += 1;
  cost.seconds += (performance.now() - t0) / 1000;
  return out;
}

export interface NearestResult {
  /** Nearest token per observed row. */
  token: Int32Array;
  /** Its mean |diff|. */
  dist: Float64Array;
}

/** Nearest table row (token) for each observed row, by mean absolute difference. */
export function nearestTokens(table: Float32Array, V: number, rows: Float32Array, R: number, D: number): NearestResult {
  const all = Array.from({ length: V }, (_, i) => i);
  const { dist, row } = nearestRows(rows, R, table, all, D);
  return { token: row, dist };
}

export interface A1Result extends NearestResult {
  /** Rows flagged as decoys: the `decoys` rows farthest from any table entry. */
  flaggedDecoys: number[];
  /** Tokens of the rows kept as real. */
  bag: number[];
}

export function a1(table: Float32Array, V: number, rows: Float32Array, R: number, D: number, decoys: number): A1Result {
  const nn = nearestTokens(table, V, rows, R, D);
  const byDist = Array.from({ length: R }, (_, i) => i).sort((a, b) => nn.dist[b] - nn.dist[a]);
  const flaggedDecoys = byDist.slice(0, Math.min(decoys, R)).sort((a, b) => a - b);
  const flagged = new Set(flaggedDecoys);
  const bag: number[] = [];
  for (let r = 0; r < R; r++) if (!flagged.has(r)) bag.push(nn.token[r]);
  return { ...nn, flaggedDecoys, bag };
}
