import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { multiaddr as parseMultiaddr } from '@multiformats/multiaddr';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import type { Logger } from 'pino';
import type { LoadedModel } from '../../runtime/model/index.ts';
import { generateText } from '../../runtime/engine/text.ts';
import { LocalStageHost, type StageHost, type StageServer } from '../../runtime/engine/stage-service.ts';
import type { SubLayerOps } from '../../runtime/engine/sublayer-ops.ts';
import { ScxCoordinator, type ScxOptions } from '../../runtime/scx/coordinator.ts';
import { NoPlacementError, ResilientForwarder, type Attempt } from '../../runtime/scx/resilient.ts';
import { planToTrustedPath } from '../../runtime/scx/plan-exec.ts';
import { InfeasiblePlanError } from '../../runtime/scheduler/errors.ts';
import type { PlanResult } from '../../runtime/scheduler/types.ts';
import { clusterState, placementKey, planView, schedule, type Candidate } from './scheduler-bridge.ts';
import type { Plan } from '../../runtime/scheduler/types.ts';
import {
  fingerprint, InviteExpiredError, InviteInvalidError, InviteUsedError, PeerRefusedError,
  type CloudEntry, type CloudList, type HushNode, type Roster, type RosterEntry,
} from '../../runtime/net/index.ts';
import { BackupError, BackupTooLargeError, backupFileName, decryptBackup, encryptBackup } from '../../runtime/net/backup.ts';
import {
  BadRequestError, ConflictError, GoneError, NotFoundError, NotImplementedError, UnavailableError, type EventHub,
  type Cloud, type CloudTestResult, type Device, type DeviceController, type GenerateEvent, type GenerateRequest,
  type HushEvent, type Identity, type Invite, type JoinResult, type LastSession, type Mode, type ModelInfo, type PlanView, type PrivacyReport,
} from '../../runtime/api/index.ts';
import { remoteStageHost, cloudTransport } from './remote.ts';
import type { PeerDirectory, PeerProfile } from './peer-directory.ts';
import { PRIVACY_REPORT_FILE } from './privacy-file.ts';

export interface DeviceState {
  name: string;
  cloudTests: Map<string, CloudTestResult & { at: string }>;
}

export interface DeviceControllerInit {
  node: HushNode;
  roster: Roster;
  clouds: CloudList;
  model: LoadedModel;
  stages: StageServer;
  ops: SubLayerOps;
  events: EventHub<HushEvent>;
  state: DeviceState;
  log: Logger;
  directory: PeerDirectory;
  /** This device's own profile. */
  profile: PeerProfile;
  /** Head/tail layers kept on trusted devices in split/scx. */
  h: number;
  t: number;
  scx: ScxOptions;
  /** When no cloud peer is left, finish in local mode instead of failing. */
  allowLocalFallback?: boolean;
  startedAt: number;
  /** Overrides the scheduler (tests of plan execution). */
  planner?: (mode: Mode) => Promise<{ plan: Plan; view: PlanView; result: PlanResult }>;
  /** Changes the identity (the daemon restarts its node); absent: the key routes answer 501. */
  keys?: IdentityKeeper;
}

/** What a running node is made of; replaced as a whole when the identity changes. */
export interface NodeParts {
  node: HushNode;
  roster: Roster;
  clouds: CloudList;
  directory: PeerDirectory;
}

/** The daemon's side of identity changes (device-daemon.ts). */
export interface IdentityKeeper {
  /** The identity's private key, for backups. Never logged. */
  current(): PrivateKey;
  /**
   * Restart the node under `key` (same listen addresses, every protocol handler again), with `lists`
   * replacing the roster and cloud list when given, keep the key (file or app keychain), and hand the
   * new parts to the controller (useNode). Throws with the old identity still running if it fails.
   */
  replace(key: PrivateKey, lists?: { roster: RosterEntry[]; clouds: CloudEntry[] }): Promise<void>;
}

/** Backup errors keep their names (BackupPassphraseError, ...) and get an HTTP status. */
function backupHttpError(e: unknown): unknown {
  if (e instanceof BackupTooLargeError) return Object.assign(e, { statusCode: 409 });
  if (e instanceof BackupError) return Object.assign(e, { statusCode: 400 });
  return e;
}

const now = () => new Date().toISOString();

