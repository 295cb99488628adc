// Real libp2p nodes in this process (127.0.0.1): pairing, trust checks, cloud role, long-lived
// channels, backpressure, limits, and a live fuzz of a running handler.
import type { Stream } from '@libp2p/interface';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ChannelTimeoutError,
  FrameDecoder,
  FrameKind,
  FrameTooLargeError,
  InviteExpiredError,
  InviteUsedError,
  NetConfigError,
  PAIRING_PROTOCOL,
  PairingDeclinedError,
  PeerRefusedError,
  ROSTER_PROTOCOL,
  ServiceBusyError,
  UNPAIRED_CONNECTION_GRACE_MS,
  decodeFramePayload,
  decodeInvite,
  encodeInvite,
  fingerprint,
  type FrameChannel,
  type HushNode,
} from '../runtime/net/index.ts';
import { fuzzCases, mulberry32 } from './support/net-fuzz.ts';
import { makeCloud, makeDevice, waitFor } from './support/net-nodes.ts';

const ECHO = '/hush-test/echo/1';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function echo(channel: FrameChannel): Promise<void> {
  for await (const message of channel) await channel.send(message);
}

/** First listen address, with its /p2p part. */
function addrOf(node: HushNode): string {
  return node.getMultiaddrs()[0].toString();
}

let a: HushNode; // device, the inviter
let b: HushNode; // device, pairs with a
let d: HushNode; // device, never paired
let cloud: HushNode;
let confirmAnswer = true;

beforeAll(async () => {
  [a, b, d, cloud] = await Promise.all([
    makeDevice('A', { confirmPairing: () => confirmAnswer }),
    makeDevice('B'),
    makeDevice('D'),
    makeCloud(),
  ]);
  await a.handle(ECHO, {}, echo);
  await b.handle(ECHO, {}, echo);
});

afterAll(async () => {
  await Promise.all([a, b, d, cloud].map((n) => n?.stop()));
});

describe('pairing', () => {
  it('an invite pairs once; reuse, expiry and a "no" on either side fail with typed errors', async () => {
    const invite = a.createInvite({ validForMs: 30_000 });
    const info = await b.join(invite.code);
    expect(info).toEqual({ peerId: a.peerId.toString(), name: 'A', fingerprint: fingerprint(a.peerId) });
    expect(a.roster!.isTrusted(b.peerId)).toBe(true);
    expect(b.roster!.isTrusted(a.peerId)).toBe(true);
    expect(a.roster!.get(b.peerId)!.name).toBe('B');
    expect(b.roster!.get(a.peerId)!.name).toBe('A');

    await expect(d.join(invite.code)).rejects.toBeInstanceOf(InviteUsedError);

    const short = a.createInvite({ validForMs: 50 });
    await sleep(80);
    await expect(d.join(short.code)).rejects.toBeInstanceOf(InviteExpiredError);
    // Same secret with a doctored expiry: the inviter's own clock still says expired.
    const doctored = encodeInvite({ ...decodeInvite(short.code), expiresAt: new Date(Date.now() + 60_000) });
    await expect(d.join(doctored)).rejects.toBeInstanceOf(InviteExpiredError);

    confirmAnswer = false;
    await expect(d.join(a.createInvite().code)).rejects.toBeInstanceOf(PairingDeclinedError);
    confirmAnswer = true;
    await expect(d.join(a.createInvite().code, { confirm: () => false })).rejects.toBeInstanceOf(PairingDeclinedError);

    expect(a.roster!.get(d.peerId)).toBeUndefined();
    expect(d.roster!.size).toBe(0);
  });
});

