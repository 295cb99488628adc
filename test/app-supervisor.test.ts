import '../runtime/polyfill.ts';
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Supervisor, SupervisorError, pidAlive, readLock } from '../desktop-app/main/supervisor.ts';

/*
 * STAND-IN DAEMON: the script below is a tiny real HTTP server that plays the device daemon's part of
 * the supervision contract (home/api-token, home/device.json, GET /health, GET /api/v1/identity, the fd-3 app
 * channel, SIGTERM handling). It is used ONLY here, to unit-test process supervision with real child
 * processes; everything else about the daemon is tested against the real one (test/app-browser.test.ts).
 */
const FAKE_DAEMON = String.raw`
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
const argv = process.argv.slice(2);
const opt = (k) => { const i = argv.indexOf(k); return i >= 0 ? argv[i + 1] : undefined; };
const home = opt('--home');
const port = Number(opt('--api-port'));
const ignoreTerm = argv.includes('--ignore-term');
const termDelay = Number(opt('--term-delay') ?? 0);
const lockFile = path.join(home, 'device.json');
const token = crypto.randomBytes(16).toString('hex');
fs.mkdirSync(home, { recursive: true });
fs.writeFileSync(path.join(home, 'api-token'), token, { mode: 0o600 });
const hello = [];
if (opt('--app-channel')) {
  const ch = fs.createReadStream(null, { fd: Number(opt('--app-channel')) });
  const out = fs.createWriteStream(null, { fd: Number(opt('--app-channel')) });
  let buf = '';
  ch.on('data', (b) => {
    buf += b.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i); buf = buf.slice(i + 1);
      const m = JSON.parse(line);
      hello.push(m.type);
      out.write(JSON.stringify({ type: 'ack', of: m.type }) + '\n');
    }
  });
  // Lifeline: the app closed the channel (or died) -> shut down.
  ch.on('end', () => shutdown('channel closed'));
}
const server = http.createServer((req, res) => {
  // As runtime/api: /health needs no token, everything under /api/v1 does.
  if (req.url === '/health') { res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'); return; }
  if (req.url !== '/api/v1/identity') { res.writeHead(404).end(); return; }
  if (req.headers.authorization !== 'Bearer ' + token) { res.writeHead(401).end('{"error":{"name":"UnauthorizedError","message":"wrong token"}}'); return; }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ peerId: 'stand-in', pid: process.pid, hello }));
});
server.listen(port, '127.0.0.1', () => {
  // The shape peers/daemon/common.ts writes.
  fs.writeFileSync(lockFile, JSON.stringify({ role: 'device', pid: process.pid, apiUrl: 'http://127.0.0.1:' + port, healthUrl: 'http://127.0.0.1:' + port + '/health' }));
});
let closing = false;
function shutdown(why) {
  if (closing) return; closing = true;
  setTimeout(() => {
    try { fs.unlinkSync(lockFile); } catch {}
    server.close(); process.exit(0);
  }, termDelay);
}
process.on('SIGTERM', () => { if (!ignoreTerm) shutdown('SIGTERM'); });
`;

// A launcher in front of the daemon, as npx / tsx are: the daemon is its grandchild.
const WRAPPER = String.raw`
import { spawn } from 'node:child_process';
const c = spawn(process.execPath, process.argv.slice(2), { stdio: 'inherit' });
process.on('SIGTERM', () => process.exit(0));
c.on('exit', (code) => process.exit(code ?? 1));
`;

let dir: string;
let daemonJs: string;
let wrapperJs: string;
const supervisors: Supervisor[] = [];
const externals: ChildProcess[] = [];

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function newHome(): Promise<string> {
  return mkdtemp(join(dir, 'home-'));
}

function supervisor(home: string, port: number, extra: string[] = [], more: Partial<ConstructorParameters<typeof Supervisor>[0]> = {}) {
  const s = new Supervisor({
    home,
    apiPort: port,
    command: process.execPath,
    args: [daemonJs, '--home', home, '--api-port', String(port), ...extra],
    startTimeoutMs: 10_000,
    stopGraceMs: 2000,
    ...more,
  });
  supervisors.push(s);
  return s;
}

