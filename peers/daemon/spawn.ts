import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readDaemonInfo, type DaemonInfo } from './common.ts';
import { DaemonClient } from '../client.ts';

const HUSH_BIN = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'hush.js');

export interface RunningDaemon {
  role: 'device' | 'cloud';
  home: string;
  child: ChildProcess;
  info: DaemonInfo;
  /** Control API client (devices only). */
  client?: DaemonClient;
  /** Lines the daemon wrote to stderr (its JSON logs), for diagnostics. */
  stderr: string[];
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Start `hush device start` or `hush cloud start` as a separate process and wait until it is ready
 * (its info file names a live pid and its health endpoint answers).
 */
export async function spawnDaemon(role: 'device' | 'cloud', home: string, args: string[] = [], opts: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<RunningDaemon> {
  const child = spawn(process.execPath, [HUSH_BIN, role, 'start', '--home', home, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, HUSH_LOG_LEVEL: process.env.HUSH_LOG_LEVEL ?? 'warn', ...opts.env },
  });
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr.push(...d.split('\n').filter(Boolean)); if (stderr.length > 500) stderr.splice(0, stderr.length - 500); });
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let info: DaemonInfo | null = null;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${role} daemon exited with ${child.exitCode} before it was ready:\n${stderr.slice(-20).join('\n')}`);
    info = readDaemonInfo(home, role);
    if (info && info.pid === child.pid) {
      const ok = await fetch(info.healthUrl!).then((r) => r.ok, () => false);
      if (ok) break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!info || info.pid !== child.pid) {
    child.kill('SIGKILL');
    throw new Error(`${role} daemon was not ready within ${opts.timeoutMs ?? 60_000} ms:\n${stderr.slice(-20).join('\n')}`);
  }
  return {
    role, home, child, info: info!, stderr,
    client: role === 'device' ? DaemonClient.forHome(home) : undefined,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

