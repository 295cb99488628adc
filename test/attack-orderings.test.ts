import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { tinyModel, cleanupTinyModels } from './support/tiny.ts';
import { loadAttackPrompts } from '../simulations/attacks/prompts.ts';
import { recordSessions } from '../simulations/attacks/real.ts';
import { runAttacks } from '../simulations/attacks/index.ts';
import {
  atChanceLevel, binomialUpperTail, measureSetting, p1Rms, plaintextReference,
  type AttackSetting, type PlaintextReference, type PrivacyLine, type SettingResult,
} from '../simulations/attacks/measure.ts';
import type { LoadedModel } from '../runtime/model/index.ts';

/**
 * The harness's expected orderings on REAL transcripts: a tiny random model (forward matching works
 * on random weights too) run through the runtime's InProcessRuntime with capture on, in every mode.
 * No synthetic transcripts: what is attacked is exactly what the in-process cloud peer saw.
 */
let lm: LoadedModel;
let prompts: number[][];
let reference: PlaintextReference;
let rms: number;
const results = new Map<string, SettingResult>();
const GENERATE = 3;

function line(r: SettingResult, attack: string, observable: string, metric: string): PrivacyLine {
  const l = r.lines.find((x) => x.attack === attack && x.observable === observable && x.metric === metric);
  if (!l) throw new Error(`no ${attack} ${observable} ${metric} in ${r.label}: ${r.lines.map((x) => `${x.attack}/${x.observable}/${x.metric}`).join(', ')}`);
  return l;
}

async function run(key: string, s: Partial<AttackSetting> & Pick<AttackSetting, 'mode'>): Promise<void> {
  results.set(key, await measureSetting(lm, prompts, { h: 1, t: 1, noise: 'none', noiseScale: 0, decoys: 0, ...s }, {
    generate: GENERATE, reference, attack: { attacks: ['A0', 'A1', 'A3', 'A6', 'A9'] },
  }));
}

beforeAll(async () => {
  lm = tinyModel({ seed: 3 });
  // Three unfiltered attack prompts, cut to 8 words to keep CI fast.
  prompts = loadAttackPrompts().slice(0, 3).map((p) => lm.tokenizer.encode(p.split(' ').slice(0, 8).join(' ')));
  reference = await plaintextReference(lm, prompts, GENERATE);
  rms = p1Rms(lm, prompts, 1);
  await run('local', { mode: 'local' });
  await run('split', { mode: 'split' });
  await run('scx', { mode: 'scx', decoys: 2 });
  await run('scx rows 10x', { mode: 'scx', noise: 'rows', noiseScale: 10 * rms, noiseRelative: 10, decoys: 2 });
});

afterAll(() => cleanupTinyModels());

