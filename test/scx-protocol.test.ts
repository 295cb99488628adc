import { describe, it, expect, afterAll } from 'vitest';
import { InProcessRuntime } from '../runtime/scx/in-process.ts';
import { ScxCloud } from '../runtime/scx/cloud.ts';
import { Transcript } from '../runtime/scx/transcript.ts';
import { generateTokens } from '../runtime/engine/index.ts';
import { tinyModel, cleanupTinyModels } from './support/tiny.ts';
import { auditTranscript, plaintextStates } from './support/wire-audit.ts';

afterAll(cleanupTinyModels);

const model = tinyModel({ seed: 31, layers: 6, hidden: 64, heads: 4, kvHeads: 2, ffn: 128, vocab: 320 });
const c = model.config;
const d = c.hiddenSize, H = c.numHeads, Hkv = c.numKvHeads, hd = c.headDim, L = c.numLayers;
const ids = [1, 17, 250, 33, 99, 4, 180, 61, 7, 300, 12, 45];
const N = ids.length;
const h = 2, t = 1;

async function consume(fw: Parameters<typeof generateTokens>[0], n: number): Promise<number[]> {
  const out: number[] = [];
  for await (const x of generateTokens(fw, ids, { maxTokens: n, temperature: 0 })) out.push(x.id);
  return out;
}

describe('wire audit of what the cloud saw', () => {
  for (const mode of ['scx', 'split'] as const) {
    it(`${mode}: no token ids, logits, trusted-layer tensors or embedding rows; scx rows never in true order`, async () => {
      const tx = new Transcript({ model: model.name, mode });
      const rt = new InProcessRuntime(model, { capture: tx });
      await consume(await rt.forwarder({ mode, h, t, scx: { decoys: 3, noise: 'rows', noiseScale: 0.3 } }), 6);
      await rt.release();
      expect(tx.entries.length).toBeGreaterThan(0);
      expect(await auditTranscript(tx, model, { h, t, promptIds: ids, mode })).toEqual([]);
      if (mode === 'scx') expect(new Set(tx.filter({ stage: 'keyshare', name: 'sigma' }).map((e) => e.layer))).toEqual(new Set([2, 3, 4]));
    });
  }

  it('the audit catches violations: plaintext true-order rows, a trusted layer, an embedding row', async () => {
    const tx = new Transcript({ model: model.name, mode: 'scx' });
    const plain = await plaintextStates(model, ids);
    tx.record({ session: 's', stage: 'prefill', layer: h, crossing: 'P1', direction: 'received', name: 'x', shape: [N, d], data: plain.normed.get(h)! });
    tx.record({ session: 's', stage: 'prefill', layer: h, crossing: 'P3', direction: 'received', name: 'h', shape: [N, d], data: plain.residual.get(h)! });
    tx.record({ session: 's', stage: 'prefill', layer: 0, crossing: 'S', direction: 'received', name: 'h', shape: [1, d], data: model.weights.get('model.embed_tokens.weight').slice(5 * d, 6 * d) });
    const v = await auditTranscript(tx, model, { h, t, promptIds: ids, mode: 'scx' });
    expect(v.some((x) => x.includes('P1 rows in true order'))).toBe(true);
    expect(v.some((x) => x.includes('P3 rows in true order'))).toBe(true);
    expect(v.some((x) => x.includes('trusted layer'))).toBe(true);
    expect(v.some((x) => x.includes('embedding row 5'))).toBe(true);
  });
});

describe('statelessness and bad input', () => {
  it('after key sharing the cloud stores KV for its layers only, and nothing after the end', async () => {
    const rt = new InProcessRuntime(model);
    const fw = await rt.forwarder({ mode: 'scx', h, t, session: 'audit-1' });
    await fw.prefill(ids);
    const st = rt.cloud.storage('audit-1')!;
    expect(st.layers).toEqual([2, 3, 4]);
    expect(st.kvLength).toBe(N);
    expect(st.encodedLayers).toBe(0); // permuted copies dropped after key sharing
    await fw.decode(5);
    expect(rt.cloud.storage('audit-1')!.kvLength).toBe(N + 1);
    await fw.close();
    expect(rt.cloud.storage('audit-1')).toBeNull();
    await rt.release();
  });

  const cloud = new ScxCloud(model);
  const open = (session: string, mode: 'split' | 'scx' = 'scx') => cloud.handle({ type: 'open', session, mode, model: model.name, start: h, end: L - t });
  const x = (rows: number) => new Float32Array(rows * d).fill(0.1);

  it('unknown session', async () => {
    expect(await cloud.handle({ type: 'decode', session: 'nope', hidden: x(1) })).toMatchObject({ type: 'error', name: 'UnknownScxSessionError' });
  });

  it('a crossing out of order or replayed ends the session', async () => {
    await open('order');
    expect(await cloud.handle({ type: 'P2', session: 'order', layer: h, q: x(N), k: x(N), v: x(N), n: N })).toMatchObject({ type: 'error', name: 'CrossingOrderError' });
    expect(cloud.storage('order')).toBeNull();
    await open('replay');
    expect((await cloud.handle({ type: 'P1', session: 'replay', layer: h, x: x(N), rows: N })).type).toBe('P1');
    expect(await cloud.handle({ type: 'P1', session: 'replay', layer: h, x: x(N), rows: N })).toMatchObject({ type: 'error', name: 'CrossingOrderError' });
    expect(cloud.storage('replay')).toBeNull();
  });

  it('shape and dtype mismatches', async () => {
    await open('shape');
    expect(await cloud.handle({ type: 'P1', session: 'shape', layer: h, x: x(N), rows: N + 1 })).toMatchObject({ type: 'error', name: 'ScxShapeError' });
    await open('dtype');
    expect(await cloud.handle({ type: 'P1', session: 'dtype', layer: h, x: new Float64Array(N * d), rows: N })).toMatchObject({ type: 'error', name: 'ScxShapeError' });
    expect(await cloud.handle({ type: 'open', session: 'bad layers', mode: 'scx', model: model.name, start: 0, end: L })).toMatchObject({ type: 'error', name: 'ScxShapeError' });
    expect(await cloud.handle({ type: 'open', session: 'x', mode: 'scx', model: model.name, start: 0, end: L })).toMatchObject({ type: 'error', name: 'ScxShapeError' });
    expect(await cloud.handle({ type: 'open', session: 'x2', mode: 'scx', model: 'other', start: h, end: L - t })).toMatchObject({ type: 'error', name: 'ScxModelMismatchError' });
    expect(cloud.sessionCount).toBe(0);
  });

  it('decode without key sharing is refused, and the coordinator side ends cleanly', async () => {
    const rt = new InProcessRuntime(model);
    const fw = await rt.forwarder({ mode: 'scx', h, t, session: 'nokeys' });
    const orig = rt.cloud.handle.bind(rt.cloud);
    rt.cloud.handle = async (m: unknown) => ((m as { type: string }).type === 'keyshare' ? { type: 'keyshared' } : orig(m));
    await fw.prefill(ids);
    await expect(fw.decode(5)).rejects.toMatchObject({ name: 'ScxRemoteError', remoteName: 'MissingKeyShareError' });
    await fw.close();
    expect(fw.keys!.allBuffersZeroed()).toBe(true);
    expect(rt.cloud.sessionCount).toBe(0);
    await rt.release();
  });
});
