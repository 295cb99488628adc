import { LIMITS, type ChatTimings, type Mode, type PrivacyReport } from '../../shared/bridge.ts';
import { absoluteTime, field, formatMs, h, replaceChildren } from '../dom.ts';
import type { Page, PageContext } from '../page.ts';
import { announce, card, errorNotice, modePicker, notice } from '../ui.ts';

/** What a cloud peer receives in each mode, by design (SCX.md, "Modes"). */
export const MODE_EXPOSURE: Record<Mode, string> = {
  local: 'Nothing. Every layer runs on your own devices and no cloud peer is contacted.',
  split: 'Plain hidden states at the two boundary layers, in true token order: one crossing each way per pass. With the open weights these can be turned back into much of the prompt and answer.',
  scx: 'For each cloud layer during prefill: permuted, noised rows mixed with decoys, and head-permuted queries, keys and values; after prefill the permutations of the cloud layers; while generating, one plain hidden vector per token. Never token ids, embeddings, logits, or the edge layers’ keys and cache.',
};

export const ATTACK_NAMES: Record<string, string> = {
  A1: 'Embedding nearest neighbour',
  A2: 'Sorted key/value matching',
  A3: 'Vocabulary matching (forward)',
  A6: 'Noise removal, then A1/A3',
  A7: 'Decode vectors / logit lens',
  A9: 'Key reuse across sessions',
};

function pct(v: number): string {
  return v >= 0 && v <= 1 ? `${(v * 100).toFixed(v < 0.01 ? 2 : 1)} %` : String(Math.round(v * 1000) / 1000);
}

export function privacyPanel(mode: Mode, report: PrivacyReport | null | undefined): HTMLElement {
  const parts: Node[] = [h('p', null, h('strong', null, 'What the cloud sees: '), MODE_EXPOSURE[mode])];
  if (mode === 'local') {
    parts.push(notice('ok', 'Nothing leaves your devices in local mode.'));
  } else if (report === undefined) {
    parts.push(h('p', { class: 'muted' }, 'Loading the measured privacy table…'));
  } else if (report === null) {
    parts.push(notice('warn', 'What it could recover has not been measured for this model yet: the attack harness has produced no table. Treat this mode as not confidential.'));
  } else {
    // The table holds several settings per mode (noise kinds and scales); show the first, the plain one.
    const ofMode = report.rows.filter((r) => r.mode === mode);
    const settings = [...new Set(ofMode.map((r) => r.setting ?? mode))];
    const shown = settings[0] ?? mode;
    const rows = ofMode.filter((r) => (r.setting ?? mode) === shown);
    const confidential = report.confidential[mode] === true;
    parts.push(
      confidential
        ? notice('ok', `Measured confidential: every attack of the harness stayed at chance level (${report.model}, ${absoluteTime(report.generatedAt)}).`)
        : notice('warn', `Not confidential: the attack harness recovers more than chance from what the cloud saw (${report.model}, ${absoluteTime(report.generatedAt)}).`),
    );
    if (rows.length > 0) {
      parts.push(
        h('div', { class: 'table-wrap' }, h(
          'table',
          { class: 'table table-compact' },
          h('caption', null, `What a cloud peer could recover: ${shown}${settings.length > 1 ? ` (${settings.length - 1} more settings measured, none confidential unless stated above)` : ''}`),
          h('thead', null, h('tr', null, ...['Attack', 'Layer', 'Metric', 'Recovered', 'Chance'].map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', null, ...rows.map((r) => h('tr', null,
            h('th', { scope: 'row' }, `${r.attack} ${ATTACK_NAMES[r.attack] ?? ''}`.trim()),
            h('td', { class: 'num' }, r.layer ?? '—'),
            h('td', null, r.metric),
            h('td', { class: 'num' }, pct(r.value)),
            h('td', { class: 'num' }, r.chance === undefined ? '—' : pct(r.chance)),
          ))),
        )),
      );
    }
  }
  return h('div', { class: 'privacy stack' }, ...parts);
}

function timingsLine(mode: Mode, t: ChatTimings): HTMLElement {
  const items: [string, string][] = [
    ['mode', mode],
    ['first token', formatMs(t.ttftMs)],
    ['per token', formatMs(t.perTokenMs)],
    ['speed', t.tokensPerSecond === null ? '—' : `${t.tokensPerSecond.toFixed(1)} tok/s`],
    ['tokens', String(t.tokens)],
    ['total', formatMs(t.totalMs)],
  ];
  for (const [k, v] of Object.entries(t.extra)) items.push([k.replace(/Ms$/, ''), k.endsWith('Ms') ? formatMs(v) : String(v)]);
  return h('dl', { class: 'timings', 'aria-label': 'Timings of this answer' }, ...items.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v))));
}

