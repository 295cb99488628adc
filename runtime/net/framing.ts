// Frames: an unsigned-varint length prefix (the same wire form as it-length-prefixed and lpStream)
// followed by one MessagePack value, the envelope [kind, body].
//
// We decode with our own small FrameDecoder rather than lpStream because (1) lpStream's byte
// buffer resets the stream once a fast sender gets more than maxBufferSize ahead of the reader
// instead of slowing it down, while FrameChannel pauses the libp2p stream (yamux then stops
// granting window, real backpressure); (2) the decoder is a synchronous, pure state machine that
// the fuzz tests drive byte for byte, so the code under fuzz is exactly the code on the wire.
import { Packr } from 'msgpackr';
import type { Logger, PeerId, Stream } from '@libp2p/interface';
import {
  CLOSE_TIMEOUT_MS,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_RECEIVE_HIGH_WATER_BYTES,
  DEFAULT_RECEIVE_HIGH_WATER_FRAMES,
  DEFAULT_RECEIVE_TIMEOUT_MS,
  DEFAULT_SEND_TIMEOUT_MS,
  MAX_ERROR_MESSAGE_CHARS,
  MAX_ERROR_NAME_CHARS,
  MAX_FRAME_BYTES_CEILING,
  PAUSED_STREAM_READ_BUFFER_BYTES,
} from './constants.ts';
import {
  ChannelClosedError,
  ChannelResetError,
  ChannelTimeoutError,
  FrameError,
  FrameTooLargeError,
  FrameTruncatedError,
  FrameUndecodableError,
  NetConfigError,
  ProtocolViolationError,
  errorFromRemote,
} from './errors.ts';

/**
 * One shared codec. moreTypes: typed arrays (Float32Array, Int32Array...) round-trip as themselves.
 * useRecords: false: plain maps, no record structures remembered between messages, so every frame
 * decodes on its own and a peer cannot grow decoder state.
 */
const packr = new Packr({ moreTypes: true, useRecords: false });

