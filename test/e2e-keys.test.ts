import '../runtime/polyfill.ts';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { chromium, type BrowserContext, type Page as PwPage } from 'playwright-core';
import { decodeIdentity, fingerprint } from '../runtime/net/index.ts';
import pino from 'pino';
import { AppChannelError, keyToBase64, type AppChannel } from '../peers/daemon/app-channel.ts';
import { startDeviceDaemon } from '../peers/daemon/device-daemon.ts';
import { readDaemonInfo } from '../peers/daemon/common.ts';
import { startAppBrowser, type AppBrowserSession } from '../peers/commands/app.ts';
import { Supervisor } from '../desktop-app/main/supervisor.ts';

/*
 * Identity keys end to end, with real `hush device start` processes:
 *  - the desktop app's channel (--app-channel 3): the key comes from and goes back to the app, never
 *    to HOME/identity.key; rotation and backup import restart the node under the new PeerId; EOF on
 *    the channel stops the daemon;
 *  - `hush app --browser` (startAppBrowser) and the Keys page in Chromium: export a backup, rotate,
 *    import the backup back.
 */

// page.evaluate callbacks run inside Chromium; the root tsconfig has no DOM lib.
/* eslint-disable @typescript-eslint/no-explicit-any */
declare const document: any, window: any;

const HUSH = [process.execPath, resolve('peers/bin/hush.js')] as const;
const CHROMIUM = '/usr/bin/chromium';
const SHOTS = resolve('.artifacts/app');
const hasChromium = existsSync(CHROMIUM);
const LISTEN = '/ip4/127.0.0.1/tcp/0';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'hush-e2e-keys-'));
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

interface ChannelDaemon {
  child: ChildProcess;
  home: string;
  apiUrl: string;
  token: string;
  /** identity-key messages from the daemon, in order. */
  keys: string[];
  stderr: () => string;
  exited: Promise<number | null>;
  channel: Writable & Readable;
}

