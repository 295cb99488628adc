import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { loadModel, EMBEDDED_MODEL_DIR, type LoadedModel } from '../runtime/model/index.ts';
import { writeTinyModel } from '../runtime/model/tiny.ts';
import {
  Reference64Session, continueGreedy64, forward64, greedy64, ropeInvFreq64, topK, type Forward64Result,
} from './support/reference64.ts';

interface RefPrompt {
  name: string;
  text: string;
  ids: number[];
  last_logits: number[];
  top10_ids_per_position: number[][];
  top10_logits_per_position: number[][];
  greedy_new_ids: number[];
  greedy_top1_minus_top2_logit: number[];
  hidden_state_norms: { name: string; per_position: number[] }[];
}

const reference = JSON.parse(readFileSync(join(EMBEDDED_MODEL_DIR, 'reference.json'), 'utf8')) as { prompts: RefPrompt[] };

const norm = (v: Float64Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

describe('forward64 on the embedded model against reference.json (independent PyTorch float32)', () => {
  let model: LoadedModel;
  beforeAll(() => {
    model = loadModel(EMBEDDED_MODEL_DIR, { tokenizer: false });
  });

  it('has the four reference prompts', () => {
    expect(reference.prompts.map((p) => p.name)).toEqual(['empty', 'short', 'mixed_unicode', 'long']);
  });

  for (const prompt of reference.prompts) {
    describe(`prompt "${prompt.name}" (${prompt.ids.length} tokens)`, () => {
      let session: Reference64Session;
      let result: Forward64Result;
      beforeAll(() => {
        // One session per prompt: the full prefill (all positions) and then greedy steps on its KV cache.
        session = new Reference64Session(model);
        result = session.append(prompt.ids);
      });

      it('last-position logits are within 1e-3 of the reference', () => {
        const last = result.logits[prompt.ids.length - 1];
        expect(last.length).toBe(4096);
        let maxDiff = 0;
        for (let i = 0; i < last.length; i++) maxDiff = Math.max(maxDiff, Math.abs(last[i] - prompt.last_logits[i]));
        expect(maxDiff).toBeLessThan(1e-3);
      });

      it('top-10 ids at the last position match', () => {
        expect(topK(result.logits[prompt.ids.length - 1], 10)).toEqual(prompt.top10_ids_per_position.at(-1));
      });

      it('the reference top-10 logits at every position agree within 1e-3', () => {
        let maxDiff = 0;
        prompt.top10_ids_per_position.forEach((ids, pos) => {
          ids.forEach((id, k) => {
            maxDiff = Math.max(maxDiff, Math.abs(result.logits[pos][id] - prompt.top10_logits_per_position[pos][k]));
          });
        });
        expect(maxDiff).toBeLessThan(1e-3);
      });

      it('hidden-state norms at every stage and position agree (relative 1e-4)', () => {
        const stages: Record<string, Float64Array[]> = { embed_tokens: result.embeddings, final_norm: result.finalNorm };
        result.hidden.forEach((h, l) => { stages[`layer_${l}`] = h; });
        expect(prompt.hidden_state_norms.map((s) => s.name)).toEqual(Object.keys(stages).sort((a, b) => order(a) - order(b)));
        let worst = 0;
        for (const stage of prompt.hidden_state_norms) {
          stage.per_position.forEach((want, pos) => {
            worst = Math.max(worst, Math.abs(norm(stages[stage.name][pos]) - want) / Math.max(1, want));
          });
        }
        expect(worst).toBeLessThan(1e-4);
      });

      it('greedy continuation matches all 24 reference tokens, with the same margins', () => {
        const g = continueGreedy64(session, result.logits[prompt.ids.length - 1], prompt.greedy_new_ids.length);
        expect(g.ids).toEqual(prompt.greedy_new_ids);
        g.margins.forEach((m, i) => expect(Math.abs(m - prompt.greedy_top1_minus_top2_logit[i])).toBeLessThan(1e-3));
      });
    });
  }
});

/** Stage order in reference.json: embed_tokens, layer_0..layer_N, final_norm. */
function order(name: string): number {
  if (name === 'embed_tokens') return -1;
  if (name === 'final_norm') return 1e9;
  return Number(name.slice('layer_'.length));
}

describe('forward64 internals', () => {
  let dir: string;
  let model: LoadedModel;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hush-ref64-'));
    writeTinyModel(dir, { arch: 'qwen2', tie: false, seed: 3 });
    model = loadModel(dir);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('incremental (KV-cached) positions equal the full forward pass', () => {
    const ids = model.tokenizer.encode('The river runs slowly past the old mill.');
    const full = forward64(model, ids);
    const s = new Reference64Session(model);
    const a = s.append(ids.slice(0, 4));
    const b = s.append(ids.slice(4));
    const pieces = [...a.logits, ...b.logits];
    expect(pieces.length).toBe(ids.length);
    let maxDiff = 0;
    pieces.forEach((l, p) => l.forEach((x, i) => { maxDiff = Math.max(maxDiff, Math.abs(x - full.logits[p][i])); }));
    expect(maxDiff).toBeLessThan(1e-12);
    expect(forward64(model, ids, { lastOnly: true }).logits).toHaveLength(1);
  });

  it('greedy64 equals repeated full forward passes (no cache)', () => {
    const ids = model.tokenizer.encode('Hello');
    const g = greedy64(model, ids, 5);
    const seq = [...ids];
    for (let i = 0; i < 5; i++) {
      const r = forward64(model, seq, { lastOnly: true });
      seq.push(topK(r.logits[0], 1)[0]);
    }
    expect(g.ids).toEqual(seq.slice(ids.length));
  });

  it('qwen2 q/k/v biases change the output (they are not ignored)', () => {
    const ids = model.tokenizer.encode('bias check');
    const withBias = forward64(model, ids, { lastOnly: true }).logits[0];
    const noBias = forward64({ config: { ...model.config, qkvBias: false }, weights: model.weights }, ids, { lastOnly: true }).logits[0];
    let maxDiff = 0;
    for (let i = 0; i < withBias.length; i++) maxDiff = Math.max(maxDiff, Math.abs(withBias[i] - noBias[i]));
    expect(maxDiff).toBeGreaterThan(1e-2);
  });

  it('rejects token ids outside the vocabulary', () => {
    expect(() => forward64(model, [model.config.vocabSize])).toThrow(RangeError);
  });

  it('llama3 rope scaling follows HF _compute_llama3_parameters (Llama 3.1 settings)', () => {
    const base = { headDim: 128, ropeTheta: 500000 };
    const scaling = { ropeType: 'llama3' as const, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
    const plain = ropeInvFreq64({ ...base, ropeScaling: null });
    const scaled = ropeInvFreq64({ ...base, ropeScaling: scaling });
    expect(plain[1]).toBeCloseTo(Math.pow(500000, -2 / 128), 15);
    let high = 0, low = 0, medium = 0;
    for (let i = 0; i < 64; i++) {
      const wavelen = (2 * Math.PI) / plain[i];
      if (wavelen < 8192 / 4) {
        high++;
        expect(scaled[i]).toBe(plain[i]);
      } else if (wavelen > 8192 / 1) {
        low++;
        expect(scaled[i]).toBeCloseTo(plain[i] / 8, 15);
      } else {
        medium++;
        // Interpolates between the two: smooth = (8192/wavelen - 1) / 3.
        const smooth = (8192 / wavelen - 1) / 3;
        expect(scaled[i]).toBeCloseTo((1 - smooth) * plain[i] / 8 + smooth * plain[i], 15);
        expect(scaled[i]).toBeLessThan(plain[i]);
        expect(scaled[i]).toBeGreaterThan(plain[i] / 8);
      }
    }
    // Llama 3.1's 128-dim heads have frequencies in all three bands.
    expect([high > 0, low > 0, medium > 0]).toEqual([true, true, true]);
  });
});
