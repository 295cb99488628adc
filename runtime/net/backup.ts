// Passphrase-encrypted backups of a device's identity key, roster and cloud list.
//
// Pure functions (no files, no logging): the daemon decides where the bytes go. The format is a
// versioned JSON text; everything secret is inside `data`, so the file reveals nothing readable
// (not even the PeerId) without the passphrase:
//
//   {
//     "format": "hush-identity-backup", "version": 1,
//     "kdf":    { "name": "scrypt", "N": 32768, "r": 8, "p": 1, "salt": b64(16..64 B), "check": b64(16 B) },
//     "cipher": { "name": "aes-256-gcm", "iv": b64(12 B), "tag": b64(16 B) },
//     "data":   b64(AES-256-GCM ciphertext of the JSON payload)
//   }
//
// scrypt(NFC(passphrase), salt, 48 bytes) gives the AES key (bytes 0..31) and a check value
// (bytes 32..47) stored in the header. The check tells a wrong passphrase (BackupPassphraseError)
// from a damaged or edited file (BackupCorruptError): the header is the cipher's associated data, so
// changing any field, the ciphertext or the tag fails authentication. Storing the check gives an
// attacker nothing the GCM tag does not already give (each guess still costs one scrypt).
import { createCipheriv, createDecipheriv, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { MAX_CLOUD_ENTRIES, MAX_ROSTER_ENTRIES } from './constants.ts';
import { NetError } from './errors.ts';
import { decodeIdentity, encodeIdentity } from './identity.ts';
import { parseCloudEntry, parseRosterEntry, type CloudEntry, type RosterEntry } from './roster.ts';

export const BACKUP_FORMAT = 'hush-identity-backup';
export const BACKUP_VERSION = 1;
/** Largest backup text accepted (and written): the app's limit too. */
export const MAX_BACKUP_CHARS = 64 * 1024;
export const MIN_PASSPHRASE_CHARS = 8;
export const MAX_PASSPHRASE_CHARS = 1024;
/** File name suffix the app offers. */
export const BACKUP_FILE_SUFFIX = '.hushkey';

export interface ScryptParams {
  /** CPU/memory cost, a power of two. */
  N: number;
  /** Block size. */
  r: number;
  /** Parallelism. */
  p: number;
}

/** What new backups use: 32 MiB of memory and ~0.1 s per try on a laptop (OWASP's scrypt minimum is N=2^17 at r=8, p=1 for passwords stored online; an offline file with a human passphrase is the same problem, so raise N when the devices can afford it). */
export const DEFAULT_SCRYPT: ScryptParams = { N: 2 ** 15, r: 8, p: 1 };
/**
 * Parameters a backup may carry. The floor refuses weakened files; the ceiling stops a hostile file
 * from making the daemon allocate gigabytes or spin for minutes.
 */
export const SCRYPT_BOUNDS = { minN: 2 ** 15, maxN: 2 ** 20, minR: 8, maxR: 16, minP: 1, maxP: 4 } as const;

const SALT_BYTES = 16;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
const CHECK_BYTES = 16;

export interface BackupContents {
  identity: PrivateKey;
  /** The roster as this identity keeps it (revocation tombstones included). */
  roster: RosterEntry[];
  clouds: CloudEntry[];
  /** When the backup was made (ISO). */
  createdAt: string;
}

export class BackupError extends NetError {
  override name = 'BackupError';
}
/** The passphrase does not open this backup (or the key-derivation part of its header was edited). */
export class BackupPassphraseError extends BackupError {
  override name = 'BackupPassphraseError';
}
/** Not a Hush backup, an unsupported version, or its contents were damaged or changed. */
export class BackupCorruptError extends BackupError {
  override name = 'BackupCorruptError';
}
/** The backup would be larger than MAX_BACKUP_CHARS (a roster of hundreds of devices). */
export class BackupTooLargeError extends BackupError {
  override name = 'BackupTooLargeError';
}

/** Passphrases compare by what people typed, not by how their keyboard composed it. */
function passphraseBytes(passphrase: string): Buffer {
  if (typeof passphrase !== 'string') throw new BackupError('the passphrase must be text');
  const normal = passphrase.normalize('NFC');
  if (normal.length < MIN_PASSPHRASE_CHARS) throw new BackupError(`the passphrase must have at least ${MIN_PASSPHRASE_CHARS} characters`);
  if (normal.length > MAX_PASSPHRASE_CHARS) throw new BackupError(`the passphrase must have at most ${MAX_PASSPHRASE_CHARS} characters`);
  return Buffer.from(normal, 'utf8');
}

function checkScryptParams(s: ScryptParams, what: string, Err: new (m: string) => BackupError): void {
  const b = SCRYPT_BOUNDS;
  const ok =
    Number.isInteger(s.N) && s.N >= b.minN && s.N <= b.maxN && (s.N & (s.N - 1)) === 0 &&
    Number.isInteger(s.r) && s.r >= b.minR && s.r <= b.maxR &&
    Number.isInteger(s.p) && s.p >= b.minP && s.p <= b.maxP;
  if (!ok) throw new Err(`${what}: scrypt parameters N=${s.N} r=${s.r} p=${s.p} are outside N in [2^15, 2^20] (a power of two), r in [8, 16], p in [1, 4]`);
}

function deriveKeys(passphrase: Buffer, salt: Buffer, s: ScryptParams): Promise<Buffer> {
  const opts: ScryptOptions = { N: s.N, r: s.r, p: s.p, maxmem: 128 * s.N * s.r + 2 * 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scryptCb(passphrase, salt, KEY_BYTES + CHECK_BYTES, opts, (err, out) => (err ? reject(new BackupError(`scrypt failed: ${err.message}`)) : resolve(out)));
  });
}

