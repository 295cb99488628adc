import { createCipheriv, createHash, hkdfSync, randomBytes, randomFillSync } from 'node:crypto';

/**
 * SCX session keys (SCX.md, "Keys").
 *
 * One 256-bit seed per session from the OS CSPRNG. Every secret (permutation, noise vector, decoy
 * randomness) is derived from it, so the coordinator stores O(1) secrets and a session can be replayed
 * from its seed in tests:
 *
 *   key    = HKDF-SHA256(ikm = seed, salt = empty, info = "hush/scx/v1|" + layer + "|" + crossing + "|" + purpose [+ "|" + extra], 32 bytes)
 *   stream = ChaCha20(key, nonce = 0) keystream     (a CSPRNG; the key is used for this one stream only)
 *
 * The object requested is drawn from the start of that stream, so a label's output depends only on
 * the seed, the label and the size asked for: no prompt length or batch size is baked into any key.
 * Asking for the same label twice returns the same values (that is what makes replay work); callers
 * must give distinct uses distinct labels (layer, crossing, purpose, extra). Labels are restricted to
 * [A-Za-z0-9_.:=-] so the "|"-joined info string is unambiguous.
 *
 * Every typed array handed out is remembered; `destroy()` zeroes the seed and all of them. Callers
 * that are done with a large buffer early (e.g. per-row noise) can `release()` it: zeroed at once and
 * forgotten, so a long session does not pin every buffer it ever used.
 */

export class KeysDestroyedError extends Error {
  override name = 'KeysDestroyedError';
  constructor(what: string) {
    super(`SessionKeys: ${what} after destroy(); the session's keys are gone`);
  }
}

export class KeyLabelError extends Error {
  override name = 'KeyLabelError';
}

export class KeySizeError extends Error {
  override name = 'KeySizeError';
}

export const SEED_BYTES = 32;
/** Largest object one derivation may return (elements). 2^27 float64 = 1 GiB; sizes may come from the network. */
export const MAX_DERIVED_ELEMENTS = 1 << 27;

const INFO_PREFIX = 'hush/scx/v1';
const LABEL_RE = /^[A-Za-z0-9_.:=-]{1,64}$/;
const CHUNK = 1 << 14; // keystream bytes fetched per refill: amortizes cipher calls, small enough to stay in L1/L2
const ZEROS = new Uint8Array(CHUNK); // plaintext of the keystream; never written
const TWO_POW_32 = 4294967296;
const TWO_POW_53 = 9007199254740992;

/** A source of random bytes read 32 bits at a time; the refill function fills a whole buffer. */
class RandomStream {
  private readonly buf = new Uint8Array(CHUNK);
  private pos = CHUNK;
  constructor(private readonly refill: (out: Uint8Array) => void) {}

  nextUint32(): number {
    if (this.pos + 4 > CHUNK) {
      this.refill(this.buf);
      this.pos = 0;
    }
    const b = this.buf;
    const p = this.pos;
    this.pos = p + 4;
    // Explicit little-endian assembly: replays must not depend on the host's byte order.
    return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
  }

  /** Uniform integer in [0, bound), bound <= 2^32, unbiased by rejection. */
  nextBelow(bound: number): number {
    // Accept only r < limit, the largest multiple of bound that fits in 32 bits, so r % bound is uniform.
    const limit = TWO_POW_32 - (TWO_POW_32 % bound);
    for (;;) {
      const r = this.nextUint32();
      if (r < limit) return r % bound;
    }
  }

  /** 53 random bits as an integer in [0, 2^53). */
  next53(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return hi * 67108864 + lo;
  }

  wipe(): void {
    this.buf.fill(0);
    this.pos = CHUNK;
  }
}

function chachaStream(key: Uint8Array): RandomStream {
  const cipher = createCipheriv('chacha20', key, new Uint8Array(16));
  return new RandomStream((out) => {
    const ks = cipher.update(ZEROS);
    out.set(ks);
    ks.fill(0); // keystream is secret; do not leave copies for the GC
  });
}

function osStream(): RandomStream {
  return new RandomStream((out) => {
    randomFillSync(out);
  });
}

function checkCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_DERIVED_ELEMENTS) {
    throw new KeySizeError(`${what}: size must be an integer in [0, ${MAX_DERIVED_ELEMENTS}], got ${n}`);
  }
}

function checkScale(scale: number): void {
  if (!Number.isFinite(scale) || scale < 0) throw new KeySizeError(`laplace: scale must be finite and >= 0, got ${scale}`);
}

// ---- draws from a stream (shared by SessionKeys and OsRandom) ----

