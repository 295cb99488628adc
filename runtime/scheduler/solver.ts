/**
 * The placement solver.
 *
 * Search space. The model is a sequence of units: embedding, layers 0..L-1, final norm + LM head. In
 * split/scx mode one contiguous block of layers [h, L-t) (h, t >= 1) runs on one cloud peer; every
 * other unit runs on a trusted device. Each trusted device that takes part holds one contiguous span of
 * the trusted units; the span may wrap around the cloud block (the same device runs the last head
 * layers and the first tail layers, e.g. a lone laptop with a cloud peer). Devices appear at most once.
 *
 * Exact search. A dynamic programme over (set of devices used, last device, unit position, cloud done)
 * visits every order of every subset of the candidate devices and every split into contiguous spans,
 * every cloud block (every h and t) and every wrap-around span, so for up to `maxExactDevices` (8)
 * candidates it returns the optimum of the cost model's objective over the whole space. Memory, share
 * caps and opt-outs are checked per span (they depend on the span alone). Cloud peers are tried in the
 * order of a lower bound on their block's cost and skipped once the bound exceeds the best plan found,
 * which keeps the search exact with many peers.
 *
 * Heuristic beyond 8 candidates (documented, not exact): the exact DP runs on three sets of 8 devices
 * (the fastest by a per-layer score, the largest by memory, and the previous plan's devices topped up by
 * speed), and a DP over one fixed order of all candidates (by the same speed score, skipping allowed)
 * covers plans that need more than 8 devices' memory. The best of these wins. Past 8 cloud peers that
 * survive the lower bound, only the 8 with the lowest bound are searched.
 */
import type { ModelManifest } from '../model/manifest.ts';
import { CostModel } from './cost.ts';
import { fmtBytes, layerCap, validatePlan } from './constraints.ts';
import { InfeasiblePlanError, SchedulerError } from './errors.ts';
import type {
  BindingConstraint, ClusterState, DeviceProfile, ExclusionReason, Plan, PlanRequest, PlanResult, PlanStage,
  PlanWhy, Prediction, StageWhy,
} from './types.ts';

export interface SolveOptions {
  /** Trusted devices allowed to run stages (default all). The coordinator still coordinates. */
  eligible?: string[];
  /** Cloud peers allowed (default all in the state). */
  cloudPeers?: string[];
  /** Re-planning: weights each device already holds, and the cost of moving a byte (ms of objective). */
  previous?: Plan;
  movePenaltyMsPerByte?: number;
  /** Exact search up to this many candidate devices (default 8, at most 12). */
  maxExactDevices?: number;
  /** Most cloud peers a DP runs for (default 8). */
  maxCloudPeers?: number;
}

/** A placement before it becomes stages: spans of unit positions per device, plus the cloud block. */
type Segment = { kind: 'span'; device: number; a: number; b: number } | { kind: 'cloud'; a: number; b: number };

interface Best { value: number; segments: Segment[]; cloudId: string | null; devices: DeviceProfile[]; states: number; }

const INF = Infinity;

/** Best wrap-around span per end position (cost Inf where none) and its cloud block (i, k). */
type StraddleRow = { cost: Float64Array; arg: Int32Array };
/** Wrap-around rows of one DP's candidates for one cloud peer, fetched per (candidate, start). */
type Straddle = (d: number, pa: number) => StraddleRow | null;

/**
 * Tables that do not depend on which candidate devices a DP runs over: unit positions, per-device span
 * costs, per-peer cloud block costs and wrap-around spans. Built lazily, once per solve() call.
 */
class Shared {
  readonly P: number;
  readonly pos: number[];
  readonly posIdx: Int32Array;
  readonly U: number;
  readonly L: number;
  readonly cloudMode: boolean;
  /** Cloud block start positions [iMin, iMax], end positions [kMin, kMax] (unit positions). */
  readonly iMin: number; readonly iMax: number; readonly kMin: number; readonly kMax: number;
  /** Weights + KV bytes and layer count of each span [pos[pa], pos[pb]) (same on every device). */
  readonly spanMem: Float64Array;
  readonly spanLayers: Int32Array;
  readonly ws: number;
  private readonly devSpan = new Map<string, { span: Float64Array; unitW: Float64Array }>();
  private readonly clouds = new Map<string, Float64Array>();
  private readonly strad = new Map<string, (StraddleRow | null | undefined)[]>();

  constructor(readonly cm: CostModel, readonly coordinator: string, readonly eligibleIds: Set<string>,
    readonly moved: (id: string, u: number) => number, readonly movedCloud: (id: string, h: number, e: number) => number,
    readonly penalty: number) {
    const req = cm.req;
    this.L = cm.L;
    this.U = cm.U;
    this.cloudMode = req.mode !== 'local';
    const L = this.L, U = this.U;
    let hMin = 0, hMax = 0, tMin = 0, tMax = 0;
    if (this.cloudMode) {
      hMin = req.h ?? 1; hMax = req.h ?? Math.min(req.maxEdgeLayers, L - 2);
      tMin = req.t ?? 1; tMax = req.t ?? Math.min(req.maxEdgeLayers, L - 2);
    }
    this.iMin = hMin + 1; this.iMax = hMax + 1; this.kMin = L - tMax + 1; this.kMax = L - tMin + 1;
    const posSet: number[] = [];
    // In cloud modes only positions inside the head and tail zones can be span boundaries.
    for (let p = 0; p <= U; p++) if (!this.cloudMode || p <= this.iMax || p >= this.kMin) posSet.push(p);
    this.pos = posSet;
    this.P = posSet.length;
    this.posIdx = new Int32Array(U + 1).fill(-1);
    posSet.forEach((p, i) => { this.posIdx[p] = i; });
    this.ws = cm.workspaceBytes();
    const P = this.P, kv = cm.kvBytesPerLayer();
    const cmem = new Float64Array(U + 1), clay = new Int32Array(U + 1);
    for (let u = 0; u < U; u++) {
      const isLayer = cm.isLayerUnit(u);
      cmem[u + 1] = cmem[u] + cm.unitBytes(u) + (isLayer ? kv : 0);
      clay[u + 1] = clay[u] + (isLayer ? 1 : 0);
    }
    this.spanMem = new Float64Array(P * P);
    this.spanLayers = new Int32Array(P * P);
    for (let pa = 0; pa < P; pa++) {
      for (let pb = pa + 1; pb < P; pb++) {
        this.spanMem[pa * P + pb] = cmem[posSet[pb]] - cmem[posSet[pa]];
        this.spanLayers[pa * P + pb] = clay[posSet[pb]] - clay[posSet[pa]];
      }
    }
  }