/** The device daemon's answers to the app, the CLI and the OpenAI endpoint. */
export class DaemonController implements DeviceController {
  private last: LastSession | null = null;
  private readonly local: StageHost;
  private readonly remoteHosts = new Map<string, StageHost>();

  constructor(private readonly d: DeviceControllerInit) {
    this.local = new LocalStageHost(d.stages);
  }

  /** This device's PeerId; changes when the identity is rotated or imported. */
  get self(): string {
    return this.d.node.peerId.toString();
  }

  private publish(type: HushEvent['type'], extra: Partial<HushEvent> = {}): void {
    this.d.events.publish({ type, at: now(), ...extra });
  }

  async identity(): Promise<Identity> {
    return { peerId: this.self, fingerprint: fingerprint(this.self), name: this.d.state.name, addresses: this.d.node.getMultiaddrs().map(String) };
  }

  async renameSelf(name: string): Promise<Identity> {
    this.d.state.name = name;
    this.publish('identity.renamed', { peerId: this.self, message: name });
    return this.identity();
  }

  isOnline(peerId: string): boolean {
    return this.d.node.libp2p.getConnections().some((c) => c.remotePeer.toString() === peerId && c.status === 'open');
  }

  private deviceView(e: RosterEntry): Device {
    const link = this.d.directory.get(e.peerId);
    const online = !e.revoked && this.isOnline(e.peerId);
    const conn = this.d.node.libp2p.getConnections().find((c) => c.remotePeer.toString() === e.peerId);
    const addr = conn?.remoteAddr.toString() ?? '';
    const path = !online ? null : /\/(ip4\/(127\.|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)|ip6\/(::1|fe80))/.test(addr) ? 'lan' : 'direct';
    return {
      peerId: e.peerId, fingerprint: fingerprint(e.peerId), name: e.name, added: e.added,
      ...(e.expires ? { expires: e.expires } : {}), ...(e.revoked ? { revoked: e.revoked } : {}),
      online, path,
      ...(link?.rttMs === undefined ? {} : { rttMs: link.rttMs }), ...(link?.lastSeen ? { lastSeen: link.lastSeen } : {}),
      ...(link?.bandwidthBytesPerSec ? { bandwidthMBps: link.bandwidthBytesPerSec / 1e6 } : {}),
    };
  }

  async devices(): Promise<Device[]> {
    return this.d.roster.list().filter((e) => e.peerId !== this.self).map((e) => this.deviceView(e));
  }

  private entry(peerId: string): RosterEntry {
    const e = this.d.roster.get(peerId);
    if (!e || peerId === this.self) throw new NotFoundError(`no paired device ${peerId}`);
    return e;
  }

  async renameDevice(peerId: string, name: string): Promise<Device> {
    this.entry(peerId);
    const e = await this.d.roster.rename(peerId, name);
    this.publish('device.renamed', { peerId, message: name });
    return this.deviceView(e);
  }

  async revokeDevice(peerId: string): Promise<Device> {
    if (this.entry(peerId).revoked) throw new ConflictError(`device ${peerId} is already revoked`);
    await this.d.node.revoke(peerId);
    this.remoteHosts.delete(peerId);
    this.d.directory.forget(peerId);
    this.publish('device.revoked', { peerId });
    return this.deviceView(this.entry(peerId));
  }

  async createInvite(): Promise<Invite> {
    const inv = this.d.node.createInvite();
    this.publish('invite.created', { data: { expiresAt: inv.expiresAt.toISOString() } });
    return { code: inv.code, expiresAt: inv.expiresAt.toISOString() };
  }

  async joinInvite(code: string, name?: string): Promise<JoinResult> {
    try {
      const info = await this.d.node.join(code, { name: name ?? this.d.state.name });
      this.publish('device.paired', { peerId: info.peerId, message: info.name });
      return { peerId: info.peerId, name: info.name };
    } catch (e) {
      const err = e as Error;
      if (err instanceof InviteExpiredError || err instanceof InviteUsedError) throw new GoneError(err.message);
      if (err instanceof InviteInvalidError) throw new BadRequestError(err.message);
      if (err instanceof PeerRefusedError) throw new UnavailableError(err.message);
      throw new UnavailableError(`could not reach the inviting device: ${err.message}`);
    }
  }

