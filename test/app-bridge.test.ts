import '../runtime/polyfill.ts';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile, readFile, stat, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControlServer, type RunningServer } from '../runtime/api/index.ts';
import type { BridgeEvent, ChatEvent, HushBridge } from '../desktop-app/shared/bridge.ts';
import { createHttpBridge } from '../desktop-app/shared/http-bridge.ts';
import { readSse, SseError } from '../desktop-app/shared/sse.ts';
import { dispatchCall } from '../desktop-app/main/ipc.ts';
import { chooseIdentityMode, IdentityKeychain, KeychainError, type SafeStorageLike } from '../desktop-app/main/keychain.ts';
import { daemonSettings, resolveDaemonCommand } from '../desktop-app/main/daemon-command.ts';
import { serveRenderer, startBrowserMode, type RendererServer } from '../desktop-app/serve.ts';
import { buildApp } from '../desktop-app/build.ts';
import { electronBinary, NO_ELECTRON_HELP } from '../desktop-app/launch.ts';
import { InterimController } from '../desktop-app/testing/interim-controller.ts';

/*
 * The bridge's HTTP side (the code Electron main and the browser shim share), main's IPC checks, the
 * keychain handling and the renderer server, in Node without a browser.
 * INTERIM: the daemon side is the real control API (runtime/api) over the controller test double in
 * desktop-app/testing/interim-controller.ts; test/app-browser.test.ts also runs against real daemons.
 */

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(enc.encode(ch));
      c.close();
    },
  });
}

async function collect(body: ReadableStream<Uint8Array>, max?: number) {
  const out = [];
  for await (const m of readSse(body, max)) out.push(m);
  return out;
}

describe('SSE reader', () => {
  it('parses events split across chunks, with CRLF, comments and multi-line data', async () => {
    const msgs = await collect(streamOf(['retry: 3000\r\n\r\n: subscribed\r\n\r\nda', 'ta: {"a":1}\r', '\n\r\ndata: one\ndata: two\n\nevent: done\ndata: x\n\n']));
    expect(msgs).toEqual([
      { event: 'message', data: '{"a":1}', id: null },
      { event: 'message', data: 'one\ntwo', id: null },
      { event: 'done', data: 'x', id: null },
    ]);
  });

  it('refuses an event larger than its limit', async () => {
    await expect(collect(streamOf([`data: ${'x'.repeat(2000)}\n`, `data: ${'y'.repeat(2000)}\n\n`]), 3000)).rejects.toBeInstanceOf(SseError);
  });
});

