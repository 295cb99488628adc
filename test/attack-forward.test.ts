import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, EMBEDDED_MODEL_DIR } from '../runtime/model/index.ts';
import { Transcript } from '../runtime/scx/transcript.ts';
import {
  attackerModel, appendToken, forwardSequence, greedyContinue, linear, PrefixCache, stepBatch, AttackInputError, type Probe,
} from '../simulations/attacks/forward.ts';
import { observationsOf, sortSegments } from '../simulations/attacks/observe.ts';
import { bagRecall, positionalAccuracy } from '../simulations/attacks/score.ts';

const lm = loadModel();
const m = attackerModel(lm);
const ref = JSON.parse(readFileSync(join(EMBEDDED_MODEL_DIR, 'reference.json'), 'utf8')) as {
  prompts: { name: string; ids: number[]; last_logits: number[]; greedy_new_ids: number[] }[];
};

describe("the attacker's own forward", () => {
  it('matches the reference logits and greedy tokens of debprose-7m', () => {
    for (const name of ['short', 'mixed_unicode']) {
      const p = ref.prompts.find((x) => x.name === name)!;
      const { cache } = forwardSequence(m, p.ids, []);
      let maxDiff = 0;
      for (let i = 0; i < m.V; i++) maxDiff = Math.max(maxDiff, Math.abs(cache.logits![i] - p.last_logits[i]));
      expect(maxDiff).toBeLessThan(1e-3);
      expect(greedyContinue(m, cache, 8)).toEqual(p.greedy_new_ids.slice(0, 8));
    }
  });

  it('linear() equals the naive product for sizes off the 4x4 tile, with bias', () => {
    const B = 7, K = 13, O = 10;
    const x = Float32Array.from({ length: B * K }, (_, i) => Math.sin(i * 1.7));
    const w = Float32Array.from({ length: O * K }, (_, i) => Math.cos(i * 0.3));
    const bias = Float32Array.from({ length: O }, (_, i) => i - 4);
    const got = linear(x, B, K, w, O, bias);
    for (let b = 0; b < B; b++) {
      for (let o = 0; o < O; o++) {
        let s = bias[o];
        for (let k = 0; k < K; k++) s += x[b * K + k] * w[o * K + k];
        expect(got[b * O + o]).toBeCloseTo(s, 4);
      }
    }
  });

  it('a batch of candidates on a shared prefix gives what appending each one alone gives', () => {
    const prefix = [m.bos, 320, 2455, 278];
    const { cache } = forwardSequence(m, prefix, []);
    const cands = [1023, 301, 7, 4000, 263];
    const probes: Probe[] = [{ kind: 'resid', layer: 2 }, { kind: 'normed', layer: 1 }, { kind: 'k', layer: 1 }, { kind: 'v', layer: 0 }, { kind: 'q', layer: 2 }, { kind: 'attn', layer: 1 }];
    const batch = stepBatch(m, cache, cands, probes);
    expect(cache.len).toBe(prefix.length); // the batch leaves the prefix alone
    cands.forEach((c, b) => {
      const single = appendToken(m, cache.clone(), c, probes);
      probes.forEach((_, i) => {
        const dim = single[i].length;
        const row = batch[i].subarray(b * dim, (b + 1) * dim);
        let md = 0;
        for (let j = 0; j < dim; j++) md = Math.max(md, Math.abs(row[j] - single[i][j]));
        expect(md).toBeLessThan(1e-4);
      });
    });
  });

  it('refuses tokens outside the vocabulary and probes outside the model', () => {
    const cache = new PrefixCache(m);
    expect(() => stepBatch(m, cache, [m.V], [])).toThrow(AttackInputError);
    expect(() => stepBatch(m, cache, [1], [{ kind: 'k', layer: m.L }])).toThrow(AttackInputError);
  });
});

describe('observations and scoring helpers', () => {
  it('rejects a transcript entry whose data does not fill its shape', () => {
    const tx = new Transcript({ model: 'x', mode: 'split' });
    tx.record({ session: 's', stage: 'prefill', layer: 1, crossing: 'S', direction: 'received', name: 'h', shape: [3, m.d], data: new Float32Array(2 * m.d) });
    expect(() => observationsOf(tx, m, 's')).toThrow(AttackInputError);
  });

  it('sorting segments makes rows invariant to permutations inside each segment', () => {
    const a = Float32Array.from([3, 1, 2, 9, 8, 7]);
    const b = Float32Array.from([2, 3, 1, 7, 9, 8]);
    expect(Array.from(sortSegments(a, 1, 6, 3))).toEqual(Array.from(sortSegments(b, 1, 6, 3)));
  });

  it('positional accuracy skips BOS; bag recall counts multiplicity', () => {
    expect(positionalAccuracy([1, 5, 6, 7], [1, 5, 0, 7])).toEqual({ correct: 2, total: 3 });
    expect(bagRecall([5, 5, 6], [5, 6, 6, 5])).toEqual({ correct: 3, total: 4 });
  });
});