  /** Weighted cost of device `dev` running each span (Inf when it may not or cannot), and per-unit costs. */
  device(dev: DeviceProfile): { span: Float64Array; unitW: Float64Array } {
    let t = this.devSpan.get(dev.id);
    if (t) return t;
    const cm = this.cm, req = cm.req, U = this.U, P = this.P, pos = this.pos;
    const unitW = new Float64Array(U);
    const cw = new Float64Array(U + 1);
    for (let u = 0; u < U; u++) {
      unitW[u] = req.wTtft * cm.unitPrefillMs(dev, u) + req.wToken * cm.unitDecodeMs(dev, u) + this.penalty * this.moved(dev.id, u);
      cw[u + 1] = cw[u] + unitW[u];
    }
    const span = new Float64Array(P * P).fill(INF);
    if (this.eligibleIds.has(dev.id)) {
      const cap = layerCap(dev.maxShare, this.L), room = dev.memoryBytes - this.ws;
      for (let pa = 0; pa < P; pa++) {
        for (let pb = pa + 1; pb < P; pb++) {
          const k = pa * P + pb;
          if (this.spanMem[k] > room || this.spanLayers[k] > cap) break;
          span[k] = cw[pos[pb]] - cw[pos[pa]];
        }
      }
    }
    t = { span, unitW };
    this.devSpan.set(dev.id, t);
    return t;
  }

  /** Weighted cost of the cloud block for every valid (start, end) position pair; Inf where invalid. */
  cloud(cloudId: string): Float64Array {
    let t = this.clouds.get(cloudId);
    if (t) return t;
    const P = this.P, req = this.cm.req;
    t = new Float64Array(P * P).fill(INF);
    for (let i = this.iMin; i <= this.iMax; i++) {
      for (let k = Math.max(this.kMin, i + 1); k <= this.kMax; k++) {
        const h = i - 1, e = k - 1;
        if (!this.cloudFits(cloudId, h, e)) continue;
        const cb = this.cm.cloudBlock(cloudId, h, e);
        t[this.posIdx[i] * P + this.posIdx[k]] = req.wTtft * (cb.prefillWireMs + cb.prefillCloudMs + cb.prefillCoordinatorMs)
          + req.wToken * (cb.decodeWireMs + cb.decodeCloudMs) + req.wKey * cb.keyShareMs + this.penalty * this.movedCloud(cloudId, h, e);
      }
    }
    this.clouds.set(cloudId, t);
    return t;
  }

  private cloudFits(cloudId: string, h: number, e: number): boolean {
    const g = this.cm.cloud(cloudId)!;
    const loaded = g.loadedModels?.includes(this.cm.manifest.name) ?? false;
    const kv = this.cm.kvBytesPerLayer();
    let bytes = this.ws;
    for (let l = h; l < e; l++) bytes += (loaded ? 0 : this.cm.manifest.layers[l].bytes) + kv;
    return bytes <= g.memoryBytes;
  }

  /** Weighted cost of a hidden-state hop (prefill + decode sizes). */
  hopHidden(from: string, to: string): number {
    const cm = this.cm;
    return cm.req.wTtft * cm.hop(from, to, cm.boundaryBytes(1, 'prefill')) + cm.req.wToken * cm.hop(from, to, cm.boundaryBytes(1, 'decode'));
  }

  /**
   * Wrap-around spans of one device starting at position index pa: it runs [p, i), the cloud runs
   * [i, k), it runs [k, b), with the combined memory and share cap checked. Best cost per end b and its
   * (i, k). Rows are built on first use: branch and bound expands few (device, position) pairs.
   */
  straddleRows(dev: DeviceProfile, cloudId: string): (d: DeviceProfile, pa: number) => StraddleRow | null {
    const key = `${dev.id}\u0000${cloudId}`;
    let rows = this.strad.get(key);
    if (!rows) { rows = new Array(this.P).fill(undefined); this.strad.set(key, rows); }
    const cache = rows;
    return (d, pa) => {
      let r = cache[pa];
      if (r === undefined) { r = this.buildStraddleRow(d, cloudId, pa); cache[pa] = r; }
      return r;
    };
  }

