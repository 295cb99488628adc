import type { Transcript, TranscriptEntry } from '../../runtime/scx/transcript.ts';
import { AttackInputError, probeDim, type AttackerModel, type Probe } from './forward.ts';

/**
 * What the cloud saw, turned into matchable observations: a set of rows, the probe that produces
 * such a row for a candidate token, and what hides the correspondence (row permutation, per-segment
 * value permutation, additive noise, decoy rows). Everything here reads the transcript and public
 * session parameters (header.meta) only.
 */
export interface Observation {
  /** Stable label for reports, e.g. "P1 x" or "S h". */
  label: string;
  session: string;
  stage: string;
  crossing: string;
  direction: string;
  name: string;
  /** Layer index as recorded in the transcript. */
  layer: number;
  step?: number;
  /** What the attacker computes for a candidate token to compare with a row. */
  probe: Probe;
  /** Row-major [R, D]. */
  rows: Float32Array;
  R: number;
  D: number;
  /** True when row order is hidden (min over rows when matching). */
  rowsPermuted: boolean;
  /** > 0: values inside each run of `segment` dims are permuted by an unknown permutation (compare sorted). */
  segment: number;
  /** Laplace scale b of noise added to the rows (0 = none). */
  noiseScale: number;
  noise: string;
  /** Rows that stand for prompt tokens (R minus decoys). */
  numReal: number;
}

/** Non-secret session parameters recorded in the transcript header. */
export interface PublicMeta {
  h: number | null;
  t: number | null;
  numLayers: number | null;
  noise: string;
  noiseScale: number;
  /** Decoy rows per P1: a count, or "N" for as many as prompt tokens. */
  decoys: number | 'N';
}

export function publicMeta(t: Transcript): PublicMeta {
  const m = (t.header.meta ?? {}) as Record<string, unknown>;
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const noise = typeof m.noise === 'string' ? m.noise : 'none';
  return {
    h: num(m.h), t: num(m.t), numLayers: num(m.numLayers),
    noise,
    noiseScale: noise === 'none' ? 0 : Math.max(0, num(m.noiseScale) ?? 0),
    decoys: m.decoys === 'N' ? 'N' : Math.max(0, Math.floor(num(m.decoys) ?? 0)),
  };
}

export function sessionsOf(t: Transcript): string[] {
  return [...new Set(t.entries.map((e) => e.session))];
}

function f32(e: TranscriptEntry): Float32Array {
  if (!(e.data instanceof Float32Array)) throw new AttackInputError(`transcript: ${e.crossing} ${e.name} at layer ${e.layer} should be F32`);
  return e.data;
}

function checkShape(e: TranscriptEntry, dims: number): void {
  if (e.shape.length !== dims || e.shape.some((x) => !Number.isInteger(x) || x <= 0)) {
    throw new AttackInputError(`transcript: ${e.crossing} ${e.name} at layer ${e.layer} has shape [${e.shape}], expected ${dims} positive dims`);
  }
  const n = e.shape.reduce((a, b) => a * b, 1);
  if (n !== e.data.length) throw new AttackInputError(`transcript: ${e.crossing} ${e.name} at layer ${e.layer}: shape [${e.shape}] holds ${n} values, data has ${e.data.length}`);
}

/** [G, N, hd] head-major tensor -> [N, G*hd] rows (one per position, heads concatenated). */
export function headsToRows(a: Float32Array, G: number, N: number, hd: number): Float32Array {
  const out = new Float32Array(N * G * hd);
  for (let g = 0; g < G; g++) for (let n = 0; n < N; n++) out.set(a.subarray((g * N + n) * hd, (g * N + n + 1) * hd), (n * G + g) * hd);
  return out;
}

/**
 * Every observation of one session, in transcript order. Unknown crossings/names are skipped (the
 * attacker only needs the ones it can model); P1 "qkv" is skipped because it is x W_qkv of the
 * same rows as P1 "x" and carries no extra information.
 */