/** The authenticated header: every field that decides how the data is read, in a fixed order. */
function associatedData(h: { version: number; N: number; r: number; p: number; salt: string; check: string; iv: string }): Buffer {
  return Buffer.from(JSON.stringify([BACKUP_FORMAT, h.version, 'scrypt', h.N, h.r, h.p, h.salt, h.check, 'aes-256-gcm', h.iv]), 'utf8');
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Strict base64 (Buffer.from ignores junk): undefined unless `s` is canonical base64 of minBytes..maxBytes. */
function b64(s: unknown, minBytes: number, maxBytes: number): Buffer | undefined {
  if (typeof s !== 'string' || s.length % 4 !== 0 || s.length > Math.ceil(maxBytes / 3) * 4 || !B64.test(s)) return undefined;
  const buf = Buffer.from(s, 'base64');
  if (buf.length < minBytes || buf.length > maxBytes || buf.toString('base64') !== s) return undefined;
  return buf;
}

/** One cloud entry as clouds.json would accept it; undefined if anything is off. */
export const parseBackupCloud = parseCloudEntry;

/**
 * Check roster and clouds the way Roster/CloudList would load them, plus what binds them to this
 * identity: the device is not on its own roster, PeerIds and cloud names are unique, and no cloud
 * peer is a paired device. Throws `Err` naming the first problem.
 */
function validateLists(selfId: string, rosterRaw: unknown, cloudsRaw: unknown, Err: new (m: string) => BackupError): { roster: RosterEntry[]; clouds: CloudEntry[] } {
  if (!Array.isArray(rosterRaw) || rosterRaw.length > MAX_ROSTER_ENTRIES) throw new Err(`the roster must be a list of at most ${MAX_ROSTER_ENTRIES} devices`);
  if (!Array.isArray(cloudsRaw) || cloudsRaw.length > MAX_CLOUD_ENTRIES) throw new Err(`the cloud list must be a list of at most ${MAX_CLOUD_ENTRIES} peers`);
  const roster: RosterEntry[] = [];
  const seen = new Set<string>();
  for (const item of rosterRaw) {
    const e = parseRosterEntry(item);
    if (e == null) throw new Err('the roster holds an invalid device entry');
    if (e.peerId === selfId) throw new Err('the roster lists the device itself');
    if (seen.has(e.peerId)) throw new Err(`the roster lists device ${e.peerId} twice`);
    seen.add(e.peerId);
    roster.push(e);
  }
  const clouds: CloudEntry[] = [];
  const names = new Set<string>();
  for (const item of cloudsRaw) {
    const c = parseBackupCloud(item);
    if (c == null) throw new Err('the cloud list holds an invalid entry');
    if (names.has(c.name)) throw new Err(`the cloud list names ${c.name} twice`);
    if (c.peerId != null && (seen.has(c.peerId) || c.peerId === selfId)) throw new Err(`cloud peer ${c.name} is also a paired device`);
    names.add(c.name);
    clouds.push(c);
  }
  return { roster, clouds };
}

export interface EncryptBackupOptions {
  scrypt?: ScryptParams;
  /** Clock for createdAt (tests). */
  now?: () => Date;
}

/**
 * Encrypt `contents` with `passphrase` (8..1024 characters). Returns the backup text.
 * BackupTooLargeError when it would not fit MAX_BACKUP_CHARS (importers refuse larger files).
 */
export async function encryptBackup(contents: Omit<BackupContents, 'createdAt'> & { createdAt?: string }, passphrase: string, options: EncryptBackupOptions = {}): Promise<string> {
  const pass = passphraseBytes(passphrase);
  const s = options.scrypt ?? DEFAULT_SCRYPT;
  checkScryptParams(s, 'refusing to write a backup', BackupError);
  if (contents.identity.type !== 'Ed25519') throw new BackupError(`identity key has type ${contents.identity.type}; Hush uses Ed25519`);
  const selfId = peerIdFromPrivateKey(contents.identity).toString();
  const lists = validateLists(selfId, contents.roster, contents.clouds, BackupError);
  const keyBytes = encodeIdentity(contents.identity);
  const plain = Buffer.from(JSON.stringify({
    peerId: selfId,
    identity: Buffer.from(keyBytes).toString('base64'),
    createdAt: contents.createdAt ?? (options.now ?? (() => new Date()))().toISOString(),
    roster: lists.roster,
    clouds: lists.clouds,
  }), 'utf8');
  const salt = randomBytes(SALT_BYTES);
  const iv = randomBytes(IV_BYTES);
  const derived = await deriveKeys(pass, salt, s);
  try {
    const key = derived.subarray(0, KEY_BYTES);
    const check = derived.subarray(KEY_BYTES).toString('base64');
    const header = { version: BACKUP_VERSION, N: s.N, r: s.r, p: s.p, salt: salt.toString('base64'), check, iv: iv.toString('base64') };
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(associatedData(header));
    const data = Buffer.concat([cipher.update(plain), cipher.final()]);
    const text = JSON.stringify({
      format: BACKUP_FORMAT,
      version: BACKUP_VERSION,
      kdf: { name: 'scrypt', N: s.N, r: s.r, p: s.p, salt: header.salt, check },
      cipher: { name: 'aes-256-gcm', iv: header.iv, tag: cipher.getAuthTag().toString('base64') },
      data: data.toString('base64'),
    }, null, 2) + '\n';
    if (text.length > MAX_BACKUP_CHARS) {
      throw new BackupTooLargeError(`the backup would be ${Math.ceil(text.length / 1024)} KiB, more than the ${MAX_BACKUP_CHARS / 1024} KiB a Hush backup may have (${lists.roster.length} devices, ${lists.clouds.length} cloud peers on the lists); remove devices you no longer use`);
    }
    return text;
  } finally {
    // Best effort: the derived key and the plaintext (which holds the private key) do not linger.
    derived.fill(0);
    plain.fill(0);
    keyBytes.fill(0);
    pass.fill(0);
  }
}

/**
 * Open a backup. BackupPassphraseError: wrong passphrase. BackupCorruptError: not a Hush backup,
 * an unknown version, parameters out of bounds, or any change to the file. Nothing else is thrown
 * for bad input, and no error message contains the passphrase or key material.
 */
export async function decryptBackup(text: string, passphrase: string): Promise<BackupContents> {
  if (typeof text !== 'string' || text.length === 0) throw new BackupCorruptError('the backup is empty');
  if (text.length > MAX_BACKUP_CHARS) throw new BackupCorruptError(`the file is larger than ${MAX_BACKUP_CHARS / 1024} KiB: not a Hush key backup`);
  let doc: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
    doc = parsed as Record<string, unknown>;
  } catch {
    throw new BackupCorruptError('not a Hush key backup (the file is not JSON)');
  }
  if (doc.format !== BACKUP_FORMAT) throw new BackupCorruptError('not a Hush key backup (no "format": "hush-identity-backup")');
  if (doc.version !== BACKUP_VERSION) {
    throw new BackupCorruptError(typeof doc.version === 'number' && doc.version > BACKUP_VERSION
      ? `this backup has format version ${doc.version}, made by a newer Hush; this one reads version ${BACKUP_VERSION}`
      : 'the backup has no valid format version');
  }
  const kdf = doc.kdf as Record<string, unknown> | null | undefined;
  const cip = doc.cipher as Record<string, unknown> | null | undefined;
  if (kdf == null || typeof kdf !== 'object' || kdf.name !== 'scrypt') throw new BackupCorruptError('the backup does not name scrypt as its key derivation');
  if (cip == null || typeof cip !== 'object' || cip.name !== 'aes-256-gcm') throw new BackupCorruptError('the backup does not name aes-256-gcm as its cipher');
  const s: ScryptParams = { N: kdf.N as number, r: kdf.r as number, p: kdf.p as number };
  checkScryptParams(s, 'the backup is not readable', BackupCorruptError);
  const salt = b64(kdf.salt, SALT_BYTES, 64);
  const check = b64(kdf.check, CHECK_BYTES, CHECK_BYTES);
  const iv = b64(cip.iv, IV_BYTES, IV_BYTES);
  const tag = b64(cip.tag, TAG_BYTES, TAG_BYTES);
  const data = b64(doc.data, 1, MAX_BACKUP_CHARS);
  if (!salt || !check || !iv || !tag || !data) throw new BackupCorruptError('the backup header is damaged (salt, check, iv, tag or data is not valid base64 of the right size)');

  const pass = passphraseBytes(passphrase);
  const derived = await deriveKeys(pass, salt, s);
  let plain: Buffer | undefined;
  try {
    if (!timingSafeEqual(derived.subarray(KEY_BYTES), check)) {
      throw new BackupPassphraseError('the passphrase does not open this backup');
    }
    const decipher = createDecipheriv('aes-256-gcm', derived.subarray(0, KEY_BYTES), iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(associatedData({ version: BACKUP_VERSION, N: s.N, r: s.r, p: s.p, salt: kdf.salt as string, check: kdf.check as string, iv: cip.iv as string }));
    decipher.setAuthTag(tag);
    try {
      plain = Buffer.concat([decipher.update(data), decipher.final()]);
    } catch {
      throw new BackupCorruptError('the backup was changed or damaged: its contents fail authentication');
    }
    return parsePayload(plain);
  } finally {
    derived.fill(0);
    pass.fill(0);
    plain?.fill(0);
  }
}

function parsePayload(plain: Buffer): BackupContents {
  let p: Record<string, unknown>;
  try {
    p = JSON.parse(plain.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new BackupCorruptError('the backup contents are not JSON');
  }
  if (p == null || typeof p !== 'object') throw new BackupCorruptError('the backup contents are not an object');
  const keyBytes = b64(p.identity, 1, 4096);
  if (!keyBytes) throw new BackupCorruptError('the backup holds no identity key');
  let identity: PrivateKey;
  try {
    identity = decodeIdentity(keyBytes);
  } catch (err) {
    throw new BackupCorruptError(`the backup's identity key is not usable: ${(err as Error).message}`);
  } finally {
    keyBytes.fill(0);
  }
  const selfId = peerIdFromPrivateKey(identity).toString();
  if (p.peerId !== selfId) throw new BackupCorruptError('the backup names another PeerId than its key has');
  if (typeof p.createdAt !== 'string' || p.createdAt.length > 40 || !Number.isFinite(Date.parse(p.createdAt))) throw new BackupCorruptError('the backup has no creation time');
  const lists = validateLists(selfId, p.roster, p.clouds, BackupCorruptError);
  return { identity, roster: lists.roster, clouds: lists.clouds, createdAt: p.createdAt };
}

/** "hush-identity-ABCD-EFGH-2025-01-31.hushkey": the fingerprint says whose, the date says when. */
export function backupFileName(fingerprint: string, date = new Date()): string {
  const fp = fingerprint.replace(/[^A-Za-z0-9-]/g, '').slice(0, 40);
  return `hush-identity-${fp ? `${fp}-` : ''}${date.toISOString().slice(0, 10)}${BACKUP_FILE_SUFFIX}`;
}
