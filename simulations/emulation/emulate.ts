/**
 * Emulated runs: real daemons as separate processes (`hush device start`, `hush cloud start`), the
 * coordinator's traffic to the cloud peer through a user-space link shaper (RTT, jitter, bandwidth),
 * optionally a second paired device behind a shaped LAN link. Generations run in scx and split mode
 * through the coordinator's control API; the measured TTFT and per-token latency are set against the
 * cost model's prediction (runtime/scheduler predictPlan) for the plan the daemon reports.
 *
 * Every cost-model input is measured or configured, none is fitted to the generation timings:
 * - link RTT, jitter, bandwidth: the shaper's settings;
 * - perMessageMs: half of (libp2p ping RTT through the shaped link, measured by the daemon itself via
 *   its cloud test, minus the configured RTT): the transport's own cost per message, load included;
 * - compute, two ways: each daemon's device-profile.json as written at start (one layer timed back to
 *   back), and the same benchmark with one RTT of idle before each timed run (calibrate.ts), which is
 *   how a pipeline runs: every step follows a network wait, and on a CPU that makes it 2-4x slower.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { multiaddr } from '@multiformats/multiaddr';
import { spawnDaemon, type RunningDaemon } from '../../peers/daemon/spawn.ts';
import { decodeInvite, encodeInvite } from '../../runtime/net/index.ts';
import {
  deviceProfileFromMeasured, predictPlan, PROFILE_FILE,
  type ClusterState, type DeviceProfile, type LinkProfile, type Measured, type Plan, type Prediction,
} from '../../runtime/scheduler/index.ts';
import { formatTable, median, type BenchRow } from '../../runtime/bench/report.ts';
import { manifestFor } from '../presets.ts';
import { startShaper, type LinkShaper, type LinkShape, type TraceEntry } from './shaper.ts';
import { measureAfterIdle, type IdleGapMeasurement } from './calibrate.ts';
import { loadModel } from '../../runtime/model/index.ts';
import { mergeStages } from '../../runtime/scx/plan-exec.ts';

export class EmulationError extends Error {
  override name = 'EmulationError';
}

export type EmulatedMode = 'scx' | 'split';

/** One link setting: RTT, optional jitter and bandwidth (Mbit/s, both directions unless downMbit). */
export interface LinkSetting {
  rttMs: number;
  jitterMs?: number;
  /** Mbit/s from the coordinator's side (up); absent or 0: unlimited. */
  bandwidthMbit?: number;
  /** Mbit/s towards the coordinator (default: bandwidthMbit). */
  downMbit?: number;
}

/** Bandwidth an unlimited loopback hop is given in the cost model (bytes/s): far above any message rate here. */
const UNLIMITED_BYTES_PER_SEC = 10e9;

/** Shaper settings for a link setting. */
export function shapeOf(s: LinkSetting): LinkShape {
  return {
    rttMs: s.rttMs, jitterMs: s.jitterMs ?? 0,
    upBitsPerSec: (s.bandwidthMbit ?? 0) * 1e6,
    downBitsPerSec: (s.downMbit ?? s.bandwidthMbit ?? 0) * 1e6,
  };
}

export const DEFAULT_PROMPT = 'The LORD said to Moses, "Stretch out your hand over the sea, and the waters shall return upon the Egyptians';

export interface GenerationMeasurement {
  mode: string;
  ids: number[];
  promptTokens: number;
  completionTokens: number;
  /** The daemon's own timings (request in to first token; mean per generated token after the first). */
  ttftMs: number;
  perTokenMs: number;
  /** Median gap between token events as they reached this client (robust to a few stalls). */
  perTokenP50Ms: number;
  /** Bytes the cloud link's shaper carried during the run (proves the traffic took the shaped path). */
  cloudLinkBytes: number;
  deviceLinkBytes: number;
  /** Request/reply turns on the cloud link between the request and the first token (see countTurns). */
  ttftTurns: number;
}