  private buildStraddleRow(dev: DeviceProfile, cloudId: string, pa: number): StraddleRow | null {
    if (!this.eligibleIds.has(dev.id)) return null;
    const P = this.P;
    const piMin = this.posIdx[this.iMin], piMax = this.posIdx[this.iMax];
    const pkMin = this.posIdx[this.kMin], pkMax = this.posIdx[this.kMax];
    if (pa >= piMax) return null;
    const span = this.device(dev).span, cloud = this.cloud(cloudId);
    const toC = this.hopHidden(dev.id, this.coordinator), fromC = this.hopHidden(this.coordinator, dev.id);
    if (toC === INF || fromC === INF) return null;
    const room = dev.memoryBytes - this.ws, cap = layerCap(dev.maxShare, this.L);
    const sm = this.spanMem, sl = this.spanLayers;
    const cost = new Float64Array(P).fill(INF);
    const arg = new Int32Array(P * 2).fill(-1);
    let any = false;
    for (let pi = Math.max(pa + 1, piMin); pi <= piMax; pi++) {
      const k1 = pa * P + pi;
      const c1 = span[k1];
      if (c1 === INF) break; // longer pre-cloud parts only need more memory
      const mem1 = sm[k1], lay1 = sl[k1];
      for (let pk = Math.max(pi + 1, pkMin); pk <= pkMax; pk++) {
        const cc = cloud[pi * P + pk];
        if (cc === INF) continue;
        const base = c1 + toC + cc + fromC;
        for (let pb = pk + 1; pb < P; pb++) {
          const k2 = pk * P + pb;
          const c2 = span[k2];
          if (c2 === INF || mem1 + sm[k2] > room || lay1 + sl[k2] > cap) break;
          const total = base + c2;
          if (total < cost[pb]) { cost[pb] = total; arg[pb * 2] = pi; arg[pb * 2 + 1] = pk; any = true; }
        }
      }
    }
    return any ? { cost, arg } : null;
  }
}

/** Tables for one candidate list (device 0 is the coordinator), assembled from the shared ones. */
class Space {
  readonly K: number;
  readonly P: number;
  readonly pos: number[];
  readonly posIdx: Int32Array;
  readonly U: number;
  readonly cloudMode: boolean;
  readonly coord = 0;
  readonly iMin: number; readonly iMax: number;
  readonly span: Float64Array;
  readonly hopH: Float64Array;
  readonly hopTok: Float64Array;
  readonly hopLog: Float64Array;
  readonly eligible: boolean[];
  /** Cheapest weighted cost of each unit on any eligible candidate (for lower bounds). */
  readonly minUnit: Float64Array;

  constructor(readonly sh: Shared, readonly devs: DeviceProfile[]) {
    const cm = sh.cm;
    this.K = devs.length; this.P = sh.P; this.pos = sh.pos; this.posIdx = sh.posIdx; this.U = sh.U;
    this.cloudMode = sh.cloudMode; this.iMin = sh.iMin; this.iMax = sh.iMax;
    const K = this.K, P = this.P, U = this.U;
    this.eligible = devs.map((d) => sh.eligibleIds.has(d.id));
    this.span = new Float64Array(K * P * P);
    this.minUnit = new Float64Array(U).fill(INF);
    devs.forEach((d, i) => {
      const t = sh.device(d);
      this.span.set(t.span, i * P * P);
      if (this.eligible[i]) for (let u = 0; u < U; u++) if (t.unitW[u] < this.minUnit[u]) this.minUnit[u] = t.unitW[u];
    });
    this.hopH = new Float64Array(K * K);
    this.hopTok = new Float64Array(K);
    this.hopLog = new Float64Array(K);
    const c = devs[0].id, req = cm.req;
    for (let x = 0; x < K; x++) {
      for (let y = 0; y < K; y++) this.hopH[x * K + y] = sh.hopHidden(devs[x].id, devs[y].id);
      this.hopTok[x] = req.wTtft * cm.hop(c, devs[x].id, cm.boundaryBytes(0, 'prefill')) + req.wToken * cm.hop(c, devs[x].id, cm.boundaryBytes(0, 'decode'));
      this.hopLog[x] = req.wTtft * cm.hop(devs[x].id, c, cm.boundaryBytes(U, 'prefill')) + req.wToken * cm.hop(devs[x].id, c, cm.boundaryBytes(U, 'decode'));
    }
  }

  /** Wrap-around rows of the candidates for one cloud peer. */
  straddle(cloudId: string): Straddle {
    const rows = this.devs.map((d) => this.sh.straddleRows(d, cloudId));
    return (d, pa) => rows[d](this.devs[d], pa);
  }

  /**
   * Admissible lower bound on the cost still to pay from each (position index, cloud done) state: every
   * remaining trusted unit at its cheapest candidate, the cheapest cloud block still possible, no hops.
   * Scaled down a hair so floating-point summation order can never prune the optimum.
   */
  lowerBounds(cloud: Float64Array | null): Float64Array {
    const P = this.P, U = this.U, F = this.cloudMode ? 2 : 1;
    const suffix = new Float64Array(U + 1);
    for (let u = U - 1; u >= 0; u--) suffix[u] = suffix[u + 1] + this.minUnit[u];
    const lb = new Float64Array(P * F);
    for (let pa = 0; pa < P; pa++) {
      const p = this.pos[pa];
      lb[pa * F] = suffix[p];
      if (F === 2) {
        lb[pa * F + 1] = suffix[p];
        let m = INF;
        if (cloud) {
          for (let pi = pa; pi < P; pi++) {
            for (let pk = pi + 1; pk < P; pk++) {
              const c = cloud[pi * P + pk];
              if (c === INF) continue;
              const v = suffix[p] - suffix[this.pos[pi]] + c + suffix[this.pos[pk]];
              if (v < m) m = v;
            }
          }
        }
        lb[pa * F] = m;
      }
    }
    for (let i = 0; i < lb.length; i++) lb[i] *= 1 - 1e-9;
    return lb;
  }
}

// DP tables are reused between runs (solve() is synchronous, so runs never overlap). `parent` needs no
// reset: only states reached in the current run (best < Inf) are followed, and each gets a parent.
let scratchBest = new Float64Array(0);
let scratchParent = new Int32Array(0);
function dpBuffers(size: number): { best: Float64Array; parent: Int32Array } {
  if (scratchBest.length < size) { scratchBest = new Float64Array(size); scratchParent = new Int32Array(size); }
  const best = scratchBest.subarray(0, size);
  best.fill(INF);
  return { best, parent: scratchParent.subarray(0, size) };
}

