import { createHash } from 'node:crypto';
import {
  cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import {
  CorruptModelFileError, EMBEDDED_MODEL_DIR, MissingTensorError, MissingTokenizerError, ModelError,
  SafetensorsReader, TensorShapeError, UnsupportedModelError, encodeSafetensors, expectedTensors, loadModel,
  type LoadedModel, type StoredDtype,
} from '../runtime/model/index.ts';
import { writeTinyModel, type TinyModelOptions } from '../runtime/model/tiny.ts';
import { forward64, greedy64 } from './support/reference64.ts';

interface Probe { shape: number[]; first4_as_f32: number[]; sum_f64: number; abs_sum_f64: number }
const reference = JSON.parse(readFileSync(join(EMBEDDED_MODEL_DIR, 'reference.json'), 'utf8')) as {
  model_safetensors_sha256: string;
  tensor_probes: Record<string, Probe>;
  prompts: { name: string; text: string; ids: number[]; greedy_new_ids: number[]; greedy_new_text: string }[];
};

let root: string;
let counter = 0;
beforeAll(() => { root = mkdtempSync(join(tmpdir(), 'hush-model-loading-')); });
afterAll(() => rmSync(root, { recursive: true, force: true }));
/** A fresh empty directory path under this file's temp root. */
const freshDir = (label: string) => join(root, `${label}-${counter++}`);

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Run `fn`, expect it to throw exactly `cls` (by instanceof and name), and a message naming each of `names`. */
function expectModelError(fn: () => unknown, cls: new (...args: never[]) => ModelError, names: string[]): ModelError {
  let caught: unknown;
  try { fn(); } catch (e) { caught = e; }
  expect(caught, `expected ${cls.name}`).toBeInstanceOf(cls);
  const err = caught as ModelError;
  expect(err.name).toBe(cls.name);
  for (const n of names) expect(err.message).toContain(n);
  return err;
}

// --- raw safetensors editing, so each corrupt file differs from a good one in exactly one way ---

interface RawSt { header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>; data: Buffer }

function readRaw(file: string): RawSt {
  const buf = readFileSync(file);
  const len = Number(buf.readBigUInt64LE(0));
  return { header: JSON.parse(buf.subarray(8, 8 + len).toString('utf8')), data: buf.subarray(8 + len) };
}

function writeRaw(file: string, raw: RawSt): void {
  let h = JSON.stringify(raw.header);
  while ((8 + Buffer.byteLength(h)) % 8 !== 0) h += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(h)));
  writeFileSync(file, Buffer.concat([len, Buffer.from(h), raw.data]));
}

/** All tensors of a directory's weights as float32 (for re-encoding into other layouts). */
function allTensors(dir: string): { name: string; dtype: StoredDtype; shape: number[]; data: Float32Array }[] {
  const r = SafetensorsReader.openModelDir(dir);
  return [...r.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: r.readFloat32(t.name) }));
}