describe('attack orderings on real in-process transcripts (tiny model)', () => {
  it('local: the cloud transcript is empty and every attack is reported at 0, chance level', () => {
    const r = results.get('local')!;
    expect(r.cloud).toEqual({ tensors: 0, bytes: 0 });
    expect(r.report).toBeNull();
    expect(r.lines.map((l) => l.attack).sort()).toEqual(['A1', 'A2', 'A3', 'A6', 'A7', 'A9']);
    expect(r.lines.every((l) => l.value === 0 && l.atChance)).toBe(true);
    expect(r.confidential).toBe(true);
    expect(r.utility.greedyMatch).toBe(true);
    expect(r.utility.maxRelLogitError).toBeLessThan(1e-5);
  });

  it('split leaks the prompt: A3 on the plaintext boundary state recovers it, far above chance', () => {
    const r = results.get('split')!;
    const a3 = line(r, 'A3', 'S h in', 'positional-accuracy');
    expect(a3.total).toBe(prompts.reduce((a, p) => a + p.length - 1, 0));
    expect(a3.value).toBeGreaterThanOrEqual(0.9);
    expect(a3.atChance).toBe(false);
    expect(r.confidential).toBe(false);
  });

  it('split leaks at least as much as scx with large row noise on P1 (A3 and A1), and the noise is what hides P1', () => {
    const split = results.get('split')!, noisy = results.get('scx rows 10x')!, clean = results.get('scx')!;
    const a3Noisy = line(noisy, 'A3', 'P1 x', 'positional-accuracy');
    expect(line(split, 'A3', 'S h in', 'positional-accuracy').value).toBeGreaterThanOrEqual(a3Noisy.value + 0.5);
    expect(a3Noisy.atChance).toBe(true);
    expect(line(split, 'A1', 'S h in', 'bag-recall').value).toBeGreaterThanOrEqual(line(noisy, 'A1', 'P1 x', 'bag-recall').value);
    // Without noise the same P1 rows give the prompt away despite permutation and decoys.
    expect(line(clean, 'A3', 'P1 x', 'positional-accuracy').value).toBeGreaterThanOrEqual(0.9);
    // Shared-noise removal has nothing to find in row noise.
    expect(line(noisy, 'A6', 'P1 x', 'offset-recovered').value).toBe(0);
  });

  it('noise on P1 alone does not make scx confidential: the P3 residuals carry no noise', () => {
    const noisy = results.get('scx rows 10x')!;
    expect(line(noisy, 'A3', 'P3 h in', 'positional-accuracy').value).toBeGreaterThanOrEqual(0.9);
    expect(noisy.confidential).toBe(false);
  });

  it('noise costs no utility: logits within float error of the plaintext run, same greedy tokens', () => {
    for (const key of ['split', 'scx', 'scx rows 10x']) {
      const u = results.get(key)!.utility;
      expect(u.greedyMatch, key).toBe(true);
      expect(u.maxRelLogitError, key).toBeLessThan(1e-3);
    }
  });

  it('A9 catches a reused seed (two sessions, same keys) and flags nothing across fresh sessions', async () => {
    const seed = randomBytes(32);
    const scx = { noise: 'shared' as const, noiseScale: rms, decoys: 2 };
    const reused = await recordSessions(lm, prompts, { run: { mode: 'scx', h: 1, t: 1, scx }, generate: 1, seeds: [seed, new Uint8Array(seed), undefined] });
    const a9 = runAttacks(reused.transcript, lm, reused.truth, { attacks: ['A9'] }).a9!;
    const pair = (p: { a: string; b: string }) => [p.a, p.b].sort().join('+');
    expect(a9.reusedPermutations.length).toBeGreaterThan(0);
    expect(new Set(a9.reusedPermutations.map(pair))).toEqual(new Set(['p0+p1']));
    expect(new Set(a9.reusedNoise.map(pair))).toEqual(new Set(['p0+p1']));

    const fresh = await recordSessions(lm, prompts, { run: { mode: 'scx', h: 1, t: 1, scx }, generate: 1 });
    const f9 = runAttacks(fresh.transcript, lm, fresh.truth, { attacks: ['A9'] }).a9!;
    expect(f9.keysharesCompared).toBeGreaterThan(0);
    expect(f9.reusedPermutations).toEqual([]);
    expect(f9.reusedNoise).toEqual([]);
  });
});

describe('chance level', () => {
  it('binomialUpperTail is the exact tail', () => {
    expect(binomialUpperTail(0, 10, 0.3)).toBe(1);
    expect(binomialUpperTail(11, 10, 0.3)).toBe(0);
    expect(binomialUpperTail(10, 10, 0.5)).toBeCloseTo(2 ** -10, 12);
    expect(binomialUpperTail(1, 3, 0.5)).toBeCloseTo(7 / 8, 12);
  });

  it('at chance means not significantly above the chance rate', () => {
    expect(atChanceLevel(0, 50, 0)).toBe(true);
    expect(atChanceLevel(1, 100, 0.01)).toBe(true);
    expect(atChanceLevel(20, 100, 0.01)).toBe(false);
    expect(atChanceLevel(1, 10, 0)).toBe(false);
    // A blind guess gets 1/V: one hit in 60 tokens over a vocabulary of 512 is not evidence.
    expect(atChanceLevel(1, 60, 0, 1 / 512)).toBe(true);
  });
});