function drawPermutation(s: RandomStream, n: number, out: Int32Array, offset: number): void {
  for (let i = 0; i < n; i++) out[offset + i] = i;
  // Fisher–Yates: position i takes a uniform pick of the i+1 not yet placed.
  for (let i = n - 1; i > 0; i--) {
    const j = s.nextBelow(i + 1);
    const t = out[offset + i];
    out[offset + i] = out[offset + j];
    out[offset + j] = t;
  }
}

function drawUniform(s: RandomStream, out: Float64Array): void {
  for (let i = 0; i < out.length; i++) out[i] = s.next53() / TWO_POW_53;
}

function drawLaplace(s: RandomStream, out: Float32Array, scale: number): void {
  for (let i = 0; i < out.length; i++) {
    // u in (0,1) strictly ((k + 0.5) / 2^53) so the log never sees 0; symmetric around 1/2.
    const u = (s.next53() + 0.5) / TWO_POW_53 - 0.5;
    // Inverse CDF of Laplace(0, b): -b * sign(u) * ln(1 - 2|u|).
    out[i] = u < 0 ? scale * Math.log(1 + 2 * u) : -scale * Math.log(1 - 2 * u);
  }
}

function drawBelow(s: RandomStream, out: Int32Array, bound: number): void {
  for (let i = 0; i < out.length; i++) out[i] = s.nextBelow(bound);
}

/** Anything that can hand out never-before-used Laplace vectors for a layer (NoisePool fills from it). */
export interface FreshNoiseSource {
  freshLaplace(layer: number, n: number, scale: number): Float32Array;
}

/**
 * Noise straight from the OS CSPRNG, tied to no session: what an idle trusted device uses to fill a
 * NoisePool before any session exists. Not replayable by design.
 */
export class OsRandom implements FreshNoiseSource {
  freshLaplace(_layer: number, n: number, scale: number): Float32Array {
    checkCount(n, 'freshLaplace');
    checkScale(scale);
    const s = osStream();
    const out = new Float32Array(n);
    drawLaplace(s, out, scale);
    s.wipe();
    return out;
  }
}

type Handed = Int32Array | Float32Array | Float64Array;

export class SessionKeys implements FreshNoiseSource {
  private readonly seed: Uint8Array;
  private readonly handed = new Set<Handed>();
  private readonly freshCounters = new Map<number, number>();
  private destroyed = false;

  private constructor(seed: Uint8Array) {
    this.seed = seed;
  }

  /** A new session: 32 bytes from the OS CSPRNG. */
  static fresh(): SessionKeys {
    const b = randomBytes(SEED_BYTES);
    const seed = new Uint8Array(b);
    b.fill(0);
    return new SessionKeys(seed);
  }

