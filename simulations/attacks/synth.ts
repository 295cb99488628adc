import { Transcript } from '../../runtime/scx/transcript.ts';
import { argmax, forwardSequence, linear, appendToken, type AttackerModel, type Probe } from './forward.ts';
import type { Truth } from './score.ts';

/**
 * Synthetic transcripts built with the attacker's own forward: the tensors a cloud peer would record
 * in mode "split", and an SCX-like prefill laid out as runtime/scx records it (SCX.md). They exist to
 * test the attacks (and to try them before real sessions exist); they are not the SCX
 * implementation and make no claim about it. Keys come from a seeded PRNG here, never from a CSPRNG.
 */

export interface SynthSession { session: string; promptIds: number[] }

export interface SynthOptions {
  /** First cloud layer (head layers are [0, h)). */
  h: number;
  /** Tail layers (cloud layers end at L - t). */
  t: number;
  /** Greedy tokens to generate after the prompt (0 = prefill only). */
  generate?: number;
}

export interface ScxSynthOptions extends SynthOptions {
  noise?: 'none' | 'shared' | 'rows';
  noiseScale?: number;
  decoys?: number;
  /** Seed of the PRNG that draws permutations, noise and decoys; a function of the session by default. */
  keySeed?: (session: string) => string;
  /** Layers whose P1/P2/P3 are recorded (default every cloud layer). */
  layers?: number[];
}

/** mulberry32 over a string hash: deterministic test randomness. */
export function prng(seed: string): () => number {
  let a = 0x9e3779b9;
  for (let i = 0; i < seed.length; i++) a = Math.imul(a ^ seed.charCodeAt(i), 0x85ebca6b) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomPermutation(n: number, rand: () => number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); const t = p[i]; p[i] = p[j]; p[j] = t; }
  return p;
}

function laplace(rand: () => number, b: number): number {
  const u = rand() - 0.5;
  return -b * Math.sign(u) * Math.log(1 - 2 * Math.abs(u) + 1e-300);
}

/** rows' = rows[perm[i]] for each output row i. */
export function permuteRows(a: Float32Array, R: number, D: number, perm: Int32Array): Float32Array {
  const out = new Float32Array(R * D);
  for (let i = 0; i < R; i++) out.set(a.subarray(perm[i] * D, (perm[i] + 1) * D), i * D);
  return out;
}

/** [N, G*hd] rows -> [G, N, hd], dims of group g gathered by perms[g] (observed[j] = plain[perm[j]]). */
function rowsToPermutedHeads(a: Float32Array, N: number, G: number, hd: number, permOfHead: (g: number) => Int32Array): Float32Array {
  const out = new Float32Array(G * N * hd);
  for (let g = 0; g < G; g++) {
    const p = permOfHead(g);
    for (let n = 0; n < N; n++) for (let j = 0; j < hd; j++) out[(g * N + n) * hd + j] = a[(n * G + g) * hd + p[j]];
  }
  return out;
}

function generateInto(tx: Transcript, m: AttackerModel, session: string, cache: ReturnType<typeof forwardSequence>['cache'],
  h: number, lastCloud: number, n: number): number[] {
  const gen: number[] = [];
  if (n <= 0) return gen;
  let next = argmax(cache.logits!);
  gen.push(next);
  const probes: Probe[] = [{ kind: 'resid', layer: h }, { kind: 'resid', layer: lastCloud + 1 }];
  for (let s = 0; s + 1 < n; s++) {
    const [hin, hout] = appendToken(m, cache, next, probes);
    tx.record({ session, stage: 'generate', layer: h, crossing: 'D', direction: 'received', name: 'h', shape: [1, m.d], step: s, data: hin });
    tx.record({ session, stage: 'generate', layer: lastCloud, crossing: 'D', direction: 'returned', name: 'h', shape: [1, m.d], step: s, data: hout });
    next = argmax(cache.logits!);
    gen.push(next);
  }
  return gen;
}

function checkSplit(m: AttackerModel, o: SynthOptions): number {
  const last = m.L - o.t - 1;
  if (!(o.h >= 1 && o.t >= 1 && o.h <= last)) throw new RangeError(`synth: need 1 <= h <= L - t - 1 (h=${o.h}, t=${o.t}, L=${m.L})`);
  return last;
}