export const FrameKind = {
  /** An application value. */
  Data: 0,
  /** {name, message}: the sender failed; receive() throws it as a typed error. */
  Error: 1,
  /** A service accepted the channel (first frame from a ProtocolService). */
  Accept: 2,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

export interface DecodedFrame {
  kind: FrameKind;
  body: unknown;
}

export function checkMaxFrameBytes(value: number): number {
  if (!Number.isInteger(value) || value < 16 || value > MAX_FRAME_BYTES_CEILING) {
    throw new NetConfigError(`maxFrameBytes must be an integer in [16, ${MAX_FRAME_BYTES_CEILING}], got ${value}`);
  }
  return value;
}

function varintLength(value: number): number {
  let n = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

function encodeVarint(value: number): Uint8Array {
  const out = new Uint8Array(varintLength(value));
  for (let i = 0; i < out.length; i++) {
    const low = value % 128;
    value = Math.floor(value / 128);
    out[i] = i < out.length - 1 ? low | 0x80 : low;
  }
  return out;
}

/** The length prefix and the payload of one frame; throws FrameTooLargeError past the limit. */
export function encodeFrameParts(kind: FrameKind, body: unknown, maxFrameBytes = DEFAULT_MAX_FRAME_BYTES): [Uint8Array, Uint8Array] {
  const payload: Uint8Array = packr.pack([kind, body]);
  if (payload.byteLength > maxFrameBytes) throw new FrameTooLargeError(payload.byteLength, maxFrameBytes, `cannot send a frame of ${payload.byteLength} bytes: the limit is ${maxFrameBytes}`);
  return [encodeVarint(payload.byteLength), payload];
}

/** Wire bytes of one frame (prefix + payload). Default kind: Data. */
export function encodeFrame(body: unknown, options: { kind?: FrameKind; maxFrameBytes?: number } = {}): Uint8Array {
  const [prefix, payload] = encodeFrameParts(options.kind ?? FrameKind.Data, body, options.maxFrameBytes);
  const out = new Uint8Array(prefix.byteLength + payload.byteLength);
  out.set(prefix, 0);
  out.set(payload, prefix.byteLength);
  return out;
}

/** msgpackr's messages can quote decoded data; keep only the kind of failure. */
function describeDecodeFailure(err: unknown): string {
  const message = String((err as Error)?.message ?? err);
  if (err instanceof RangeError && /call stack/i.test(message)) return 'nesting too deep';
  if (/end of buffer not reached/i.test(message)) return 'trailing bytes after the value';
  if (/unexpected end/i.test(message)) return 'value ends early';
  return ((err as Error)?.name ?? 'Error') + ': ' + message.slice(0, 80).replace(/[{[].*$/s, '');
}

/** Decode one frame payload into its envelope. Any defect is a FrameUndecodableError. */
export function decodeFramePayload(payload: Uint8Array): DecodedFrame {
  if (payload.byteLength === 0) throw new FrameUndecodableError('empty frame');
  let value: unknown;
  try {
    value = packr.unpack(payload);
  } catch (err) {
    throw new FrameUndecodableError(`frame of ${payload.byteLength} bytes is not valid MessagePack (${describeDecodeFailure(err)})`);
  }
  if (!Array.isArray(value) || value.length < 1 || value.length > 2) throw new FrameUndecodableError('frame is not a [kind, body] envelope');
  const kind = value[0];
  if (kind !== FrameKind.Data && kind !== FrameKind.Error && kind !== FrameKind.Accept) throw new FrameUndecodableError(`unknown frame kind ${String(kind).slice(0, 20)}`);
  return { kind, body: value[1] };
}

/** Cheap peek: is this payload an [Error, body] envelope? (fixarray of 2, kind 1) */
function isErrorFramePayload(payload: Uint8Array): boolean {
  return payload.byteLength >= 2 && payload[0] === 0x92 && payload[1] === FrameKind.Error;
}

/** An error frame's body as a local typed error (names are checked, texts are cut). */
export function errorFromErrorFrame(body: unknown): Error {
  const b = (body ?? {}) as { name?: unknown; message?: unknown };
  const name = typeof b.name === 'string' && /^[A-Za-z][A-Za-z0-9_]*$/.test(b.name) ? b.name.slice(0, MAX_ERROR_NAME_CHARS) : 'Error';
  const message = typeof b.message === 'string' ? b.message.slice(0, MAX_ERROR_MESSAGE_CHARS) : '(no message)';
  return errorFromRemote(name, message);
}

function errorFrameBody(err: unknown): { name: string; message: string } {
  const e = err as { name?: unknown; message?: unknown } | null;
  const name = typeof e?.name === 'string' && /^[A-Za-z][A-Za-z0-9_]*$/.test(e.name) ? e.name.slice(0, MAX_ERROR_NAME_CHARS) : 'Error';
  const message = typeof e?.message === 'string' ? e.message.slice(0, MAX_ERROR_MESSAGE_CHARS) : String(err).slice(0, MAX_ERROR_MESSAGE_CHARS);
  return { name, message };
}

/**
 * Incremental length-prefix decoder. The declared length is checked against the limit while the
 * varint is still being read, so no buffer is ever sized from an unchecked length; data is kept
 * as the received chunks and joined once the frame is complete. After an error it stays failed.
 */
export class FrameDecoder {
  readonly maxFrameBytes: number;
  private readonly maxPrefixBytes: number;
  private lengthValue = 0;
  private lengthBytes = 0;
  /** Payload bytes still expected for the current frame; -1 while reading a length prefix. */
  private need = -1;
  private parts: Uint8Array[] = [];
  private partBytes = 0;
  private failure: FrameError | undefined;

  constructor(init: { maxFrameBytes?: number } = {}) {
    this.maxFrameBytes = checkMaxFrameBytes(init.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
    this.maxPrefixBytes = varintLength(this.maxFrameBytes);
  }

  /** Bytes held for a frame not yet complete (prefix included). */
  get bufferedBytes(): number {
    return this.partBytes + this.lengthBytes;
  }

  /** True between frames (nothing partial held). */
  get idle(): boolean {
    return this.need < 0 && this.lengthBytes === 0;
  }

  get failed(): FrameError | undefined {
    return this.failure;
  }

  /** Feed bytes; `onFrame` gets every completed payload in order. Throws a FrameError on bad framing. */
  push(data: Uint8Array | Iterable<Uint8Array>, onFrame: (payload: Uint8Array) => void): void {
    if (this.failure != null) throw this.failure;
    try {
      if (data instanceof Uint8Array) this.pushChunk(data, onFrame);
      else for (const chunk of data) this.pushChunk(chunk, onFrame);
    } catch (err) {
      if (err instanceof FrameError) this.failure = err;
      throw err;
    }
  }

  /** The input ended: throws FrameTruncatedError if a frame was cut off. */
  end(): void {
    if (this.failure != null) throw this.failure;
    if (!this.idle) {
      this.failure = new FrameTruncatedError(
        this.need < 0
          ? `stream ended inside a length prefix (${this.lengthBytes} bytes read)`
          : `stream ended after ${this.partBytes} of ${this.need} frame bytes`,
      );
      throw this.failure;
    }
  }

  private pushChunk(chunk: Uint8Array, onFrame: (payload: Uint8Array) => void): void {
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (this.need < 0) {
        const byte = chunk[offset++];
        this.lengthValue += (byte & 0x7f) * 2 ** (7 * this.lengthBytes);
        this.lengthBytes++;
        if (this.lengthValue > this.maxFrameBytes) throw new FrameTooLargeError(this.lengthValue, this.maxFrameBytes);
        if ((byte & 0x80) !== 0) {
          if (this.lengthBytes >= this.maxPrefixBytes) {
            throw new FrameTooLargeError(Number.NaN, this.maxFrameBytes, `length prefix longer than ${this.maxPrefixBytes} bytes (limit ${this.maxFrameBytes} bytes)`);
          }
          continue;
        }
        const length = this.lengthValue;
        this.lengthValue = 0;
        this.lengthBytes = 0;
        if (length === 0) {
          onFrame(new Uint8Array(0));
          continue;
        }
        this.need = length;
        continue;
      }
      const take = Math.min(this.need - this.partBytes, chunk.byteLength - offset);
      this.parts.push(chunk.subarray(offset, offset + take));
      this.partBytes += take;
      offset += take;
      if (this.partBytes === this.need) {
        const payload = this.parts.length === 1 ? this.parts[0] : concat(this.parts, this.partBytes);
        this.parts = [];
        this.partBytes = 0;
        this.need = -1;
        onFrame(payload);
      }
    }
  }
}

/** Resolve once the peer ended its side of `stream` (FIN or reset), or after `timeoutMs`. */
function waitForRemoteEnd(stream: Stream, timeoutMs: number): Promise<void> {
  if (stream.status !== 'open' || stream.remoteWriteStatus === 'closed') return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      stream.removeEventListener('remoteCloseWrite', done);
      stream.removeEventListener('close', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    stream.addEventListener('remoteCloseWrite', done);
    stream.addEventListener('close', done);
  });
}

/** Resolve once `stream` has handed every queued byte to the muxer; reject if it closes first. */
function waitForWriteIdle(stream: Stream, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const cleanup = (): void => {
      if (timer != null) clearTimeout(timer);
      stream.removeEventListener('idle', onIdle);
      stream.removeEventListener('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    const onIdle = (): void => {
      if (stream.writeBufferLength > 0) return;
      cleanup();
      resolve();
    };
    const onClose = (evt: Event): void => {
      cleanup();
      reject((evt as Event & { error?: Error }).error ?? new ChannelClosedError('stream closed while sending'));
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal!.reason);
    };
    if (signal?.aborted === true) {
      reject(signal.reason);
      return;
    }
    stream.addEventListener('idle', onIdle);
    stream.addEventListener('close', onClose);
    signal?.addEventListener('abort', onAbort);
    if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
      timer = setTimeout(() => {
        cleanup();
        reject(new ChannelTimeoutError(`peer did not take the frame within ${timeoutMs} ms (backpressure)`));
      }, timeoutMs);
    }
  });
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.byteLength;
  }
  return out;
}

