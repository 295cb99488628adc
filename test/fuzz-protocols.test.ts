import { describe, it, expect } from 'vitest';
import { loadModel } from '../runtime/model/index.ts';
import { ScxCloud } from '../runtime/scx/cloud.ts';
import { StageServer } from '../runtime/engine/stage-service.ts';
import { InProcessRuntime } from '../runtime/scx/in-process.ts';
import { generateTokens, InProcessPipeline } from '../runtime/engine/index.ts';
import { FuzzRandom, mutate } from './support/fuzz.ts';

/**
 * 10,000 malformed, truncated, oversized and mutated messages into each protocol's handler (the
 * code behind the libp2p stream), interleaved with a healthy session that must still give the exact
 * tokens of the one-process run. The handlers must answer every message with a typed error and never
 * throw or hang. Live-daemon fuzzing over real streams is in e2e-fuzz.test.ts; frames in net-*.test.ts.
 */
const model = loadModel();
const d = model.config.hiddenSize;
const ids = [1, 320, 2455, 278, 1023, 301];

async function reference(): Promise<number[]> {
  const pipe = await InProcessPipeline.create(model);
  const out: number[] = [];
  for await (const t of generateTokens(pipe.forwarder(), ids, { maxTokens: 8, temperature: 0 })) out.push(t.id);
  await pipe.release();
  return out;
}

describe('protocol fuzzing (handlers)', () => {
  it('SCX cloud: 10,000 mutated requests, a healthy session alongside stays exact', async () => {
    const want = await reference();
    const rt = new InProcessRuntime(model);
    const cloud: ScxCloud = rt.cloud;
    const r = new FuzzRandom(7);
    const valid: Record<string, unknown>[] = [
      { type: 'open', session: 'fz', mode: 'scx', model: model.name, start: 1, end: 7 },
      { type: 'P1', session: 'fz', layer: 1, x: new Float32Array(4 * d), rows: 4 },
      { type: 'P2', session: 'fz', layer: 1, q: new Float32Array(8 * 4 * 32), k: new Float32Array(4 * 4 * 32), v: new Float32Array(4 * 4 * 32), n: 4 },
      { type: 'P3', session: 'fz', layer: 1, o: new Float32Array(4 * 256), h: new Float32Array(4 * d), n: 4 },
      { type: 'keyshare', session: 'fz', layers: [{ layer: 1, sigma: new Int32Array(128), tau: new Int32Array(128) }] },
      { type: 'decode', session: 'fz', hidden: new Float32Array(d) },
      { type: 'split', session: 'fz', hidden: new Float32Array(3 * d), rows: 3 },
      { type: 'end', session: 'fz' },
    ];
    const healthy = await rt.forwarder({ mode: 'scx', h: 1, t: 1, scx: { decoys: 2 } });
    const gen = generateTokens(healthy, ids, { maxTokens: 8, temperature: 0 });
    const got: number[] = [];
    const errorNames = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const reply = await cloud.handle(mutate(r.pick(valid), r));
      expect(typeof reply.type).toBe('string');
      if (reply.type === 'error') errorNames.add(reply.name);
      if (i % 1000 === 0) { const n = await gen.next(); if (!n.done) got.push(n.value.id); }
    }
    for (let n = await gen.next(); !n.done; n = await gen.next()) got.push(n.value.id);
    expect(got).toEqual(want);
    expect([...errorNames].every((n) => /^(Scx|UnknownScx|Crossing|MissingKeyShare)/.test(n))).toBe(true);
    expect(errorNames.size).toBeGreaterThan(3);
    cloud.dropAll();
    expect(cloud.sessionCount).toBe(0);
    await rt.release();
  });

  it('stage protocol: 10,000 mutated requests, a healthy session alongside stays exact', async () => {
    const want = await reference();
    const server = new StageServer(model.config, model.weights, model.name);
    const r = new FuzzRandom(11);
    const whole = { embed: true, start: 0, end: 8, head: true };
    const valid: Record<string, unknown>[] = [
      { type: 'open', session: 'fz', stage: { embed: false, start: 2, end: 3, head: false }, model: model.name },
      { type: 'forward', session: 'fz', stage: '2-3', hidden: new Float32Array(2 * d) },
      { type: 'forward', session: 'fz', stage: 'e0-8h', ids: new Int32Array([1, 2, 3]) },
      { type: 'drop', session: 'fz' },
    ];
    expect((await server.handle({ type: 'open', session: 'ok', stage: whole, model: model.name })).type).toBe('opened');
    const got: number[] = [];
    let next = ids;
    const errorNames = new Set<string>();
    for (let i = 0; i < 10_000; i++) {
      const reply = await server.handle(mutate(r.pick(valid), r));
      expect(typeof reply.type).toBe('string');
      if (reply.type === 'error') errorNames.add(reply.name);
      if (i % 1250 === 0 && got.length < 8) {
        const out = await server.handle({ type: 'forward', session: 'ok', stage: 'e0-8h', ids: Int32Array.from(next) });
        expect(out.type).toBe('output');
        const logits = (out as { logits: Float32Array }).logits;
        let best = 0;
        for (let j = 1; j < logits.length; j++) if (logits[j] > logits[best]) best = j;
        got.push(best);
        next = [best];
      }
    }
    expect(got).toEqual(want);
    expect(errorNames.size).toBeGreaterThan(1);
    await server.release();
  });
});
