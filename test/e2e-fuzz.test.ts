import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnDaemon, type RunningDaemon } from '../peers/daemon/spawn.ts';
import { STAGE_PROTOCOL, CLOUD_PROTOCOL } from '../peers/daemon/common.ts';
import { createHushNode, loadOrCreateIdentity, Roster, CloudList, type HushNode, type FrameChannel } from '../runtime/net/index.ts';
import { loadModel } from '../runtime/model/index.ts';
import { InProcessPipeline, generateTokens } from '../runtime/engine/index.ts';
import { FuzzRandom, mutate } from './support/fuzz.ts';

/**
 * Fuzz over real streams: a paired peer sends mutated requests on the stage protocol and anyone sends
 * them on the cloud protocol, while a healthy scx generation runs through the same daemons. Neither
 * daemon may crash or hang, each bad request gets an error, and the healthy answer stays exact.
 */
const root = mkdtempSync(join(tmpdir(), 'hush-fuzz-'));
let cloud: RunningDaemon, device: RunningDaemon, peer: HushNode;

beforeAll(async () => {
  [cloud, device] = await Promise.all([spawnDaemon('cloud', join(root, 'cloud')), spawnDaemon('device', join(root, 'device'), ['--name', 'target'])]);
  await device.client!.call('POST', '/api/v1/clouds', { multiaddr: cloud.info.addresses[0], name: 'gpu' });
  const home = join(root, 'fuzzer');
  peer = await createHushNode({ privateKey: await loadOrCreateIdentity(home), role: 'device', listen: ['/ip4/127.0.0.1/tcp/0'], roster: await Roster.open(home), clouds: CloudList.inMemory() });
  const inv = await device.client!.call<{ code: string }>('POST', '/api/v1/invites');
  await peer.join(inv.code, { name: 'fuzzer' });
}, 180_000);

afterAll(async () => {
  await peer?.stop();
  await Promise.all([cloud, device].filter(Boolean).map((d) => d.stop()));
  rmSync(root, { recursive: true, force: true });
});

async function fuzzChannel(open: () => Promise<FrameChannel>, valid: Record<string, unknown>[], count: number, seed: number): Promise<{ errors: number; reopened: number }> {
  const r = new FuzzRandom(seed);
  let ch = await open();
  let errors = 0, reopened = 0;
  for (let i = 0; i < count; i++) {
    try {
      const reply = await ch.request(mutate(r.pick(valid), r), { timeoutMs: 10_000 }) as { type: string };
      if (reply.type === 'error') errors++;
    } catch (e) {
      // A message msgpack cannot carry, or a channel the daemon closed: a typed error, then a new channel.
      expect((e as Error).name).toMatch(/Error$/);
      errors++;
      if (!ch.isOpen) { ch = await open(); reopened++; }
    }
  }
  await ch.close();
  return { errors, reopened };
}

describe('fuzzing live daemons', () => {
  it('stage and cloud protocols survive malformed requests while a healthy scx session stays exact', async () => {
    const model = loadModel();
    const ids = model.tokenizer.encode('A wise son makes a glad father');
    const pipe = await InProcessPipeline.create(model);
    const want: number[] = [];
    for await (const t of generateTokens(pipe.forwarder(), ids, { maxTokens: 16, temperature: 0 })) want.push(t.id);
    await pipe.release();

    const healthy = (async () => {
      const got: number[] = [];
      for await (const e of device.client!.generate({ prompt: 'A wise son makes a glad father', mode: 'scx', maxTokens: 16, temperature: 0 })) {
        if (e.type === 'token') got.push(...(e.ids as number[]));
        if (e.type === 'error') throw new Error(JSON.stringify(e));
      }
      return got;
    })();
    const d = 256;
    const [stage, scx] = await Promise.all([
      fuzzChannel(() => peer.openChannel(device.info.addresses[0], STAGE_PROTOCOL, { timeoutMs: 10_000 }), [
        { type: 'open', session: 'fz', stage: { embed: false, start: 2, end: 3, head: false }, model: 'debprose-7m' },
        { type: 'forward', session: 'fz', stage: '2-3', hidden: new Float32Array(2 * d) },
        { type: 'drop', session: 'fz' },
      ], 400, 3),
      fuzzChannel(() => peer.openChannel(cloud.info.addresses[0], CLOUD_PROTOCOL, { timeoutMs: 10_000 }), [
        { type: 'open', session: 'fz', mode: 'scx', model: 'debprose-7m', start: 1, end: 7 },
        { type: 'P1', session: 'fz', layer: 1, x: new Float32Array(4 * d), rows: 4 },
        { type: 'decode', session: 'fz', hidden: new Float32Array(d) },
        { type: 'end', session: 'fz' },
      ], 400, 5),
    ]);
    expect(await healthy).toEqual(want);
    expect(stage.errors).toBeGreaterThan(100);
    expect(scx.errors).toBeGreaterThan(100);
    // Both daemons still answer.
    expect((await fetch(cloud.info.healthUrl!)).ok).toBe(true);
    expect((await fetch(device.info.healthUrl!)).ok).toBe(true);
    expect(cloud.child.exitCode).toBeNull();
    expect(device.child.exitCode).toBeNull();
  });
});
