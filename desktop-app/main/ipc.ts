/**
 * IPC between the preload and main: main checks every call and its arguments, then runs it on the
 * HTTP bridge to the daemon. Only type imports from Electron, so the dispatcher runs under plain Node.
 */
import type { IpcMain, IpcMainEvent, IpcMainInvokeEvent, WebContents } from 'electron';
import {
  BRIDGE_CALLS,
  BridgeError,
  type BridgeCall,
  type ChatHandle,
  type ChatRequest,
  type HushBridge,
  IPC,
  LIMITS,
  MODES,
  type Mode,
} from '../shared/bridge.ts';

export type CallResult =
  | { ok: true; value: unknown }
  | { ok: false; error: { name: string; message: string; code: string; status: number | null } };

function text(v: unknown, what: string, max: number, min = 1): string {
  if (typeof v !== 'string') throw new BridgeError(`${what} must be text`, 'BadRequestError');
  const t = v.trim();
  if (t.length < min) throw new BridgeError(`${what} is empty`, 'BadRequestError');
  if (t.length > max) throw new BridgeError(`${what} is longer than ${max} characters`, 'BadRequestError');
  return t;
}

function passphrase(v: unknown): string {
  // Passphrases are used as typed (no trim): spaces may be part of them.
  if (typeof v !== 'string') throw new BridgeError('the passphrase must be text', 'BadRequestError');
  if (v.length < LIMITS.passphraseMin) throw new BridgeError(`the passphrase needs at least ${LIMITS.passphraseMin} characters`, 'BadRequestError');
  if (v.length > LIMITS.passphraseMax) throw new BridgeError('the passphrase is too long', 'BadRequestError');
  return v;
}

const ID_MAX = 256;

function optionalName(v: unknown): string | undefined {
  return v === undefined || v === null || v === '' ? undefined : text(v, 'the name', LIMITS.nameMax);
}

function mode(v: unknown): Mode {
  if (!MODES.includes(v as Mode)) throw new BridgeError(`mode must be one of ${MODES.join(', ')}`, 'BadRequestError');
  return v as Mode;
}

export function checkChatRequest(v: unknown): ChatRequest {
  if (typeof v !== 'object' || v === null) throw new BridgeError('chat request must be an object', 'BadRequestError');
  const o = v as Record<string, unknown>;
  const prompt = text(o.prompt, 'the prompt', LIMITS.promptMax);
  const req: ChatRequest = { prompt, mode: mode(o.mode) };
  if (o.maxTokens !== undefined) {
    if (!Number.isInteger(o.maxTokens) || (o.maxTokens as number) < 1 || (o.maxTokens as number) > 8192) {
      throw new BridgeError('maxTokens must be a whole number from 1 to 8192', 'BadRequestError');
    }
    req.maxTokens = o.maxTokens as number;
  }
  return req;
}

/** Run one bridge call after checking its arguments. Errors come back as values: IPC drops error fields. */
export async function dispatchCall(bridge: HushBridge, method: string, args: unknown[]): Promise<CallResult> {
  try {
    if (!(BRIDGE_CALLS as readonly string[]).includes(method)) throw new BridgeError(`unknown call ${method}`, 'BadRequestError');
    if (!Array.isArray(args) || args.length > 3) throw new BridgeError('bad arguments', 'BadRequestError');
    const a = args;
    const m = method as BridgeCall;
    let value: unknown;
    switch (m) {
      case 'info': value = await bridge.info(); break;
      case 'identity': value = await bridge.identity(); break;
      case 'renameSelf': value = await bridge.renameSelf(text(a[0], 'the name', LIMITS.nameMax)); break;
      case 'devices': value = await bridge.devices(); break;
      case 'invite': value = await bridge.invite(); break;
      case 'join': value = await bridge.join(text(a[0], 'the code', LIMITS.codeMax), optionalName(a[1])); break;
      case 'rename': value = await bridge.rename(text(a[0], 'the device id', ID_MAX), text(a[1], 'the name', LIMITS.nameMax)); break;
      case 'revoke': value = await bridge.revoke(text(a[0], 'the device id', ID_MAX)); break;
      case 'clouds.list': value = await bridge.clouds.list(); break;
      case 'clouds.add':
        value = await bridge.clouds.add(text(a[0], 'the multiaddr', LIMITS.multiaddrMax), optionalName(a[1]));
        break;
      case 'clouds.test': value = await bridge.clouds.test(text(a[0], 'the cloud peer id', ID_MAX)); break;
      case 'clouds.remove': value = await bridge.clouds.remove(text(a[0], 'the cloud peer id', ID_MAX)); break;
      case 'plan': value = await bridge.plan(mode(a[0])); break;
      case 'lastSession': value = await bridge.lastSession(); break;
      case 'privacy': value = await bridge.privacy(); break;
      case 'keys.rotateIdentity': value = await bridge.keys.rotateIdentity(); break;
      case 'keys.exportBackup': value = await bridge.keys.exportBackup(passphrase(a[0])); break;
      case 'keys.importBackup': {
        const f = a[0] as { fileName?: unknown; contents?: unknown } | null;
        if (typeof f !== 'object' || f === null) throw new BridgeError('the backup file is missing', 'BadRequestError');
        const file = { fileName: text(f.fileName, 'the file name', 256), contents: text(f.contents, 'the backup', LIMITS.backupMax) };
        value = await bridge.keys.importBackup(file, passphrase(a[1]));
        break;
      }
      default: {
        const never: never = m;
        throw new BridgeError(`unknown call ${String(never)}`, 'BadRequestError');
      }
    }
    return { ok: true, value: value ?? null };
  } catch (e) {
    const err = e as Partial<BridgeError>;
    return {
      ok: false,
      error: {
        name: typeof err.name === 'string' ? err.name : 'Error',
        message: typeof err.message === 'string' ? err.message : String(e),
        code: typeof err.code === 'string' ? err.code : 'error',
        status: typeof err.status === 'number' ? err.status : null,
      },
    };
  }
}