export interface FrameChannelInit {
  /** Largest frame accepted or sent. Default DEFAULT_MAX_FRAME_BYTES. */
  maxFrameBytes?: number;
  /** Default timeout of receive(). */
  receiveTimeoutMs?: number;
  /** Default timeout of send() waiting on backpressure. */
  sendTimeoutMs?: number;
  /** Pause reading above this many queued bytes / frames (resume at half). */
  highWaterBytes?: number;
  highWaterFrames?: number;
  remotePeer?: PeerId;
  protocol?: string;
  log?: Logger;
}

export interface ReceiveOptions {
  signal?: AbortSignal;
  /** Overrides the channel's default; 0 or Infinity: wait without a timeout (signal still applies). */
  timeoutMs?: number;
}

export interface SendOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

interface Waiter {
  resolve(payload: Uint8Array): void;
  reject(err: Error): void;
}

/**
 * Request/response frames over one libp2p stream, for as many exchanges as the session needs.
 * receive() hands frames over in order; ones not yet asked for are queued (bounded: reading pauses).
 * Errors end a channel: a framing error from the peer makes this side send an error frame and
 * reset; an error frame from the peer is thrown by receive() (typed) and nothing follows it.
 */
export class FrameChannel {
  readonly stream: Stream;
  readonly remotePeer: PeerId | undefined;
  readonly protocol: string;
  readonly maxFrameBytes: number;
  /** Time (ms epoch) a frame was last sent or received. */
  lastActivity = Date.now();
  private readonly log: Logger;
  private readonly decoder: FrameDecoder;
  private readonly receiveTimeoutMs: number;
  private readonly sendTimeoutMs: number;
  private readonly highWaterBytes: number;
  private readonly highWaterFrames: number;
  private readonly queue: Uint8Array[] = [];
  private queued = 0;
  private readonly waiters: Waiter[] = [];
  private remoteEnded = false;
  private errorFrameSeen = false;
  private failure: Error | undefined;
  private paused = false;
  private localClosed = false;
  private closePromise: Promise<void> | undefined;
  private failPromise: Promise<void> | undefined;

