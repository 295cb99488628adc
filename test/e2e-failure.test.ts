import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnDaemon, type RunningDaemon } from '../peers/daemon/spawn.ts';
import { loadModel } from '../runtime/model/index.ts';
import { InProcessPipeline, generateTokens } from '../runtime/engine/index.ts';
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostFingerprint, PROFILE_FILE } from '../runtime/scheduler/profile.ts';

/**
 * Peers die mid-answer (SIGKILL at a chosen point, or SIGSTOP: a partition that keeps connections
 * open) and the answer still equals the undisturbed one: no token lost, none repeated.
 */
const root = mkdtempSync(join(tmpdir(), 'hush-fail-'));
const PROMPT = 'The LORD is my shepherd; I shall not want. He makes me lie down';
const N = 16;
let laptop: RunningDaemon, spare: RunningDaemon, slowDesk: RunningDaemon;
const victims: Record<string, RunningDaemon> = {};
let want: number[] = [];
let model: ReturnType<typeof loadModel>;
const all = () => [laptop, spare, slowDesk, ...Object.values(victims)].filter(Boolean);

async function run(body: Record<string, unknown>) {
  const ids: number[] = [];
  const events: Record<string, unknown>[] = [];
  let error: Record<string, unknown> | undefined;
  let done: Record<string, unknown> | undefined;
  for await (const e of laptop.client!.generate({ prompt: PROMPT, maxTokens: N, temperature: 0, ...body })) {
    if (e.type === 'token') ids.push(...(e.ids as number[]));
    if (e.type === 'event') events.push(e.event as Record<string, unknown>);
    if (e.type === 'error') error = e.error as Record<string, unknown>;
    if (e.type === 'done') done = e;
  }
  return { ids, events, error, done };
}

async function useClouds(...clouds: RunningDaemon[]) {
  const cur = await laptop.client!.call<{ clouds: { id: string }[] }>('GET', '/api/v1/clouds');
  for (const c of cur.clouds) await laptop.client!.call('DELETE', `/api/v1/clouds/${c.id}`);
  for (const [i, c] of clouds.entries()) await laptop.client!.call('POST', '/api/v1/clouds', { multiaddr: c.info.addresses[0], name: `c${i}-${c.info.peerId.slice(-6)}` });
}

async function pair(d: RunningDaemon) {
  const inv = await laptop.client!.call<{ code: string }>('POST', '/api/v1/invites');
  await d.client!.call('POST', '/api/v1/invites/join', { code: inv.code });
}

beforeAll(async () => {
  model = loadModel();
  const pipe = await InProcessPipeline.create(model);
  for await (const t of generateTokens(pipe.forwarder(), model.tokenizer.encode(PROMPT), { maxTokens: N, temperature: 0, stopIds: model.config.eosTokenIds })) want.push(t.id);
  await pipe.release();
  // Nine processes on two cores: start them three at a time.
  const timeoutMs = 150_000;
  const cloudVictim = (name: string, fault: string, action = 'kill') => () =>
    spawnDaemon('cloud', join(root, name), [], { timeoutMs, env: { HUSH_FAULT: fault, HUSH_FAULT_ACTION: action } }).then((d) => { victims[name] = d; });
  const deviceVictim = (name: string, fault: string) => () =>
    spawnDaemon('device', join(root, name), ['--name', name], { timeoutMs, env: { HUSH_FAULT: fault } }).then((d) => { victims[name] = d; });
  // The laptop may hold 15% of the layers (battery saver), so the tail goes to a paired device: a
  // fast victim while it lives, then the slow desk. The slow desk's and the spare cloud's profiles are
  // seeded as cached measurements 20x slower than real ones, so the scheduler prefers any victim.
  const ref = model.manifest.layers[0];
  const seedSlowProfile = (home: string) => {
    mkdirSync(home, { recursive: true });
    writeFileSync(join(home, PROFILE_FILE), JSON.stringify({ version: 1, measuredAt: Date.now(), host: hostFingerprint(), measured: {
      memoryBytes: 8e9, reference: { flopsPerToken: ref.flopsPerToken, flopsPerTokenPerContext: ref.flopsPerTokenPerContext, bytes: ref.bytes },
      prefillTokens: 32, prefillMsPerLayer: 40, decodeContext: 64, decodeMsPerLayer: 20, label: 'seeded slow device' } }));
  };
  const slowHome = join(root, 'slow-desk');
  seedSlowProfile(slowHome);
  // The spare cloud too: the scheduler prefers each (fast) victim cloud while it lives.
  seedSlowProfile(join(root, 'spare'));
  const starts = [
    () => spawnDaemon('device', join(root, 'laptop'), ['--name', 'laptop', '--max-share', '0.15'], { timeoutMs }).then((d) => { laptop = d; }),
    () => spawnDaemon('device', slowHome, ['--name', 'slow-desk'], { timeoutMs }).then((d) => { slowDesk = d; }),
    () => spawnDaemon('cloud', join(root, 'spare'), [], { timeoutMs }).then((d) => { spare = d; }),
    deviceVictim('desk-prefill', 'forward:1'),
    deviceVictim('desk-decode', 'forward:6'),
    cloudVictim('cloud-prefill', 'P2@3'),
    cloudVictim('cloud-keyshare', 'keyshare'),
    cloudVictim('cloud-decode', 'decode:5'),
    cloudVictim('cloud-partition', 'decode:3', 'stop'),
    cloudVictim('cloud-only', 'decode:4'),
  ];
  for (let i = 0; i < starts.length; i += 3) await Promise.all(starts.slice(i, i + 3).map((f) => f()));
  await pair(slowDesk);
}, 600_000);

