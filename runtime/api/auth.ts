import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, linkSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ApiTokenFileError } from './errors.ts';

/** The smallest secret the servers accept (loadOrCreateApiToken makes 64 hex characters). */
export const MIN_SECRET_CHARS = 16;

/**
 * Constant-time equality of two secrets. Both are hashed first so neither the content nor the
 * length of the expected secret leaks through timing (timingSafeEqual needs equal lengths).
 */
export function secretsEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** The token of an `Authorization: Bearer <token>` header, or null when absent / another scheme. */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(header);
  return m ? m[1] : null;
}

export function assertSecret(what: string, secret: unknown): asserts secret is string {
  if (typeof secret !== 'string' || secret.length < MIN_SECRET_CHARS || /\s/.test(secret)) {
    throw new RangeError(`${what} must be a string of at least ${MIN_SECRET_CHARS} non-space characters`);
  }
}

const TOKEN_FILE = 'api-token';
const TOKEN_RE = /^[0-9a-f]{64}$/;

/**
 * Reads `home/api-token`, or creates it: 32 random bytes as 64 hex characters, mode 0600, in a
 * home directory created 0700. Creation is atomic (write a temp file, then hard-link it into place,
 * which fails if another process won the race; the winner's token is then read), so a reader never
 * sees a half-written token. An existing file with looser permissions is tightened to 0600.
 * A file that does not hold a valid token is an error (not silently replaced): delete it to rotate.
 */
export function loadOrCreateApiToken(home: string): string {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const file = join(home, TOKEN_FILE);
  const existing = readTokenFile(file);
  if (existing !== null) return existing;

  const token = randomBytes(32).toString('hex');
  const tmp = join(home, `.${TOKEN_FILE}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${token}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, file);
    return token;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    const winner = readTokenFile(file);
    if (winner === null) throw new ApiTokenFileError(`${file} appeared while creating it but holds no token`);
    return winner;
  } finally {
    unlinkSync(tmp);
  }
}

function readTokenFile(file: string): string | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const token = text.trim();
  if (!TOKEN_RE.test(token)) {
    throw new ApiTokenFileError(`${file} does not hold a 64-hex-character API token; delete it to create a new one`);
  }
  if (process.platform !== 'win32' && (statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  return token;
}