describe('HTTP bridge against the control API (INTERIM double)', () => {
  let controller: InterimController;
  let api: RunningServer;
  let bridge: HushBridge;
  const token = randomBytes(32).toString('hex');

  beforeAll(async () => {
    controller = new InterimController({ tokenDelayMs: 5 });
    api = await startControlServer({ controller, token, heartbeatMs: 1000 });
    bridge = createHttpBridge({ baseUrl: api.url, token, kind: 'electron', daemon: 'started', identityStorage: 'keychain' });
  });
  afterAll(async () => {
    await api?.close();
  });

  it('maps every read and write to the daemon and back', async () => {
    expect(await bridge.info()).toEqual({ kind: 'electron', api: api.url, daemon: 'started', identityStorage: 'keychain' });
    expect((await bridge.identity()).name).toBe('Study laptop');
    expect((await bridge.renameSelf('Travel laptop')).name).toBe('Travel laptop');
    const devices = await bridge.devices();
    expect(devices.map((d) => d.name)).toEqual(['Home desktop', 'Phone', 'Old tablet']);
    const invite = await bridge.invite();
    expect(invite.code).toMatch(/^HUSH-/);
    expect(Date.parse(invite.expiresAt)).toBeGreaterThan(Date.now());
    expect((await bridge.join(invite.code)).name).toBe('Office desktop');
    const phone = devices.find((d) => d.name === 'Phone')!;
    expect((await bridge.rename(phone.peerId, 'Pocket')).name).toBe('Pocket');
    expect((await bridge.revoke(phone.peerId)).revoked).toBeTruthy();
    const added = await bridge.clouds.add('/ip4/127.0.0.1/tcp/4999/p2p/12D3KooWTestCloud', 'Test GPU');
    expect(await bridge.clouds.test(added.id)).toEqual({ reachable: true, rttMs: 12.5 });
    await bridge.clouds.remove(added.id);
    expect((await bridge.clouds.list()).map((c) => c.name)).toEqual(['Rented GPU']);
    expect((await bridge.plan('scx')).stages.some((s) => s.role === 'cloud')).toBe(true);
    expect(await bridge.lastSession()).toBeNull();
    expect((await bridge.privacy())?.confidential.scx).toBe(false);
  });

  it("keeps the daemon's error name and message", async () => {
    const e1 = await bridge.revoke('12D3KooWNobody').catch((e: unknown) => e);
    expect(e1).toMatchObject({ name: 'BridgeError', code: 'NotFoundError', status: 404 });
    const e2 = await bridge.join('HUSH-expired').catch((e: unknown) => e);
    expect(e2).toMatchObject({ code: 'GoneError', status: 410, message: expect.stringContaining('expired') });
    const e3 = await bridge.keys.exportBackup('long enough passphrase').catch((e: unknown) => e);
    expect(e3).toMatchObject({ code: 'NotSupported', message: expect.stringContaining('not supported by this Hush daemon yet') });
    const wrong = createHttpBridge({ baseUrl: api.url, token: 'f'.repeat(64), kind: 'browser' });
    expect(await wrong.identity().catch((e: unknown) => e)).toMatchObject({ code: 'UnauthorizedError', status: 401 });
    const gone = createHttpBridge({ baseUrl: 'http://127.0.0.1:9', token, kind: 'browser' });
    expect(await gone.devices().catch((e: unknown) => e)).toMatchObject({ code: 'Unreachable', message: expect.stringContaining('is it running?') });
  });

  it('streams a chat answer token by token, with timings', async () => {
    const events: ChatEvent[] = [];
    const h = bridge.chat({ prompt: 'hello there', mode: 'scx', maxTokens: 5 }, (e) => events.push(e));
    await h.finished;
    expect(events[0]).toMatchObject({ type: 'start', mode: 'scx', model: 'debprose-7m' });
    const tokens = events.filter((e) => e.type === 'token');
    expect(tokens).toHaveLength(5);
    const done = events.at(-1)!;
    expect(done.type).toBe('done');
    if (done.type !== 'done') return;
    expect(done.finishReason).toBe('length');
    expect(done.timings.tokens).toBe(5);
    expect(done.timings.ttftMs).toBeGreaterThan(0);
    expect(done.timings.extra.prefillMs).toBeGreaterThan(0);
    expect((await bridge.lastSession())?.crossings.length).toBeGreaterThan(0);
  });

  it('cancels an answer, and reports a refused one as an error event', async () => {
    const events: ChatEvent[] = [];
    const h = bridge.chat({ prompt: 'long', mode: 'local', maxTokens: 500 }, (e) => {
      events.push(e);
      if (e.type === 'token') h.cancel();
    });
    await h.finished;
    expect(events.at(-1)).toEqual({ type: 'error', name: 'Cancelled', message: 'stopped' });

    const bare = new InterimController();
    for (const c of await bare.clouds()) await bare.removeCloud(c.id);
    const api2 = await startControlServer({ controller: bare, token });
    try {
      const b2 = createHttpBridge({ baseUrl: api2.url, token, kind: 'browser' });
      const ev: ChatEvent[] = [];
      await b2.chat({ prompt: 'x', mode: 'scx' }, (e) => ev.push(e)).finished;
      expect(ev).toEqual([{ type: 'error', name: 'UnavailableError', message: expect.stringContaining('needs a cloud peer') }]);
    } finally {
      await api2.close();
    }
  });

  it('delivers live events and tells when the daemon goes away', async () => {
    const got: BridgeEvent[] = [];
    const api3Controller = new InterimController();
    const api3 = await startControlServer({ controller: api3Controller, token });
    const b3 = createHttpBridge({ baseUrl: api3.url, token, kind: 'browser', reconnectMs: 50, maxReconnectMs: 100 });
    const phoneId = (await api3Controller.devices()).find((d) => d.name === 'Phone')!.peerId;
    const unsubscribe = b3.events.subscribe((e) => got.push(e));
    try {
      await expect.poll(() => got.some((e) => e.type === 'connection')).toBe(true);
      // The server registers the subscriber just after the stream opens: publish until one arrives.
      await expect
        .poll(() => {
          api3Controller.setOnline(phoneId, true);
          return got.some((e) => e.type === 'device.online');
        })
        .toBe(true);
      await api3.close();
      await expect.poll(() => got.some((e) => e.type === 'connection' && (e.data as { connected: boolean }).connected === false)).toBe(true);
    } finally {
      unsubscribe();
      await api3.close();
    }
  });
});