/** Is a frame's URL the app's own page? Any #/route of it is; another file, query or origin is not. */
export function isAppPage(frameUrl: string, pageUrl: string): boolean {
  return frameUrl.split('#')[0] === pageUrl;
}

type IpcMainLike = Pick<IpcMain, 'handle' | 'on' | 'removeHandler' | 'removeListener'>;

/**
 * Wire the preload's channels to a bridge. `trusted` sees the URL of the frame that sent each message:
 * only the app's own page may call (a navigated-away or injected frame is refused).
 */
export function registerBridgeIpc(ipcMain: IpcMainLike, bridge: HushBridge, trusted: (frameUrl: string) => boolean): () => void {
  const chats = new Map<string, ChatHandle>();
  const eventSubs = new Map<number, () => void>();
  const senderOk = (e: IpcMainEvent | IpcMainInvokeEvent) => trusted(e.senderFrame?.url ?? '');

  const onCall = async (e: IpcMainInvokeEvent, method: unknown, args: unknown): Promise<CallResult> => {
    if (!senderOk(e)) return { ok: false, error: { name: 'BridgeError', message: 'refused: not the Hush page', code: 'ForbiddenError', status: null } };
    return dispatchCall(bridge, String(method), Array.isArray(args) ? args : []);
  };

  const send = (wc: WebContents, channel: string, ...payload: unknown[]) => {
    if (!wc.isDestroyed()) wc.send(channel, ...payload);
  };

  const onChatStart = (e: IpcMainEvent, id: unknown, request: unknown) => {
    if (typeof id !== 'string' || id.length > 64) return;
    if (!senderOk(e)) {
      send(e.sender, IPC.chatEvent, id, { type: 'error', name: 'ForbiddenError', message: 'refused: not the Hush page' });
      return;
    }
    const key = `${e.sender.id}:${id}`;
    let req: ChatRequest;
    try {
      req = checkChatRequest(request);
    } catch (err) {
      send(e.sender, IPC.chatEvent, id, { type: 'error', name: 'BridgeError', message: (err as Error).message });
      return;
    }
    const handle = bridge.chat(req, (ev) => send(e.sender, IPC.chatEvent, id, ev));
    chats.set(key, handle);
    void handle.finished.finally(() => chats.delete(key));
    e.sender.once('destroyed', () => handle.cancel());
  };

  const onChatCancel = (e: IpcMainEvent, id: unknown) => {
    if (typeof id === 'string') chats.get(`${e.sender.id}:${id}`)?.cancel();
  };

  const onSubscribe = (e: IpcMainEvent) => {
    if (!senderOk(e) || eventSubs.has(e.sender.id)) return;
    const wc = e.sender;
    const unsub = bridge.events.subscribe((ev) => send(wc, IPC.event, ev));
    eventSubs.set(wc.id, unsub);
    wc.once('destroyed', () => {
      eventSubs.get(wc.id)?.();
      eventSubs.delete(wc.id);
    });
  };

  const onUnsubscribe = (e: IpcMainEvent) => {
    eventSubs.get(e.sender.id)?.();
    eventSubs.delete(e.sender.id);
  };

  ipcMain.handle(IPC.call, onCall);
  ipcMain.on(IPC.chatStart, onChatStart);
  ipcMain.on(IPC.chatCancel, onChatCancel);
  ipcMain.on(IPC.eventsSubscribe, onSubscribe);
  ipcMain.on(IPC.eventsUnsubscribe, onUnsubscribe);

  return () => {
    ipcMain.removeHandler(IPC.call);
    ipcMain.removeListener(IPC.chatStart, onChatStart);
    ipcMain.removeListener(IPC.chatCancel, onChatCancel);
    ipcMain.removeListener(IPC.eventsSubscribe, onSubscribe);
    ipcMain.removeListener(IPC.eventsUnsubscribe, onUnsubscribe);
    for (const h of chats.values()) h.cancel();
    for (const u of eventSubs.values()) u();
    chats.clear();
    eventSubs.clear();
  };
}
