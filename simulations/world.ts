/**
 * The simulated world: owners with trusted devices on home networks, a pool of cloud peers, and the
 * requests the owners run. Plans come from the real scheduler (or a baseline planner) fed with what a
 * coordinator would have measured; the plan then runs against the true devices and links, operation by
 * operation, with jitter, loss, queueing at cloud peers, churn, failures and drift.
 *
 * Fidelity notes (what is and is not modelled):
 * - Each pass follows CostModel.ops() of the true state: the simulated time of a noise-free pass equals
 *   the cost model's prediction, so differences come only from jitter, loss, queueing and wrong beliefs.
 * - An owner runs one request at a time, so its trusted devices never queue; consecutive trusted
 *   operations are fused into one event. Cloud peers serve `slots` sessions at once (batching) and queue
 *   the rest in FIFO order.
 * - A device or cloud peer that goes away is noticed `failureDetectMs` later; the coordinator then
 *   re-plans and re-runs prefill over the prompt plus the tokens generated so far, so no token is lost
 *   or repeated (the stall shows up in that token's latency).
 * - Drift: after a request the coordinator compares each trusted stage's observed decode time with its
 *   prediction; off by more than 25%, it rescales that device's measured speed and re-plans.
 */
import type { ModelManifest } from '../runtime/model/index.ts';
import {
  CostModel, InfeasiblePlanError, MIN_RTO_MS,
  type ClusterState, type DeviceProfile, type LinkProfile, type Op, type PlanRequest, type PlanResult,
} from '../runtime/scheduler/index.ts';
import type { Planner } from './baselines.ts';
import { Simulator, SimulationError } from './events.ts';
import { accessPreset, lanLink, profileFromPreset, wanLink, type AccessPreset, type WanProfile } from './presets.ts';
import { Prng } from './prng.ts';
import type { Scenario } from './scenario.ts';

export interface DeviceSpec {
  id: string; preset: string; access: string; memoryGiB?: number; optOut?: boolean; maxShare?: number; offline?: boolean;
}
export interface OwnerSpec { id: string; coordinator: string; devices: DeviceSpec[]; wan: WanProfile }
export interface CloudSpec { id: string; preset: string; rttMs?: number; extraRttMs: number; loadedModels?: string[] }

/** Owners and cloud peers of a scenario, generated deterministically from its seed. */
export interface Population { owners: OwnerSpec[]; clouds: CloudSpec[] }

export function buildPopulation(sc: Scenario, rng: Prng): Population {
  if (sc.owner) {
    return {
      owners: [{ id: 'owner', coordinator: sc.owner.coordinator, devices: sc.owner.devices.map((d) => ({ ...d })), wan: { ...sc.owner.wan } }],
      clouds: sc.cloudPeers.map((c) => ({ id: c.id, preset: c.preset, rttMs: c.rttMs, extraRttMs: 0, loadedModels: c.loadedModels })),
    };
  }
  const p = sc.population!;
  const clouds: CloudSpec[] = [];
  for (let i = 0; i < p.cloudPeers; i++) {
    clouds.push({ id: `g${i}`, preset: rng.weighted(p.cloudPresets), extraRttMs: rng.range(p.cloudExtraRttMs[0], p.cloudExtraRttMs[1]), loadedModels: [sc.model] });
  }
  const owners: OwnerSpec[] = [];
  let total = 0;
  for (let o = 0; total < p.targetDevices; o++) {
    let n = p.devicesPerOwner[0] + rng.int(p.devicesPerOwner[1] - p.devicesPerOwner[0] + 1);
    n = Math.min(n, p.targetDevices - total);
    const devices: DeviceSpec[] = [];
    for (let j = 0; j < n; j++) {
      devices.push({ id: `o${o}-d${j}`, preset: rng.weighted(j === 0 ? p.coordinatorPresets : p.presets), access: rng.weighted(p.access) });
    }
    owners.push({
      id: `o${o}`, coordinator: devices[0].id, devices,
      wan: {
        rttMs: rng.range(p.wanRttMs[0], p.wanRttMs[1]), upMbps: rng.range(p.upMbps[0], p.upMbps[1]),
        downMbps: rng.range(p.downMbps[0], p.downMbps[1]), jitterMs: p.wanJitterMs, loss: p.wanLoss,
      },
    });
    total += n;
  }
  return { owners, clouds };
}

