import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expectedTensors, parseConfig } from './config.ts';
import { encodeSafetensors, type StoredDtype } from './safetensors.ts';

/**
 * Randomly initialised Hugging Face model directories for tests, benchmarks and the attack harness
 * (`hush model tiny`). Everything is a pure function of the options: the same options give
 * byte-identical files on every machine.
 */
export interface TinyModelOptions {
  seed?: number;
  arch?: 'llama' | 'qwen2';
  layers?: number;
  hidden?: number;
  heads?: number;
  kvHeads?: number;
  ffn?: number;
  vocab?: number;
  tie?: boolean;
  dtype?: 'f32' | 'f16' | 'bf16';
  ropeTheta?: number;
  maxPositions?: number;
}

const DEFAULTS: Required<TinyModelOptions> = {
  seed: 0, arch: 'llama', layers: 4, hidden: 64, heads: 4, kvHeads: 2, ffn: 128, vocab: 512,
  tie: true, dtype: 'f32', ropeTheta: 10000, maxPositions: 512,
};

/** Special tokens, then the 256 byte symbols: the layout of the embedded model's tokenizer. */
const SPECIALS = ['<unk>', '<s>', '</s>'] as const;
const FIRST_MERGED_ID = SPECIALS.length + 256;
/** Synthetic merges (after the trained ones) can reach 259 + 94*94 tokens; beyond that we refuse. */
const MAX_VOCAB = 8192;

const STORED: Record<NonNullable<TinyModelOptions['dtype']>, { st: StoredDtype; torch: string }> = {
  f32: { st: 'F32', torch: 'float32' },
  f16: { st: 'F16', torch: 'float16' },
  bf16: { st: 'BF16', torch: 'bfloat16' },
};

/**
 * Plain English written for this file (no third-party text), long enough that BPE training on it
 * yields several hundred merges with real frequency behind them.
 */
const TRAINING_TEXT = `The river runs slowly past the old mill, and in the evening the light on the water turns from silver to gold.
People in the town say that the mill was built by a man who wanted to grind the grain of the whole valley. He worked for years on the wheel, the stones and the long wooden shafts, and when it was finished he found that the farmers had already sold their grain to a bigger mill in the city. So the wheel turned for nothing, and the man sat by the door and watched it turn.
Today the mill is a library. The shelves stand where the stones once stood, and the reading room looks out over the weir. Children come in the afternoon to read about ships, trains, stars and animals; their parents come in the evening to read the newspapers and to talk about the weather.
"It will rain tomorrow," said the librarian, who had lived in the town for forty-two years. "It always rains on the day of the market."
"Then we will take the umbrellas," answered the baker, "and we will sell the bread under the bridge, as we did last year."
A small program can count the words in a text. It reads the text line by line, splits each line into words, and adds one to the count of every word it sees. When it has read the whole file, it prints the words that were seen most often, with their counts: the, and, of, to, a, in, it, was, that, he.
If the file is very large, the program should not read it into memory at once. It should read a little at a time, keep only the counts, and throw away the lines it has finished with. This is how most tools that work on large files are written, and it is why they can handle files that are larger than the memory of the computer.
In 1887 the bridge was rebuilt in stone. It has seven arches, and the middle arch is the widest, so that the boats with the tallest masts can pass under it at high water. On the first of May there is a race between the boats, from the mill to the bridge and back again; the winner is given a loaf of bread, a bottle of wine and a flag to fly for the rest of the year.
Questions that visitors often ask: Where is the station? How far is it to the sea? When does the library open? Can we walk along the river to the next village? The answers are written on a board at the door: the station is ten minutes away, the sea is thirty-five miles to the west, the library opens at nine and closes at six, and yes, there is a path all the way along the river.
Some things never change in a place like this. The water keeps running, the bells ring at noon, the bakers rise before the sun, and the old men sit on the bench by the bridge and tell each other the same stories they told the year before, and the year before that.
`;

/** GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100 onwards. */
export function byteToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const table = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = keep.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++);
  }
  return table;
}

/** The GPT-2 pre-tokenizer regex, as the ByteLevel pre-tokenizer with use_regex applies it. */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

interface TrainedBpe { vocab: Map<string, number>; merges: string[] }

const bpeCache = new Map<number, TrainedBpe>();

/**
 * Byte-level BPE trained on TRAINING_TEXT until the vocabulary has `vocabSize` entries. Ties in pair
 * frequency are broken by the pair's string order, so the result is the same everywhere. When the
 * text has no pair left to merge, synthetic merges of printable byte pairs fill the rest, so every
 * id below vocabSize decodes (a random model may emit any of them).
 */