  constructor(stream: Stream, init: FrameChannelInit = {}) {
    this.stream = stream;
    this.remotePeer = init.remotePeer;
    this.protocol = init.protocol ?? stream.protocol ?? '';
    this.maxFrameBytes = checkMaxFrameBytes(init.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES);
    this.decoder = new FrameDecoder({ maxFrameBytes: this.maxFrameBytes });
    this.receiveTimeoutMs = init.receiveTimeoutMs ?? DEFAULT_RECEIVE_TIMEOUT_MS;
    this.sendTimeoutMs = init.sendTimeoutMs ?? DEFAULT_SEND_TIMEOUT_MS;
    this.highWaterBytes = init.highWaterBytes ?? Math.max(DEFAULT_RECEIVE_HIGH_WATER_BYTES, this.maxFrameBytes);
    this.highWaterFrames = init.highWaterFrames ?? DEFAULT_RECEIVE_HIGH_WATER_FRAMES;
    this.log = (init.log ?? stream.log).newScope('channel');
    // While paused the stream buffers what the remote may still send (up to one yamux window);
    // the libp2p default of 4 MiB would reset the stream instead.
    if (stream.maxReadBufferLength < PAUSED_STREAM_READ_BUFFER_BYTES) stream.maxReadBufferLength = PAUSED_STREAM_READ_BUFFER_BYTES;
    stream.addEventListener('message', this.onMessage);
    stream.addEventListener('remoteCloseWrite', this.onRemoteCloseWrite);
    stream.addEventListener('close', this.onClose);
    if (stream.status !== 'open') this.onClose(new Event('close') as Event & { error?: Error });
  }

  /**
   * Decoded frames waiting for receive(), in bytes. Reading pauses above the high-water mark; what
   * the stream buffered meanwhile (at most one yamux window) arrives on resume.
   */
  get queuedBytes(): number {
    return this.queued;
  }

  /** True while reading is paused because receive() fell behind. */
  get readPaused(): boolean {
    return this.paused;
  }

