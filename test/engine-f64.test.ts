import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, type LoadedModel } from '../runtime/model/index.ts';
import { InProcessPipeline } from '../runtime/engine/index.ts';
import { Reference64Session } from './support/reference64.ts';
import { tinyModel, cleanupTinyModels } from './support/tiny.ts';
import type { TinyModelOptions } from '../runtime/model/tiny.ts';

afterAll(cleanupTinyModels);

/** max |a - b| / max |b|: the relative error of a logits row against the float64 reference. */
function relErr(a: Float32Array, b: Float64Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < b.length; i++) { num = Math.max(num, Math.abs(a[i] - b[i])); den = Math.max(den, Math.abs(b[i])); }
  return num / den;
}

function ids(model: LoadedModel, n: number, seed: number): number[] {
  const out = [1];
  let s = seed;
  while (out.length < n) { s = (s * 16807) % 2147483647; out.push(3 + (s % (model.config.vocabSize - 3))); }
  return out;
}

const variants: { name: string; opts: TinyModelOptions; llama3?: boolean }[] = [
  { name: 'llama GQA tied f32', opts: { seed: 1, heads: 4, kvHeads: 2 } },
  { name: 'llama MHA untied bf16', opts: { seed: 2, heads: 4, kvHeads: 4, tie: false, dtype: 'bf16' } },
  { name: 'qwen2 biases GQA f16', opts: { seed: 3, arch: 'qwen2', heads: 8, kvHeads: 2, hidden: 64, dtype: 'f16' } },
  { name: 'llama rope_theta 500000 + llama3 scaling', opts: { seed: 4, ropeTheta: 500000, heads: 2, kvHeads: 1, hidden: 32, ffn: 80 }, llama3: true },
  { name: 'llama 1 kv head, rope_theta 1000', opts: { seed: 5, ropeTheta: 1000, heads: 4, kvHeads: 1, layers: 3 } },
];

describe('engine vs an independent float64 reference, tiny models', () => {
  for (const v of variants) {
    it(`${v.name}: prefill of 1..300 tokens and decode after prefill, logits within 1e-4 relative`, async () => {
      let model = tinyModel(v.opts);
      if (v.llama3) {
        const f = join(model.dir, 'config.json');
        const cfg = JSON.parse(readFileSync(f, 'utf8'));
        cfg.rope_scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
        writeFileSync(f, JSON.stringify(cfg));
        model = loadModel(model.dir);
        expect(model.config.ropeScaling?.ropeType).toBe('llama3');
      }
      const pipe = await InProcessPipeline.create(model);
      for (const n of [1, 2, 17, 300]) {
        const prompt = ids(model, n, n + 13);
        const ref = new Reference64Session(model);
        const want = ref.append(prompt);
        const got = await pipe.forward(`p${n}`, prompt, { logitsFrom: 0 });
        const V = model.config.vocabSize;
        for (const p of [0, Math.floor((n - 1) / 2), n - 1]) {
          expect(relErr(got.subarray(p * V, (p + 1) * V), want.logits[p]), `prefill n=${n} pos=${p}`).toBeLessThan(1e-4);
        }
        if (n < 300) {
          // Decode 3 tokens after the prefill, against the reference's KV-cached continuation.
          for (let k = 0; k < 3; k++) {
            const next = 3 + ((n * 31 + k * 7) % (V - 3));
            const g = await pipe.forward(`p${n}`, [next]);
            const w = ref.append([next]);
            expect(relErr(g, w.logits[w.logits.length - 1]), `decode n=${n} step=${k}`).toBeLessThan(1e-4);
          }
        }
        pipe.dropSession(`p${n}`);
      }
      await pipe.release();
    });
  }
});
