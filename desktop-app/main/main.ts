/**
 * Electron main process of the Hush desktop app (bundled by desktop-app/build.ts to dist/main.mjs).
 *
 *  - One instance per user (single instance lock); a second launch focuses the first window.
 *  - Attaches to the device daemon already running for the home dir, or starts one (supervisor.ts).
 *  - On quit it stops only a daemon it started. It registers no login item, no background service,
 *    and writes no settings; the only file it keeps is USERDATA/identity.keychain (keychain.ts), and
 *    only when it owns the daemon's identity.
 *  - Closing the window quits the app, unless it was launched with --tray (the user asked to keep it
 *    in the tray).
 */
import '../../runtime/polyfill.ts';
import { app, BrowserWindow, dialog, ipcMain, Menu, nativeImage, safeStorage, session, shell, Tray } from 'electron';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createHttpBridge } from '../shared/http-bridge.ts';
import { daemonSettings, daemonSupports, resolveDaemonCommand } from './daemon-command.ts';
import { isAppPage, registerBridgeIpc } from './ipc.ts';
import { chooseIdentityMode, IdentityKeychain, KEYCHAIN_FILE } from './keychain.ts';
import { Supervisor, type DaemonConnection } from './supervisor.ts';

const here = import.meta.dirname; // desktop-app/dist
const appRoot = resolve(here, '..', '..');
const indexHtml = join(here, 'index.html');
const pageUrl = pathToFileURL(indexHtml).href;
const keepInTray = process.argv.includes('--tray');

let win: BrowserWindow | null = null;
let tray: Tray | null = null;
let supervisor: Supervisor | null = null;
let connection: DaemonConnection | null = null;
let identityStorage: 'keychain' | 'file' = 'file';
let disposeIpc: (() => void) | null = null;
let quitting = false;
let cleanedUp = false;

function log(line: string): void {
  // Daemon output goes to the app's stderr for `npm run app`; keys never travel on stdout/stderr.
  process.stderr.write(`[hush-daemon] ${line}\n`);
}

function showWindow(): void {
  if (!win || win.isDestroyed()) {
    createWindow();
    return;
  }
  if (win.isMinimized()) win.restore();
  win.show();
  win.focus();
}

function createWindow(): void {
  win = new BrowserWindow({
    width: 1180,
    height: 800,
    minWidth: 760,
    minHeight: 520,
    show: false,
    title: 'Hush',
    backgroundColor: '#f6f7f9',
    webPreferences: {
      preload: join(here, 'preload.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      spellcheck: false,
    },
  });
  const wc = win.webContents;
  // The page is local; it must never navigate away or open windows. Links open in the browser.
  wc.on('will-navigate', (e, url) => {
    if (!isAppPage(url, pageUrl)) e.preventDefault();
  });
  wc.setWindowOpenHandler(({ url }) => {
    if (/^https:\/\//.test(url)) void shell.openExternal(url);
    return { action: 'deny' };
  });
  win.once('ready-to-show', () => win?.show());
  win.on('close', (e) => {
    if (keepInTray && tray && !quitting) {
      e.preventDefault();
      win?.hide();
    }
  });
  win.on('closed', () => {
    win = null;
  });
  void win.loadFile(indexHtml);
}

function trayIcon(): Electron.NativeImage {
  // A 16x16 dot drawn in code so the app ships no icon file it could forget to clean up.
  const size = 16;
  const px = Buffer.alloc(size * size * 4);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const d = Math.hypot(x - 7.5, y - 7.5);
      const i = (y * size + x) * 4;
      const a = d <= 6 ? 255 : d <= 7 ? 128 : 0;
      px[i] = 0x5b; // B (bitmap is BGRA)
      px[i + 1] = 0x6a; // G
      px[i + 2] = 0x2f; // R
      px[i + 3] = a;
    }
  }
  return nativeImage.createFromBitmap(px, { width: size, height: size });
}

function buildMenus(): void {
  const daemonLine = connection
    ? `Daemon: ${connection.owned ? 'started by Hush' : 'attached (keeps running)'} on ${connection.apiUrl}`
    : 'Daemon: not running';
  const template: Electron.MenuItemConstructorOptions[] = [
    { label: 'Open Hush', click: showWindow },
    { label: daemonLine, enabled: false },
    { type: 'separator' },
    { label: 'Quit Hush', accelerator: 'CmdOrCtrl+Q', click: () => app.quit() },
  ];
  try {
    tray ??= new Tray(trayIcon());
    tray.setToolTip('Hush');
    tray.setContextMenu(Menu.buildFromTemplate(template));
    tray.on('click', showWindow);
  } catch {
    tray = null; // no tray on this desktop: the app menu below still has Quit
  }
  Menu.setApplicationMenu(
    Menu.buildFromTemplate([
      ...(process.platform === 'darwin' ? [{ role: 'appMenu' as const }] : []),
      { label: 'Hush', submenu: template },
      { role: 'editMenu' },
      { role: 'viewMenu' },
    ]),
  );
}

