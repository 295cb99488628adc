import { describe, it, expect, afterEach } from 'vitest';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { LinkShaper, ShaperConfigError, startShaper } from '../simulations/emulation/shaper.ts';

/**
 * The user-space link shaper: RTT and bandwidth as configured (within 15%), bytes in order under
 * jitter, bounded queues, clean shutdown. Loopback only, bounded transfers.
 */
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => { for (const f of cleanup.splice(0).reverse()) await f(); });

async function listen(onConn: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer({ noDelay: true }, onConn);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise<void>((r) => { server.close(() => r()); }));
  const a = server.address();
  return { server, port: typeof a === 'object' && a ? a.port : 0 };
}

async function dial(port: number): Promise<Socket> {
  const s = connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((res, rej) => { s.once('connect', res); s.once('error', rej); });
  cleanup.push(() => { s.destroy(); });
  return s;
}

async function shaper(...a: Parameters<typeof startShaper>): Promise<LinkShaper> {
  const sh = await startShaper(...a);
  cleanup.push(() => sh.close());
  return sh;
}

/** Echo server: every byte comes back. */
const echo = () => listen((s) => { s.setNoDelay(true); s.on('error', () => undefined); s.pipe(s); });

/** Median round trip of `n` sequential 64-byte messages through an echo path. */
async function medianRtt(sock: Socket, n: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const msg = Buffer.alloc(64, i & 0xff);
    let got = 0;
    const t0 = performance.now();
    await new Promise<void>((res) => {
      const on = (d: Buffer) => { got += d.length; if (got >= 64) { sock.off('data', on); res(); } };
      sock.on('data', on);
      sock.write(msg);
    });
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[n >> 1];
}

describe('link shaper', () => {
  it('round trip through the proxy is the configured RTT (within 15%)', async () => {
    const { port } = await echo();
    const direct = await medianRtt(await dial(port), 10);
    for (const rttMs of [20, 50]) {
      const sh = await shaper({ target: { port }, link: { rttMs } });
      const rtt = await medianRtt(await dial(sh.port), 15);
      expect(rtt).toBeGreaterThan(rttMs * 0.85);
      expect(rtt).toBeLessThan(rttMs * 1.15);
      // The delay is the shaper's, not the path's.
      expect(direct).toBeLessThan(rttMs * 0.1);
    }
  });

  it('throughput in each direction is the configured bandwidth (within 15%)', async () => {
    // Up: client -> sink at 16 Mbit/s. Down: source -> client at 8 Mbit/s (an asymmetric home link).
    const up = 16e6, down = 8e6, bytes = 1_500_000;
    const sink = await listen((s) => {
      let n = 0, first = 0;
      s.on('data', (d: Buffer) => {
        if (!first) first = performance.now();
        n += d.length;
        if (n >= bytes) s.end(JSON.stringify({ ms: performance.now() - first, n }));
      });
    });
    const sh = await shaper({ target: { port: sink.port }, link: { rttMs: 10, upBitsPerSec: up, downBitsPerSec: down } });
    const c = await dial(sh.port);
    const reply = new Promise<string>((res) => { let t = ''; c.on('data', (d) => { t += d; }); c.on('end', () => res(t)); });
    c.write(randomBytes(bytes));
    const r = JSON.parse(await reply) as { ms: number; n: number };
    // Bytes after the first arrived over the measured span (the first piece's own time is outside it).
    const upRate = ((r.n - 16 * 1024) * 8) / (r.ms / 1000);
    expect(upRate / up).toBeGreaterThan(0.85);
    expect(upRate / up).toBeLessThan(1.15);

    const source = await listen((s) => { s.on('error', () => undefined); s.end(randomBytes(bytes / 2)); });
    const sh2 = await shaper({ target: { port: source.port }, link: { rttMs: 10, upBitsPerSec: up, downBitsPerSec: down } });
    const c2 = await dial(sh2.port);
    const got = await new Promise<{ n: number; ms: number }>((res) => {
      let n = 0, first = 0;
      c2.on('data', (d: Buffer) => { if (!first) first = performance.now(); n += d.length; });
      c2.on('end', () => res({ n, ms: performance.now() - first }));
    });
    expect(got.n).toBe(bytes / 2);
    const downRate = ((got.n - 16 * 1024) * 8) / (got.ms / 1000);
    expect(downRate / down).toBeGreaterThan(0.85);
    expect(downRate / down).toBeLessThan(1.15);
  });

  it('keeps byte order under jitter and passes half-closes through', async () => {
    const { port } = await echo();
    const sh = await shaper({ target: { port }, link: { rttMs: 4, jitterMs: 3, upBitsPerSec: 200e6 } });
    const c = await dial(sh.port);
    const data = randomBytes(600_000);
    const back: Buffer[] = [];
    const ended = new Promise<void>((res) => { c.on('data', (d: Buffer) => back.push(d)); c.on('end', res); });
    // Many small writes: many pieces, each with its own jitter draw.
    for (let off = 0; off < data.length; off += 1000) c.write(data.subarray(off, off + 1000));
    c.end();
    await ended;
    expect(Buffer.concat(back).equals(data)).toBe(true);
  });

  it('bounds its queues: a fast sender on a slow link is paused, not buffered without limit', async () => {
    let received = 0;
    const sink = await listen((s) => { s.on('data', (d: Buffer) => { received += d.length; }); s.on('error', () => undefined); });
    const maxQueuedBytes = 64 * 1024;
    const sh = await shaper({ target: { port: sink.port }, link: { rttMs: 2, upBitsPerSec: 2e6 }, maxQueuedBytes });
    const c = await dial(sh.port);
    c.on('error', () => undefined);
    // 4 MB offered at once to a 250 kB/s link: without back-pressure the proxy would hold it all.
    c.write(randomBytes(4_000_000));
    await new Promise((r) => setTimeout(r, 600));
    const st = sh.stats();
    expect(st.pauses).toBeGreaterThan(0);
    expect(st.peakQueuedBytes).toBeLessThanOrEqual(maxQueuedBytes + 64 * 1024);
    expect(received).toBeLessThan(400_000);
    // Clean shutdown mid-transfer: both ends see the connection close, the port is released.
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    await sh.close();
    await closed;
    expect(sh.stats().open).toBe(0);
    await expect(dial(sh.port)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('refuses targets off loopback and bad shapes', async () => {
    await expect(startShaper({ target: { host: '10.0.0.1', port: 80 }, link: { rttMs: 1 } })).rejects.toBeInstanceOf(ShaperConfigError);
    await expect(startShaper({ target: { port: 80 }, link: { rttMs: -1 } })).rejects.toThrow(/rttMs/);
    await expect(startShaper({ target: { port: 80 }, link: { rttMs: 1, upBitsPerSec: Number.NaN } })).rejects.toThrow(/upBitsPerSec/);
  });
});