/**
 * A running emulated setup: a coordinator (laptop) daemon, a cloud daemon behind a shaper, and
 * optionally a second device (desktop) whose connection to the coordinator goes through another.
 */
export class EmulatedCluster {
  private constructor(
    readonly root: string,
    private readonly ownRoot: boolean,
    readonly laptop: RunningDaemon,
    readonly cloud: RunningDaemon,
    readonly desktop: RunningDaemon | undefined,
    readonly cloudShaper: LinkShaper,
    readonly deviceShaper: LinkShaper | undefined,
    readonly cloudId: string,
  ) {}

  /**
   * Start the daemons one at a time (each measures its device profile at start: measuring while
   * another daemon loads its model would time the contention, not the device), the shapers, pair and
   * add the cloud peer by the shaper's address.
   */
  static async start(o: { cloudLink: LinkSetting; deviceLink?: LinkSetting | null; coordinatorMaxShare?: number; root?: string; timeoutMs?: number; log?: (line: string) => void }): Promise<EmulatedCluster> {
    const root = o.root ?? mkdtempSync(join(tmpdir(), 'hush-emulate-'));
    const log = o.log ?? (() => undefined);
    const timeoutMs = o.timeoutMs ?? 120_000;
    const started: RunningDaemon[] = [];
    const shapers: LinkShaper[] = [];
    try {
      log('starting the coordinator daemon (laptop)');
      const cap = o.coordinatorMaxShare === undefined ? [] : ['--max-share', String(o.coordinatorMaxShare)];
      const laptop = await spawnDaemon('device', join(root, 'laptop'), ['--name', 'laptop', ...cap], { timeoutMs });
      started.push(laptop);
      let desktop: RunningDaemon | undefined;
      if (o.deviceLink) {
        log('starting the second device daemon (desktop)');
        desktop = await spawnDaemon('device', join(root, 'desktop'), ['--name', 'desktop'], { timeoutMs });
        started.push(desktop);
      }
      log('starting the cloud daemon');
      const cloud = await spawnDaemon('cloud', join(root, 'cloud'), [], { timeoutMs });
      started.push(cloud);

      const cloudShaper = await startShaper({ target: { port: tcpPort(cloud.info.addresses) }, link: shapeOf(o.cloudLink), seed: 1, traceLimit: 20_000 });
      shapers.push(cloudShaper);
      const cloudAddr = cloudShaper.multiaddr(cloud.info.peerId);
      const added = await laptop.client!.call<{ id: string }>('POST', '/api/v1/clouds', { multiaddr: cloudAddr, name: 'emulated' });

      let deviceShaper: LinkShaper | undefined;
      if (desktop && o.deviceLink) {
        // The desktop joins through a shaper in front of the laptop: the invite's addresses are replaced
        // by the shaper's (the code's checksum is recomputed; the PeerId and secret are the laptop's), so
        // the one connection between the two, which the laptop reuses for stage requests, is shaped.
        deviceShaper = await startShaper({ target: { port: tcpPort(laptop.info.addresses) }, link: shapeOf(o.deviceLink), seed: 2 });
        shapers.push(deviceShaper);
        const inv = await laptop.client!.call<{ code: string }>('POST', '/api/v1/invites');
        const contents = decodeInvite(inv.code);
        const code = encodeInvite({ ...contents, multiaddrs: [multiaddr(deviceShaper.multiaddr())] });
        await desktop.client!.call('POST', '/api/v1/invites/join', { code });
        await waitFor(async () => {
          const d = await laptop.client!.call<{ devices: { peerId: string; online: boolean; rttMs?: number }[] }>('GET', '/api/v1/devices');
          return d.devices.some((x) => x.peerId === desktop!.info.peerId && x.online && x.rttMs !== undefined);
        }, 20_000, 'the desktop did not come online on the laptop');
      }
      return new EmulatedCluster(root, !o.root, laptop, cloud, desktop, cloudShaper, deviceShaper, added.id);
    } catch (e) {
      await Promise.all(shapers.map((s) => s.close()));
      await Promise.all(started.map((d) => d.stop()));
      if (!o.root) rmSync(root, { recursive: true, force: true });
      throw e;
    }
  }

