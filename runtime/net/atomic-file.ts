// Crash-safe small state files: a reader sees the old file or the new one, never a torn mix.
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, rename, rm, chmod, stat, link } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';

/** Create `dir` (and parents) with mode 0700 and tighten it to 0700 if it already exists. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if ((st.mode & 0o077) !== 0) await chmod(dir, 0o700);
}

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

async function writeAndSync(path: string, data: Uint8Array | string, mode: number): Promise<void> {
  // O_EXCL: never follow or reuse a file someone planted under the temp name.
  const fh = await open(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  // Makes the rename itself durable. Some filesystems refuse to fsync a directory; the rename is
  // still atomic there, only its durability across power loss is weaker.
  try {
    const fh = await open(dir, fsConstants.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    /* best effort */
  }
}

/** Replace `path` atomically: write a temp file in the same directory, fsync, rename, fsync dir. */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o600): Promise<void> {
  const tmp = tempPathFor(path);
  try {
    await writeAndSync(tmp, data, mode);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(dirname(path));
}

/**
 * Create `path` with `data` only if it does not exist yet, atomically (link(2) fails with EEXIST).
 * Returns false when another writer got there first, so two processes starting at once agree.
 */
export async function createFileExclusive(path: string, data: Uint8Array | string, mode = 0o600): Promise<boolean> {
  const tmp = tempPathFor(path);
  try {
    await writeAndSync(tmp, data, mode);
    await link(tmp, path);
    await syncDir(dirname(path));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Read a state file of at most `maxBytes`; undefined if it does not exist. */
export async function readSmallFile(path: string, maxBytes: number): Promise<Buffer | undefined> {
  let fh;
  try {
    fh = await open(path, fsConstants.O_RDONLY);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (st.size > maxBytes) throw new RangeError(`${path} is ${st.size} bytes, more than the ${maxBytes} allowed`);
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}
