import '../runtime/polyfill.ts';
import { describe, it, expect, beforeAll, afterAll, afterEach } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { chromium, type BrowserContext, type Page as PwPage } from 'playwright-core';
import { startControlServer, type RunningServer } from '../runtime/api/index.ts';
import { buildApp } from '../desktop-app/build.ts';
import { browserUrl, serveRenderer, type RendererServer } from '../desktop-app/serve.ts';
import { Supervisor } from '../desktop-app/main/supervisor.ts';
import { InterimController } from '../desktop-app/testing/interim-controller.ts';

/*
 * The desktop app's renderer, unchanged, in Debian's Chromium (no Electron binary can be installed
 * here), with the browser bridge (dev-bridge.ts) and the renderer server (serve.ts).
 *
 * INTERIM: until the real device daemon exists, the first block serves the REAL control API
 * (runtime/api startControlServer) over a controller test double (desktop-app/testing/interim-controller.ts).
 * The second block runs the same UI against real daemons started with peers/cli.ts and is skipped
 * until `hush device start` and `hush cloud start` exist.
 */

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SHOTS = resolve('.artifacts/app');
const PAGES = [
  { id: 'devices', title: 'Devices', ready: 'text=Home desktop' },
  { id: 'keys', title: 'Keys', ready: '.fingerprint-large' },
  { id: 'clouds', title: 'Cloud peers', ready: 'text=Rented GPU' },
  { id: 'plan', title: 'Plan', ready: '.pipeline .stage-cloud' },
  { id: 'chat', title: 'Chat', ready: '.privacy table' },
  { id: 'session', title: 'Last session', ready: '.empty, .metrics' },
] as const;

const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) console.warn(`${CHROMIUM} is missing: apt-get install -y chromium (the browser tests are skipped)`);

let dir: string;
let dist: string;

async function launch(userDataDir: string): Promise<BrowserContext> {
  // A fresh profile per launch: no state from earlier runs, nothing written outside the temp dir.
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1280, height: 860 },
    acceptDownloads: true,
  });
}

/** Console errors and page errors, except network failures the test expects (e.g. a 404 it provoked). */
function watchConsole(page: PwPage): { errors: string[]; allow: (re: RegExp) => void } {
  const errors: string[] = [];
  const allowed: RegExp[] = [];
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = `${m.text()} ${m.location().url ?? ''}`;
    if (!allowed.some((re) => re.test(text))) errors.push(text);
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  return { errors, allow: (re) => allowed.push(re) };
}

async function openPage(page: PwPage, id: string): Promise<void> {
  await page.click(`nav a[data-page="${id}"]`);
  await page.waitForFunction((pid) => document.querySelector('.page')?.getAttribute('data-page') === pid, id);
}

interface KeyboardReport {
  controls: string[];
  reached: string[];
  missing: string[];
  noFocusRing: string[];
  unlabelled: string[];
}

/**
 * Tab through the whole page from the top and compare what got focus with every visible, enabled
 * control. A radio group is one Tab stop (arrow keys move inside it), so only its checked radio counts.
 */
