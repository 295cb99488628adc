/**
 * Development shim for the bridge: lets the unchanged renderer run in a browser (development, tests,
 * `hush app --browser`), where no Electron preload exists. Loaded before renderer.js only by the
 * browser page (dist/browser.html), never by the Electron window.
 *
 * It implements window.hush with fetch to the daemon's control API. The address and token come from
 * the URL fragment, which browsers never send to a server:
 *   http://127.0.0.1:PORT/#api=http://127.0.0.1:7420&token=...   (direct; the daemon must allow this origin)
 *   http://127.0.0.1:PORT/#token=...                               (same origin; serve.ts proxies /api/)
 * The fragment is removed from the address bar at once and kept in sessionStorage (this tab only) so a
 * reload still works. The token is only ever sent to a loopback address.
 */
import { createHttpBridge } from '../shared/http-bridge.ts';

const STORE_KEY = 'hush.devBridge';

export class DevBridgeError extends Error {
  override name = 'DevBridgeError';
}

/** Only loopback HTTP origins (or "" for this page's origin) may receive the token. */
export function checkApiUrl(api: string): string {
  if (api === '') return '';
  let u: URL;
  try {
    u = new URL(api);
  } catch {
    throw new DevBridgeError(`api=${api} is not a URL`);
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  if (u.protocol !== 'http:' || !loopback) throw new DevBridgeError(`refusing to send the API token to ${u.origin}: only http://127.0.0.1, [::1] or localhost`);
  return u.origin;
}

function credentials(): { api: string; token: string } | null {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const token = params.get('token');
  if (token) {
    const creds = { api: checkApiUrl(params.get('api') ?? ''), token };
    sessionStorage.setItem(STORE_KEY, JSON.stringify(creds));
    history.replaceState(null, '', location.pathname + location.search);
    return creds;
  }
  const saved = sessionStorage.getItem(STORE_KEY);
  if (!saved) return null;
  try {
    const o = JSON.parse(saved) as { api?: unknown; token?: unknown };
    return typeof o.token === 'string' && typeof o.api === 'string' ? { api: checkApiUrl(o.api), token: o.token } : null;
  } catch {
    return null;
  }
}

if (!window.hush) {
  try {
    const c = credentials();
    if (c) window.hush = createHttpBridge({ baseUrl: c.api, token: c.token, kind: 'browser' });
  } catch (e) {
    console.warn((e as Error).message);
  }
}