  /** True until the channel failed, was closed by us, or the peer ended it and every frame was read. */
  get isOpen(): boolean {
    return this.failure == null && !this.localClosed && !(this.remoteEnded && this.queue.length === 0);
  }

  /** Send one value (any MessagePack-able value: objects, typed arrays, strings...). */
  async send(value: unknown, options: SendOptions = {}): Promise<void> {
    await this.sendFrame(FrameKind.Data, value, options);
  }

  /** Receive the next value. Throws the peer's error frame as a typed error, ChannelClosedError at a clean end. */
  async receive(options: ReceiveOptions = {}): Promise<unknown> {
    const frame = await this.receiveFrame(options);
    if (frame.kind === FrameKind.Data) return frame.body;
    if (frame.kind === FrameKind.Error) throw this.remoteFailure(frame.body);
    throw this.protocolFault(new ProtocolViolationError('unexpected accept frame in the middle of a channel'));
  }

  /** send() then receive(): one request, one response. */
  async request(value: unknown, options: ReceiveOptions = {}): Promise<unknown> {
    await this.send(value, options);
    return await this.receive(options);
  }

  /** Values until the peer closes cleanly (errors, including timeouts, are thrown). */
  async *[Symbol.asyncIterator](): AsyncGenerator<unknown, void, undefined> {
    while (true) {
      try {
        yield await this.receive();
      } catch (err) {
        if (err instanceof ChannelClosedError && this.failure == null) return;
        throw err;
      }
    }
  }

  /** Tell the peer this side failed (error frame with name and message), best effort. */
  async sendError(err: unknown, options: SendOptions = {}): Promise<void> {
    await this.sendFrame(FrameKind.Error, errorFrameBody(err), options);
  }

  /** @internal A ProtocolService accepts the channel. */
  async sendAccept(options: SendOptions = {}): Promise<void> {
    await this.sendFrame(FrameKind.Accept, null, options);
  }

  /** @internal The client waits for the service's accept (or its refusal, thrown typed). */
  async receiveAccept(options: ReceiveOptions = {}): Promise<void> {
    const frame = await this.receiveFrame(options);
    if (frame.kind === FrameKind.Accept) return;
    if (frame.kind === FrameKind.Error) throw this.remoteFailure(frame.body);
    throw this.protocolFault(new ProtocolViolationError('peer sent data before accepting the channel'));
  }

  /**
   * Graceful close: flush and end our side, then give the peer a moment to end its side; reset
   * the stream if either takes longer than CLOSE_TIMEOUT_MS. Safe to call more than once.
   */
  close(options: { signal?: AbortSignal } = {}): Promise<void> {
    this.closePromise ??= this.doClose(options);
    return this.closePromise;
  }

  /** Reset the stream at once (the peer sees a reset). */
  abort(err: Error = new ChannelResetError('channel aborted locally')): void {
    this.setFailure(err);
    // Pending receive() calls learn why; detach() below removes the listener that would tell them.
    this.rejectWaiters();
    this.detach();
    this.stream.abort(err);
  }

  /**
   * Send an error frame for a fatal fault, then close and reset. Used when the peer broke the
   * protocol (bad frames) or a handler failed; never throws.
   */
  fail(err: Error): Promise<void> {
    this.failPromise ??= this.doFail(err);
    return this.failPromise;
  }

  private async doFail(err: Error): Promise<void> {
    this.setFailure(err);
    this.rejectWaiters();
    if (this.paused) this.resumeReading();
    if (this.stream.writeStatus === 'writable') {
      try {
        const [prefix, payload] = encodeFrameParts(FrameKind.Error, errorFrameBody(err), this.maxFrameBytes);
        this.stream.send(prefix);
        this.stream.send(payload);
      } catch {
        /* the stream is already gone */
      }
      // Let the peer read the error frame before the stream goes away: it ends the stream when it
      // sees the frame. A FIN or reset that arrives together with our first frame, while the peer
      // is still in protocol negotiation, makes libp2p drop the data (its multistream-select
      // unwrap throws on a closed stream), and the peer would see a bare EOF instead of the reason.
      await waitForRemoteEnd(this.stream, CLOSE_TIMEOUT_MS);
    }
    this.detach();
    this.stream.abort(err);
  }

