import { describe, it, expect, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { loadModel, type LoadedModel } from '../runtime/model/index.ts';
import { InProcessRuntime, type RunConfig } from '../runtime/scx/in-process.ts';
import { Transcript } from '../runtime/scx/transcript.ts';
import { generateTokens, InProcessPipeline } from '../runtime/engine/index.ts';
import type { TokenForwarder } from '../runtime/engine/generate.ts';
import { tinyModel, cleanupTinyModels } from './support/tiny.ts';

afterAll(cleanupTinyModels);

async function run(fw: TokenForwarder, ids: number[], n: number): Promise<{ tokens: number[]; prefill: Float32Array }> {
  const tokens: number[] = [];
  let prefill: Float32Array | undefined;
  for await (const t of generateTokens(fw, ids, { maxTokens: n, temperature: 0 })) {
    if (t.index === 0) prefill = t.logits;
    tokens.push(t.id);
  }
  return { tokens, prefill: prefill! };
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function promptIds(model: LoadedModel, n: number, seed: number): number[] {
  const ids = [model.config.bosTokenId ?? 1];
  let s = seed;
  while (ids.length < n) { s = (s * 48271) % 2147483647; ids.push(3 + (s % (model.config.vocabSize - 3))); }
  return ids;
}

/** RMS of the first cloud layer's input-norm weight: the scale of the P1 rows. */
function rowScale(model: LoadedModel, layer: number): number {
  const w = model.weights.get(`model.layers.${layer}.input_layernorm.weight`);
  return Math.sqrt(w.reduce((a, x) => a + x * x, 0) / w.length);
}

interface Case { arch: 'gqa' | 'mha'; n: number; h: number; t: number; mode: 'split' | 'scx'; decoys: number | 'N'; noise: 'none' | 'shared' | 'rows'; scale: number }

describe('every mode gives the tokens of the one-stage local run', () => {
  const models = {
    gqa: tinyModel({ seed: 11, layers: 6, hidden: 64, heads: 4, kvHeads: 2, ffn: 128, vocab: 512 }),
    mha: tinyModel({ seed: 12, layers: 7, hidden: 64, heads: 4, kvHeads: 4, ffn: 96, vocab: 400, arch: 'qwen2' }),
  };
  const cases: Case[] = [
    { arch: 'gqa', n: 1, h: 1, t: 1, mode: 'scx', decoys: 0, noise: 'none', scale: 0 },
    { arch: 'gqa', n: 7, h: 2, t: 3, mode: 'scx', decoys: 4, noise: 'shared', scale: 10 },
    { arch: 'gqa', n: 33, h: 3, t: 1, mode: 'scx', decoys: 'N', noise: 'rows', scale: 10 },
    { arch: 'gqa', n: 200, h: 1, t: 2, mode: 'scx', decoys: 4, noise: 'rows', scale: 3 },
    { arch: 'gqa', n: 12, h: 2, t: 2, mode: 'split', decoys: 0, noise: 'none', scale: 0 },
    { arch: 'mha', n: 1, h: 3, t: 3, mode: 'scx', decoys: 'N', noise: 'shared', scale: 10 },
    { arch: 'mha', n: 64, h: 1, t: 1, mode: 'scx', decoys: 0, noise: 'rows', scale: 10 },
    { arch: 'mha', n: 150, h: 2, t: 1, mode: 'scx', decoys: 'N', noise: 'shared', scale: 1 },
    { arch: 'mha', n: 5, h: 1, t: 3, mode: 'split', decoys: 0, noise: 'none', scale: 0 },
  ];
  const refs = new Map<string, Promise<InProcessPipeline>>();
  for (const c of cases) {
    it(`${c.arch} ${c.mode} N=${c.n} h=${c.h} t=${c.t} decoys=${c.decoys} noise=${c.noise}x${c.scale}`, async () => {
      const model = models[c.arch];
      if (!refs.has(c.arch)) refs.set(c.arch, InProcessPipeline.create(model));
      const ref = await refs.get(c.arch)!;
      const ids = promptIds(model, c.n, c.n * 7 + 1);
      const want = await run(ref.forwarder(), ids, 32);
      const rt = new InProcessRuntime(model);
      const fw = await rt.forwarder({ mode: c.mode, h: c.h, t: c.t, scx: { decoys: c.decoys, noise: c.noise, noiseScale: c.scale * rowScale(model, c.h) } });
      const got = await run(fw, ids, 32);
      expect(got.tokens).toEqual(want.tokens);
      expect(maxAbs(got.prefill, want.prefill)).toBeLessThan(1e-3);
      expect(rt.cloud.sessionCount).toBe(0);
      await rt.release();
    });
  }

  it('embedded model: local, split and scx (decoys N, row noise at 10x) all match', async () => {
    const model = loadModel();
    const ref = await InProcessPipeline.create(model);
    const ids = model.tokenizer.encode('LAWYER, n. One skilled in circumvention of the law.');
    const want = await run(ref.forwarder(), ids, 32);
    const rt = new InProcessRuntime(model);
    const configs: RunConfig[] = [
      { mode: 'local' },
      { mode: 'split', h: 2, t: 2 },
      { mode: 'scx', h: 1, t: 1, scx: { decoys: 'N', noise: 'rows', noiseScale: 10 * rowScale(model, 1) } },
      { mode: 'scx', h: 3, t: 2, scx: { decoys: 4, noise: 'shared', noiseScale: 10 * rowScale(model, 3) } },
    ];
    for (const cfg of configs) {
      const got = await run(await rt.forwarder(cfg), ids, 32);
      expect(got.tokens, cfg.mode).toEqual(want.tokens);
      expect(maxAbs(got.prefill, want.prefill)).toBeLessThan(1e-3);
    }
    await rt.release();
    await ref.release();
  });
});

describe('key hygiene', () => {
  const model = tinyModel({ seed: 21, layers: 5, hidden: 64, heads: 4, kvHeads: 2, ffn: 128, vocab: 300 });
  const ids = promptIds(model, 20, 5);
  const scx = { decoys: 4, noise: 'shared' as const, noiseScale: 0.5 };

  async function transcriptOf(seed?: Uint8Array): Promise<Transcript> {
    const tx = new Transcript({ model: model.name, mode: 'scx' });
    const rt = new InProcessRuntime(model, { capture: tx });
    await run(await rt.forwarder({ mode: 'scx', h: 1, t: 1, scx, seed, session: 'fixed-session' }), ids, 4);
    await rt.release();
    return tx;
  }

  it('the same seed replays the same transcript, byte for byte', async () => {
    const seed = randomBytes(32);
    const a = await transcriptOf(seed), b = await transcriptOf(seed);
    expect(Buffer.compare(a.encode(), b.encode())).toBe(0);
  });

  it('two sessions on the same prompt share no permutation and no noise vector', async () => {
    const a = await transcriptOf(), b = await transcriptOf();
    const hd = model.config.headDim, Hkv = model.config.numKvHeads, d = model.config.hiddenSize;
    for (const name of ['sigma', 'tau']) {
      const pa = a.filter({ stage: 'keyshare', name }), pb = b.filter({ stage: 'keyshare', name });
      expect(pa.length).toBe(3);
      for (let i = 0; i < pa.length; i++) {
        for (let g = 0; g < Hkv; g++) {
          const x = pa[i].data.subarray(g * hd, (g + 1) * hd).join(), y = pb[i].data.subarray(g * hd, (g + 1) * hd).join();
          expect(x).not.toBe(y);
        }
      }
    }
    // Shared noise: the P1 rows are x + a; a row-sorted difference between sessions would be 0 if a repeated.
    const xa = a.filter({ crossing: 'P1', direction: 'received' }), xb = b.filter({ crossing: 'P1', direction: 'received' });
    for (let i = 0; i < xa.length; i++) {
      const sa = new Float64Array(d), sb = new Float64Array(d);
      const rows = xa[i].shape[0];
      for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) { sa[j] += xa[i].data[r * d + j] / rows; sb[j] += xb[i].data[r * d + j] / rows; }
      // Column means differ only through noise (same prompt, decoys differ): distinct noise moves them apart.
      let diff = 0;
      for (let j = 0; j < d; j++) diff = Math.max(diff, Math.abs(sa[j] - sb[j]));
      expect(diff).toBeGreaterThan(1e-2);
    }
  });

  it('after a session ends, normally or by error, the coordinator holds no key material', async () => {
    const rt = new InProcessRuntime(model);
    const ok = await rt.forwarder({ mode: 'scx', h: 1, t: 1, scx: { ...scx, noise: 'rows' } });
    await run(ok, ids, 3);
    expect(ok.keys!.isDestroyed).toBe(true);
    expect(ok.keys!.allBuffersZeroed()).toBe(true);
    expect(ok.keys!.trackedBuffers).toBeGreaterThan(0);

    const bad = await rt.forwarder({ mode: 'scx', h: 1, t: 1, scx });
    // Break the prefill midway: the cloud refuses the second layer's P2 because N changed.
    const cloud = rt.cloud;
    const orig = cloud.handle.bind(cloud);
    let calls = 0;
    cloud.handle = async (m: unknown) => {
      const msg = m as { type: string; n?: number };
      if (msg.type === 'P2' && ++calls === 2) msg.n = (msg.n ?? 0) + 1;
      return orig(m);
    };
    await expect(run(bad, ids, 3)).rejects.toThrow(/ScxShapeError|N=/);
    expect(bad.keys!.isDestroyed).toBe(true);
    expect(bad.keys!.allBuffersZeroed()).toBe(true);
    expect(cloud.sessionCount).toBe(0);
    await rt.release();
  });
});