/** What a cloud peer records in mode "split": plaintext residuals at the cut points. */
export function buildSplitTranscript(m: AttackerModel, model: string, sessions: SynthSession[], o: SynthOptions): { transcript: Transcript; truth: Truth } {
  const last = checkSplit(m, o);
  const tx = new Transcript({ model, mode: 'split', meta: { h: o.h, t: o.t, numLayers: m.L, noise: 'none', noiseScale: 0, decoys: 0 } });
  const truth: Truth = { sessions: [] };
  for (const s of sessions) {
    const N = s.promptIds.length;
    const { captures: [hin, hout], cache } = forwardSequence(m, s.promptIds, [{ kind: 'resid', layer: o.h }, { kind: 'resid', layer: last + 1 }]);
    tx.record({ session: s.session, stage: 'prefill', layer: o.h, crossing: 'S', direction: 'received', name: 'h', shape: [N, m.d], data: hin });
    tx.record({ session: s.session, stage: 'prefill', layer: last, crossing: 'S', direction: 'returned', name: 'h', shape: [N, m.d], data: hout });
    const generatedIds = generateInto(tx, m, s.session, cache, o.h, last, o.generate ?? 0);
    truth.sessions.push({ session: s.session, promptIds: s.promptIds, generatedIds });
  }
  return { transcript: tx, truth };
}

/**
 * An SCX-like prefill transcript: per cloud layer P1 (permuted, decoyed, noised normed rows and the
 * returned qkv), P2 (true-order RoPE'd q/k/v with per-kv-group head-dim permutations sigma/tau, and
 * the returned o in tau basis), P3 (pi2-permuted o and residuals), then keyshare and generation.
 */