interface SimDevice {
  spec: DeviceSpec;
  owner: OwnerSim;
  access: AccessPreset;
  truth: DeviceProfile;
  belief: DeviceProfile;
  online: boolean;
}

interface CloudJob { ms: number; epoch: number; done: () => void }

interface SimCloud {
  spec: CloudSpec;
  truth: DeviceProfile;
  slots: number;
  busy: number;
  queue: CloudJob[];
  qHead: number;
  online: boolean;
  epoch: number;
  sessions: Set<Session>;
  servedJobs: number;
}

interface OwnerSim {
  spec: OwnerSpec;
  devices: Map<string, SimDevice>;
  coordinator: SimDevice;
  plan: PlanResult | null;
  dirty: string[];
  session: Session | null;
  requestsLeft: number;
  retries: number;
}

interface Session {
  owner: OwnerSim;
  plan: PlanResult;
  gen: number;
  startedAt: number;
  lastTokenAt: number;
  promptTokens: number;
  maxNewTokens: number;
  tokens: number;
  ttftMs: number | null;
  tokenMs: number[];
  stalls: number;
  stallMs: number;
  recovering: boolean;
  cloud: SimCloud | null;
  devices: SimDevice[];
  truth: CostModel;
  /** Observed decode compute per trusted stage: sum of ms and passes. */
  observed: Map<number, { ms: number; n: number }>;
  failures: number;
  decodeOps: Op[] | null;
  decodeCtx: number;
}

export interface RequestRecord {
  owner: string;
  ownerDevices: number;
  devicesUsed: number;
  wanRttMs: number;
  ttftMs: number;
  /** Mean latency of generated tokens after the first, recovery stalls excluded. */
  perTokenMs: number;
  tokens: number;
  stalls: number;
  stallMs: number;
}

export interface WorldStats {
  records: RequestRecord[];
  aborted: number;
  recoveries: number;
  planCalls: number;
  planChanges: number;
  infeasible: number;
  replanReasons: Record<string, number>;
  events: number;
  virtualMs: number;
  cloudJobs: number;
  cloudQueuedMax: number;
  /** Cloud peers that ran at least one job, and the most sessions one peer held at once. */
  cloudPeersUsed: number;
  cloudSessionsMax: number;
}

const MAX_EVENTS = 50_000_000;
const DRIFT_RATIO = 1.25;
const MAX_RETRIES = 20;

export class World {
  readonly sim = new Simulator();
  private readonly rng: Prng;
  private readonly owners: OwnerSim[] = [];
  private readonly clouds = new Map<string, SimCloud>();
  private readonly deviceIndex = new Map<string, SimDevice>();
  readonly stats: WorldStats = {
    records: [], aborted: 0, recoveries: 0, planCalls: 0, planChanges: 0, infeasible: 0, replanReasons: {},
    events: 0, virtualMs: 0, cloudJobs: 0, cloudQueuedMax: 0, cloudPeersUsed: 0, cloudSessionsMax: 0,
  };
  private readonly horizonMs: number;

