import { openSync, readSync, closeSync, fstatSync, existsSync, readFileSync } from 'node:fs';
import { join, basename } from 'node:path';
import { CorruptModelFileError, MissingTensorError, ModelError, UnsupportedModelError } from './errors.ts';

export type StoredDtype = 'F32' | 'F16' | 'BF16';
const DTYPE_BYTES: Record<StoredDtype, number> = { F32: 4, F16: 2, BF16: 2 };
/** A header larger than this is not a model we can trust to parse (the format caps it at 100 MB). */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface TensorInfo {
  name: string;
  dtype: StoredDtype;
  shape: number[];
  file: string;
  /** Absolute byte offset in the file. */
  offset: number;
  byteLength: number;
}

/**
 * Reads tensors from one or more .safetensors files by positioned reads, one tensor at a time,
 * so a file larger than memory is never loaded whole.
 */
export class SafetensorsReader {
  readonly tensors = new Map<string, TensorInfo>();

  private constructor() {}

  /** Open `model.safetensors`, or the shards listed in `model.safetensors.index.json`. */
  static openModelDir(dir: string): SafetensorsReader {
    const single = join(dir, 'model.safetensors');
    const index = join(dir, 'model.safetensors.index.json');
    const r = new SafetensorsReader();
    if (existsSync(index)) {
      let map: Record<string, string>;
      try {
        map = JSON.parse(readFileSync(index, 'utf8')).weight_map;
      } catch (e) {
        throw new CorruptModelFileError(`${index}: not valid JSON (${(e as Error).message})`, index);
      }
      if (typeof map !== 'object' || map === null) throw new CorruptModelFileError(`${index}: no "weight_map" object`, index);
      const files = new Set(Object.values(map));
      for (const f of files) {
        if (typeof f !== 'string' || f.includes('/') || f.includes('\\')) throw new CorruptModelFileError(`${index}: bad shard name ${JSON.stringify(f)}`, index);
        r.addFile(join(dir, f));
      }
      for (const name of Object.keys(map)) {
        if (!r.tensors.has(name)) throw new MissingTensorError(`${index}: tensor ${name} is listed in shard ${map[name]} but not stored there`, index, name);
      }
    } else if (existsSync(single)) {
      r.addFile(single);
    } else {
      throw new ModelError(`${dir}: no model.safetensors or model.safetensors.index.json`, single);
    }
    return r;
  }

  static openFile(file: string): SafetensorsReader {
    const r = new SafetensorsReader();
    r.addFile(file);
    return r;
  }

