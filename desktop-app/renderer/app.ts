/**
 * The renderer entry (bundled to dist/renderer.js). It uses only `window.hush` (HushBridge) and the
 * DOM, so the same bundle runs in Electron (preload bridge) and in a browser (dev-bridge.ts).
 */
import type { BridgeEvent, BridgeInfo, HushBridge } from '../shared/bridge.ts';
import { h, replaceChildren } from './dom.ts';
import type { Page, PageContext } from './page.ts';
import { chatPage } from './pages/chat.ts';
import { cloudsPage } from './pages/clouds.ts';
import { devicesPage } from './pages/devices.ts';
import { keysPage } from './pages/keys.ts';
import { planPage } from './pages/plan.ts';
import { sessionPage } from './pages/session.ts';
import { setLiveRegion, statusDot } from './ui.ts';

export const PAGES: Page[] = [devicesPage, keysPage, cloudsPage, planPage, chatPage, sessionPage];
const EVENT_DEBOUNCE_MS = 300;

function pageFromHash(): Page {
  const id = /^#\/([\w-]+)/.exec(location.hash)?.[1];
  return PAGES.find((p) => p.id === id) ?? PAGES[0];
}

function notConnected(): void {
  document.title = 'Hush — not connected';
  document.body.replaceChildren(
    h('main', { class: 'not-connected', id: 'main' },
      h('h1', null, 'Hush is not connected to a daemon'),
      h('p', null, 'This page needs the Hush bridge. In the desktop app it is built in. In a browser, open the address that this command prints, which carries the daemon’s address and token:'),
      h('pre', null, h('code', null, 'npx tsx peers/cli.ts app --browser')),
      h('p', { class: 'muted' }, 'Or, with a daemon already running: npx tsx desktop-app/serve.ts --home ~/.hush'),
    ),
  );
}

function start(bridge: HushBridge): void {
  const nav = h('ul', { class: 'nav-list' });
  const links = new Map<string, HTMLAnchorElement>();
  for (const p of PAGES) {
    const a = h('a', { href: `#/${p.id}`, class: 'nav-link', 'data-page': p.id }, p.title);
    links.set(p.id, a);
    nav.append(h('li', null, a));
  }
  const conn = h('div', { class: 'conn', role: 'status', 'aria-live': 'polite' }, statusDot('unknown', 'Connecting…'));
  const title = h('h1', { tabindex: -1, id: 'page-title' });
  const lead = h('p', { class: 'lead' });
  const content = h('div', { class: 'page' });
  const main = h('main', { id: 'main', tabindex: -1, 'aria-labelledby': 'page-title' }, h('header', { class: 'page-head' }, title, lead), content);
  const skip = h('a', { class: 'skip-link', href: '#main' }, 'Skip to content');
  skip.addEventListener('click', (e) => {
    // The hash is the router's: move focus without changing it.
    e.preventDefault();
    title.focus();
  });
  const live = h('div', { class: 'sr-only', 'aria-live': 'polite', 'aria-atomic': 'true' });
  setLiveRegion(live);
  document.body.replaceChildren(
    skip,
    h('div', { class: 'app' },
      h('aside', { class: 'sidebar' },
        h('div', { class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'Hush'),
        h('nav', { 'aria-label': 'Sections' }, nav),
        conn,
      ),
      main,
    ),
    live,
  );

  let info: BridgeInfo = { kind: 'browser', api: null, daemon: 'unknown', identityStorage: 'unknown' };
  let leaveFns: (() => void)[] = [];
  let listeners: { prefixes: string[]; refresh: () => void; timer: ReturnType<typeof setTimeout> | null }[] = [];
  let shown: Page | null = null;

  const show = (page: Page, focus: boolean) => {
    for (const f of leaveFns) f();
    for (const l of listeners) if (l.timer) clearTimeout(l.timer);
    leaveFns = [];
    listeners = [];
    shown = page;
    for (const [id, a] of links) {
      if (id === page.id) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    document.title = `${page.title} — Hush`;
    title.textContent = page.title;
    lead.textContent = page.lead;
    content.replaceChildren();
    content.dataset.page = page.id;
    const ctx: PageContext = {
      bridge,
      info,
      onEvents: (prefixes, refresh) => listeners.push({ prefixes, refresh, timer: null }),
      onLeave: (fn) => leaveFns.push(fn),
    };
    page.render(content, ctx);
    // Move focus to the new page's heading so keyboard and screen-reader users land on it.
    if (focus) title.focus();
  };

  const onEvent = (ev: BridgeEvent) => {
    if (ev.type === 'connection') {
      const up = (ev.data as { connected: boolean }).connected;
      const who = info.daemon === 'started' ? ' · started by Hush' : info.daemon === 'attached' ? ' · attached' : '';
      replaceChildren(conn, statusDot(up ? 'online' : 'offline', up ? `Daemon connected${who}` : 'Daemon unreachable, retrying…'));
      return;
    }
    for (const l of listeners) {
      if (!l.prefixes.some((p) => ev.type.startsWith(p))) continue;
      if (l.timer) clearTimeout(l.timer);
      l.timer = setTimeout(() => {
        l.timer = null;
        l.refresh();
      }, EVENT_DEBOUNCE_MS);
    }
  };

  window.addEventListener('hashchange', () => {
    const p = pageFromHash();
    if (p !== shown) show(p, true);
  });
  void bridge.info().then(
    (i) => {
      info = i;
      show(pageFromHash(), false);
    },
    () => show(pageFromHash(), false),
  );
  bridge.events.subscribe(onEvent);
}

if (window.hush) start(window.hush);
else notConnected();
