import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import onnxProto from 'onnx-proto';
import { loadModel, type LoadedModel } from '../runtime/model/index.ts';
import {
  buildStageGraph, buildSubLayerGraph, parseGraphOptions, checkGraphOptions, graphOptionsName,
  gqaRotarySupported, DEFAULT_GRAPH_OPTIONS, STANDARD_GRAPH_OPTIONS, GraphOptionsError, type GraphOptions, type SubLayerOp,
} from '../runtime/model/stage-graphs.ts';
import { InProcessPipeline } from '../runtime/engine/index.ts';
import { createSession, floatTensor, type ort } from '../runtime/engine/ort.ts';
import { GraphVariantModel, GRAPH_VARIANTS } from '../runtime/bench/ops.ts';
import { tinyModel, cleanupTinyModels } from './support/tiny.ts';

afterAll(cleanupTinyModels);

/** max |a - b| / max |b| */
function relErr(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) { num = Math.max(num, Math.abs(a[i] - b[i])); den = Math.max(den, Math.abs(b[i])); }
  return num / den;
}

function promptIds(model: LoadedModel, n: number, seed: number): number[] {
  const out = [1];
  let s = seed;
  while (out.length < n) { s = (s * 16807) % 2147483647; out.push(3 + (s % (model.config.vocabSize - 3))); }
  return out;
}

function randomRows(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) { s = (s * 48271) % 2147483647; a[i] = scale * (s / 2147483647 - 0.5); }
  return a;
}

const alternatives = Object.entries(GRAPH_VARIANTS).filter(([k]) => k !== 'standard');
const TOL = 1e-5;

/**
 * One sequence of calls through a one-stage graph: a prefill (all positions' logits), three single-token decodes
 * and a 5-token continuation on top of the cache (the chunked case GroupQueryAttention treats apart).
 * Returns every logits block and the final KV cache of each layer.
 */
async function trace(m: GraphVariantModel, ids: number[]): Promise<{ logits: Float32Array[]; kv: { k: Float32Array; v: Float32Array }[] }> {
  const V = m.model.config.vocabSize;
  m.reset();
  const logits = [await m.forward(ids, 0)];
  for (let i = 0; i < 3; i++) logits.push(await m.forward([3 + ((ids.length * 31 + i * 7) % (V - 3))]));
  logits.push(await m.forward([5, 6, 7, 8, 9], 0));
  return { logits, kv: Array.from({ length: m.model.config.numLayers }, (_, l) => m.cache(l)) };
}

const tinyCases = [
  { name: 'llama GQA tied f32', opts: { seed: 1, heads: 4, kvHeads: 2 } },
  { name: 'llama MHA untied bf16', opts: { seed: 2, heads: 4, kvHeads: 4, tie: false, dtype: 'bf16' as const } },
  { name: 'qwen2 biases GQA f16', opts: { seed: 3, arch: 'qwen2' as const, heads: 4, kvHeads: 2, hidden: 64, dtype: 'f16' as const } },
  { name: 'llama 1 kv head, rope_theta 1000', opts: { seed: 5, ropeTheta: 1000, heads: 4, kvHeads: 1, layers: 3 } },
];

describe('every graph variant computes the standard graph\'s function (logits and KV within 1e-5 relative)', () => {
  const models: { name: string; model: () => LoadedModel; lengths: number[] }[] = [
    ...tinyCases.map((c) => { let m: LoadedModel | undefined; return { name: c.name, model: () => (m ??= tinyModel(c.opts)), lengths: [1, 17, 150] }; }),
    { name: 'embedded model', model: (() => { let m: LoadedModel | undefined; return () => (m ??= loadModel()); })(), lengths: [1, 40] },
  ];
  for (const mc of models) {
    it(`${mc.name}: ${alternatives.length} variants, prefill ${mc.lengths.join('/')} tokens, decode, chunked continuation`, async () => {
      const model = mc.model();
      const std = await GraphVariantModel.create(model, STANDARD_GRAPH_OPTIONS);
      const want = new Map<number, Awaited<ReturnType<typeof trace>>>();
      for (const n of mc.lengths) want.set(n, await trace(std, promptIds(model, n, n + 11)));
      await std.release();
      for (const [name, opts] of alternatives) {
        const m = await GraphVariantModel.create(model, opts);
        for (const n of mc.lengths) {
          const got = await trace(m, promptIds(model, n, n + 11));
          const w = want.get(n)!;
          got.logits.forEach((g, i) => expect(relErr(g, w.logits[i]), `${name} n=${n} call ${i}`).toBeLessThan(TOL));
          // The cache is a contract too: SCX key sharing installs K after RoPE in [Hkv, P, hd].
          got.kv.forEach((kv, l) => {
            expect(relErr(kv.k, w.kv[l].k), `${name} n=${n} K layer ${l}`).toBeLessThan(TOL);
            expect(relErr(kv.v, w.kv[l].v), `${name} n=${n} V layer ${l}`).toBeLessThan(TOL);
          });
        }
        await m.release();
      }
    });
  }
});