  setCloudLink(s: LinkSetting): void { this.cloudShaper.setLink(shapeOf(s)); }
  setDeviceLink(s: LinkSetting): void { this.deviceShaper?.setLink(shapeOf(s)); }

  /**
   * libp2p ping round trips laptop -> cloud through the shaper, as the daemon's cloud test measures
   * them. A test that fails is retried twice (a busy shared host can stall one dial past its 5 s
   * limit); the error names the shaper's state when it keeps failing.
   */
  async pingCloud(n = 7): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0, failures = 0; i < n;) {
      const r = await this.laptop.client!.call<{ reachable: boolean; rttMs: number | null; error?: string }>('POST', `/api/v1/clouds/${this.cloudId}/test`);
      if (r.reachable && r.rttMs != null) { out.push(r.rttMs); i++; continue; }
      if (++failures > 2) throw new EmulationError(`the cloud peer is unreachable through the shaper: ${r.error} (shaper: ${JSON.stringify(this.cloudShaper.stats())})`);
      await new Promise((res) => setTimeout(res, 1000));
    }
    return out;
  }

  /** The laptop's directory's ping RTT to the desktop (refreshed by the daemon every 5 s). */
  async deviceRttMs(): Promise<number | undefined> {
    if (!this.desktop) return undefined;
    const d = await this.laptop.client!.call<{ devices: { peerId: string; rttMs?: number }[] }>('GET', '/api/v1/devices');
    return d.devices.find((x) => x.peerId === this.desktop!.info.peerId)?.rttMs;
  }

  /**
   * The plan the coordinator reports for a mode (GET /api/v1/plan: `details` is the Plan, or holds it
   * as `plan` when the scheduler made it) and the daemon's own predicted per-token latency, if any.
   */
  async plan(mode: EmulatedMode): Promise<{ plan: Plan; daemonPerTokenMs: number | null }> {
    const v = await this.laptop.client!.call<{ details?: unknown; predicted?: { perTokenMs?: number } }>('GET', `/api/v1/plan?mode=${mode}`);
    const d = v.details as { stages?: unknown; plan?: Plan } | undefined;
    const plan = d && 'stages' in d && Array.isArray(d.stages) ? d as Plan : d?.plan;
    if (!plan || !Array.isArray(plan.stages)) throw new EmulationError(`GET /api/v1/plan?mode=${mode} returned no plan in details`);
    const p = v.predicted?.perTokenMs;
    return { plan, daemonPerTokenMs: typeof p === 'number' && p > 0 ? p : null };
  }

  /** Device profiles from the daemons' start-up measurements (device-profile.json in each home), keyed by PeerId. */
  profiles(): { devices: DeviceProfile[]; cloud: DeviceProfile; measured: Record<string, Measured>; cloudMeasured: boolean } {
    const read = (d: RunningDaemon): Measured | null => {
      try {
        return (JSON.parse(readFileSync(join(d.home, PROFILE_FILE), 'utf8')) as { measured: Measured }).measured;
      } catch {
        return null;
      }
    };
    const lm = read(this.laptop);
    if (!lm) throw new EmulationError(`the coordinator daemon wrote no ${PROFILE_FILE}`);
    const measured: Record<string, Measured> = { [this.laptop.info.peerId]: lm };
    if (this.desktop) {
      const dm = read(this.desktop);
      if (!dm) throw new EmulationError(`the desktop daemon wrote no ${PROFILE_FILE}`);
      measured[this.desktop.info.peerId] = dm;
    }
    const devices = Object.entries(measured).map(([id, m]) => deviceProfileFromMeasured(id, m, { name: id === this.laptop.info.peerId ? 'laptop' : 'desktop' }));
    // A cloud daemon that measured itself wrote a profile; otherwise it runs on this host with the
    // coordinator's engine, so the coordinator's measurement stands for it.
    const cm = read(this.cloud);
    if (cm) measured[this.cloud.info.peerId] = cm;
    const cloud = deviceProfileFromMeasured(this.cloud.info.peerId, cm ?? lm, { name: 'cloud' });
    return { devices, cloud, measured, cloudMeasured: !!cm };
  }

  /** One generation through the coordinator's API, greedy. */
  async generate(mode: EmulatedMode, maxTokens: number, prompt = DEFAULT_PROMPT): Promise<GenerationMeasurement> {
    const c0 = this.cloudShaper.stats(), d0 = this.deviceShaper?.stats();
    this.cloudShaper.clearTrace();
    const t0 = performance.now();
    let tFirst = Infinity, lastToken = 0;
    const ids: number[] = [], gaps: number[] = [];
    let promptTokens = 0, usedMode = '';
    let timings: Record<string, number> | undefined;
    let usage: { completionTokens?: number } = {};
    for await (const e of this.laptop.client!.generate({ prompt, mode, maxTokens, temperature: 0 }, AbortSignal.timeout(120_000))) {
      if (e.type === 'start') { promptTokens = e.promptTokens as number; usedMode = e.mode as string; }
      if (e.type === 'token') {
        const now = performance.now();
        if (!ids.length) tFirst = now; else gaps.push(now - lastToken);
        lastToken = now;
        ids.push(...(e.ids as number[] ?? []));
      }
      if (e.type === 'error') throw new EmulationError(`generation failed: ${JSON.stringify(e.error)}`);
      if (e.type === 'done') { timings = e.timings as Record<string, number>; usage = e.usage as { completionTokens?: number }; }
    }
    if (!timings) throw new EmulationError('the generation stream ended without a done event');
    if (usedMode !== mode) throw new EmulationError(`asked for mode ${mode}, the daemon ran ${usedMode}`);
    const c1 = this.cloudShaper.stats(), d1 = this.deviceShaper?.stats();
    return {
      mode: usedMode, ids, promptTokens, completionTokens: usage.completionTokens ?? ids.length,
      ttftMs: timings.ttftMs, perTokenMs: timings.decodeMsPerToken, perTokenP50Ms: gaps.length ? median(gaps) : timings.decodeMsPerToken,
      cloudLinkBytes: c1.bytesUp + c1.bytesDown - c0.bytesUp - c0.bytesDown,
      deviceLinkBytes: d0 && d1 ? d1.bytesUp + d1.bytesDown - d0.bytesUp - d0.bytesDown : 0,
      ttftTurns: countTurns(this.cloudShaper.trace(), t0, tFirst),
    };
  }

  async stop(): Promise<void> {
    await this.cloudShaper.close();
    await this.deviceShaper?.close();
    await Promise.all([this.laptop, this.cloud, this.desktop].filter((d): d is RunningDaemon => !!d).map((d) => d.stop()));
    if (this.ownRoot) rmSync(this.root, { recursive: true, force: true });
  }
}