export function observationsOf(t: Transcript, m: AttackerModel, session: string): Observation[] {
  const meta = publicMeta(t);
  const out: Observation[] = [];
  const { d, H, Hkv, hd } = m;
  for (const e of t.entries) {
    if (e.session !== session || !(e.data instanceof Float32Array)) continue;
    const base = { session, stage: e.stage, crossing: e.crossing, direction: e.direction, name: e.name, layer: e.layer, step: e.step,
      noiseScale: 0, noise: 'none', segment: 0, rowsPermuted: false };
    const resid = (layer: number, permuted: boolean, label: string) => {
      checkShape(e, 2);
      if (e.shape[1] !== d) throw new AttackInputError(`transcript: ${label} at layer ${e.layer} has width ${e.shape[1]}, model hidden size is ${d}`);
      out.push({ ...base, label, probe: { kind: 'resid', layer }, rows: f32(e), R: e.shape[0], D: d, rowsPermuted: permuted, numReal: e.shape[0] });
    };
    const key = `${e.crossing}/${e.direction}/${e.name}`;
    switch (key) {
      case 'S/received/h': resid(e.layer, false, 'S h in'); break;
      case 'S/returned/h': resid(e.layer + 1, false, 'S h out'); break;
      case 'D/received/h': resid(e.layer, false, 'D h in'); break;
      case 'D/returned/h': resid(e.layer + 1, false, 'D h out'); break;
      case 'P3/received/h': resid(e.layer, true, 'P3 h in'); break;
      case 'P3/returned/h': resid(e.layer + 1, true, 'P3 h out'); break;
      case 'P1/received/x': {
        checkShape(e, 2);
        if (e.shape[1] !== d) throw new AttackInputError(`transcript: P1 x at layer ${e.layer} has width ${e.shape[1]}, expected ${d}`);
        const R = e.shape[0];
        const numReal = meta.decoys === 'N' ? Math.max(1, Math.floor(R / 2)) : Math.max(1, R - meta.decoys);
        out.push({ ...base, label: 'P1 x', probe: { kind: 'normed', layer: e.layer }, rows: f32(e), R, D: d, rowsPermuted: true,
          noiseScale: meta.noiseScale, noise: meta.noise, numReal });
        break;
      }
      case 'P2/received/q': case 'P2/received/k': case 'P2/received/v': case 'P2/returned/o': {
        checkShape(e, 3);
        const G = e.shape[0], N = e.shape[1];
        const wantG = e.name === 'k' || e.name === 'v' ? Hkv : H;
        if (G !== wantG || e.shape[2] !== hd) throw new AttackInputError(`transcript: P2 ${e.name} at layer ${e.layer} has shape [${e.shape}], expected [${wantG}, N, ${hd}]`);
        const kind = e.name === 'o' ? 'attn' : (e.name as 'q' | 'k' | 'v');
        const probe: Probe = { kind, layer: e.layer };
        out.push({ ...base, label: `P2 ${e.name}`, probe, rows: headsToRows(f32(e), G, N, hd), R: N, D: probeDim(m, probe), segment: hd, numReal: N });
        break;
      }
      case 'K/stored/k': case 'K/stored/v': {
        // The cloud's KV cache after key sharing: plain basis, true order.
        checkShape(e, 3);
        const N = e.shape[1];
        if (e.shape[0] !== Hkv || e.shape[2] !== hd) throw new AttackInputError(`transcript: stored ${e.name} at layer ${e.layer} has shape [${e.shape}], expected [${Hkv}, N, ${hd}]`);
        const probe: Probe = { kind: e.name as 'k' | 'v', layer: e.layer };
        out.push({ ...base, label: `K ${e.name} stored`, probe, rows: headsToRows(f32(e), Hkv, N, hd), R: N, D: probeDim(m, probe), numReal: N });
        break;
      }
      case 'P3/received/o': {
        checkShape(e, 2);
        if (e.shape[1] !== H * hd) throw new AttackInputError(`transcript: P3 o at layer ${e.layer} has width ${e.shape[1]}, expected ${H * hd}`);
        out.push({ ...base, label: 'P3 o', probe: { kind: 'attn', layer: e.layer }, rows: f32(e), R: e.shape[0], D: H * hd, rowsPermuted: true, numReal: e.shape[0] });
        break;
      }
      default: break;
    }
  }
  return out;
}

