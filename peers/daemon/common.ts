import { mkdirSync, writeFileSync, rmSync, readFileSync, existsSync, createWriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { homedir } from 'node:os';
import pino, { type Logger } from 'pino';

/** Protocol ids of Hush's own protocols (pairing and roster sync live in runtime/net). */
export const STAGE_PROTOCOL = '/hush/stage/1';
export const CLOUD_PROTOCOL = '/hush/scx/1';
export const PROFILE_PROTOCOL = '/hush/profile/1';

/** Largest frame: a prefill of 512 tokens of a 8192-wide model in fp32, with decoys. */
export const MAX_TENSOR_FRAME_BYTES = 64 * 1024 * 1024;

export function defaultHome(): string {
  return process.env.HUSH_HOME ?? join(homedir(), '.hush');
}

export function resolveHome(home?: string): string {
  const dir = resolve(home ?? defaultHome());
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Structured logs (JSON lines) to stderr and to HOME/ROLE.log. Keys and prompts are never logged. */
export function createLogger(home: string, role: string): Logger {
  const file = createWriteStream(join(home, `${role}.log`), { flags: 'a', mode: 0o600 });
  return pino({ name: `hush-${role}`, level: process.env.HUSH_LOG_LEVEL ?? 'info', base: { pid: process.pid } },
    pino.multistream([{ stream: process.stderr }, { stream: file }]));
}

/** What a running daemon tells CLIs and the app: where to reach it. Removed on clean exit. */
export interface DaemonInfo {
  role: 'device' | 'cloud';
  pid: number;
  peerId: string;
  addresses: string[];
  apiUrl?: string;
  healthUrl?: string;
  model: string;
  startedAt: string;
}

export function writeDaemonInfo(home: string, info: DaemonInfo): void {
  writeFileSync(join(home, `${info.role}.json`), JSON.stringify(info, null, 2), { mode: 0o600 });
}

export function readDaemonInfo(home: string, role: 'device' | 'cloud'): DaemonInfo | null {
  const f = join(home, `${role}.json`);
  if (!existsSync(f)) return null;
  try {
    const info = JSON.parse(readFileSync(f, 'utf8')) as DaemonInfo;
    process.kill(info.pid, 0); // throws if the process is gone: a stale file
    return info;
  } catch {
    return null;
  }
}

export function removeDaemonInfo(home: string, role: 'device' | 'cloud'): void {
  rmSync(join(home, `${role}.json`), { force: true });
}

/** Run `stop` once on SIGINT/SIGTERM, then exit 0 (1 if stopping failed). */
export function onShutdown(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    stop().then(() => process.exit(0), (e) => { log.error({ err: e }, 'shutdown failed'); process.exit(1); });
  };
  process.on('SIGINT', () => handler('SIGINT'));
  process.on('SIGTERM', () => handler('SIGTERM'));
}
