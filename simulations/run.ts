/**
 * runScenario: run a scenario once per planner (same seed, same world) and collect a report:
 * predicted times of each planner's plan with true measurements, simulated times, sweeps of per-token
 * latency against device count and cloud RTT, a timeline of each plan's operations, and the comparison
 * of Hush with the memory-proportional and best-single-device baselines.
 * Everything in a report comes from virtual time and the seed: the same input gives the same report.
 */
import type { ModelManifest } from '../runtime/model/index.ts';
import {
  CostModel, InfeasiblePlanError, type ClusterState, type PlanRequest, type PlanResult, type PlanStage,
} from '../runtime/scheduler/index.ts';
import { plannerByName, type PlannerName } from './baselines.ts';
import { accessPreset, lanLink, manifestFor, profileFromPreset, wanLink } from './presets.ts';
import { Prng } from './prng.ts';
import { loadScenario, parseScenario, ScenarioError, type Scenario, type ScenarioInput } from './scenario.ts';
import { buildPopulation, World, type CloudSpec, type OwnerSpec, type RequestRecord } from './world.ts';

export interface Stats { n: number; mean: number; p50: number; p95: number; min: number; max: number }

export function stats(xs: number[]): Stats {
  if (!xs.length) return { n: 0, mean: 0, p50: 0, p95: 0, min: 0, max: 0 };
  const s = [...xs].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
  return { n: s.length, mean: s.reduce((a, b) => a + b, 0) / s.length, p50: q(0.5), p95: q(0.95), min: s[0], max: s[s.length - 1] };
}

export interface PlanSummary {
  mode: string; h: number; t: number; cloudPeer: string | null; stages: PlanStage[];
  ttftMs: number; perTokenMs: number; totalMs: number; objective: number; summary: string[];
}

export interface TimelineBar { lane: string; startMs: number; durMs: number; kind: 'compute' | 'cloud' | 'send'; label: string }
export interface Timeline { planner: PlannerName; prefill: TimelineBar[]; decode: TimelineBar[] }

export interface PlannerReport {
  planner: PlannerName;
  /** Plan from the true (noise-free) initial state and its predicted times; null when infeasible. */
  plan: PlanSummary | null;
  error?: string;
  simulated: {
    requests: number; aborted: number; recoveries: number; tokens: number;
    ttftMs: Stats; perTokenMs: Stats; stallMs: Stats;
    planCalls: number; planChanges: number; infeasible: number; replanReasons: Record<string, number>;
    events: number; virtualMs: number; cloudJobs: number; cloudQueuedMax: number; cloudPeersUsed: number; cloudSessionsMax: number;
  } | null;
  /** Population scenarios: mean per-token latency by the owner's device count and by WAN RTT bucket. */
  byDeviceCount?: { devices: number; requests: number; perTokenMs: number; ttftMs: number }[];
  byRtt?: { rttMs: number; requests: number; perTokenMs: number; ttftMs: number }[];
}

export interface SweepPoint { x: number; perTokenMs: Partial<Record<PlannerName, number | null>>; ttftMs: Partial<Record<PlannerName, number | null>> }

export interface ScenarioReport {
  scenario: string;
  description: string;
  seed: number;
  model: string;
  mode: string;
  heterogeneous: boolean;
  request: PlanRequest;
  owners: number;
  devices: number;
  cloudPeers: number;
  planners: PlannerReport[];
  comparison: {
    /** Hush over memory-proportional, per-token latency (simulated mean and predicted). */
    perTokenRatioVsMemoryProportional: { simulated: number | null; predicted: number | null };
    /** Hush's predicted objective is at most the best single device's. */
    hushNotSlowerThanBestSingle: boolean | null;
    perTokenRatioVsBestSingle: { simulated: number | null; predicted: number | null };
  };
  sweeps: { deviceCount?: SweepPoint[]; rttMs?: SweepPoint[] };
  timelines: Timeline[];
}

function truthState(sc: Scenario, owner: OwnerSpec, clouds: CloudSpec[], opts: { deviceIds?: string[]; cloudRttMs?: number } = {}): ClusterState {
  const devs = owner.devices.filter((d) => !d.offline && (!opts.deviceIds || opts.deviceIds.includes(d.id)));
  const profiles = devs.map((d) => profileFromPreset(d.id, d.preset, { memoryGiB: d.memoryGiB, optOut: d.optOut, maxShare: d.maxShare }));
  const cloudProfiles = sc.mode === 'local' ? [] : clouds.map((c) => profileFromPreset(c.id, c.preset, { loadedModels: c.loadedModels }));
  const links = [];
  for (let i = 0; i < devs.length; i++) {
    for (let j = i + 1; j < devs.length; j++) links.push(lanLink(devs[i].id, accessPreset(devs[i].access), devs[j].id, accessPreset(devs[j].access)));
    for (const c of sc.mode === 'local' ? [] : clouds) {
      const rtt = opts.cloudRttMs ?? c.rttMs ?? owner.wan.rttMs + c.extraRttMs;
      links.push(wanLink(devs[i].id, accessPreset(devs[i].access), c.id, { ...owner.wan, rttMs: rtt }));
    }
  }
  return { coordinator: owner.coordinator, devices: profiles, cloudPeers: cloudProfiles, links };
}