  /** Replay a session from its seed (tests). The seed is copied; the caller keeps ownership of its array. */
  static fromSeed(seed: Uint8Array): SessionKeys {
    if (!(seed instanceof Uint8Array) || seed.length !== SEED_BYTES) {
      throw new KeySizeError(`fromSeed: seed must be a Uint8Array of ${SEED_BYTES} bytes`);
    }
    return new SessionKeys(new Uint8Array(seed));
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  /** Short non-secret identifier for logs: sha256 of a dedicated HKDF output (never the seed itself). */
  fingerprint(): string {
    this.alive('fingerprint');
    const k = new Uint8Array(hkdfSync('sha256', this.seed, new Uint8Array(0), `${INFO_PREFIX}|fingerprint`, 32));
    const h = createHash('sha256').update(k).digest('hex').slice(0, 16);
    k.fill(0);
    return h;
  }

  /** Uniform permutation of [0, n): out[i] is the source index for position i (see encoding.ts conventions). */
  permutation(layer: number, crossing: string, purpose: string, n: number, extra?: string): Int32Array {
    checkCount(n, 'permutation');
    const out = new Int32Array(n);
    const s = this.stream(layer, crossing, purpose, extra);
    drawPermutation(s, n, out, 0);
    s.wipe();
    return this.hand(out);
  }

  /**
   * One independent uniform permutation of [0, headDim) per kv head, as [numKvHeads, headDim] row-major.
   * Head g's permutation is derived from its own label (crossing "P2", extra "kv=g"), so sigma and tau
   * (and every head) are unrelated.
   */
  headPermutations(layer: number, purpose: 'sigma' | 'tau', numKvHeads: number, headDim: number): Int32Array {
    if (purpose !== 'sigma' && purpose !== 'tau') throw new KeyLabelError(`headPermutations: purpose must be 'sigma' or 'tau', got ${String(purpose)}`);
    checkCount(numKvHeads, 'headPermutations(numKvHeads)');
    checkCount(headDim, 'headPermutations(headDim)');
    checkCount(numKvHeads * headDim, 'headPermutations');
    const out = new Int32Array(numKvHeads * headDim);
    for (let g = 0; g < numKvHeads; g++) {
      const s = this.stream(layer, 'P2', purpose, `kv=${g}`);
      drawPermutation(s, headDim, out, g * headDim);
      s.wipe();
    }
    return this.hand(out);
  }

  /** n i.i.d. Laplace(0, scale) samples (inverse CDF over 53-bit uniforms), rounded to fp32. */
  laplace(layer: number, crossing: string, purpose: string, n: number, scale: number, extra?: string): Float32Array {
    checkCount(n, 'laplace');
    checkScale(scale);
    const out = new Float32Array(n);
    const s = this.stream(layer, crossing, purpose, extra);
    drawLaplace(s, out, scale);
    s.wipe();
    return this.hand(out);
  }

  /** n i.i.d. uniform doubles in [0, 1), each from 53 random bits. */
  uniform(layer: number, crossing: string, purpose: string, n: number, extra?: string): Float64Array {
    checkCount(n, 'uniform');
    const out = new Float64Array(n);
    const s = this.stream(layer, crossing, purpose, extra);
    drawUniform(s, out);
    s.wipe();
    return this.hand(out);
  }

  /** n i.i.d. uniform integers in [0, bound) (unbiased rejection sampling); bound in [1, 2^31). */
  integers(layer: number, crossing: string, purpose: string, n: number, bound: number, extra?: string): Int32Array {
    checkCount(n, 'integers');
    if (!Number.isSafeInteger(bound) || bound < 1 || bound > 0x7fffffff) throw new KeySizeError(`integers: bound must be an integer in [1, 2^31), got ${bound}`);
    const out = new Int32Array(n);
    const s = this.stream(layer, crossing, purpose, extra);
    drawBelow(s, out, bound);
    s.wipe();
    return this.hand(out);
  }

  /**
   * A Laplace vector never handed out before by this object for this layer (label "pool", extra = a
   * per-layer counter). NoisePool fills from this; replaying the seed replays the sequence.
   */
  freshLaplace(layer: number, n: number, scale: number): Float32Array {
    this.alive('freshLaplace');
    checkLayer(layer);
    const k = this.freshCounters.get(layer) ?? 0;
    this.freshCounters.set(layer, k + 1);
    return this.laplace(layer, 'P1', 'pool', n, scale, `k=${k}`);
  }

  /** Zero buffers handed out by this object now and stop tracking them (they are no longer usable). */
  release(...bufs: Handed[]): void {
    for (const b of bufs) {
      if (this.handed.delete(b)) b.fill(0);
    }
  }

  /** Zero the seed and every buffer ever handed out (and not yet released); later calls throw KeysDestroyedError. */
  destroy(): void {
    this.seed.fill(0);
    for (const b of this.handed) b.fill(0);
    this.freshCounters.clear();
    this.destroyed = true;
  }

  /** Test hook: the seed and every tracked buffer are all zero. */
  allBuffersZeroed(): boolean {
    if (!isZero(this.seed)) return false;
    for (const b of this.handed) if (!isZero(b)) return false;
    return true;
  }

  /** Number of buffers currently tracked (tests, leak checks). */
  get trackedBuffers(): number {
    return this.handed.size;
  }

  private hand<T extends Handed>(b: T): T {
    this.handed.add(b);
    return b;
  }

  private alive(what: string): void {
    if (this.destroyed) throw new KeysDestroyedError(what);
  }

  private stream(layer: number, crossing: string, purpose: string, extra: string | undefined): RandomStream {
    this.alive('derivation');
    checkLayer(layer);
    checkLabel(crossing, 'crossing');
    checkLabel(purpose, 'purpose');
    let info = `${INFO_PREFIX}|${layer}|${crossing}|${purpose}`;
    if (extra !== undefined) {
      checkLabel(extra, 'extra');
      info += `|${extra}`;
    }
    const key = new Uint8Array(hkdfSync('sha256', this.seed, new Uint8Array(0), info, 32));
    const s = chachaStream(key);
    key.fill(0);
    return s;
  }
}

function checkLayer(layer: number): void {
  if (!Number.isSafeInteger(layer) || layer < 0 || layer > 1_000_000) throw new KeyLabelError(`layer must be a non-negative integer, got ${layer}`);
}

function checkLabel(v: string, what: string): void {
  if (typeof v !== 'string' || !LABEL_RE.test(v)) throw new KeyLabelError(`${what} label must match ${LABEL_RE}, got ${JSON.stringify(v)}`);
}

function isZero(b: ArrayLike<number>): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}