  constructor(readonly sc: Scenario, readonly pop: Population, readonly manifest: ModelManifest,
    readonly planner: Planner, seed: number) {
    const base = new Prng(seed);
    // The world's devices, beliefs and events come from their own stream, so every planner sees the
    // same world; the run's random draws (jitter, loss, think times) come from another.
    const worldRng = base.fork('world');
    this.rng = base.fork('run');
    this.horizonMs = sc.workload.durationMs ?? 3_600_000;
    for (const c of pop.clouds) {
      const truth = profileFromPreset(c.id, c.preset, { loadedModels: c.loadedModels });
      this.clouds.set(c.id, { spec: c, truth, slots: truth.slots ?? 1, busy: 0, queue: [], qHead: 0, online: true, epoch: 0, sessions: new Set(), servedJobs: 0 });
    }
    for (const o of pop.owners) {
      const owner: OwnerSim = {
        spec: o, devices: new Map(), coordinator: null as unknown as SimDevice, plan: null, dirty: [], session: null,
        requestsLeft: sc.workload.requests, retries: 0,
      };
      for (const d of o.devices) {
        const truth = profileFromPreset(d.id, d.preset, { memoryGiB: d.memoryGiB, optOut: d.optOut, maxShare: d.maxShare });
        const noise = () => Math.min(1.5, Math.max(0.5, 1 + sc.measurementNoise * worldRng.normal()));
        const belief: DeviceProfile = { ...truth, prefillFlopsPerSec: truth.prefillFlopsPerSec * noise(), decodeFlopsPerSec: truth.decodeFlopsPerSec * noise() };
        const dev: SimDevice = { spec: d, owner, access: accessPreset(d.access), truth, belief, online: !d.offline };
        owner.devices.set(d.id, dev);
        this.deviceIndex.set(d.id, dev);
      }
      owner.coordinator = owner.devices.get(o.coordinator)!;
      this.owners.push(owner);
    }
    this.scheduleScenarioEvents(worldRng);
  }

  /** Run every owner's workload to the end; returns the statistics. */
  run(): WorldStats {
    for (const o of this.owners) this.sim.at(this.rng.range(0, Math.max(1, this.sc.workload.thinkMs)), () => this.startRequest(o));
    const n = this.sim.run(Infinity, MAX_EVENTS);
    if (this.sim.pending) throw new SimulationError(`simulation did not finish within ${MAX_EVENTS} events`);
    this.stats.events = n;
    this.stats.virtualMs = this.sim.now;
    this.stats.cloudPeersUsed = [...this.clouds.values()].filter((c) => c.servedJobs > 0).length;
    return this.stats;
  }

  // ---- events from the scenario -----------------------------------------------------------------

  private scheduleScenarioEvents(rng: Prng): void {
    for (const e of this.sc.events) {
      this.sim.at(e.atMs, () => {
        if (e.kind === 'leave') this.setOnline(this.deviceIndex.get(e.device)!, false);
        else if (e.kind === 'join') this.setOnline(this.deviceIndex.get(e.device)!, true);
        else if (e.kind === 'cloud-fail') this.setCloudOnline(this.clouds.get(e.cloud)!, false);
        else if (e.kind === 'cloud-recover') this.setCloudOnline(this.clouds.get(e.cloud)!, true);
        else if (e.kind === 'drift') {
          const d = this.deviceIndex.get(e.device)!;
          // factor < 1: the device got slower (thermal throttling, a background job).
          d.truth = { ...d.truth, prefillFlopsPerSec: d.truth.prefillFlopsPerSec * e.factor, decodeFlopsPerSec: d.truth.decodeFlopsPerSec * e.factor, layerOverheadMs: d.truth.layerOverheadMs / e.factor };
        }
      });
    }
    const p = this.sc.population;
    if (!p) return;
    if (p.churn.meanUpMs > 0 && p.churn.meanDownMs > 0) {
      for (const o of this.owners) {
        for (const d of o.devices.values()) {
          if (d === o.coordinator) continue;
          const flip = (online: boolean) => {
            const next = this.sim.now + rng.exp(online ? p.churn.meanUpMs : p.churn.meanDownMs);
            if (next > this.horizonMs) return;
            this.sim.at(next, () => { this.setOnline(d, !online); flip(!online); });
          };
          flip(true);
        }
      }
    }
    const ids = [...this.clouds.keys()];
    for (let i = 0; i < Math.min(p.cloudFailures, ids.length); i++) {
      const c = this.clouds.get(ids.splice(rng.int(ids.length), 1)[0])!;
      this.sim.at(rng.range(0.2, 0.6) * Math.min(this.horizonMs, 600_000), () => this.setCloudOnline(c, false));
    }
  }

