/**
 * The preload: `window.hush` (the HushBridge of desktop-app/shared/bridge.ts) over IPC to main.
 *
 * It runs sandboxed with context isolation (bundled to dist/preload.cjs), so the page gets only these
 * functions: no ipcRenderer, no Node, no way to name an arbitrary channel.
 */
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import {
  type BackupFile,
  BridgeError,
  type ChatEvent,
  type ChatHandle,
  type ChatRequest,
  type HushBridge,
  type BridgeEvent,
  IPC,
} from '../shared/bridge.ts';
import type { CallResult } from '../main/ipc.ts';

async function call<T>(method: string, ...args: unknown[]): Promise<T> {
  const r = (await ipcRenderer.invoke(IPC.call, method, args)) as CallResult;
  if (r.ok) return r.value as T;
  const err = new BridgeError(r.error.message, r.error.code, r.error.status);
  err.name = r.error.name;
  throw err;
}

let chatSeq = 0;
function chat(request: ChatRequest, onEvent: (e: ChatEvent) => void): ChatHandle {
  const id = `${Date.now().toString(36)}-${++chatSeq}`;
  let settle!: () => void;
  const finished = new Promise<void>((r) => (settle = r));
  const listener = (_e: IpcRendererEvent, forId: unknown, ev: ChatEvent) => {
    if (forId !== id) return;
    try {
      onEvent(ev);
    } finally {
      if (ev.type === 'done' || ev.type === 'error') {
        ipcRenderer.removeListener(IPC.chatEvent, listener);
        settle();
      }
    }
  };
  ipcRenderer.on(IPC.chatEvent, listener);
  ipcRenderer.send(IPC.chatStart, id, { prompt: request.prompt, mode: request.mode, maxTokens: request.maxTokens });
  return { finished, cancel: () => ipcRenderer.send(IPC.chatCancel, id) };
}

const eventListeners = new Set<(e: BridgeEvent) => void>();
const onMainEvent = (_e: IpcRendererEvent, ev: BridgeEvent) => {
  for (const l of eventListeners) {
    try {
      l(ev);
    } catch {
      // one bad listener must not starve the rest
    }
  }
};

const hush: HushBridge = {
  info: () => call('info'),
  identity: () => call('identity'),
  renameSelf: (name) => call('renameSelf', name),
  devices: () => call('devices'),
  invite: () => call('invite'),
  join: (code, name) => call('join', code, name),
  rename: (peerId, name) => call('rename', peerId, name),
  revoke: (peerId) => call('revoke', peerId),
  clouds: {
    list: () => call('clouds.list'),
    add: (multiaddr, name) => call('clouds.add', multiaddr, name),
    test: (id) => call('clouds.test', id),
    remove: (id) => call('clouds.remove', id),
  },
  plan: (mode) => call('plan', mode),
  chat,
  lastSession: () => call('lastSession'),
  privacy: () => call('privacy'),
  keys: {
    rotateIdentity: () => call('keys.rotateIdentity'),
    exportBackup: (passphrase) => call('keys.exportBackup', passphrase),
    importBackup: (file: BackupFile, passphrase) => call('keys.importBackup', { fileName: file.fileName, contents: file.contents }, passphrase),
  },
  events: {
    subscribe(onEvent) {
      if (eventListeners.size === 0) {
        ipcRenderer.on(IPC.event, onMainEvent);
        ipcRenderer.send(IPC.eventsSubscribe);
      }
      eventListeners.add(onEvent);
      return () => {
        if (!eventListeners.delete(onEvent) || eventListeners.size > 0) return;
        ipcRenderer.removeListener(IPC.event, onMainEvent);
        ipcRenderer.send(IPC.eventsUnsubscribe);
      };
    },
  },
};

contextBridge.exposeInMainWorld('hush', hush);