function tcpPort(addresses: string[]): number {
  for (const a of addresses) {
    const m = /^\/ip4\/127\.0\.0\.1\/tcp\/(\d+)/.exec(a);
    if (m) return Number(m[1]);
  }
  throw new EmulationError(`no /ip4/127.0.0.1/tcp address among ${addresses.join(', ')}`);
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new EmulationError(`${what} within ${timeoutMs} ms`);
}

/** What the cost model is given for one emulated setting. */
export interface PredictionInputs {
  state: ClusterState;
  /** Measured transport cost per message on the cloud link and the device link (ms). */
  cloudPerMessageMs: number;
  devicePerMessageMs: number;
}

/**
 * The cluster state the cost model sees: measured device profiles, links from the shaper settings
 * with the measured per-message cost.
 */
export function predictionState(o: {
  coordinator: string; devices: DeviceProfile[]; cloud: DeviceProfile;
  cloudLink: LinkSetting; cloudPerMessageMs: number;
  deviceLink?: LinkSetting | null; devicePerMessageMs?: number;
}): ClusterState {
  const bw = (mbit: number | undefined) => (mbit ? (mbit * 1e6) / 8 : UNLIMITED_BYTES_PER_SEC);
  const link = (a: string, b: string, s: LinkSetting, perMessageMs: number): LinkProfile => ({
    a, b, rttMs: s.rttMs, jitterMs: s.jitterMs ?? 0, perMessageMs,
    bandwidthBytesPerSec: bw(s.bandwidthMbit), reverseBandwidthBytesPerSec: bw(s.downMbit ?? s.bandwidthMbit),
  });
  const links: LinkProfile[] = [link(o.coordinator, o.cloud.id, o.cloudLink, o.cloudPerMessageMs)];
  for (const d of o.devices) {
    if (d.id === o.coordinator) continue;
    links.push(link(o.coordinator, d.id, o.deviceLink ?? { rttMs: 0 }, o.devicePerMessageMs ?? 0));
  }
  return { coordinator: o.coordinator, devices: o.devices, cloudPeers: [o.cloud], links };
}