  private setOnline(d: SimDevice, online: boolean): void {
    if (d.online === online) return;
    d.online = online;
    const o = d.owner;
    o.dirty.push(online ? 'joined' : 'left');
    const s = o.session;
    if (!online && s && s.devices.includes(d)) this.detectFailure(s, d === o.coordinator ? 'coordinator left' : 'left');
  }

  private setCloudOnline(c: SimCloud, online: boolean): void {
    if (c.online === online) return;
    c.online = online;
    c.epoch++;
    c.busy = 0;
    c.queue = []; c.qHead = 0;
    if (!online) {
      for (const s of [...c.sessions]) this.detectFailure(s, 'cloud peer failed');
      for (const o of this.owners) if (o.plan?.plan.cloudPeer === c.spec.id) o.dirty.push('cloud peer failed');
    }
  }

  // ---- what a coordinator knows -----------------------------------------------------------------

  private cloudRtt(o: OwnerSim, c: SimCloud): number { return c.spec.rttMs ?? o.spec.wan.rttMs + c.spec.extraRttMs; }

  /** The directory's answer: online cloud peers by RTT plus load, at most `candidateClouds`. */
  private candidateClouds(o: OwnerSim): SimCloud[] {
    if (this.sc.mode === 'local') return [];
    const all = [...this.clouds.values()].filter((c) => c.online);
    const limit = this.sc.population?.candidateClouds ?? all.length;
    if (all.length <= limit) return all;
    const key = (c: SimCloud) => this.cloudRtt(o, c) * (1 + c.sessions.size / c.slots);
    return all.sort((a, b) => key(a) - key(b) || (a.spec.id < b.spec.id ? -1 : 1)).slice(0, limit);
  }

  private links(o: OwnerSim, devs: SimDevice[], clouds: SimCloud[]): LinkProfile[] {
    const links: LinkProfile[] = [];
    for (let i = 0; i < devs.length; i++) {
      for (let j = i + 1; j < devs.length; j++) links.push(lanLink(devs[i].spec.id, devs[i].access, devs[j].spec.id, devs[j].access));
      for (const c of clouds) links.push(wanLink(devs[i].spec.id, devs[i].access, c.spec.id, { ...o.spec.wan, rttMs: this.cloudRtt(o, c) }));
    }
    return links;
  }

  /** The cluster state the coordinator plans with: measured (belief) profiles of what is online. */
  private beliefState(o: OwnerSim): ClusterState {
    const devs = [...o.devices.values()].filter((d) => d.online);
    const clouds = this.candidateClouds(o);
    return {
      coordinator: o.coordinator.spec.id,
      devices: devs.map((d) => d.belief),
      cloudPeers: clouds.map((c) => ({ ...c.truth, activeSessions: c.sessions.size - (o.session?.cloud === c ? 1 : 0) })),
      links: this.links(o, devs, clouds),
    };
  }

  /** The true state a plan runs against (cloud contention is simulated by queueing, not by a factor). */
  private truthModel(o: OwnerSim, plan: PlanResult, request: PlanRequest): CostModel {
    const devs = [...new Set(plan.plan.stages.filter((s) => s.role !== 'cloud').map((s) => s.deviceId).concat(o.coordinator.spec.id))].map((id) => o.devices.get(id)!);
    const cloud = plan.plan.cloudPeer ? this.clouds.get(plan.plan.cloudPeer)! : null;
    const state: ClusterState = {
      coordinator: o.coordinator.spec.id,
      devices: devs.map((d) => d.truth),
      cloudPeers: cloud ? [{ ...cloud.truth, slots: 1, activeSessions: 0 }] : [],
      links: this.links(o, devs, cloud ? [cloud] : []),
    };
    return new CostModel(state, this.manifest, request);
  }

  private request(): PlanRequest { return { mode: this.sc.mode, ...this.sc.request }; }

  // ---- requests ---------------------------------------------------------------------------------

