import type { StageHost } from '../engine/stage-service.ts';
import type { StageSpec } from '../model/stage-graphs.ts';
import type { Plan } from '../scheduler/types.ts';
import { StageChainPath, type PlacedStage } from './trusted-path.ts';

interface Part { deviceId: string; spec: StageSpec }

/**
 * Merge a run of plan stages into stage specs: consecutive stages on one device become one spec
 * (one onnxruntime session, no hop between them). Embedding is layers [0,0), the LM head [L,L).
 */
export function mergeStages(stages: Plan['stages'], L: number): Part[] {
  const parts: Part[] = [];
  for (const s of stages) {
    const start = s.role === 'head' ? L : s.role === 'embed' ? 0 : s.layers[0];
    const end = s.role === 'head' ? L : s.role === 'embed' ? 0 : s.layers[1];
    const last = parts[parts.length - 1];
    if (last && last.deviceId === s.deviceId && !last.spec.head && last.spec.end === start) {
      last.spec = { embed: last.spec.embed, start: last.spec.start, end, head: s.role === 'head' };
    } else {
      parts.push({ deviceId: s.deviceId, spec: { embed: s.role === 'embed', start, end, head: s.role === 'head' } });
    }
  }
  return parts;
}

/**
 * Turn a scheduler plan into the coordinator's trusted path: stages before the cloud stage form the
 * head chain, those after it the tail chain. Without a cloud (local mode) the part holding the LM
 * head is the tail; if one device holds everything its LM head is split off, so head() yields
 * hidden rows like in every other mode.
 */
export function planToTrustedPath(plan: Plan, hostFor: (deviceId: string) => StageHost): StageChainPath {
  const L = plan.numLayers;
  const cloudAt = plan.stages.findIndex((s) => s.role === 'cloud');
  let head: Part[], tail: Part[];
  if (cloudAt >= 0) {
    head = mergeStages(plan.stages.slice(0, cloudAt), L);
    tail = mergeStages(plan.stages.slice(cloudAt + 1), L);
  } else {
    const all = mergeStages(plan.stages, L);
    const last = all[all.length - 1];
    if (last.spec.start < L || last.spec.embed) {
      head = [...all.slice(0, -1), { deviceId: last.deviceId, spec: { ...last.spec, head: false } }];
      tail = [{ deviceId: last.deviceId, spec: { embed: false, start: L, end: L, head: true } }];
    } else {
      head = all.slice(0, -1);
      tail = [last];
    }
  }
  const place = (p: Part): PlacedStage => ({ stage: p.spec, host: hostFor(p.deviceId) });
  return new StageChainPath(head.map(place), tail.map(place));
}
