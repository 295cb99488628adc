import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { spawnDaemon, type RunningDaemon } from '../peers/daemon/spawn.ts';
import { STAGE_PROTOCOL, CLOUD_PROTOCOL } from '../peers/daemon/common.ts';
import { loadModel, type LoadedModel } from '../runtime/model/index.ts';
import { InProcessPipeline, generateText } from '../runtime/engine/index.ts';
import { Transcript } from '../runtime/scx/transcript.ts';
import { createHushNode, loadOrCreateIdentity, Roster, CloudList, type HushNode } from '../runtime/net/index.ts';
import { auditTranscript } from './support/wire-audit.ts';

/**
 * Real daemons as separate processes on loopback (two trusted devices, one cloud peer), real libp2p,
 * real onnxruntime sessions, driven through the control API as the app and CLI drive them.
 */
const root = mkdtempSync(join(tmpdir(), 'hush-e2e-'));
const captureDir = join(root, 'capture');
let cloud: RunningDaemon, laptop: RunningDaemon, desktop: RunningDaemon;
let model: LoadedModel;
const PROMPT = 'He said to them, "Go into the village';
const N_TOKENS = 20;

async function viaApi(d: RunningDaemon, body: Record<string, unknown>): Promise<{ text: string; ids: number[]; done: Record<string, unknown> }> {
  let text = '';
  const ids: number[] = [];
  let done: Record<string, unknown> = {};
  for await (const e of d.client!.generate(body)) {
    if (e.type === 'token') { text += e.text as string; ids.push(...(e.ids as number[])); }
    if (e.type === 'done') done = e;
    if (e.type === 'error') throw new Error(JSON.stringify(e));
  }
  return { text, ids, done };
}

beforeAll(async () => {
  [cloud, laptop, desktop] = await Promise.all([
    spawnDaemon('cloud', join(root, 'cloud'), ['--capture', captureDir]),
    // Capped at 15% of the layers, so the scheduler must put the tail on the desktop.
    spawnDaemon('device', join(root, 'laptop'), ['--name', 'laptop', '--max-share', '0.15']),
    spawnDaemon('device', join(root, 'desktop'), ['--name', 'desktop']),
  ]);
  const inv = await laptop.client!.call<{ code: string }>('POST', '/api/v1/invites');
  await desktop.client!.call('POST', '/api/v1/invites/join', { code: inv.code });
  await laptop.client!.call('POST', '/api/v1/clouds', { multiaddr: cloud.info.addresses[0], name: 'gpu' });
  model = loadModel();
}, 180_000);

afterAll(async () => {
  await Promise.all([cloud, laptop, desktop].filter(Boolean).map((d) => d.stop()));
  rmSync(root, { recursive: true, force: true });
});

describe('distributed generation across processes', () => {
  let reference: { text: string; ids: number[] };
  beforeAll(async () => {
    const pipe = await InProcessPipeline.create(model);
    for await (const e of generateText(model.tokenizer, pipe.forwarder(), { prompt: PROMPT, maxTokens: N_TOKENS, temperature: 0, stopIds: model.config.eosTokenIds })) {
      if (e.type === 'done') reference = { text: e.text, ids: e.ids };
    }
    await pipe.release();
  });

  it('the scheduler places trusted stages on the paired desktop around the cloud, and says why', async () => {
    const p = await laptop.client!.call<{ stages: { device: string; role: string; layers: string }[]; why: string[]; predicted: { perTokenMs: number } }>('GET', '/api/v1/plan?mode=scx');
    expect(p.predicted.perTokenMs).toBeGreaterThan(0);
    expect(p.why.length).toBeGreaterThan(0);
    // Pipeline order: embedding and head layers, the cloud block [1, 7), tail layers and LM head.
    const roles = p.stages.map((s) => s.role);
    expect(roles[0]).toBe('embed');
    expect(roles[roles.length - 1]).toBe('head');
    const cloudAt = roles.indexOf('cloud');
    expect(p.stages[cloudAt].layers).toBe('[1, 7) of 8');
    // The laptop may hold one layer (15%): [0, 1) and [7, 8) cannot both be there, so the desktop runs a part.
    expect(p.stages.some((s) => s.device === 'desktop')).toBe(true);
    expect(p.stages.filter((s) => s.role === 'layers' && s.device.includes('laptop')).length).toBeLessThanOrEqual(1);
  });

  for (const mode of ['local', 'split', 'scx'] as const) {
    it(`${mode}: the same greedy tokens as one process running the whole model`, async () => {
      const r = await viaApi(laptop, { prompt: PROMPT, mode, maxTokens: N_TOKENS, temperature: 0 });
      expect(r.ids).toEqual(reference.ids);
      expect(r.text).toBe(reference.text);
      const last = await laptop.client!.call<{ session: { mode: string; crossings: unknown[] } }>('GET', '/api/v1/sessions/last');
      expect(last.session.mode).toBe(mode);
      if (mode === 'local') expect(last.session.crossings).toEqual([]);
      else expect(last.session.crossings.length).toBeGreaterThan(N_TOKENS);
    });
  }

  it('wire audit on what the cloud daemon really received (its capture of decoded frames)', async () => {
    const files = readdirSync(captureDir).filter((f) => f.endsWith('.hushtx'));
    expect(files.length).toBe(2); // the split and the scx session
    const ids = model.tokenizer.encode(PROMPT);
    for (const f of files) {
      const tx = Transcript.load(join(captureDir, f));
      const mode = tx.entries.some((e) => e.crossing === 'P1') ? 'scx' : 'split';
      expect(await auditTranscript(tx, model, { h: 1, t: 1, promptIds: ids, mode })).toEqual([]);
    }
  });

  it('the official openai client streams a chat completion from a device daemon', async () => {
    const client = new OpenAI({ baseURL: `${laptop.info.apiUrl}/v1`, apiKey: (laptop.client as unknown as { token: string }).token });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toContain('debprose-7m');
    const stream = await client.chat.completions.create({
      model: 'debprose-7m', stream: true, max_tokens: 12, temperature: 0,
      messages: [{ role: 'user', content: 'What is a lawyer?' }],
    });
    let text = '';
    let chunks = 0;
    let finish: string | null = null;
    for await (const ch of stream) {
      chunks++;
      text += ch.choices[0]?.delta?.content ?? '';
      finish = ch.choices[0]?.finish_reason ?? finish;
    }
    expect(chunks).toBeGreaterThan(3);
    expect(text.length).toBeGreaterThan(0);
    expect(finish).toBe('length');
  });
});