describe('SCX sub-layer ops under every variant match the standard ops', () => {
  async function runOp(model: LoadedModel, op: SubLayerOp, layer: number, opts: GraphOptions, feeds: Record<string, ort.Tensor>): Promise<Float32Array> {
    const s = await createSession(buildSubLayerGraph(model.config, model.weights, op, layer, opts));
    try { return (await s.run(feeds)).out.data as Float32Array; } finally { await s.release(); }
  }

  for (const c of [tinyCases[0], tinyCases[1], tinyCases[2]]) {
    it(`${c.name}: attn_norm, qkv, attention (N=1, 9, 130) and post`, async () => {
      const model = tinyModel(c.opts);
      const { hiddenSize: d, numHeads: H, numKvHeads: Hkv, headDim: hd } = model.config;
      const feedsFor = (op: SubLayerOp, n: number): Record<string, ort.Tensor> => {
        if (op === 'attn_norm') return { hidden: floatTensor(randomRows(n * d, 7 + n, 6), [n, d]) };
        if (op === 'qkv') return { x: floatTensor(randomRows(n * d, 8 + n, 2), [n, d]) };
        if (op === 'attention') {
          return {
            q: floatTensor(randomRows(H * n * hd, 9 + n, 4), [H, n, hd]),
            k: floatTensor(randomRows(Hkv * n * hd, 10 + n, 4), [Hkv, n, hd]),
            v: floatTensor(randomRows(Hkv * n * hd, 11 + n, 4), [Hkv, n, hd]),
          };
        }
        return { o: floatTensor(randomRows(n * H * hd, 12 + n, 2), [n, H * hd]), hidden: floatTensor(randomRows(n * d, 13 + n, 6), [n, d]) };
      };
      for (const op of ['attn_norm', 'qkv', 'attention', 'post'] as SubLayerOp[]) {
        for (const n of [1, 9, 130]) {
          const feeds = feedsFor(op, n);
          const want = await runOp(model, op, 1, STANDARD_GRAPH_OPTIONS, feeds);
          for (const [name, opts] of alternatives) {
            const got = await runOp(model, op, 1, opts, feeds);
            expect(relErr(got, want), `${op} N=${n} ${name}`).toBeLessThan(TOL);
          }
        }
      }
    });
  }
});

