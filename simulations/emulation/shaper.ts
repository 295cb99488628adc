/**
 * A user-space link shaper: a TCP proxy on 127.0.0.1 that forwards every connection to one target
 * address and makes each direction behave like a WAN link: a token-bucket bandwidth limit
 * (serialisation), then a one-way delay of rtt/2 plus optional exponential jitter (propagation).
 * The kernel here has no netem, so delay cannot come from `tc`; a proxy in the path works for libp2p
 * because Noise authenticates the PeerId end to end and the proxy only moves opaque bytes.
 *
 * Byte order is preserved (jitter never lets a later chunk overtake an earlier one); buffers are
 * bounded (a direction whose queue is full pauses its source socket, so TCP flow control pushes back
 * on the sender); close() ends every connection and timer. Not emulated: loss, the TCP handshake's
 * own round trip (the proxy accepts at once; the first data still takes the delayed path).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Prng } from '../prng.ts';

export class ShaperConfigError extends Error {
  override name = 'ShaperConfigError';
}

/** One direction's shape. */
export interface DirectionShape {
  /** Fixed one-way delay, ms. */
  delayMs: number;
  /** Mean extra one-way delay, ms, drawn exponentially per chunk (as the simulator draws jitter). */
  jitterMs?: number;
  /** Bytes/s; 0 or Infinity = unlimited. */
  bandwidthBytesPerSec?: number;
  /** Token bucket depth, bytes (default: 1 ms of bandwidth, at least 1500). */
  burstBytes?: number;
}

/** A symmetric-delay link as a user states it: RTT, jitter, bandwidth up (client -> target) and down. */
export interface LinkShape {
  rttMs: number;
  jitterMs?: number;
  /** Client -> target, bits/s (0 or absent: unlimited). */
  upBitsPerSec?: number;
  /** Target -> client, bits/s (default: same as up). */
  downBitsPerSec?: number;
}

export interface ShaperOptions {
  /** Where connections go; loopback only (tests and emulation never leave the machine). */
  target: { host?: string; port: number };
  /** Port to listen on (0 = any free port). */
  listenPort?: number;
  link: LinkShape;
  /** Per direction per connection: above this many queued bytes the source is paused (default 4 MiB). */
  maxQueuedBytes?: number;
  /** Seed of the jitter draws. */
  seed?: number;
  /** Keep the arrival time, direction and size of up to this many chunks (diagnostics; default 0). */
  traceLimit?: number;
}

/** A chunk as it reached the shaper (before its delay). */
export interface TraceEntry { t: number; dir: 'up' | 'down'; bytes: number }

export interface ShaperStats {
  connections: number;
  open: number;
  bytesUp: number;
  bytesDown: number;
  /** Times a direction paused its source because its queue was full. */
  pauses: number;
  /** Most bytes one direction of one connection held at once (bounded by maxQueuedBytes + one read). */
  peakQueuedBytes: number;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
/** Largest piece a chunk is cut into, so a big chunk is not held back whole (store-and-forward). */
const PIECE_BYTES = 16 * 1024;
const DEFAULT_MAX_QUEUED = 4 * 1024 * 1024;

function checkShape(s: LinkShape): void {
  const nonneg = (v: number | undefined, name: string) => {
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0)) throw new ShaperConfigError(`${name} must be a finite number >= 0 (got ${v})`);
  };
  nonneg(s.rttMs, 'rttMs');
  if (s.rttMs === undefined) throw new ShaperConfigError('rttMs is required');
  nonneg(s.jitterMs, 'jitterMs');
  nonneg(s.upBitsPerSec, 'upBitsPerSec');
  nonneg(s.downBitsPerSec, 'downBitsPerSec');
}

/** The two directions of a link shape. */
export function directions(s: LinkShape): { up: DirectionShape; down: DirectionShape } {
  checkShape(s);
  const up = (s.upBitsPerSec ?? 0) / 8, down = (s.downBitsPerSec ?? s.upBitsPerSec ?? 0) / 8;
  return {
    up: { delayMs: s.rttMs / 2, jitterMs: s.jitterMs ?? 0, bandwidthBytesPerSec: up },
    down: { delayMs: s.rttMs / 2, jitterMs: s.jitterMs ?? 0, bandwidthBytesPerSec: down },
  };
}

interface Piece { buf: Buffer; due: number }

/**
 * One direction of one connection. Departure times come from a token bucket (bytes wait for tokens;
 * the bucket holds at most `burstBytes`), arrival = departure + delay + jitter, never before the
 * previous piece's arrival.
 */
