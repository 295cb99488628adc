// Passphrase-encrypted identity backups (runtime/net/backup.ts). No network, no files.
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BackupCorruptError,
  BackupError,
  BackupPassphraseError,
  BackupTooLargeError,
  backupFileName,
  decryptBackup,
  DEFAULT_SCRYPT,
  encryptBackup,
  MAX_BACKUP_CHARS,
} from '../runtime/net/backup.ts';
import type { CloudEntry, RosterEntry } from '../runtime/net/index.ts';

const PASS = 'correct horse battery staple';
let key: PrivateKey;
let self: string;
let roster: RosterEntry[];
let clouds: CloudEntry[];
/** One backup made once: every scrypt run costs ~0.1 s of a shared core. */
let text: string;

async function peer(): Promise<string> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString();
}

beforeAll(async () => {
  key = await generateKeyPair('Ed25519');
  self = peerIdFromPrivateKey(key).toString();
  const [a, b, c] = await Promise.all([peer(), peer(), peer()]);
  roster = [
    { peerId: a, name: 'desktop', added: '2025-01-01T00:00:00.000Z', updated: '2025-01-02T00:00:00.000Z' },
    { peerId: b, name: 'old phone', added: '2025-01-01T00:00:00.000Z', revoked: '2025-03-01T00:00:00.000Z' },
  ];
  clouds = [{ name: 'gpu', multiaddr: `/ip4/127.0.0.1/tcp/4802/p2p/${c}`, peerId: c, added: '2025-01-05T00:00:00.000Z' }];
  text = await encryptBackup({ identity: key, roster, clouds, createdAt: '2025-04-01T00:00:00.000Z' }, PASS);
});

/** Edit one field of the backup's JSON and return the new text. */
function edit(fn: (doc: Record<string, any>) => void): string { // eslint-disable-line @typescript-eslint/no-explicit-any
  const doc = JSON.parse(text);
  fn(doc);
  return JSON.stringify(doc);
}

/** Flip one bit of a base64 field. */
function flip(b64: string, byte = 0): string {
  const buf = Buffer.from(b64, 'base64');
  buf[byte] ^= 0x01;
  return buf.toString('base64');
}