  private startRequest(o: OwnerSim): void {
    if (o.requestsLeft <= 0 || o.session) return;
    if (this.sc.workload.durationMs != null && this.sim.now > this.sc.workload.durationMs) return;
    if (!o.coordinator.online) { this.retryLater(o); return; }
    const plan = this.ensurePlan(o);
    if (!plan) { this.retryLater(o); return; }
    o.retries = 0;
    o.requestsLeft--;
    const req = this.request();
    const s: Session = {
      owner: o, plan, gen: 0, startedAt: this.sim.now, lastTokenAt: this.sim.now,
      promptTokens: this.sc.request.promptTokens, maxNewTokens: this.sc.request.maxNewTokens,
      tokens: 0, ttftMs: null, tokenMs: [], stalls: 0, stallMs: 0, recovering: false,
      cloud: null, devices: [], truth: this.truthModel(o, plan, req), observed: new Map(), failures: 0,
      decodeOps: null, decodeCtx: 0,
    };
    o.session = s;
    this.attach(s, plan);
    this.prefill(s);
  }

  private retryLater(o: OwnerSim): void {
    if (++o.retries > MAX_RETRIES) { o.requestsLeft = 0; this.stats.aborted++; return; }
    this.sim.after(this.sc.retryMs, () => this.startRequest(o));
  }

  /** Plan (or re-plan) when the owner has no plan or something changed. */
  private ensurePlan(o: OwnerSim): PlanResult | null {
    if (o.plan && !o.dirty.length) return o.plan;
    const reasons = o.dirty.length ? o.dirty : ['initial'];
    for (const r of new Set(reasons)) this.stats.replanReasons[r] = (this.stats.replanReasons[r] ?? 0) + 1;
    o.dirty = [];
    this.stats.planCalls++;
    try {
      const r = this.planner.plan(this.beliefState(o), this.manifest, this.request(), o.plan ?? undefined);
      if (o.plan && JSON.stringify(o.plan.plan.stages) !== JSON.stringify(r.plan.stages)) this.stats.planChanges++;
      o.plan = r;
      return r;
    } catch (e) {
      if (!(e instanceof InfeasiblePlanError)) throw e;
      this.stats.infeasible++;
      o.dirty.push('infeasible');
      return null;
    }
  }

  /** All devices and the cloud peer of the session are up (otherwise it stalls until detection). */
  private healthy(s: Session): boolean {
    for (const d of s.devices) if (!d.online) return false;
    return !s.cloud || s.cloud.online;
  }

  private attach(s: Session, plan: PlanResult): void {
    s.devices = [...new Set(plan.plan.stages.filter((x) => x.role !== 'cloud').map((x) => x.deviceId).concat(s.owner.coordinator.spec.id))].map((id) => s.owner.devices.get(id)!);
    s.cloud = plan.plan.cloudPeer ? this.clouds.get(plan.plan.cloudPeer)! : null;
    if (s.cloud) {
      s.cloud.sessions.add(s);
      if (s.cloud.sessions.size > this.stats.cloudSessionsMax) this.stats.cloudSessionsMax = s.cloud.sessions.size;
    }
  }

  private detach(s: Session): void {
    s.cloud?.sessions.delete(s);
    s.cloud = null;
  }

  private prefill(s: Session): void {
    const gen = s.gen;
    // After a recovery the prompt is the original one plus the tokens generated so far.
    const cm = s.tokens > 0 ? this.truthModel(s.owner, s.plan, { ...this.request(), promptTokens: s.promptTokens + s.tokens }) : s.truth;
    const ops = cm.ops(s.plan.plan, 'prefill');
    this.runOps(s, gen, ops, 0, 0, false, () => {
      // Key sharing (scx): sigma/tau of the cloud layers, then the cloud rewrites its KV once.
      const cloudStage = s.plan.plan.stages.find((x) => x.role === 'cloud');
      const keyMs = cloudStage && this.sc.mode === 'scx' && s.tokens + 1 < s.maxNewTokens ? cm.keyShareMs(cloudStage.deviceId, cloudStage.layers[0], cloudStage.layers[1]) : 0;
      this.sim.after(keyMs, () => {
        if (s.gen !== gen || !this.healthy(s)) return;
        this.token(s);
      });
    });
  }

