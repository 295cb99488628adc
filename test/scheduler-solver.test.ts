import { describe, expect, it } from 'vitest';
import type { ModelManifest, PartCost } from '../runtime/model/manifest.ts';
import {
  CostModel, InfeasiblePlanError, solve, validatePlan,
  type ClusterState, type DeviceProfile, type LinkProfile, type Plan, type PlanRequest, type PlanStage,
} from '../runtime/scheduler/index.ts';

/** Small deterministic PRNG for instance generation (the test must not depend on Math.random). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function part(bytes: number, flops: number, ctxFlops: number): PartCost {
  return { bytes, params: bytes / 4, flopsPerToken: flops, flopsPerTokenPerContext: ctxFlops };
}

/** A manifest with uneven layers so that positions matter. */
function randomManifest(r: () => number, L: number): ModelManifest {
  const d = 64;
  return {
    name: 'rand', numLayers: L, hiddenSize: d, vocabSize: 500, hiddenVectorBytes: d * 4,
    embedding: part(500 * d * 4, 0, 0),
    layers: Array.from({ length: L }, () => part(Math.round((0.5 + r()) * 200_000), Math.round((0.5 + r()) * 1e8), 4 * d)),
    head: part(500 * d * 4, 2 * 500 * d, 0),
    kvBytesPerTokenPerLayer: 2 * 32 * 4,
  };
}

function randomInstance(seed: number): { state: ClusterState; manifest: ModelManifest; request: PlanRequest } {
  const r = rng(seed);
  const modes = ['local', 'split', 'scx'] as const;
  const mode = modes[Math.floor(r() * 3)];
  const L = mode === 'local' ? 2 + Math.floor(r() * 4) : 3 + Math.floor(r() * 3);
  const manifest = randomManifest(r, L);
  const K = 1 + Math.floor(r() * 4);
  const devices: DeviceProfile[] = Array.from({ length: K }, (_, i) => ({
    id: `d${i}`,
    // Memory from "one layer" to "everything": makes memory bind in some instances.
    memoryBytes: Math.round((0.4 + r() * 2) * (manifest.embedding.bytes + 200_000 * L * 0.6)),
    prefillFlopsPerSec: (0.5 + r() * 10) * 1e9,
    decodeFlopsPerSec: (0.2 + r() * 5) * 1e9,
    layerOverheadMs: r() * 2,
    optOut: i > 0 && r() < 0.1 ? true : undefined,
    maxShare: r() < 0.2 ? Math.round(r() * 10) / 10 : undefined,
  }));
  const clouds: DeviceProfile[] = mode === 'local' ? [] : Array.from({ length: 1 + Math.floor(r() * 2) }, (_, i) => ({
    id: `g${i}`, memoryBytes: 1e9 * (r() < 0.1 ? 0.0003 : 1), prefillFlopsPerSec: 1e11 * (0.5 + r()), decodeFlopsPerSec: 2e10 * (0.5 + r()),
    layerOverheadMs: r() * 0.5, slots: 1 + Math.floor(r() * 3), activeSessions: Math.floor(r() * 3),
  }));
  const links: LinkProfile[] = [];
  const all = [...devices.map((d) => d.id), ...clouds.map((g) => g.id)];
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      if (r() < 0.12) continue; // missing links: unreachable pairs
      const toCloud = all[j].startsWith('g') || all[i].startsWith('g');
      links.push({
        a: all[i], b: all[j], rttMs: toCloud ? 10 + r() * 80 : r() * 8,
        bandwidthBytesPerSec: (1 + r() * 100) * 1e6,
        reverseBandwidthBytesPerSec: r() < 0.5 ? (1 + r() * 100) * 1e6 : undefined,
        jitterMs: r() < 0.3 ? r() * 2 : undefined, lossRate: r() < 0.2 ? r() * 0.02 : undefined,
      });
    }
  }
  const objectives = ['total', 'perToken', 'ttft'] as const;
  const request: PlanRequest = {
    mode, promptTokens: 4 + Math.floor(r() * 60), maxNewTokens: 1 + Math.floor(r() * 40),
    objective: objectives[Math.floor(r() * 3)],
    scx: { decoyRows: Math.floor(r() * 4), noise: (['off', 'shared', 'rows'] as const)[Math.floor(r() * 3)] },
  };
  if (mode !== 'local' && r() < 0.2) { request.h = 1; request.t = 1 + Math.floor(r() * (L - 2)); }
  else if (mode !== 'local' && r() < 0.2) request.maxEdgeLayers = 1;
  return { state: { coordinator: 'd0', devices, cloudPeers: clouds, links }, manifest, request };
}