/** A copy of an observation with other rows (e.g. after removing an estimated noise offset). */
export function withRows(o: Observation, rows: Float32Array, changes: Partial<Observation> = {}): Observation {
  return { ...o, rows, ...changes };
}

/** Observation with its segments un-permuted by known per-segment permutations (keyshare). */
export function unpermuteSegments(o: Observation, perms: Int32Array[], convention: 'gather' | 'scatter'): Observation {
  const seg = o.segment;
  const rows = new Float32Array(o.rows.length);
  const groups = o.D / seg;
  // P2 q has H heads that share the permutation of their kv group; k and v have one per kv group.
  const perHead = groups / perms.length;
  for (let r = 0; r < o.R; r++) {
    for (let gi = 0; gi < groups; gi++) {
      const p = perms[Math.floor(gi / perHead)];
      const base = r * o.D + gi * seg;
      for (let j = 0; j < seg; j++) {
        // gather: observed[j] = plain[p[j]]  => plain[p[j]] = observed[j]
        // scatter: observed[p[j]] = plain[j] => plain[j] = observed[p[j]]
        if (convention === 'gather') rows[base + p[j]] = o.rows[base + j];
        else rows[base + j] = o.rows[base + p[j]];
      }
    }
  }
  return { ...o, rows, segment: 0, label: o.label + ' unpermuted' };
}

// ---------------------------------------------------------------- feature transforms and distances

/** Sort values inside each run of `seg` dims of each of B rows, in place: invariant to permutations inside a run. */
export function sortSegments(a: Float32Array, B: number, D: number, seg: number): Float32Array {
  if (seg <= 0) return a;
  for (let b = 0; b < B; b++) for (let s = 0; s < D; s += seg) a.subarray(b * D + s, b * D + s + seg).sort();
  return a;
}

export function meanAbs(a: Float32Array, off: number, D: number): number {
  let s = 0;
  for (let i = 0; i < D; i++) s += Math.abs(a[off + i]);
  return s / D;
}

/** Mean absolute difference between row i of a and row j of b (both width D). */
export function l1Row(a: Float32Array, i: number, b: Float32Array, j: number, D: number): number {
  let s = 0;
  const ao = i * D, bo = j * D;
  for (let k = 0; k < D; k++) s += Math.abs(a[ao + k] - b[bo + k]);
  return s / D;
}

/**
 * For each of B candidate rows, the smallest mean-absolute distance to any of the observed rows in
 * `rowIdx`, and which row attains it. With a single row index this is plain L1 matching.
 */
export function nearestRows(cand: Float32Array, B: number, obs: Float32Array, rowIdx: ArrayLike<number>, D: number):
  { dist: Float64Array; row: Int32Array } {
  const dist = new Float64Array(B).fill(Infinity);
  const row = new Int32Array(B).fill(-1);
  for (let b = 0; b < B; b++) {
    const co = b * D;
    for (let ri = 0; ri < rowIdx.length; ri++) {
      const r = rowIdx[ri], ro = r * D;
      const bound = dist[b] * D;
      let s = 0;
      // Early exit: once the partial sum passes the best distance, this row cannot win.
      for (let k = 0; k < D; k++) { s += Math.abs(cand[co + k] - obs[ro + k]); if (s > bound) break; }
      if (s < bound) { dist[b] = s / D; row[b] = r; }
    }
  }
  return { dist, row };
}