function trainBpe(vocabSize: number): TrainedBpe {
  const cached = bpeCache.get(vocabSize);
  if (cached) return cached;
  const b2u = byteToUnicode();
  const vocab = new Map<string, number>();
  SPECIALS.forEach((s, i) => vocab.set(s, i));
  for (let b = 0; b < 256; b++) vocab.set(b2u[b], SPECIALS.length + b);
  const merges: string[] = [];

  const wordCounts = new Map<string, number>();
  const enc = new TextEncoder();
  for (const m of TRAINING_TEXT.matchAll(GPT2_SPLIT)) {
    const w = Array.from(enc.encode(m[0]), (b) => b2u[b]).join('');
    wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
  }
  const words = [...wordCounts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))
    .map(([w, count]) => ({ symbols: Array.from(w), count }));

  // Bounded: each iteration either adds a token or records a merge that shortens some word.
  for (let iter = 0; vocab.size < vocabSize && iter < 4 * MAX_VOCAB; iter++) {
    const pairs = new Map<string, number>();
    for (const { symbols, count } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] + ' ' + symbols[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + count);
      }
    }
    let best: string | null = null, bestCount = 0;
    for (const [key, c] of pairs) {
      if (c > bestCount || (c === bestCount && best !== null && key < best)) { best = key; bestCount = c; }
    }
    if (best === null) break;
    const [a, b] = best.split(' ');
    merges.push(best);
    if (!vocab.has(a + b)) vocab.set(a + b, vocab.size);
    for (const w of words) {
      const s = w.symbols;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { out.push(a + b); i++; } else out.push(s[i]);
      }
      w.symbols = out;
    }
  }
  // Synthetic merges: printable ASCII pairs not yet tokens. Their rank is below every trained merge.
  for (let x = 0x21; x <= 0x7e && vocab.size < vocabSize; x++) {
    for (let y = 0x21; y <= 0x7e && vocab.size < vocabSize; y++) {
      const a = b2u[x], b = b2u[y];
      if (vocab.has(a + b)) continue;
      merges.push(a + ' ' + b);
      vocab.set(a + b, vocab.size);
    }
  }
  if (vocab.size !== vocabSize) throw new RangeError(`tiny model: cannot build a ${vocabSize}-token vocabulary`);
  const result = { vocab, merges };
  bpeCache.set(vocabSize, result);
  return result;
}

function tokenizerJson(bpe: TrainedBpe): object {
  const vocab: Record<string, number> = {};
  for (const [t, id] of bpe.vocab) vocab[t] = id;
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIALS.map((content, id) => ({
      id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: { type: 'ByteLevel', ...byteLevel },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: bpe.merges,
    },
  };
}

/** 32-bit FNV-1a, to give each tensor its own random stream (tie on/off keeps the embeddings). */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  return h;
}

/** sfc32 seeded through splitmix32: small, fast and identical in every JS engine. */
function rng(seed: number, stream: number): () => number {
  let s = (seed ^ Math.imul(stream, 0x9e3779b9)) >>> 0;
  const splitmix = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix(), b = splitmix(), c = splitmix(), d = splitmix();
  const next = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) next();
  // Uniform in (0, 1) with 53 random bits, never exactly 0 (Box-Muller takes its log).
  return () => ((next() >>> 5) * 67108864 + (next() >>> 6) + 0.5) / 9007199254740992;
}

function gaussian(n: number, seed: number, name: string, std: number, mean = 0): Float32Array {
  const u = rng(seed, fnv1a(name));
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u())), th = 2 * Math.PI * u();
    out[i] = mean + std * r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(th);
  }
  return out;
}

/**
 * Initial values chosen so a random model still makes confident, varied predictions, which exact-token
 * tests need. Logits spread by about 2*sqrt(hidden) (N(0,1) embeddings / LM head, final norm weights
 * near 2, as trained LLaMAs have), so greedy top-1/top-2 gaps have a median of about 3.5 and fall
 * below 1e-2 in well under 1% of steps (measured over 4 seeds x 2 archs x tie on/off). Projections are
 * N(0, gain^2/fan_in): q/k gain 1.4 makes attention peaked rather than uniform; o/down gain 3 and
 * gate/up gain 2 let the layers outweigh the input embedding in the residual, since otherwise a tied
 * model's top token is almost always the input token itself and greedy output is one repeated token.
 */
function initTensor(name: string, shape: number[], seed: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  if (name === 'model.norm.weight') return gaussian(n, seed, name, 0.2, 2);
  if (name.endsWith('layernorm.weight')) return gaussian(n, seed, name, 0.1, 1);
  if (name.endsWith('.bias')) return gaussian(n, seed, name, 0.5);
  if (name === 'model.embed_tokens.weight' || name === 'lm_head.weight') return gaussian(n, seed, name, 1);
  const gain = /q_proj|k_proj/.test(name) ? 1.4 : /o_proj|down_proj/.test(name) ? 3 : 2;
  return gaussian(n, seed, name, gain / Math.sqrt(shape[1]));
}

