import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { loadModel } from '../../runtime/model/index.ts';
import { StageServer } from '../../runtime/engine/stage-service.ts';
import { SubLayerOps } from '../../runtime/engine/sublayer-ops.ts';
import type { ScxOptions } from '../../runtime/scx/coordinator.ts';
import { createHushNode, loadOrCreateIdentity, Roster, CloudList, type HushNode } from '../../runtime/net/index.ts';
import { serveRequests } from '../../runtime/net/rpc.ts';
import { EventHub, loadOrCreateApiToken, startControlServer, type HushEvent } from '../../runtime/api/index.ts';
import { DaemonController, type DeviceState } from './device-controller.ts';
import { createLogger, MAX_TENSOR_FRAME_BYTES, onShutdown, PROFILE_PROTOCOL, removeDaemonInfo, resolveHome, STAGE_PROTOCOL, writeDaemonInfo } from './common.ts';
import { deviceMeasurement } from './profile.ts';
import { faultPoint } from './fault.ts';
import { PeerDirectory, type PeerProfile } from './peer-directory.ts';

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
}

export interface DeviceDaemon {
  node: HushNode;
  controller: DaemonController;
  apiUrl: string;
  token: string;
  stop(): Promise<void>;
}

/**
 * A trusted device: serves its stages to paired devices, coordinates requests that start here
 * (app, CLI, OpenAI clients), keeps the roster, and exposes the loopback control API.
 */
export async function startDeviceDaemon(o: DeviceDaemonOptions, log?: Logger): Promise<DeviceDaemon> {
  const home = resolveHome(o.home);
  log ??= createLogger(home, 'device');
  const model = loadModel(o.model);
  const settingsFile = join(home, 'device-settings.json');
  const settings = existsSync(settingsFile) ? JSON.parse(readFileSync(settingsFile, 'utf8')) as { name?: string } : {};
  const state: DeviceState = { name: o.name ?? settings.name ?? hostname(), cloudTests: new Map() };
  writeFileSync(settingsFile, JSON.stringify({ name: state.name }), { mode: 0o600 });

  const privateKey = await loadOrCreateIdentity(home);
  const roster = await Roster.open(home);
  const clouds = await CloudList.open(home);
  const node = await createHushNode({ privateKey, role: 'device', listen: o.listen ?? ['/ip4/127.0.0.1/tcp/0'], roster, clouds, name: state.name, mdns: o.mdns ?? false });
  const stages = new StageServer(model.config, model.weights, model.name);
  const ops = new SubLayerOps(model.config, model.weights);
  const events = new EventHub<HushEvent>();

  // Stage execution for paired devices: one channel per session; its KV dies with the channel.
  await node.handle(STAGE_PROTOCOL, { trusted: true, maxFrameBytes: MAX_TENSOR_FRAME_BYTES, maxConcurrentChannels: 128, idleTimeoutMs: 120_000 }, async (channel, remotePeer) => {
    const sessions = new Set<string>();
    await serveRequests(channel, async (msg) => {
      const m = msg as { type?: string; session?: string };
      if (m.type === 'open' && typeof m.session === 'string') sessions.add(m.session);
      if (m.type === 'forward') faultPoint('forward');
      const reply = await stages.handle(msg);
      if (reply.type === 'error') log!.warn({ peer: remotePeer.toString(), error: reply.name, message: reply.message }, 'stage request refused');
      return reply;
    }, async () => { for (const s of sessions) await stages.drop(s); });
  });

  const measured = await deviceMeasurement(home, model, o.memoryBytes);
  const profile: PeerProfile = { name: state.name, model: model.name, measured: measured.measured, ...(o.optOut ? { optOut: true } : {}), ...(o.maxShare ? { maxShare: o.maxShare } : {}) };
  log.info({ prefillMsPerLayer: measured.measured.prefillMsPerLayer, decodeMsPerLayer: measured.measured.decodeMsPerLayer, fromCache: measured.fromCache }, 'device profile');
  // Profile and bandwidth probe for paired coordinators (the scheduler's inputs).
  await node.handle(PROFILE_PROTOCOL, { trusted: true, maxFrameBytes: MAX_TENSOR_FRAME_BYTES, maxConcurrentChannels: 16, idleTimeoutMs: 30_000 }, async (channel) => {
    await serveRequests(channel, async (msg) => {
      const m = msg as { type?: string; payload?: unknown };
      if (m.type === 'profile') return { type: 'profile', profile: { ...profile, name: state.name } };
      if (m.type === 'probe' && m.payload instanceof Uint8Array) return { type: 'probe', bytes: m.payload.length };
      return { type: 'error', name: 'BadRequestError', message: 'expected {type: "profile"} or {type: "probe", payload}' };
    });
  });
  const directory = new PeerDirectory(node, roster, log);

  const controller = new DaemonController({
    node, roster, clouds, model, stages, ops, events, state, log, directory, profile, allowLocalFallback: o.allowLocalFallback, h: o.h ?? 1, t: o.t ?? 1, scx: o.scx ?? {}, startedAt: Date.now(),
  });

  // Online/offline events and RTT for the devices view.
  const online = new Set<string>();
  const onConnect = (evt: CustomEvent) => {
    const id = String(evt.detail);
    if (roster.isTrusted(id) && !online.has(id)) {
      online.add(id);
      events.publish({ type: 'device.online', at: new Date().toISOString(), peerId: id });
      void directory.refresh(id, true).catch(() => undefined);
    }
  };
  const onDisconnect = (evt: CustomEvent) => {
    const id = String(evt.detail);
    if (online.delete(id)) events.publish({ type: 'device.offline', at: new Date().toISOString(), peerId: id });
  };
  node.libp2p.addEventListener('peer:connect', onConnect);
  node.libp2p.addEventListener('peer:disconnect', onDisconnect);
  roster.addEventListener('change', (evt) => {
    const ch = (evt as CustomEvent<{ type: string; entry?: { peerId: string } }>).detail;
    if (ch.type === 'revoke' && ch.entry) events.publish({ type: 'device.revoked', at: new Date().toISOString(), peerId: ch.entry.peerId });
    if (ch.type === 'add' && ch.entry) {
      events.publish({ type: 'device.paired', at: new Date().toISOString(), peerId: ch.entry.peerId });
      const id = ch.entry.peerId;
      online.add(id);
      void directory.refresh(id, true).catch(() => undefined);
    }
  });
  directory.start();

  const token = loadOrCreateApiToken(home);
  const server = await startControlServer({
    controller, port: o.apiPort ?? 0, token, allowedOrigins: o.allowedOrigins ?? [],
    openai: { apiKey: token },
  });
  const addresses = node.getMultiaddrs().map(String);
  writeDaemonInfo(home, { role: 'device', pid: process.pid, peerId: node.peerId.toString(), addresses, apiUrl: server.url, healthUrl: `${server.url}/health`, model: model.name, startedAt: new Date().toISOString() });
  log.info({ peerId: node.peerId.toString(), name: state.name, addresses, api: server.url, model: model.name }, 'device ready');

  let stopped = false;
  return {
    node, controller, apiUrl: server.url, token,
    async stop() {
      if (stopped) return;
      stopped = true;
      directory.stop();
      events.close();
      await server.close();
      await node.stop();
      await stages.release();
      await ops.release();
      removeDaemonInfo(home, 'device');
      log!.info('device stopped');
    },
  };
}

export async function runDeviceDaemon(o: DeviceDaemonOptions): Promise<void> {
  const home = resolveHome(o.home);
  const log = createLogger(home, 'device');
  const d = await startDeviceDaemon(o, log);
  onShutdown(log, () => d.stop());
}
