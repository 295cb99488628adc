import { applyRope, rmsNorm, ropeTables, type AttackerModel } from './forward.ts';
import { sortSegments, type Observation } from './observe.ts';

/**
 * Cheap candidate proposals for vocabulary matching: for every observed row, the tokens whose
 * contextless state (the single-token table, A1/A2) is nearest to it. They are tried right after the
 * model's own top-k, before the exhaustive fallback, so positions where the model's prior is wrong
 * rarely need the whole vocabulary. Proposals change the order of the search, never its outcome.
 */

/** For each of R rows, the M table rows (tokens) nearest by mean |diff|, nearest first. */
export function nearestTopM(table: Float32Array, V: number, rows: Float32Array, R: number, D: number, M: number): Int32Array[] {
  const out: Int32Array[] = [];
  const dist = new Float64Array(V);
  for (let r = 0; r < R; r++) {
    const ro = r * D;
    for (let t = 0; t < V; t++) {
      let s = 0;
      const to = t * D;
      for (let k = 0; k < D; k++) s += Math.abs(table[to + k] - rows[ro + k]);
      dist[t] = s;
    }
    const idx = Array.from({ length: V }, (_, i) => i).sort((a, b) => dist[a] - dist[b]);
    out.push(Int32Array.from(idx.slice(0, M)));
  }
  return out;
}

/**
 * Per-row proposals for an observation, from the layer's single-token normed table (and its K/V
 * projection for P2 rows), or null when the observation's probe is at another layer or of a kind
 * the tables do not cover.
 */
export function rowProposals(m: AttackerModel, obs: Observation, layer: number, normedTable: Float32Array,
  kvTable: ((which: 'k' | 'v') => Float32Array | null) | null, M = 16): Int32Array[] | null {
  const p = obs.probe;
  if (p.layer !== layer) return null;
  if (p.kind === 'normed') return nearestTopM(normedTable, m.V, obs.rows, obs.R, obs.D, M);
  if (p.kind === 'resid') {
    const x = rmsNorm(obs.rows, obs.R, obs.D, m.layers[layer].inNorm, m.eps);
    return nearestTopM(normedTable, m.V, x, obs.R, obs.D, M);
  }
  if ((p.kind === 'k' || p.kind === 'v') && kvTable && !obs.rowsPermuted) {
    const table = kvTable(p.kind);
    if (!table) return null;
    const rows = sortSegments(obs.rows.slice(), obs.R, obs.D, obs.segment);
    const out: Int32Array[] = [];
    let base = p.kind === 'v' ? sortSegments(table.slice(), m.V, obs.D, obs.segment) : null;
    for (let i = 0; i < obs.R; i++) {
      if (p.kind === 'k') {
        base = table.slice();
        const { cos, sin } = ropeTables(m, i);
        for (let t = 0; t < m.V; t++) applyRope(base, t * obs.D, m.Hkv, m.hd, cos, sin);
        sortSegments(base, m.V, obs.D, obs.segment);
      }
      // Sorted values lose which dim held which value, so the contextless guess is weaker: look deeper.
      out.push(nearestTopM(base!, m.V, rows.subarray(i * obs.D, (i + 1) * obs.D), 1, obs.D, obs.segment > 0 ? 4 * M : M)[0]);
    }
    return out;
  }
  return null;
}

/** Proposals for permuted rows: every row's nearest first, then every row's second, ..., without repeats. */
export function mergeProposals(perRow: Int32Array[], exclude: Set<number> = new Set()): Int32Array {
  const seen = new Set<number>();
  const out: number[] = [];
  const M = perRow.reduce((a, r) => Math.max(a, r.length), 0);
  for (let k = 0; k < M; k++) {
    for (const r of perRow) {
      if (k >= r.length) continue;
      const t = r[k];
      if (seen.has(t) || exclude.has(t)) continue;
      seen.add(t); out.push(t);
    }
  }
  return Int32Array.from(out);
}