describe('embedded model (debprose-7m)', () => {
  let model: LoadedModel;
  beforeAll(() => { model = loadModel(); });

  it('loads with the architecture its README describes', () => {
    const c = model.config;
    expect({ arch: c.arch, d: c.hiddenSize, L: c.numLayers, H: c.numHeads, Hkv: c.numKvHeads, hd: c.headDim, ffn: c.intermediateSize, V: c.vocabSize, tie: c.tieWordEmbeddings, eps: c.rmsNormEps, theta: c.ropeTheta, bos: c.bosTokenId, eos: c.eosTokenIds, bias: c.qkvBias, scaling: c.ropeScaling })
      .toEqual({ arch: 'llama', d: 256, L: 8, H: 8, Hkv: 4, hd: 32, ffn: 704, V: 4096, tie: true, eps: 1e-5, theta: 10000, bos: 1, eos: [2], bias: false, scaling: null });
    const m = model.manifest;
    // 6,951,168 parameters per the README: embeddings (shared with the head) + 8 layers + final norm.
    expect(m.embedding.params + m.layers.reduce((s, l) => s + l.params, 0) + m.hiddenSize).toBe(6_951_168);
    expect(model.generation).toEqual({ temperature: 0.8, topK: 40, topP: 0.95 });
  });

  it('model.safetensors has the SHA-256 that reference.json was computed from', () => {
    expect(sha256(join(EMBEDDED_MODEL_DIR, 'model.safetensors'))).toBe(reference.model_safetensors_sha256);
  });

  it('every tensor probe matches (shape, first 4 values, sum and |sum| within 1e-3 relative)', () => {
    const probes = Object.entries(reference.tensor_probes);
    expect(probes.length).toBe(74);
    expect(model.weights.reader.tensors.size).toBe(74);
    for (const [name, p] of probes) {
      expect(model.weights.shape(name), name).toEqual(p.shape);
      expect(model.weights.reader.info(name).dtype).toBe('BF16');
      const v = model.weights.get(name);
      expect(Array.from(v.subarray(0, 4)), name).toEqual(p.first4_as_f32.map(Math.fround));
      let sum = 0, abs = 0;
      for (let i = 0; i < v.length; i++) { sum += v[i]; abs += Math.abs(v[i]); }
      expect(Math.abs(sum - p.sum_f64), name).toBeLessThanOrEqual(1e-3 * Math.max(1, Math.abs(p.sum_f64)));
      expect(Math.abs(abs - p.abs_sum_f64), name).toBeLessThanOrEqual(1e-3 * p.abs_sum_f64);
    }
    model.weights.release();
  });

  it('tokenizer ids match reference.json for every prompt, and decoding round-trips', () => {
    for (const p of reference.prompts) {
      expect(model.tokenizer.encode(p.text), p.name).toEqual(p.ids);
      expect(model.tokenizer.encode(p.text, false), p.name).toEqual(p.ids.slice(1));
      expect(model.tokenizer.decode(p.ids), p.name).toBe(p.text);
      expect(model.tokenizer.decode(p.greedy_new_ids), p.name).toBe(p.greedy_new_text);
    }
    expect(model.tokenizer.bosToken).toBe('<s>');
    expect(model.tokenizer.eosToken).toBe('</s>');
  });
});