describe('main: IPC checks', () => {
  // Records any call at any depth (bridge.keys.exportBackup(...) too): the checks must stop bad input first.
  const calls: string[] = [];
  const recorder = (path: string): unknown =>
    new Proxy(() => {}, {
      get: (_t, k) => recorder(`${path}.${String(k)}`),
      apply: () => {
        calls.push(path);
        return Promise.resolve(null);
      },
    });
  const fake = recorder('bridge') as HushBridge;

  it('refuses unknown calls and bad arguments before anything reaches the daemon', async () => {
    expect(await dispatchCall(fake, 'constructor', [])).toMatchObject({ ok: false, error: { code: 'BadRequestError' } });
    expect(await dispatchCall(fake, 'rename', ['12D3KooW', 'x'.repeat(65)])).toMatchObject({ ok: false, error: { message: expect.stringContaining('longer than 64') } });
    expect(await dispatchCall(fake, 'join', [42])).toMatchObject({ ok: false, error: { message: 'the code must be text' } });
    expect(await dispatchCall(fake, 'plan', ['cloudy'])).toMatchObject({ ok: false, error: { message: expect.stringContaining('local, split, scx') } });
    expect(await dispatchCall(fake, 'keys.exportBackup', ['short'])).toMatchObject({ ok: false, error: { message: expect.stringContaining('at least 8') } });
    expect(await dispatchCall(fake, 'keys.importBackup', [{ fileName: 'a', contents: 'x'.repeat(70_000) }, 'long enough'])).toMatchObject({ ok: false });
    expect(calls).toEqual([]);
    expect(await dispatchCall(fake, 'keys.exportBackup', ['long enough passphrase'])).toEqual({ ok: true, value: null });
    expect(calls).toEqual(['bridge.keys.exportBackup']);
  });

  it('passes checked calls through and returns errors as values', async () => {
    const controller = new InterimController();
    const token = randomBytes(32).toString('hex');
    const api = await startControlServer({ controller, token });
    try {
      const bridge = createHttpBridge({ baseUrl: api.url, token, kind: 'electron' });
      expect(await dispatchCall(bridge, 'clouds.list', [])).toMatchObject({ ok: true, value: [{ name: 'Rented GPU' }] });
      expect(await dispatchCall(bridge, 'revoke', ['12D3KooWNobody'])).toEqual({ ok: false, error: { name: 'BridgeError', code: 'NotFoundError', status: 404, message: expect.any(String) } });
    } finally {
      await api.close();
    }
  });
});

describe('main: identity key and daemon command', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hush-app-keys-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // Electron's safeStorage exists only inside Electron; this stand-in XORs with a key it keeps in memory,
  // enough to prove the file never holds the plain key.
  const safe = (backend = 'gnome_libsecret'): SafeStorageLike => {
    const k = 0x5a;
    return {
      isEncryptionAvailable: () => true,
      getSelectedStorageBackend: () => backend,
      encryptString: (t) => Buffer.from(Buffer.from(t, 'utf8').map((b) => b ^ k)),
      decryptString: (b) => Buffer.from(b.map((x) => x ^ k)).toString('utf8'),
    };
  };

  it('stores only ciphertext, 0600, and reads it back', async () => {
    const file = join(dir, 'userdata', 'identity.keychain');
    const kc = new IdentityKeychain(safe(), file, 'linux');
    expect(kc.load()).toBeNull();
    const key = randomBytes(68).toString('base64');
    kc.save(key);
    expect((await readFile(file)).toString('utf8')).not.toContain(key.slice(0, 16));
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(kc.load()).toBe(key);
    expect(() => kc.save('not base64 !')).toThrow(KeychainError);
  });

  it('uses the keychain only when it is real and the home has no key file of its own', async () => {
    const home = join(dir, 'home');
    await mkdir(home, { recursive: true });
    const kc = new IdentityKeychain(safe(), join(dir, 'u2', 'identity.keychain'), 'linux');
    expect(chooseIdentityMode(home, kc, {})).toEqual({ kind: 'keychain', key: null });
    expect(chooseIdentityMode(home, new IdentityKeychain(safe('basic_text'), join(dir, 'u3', 'k'), 'linux'), {})).toMatchObject({ kind: 'file', reason: expect.stringContaining('no OS keychain') });
    expect(chooseIdentityMode(home, kc, { HUSH_APP_IDENTITY: 'file' })).toMatchObject({ kind: 'file' });
    await writeFile(join(home, 'identity.key'), 'x', { mode: 0o600 });
    expect(chooseIdentityMode(home, kc, {})).toMatchObject({ kind: 'file', reason: expect.stringContaining('made by the CLI') });
  });

  it('runs the repository daemon through peers/bin/hush.js, with the app channel only when asked', () => {
    const settings = daemonSettings({ HUSH_HOME: join(dir, 'h'), HUSH_API_PORT: '7555' });
    expect(settings).toEqual({ home: join(dir, 'h'), apiPort: 7555, listen: '/ip4/0.0.0.0/tcp/0' });
    expect(() => daemonSettings({ HUSH_API_PORT: '70000' })).toThrow(RangeError);
    const cmd = resolveDaemonCommand({ settings, appRoot: process.cwd(), execPath: '/opt/electron', underElectron: true, appChannel: true, env: {} });
    expect(cmd.command).toBe('/opt/electron');
    expect(cmd.env.ELECTRON_RUN_AS_NODE).toBe('1');
    expect(cmd.args).toEqual([join(process.cwd(), 'peers/bin/hush.js'), 'device', 'start', '--home', join(dir, 'h'), '--listen', '/ip4/0.0.0.0/tcp/0', '--api-port', '7555', '--app-channel', '3']);
    const custom = resolveDaemonCommand({ settings, appRoot: '/nowhere', execPath: 'node', underElectron: false, appChannel: false, env: { HUSH_BIN: '/usr/local/bin/hush' } });
    expect(custom.command).toBe('/usr/local/bin/hush');
    expect(custom.args).not.toContain('--app-channel');
    expect(() => resolveDaemonCommand({ settings, appRoot: '/nowhere', execPath: 'node', underElectron: false, appChannel: false, env: { PATH: '' } })).toThrow(/no Hush daemon found/);
  });
});

