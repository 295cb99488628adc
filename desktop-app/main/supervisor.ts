/**
 * Supervision of the local Hush device daemon for the desktop app.
 *
 *   attach: a daemon already runs for this home dir (lock file names a live pid, and the control API
 *           answers its health check on the lock's port, for this home) -> use it, never stop it.
 *   start:  otherwise spawn the daemon command, wait until its health check answers, read its token.
 *   stop:   stops only a daemon this supervisor started (SIGTERM to its process group, then SIGKILL
 *           after a grace period); an attached daemon is left running, as the user started it.
 *
 * Contract with the daemon (`hush device start --home DIR --listen MA --api-port N`):
 *   HOME/device.json  {"pid": number, "apiUrl": "http://127.0.0.1:PORT", ...} written once the API listens,
 *                     removed on clean exit ("apiPort": number and a plain pid number are read too).
 *   HOME/api-token    the bearer token (0600).
 *   GET /health       {"ok": true} without auth; GET /api/v1/identity must accept HOME/api-token (a daemon
 *                     that refuses it belongs to another home: refuse to attach).
 *   fd 3 (optional, `--app-channel 3`): JSON lines both ways; the daemon exits when it reads EOF there,
 *                     so a crashed app leaves no daemon behind (see desktop-app/README.md).
 *
 * No Electron import here: the unit test (test/app-supervisor.test.ts) runs it under plain Node.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable, Readable } from 'node:stream';

/** The daemon's info file (peers/daemon/common.ts writeDaemonInfo): written once its API listens, removed on clean exit. */
export const DEFAULT_LOCK_FILE = 'device.json';
export const DEFAULT_TOKEN_FILE = 'api-token';
export const HEALTH_PATH = '/health';
export const IDENTITY_PATH = '/api/v1/identity';

export class SupervisorError extends Error {
  override name = 'SupervisorError';
  constructor(
    message: string,
    readonly code: 'start_failed' | 'start_timeout' | 'port_taken' | 'bad_lock',
    /** Last lines the daemon printed, for the error dialog. */
    readonly output = '',
  ) {
    super(message);
  }
}

export interface DaemonLock {
  pid: number;
  apiPort: number | null;
  home: string | null;
}

export interface DaemonConnection {
  apiUrl: string;
  token: string;
  pid: number | null;
  /** True when this supervisor started the daemon (and stop() will end it). */
  owned: boolean;
}

export interface SupervisorOptions {
  home: string;
  /** Port passed with --api-port; used when no lock file names one. */
  apiPort: number;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  lockFile?: string;
  tokenFile?: string;
  startTimeoutMs?: number;
  stopGraceMs?: number;
  healthTimeoutMs?: number;
  /** Open fd 3 as the app channel and write these JSON lines first (e.g. the identity key). */
  channel?: { hello: unknown[] };
  onChannelMessage?: (msg: unknown) => void;
  /** Every line the daemon prints (stdout and stderr); keys never go to stdout, by the daemon's contract. */
  onOutput?: (line: string) => void;
  /** Called when an owned daemon exits on its own (not by stop()). */
  onUnexpectedExit?: (code: number | null, signal: string | null, output: string) => void;
}

const OUTPUT_TAIL_CHARS = 8192;
const CHANNEL_LINE_MAX = 64 * 1024;

/** Is a process with this pid alive (EPERM: alive, owned by someone else)? */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function readLock(home: string, file = DEFAULT_LOCK_FILE): Promise<DaemonLock | null> {
  let text: string;
  try {
    text = await readFile(join(home, file), 'utf8');
  } catch {
    return null;
  }
  if (text.length > 4096) throw new SupervisorError(`${file} in ${home} is too large to be a lock file`, 'bad_lock');
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return { pid: Number(trimmed), apiPort: null, home: null };
  try {
    const o = JSON.parse(trimmed) as Record<string, unknown>;
    const pid = Number(o.pid);
    if (!Number.isInteger(pid) || pid <= 0) return null;
    let port = Number(o.apiPort ?? o.port);
    if (!port && typeof o.apiUrl === 'string') {
      try {
        const u = new URL(o.apiUrl);
        port = Number(u.port);
        if (!/^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(u.hostname)) port = 0; // never follow a lock off loopback
      } catch {
        port = 0;
      }
    }
    return {
      pid,
      apiPort: Number.isInteger(port) && port > 0 && port < 65536 ? port : null,
      home: typeof o.home === 'string' ? o.home : null,
    };
  } catch {
    return null; // half-written or foreign file: treat as no lock, the health check decides
  }
}

async function readToken(home: string, file: string): Promise<string | null> {
  try {
    const t = (await readFile(join(home, file), 'utf8')).trim();
    return t.length > 0 && t.length <= 1024 ? t : null;
  } catch {
    return null;
  }
}

export type HealthResult =
  | { ok: true }
  | { ok: false; reason: 'refused' | 'timeout' | 'http' | 'not_hush' | 'token'; detail: string };

