import QRCode from 'qrcode';
import { LIMITS, type Device, type Identity, type Invite } from '../../shared/bridge.ts';
import { absoluteTime, field, formatBandwidth, formatMs, h, relativeTime, replaceChildren } from '../dom.ts';
import type { Page, PageContext } from '../page.ts';
import { actionButton, announce, card, confirmDialog, copyButton, errorNotice, loading, notice, promptDialog, runBusy, statusDot } from '../ui.ts';

const PATH_LABEL: Record<string, string> = { lan: 'LAN', direct: 'Direct', relay: 'Relay' };

function thisDevice(id: Identity, ctx: PageContext, reload: () => void): HTMLElement {
  const rename = actionButton<string>('Rename', 'Renaming…', async (name) => {
    await ctx.bridge.renameSelf(name);
    announce(`This device is now called ${name}`);
    reload();
  }, {
    kind: 'ghost', small: true, key: 'rename-self', ariaLabel: 'Rename this device',
    ask: async () => {
      const name = await promptDialog({ title: 'Rename this device', label: 'Device name', value: id.name, confirm: 'Rename', maxLength: LIMITS.nameMax, hint: 'Paired devices see this name.' });
      return name && name !== id.name ? name : null;
    },
  });
  return h(
    'dl',
    { class: 'facts' },
    h('dt', null, 'Name'),
    h('dd', null, h('span', { class: 'device-name' }, id.name || 'Unnamed'), ' ', rename),
    h('dt', null, 'Fingerprint'),
    h('dd', null, h('code', { class: 'fingerprint' }, id.fingerprint), ' ', copyButton(id.fingerprint, 'fingerprint', 'copy-fp')),
    h('dt', null, 'Peer ID'),
    h('dd', null, h('code', { class: 'peer-id' }, id.peerId), ' ', copyButton(id.peerId, 'peer ID', 'copy-peer')),
    h('dt', null, 'Listening on'),
    h('dd', null, id.addresses.length ? h('ul', { class: 'plain-list' }, ...id.addresses.map((a) => h('li', null, h('code', null, a)))) : h('span', { class: 'muted' }, 'no addresses yet')),
  );
}

function inviteBox(ctx: PageContext): HTMLElement {
  const out = h('div', { class: 'invite-out', 'aria-live': 'polite' });
  const errors = h('div');
  let timer: ReturnType<typeof setInterval> | null = null;
  ctx.onLeave(() => timer && clearInterval(timer));
  const show = async (inv: Invite) => {
    const expires = h('p', { class: 'muted' });
    const tick = () => {
      const left = Math.round((Date.parse(inv.expiresAt) - Date.now()) / 1000);
      if (!Number.isFinite(left)) {
        expires.textContent = '';
        return;
      }
      if (left <= 0) {
        expires.textContent = 'This code has expired. Create a new one.';
        out.classList.add('expired');
        if (timer) clearInterval(timer);
        return;
      }
      expires.textContent = `Valid for ${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')} more, for one device.`;
    };
    const qr = h('div', { class: 'qr', role: 'img', 'aria-label': 'QR code of the invite code' });
    try {
      const svg = await QRCode.toString(inv.code, { type: 'svg', margin: 1, errorCorrectionLevel: 'M', color: { dark: '#1d2330', light: '#ffffff' } });
      // The SVG comes from the QR library, not from the network; parse it as SVG, never as HTML.
      const doc = new DOMParser().parseFromString(svg, 'image/svg+xml');
      const el = doc.documentElement;
      if (el.nodeName === 'svg') {
        el.setAttribute('aria-hidden', 'true');
        el.setAttribute('focusable', 'false');
        qr.append(document.importNode(el, true));
      }
    } catch {
      qr.append(h('p', { class: 'muted' }, 'QR code unavailable'));
    }
    out.classList.remove('expired');
    replaceChildren(
      out,
      h('div', { class: 'invite-grid' }, qr, h('div', null,
        h('p', { class: 'label' }, 'Invite code'),
        h('p', null, h('code', { class: 'invite-code', 'data-testid': 'invite-code' }, inv.code)),
        h('p', null, copyButton(inv.code, 'invite code', 'copy-invite')),
        expires,
        h('p', { class: 'hint' }, 'On the other device open Devices › Pair with a code, and enter this code (or scan it). Compare the fingerprints both devices show.'),
      )),
    );
    if (timer) clearInterval(timer);
    tick();
    timer = setInterval(tick, 1000);
  };
  const create = actionButton('Create invite code', 'Creating…', async () => {
    const inv = await ctx.bridge.invite();
    await show(inv);
    announce('Invite code created');
  }, { kind: 'primary', key: 'create-invite', errorSlot: errors });
  return h('div', { class: 'stack' }, h('p', null, 'Let another of your devices join this one.'), h('div', null, create), errors, out);
}

function joinForm(ctx: PageContext, reload: () => void): HTMLElement {
  const input = h('input', { type: 'text', name: 'code', autocomplete: 'off', spellcheck: 'false', maxlength: LIMITS.codeMax, required: true, class: 'mono' });
  const result = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-key': 'pair' }, 'Pair');
  const form = h('form', { class: 'stack', novalidate: true }, field('Invite code from the other device', input, 'Create the code on the device you want to pair with, then type or paste it here.'), h('div', null, submit), result);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const code = input.value.trim();
    if (!code) {
      result.replaceChildren(notice('error', 'Enter the invite code first.'));
      input.focus();
      return;
    }
    void runBusy(submit, 'Pair', 'Pairing…', async () => {
      const r = await ctx.bridge.join(code);
      input.value = '';
      result.replaceChildren(notice('ok', `Paired with ${r.name || r.peerId}.`));
      reload();
    }, result);
  });
  return form;
}

