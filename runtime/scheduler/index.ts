/**
 * Scheduler: device profiles, cost model, placement solver, re-planning and "why this plan".
 * Knows costs and constraints, not tensors.
 */
export * from './types.ts';
export * from './errors.ts';
export {
  CostModel, predictPlan, resolveRequest, attentionDims, scxVectorsPerTokenPerLayer, hopMs, msPerLayer,
  WORKSPACE_VECTORS_PER_PROMPT_TOKEN, MIN_RTO_MS, type Op, type PassPhase, type CloudBlockCost, type ResolvedRequest,
} from './cost.ts';
export { validatePlan, layerCap, fmtBytes } from './constraints.ts';
export { solve, explain, type SolveOptions } from './solver.ts';
export { replan, needsReplan, movedBytes, type ReplanOptions, type ReplanResult, type ReplanCheck } from './replan.ts';
export {
  loadOrMeasureProfile, deviceProfileFromMeasured, checkMeasured, hostFingerprint, PROFILE_FILE,
  type CachedProfile, type HostFingerprint,
} from './profile.ts';