  private async doClose(options: { signal?: AbortSignal }): Promise<void> {
    this.localClosed = true;
    const signal = options.signal == null ? AbortSignal.timeout(CLOSE_TIMEOUT_MS) : AbortSignal.any([options.signal, AbortSignal.timeout(CLOSE_TIMEOUT_MS)]);
    try {
      if (this.stream.writeStatus === 'writable') await this.stream.close({ signal });
      if (this.stream.status === 'open') {
        await new Promise<void>((resolve, reject) => {
          const done = (): void => {
            signal.removeEventListener('abort', onAbort);
            resolve();
          };
          const onAbort = (): void => {
            this.stream.removeEventListener('close', done);
            reject(signal.reason);
          };
          this.stream.addEventListener('close', done, { once: true });
          signal.addEventListener('abort', onAbort, { once: true });
          // Drain what the peer still sends so its close can complete.
          if (this.paused) this.resumeReading();
        });
      }
    } catch (err) {
      this.log('close did not complete (%s), resetting', (err as Error)?.name);
      this.stream.abort(new ChannelResetError('channel close timed out'));
    } finally {
      this.setFailure(new ChannelClosedError('channel closed locally'));
      this.detach();
    }
  }

  private async sendFrame(kind: FrameKind, body: unknown, options: SendOptions): Promise<void> {
    if (this.failure != null) throw this.failure;
    if (this.localClosed) throw new ChannelClosedError('channel closed locally');
    const [prefix, payload] = encodeFrameParts(kind, body, this.maxFrameBytes);
    try {
      // Two sends, no copy of a large payload; both append synchronously, so frames never interleave.
      this.stream.send(prefix);
      this.stream.send(payload);
    } catch (err) {
      throw this.streamError(err);
    }
    this.lastActivity = Date.now();
    if (this.stream.writeBufferLength === 0) return;
    // Backpressure: wait until the muxer took the whole frame (the stream's 'idle' event), so at
    // most one frame waits in our write buffer. Not stream.onDrain(): in @libp2p/utils 7.4 its
    // promise is never renewed, so after the first drain it resolves at once, every time.
    const timeoutMs = options.timeoutMs ?? this.sendTimeoutMs;
    try {
      await waitForWriteIdle(this.stream, timeoutMs, options.signal);
    } catch (err) {
      if (err instanceof ChannelTimeoutError) throw err;
      throw this.streamError(err);
    }
  }