  private cloudView(e: { name: string; multiaddr: string; peerId?: string }): Cloud {
    const t = this.d.state.cloudTests.get(e.name);
    return { id: e.name, multiaddr: e.multiaddr, ...(e.peerId ? { peerId: e.peerId } : {}), name: e.name,
      ...(t ? { reachable: t.reachable, rttMs: t.rttMs ?? undefined, lastTested: t.at } : {}) };
  }

  async clouds(): Promise<Cloud[]> {
    return this.d.clouds.list().map((e) => this.cloudView(e));
  }

  async addCloud(addr: string, name?: string): Promise<Cloud> {
    let peerId: string | undefined;
    try {
      peerId = parseMultiaddr(addr).getComponents().find((c) => c.name === 'p2p')?.value;
    } catch (e) {
      throw new BadRequestError(`not a multiaddr: ${(e as Error).message}`);
    }
    if (!peerId) throw new BadRequestError('the cloud multiaddr must end in /p2p/<PeerId> so the peer can be authenticated');
    if (this.d.roster.get(peerId)) throw new ConflictError('that peer is a paired device; a cloud peer is never trusted');
    const list = this.d.clouds.list();
    if (list.some((c) => c.peerId === peerId)) throw new ConflictError('that cloud peer is already added');
    const id = name ?? `cloud-${list.length + 1}`;
    if (list.some((c) => c.name === id)) throw new ConflictError(`a cloud peer named ${id} exists`);
    const e = await this.d.clouds.add({ multiaddr: addr, name: id, peerId }, { roster: this.d.roster });
    this.publish('cloud.added', { peerId, message: id });
    return this.cloudView(e);
  }

  async testCloud(id: string): Promise<CloudTestResult> {
    const e = this.d.clouds.get(id);
    if (!e) throw new NotFoundError(`no cloud peer ${id}`);
    let r: CloudTestResult;
    try {
      const conn = await this.d.node.connect(e.multiaddr, { timeoutMs: 5000 });
      const rtt = await this.d.node.libp2p.services.ping.ping(conn.remotePeer, { signal: AbortSignal.timeout(5000) });
      r = { reachable: true, rttMs: rtt };
      this.publish('cloud.reachable', { peerId: e.peerId, data: { rttMs: rtt } });
    } catch (err) {
      r = { reachable: false, rttMs: null, error: (err as Error).message };
      this.publish('cloud.unreachable', { peerId: e.peerId, message: (err as Error).message });
    }
    this.d.state.cloudTests.set(id, { ...r, at: now() });
    return r;
  }

  async removeCloud(id: string): Promise<void> {
    if (!(await this.d.clouds.remove(id))) throw new NotFoundError(`no cloud peer ${id}`);
    this.d.state.cloudTests.delete(id);
    this.publish('cloud.removed', { message: id });
  }

  /** Online paired devices running a Hush device daemon for this model (they answered the profile protocol). */
  async onlineDevices(): Promise<RosterEntry[]> {
    // A device that just paired or reconnected may not have answered yet: ask now rather than plan without it.
    await Promise.all(this.d.roster.list()
      .filter((e) => e.peerId !== this.self && this.d.roster.isTrusted(e.peerId) && this.isOnline(e.peerId) && !this.d.directory.get(e.peerId)?.profile)
      .map((e) => this.d.directory.refresh(e.peerId, true).catch(() => undefined)));
    return this.d.roster.list().filter((e) => {
      if (e.peerId === this.self || !this.d.roster.isTrusted(e.peerId) || !this.isOnline(e.peerId)) return false;
      const p = this.d.directory.get(e.peerId)?.profile;
      return p !== undefined && p.model === this.d.model.name && !p.optOut;
    });
  }

  private nameOf(id: string): string {
    if (id === this.self) return `${this.d.state.name} (this device)`;
    return this.d.roster.get(id)?.name ?? this.d.clouds.list().find((c) => c.peerId === id)?.name ?? id.slice(-8);
  }

  /** Peers that failed recently: off every plan until their back-off ends (5 s, doubling to 5 min). */
  private readonly bans = new Map<string, { until: number; failures: number; reason: string }>();

  ban(peerId: string, reason: string): void {
    const prev = this.bans.get(peerId);
    const failures = (prev?.failures ?? 0) + 1;
    const backoff = Math.min(300_000, 5_000 * 2 ** (failures - 1));
    this.bans.set(peerId, { until: Date.now() + backoff, failures, reason });
    this.d.log.warn({ peer: peerId, backoffMs: backoff, reason }, 'peer banned after a failure');
  }