  private addFile(file: string): void {
    if (!existsSync(file)) throw new ModelError(`${file}: missing weights file`, file);
    const fd = openSync(file, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw new CorruptModelFileError(`${basename(file)}: truncated (${size} bytes, no header)`, file);
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) {
        throw new CorruptModelFileError(`${basename(file)}: header length ${headerLen} exceeds the file (${size} bytes): truncated or not safetensors`, file);
      }
      const hbuf = Buffer.alloc(headerLen);
      readSync(fd, hbuf, 0, headerLen, 8);
      let header: Record<string, unknown>;
      try {
        header = JSON.parse(hbuf.toString('utf8'));
      } catch (e) {
        throw new CorruptModelFileError(`${basename(file)}: header is not valid JSON (${(e as Error).message})`, file);
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) {
        throw new CorruptModelFileError(`${basename(file)}: header is not a JSON object`, file);
      }
      const dataStart = 8 + headerLen;
      const dataLen = size - dataStart;
      for (const [name, v] of Object.entries(header)) {
        if (name === '__metadata__') continue;
        if (typeof v !== 'object' || v === null) {
          throw new CorruptModelFileError(`${basename(file)}: tensor ${name} has no dtype/shape/data_offsets entry`, file, name);
        }
        const prior = this.tensors.get(name);
        if (prior) {
          // With shards, a name stored twice leaves it ambiguous which copy is meant.
          throw new CorruptModelFileError(`${basename(file)}: tensor ${name} is also stored in ${basename(prior.file)}`, file, name);
        }
        const info = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
        const dtype = info.dtype as StoredDtype;
        if (!(dtype in DTYPE_BYTES)) {
          throw new UnsupportedModelError(`${basename(file)}: tensor ${name} has dtype ${JSON.stringify(info.dtype)}; supported: F32, F16, BF16`, file, name);
        }
        const shape = info.shape as number[];
        const offs = info.data_offsets as number[];
        if (!Array.isArray(shape) || !shape.every((x) => Number.isInteger(x) && x >= 0) || !Array.isArray(offs) || offs.length !== 2) {
          throw new CorruptModelFileError(`${basename(file)}: tensor ${name} has a malformed shape or data_offsets`, file, name);
        }
        const [begin, end] = offs;
        const expected = shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
        if (!Number.isInteger(begin) || !Number.isInteger(end) || begin < 0 || end < begin || end - begin !== expected) {
          throw new CorruptModelFileError(`${basename(file)}: tensor ${name} spans [${begin}, ${end}) but ${dtype}${JSON.stringify(shape)} needs ${expected} bytes`, file, name);
        }
        if (end > dataLen) {
          throw new CorruptModelFileError(`${basename(file)}: tensor ${name} ends at byte ${end} of a ${dataLen}-byte data section: file truncated`, file, name);
        }
        this.tensors.set(name, { name, dtype, shape, file, offset: dataStart + begin, byteLength: expected });
      }
    } finally {
      closeSync(fd);
    }
  }

  /** The weight files read, in the order they were opened. */
  get files(): string[] {
    return [...new Set([...this.tensors.values()].map((t) => t.file))];
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new MissingTensorError(`tensor ${name} is missing from the weights`, undefined, name);
    return t;
  }

  /** Read one tensor and convert it to float32. */
  readFloat32(name: string): Float32Array {
    const t = this.info(name);
    const raw = Buffer.alloc(t.byteLength);
    const fd = openSync(t.file, 'r');
    try {
      let got = 0;
      while (got < t.byteLength) {
        const n = readSync(fd, raw, got, t.byteLength - got, t.offset + got);
        if (n === 0) throw new CorruptModelFileError(`${basename(t.file)}: tensor ${name} is cut short`, t.file, name);
        got += n;
      }
    } finally {
      closeSync(fd);
    }
    return toFloat32(raw, t.dtype);
  }
}

/** Convert little-endian stored values to float32. */
export function toFloat32(raw: Uint8Array, dtype: StoredDtype): Float32Array {
  const n = raw.byteLength / DTYPE_BYTES[dtype];
  const out = new Float32Array(n);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  if (dtype === 'F32') {
    for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
  } else if (dtype === 'BF16') {
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u32[i] = dv.getUint16(i * 2, true) << 16;
  } else {
    for (let i = 0; i < n; i++) out[i] = halfToFloat(dv.getUint16(i * 2, true));
  }
  return out;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Round-to-nearest-even float32 -> float16 bits. */
export function floatToHalf(x: number): number {
  const f32 = new Float32Array([x]);
  const u = new Uint32Array(f32.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** Round-to-nearest-even float32 -> bfloat16 bits. */
export function floatToBf16(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff)) return (u >>> 16) | 0x40;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Serialise tensors to safetensors bytes (used by `hush model tiny` and the tests). */
export function encodeSafetensors(tensors: { name: string; dtype: StoredDtype; shape: number[]; data: Float32Array }[],
  metadata: Record<string, string> = { format: 'pt' }): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const chunks: Buffer[] = [];
  let off = 0;
  for (const t of tensors) {
    const bytes = DTYPE_BYTES[t.dtype];
    const buf = Buffer.alloc(t.data.length * bytes);
    for (let i = 0; i < t.data.length; i++) {
      if (t.dtype === 'F32') buf.writeFloatLE(t.data[i], i * 4);
      else if (t.dtype === 'F16') buf.writeUInt16LE(floatToHalf(t.data[i]), i * 2);
      else buf.writeUInt16LE(floatToBf16(t.data[i]), i * 2);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + buf.length] };
    chunks.push(buf);
    off += buf.length;
  }
  let hjson = JSON.stringify(header);
  while ((8 + Buffer.byteLength(hjson)) % 8 !== 0) hjson += ' ';
  const hb = Buffer.from(hjson, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  return Buffer.concat([len, hb, ...chunks]);
}