  private decode(s: Session): void {
    const gen = s.gen;
    // Decode operations depend on the context only through attention, a small term: rebuild them when
    // the context has grown by a tenth since they were built.
    const ctx = s.promptTokens + s.tokens;
    if (!s.decodeOps || ctx > s.decodeCtx * 1.1) { s.decodeOps = s.truth.ops(s.plan.plan, 'decode', ctx); s.decodeCtx = ctx; }
    const ops = s.decodeOps;
    this.runOps(s, gen, ops, 0, 0, true, () => this.token(s));
  }

  /** A token was sampled at the coordinator. */
  private token(s: Session): void {
    const now = this.sim.now;
    if (s.tokens === 0) s.ttftMs = now - s.startedAt;
    else if (s.recovering) { s.stalls++; s.stallMs += now - s.lastTokenAt; }
    else s.tokenMs.push(now - s.lastTokenAt);
    s.recovering = false;
    s.lastTokenAt = now;
    s.tokens++;
    if (s.tokens >= s.maxNewTokens) this.finish(s);
    else this.decode(s);
  }

  private finish(s: Session): void {
    const o = s.owner;
    this.detach(s);
    o.session = null;
    s.gen++;
    const perToken = s.tokenMs.length ? s.tokenMs.reduce((a, b) => a + b, 0) / s.tokenMs.length : 0;
    this.stats.records.push({
      owner: o.spec.id, ownerDevices: o.spec.devices.length,
      devicesUsed: new Set(s.plan.plan.stages.filter((x) => x.role !== 'cloud').map((x) => x.deviceId)).size,
      wanRttMs: o.spec.wan.rttMs, ttftMs: s.ttftMs ?? 0, perTokenMs: perToken, tokens: s.tokens, stalls: s.stalls, stallMs: s.stallMs,
    });
    this.checkDrift(s);
    if (o.requestsLeft > 0) this.sim.after(this.rng.exp(this.sc.workload.thinkMs), () => this.startRequest(o));
  }

  /** Compare observed trusted decode times with the plan's prediction; rescale beliefs that are off. */
  private checkDrift(s: Session): void {
    const o = s.owner;
    for (const [stage, obs] of s.observed) {
      const st = s.plan.plan.stages[stage];
      const predicted = s.plan.predicted.stages[stage]?.decodeMs;
      if (!predicted || !obs.n || st.role !== 'layers') continue;
      const ratio = obs.ms / obs.n / predicted;
      if (ratio < DRIFT_RATIO && ratio > 1 / DRIFT_RATIO) continue;
      const d = o.devices.get(st.deviceId);
      if (!d) continue;
      d.belief = { ...d.belief, prefillFlopsPerSec: d.belief.prefillFlopsPerSec / ratio, decodeFlopsPerSec: d.belief.decodeFlopsPerSec / ratio };
      o.dirty.push('drift');
    }
  }

  private detectFailure(s: Session, reason: string): void {
    const gen = s.gen;
    this.sim.after(this.sc.failureDetectMs, () => {
      if (s.gen !== gen || s.owner.session !== s) return;
      this.recover(s, reason);
    });
  }

  private recover(s: Session, reason: string): void {
    const o = s.owner;
    s.gen++;
    this.detach(s);
    o.dirty.push(reason);
    if (!o.coordinator.online || ++s.failures > MAX_RETRIES) {
      o.session = null;
      this.stats.aborted++;
      if (o.requestsLeft > 0) this.sim.after(this.sc.retryMs, () => this.startRequest(o));
      return;
    }
    const plan = this.ensurePlan(o);
    if (!plan) { this.sim.after(this.sc.retryMs, () => { if (o.session === s) this.recover(s, 'retry'); }); return; }
    this.stats.recoveries++;
    s.plan = plan;
    s.recovering = s.tokens > 0;
    s.observed.clear();
    this.attach(s, plan);
    s.truth = this.truthModel(o, plan, this.request());
    s.decodeOps = null;
    this.prefill(s);
  }