  private receiveFrame(options: ReceiveOptions): Promise<DecodedFrame> {
    const payload = this.queue.shift();
    if (payload != null) {
      this.queued -= payload.byteLength;
      this.maybeResume();
      return Promise.resolve(this.decodeOrFail(payload));
    }
    if (this.failure != null) return Promise.reject(this.failure);
    if (this.remoteEnded) return Promise.reject(new ChannelClosedError('peer closed the channel'));
    if (options.signal?.aborted === true) return Promise.reject(options.signal.reason);
    const timeoutMs = options.timeoutMs ?? this.receiveTimeoutMs;
    return new Promise<DecodedFrame>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cleanup = (): void => {
        if (timer != null) clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
      };
      const waiter: Waiter = {
        resolve: (p) => {
          cleanup();
          try {
            resolve(this.decodeOrFail(p));
          } catch (err) {
            reject(err);
          }
        },
        reject: (err) => {
          cleanup();
          reject(err);
        },
      };
      const onAbort = (): void => waiter.reject(options.signal!.reason ?? new ChannelTimeoutError('receive aborted'));
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => waiter.reject(new ChannelTimeoutError(`no frame from the peer within ${timeoutMs} ms`)), timeoutMs);
      }
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private decodeOrFail(payload: Uint8Array): DecodedFrame {
    try {
      return decodeFramePayload(payload);
    } catch (err) {
      throw this.protocolFault(err as Error);
    }
  }

  /** An error frame ends the channel: later receives throw the same error. */
  private remoteFailure(body: unknown): Error {
    const err = errorFromErrorFrame(body);
    this.setFailure(err);
    return err;
  }

  /** The peer broke the protocol: tell it, reset, and return the error to throw locally. */
  private protocolFault(err: Error): Error {
    this.log('protocol fault from peer: %s', err.message);
    void this.fail(err);
    return err;
  }

  private readonly onMessage = (evt: Event): void => {
    const data = (evt as Event & { data: Uint8Array | Iterable<Uint8Array> }).data;
    if (this.failure != null) return;
    this.lastActivity = Date.now();
    try {
      this.decoder.push(data, this.enqueue);
    } catch (err) {
      if (err instanceof FrameError) {
        this.log('bad framing from peer: %s', err.message);
        void this.fail(err);
        this.rejectWaiters();
      } else {
        throw err;
      }
    }
  };

  private readonly enqueue = (payload: Uint8Array): void => {
    if (this.errorFrameSeen) return; // nothing may follow an error frame
    if (isErrorFramePayload(payload)) {
      this.errorFrameSeen = true;
      this.onErrorFrameArrived();
    }
    const waiter = this.waiters.shift();
    if (waiter != null) {
      waiter.resolve(payload);
      return;
    }
    this.queue.push(payload);
    this.queued += payload.byteLength;
    if (!this.paused && (this.queued > this.highWaterBytes || this.queue.length > this.highWaterFrames)) {
      if (this.stream.readStatus === 'readable') {
        this.paused = true;
        this.stream.pause();
      }
    }
  };

  /**
   * The peer sent an error frame: nothing follows it. Keep it queued for receive() and end the
   * stream now (the peer waits for that before it resets), without waiting for a reader.
   */
  private onErrorFrameArrived(): void {
    this.remoteEnded = true;
    this.detach();
    queueMicrotask(() => {
      this.stream.abort(new ChannelClosedError('peer ended the channel with an error frame'));
      this.rejectWaiters();
    });
  }

  private maybeResume(): void {
    if (this.paused && this.queued <= this.highWaterBytes / 2 && this.queue.length <= this.highWaterFrames / 2) this.resumeReading();
  }

  private resumeReading(): void {
    this.paused = false;
    if (this.stream.readStatus === 'paused') {
      try {
        this.stream.resume();
      } catch {
        /* closed meanwhile */
      }
    }
  }

  private readonly onRemoteCloseWrite = (): void => {
    this.remoteEnded = true;
    try {
      this.decoder.end();
    } catch (err) {
      this.setFailure(err as Error);
    }
    this.rejectWaiters();
  };

  private readonly onClose = (evt: Event): void => {
    const error = (evt as Event & { error?: Error }).error;
    // A paused stream may still hold frames sent before a reset: hand them over first.
    if (this.stream.readBufferLength > 0 && this.paused) this.resumeReading();
    if (error != null) this.setFailure(new ChannelResetError(`stream reset: ${error.name}: ${error.message}`.slice(0, 300)));
    else this.onRemoteCloseWrite();
    this.rejectWaiters();
    this.detach();
  };

  private setFailure(err: Error): void {
    this.failure ??= err;
  }

  private rejectWaiters(): void {
    if (this.queue.length > 0) return;
    const err = this.failure ?? (this.remoteEnded ? new ChannelClosedError('peer closed the channel') : undefined);
    if (err == null) return;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private detach(): void {
    this.stream.removeEventListener('message', this.onMessage);
    this.stream.removeEventListener('remoteCloseWrite', this.onRemoteCloseWrite);
    this.stream.removeEventListener('close', this.onClose);
  }

  private streamError(err: unknown): Error {
    if (this.failure != null) return this.failure;
    const name = (err as Error)?.name ?? 'Error';
    if (name === 'StreamStateError' || name === 'StreamClosedError') return new ChannelClosedError(`channel is closed for sending (${name})`);
    if (name === 'AbortError' || name === 'TimeoutError') return err as Error;
    return new ChannelResetError(`stream failed: ${name}: ${(err as Error)?.message ?? ''}`.slice(0, 300));
  }
}