  private banned(peerId: string): boolean {
    const b = this.bans.get(peerId);
    return !!b && b.until > Date.now();
  }

  /** A plan for `mode` that avoids `exclude` and banned peers; NoPlacementError names what is missing. */
  async makePlan(mode: Mode, exclude: ReadonlySet<string> = new Set()): Promise<{ plan: Plan; view: PlanView; result: PlanResult }> {
    if (this.d.planner) return this.d.planner(mode);
    const skip = (id: string | undefined) => !!id && (exclude.has(id) || this.banned(id));
    const L = this.d.model.config.numLayers;
    const clouds: Candidate[] = [];
    if (mode !== 'local') {
      const all = this.d.clouds.list();
      if (all.length === 0) throw new UnavailableError(`mode ${mode} needs a cloud peer: add one with \`hush cloud add MULTIADDR\``);
      const problems: string[] = [];
      for (const c of all) {
        if (!c.peerId) continue;
        if (skip(c.peerId)) { problems.push(`${c.name} (${this.bans.get(c.peerId)?.reason ?? 'failed in this request'})`); continue; }
        try {
          const info = await this.d.directory.refreshCloud(c.peerId, c.multiaddr);
          if (info?.profile?.model !== this.d.model.name) { problems.push(`${c.name} (serves ${info?.profile?.model ?? 'no model'})`); continue; }
          clouds.push({ id: c.peerId, name: c.name, measured: info.profile.measured, rttMs: info.rttMs ?? 0, bandwidthBytesPerSec: info.bandwidthBytesPerSec ?? 0 });
        } catch (e) {
          problems.push(`${c.name} (unreachable: ${(e as Error).message})`);
        }
      }
      if (clouds.length === 0) {
        throw new NoPlacementError(`no cloud peer can host layers [${this.d.h}, ${L - this.d.t}) in mode ${mode}: ${problems.join(', ')}; add another with \`hush cloud add MULTIADDR\`${this.d.allowLocalFallback ? '' : ' or allow falling back to local mode'}`);
      }
    }
    const devices: Candidate[] = [];
    for (const e of await this.onlineDevices()) {
      if (skip(e.peerId)) continue;
      const info = this.d.directory.get(e.peerId)!;
      devices.push({ id: e.peerId, name: e.name, measured: info.profile!.measured, rttMs: info.rttMs ?? 0, bandwidthBytesPerSec: info.bandwidthBytesPerSec ?? 0, optOut: info.profile!.optOut, maxShare: info.profile!.maxShare });
    }
    const self: Candidate = { id: this.self, name: this.d.state.name, measured: this.d.profile.measured, rttMs: 0, bandwidthBytesPerSec: 0, optOut: this.d.profile.optOut, maxShare: this.d.profile.maxShare };
    let result: PlanResult;
    const previous = this.lastPlans.get(mode);
    try {
      result = schedule(clusterState(self, devices, clouds), this.d.model.manifest, mode, this.d.h, this.d.t, exclude, previous);
    } catch (e) {
      if (e instanceof InfeasiblePlanError) throw new NoPlacementError(`no placement for mode ${mode}: ${e.message}`);
      throw e;
    }
    if (previous && placementKey(previous) !== placementKey(result)) {
      this.publish('plan.changed', { message: `${mode} plan changed`, data: { mode, stages: result.plan.stages, perTokenMs: result.predicted.perTokenMs } });
    }
    this.lastPlans.set(mode, result);
    return { plan: result.plan, result, view: planView(result, (id) => this.nameOf(id)) };
  }

  /** The last plan per mode: re-plans start from it and prefer not to move stages. */
  private readonly lastPlans = new Map<Mode, PlanResult>();

  async plan(mode: Mode): Promise<PlanView> {
    return (await this.makePlan(mode)).view;
  }

  hostFor(deviceId: string): StageHost {
    if (deviceId === this.self) return this.local;
    let h = this.remoteHosts.get(deviceId);
    if (!h) {
      if (!this.d.roster.isTrusted(deviceId)) throw new UnavailableError(`device ${deviceId} is not a trusted paired device`);
      h = remoteStageHost(this.d.node, deviceId, this.nameOf(deviceId), this.d.model.name, { rttMs: () => this.d.directory.get(deviceId)?.rttMs });
      this.remoteHosts.set(deviceId, h);
    }
    return h;
  }

