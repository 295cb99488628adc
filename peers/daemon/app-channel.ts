/**
 * The desktop app's private channel to a daemon it started (`hush device start --app-channel FD`).
 *
 * Contract (desktop-app/README.md, desktop-app/main/keychain.ts and supervisor.ts): JSON lines both
 * ways over an extra pipe the app opened as fd FD.
 *   app -> daemon, first line:  {"type":"identity","key":"<base64 libp2p protobuf>"}  or  "key": null
 *                               (first run: the daemon makes a key and sends it back).
 *   daemon -> app:              {"type":"identity-key","key":"<base64>"} whenever the identity
 *                               changes: created, rotated, imported from a backup.
 *   EOF on FD (the app quit or crashed): the daemon shuts down, so no orphan daemon stays behind.
 * The key travels only here: never on a command line, in the environment, a log or a home-dir file.
 */
import { Socket } from 'node:net';
import type { PrivateKey } from '@libp2p/interface';
import { encodeIdentity } from '../../runtime/net/index.ts';

export class AppChannelError extends Error {
  override name = 'AppChannelError';
}

/** One JSON line; the identity message is ~100 characters. */
export const APP_CHANNEL_LINE_MAX = 64 * 1024;
/** Longest base64 key accepted from the app (an Ed25519 protobuf is 92 characters). */
export const APP_KEY_MAX_CHARS = 4096;
export const APP_HELLO_TIMEOUT_MS = 30_000;

export interface AppChannel {
  /** The key the app keeps (base64 protobuf), or null when it has none yet. */
  readonly initialKey: string | null;
  /** Tell the app the identity's private key (it re-encrypts and stores it in the OS keychain). */
  sendIdentityKey(key: PrivateKey): Promise<void>;
  /** Resolves once the app closed its end (EOF) or the channel broke. */
  readonly closed: Promise<void>;
  close(): void;
}

export function keyToBase64(key: PrivateKey): string {
  return Buffer.from(encodeIdentity(key)).toString('base64');
}

/** Parse the app's first line; throws AppChannelError (without the key in the message). */
export function parseHello(line: string): string | null {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    throw new AppChannelError('the app channel\'s first line is not JSON');
  }
  const m = msg as { type?: unknown; key?: unknown } | null;
  if (m == null || typeof m !== 'object' || m.type !== 'identity') throw new AppChannelError('the app channel must start with {"type":"identity","key":...}');
  if (m.key === null) return null;
  if (typeof m.key !== 'string' || m.key.length === 0 || m.key.length > APP_KEY_MAX_CHARS || !/^[A-Za-z0-9+/]+={0,2}$/.test(m.key)) {
    throw new AppChannelError('the identity key from the app is not base64 text');
  }
  return m.key;
}

/**
 * Open fd `fd` (a pipe or socket the app passed) and wait for the app's identity message.
 * Lines after the first are read and ignored (room for later messages); the channel ends at EOF.
 */
export function openAppChannel(fd: number, opts: { helloTimeoutMs?: number } = {}): Promise<AppChannel> {
  if (!Number.isInteger(fd) || fd < 3) return Promise.reject(new AppChannelError(`--app-channel needs a file descriptor number of 3 or more, got ${fd}`));
  let sock: Socket;
  try {
    sock = new Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
  } catch (e) {
    return Promise.reject(new AppChannelError(`cannot open file descriptor ${fd} as the app channel: ${(e as Error).message}`));
  }
  let closedResolve!: () => void;
  const closed = new Promise<void>((r) => (closedResolve = r));
  sock.once('end', () => closedResolve());
  sock.once('close', () => closedResolve());
  sock.on('error', () => closedResolve()); // EPIPE / ECONNRESET: the app is gone, same as EOF
  sock.setEncoding('utf8');

  return new Promise<AppChannel>((resolve, reject) => {
    let pending = '';
    let hello = false;
    const timer = setTimeout(() => fail(new AppChannelError(`the app sent no identity message on fd ${fd} within ${(opts.helloTimeoutMs ?? APP_HELLO_TIMEOUT_MS) / 1000} s`)), opts.helloTimeoutMs ?? APP_HELLO_TIMEOUT_MS);
    const fail = (e: Error) => {
      clearTimeout(timer);
      sock.destroy();
      reject(e);
    };
    void closed.then(() => {
      if (!hello) fail(new AppChannelError(`the app closed fd ${fd} before it sent the identity message`));
    });
    const channel = (initialKey: string | null): AppChannel => ({
      initialKey,
      closed,
      sendIdentityKey: (key) =>
        new Promise<void>((ok, bad) => {
          if (sock.destroyed || !sock.writable) {
            bad(new AppChannelError('the app channel is closed: the new identity key could not be handed to the app'));
            return;
          }
          sock.write(JSON.stringify({ type: 'identity-key', key: keyToBase64(key) }) + '\n', (err) => (err ? bad(new AppChannelError(`writing to the app channel failed: ${err.message}`)) : ok()));
        }),
      close: () => sock.destroy(),
    });
    sock.on('data', (chunk: string) => {
      pending += chunk;
      if (!pending.includes('\n') && pending.length > APP_CHANNEL_LINE_MAX) {
        if (!hello) fail(new AppChannelError('the app channel\'s first line is too long'));
        pending = ''; // a later oversized line is dropped
        return;
      }
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl).trim();
        pending = pending.slice(nl + 1);
        if (!line || hello) continue;
        try {
          const key = parseHello(line);
          hello = true;
          clearTimeout(timer);
          resolve(channel(key));
        } catch (e) {
          fail(e as Error);
          return;
        }
      }
    });
  });
}
