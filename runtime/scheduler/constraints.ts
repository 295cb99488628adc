/**
 * Constraints a plan must satisfy against a cluster state. The solver only builds plans that pass;
 * daemons and re-planning use this to check a plan they hold against a changed state.
 */
import type { ModelManifest } from '../model/manifest.ts';
import { CostModel } from './cost.ts';
import type { ClusterState, Plan, PlanRequest } from './types.ts';

/** Most layers a device may hold under its share cap. */
export function layerCap(maxShare: number | undefined, numLayers: number): number {
  return maxShare == null ? numLayers : Math.floor(maxShare * numLayers + 1e-9);
}

/**
 * Every way the plan breaks the rules (empty when valid):
 * - embedding, head and tail layers, final norm and LM head only on trusted devices; cloud layers only
 *   on a cloud peer (or nowhere, in local mode);
 * - stages cover embed, layers 0..L-1 in order and head, exactly once; split/scx: h, t >= 1 and at least
 *   one cloud layer; h/t and maxEdgeLayers as the request fixes them;
 * - memory (weights, KV for the reserved context, workspace) within each device's available memory;
 * - opted-out devices host nothing; share caps hold; every hop has a link.
 */
export function validatePlan(plan: Plan, state: ClusterState, manifest: ModelManifest, request: PlanRequest = plan.request,
  /** A cost model already built for this state, manifest and request (saves rebuilding it). */
  model?: CostModel): string[] {
  const v: string[] = [];
  let cm: CostModel;
  try {
    cm = model ?? new CostModel(state, manifest, request);
  } catch (e) {
    return [(e as Error).message];
  }
  const L = manifest.numLayers;
  const req = cm.req;
  if (plan.version !== 1) v.push(`unknown plan version ${plan.version}`);
  if (plan.model !== manifest.name || plan.numLayers !== L) v.push(`plan is for ${plan.model} (${plan.numLayers} layers), not ${manifest.name} (${L})`);
  if (plan.mode !== req.mode) v.push(`plan mode ${plan.mode} differs from the request's ${req.mode}`);
  if (plan.coordinator !== state.coordinator) v.push(`plan coordinator ${plan.coordinator} is not the state's ${state.coordinator}`);
  const st = plan.stages;
  if (!st.length) return [...v, 'plan has no stages'];
  if (st[0].role !== 'embed') v.push('the first stage must be the embedding');
  if (st[st.length - 1].role !== 'head') v.push('the last stage must be the final norm + LM head');
  let next = 0; // next layer expected
  let embeds = 0, heads = 0, clouds = 0;
  for (const [i, s] of st.entries()) {
    const [a, b] = s.layers;
    if (!Number.isInteger(a) || !Number.isInteger(b)) { v.push(`stage ${i}: layers must be integers`); continue; }
    if (s.role === 'embed') {
      embeds++;
      if (i !== 0) v.push(`stage ${i}: embedding must come first`);
      if (a !== 0 || b !== 0) v.push(`stage ${i}: embed stage layers must be [0,0)`);
    } else if (s.role === 'head') {
      heads++;
      if (i !== st.length - 1) v.push(`stage ${i}: LM head must come last`);
      if (a !== L || b !== L) v.push(`stage ${i}: head stage layers must be [${L},${L})`);
      if (next !== L) v.push(`layers ${next}..${L - 1} are not covered before the LM head`);
    } else {
      if (a !== next || b <= a || b > L) v.push(`stage ${i}: layers [${a},${b}) do not continue from layer ${next}`);
      next = Math.max(next, b);
      if (s.role === 'cloud') clouds++;
    }
    if (s.role === 'cloud') {
      if (!cm.cloud(s.deviceId)) v.push(`stage ${i}: cloud layers on ${s.deviceId}, which is not a cloud peer`);
    } else if (!cm.device(s.deviceId)) {
      v.push(`stage ${i}: ${s.role} on ${s.deviceId}, which is not a trusted device`);
    } else if (cm.device(s.deviceId)!.optOut) {
      v.push(`stage ${i}: ${s.deviceId} has opted out`);
    }
  }
  if (embeds !== 1 || heads !== 1) v.push('a plan has exactly one embed and one head stage');
  if (req.mode === 'local') {
    if (clouds) v.push('local mode runs no cloud stage');
    if (plan.h !== L || plan.t !== 0 || plan.cloudPeer !== null) v.push(`local mode plans have h = L, t = 0, no cloud peer`);
  } else {
    const cs = st.filter((s) => s.role === 'cloud');
    if (cs.length !== 1) v.push(`${req.mode} mode needs exactly one cloud stage (found ${cs.length})`);
    else {
      const [a, b] = cs[0].layers;
      if (plan.h !== a || plan.t !== L - b) v.push(`plan h/t (${plan.h}/${plan.t}) do not match the cloud stage [${a},${b})`);
      if (a < 1 || L - b < 1) v.push(`h and t must be >= 1 (h=${a}, t=${L - b})`);
      if (plan.cloudPeer !== cs[0].deviceId) v.push(`plan.cloudPeer ${plan.cloudPeer} differs from the cloud stage's ${cs[0].deviceId}`);
      if (req.h != null && a !== req.h) v.push(`request fixes h = ${req.h}, plan has ${a}`);
      if (req.t != null && L - b !== req.t) v.push(`request fixes t = ${req.t}, plan has ${L - b}`);
      if (a > req.maxEdgeLayers || L - b > req.maxEdgeLayers) v.push(`h/t exceed maxEdgeLayers ${req.maxEdgeLayers}`);
    }
  }
  // Share caps count transformer layers per device over all its stages.
  const layersOn = new Map<string, number>();
  for (const s of st) if (s.role === 'layers') layersOn.set(s.deviceId, (layersOn.get(s.deviceId) ?? 0) + s.layers[1] - s.layers[0]);
  for (const [id, n] of layersOn) {
    const d = cm.device(id);
    if (d && n > layerCap(d.maxShare, L)) v.push(`${id} holds ${n} layers, over its share cap ${layerCap(d.maxShare, L)}`);
  }
  const mem = cm.memory(plan);
  for (const [id, bytes] of Object.entries(mem)) {
    const d = cm.device(id) ?? cm.cloud(id);
    if (d && bytes > d.memoryBytes) v.push(`${id} needs ${fmtBytes(bytes)}, has ${fmtBytes(d.memoryBytes)}`);
  }
  if (!v.length) {
    // A decode pass visits the same sequence of devices (and the same coordinator-cloud link) as prefill.
    for (const o of cm.ops(plan, 'decode')) {
      if (o.kind === 'send' && !Number.isFinite(o.ms)) { v.push(`no link between ${o.from} and ${o.to}`); break; }
    }
  }
  return v;
}

export function fmtBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}