describe('trust', () => {
  it('an unpaired peer cannot open a trusted protocol, with or without an open pairing window', async () => {
    const target = addrOf(a);
    // Window open (invites live): admitted for pairing only, the trusted handler refuses.
    a.createInvite({ validForMs: 30_000 });
    const inWindow = await d.openChannel(target, ECHO).catch((e: unknown) => e);
    expect(inWindow).toBeInstanceOf(PeerRefusedError);
    expect((inWindow as Error).message).toMatch(/does not trust/);
    // Roster sync is trusted too.
    await expect(d.openChannel(target, ROSTER_PROTOCOL)).rejects.toBeInstanceOf(PeerRefusedError);

    // Window closed: refused at the handshake.
    a.invites!.cancelAll();
    await d.libp2p.hangUp(a.peerId);
    await sleep(50);
    const refused = await d.openChannel(target, ECHO).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PeerRefusedError);
    expect((refused as Error).message).toMatch(/handshake/);
    await expect(d.connect(target)).rejects.toBeInstanceOf(PeerRefusedError);

    // The paired device gets through.
    const channel = await b.openChannel(a.peerId, ECHO);
    expect(await channel.request('hello')).toBe('hello');
    await channel.close();
  });

  it('a cloud node serves only untrusted protocols; a device dials it; the cloud cannot use trusted ones', async () => {
    await expect(cloud.handle('/hush-test/x/1', { trusted: true }, echo)).rejects.toBeInstanceOf(NetConfigError);
    const CLOUD = '/hush-test/cloud/1';
    await cloud.handle(CLOUD, { trusted: false }, async (channel) => {
      for await (const message of channel) {
        const hidden = (message as { hidden: Float32Array }).hidden;
        await channel.send({ hidden: hidden.map((x) => 2 * x) });
      }
    });
    expect(cloud.libp2p.getProtocols()).toContain(CLOUD);
    expect(cloud.libp2p.getProtocols()).not.toContain(PAIRING_PROTOCOL);
    expect(cloud.libp2p.getProtocols()).not.toContain(ROSTER_PROTOCOL);

    const channel = await a.openChannel(addrOf(cloud), CLOUD);
    for (let step = 0; step < 20; step++) {
      const answer = (await channel.request({ hidden: new Float32Array([step, 0.5]) })) as { hidden: Float32Array };
      expect(answer.hidden).toBeInstanceOf(Float32Array);
      expect([...answer.hidden]).toEqual([2 * step, 1]);
    }
    // Over the connection the device opened, the cloud still cannot reach trusted protocols.
    await expect(cloud.openChannel(a.peerId, ECHO)).rejects.toBeInstanceOf(PeerRefusedError);
    await expect(cloud.openChannel(a.peerId, ROSTER_PROTOCOL)).rejects.toBeInstanceOf(PeerRefusedError);
    await channel.close();
  });

  it('sweeps out unpaired inbound connections after the pairing grace, keeps outbound ones to cloud peers', async () => {
    a.createInvite({ validForMs: 30_000 });
    await d.connect(addrOf(a));
    await a.connect(addrOf(cloud));
    expect(a.libp2p.getConnections(d.peerId).length).toBeGreaterThan(0);
    expect(a.sweepUntrusted()).toBe(0); // still within the grace
    expect(a.sweepUntrusted(Date.now() + UNPAIRED_CONNECTION_GRACE_MS + 1)).toBeGreaterThan(0);
    await waitFor(() => a.libp2p.getConnections(d.peerId).length === 0, 2_000, 'the unpaired connection to close');
    expect(a.libp2p.getConnections(cloud.peerId).length).toBeGreaterThan(0);
    expect(a.libp2p.getConnections(b.peerId).length).toBeGreaterThan(0);
    a.invites!.cancelAll();
  });

  it('discovery dials trusted peers only', async () => {
    await a.libp2p.hangUp(b.peerId);
    await a.libp2p.hangUp(d.peerId);
    await waitFor(() => a.libp2p.getConnections(b.peerId).length === 0, 2_000, 'A and B disconnected');
    a.onPeerDiscovered({ id: d.peerId, multiaddrs: d.getMultiaddrs() });
    a.onPeerDiscovered({ id: b.peerId, multiaddrs: b.getMultiaddrs() });
    await waitFor(() => a.libp2p.getConnections(b.peerId).length > 0, 5_000, 'A to dial discovered B');
    await sleep(100);
    expect(a.libp2p.getConnections(d.peerId)).toHaveLength(0);
  });
});