/** Exact DP over every order of every subset of the space's devices (K <= 12). */
function dpSubsets(sp: Space, cloud: Float64Array | null, strad: Straddle | null, upper: number): { value: number; segments: Segment[]; states: number } {
  const K = sp.K, P = sp.P, NS = 1 << K, co = sp.coord;
  const F = sp.cloudMode ? 2 : 1;
  // Branch and bound: a state whose cost plus a lower bound on the rest reaches the best complete plan
  // known (from this DP or an earlier one) cannot lead to a better plan.
  const lb = sp.lowerBounds(cloud);
  let ub = upper;
  const hopLog = sp.hopLog;
  const size = NS * K * P * F;
  const { best, parent } = dpBuffers(size);
  const idx = (S: number, x: number, pa: number, f: number) => ((S * K + x) * P + pa) * F + f;
  best[idx(0, co, 0, 0)] = 0;
  parent[idx(0, co, 0, 0)] = -1;
  const preMaxIdx = sp.cloudMode ? sp.posIdx[sp.iMax] : P - 1;
  const piMin = sp.cloudMode ? sp.posIdx[sp.iMin] : -1, piMax = sp.cloudMode ? sp.posIdx[sp.iMax] : -1;
  const span = sp.span, hopH = sp.hopH, hopTok = sp.hopTok;
  let visited = 0;
  for (let S = 0; S < NS; S++) {
    for (let pa = 0; pa < P - 1; pa++) {
      for (let x = 0; x < K; x++) {
        if (x !== co && !((S >> x) & 1)) continue;
        for (let f = 0; f < F; f++) {
          const si = idx(S, x, pa, f);
          const v = best[si];
          if (v === INF || v + lb[pa * F + f] >= ub) continue;
          visited++;
          for (let d = 0; d < K; d++) {
            if ((S >> d) & 1 || !sp.eligible[d]) continue;
            const hin = pa === 0 ? hopTok[d] : hopH[x * K + d];
            if (hin === INF) continue;
            const base = v + hin, nS = S | (1 << d);
            if (base + lb[pa * F + f] >= ub) continue;
            const lim = f === 0 ? preMaxIdx : P - 1;
            const row = (d * P + pa) * P;
            for (let pb = pa + 1; pb <= lim; pb++) {
              const c = span[row + pb];
              if (c === INF) break;
              const nv = base + c;
              if (nv + lb[pb * F + f] >= ub) continue;
              const ni = idx(nS, d, pb, f);
              if (nv < best[ni]) {
                best[ni] = nv; parent[ni] = si;
                if (pb === P - 1 && nv + hopLog[d] < ub && f === F - 1) ub = nv + hopLog[d];
              }
            }
            const sr = strad && f === 0 ? strad(d, pa) : null;
            if (sr) {
              const sc = sr.cost;
              for (let pb = pa + 2; pb < P; pb++) {
                const c = sc[pb];
                if (c === INF) continue;
                const nv = base + c;
                if (nv + lb[pb * F + 1] >= ub) continue;
                const ni = idx(nS, d, pb, 1);
                if (nv < best[ni]) {
                  best[ni] = nv; parent[ni] = si;
                  if (pb === P - 1 && nv + hopLog[d] < ub) ub = nv + hopLog[d];
                }
              }
            }
          }
          if (cloud && f === 0 && pa >= piMin && pa <= piMax) {
            const hc = hopH[x * K + co];
            if (hc === INF) continue;
            for (let pb = pa + 1; pb < P; pb++) {
              const c = cloud[pa * P + pb];
              if (c === INF) continue;
              const nv = v + hc + c;
              if (nv + lb[pb * F + 1] >= ub) continue;
              const ni = idx(S, co, pb, 1);
              if (nv < best[ni]) { best[ni] = nv; parent[ni] = si; }
            }
          }
        }
      }
    }
  }
  const fEnd = sp.cloudMode ? 1 : 0;
  let bestV = INF, bestI = -1;
  for (let S = 1; S < NS; S++) {
    for (let x = 0; x < K; x++) {
      const si = idx(S, x, P - 1, fEnd);
      const v = best[si] + sp.hopLog[x];
      if (v < bestV && v < upper) { bestV = v; bestI = si; }
    }
  }
  if (bestI < 0) return { value: INF, segments: [], states: visited };
  const decode = (i: number) => {
    const f = i % F; let r = (i - f) / F;
    const pa = r % P; r = (r - pa) / P;
    const x = r % K; const S = (r - x) / K;
    return { S, x, pa, f };
  };
  const segs: Segment[] = [];
  for (let cur = bestI; parent[cur] >= 0; cur = parent[cur]) {
    const c = decode(cur), p = decode(parent[cur]);
    pushSegments(segs, sp, p.pa, c.pa, c.x, c.S === p.S, c.f !== p.f, strad);
  }
  segs.reverse();
  return { value: bestV, segments: segs, states: visited };
}

/** Append (in reverse) the segments of one DP transition from position index pa to pb. */
function pushSegments(segs: Segment[], sp: Space, pa: number, pb: number, x: number, isCloud: boolean, cloudDone: boolean,
  strad: Straddle | null): void {
  if (isCloud) { segs.push({ kind: 'cloud', a: sp.pos[pa], b: sp.pos[pb] }); return; }
  if (cloudDone) {
    const row = strad!(x, pa)!;
    const pi = row.arg[pb * 2], pk = row.arg[pb * 2 + 1];
    segs.push({ kind: 'span', device: x, a: sp.pos[pk], b: sp.pos[pb] });
    segs.push({ kind: 'cloud', a: sp.pos[pi], b: sp.pos[pk] });
    segs.push({ kind: 'span', device: x, a: sp.pos[pa], b: sp.pos[pi] });
    return;
  }
  segs.push({ kind: 'span', device: x, a: sp.pos[pa], b: sp.pos[pb] });
}

