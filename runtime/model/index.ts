import { readFileSync } from 'node:fs';
import { basename, resolve, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readConfig, type ModelConfig } from './config.ts';
import { SafetensorsReader } from './safetensors.ts';
import { ModelWeights } from './weights.ts';
import { HushTokenizer } from './tokenizer.ts';
import { buildManifest, type ModelManifest } from './manifest.ts';

export * from './config.ts';
export * from './errors.ts';
export * from './safetensors.ts';
export * from './weights.ts';
export * from './tokenizer.ts';
export * from './manifest.ts';

/** The model shipped inside the repository: ../../models/debprose-7m. */
export const EMBEDDED_MODEL_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'models', 'debprose-7m');

export interface LoadedModel {
  dir: string;
  name: string;
  config: ModelConfig;
  weights: ModelWeights;
  tokenizer: HushTokenizer;
  manifest: ModelManifest;
  generation: { temperature?: number; topK?: number; topP?: number };
}

/** Open a Hugging Face model directory: config, weights (validated, read lazily) and tokenizer. */
export function loadModel(dir: string = EMBEDDED_MODEL_DIR, opts: { tokenizer?: boolean } = {}): LoadedModel {
  const config = readConfig(dir);
  const weights = new ModelWeights(config, SafetensorsReader.openModelDir(dir));
  const tokenizer = opts.tokenizer === false ? (null as unknown as HushTokenizer) : new HushTokenizer(dir);
  const name = basename(resolve(dir));
  let generation: LoadedModel['generation'] = {};
  try {
    const g = JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8'));
    generation = { temperature: g.temperature, topK: g.top_k, topP: g.top_p };
  } catch { /* optional file */ }
  return { dir, name, config, weights, tokenizer, manifest: buildManifest(name, config), generation };
}

