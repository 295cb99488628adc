// Helpers for tests with real libp2p nodes on 127.0.0.1.
import '../../runtime/polyfill.ts';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { createHushNode, Roster, type HushNode, type HushNodeInit } from '../../runtime/net/index.ts';

export const LOOPBACK = ['/ip4/127.0.0.1/tcp/0'];

export async function makeDevice(name: string, extra: Partial<HushNodeInit> = {}): Promise<HushNode> {
  return await createHushNode({
    privateKey: await generateKeyPair('Ed25519'),
    role: 'device',
    listen: LOOPBACK,
    roster: Roster.inMemory(),
    name,
    // Every test peer dials from 127.0.0.1: lift the per-host rate limit.
    connectionManager: { inboundConnectionThreshold: 1_000 },
    // Small windows keep the backpressure test's numbers (and memory) small.
    streamWindowBytes: 2 * 1024 * 1024,
    ...extra,
  });
}

export async function makeCloud(extra: Partial<HushNodeInit> = {}): Promise<HushNode> {
  return await createHushNode({
    privateKey: await generateKeyPair('Ed25519'),
    role: 'cloud',
    listen: LOOPBACK,
    connectionManager: { inboundConnectionThreshold: 1_000 },
    ...extra,
  });
}

/** Pair `joiner` with `inviter` through a real invite. */
export async function pair(inviter: HushNode, joiner: HushNode): Promise<void> {
  const invite = inviter.createInvite({ validForMs: 60_000 });
  await joiner.join(invite.code);
}

/** Poll `check` every few ms until true; returns the elapsed ms, throws after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now();
  while (!check()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - start;
}