async function keyboardWalk(page: PwPage): Promise<KeyboardReport> {
  const controls = await page.evaluate(() => {
    const sel = 'a[href], button, input, textarea, select, summary, [tabindex]:not([tabindex="-1"])';
    const all = [...document.querySelectorAll<HTMLElement>(sel)].filter((el) => {
      if ((el as HTMLButtonElement).disabled) return false;
      if (el.getClientRects().length === 0) return false;
      const st = getComputedStyle(el);
      if (st.visibility === 'hidden' || st.display === 'none') return false;
      if (el instanceof HTMLInputElement && el.type === 'radio' && !el.checked) return false;
      return true;
    });
    const describe = (el: HTMLElement) =>
      `${el.tagName.toLowerCase()}${el.getAttribute('type') ? `[${el.getAttribute('type')}]` : ''} "${(el.getAttribute('aria-label') ?? el.textContent ?? (el as HTMLInputElement).labels?.[0]?.textContent ?? '').trim().slice(0, 40)}"`;
    return all.map((el, i) => {
      el.dataset.kb = String(i);
      return `${i}:${describe(el)}`;
    });
  });
  const unlabelled = await page.evaluate(() => {
    const out: string[] = [];
    for (const el of document.querySelectorAll<HTMLElement>('input, textarea, select')) {
      const i = el as HTMLInputElement;
      if (!(i.labels && i.labels.length > 0) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')) out.push(el.outerHTML.slice(0, 80));
    }
    for (const el of document.querySelectorAll<HTMLElement>('button, a[href]')) {
      if (!(el.getAttribute('aria-label') ?? el.textContent ?? '').trim()) out.push(el.outerHTML.slice(0, 80));
    }
    return out;
  });
  await page.evaluate(() => {
    (document.activeElement as HTMLElement | null)?.blur();
    window.scrollTo(0, 0);
  });
  const reached = new Set<string>();
  const noFocusRing = new Set<string>();
  const limit = controls.length * 2 + 10;
  for (let i = 0; i < limit; i++) {
    await page.keyboard.press('Tab');
    const r = await page.evaluate(() => {
      const el = document.activeElement as HTMLElement | null;
      if (!el || el === document.body) return null;
      const st = getComputedStyle(el);
      const ring = st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) >= 2;
      return { kb: el.dataset.kb ?? null, ring, tag: el.tagName };
    });
    if (!r || r.kb === null) continue;
    if (reached.has(r.kb) && reached.size >= controls.length) break;
    reached.add(r.kb);
    if (!r.ring) noFocusRing.add(r.kb);
  }
  const byIndex = (k: string) => controls[Number(k)];
  return {
    controls,
    reached: [...reached].map(byIndex),
    missing: controls.filter((c) => !reached.has(c.split(':')[0])),
    noFocusRing: [...noFocusRing].map(byIndex),
    unlabelled,
  };
}

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hush-app-browser-'));
  dist = await buildApp({ outdir: join(dir, 'dist'), electron: false });
  mkdirSync(SHOTS, { recursive: true });
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.skipIf(!hasChromium)('desktop app renderer in Chromium (INTERIM: real control API over a controller test double)', () => {
  let controller: InterimController;
  let api: RunningServer;
  let web: RendererServer;
  let browser: BrowserContext;
  let page: PwPage;
  let consoleLog: ReturnType<typeof watchConsole>;
  const token = randomBytes(32).toString('hex');

  beforeAll(async () => {
    controller = new InterimController({ tokenDelayMs: 60 });
    api = await startControlServer({ controller, token, heartbeatMs: 5000 });
    web = await serveRenderer({ dist, apiTarget: api.url, build: false });
    browser = await launch(join(dir, 'profile-interim'));
  });

  afterAll(async () => {
    await browser?.close();
    await web?.close();
    await api?.close();
  });

  afterEach(async () => {
    expect(consoleLog.errors, 'console errors').toEqual([]);
    await page.close();
  });

  async function open(hash = '#/devices'): Promise<void> {
    page = await browser.newPage();
    consoleLog = watchConsole(page);
    await page.goto(`${browserUrl(web.url, { token })}`);
    if (hash !== '#/devices') await page.evaluate((h) => (location.hash = h), hash);
    await page.waitForSelector('.page[data-page]');
    await page.waitForSelector('.conn .status-online');
  }

  it('renders every page without console errors and saves a screenshot of each', async () => {
    await open();
    for (const p of PAGES) {
      await openPage(page, p.id);
      await expect.poll(() => page.textContent('h1')).toBe(p.title);
      await page.waitForSelector(p.ready);
      expect(await page.locator('.notice-error').count(), `${p.id} shows an error`).toBe(0);
      await page.screenshot({ path: join(SHOTS, `${p.id}.png`), fullPage: true });
    }
  });

  it('reaches every control by keyboard, with a visible focus ring and a label', async () => {
    await open();
    for (const p of PAGES) {
      await openPage(page, p.id);
      await page.waitForSelector(p.ready);
      const r = await keyboardWalk(page);
      expect(r.controls.length, `${p.id} has controls`).toBeGreaterThan(5);
      expect(r.missing, `${p.id}: controls Tab never reached`).toEqual([]);
      expect(r.noFocusRing, `${p.id}: controls without a visible focus ring`).toEqual([]);
      expect(r.unlabelled, `${p.id}: controls without a label`).toEqual([]);
    }
    // The mode radio group: one Tab stop, arrow keys move the choice.
    await openPage(page, 'plan');
    await page.waitForSelector('.pipeline .stage-cloud');
    await page.focus('input[name="plan-mode"]:checked');
    await page.keyboard.press('ArrowLeft');
    await expect.poll(() => page.$eval('input[name="plan-mode"]:checked', (e) => (e as HTMLInputElement).value)).toBe('split');
    await page.waitForSelector('text=Split mode: one crossing each way per pass');
  });

  it('takes the token from the fragment, clears it from the address bar and never shows it', async () => {
    await open();
    expect(new URL(page.url()).hash).toBe('');
    expect(await page.content()).not.toContain(token);
    // A reload in the same tab still works (sessionStorage), a page without it shows how to connect.
    await page.reload();
    await page.waitForSelector('.conn .status-online');
    const other = await browser.newPage();
    const otherLog = watchConsole(other);
    await other.goto(web.url);
    await other.waitForSelector('text=Hush is not connected to a daemon');
    expect(otherLog.errors).toEqual([]);
    await other.close();
  });

  it('creates an invite with a QR code, pairs with a code, renames by keyboard and revokes after confirming', async () => {
    await open();
    await page.click('button:has-text("Create invite code")');
    const code = await page.textContent('[data-testid="invite-code"]');
    expect(code).toMatch(/^HUSH-/);
    expect(await page.locator('.qr svg path').count()).toBeGreaterThan(0);
    await page.waitForSelector('text=/Valid for \\d:\\d\\d more/');

    // A refused code: the daemon's own words reach the user.
    consoleLog.allow(/status of 410/);
    await page.fill('input[name="code"]', 'HUSH-expired');
    await page.click('button:has-text("Pair")');
    await page.waitForSelector('.notice-error:has-text("expired")');

    await page.fill('input[name="code"]', 'HUSH-44QF-7M2K-9XPA-LT4C');
    await page.keyboard.press('Enter');
    await page.waitForSelector('.notice-ok:has-text("Paired with Office desktop")');
    await page.waitForSelector('tbody th:has-text("Office desktop")');

    // Rename with the keyboard only: focus the row's button, Enter, type, Enter.
    await page.focus('button[aria-label="Rename Phone"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('dialog[open]');
    await page.keyboard.press('Control+A');
    await page.keyboard.type('Pocket phone');
    await page.keyboard.press('Enter');
    await page.waitForSelector('tbody th:has-text("Pocket phone")');
    expect(await page.locator('dialog[open]').count()).toBe(0);

    // Revoke: Escape cancels, the danger button confirms.
    await page.click('button[aria-label="Revoke Home desktop"]');
    await page.waitForSelector('dialog[open] h2:has-text("Revoke Home desktop?")');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Cancel');
    await page.keyboard.press('Escape');
    expect(await page.locator('dialog[open]').count()).toBe(0);
    expect((await controller.devices()).find((d) => d.name === 'Home desktop')?.revoked).toBeUndefined();
    await page.click('button[aria-label="Revoke Home desktop"]');
    await page.click('dialog[open] button:has-text("Revoke device")');
    await page.waitForSelector('details.revoked summary:has-text("Revoked devices (2)")');
    expect(await page.locator('tbody th:has-text("Home desktop")').count()).toBe(0);
    expect((await controller.devices()).find((d) => d.name === 'Home desktop')?.revoked).toBeTruthy();

    // Live events: the daemon reports the phone online and the table follows without a reload.
    const phone = (await controller.devices()).find((d) => d.name === 'Pocket phone')!;
    controller.setOnline(phone.peerId, true);
    await page.waitForSelector(`tr[data-peer="${phone.peerId}"] .status-online`);
    await page.screenshot({ path: join(SHOTS, 'devices-after-pairing.png'), fullPage: true });
  });

  it('adds a cloud peer by multiaddr, tests its reachability and removes it', async () => {
    await open('#/clouds');
    await page.waitForSelector('text=Rented GPU');
    await page.fill('input.mono', 'not-a-multiaddr');
    await page.click('button:has-text("Add cloud peer")');
    await page.waitForSelector('.notice-error:has-text("starts with")');
    await page.fill('input.mono', '/ip4/127.0.0.1/tcp/43111/p2p/12D3KooWSpareGpuF6p8Qr2St4Uv6Wx8Yz1Ab3Cd5Ef7Gh9');
    await page.getByLabel('Name (optional)').fill('Spare GPU');
    await page.click('button:has-text("Add cloud peer")');
    await page.waitForSelector('tbody th:has-text("Spare GPU")');
    await page.click('button[aria-label="Test Spare GPU"]');
    await page.waitForSelector('tr:has-text("Spare GPU") .status-ok:has-text("Reachable")');
    expect(await page.textContent('tr:has-text("Spare GPU") td.num')).toBe('12.5 ms');
    await page.click('button[aria-label="Remove Spare GPU"]');
    await page.click('dialog[open] button:has-text("Remove cloud peer")');
    await expect.poll(() => page.locator('tbody th:has-text("Spare GPU")').count()).toBe(0);
    expect((await controller.clouds()).map((c) => c.name)).toEqual(['Rented GPU']);
  });

  it('streams an scx answer token by token with timings, then shows what the cloud saw', async () => {
    await open('#/chat');
    await page.waitForSelector('.privacy table');
    expect(await page.$eval('input[name="chat-mode"]:checked', (e) => (e as HTMLInputElement).value)).toBe('scx');
    expect(await page.textContent('.privacy')).toContain('Not confidential');
    expect(await page.textContent('.privacy table')).toContain('Vocabulary matching');

    await page.getByLabel('Message', { exact: true }).fill('What did the cloud see?');
    await page.getByLabel('Message', { exact: true }).press('Control+Enter');
    // Sample the answer while it streams: it must grow in several steps, not arrive at once.
    const lengths = new Set<number>();
    for (let i = 0; i < 400; i++) {
      const t = await page.textContent('.answer-text');
      lengths.add(t?.length ?? 0);
      if (await page.locator('.timings').count()) break;
      await page.waitForTimeout(15);
    }
    expect(lengths.size).toBeGreaterThan(4);
    expect(await page.textContent('.answer-text')).toBe(' The edge layers ran on your own devices, and the cloud saw only encoded hidden states.');
    const timings = await page.textContent('.timings');
    expect(timings).toMatch(/modescx/);
    expect(timings).toMatch(/first token\d/);
    expect(timings).toMatch(/tok\/s/);
    await page.screenshot({ path: join(SHOTS, 'chat-answered.png'), fullPage: true });

    await openPage(page, 'session');
    await page.waitForSelector('.metrics');
    const table = await page.textContent('.table');
    for (const c of ['P1', 'P2', 'P3', 'K', 'D']) expect(table).toContain(c);
    expect(await page.textContent('.metrics')).toContain('Cloud kept (KV cache)');
    await page.screenshot({ path: join(SHOTS, 'session-after-chat.png'), fullPage: true });
  });

  it('stops a streaming answer on request', async () => {
    await open('#/chat');
    await page.waitForSelector('.privacy table');
    await page.getByLabel('Max tokens').fill('4096');
    await page.getByLabel('Message', { exact: true }).fill('Tell me more');
    await page.click('button:has-text("Send")');
    await page.waitForFunction(() => (document.querySelector('.answer-text')?.textContent ?? '').length > 5);
    await page.click('button:has-text("Stop")');
    await page.waitForSelector('.notice-info:has-text("Stopped")');
    expect(await page.isEnabled('button:has-text("Send")')).toBe(true);
  });

  it('says plainly that this daemon has no key backup routes, and checks passphrases first', async () => {
    await open('#/keys');
    await page.waitForSelector('.fingerprint-large');
    expect(await page.textContent('.statement')).toContain('Session keys are per request and never stored');
    await page.getByLabel('Passphrase', { exact: true }).fill('correct horse');
    await page.getByLabel('Passphrase again').fill('correct hose');
    await page.click('button:has-text("Export encrypted backup")');
    await page.waitForSelector('.notice-error:has-text("differ")');
    consoleLog.allow(/status of 404/);
    await page.getByLabel('Passphrase again').fill('correct horse');
    await page.click('button:has-text("Export encrypted backup")');
    await page.waitForSelector('.notice-error:has-text("not supported by this Hush daemon yet")');
    await page.click('button:has-text("Rotate identity…")');
    await page.click('dialog[open] button:has-text("Rotate identity")');
    await page.waitForSelector('.notice-error:has-text("Rotating the identity is not supported")');
  });
});

describe.skipIf(!hasChromium)('dev bridge talking to the daemon directly (INTERIM double)', () => {
  it('uses api= from the fragment when the daemon allows the page origin, and refuses non-loopback targets', async () => {
    const controller = new InterimController();
    const token = randomBytes(32).toString('hex');
    const webPort = await freePort();
    const origin = `http://127.0.0.1:${webPort}`;
    const api = await startControlServer({ controller, token, allowedOrigins: [origin] });
    const web = await serveRenderer({ dist, port: webPort, build: false }); // no proxy: the page must call the daemon itself
    const browser = await launch(join(dir, 'profile-direct'));
    try {
      const page = await browser.newPage();
      const log = watchConsole(page);
      await page.goto(browserUrl(web.url, { token, api: api.url }));
      await page.waitForSelector('.conn .status-online');
      await page.waitForSelector('text=Home desktop');
      expect(log.errors).toEqual([]);

      const bad = await browser.newPage();
      const badLog = watchConsole(bad);
      await bad.goto(browserUrl(web.url, { token, api: 'http://192.0.2.1:7420' }));
      await bad.waitForSelector('text=Hush is not connected to a daemon');
      expect(badLog.errors).toEqual([]);
    } finally {
      await browser.close();
      await web.close();
      await api.close();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// End to end with the real daemons (the lead's `hush device start` / `hush cloud start`).

const TSX = resolve('node_modules/.bin/tsx');
/**
 * The brief's condition is existsSync('peers/cli.ts'); the CLI exists before its daemon commands
 * do, so ask it whether `device start` and `cloud start` are there (one quick --help each).
 */
function cliHas(...cmd: string[]): boolean {
  if (!existsSync('peers/cli.ts')) return false;
  const r = spawnSync(TSX, ['peers/cli.ts', ...cmd, '--help'], { timeout: 30_000, encoding: 'utf8' });
  return r.status === 0;
}
const hasDaemons = hasChromium && existsSync('peers/cli.ts') && cliHas('device', 'start') && cliHas('cloud', 'start');

describe('desktop app against real daemons', () => {
  const children: ChildProcess[] = [];
  const supervisors: Supervisor[] = [];

  afterAll(async () => {
    for (const s of supervisors) await s.stop();
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        const gone = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
        if (c.exitCode === null) c.kill('SIGKILL');
      }
    }
  });

  async function device(name: string): Promise<{ url: string; token: string; web: RendererServer }> {
    const home = join(dir, `e2e-${name}`);
    const port = await freePort();
    const s = new Supervisor({
      home,
      apiPort: port,
      command: TSX,
      args: ['peers/cli.ts', 'device', 'start', '--home', home, '--listen', '/ip4/127.0.0.1/tcp/0', '--api-port', String(port)],
      startTimeoutMs: 60_000,
    });
    supervisors.push(s);
    const conn = await s.attachOrStart();
    expect(conn.owned).toBe(true);
    const web = await serveRenderer({ dist, apiTarget: conn.apiUrl, build: false });
    return { url: browserUrl(web.url, { token: conn.token }), token: conn.token, web };
  }

  async function cloud(): Promise<string> {
    const home = join(dir, 'e2e-cloud');
    const c = spawn(TSX, ['peers/cli.ts', 'cloud', 'start', '--home', home, '--listen', '/ip4/127.0.0.1/tcp/0'], { stdio: ['ignore', 'pipe', 'pipe'], detached: false });
    children.push(c);
    let out = '';
    return new Promise((ok, fail) => {
      const t = setTimeout(() => fail(new Error(`cloud daemon printed no /p2p/ multiaddr in 60 s:\n${out}`)), 60_000);
      const onData = (b: Buffer) => {
        out += b.toString();
        const m = /\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/\w+/.exec(out);
        if (m) {
          clearTimeout(t);
          ok(m[0]);
        }
      };
      c.stdout!.on('data', onData);
      c.stderr!.on('data', onData);
      c.once('exit', (code) => fail(new Error(`cloud daemon exited (${code}):\n${out}`)));
    });
  }

  it.skipIf(!hasDaemons)('pairs two devices through the UI, chats in scx mode with streamed tokens, then revokes', async () => {
    const [a, b, cloudAddr] = await Promise.all([device('a'), device('b'), cloud()]);
    const browser = await launch(join(dir, 'profile-e2e'));
    try {
      const pa = await browser.newPage();
      const pb = await browser.newPage();
      const la = watchConsole(pa);
      const lb = watchConsole(pb);
      await pa.goto(a.url);
      await pb.goto(b.url);
      await pa.waitForSelector('.conn .status-online');
      await pb.waitForSelector('.conn .status-online');

      // Pair: invite on A, join on B, both list the other.
      await pa.click('button:has-text("Create invite code")');
      const code = (await pa.textContent('[data-testid="invite-code"]'))!.trim();
      await pb.fill('input[name="code"]', code);
      await pb.click('button:has-text("Pair")');
      await pb.waitForSelector('.notice-ok:has-text("Paired with")', { timeout: 30_000 });
      await pa.waitForSelector('tbody tr[data-peer]', { timeout: 30_000 });
      await pb.waitForSelector('tbody tr[data-peer]', { timeout: 30_000 });

      // Cloud peer on A.
      await openPage(pa, 'clouds');
      await pa.fill('input.mono', cloudAddr);
      await pa.click('button:has-text("Add cloud peer")');
      await pa.waitForSelector('tbody tr[data-cloud]');
      await pa.click('tbody tr[data-cloud] button:has-text("Test")');
      await pa.waitForSelector('tbody tr[data-cloud] .status-ok', { timeout: 30_000 });

      // Chat in scx mode: tokens arrive one by one.
      await openPage(pa, 'chat');
      await pa.check('input[name="chat-mode"][value="scx"]');
      await pa.getByLabel('Max tokens').fill('16');
      await pa.getByLabel('Message', { exact: true }).fill('The river');
      await pa.click('button:has-text("Send")');
      const lengths = new Set<number>();
      for (let i = 0; i < 4000 && !(await pa.locator('.timings, .notice-error').count()); i++) {
        lengths.add(((await pa.textContent('.answer-text')) ?? '').length);
        await pa.waitForTimeout(10);
      }
      expect(await pa.locator('.notice-error').count()).toBe(0);
      expect(lengths.size).toBeGreaterThan(2);
      expect(await pa.textContent('.timings')).toMatch(/modescx/);
      await openPage(pa, 'session');
      await pa.waitForSelector('.metrics');
      expect(await pa.textContent('.table')).toContain('P1');

      // Revoke B from A.
      await openPage(pa, 'devices');
      await pa.click('tbody tr[data-peer] button:has-text("Revoke")');
      await pa.click('dialog[open] button:has-text("Revoke device")');
      await pa.waitForSelector('details.revoked');
      expect(la.errors).toEqual([]);
      expect(lb.errors).toEqual([]);
    } finally {
      await browser.close();
      await a.web.close();
      await b.web.close();
    }
  });
});