export interface EmulationRow {
  mode: EmulatedMode;
  rtt_ms: number;
  mbit: number | null;
  /** Which device ran which part: trusted stages by device name, the cloud layers. */
  plan: string;
  tokens: number;
  /** Mean libp2p ping through the shaped link (the daemon's cloud test) and the per-message cost from it. */
  ping_ms: number;
  per_msg_ms: number;
  /** Measured per-token latency: median gap between tokens (median over the runs). */
  per_token_ms: number;
  /** The coordinator's own mean per generated token (its done event), median over the runs. */
  per_token_mean_ms: number;
  /** The cost model with device profiles measured in the pipeline's regime (one RTT idle before each run). */
  pred_ms: number;
  err: number;
  err_mean: number;
  /** The cost model with the daemons' start-up profiles (one layer timed back to back). */
  pred_startup_profiles_ms: number;
  err_startup_profiles: number;
  /** pred_ms with the launch overhead charged once per onnxruntime run instead of once per layer. */
  pred_overhead_per_run_ms: number;
  err_overhead_per_run: number;
  /** The coordinator's own scheduler prediction for its plan (GET /api/v1/plan), when it makes one. */
  pred_scheduler_ms: number | null;
  ttft_ms: number;
  /** Predicted TTFT + key sharing (the coordinator awaits it before the first token). */
  pred_ttft_ms: number;
  err_ttft: number;
  /** Request/reply turns on the cloud link before the first token, and those the cost model counts. */
  ttft_turns: number;
  model_turns: number;
  /** pred_ttft_ms plus one round trip (RTT + 2 per-message costs) per turn the model does not count. */
  pred_ttft_all_turns_ms: number;
  err_ttft_all_turns: number;
}

export interface EmulationReport {
  rows: EmulationRow[];
  /** Device profiles used: per device, the daemon's and the idle-gap measurement (ms per layer). */
  profiles: { device: string; source: string; gap_ms: number; decode_ms_per_layer: number; prefill_ms_per_layer: number; overhead_ms: number; six_layer_decode_ms: number | null }[];
  plans: Record<string, Plan>;
  predictions: Record<string, Prediction>;
  notes: string[];
}

export interface EmulateOptions {
  /** Cloud link settings to run (the daemons are started once; the shaper is reconfigured). */
  settings: LinkSetting[];
  modes?: EmulatedMode[];
  /** A second paired device behind a shaped link (the coordinator's scheduler decides whether to use it). */
  deviceLink?: LinkSetting | null;
  /** Most of the layers the coordinator may hold (its --max-share): below 1, stages move to the second device. */
  coordinatorMaxShare?: number;
  tokens?: number;
  /** Measured generations per (setting, mode); the median is reported. */
  reps?: number;
  prompt?: string;
  root?: string;
  log?: (line: string) => void;
}

export const relErr = (measured: number, predicted: number) => (measured - predicted) / predicted;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * One RTT from several libp2p pings. Ping reports whole milliseconds, so a median is off by up to
 * half a millisecond where the mean is not; a ping stalled by another process (several times the
 * median) is not the link's and is left out of the mean.
 */
