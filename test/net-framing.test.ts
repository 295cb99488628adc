// Frame codec and decoder, including a 12,000-case fuzz of malformed, truncated, oversized and
// mutated input. No network (the live-channel fuzz is in net-channel.test.ts).
import * as lp from 'it-length-prefixed';
import { describe, expect, it } from 'vitest';
import {
  FrameDecoder,
  FrameError,
  FrameKind,
  FrameTooLargeError,
  FrameTruncatedError,
  FrameUndecodableError,
  decodeFramePayload,
  encodeFrame,
} from '../runtime/net/index.ts';
import { fuzzCases, mulberry32 } from './support/net-fuzz.ts';

function decodeAll(bytes: Uint8Array, maxFrameBytes: number, split: number[] = []): unknown[] {
  const decoder = new FrameDecoder({ maxFrameBytes });
  const values: unknown[] = [];
  let start = 0;
  for (const cut of [...split, bytes.length]) {
    decoder.push(bytes.subarray(start, cut), (payload) => values.push(decodeFramePayload(payload).body));
    start = cut;
  }
  decoder.end();
  return values;
}

describe('frame codec', () => {
  it('round-trips typed arrays, nested objects and binary', () => {
    const value = {
      hidden: new Float32Array([1.5, -2.25, Math.PI]),
      ids: new Int32Array([1, -2, 2 ** 31 - 1]),
      raw: new Uint8Array([0, 255]),
      nested: { list: [1, 'two', null, true], big: 2 ** 40 },
    };
    const [back] = decodeAll(encodeFrame(value), 1 << 20) as [typeof value];
    expect(back.hidden).toBeInstanceOf(Float32Array);
    expect([...back.hidden]).toEqual([...value.hidden]);
    expect(back.ids).toBeInstanceOf(Int32Array);
    expect([...back.ids]).toEqual([...value.ids]);
    expect([...back.raw]).toEqual([0, 255]);
    expect(back.nested).toEqual(value.nested);
  });

  it('uses the same wire form as it-length-prefixed', async () => {
    const frames = [encodeFrame('a'), encodeFrame({ b: new Float32Array(300) })];
    const wire = Uint8Array.from(frames.flatMap((f) => [...f]));
    const payloads: Uint8Array[] = [];
    for await (const chunk of lp.decode([wire])) payloads.push(chunk.subarray());
    expect(payloads.map((p) => decodeFramePayload(p).kind)).toEqual([FrameKind.Data, FrameKind.Data]);
    expect(decodeFramePayload(payloads[0]).body).toBe('a');
  });

  it('decodes the same frames whatever the chunking (byte by byte included)', () => {
    const wire = Uint8Array.from([...encodeFrame({ n: 1 }), ...encodeFrame(new Float32Array(100)), ...encodeFrame('end')]);
    const whole = decodeAll(wire, 1 << 20);
    const byteByByte = decodeAll(wire, 1 << 20, Array.from({ length: wire.length - 1 }, (_, i) => i + 1));
    expect(byteByByte).toEqual(whole);
    expect(whole).toHaveLength(3);
  });

  it('refuses an oversized frame from its length prefix alone, before any data arrives', () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 1024 });
    // varint of 1 GiB: the decoder must throw on the prefix, not wait for (or allocate) 1 GiB.
    const prefix = Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x04]);
    expect(() => decoder.push(prefix, () => {})).toThrow(FrameTooLargeError);
    expect(decoder.bufferedBytes).toBeLessThan(8);
    // Stays failed.
    expect(() => decoder.push(encodeFrame(1), () => {})).toThrow(FrameTooLargeError);
    // An endless varint is cut off after the few bytes that can hold the limit.
    const endless = new FrameDecoder({ maxFrameBytes: 1 << 20 });
    expect(() => endless.push(new Uint8Array(64).fill(0x80), () => {})).toThrow(FrameTooLargeError);
    // Sending side refuses too.
    expect(() => encodeFrame(new Uint8Array(2048), { maxFrameBytes: 1024 })).toThrow(FrameTooLargeError);
  });

  it('reports truncation and undecodable payloads with typed errors', () => {
    const frame = encodeFrame({ hello: 'world' });
    const cut = new FrameDecoder({ maxFrameBytes: 1024 });
    cut.push(frame.subarray(0, frame.length - 3), () => {});
    expect(() => cut.end()).toThrow(FrameTruncatedError);
    expect(() => decodeFramePayload(new Uint8Array(0))).toThrow(FrameUndecodableError);
    expect(() => decodeFramePayload(Uint8Array.from([0xc1]))).toThrow(FrameUndecodableError);
    // A valid MessagePack value that is not an envelope.
    expect(() => decodeFramePayload(Uint8Array.from([0x01]))).toThrow(FrameUndecodableError);
    // Trailing bytes after the envelope.
    const payload = encodeFrame(1).subarray(1);
    expect(() => decodeFramePayload(Uint8Array.from([...payload, 0x00]))).toThrow(FrameUndecodableError);
    // Deep nesting (stack overflow inside the decoder) is a typed error, not a crash.
    expect(() => decodeFramePayload(Uint8Array.from([0x92, 0x00, ...new Array(200_000).fill(0x91), 0x00]))).toThrow(FrameUndecodableError);
    // A huge array header in a tiny frame must not allocate.
    expect(() => decodeFramePayload(Uint8Array.from([0x92, 0x00, 0xdd, 0xff, 0xff, 0xff, 0xff]))).toThrow(FrameUndecodableError);
  });

  it('fuzz: 12,000 malformed, truncated, oversized and mutated inputs give typed errors or valid frames, never anything else', () => {
    const started = performance.now();
    const counts = { ok: 0, tooLarge: 0, truncated: 0, undecodable: 0, frames: 0 };
    const random = mulberry32(0x5eed);
    let cases = 0;
    for (const input of fuzzCases(12_000, random)) {
      cases++;
      const decoder = new FrameDecoder({ maxFrameBytes: input.maxFrameBytes });
      try {
        let start = 0;
        for (const cut of [...input.splits, input.bytes.length]) {
          decoder.push(input.bytes.subarray(start, cut), (payload) => {
            const frame = decodeFramePayload(payload);
            expect([FrameKind.Data, FrameKind.Error, FrameKind.Accept]).toContain(frame.kind);
            counts.frames++;
          });
          start = cut;
        }
        decoder.end();
        counts.ok++;
      } catch (err) {
        if (!(err instanceof FrameError)) throw new Error(`case ${cases} (${input.kind}) threw a non-FrameError: ${String(err)}`);
        if (input.kind === 'valid') throw new Error(`case ${cases}: valid frames failed to decode: ${String(err)}`);
        if (err instanceof FrameTooLargeError) counts.tooLarge++;
        else if (err instanceof FrameTruncatedError) counts.truncated++;
        else if (err instanceof FrameUndecodableError) counts.undecodable++;
      }
    }
    const ms = performance.now() - started;
    console.log(`frame fuzz: ${cases} cases in ${ms.toFixed(0)} ms`, counts);
    expect(cases).toBe(12_000);
    // Every class of outcome was exercised.
    expect(counts.ok).toBeGreaterThan(100);
    expect(counts.tooLarge).toBeGreaterThan(100);
    expect(counts.truncated).toBeGreaterThan(100);
    expect(counts.undecodable).toBeGreaterThan(100);
  });
});