describe('channels', () => {
  it('one long-lived channel carries many exchanges and 4 MiB tensors; limits are typed', async () => {
    const channel = await b.openChannel(a.peerId, ECHO, { maxFrameBytes: 6 << 20 });
    for (let i = 0; i < 100; i++) {
      const answer = (await channel.request({ i, v: new Float32Array(256).fill(i) })) as { i: number; v: Float32Array };
      expect(answer.i).toBe(i);
      expect(answer.v[255]).toBe(i);
    }
    const big = new Float32Array(1024 * 1024).map((_, i) => i % 1000);
    const back = (await channel.request(big, { timeoutMs: 20_000 })) as Float32Array;
    expect(back).toBeInstanceOf(Float32Array);
    expect(back.length).toBe(big.length);
    expect(back[123_456]).toBe(big[123_456]);
    // Pipelined: three sends, then three receives, in order.
    await Promise.all([channel.send(1), channel.send(2), channel.send(3)]);
    expect([await channel.receive(), await channel.receive(), await channel.receive()]).toEqual([1, 2, 3]);
    // Too large to send: refused locally, channel still fine.
    await expect(channel.send(new Float32Array(2 * 1024 * 1024))).rejects.toBeInstanceOf(FrameTooLargeError);
    expect(await channel.request('still here')).toBe('still here');
    await channel.close();

    // The service's own limit is smaller than the client's: the service says FrameTooLargeError.
    await a.handle('/hush-test/small/1', { maxFrameBytes: 1024 }, echo);
    const small = await b.openChannel(a.peerId, '/hush-test/small/1', { maxFrameBytes: 1 << 20 });
    await small.send(new Uint8Array(4096));
    await expect(small.receive()).rejects.toBeInstanceOf(FrameTooLargeError);
    await expect(small.receive()).rejects.toBeInstanceOf(FrameTooLargeError);
  });

  it('backpressure: a reader that falls behind pauses the sender instead of buffering everything', async () => {
    const FRAME = 256 * 1024;
    const COUNT = 48; // 12 MiB in all
    const HIGH_WATER = 1 << 20;
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    let serverChannel: FrameChannel | undefined;
    let maxQueued = 0;
    await a.handle('/hush-test/slow/1', { maxFrameBytes: 2 * FRAME, highWaterBytes: HIGH_WATER }, async (channel) => {
      serverChannel = channel;
      await gate;
      let count = 0;
      for await (const frame of channel) {
        maxQueued = Math.max(maxQueued, channel.queuedBytes);
        expect((frame as Uint8Array)[0]).toBe(count % 256);
        if (++count === COUNT) break;
      }
      await channel.send(count);
    });
    const channel = await b.openChannel(a.peerId, '/hush-test/slow/1', { maxFrameBytes: 2 * FRAME, sendTimeoutMs: 20_000 });
    let sent = 0;
    const sending = (async () => {
      for (let i = 0; i < COUNT; i++) {
        await channel.send(new Uint8Array(FRAME).fill(i % 256));
        sent++;
      }
    })();
    await waitFor(() => serverChannel?.readPaused === true, 10_000, 'the server to pause reading');
    // Wait until the sender stalls: nothing more goes out while nobody reads.
    let last = -1;
    while (sent !== last) {
      last = sent;
      await sleep(300);
    }
    // Held back: the 1 MiB queue, one 2 MiB yamux window and a frame or two in flight (~14 frames).
    expect(sent).toBeLessThan(20);
    expect(serverChannel!.queuedBytes).toBeLessThanOrEqual(HIGH_WATER + 2 * FRAME);
    openGate();
    await sending;
    expect(await channel.receive({ timeoutMs: 20_000 })).toBe(COUNT);
    // On resume the stream hands over what it buffered while paused (at most one window).
    expect(maxQueued).toBeLessThanOrEqual(HIGH_WATER + 2 * 1024 * 1024 + 2 * FRAME);
    await channel.close();
  });

  it('closes idle channels and limits concurrent ones', async () => {
    const idle = await a.handle('/hush-test/idle/1', { idleTimeoutMs: 200 }, echo);
    const channel = await b.openChannel(a.peerId, '/hush-test/idle/1');
    expect(idle.activeChannels).toBe(1);
    await sleep(500);
    const err = await channel.receive({ timeoutMs: 2_000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChannelTimeoutError);
    expect((err as Error).message).toMatch(/peer reported/);
    await waitFor(() => idle.activeChannels === 0, 3_000, 'the idle channel to be released');

    const busy = await a.handle('/hush-test/busy/1', { maxConcurrentChannels: 2 }, echo);
    const first = await b.openChannel(a.peerId, '/hush-test/busy/1');
    const second = await b.openChannel(a.peerId, '/hush-test/busy/1');
    await expect(b.openChannel(a.peerId, '/hush-test/busy/1')).rejects.toBeInstanceOf(ServiceBusyError);
    await first.close();
    await waitFor(() => busy.activeChannels === 1, 2_000, 'a slot to free up');
    const third = await b.openChannel(a.peerId, '/hush-test/busy/1');
    expect(await third.request(3)).toBe(3);
    await Promise.all([second.close(), third.close()]);

    // libp2p's per-connection stream limit answers before the service does: also ServiceBusyError.
    await a.handle('/hush-test/streams/1', { maxInboundStreams: 2 }, echo);
    const s1 = await b.openChannel(a.peerId, '/hush-test/streams/1');
    const s2 = await b.openChannel(a.peerId, '/hush-test/streams/1');
    await expect(b.openChannel(a.peerId, '/hush-test/streams/1')).rejects.toBeInstanceOf(ServiceBusyError);
    expect(await s2.request('ok')).toBe('ok');
    await Promise.all([s1.close(), s2.close()]);
  });
});

/** Raw stream: write hostile bytes, half-close, collect whatever comes back until the stream ends. */
async function hostileExchange(stream: Stream, bytes: Uint8Array, splits: number[]): Promise<string[]> {
  const decoder = new FrameDecoder({ maxFrameBytes: 1 << 20 });
  const replies: string[] = [];
  const done = new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      stream.abort(new Error('fuzz exchange timed out'));
      replies.push('client-timeout');
      resolve();
    }, 5_000);
    stream.addEventListener('message', (evt) => {
      try {
        decoder.push(evt.data, (payload) => {
          const frame = decodeFramePayload(payload);
          replies.push(frame.kind === FrameKind.Error ? String((frame.body as { name: string }).name) : frame.kind === FrameKind.Accept ? 'accept' : 'data');
        });
      } catch {
        replies.push('bad-reply');
      }
    });
    stream.addEventListener('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  try {
    let start = 0;
    for (const cut of [...splits, bytes.length]) {
      if (cut > start) stream.send(bytes.subarray(start, cut));
      start = cut;
    }
    await stream.close();
  } catch {
    /* the service may already have reset the stream */
  }
  await done;
  return replies;
}

