import { describe, it, expect, afterAll } from 'vitest';
import { InProcessRuntime } from '../runtime/scx/in-process.ts';
import { ScxCloud } from '../runtime/scx/cloud.ts';
import { Transcript } from '../runtime/scx/transcript.ts';
import { generateTokens } from '../runtime/engine/index.ts';
import { SubLayerOps } from '../runtime/engine/sublayer-ops.ts';
import { StageRunner } from '../runtime/engine/stage-runner.ts';
import { tinyModel, cleanupTinyModels } from './support/tiny.ts';

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

/** Plaintext values the audit compares with: residual entering each layer and its RMSNorm, from a local run. */
async function plaintext(): Promise<{ residual: Map<number, Float32Array>; normed: Map<number, Float32Array> }> {
  const residual = new Map<number, Float32Array>(), normed = new Map<number, Float32Array>();
  const ops = new SubLayerOps(c, model.weights);
  let hs: Float32Array | undefined;
  for (let l = 0; l < L; l++) {
    const st = await StageRunner.create(c, model.weights, { embed: l === 0, start: l, end: l + 1, head: false });
    st.openSession('p');
    if (l > 0) { residual.set(l, hs!); normed.set(l, await ops.attnNorm(l, hs!)); }
    hs = (await st.forward('p', l === 0 ? { ids } : { hidden: hs })).hidden!;
    await st.release();
  }
  await ops.release();
  return { residual, normed };
}

function rowsOf(x: Float32Array | Int32Array, w: number): Float32Array[] {
  return Array.from({ length: x.length / w }, (_, i) => Float32Array.from(x.subarray(i * w, (i + 1) * w)));
}
const near = (a: Float32Array, b: Float32Array, tol: number) => a.every((v, i) => Math.abs(v - b[i]) <= tol);

describe('wire audit of what the cloud saw (scx)', async () => {
  const tx = new Transcript({ model: model.name, mode: 'scx' });
  const rt = new InProcessRuntime(model, { capture: tx });
  await consume(await rt.forwarder({ mode: 'scx', h, t, scx: { decoys: 3, noise: 'rows', noiseScale: 0.3 } }), 6);
  await rt.release();
  const plain = await plaintext();

  it('carries no token ids, no logits, and integers only as the cloud layers\' shared sigma/tau', () => {
    for (const e of tx.entries) {
      expect(e.data instanceof Float32Array || (e.stage === 'keyshare' && ['sigma', 'tau'].includes(e.name))).toBe(true);
      expect(e.shape[e.shape.length - 1]).not.toBe(c.vocabSize);
      expect(['ids', 'logits', 'tokens']).not.toContain(e.name);
    }
  });

  it('touches cloud layers only: no head/tail-layer key or KV', () => {
    for (const e of tx.entries) {
      expect(e.layer).toBeGreaterThanOrEqual(h);
      expect(e.layer).toBeLessThan(L - t);
    }
    expect(new Set(tx.filter({ stage: 'keyshare', name: 'sigma' }).map((e) => e.layer))).toEqual(new Set([2, 3, 4]));
  });

  it('no row is within 1e-3 of an embedding row or of its RMSNorm', () => {
    const E = model.weights.get('model.embed_tokens.weight');
    const emb = rowsOf(E, d);
    const normed = emb.map((r) => { const s = Math.sqrt(r.reduce((a, x) => a + x * x, 0) / d + c.rmsNormEps); return r.map((x) => x / s); });
    for (const e of tx.entries) {
      if (!(e.data instanceof Float32Array) || e.shape[e.shape.length - 1] !== d) continue;
      for (const row of rowsOf(e.data, d)) for (let i = 0; i < emb.length; i++) {
        expect(near(row, emb[i], 1e-3)).toBe(false);
        expect(near(row, normed[i], 1e-3)).toBe(false);
      }
    }
  });

  it('no P1 or P3 row set arrives in true order', () => {
    for (let l = h; l < L - t; l++) {
      const p1 = tx.filter({ crossing: 'P1', layer: l, direction: 'received' })[0];
      const p3 = tx.filter({ crossing: 'P3', layer: l, direction: 'received', name: 'h' })[0];
      const trueX = rowsOf(plain.normed.get(l)!, d), trueH = rowsOf(plain.residual.get(l)!, d);
      // With noise the rows match nothing exactly; compare by nearest true row instead.
      const order = (got: Float32Array, truth: Float32Array[]) => rowsOf(got, d).map((r) => {
        let best = -1, bd = Infinity;
        truth.forEach((t2, i) => { let s = 0; for (let j = 0; j < d; j++) s += Math.abs(r[j] - t2[j]); if (s < bd) { bd = s; best = i; } });
        return best;
      });
      const o1 = order(p1.data as Float32Array, trueX);
      expect(o1.slice(0, N)).not.toEqual(Array.from({ length: N }, (_, i) => i));
      const o3 = order(p3.data as Float32Array, trueH);
      expect(o3).not.toEqual(Array.from({ length: N }, (_, i) => i));
      // P3's residual rows are the true rows, only permuted: every one is present.
      expect(new Set(o3).size).toBe(N);
    }
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
