// Identity keys, roster and cloud list persistence, invite codes and the invite book. No network.
import { mkdtemp, readFile, readdir, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CloudList,
  IdentityError,
  InviteBook,
  InviteExpiredError,
  InviteInvalidError,
  InviteUsedError,
  Roster,
  RosterError,
  RosterFileError,
  decodeInvite,
  encodeInvite,
  fingerprint,
  loadOrCreateIdentity,
  type RosterChange,
} from '../runtime/net/index.ts';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'hush-net-id-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function newPeerId(): Promise<string> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString();
}

describe('identity', () => {
  it('creates an Ed25519 key with mode 0600 in a 0700 home and keeps the PeerId across loads', async () => {
    const home = join(root, 'id1', 'nested');
    const key1 = await loadOrCreateIdentity(home);
    expect(key1.type).toBe('Ed25519');
    expect((await stat(join(home, 'identity.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(home)).mode & 0o777).toBe(0o700);
    const key2 = await loadOrCreateIdentity(home);
    expect(peerIdFromPrivateKey(key2).toString()).toBe(peerIdFromPrivateKey(key1).toString());
    expect(key2.equals(key1)).toBe(true);
    // No temp files left behind.
    expect(await readdir(home)).toEqual(['identity.key']);
  });

  it('gives two concurrent first starts the same key', async () => {
    const home = join(root, 'id-race');
    const [a, b, c] = await Promise.all([loadOrCreateIdentity(home), loadOrCreateIdentity(home), loadOrCreateIdentity(home)]);
    expect(a.equals(b) && b.equals(c)).toBe(true);
  });

  it('tightens a key file readable by others and refuses (without replacing) a corrupt one', async () => {
    const home = join(root, 'id-perm');
    await loadOrCreateIdentity(home);
    const path = join(home, 'identity.key');
    await chmod(path, 0o644);
    await loadOrCreateIdentity(home);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await writeFile(path, Buffer.from('not a key at all'));
    await expect(loadOrCreateIdentity(home)).rejects.toBeInstanceOf(IdentityError);
    expect((await readFile(path)).toString()).toBe('not a key at all');
  });

  it('fingerprints are short, grouped, stable and differ between peers', async () => {
    const id1 = await newPeerId();
    const id2 = await newPeerId();
    expect(fingerprint(id1)).toMatch(/^[A-Z2-7]{4}-[A-Z2-7]{4}$/);
    expect(fingerprint(id1)).toBe(fingerprint(id1));
    expect(fingerprint(id1, 4)).toMatch(/^([A-Z2-7]{4}-){3}[A-Z2-7]{4}$/);
    expect(fingerprint(id1)).not.toBe(fingerprint(id2));
  });
});

describe('roster', () => {
  it('persists add/rename/revoke atomically with mode 0600 and reloads the same state', async () => {
    const home = join(root, 'roster1');
    const roster = await Roster.open(home);
    const [p1, p2, p3] = [await newPeerId(), await newPeerId(), await newPeerId()];
    const changes: RosterChange[] = [];
    roster.addEventListener('change', (e) => changes.push(e.detail));
    await roster.add({ peerId: p1, name: 'laptop' });
    await roster.add({ peerId: p2, name: 'desktop\u0007\n' });
    await roster.rename(p1, 'work laptop');
    await roster.revoke(p2);
    await roster.revoke(p3); // unknown: kept as a tombstone
    expect(changes.map((c) => `${c.type}:${c.origin}`)).toEqual(['add:local', 'add:local', 'rename:local', 'revoke:local', 'revoke:local']);
    expect(roster.isTrusted(p1)).toBe(true);
    expect(roster.isTrusted(p2)).toBe(false);
    expect(roster.isRevoked(p3)).toBe(true);
    expect(roster.get(p2)!.name).toBe('desktop');

    const path = join(home, 'roster.json');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const again = await Roster.open(home);
    expect(again.list()).toEqual(roster.list());
    expect(again.isTrusted(p1)).toBe(true);
    expect(again.isRevoked(p2)).toBe(true);
    await expect(again.add({ peerId: p2, name: 'desktop' })).rejects.toBeInstanceOf(RosterError);
    expect(await again.remove(p2)).toBe(true);
    await again.add({ peerId: p2, name: 'desktop again' });
    expect(again.isTrusted(p2)).toBe(true);
  });

  it('never shows a reader a torn file during a burst of writes, and leaves no temp files', async () => {
    const home = join(root, 'roster-burst');
    const roster = await Roster.open(home);
    const ids = await Promise.all(Array.from({ length: 30 }, () => newPeerId()));
    const path = join(home, 'roster.json');
    let reads = 0;
    let writing = true;
    const reader = (async () => {
      while (writing) {
        try {
          const text = await readFile(path, 'utf8');
          JSON.parse(text); // must always parse: rename replaces the file in one step
          reads++;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        await new Promise((r) => setImmediate(r));
      }
    })();
    await Promise.all(ids.map((id, i) => roster.add({ peerId: id, name: `device ${i}` })));
    await Promise.all(ids.slice(0, 10).map((id) => roster.revoke(id)));
    writing = false;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect((await readdir(home)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const reloaded = await Roster.open(home);
    expect(reloaded.size).toBe(30);
    expect(reloaded.list().filter((e) => e.revoked != null)).toHaveLength(10);
  });

  it('ignores a stale temp file from a crash and refuses a corrupt roster without touching it', async () => {
    const home = join(root, 'roster-crash');
    const roster = await Roster.open(home);
    const p1 = await newPeerId();
    await roster.add({ peerId: p1, name: 'phone' });
    await writeFile(join(home, '.roster.json.999.deadbeef.tmp'), '{"devices": [ {"peerId": "torn');
    expect((await Roster.open(home)).isTrusted(p1)).toBe(true);
    await writeFile(join(home, 'roster.json'), '{"devices": [ {"peerId": "torn');
    await expect(Roster.open(home)).rejects.toBeInstanceOf(RosterFileError);
    expect(await readFile(join(home, 'roster.json'), 'utf8')).toBe('{"devices": [ {"peerId": "torn');
  });

  it('treats expired devices as untrusted', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const roster = Roster.inMemory({ now: () => now });
    const p1 = await newPeerId();
    await roster.add({ peerId: p1, name: 'guest', expires: new Date(now + 60_000) });
    expect(roster.isTrusted(p1)).toBe(true);
    now += 60_001;
    expect(roster.isTrusted(p1)).toBe(false);
    expect(roster.isRevoked(p1)).toBe(false);
  });

  it('merges synced entries: revocations stick, newer names win, introductions only when accepted, self ignored', async () => {
    const self = await newPeerId();
    const roster = Roster.inMemory({ self });
    const [p1, p2, p3] = [await newPeerId(), await newPeerId(), await newPeerId()];
    await roster.add({ peerId: p1, name: 'old name' });
    await roster.add({ peerId: p2, name: 'tablet' });
    const later = new Date(Date.now() + 5_000).toISOString();
    const earlier = new Date(Date.now() - 5_000).toISOString();
    const changes = await roster.merge(
      [
        { peerId: p1, name: 'new name', added: earlier, updated: later },
        { peerId: p2, name: 'tablet', added: earlier, revoked: later },
        { peerId: p3, name: 'introduced', added: earlier },
        { peerId: self, name: 'me', added: earlier, revoked: later },
        { peerId: 'garbage', name: 'x', added: earlier },
        'not an object',
      ],
      { from: p1 },
    );
    expect(changes.map((c) => `${c.type}:${c.peerId === p1 ? 'p1' : 'p2'}`)).toEqual(['rename:p1', 'revoke:p2']);
    expect(roster.get(p1)!.name).toBe('new name');
    expect(roster.get(p3)).toBeUndefined();
    expect(roster.get(self)).toBeUndefined();
    // An older, unrevoked copy of p2 cannot undo the revocation.
    await roster.merge([{ peerId: p2, name: 'tablet', added: earlier, updated: later }], { acceptNew: true });
    expect(roster.isRevoked(p2)).toBe(true);
    await roster.merge([{ peerId: p3, name: 'introduced', added: earlier }], { acceptNew: true });
    expect(roster.isTrusted(p3)).toBe(true);
    expect(() => roster.bindSelf(p1)).toThrow(RosterError);
  });
});

describe('cloud list', () => {
  it('persists cloud peers apart from the roster and refuses roster members', async () => {
    const home = join(root, 'clouds');
    const roster = await Roster.open(home);
    const clouds = await CloudList.open(home);
    const cloudId = await newPeerId();
    const deviceId = await newPeerId();
    await roster.add({ peerId: deviceId, name: 'laptop' });
    const entry = await clouds.add({ multiaddr: `/ip4/127.0.0.1/tcp/4801/p2p/${cloudId}`, name: 'gpu box' }, { roster });
    expect(entry.peerId).toBe(cloudId);
    await expect(clouds.add({ multiaddr: `/ip4/127.0.0.1/tcp/4802/p2p/${deviceId}`, name: 'sneaky' }, { roster })).rejects.toBeInstanceOf(RosterError);
    await expect(clouds.add({ multiaddr: 'not a multiaddr', name: 'bad' })).rejects.toBeInstanceOf(RosterError);
    const reloaded = await CloudList.open(home);
    expect(reloaded.list()).toEqual(clouds.list());
    expect(reloaded.isCloudPeer(cloudId)).toBe(true);
    expect(JSON.parse(await readFile(join(home, 'roster.json'), 'utf8')).devices.map((d: { peerId: string }) => d.peerId)).toEqual([deviceId]);
  });
});

describe('invite codes', () => {
  it('round-trip, tolerate whitespace and case, and catch damage', async () => {
    const key = await generateKeyPair('Ed25519');
    const peerId = peerIdFromPrivateKey(key);
    const secret = new Uint8Array(16).map((_, i) => i * 7);
    const expiresAt = new Date(Date.now() + 60_000);
    const code = encodeInvite({ peerId, multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/4001'), multiaddr('/ip6/::1/tcp/4001')], secret, expiresAt });
    expect(code).toMatch(/^HUSH1-[A-Z2-7]+$/);
    const decoded = decodeInvite(`  ${code.slice(0, 40)}\n  ${code.slice(40).toLowerCase()}  `);
    expect(decoded.peerId.equals(peerId)).toBe(true);
    expect(decoded.multiaddrs.map(String)).toEqual(['/ip4/127.0.0.1/tcp/4001', '/ip6/::1/tcp/4001']);
    expect([...decoded.secret]).toEqual([...secret]);
    expect(decoded.expiresAt.getTime()).toBe(expiresAt.getTime());
    // Every single-character change is caught (checksum), never a wrong invite.
    const body = code.slice(6);
    for (let i = 0; i < body.length; i++) {
      const swapped = body[i] === 'A' ? 'B' : 'A';
      expect(() => decodeInvite('HUSH1-' + body.slice(0, i) + swapped + body.slice(i + 1))).toThrow(InviteInvalidError);
    }
    expect(() => decodeInvite('HUSH1-')).toThrow(InviteInvalidError);
    expect(() => decodeInvite('hello')).toThrow(InviteInvalidError);
    expect(() => decodeInvite('HUSH1-' + 'A'.repeat(5000))).toThrow(InviteInvalidError);
  });

  it('the invite book: one use, expiry, wrong secrets, and the pairing window', () => {
    let now = 1_000_000;
    const book = new InviteBook({ now: () => now });
    expect(book.hasLiveInvite()).toBe(false);
    const { secret } = book.create(10_000);
    expect(book.hasLiveInvite()).toBe(true);
    expect(() => book.claim(new Uint8Array(16))).toThrow(InviteInvalidError);
    expect(() => book.claim(new Uint8Array(3))).toThrow(InviteInvalidError);
    book.claim(secret);
    // Concurrent second claim while the first is pending, and after it finished.
    expect(() => book.claim(secret)).toThrow(InviteUsedError);
    book.finish(secret);
    expect(() => book.claim(secret)).toThrow(InviteUsedError);
    const second = book.create(10_000);
    now += 10_000;
    expect(() => book.claim(second.secret)).toThrow(InviteExpiredError);
    expect(book.hasLiveInvite()).toBe(false);
    const third = book.create(1_000);
    expect(book.cancel(third.secret)).toBe(true);
    expect(book.hasLiveInvite()).toBe(false);
  });
});
