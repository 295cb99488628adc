import { appendToken, argmax, logitsOf, type AttackerModel, type PrefixCache } from './forward.ts';
import { matchPosition, rowThresholds, zeroCost, type Cost, type MatchOptions, type PositionMatch } from './match.ts';
import type { Observation } from './observe.ts';

/**
 * A7: the decode vectors. In generation the cloud sees one plaintext hidden vector per token at its
 * first layer and returns one from its last. (a) Vocabulary matching one token at a time, continuing
 * the prefix the attacker recovered from the prefill; (b) the logit lens: final norm + LM head on
 * the returned vector, skipping the tail layers, as a guess of the next token.
 */

export interface DecodeMatchResult { tokens: number[]; steps: number[]; positions: PositionMatch[]; cost: Cost }

/**
 * Match decode-step inputs in step order, appending each recovered token to `cache` (the caller's
 * recovered prompt; pass a clone to keep it). Step s is the forward of generated token s.
 */
export function decodeMatch(m: AttackerModel, cache: PrefixCache, steps: Observation[], opts: MatchOptions = {}): DecodeMatchResult {
  const sorted = steps.slice().sort((a, b) => (a.step ?? 0) - (b.step ?? 0));
  const cost = zeroCost();
  const positions: PositionMatch[] = [];
  for (const o of sorted) {
    if (o.R !== 1) throw new RangeError(`A7: a decode vector should be one row, got ${o.R}`);
    const threshold = rowThresholds(o.rows, 1, o.D, o.noiseScale, opts.relTol ?? 2e-3);
    const pm = matchPosition(m, cache, { probe: o.probe, rows: o.rows, D: o.D, segment: 0, rowIdx: [0], threshold, noiseScale: o.noiseScale }, opts, cost, () => true);
    positions.push(pm);
    const t0 = performance.now();
    appendToken(m, cache, pm.token);
    cost.prefixForwards++;
    cost.seconds += (performance.now() - t0) / 1000;
  }
  return { tokens: positions.map((p) => p.token), steps: sorted.map((o) => o.step ?? 0), positions, cost };
}

/** Logit-lens next-token guesses for every row of a final-layer (or last cloud layer) residual observation. */
export function logitLens(m: AttackerModel, obs: Observation): number[] {
  if (obs.probe.kind !== 'resid') throw new RangeError('A7 logit lens needs residual rows');
  const logits = logitsOf(m, obs.rows, obs.R);
  return Array.from({ length: obs.R }, (_, r) => argmax(logits, r * m.V, m.V));
}