/** DP over one fixed order of the space's devices (each used at most once, skipping allowed). Any K. */
function dpOrder(sp: Space, cloud: Float64Array | null, strad: Straddle | null, upper: number): { value: number; segments: Segment[]; states: number } {
  const K = sp.K, P = sp.P, co = sp.coord, F = sp.cloudMode ? 2 : 1;
  const lb = sp.lowerBounds(cloud);
  const ub = upper;
  // State: j = order positions consumed (the last device used is j-1), atC = at the coordinator
  // (start, or just after the cloud), position, cloud done.
  const size = (K + 1) * 2 * P * F;
  const { best, parent } = dpBuffers(size);
  const idx = (j: number, atC: number, pa: number, f: number) => ((j * 2 + atC) * P + pa) * F + f;
  best[idx(0, 1, 0, 0)] = 0;
  parent[idx(0, 1, 0, 0)] = -1;
  const preMaxIdx = sp.cloudMode ? sp.posIdx[sp.iMax] : P - 1;
  const piMin = sp.cloudMode ? sp.posIdx[sp.iMin] : -1, piMax = sp.cloudMode ? sp.posIdx[sp.iMax] : -1;
  let visited = 0;
  for (let j = 0; j <= K; j++) {
    for (let pa = 0; pa < P - 1; pa++) {
      for (let atC = 0; atC < 2; atC++) {
        if (!atC && j === 0) continue;
        const x = atC ? co : j - 1;
        for (let f = 0; f < F; f++) {
          const si = idx(j, atC, pa, f);
          const v = best[si];
          if (v === INF || v + lb[pa * F + f] >= ub) continue;
          visited++;
          for (let d = j; d < K; d++) {
            if (!sp.eligible[d]) continue;
            const hin = pa === 0 ? sp.hopTok[d] : sp.hopH[x * K + d];
            if (hin === INF) continue;
            const base = v + hin;
            if (base + lb[pa * F + f] >= ub) continue;
            const lim = f === 0 ? preMaxIdx : P - 1;
            const row = (d * P + pa) * P;
            for (let pb = pa + 1; pb <= lim; pb++) {
              const c = sp.span[row + pb];
              if (c === INF) break;
              const ni = idx(d + 1, 0, pb, f);
              if (base + c < best[ni]) { best[ni] = base + c; parent[ni] = si; }
            }
            const sr = strad && f === 0 ? strad(d, pa) : null;
            if (sr) {
              for (let pb = pa + 2; pb < P; pb++) {
                const c = sr.cost[pb];
                if (c === INF) continue;
                const ni = idx(d + 1, 0, pb, 1);
                if (base + c < best[ni]) { best[ni] = base + c; parent[ni] = si; }
              }
            }
          }
          if (cloud && f === 0 && pa >= piMin && pa <= piMax) {
            const hc = sp.hopH[x * K + co];
            if (hc === INF) continue;
            for (let pb = pa + 1; pb < P; pb++) {
              const c = cloud[pa * P + pb];
              if (c === INF) continue;
              const ni = idx(j, 1, pb, 1);
              if (v + hc + c < best[ni]) { best[ni] = v + hc + c; parent[ni] = si; }
            }
          }
        }
      }
    }
  }
  const fEnd = sp.cloudMode ? 1 : 0;
  let bestV = INF, bestI = -1;
  for (let j = 0; j <= K; j++) {
    for (let atC = 0; atC < 2; atC++) {
      if (!atC && j === 0) continue;
      const x = atC ? co : j - 1;
      const si = idx(j, atC, P - 1, fEnd);
      const v = best[si] + sp.hopLog[x];
      if (v < bestV && v < upper) { bestV = v; bestI = si; }
    }
  }
  if (bestI < 0) return { value: INF, segments: [], states: visited };
  const decode = (i: number) => {
    const f = i % F; let r = (i - f) / F;
    const pa = r % P; r = (r - pa) / P;
    const atC = r % 2; const j = (r - atC) / 2;
    return { j, atC, pa, f };
  };
  const segs: Segment[] = [];
  for (let cur = bestI; parent[cur] >= 0; cur = parent[cur]) {
    const c = decode(cur), p = decode(parent[cur]);
    const isCloud = c.j === p.j && c.atC === 1;
    pushSegments(segs, sp, p.pa, c.pa, c.j - 1, isCloud, !isCloud && c.f !== p.f, strad);
  }
  segs.reverse();
  return { value: bestV, segments: segs, states: visited };
}

/** Turn DP segments into pipeline stages. */
function toPlan(segs: Segment[], devs: DeviceProfile[], cloudId: string | null, cm: CostModel, request: PlanRequest, coordinator: string): Plan {
  const L = cm.L, U = cm.U;
  const stages: PlanStage[] = [];
  let h = L, t = 0;
  for (const s of segs) {
    if (s.kind === 'cloud') {
      h = s.a - 1; t = L - (s.b - 1);
      stages.push({ deviceId: cloudId!, role: 'cloud', layers: [s.a - 1, s.b - 1] });
      continue;
    }
    const id = devs[s.device].id;
    if (s.a === 0) stages.push({ deviceId: id, role: 'embed', layers: [0, 0] });
    const la = Math.max(s.a, 1) - 1, lb = Math.min(s.b, L + 1) - 1;
    if (lb > la) stages.push({ deviceId: id, role: 'layers', layers: [la, lb] });
    if (s.b === U) stages.push({ deviceId: id, role: 'head', layers: [L, L] });
  }
  return {
    version: 1, model: cm.manifest.name, numLayers: L, mode: cm.req.mode, h, t, coordinator,
    cloudPeer: cm.req.mode === 'local' ? null : cloudId, stages, request: { ...request },
  };
}