describe('live fuzz', () => {
  it('300 hostile streams against a running handler: typed error frames, no crash, a healthy channel keeps working', async () => {
    const FUZZ = '/hush-test/fuzz/1';
    const service = await a.handle(FUZZ, { maxFrameBytes: 64 * 1024, maxInboundStreams: 32, idleTimeoutMs: 2_000 }, echo);
    const healthy = await b.openChannel(a.peerId, FUZZ, { maxFrameBytes: 64 * 1024 });
    let healthyRounds = 0;
    let stopHealthy = false;
    const healthyLoop = (async () => {
      while (!stopHealthy) {
        const answer = (await healthy.request({ round: healthyRounds, v: new Float32Array(64).fill(healthyRounds) })) as { round: number };
        expect(answer.round).toBe(healthyRounds);
        healthyRounds++;
      }
    })();

    const names = new Map<string, number>();
    const random = mulberry32(0xf00d);
    const cases = [...fuzzCases(300, random, 64 * 1024)];
    for (let i = 0; i < cases.length; i += 10) {
      const batch = cases.slice(i, i + 10);
      const results = await Promise.all(
        batch.map(async (c) => {
          const stream = await b.libp2p.dialProtocol(a.peerId, FUZZ, { signal: AbortSignal.timeout(5_000) });
          return await hostileExchange(stream, c.bytes, c.splits);
        }),
      );
      for (const replies of results) {
        expect(replies[0]).toBe('accept');
        for (const r of replies.slice(1)) names.set(r, (names.get(r) ?? 0) + 1);
      }
    }
    stopHealthy = true;
    await healthyLoop;
    console.log(`live fuzz: 300 streams, replies ${JSON.stringify(Object.fromEntries(names))}, healthy rounds ${healthyRounds}`);
    expect(names.has('client-timeout')).toBe(false);
    expect(names.has('bad-reply')).toBe(false);
    for (const name of names.keys()) {
      expect(['data', 'FrameTooLargeError', 'FrameTruncatedError', 'FrameUndecodableError', 'ProtocolViolationError', 'RemoteError', 'SomeError']).toContain(name);
    }
    expect(names.get('FrameTooLargeError')).toBeGreaterThan(10);
    expect(names.get('FrameUndecodableError')).toBeGreaterThan(10);
    expect(healthyRounds).toBeGreaterThan(10);
    expect(await healthy.request('after the storm')).toBe('after the storm');
    await waitFor(() => service.activeChannels === 1, 5_000, 'hostile channels to be cleaned up');
    await healthy.close();
    expect(a.libp2p.status).toBe('started');
  });
});