async function get(url: string, token: string | null, timeoutMs: number): Promise<{ status: number; text: string } | HealthResult> {
  try {
    const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, text: (await res.text().catch(() => '')).slice(0, 65536) };
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    if (err.name === 'TimeoutError' || err.name === 'AbortError') return { ok: false, reason: 'timeout', detail: err.message };
    return { ok: false, reason: 'refused', detail: err.cause?.code ?? err.message };
  }
}

/**
 * Is a Hush daemon for this token on the port? GET /health (no auth) must answer {"ok": true}; then,
 * with a token, GET /api/v1/identity must accept it: tokens are per home, so a refused token means
 * the daemon of another home. Never throws.
 */
export async function checkHealth(port: number, token: string | null, timeoutMs = 1500): Promise<HealthResult> {
  const h = await get(`http://127.0.0.1:${port}${HEALTH_PATH}`, null, timeoutMs);
  if ('ok' in h) return h;
  if (h.status !== 200) return { ok: false, reason: 'http', detail: `HTTP ${h.status}` };
  try {
    if ((JSON.parse(h.text) as { ok?: unknown }).ok !== true) return { ok: false, reason: 'not_hush', detail: 'health answer lacks "ok": true' };
  } catch {
    return { ok: false, reason: 'not_hush', detail: 'health answer is not JSON' };
  }
  if (token === null) return { ok: true };
  const id = await get(`http://127.0.0.1:${port}${IDENTITY_PATH}`, token, timeoutMs);
  if ('ok' in id) return id;
  if (id.status === 401 || id.status === 403) return { ok: false, reason: 'token', detail: `HTTP ${id.status}` };
  if (id.status !== 200) return { ok: false, reason: 'http', detail: `identity HTTP ${id.status}` };
  return { ok: true };
}

export class Supervisor {
  private child: ChildProcess | null = null;
  private connection: DaemonConnection | null = null;
  private output = '';
  private stopping = false;
  private exited: Promise<void> | null = null;
  private readonly lockFile: string;
  private readonly tokenFile: string;

  constructor(private readonly opts: SupervisorOptions) {
    this.lockFile = opts.lockFile ?? DEFAULT_LOCK_FILE;
    this.tokenFile = opts.tokenFile ?? DEFAULT_TOKEN_FILE;
  }

  get owned(): boolean {
    return this.connection?.owned === true;
  }

  get current(): DaemonConnection | null {
    return this.connection;
  }

  /** The last lines the owned daemon printed. */
  get outputTail(): string {
    return this.output;
  }

  /**
   * Find a daemon already serving this home. Returns null when none runs; throws port_taken when the
   * port answers for another home or with something that is not a Hush daemon.
   */
  async detect(): Promise<DaemonConnection | null> {
    const lock = await readLock(this.opts.home, this.lockFile);
    if (lock && !pidAlive(lock.pid)) {
      // Stale lock from a crash: nothing to attach to; the daemon we start rewrites it.
      return this.probe(this.opts.apiPort, null, false);
    }
    const port = lock?.apiPort ?? this.opts.apiPort;
    return this.probe(port, lock?.pid ?? null, lock !== null);
  }

  private async probe(port: number, pid: number | null, lockedAlive: boolean): Promise<DaemonConnection | null> {
    const token = await readToken(this.opts.home, this.tokenFile);
    const h = await checkHealth(port, token, this.opts.healthTimeoutMs);
    if (!h.ok) {
      if (h.reason === 'refused') return null;
      if (h.reason === 'token') {
        throw new SupervisorError(`port ${port} is used by the Hush daemon of another home (it refuses ${join(this.opts.home, this.tokenFile)})`, 'port_taken');
      }
      if (lockedAlive) return null; // our daemon's pid lives but its API is not up (yet): the start path waits for it
      throw new SupervisorError(`port ${port} is used by something that is not a Hush daemon (${h.detail})`, 'port_taken');
    }
    if (!token) {
      if (lockedAlive) return null; // ours, still writing its token
      // Every daemon writes its home's token before it listens: one answering here without ours is another home's.
      throw new SupervisorError(`port ${port} is used by another Hush daemon (${join(this.opts.home, this.tokenFile)} does not exist)`, 'port_taken');
    }
    return { apiUrl: `http://127.0.0.1:${port}`, token, pid, owned: false };
  }

  /** Attach to a running daemon for this home, or start one. */
  async attachOrStart(): Promise<DaemonConnection> {
    const found = await this.detect();
    if (found) {
      this.connection = found;
      return found;
    }
    try {
      return await this.start();
    } catch (e) {
      // Lost a race with a daemon started at the same moment (CLI, another user session): attach to it.
      const again = await this.detect().catch(() => null);
      if (again) {
        this.connection = again;
        return again;
      }
      throw e;
    }
  }

