import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { PrivateKey } from '@libp2p/interface';
import type { Logger } from 'pino';
import { loadModel } from '../../runtime/model/index.ts';
import { StageServer } from '../../runtime/engine/stage-service.ts';
import { SubLayerOps } from '../../runtime/engine/sublayer-ops.ts';
import type { ScxOptions } from '../../runtime/scx/coordinator.ts';
import { createHushNode, Roster, CloudList, CLOUDS_FILE, ROSTER_FILE, type CloudEntry, type HushNode, type RosterEntry } from '../../runtime/net/index.ts';
import { writeFileAtomic } from '../../runtime/net/atomic-file.ts';
import { serveRequests } from '../../runtime/net/rpc.ts';
import { EventHub, loadOrCreateApiToken, startControlServer, type HushEvent } from '../../runtime/api/index.ts';
import { DaemonController, type DeviceState, type IdentityKeeper, type NodeParts } from './device-controller.ts';
import { createLogger, MAX_TENSOR_FRAME_BYTES, onShutdown, PROFILE_PROTOCOL, removeDaemonInfo, resolveHome, STAGE_PROTOCOL, writeDaemonInfo } from './common.ts';
import { deviceMeasurement } from './profile.ts';
import { faultPoint } from './fault.ts';
import { PeerDirectory, type PeerProfile } from './peer-directory.ts';
import { openAppChannel, type AppChannel } from './app-channel.ts';
import { openIdentityStore } from './identity-store.ts';

export interface DeviceDaemonOptions {
  home?: string;
  listen?: string[];
  /** Loopback port of the control API and OpenAI endpoint (0 = any free port). */
  apiPort?: number;
  model?: string;
  name?: string;
  mdns?: boolean;
  /** Origins allowed to call the API from a browser (the app's dev server). */
  allowedOrigins?: string[];
  h?: number;
  t?: number;
  scx?: ScxOptions;
  /** Memory this device offers for stages (default 80% of free memory at start). */
  memoryBytes?: number;
  /** Battery saver: coordinate requests but host no stage for other devices' plans. */
  optOut?: boolean;
  /** Most of the model's layers this device may hold (0..1). */
  maxShare?: number;
  /** Finish in local mode when no cloud peer is left (otherwise such a request fails, keeping its partial text). */
  allowLocalFallback?: boolean;
  /**
   * The desktop app's channel (app-channel.ts): a file descriptor number (`--app-channel FD`), or
   * one already open. The identity key then lives in the app's OS keychain, not in HOME/identity.key.
   */
  appChannel?: number | AppChannel;
}

export interface DeviceDaemon {
  /** The running libp2p node; a new one after the identity is rotated or imported. */
  readonly node: HushNode;
  controller: DaemonController;
  apiUrl: string;
  token: string;
  /** Where the identity key is kept: HOME/identity.key, or the app's keychain over the app channel. */
  identityStorage: 'file' | 'app';
  /** Resolves when the app closes its channel (only with appChannel). */
  appChannelClosed: Promise<void> | null;
  stop(): Promise<void>;
}

const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0'];

/** Write the roster and cloud list in the files Roster.open / CloudList.open read (each write atomic). */
async function writeLists(home: string, lists: { roster: RosterEntry[]; clouds: CloudEntry[] }): Promise<void> {
  await writeFileAtomic(join(home, ROSTER_FILE), JSON.stringify({ version: 1, devices: lists.roster }, null, 2) + '\n', 0o600);
  await writeFileAtomic(join(home, CLOUDS_FILE), JSON.stringify({ version: 1, clouds: lists.clouds }, null, 2) + '\n', 0o600);
}

/**
 * A trusted device: serves its stages to paired devices, coordinates requests that start here
 * (app, CLI, OpenAI clients), keeps the roster, and exposes the loopback control API.
 *
 * The libp2p node can be replaced while the daemon runs (a new identity: rotation or a backup
 * import): the control API, the event hub, the model and the stage server stay; the node, its
 * roster and cloud list objects, the peer directory and the event wiring are made anew by startNode().
 */