  /** One placement of a request: a coordinator over the plan's trusted stages and cloud peer. */
  private async attempt(mode: Mode, exclude: ReadonlySet<string>, onPlan: (p: Plan, m: Mode) => void): Promise<Attempt & { coordinator: ScxCoordinator }> {
    const model = this.d.model;
    let plan: Plan, used: Mode = mode;
    try {
      plan = (await this.makePlan(mode, exclude)).plan;
    } catch (e) {
      if (!(e instanceof NoPlacementError) || mode === 'local' || !this.d.allowLocalFallback) throw e;
      used = 'local';
      plan = (await this.makePlan('local', exclude)).plan;
    }
    onPlan(plan, used);
    const trusted = planToTrustedPath(plan, (id) => this.hostFor(id));
    const cloudEntry = plan.cloudPeer ? this.d.clouds.list().find((c) => c.peerId === plan.cloudPeer) : undefined;
    const transport = cloudEntry ? cloudTransport(this.d.node, cloudEntry.multiaddr, { rttMs: () => this.d.state.cloudTests.get(cloudEntry.name)?.rttMs ?? undefined }) : undefined;
    const coordinator = new ScxCoordinator({
      config: model.config, weights: model.weights, modelName: model.name, mode: used, h: plan.h, t: plan.t,
      trusted, cloud: transport, ops: this.d.ops, scx: this.d.scx, session: randomUUID(),
    });
    const close = coordinator.close.bind(coordinator);
    coordinator.close = async () => { try { await close(); } finally { await transport?.close().catch(() => undefined); } };
    return { forwarder: coordinator, coordinator, peers: [...new Set(plan.stages.map((s) => s.deviceId))] };
  }

  async *generate(req: GenerateRequest, signal: AbortSignal): AsyncIterable<GenerateEvent> {
    const model = this.d.model;
    if (req.model && req.model !== model.name) throw new NotFoundError(`model ${req.model} is not served here (this device serves ${model.name})`);
    const mode: Mode = req.mode ?? (this.d.clouds.list().length ? 'scx' : 'local');
    let ids: number[];
    if (req.messages) {
      const r = model.tokenizer.renderChat(req.messages);
      ids = model.tokenizer.encode(r.text, r.addSpecialTokens);
    } else {
      ids = model.tokenizer.encode(req.prompt ?? '');
    }
    const request = randomUUID();
    let usedMode: Mode = mode;
    let coordinators: ScxCoordinator[] = [];
    const pending: GenerateEvent[] = [];
    const fw = new ResilientForwarder(async (exclude) => {
      const a = await this.attempt(mode, exclude, (plan, m) => {
        usedMode = m;
        this.d.log.info({ request, mode: m, stages: plan.stages.map((s) => `${s.role}:${s.layers.join('-')}@${s.deviceId.slice(-6)}`) }, 'placement');
      });
      coordinators.push(a.coordinator);
      return a;
    }, {
      onFailure: (e) => {
        this.ban(e.peerId, e.message);
        if (e.role === 'device') this.remoteHosts.delete(e.peerId);
      },
      onRecovery: (r) => {
        const event: HushEvent = { type: 'recovery', at: now(), peerId: r.failedPeer, sessionId: request, message: `${r.role} ${this.nameOf(r.failedPeer)} failed during ${r.phase}; continued on a new placement in ${r.recoveryMs.toFixed(0)} ms`, data: { ...r } };
        this.d.events.publish(event);
        pending.push({ type: 'event', event });
      },
    });
    const startedAt = now();
    this.publish('session.start', { sessionId: request, data: { mode, promptTokens: ids.length } });
    yield { type: 'start', mode, promptTokens: ids.length, model: model.name, sessionId: request };
    let completion = 0;
    try {
      for await (const e of generateText(model.tokenizer, fw, {
        ids, maxTokens: req.maxTokens, temperature: req.temperature ?? model.generation.temperature ?? 0,
        topP: req.topP ?? model.generation.topP, topK: req.topK ?? model.generation.topK, seed: req.seed ?? 0,
        stopIds: model.config.eosTokenIds, stop: req.stop, signal,
      })) {
        while (pending.length) yield pending.shift()!;
        if (e.type === 'token') { completion++; yield { type: 'token', text: e.text, id: e.id }; continue; }
        const wire = coordinators.flatMap((c) => c.stats.wire);
        const stats = coordinators.reduce((a, c) => ({ crossings: a.crossings + c.stats.crossings, to: a.to + c.stats.bytesToCloud, from: a.from + c.stats.bytesFromCloud }), { crossings: 0, to: 0, from: 0 });
        this.last = { mode: usedMode, sessionId: request, model: model.name, startedAt, crossings: wire.map(({ name: _n, ...w }) => w), totalBytes: stats.to + stats.from };
        yield {
          type: 'done', finishReason: e.finishReason,
          usage: { promptTokens: ids.length, completionTokens: e.ids.length },
          timings: {
            ...e.timings, prefillMs: coordinators[0]?.stats.prefillMs ?? 0, crossings: stats.crossings, bytesToCloud: stats.to, bytesFromCloud: stats.from,
            recoveries: fw.recoveries.length, recoveryMs: fw.recoveries.reduce((a, r) => a + r.recoveryMs, 0),
          },
        };
      }
    } finally {
      await fw.close();
      coordinators = [];
      this.publish('session.end', { sessionId: request, data: { completionTokens: completion, mode: usedMode } });
    }
  }

