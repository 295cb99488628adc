/**
 * Re-planning on join, leave, failure and measurement drift. A new plan must beat the plan in place by
 * a margin after paying for the weights it moves (`movePenaltyMsPerMiB` of objective per MiB that a
 * device must load and does not hold yet), so small changes in measurements do not shuffle gigabytes.
 */
import type { ModelManifest } from '../model/manifest.ts';
import { validatePlan } from './constraints.ts';
import { CostModel } from './cost.ts';
import { InfeasiblePlanError } from './errors.ts';
import { explain, solve, type SolveOptions } from './solver.ts';
import type { ClusterState, Plan, PlanRequest, PlanResult } from './types.ts';

export interface ReplanOptions {
  /** Request shape (default: the one the previous plan was made for). */
  request?: PlanRequest;
  /** Objective ms charged per MiB of weights a device must newly load (default 0.5). */
  movePenaltyMsPerMiB?: number;
  /** A new plan must lower the objective by this fraction (default 0.05) to replace a valid one. */
  minGain?: number;
  /** Relative change of the previous plan's predicted objective that counts as drift (default 0.2). */
  driftThreshold?: number;
  solve?: SolveOptions;
}

export interface ReplanCheck {
  needed: boolean;
  /** One line per cause: left, cloud peer gone, opted out, joined, drift, invalid. */
  reasons: string[];
  previousValid: boolean;
  violations: string[];
}

export interface ReplanResult extends PlanResult {
  /** False when the previous plan stays (still valid and no plan beats it by minGain after moves). */
  changed: boolean;
  reasons: string[];
  /** Weight bytes devices must load to switch to the returned plan (0 when unchanged). */
  movedBytes: number;
  /** The previous plan's objective under the new state, Infinity when it is no longer valid. */
  previousObjective: number;
}

/** Weight bytes that devices (and the cloud peer) must load to go from one plan to another. */
export function movedBytes(from: Plan, to: Plan, manifest: ModelManifest, state?: ClusterState): number {
  const L = manifest.numLayers;
  const held = new Map<string, Set<number>>();
  const unitsOf = (s: Plan['stages'][number]) => s.role === 'embed' ? [-1] : s.role === 'head' ? [L] : Array.from({ length: s.layers[1] - s.layers[0] }, (_, i) => s.layers[0] + i);
  for (const s of from.stages) {
    const set = held.get(s.deviceId) ?? held.set(s.deviceId, new Set()).get(s.deviceId)!;
    for (const u of unitsOf(s)) set.add(u);
  }
  let bytes = 0;
  for (const s of to.stages) {
    if (s.role === 'cloud' && state?.cloudPeers.find((g) => g.id === s.deviceId)?.loadedModels?.includes(manifest.name)) continue;
    const set = held.get(s.deviceId);
    for (const u of unitsOf(s)) {
      if (set?.has(u)) continue;
      bytes += u === -1 ? manifest.embedding.bytes : u === L ? manifest.head.bytes : manifest.layers[u].bytes;
    }
  }
  return bytes;
}

/** Cheap check whether a plan needs re-planning against a new state (no search). */
export function needsReplan(previous: PlanResult, newState: ClusterState, manifest: ModelManifest, opts: ReplanOptions = {},
  /** A cost model already built for newState (saves rebuilding it). */
  model?: CostModel): ReplanCheck {
  const plan = previous.plan;
  const request = opts.request ?? plan.request;
  const cm = model ?? new CostModel(newState, manifest, request);
  const reasons: string[] = [];
  const devices = new Map(newState.devices.map((d) => [d.id, d]));
  const clouds = new Set(newState.cloudPeers.map((g) => g.id));
  const inPlan = new Set<string>();
  for (const s of plan.stages) {
    if (inPlan.has(s.deviceId)) continue;
    inPlan.add(s.deviceId);
    if (s.role === 'cloud') { if (!clouds.has(s.deviceId)) reasons.push(`cloud peer gone: ${s.deviceId}`); continue; }
    const d = devices.get(s.deviceId);
    if (!d) reasons.push(`left: ${s.deviceId}`);
    else if (d.optOut) reasons.push(`opted out: ${s.deviceId}`);
  }
  const known = new Set([...inPlan, ...previous.why.excluded.map((e) => e.deviceId)]);
  for (const d of newState.devices) if (!known.has(d.id) && !d.optOut) reasons.push(`joined: ${d.id}`);
  for (const e of previous.why.excluded) {
    const d = devices.get(e.deviceId);
    if (d && e.reason === 'opt-out' && !d.optOut) reasons.push(`opted back in: ${d.id}`);
  }
  const violations = reasons.some((r) => r.startsWith('left') || r.startsWith('cloud peer gone')) ? ['a device of the plan is gone'] : validatePlan(plan, newState, manifest, request, cm);
  const previousValid = violations.length === 0;
  if (!previousValid && !reasons.length) reasons.push(`invalid: ${violations.join('; ')}`);
  if (previousValid) {
    const now = cm.predict(plan).objective;
    const before = previous.predicted.objective;
    const threshold = opts.driftThreshold ?? 0.2;
    if (Math.abs(now - before) > threshold * before) {
      reasons.push(`drift: predicted objective ${before.toFixed(1)} -> ${now.toFixed(1)} ms`);
    }
  }
  return { needed: reasons.length > 0, reasons, previousValid, violations };
}

/**
 * Re-plan after the state changed. Keeps the previous plan when it is still valid and no plan beats it
 * by `minGain` after paying for moved weights; otherwise returns the best new plan.
 */
export function replan(previous: PlanResult, newState: ClusterState, manifest: ModelManifest, opts: ReplanOptions = {}): ReplanResult {
  const request = opts.request ?? previous.plan.request;
  const cm = new CostModel(newState, manifest, request);
  const check = needsReplan(previous, newState, manifest, opts, cm);
  const penaltyPerByte = (opts.movePenaltyMsPerMiB ?? 0.5) / (1024 * 1024);
  const minGain = opts.minGain ?? 0.05;
  let kept: PlanResult | null = null;
  let previousObjective = Infinity;
  if (check.previousValid) {
    const predicted = cm.predict(previous.plan);
    previousObjective = predicted.objective;
    const why = explain(previous.plan, predicted, cm, newState, new Map(), { ...previous.why.search, cloudPeersSearched: [] });
    kept = { plan: previous.plan, predicted, why };
    if (!check.needed) return { ...kept, changed: false, reasons: [], movedBytes: 0, previousObjective };
  }
  let fresh: PlanResult;
  try {
    fresh = solve(newState, manifest, request, { ...opts.solve, previous: previous.plan, movePenaltyMsPerByte: penaltyPerByte });
  } catch (e) {
    if (kept && e instanceof InfeasiblePlanError) return { ...kept, changed: false, reasons: check.reasons, movedBytes: 0, previousObjective };
    throw e;
  }
  const moved = movedBytes(previous.plan, fresh.plan, manifest, newState);
  const freshCost = fresh.predicted.objective + penaltyPerByte * moved;
  if (kept && !(freshCost < previousObjective * (1 - minGain))) {
    return { ...kept, changed: false, reasons: check.reasons, movedBytes: 0, previousObjective };
  }
  const same = JSON.stringify(fresh.plan.stages) === JSON.stringify(previous.plan.stages);
  return { ...fresh, changed: !same, reasons: check.reasons, movedBytes: moved, previousObjective };
}
