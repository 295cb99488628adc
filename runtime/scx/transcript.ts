import { readFileSync, writeFileSync } from 'node:fs';

/**
 * Everything the cloud side received, returned or stored, as the attack harness reads it.
 *
 * File format (`.hushtx`, little-endian, safetensors-like):
 *   bytes 0..8   u64 header length H
 *   bytes 8..8+H JSON header: { format: "hush-transcript", version: 1, model, mode, meta, entries: [...] }
 *   then         the raw arrays, each entry's bytes at [offset, offset + byteLength) from the end of the header
 * Each entry: { session, stage, layer, crossing, direction, name, shape, dtype, offset, byteLength }.
 *   stage     "prefill" | "keyshare" | "generate" | "end"
 *   crossing  "P1" | "P2" | "P3" (prefill), "K" (keyshare), "D" (one decode vector), "S" (split prefill)
 *   direction "received" | "returned" | "stored"
 *   dtype     "F32" | "I32"
 * `step` is the generation step for stage "generate" (0 for the first generated token's forward).
 */
export type TranscriptStage = 'prefill' | 'keyshare' | 'generate' | 'end';
export type TranscriptCrossing = 'P1' | 'P2' | 'P3' | 'K' | 'D' | 'S';
export type TranscriptDirection = 'received' | 'returned' | 'stored';

export interface TranscriptEntry {
  session: string;
  stage: TranscriptStage;
  layer: number;
  crossing: TranscriptCrossing;
  direction: TranscriptDirection;
  name: string;
  shape: number[];
  step?: number;
  data: Float32Array | Int32Array;
}

export interface TranscriptHeader {
  model: string;
  mode: string;
  meta?: Record<string, unknown>;
}

export class Transcript {
  readonly entries: TranscriptEntry[] = [];
  constructor(public header: TranscriptHeader) {}

  record(e: Omit<TranscriptEntry, 'data'> & { data: Float32Array | Int32Array }): void {
    // Copy: the caller may reuse or zero its buffers afterwards.
    const data = e.data instanceof Float32Array ? new Float32Array(e.data) : new Int32Array(e.data);
    this.entries.push({ ...e, shape: [...e.shape], data });
  }

  filter(p: Partial<Omit<TranscriptEntry, 'data' | 'shape'>>): TranscriptEntry[] {
    return this.entries.filter((e) => Object.entries(p).every(([k, v]) => (e as unknown as Record<string, unknown>)[k] === v));
  }

  totalBytes(): number {
    return this.entries.reduce((a, e) => a + e.data.byteLength, 0);
  }

  encode(): Buffer {
    let offset = 0;
    const heads = this.entries.map((e) => {
      const { data, ...rest } = e;
      const h = { ...rest, dtype: data instanceof Float32Array ? 'F32' : 'I32', offset, byteLength: data.byteLength };
      offset += data.byteLength;
      return h;
    });
    const json = Buffer.from(JSON.stringify({ format: 'hush-transcript', version: 1, ...this.header, entries: heads }), 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    const body = Buffer.alloc(offset);
    let o = 0;
    for (const e of this.entries) {
      Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength).copy(body, o);
      o += e.data.byteLength;
    }
    return Buffer.concat([len, json, body]);
  }

  static decode(buf: Buffer): Transcript {
    if (buf.length < 8) throw new Error('transcript: truncated (no header length)');
    const hl = Number(buf.readBigUInt64LE(0));
    if (8 + hl > buf.length) throw new Error('transcript: header length exceeds the file');
    const h = JSON.parse(buf.subarray(8, 8 + hl).toString('utf8'));
    if (h.format !== 'hush-transcript' || h.version !== 1) throw new Error('transcript: not a hush-transcript v1 file');
    const t = new Transcript({ model: h.model, mode: h.mode, meta: h.meta });
    const base = 8 + hl;
    for (const e of h.entries) {
      const start = base + e.offset;
      if (start + e.byteLength > buf.length) throw new Error(`transcript: entry ${e.name} runs past the end of the file`);
      const bytes = new Uint8Array(buf.subarray(start, start + e.byteLength)).slice().buffer;
      const data = e.dtype === 'F32' ? new Float32Array(bytes) : new Int32Array(bytes);
      const { dtype: _d, offset: _o, byteLength: _b, ...rest } = e;
      t.entries.push({ ...rest, data });
    }
    return t;
  }

  save(file: string): void {
    writeFileSync(file, this.encode());
  }

  static load(file: string): Transcript {
    return Transcript.decode(readFileSync(file));
  }
}
