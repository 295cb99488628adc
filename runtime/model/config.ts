import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ModelError, UnsupportedModelError } from './errors.ts';

export type Arch = 'llama' | 'qwen2' | 'mistral';

/** The normalised architecture of a LLaMA-family checkpoint, as the graph builder needs it. */
export interface ModelConfig {
  arch: Arch;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: Llama3RopeScaling | null;
  tieWordEmbeddings: boolean;
  vocabSize: number;
  maxPositionEmbeddings: number;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** qwen2 has biases on q/k/v projections. */
  qkvBias: boolean;
}

export interface Llama3RopeScaling {
  ropeType: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

const SUPPORTED: readonly Arch[] = ['llama', 'qwen2', 'mistral'];

function int(raw: Record<string, unknown>, key: string, file: string, fallback?: number): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new ModelError(`${file}: "${key}" must be a positive integer (got ${JSON.stringify(raw[key])})`, file);
  }
  return v;
}

function num(raw: Record<string, unknown>, key: string, file: string, fallback: number): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new ModelError(`${file}: "${key}" must be a positive number (got ${JSON.stringify(raw[key])})`, file);
  }
  return v;
}

/** Parse a Hugging Face config.json object into a ModelConfig. */
export function parseConfig(raw: Record<string, unknown>, file = 'config.json'): ModelConfig {
  const arch = raw.model_type as Arch;
  if (!SUPPORTED.includes(arch)) {
    throw new UnsupportedModelError(
      `${file}: model_type ${JSON.stringify(raw.model_type)} is not supported (supported: ${SUPPORTED.join(', ')})`, file);
  }
  // HF LLaMA's attention_bias puts a bias on o_proj as well as q/k/v, and mlp_bias on all three MLP
  // projections; the tensor table below has no place for them, so such a checkpoint would otherwise
  // load with those biases silently ignored.
  if (arch !== 'qwen2' && raw.attention_bias === true) {
    throw new UnsupportedModelError(`${file}: attention_bias true (biases on q/k/v/o projections) is not supported for ${arch}`, file);
  }
  if (raw.mlp_bias === true) {
    throw new UnsupportedModelError(`${file}: mlp_bias true (biases on the MLP projections) is not supported`, file);
  }
  const hiddenSize = int(raw, 'hidden_size', file);
  const numHeads = int(raw, 'num_attention_heads', file);
  const numKvHeads = int(raw, 'num_key_value_heads', file, numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ModelError(`${file}: num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads})`, file);
  }
  const headDim = raw.head_dim == null ? hiddenSize / numHeads : int(raw, 'head_dim', file);
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ModelError(`${file}: head_dim ${headDim} must be an even integer`, file);
  }
  let ropeScaling: Llama3RopeScaling | null = null;
  const rs = raw.rope_scaling as Record<string, unknown> | null | undefined;
  if (rs != null) {
    const type = rs.rope_type ?? rs.type;
    if (type !== 'llama3') {
      throw new UnsupportedModelError(`${file}: rope_scaling type ${JSON.stringify(type)} is not supported (only llama3)`, file);
    }
    ropeScaling = {
      ropeType: 'llama3',
      factor: num(rs, 'factor', file, 8),
      lowFreqFactor: num(rs, 'low_freq_factor', file, 1),
      highFreqFactor: num(rs, 'high_freq_factor', file, 4),
      originalMaxPositionEmbeddings: int(rs, 'original_max_position_embeddings', file, 8192),
    };
  }
  const eos = raw.eos_token_id;
  const eosTokenIds = Array.isArray(eos) ? eos.filter((x): x is number => typeof x === 'number')
    : typeof eos === 'number' ? [eos] : [];
  return {
    arch,
    hiddenSize,
    intermediateSize: int(raw, 'intermediate_size', file),
    numLayers: int(raw, 'num_hidden_layers', file),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num(raw, 'rms_norm_eps', file, 1e-6),
    ropeTheta: num(raw, 'rope_theta', file, 10000),
    ropeScaling,
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    vocabSize: int(raw, 'vocab_size', file),
    maxPositionEmbeddings: int(raw, 'max_position_embeddings', file, 2048),
    bosTokenId: typeof raw.bos_token_id === 'number' ? raw.bos_token_id : null,
    eosTokenIds,
    qkvBias: arch === 'qwen2',
  };
}

export function readConfig(dir: string): ModelConfig {
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new ModelError(`${file}: missing (not a Hugging Face model directory?)`, file);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ModelError(`${file}: not valid JSON (${(e as Error).message})`, file);
  }
  if (typeof raw !== 'object' || raw === null) throw new ModelError(`${file}: expected a JSON object`, file);
  return parseConfig(raw as Record<string, unknown>, file);
}

/** Names and shapes of the tensors a config requires, HF naming. */
export function expectedTensors(c: ModelConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const d = c.hiddenSize, hd = c.headDim;
  m.set('model.embed_tokens.weight', [c.vocabSize, d]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    m.set(p + 'input_layernorm.weight', [d]);
    m.set(p + 'self_attn.q_proj.weight', [c.numHeads * hd, d]);
    m.set(p + 'self_attn.k_proj.weight', [c.numKvHeads * hd, d]);
    m.set(p + 'self_attn.v_proj.weight', [c.numKvHeads * hd, d]);
    if (c.qkvBias) {
      m.set(p + 'self_attn.q_proj.bias', [c.numHeads * hd]);
      m.set(p + 'self_attn.k_proj.bias', [c.numKvHeads * hd]);
      m.set(p + 'self_attn.v_proj.bias', [c.numKvHeads * hd]);
    }
    m.set(p + 'self_attn.o_proj.weight', [d, c.numHeads * hd]);
    m.set(p + 'post_attention_layernorm.weight', [d]);
    m.set(p + 'mlp.gate_proj.weight', [c.intermediateSize, d]);
    m.set(p + 'mlp.up_proj.weight', [c.intermediateSize, d]);
    m.set(p + 'mlp.down_proj.weight', [d, c.intermediateSize]);
  }
  m.set('model.norm.weight', [d]);
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, d]);
  return m;
}