/**
 * Brute force over the same search space, written independently of the DP: every h/t, every
 * composition of the trusted unit sequence into contiguous segments, every injective assignment of
 * devices to segments, every cloud peer; each candidate checked by validatePlan and priced by the cost
 * model's predict().
 */
function bruteForce(state: ClusterState, manifest: ModelManifest, request: PlanRequest): number {
  const cm = new CostModel(state, manifest, request);
  const L = manifest.numLayers;
  let best = Infinity;
  const edges: [number, number][] = [];
  if (request.mode === 'local') edges.push([L, 0]);
  else {
    const maxE = request.maxEdgeLayers ?? L;
    for (let h = 1; h <= L - 2; h++) for (let t = 1; h + t <= L - 1; t++) {
      if (request.h != null && h !== request.h) continue;
      if (request.t != null && t !== request.t) continue;
      if (h > maxE || t > maxE) continue;
      edges.push([h, t]);
    }
  }
  const clouds = request.mode === 'local' ? [null] : state.cloudPeers.map((g) => g.id);
  const ids = state.devices.map((d) => d.id);
  for (const [h, t] of edges) {
    // Trusted units: -1 = embed, layers, L = head. In cloud modes the cloud sits after unit index h.
    const units: number[] = [-1];
    for (let l = 0; l < h; l++) units.push(l);
    for (let l = L - t; l < L; l++) if (l >= h) units.push(l);
    units.push(L);
    const n = units.length;
    const cloudAfter = request.mode === 'local' ? -1 : h; // index in `units` after which the cloud runs
    for (let mask = 0; mask < 1 << (n - 1); mask++) {
      const segs: number[][] = [[units[0]]];
      for (let i = 1; i < n; i++) {
        if ((mask >> (i - 1)) & 1) segs.push([]);
        segs[segs.length - 1].push(units[i]);
      }
      const assign = (k: number, used: string[]): void => {
        if (k === segs.length) {
          for (const g of clouds) {
            const stages: PlanStage[] = [];
            let idx = 0;
            segs.forEach((seg, si) => {
              for (const u of seg) {
                if (u === -1) stages.push({ deviceId: used[si], role: 'embed', layers: [0, 0] });
                else if (u === L) stages.push({ deviceId: used[si], role: 'head', layers: [L, L] });
                else {
                  const last = stages[stages.length - 1];
                  if (last && last.role === 'layers' && last.deviceId === used[si] && last.layers[1] === u) last.layers[1] = u + 1;
                  else stages.push({ deviceId: used[si], role: 'layers', layers: [u, u + 1] });
                }
                if (idx === cloudAfter && g) stages.push({ deviceId: g, role: 'cloud', layers: [h, L - t] });
                idx++;
              }
            });
            const plan: Plan = {
              version: 1, model: manifest.name, numLayers: L, mode: request.mode, h: request.mode === 'local' ? L : h,
              t: request.mode === 'local' ? 0 : t, coordinator: state.coordinator, cloudPeer: g, stages, request,
            };
            if (validatePlan(plan, state, manifest, request).length) continue;
            const o = cm.predict(plan).objective;
            if (o < best) best = o;
          }
          return;
        }
        for (const id of ids) if (!used.includes(id)) assign(k + 1, [...used, id]);
      };
      assign(0, []);
    }
  }
  return best;
}

describe('solver', () => {
  it('equals a brute-force optimum on 200 random small instances', () => {
    let feasible = 0, cloudPlans = 0, wraps = 0, multi = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const { state, manifest, request } = randomInstance(seed);
      const bf = bruteForce(state, manifest, request);
      let got = Infinity;
      try {
        const r = solve(state, manifest, request);
        got = r.predicted.objective;
        expect(validatePlan(r.plan, state, manifest, request)).toEqual([]);
        expect(r.why.search.method).toBe('exact');
        feasible++;
        if (r.plan.cloudPeer) cloudPlans++;
        const dev = r.plan.stages.filter((s) => s.role !== 'cloud').map((s) => s.deviceId);
        if (new Set(dev).size > 1) multi++;
        const ci = r.plan.stages.findIndex((s) => s.role === 'cloud');
        if (ci > 0 && r.plan.stages[ci - 1].deviceId === r.plan.stages[ci + 1].deviceId) wraps++;
      } catch (e) {
        if (!(e instanceof InfeasiblePlanError)) throw e;
      }
      if (bf === Infinity) expect(got, `seed ${seed}`).toBe(Infinity);
      else expect(Math.abs(got - bf) / bf, `seed ${seed}: solver ${got} brute force ${bf}`).toBeLessThan(1e-9);
    }
    // The instances must exercise the interesting parts of the space, not only trivial plans.
    expect(feasible).toBeGreaterThan(120);
    expect(cloudPlans).toBeGreaterThan(40);
    expect(multi).toBeGreaterThan(20);
    expect(wraps).toBeGreaterThan(5);
  });
});