describe('graph options', () => {
  function opTypes(bytes: Uint8Array): string[] {
    return onnxProto.onnx.ModelProto.decode(bytes).graph!.node!.map((n) => (n.domain ? `${n.domain}:` : '') + n.opType);
  }
  let model: LoadedModel;
  beforeAll(() => { model = tinyModel({ seed: 1, heads: 4, kvHeads: 2 }); });
  const stage = { embed: true, start: 0, end: 2, head: true };

  it('each variant builds the kernel it names and drops the standard ops it replaces', () => {
    const build = (o: Partial<GraphOptions>) => opTypes(buildStageGraph(model.config, model.weights, stage, { ...STANDARD_GRAPH_OPTIONS, ...o }));
    const std = build({});
    expect(std).toContain('ReduceMean');
    expect(std).toContain('Softmax');
    expect(std.filter((t) => t.includes('Rotary') || t.includes('Attention') || t.includes('Normalization'))).toEqual([]);

    const simplified = build({ rmsNorm: 'simplified' });
    expect(simplified.filter((t) => t === 'SimplifiedLayerNormalization')).toHaveLength(2 * 2 + 1);
    expect(simplified).not.toContain('ReduceMean');
    // skip: the first norm has no pending add; each later one (3 here, including the final norm) fuses one.
    const skip = build({ rmsNorm: 'skip' });
    expect(skip.filter((t) => t === 'com.microsoft:SkipSimplifiedLayerNormalization')).toHaveLength(2 * 2);
    expect(skip.filter((t) => t === 'SimplifiedLayerNormalization')).toHaveLength(1);
    expect(build({ rmsNorm: 'onnx23' }).filter((t) => t === 'RMSNormalization')).toHaveLength(5);

    expect(build({ rope: 'contrib' }).filter((t) => t === 'com.microsoft:RotaryEmbedding')).toHaveLength(2 * 2);
    expect(build({ rope: 'onnx23' }).filter((t) => t === 'RotaryEmbedding')).toHaveLength(2 * 2);

    const gqa = build({ attention: 'gqa' });
    expect(gqa.filter((t) => t === 'com.microsoft:GroupQueryAttention')).toHaveLength(2);
    expect(gqa).not.toContain('Softmax');
    expect(gqa.filter((t) => t === 'Gather')).toHaveLength(1); // embedding only: RoPE runs inside GroupQueryAttention
    // Head size 8: onnxruntime's GroupQueryAttention cannot rotate it, so the stage keeps the standard attention.
    const hd8 = tinyModel({ seed: 3, arch: 'qwen2', heads: 8, kvHeads: 2, hidden: 64 });
    expect(gqaRotarySupported(hd8.config)).toBe(false);
    const gqa8 = opTypes(buildStageGraph(hd8.config, hd8.weights, stage, { ...STANDARD_GRAPH_OPTIONS, attention: 'gqa' }));
    expect(gqa8).not.toContain('com.microsoft:GroupQueryAttention');
    expect(gqa8).toContain('Softmax');
    // ...while its SCX attention op (no rotation) does run GroupQueryAttention.
    expect(opTypes(buildSubLayerGraph(hd8.config, hd8.weights, 'attention', 0, { ...STANDARD_GRAPH_OPTIONS, attention: 'gqa' })))
      .toContain('com.microsoft:GroupQueryAttention');
    const onnx23 = build({ attention: 'onnx23' });
    expect(onnx23.filter((t) => t === 'Attention')).toHaveLength(2);
    expect(onnx23).not.toContain('Softmax');
    // With a fused RoPE too, Q/K/V stay sequence-major from the QKV matmul to the O projection: no transposes.
    const fused = build({ rmsNorm: 'onnx23', rope: 'onnx23', attention: 'onnx23' });
    expect(fused.filter((t) => t === 'Attention')).toHaveLength(2);
    expect(fused.filter((t) => t === 'RotaryEmbedding')).toHaveLength(2 * 2);
    expect(fused).not.toContain('Transpose');
    expect(build({ rope: 'contrib', attention: 'onnx23' })).not.toContain('Transpose');
  });

  it('opset 23 variants import opset 23; contrib ops import com.microsoft; the standard graph imports opset 17 only', () => {
    const imports = (o: GraphOptions) => onnxProto.onnx.ModelProto.decode(buildStageGraph(model.config, model.weights, stage, o)).opsetImport!
      .map((x) => `${x.domain || 'ai.onnx'}@${x.version}`).sort();
    expect(imports(STANDARD_GRAPH_OPTIONS)).toEqual(['ai.onnx@17']);
    expect(imports({ ...STANDARD_GRAPH_OPTIONS, rope: 'onnx23' })).toEqual(['ai.onnx@23']);
    expect(imports({ ...STANDARD_GRAPH_OPTIONS, attention: 'gqa', rmsNorm: 'skip' })).toEqual(['ai.onnx@17', 'com.microsoft@1']);
  });

  it('parses key=value lists, keeps defaults for missing keys and refuses unknown keys and values', () => {
    expect(parseGraphOptions('')).toEqual(DEFAULT_GRAPH_OPTIONS);
    expect(parseGraphOptions('rmsNorm=skip, attention=gqa')).toEqual({ ...DEFAULT_GRAPH_OPTIONS, rmsNorm: 'skip', attention: 'gqa' });
    expect(() => parseGraphOptions('attention=flash')).toThrow(GraphOptionsError);
    expect(() => parseGraphOptions('norm=skip')).toThrow(/key one of rmsNorm, rope, attention/);
    expect(() => checkGraphOptions({ ...STANDARD_GRAPH_OPTIONS, rope: 'yarn' as GraphOptions['rope'] })).toThrow(/rope="yarn"/);
    expect(() => buildStageGraph(model.config, model.weights, stage, { ...STANDARD_GRAPH_OPTIONS, attention: 'x' as GraphOptions['attention'] })).toThrow(GraphOptionsError);
  });

  it(`StageRunner builds DEFAULT_GRAPH_OPTIONS (${graphOptionsName(DEFAULT_GRAPH_OPTIONS)}): same logits bit for bit`, async () => {
    const pipe = await InProcessPipeline.create(model);
    const m = await GraphVariantModel.create(model, DEFAULT_GRAPH_OPTIONS);
    const ids = promptIds(model, 23, 5);
    const a = await pipe.forward('s', ids, { logitsFrom: 0 });
    const b = await m.forward(ids, 0);
    expect(Array.from(a)).toEqual(Array.from(b));
    await pipe.release(); await m.release();
  });
});