export function pingEstimate(pings: number[]): number {
  if (!pings.length) throw new EmulationError('no ping samples');
  const m = median(pings);
  return mean(pings.filter((p) => p <= 1.5 * m + 1));
}

/** Request/reply turns in a trace: how often a chunk towards the coordinator follows one away from it. */
export function countTurns(trace: readonly TraceEntry[], from: number, to: number): number {
  let turns = 0, last: 'up' | 'down' | null = null;
  for (const e of trace) {
    if (e.t < from || e.t > to) continue;
    if (e.dir === 'down' && last === 'up') turns++;
    last = e.dir;
  }
  return turns;
}

/**
 * What the cost model charges beyond what runs, per decode step, when it counts the launch overhead
 * per layer: consecutive units of one device run as one onnxruntime session (plan-exec mergeStages),
 * and the cloud runs its layers [h, L-t) as one session per decode step.
 */
export function perUnitOverheadExcessMs(plan: Plan, profiles: DeviceProfile[]): number {
  const ov = (id: string) => profiles.find((p) => p.id === id)?.layerOverheadMs ?? 0;
  const L = plan.numLayers;
  let excess = 0;
  const cloudAt = plan.stages.findIndex((s) => s.role === 'cloud');
  const groups = cloudAt < 0 ? [plan.stages] : [plan.stages.slice(0, cloudAt), plan.stages.slice(cloudAt + 1)];
  for (const g of groups) {
    for (const part of mergeStages(g, L)) {
      const units = (part.spec.embed ? 1 : 0) + (part.spec.end - part.spec.start) + (part.spec.head ? 1 : 0);
      excess += Math.max(0, units - 1) * ov(part.deviceId);
    }
  }
  if (cloudAt >= 0) {
    const c = plan.stages[cloudAt];
    excess += Math.max(0, c.layers[1] - c.layers[0] - 1) * ov(c.deviceId);
  }
  return excess;
}

/** "embed+L0 laptop | L1-6 cloud | L7+head laptop": each device's consecutive units, in pipeline order. */
export function describePlan(plan: Plan, nameOf: (id: string) => string): string {
  const parts: { dev: string; units: string[] }[] = [];
  for (const st of plan.stages) {
    const units = st.role === 'embed' ? ['embed'] : st.role === 'head' ? ['head'] : [st.layers[1] - st.layers[0] === 1 ? `L${st.layers[0]}` : `L${st.layers[0]}-${st.layers[1] - 1}`];
    const last = parts[parts.length - 1];
    if (last && last.dev === st.deviceId && st.role !== 'cloud') last.units.push(...units);
    else parts.push({ dev: st.deviceId, units });
  }
  return parts.map((p) => `${p.units.join('+')} ${nameOf(p.dev)}`).join(' | ');
}