/** Devices reachable from the coordinator over links among trusted devices. */
function reachableFrom(state: ClusterState): Set<string> {
  const adj = new Map<string, string[]>();
  const ids = new Set(state.devices.map((d) => d.id));
  for (const l of state.links) {
    if (!ids.has(l.a) || !ids.has(l.b)) continue;
    (adj.get(l.a) ?? adj.set(l.a, []).get(l.a)!).push(l.b);
    (adj.get(l.b) ?? adj.set(l.b, []).get(l.b)!).push(l.a);
  }
  const seen = new Set([state.coordinator]);
  const queue = [state.coordinator];
  while (queue.length) {
    const x = queue.shift()!;
    for (const y of adj.get(x) ?? []) if (!seen.has(y)) { seen.add(y); queue.push(y); }
  }
  return seen;
}

/** Solve the placement: the plan, its predicted times and why. Throws InfeasiblePlanError if none fits. */
export function solve(state: ClusterState, manifest: ModelManifest, request: PlanRequest, opts: SolveOptions = {}): PlanResult {
  const cm = new CostModel(state, manifest, request);
  const req = cm.req;
  const L = cm.L;
  const maxExact = Math.min(opts.maxExactDevices ?? 8, 12);
  const penalty = opts.movePenaltyMsPerByte ?? 0;
  const allow = opts.eligible ? new Set(opts.eligible) : null;
  const reach = reachableFrom(state);
  const ws = cm.workspaceBytes();
  const smallestUnit = Math.min(manifest.embedding.bytes, manifest.head.bytes, ...manifest.layers.map((l) => l.bytes + cm.kvBytesPerLayer()));
  const exclusion = new Map<string, { reason: ExclusionReason; note: string }>();
  const eligibleIds: string[] = [];
  for (const d of state.devices) {
    if (d.optOut) exclusion.set(d.id, { reason: 'opt-out', note: 'battery saver / opted out' });
    else if (allow && !allow.has(d.id)) exclusion.set(d.id, { reason: 'not-candidate', note: 'not among the devices this search may use' });
    else if (!reach.has(d.id)) exclusion.set(d.id, { reason: 'unreachable', note: 'no link path to the coordinator' });
    else if (d.memoryBytes < smallestUnit + ws) exclusion.set(d.id, { reason: 'no-memory', note: `${fmtBytes(d.memoryBytes)} cannot hold even one unit (${fmtBytes(smallestUnit + ws)})` });
    else eligibleIds.push(d.id);
  }
  const byId = new Map(state.devices.map((d) => [d.id, d]));
  const coordDev = byId.get(state.coordinator)!;

  // Weight movement (re-planning): which units each device holds now.
  const prevUnits = new Map<string, Set<number>>();
  let prevCloud: { id: string; h: number; e: number } | null = null;
  if (opts.previous) {
    for (const s of opts.previous.stages) {
      if (s.role === 'cloud') { prevCloud = { id: s.deviceId, h: s.layers[0], e: s.layers[1] }; continue; }
      const set = prevUnits.get(s.deviceId) ?? prevUnits.set(s.deviceId, new Set()).get(s.deviceId)!;
      if (s.role === 'embed') set.add(0);
      else if (s.role === 'head') set.add(L + 1);
      else for (let l = s.layers[0]; l < s.layers[1]; l++) set.add(l + 1);
    }
  }

  // Candidate device lists (coordinator first: it is the hop source at the start and after the cloud).
  const score = (d: DeviceProfile) => {
    const mid = Math.floor(L / 2) + 1;
    const unit = req.wTtft * cm.unitPrefillMs(d, mid) + req.wToken * cm.unitDecodeMs(d, mid);
    const hops = d.id === state.coordinator ? 0
      : req.wTtft * (cm.hop(state.coordinator, d.id, cm.boundaryBytes(1, 'prefill')) + cm.hop(d.id, state.coordinator, cm.boundaryBytes(1, 'prefill')))
        + req.wToken * (cm.hop(state.coordinator, d.id, cm.boundaryBytes(1, 'decode')) + cm.hop(d.id, state.coordinator, cm.boundaryBytes(1, 'decode')));
    return unit * L / 4 + hops;
  };
  const eligibleDevs = eligibleIds.map((id) => byId.get(id)!);
  const bySpeed = [...eligibleDevs].sort((a, b) => score(a) - score(b) || (a.id < b.id ? -1 : 1));
  const byMem = [...eligibleDevs].sort((a, b) => b.memoryBytes - a.memoryBytes || (a.id < b.id ? -1 : 1));
  const withCoord = (list: DeviceProfile[]) => {
    const out = list.filter((d) => d.id !== state.coordinator);
    return [coordDev, ...out];
  };
  const exact = eligibleDevs.length <= maxExact;
  type Cand = { devs: DeviceProfile[]; order: boolean };
  const cands: Cand[] = [];
  if (exact) {
    cands.push({ devs: withCoord(bySpeed), order: false });
  } else {
    // maxExact executors; the coordinator always comes along (as an executor when eligible, otherwise
    // only as the place the pipeline starts and ends).
    const coordEligible = eligibleIds.includes(state.coordinator);
    const take = (list: DeviceProfile[]) => withCoord(list.filter((d) => d.id !== state.coordinator).slice(0, coordEligible ? maxExact - 1 : maxExact));
    const seen = new Set<string>();
    const add = (devs: DeviceProfile[], order: boolean) => {
      const key = (order ? 'o:' : 's:') + devs.map((d) => d.id).sort().join(',');
      if (!seen.has(key)) { seen.add(key); cands.push({ devs, order }); }
    };
    add(take(bySpeed), false);
    add(take(byMem), false);
    if (opts.previous) {
      const prevIds = new Set([...prevUnits.keys()]);
      const prevDevs = bySpeed.filter((d) => prevIds.has(d.id));
      add(take([...prevDevs, ...bySpeed.filter((d) => !prevIds.has(d.id))]), false);
    }
    add(withCoord(bySpeed), true);
  }

  // Cloud peers in order of a lower bound on the cloud block's weighted cost.
  const cloudIds = req.mode === 'local' ? [null] : state.cloudPeers.map((g) => g.id).filter((id) => !opts.cloudPeers || opts.cloudPeers.includes(id));
  const movedCloud = (id: string, h: number, e: number) => {
    if (!opts.previous) return 0;
    const g = cm.cloud(id)!;
    if (g.loadedModels?.includes(manifest.name)) return 0;
    let b = 0;
    for (let l = h; l < e; l++) if (!(prevCloud && prevCloud.id === id && l >= prevCloud.h && l < prevCloud.e)) b += manifest.layers[l].bytes;
    return b;
  };
  const moved = (id: string, u: number) => (opts.previous && !prevUnits.get(id)?.has(u) ? cm.unitBytes(u) : 0);
  const shared = new Shared(cm, state.coordinator, new Set(eligibleIds), moved, movedCloud, penalty);
  const cloudOrder = cloudIds.filter((id): id is string => id !== null).map((id) => {
    const t = shared.cloud(id);
    let lb = INF;
    for (const v of t) if (v < lb) lb = v;
    return { id, t, lb };
  }).filter((x) => x.lb < INF).sort((a, b) => a.lb - b.lb || (a.id < b.id ? -1 : 1));

  let best: Best = { value: INF, segments: [], cloudId: null, devices: [], states: 0 };
  const searchedClouds: string[] = [];
  let capped = false;
  let totalStates = 0;
  for (const cand of cands) {
    const sp = new Space(shared, cand.devs);
    const dp = cand.order ? dpOrder : dpSubsets;
    if (req.mode === 'local') {
      const r = dp(sp, null, null, best.value);
      totalStates += r.states;
      if (r.value < best.value) best = { value: r.value, segments: r.segments, cloudId: null, devices: cand.devs, states: r.states };
      continue;
    }
    const maxClouds = opts.maxCloudPeers ?? 8;
    for (const [n, c] of cloudOrder.entries()) {
      if (c.lb >= best.value) break;
      if (n >= maxClouds) { capped = true; break; }
      if (!searchedClouds.includes(c.id)) searchedClouds.push(c.id);
      const r = dp(sp, c.t, sp.straddle(c.id), best.value);
      totalStates += r.states;
      if (r.value < best.value) best = { value: r.value, segments: r.segments, cloudId: c.id, devices: cand.devs, states: r.states };
    }
  }

  if (best.value === INF) throw new InfeasiblePlanError('no plan fits', infeasibleReasons(state, cm, eligibleIds, exclusion));
  const plan = toPlan(best.segments, best.devices, best.cloudId, cm, request, state.coordinator);
  const violations = validatePlan(plan, state, manifest, request, cm);
  if (violations.length) throw new SchedulerError(`solver built an invalid plan (a bug): ${violations.join('; ')}`);
  const predicted = cm.predict(plan);
  const why = explain(plan, predicted, cm, state, exclusion, {
    method: exact && !capped ? 'exact' : 'heuristic', candidates: eligibleIds.length, cloudPeersSearched: searchedClouds, dpStates: totalStates,
  });
  return { plan, predicted, why };
}