class ShapedPipe {
  private readonly queue: Piece[] = [];
  private head = 0;
  private queuedBytes = 0;
  private tokens = 0;
  private bucketAt = 0;
  private lastDue = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingDrain = false;
  private srcEnded = false;
  private paused = false;
  private finished = false;

  constructor(
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly shape: () => DirectionShape,
    private readonly maxQueued: number,
    private readonly rng: Prng,
    private readonly count: (bytes: number) => void,
    private readonly onPause: () => void,
    private readonly onQueued: (bytes: number) => void,
    private readonly onArrive: (bytes: number) => void,
  ) {
    src.on('data', (chunk: Buffer) => this.push(chunk));
    src.on('end', () => { this.srcEnded = true; this.pump(); });
    dst.on('drain', () => { this.waitingDrain = false; this.pump(); });
  }

  private push(chunk: Buffer): void {
    const now = performance.now();
    this.onArrive(chunk.length);
    const s = this.shape();
    const rate = s.bandwidthBytesPerSec && Number.isFinite(s.bandwidthBytesPerSec) ? s.bandwidthBytesPerSec : 0;
    const burst = s.burstBytes ?? Math.max(1500, rate / 1000);
    for (let off = 0; off < chunk.length; off += PIECE_BYTES) {
      const buf = chunk.subarray(off, Math.min(chunk.length, off + PIECE_BYTES));
      let depart = now;
      if (rate > 0) {
        // Refill up to the bucket depth, then take the piece's bytes, waiting (in virtual time) for
        // what is missing. Departures never go back in time, so the long-run rate is exactly `rate`.
        const t = Math.max(now, this.bucketAt);
        this.tokens = Math.min(burst, this.tokens + ((t - this.bucketAt) * rate) / 1000);
        this.bucketAt = t;
        if (this.tokens >= buf.length) { this.tokens -= buf.length; depart = t; }
        else { depart = t + ((buf.length - this.tokens) / rate) * 1000; this.tokens = 0; this.bucketAt = depart; }
      }
      const due = Math.max(this.lastDue, depart + s.delayMs + this.rng.exp(s.jitterMs ?? 0));
      this.lastDue = due;
      this.queue.push({ buf, due });
      this.queuedBytes += buf.length;
    }
    this.onQueued(this.queuedBytes);
    if (this.queuedBytes > this.maxQueued && !this.paused) { this.paused = true; this.src.pause(); this.onPause(); }
    this.pump();
  }

  /** Write every piece that is due; arm a timer for the next one. */
  private pump(): void {
    if (this.finished) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    const now = performance.now();
    while (this.head < this.queue.length && !this.waitingDrain) {
      const p = this.queue[this.head];
      // Half a millisecond early is within the timer's own granularity; it saves a timer per piece.
      if (p.due > now + 0.5) break;
      this.head++;
      this.queuedBytes -= p.buf.length;
      this.count(p.buf.length);
      if (this.dst.destroyed) break;
      if (!this.dst.write(p.buf)) this.waitingDrain = true;
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) { this.queue.splice(0, this.head); this.head = 0; }
    if (this.paused && this.queuedBytes <= this.maxQueued / 2) { this.paused = false; this.src.resume(); }
    if (this.head < this.queue.length) {
      if (!this.waitingDrain) {
        // Rounded, not ceiled: with the half-millisecond tolerance above a piece leaves within about
        // half a millisecond of its time (plus the event loop's own lateness), not up to one late.
        const wait = Math.max(1, Math.round(this.queue[this.head].due - now));
        this.timer = setTimeout(() => this.pump(), wait);
      }
      return;
    }
    if (this.srcEnded && !this.dst.destroyed) { this.finished = true; this.dst.end(); }
  }

  stop(): void {
    this.finished = true;
    clearTimeout(this.timer);
    this.queue.length = 0;
    this.head = 0;
    this.queuedBytes = 0;
  }
}

/** A running shaper: a listening proxy in front of one target. */
export class LinkShaper {
  private shape: { up: DirectionShape; down: DirectionShape };
  private readonly sockets = new Set<Socket>();
  private readonly pipes = new Set<ShapedPipe>();
  private readonly counters: ShaperStats = { connections: 0, open: 0, bytesUp: 0, bytesDown: 0, pauses: 0, peakQueuedBytes: 0 };
  private readonly rng: Prng;
  private closed = false;
  private readonly peak = (bytes: number) => { if (bytes > this.counters.peakQueuedBytes) this.counters.peakQueuedBytes = bytes; };
  /** The link shape now in force. */
  link: LinkShape;

