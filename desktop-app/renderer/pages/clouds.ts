import { LIMITS, type Cloud } from '../../shared/bridge.ts';
import { absoluteTime, field, formatMs, h, relativeTime, replaceChildren } from '../dom.ts';
import type { Page, PageContext } from '../page.ts';
import { actionButton, announce, card, confirmDialog, errorNotice, loading, notice, runBusy, statusDot } from '../ui.ts';

function reachability(c: Cloud): HTMLElement {
  if (c.reachable === undefined) return statusDot('unknown', 'Not tested');
  return statusDot(c.reachable ? 'ok' : 'bad', c.reachable ? 'Reachable' : 'Unreachable');
}

function cloudRow(c: Cloud, ctx: PageContext, reload: () => void): HTMLTableRowElement {
  const state = h('td', null, reachability(c));
  const rtt = h('td', { class: 'num' }, formatMs(c.rttMs));
  const tested = h('td', null, h('span', { title: absoluteTime(c.lastTested) }, relativeTime(c.lastTested)));
  const test = actionButton('Test', 'Testing…', async () => {
    const r = await ctx.bridge.clouds.test(c.id);
    state.replaceChildren(statusDot(r.reachable ? 'ok' : 'bad', r.reachable ? 'Reachable' : `Unreachable${r.error ? `: ${r.error}` : ''}`));
    rtt.textContent = formatMs(r.rttMs);
    tested.textContent = 'just now';
    announce(r.reachable ? `${c.name} reachable, ${formatMs(r.rttMs)}` : `${c.name} unreachable`);
  }, { kind: 'ghost', small: true, key: `test-${c.id}`, ariaLabel: `Test ${c.name}` });
  const remove = actionButton('Remove', 'Removing…', async () => {
    await ctx.bridge.clouds.remove(c.id);
    announce(`${c.name} removed`);
    reload();
  }, {
    kind: 'danger-ghost', small: true, key: `remove-${c.id}`, ariaLabel: `Remove ${c.name}`,
    ask: () => confirmDialog({
      title: `Remove ${c.name}?`,
      body: 'Plans stop using this cloud peer. Requests in scx or split mode need another cloud peer afterwards.',
      confirm: 'Remove cloud peer',
      danger: true,
    }),
  });
  return h(
    'tr',
    { 'data-cloud': c.id },
    h('th', { scope: 'row' }, c.name),
    h('td', null, h('code', { class: 'multiaddr' }, c.multiaddr)),
    state,
    rtt,
    tested,
    h('td', { class: 'actions' }, test, remove),
  );
}

function addForm(ctx: PageContext, reload: () => void): HTMLElement {
  const addr = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', maxlength: LIMITS.multiaddrMax, required: true, class: 'mono', placeholder: '/ip4/203.0.113.5/tcp/4001/p2p/12D3KooW…' });
  const name = h('input', { type: 'text', autocomplete: 'off', maxlength: LIMITS.nameMax, placeholder: 'e.g. rented H100' });
  const result = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-key': 'add-cloud' }, 'Add cloud peer');
  const form = h(
    'form',
    { class: 'stack', novalidate: true },
    field('Multiaddr', addr, 'The address the provider gave you, with its /p2p/ peer ID so Hush can check it is the peer you meant.'),
    field('Name (optional)', name),
    h('div', null, submit),
    result,
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const a = addr.value.trim();
    if (!a.startsWith('/')) {
      result.replaceChildren(notice('error', 'A multiaddr starts with "/", e.g. /ip4/203.0.113.5/tcp/4001/p2p/12D3KooW…'));
      addr.focus();
      return;
    }
    void runBusy(submit, 'Add cloud peer', 'Adding…', async () => {
      const c = await ctx.bridge.clouds.add(a, name.value.trim() || undefined);
      addr.value = '';
      name.value = '';
      result.replaceChildren(notice('ok', `Added ${c.name}. Test it to see its latency.`));
      reload();
    }, result);
  });
  return form;
}

export const cloudsPage: Page = {
  id: 'clouds',
  title: 'Cloud peers',
  lead: 'GPU servers you rent for the heavy middle layers. They are never trusted: they get only what the chosen mode lets them see, never token ids, embeddings, logits or keys of the edge layers.',
  render(root, ctx) {
    const list = h('div', null, loading());
    const load = async () => {
      try {
        const clouds = await ctx.bridge.clouds.list();
        replaceChildren(
          list,
          clouds.length === 0
            ? h('p', { class: 'empty' }, 'No cloud peers yet. Without one, requests run in local mode on your own devices.')
            : h('div', { class: 'table-wrap' }, h(
                'table',
                { class: 'table' },
                h('caption', { class: 'sr-only' }, 'Cloud peers'),
                h('thead', null, h('tr', null, ...['Name', 'Multiaddr', 'Reachability', 'Latency', 'Last tested', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
                h('tbody', null, ...clouds.map((c) => cloudRow(c, ctx, load))),
              )),
        );
      } catch (e) {
        replaceChildren(list, errorNotice(e, 'Could not list cloud peers'));
      }
    };
    root.append(card('Add a cloud peer', addForm(ctx, load)), card('Your cloud peers', list));
    void load();
    ctx.onEvents(['cloud.'], () => void load());
  },
};