/** `hush device start --app-channel 3` with a pipe on fd 3, as Electron main starts it. */
async function startWithChannel(home: string, key: string | null): Promise<ChannelDaemon> {
  const child = spawn(HUSH[0], [HUSH[1], 'device', 'start', '--home', home, '--listen', LISTEN, '--api-port', '0', '--app-channel', '3'], {
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, HUSH_LOG_LEVEL: 'info' },
  });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const channel = child.stdio[3] as Writable & Readable;
  channel.on('error', () => {});
  const keys: string[] = [];
  let pending = '';
  channel.on('data', (b: Buffer) => {
    pending += b.toString();
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const m = JSON.parse(pending.slice(0, nl)) as { type: string; key: string };
      pending = pending.slice(nl + 1);
      if (m.type === 'identity-key') keys.push(m.key);
    }
  });
  channel.write(JSON.stringify({ type: 'identity', key }) + '\n');
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode}:\n${err.slice(-3000)}`);
    const info = readDaemonInfo(home, 'device');
    const apiUrl = info && info.pid === child.pid ? info.apiUrl : undefined;
    if (apiUrl && (await fetch(`${apiUrl}/health`).then((r) => r.ok, () => false))) {
      return { child, home, apiUrl, token: readFileSync(join(home, 'api-token'), 'utf8').trim(), keys, stderr: () => err, exited, channel };
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`daemon not ready in 60 s:\n${err.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function api<T = any>(d: { apiUrl: string; token: string }, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(d.apiUrl + path, {
    method,
    headers: { authorization: `Bearer ${d.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as T };
}

async function until(what: string, fn: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => ok(port));
    });
  });
}

const peerOf = (b64: string) => peerIdFromPrivateKey(decodeIdentity(Buffer.from(b64, 'base64'))).toString();

describe('device daemon with the desktop app channel (--app-channel)', () => {
  it('takes its key from the app, hands every new key back, never writes identity.key, and stops at EOF', async () => {
    const home = join(root, 'channel');
    // First run: the app has no key; the daemon makes one and hands it over.
    const d = await startWithChannel(home, null);
    try {
      await until('the first identity-key message', () => d.keys.length === 1);
      const k1 = d.keys[0];
      const id1 = (await api(d, 'GET', '/api/v1/identity')).body;
      expect(peerOf(k1)).toBe(id1.peerId);
      expect(existsSync(join(home, 'identity.key'))).toBe(false);

      // A paired device and a cloud peer, so the backup has lists to restore.
      const cloudKey = await generateKeyPair('Ed25519');
      const cloudAddr = `/ip4/127.0.0.1/tcp/9/p2p/${peerIdFromPrivateKey(cloudKey).toString()}`;
      expect((await api(d, 'POST', '/api/v1/clouds', { multiaddr: cloudAddr, name: 'gpu' })).status).toBe(201);

      const exp = await api(d, 'POST', '/api/v1/keys/export', { passphrase: 'correct horse battery' });
      expect(exp.status).toBe(200);
      expect(exp.body.fileName).toMatch(new RegExp(`^hush-identity-${id1.fingerprint}-\\d{4}-\\d\\d-\\d\\d\\.hushkey$`));
      expect(exp.body.backup).not.toContain(id1.peerId);

      // Rotate: a new PeerId on a restarted node that still serves the API and its protocols.
      const rot = await api(d, 'POST', '/api/v1/keys/rotate');
      expect(rot.status).toBe(200);
      const id2 = rot.body.identity;
      expect(rot.body.message).toMatch(/refuse it until they pair again/);
      expect(id2.peerId).not.toBe(id1.peerId);
      expect(id2.fingerprint).toBe(fingerprint(id2.peerId));
      expect(id2.addresses.length).toBeGreaterThan(0);
      expect(id2.addresses.every((a: string) => a.endsWith(`/p2p/${id2.peerId}`))).toBe(true);
      await until('the rotated key', () => d.keys.length === 2);
      expect(peerOf(d.keys[1])).toBe(id2.peerId);
      expect(readDaemonInfo(home, 'device')!.peerId).toBe(id2.peerId);
      // The cloud list was kept.
      expect((await api(d, 'GET', '/api/v1/clouds')).body.clouds.map((c: { name: string }) => c.name)).toEqual(['gpu']);
      // The restarted node serves invites (pairing handler) under the new identity.
      expect((await api(d, 'POST', '/api/v1/invites')).status).toBe(201);

      // Wrong passphrase, damaged file: 400 with the error's name, nothing changes, nothing sent to the app.
      const wrong = await api(d, 'POST', '/api/v1/keys/import', { backup: exp.body.backup, passphrase: 'wrong horse battery' });
      expect(wrong.status).toBe(400);
      expect(wrong.body.error.name).toBe('BackupPassphraseError');
      const doc = JSON.parse(exp.body.backup);
      doc.data = doc.data.slice(0, -8) + (doc.data.endsWith('AAAAAAA=') ? 'BBBBBBB=' : 'AAAAAAA=');
      const damaged = await api(d, 'POST', '/api/v1/keys/import', { backup: JSON.stringify(doc), passphrase: 'correct horse battery' });
      expect(damaged.status).toBe(400);
      expect(damaged.body.error.name).toBe('BackupCorruptError');
      expect((await api(d, 'GET', '/api/v1/identity')).body.peerId).toBe(id2.peerId);
      expect(d.keys.length).toBe(2);

      // Remove the cloud peer, then import: identity and cloud list come back from the backup.
      expect((await fetch(`${d.apiUrl}/api/v1/clouds/gpu`, { method: 'DELETE', headers: { authorization: `Bearer ${d.token}` } })).status).toBe(204);
      const imp = await api(d, 'POST', '/api/v1/keys/import', { backup: exp.body.backup, passphrase: 'correct horse battery' });
      expect(imp.status).toBe(200);
      expect(imp.body.identity.peerId).toBe(id1.peerId);
      await until('the imported key', () => d.keys.length === 3);
      expect(d.keys[2]).toBe(k1);
      expect((await api(d, 'GET', '/api/v1/clouds')).body.clouds.map((c: { name: string }) => c.name)).toEqual(['gpu']);
      expect(existsSync(join(home, 'identity.key'))).toBe(false);

      // No key in the daemon's logs (stderr and HOME/device.log).
      const logs = d.stderr() + readFileSync(join(home, 'device.log'), 'utf8');
      for (const k of d.keys) expect(logs).not.toContain(k);
      expect(logs).not.toContain('correct horse battery');
      expect(logs).toContain('identity changed');

      // The app quits: EOF on fd 3 ends the daemon by itself.
      d.channel.end();
      const code = await Promise.race([d.exited, new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
      expect(code).toBe(0);
      expect(existsSync(join(home, 'device.json'))).toBe(false);
    } finally {
      if (d.child.exitCode === null) d.child.kill('SIGKILL');
    }

    // Next start: the app hands the stored key; same PeerId, nothing sent back, still no key file.
    const again = await startWithChannel(home, d.keys[2]);
    try {
      expect((await api(again, 'GET', '/api/v1/identity')).body.peerId).toBe(peerOf(d.keys[2]));
      await new Promise((r) => setTimeout(r, 200));
      expect(again.keys).toEqual([]);
      expect(existsSync(join(home, 'identity.key'))).toBe(false);
    } finally {
      again.channel.end();
      await Promise.race([again.exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (again.child.exitCode === null) again.child.kill('SIGKILL');
    }
  });

  it('refuses a channel whose first line is not an identity message, and a key that differs from HOME/identity.key', async () => {
    const bad = spawn(HUSH[0], [HUSH[1], 'device', 'start', '--home', join(root, 'bad'), '--listen', LISTEN, '--api-port', '0', '--app-channel', '3'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
    let err = '';
    bad.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    (bad.stdio[3] as Writable).write('{"type":"hello"}\n');
    const code = await new Promise((r) => bad.once('exit', r));
    expect(code).toBe(1);
    expect(err).toMatch(/AppChannelError: the app channel must start with \{"type":"identity"/);

    // A home the CLI made (identity.key) and an app holding another key: refused, not silently picked.
    const home = join(root, 'conflict');
    mkdirSync(home, { recursive: true });
    const { loadOrCreateIdentity } = await import('../runtime/net/index.ts');
    await loadOrCreateIdentity(home);
    const other = keyToBase64(await generateKeyPair('Ed25519'));
    await expect(startWithChannel(home, other)).rejects.toThrow(/holds another identity than the one the app keeps/);
  });

  it('works under the desktop app\'s own Supervisor: the hello goes out, the key comes back, stop() ends it', async () => {
    const home = join(root, 'supervised');
    const got: unknown[] = [];
    const port = await freePort();
    const s = new Supervisor({
      home, apiPort: port, command: HUSH[0], args: [HUSH[1], 'device', 'start', '--home', home, '--listen', LISTEN, '--api-port', String(port), '--app-channel', '3'],
      channel: { hello: [{ type: 'identity', key: null }] }, onChannelMessage: (m) => got.push(m), startTimeoutMs: 60_000,
    });
    const conn = await s.attachOrStart();
    try {
      expect(conn.owned).toBe(true);
      await until('the identity-key message', () => got.length === 1);
      const m = got[0] as { type: string; key: string };
      expect(m.type).toBe('identity-key');
      const id = (await api({ apiUrl: conn.apiUrl, token: conn.token }, 'GET', '/api/v1/identity')).body;
      expect(peerOf(m.key)).toBe(id.peerId);
    } finally {
      expect(await s.stop()).toBe(true);
    }
    expect(existsSync(join(home, 'device.json'))).toBe(false);
  });
});

describe('identity change that fails half-way (in-process daemon)', () => {
  it('puts the old identity, roster and cloud list back and keeps serving when the new key cannot be kept', async () => {
    const home = join(root, 'rollback');
    const sent: string[] = [];
    let appGone = false;
    // The app's side of the channel, able to fail on demand (the real channel is tested above).
    const channel: AppChannel = {
      initialKey: null,
      closed: new Promise<void>(() => {}),
      sendIdentityKey: async (k) => {
        if (appGone) throw new AppChannelError('the app channel is closed: the new identity key could not be handed to the app');
        sent.push(keyToBase64(k));
      },
      close: () => {},
    };
    const d = await startDeviceDaemon({ home, listen: [LISTEN], apiPort: 0, appChannel: channel }, pino({ level: 'silent' }));
    const c = { apiUrl: d.apiUrl, token: d.token };
    try {
      expect(d.identityStorage).toBe('app');
      expect(sent).toHaveLength(1);
      const cloud = async (_what: string) => `/ip4/127.0.0.1/tcp/9/p2p/${peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()}`;
      expect((await api(c, 'POST', '/api/v1/clouds', { multiaddr: await cloud('a'), name: 'in-backup' })).status).toBe(201);
      const backup = (await api(c, 'POST', '/api/v1/keys/export', { passphrase: 'correct horse battery' })).body.backup as string;
      // A different identity and cloud list from now on.
      const rotated = (await api(c, 'POST', '/api/v1/keys/rotate')).body.identity;
      expect(sent).toHaveLength(2);
      await fetch(`${d.apiUrl}/api/v1/clouds/in-backup`, { method: 'DELETE', headers: { authorization: `Bearer ${d.token}` } });
      expect((await api(c, 'POST', '/api/v1/clouds', { multiaddr: await cloud('b'), name: 'current' })).status).toBe(201);
      const cloudsFile = readFileSync(join(home, 'clouds.json'), 'utf8');

      appGone = true;
      const failed = await api(c, 'POST', '/api/v1/keys/import', { backup, passphrase: 'correct horse battery' });
      expect(failed.status).toBe(500);
      expect(failed.body.error.name).toBe('AppChannelError');
      // Nothing changed: identity, files, device.json; and the node runs (it serves invites).
      const now = (await api(c, 'GET', '/api/v1/identity')).body;
      expect(now.peerId).toBe(rotated.peerId);
      expect(d.node.peerId.toString()).toBe(rotated.peerId);
      expect(now.addresses.length).toBeGreaterThan(0);
      expect(readFileSync(join(home, 'clouds.json'), 'utf8')).toBe(cloudsFile);
      expect((await api(c, 'GET', '/api/v1/clouds')).body.clouds.map((x: { name: string }) => x.name)).toEqual(['current']);
      expect(readDaemonInfo(home, 'device')!.peerId).toBe(rotated.peerId);
      expect((await api(c, 'POST', '/api/v1/invites')).status).toBe(201);
      expect(sent).toHaveLength(2);

      appGone = false;
      const ok = await api(c, 'POST', '/api/v1/keys/import', { backup, passphrase: 'correct horse battery' });
      expect(ok.status).toBe(200);
      expect((await api(c, 'GET', '/api/v1/clouds')).body.clouds.map((x: { name: string }) => x.name)).toEqual(['in-backup']);
      expect(sent).toHaveLength(3);
      expect(sent[2]).toBe(sent[0]);
    } finally {
      await d.stop();
    }
  });
});

describe.skipIf(!hasChromium)('Keys page against the real daemon (hush app --browser)', () => {
  let browser: BrowserContext;
  let session: AppBrowserSession | undefined;

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    browser = await chromium.launchPersistentContext(join(root, 'profile'), {
      executablePath: CHROMIUM, headless: true, acceptDownloads: true, viewport: { width: 1280, height: 860 },
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await session?.stop();
    await browser?.close();
  });

  async function shot(page: PwPage, name: string): Promise<void> {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  }
  const shownFingerprint = (page: PwPage) => page.textContent('.fingerprint-large');

  it('exports a backup through the UI, rotates the identity, and imports the backup back', async () => {
    const home = join(root, 'browser');
    session = await startAppBrowser({ home, listen: LISTEN, apiPort: 0 });
    expect(session.daemon).toBe('started');
    expect(session.openUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/#token=[0-9a-f]+$/);
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      // The wrong-passphrase attempt below answers 400 on purpose.
      if (m.type() === 'error' && !/status of 400/.test(m.text())) errors.push(m.text());
    });
    try {
      await page.goto(session.openUrl);
      await page.waitForSelector('.conn .status-online');
      await page.click('nav a[data-page="keys"]');
      await page.waitForSelector('.fingerprint-large');
      const fp1 = (await shownFingerprint(page))!.trim();
      const api0 = { apiUrl: session.apiUrl, token: readFileSync(join(home, 'api-token'), 'utf8').trim() };
      expect(fp1).toBe((await api(api0, 'GET', '/api/v1/identity')).body.fingerprint);
      await shot(page, 'keys-real-daemon');

      // Export: the browser downloads the file the daemon made.
      await page.getByLabel('Passphrase', { exact: true }).fill('correct horse battery');
      await page.getByLabel('Passphrase again').fill('correct horse battery');
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('button:has-text("Export encrypted backup")')]);
      await page.waitForSelector('.notice-ok:has-text("Saved hush-identity-")');
      const file = join(root, download.suggestedFilename());
      await download.saveAs(file);
      expect(download.suggestedFilename()).toMatch(new RegExp(`^hush-identity-${fp1}-\\d{4}-\\d\\d-\\d\\d\\.hushkey$`));
      expect(JSON.parse(readFileSync(file, 'utf8')).format).toBe('hush-identity-backup');

      // Rotate: confirm in the dialog; the page shows the new fingerprint.
      await page.click('button:has-text("Rotate identity…")');
      await page.click('dialog[open] button:has-text("Rotate identity")');
      await page.waitForSelector('.notice-ok:has-text("New fingerprint")', { timeout: 30_000 });
      await page.waitForFunction((old) => (document.querySelector('.fingerprint-large')?.textContent ?? old).trim() !== old, fp1);
      const fp2 = (await shownFingerprint(page))!.trim();
      expect(fp2).not.toBe(fp1);
      expect(fp2).toBe((await api(api0, 'GET', '/api/v1/identity')).body.fingerprint);
      await shot(page, 'keys-rotated');

      // Import with the wrong passphrase: the daemon's words, nothing changes.
      await page.setInputFiles('input[type="file"]', file);
      await page.getByLabel('Passphrase of the backup').fill('not the passphrase');
      await page.click('button:has-text("Import backup…")');
      await page.click('dialog[open] button:has-text("Import and replace")');
      await page.waitForSelector('.notice-error:has-text("passphrase does not open this backup")');
      expect((await shownFingerprint(page))!.trim()).toBe(fp2);

      // Import with the right one: the first identity is back.
      await page.getByLabel('Passphrase of the backup').fill('correct horse battery');
      await page.click('button:has-text("Import backup…")');
      await page.click('dialog[open] button:has-text("Import and replace")');
      await page.waitForSelector(`.notice-ok:has-text("This device is now ${fp1}")`, { timeout: 30_000 });
      await page.waitForFunction((want) => document.querySelector('.fingerprint-large')?.textContent?.trim() === want, fp1);
      await shot(page, 'keys-imported');
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }

    // Ctrl-C path: the command stops the daemon it started.
    const pid = session.started!.child.pid!;
    await session.stop();
    session = undefined;
    expect(() => process.kill(pid, 0)).toThrow();
    expect(existsSync(join(home, 'device.json'))).toBe(false);
  });

  it('attaches to a daemon that already runs and leaves it running', async () => {
    const home = join(root, 'attach');
    const d = await startWithChannel(home, null);
    try {
      const s = await startAppBrowser({ home, listen: LISTEN, apiPort: 0 });
      expect(s.daemon).toBe('attached');
      expect(s.started).toBeNull();
      expect(s.apiUrl).toBe(d.apiUrl);
      // The page server proxies the API of the attached daemon.
      const res = await fetch(`${s.url}/api/v1/identity`, { headers: { authorization: `Bearer ${d.token}` } });
      expect(res.status).toBe(200);
      await s.stop();
      expect(d.child.exitCode).toBeNull();
      expect((await fetch(`${d.apiUrl}/health`)).ok).toBe(true);
    } finally {
      d.channel.end();
      await Promise.race([d.exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (d.child.exitCode === null) d.child.kill('SIGKILL');
    }
  });
});