describe('npm run app', () => {
  it('finds no Electron binary here and says how to use browser mode instead', () => {
    // The electron package is installed without its binary on these machines (STACK.md); where the
    // binary was fetched (node_modules/electron/path.txt), it must be found instead.
    const fetched = existsSync('node_modules/electron/path.txt') || !!process.env.HUSH_ELECTRON;
    if (fetched) expect(electronBinary()).toEqual(expect.any(String));
    else expect(electronBinary()).toBeNull();
    expect(NO_ELECTRON_HELP).toContain('app --browser');
    expect(NO_ELECTRON_HELP).toContain('desktop-app/serve.ts');
  });
});

describe('renderer server', () => {
  let dir: string;
  let web: RendererServer;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hush-app-serve-'));
    await buildApp({ outdir: join(dir, 'dist'), electron: false });
    web = await serveRenderer({ dist: join(dir, 'dist'), build: false });
  });
  afterAll(async () => {
    await web?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves only the built page, with a strict CSP, to loopback names', async () => {
    const page = await fetch(`${web.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self'/);
    const html = await page.text();
    expect(html.indexOf('dev-bridge.js')).toBeLessThan(html.indexOf('renderer.js'));
    expect((await fetch(`${web.url}/renderer.js`)).headers.get('content-type')).toMatch(/javascript/);
    expect((await fetch(`${web.url}/../package.json`)).status).toBe(404);
    expect((await fetch(`${web.url}/%2e%2e/package.json`)).status).toBe(404);
    expect((await fetch(`${web.url}/`, { method: 'POST' })).status).toBe(405);
    // A DNS-rebinding page sends its own name as Host.
    const { request } = await import('node:http');
    const status = await new Promise<number>((ok) => {
      request(`${web.url}/`, { headers: { host: 'evil.example:80' } }, (r) => ok(r.statusCode ?? 0)).end();
    });
    expect(status).toBe(403);
    await expect(serveRenderer({ host: '0.0.0.0', dist: join(dir, 'dist') })).rejects.toThrow(/loopback only/);
  });

  it('browser mode serves a home\'s daemon through the proxy, token in the fragment only', async () => {
    const controller = new InterimController();
    const token = randomBytes(32).toString('hex');
    const api = await startControlServer({ controller, token });
    const home = join(dir, 'home');
    await mkdir(home, { recursive: true });
    await writeFile(join(home, 'api-token'), token, { mode: 0o600 });
    await writeFile(join(home, 'device.json'), JSON.stringify({ role: 'device', pid: process.pid, apiUrl: api.url }));
    const s = await startBrowserMode({ home });
    try {
      expect(s.api).toBe(api.url);
      expect(s.openUrl).toBe(`${s.url}/#token=${token}`);
      // Same origin as the page: the proxy forwards with the page's token and drops the Origin header.
      const res = await fetch(`${s.url}/api/v1/identity`, { headers: { authorization: `Bearer ${token}`, origin: s.url } });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { name: string }).name).toBe('Study laptop');
      expect((await fetch(`${s.url}/api/v1/identity`)).status).toBe(401);
    } finally {
      await s.close();
      await api.close();
    }
  });

  it('the Electron page has no dev bridge and may open no connection', async () => {
    const html = await readFile(join(dir, 'dist', 'index.html'), 'utf8');
    expect(html).not.toContain('dev-bridge.js');
    expect(html).toContain("connect-src 'none'");
  });
});
