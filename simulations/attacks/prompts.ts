import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The attack harness's prompt set. data/prompts/attack-prompts.txt is derived from the held-out
 * split by a fixed rule that never looks at attack results (see data/prompts/README.md):
 * every STRIDE-th non-empty line (0-based indices 0, STRIDE, 2*STRIDE, ...), whitespace collapsed,
 * truncated to its first WORDS words.
 */
export const PROMPT_RULE = { stride: 20, words: 24 } as const;

const here = dirname(fileURLToPath(import.meta.url));
export const ATTACK_PROMPTS_FILE = resolve(here, '..', '..', 'data', 'prompts', 'attack-prompts.txt');

export function selectPrompts(corpus: string, rule: { stride: number; words: number } = PROMPT_RULE): string[] {
  const lines = corpus.split(/\r?\n/).filter((l) => l.trim().length > 0);
  const out: string[] = [];
  for (let i = 0; i < lines.length; i += rule.stride) out.push(lines[i].trim().split(/\s+/).slice(0, rule.words).join(' '));
  return out;
}

/** The prompt set, one prompt per line. */
export function loadAttackPrompts(file = ATTACK_PROMPTS_FILE): string[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
}

// `npx tsx simulations/attacks/prompts.ts [corpus]` regenerates the file from the corpus.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const corpus = process.argv[2] ?? '/work/shared/data/debprose-valid.txt';
  const prompts = selectPrompts(readFileSync(corpus, 'utf8'));
  writeFileSync(ATTACK_PROMPTS_FILE, prompts.join('\n') + '\n');
  console.log(`wrote ${prompts.length} prompts to ${ATTACK_PROMPTS_FILE}`);
}