function home(n: number, seed: number, mode: 'local' | 'scx' = 'local'): { state: ClusterState; manifest: ModelManifest } {
  const r = rng(seed);
  const manifest = randomManifest(r, 6);
  const devices: DeviceProfile[] = Array.from({ length: n }, (_, i) => ({
    id: `d${i}`, memoryBytes: Math.round((0.3 + r() * 1.2) * 1.6e6), prefillFlopsPerSec: (0.5 + r() * 10) * 1e9,
    decodeFlopsPerSec: (0.2 + r() * 5) * 1e9, layerOverheadMs: r() * 0.5,
  }));
  const links: LinkProfile[] = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) links.push({ a: `d${i}`, b: `d${j}`, rttMs: 0.5 + r() * 5, bandwidthBytesPerSec: (5 + r() * 100) * 1e6 });
  const clouds: DeviceProfile[] = mode === 'local' ? [] : [{ id: 'g', memoryBytes: 1e10, prefillFlopsPerSec: 1e12, decodeFlopsPerSec: 1e11, layerOverheadMs: 0.05 }];
  for (const g of clouds) for (const d of devices) links.push({ a: d.id, b: g.id, rttMs: 30, bandwidthBytesPerSec: 20e6 });
  return { state: { coordinator: 'd0', devices, cloudPeers: clouds, links }, manifest };
}

function objectiveOrInf(state: ClusterState, manifest: ModelManifest, request: PlanRequest, opts = {}): number {
  try { return solve(state, manifest, request, opts).predicted.objective; } catch (e) {
    if (e instanceof InfeasiblePlanError) return Infinity;
    throw e;
  }
}