function deviceRow(d: Device, ctx: PageContext, reload: () => void): HTMLTableRowElement {
  const rename = actionButton<string>('Rename', 'Renaming…', async (name) => {
    await ctx.bridge.rename(d.peerId, name);
    announce(`Renamed to ${name}`);
    reload();
  }, {
    kind: 'ghost', small: true, key: `rename-${d.peerId}`, ariaLabel: `Rename ${d.name}`,
    ask: async () => {
      const name = await promptDialog({ title: `Rename ${d.name}`, label: 'Device name', value: d.name, confirm: 'Rename', maxLength: LIMITS.nameMax });
      return name && name !== d.name ? name : null;
    },
  });
  const revoke = actionButton('Revoke', 'Revoking…', async () => {
    await ctx.bridge.revoke(d.peerId);
    announce(`${d.name} revoked`);
    reload();
  }, {
    kind: 'danger-ghost', small: true, key: `revoke-${d.peerId}`, ariaLabel: `Revoke ${d.name}`,
    ask: () => confirmDialog({
      title: `Revoke ${d.name}?`,
      body: [
        h('p', null, `${d.name} (${d.fingerprint}) is disconnected at once and refused from now on, by this device and by every other paired device that is online.`),
        h('p', null, 'It no longer runs any layer of your plans. To use it again, pair it anew with an invite code.'),
      ],
      confirm: 'Revoke device',
      danger: true,
    }),
  });
  return h(
    'tr',
    { 'data-peer': d.peerId },
    h('th', { scope: 'row' }, h('span', { class: 'device-name' }, d.name)),
    h('td', null, h('code', { class: 'fingerprint' }, d.fingerprint)),
    h('td', null, statusDot(d.online ? 'online' : 'offline', d.online ? 'Online' : 'Offline')),
    h('td', null, d.path ? PATH_LABEL[d.path] ?? d.path : '—'),
    h('td', { class: 'num' }, formatMs(d.rttMs)),
    h('td', { class: 'num' }, formatBandwidth(d.bandwidthMBps)),
    h('td', null, d.layers || h('span', { class: 'muted' }, 'none')),
    h('td', null, h('span', { title: absoluteTime(d.lastSeen) }, d.online ? 'now' : relativeTime(d.lastSeen))),
    h('td', { class: 'actions' }, rename, revoke),
  );
}

function devicesTable(devices: Device[], ctx: PageContext, reload: () => void): HTMLElement {
  const active = devices.filter((d) => !d.revoked);
  const revoked = devices.filter((d) => d.revoked);
  const parts: Node[] = [];
  if (active.length === 0) {
    parts.push(h('p', { class: 'empty' }, 'No paired devices yet. Create an invite code here and enter it on your other device, or pair with a code from it.'));
  } else {
    parts.push(
      h('div', { class: 'table-wrap' }, h(
        'table',
        { class: 'table' },
        h('caption', { class: 'sr-only' }, 'Paired devices'),
        h('thead', null, h('tr', null, ...['Name', 'Fingerprint', 'State', 'Connection', 'RTT', 'Bandwidth', 'Layers hosted', 'Last seen', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', null, ...active.map((d) => deviceRow(d, ctx, reload))),
      )),
    );
  }
  if (revoked.length > 0) {
    parts.push(
      h('details', { class: 'revoked' },
        h('summary', null, `Revoked devices (${revoked.length})`),
        h('ul', { class: 'plain-list' }, ...revoked.map((d) => h('li', null, h('span', { class: 'device-name' }, d.name), ' ', h('code', { class: 'fingerprint' }, d.fingerprint), h('span', { class: 'muted' }, ` revoked ${relativeTime(d.revoked)}`)))),
      ),
    );
  }
  return h('div', null, ...parts);
}

export const devicesPage: Page = {
  id: 'devices',
  title: 'Devices',
  lead: 'Your trusted devices. They run the embedding and the edge layers of the model; nothing of other owners ever reaches them.',
  render(root, ctx) {
    const self = h('div', null, loading());
    const list = h('div', null, loading());
    const loadSelf = async () => {
      try {
        replaceChildren(self, thisDevice(await ctx.bridge.identity(), ctx, loadSelf));
      } catch (e) {
        replaceChildren(self, errorNotice(e, 'Could not read this device'));
      }
    };
    const loadList = async () => {
      try {
        replaceChildren(list, devicesTable(await ctx.bridge.devices(), ctx, loadList));
      } catch (e) {
        replaceChildren(list, errorNotice(e, 'Could not list paired devices'));
      }
    };
    root.append(
      card('This device', self),
      h('div', { class: 'two-col' }, card('Invite a device', inviteBox(ctx)), card('Pair with a code', joinForm(ctx, loadList))),
      card('Paired devices', list),
    );
    void loadSelf();
    void loadList();
    ctx.onEvents(['device.', 'plan.'], () => void loadList());
    ctx.onEvents(['identity.'], () => void loadSelf());
    // Relative "last seen" times age while the page is open.
    const t = setInterval(() => void loadList(), 30_000);
    ctx.onLeave(() => clearInterval(t));
  },
};