  // ---- running operations ------------------------------------------------------------------------

  /** Sampled duration of one trusted-side operation (compute with jitter; sends with jitter and loss). */
  private sample(s: Session, op: Op): number {
    if (op.kind === 'compute') {
      const j = this.sc.computeJitter;
      return op.ms * (1 + j * (2 * this.rng.next() - 1));
    }
    const link = s.truth.link(op.from, op.to);
    if (!link) return Infinity;
    const bw = op.from === link.a ? link.bandwidthBytesPerSec : (link.reverseBandwidthBytesPerSec ?? link.bandwidthBytesPerSec);
    const rto = Math.max(MIN_RTO_MS, 2 * link.rttMs);
    return link.rttMs / 2 + (link.perMessageMs ?? 0) + (op.bytes / bw) * 1000
      + this.rng.exp(link.jitterMs ?? 0) + this.rng.losses(link.lossRate ?? 0) * rto;
  }

  /**
   * Run ops[i..] of a pass. Trusted operations up to the next cloud compute are fused into one event
   * (their devices serve only this owner); a cloud compute goes through the peer's queue.
   */
  private runOps(s: Session, gen: number, ops: Op[], i: number, carried: number, isDecode: boolean, done: () => void): void {
    let acc = carried;
    while (i < ops.length) {
      const op = ops[i];
      if (op.kind === 'compute' && op.cloud) break;
      const ms = this.sample(s, op);
      if (isDecode && op.kind === 'compute' && op.stage >= 0) {
        const o = s.observed.get(op.stage) ?? { ms: 0, n: 0 };
        o.ms += ms; o.n++;
        s.observed.set(op.stage, o);
      }
      acc += ms;
      i++;
    }
    if (!Number.isFinite(acc)) { this.detectFailure(s, 'link lost'); return; }
    if (i >= ops.length) {
      this.sim.after(acc, () => { if (s.gen === gen && this.healthy(s)) done(); });
      return;
    }
    const op = ops[i] as Extract<Op, { kind: 'compute' }>;
    const cloud = s.cloud;
    if (!cloud) throw new SimulationError('cloud operation in a plan without a cloud peer');
    const submit = () => {
      // A failed device or peer stalls the pass; the failure notification recovers the session.
      if (s.gen !== gen || !this.healthy(s)) return;
      const ms = op.ms * (1 + this.sc.computeJitter * (2 * this.rng.next() - 1));
      this.cloudSubmit(cloud, { ms, epoch: cloud.epoch, done: () => { if (s.gen === gen && this.healthy(s)) this.runOps(s, gen, ops, i + 1, 0, isDecode, done); } });
    };
    if (acc > 0) this.sim.after(acc, submit); else submit();
  }

  private cloudSubmit(c: SimCloud, job: CloudJob): void {
    this.stats.cloudJobs++;
    if (c.busy < c.slots) { this.cloudStart(c, job); return; }
    c.queue.push(job);
    const queued = c.queue.length - c.qHead;
    if (queued > this.stats.cloudQueuedMax) this.stats.cloudQueuedMax = queued;
  }

  private cloudStart(c: SimCloud, job: CloudJob): void {
    c.busy++;
    this.sim.after(job.ms, () => {
      if (job.epoch !== c.epoch) return; // the peer failed meanwhile
      c.busy--;
      c.servedJobs++;
      if (c.qHead < c.queue.length) {
        const next = c.queue[c.qHead++];
        if (c.qHead > 1024 && c.qHead * 2 > c.queue.length) { c.queue = c.queue.slice(c.qHead); c.qHead = 0; }
        this.cloudStart(c, next);
      }
      job.done();
    });
  }

  /** Owners' device counts (for reports). */
  ownerSizes(): number[] { return this.owners.map((o) => o.devices.size); }
}