/**
 * The true (noise-free) cluster state of a single-owner scenario at time 0, optionally with only some
 * devices or with every cloud peer at one RTT: what the sweeps plan against.
 */
export function scenarioTruthState(input: string | ScenarioInput, opts: { deviceIds?: string[]; cloudRttMs?: number } = {}): { state: ClusterState; manifest: ModelManifest; request: PlanRequest; deviceOrder: string[] } {
  const sc = typeof input === 'string' ? loadScenario(input) : parseScenario(input);
  if (!sc.owner) throw new ScenarioError('scenarioTruthState needs a single-owner scenario');
  const pop = buildPopulation(sc, new Prng(sc.seed).fork('population'));
  const owner = pop.owners[0];
  const online = owner.devices.filter((d) => !d.offline);
  const deviceOrder = [owner.coordinator, ...online.map((d) => d.id).filter((id) => id !== owner.coordinator)];
  return { state: truthState(sc, owner, pop.clouds, opts), manifest: manifestFor(sc.model), request: { mode: sc.mode, ...sc.request }, deviceOrder };
}

function tryPlan(name: PlannerName, state: ClusterState, manifest: ModelManifest, request: PlanRequest): PlanResult | string {
  try {
    return plannerByName(name).plan(state, manifest, request);
  } catch (e) {
    if (e instanceof InfeasiblePlanError) return e.message;
    throw e;
  }
}

function summarize(r: PlanResult): PlanSummary {
  const p = r.plan, q = r.predicted;
  return {
    mode: p.mode, h: p.h, t: p.t, cloudPeer: p.cloudPeer, stages: p.stages.map((s) => ({ ...s, layers: [s.layers[0], s.layers[1]] })),
    ttftMs: q.ttftMs, perTokenMs: q.perTokenMs, totalMs: q.totalMs, objective: q.objective, summary: r.why.summary,
  };
}

function timeline(planner: PlannerName, r: PlanResult, state: ClusterState, manifest: ModelManifest, request: PlanRequest): Timeline {
  const cm = new CostModel(state, manifest, request);
  const bars = (phase: 'prefill' | 'decode') => {
    let t = 0;
    return cm.ops(r.plan, phase).map((o): TimelineBar => {
      const b: TimelineBar = o.kind === 'compute'
        ? { lane: o.device, startMs: t, durMs: o.ms, kind: o.cloud ? 'cloud' : 'compute', label: o.layer != null ? `${o.what} L${o.layer}` : o.what }
        : { lane: 'network', startMs: t, durMs: o.ms, kind: 'send', label: `${o.from}→${o.to} ${o.what}${o.layer != null ? ` L${o.layer}` : ''} ${o.bytes} B` };
      t += o.ms;
      return b;
    });
  };
  return { planner, prefill: bars('prefill'), decode: bars('decode') };
}

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  return a != null && b != null && b > 0 && Number.isFinite(a) && Number.isFinite(b) ? a / b : null;
}

function bucketBy<K extends number>(records: RequestRecord[], key: (r: RequestRecord) => K) {
  const m = new Map<K, RequestRecord[]>();
  for (const r of records) { const k = key(r); (m.get(k) ?? m.set(k, []).get(k)!).push(r); }
  return [...m.entries()].sort((a, b) => a[0] - b[0]).map(([k, rs]) => ({
    k, requests: rs.length,
    perTokenMs: rs.reduce((s, r) => s + r.perTokenMs, 0) / rs.length,
    ttftMs: rs.reduce((s, r) => s + r.ttftMs, 0) / rs.length,
  }));
}

export interface RunOptions {
  /** Overrides the scenario's seed. */
  seed?: number;
  /** Overrides the scenario's planners. */
  planners?: PlannerName[];
  /** Skip the sweeps (faster; used by benchmarks). */
  sweeps?: boolean;
}

