// Deterministic generators of hostile frame input, shared by the decoder fuzz and the live-channel
// fuzz. Seeded, so a failure reproduces.
import { FrameKind, encodeFrame } from '../../runtime/net/index.ts';

export type Random = () => number;

/** Small seeded PRNG (mulberry32). */
export function mulberry32(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const int = (random: Random, n: number): number => Math.floor(random() * n);

function randomBytes(random: Random, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = int(random, 256);
  return out;
}

export function randomValue(random: Random, depth = 0): unknown {
  switch (int(random, depth > 2 ? 5 : 8)) {
    case 0: return int(random, 1000) - 500;
    case 1: return random() * 1e6;
    case 2: return 'x'.repeat(int(random, 40));
    case 3: return Float32Array.from({ length: int(random, 64) }, () => random());
    case 4: return Int32Array.from({ length: int(random, 16) }, () => int(random, 1 << 30));
    case 5: return Array.from({ length: int(random, 5) }, () => randomValue(random, depth + 1));
    case 6: return Object.fromEntries(Array.from({ length: int(random, 5) }, (_, i) => [`k${i}`, randomValue(random, depth + 1)]));
    default: return randomBytes(random, int(random, 32));
  }
}

function concatBytes(...parts: ArrayLike<number>[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function varint(value: number): number[] {
  const out: number[] = [];
  while (value >= 128) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

function validFrames(random: Random, count: number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const kind = int(random, 10) === 0 ? FrameKind.Error : FrameKind.Data;
    parts.push(encodeFrame(kind === FrameKind.Error ? { name: 'SomeError', message: 'boom' } : randomValue(random), { kind }));
  }
  return concatBytes(...parts);
}

/** MessagePack headers that claim far more than the frame holds, and other decoder traps. */
function hostilePayload(random: Random): Uint8Array {
  const traps: ArrayLike<number>[] = [
    [0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of 4 billion
    [0xdf, 0xff, 0xff, 0xff, 0xff], // map32 of 4 billion
    [0xdb, 0x7f, 0xff, 0xff, 0xff], // str32 of 2 GiB
    [0xc6, 0x7f, 0xff, 0xff, 0xff], // bin32 of 2 GiB
    [0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01], // ext32 of 2 GiB
    [0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 0], // timestamp ext
    [0xc7, 0x10, 0x74, ...new Array(16).fill(0x41)], // typed-array ext with odd length
    [0xc1], // never-used byte
    new Uint8Array(1_000 + int(random, 12_000)).fill(0x91), // deep nesting
    [0x92, 0x00], // envelope without its body
    [0x93, 0x00, 0x01, 0x02], // envelope of three
    [0x92, 0x07, 0xc0], // unknown kind
  ];
  const trap = traps[int(random, traps.length)];
  // Sometimes wrapped as the body of a valid-looking envelope.
  return int(random, 2) === 0 ? concatBytes(trap) : concatBytes([0x92, 0x00], trap);
}

export interface FuzzCase {
  kind: 'random' | 'mutated' | 'truncated' | 'oversized' | 'hostile' | 'valid';
  bytes: Uint8Array;
  splits: number[];
  maxFrameBytes: number;
}

function splitsFor(random: Random, length: number): number[] {
  const n = int(random, 5);
  return Array.from({ length: n }, () => int(random, length + 1)).sort((a, b) => a - b);
}

export function* fuzzCases(count: number, random: Random, maxFrameBytes = 64 * 1024): Generator<FuzzCase> {
  const kinds: FuzzCase['kind'][] = ['random', 'mutated', 'truncated', 'oversized', 'hostile', 'valid'];
  for (let i = 0; i < count; i++) {
    const kind = kinds[i % kinds.length];
    let bytes: Uint8Array;
    switch (kind) {
      case 'random':
        bytes = randomBytes(random, int(random, 300));
        break;
      case 'mutated': {
        bytes = validFrames(random, 1 + int(random, 3));
        const flips = 1 + int(random, 4);
        for (let f = 0; f < flips; f++) {
          const op = int(random, 3);
          const at = int(random, bytes.length);
          if (op === 0) bytes[at] ^= 1 << int(random, 8);
          else if (op === 1) bytes = concatBytes(bytes.subarray(0, at), [int(random, 256)], bytes.subarray(at));
          else bytes = concatBytes(bytes.subarray(0, at), bytes.subarray(at + 1));
        }
        break;
      }
      case 'truncated': {
        const whole = validFrames(random, 1 + int(random, 3));
        bytes = whole.subarray(0, 1 + int(random, whole.length - 1));
        break;
      }
      case 'oversized': {
        const overlong = int(random, 3) === 0;
        const prefix = overlong ? new Array(6 + int(random, 20)).fill(0x80) : varint(maxFrameBytes + 1 + int(random, 2 ** 34));
        bytes = concatBytes(prefix, randomBytes(random, int(random, 64)));
        break;
      }
      case 'hostile': {
        const payload = hostilePayload(random);
        bytes = concatBytes(varint(payload.length), payload);
        break;
      }
      default:
        bytes = validFrames(random, 1 + int(random, 3));
    }
    yield { kind, bytes, splits: splitsFor(random, bytes.length), maxFrameBytes };
  }
}