afterAll(async () => {
  for (const d of all()) if (d.child.signalCode === null && d.child.exitCode === null) d.child.kill('SIGCONT');
  await Promise.all(all().map((d) => d.stop()));
  rmSync(root, { recursive: true, force: true });
});

describe('generation survives failure', () => {
  it('trusted device SIGKILLed during prefill (it hosted the tail)', async () => {
    await useClouds(spare);
    await pair(victims['desk-prefill']);
    const r = await run({ mode: 'scx' });
    expect(victims['desk-prefill'].child.signalCode).toBe('SIGKILL');
    expect(r.error).toBeUndefined();
    expect(r.ids).toEqual(want);
    expect(r.events.some((e) => e.type === 'recovery')).toBe(true);
  });

  it('trusted device SIGKILLed after 5 generated tokens', async () => {
    await pair(victims['desk-decode']);
    const r = await run({ mode: 'scx' });
    expect(victims['desk-decode'].child.signalCode).toBe('SIGKILL');
    expect(r.ids).toEqual(want);
    const rec = r.events.find((e) => e.type === 'recovery') as { data: { phase: string; atToken: number } };
    expect(rec.data.phase).toBe('decode');
    expect(rec.data.atToken).toBe(5);
  });

  for (const [name, phase] of [['cloud-prefill', 'prefill'], ['cloud-keyshare', 'prefill'], ['cloud-decode', 'decode']] as const) {
    it(`cloud peer SIGKILLed (${name.replace('cloud-', '')}), fails over to a second cloud peer`, async () => {
      await useClouds(victims[name], spare);
      const r = await run({ mode: 'scx' });
      expect(victims[name].child.signalCode).toBe('SIGKILL');
      expect(r.error).toBeUndefined();
      expect(r.ids).toEqual(want);
      const rec = r.events.find((e) => e.type === 'recovery') as { peerId: string; data: { phase: string; role: string } };
      expect(rec.peerId).toBe(victims[name].info.peerId);
      expect(rec.data.role).toBe('cloud');
      expect(rec.data.phase).toBe(phase);
    });
  }

  it('a partition (cloud stops answering, connection left open) recovers the same way', async () => {
    await useClouds(victims['cloud-partition'], spare);
    const r = await run({ mode: 'scx' });
    expect(r.ids).toEqual(want);
    const rec = r.events.find((e) => e.type === 'recovery') as { peerId: string; message: string };
    expect(rec.peerId).toBe(victims['cloud-partition'].info.peerId);
  });

  it('when no placement is possible the error names what is missing and the partial text is kept', async () => {
    await useClouds(victims['cloud-only']);
    const r = await run({ mode: 'scx' });
    expect(r.done).toBeUndefined();
    expect(r.error?.name).toBe('NoPlacementError');
    expect(String(r.error?.message)).toMatch(/no cloud peer can host layers \[1, 7\)/);
    // Four decode requests reached the cloud before it died: the first tokens were streamed and kept.
    expect(r.ids.length).toBeGreaterThanOrEqual(4);
    expect(r.ids).toEqual(want.slice(0, r.ids.length));
  });
});