function checkOptions(o: Required<TinyModelOptions>): void {
  const posInt = (k: keyof TinyModelOptions) => {
    const v = o[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new RangeError(`tiny model: ${k} must be a positive integer (got ${String(v)})`);
  };
  (['layers', 'hidden', 'heads', 'kvHeads', 'ffn', 'vocab', 'maxPositions'] as const).forEach(posInt);
  if (!Number.isInteger(o.seed)) throw new RangeError(`tiny model: seed must be an integer (got ${o.seed})`);
  if (o.arch !== 'llama' && o.arch !== 'qwen2') throw new RangeError(`tiny model: arch must be llama or qwen2 (got ${String(o.arch)})`);
  if (!(o.dtype in STORED)) throw new RangeError(`tiny model: dtype must be f32, f16 or bf16 (got ${String(o.dtype)})`);
  if (o.hidden % o.heads !== 0 || (o.hidden / o.heads) % 2 !== 0) {
    throw new RangeError(`tiny model: hidden (${o.hidden}) must be heads (${o.heads}) times an even head size`);
  }
  if (o.heads % o.kvHeads !== 0) throw new RangeError(`tiny model: heads (${o.heads}) must be a multiple of kvHeads (${o.kvHeads})`);
  if (o.vocab < FIRST_MERGED_ID || o.vocab > MAX_VOCAB) {
    throw new RangeError(`tiny model: vocab must be between ${FIRST_MERGED_ID} and ${MAX_VOCAB} (got ${o.vocab})`);
  }
  if (!(o.ropeTheta > 0) || !Number.isFinite(o.ropeTheta)) throw new RangeError(`tiny model: ropeTheta must be positive (got ${o.ropeTheta})`);
}

function configJson(o: Required<TinyModelOptions>): Record<string, unknown> {
  const common = {
    bos_token_id: 1,
    eos_token_id: 2,
    head_dim: o.hidden / o.heads,
    hidden_act: 'silu',
    hidden_size: o.hidden,
    initializer_range: 0.02,
    intermediate_size: o.ffn,
    max_position_embeddings: o.maxPositions,
    num_attention_heads: o.heads,
    num_hidden_layers: o.layers,
    num_key_value_heads: o.kvHeads,
  };
  if (o.arch === 'llama') {
    return {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', attention_bias: false, attention_dropout: 0,
      ...common, mlp_bias: false, pretraining_tp: 1, rms_norm_eps: 1e-5, rope_scaling: null, rope_theta: o.ropeTheta,
      tie_word_embeddings: o.tie, torch_dtype: STORED[o.dtype].torch, use_cache: true, vocab_size: o.vocab,
    };
  }
  return {
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', attention_dropout: 0,
    ...common, max_window_layers: o.layers, rms_norm_eps: 1e-6, rope_scaling: null, rope_theta: o.ropeTheta,
    sliding_window: null, tie_word_embeddings: o.tie, torch_dtype: STORED[o.dtype].torch, use_cache: true,
    use_sliding_window: false, vocab_size: o.vocab,
  };
}

const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';

/** Write a complete, randomly initialised Hugging Face model directory (created if needed). */
export function writeTinyModel(dir: string, opts: TinyModelOptions = {}): void {
  const o: Required<TinyModelOptions> = { ...DEFAULTS };
  for (const [k, v] of Object.entries(opts)) if (v !== undefined) (o as Record<string, unknown>)[k] = v;
  checkOptions(o);
  const bpe = trainBpe(o.vocab);
  const cfg = configJson(o);
  // The tensor list comes from the loader's own table, so the file always matches what it expects.
  const tensors = [...expectedTensors(parseConfig(cfg))].map(([name, shape]) => ({
    name, shape, dtype: STORED[o.dtype].st, data: initTensor(name, shape, o.seed),
  }));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), json(cfg));
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors));
  writeFileSync(join(dir, 'generation_config.json'), json({ bos_token_id: 1, eos_token_id: 2, max_length: o.maxPositions }));
  writeFileSync(join(dir, 'tokenizer.json'), json(tokenizerJson(bpe)));
  const added: Record<string, object> = {};
  SPECIALS.forEach((content, id) => {
    added[String(id)] = { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  });
  writeFileSync(join(dir, 'tokenizer_config.json'), json({
    add_bos_token: true, add_eos_token: false, added_tokens_decoder: added,
    bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: null,
    clean_up_tokenization_spaces: false, model_max_length: o.maxPositions, tokenizer_class: 'PreTrainedTokenizerFast',
  }));
  writeFileSync(join(dir, 'special_tokens_map.json'), json({ bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' }));
}
