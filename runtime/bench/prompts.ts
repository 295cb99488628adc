import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HushTokenizer } from '../model/tokenizer.ts';

export const DATA_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'data');

/** A benchmark prompt of exactly n tokens (BOS included) from the held-out text the model never saw. */
export function benchPromptIds(tokenizer: HushTokenizer, n: number): number[] {
  const text = readFileSync(join(DATA_DIR, 'debprose-valid.txt'), 'utf8').split('\n').filter((l) => l.length > 200).slice(0, 40).join('\n');
  const ids = tokenizer.encode(text);
  if (ids.length < n) throw new Error(`benchmark text has only ${ids.length} tokens`);
  return ids.slice(0, n);
}