function infeasibleReasons(state: ClusterState, cm: CostModel, eligible: string[], exclusion: Map<string, { reason: ExclusionReason; note: string }>): string[] {
  const r: string[] = [];
  const m = cm.manifest;
  if (!eligible.length) r.push('no trusted device may run stages');
  for (const [id, e] of exclusion) r.push(`${id}: ${e.reason} (${e.note})`);
  const kv = cm.kvBytesPerLayer();
  const trustedNeed = cm.req.mode === 'local'
    ? m.embedding.bytes + m.head.bytes + m.layers.reduce((s, l) => s + l.bytes + kv, 0)
    : m.embedding.bytes + m.head.bytes + 2 * (m.layers[0].bytes + kv);
  const have = state.devices.filter((d) => eligible.includes(d.id)).reduce((s, d) => s + Math.max(0, d.memoryBytes - cm.workspaceBytes()), 0);
  if (have < trustedNeed) r.push(`trusted devices offer ${fmtBytes(have)}, the ${cm.req.mode} plan needs at least ${fmtBytes(trustedNeed)} on them`);
  if (cm.req.mode !== 'local') {
    if (!state.cloudPeers.length) r.push(`mode ${cm.req.mode} needs a cloud peer and none is available`);
    else if (!state.cloudPeers.some((g) => cm.hop(state.coordinator, g.id, 1) < INF)) r.push('no cloud peer has a link to the coordinator');
  }
  if (!r.length) r.push('memory, share caps and links admit no complete pipeline');
  return r;
}

