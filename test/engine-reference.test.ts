import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, EMBEDDED_MODEL_DIR, type LoadedModel } from '../runtime/model/index.ts';
import { InProcessPipeline, cutStages, generateTokens, argmax } from '../runtime/engine/index.ts';

interface RefPrompt { name: string; ids: number[]; last_logits: number[]; greedy_new_ids: number[]; top10_ids_per_position: number[][] }
const ref = JSON.parse(readFileSync(join(EMBEDDED_MODEL_DIR, 'reference.json'), 'utf8')) as { prompts: RefPrompt[] };

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function greedy(p: InProcessPipeline, ids: number[], n: number): Promise<number[]> {
  const out: number[] = [];
  for await (const t of generateTokens(p.forwarder(), ids, { maxTokens: n, temperature: 0 })) out.push(t.id);
  return out;
}

describe('engine against reference.json (independent PyTorch float32)', () => {
  let model: LoadedModel;
  let whole: InProcessPipeline;
  beforeAll(async () => {
    model = loadModel();
    whole = await InProcessPipeline.create(model);
  });
  afterAll(async () => whole.release());

  for (const p of ref.prompts) {
    it(`${p.name}: last-position logits within 1e-3 and identical greedy continuation`, async () => {
      const logits = await whole.forward(`ref-${p.name}`, p.ids);
      whole.dropSession(`ref-${p.name}`);
      expect(maxAbsDiff(logits, p.last_logits)).toBeLessThan(1e-3);
      expect(await greedy(whole, p.ids, p.greedy_new_ids.length)).toEqual(p.greedy_new_ids);
    });
  }

  it('per-position top-1 agrees with the reference at every position of the long prompt', async () => {
    const p = ref.prompts.reduce((a, b) => (b.ids.length > a.ids.length ? b : a));
    const logits = await whole.forward('all-pos', p.ids, { logitsFrom: 0 });
    whole.dropSession('all-pos');
    const V = model.config.vocabSize;
    expect(logits.length).toBe(p.ids.length * V);
    for (let i = 0; i < p.ids.length; i++) expect(argmax(logits, i * V, V)).toBe(p.top10_ids_per_position[i][0]);
  });

  it('any cut into k stages gives the same greedy tokens and logits within 1e-5 of the one-stage run', async () => {
    const L = model.config.numLayers;
    const p = ref.prompts.find((x) => x.name === 'mixed_unicode') ?? ref.prompts[1];
    const baseLogits = await whole.forward('cut-base', p.ids);
    whole.dropSession('cut-base');
    const baseTokens = await greedy(whole, p.ids, 12);
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let k = 1; k <= L; k++) {
      const cuts = new Set<number>();
      while (cuts.size < k - 1) cuts.add(1 + Math.floor(rand() * (L - 1)));
      const specs = cutStages(L, [...cuts]);
      expect(specs.length).toBe(k);
      const pipe = await InProcessPipeline.create(model, specs);
      const logits = await pipe.forward('cut', p.ids);
      pipe.dropSession('cut');
      expect(maxAbsDiff(logits, baseLogits)).toBeLessThan(1e-5);
      expect(await greedy(pipe, p.ids, 12)).toEqual(baseTokens);
      await pipe.release();
    }
  });
});