describe('security across processes', () => {
  let stranger: HushNode;
  let strangerHome: string;
  beforeAll(async () => {
    strangerHome = join(root, 'stranger');
    stranger = await createHushNode({ privateKey: await loadOrCreateIdentity(strangerHome), role: 'device', listen: ['/ip4/127.0.0.1/tcp/0'], roster: await Roster.open(strangerHome), clouds: await CloudList.open(strangerHome) });
  });
  afterAll(async () => stranger?.stop());

  it('the API refuses requests without the token', async () => {
    const r = await fetch(`${laptop.info.apiUrl}/api/v1/devices`);
    expect(r.status).toBe(401);
    const r2 = await fetch(`${laptop.info.apiUrl}/api/v1/devices`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } });
    expect(r2.status).toBe(401);
  });

  it('an unpaired peer cannot open a trusted protocol (refused at the handshake)', async () => {
    await expect(stranger.openChannel(laptop.info.addresses[0], STAGE_PROTOCOL, { timeoutMs: 5000 })).rejects.toMatchObject({ name: 'PeerRefusedError' });
  });

  it('a cloud peer cannot open a trusted protocol', async () => {
    // The cloud daemon's own identity, on a node in this process, dialing the device it serves.
    const cloudKey = await loadOrCreateIdentity(join(root, 'cloud'));
    const asCloud = await createHushNode({ privateKey: cloudKey, role: 'cloud', listen: ['/ip4/127.0.0.1/tcp/0'] });
    try {
      await expect(asCloud.openChannel(laptop.info.addresses[0], STAGE_PROTOCOL, { timeoutMs: 5000 })).rejects.toMatchObject({ name: 'PeerRefusedError' });
    } finally {
      await asCloud.stop();
    }
  });

  it('the cloud protocol is the only one a cloud peer serves', async () => {
    await expect(stranger.openChannel(cloud.info.addresses[0], STAGE_PROTOCOL, { timeoutMs: 5000 })).rejects.toThrow();
    const ch = await stranger.openChannel(cloud.info.addresses[0], CLOUD_PROTOCOL, { timeoutMs: 5000 });
    expect(await ch.request({ type: 'decode', session: 'nope', hidden: new Float32Array(256) })).toMatchObject({ type: 'error', name: 'UnknownScxSessionError' });
    await ch.close();
  });

  it('an invite code works once', async () => {
    const inv = await laptop.client!.call<{ code: string }>('POST', '/api/v1/invites');
    const joined = await stranger.join(inv.code, { name: 'stranger' });
    expect(joined.peerId).toBe(laptop.info.peerId);
    const other = await createHushNode({ privateKey: await loadOrCreateIdentity(join(root, 'other')), role: 'device', listen: ['/ip4/127.0.0.1/tcp/0'], roster: await Roster.open(join(root, 'other')), clouds: CloudList.inMemory() });
    try {
      await expect(other.join(inv.code, { name: 'other' })).rejects.toMatchObject({ name: 'InviteUsedError' });
    } finally {
      await other.stop();
    }
  });

  it('a revoked device is refused by every online device within 1 s', async () => {
    // The stranger paired with the laptop above; the desktop learned it from the laptop's roster.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const devs = await desktop.client!.call<{ devices: { peerId: string }[] }>('GET', '/api/v1/devices');
      if (devs.devices.some((d) => d.peerId === stranger.peerId.toString())) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const ch = await stranger.openChannel(desktop.info.addresses[0], STAGE_PROTOCOL, { timeoutMs: 5000 });
    await ch.close();
    const t0 = Date.now();
    await laptop.client!.call('POST', `/api/v1/devices/${stranger.peerId.toString()}/revoke`);
    let refusedAt = 0;
    for (let i = 0; i < 40 && !refusedAt; i++) {
      try {
        const c = await stranger.openChannel(desktop.info.addresses[0], STAGE_PROTOCOL, { timeoutMs: 1000 });
        await c.close();
        await new Promise((r) => setTimeout(r, 50));
      } catch (e) {
        expect((e as Error).name).toMatch(/PeerRefusedError|ChannelResetError|ChannelClosedError/);
        refusedAt = Date.now();
      }
    }
    expect(refusedAt).toBeGreaterThan(0);
    expect(refusedAt - t0).toBeLessThan(1000);
    await expect(stranger.openChannel(laptop.info.addresses[0], STAGE_PROTOCOL, { timeoutMs: 5000 })).rejects.toMatchObject({ name: 'PeerRefusedError' });
  });
});