function fmtMs(ms: number): string { return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`; }

/** Per-stage times, the binding constraint of each stage, excluded devices and a readable summary. */
export function explain(plan: Plan, predicted: Prediction, cm: CostModel, state: ClusterState,
  exclusion: Map<string, { reason: ExclusionReason; note: string }>, search: PlanWhy['search']): PlanWhy {
  const req = cm.req, L = cm.L;
  const kv = cm.kvBytesPerLayer();
  const layersOn = new Map<string, number>();
  for (const s of plan.stages) if (s.role === 'layers') layersOn.set(s.deviceId, (layersOn.get(s.deviceId) ?? 0) + s.layers[1] - s.layers[0]);
  const minLayer = Math.min(...cm.manifest.layers.map((l) => l.bytes)) + kv;
  const stages: StageWhy[] = plan.stages.map((s, i) => {
    const p = predicted.stages[i];
    const dev = s.role === 'cloud' ? cm.cloud(s.deviceId)! : cm.device(s.deviceId)!;
    const memUsed = predicted.memoryBytes[s.deviceId] ?? 0;
    const compute = req.wTtft * p.prefillMs + req.wToken * p.decodeMs;
    const hop = req.wTtft * p.hopInPrefillMs + req.wToken * p.hopInDecodeMs;
    let binding: BindingConstraint;
    let note: string;
    if (s.role === 'embed' || s.role === 'head') {
      binding = 'trust';
      note = `${s.role === 'embed' ? 'embedding' : 'final norm + LM head'} must run on a trusted device; ${s.deviceId} is where it costs least`;
    } else if (s.role === 'cloud') {
      const c = p.cloud!;
      const wire = req.wTtft * c.prefillWireMs + req.wToken * c.decodeWireMs;
      const comp = req.wTtft * (c.prefillCloudMs + c.prefillCoordinatorMs) + req.wToken * c.decodeCloudMs;
      binding = req.h != null || req.t != null ? 'fixed-edge' : wire >= comp ? 'network' : 'compute';
      note = `layers [${s.layers[0]},${s.layers[1]}) on cloud peer ${s.deviceId}: prefill ${c.prefillRoundTrips} round trips, `
        + `${fmtBytes(c.prefillBytes)} (${fmtMs(c.prefillWireMs)} wire, ${fmtMs(c.prefillCloudMs)} cloud, ${fmtMs(c.prefillCoordinatorMs)} coordinator SCX work); `
        + `per token ${fmtMs(c.decodeWireMs)} wire + ${fmtMs(c.decodeCloudMs)} cloud`;
      if (binding === 'fixed-edge') note += `; h=${plan.h} t=${plan.t} fixed by the request`;
    } else {
      const n = layersOn.get(s.deviceId) ?? 0;
      if (memUsed + minLayer > dev.memoryBytes) {
        binding = 'memory';
        note = `${s.deviceId} holds ${fmtBytes(memUsed)} of ${fmtBytes(dev.memoryBytes)}: no room for another layer`;
      } else if (n >= layerCap(dev.maxShare, L)) {
        binding = 'share-cap';
        note = `${s.deviceId} is capped at ${layerCap(dev.maxShare, L)} layers (maxShare ${dev.maxShare})`;
      } else if (hop > compute) {
        binding = 'network';
        note = `handing the activations to ${s.deviceId} costs more than its compute`;
      } else {
        binding = 'compute';
        const nl = s.layers[1] - s.layers[0];
        note = `${s.deviceId} runs ${nl} layer${nl === 1 ? '' : 's'} at ${fmtMs(p.decodeMs / Math.max(1, s.layers[1] - s.layers[0]))}/layer per token`;
      }
    }
    return {
      stage: i, deviceId: s.deviceId, role: s.role, layers: [s.layers[0], s.layers[1]],
      prefillMs: p.prefillMs, decodeMs: p.decodeMs, hopInPrefillMs: p.hopInPrefillMs, hopInDecodeMs: p.hopInDecodeMs,
      memoryBytes: memUsed, memoryAvailableBytes: dev.memoryBytes, binding, note,
    };
  });
  const used = new Set(plan.stages.map((s) => s.deviceId));
  const excluded: PlanWhy['excluded'] = [];
  for (const d of state.devices) {
    if (used.has(d.id)) continue;
    const e = exclusion.get(d.id) ?? (d.optOut ? { reason: 'opt-out' as const, note: 'battery saver / opted out' } : undefined);
    if (e) excluded.push({ deviceId: d.id, ...e });
    else if (d.id === plan.coordinator) excluded.push({
      deviceId: d.id, reason: 'not-worth-it',
      note: `coordinates (tokenizer, sampling${plan.mode === 'scx' ? ', SCX exchange' : ''}) but runs no stage: other devices are faster`,
    });
    else excluded.push({
      deviceId: d.id,
      reason: search.method === 'exact' ? 'not-worth-it' : 'not-candidate',
      note: search.method === 'exact' ? 'every plan using it predicts a slower result' : 'outside the candidate sets of the heuristic search',
    });
  }
  const summary: string[] = [];
  summary.push(`mode ${plan.mode}` + (plan.mode === 'local' ? '' : `, h=${plan.h} t=${plan.t}, cloud peer ${plan.cloudPeer} runs layers [${plan.h},${L - plan.t})`));
  summary.push(`predicted: first token ${fmtMs(predicted.ttftMs)}, ${fmtMs(predicted.perTokenMs)} per token` +
    (predicted.keyShareMs ? `, key sharing ${fmtMs(predicted.keyShareMs)}` : '') + `, ${req.maxNewTokens} tokens in ${fmtMs(predicted.totalMs)}`);
  let worst = -1, worstMs = -1;
  predicted.stages.forEach((p, i) => { const t = p.decodeMs + p.hopInDecodeMs; if (t > worstMs) { worstMs = t; worst = i; } });
  if (worst >= 0 && predicted.perTokenMs > 0) {
    summary.push(`largest share of a token: stage ${worst} (${plan.stages[worst].role} on ${plan.stages[worst].deviceId}), ` +
      `${Math.round((100 * worstMs) / predicted.perTokenMs)}% (${stages[worst].binding})`);
  }
  for (const e of excluded) summary.push(`${e.deviceId} unused: ${e.reason} (${e.note})`);
  summary.push(`search: ${search.method}, ${search.candidates} candidate devices` + (search.cloudPeersSearched.length ? `, cloud peers searched: ${search.cloudPeersSearched.join(', ')}` : ''));
  return { stages, excluded, search, summary };
}