function conversation(ctx: PageContext, getMode: () => Mode): HTMLElement {
  const log = h('div', { class: 'chat-log', role: 'log', 'aria-label': 'Conversation', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  const empty = h('p', { class: 'empty' }, 'Ask something. Answers stream in as each token is sampled on your device.');
  log.append(empty);
  const prompt = h('textarea', { rows: 3, maxlength: LIMITS.promptMax, required: true });
  const maxTokens = h('input', { type: 'number', min: 1, max: 4096, value: 128, inputmode: 'numeric' });
  const send = h('button', { type: 'submit', class: 'btn btn-primary', 'data-key': 'send' }, 'Send');
  const stop = h('button', { type: 'button', class: 'btn btn-secondary', disabled: true, 'data-key': 'stop' }, 'Stop');
  const status = h('div');
  const form = h(
    'form',
    { class: 'chat-form', novalidate: true },
    field('Message', prompt, 'Ctrl+Enter sends.'),
    h('div', { class: 'chat-controls' }, field('Max tokens', maxTokens), h('div', { class: 'chat-buttons' }, stop, send)),
    status,
  );
  let current: { cancel(): void } | null = null;
  stop.addEventListener('click', () => current?.cancel());
  prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  ctx.onLeave(() => current?.cancel());
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = prompt.value.trim();
    if (!text) {
      status.replaceChildren(notice('error', 'Write a message first.'));
      prompt.focus();
      return;
    }
    if (current) return;
    status.replaceChildren();
    const mode = getMode();
    const n = Math.min(4096, Math.max(1, Math.round(Number(maxTokens.value) || 128)));
    empty.remove();
    const answer = h('div', { class: 'answer-text', 'aria-busy': 'true' });
    const meta = h('div', { class: 'answer-meta' }, h('span', { class: 'muted' }, `${mode} · waiting for the first token…`));
    const turn = h('article', { class: 'turn' }, h('p', { class: 'prompt-text' }, text), h('div', { class: 'answer' }, answer, meta));
    log.append(turn);
    turn.scrollIntoView({ block: 'end' });
    prompt.value = '';
    send.disabled = true;
    stop.disabled = false;
    // Screen readers wait for the whole answer instead of reading it token by token.
    log.setAttribute('aria-busy', 'true');
    let usedMode: Mode = mode;
    const handle = ctx.bridge.chat({ prompt: text, mode, maxTokens: n }, (ev) => {
      if (ev.type === 'start') {
        usedMode = ev.mode;
        meta.replaceChildren(h('span', { class: 'muted' }, `${ev.mode} · ${ev.promptTokens} prompt tokens · generating…`));
      } else if (ev.type === 'token') {
        // Tokenizers put the word's space in front of it: drop the answer's leading space only.
        answer.append(answer.textContent ? ev.text : ev.text.replace(/^\s+/, ''));
      } else if (ev.type === 'event') {
        answer.after(h('p', { class: 'muted small' }, ev.event.message ?? ev.event.type));
      } else if (ev.type === 'done') {
        answer.removeAttribute('aria-busy');
        meta.replaceChildren(timingsLine(usedMode, ev.timings));
        announce('Answer complete');
      } else if (ev.type === 'error') {
        answer.removeAttribute('aria-busy');
        meta.replaceChildren(ev.name === 'Cancelled' ? notice('info', 'Stopped.') : errorNotice(new Error(ev.message), 'The answer failed'));
      }
    });
    current = handle;
    void handle.finished.then(() => {
      log.removeAttribute('aria-busy');
      current = null;
      send.disabled = false;
      stop.disabled = true;
      prompt.focus();
    });
  });
  return h('div', { class: 'stack' }, log, form);
}

export const chatPage: Page = {
  id: 'chat',
  title: 'Chat',
  lead: 'Ask the model. Tokens, sampling and the edge layers stay on your devices; the mode decides what a cloud peer gets.',
  render(root, ctx) {
    let mode: Mode = 'scx';
    let report: PrivacyReport | null | undefined;
    const privacy = h('div', null, privacyPanel(mode, undefined));
    const picker = modePicker('chat-mode', mode, (m) => {
      mode = m;
      replaceChildren(privacy, privacyPanel(mode, report));
    }, 'Mode for the next answer');
    root.append(card('Mode and privacy', picker, privacy), card('Conversation', conversation(ctx, () => mode)));
    void ctx.bridge.privacy().then(
      (r) => {
        report = r;
        replaceChildren(privacy, privacyPanel(mode, report));
      },
      (e) => replaceChildren(privacy, privacyPanel(mode, null), errorNotice(e, 'Could not read the privacy table')),
    );
    // With no cloud peer only local mode can run: start there rather than fail the first question.
    void ctx.bridge.clouds.list().then((clouds) => {
      if (clouds.length > 0 || mode !== 'scx') return;
      const local = picker.querySelector<HTMLInputElement>('input[value="local"]');
      if (local && !local.checked) {
        local.checked = true;
        mode = 'local';
        replaceChildren(privacy, privacyPanel(mode, report));
      }
    }, () => {});
  },
};
