/**
 * Planners the simulator compares: Hush's solver and three baselines.
 *
 * - memory-proportional (exo's ring): every usable trusted device, sorted by memory (largest first),
 *   takes a share of the trusted layers proportional to its memory; the embedding goes with the first
 *   layer, the LM head with the last. Compute speed and links are ignored.
 * - equal-split: the same ring with equal shares.
 * - best-single: the best plan that runs every trusted stage on one device (Hush's solver restricted to
 *   one device at a time), which is what a user gets without any distribution.
 * In split/scx mode the baselines keep h = t = 1 (or the request's h/t) and use the cloud peer with
 * the lowest RTT to the coordinator.
 */
import type { ModelManifest } from '../runtime/model/index.ts';
import {
  CostModel, InfeasiblePlanError, replan, solve, validatePlan,
  type ClusterState, type Plan, type PlanRequest, type PlanResult, type PlanStage,
} from '../runtime/scheduler/index.ts';

export type PlannerName = 'hush' | 'memory-proportional' | 'equal-split' | 'best-single';
export const PLANNER_NAMES: readonly PlannerName[] = ['hush', 'memory-proportional', 'equal-split', 'best-single'];

export interface Planner {
  name: PlannerName;
  /** A plan for the state; `previous` is the plan in place (Hush re-plans with a weight-movement penalty). */
  plan(state: ClusterState, manifest: ModelManifest, request: PlanRequest, previous?: PlanResult): PlanResult;
}

/** Wrap a baseline plan with the cost model's prediction and a short explanation. */
function baselineResult(name: string, plan: Plan, state: ClusterState, manifest: ModelManifest, request: PlanRequest): PlanResult {
  const violations = validatePlan(plan, state, manifest, request);
  if (violations.length) throw new InfeasiblePlanError(`${name} plan does not fit`, violations);
  const predicted = new CostModel(state, manifest, request).predict(plan);
  return {
    plan, predicted,
    why: {
      stages: [], excluded: [],
      search: { method: 'heuristic', candidates: state.devices.length, cloudPeersSearched: plan.cloudPeer ? [plan.cloudPeer] : [], dpStates: 0 },
      summary: [`${name} baseline`],
    },
  };
}

/** Devices a ring may use: not opted out, linked to the coordinator (or the coordinator itself). */
function ringDevices(state: ClusterState): ClusterState['devices'] {
  const linked = new Set<string>([state.coordinator]);
  for (const l of state.links) {
    if (l.a === state.coordinator) linked.add(l.b);
    if (l.b === state.coordinator) linked.add(l.a);
  }
  return state.devices.filter((d) => !d.optOut && linked.has(d.id))
    .sort((a, b) => b.memoryBytes - a.memoryBytes || (a.id < b.id ? -1 : 1));
}

function nearestCloud(state: ClusterState): string | null {
  const cm = (id: string) => {
    const l = state.links.find((x) => (x.a === state.coordinator && x.b === id) || (x.b === state.coordinator && x.a === id));
    return l ? l.rttMs : Infinity;
  };
  const c = [...state.cloudPeers].sort((a, b) => cm(a.id) - cm(b.id) || (a.id < b.id ? -1 : 1))[0];
  return c && cm(c.id) < Infinity ? c.id : null;
}

/** Ring placement with the given weights per device (exo's cumulative rounding). */
export function ringPlan(name: string, state: ClusterState, manifest: ModelManifest, request: PlanRequest,
  weight: (d: ClusterState['devices'][number]) => number): PlanResult {
  const L = manifest.numLayers;
  const ring = ringDevices(state);
  if (!ring.length) throw new InfeasiblePlanError(`${name}: no usable device`, []);
  const cloudMode = request.mode !== 'local';
  const h = cloudMode ? request.h ?? 1 : L, t = cloudMode ? request.t ?? 1 : 0;
  const trusted: number[] = [];
  for (let l = 0; l < h; l++) trusted.push(l);
  for (let l = L - t; l < L; l++) if (l >= h) trusted.push(l);
  const total = ring.reduce((s, d) => s + weight(d), 0);
  const owner: string[] = [];
  let cum = 0, start = 0;
  ring.forEach((d, i) => {
    cum += weight(d);
    const end = i === ring.length - 1 ? trusted.length : Math.min(trusted.length, Math.round((cum / total) * trusted.length));
    for (let k = start; k < end; k++) owner[k] = d.id;
    start = Math.max(start, end);
  });
  const cloud = cloudMode ? nearestCloud(state) : null;
  if (cloudMode && !cloud) throw new InfeasiblePlanError(`${name}: no cloud peer reachable`, []);
  const stages: PlanStage[] = [{ deviceId: owner[0], role: 'embed', layers: [0, 0] }];
  trusted.forEach((l, k) => {
    const last = stages[stages.length - 1];
    if (last.role === 'layers' && last.deviceId === owner[k] && last.layers[1] === l) last.layers[1] = l + 1;
    else stages.push({ deviceId: owner[k], role: 'layers', layers: [l, l + 1] });
    if (cloudMode && l === h - 1) stages.push({ deviceId: cloud!, role: 'cloud', layers: [h, L - t] });
  });
  stages.push({ deviceId: owner[trusted.length - 1], role: 'head', layers: [L, L] });
  const plan: Plan = {
    version: 1, model: manifest.name, numLayers: L, mode: request.mode, h, t, coordinator: state.coordinator,
    cloudPeer: cloud, stages, request: { ...request },
  };
  return baselineResult(name, plan, state, manifest, request);
}

export const hushPlanner: Planner = {
  name: 'hush',
  plan(state, manifest, request, previous) {
    return previous ? replan(previous, state, manifest, { request }) : solve(state, manifest, request);
  },
};

export const memoryProportionalPlanner: Planner = {
  name: 'memory-proportional',
  plan: (state, manifest, request) => ringPlan('memory-proportional', state, manifest, request, (d) => d.memoryBytes),
};

export const equalSplitPlanner: Planner = {
  name: 'equal-split',
  plan: (state, manifest, request) => ringPlan('equal-split', state, manifest, request, () => 1),
};

export const bestSinglePlanner: Planner = {
  name: 'best-single',
  plan(state, manifest, request) {
    let best: PlanResult | null = null;
    const reasons: string[] = [];
    for (const d of state.devices) {
      if (d.optOut) continue;
      try {
        const r = solve(state, manifest, request, { eligible: [d.id] });
        if (!best || r.predicted.objective < best.predicted.objective) best = r;
      } catch (e) {
        if (!(e instanceof InfeasiblePlanError)) throw e;
        reasons.push(`${d.id}: ${e.reasons[0] ?? e.message}`);
      }
    }
    if (!best) throw new InfeasiblePlanError('best-single: no device can run the trusted part alone', reasons);
    return { ...best, why: { ...best.why, summary: ['best-single baseline', ...best.why.summary] } };
  },
};

export function plannerByName(name: PlannerName): Planner {
  switch (name) {
    case 'hush': return hushPlanner;
    case 'memory-proportional': return memoryProportionalPlanner;
    case 'equal-split': return equalSplitPlanner;
    case 'best-single': return bestSinglePlanner;
  }
}
