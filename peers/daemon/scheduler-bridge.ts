import { deviceProfileFromMeasured } from '../../runtime/scheduler/profile.ts';
import { solve } from '../../runtime/scheduler/solver.ts';
import type { ClusterState, DeviceProfile, LinkProfile, Measured, PlanMode, PlanResult } from '../../runtime/scheduler/types.ts';
import type { ModelManifest } from '../../runtime/model/manifest.ts';
import type { PlanView } from '../../runtime/api/types.ts';

/** What the coordinator measured about one peer it could place stages on. */
export interface Candidate {
  id: string;
  name: string;
  measured: Measured;
  rttMs: number;
  bandwidthBytesPerSec: number;
  optOut?: boolean;
  maxShare?: number;
}

/** Loopback-like defaults when a link has not been probed yet (a plan is still possible, and re-made once measured). */
const DEFAULT_RTT_MS = 1;
const DEFAULT_BANDWIDTH = 100e6;
/** Per-request cost of libp2p framing, Noise and Yamux measured on loopback (runtime/bench/net.ts). */
export const PER_MESSAGE_MS = 0.5;

/**
 * The cluster as the solver sees it. Trusted stages run as a star around the coordinator (each stage
 * host is called by the coordinator and answers it), so the link between two other devices is the
 * relay through the coordinator: RTTs add, the slower bandwidth binds.
 */
export function clusterState(self: Candidate, devices: Candidate[], clouds: Candidate[]): ClusterState {
  const prof = (c: Candidate, cloud: boolean): DeviceProfile => deviceProfileFromMeasured(c.id, c.measured, {
    name: c.name, ...(c.optOut ? { optOut: true } : {}), ...(c.maxShare ? { maxShare: c.maxShare } : {}), ...(cloud ? { slots: 8 } : {}),
  });
  const links: LinkProfile[] = [];
  const link = (a: string, b: string, rttMs: number, bw: number) => links.push({ a, b, rttMs, bandwidthBytesPerSec: bw, perMessageMs: PER_MESSAGE_MS });
  const others = [...devices, ...clouds];
  for (const c of others) link(self.id, c.id, c.rttMs || DEFAULT_RTT_MS, c.bandwidthBytesPerSec || DEFAULT_BANDWIDTH);
  for (let i = 0; i < others.length; i++) {
    for (let j = i + 1; j < others.length; j++) {
      const a = others[i], b = others[j];
      link(a.id, b.id, (a.rttMs || DEFAULT_RTT_MS) + (b.rttMs || DEFAULT_RTT_MS), Math.min(a.bandwidthBytesPerSec || DEFAULT_BANDWIDTH, b.bandwidthBytesPerSec || DEFAULT_BANDWIDTH));
    }
  }
  return { coordinator: self.id, devices: [prof(self, false), ...devices.map((d) => prof(d, false))], cloudPeers: clouds.map((c) => prof(c, true)), links };
}

/**
 * Moving a stage to another device means that device builds its sessions from its copy of the
 * weights (~1 ms per MB measured here): a small penalty, so that a re-plan after a join, a leave or
 * drifting measurements keeps the current placement unless another one is clearly faster.
 */
export const MOVE_PENALTY_MS_PER_BYTE = 1e-6;

export function schedule(state: ClusterState, manifest: ModelManifest, mode: PlanMode, h: number | undefined, t: number | undefined,
  exclude: ReadonlySet<string>, previous?: PlanResult): PlanResult {
  return solve(state, manifest, { mode, ...(mode === 'local' ? {} : { h, t }) }, {
    eligible: state.devices.map((d) => d.id).filter((id) => id === state.coordinator || !exclude.has(id)),
    cloudPeers: state.cloudPeers.map((c) => c.id).filter((id) => !exclude.has(id)),
    ...(previous ? { previous: previous.plan, movePenaltyMsPerByte: MOVE_PENALTY_MS_PER_BYTE } : {}),
  });
}

/** Stages as one comparable string: who runs which layers. */
export function placementKey(r: PlanResult): string {
  return r.plan.stages.map((s) => `${s.role}:${s.layers.join('-')}@${s.deviceId}`).join(' ');
}

/** The plan as the app and `hush plan` show it. */
export function planView(r: PlanResult, nameOf: (id: string) => string): PlanView {
  const L = r.plan.numLayers;
  return {
    mode: r.plan.mode,
    stages: r.plan.stages.map((s, i) => {
      const p = r.predicted.stages[i];
      return {
        device: nameOf(s.deviceId), role: s.role,
        layers: s.role === 'embed' ? 'embedding' : s.role === 'head' ? 'final norm + LM head' : `[${s.layers[0]}, ${s.layers[1]})${s.role === 'cloud' ? ` of ${L}` : ''}`,
        ...(p ? { predictedMs: p.decodeMs + p.hopInDecodeMs } : {}),
      };
    }),
    predicted: { ttftMs: r.predicted.ttftMs, perTokenMs: r.predicted.perTokenMs },
    why: [...r.why.summary, ...r.why.stages.map((s) => `stage ${s.stage} (${s.role} on ${nameOf(s.deviceId)}): ${s.note} [binding: ${s.binding}]`),
      ...r.why.excluded.map((e) => `${nameOf(e.deviceId)} not used: ${e.reason} (${e.note})`)],
    details: { plan: r.plan, predicted: r.predicted, search: r.why.search },
  };
}
