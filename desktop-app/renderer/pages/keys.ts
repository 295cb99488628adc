import { LIMITS, type BridgeInfo, type Identity } from '../../shared/bridge.ts';
import { field, h, replaceChildren } from '../dom.ts';
import type { Page, PageContext } from '../page.ts';
import { actionButton, announce, card, confirmDialog, copyButton, errorNotice, loading, notice, runBusy } from '../ui.ts';

const STORAGE_TEXT: Record<BridgeInfo['identityStorage'], string> = {
  keychain: 'In the OS keychain (Electron safeStorage). The daemon gets it from the app over a private pipe at start and never writes it to disk.',
  file: 'In the identity key file of the Hush home directory, readable only by you (mode 0600).',
  unknown: 'Held by the Hush daemon this page is connected to (a 0600 file in its home directory, or the OS keychain when the desktop app started it).',
};

function identityFacts(id: Identity, info: BridgeInfo): HTMLElement {
  return h(
    'dl',
    { class: 'facts' },
    h('dt', null, 'Fingerprint'),
    h('dd', null, h('code', { class: 'fingerprint fingerprint-large' }, id.fingerprint), ' ', copyButton(id.fingerprint, 'fingerprint', 'keys-copy-fp')),
    h('dt', null, 'Peer ID'),
    h('dd', null, h('code', { class: 'peer-id' }, id.peerId)),
    h('dt', null, 'Key type'),
    h('dd', null, 'Ed25519 (libp2p identity)'),
    h('dt', null, 'Stored'),
    h('dd', null, STORAGE_TEXT[info.identityStorage]),
  );
}

function rotateSection(ctx: PageContext, reload: () => void): HTMLElement {
  const result = h('div', { 'aria-live': 'polite' });
  const b = actionButton('Rotate identity…', 'Rotating…', async () => {
    const id = await ctx.bridge.keys.rotateIdentity();
    result.replaceChildren(notice('ok', `New fingerprint: ${id.fingerprint}. Pair your other devices with this one again.`));
    announce('Identity rotated');
    reload();
  }, {
    kind: 'danger-ghost', key: 'rotate', errorSlot: result,
    ask: () => confirmDialog({
      title: 'Rotate this device’s identity?',
      body: [
        h('p', null, 'Hush makes a new identity key and PeerId for this device and deletes the old key. Paired devices know this device only by its old identity, so they will refuse it until you pair again.'),
        h('p', null, 'After rotating: on each of your other devices, revoke the old entry for this device, then create an invite code here and enter it there. Cloud peers need nothing: they never trusted this identity.'),
      ],
      confirm: 'Rotate identity',
      danger: true,
    }),
  });
  return h(
    'div',
    { class: 'stack' },
    h('p', null, 'Rotate when you think the key may have leaked (a lost backup, a shared disk). Every paired device must pair with this device again afterwards.'),
    h('div', null, b),
    result,
  );
}

function exportForm(ctx: PageContext): HTMLElement {
  const pass = h('input', { type: 'password', autocomplete: 'new-password', minlength: LIMITS.passphraseMin, maxlength: LIMITS.passphraseMax, required: true });
  const again = h('input', { type: 'password', autocomplete: 'new-password', maxlength: LIMITS.passphraseMax, required: true });
  const result = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-key': 'export' }, 'Export encrypted backup');
  const form = h(
    'form',
    { class: 'stack', novalidate: true },
    field('Passphrase', pass, `At least ${LIMITS.passphraseMin} characters. Without it the backup cannot be opened: Hush cannot recover it for you.`),
    field('Passphrase again', again),
    h('div', null, submit),
    result,
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (pass.value.length < LIMITS.passphraseMin) {
      result.replaceChildren(notice('error', `The passphrase needs at least ${LIMITS.passphraseMin} characters.`));
      pass.focus();
      return;
    }
    if (pass.value !== again.value) {
      result.replaceChildren(notice('error', 'The two passphrases differ.'));
      again.focus();
      return;
    }
    void runBusy(submit, 'Export encrypted backup', 'Encrypting…', async () => {
      const backup = await ctx.bridge.keys.exportBackup(pass.value);
      pass.value = '';
      again.value = '';
      const url = URL.createObjectURL(new Blob([backup.contents], { type: 'application/octet-stream' }));
      const a = h('a', { href: url, download: backup.fileName, class: 'sr-only' }, 'download');
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
      result.replaceChildren(notice('ok', `Saved ${backup.fileName}. Keep it somewhere safe and apart from the passphrase.`));
    }, result);
  });
  return form;
}

function importForm(ctx: PageContext, reload: () => void): HTMLElement {
  const file = h('input', { type: 'file', accept: '.hushkey,.json,.txt', required: true });
  const pass = h('input', { type: 'password', autocomplete: 'current-password', maxlength: LIMITS.passphraseMax, required: true });
  const result = h('div', { 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'btn btn-secondary', 'data-key': 'import' }, 'Import backup…');
  const form = h('form', { class: 'stack', novalidate: true }, field('Backup file', file), field('Passphrase of the backup', pass), h('div', null, submit), result);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = file.files?.[0];
    if (!f) {
      result.replaceChildren(notice('error', 'Choose the backup file first.'));
      file.focus();
      return;
    }
    if (f.size > LIMITS.backupMax) {
      result.replaceChildren(notice('error', `That file is ${Math.round(f.size / 1024)} KiB; a Hush key backup is a few KiB at most.`));
      return;
    }
    void (async () => {
      const ok = await confirmDialog({
        title: 'Replace this device’s identity?',
        body: 'The identity in the backup replaces the current one on this device. Devices paired with the current identity will have to pair again, unless the backup is of this very identity.',
        confirm: 'Import and replace',
        danger: true,
      });
      if (!ok) return;
      await runBusy(submit, 'Import backup…', 'Importing…', async () => {
        const id = await ctx.bridge.keys.importBackup({ fileName: f.name, contents: await f.text() }, pass.value);
        pass.value = '';
        result.replaceChildren(notice('ok', `Imported. This device is now ${id.fingerprint}.`));
        reload();
      }, result);
    })();
  });
  return form;
}

export const keysPage: Page = {
  id: 'keys',
  title: 'Keys',
  lead: 'The identity key that proves this device to your others, its backup, and what happens to the keys of each request.',
  render(root, ctx) {
    const facts = h('div', null, loading());
    const load = async () => {
      try {
        replaceChildren(facts, identityFacts(await ctx.bridge.identity(), ctx.info));
      } catch (e) {
        replaceChildren(facts, errorNotice(e, 'Could not read the identity'));
      }
    };
    root.append(
      card('Identity', facts),
      card('Session keys', h('p', { class: 'statement' }, 'Session keys are per request and never stored. Each request draws a fresh random seed; the permutations, noise and decoys of every layer and crossing are derived from it, used once, and zeroed in memory when the answer ends. They are never written to disk, never sent to a cloud peer except the cloud layers’ head permutations after prefill, and never part of a backup.')),
      card('Rotate identity', rotateSection(ctx, load)),
      h('div', { class: 'two-col' }, card('Export a backup', exportForm(ctx)), card('Import a backup', importForm(ctx, load))),
    );
    void load();
    ctx.onEvents(['identity.'], () => void load());
  },
};