describe('identity backup', () => {
  it('round-trips the key, roster (with tombstones) and clouds', async () => {
    const back = await decryptBackup(text, PASS);
    expect(back.identity.equals(key)).toBe(true);
    expect(peerIdFromPrivateKey(back.identity).toString()).toBe(self);
    expect(back.roster).toEqual(roster);
    expect(back.clouds).toEqual(clouds);
    expect(back.createdAt).toBe('2025-04-01T00:00:00.000Z');
  });

  it('records its parameters and holds nothing readable: no PeerId, names or key in the text', async () => {
    const doc = JSON.parse(text);
    expect(doc.format).toBe('hush-identity-backup');
    expect(doc.version).toBe(1);
    expect(doc.kdf).toMatchObject({ name: 'scrypt', N: DEFAULT_SCRYPT.N, r: 8, p: 1 });
    expect(DEFAULT_SCRYPT.N).toBeGreaterThanOrEqual(2 ** 15);
    expect(Buffer.from(doc.kdf.salt, 'base64').length).toBe(16);
    expect(Buffer.from(doc.cipher.iv, 'base64').length).toBe(12);
    expect(doc.cipher.name).toBe('aes-256-gcm');
    for (const secret of [self, 'desktop', 'old phone', 'gpu', roster[0].peerId, Buffer.from(key.raw).toString('base64').slice(0, 20)]) {
      expect(text).not.toContain(secret);
    }
  });

  it('uses a fresh salt and IV each time, so two backups of the same state differ', async () => {
    const again = await encryptBackup({ identity: key, roster, clouds, createdAt: '2025-04-01T00:00:00.000Z' }, PASS);
    const [d1, d2] = [JSON.parse(text), JSON.parse(again)];
    expect(d2.kdf.salt).not.toBe(d1.kdf.salt);
    expect(d2.cipher.iv).not.toBe(d1.cipher.iv);
    expect(d2.data).not.toBe(d1.data);
  });

  it('refuses the wrong passphrase with BackupPassphraseError, without the passphrase in the message', async () => {
    const err = await decryptBackup(text, 'correct horse battery stapler').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackupPassphraseError);
    expect((err as Error).name).toBe('BackupPassphraseError');
    expect((err as Error).message).not.toContain('stapler');
    expect((err as Error).message).not.toContain(PASS);
  });

  it('treats NFC and NFD spellings of a passphrase as the same', async () => {
    const nfc = 'crème brûlée 2025';
    const t = await encryptBackup({ identity: key, roster: [], clouds: [] }, nfc);
    const back = await decryptBackup(t, nfc.normalize('NFD'));
    expect(back.identity.equals(key)).toBe(true);
  });

  it('detects a changed ciphertext, tag, IV or header parameter as BackupCorruptError', async () => {
    const cases: [string, string][] = [
      ['ciphertext', edit((d) => (d.data = flip(d.data, 5)))],
      ['tag', edit((d) => (d.cipher.tag = flip(d.cipher.tag)))],
      ['iv', edit((d) => (d.cipher.iv = flip(d.cipher.iv)))],
      ['truncated data', edit((d) => (d.data = Buffer.from(d.data, 'base64').subarray(0, 20).toString('base64')))],
    ];
    for (const [what, bad] of cases) {
      const err = await decryptBackup(bad, PASS).catch((e: unknown) => e);
      expect(err, what).toBeInstanceOf(BackupCorruptError);
      expect((err as Error).message, what).toMatch(/changed or damaged/);
    }
  });

  it('an edited salt or check cannot be told from a wrong passphrase, and is refused as one', async () => {
    for (const bad of [edit((d) => (d.kdf.salt = flip(d.kdf.salt))), edit((d) => (d.kdf.check = flip(d.kdf.check)))]) {
      await expect(decryptBackup(bad, PASS)).rejects.toBeInstanceOf(BackupPassphraseError);
    }
  });

  it('refuses what is not a backup, a newer version, weakened or huge parameters, and oversized text', async () => {
    const refuse = async (bad: string, re: RegExp) => {
      const err = await decryptBackup(bad, PASS).catch((e: unknown) => e);
      expect(err, bad.slice(0, 60)).toBeInstanceOf(BackupCorruptError);
      expect((err as Error).message).toMatch(re);
    };
    await refuse('', /empty/);
    await refuse('hello', /not JSON/);
    await refuse('[1,2]', /not JSON/);
    await refuse(JSON.stringify({ format: 'something-else' }), /not a Hush key backup/);
    await refuse(edit((d) => (d.version = 2)), /newer Hush/);
    await refuse(edit((d) => (d.kdf.N = 2 ** 10)), /outside/); // a downgrade to a cheap KDF
    await refuse(edit((d) => (d.kdf.N = 2 ** 24)), /outside/); // 2 GiB of scrypt memory
    await refuse(edit((d) => (d.kdf.N = 40000)), /outside/); // not a power of two
    await refuse(edit((d) => (d.kdf.name = 'pbkdf2')), /scrypt/);
    await refuse(edit((d) => (d.cipher.iv = 'not base64!')), /header is damaged/);
    await refuse(edit((d) => (d.cipher.tag = Buffer.alloc(8).toString('base64'))), /header is damaged/);
    await refuse('x'.repeat(MAX_BACKUP_CHARS + 1), /larger than 64 KiB/);
  });

  it('refuses passphrases outside 8..1024 characters before doing any work', async () => {
    await expect(encryptBackup({ identity: key, roster: [], clouds: [] }, 'short')).rejects.toThrow(/at least 8/);
    await expect(encryptBackup({ identity: key, roster: [], clouds: [] }, 'x'.repeat(1025))).rejects.toThrow(/at most 1024/);
    await expect(decryptBackup(text, 'short')).rejects.toBeInstanceOf(BackupError);
  });

  it('refuses to write weak parameters or lists that would not load, and a roster too large to import', async () => {
    await expect(encryptBackup({ identity: key, roster: [], clouds: [] }, PASS, { scrypt: { N: 2 ** 12, r: 8, p: 1 } })).rejects.toThrow(/outside/);
    await expect(encryptBackup({ identity: key, roster: [{ peerId: self, name: 'me', added: '2025-01-01T00:00:00.000Z' }], clouds: [] }, PASS)).rejects.toThrow(/device itself/);
    await expect(encryptBackup({ identity: key, roster: [roster[0], roster[0]], clouds: [] }, PASS)).rejects.toThrow(/twice/);
    await expect(encryptBackup({ identity: key, roster, clouds: [{ ...clouds[0], peerId: roster[0].peerId, multiaddr: `/ip4/127.0.0.1/tcp/1/p2p/${roster[0].peerId}` }] }, PASS)).rejects.toThrow(/also a paired device/);
    // 400 devices of ~190 characters each: over 64 KiB once encrypted and armored.
    const big: RosterEntry[] = [];
    for (let i = 0; i < 400; i++) big.push({ peerId: await peer(), name: `device ${i} with a rather long name`, added: '2025-01-01T00:00:00.000Z', updated: '2025-01-01T00:00:00.000Z' });
    const err = await encryptBackup({ identity: key, roster: big, clouds: [] }, PASS).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackupTooLargeError);
    expect((err as Error).message).toMatch(/400 devices/);
  });

  it('names files by fingerprint and date, in the characters the app accepts', () => {
    const name = backupFileName('ABCD-EFGH', new Date('2025-01-31T12:00:00Z'));
    expect(name).toBe('hush-identity-ABCD-EFGH-2025-01-31.hushkey');
    expect(name).toMatch(/^[\w.-]{1,128}$/);
    expect(backupFileName('../../etc', new Date('2025-01-31T12:00:00Z'))).toBe('hush-identity-etc-2025-01-31.hushkey');
  });
});