export function buildScxLikeTranscript(m: AttackerModel, model: string, sessions: SynthSession[], o: ScxSynthOptions): { transcript: Transcript; truth: Truth } {
  const last = checkSplit(m, o);
  const noise = o.noise ?? 'none', b = noise === 'none' ? 0 : (o.noiseScale ?? 0), r = o.decoys ?? 0;
  const tx = new Transcript({ model, mode: 'scx', meta: { h: o.h, t: o.t, numLayers: m.L, noise, noiseScale: b, decoys: r } });
  const truth: Truth = { sessions: [] };
  const layers = o.layers ?? Array.from({ length: last - o.h + 1 }, (_, i) => o.h + i);
  const { d, H, Hkv, hd } = m;
  const QKV = (H + 2 * Hkv) * hd;
  for (const s of sessions) {
    // Like the real key schedule (HKDF per layer and purpose), each key is drawn from its own stream,
    // so equal seeds give equal keys whatever the prompt length.
    const seed = o.keySeed ? o.keySeed(s.session) : `synth-keys/${s.session}`;
    const stream = (layer: number, purpose: string) => prng(`${seed}/${layer}/${purpose}`);
    const N = s.promptIds.length;
    const probes: Probe[] = layers.flatMap((l) => (['resid', 'normed', 'q', 'k', 'v', 'attn'] as const).map((kind) => ({ kind, layer: l })));
    probes.push(...layers.map((l) => ({ kind: 'resid' as const, layer: l + 1 })));
    const { captures, cache } = forwardSequence(m, s.promptIds, probes);
    const cap = (kind: Probe['kind'], layer: number) => captures[probes.findIndex((p) => p.kind === kind && p.layer === layer)];
    // Decoys: normed states of a random token sequence, so they look like real rows.
    const decoyRand = stream(-1, 'decoy');
    const decoySeq = [m.bos, ...Array.from({ length: r }, () => 3 + Math.floor(decoyRand() * (m.V - 3)))];
    const decoyStates = r > 0 ? forwardSequence(m, decoySeq, layers.map((l) => ({ kind: 'normed' as const, layer: l }))).captures : [];
    const sigmas: Int32Array[][] = [], taus: Int32Array[][] = [];
    layers.forEach((l, li) => {
      // P1
      const x = new Float32Array((N + r) * d);
      x.set(cap('normed', l));
      if (r > 0) x.set(decoyStates[li].subarray(d), N * d);
      if (b > 0) {
        const rand = stream(l, 'noise');
        const shared = Float32Array.from({ length: d }, () => laplace(rand, b));
        for (let i = 0; i < (N + r) * d; i++) x[i] += noise === 'shared' ? shared[i % d] : laplace(rand, b);
      }
      const pi1 = randomPermutation(N + r, stream(l, 'pi1'));
      const xp = permuteRows(x, N + r, d, pi1);
      tx.record({ session: s.session, stage: 'prefill', layer: l, crossing: 'P1', direction: 'received', name: 'x', shape: [N + r, d], data: xp });
      const lw = m.layers[l];
      tx.record({ session: s.session, stage: 'prefill', layer: l, crossing: 'P1', direction: 'returned', name: 'qkv', shape: [N + r, QKV], data: linear(xp, N + r, d, lw.qkv, QKV, lw.qkvBias) });
      // P2
      const sigmaRand = stream(l, 'sigma'), tauRand = stream(l, 'tau');
      const sigma = Array.from({ length: Hkv }, () => randomPermutation(hd, sigmaRand));
      const tau = Array.from({ length: Hkv }, () => randomPermutation(hd, tauRand));
      sigmas.push(sigma); taus.push(tau);
      const group = H / Hkv;
      tx.record({ session: s.session, stage: 'prefill', layer: l, crossing: 'P2', direction: 'received', name: 'q', shape: [H, N, hd], data: rowsToPermutedHeads(cap('q', l), N, H, hd, (hq) => sigma[Math.floor(hq / group)]) });
      tx.record({ session: s.session, stage: 'prefill', layer: l, crossing: 'P2', direction: 'received', name: 'k', shape: [Hkv, N, hd], data: rowsToPermutedHeads(cap('k', l), N, Hkv, hd, (g) => sigma[g]) });
      tx.record({ session: s.session, stage: 'prefill', layer: l, crossing: 'P2', direction: 'received', name: 'v', shape: [Hkv, N, hd], data: rowsToPermutedHeads(cap('v', l), N, Hkv, hd, (g) => tau[g]) });
      tx.record({ session: s.session, stage: 'prefill', layer: l, crossing: 'P2', direction: 'returned', name: 'o', shape: [H, N, hd], data: rowsToPermutedHeads(cap('attn', l), N, H, hd, (hq) => tau[Math.floor(hq / group)]) });
      // P3
      const pi2 = randomPermutation(N, stream(l, 'pi2'));
      tx.record({ session: s.session, stage: 'prefill', layer: l, crossing: 'P3', direction: 'received', name: 'o', shape: [N, H * hd], data: permuteRows(cap('attn', l), N, H * hd, pi2) });
      tx.record({ session: s.session, stage: 'prefill', layer: l, crossing: 'P3', direction: 'received', name: 'h', shape: [N, d], data: permuteRows(cap('resid', l), N, d, pi2) });
      tx.record({ session: s.session, stage: 'prefill', layer: l, crossing: 'P3', direction: 'returned', name: 'h', shape: [N, d], data: permuteRows(cap('resid', l + 1), N, d, pi2) });
    });
    layers.forEach((l, li) => {
      const flat = (ps: Int32Array[]) => { const a = new Int32Array(Hkv * hd); ps.forEach((p, g) => a.set(p, g * hd)); return a; };
      tx.record({ session: s.session, stage: 'keyshare', layer: l, crossing: 'K', direction: 'received', name: 'sigma', shape: [Hkv, hd], data: flat(sigmas[li]) });
      tx.record({ session: s.session, stage: 'keyshare', layer: l, crossing: 'K', direction: 'received', name: 'tau', shape: [Hkv, hd], data: flat(taus[li]) });
    });
    const generatedIds = generateInto(tx, m, s.session, cache, o.h, last, o.generate ?? 0);
    truth.sessions.push({ session: s.session, promptIds: s.promptIds, generatedIds });
  }
  return { transcript: tx, truth };
}