describe('solver guarantees', () => {
  it('adding devices one at a time never makes the plan slower, and it never loses to the best single device', () => {
    for (let seed = 1; seed <= 12; seed++) {
      const mode = seed % 3 === 0 ? 'scx' : 'local';
      const { state, manifest } = home(8, 1000 + seed, mode);
      const request: PlanRequest = { mode, promptTokens: 32, maxNewTokens: 16 };
      let prev = Infinity;
      for (let k = 1; k <= 8; k++) {
        const sub: ClusterState = { ...state, devices: state.devices.slice(0, k) };
        const o = objectiveOrInf(sub, manifest, request);
        expect(o, `seed ${seed}, ${k} devices`).toBeLessThanOrEqual(prev * (1 + 1e-12));
        let bestSingle = Infinity;
        for (const d of sub.devices) bestSingle = Math.min(bestSingle, objectiveOrInf(sub, manifest, request, { eligible: [d.id] }));
        expect(o).toBeLessThanOrEqual(bestSingle * (1 + 1e-12));
        prev = o;
      }
    }
  });

  it('honours fixed h/t, maxEdgeLayers, opt-out, share caps and memory, and says which constraint binds', () => {
    const { state, manifest } = home(4, 7, 'scx');
    const fixed = solve(state, manifest, { mode: 'scx', h: 2, t: 1, promptTokens: 16, maxNewTokens: 8 });
    expect([fixed.plan.h, fixed.plan.t]).toEqual([2, 1]);
    expect(fixed.plan.stages.find((s) => s.role === 'cloud')!.layers).toEqual([2, 5]);
    expect(fixed.why.stages.find((s) => s.role === 'cloud')!.binding).toBe('fixed-edge');
    const edge = solve(state, manifest, { mode: 'scx', maxEdgeLayers: 1, promptTokens: 16, maxNewTokens: 8 });
    expect([edge.plan.h, edge.plan.t]).toEqual([1, 1]);

    // A device that is fastest by far but opted out, and one capped at one layer.
    const fast: DeviceProfile = { id: 'fast', memoryBytes: 1e9, prefillFlopsPerSec: 1e13, decodeFlopsPerSec: 1e12, layerOverheadMs: 0, optOut: true };
    const capped: DeviceProfile = { id: 'capped', memoryBytes: 1e9, prefillFlopsPerSec: 1e12, decodeFlopsPerSec: 1e11, layerOverheadMs: 0, maxShare: 1 / 6 };
    const s2: ClusterState = {
      ...state, cloudPeers: [], devices: [...state.devices, fast, capped],
      links: [...state.links, ...state.devices.flatMap((d) => [{ a: d.id, b: 'fast', rttMs: 1, bandwidthBytesPerSec: 1e8 }, { a: d.id, b: 'capped', rttMs: 1, bandwidthBytesPerSec: 1e8 }])],
    };
    const r = solve(s2, manifest, { mode: 'local', promptTokens: 16, maxNewTokens: 8 });
    expect(r.plan.stages.some((s) => s.deviceId === 'fast')).toBe(false);
    expect(r.why.excluded.find((e) => e.deviceId === 'fast')?.reason).toBe('opt-out');
    const cappedLayers = r.plan.stages.filter((s) => s.deviceId === 'capped' && s.role === 'layers').reduce((n, s) => n + s.layers[1] - s.layers[0], 0);
    expect(cappedLayers).toBe(1); // it is fast enough to want more, and the cap stops it
    expect(r.why.stages.find((s) => s.deviceId === 'capped' && s.role === 'layers')!.binding).toBe('share-cap');
    expect(validatePlan(r.plan, s2, manifest)).toEqual([]);
    for (const w of r.why.stages) expect(w.memoryBytes).toBeLessThanOrEqual(w.memoryAvailableBytes);
    expect(r.why.summary.join('\n')).toMatch(/predicted: first token/);
  });

  it('marks memory as the binding constraint when a fast device is full', () => {
    const m = randomManifest(rng(3), 6);
    const layerBytes = Math.max(...m.layers.map((l) => l.bytes));
    // The coordinator is fast but holds about two layers; the other device is slow and large.
    const a: DeviceProfile = { id: 'a', memoryBytes: m.embedding.bytes + 2.2 * layerBytes + 1e5, prefillFlopsPerSec: 1e12, decodeFlopsPerSec: 1e11, layerOverheadMs: 0 };
    const b: DeviceProfile = { id: 'b', memoryBytes: 1e9, prefillFlopsPerSec: 1e9, decodeFlopsPerSec: 1e8, layerOverheadMs: 0 };
    const state: ClusterState = { coordinator: 'a', devices: [a, b], cloudPeers: [], links: [{ a: 'a', b: 'b', rttMs: 1, bandwidthBytesPerSec: 1e9 }] };
    const r = solve(state, m, { mode: 'local', promptTokens: 8, maxNewTokens: 8 });
    const onA = r.why.stages.filter((s) => s.deviceId === 'a' && s.role === 'layers');
    expect(onA.length).toBe(1);
    expect(onA[0].binding).toBe('memory');
  });

  it('explains infeasibility', () => {
    const { state, manifest } = home(2, 5);
    const tiny = { ...state, devices: state.devices.map((d) => ({ ...d, memoryBytes: 1000 })) };
    expect(() => solve(tiny, manifest, { mode: 'local' })).toThrow(InfeasiblePlanError);
    try { solve(tiny, manifest, { mode: 'local' }); } catch (e) {
      expect((e as InfeasiblePlanError).reasons.join(' ')).toMatch(/no-memory|needs at least/);
    }
    expect(() => solve(state, manifest, { mode: 'scx' })).toThrow(/needs a cloud peer/);
  });

  it('past 8 candidates runs the documented heuristic and still returns a valid plan no slower than any single device', () => {
    const { state, manifest } = home(14, 21, 'scx');
    const request: PlanRequest = { mode: 'scx', promptTokens: 32, maxNewTokens: 16 };
    const r = solve(state, manifest, request);
    expect(r.why.search.method).toBe('heuristic');
    expect(validatePlan(r.plan, state, manifest, request)).toEqual([]);
    for (const d of state.devices) expect(r.predicted.objective).toBeLessThanOrEqual(objectiveOrInf(state, manifest, request, { eligible: [d.id] }) * (1 + 1e-12));
  });
});