  /** Spawn the daemon and wait for its API. */
  async start(): Promise<DaemonConnection> {
    if (this.child) throw new SupervisorError('a daemon started by this app is already running', 'start_failed');
    const o = this.opts;
    const stdio: ('ignore' | 'pipe')[] = ['ignore', 'pipe', 'pipe'];
    if (o.channel) stdio.push('pipe');
    // detached: its own process group, so stop() reaches launcher wrappers (npx, tsx) and their children.
    const child = spawn(o.command, o.args, { cwd: o.cwd, env: o.env ?? process.env, stdio, detached: true });
    this.child = child;
    this.output = '';
    this.stopping = false;
    const onData = (buf: Buffer) => {
      const text = buf.toString('utf8');
      this.output = (this.output + text).slice(-OUTPUT_TAIL_CHARS);
      if (o.onOutput) for (const line of text.split(/\r?\n/)) if (line) o.onOutput(line);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);

    let exitInfo: { code: number | null; signal: string | null } | null = null;
    let spawnError: Error | null = null;
    this.exited = new Promise<void>((res) => {
      child.once('error', (e) => {
        spawnError = e;
        exitInfo ??= { code: null, signal: null };
        res();
      });
      child.once('exit', (code, signal) => {
        exitInfo = { code, signal };
        res();
      });
    }).then(() => {
      if (this.child === child) this.child = null;
      if (!this.stopping && child.pid) {
        // The leader died on its own: end anything it left in its group (a daemon under a wrapper).
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          // group already empty
        }
      }
      const wasOwned = this.connection?.owned === true;
      if (wasOwned) this.connection = null;
      if (wasOwned && !this.stopping) o.onUnexpectedExit?.(exitInfo?.code ?? null, exitInfo?.signal ?? null, this.output);
    });

    if (o.channel) {
      const ch = child.stdio[3] as Writable & Readable;
      ch.on('error', () => {}); // EPIPE when the daemon exits first: exit handling reports it
      for (const m of o.channel.hello) ch.write(JSON.stringify(m) + '\n');
      let pending = '';
      ch.on('data', (buf: Buffer) => {
        pending += buf.toString('utf8');
        if (pending.length > CHANNEL_LINE_MAX && !pending.includes('\n')) pending = ''; // drop an oversized line
        let nl: number;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          if (!line.trim()) continue;
          try {
            o.onChannelMessage?.(JSON.parse(line));
          } catch {
            // not JSON: ignore, the channel carries JSON lines only
          }
        }
      });
    }

    const deadline = Date.now() + (o.startTimeoutMs ?? 30_000);
    const port = o.apiPort;
    for (;;) {
      if (exitInfo) {
        const ei = exitInfo as { code: number | null; signal: string | null };
        const why = spawnError ? (spawnError as Error).message : `exit code ${ei.code ?? 'none'}${ei.signal ? `, signal ${ei.signal}` : ''}`;
        throw new SupervisorError(`the Hush daemon stopped while starting (${why})`, 'start_failed', this.output);
      }
      // The lock may name a different pid than child.pid (launcher wrappers): trust its port only while it lives.
      const lock = await readLock(o.home, this.lockFile).catch(() => null);
      const p = lock && lock.apiPort && pidAlive(lock.pid) ? lock.apiPort : port;
      const token = await readToken(o.home, this.tokenFile);
      if (token) {
        const h = await checkHealth(p, token, o.healthTimeoutMs);
        if (h.ok) {
          this.connection = { apiUrl: `http://127.0.0.1:${p}`, token, pid: child.pid ?? null, owned: true };
          return this.connection;
        }
      }
      if (Date.now() > deadline) {
        await this.stop();
        throw new SupervisorError(`the Hush daemon did not answer on port ${port} within ${o.startTimeoutMs ?? 30_000} ms`, 'start_timeout', this.output);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stop the daemon only if this supervisor started it. Returns whether it stopped one. */
  async stop(): Promise<boolean> {
    const child = this.child;
    if (!child || !this.exited) {
      // Attached (or never started): the daemon belongs to someone else; just forget it.
      this.connection = null;
      return false;
    }
    this.stopping = true;
    const exited = this.exited;
    // Closing the app channel first lets a daemon that watches it shut down by itself.
    (child.stdio[3] as Writable | undefined)?.end();
    const signalGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, sig);
      } catch {
        try {
          child.kill(sig);
        } catch {
          // already gone
        }
      }
    };
    signalGroup('SIGTERM');
    const grace = this.opts.stopGraceMs ?? 5000;
    const deadline = Date.now() + grace;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), grace);
      }),
    ]);
    clearTimeout(timer);
    // A wrapper (npx, tsx) may exit before the daemon under it: wait for the whole group, then force it.
    while (!timedOut && child.pid && groupAlive(child.pid) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    signalGroup('SIGKILL');
    await exited;
    this.connection = null;
    return true;
  }
}