async function waitFor<T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A daemon the "user" started outside the app (e.g. with the CLI). */
async function startExternal(home: string, port: number): Promise<number> {
  const c = spawn(process.execPath, [daemonJs, '--home', home, '--api-port', String(port)], { stdio: 'ignore' });
  externals.push(c);
  const lock = await waitFor('external daemon lock', () => readLock(home));
  expect(lock.pid).toBe(c.pid);
  return lock.pid;
}

/** An authenticated call to the daemon: proves the token and tells which process answers. */
async function health(url: string, token: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}/api/v1/identity`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hush-app-supervisor-'));
  daemonJs = join(dir, 'fake-daemon.mjs');
  wrapperJs = join(dir, 'wrapper.mjs');
  await writeFile(daemonJs, FAKE_DAEMON);
  await writeFile(wrapperJs, WRAPPER);
});

afterEach(async () => {
  for (const s of supervisors.splice(0)) await s.stop();
  for (const c of externals.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    }
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('desktop-app supervisor', () => {
  it('starts a daemon when none runs, reads its token, and stops it on stop()', async () => {
    const home = await newHome();
    const port = await freePort();
    const s = supervisor(home, port);
    const conn = await s.attachOrStart();
    expect(conn.owned).toBe(true);
    expect(conn.apiUrl).toBe(`http://127.0.0.1:${port}`);
    expect(conn.token).toBe((await readFile(join(home, 'api-token'), 'utf8')).trim());
    expect((await stat(join(home, 'api-token'))).mode & 0o777).toBe(0o600);
    const h = await health(conn.apiUrl, conn.token);
    expect(h.pid).toBe(conn.pid);
    expect(pidAlive(conn.pid!)).toBe(true);

    expect(await s.stop()).toBe(true);
    expect(pidAlive(conn.pid!)).toBe(false);
    expect(existsSync(join(home, 'device.json'))).toBe(false); // it shut down cleanly (SIGTERM, not SIGKILL)
    expect(s.current).toBeNull();
  });

  it('attaches to a daemon already running for the home and never stops it', async () => {
    const home = await newHome();
    const port = await freePort();
    const pid = await startExternal(home, port);
    // The app is configured with another port: the lock file's port must win.
    const s = supervisor(home, await freePort());
    const conn = await s.attachOrStart();
    expect(conn.owned).toBe(false);
    expect(conn.pid).toBe(pid);
    expect(conn.apiUrl).toBe(`http://127.0.0.1:${port}`);

    expect(await s.stop()).toBe(false);
    await new Promise((r) => setTimeout(r, 200));
    expect(pidAlive(pid)).toBe(true);
    expect((await health(conn.apiUrl, conn.token)).pid).toBe(pid);
  });

  it('stops its own daemon but not an attached one when both exist', async () => {
    const homeA = await newHome();
    const homeB = await newHome();
    const portA = await freePort();
    const portB = await freePort();
    const externalPid = await startExternal(homeA, portA);
    const attached = supervisor(homeA, portA);
    const started = supervisor(homeB, portB);
    const a = await attached.attachOrStart();
    const b = await started.attachOrStart();
    expect([a.owned, b.owned]).toEqual([false, true]);
    await Promise.all([attached.stop(), started.stop()]);
    expect(pidAlive(externalPid)).toBe(true);
    expect(pidAlive(b.pid!)).toBe(false);
  });

  it('ignores a stale lock left by a crashed daemon and starts a new one', async () => {
    const home = await newHome();
    const port = await freePort();
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => dead.once('exit', r));
    await writeFile(join(home, 'device.json'), JSON.stringify({ role: 'device', pid: dead.pid, apiUrl: `http://127.0.0.1:${port}` }));
    await writeFile(join(home, 'api-token'), 'stale-token', { mode: 0o600 });
    const s = supervisor(home, port);
    const conn = await s.attachOrStart();
    expect(conn.owned).toBe(true);
    expect(conn.pid).not.toBe(dead.pid);
    expect(conn.token).not.toBe('stale-token');
    await health(conn.apiUrl, conn.token);
  });

  it('reports a daemon that dies while starting with its output', async () => {
    const home = await newHome();
    const port = await freePort();
    const s = new Supervisor({
      home,
      apiPort: port,
      command: process.execPath,
      args: ['-e', 'console.error("hush: cannot open identity key"); process.exit(3)'],
      startTimeoutMs: 10_000,
    });
    supervisors.push(s);
    const err = await s.attachOrStart().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SupervisorError);
    expect((err as SupervisorError).code).toBe('start_failed');
    expect((err as SupervisorError).message).toMatch(/exit code 3/);
    expect((err as SupervisorError).output).toMatch(/cannot open identity key/);
    expect(s.owned).toBe(false);
  });

  it('refuses to attach to the daemon of another home on the same port', async () => {
    const homeA = await newHome();
    const homeB = await newHome();
    const port = await freePort();
    await startExternal(homeA, port);
    const s = supervisor(homeB, port);
    const err = await s.attachOrStart().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SupervisorError);
    expect((err as SupervisorError).code).toBe('port_taken');
    // With a token of its own (home B ran a daemon before), the other daemon refuses it: still not ours.
    await writeFile(join(homeB, 'api-token'), 'b'.repeat(64), { mode: 0o600 });
    const err2 = await s.attachOrStart().catch((e: unknown) => e);
    expect((err2 as SupervisorError).code).toBe('port_taken');
    expect((err2 as SupervisorError).message).toMatch(/another home/);
  });

  it('kills a daemon that ignores SIGTERM after the grace period', async () => {
    const home = await newHome();
    const port = await freePort();
    const s = supervisor(home, port, ['--ignore-term'], { stopGraceMs: 300 });
    const conn = await s.attachOrStart();
    const t0 = Date.now();
    expect(await s.stop()).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(pidAlive(conn.pid!)).toBe(false);
  });

  it('stops a daemon that runs under a launcher (grandchild), waiting for its clean exit', async () => {
    const home = await newHome();
    const port = await freePort();
    const s = new Supervisor({
      home,
      apiPort: port,
      command: process.execPath,
      args: [wrapperJs, daemonJs, '--home', home, '--api-port', String(port), '--term-delay', '300'],
      startTimeoutMs: 10_000,
      stopGraceMs: 3000,
    });
    supervisors.push(s);
    const conn = await s.attachOrStart();
    const daemonPid = (await readLock(home))!.pid;
    expect(daemonPid).not.toBe(conn.pid); // the lock names the grandchild
    expect(await s.stop()).toBe(true);
    expect(pidAlive(daemonPid)).toBe(false);
    expect(existsSync(join(home, 'device.json'))).toBe(false); // it had time to clean up
  });

  it('hands startup secrets over the fd-3 app channel and reads messages back; closing it ends the daemon', async () => {
    const home = await newHome();
    const port = await freePort();
    const messages: unknown[] = [];
    const s = supervisor(home, port, ['--app-channel', '3'], {
      channel: { hello: [{ type: 'identity', key: 'not-a-real-key' }] },
      onChannelMessage: (m) => messages.push(m),
    });
    const conn = await s.attachOrStart();
    const h = await health(conn.apiUrl, conn.token);
    expect(h.hello).toEqual(['identity']);
    await waitFor('ack on the channel', async () => messages.length > 0);
    expect(messages[0]).toEqual({ type: 'ack', of: 'identity' });
    // The key went over the pipe, never the command line.
    expect(await readFile(`/proc/${conn.pid}/cmdline`, 'utf8')).not.toContain('not-a-real-key');
    expect(await s.stop()).toBe(true);
    expect(pidAlive(conn.pid!)).toBe(false);
  });

  it('tells the app when its daemon exits on its own', async () => {
    const home = await newHome();
    const port = await freePort();
    let exit: { code: number | null; signal: string | null } | null = null;
    const s = supervisor(home, port, [], { onUnexpectedExit: (code, signal) => (exit = { code, signal }) });
    const conn = await s.attachOrStart();
    process.kill(conn.pid!, 'SIGKILL');
    await waitFor('unexpected exit callback', async () => exit);
    expect(exit).toEqual({ code: null, signal: 'SIGKILL' });
    expect(s.current).toBeNull();
    expect(await s.stop()).toBe(false);
  });
});
