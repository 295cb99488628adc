/**
 * Reusable UI pieces: cards, notices, dialogs (native <dialog>: modal, focus-trapped, Esc closes),
 * busy buttons, copy buttons and the mode picker.
 */
import { copyText, errorText, field, h, uid } from './dom.ts';
import { MODES, type Mode } from '../shared/bridge.ts';

export function card(title: string, ...body: (Node | string | null | false)[]): HTMLElement {
  const id = uid('card');
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), ...body);
}

/** The page-wide polite announcer for short confirmations ("Copied", "Renamed"). */
let liveRegion: HTMLElement | null = null;
export function setLiveRegion(el: HTMLElement): void {
  liveRegion = el;
}
export function announce(text: string): void {
  if (!liveRegion) return;
  liveRegion.textContent = '';
  // A new text node after a tick makes screen readers announce repeated messages too.
  setTimeout(() => {
    if (liveRegion) liveRegion.textContent = text;
  }, 30);
}

export function notice(kind: 'error' | 'info' | 'ok' | 'warn', text: string | Node, ...more: (Node | string)[]): HTMLElement {
  return h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text, ...more);
}

export function errorNotice(e: unknown, what?: string): HTMLElement {
  return notice('error', what ? `${what}: ${errorText(e)}` : errorText(e));
}

export function loading(text = 'Loading…'): HTMLElement {
  return h('p', { class: 'muted loading', role: 'status' }, text);
}

/**
 * A button that shows a busy label while its async action runs, and reports failure in `errorSlot`.
 * `ask` (a confirmation or a prompt) runs first, before the button turns busy; a null / false answer
 * cancels, any other answer is passed to the action.
 */
export function actionButton<T = true>(
  label: string,
  busyLabel: string,
  action: (answer: T) => Promise<void>,
  opts: {
    kind?: 'primary' | 'secondary' | 'danger' | 'ghost' | 'danger-ghost';
    small?: boolean;
    key?: string;
    ariaLabel?: string;
    errorSlot?: HTMLElement;
    ask?: () => Promise<T | null | false | undefined>;
  } = {},
): HTMLButtonElement {
  const b = h('button', { type: 'button', class: `btn btn-${opts.kind ?? 'secondary'}${opts.small ? ' btn-small' : ''}`, 'data-key': opts.key, 'aria-label': opts.ariaLabel }, label);
  b.addEventListener('click', async (e) => {
    e.preventDefault();
    if (b.getAttribute('aria-busy') === 'true') return;
    let answer = true as T;
    if (opts.ask) {
      const a = await opts.ask();
      if (a === null || a === false || a === undefined) return;
      answer = a;
    }
    await runBusy(b, label, busyLabel, () => action(answer), opts.errorSlot);
  });
  return b;
}

export async function runBusy(b: HTMLButtonElement, label: string, busyLabel: string, action: () => Promise<void>, errorSlot?: HTMLElement): Promise<void> {
  if (b.getAttribute('aria-busy') === 'true') return;
  b.setAttribute('aria-busy', 'true');
  b.disabled = true;
  b.textContent = busyLabel;
  errorSlot?.replaceChildren();
  try {
    await action();
  } catch (e) {
    if (errorSlot) errorSlot.replaceChildren(errorNotice(e));
    else announce(errorText(e));
  } finally {
    b.removeAttribute('aria-busy');
    b.disabled = false;
    b.textContent = label;
  }
}

export function copyButton(text: string, what: string, key?: string): HTMLButtonElement {
  const b = h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'aria-label': `Copy ${what}`, 'data-key': key }, 'Copy');
  b.addEventListener('click', async () => {
    const ok = await copyText(text);
    announce(ok ? `${what} copied` : `Could not copy; select the ${what} and copy it by hand`);
    b.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => (b.textContent = 'Copy'), 1500);
  });
  return b;
}

/** A modal <dialog>. Resolves with the button value or null on Esc / Cancel. */
function modal(build: (close: (v: string | null) => void) => { title: string; body: Node[]; actions: HTMLButtonElement[]; initialFocus?: HTMLElement }): Promise<string | null> {
  return new Promise((resolve) => {
    const titleId = uid('dlg');
    const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': titleId });
    const opener = document.activeElement as HTMLElement | null;
    let done = false;
    const close = (v: string | null) => {
      if (done) return;
      done = true;
      dlg.close();
      dlg.remove();
      opener?.focus?.();
      resolve(v);
    };
    const spec = build(close);
    dlg.append(h('h2', { id: titleId }, spec.title), ...spec.body, h('div', { class: 'dialog-actions' }, ...spec.actions));
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      close(null);
    });
    document.body.append(dlg);
    dlg.showModal();
    (spec.initialFocus ?? spec.actions[0])?.focus();
  });
}

export async function confirmDialog(opts: { title: string; body: string | Node[]; confirm: string; danger?: boolean }): Promise<boolean> {
  const r = await modal((close) => {
    const cancel = h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => close(null) }, 'Cancel');
    const ok = h('button', { type: 'button', class: `btn ${opts.danger ? 'btn-danger' : 'btn-primary'}`, onclick: () => close('ok') }, opts.confirm);
    const body = typeof opts.body === 'string' ? [h('p', null, opts.body)] : opts.body;
    // Cancel gets focus first on destructive actions, so Enter does not destroy by accident.
    return { title: opts.title, body, actions: [cancel, ok], initialFocus: opts.danger ? cancel : ok };
  });
  return r === 'ok';
}

export async function promptDialog(opts: { title: string; label: string; value?: string; confirm: string; maxLength?: number; hint?: string }): Promise<string | null> {
  return modal((close) => {
    const input = h('input', { type: 'text', value: opts.value ?? '', maxlength: opts.maxLength ?? 64, required: true, autocomplete: 'off' });
    const submit = () => {
      const v = input.value.trim();
      if (v) close(v);
      else input.focus();
    };
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        submit();
      }
    });
    const cancel = h('button', { type: 'button', class: 'btn btn-secondary', onclick: () => close(null) }, 'Cancel');
    const ok = h('button', { type: 'button', class: 'btn btn-primary', onclick: submit }, opts.confirm);
    setTimeout(() => input.select(), 0);
    return { title: opts.title, body: [field(opts.label, input, opts.hint)], actions: [cancel, ok], initialFocus: input };
  });
}

/** A radio group for local / split / scx. */
export function modePicker(name: string, current: Mode, onChange: (m: Mode) => void, legend = 'Mode'): HTMLFieldSetElement {
  const labels: Record<Mode, string> = { local: 'Local', split: 'Split', scx: 'SCX' };
  const hints: Record<Mode, string> = {
    local: 'only your devices',
    split: 'cloud runs the middle, in plain form',
    scx: 'cloud runs the middle, encoded',
  };
  return h(
    'fieldset',
    { class: 'mode-picker' },
    h('legend', null, legend),
    ...MODES.map((m) => {
      const id = uid('mode');
      const input = h('input', { type: 'radio', name, id, value: m, checked: m === current });
      input.addEventListener('change', () => input.checked && onChange(m));
      return h('label', { class: 'mode-option', for: id }, input, h('span', { class: 'mode-name' }, labels[m]), h('span', { class: 'mode-hint' }, hints[m]));
    }),
  );
}

export function statusDot(state: 'online' | 'offline' | 'unknown' | 'ok' | 'bad', label: string): HTMLElement {
  return h('span', { class: `status status-${state}` }, h('span', { class: 'dot', 'aria-hidden': 'true' }), label);
}
