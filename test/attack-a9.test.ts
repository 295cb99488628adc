import { describe, it, expect } from 'vitest';
import { loadModel } from '../runtime/model/index.ts';
import { attackerModel } from '../simulations/attacks/forward.ts';
import { buildScxLikeTranscript, prng, randomPermutation } from '../simulations/attacks/synth.ts';
import { a9, readPermutation } from '../simulations/attacks/a9.ts';
import { runAttacks } from '../simulations/attacks/index.ts';

/**
 * A9 on SCX-like transcripts built by the test: sessions a and b are given the same key seed (a key
 * reuse bug), c its own. The prompts differ, so only the keys can make anything equal.
 */
const lm = loadModel();
const m = attackerModel(lm);
const ids = (text: string) => lm.tokenizer.encode(text);
const sessions = [
  { session: 'a', promptIds: ids('The meaning of life is') },
  { session: 'b', promptIds: ids('He shall pay double to his neighbor.') },
  { session: 'c', promptIds: ids('You shall not wrong an alien') },
];
const keySeed = (s: string) => (s === 'c' ? 'seed-c' : 'seed-shared');

describe('A9 key reuse across sessions', () => {
  const built = buildScxLikeTranscript(m, lm.name, sessions, { h: 1, t: 1, noise: 'shared', noiseScale: 0.3, decoys: 2, layers: [1, 2], keySeed });
  const rep = a9(built.transcript, m);
  const involves = (p: { a: string; b: string }, s: string) => p.a === s || p.b === s;

  it('flags the two sessions that share sigma/tau, at every layer, and nothing with the third', () => {
    expect(rep.keysharesCompared).toBe(3 * 2);
    const ab = rep.reusedPermutations.filter((p) => involves(p, 'a') && involves(p, 'b') && p.layerA === p.layerB);
    expect(ab.map((p) => `${p.what}@${p.layerA}`).sort()).toEqual(['sigma@1', 'sigma@2', 'tau@1', 'tau@2']);
    expect(rep.reusedPermutations.some((p) => involves(p, 'c'))).toBe(false);
  });

  it('flags reused noise between a and b, not with c', () => {
    const ab = rep.reusedNoise.filter((p) => involves(p, 'a') && involves(p, 'b') && p.layerA === p.layerB);
    expect(ab.map((p) => p.layerA).sort()).toEqual([1, 2]);
    expect(rep.reusedNoise.some((p) => involves(p, 'c'))).toBe(false);
    expect(rep.noiseOffsetsRecovered).toBe(rep.noiseOffsetsTotal);
  });

  it('reads every head-dim permutation off the BOS row, matching the keys shared later', () => {
    expect(rep.headPermsTotal).toBe(3 * 2 * 2 * m.Hkv); // sessions x layers x (sigma, tau) x kv heads
    expect(rep.headPermsChecked).toBe(rep.headPermsTotal);
    expect(rep.headPermsCorrect).toBe(rep.headPermsTotal);
  });

  it('flags nothing when every session has its own keys', () => {
    const fresh = buildScxLikeTranscript(m, lm.name, sessions, { h: 1, t: 1, noise: 'shared', noiseScale: 0.3, decoys: 2, layers: [1] });
    const r = a9(fresh.transcript, m);
    expect(r.reusedPermutations).toEqual([]);
    expect(r.reusedNoise).toEqual([]);
    const report = runAttacks(fresh.transcript, lm, fresh.truth, { attacks: ['A9'] });
    expect(report.summary.find((s) => s.variant === 'reused sigma/tau (keyshare)')?.correct).toBe(0);
  });

  it('readPermutation inverts a gather permutation and refuses a row that is not a permutation of the plain one', () => {
    const rand = prng('perm');
    const plain = Float32Array.from({ length: 32 }, () => rand() * 2 - 1);
    const p = randomPermutation(32, rand);
    const observed = Float32Array.from({ length: 32 }, (_, j) => plain[p[j]]);
    expect(Array.from(readPermutation(observed, plain)!)).toEqual(Array.from(p));
    const other = Float32Array.from({ length: 32 }, () => rand());
    expect(readPermutation(other, plain)).toBeNull();
  });
});