describe('writeTinyModel', () => {
  const FILES = ['config.json', 'generation_config.json', 'model.safetensors', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json'];
  const hashes = (dir: string) => Object.fromEntries(readdirSync(dir).sort().map((f) => [f, sha256(join(dir, f))]));

  it('is deterministic: the same options give byte-identical files; another seed changes only the weights', () => {
    const a = freshDir('det'), b = freshDir('det'), c = freshDir('det');
    writeTinyModel(a, { seed: 5, arch: 'qwen2' });
    writeTinyModel(b, { seed: 5, arch: 'qwen2' });
    writeTinyModel(c, { seed: 6, arch: 'qwen2' });
    expect(readdirSync(a).sort()).toEqual(FILES);
    expect(hashes(b)).toEqual(hashes(a));
    const hc = hashes(c), ha = hashes(a);
    expect(hc['model.safetensors']).not.toBe(ha['model.safetensors']);
    expect({ ...hc, 'model.safetensors': '' }).toEqual({ ...ha, 'model.safetensors': '' });
  });

  it('rejects impossible shapes', () => {
    const dir = freshDir('bad-opts');
    expect(() => writeTinyModel(dir, { hidden: 60, heads: 8 })).toThrow(RangeError);
    expect(() => writeTinyModel(dir, { heads: 4, kvHeads: 3 })).toThrow(RangeError);
    expect(() => writeTinyModel(dir, { vocab: 100 })).toThrow(RangeError);
    expect(() => writeTinyModel(dir, { layers: 0 })).toThrow(RangeError);
  });

  const matrix: TinyModelOptions[] = [];
  for (const arch of ['llama', 'qwen2'] as const) {
    for (const dtype of ['f32', 'f16', 'bf16'] as const) for (const tie of [true, false]) matrix.push({ arch, dtype, tie });
  }
  const f32Weights = new Map<string, Map<string, Float32Array>>();

  for (const opts of matrix) {
    it(`${opts.arch} ${opts.dtype} tie=${opts.tie} loads with loadModel and its tokenizer round-trips`, () => {
      const dir = freshDir('tiny');
      writeTinyModel(dir, { ...opts, seed: 11 });
      const m = loadModel(dir);
      const c = m.config;
      expect({ arch: c.arch, L: c.numLayers, d: c.hiddenSize, H: c.numHeads, Hkv: c.numKvHeads, hd: c.headDim, ffn: c.intermediateSize, V: c.vocabSize, tie: c.tieWordEmbeddings, bias: c.qkvBias, theta: c.ropeTheta, maxPos: c.maxPositionEmbeddings, bos: c.bosTokenId, eos: c.eosTokenIds })
        .toEqual({ arch: opts.arch, L: 4, d: 64, H: 4, Hkv: 2, hd: 16, ffn: 128, V: 512, tie: opts.tie, bias: opts.arch === 'qwen2', theta: 10000, maxPos: 512, bos: 1, eos: [2] });
      const expected = expectedTensors(c);
      expect(new Set(m.weights.reader.tensors.keys())).toEqual(new Set(expected.keys()));
      const stored = { f32: 'F32', f16: 'F16', bf16: 'BF16' }[opts.dtype!];
      for (const t of m.weights.reader.tensors.values()) expect(t.dtype).toBe(stored);

      // Same seed, other dtype: the values are the f32 values rounded to that dtype.
      const key = `${opts.arch}-${opts.tie}`;
      const values = new Map([...expected.keys()].map((n) => [n, m.weights.get(n)]));
      if (opts.dtype === 'f32') f32Weights.set(key, values);
      const base = f32Weights.get(key);
      expect(base, 'f32 variant ran first').toBeDefined();
      const relTol = { f32: 0, f16: 2 ** -11, bf16: 2 ** -8 }[opts.dtype!];
      // Round-to-nearest: at most half a unit in the last place, relative; f16 subnormals (below 2^-14)
      // have a fixed spacing of 2^-24 instead, so allow half of that absolutely.
      let worstExcess = 0;
      for (const [n, v] of values) {
        const ref = base!.get(n)!;
        for (let i = 0; i < v.length; i++) worstExcess = Math.max(worstExcess, Math.abs(v[i] - ref[i]) - relTol * Math.abs(ref[i]));
      }
      expect(worstExcess).toBeLessThanOrEqual(2 ** -25);
      if (opts.arch === 'qwen2') {
        const bias = m.weights.get('model.layers.0.self_attn.q_proj.bias');
        expect(bias.some((x) => Math.abs(x) > 0.1)).toBe(true);
      }

      const texts = ['The river runs slowly past the old mill.', 'Ünïcödé — 你好 🙂 tabs\there\r\n  123 “quotes”', ''];
      for (const text of texts) {
        const ids = m.tokenizer.encode(text);
        expect(ids[0]).toBe(1);
        expect(Math.max(...ids)).toBeLessThan(512);
        expect(m.tokenizer.decode(ids)).toBe(text);
      }
      // BPE training did merge: common English needs far fewer tokens than bytes.
      expect(m.tokenizer.encode(texts[0], false).length).toBeLessThan(texts[0].length / 2);

      const logits = forward64(m, m.tokenizer.encode(texts[0]), { lastOnly: true }).logits[0];
      expect(logits.every(Number.isFinite)).toBe(true);
    });
  }

  it('tokenizer.json is a consistent byte-level BPE: ids 0..vocab-1, every merge and its result in the vocab', () => {
    for (const vocab of [259, 512, 3000]) {
      const dir = freshDir('tok');
      writeTinyModel(dir, { vocab, layers: 1, hidden: 8, heads: 2, kvHeads: 1, ffn: 8 });
      const tj = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
      const v = tj.model.vocab as Record<string, number>;
      expect(Object.values(v).sort((a, b) => a - b)).toEqual(Array.from({ length: vocab }, (_, i) => i));
      expect([v['<unk>'], v['<s>'], v['</s>'], v['Ā'], v['Ġ'], v['A'], v['ÿ']]).toEqual([0, 1, 2, 3, 3 + 0x20, 3 + 0x41, 3 + 0xff]);
      expect(tj.model.merges.length).toBeGreaterThanOrEqual(vocab - 259);
      for (const merge of tj.model.merges as string[]) {
        const [a, b] = merge.split(' ');
        expect(v[a] !== undefined && v[b] !== undefined && v[a + b] !== undefined, merge).toBe(true);
      }
      const m = loadModel(dir);
      // Every id decodes to something (a random model may emit any of them).
      const empty = Array.from({ length: vocab - 3 }, (_, i) => i + 3).filter((id) => m.tokenizer.decode([id]).length === 0);
      expect(empty).toEqual([]);
    }
  });

  it('the default tiny model makes confident, varied greedy predictions', () => {
    const dir = freshDir('margins');
    writeTinyModel(dir);
    const m = loadModel(dir);
    const margins: number[] = [];
    const generated: number[] = [];
    for (const text of ['The river runs slowly past the old mill.', 'Questions that visitors often ask:']) {
      const g = greedy64(m, m.tokenizer.encode(text), 16);
      margins.push(...g.margins);
      generated.push(...g.ids);
    }
    margins.sort((a, b) => a - b);
    expect(margins[0]).toBeGreaterThan(1e-3);
    expect(margins[margins.length >> 1]).toBeGreaterThan(1);
    expect(new Set(generated).size).toBeGreaterThan(8);
  });
});

describe('bad model directories fail with a typed error naming the file and tensor', () => {
  let good: string;
  beforeAll(() => {
    good = freshDir('good');
    writeTinyModel(good, { seed: 2 });
  });
  /** A copy of the good tiny model to break. */
  const copy = () => { const d = freshDir('bad'); cpSync(good, d, { recursive: true }); return d; };
  const st = (dir: string) => join(dir, 'model.safetensors');

  it('truncated safetensors (cut inside the data)', () => {
    const d = copy();
    const raw = readRaw(st(d));
    const last = Object.entries(raw.header).filter(([n]) => n !== '__metadata__')
      .sort((a, b) => (b[1] as { data_offsets: number[] }).data_offsets[1] - (a[1] as { data_offsets: number[] }).data_offsets[1])[0][0];
    truncateSync(st(d), readFileSync(st(d)).length - 100);
    const e = expectModelError(() => loadModel(d), CorruptModelFileError, ['model.safetensors', last, 'truncated']);
    expect(e.file).toBe(st(d));
    expect(e.tensor).toBe(last);
  });

  it('truncated safetensors (cut inside the header)', () => {
    const d = copy();
    truncateSync(st(d), 40);
    expectModelError(() => loadModel(d), CorruptModelFileError, ['model.safetensors', 'header length']);
    truncateSync(st(d), 5);
    expectModelError(() => loadModel(d), CorruptModelFileError, ['model.safetensors', 'truncated']);
  });

  it('corrupt header (garbage instead of JSON)', () => {
    const d = copy();
    const buf = readFileSync(st(d));
    const len = Number(buf.readBigUInt64LE(0));
    buf.fill(0x7a, 8, 8 + len); // 'zzzz...'
    writeFileSync(st(d), buf);
    expectModelError(() => loadModel(d), CorruptModelFileError, ['model.safetensors', 'not valid JSON']);
  });

  it('header that is JSON but not an object, and a tensor entry that is not an object', () => {
    const d = copy();
    writeRaw(st(d), { header: [] as unknown as RawSt['header'], data: Buffer.alloc(0) });
    expectModelError(() => loadModel(d), CorruptModelFileError, ['model.safetensors', 'not a JSON object']);
    const raw = readRaw(st(good));
    (raw.header as Record<string, unknown>)['model.norm.weight'] = 7;
    writeRaw(st(d), raw);
    expectModelError(() => loadModel(d), CorruptModelFileError, ['model.safetensors', 'model.norm.weight']);
  });

  it('header length larger than the file', () => {
    const d = copy();
    const buf = readFileSync(st(d));
    buf.writeBigUInt64LE(BigInt(buf.length), 0);
    writeFileSync(st(d), buf);
    expectModelError(() => loadModel(d), CorruptModelFileError, ['model.safetensors', `header length ${buf.length}`]);
    buf.writeBigUInt64LE(2n ** 62n, 0);
    writeFileSync(st(d), buf);
    expectModelError(() => loadModel(d), CorruptModelFileError, ['model.safetensors', 'exceeds the file']);
  });

  it("a tensor whose data_offsets don't match its shape", () => {
    const d = copy();
    const raw = readRaw(st(d));
    const name = 'model.layers.2.self_attn.v_proj.weight';
    const t = raw.header[name] as { data_offsets: [number, number] };
    t.data_offsets = [t.data_offsets[0], t.data_offsets[1] - 4];
    writeRaw(st(d), raw);
    const e = expectModelError(() => loadModel(d), CorruptModelFileError, ['model.safetensors', name, 'F32[32,64] needs 8192 bytes']);
    expect(e.tensor).toBe(name);
  });

  it('a missing tensor', () => {
    const d = copy();
    const name = 'model.layers.1.mlp.up_proj.weight';
    writeFileSync(st(d), encodeSafetensors(allTensors(good).filter((t) => t.name !== name)));
    const e = expectModelError(() => loadModel(d), MissingTensorError, ['model.safetensors', name, '[128,64]']);
    expect(e.tensor).toBe(name);
  });

  it('a mis-shaped tensor: config.json disagrees with the weights', () => {
    const d = copy();
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    cfg.intermediate_size = 96;
    writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
    const e = expectModelError(() => loadModel(d), TensorShapeError, ['model.safetensors', 'mlp.gate_proj.weight', '[128,64]', '[96,64]']);
    expect(e.tensor).toBe('model.layers.0.mlp.gate_proj.weight');
  });

  it('a mis-shaped tensor: one tensor stored with the wrong shape', () => {
    const d = copy();
    const name = 'model.layers.3.self_attn.k_proj.weight';
    const tensors = allTensors(good).map((t) => (t.name === name ? { ...t, shape: [16, 64], data: t.data.subarray(0, 16 * 64) } : t));
    writeFileSync(st(d), encodeSafetensors(tensors));
    const e = expectModelError(() => loadModel(d), TensorShapeError, ['model.safetensors', name, '[16,64]', '[32,64]']);
    expect(e.file).toBe(st(d));
  });

  it('unsupported model_type', () => {
    const d = copy();
    const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
    cfg.model_type = 'gpt2';
    writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
    expectModelError(() => loadModel(d), UnsupportedModelError, ['config.json', '"gpt2"']);
  });

  it('LLaMA options whose biases the loader has no place for (attention_bias, mlp_bias)', () => {
    for (const [key, words] of [['attention_bias', 'attention_bias'], ['mlp_bias', 'mlp_bias']] as const) {
      const d = copy();
      const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
      cfg[key] = true;
      writeFileSync(join(d, 'config.json'), JSON.stringify(cfg));
      expectModelError(() => loadModel(d), UnsupportedModelError, ['config.json', words]);
    }
  });

  it('missing or corrupt config.json', () => {
    const d = copy();
    unlinkSync(join(d, 'config.json'));
    expectModelError(() => loadModel(d), ModelError, ['config.json', 'missing']);
    writeFileSync(join(d, 'config.json'), '{"model_type": "llama",');
    expectModelError(() => loadModel(d), ModelError, ['config.json', 'not valid JSON']);
  });

  it('unsupported dtype (an I8 tensor)', () => {
    const d = copy();
    const raw = readRaw(st(d));
    const name = 'model.norm.weight';
    (raw.header[name] as { dtype: string; shape: number[] }).dtype = 'I8';
    (raw.header[name] as { dtype: string; shape: number[] }).shape = [256]; // same 256 bytes as F32[64]
    writeRaw(st(d), raw);
    const e = expectModelError(() => loadModel(d), UnsupportedModelError, ['model.safetensors', name, '"I8"']);
    expect(e.tensor).toBe(name);
  });

  it('missing tokenizer.json (weights alone still load when no tokenizer is asked for)', () => {
    const d = copy();
    unlinkSync(join(d, 'tokenizer.json'));
    const e = expectModelError(() => loadModel(d), MissingTokenizerError, ['tokenizer.json', 'missing']);
    expect(e.file).toBe(join(d, 'tokenizer.json'));
    expect(loadModel(d, { tokenizer: false }).config.hiddenSize).toBe(64);
  });

  it('corrupt tokenizer.json (not JSON; JSON but not a tokenizer)', () => {
    const d = copy();
    writeFileSync(join(d, 'tokenizer.json'), '{"version": "1.0", "model": {');
    expectModelError(() => loadModel(d), MissingTokenizerError, ['tokenizer.json', 'not valid JSON']);
    writeFileSync(join(d, 'tokenizer.json'), JSON.stringify({ version: '1.0', model: { type: 'Nope' } }));
    expectModelError(() => loadModel(d), MissingTokenizerError, ['tokenizer.json', 'cannot be loaded']);
  });

  describe('sharded checkpoints (model.safetensors.index.json)', () => {
    const SHARDS = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    /** The good model split in two shards with an index, model.safetensors removed. */
    function sharded(): { dir: string; weightMap: Record<string, string> } {
      const d = copy();
      const tensors = allTensors(good);
      const half = Math.ceil(tensors.length / 2);
      const parts = [tensors.slice(0, half), tensors.slice(half)];
      const weightMap: Record<string, string> = {};
      parts.forEach((p, i) => {
        writeFileSync(join(d, SHARDS[i]), encodeSafetensors(p));
        for (const t of p) weightMap[t.name] = SHARDS[i];
      });
      unlinkSync(st(d));
      writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
      return { dir: d, weightMap };
    }

    it('a 2-shard model loads equal to the single file', () => {
      const { dir } = sharded();
      const single = loadModel(good);
      const split = loadModel(dir);
      expect(split.weights.reader.files.map((f) => f.slice(dir.length + 1)).sort()).toEqual(SHARDS);
      for (const name of expectedTensors(single.config).keys()) {
        expect(split.weights.get(name), name).toEqual(single.weights.get(name));
      }
      const ids = single.tokenizer.encode('Shards load the same.');
      expect(forward64(split, ids, { lastOnly: true }).logits[0]).toEqual(forward64(single, ids, { lastOnly: true }).logits[0]);
    });

    it('an index naming a missing shard fails clearly', () => {
      const { dir } = sharded();
      unlinkSync(join(dir, SHARDS[1]));
      const e = expectModelError(() => loadModel(dir), ModelError, [SHARDS[1], 'missing']);
      expect(e.file).toBe(join(dir, SHARDS[1]));
    });

    it('an index listing a tensor its shard does not hold', () => {
      const { dir, weightMap } = sharded();
      weightMap['model.layers.9.mlp.up_proj.weight'] = SHARDS[0];
      writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
      expectModelError(() => loadModel(dir), MissingTensorError, ['model.safetensors.index.json', 'model.layers.9.mlp.up_proj.weight', SHARDS[0]]);
    });

    it('a tensor stored in both shards is ambiguous', () => {
      const { dir } = sharded();
      const first = allTensors(good)[0];
      const second = readRaw(join(dir, SHARDS[1]));
      const tensors = [...Object.keys(second.header)].filter((n) => n !== '__metadata__');
      const r = SafetensorsReader.openFile(join(dir, SHARDS[1]));
      const rebuilt = tensors.map((n) => ({ name: n, dtype: r.info(n).dtype, shape: r.info(n).shape, data: r.readFloat32(n) }));
      writeFileSync(join(dir, SHARDS[1]), encodeSafetensors([...rebuilt, first]));
      expectModelError(() => loadModel(dir), CorruptModelFileError, [SHARDS[1], first.name, SHARDS[0]]);
    });

    it('a corrupt index and a shard name with a path are refused', () => {
      const { dir, weightMap } = sharded();
      writeFileSync(join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
      expectModelError(() => loadModel(dir), CorruptModelFileError, ['model.safetensors.index.json', 'not valid JSON']);
      weightMap['model.norm.weight'] = '../elsewhere.safetensors';
      writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
      expectModelError(() => loadModel(dir), CorruptModelFileError, ['model.safetensors.index.json', '../elsewhere.safetensors']);
    });
  });

  it('a directory with no weights at all', () => {
    const d = copy();
    unlinkSync(st(d));
    expectModelError(() => loadModel(d), ModelError, ['model.safetensors']);
  });
});
