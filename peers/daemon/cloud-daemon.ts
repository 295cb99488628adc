import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import Fastify from 'fastify';
import type { Logger } from 'pino';
import { loadModel } from '../../runtime/model/index.ts';
import { ScxCloud } from '../../runtime/scx/cloud.ts';
import { Transcript } from '../../runtime/scx/transcript.ts';
import { createHushNode, loadOrCreateIdentity, type HushNode } from '../../runtime/net/index.ts';
import { serveRequests } from '../../runtime/net/rpc.ts';
import { faultPoint } from './fault.ts';
import { deviceMeasurement } from './profile.ts';
import { CLOUD_PROTOCOL, MAX_TENSOR_FRAME_BYTES, createLogger, onShutdown, removeDaemonInfo, resolveHome, writeDaemonInfo } from './common.ts';

export interface CloudDaemonOptions {
  home?: string;
  listen?: string[];
  model?: string;
  /** Loopback port of the health endpoint (0 = any). */
  healthPort?: number;
  /** Write what the cloud saw in each session to DIR/<session>.hushtx (audits, the attack harness). */
  captureDir?: string;
  maxSessions?: number;
}

export interface CloudDaemon {
  node: HushNode;
  cloud: ScxCloud;
  healthUrl: string;
  stop(): Promise<void>;
}

/**
 * The cloud peer: serves only the SCX exchange, holds stock weights of the middle layers, never
 * appears on any roster. One channel per coordinator session; when a channel ends, the sessions it
 * opened are dropped (encodings and KV zeroed).
 */
export async function startCloudDaemon(o: CloudDaemonOptions, log?: Logger): Promise<CloudDaemon> {
  const home = resolveHome(o.home);
  log ??= createLogger(home, 'cloud');
  const model = loadModel(o.model, { tokenizer: false });
  const cloud = new ScxCloud(model, { maxSessions: o.maxSessions });
  const measured = (await deviceMeasurement(home, model)).measured;
  const privateKey = await loadOrCreateIdentity(home);
  const node = await createHushNode({ privateKey, role: 'cloud', listen: o.listen ?? ['/ip4/127.0.0.1/tcp/0'] });
  if (o.captureDir) mkdirSync(o.captureDir, { recursive: true });

  await node.handle(CLOUD_PROTOCOL, { trusted: false, maxFrameBytes: MAX_TENSOR_FRAME_BYTES, maxConcurrentChannels: 256, idleTimeoutMs: 120_000 }, async (channel, remotePeer) => {
    const opened = new Set<string>();
    const tx = o.captureDir ? new Transcript({ model: model.name, mode: 'scx' }) : undefined;
    log!.info({ peer: remotePeer.toString() }, 'coordinator channel opened');
    await serveRequests(channel, async (msg) => {
      const f = msg as { type?: string; layer?: number; payload?: unknown };
      // Scheduling inputs a coordinator may ask for: this peer's measured speed, and a bandwidth probe.
      if (f.type === 'profile') return { type: 'profile', profile: { name: 'cloud', model: model.name, measured, sessions: cloud.sessionCount } };
      if (f.type === 'probe') return f.payload instanceof Uint8Array && f.payload.length <= 4 << 20 ? { type: 'probe', bytes: f.payload.length } : { type: 'error', name: 'ScxShapeError', message: 'probe needs a payload of at most 4 MiB' };
      faultPoint(f.type === 'P1' || f.type === 'P2' || f.type === 'P3' ? `${f.type}@${f.layer}` : String(f.type));
      // Capture per channel: sessions of different coordinators never share a transcript.
      cloud.capture = tx;
      const reply = await cloud.handle(msg);
      cloud.capture = undefined;
      const m = msg as { type?: string; session?: string; mode?: string };
      if (m.type === 'open' && reply.type === 'opened') {
        opened.add(m.session!);
        if (tx) tx.header.mode = m.mode ?? 'scx';
        log!.info({ session: m.session, mode: m.mode }, 'session opened');
      }
      if (reply.type === 'error') log!.warn({ session: m.session, error: reply.name, message: reply.message }, 'request refused');
      if (m.type === 'end') {
        opened.delete(m.session!);
        log!.info({ session: m.session }, 'session ended');
        if (tx && o.captureDir) tx.save(join(o.captureDir, `${m.session}.hushtx`));
      }
      return reply;
    }, () => {
      for (const s of opened) cloud.drop(s);
      if (opened.size) log!.info({ sessions: opened.size }, 'channel ended: sessions dropped');
    });
  });

  const health = Fastify({ logger: false });
  health.get('/health', async () => ({ ok: true, role: 'cloud', peerId: node.peerId.toString(), sessions: cloud.sessionCount, model: model.name }));
  await health.listen({ host: '127.0.0.1', port: o.healthPort ?? 0 });
  const addr = health.server.address();
  const healthUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/health`;
  const addresses = node.getMultiaddrs().map(String);
  writeDaemonInfo(home, { role: 'cloud', pid: process.pid, peerId: node.peerId.toString(), addresses, healthUrl, model: model.name, startedAt: new Date().toISOString() });
  log.info({ peerId: node.peerId.toString(), addresses, healthUrl, model: model.name }, 'cloud peer ready');

  let stopped = false;
  return {
    node, cloud, healthUrl,
    async stop() {
      if (stopped) return;
      stopped = true;
      cloud.dropAll();
      await node.stop();
      await health.close();
      await cloud.release();
      removeDaemonInfo(home, 'cloud');
      log!.info('cloud peer stopped');
    },
  };
}

export async function runCloudDaemon(o: CloudDaemonOptions): Promise<void> {
  const home = resolveHome(o.home);
  const log = createLogger(home, 'cloud');
  const d = await startCloudDaemon(o, log);
  onShutdown(log, () => d.stop());
}