  async lastSession(): Promise<LastSession | null> {
    return this.last;
  }

  async privacy(): Promise<PrivacyReport | null> {
    return existsSync(PRIVACY_REPORT_FILE) ? JSON.parse(readFileSync(PRIVACY_REPORT_FILE, 'utf8')) as PrivacyReport : null;
  }

  async models(): Promise<ModelInfo[]> {
    return [{ id: this.d.model.name, created: Math.floor(this.d.startedAt / 1000), ownedBy: 'hush' }];
  }

  events(signal: AbortSignal): AsyncIterable<HushEvent> {
    return this.d.events.subscribe(signal);
  }

  // ---------- identity keys: rotation and backups ----------

  private keyOp: Promise<unknown> = Promise.resolve();

  /** One key operation at a time: an export must not read a roster half-way through a rotation. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.keyOp.then(fn, fn);
    this.keyOp = run.catch(() => undefined);
    return run;
  }

  private keeper(): IdentityKeeper {
    if (!this.d.keys) throw new NotImplementedError('this device daemon cannot change its identity key');
    return this.d.keys;
  }

  /** Called by the daemon once the node runs under another identity: links and plans of the old node are void. */
  useNode(parts: NodeParts): void {
    this.d.node = parts.node;
    this.d.roster = parts.roster;
    this.d.clouds = parts.clouds;
    this.d.directory = parts.directory;
    this.remoteHosts.clear();
    this.bans.clear();
    this.lastPlans.clear();
    this.d.state.cloudTests.clear();
  }

  private identityChanged(previous: string, how: 'rotated' | 'imported'): void {
    const message = how === 'rotated'
      ? 'new identity: paired devices no longer recognise this device until they pair again'
      : 'identity, roster and cloud peers restored from a backup';
    this.d.log.info({ peerId: this.self, previousPeerId: previous, how }, 'identity changed');
    this.publish('identity.changed', { peerId: this.self, message, data: { how, previousPeerId: previous, fingerprint: fingerprint(this.self) } });
  }

  async rotateIdentity(): Promise<Identity> {
    const keys = this.keeper();
    return this.exclusive(async () => {
      const before = this.self;
      await keys.replace(await generateKeyPair('Ed25519'));
      this.identityChanged(before, 'rotated');
      return this.identity();
    });
  }

  async exportBackup(passphrase: string): Promise<{ backup: string; fileName: string }> {
    const keys = this.keeper();
    return this.exclusive(async () => {
      try {
        const backup = await encryptBackup({ identity: keys.current(), roster: this.d.roster.list(), clouds: this.d.clouds.list() }, passphrase);
        return { backup, fileName: backupFileName(fingerprint(this.self)) };
      } catch (e) {
        throw backupHttpError(e);
      }
    });
  }

  async importBackup(backup: string, passphrase: string): Promise<Identity> {
    const keys = this.keeper();
    return this.exclusive(async () => {
      let contents;
      try {
        contents = await decryptBackup(backup, passphrase);
      } catch (e) {
        throw backupHttpError(e); // wrong passphrase or damaged file: nothing was touched
      }
      const before = this.self;
      await keys.replace(contents.identity, { roster: contents.roster, clouds: contents.clouds });
      this.identityChanged(before, 'imported');
      return this.identity();
    });
  }
}
