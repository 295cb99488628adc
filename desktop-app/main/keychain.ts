/**
 * The device identity key in the OS keychain, for a daemon the app starts.
 *
 * How it works (also in desktop-app/README.md):
 *  - The app keeps the daemon's Ed25519 private key (libp2p protobuf, base64) only as ciphertext made
 *    by Electron safeStorage, in USERDATA/identity.keychain. The key that opens it is held by the OS
 *    keychain (macOS Keychain, Windows DPAPI, libsecret / KWallet on Linux), not on disk.
 *  - When the app starts the daemon it passes `--app-channel 3` and writes, as the first JSON line on
 *    that pipe, {"type":"identity","key":"<base64>"} (or "key": null on first run: the daemon makes
 *    one). The key never appears on a command line, in the environment or in a file of the home dir.
 *  - Whenever the daemon's identity changes (created, rotated, imported from a backup) it writes
 *    {"type":"identity-key","key":"<base64>"} back on the channel and the app re-encrypts and stores it.
 *  - A home that already has HOME/identity.key (made by the CLI) keeps using that 0600 file; so does
 *    every home when safeStorage has no real keychain (Linux "basic_text" backend), since an app-side
 *    ciphertext with a hard-coded password would only pretend to protect it.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { IDENTITY_FILE } from './daemon-command.ts';

export interface SafeStorageLike {
  isEncryptionAvailable(): boolean;
  encryptString(plainText: string): Buffer;
  decryptString(encrypted: Buffer): string;
  getSelectedStorageBackend?(): string;
}

export class KeychainError extends Error {
  override name = 'KeychainError';
}

export const KEYCHAIN_FILE = 'identity.keychain';
const MAX_KEY_CHARS = 4096;

export class IdentityKeychain {
  constructor(
    private readonly safe: SafeStorageLike,
    private readonly file: string,
    private readonly platform: NodeJS.Platform = process.platform,
  ) {}

  /** True when safeStorage is backed by a real OS keychain. */
  usable(): boolean {
    if (!this.safe.isEncryptionAvailable()) return false;
    if (this.platform === 'linux' && this.safe.getSelectedStorageBackend?.() === 'basic_text') return false;
    return true;
  }

  /** The stored key, or null when none is stored yet. */
  load(): string | null {
    if (!existsSync(this.file)) return null;
    const key = this.safe.decryptString(readFileSync(this.file));
    if (key.length === 0 || key.length > MAX_KEY_CHARS || !/^[A-Za-z0-9+/=_-]+$/.test(key)) {
      throw new KeychainError(`${this.file} does not hold an identity key`);
    }
    return key;
  }

  save(key: string): void {
    if (key.length === 0 || key.length > MAX_KEY_CHARS || !/^[A-Za-z0-9+/=_-]+$/.test(key)) {
      throw new KeychainError('refusing to store something that is not a base64 identity key');
    }
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, this.safe.encryptString(key), { mode: 0o600 });
    renameSync(tmp, this.file); // atomic: a crash never leaves half a key
  }
}

export type IdentityMode = { kind: 'keychain'; key: string | null } | { kind: 'file'; reason: string };

/** Decide where the identity of an app-started daemon lives. */
export function chooseIdentityMode(home: string, keychain: IdentityKeychain, env: NodeJS.ProcessEnv = process.env): IdentityMode {
  if (env.HUSH_APP_IDENTITY === 'file') return { kind: 'file', reason: 'HUSH_APP_IDENTITY=file' };
  if (existsSync(join(home, IDENTITY_FILE))) return { kind: 'file', reason: `${join(home, IDENTITY_FILE)} already exists (made by the CLI)` };
  if (!keychain.usable()) return { kind: 'file', reason: 'no OS keychain is available to safeStorage' };
  return { kind: 'keychain', key: keychain.load() };
}
