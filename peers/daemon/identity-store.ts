/**
 * Where a device daemon keeps its identity key: the 0600 HOME/identity.key file (CLI-made homes), or
 * the desktop app's OS keychain, reached over the app channel (see app-channel.ts).
 */
import { join } from 'node:path';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import type { Logger } from 'pino';
import { writeFileAtomic, readSmallFile } from '../../runtime/net/atomic-file.ts';
import { decodeIdentity, encodeIdentity, IDENTITY_FILE, IdentityError, loadOrCreateIdentity, MAX_STATE_FILE_BYTES } from '../../runtime/net/index.ts';
import type { AppChannel } from './app-channel.ts';

export interface IdentityStore {
  /** 'file': HOME/identity.key; 'app': the desktop app's keychain. */
  readonly where: 'file' | 'app';
  /** Keep `key` as this device's identity (atomic file write, or a message to the app). */
  save(key: PrivateKey): Promise<void>;
}

class FileIdentityStore implements IdentityStore {
  readonly where = 'file';
  constructor(private readonly path: string) {}
  async save(key: PrivateKey): Promise<void> {
    await writeFileAtomic(this.path, encodeIdentity(key), 0o600);
  }
}

class AppIdentityStore implements IdentityStore {
  readonly where = 'app';
  constructor(private readonly channel: AppChannel) {}
  save(key: PrivateKey): Promise<void> {
    return this.channel.sendIdentityKey(key);
  }
}

/**
 * The identity to start with and the store that keeps later changes.
 *  - No app channel: HOME/identity.key, created on first use.
 *  - App channel, the app sent a key: that key; nothing is written to the home dir. If the home also
 *    has an identity.key (the CLI made one meanwhile) with another key, refuse to start: picking one
 *    silently would unpair the device from whoever knows the other.
 *  - App channel, no key from the app: an existing identity.key stays the identity (and the file
 *    keeps it: the app sees the file next time); otherwise a new key, handed to the app at once.
 */
export async function openIdentityStore(home: string, channel: AppChannel | null, log: Logger): Promise<{ key: PrivateKey; store: IdentityStore }> {
  const path = join(home, IDENTITY_FILE);
  if (!channel) return { key: await loadOrCreateIdentity(home), store: new FileIdentityStore(path) };
  const existing = await readSmallFile(path, MAX_STATE_FILE_BYTES).catch((e: Error) => {
    throw new IdentityError(`cannot read ${path}: ${e.message}`);
  });
  if (channel.initialKey !== null) {
    const key = decodeIdentity(Buffer.from(channel.initialKey, 'base64'));
    if (existing) {
      const fileKey = decodeIdentity(existing);
      if (!fileKey.equals(key)) {
        throw new IdentityError(`${path} holds another identity than the one the app keeps in the OS keychain; move one of them away (the other devices know only one of the two)`);
      }
      log.warn({ file: path }, 'the identity is both in the app keychain and in the home dir; the file is kept and updated');
      return { key, store: new FileIdentityStore(path) };
    }
    return { key, store: new AppIdentityStore(channel) };
  }
  if (existing) {
    log.info({ file: path }, 'the app has no identity key yet; this home already has one, which stays in its file');
    return { key: decodeIdentity(existing), store: new FileIdentityStore(path) };
  }
  const key = await generateKeyPair('Ed25519');
  const store = new AppIdentityStore(channel);
  await store.save(key);
  return { key, store };
}