export async function startDeviceDaemon(o: DeviceDaemonOptions, log?: Logger): Promise<DeviceDaemon> {
  const home = resolveHome(o.home);
  log ??= createLogger(home, 'device');
  const logger = log;
  // The app channel first: a daemon the app cannot hand its key to should fail before loading anything.
  const channel = o.appChannel === undefined ? null : typeof o.appChannel === 'number' ? await openAppChannel(o.appChannel) : o.appChannel;
  const identity = await openIdentityStore(home, channel, logger);
  let privateKey: PrivateKey = identity.key;

  const model = loadModel(o.model);
  const settingsFile = join(home, 'device-settings.json');
  const settings = existsSync(settingsFile) ? JSON.parse(readFileSync(settingsFile, 'utf8')) as { name?: string } : {};
  const state: DeviceState = { name: o.name ?? settings.name ?? hostname(), cloudTests: new Map() };
  writeFileSync(settingsFile, JSON.stringify({ name: state.name }), { mode: 0o600 });

  const listen = o.listen ?? DEFAULT_LISTEN;
  const stages = new StageServer(model.config, model.weights, model.name);
  const ops = new SubLayerOps(model.config, model.weights);
  const events = new EventHub<HushEvent>();
  const measured = await deviceMeasurement(home, model, o.memoryBytes);
  const profile: PeerProfile = { name: state.name, model: model.name, measured: measured.measured, ...(o.optOut ? { optOut: true } : {}), ...(o.maxShare ? { maxShare: o.maxShare } : {}) };
  logger.info({ prefillMsPerLayer: measured.measured.prefillMsPerLayer, decodeMsPerLayer: measured.measured.decodeMsPerLayer, fromCache: measured.fromCache }, 'device profile');

  /** Every protocol this device serves. Called for each node: a restarted node serves the same. */
  async function registerHandlers(node: HushNode): Promise<void> {
    // Stage execution for paired devices: one channel per session; its KV dies with the channel.
    await node.handle(STAGE_PROTOCOL, { trusted: true, maxFrameBytes: MAX_TENSOR_FRAME_BYTES, maxConcurrentChannels: 128, idleTimeoutMs: 120_000 }, async (ch, remotePeer) => {
      const sessions = new Set<string>();
      await serveRequests(ch, async (msg) => {
        const m = msg as { type?: string; session?: string };
        if (m.type === 'open' && typeof m.session === 'string') sessions.add(m.session);
        if (m.type === 'forward') faultPoint('forward');
        const reply = await stages.handle(msg);
        if (reply.type === 'error') logger.warn({ peer: remotePeer.toString(), error: reply.name, message: reply.message }, 'stage request refused');
        return reply;
      }, async () => { for (const s of sessions) await stages.drop(s); });
    });
    // Profile and bandwidth probe for paired coordinators (the scheduler's inputs).
    await node.handle(PROFILE_PROTOCOL, { trusted: true, maxFrameBytes: MAX_TENSOR_FRAME_BYTES, maxConcurrentChannels: 16, idleTimeoutMs: 30_000 }, async (ch) => {
      await serveRequests(ch, async (msg) => {
        const m = msg as { type?: string; payload?: unknown };
        if (m.type === 'profile') return { type: 'profile', profile: { ...profile, name: state.name } };
        if (m.type === 'probe' && m.payload instanceof Uint8Array) return { type: 'probe', bytes: m.payload.length };
        return { type: 'error', name: 'BadRequestError', message: 'expected {type: "profile"} or {type: "probe", payload}' };
      });
    });
  }

  // Online/offline events and RTT for the devices view.
  const online = new Set<string>();
  /** Hooks a node's connection and roster events to the event hub; returns the undo. */
  function wire(p: NodeParts): () => void {
    const onConnect = (evt: CustomEvent) => {
      const id = String(evt.detail);
      if (p.roster.isTrusted(id) && !online.has(id)) {
        online.add(id);
        events.publish({ type: 'device.online', at: new Date().toISOString(), peerId: id });
        void p.directory.refresh(id, true).catch(() => undefined);
      }
    };
    const onDisconnect = (evt: CustomEvent) => {
      const id = String(evt.detail);
      if (online.delete(id)) events.publish({ type: 'device.offline', at: new Date().toISOString(), peerId: id });
    };
    const onRosterChange = (evt: Event) => {
      const ch = (evt as CustomEvent<{ type: string; entry?: { peerId: string } }>).detail;
      if (ch.type === 'revoke' && ch.entry) events.publish({ type: 'device.revoked', at: new Date().toISOString(), peerId: ch.entry.peerId });
      if (ch.type === 'add' && ch.entry) {
        events.publish({ type: 'device.paired', at: new Date().toISOString(), peerId: ch.entry.peerId });
        const id = ch.entry.peerId;
        online.add(id);
        void p.directory.refresh(id, true).catch(() => undefined);
      }
    };
    p.node.libp2p.addEventListener('peer:connect', onConnect);
    p.node.libp2p.addEventListener('peer:disconnect', onDisconnect);
    p.roster.addEventListener('change', onRosterChange);
    return () => {
      p.node.libp2p.removeEventListener('peer:connect', onConnect);
      p.node.libp2p.removeEventListener('peer:disconnect', onDisconnect);
      p.roster.removeEventListener('change', onRosterChange);
    };
  }

  type Running = NodeParts & { unwire: () => void };
  /** A node under `key` on the configured listen addresses, with roster and clouds read from HOME. */
  async function startNode(key: PrivateKey): Promise<Running> {
    const roster = await Roster.open(home);
    const clouds = await CloudList.open(home);
    const node = await createHushNode({ privateKey: key, role: 'device', listen, roster, clouds, name: state.name, mdns: o.mdns ?? false });
    try {
      await registerHandlers(node);
    } catch (e) {
      await node.stop();
      throw e;
    }
    const directory = new PeerDirectory(node, roster, logger);
    const parts = { node, roster, clouds, directory };
    const unwire = wire(parts);
    directory.start();
    return { ...parts, unwire };
  }

  async function stopNode(r: Running): Promise<void> {
    r.directory.stop();
    await r.roster.flush();
    await r.clouds.flush();
    await r.node.stop(); // its peer:disconnect events still reach the hub (device.offline)
    r.unwire();
    online.clear();
  }

  let running = await startNode(privateKey);

  /**
   * Restart the node under another identity, in place: stop the old node (its listen ports are
   * needed), start one with `key` on the same listen addresses and handlers, then keep the key. Any
   * failure puts the old key, roster and cloud list back and restarts the old node.
   */
  async function replace(key: PrivateKey, lists?: { roster: RosterEntry[]; clouds: CloudEntry[] }): Promise<void> {
    const old = running;
    const oldKey = privateKey;
    const snapshot = { roster: old.roster.list(), clouds: old.clouds.list() };
    await stopNode(old);
    let next: Running | undefined;
    try {
      if (lists) await writeLists(home, lists);
      next = await startNode(key);
      // The key is kept last: a crash before this line restarts with the old identity.
      await identity.store.save(key);
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'changing the identity failed; going back to the previous one');
      if (next) await stopNode(next).catch(() => undefined);
      if (lists) await writeLists(home, snapshot).catch((e: Error) => logger.error({ err: e.message }, 'could not put the previous roster and cloud list files back'));
      running = await startNode(oldKey);
      controller.useNode(running);
      publishInfo();
      throw err;
    }
    running = next;
    privateKey = key;
    controller.useNode(running);
    publishInfo();
  }

  const keys: IdentityKeeper = { current: () => privateKey, replace };
  const controller = new DaemonController({
    node: running.node, roster: running.roster, clouds: running.clouds, directory: running.directory,
    model, stages, ops, events, state, log: logger, profile, allowLocalFallback: o.allowLocalFallback, h: o.h ?? 1, t: o.t ?? 1, scx: o.scx ?? {}, startedAt: Date.now(), keys,
  });

  const token = loadOrCreateApiToken(home);
  const server = await startControlServer({
    controller, port: o.apiPort ?? 0, token, allowedOrigins: o.allowedOrigins ?? [],
    openai: { apiKey: token },
  });
  const startedAt = new Date().toISOString();
  /** HOME/device.json: where CLIs and the app find this daemon; rewritten when the PeerId changes. */
  function publishInfo(): void {
    writeDaemonInfo(home, { role: 'device', pid: process.pid, peerId: running.node.peerId.toString(), addresses: running.node.getMultiaddrs().map(String), apiUrl: server.url, healthUrl: `${server.url}/health`, model: model.name, startedAt });
  }
  publishInfo();
  logger.info({ peerId: running.node.peerId.toString(), name: state.name, addresses: running.node.getMultiaddrs().map(String), api: server.url, model: model.name, identity: identity.store.where }, 'device ready');

  let stopping: Promise<void> | null = null;
  return {
    get node() { return running.node; },
    controller, apiUrl: server.url, token,
    identityStorage: identity.store.where,
    appChannelClosed: channel?.closed ?? null,
    stop() {
      // One stop for every caller (a signal and the app closing its channel may come together).
      stopping ??= (async () => {
        events.close();
        await server.close();
        await stopNode(running);
        await stages.release();
        await ops.release();
        removeDaemonInfo(home, 'device');
        channel?.close();
        logger.info('device stopped');
      })();
      return stopping;
    },
  };
}

export async function runDeviceDaemon(o: DeviceDaemonOptions): Promise<void> {
  const home = resolveHome(o.home);
  const log = createLogger(home, 'device');
  const d = await startDeviceDaemon(o, log);
  onShutdown(log, () => d.stop());
  // The app quit or crashed: no orphan daemon.
  void d.appChannelClosed?.then(() => {
    log.info('the app closed its channel; shutting down');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    d.stop().then(() => process.exit(0), (e: unknown) => { log.error({ err: e }, 'shutdown failed'); process.exit(1); });
  });
}