/** Run the emulation for every setting and mode; compare each with the cost model's prediction. */
export async function emulate(o: EmulateOptions): Promise<EmulationReport> {
  if (!o.settings.length) throw new EmulationError('no link settings to emulate');
  const modes = o.modes ?? ['scx', 'split'];
  const tokens = o.tokens ?? 32, reps = o.reps ?? 2;
  const log = o.log ?? (() => undefined);
  const model = loadModel(undefined, { tokenizer: false });
  const cluster = await EmulatedCluster.start({ cloudLink: o.settings[0], deviceLink: o.deviceLink, coordinatorMaxShare: o.coordinatorMaxShare, root: o.root, log });
  const rows: EmulationRow[] = [];
  const plans: Record<string, Plan> = {};
  const predictions: Record<string, Prediction> = {};
  const profileRows: EmulationReport['profiles'] = [];
  try {
    const prof = cluster.profiles();
    const coordinator = cluster.laptop.info.peerId;
    const nameOf = (id: string) => (id === coordinator ? 'laptop' : id === prof.cloud.id ? 'cloud' : id === cluster.desktop?.info.peerId ? 'desktop' : id.slice(-6));
    for (const [id, m] of Object.entries(prof.measured)) {
      profileRows.push({ device: nameOf(id), source: `${nameOf(id)} daemon's start-up benchmark`, gap_ms: 0, decode_ms_per_layer: m.decodeMsPerLayer, prefill_ms_per_layer: m.prefillMsPerLayer, overhead_ms: m.overheadMsPerLayer ?? 0, six_layer_decode_ms: null });
    }
    // Warm-up: the cloud builds its onnxruntime session for the cloud layers on the first session.
    for (const mode of modes) await cluster.generate(mode, 4, o.prompt);
    for (const setting of o.settings) {
      cluster.setCloudLink(setting);
      const gap = Math.round(setting.rttMs);
      for (const mode of modes) {
        const { plan, daemonPerTokenMs } = await cluster.plan(mode);
        const manifest = manifestFor(plan.model);
        const key = `${mode}@${setting.rttMs}ms${setting.bandwidthMbit ? `/${setting.bandwidthMbit}Mbit` : ''}`;
        // Each run's inputs are measured just before it, so a change of load on a shared host moves
        // the measurement and the prediction together.
        const runs: { m: GenerationMeasurement; ping: number; perMsg: number; idle: IdleGapMeasurement; pred: Prediction; predStartup: Prediction; perRun: number }[] = [];
        for (let r = 0; r < reps; r++) {
          const ping = pingEstimate(await cluster.pingCloud(8));
          const cloudPerMessageMs = Math.max(0, (ping - setting.rttMs) / 2);
          const devRtt = await cluster.deviceRttMs();
          const devicePerMessageMs = o.deviceLink && devRtt !== undefined ? Math.max(0, (devRtt - o.deviceLink.rttMs) / 2) : 0;
          const idle = await measureAfterIdle(model, gap, { reps: 7 });
          const m = await cluster.generate(mode, tokens, o.prompt);
          const request = { mode, promptTokens: m.promptTokens, maxNewTokens: Math.max(1, m.completionTokens), h: plan.h, t: plan.t, scx: { noise: 'off' as const } };
          const links = { coordinator, cloudLink: setting, cloudPerMessageMs, deviceLink: o.deviceLink, devicePerMessageMs };
          // Every daemon runs on this host with the same engine: the idle-gap measurement stands for each.
          const idleDevices = prof.devices.map((d) => deviceProfileFromMeasured(d.id, idle, { name: d.name, memoryBytes: d.memoryBytes }));
          const idleCloud = deviceProfileFromMeasured(prof.cloud.id, idle, { name: 'cloud', memoryBytes: prof.cloud.memoryBytes });
          const pred = predictPlan(plan, predictionState({ ...links, devices: idleDevices, cloud: idleCloud }), manifest, request);
          const predStartup = predictPlan(plan, predictionState({ ...links, devices: prof.devices, cloud: prof.cloud }), manifest, request);
          runs.push({ m, ping, perMsg: cloudPerMessageMs, idle, pred, predStartup, perRun: pred.perTokenMs - perUnitOverheadExcessMs(plan, [...idleDevices, idleCloud]) });
          profileRows.push({ device: 'this host (every daemon)', source: `idle-gap benchmark before ${key} run ${r + 1}`, gap_ms: gap, decode_ms_per_layer: idle.decodeMsPerLayer, prefill_ms_per_layer: idle.prefillMsPerLayer, overhead_ms: idle.overheadMsPerLayer ?? 0, six_layer_decode_ms: idle.sixLayerDecodeMs });
        }
        const med = (f: (x: typeof runs[number]) => number) => median(runs.map(f));
        const perToken = med((x) => x.m.perTokenP50Ms), perTokenMean = med((x) => x.m.perTokenMs), ttft = med((x) => x.m.ttftMs);
        const pred = med((x) => x.pred.perTokenMs), predStartup = med((x) => x.predStartup.perTokenMs), perRun = med((x) => x.perRun);
        const ttftPred = med((x) => x.pred.ttftMs + x.pred.keyShareMs);
        const last = runs[runs.length - 1];
        plans[key] = plan; predictions[key] = last.pred;
        const cloudStage = last.pred.stages.find((s) => s.role === 'cloud');
        const turns = med((x) => x.m.ttftTurns);
        const modelTurns = (cloudStage?.cloud?.prefillRoundTrips ?? 0) + (mode === 'scx' ? 1 : 0);
        const perMsg = med((x) => x.perMsg);
        const ttftAllTurns = ttftPred + Math.max(0, turns - modelTurns) * (setting.rttMs + 2 * perMsg);
        rows.push({
          mode, rtt_ms: setting.rttMs, mbit: setting.bandwidthMbit ?? null, plan: describePlan(plan, nameOf), tokens: last.m.completionTokens,
          ping_ms: med((x) => x.ping), per_msg_ms: perMsg, per_token_ms: perToken, per_token_mean_ms: perTokenMean,
          pred_ms: pred, err: relErr(perToken, pred), err_mean: relErr(perTokenMean, pred),
          pred_startup_profiles_ms: predStartup, err_startup_profiles: relErr(perToken, predStartup),
          pred_overhead_per_run_ms: perRun, err_overhead_per_run: relErr(perToken, perRun),
          pred_scheduler_ms: daemonPerTokenMs,
          ttft_ms: ttft, pred_ttft_ms: ttftPred, err_ttft: relErr(ttft, ttftPred),
          ttft_turns: turns, model_turns: modelTurns, pred_ttft_all_turns_ms: ttftAllTurns, err_ttft_all_turns: relErr(ttft, ttftAllTurns),
        });
        log(`${key}: per token measured ${perToken.toFixed(2)} ms (mean ${perTokenMean.toFixed(2)}), predicted ${pred.toFixed(2)} ms (${predStartup.toFixed(2)} with start-up profiles); TTFT ${ttft.toFixed(1)} vs ${ttftPred.toFixed(1)} ms`);
      }
    }
    const notes = [
      'per_token_ms: median gap between streamed tokens; per_token_mean_ms and ttft_ms: the coordinator daemon\'s own timings (its done event); each the median over the runs. Predictions: runtime/scheduler predictPlan for the plan GET /api/v1/plan reported, inputs measured just before each run; err = (measured - predicted) / predicted',
      'links: RTT, jitter and bandwidth as the shaper was set; per_msg_ms = (mean of 8 libp2p pings through the shaper, measured by the daemon via POST /api/v1/clouds/:id/test, - RTT) / 2',
      'pred_ms: device profiles from the daemons\' benchmark method with one RTT of idle before each timed run (simulations/emulation/calibrate.ts), since every decode step in a pipeline follows a network wait, and the launch overhead timed as a near-empty run',
      `pred_startup_profiles_ms: each daemon's device-profile.json as written at start (one layer timed back to back, caches hot)${prof.cloudMeasured ? '' : '; the cloud daemon wrote none and runs on this host, so it gets the coordinator\'s'}`,
      'pred_overhead_per_run_ms: the cost model charges layerOverheadMs per unit (embedding, layer, head), but consecutive units of a device run as one onnxruntime session and the cloud runs its layers as one session per token',
      'pred_scheduler_ms: the coordinator\'s own scheduler prediction for the plan (its ping RTTs, probe bandwidths, a fixed per-message cost, start-up profiles, its default request shape)',
      'ttft_turns: request/reply turns on the cloud link before the first token (shaper trace); model_turns: 3 per cloud layer (scx) or 1 (split), plus key sharing. The model leaves out the cloud session open, the stream\'s protocol negotiation and the planner\'s probes of the cloud peer',
    ];
    return { rows, profiles: profileRows, plans, predictions, notes };
  } finally {
    await cluster.stop();
  }
}

/** The report as tables (markdown) with its notes. */
export function formatEmulation(r: EmulationReport): string {
  return [
    formatTable(r.rows as unknown as BenchRow[]), '',
    formatTable(r.profiles as unknown as BenchRow[]), '',
    ...r.notes.map((n) => `- ${n}`),
  ].join('\n');
}