  private readonly traced: TraceEntry[] = [];

  private constructor(private readonly server: Server, readonly port: number, readonly target: { host: string; port: number }, link: LinkShape, private readonly maxQueued: number, seed: number, private readonly traceLimit: number) {
    this.shape = directions(link);
    this.link = { ...link };
    this.rng = new Prng(seed);
  }

  /** Start listening on 127.0.0.1. */
  static async start(o: ShaperOptions): Promise<LinkShaper> {
    const host = o.target.host ?? '127.0.0.1';
    if (!LOOPBACK.has(host)) throw new ShaperConfigError(`the shaper forwards to loopback only (got ${host})`);
    if (!(Number.isInteger(o.target.port) && o.target.port > 0 && o.target.port < 65536)) throw new ShaperConfigError(`target port must be 1..65535 (got ${o.target.port})`);
    const maxQueued = o.maxQueuedBytes ?? DEFAULT_MAX_QUEUED;
    if (!(Number.isInteger(maxQueued) && maxQueued >= PIECE_BYTES)) throw new ShaperConfigError(`maxQueuedBytes must be an integer >= ${PIECE_BYTES}`);
    directions(o.link);
    // Half-open: one side's FIN must not end the other direction, which may still hold delayed bytes.
    const server = createServer({ noDelay: true, allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.listenPort ?? 0, '127.0.0.1', () => { server.off('error', reject); resolve(); });
    });
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    const shaper = new LinkShaper(server, port, { host, port: o.target.port }, o.link, maxQueued, o.seed ?? 1, Math.max(0, o.traceLimit ?? 0));
    server.on('connection', (client) => shaper.accept(client));
    return shaper;
  }

  /** Change the shape of every connection, open ones included (pieces already queued keep their times). */
  setLink(link: LinkShape): void {
    this.shape = directions(link);
    this.link = { ...link };
  }

  private record(dir: 'up' | 'down', bytes: number): void {
    if (this.traced.length < this.traceLimit) this.traced.push({ t: performance.now(), dir, bytes });
  }

  /** Chunks recorded since the last clearTrace() (at most traceLimit). */
  trace(): readonly TraceEntry[] { return this.traced; }
  clearTrace(): void { this.traced.length = 0; }

  stats(): ShaperStats {
    return { ...this.counters, open: this.pipes.size / 2 };
  }

  /** `/ip4/127.0.0.1/tcp/<port>`, plus `/p2p/<peerId>` when given: the address a libp2p peer dials. */
  multiaddr(peerId?: string): string {
    return `/ip4/127.0.0.1/tcp/${this.port}${peerId ? `/p2p/${peerId}` : ''}`;
  }

  private accept(client: Socket): void {
    if (this.closed) { client.destroy(); return; }
    this.counters.connections++;
    const upstream = connect({ host: this.target.host, port: this.target.port, noDelay: true, allowHalfOpen: true });
    client.setNoDelay(true);
    const pair = [client, upstream];
    for (const s of pair) this.sockets.add(s);
    const up = new ShapedPipe(client, upstream, () => this.shape.up, this.maxQueued, this.rng, (n) => { this.counters.bytesUp += n; }, () => { this.counters.pauses++; }, this.peak, (n) => this.record('up', n));
    const down = new ShapedPipe(upstream, client, () => this.shape.down, this.maxQueued, this.rng, (n) => { this.counters.bytesDown += n; }, () => { this.counters.pauses++; }, this.peak, (n) => this.record('down', n));
    this.pipes.add(up).add(down);
    let done = false;
    const teardown = () => {
      if (done) return;
      done = true;
      up.stop(); down.stop();
      this.pipes.delete(up); this.pipes.delete(down);
      for (const s of pair) { s.destroy(); this.sockets.delete(s); }
    };
    // An error on either side ends both (a reset must reach the other end, not hang it); so does a
    // side that closed without finishing its half, and the close of the second socket of a pair.
    for (const s of pair) {
      s.on('error', teardown);
      s.on('close', () => {
        this.sockets.delete(s);
        if (!s.readableEnded || !pair.some((x) => this.sockets.has(x))) teardown();
      });
    }
  }

  /** Stop listening and end every connection now. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pipes) p.stop();
    this.pipes.clear();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Start a shaper in front of `target` (see LinkShaper.start). */
export function startShaper(o: ShaperOptions): Promise<LinkShaper> {
  return LinkShaper.start(o);
}
