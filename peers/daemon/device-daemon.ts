import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { peerIdFromString } from '@libp2p/peer-id';
import { loadModel } from '../../runtime/model/index.ts';
import { StageServer } from '../../runtime/engine/stage-service.ts';
import { SubLayerOps } from '../../runtime/engine/sublayer-ops.ts';
import type { ScxOptions } from '../../runtime/scx/coordinator.ts';
import { createHushNode, loadOrCreateIdentity, Roster, CloudList, type HushNode } from '../../runtime/net/index.ts';
import { serveRequests } from '../../runtime/net/rpc.ts';
import { EventHub, loadOrCreateApiToken, startControlServer, type HushEvent } from '../../runtime/api/index.ts';
import { DaemonController, type DeviceState } from './device-controller.ts';
import { createLogger, MAX_TENSOR_FRAME_BYTES, onShutdown, removeDaemonInfo, resolveHome, STAGE_PROTOCOL, writeDaemonInfo } from './common.ts';

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
}

export interface DeviceDaemon {
  node: HushNode;
  controller: DaemonController;
  apiUrl: string;
  token: string;
  stop(): Promise<void>;
}

const PING_INTERVAL_MS = 5_000;

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
  const state: DeviceState = { name: o.name ?? settings.name ?? hostname(), links: new Map(), cloudTests: new Map() };
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
      const reply = await stages.handle(msg);
      if (reply.type === 'error') log!.warn({ peer: remotePeer.toString(), error: reply.name, message: reply.message }, 'stage request refused');
      return reply;
    }, async () => { for (const s of sessions) await stages.drop(s); });
  });

  const controller = new DaemonController({
    node, roster, clouds, model, stages, ops, events, state, log, h: o.h ?? 1, t: o.t ?? 1, scx: o.scx ?? {}, startedAt: Date.now(),
  });

  // Online/offline events and RTT for the devices view.
  const online = new Set<string>();
  const onConnect = (evt: CustomEvent) => {
    const id = String(evt.detail);
    if (roster.isTrusted(id) && !online.has(id)) { online.add(id); events.publish({ type: 'device.online', at: new Date().toISOString(), peerId: id }); }
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
    if (ch.type === 'add' && ch.entry) events.publish({ type: 'device.paired', at: new Date().toISOString(), peerId: ch.entry.peerId });
  });
  const pinger = setInterval(() => {
    for (const id of roster.trustedPeerIds()) {
      if (id === node.peerId.toString()) continue;
      const conn = node.libp2p.getConnections().find((c) => c.remotePeer.toString() === id);
      const target = conn?.remotePeer;
      if (!target) {
        // Reconnect to paired devices whose addresses we know: no ghost "offline" devices after a restart.
        node.libp2p.dial(peerIdFromString(id), { signal: AbortSignal.timeout(3000) }).catch(() => undefined);
        continue;
      }
      node.libp2p.services.ping.ping(target, { signal: AbortSignal.timeout(3000) })
        .then((rtt) => state.links.set(id, { rttMs: rtt, lastSeen: new Date().toISOString() }))
        .catch(() => undefined);
    }
  }, PING_INTERVAL_MS);
  pinger.unref();

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
      clearInterval(pinger);
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