/** Run a scenario (a file path, or a scenario object) and return its report. */
export function runScenario(input: string | ScenarioInput, opts: RunOptions = {}): ScenarioReport {
  const sc = typeof input === 'string' ? loadScenario(input) : parseScenario(input);
  const seed = opts.seed ?? sc.seed;
  const manifest = manifestFor(sc.model);
  const request: PlanRequest = { mode: sc.mode, ...sc.request };
  const pop = buildPopulation(sc, new Prng(seed).fork('population'));
  const planners = opts.planners ?? sc.planners;
  const single = !!sc.owner;
  const state0 = single ? truthState(sc, pop.owners[0], pop.clouds) : null;

  const reports: PlannerReport[] = [];
  const timelines: Timeline[] = [];
  for (const name of planners) {
    const rep: PlannerReport = { planner: name, plan: null, simulated: null };
    if (state0) {
      const r = tryPlan(name, state0, manifest, request);
      if (typeof r === 'string') rep.error = r;
      else {
        rep.plan = summarize(r);
        timelines.push(timeline(name, r, state0, manifest, request));
      }
    }
    if (!rep.error) {
      const world = new World(sc, pop, manifest, plannerByName(name), seed);
      const st = world.run();
      rep.simulated = {
        requests: st.records.length, aborted: st.aborted, recoveries: st.recoveries,
        tokens: st.records.reduce((s, r) => s + r.tokens, 0),
        ttftMs: stats(st.records.map((r) => r.ttftMs)),
        perTokenMs: stats(st.records.filter((r) => r.tokens > 1).map((r) => r.perTokenMs)),
        stallMs: stats(st.records.filter((r) => r.stalls > 0).map((r) => r.stallMs)),
        planCalls: st.planCalls, planChanges: st.planChanges, infeasible: st.infeasible, replanReasons: st.replanReasons,
        events: st.events, virtualMs: st.virtualMs, cloudJobs: st.cloudJobs, cloudQueuedMax: st.cloudQueuedMax,
        cloudPeersUsed: st.cloudPeersUsed, cloudSessionsMax: st.cloudSessionsMax,
      };
      if (!single) {
        rep.byDeviceCount = bucketBy(st.records, (r) => r.ownerDevices).map(({ k, ...x }) => ({ devices: k, ...x }));
        rep.byRtt = bucketBy(st.records, (r) => Math.round(r.wanRttMs / 10) * 10).map(({ k, ...x }) => ({ rttMs: k, ...x }));
      }
    }
    reports.push(rep);
  }

  const sweeps: ScenarioReport['sweeps'] = {};
  if (single && opts.sweeps !== false) {
    const owner = pop.owners[0];
    const point = (x: number, state: ClusterState): SweepPoint => {
      const p: SweepPoint = { x, perTokenMs: {}, ttftMs: {} };
      for (const name of planners) {
        const r = tryPlan(name, state, manifest, request);
        p.perTokenMs[name] = typeof r === 'string' ? null : r.predicted.perTokenMs;
        p.ttftMs[name] = typeof r === 'string' ? null : r.predicted.ttftMs;
      }
      return p;
    };
    if (sc.sweeps.deviceCount) {
      const online = owner.devices.filter((d) => !d.offline);
      const order = [online.find((d) => d.id === owner.coordinator)!, ...online.filter((d) => d.id !== owner.coordinator)];
      sweeps.deviceCount = order.map((_, k) => point(k + 1, truthState(sc, owner, pop.clouds, { deviceIds: order.slice(0, k + 1).map((d) => d.id) })));
    }
    if (sc.sweeps.rttMs?.length && sc.mode !== 'local') {
      sweeps.rttMs = sc.sweeps.rttMs.map((rtt) => point(rtt, truthState(sc, owner, pop.clouds, { cloudRttMs: rtt })));
    }
  }

  const get = (n: PlannerName) => reports.find((r) => r.planner === n);
  const hush = get('hush'), mp = get('memory-proportional'), bs = get('best-single');
  return {
    scenario: sc.name, description: sc.description, seed, model: sc.model, mode: sc.mode, heterogeneous: sc.heterogeneous,
    request, owners: pop.owners.length, devices: pop.owners.reduce((s, o) => s + o.devices.length, 0), cloudPeers: pop.clouds.length,
    planners: reports,
    comparison: {
      perTokenRatioVsMemoryProportional: {
        simulated: ratio(hush?.simulated?.perTokenMs.mean, mp?.simulated?.perTokenMs.mean),
        predicted: ratio(hush?.plan?.perTokenMs, mp?.plan?.perTokenMs),
      },
      hushNotSlowerThanBestSingle: hush?.plan && bs ? (bs.plan ? hush.plan.objective <= bs.plan.objective * (1 + 1e-9) : true) : null,
      perTokenRatioVsBestSingle: {
        simulated: ratio(hush?.simulated?.perTokenMs.mean, bs?.simulated?.perTokenMs.mean),
        predicted: ratio(hush?.plan?.perTokenMs, bs?.plan?.perTokenMs),
      },
    },
    sweeps,
    timelines,
  };
}

export interface GateSummary {
  scenarios: { scenario: string; simulated: number | null; predicted: number | null }[];
  /** Geometric mean of the simulated per-token ratios (scenarios where both planners ran). */
  geomeanSimulated: number | null;
  geomeanPredicted: number | null;
  threshold: number;
  pass: boolean;
}

/** Hush over memory-proportional on the heterogeneous scenarios: geometric mean of per-token ratios. */
export function summarizeGate(reports: ScenarioReport[], threshold = 0.75): GateSummary {
  const rows = reports.filter((r) => r.heterogeneous).map((r) => ({ scenario: r.scenario, ...r.comparison.perTokenRatioVsMemoryProportional }));
  const gm = (xs: (number | null)[]) => {
    const v = xs.filter((x): x is number => x != null && x > 0);
    return v.length ? Math.exp(v.reduce((s, x) => s + Math.log(x), 0) / v.length) : null;
  };
  const geomeanSimulated = gm(rows.map((r) => r.simulated));
  return { scenarios: rows, geomeanSimulated, geomeanPredicted: gm(rows.map((r) => r.predicted)), threshold, pass: geomeanSimulated != null && geomeanSimulated <= threshold };
}