async function startDaemon(): Promise<void> {
  const settings = daemonSettings();
  const keychain = new IdentityKeychain(safeStorage, join(app.getPath('userData'), KEYCHAIN_FILE));
  let identity = chooseIdentityMode(settings.home, keychain);
  const resolveCmd = (appChannel: boolean) => resolveDaemonCommand({ settings, appRoot, execPath: process.execPath, underElectron: true, appChannel });
  if (identity.kind === 'keychain' && !(await daemonSupports(resolveCmd(false), '--app-channel'))) {
    // An older daemon: it keeps its own 0600 key file; say so rather than fail to start it.
    identity = { kind: 'file', reason: 'this daemon has no --app-channel option yet' };
  }
  const cmd = resolveCmd(identity.kind === 'keychain');
  identityStorage = identity.kind;
  log(`home ${settings.home}; daemon command: ${cmd.describe}; identity: ${identity.kind === 'keychain' ? 'OS keychain' : `file (${identity.reason})`}`);
  supervisor = new Supervisor({
    home: settings.home,
    apiPort: settings.apiPort,
    command: cmd.command,
    args: cmd.args,
    env: cmd.env,
    cwd: cmd.cwd,
    channel: identity.kind === 'keychain' ? { hello: [{ type: 'identity', key: identity.key }] } : undefined,
    onChannelMessage: (msg) => {
      const m = msg as { type?: unknown; key?: unknown };
      if (m.type === 'identity-key' && typeof m.key === 'string') {
        try {
          keychain.save(m.key);
        } catch (e) {
          log(`could not store the identity in the keychain: ${(e as Error).message}`);
        }
      }
    },
    onOutput: log,
    onUnexpectedExit: (code, signal, output) => {
      if (quitting) return;
      dialog.showErrorBox('Hush daemon stopped', `The Hush daemon exited (${signal ?? `code ${code}`}).\n\n${output.slice(-2000)}`);
    },
  });
  connection = await supervisor.attachOrStart();
  log(connection.owned ? `started daemon pid ${connection.pid}` : `attached to running daemon pid ${connection.pid ?? '?'}`);
}

async function cleanup(): Promise<void> {
  if (cleanedUp) return;
  cleanedUp = true;
  disposeIpc?.();
  tray?.destroy();
  tray = null;
  // Only a daemon this app started is stopped; an attached one belongs to whoever started it.
  if (supervisor) await supervisor.stop().catch((e: unknown) => log(`stopping the daemon failed: ${(e as Error).message}`));
}

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on('second-instance', showWindow);

  app.on('window-all-closed', () => {
    if (!(keepInTray && tray)) app.quit();
  });

  app.on('before-quit', (e) => {
    quitting = true;
    if (cleanedUp) return;
    e.preventDefault();
    void cleanup().finally(() => app.quit());
  });

  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => app.quit());
  }

  void app.whenReady().then(async () => {
    // The renderer needs nothing from the OS but writing to the clipboard (Copy buttons): refuse the rest.
    session.defaultSession.setPermissionRequestHandler((_wc, perm, done) => done(perm === 'clipboard-sanitized-write'));
    try {
      await startDaemon();
    } catch (e) {
      const err = e as Error & { output?: string };
      dialog.showErrorBox('Hush could not start its daemon', `${err.message}\n\n${(err.output ?? '').slice(-2000)}`);
      quitting = true;
      await cleanup();
      app.exit(1);
      return;
    }
    const bridge = createHttpBridge({
      baseUrl: connection!.apiUrl,
      token: connection!.token,
      kind: 'electron',
      daemon: connection!.owned ? 'started' : 'attached',
      // An attached daemon keeps its key where whoever started it chose.
      identityStorage: connection!.owned ? identityStorage : 'unknown',
    });
    // The renderer routes with the fragment (#/devices): any route of the page is the page.
    disposeIpc = registerBridgeIpc(ipcMain, bridge, (url) => isAppPage(url, pageUrl));
    buildMenus();
    createWindow();
    app.on('activate', showWindow);
  });
}
