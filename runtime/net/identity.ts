// The device identity: one Ed25519 libp2p key per home directory. The PeerId derived from it is
// the device's name on the network and in every roster, so it must survive restarts unchanged.
import { createHash } from 'node:crypto';
import { chmod, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromString } from '@libp2p/peer-id';
import type { PeerId, PrivateKey } from '@libp2p/interface';
import { createFileExclusive, ensurePrivateDir, readSmallFile } from './atomic-file.ts';
import { base32Encode } from './base32.ts';
import { IDENTITY_FILE, MAX_STATE_FILE_BYTES } from './constants.ts';
import { IdentityError } from './errors.ts';

/** Serialize a private key (libp2p protobuf form), e.g. for the Electron app's safeStorage. */
export function encodeIdentity(key: PrivateKey): Uint8Array {
  return privateKeyToProtobuf(key);
}

/** Parse a private key from its protobuf form; only Ed25519 is accepted. */
export function decodeIdentity(bytes: Uint8Array): PrivateKey {
  let key: PrivateKey;
  try {
    key = privateKeyFromProtobuf(bytes);
  } catch (err) {
    throw new IdentityError(`identity key is not a valid libp2p private key (${(err as Error).name})`);
  }
  if (key.type !== 'Ed25519') throw new IdentityError(`identity key has type ${key.type}; Hush uses Ed25519`);
  return key;
}

/**
 * Load the identity from `home/identity.key`, creating it (mode 0600, home 0700) on first use.
 * Two processes starting at once end up with the same key. A corrupt file is an error: it is
 * never replaced, because a new key would silently unpair the device from every roster.
 */
export async function loadOrCreateIdentity(home: string): Promise<PrivateKey> {
  await ensurePrivateDir(home);
  const path = join(home, IDENTITY_FILE);
  const existing = await readIdentityFile(path);
  if (existing != null) return existing;
  const fresh = await generateKeyPair('Ed25519');
  if (await createFileExclusive(path, encodeIdentity(fresh), 0o600)) return fresh;
  const winner = await readIdentityFile(path);
  if (winner == null) throw new IdentityError(`${path} vanished while being created`);
  return winner;
}

async function readIdentityFile(path: string): Promise<PrivateKey | undefined> {
  let bytes: Buffer | undefined;
  try {
    bytes = await readSmallFile(path, MAX_STATE_FILE_BYTES);
  } catch (err) {
    throw new IdentityError(`cannot read ${path}: ${(err as Error).message}`);
  }
  if (bytes == null) return undefined;
  // Like ssh, a key file readable by others is a problem; unlike ssh we fix it rather than refuse,
  // since the daemon created it and the owner's intent is clear.
  const st = await stat(path);
  if ((st.mode & 0o077) !== 0) await chmod(path, 0o600);
  try {
    return decodeIdentity(bytes);
  } catch (err) {
    throw new IdentityError(`${path}: ${(err as Error).message}`);
  }
}

/**
 * Short human fingerprint of a PeerId: base32 of sha256(PeerId bytes), `groups` groups of four
 * characters ("ABCD-EFGH"). For people comparing two screens, not a security parameter by itself:
 * the full PeerId is what Noise authenticates.
 */
export function fingerprint(peerId: PeerId | string, groups = 2): string {
  const id = typeof peerId === 'string' ? peerIdFromString(peerId) : peerId;
  const digest = createHash('sha256').update(id.toMultihash().bytes).digest();
  const text = base32Encode(digest).slice(0, 4 * groups);
  return text.match(/.{4}/g)!.join('-');
}
