import '../runtime/polyfill.ts';
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { startControlServer, type RunningServer } from '../runtime/api/index.ts';
import type { BridgeEvent, ChatEvent, HushBridge } from '../desktop-app/shared/bridge.ts';
import { createHttpBridge } from '../desktop-app/shared/http-bridge.ts';
import { isAppPage, registerBridgeIpc } from '../desktop-app/main/ipc.ts';
import { InterimController } from '../desktop-app/testing/interim-controller.ts';

/*
 * The preload (window.hush over IPC) wired to main's IPC handlers, end to end down to the control API.
 * No Electron binary can run here, so the `electron` module is replaced by a STAND-IN for its IPC
 * transport only: ipcRenderer/ipcMain/webContents that structured-clone every message as Electron does
 * (a function or class instance that Electron could not send fails here too). The preload and main
 * code under test are the real files. INTERIM: the daemon side is the control API over the controller
 * test double (desktop-app/testing/interim-controller.ts).
 */

const PAGE_URL = 'file:///app/dist/index.html';

class FakeWebContents extends EventEmitter {
  readonly id = 1;
  destroyed = false;
  constructor(private readonly renderer: EventEmitter) {
    super();
  }
  isDestroyed() {
    return this.destroyed;
  }
  send(channel: string, ...args: unknown[]) {
    const cloned = structuredClone(args);
    setImmediate(() => this.renderer.emit(channel, {}, ...cloned));
  }
}

function electronStandIn(frameUrl: { value: string }) {
  const rendererSide = new EventEmitter();
  const mainSide = new EventEmitter();
  const handlers = new Map<string, (e: unknown, ...a: unknown[]) => unknown>();
  const wc = new FakeWebContents(rendererSide);
  const event = () => ({ sender: wc, senderFrame: { url: frameUrl.value } });
  const exposed: Record<string, unknown> = {};
  const electron = {
    contextBridge: { exposeInMainWorld: (k: string, v: unknown) => (exposed[k] = v) },
    ipcRenderer: {
      invoke: async (ch: string, ...args: unknown[]) => {
        const h = handlers.get(ch);
        if (!h) throw new Error(`No handler registered for '${ch}'`);
        return structuredClone(await h(event(), ...structuredClone(args)));
      },
      send: (ch: string, ...args: unknown[]) => {
        const cloned = structuredClone(args);
        setImmediate(() => mainSide.emit(ch, event(), ...cloned));
      },
      on: (ch: string, l: (...a: unknown[]) => void) => rendererSide.on(ch, l),
      removeListener: (ch: string, l: (...a: unknown[]) => void) => rendererSide.removeListener(ch, l),
    },
  };
  const ipcMain = {
    handle: (ch: string, h: (e: unknown, ...a: unknown[]) => unknown) => handlers.set(ch, h),
    removeHandler: (ch: string) => handlers.delete(ch),
    on: (ch: string, l: (...a: unknown[]) => void) => mainSide.on(ch, l),
    removeListener: (ch: string, l: (...a: unknown[]) => void) => mainSide.removeListener(ch, l),
  };
  return { electron, ipcMain, exposed, wc };
}

describe('preload <-> main IPC (Electron IPC stand-in; real preload, main and control API)', () => {
  // The renderer routes with the fragment, so calls come from PAGE_URL#/route.
  const frameUrl = { value: `${PAGE_URL}#/devices` };
  const standIn = electronStandIn(frameUrl);
  let api: RunningServer;
  let controller: InterimController;
  let hush: HushBridge;
  let dispose: () => void;
  const token = randomBytes(32).toString('hex');

  beforeAll(async () => {
    controller = new InterimController({ tokenDelayMs: 5 });
    api = await startControlServer({ controller, token });
    const bridge = createHttpBridge({ baseUrl: api.url, token, kind: 'electron', daemon: 'started', identityStorage: 'keychain' });
    // The same trust check main.ts uses.
    dispose = registerBridgeIpc(standIn.ipcMain as never, bridge, (url) => isAppPage(url, PAGE_URL));
    vi.doMock('electron', () => standIn.electron);
    await import('../desktop-app/preload/preload.ts');
    hush = standIn.exposed.hush as HushBridge;
  });

  afterAll(async () => {
    dispose?.();
    vi.doUnmock('electron');
    await api?.close();
  });

  it('exposes the whole bridge and nothing else', () => {
    expect(Object.keys(standIn.exposed)).toEqual(['hush']);
    expect(Object.keys(hush).sort()).toEqual(['chat', 'clouds', 'devices', 'events', 'identity', 'info', 'invite', 'join', 'keys', 'lastSession', 'plan', 'privacy', 'rename', 'renameSelf', 'revoke']);
  });

  it('answers calls through main, and rethrows daemon errors with their message', async () => {
    expect(await hush.info()).toEqual({ kind: 'electron', api: api.url, daemon: 'started', identityStorage: 'keychain' });
    expect((await hush.devices()).length).toBe(3);
    expect((await hush.clouds.test('cloud-1')).reachable).toBe(true);
    const err = await hush.join('HUSH-expired').catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'BridgeError', code: 'GoneError', message: expect.stringContaining('expired') });
    const bad = await hush.rename('12D3KooW', '').catch((e: unknown) => e);
    expect(bad).toMatchObject({ message: 'the name is empty' });
  });

  it('streams a chat answer over IPC and can cancel one', async () => {
    const events: ChatEvent[] = [];
    await hush.chat({ prompt: 'hi', mode: 'scx', maxTokens: 4 }, (e) => events.push(e)).finished;
    expect(events.map((e) => e.type)).toEqual(['start', 'token', 'token', 'token', 'token', 'done']);

    const cancelled: ChatEvent[] = [];
    const h = hush.chat({ prompt: 'hi', mode: 'local', maxTokens: 500 }, (e) => {
      cancelled.push(e);
      if (e.type === 'token') h.cancel();
    });
    await h.finished;
    expect(cancelled.at(-1)).toMatchObject({ type: 'error', name: 'Cancelled' });
  });

  it('forwards live events while subscribed', async () => {
    const got: BridgeEvent[] = [];
    const unsubscribe = hush.events.subscribe((e) => got.push(e));
    const phone = (await controller.devices()).find((d) => d.name === 'Phone')!;
    await expect
      .poll(() => {
        controller.setOnline(phone.peerId, true);
        return got.some((e) => e.type === 'device.online');
      })
      .toBe(true);
    unsubscribe();
  });

  it('refuses calls from a frame that is not the app page', async () => {
    frameUrl.value = 'https://evil.example/';
    try {
      await expect(hush.identity()).rejects.toMatchObject({ code: 'ForbiddenError' });
      const events: ChatEvent[] = [];
      const before = await controller.lastSession();
      await hush.chat({ prompt: 'x', mode: 'local' }, (e) => events.push(e)).finished;
      expect(events).toEqual([{ type: 'error', name: 'ForbiddenError', message: 'refused: not the Hush page' }]);
      expect(await controller.lastSession()).toEqual(before); // nothing was generated for it
    } finally {
      frameUrl.value = `${PAGE_URL}#/devices`;
    }
    for (const other of ['file:///app/dist/index.html?x=1', 'file:///app/dist/browser.html', 'file:///app/dist/index.html.evil#/x', 'http://127.0.0.1/index.html']) {
      expect(isAppPage(other, PAGE_URL), other).toBe(false);
    }
    expect(isAppPage(`${PAGE_URL}#/chat`, PAGE_URL)).toBe(true);
  });
});
