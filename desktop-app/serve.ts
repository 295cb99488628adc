/**
 * A tiny loopback-only HTTP server for the renderer in browser mode (tests, `hush app --browser`).
 *
 * It serves the built page (dist/browser.html and its scripts) and, when given the daemon's address,
 * proxies /api/ and /health to it. With the proxy the page and the API share one origin, so the daemon
 * needs no CORS allowance for this server; the page still sends the bearer token on every request.
 *
 *   npx tsx desktop-app/serve.ts [--home DIR] [--port N] [--api URL] [--direct]
 * prints the address to open, e.g. http://127.0.0.1:41234/#token=...   (the token is in the fragment,
 * which the browser never sends to a server).
 */
import '../runtime/polyfill.ts';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildApp, CSP_BROWSER, DIST } from './build.ts';

export class ServeError extends Error {
  override name = 'ServeError';
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

/** The only files served: no path from a request ever reaches the filesystem. */
const FILES: Record<string, string> = {
  '/': 'browser.html',
  '/index.html': 'browser.html',
  '/renderer.js': 'renderer.js',
  '/renderer.js.map': 'renderer.js.map',
  '/dev-bridge.js': 'dev-bridge.js',
  '/dev-bridge.js.map': 'dev-bridge.js.map',
  '/styles.css': 'styles.css',
};

function isLoopbackName(hostHeader: string | undefined): boolean {
  if (!hostHeader) return false;
  const host = hostHeader.replace(/:\d+$/, '').replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export interface ServeOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Loopback only: 127.0.0.1 (default), ::1 or localhost. */
  host?: string;
  dist?: string;
  /** The daemon's control API base URL to proxy /api/ and /health to (loopback only). */
  apiTarget?: string;
  /** Build the renderer first when dist/ lacks it (default true). */
  build?: boolean;
}

export interface RendererServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

function loopbackTarget(api: string): URL {
  const u = new URL(api);
  if (u.protocol !== 'http:' || !isLoopbackName(u.host)) throw new ServeError(`the API target must be http:// on loopback, got ${api}`);
  return u;
}

function proxy(req: IncomingMessage, res: ServerResponse, target: URL): void {
  const headers = { ...req.headers };
  // Same-origin for the page; the daemon sees a plain local client (the token still decides).
  delete headers.origin;
  delete headers.referer;
  delete headers.connection;
  headers.host = target.host;
  const out = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (up) => {
    res.writeHead(up.statusCode ?? 502, up.headers);
    up.pipe(res);
  });
  out.on('error', () => {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { name: 'UnavailableError', message: `the Hush daemon at ${target.origin} does not answer` } }));
    } else res.destroy();
  });
  // A page that goes away (closed tab, stopped answer) must end the daemon-side stream too.
  res.on('close', () => out.destroy());
  req.pipe(out);
}

export async function serveRenderer(opts: ServeOptions = {}): Promise<RendererServer> {
  const host = opts.host ?? '127.0.0.1';
  if (!isLoopbackName(host)) throw new ServeError(`refusing to serve the app on ${host}: loopback only`);
  const dist = resolve(opts.dist ?? DIST);
  if (!existsSync(join(dist, 'browser.html')) || !existsSync(join(dist, 'renderer.js'))) {
    if (opts.build === false) throw new ServeError(`${dist} has no built renderer; run npx tsx desktop-app/build.ts`);
    await buildApp({ outdir: dist, electron: false });
  }
  const target = opts.apiTarget ? loopbackTarget(opts.apiTarget) : null;
  const server = createServer((req, res) => {
    // DNS rebinding defence: a page on another name that resolves to 127.0.0.1 is refused.
    if (!isLoopbackName(req.headers.host)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('loopback names only');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    if (target && (path.startsWith('/api/') || path === '/health')) {
      proxy(req, res, target);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const file = FILES[path];
    if (!file) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    let body: Buffer;
    try {
      body = readFileSync(join(dist, file));
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not built');
      return;
    }
    res.writeHead(200, {
      'content-type': TYPES[file.slice(file.lastIndexOf('.'))] ?? 'application/octet-stream',
      'content-length': body.length,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
      ...(file.endsWith('.html') ? { 'content-security-policy': `${CSP_BROWSER}; frame-ancestors 'none'` } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, host, () => ok());
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new ServeError('the server has no TCP address');
  const urlHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closing: Promise<void> | null = null;
  return {
    url: `http://${urlHost}:${addr.port}`,
    port: addr.port,
    close: () =>
      (closing ??= new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      })),
  };
}

/** The address to open: the token (and, without the proxy, the API address) in the fragment. */
export function browserUrl(serverUrl: string, creds: { token: string; api?: string }): string {
  const p = new URLSearchParams();
  if (creds.api) p.set('api', creds.api);
  p.set('token', creds.token);
  return `${serverUrl}/#${p.toString()}`;
}

/** The daemon address and token of a Hush home (as `hush device start` leaves them). */
export function daemonOfHome(home: string, fallbackPort = 7420): { api: string; token: string } {
  const tokenFile = join(home, 'api-token');
  if (!existsSync(tokenFile)) throw new ServeError(`${tokenFile} does not exist: start the daemon first (hush device start --home ${home})`);
  const token = readFileSync(tokenFile, 'utf8').trim();
  let api = `http://127.0.0.1:${fallbackPort}`;
  try {
    // HOME/device.json names the running daemon's API (peers/daemon/common.ts).
    const info = JSON.parse(readFileSync(join(home, 'device.json'), 'utf8')) as { apiUrl?: unknown };
    if (typeof info.apiUrl === 'string') api = loopbackTarget(info.apiUrl).origin;
  } catch {
    // no info file: the default port
  }
  return { api, token };
}

export interface BrowserModeOptions {
  /** The Hush home whose running daemon the page talks to. */
  home: string;
  /** Port of this server (0: any). */
  port?: number;
  /** The daemon's API, if not the one HOME/device.json names. */
  api?: string;
  /** No proxy: the page calls the daemon itself, which must allow this server's origin (--allow-origin). */
  direct?: boolean;
}

/** Browser mode for `hush app --browser`: serve the app for a running daemon; `url` is the address to open. */
export async function startBrowserMode(o: BrowserModeOptions): Promise<RendererServer & { openUrl: string; api: string }> {
  const d = daemonOfHome(o.home, Number(process.env.HUSH_API_PORT ?? 7420));
  const api = o.api ? loopbackTarget(o.api).origin : d.api;
  const s = await serveRenderer({ port: o.port ?? 0, apiTarget: o.direct ? undefined : api });
  return { ...s, api, openUrl: browserUrl(s.url, o.direct ? { api, token: d.token } : { token: d.token }) };
}

async function main(argv: string[]): Promise<void> {
  const arg = (k: string) => {
    const i = argv.indexOf(k);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const home = resolve(arg('--home') ?? process.env.HUSH_HOME ?? join(homedir(), '.hush'));
  const direct = argv.includes('--direct');
  const s = await startBrowserMode({ home, port: Number(arg('--port') ?? process.env.HUSH_APP_PORT ?? 0), api: arg('--api'), direct });
  console.log(`Hush app (browser mode) for ${home}\nOpen: ${s.openUrl}\n(the link holds the API token: do not share it)`);
  if (direct) console.log(`Direct mode: the daemon must allow the origin ${s.url} (hush device start --allow-origin ${s.url}).`);
  const stop = () => void s.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error(`${(e as Error).name}: ${(e as Error).message}`);
    process.exit(1);
  });
}
