// Revocation across processes: devices A and B run here, device C in a child process (its own
// identity and roster on disk). A revokes C; B, paired with both and online, must learn it and
// drop C within 1 s; afterwards C's dials to A and B are refused at the handshake.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { peerIdFromString } from '@libp2p/peer-id';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PeerRefusedError, type FrameChannel, type HushNode } from '../runtime/net/index.ts';
import { makeDevice, pair, waitFor } from './support/net-nodes.ts';

const ECHO = '/hush-test/echo/1'; // what test/support/net-peer.ts serves

interface Reply {
  id?: number;
  ok?: boolean;
  result?: unknown;
  error?: { name: string; message: string };
  event?: string;
  peerId?: string;
  addrs?: string[];
}

/** A device in a child process (test/support/net-peer.ts), driven over stdin/stdout. */
class ChildPeer {
  private nextId = 1;
  private readonly pending = new Map<number, (reply: Reply) => void>();
  private readonly ready: Promise<Reply>;
  peerId = '';
  addrs: string[] = [];

  constructor(readonly child: ChildProcessWithoutNullStreams) {
    let onReady!: (r: Reply) => void;
    this.ready = new Promise((r) => (onReady = r));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const reply = JSON.parse(line) as Reply;
      if (reply.event === 'ready') onReady(reply);
      else if (reply.id != null) this.pending.get(reply.id)?.(reply);
    });
    child.stderr.on('data', (d: Buffer) => process.stderr.write(`[child] ${d.toString()}`));
  }

  static async spawn(home: string, name: string): Promise<ChildPeer> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/net-peer.ts', '--home', home, '--name', name], {
      cwd: join(import.meta.dirname, '..'),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const peer = new ChildPeer(child);
    const ready = await Promise.race([
      peer.ready,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('child peer did not start within 30 s')), 30_000)),
    ]);
    peer.peerId = ready.peerId!;
    peer.addrs = ready.addrs!;
    return peer;
  }

  call(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 15_000): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child: ${cmd} timed out`)), timeoutMs);
      this.pending.set(id, (reply) => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(reply);
      });
      this.child.stdin.write(JSON.stringify({ id, cmd, ...args }) + '\n');
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode != null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.end(JSON.stringify({ cmd: 'exit' }) + '\n');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

let home: string;
let a: HushNode;
let b: HushNode;
let c: ChildPeer;

async function echo(channel: FrameChannel): Promise<void> {
  for await (const message of channel) await channel.send(message);
}

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'hush-net-revoke-'));
  [a, b, c] = await Promise.all([makeDevice('A'), makeDevice('B'), ChildPeer.spawn(join(home, 'c'), 'C')]);
  await a.handle(ECHO, {}, echo);
  await b.handle(ECHO, {}, echo);
  await pair(a, b);
  const joinA = await c.call('join', { code: a.createInvite().code });
  expect(joinA.ok, JSON.stringify(joinA.error)).toBe(true);
  const joinB = await c.call('join', { code: b.createInvite().code });
  expect(joinB.ok, JSON.stringify(joinB.error)).toBe(true);
});

afterAll(async () => {
  await c?.stop();
  await Promise.all([a?.stop(), b?.stop()]);
  if (home != null) await rm(home, { recursive: true, force: true });
});

describe('revocation across processes', () => {
  it('three paired devices reach each other', async () => {
    const cId = peerIdFromString(c.peerId);
    expect(a.roster!.isTrusted(b.peerId) && a.roster!.isTrusted(cId)).toBe(true);
    expect(b.roster!.isTrusted(a.peerId) && b.roster!.isTrusted(cId)).toBe(true);
    const cRoster = (await c.call('roster')).result as Array<{ peerId: string; name: string }>;
    expect(cRoster.map((e) => e.name).sort()).toEqual(['A', 'B']);
    for (const node of [a, b]) {
      const reply = await c.call('open', { target: node.getMultiaddrs()[0].toString(), protocol: ECHO, message: { hi: node.peerId.toString() } });
      expect(reply.ok, JSON.stringify(reply.error)).toBe(true);
      expect(reply.result).toEqual({ hi: node.peerId.toString() });
    }
    expect(b.libp2p.getConnections(cId).length).toBeGreaterThan(0);
  });

  it('A revokes C: B refuses C within 1 s, and C is refused at the handshake by both', async () => {
    const cId = peerIdFromString(c.peerId);
    const pushed = a.revoke(cId);
    const elapsed = await waitFor(
      () => b.roster!.isRevoked(cId) && b.libp2p.getConnections(cId).length === 0,
      1_000,
      'B to revoke C and hang up on it',
    );
    console.log(`revocation reached B and B dropped C in ${elapsed.toFixed(0)} ms`);
    const results = await pushed;
    expect(results).toContainEqual({ peerId: b.peerId.toString(), ok: true });
    expect(a.roster!.isTrusted(cId)).toBe(false);
    await waitFor(() => a.libp2p.getConnections(cId).length === 0, 1_000, 'A to hang up on C');

    for (const node of [a, b]) {
      const target = node.getMultiaddrs()[0].toString();
      const connect = await c.call('connect', { target });
      expect(connect.ok).toBe(false);
      expect(connect.error!.name).toBe('PeerRefusedError');
      expect(connect.error!.message).toMatch(/handshake/);
      const open = await c.call('open', { target, protocol: ECHO, message: 'let me in' });
      expect(open.ok).toBe(false);
      expect(open.error!.name).toBe('PeerRefusedError');
    }
    // A and B will not dial C either.
    await expect(a.openChannel(c.addrs[0], ECHO)).rejects.toBeInstanceOf(PeerRefusedError);
    await expect(b.connect(c.addrs[0])).rejects.toBeInstanceOf(PeerRefusedError);
    // Even with a pairing window open, a revoked device cannot come back in.
    const invite = b.createInvite();
    const rejoin = await c.call('join', { code: invite.code });
    expect(rejoin.ok).toBe(false);
    expect(rejoin.error!.name).toBe('PeerRefusedError');
    expect(b.roster!.isRevoked(cId)).toBe(true);
  });
});
