/**
 * `hush app [--browser] [--home DIR] [--port N]`: the desktop app.
 *
 *   without --browser: Electron, when its binary is installed (desktop-app/launch.ts); otherwise it
 *                      says how to run the same UI in a browser, and exits with 2.
 *   --browser:         attaches to the device daemon of HOME, or starts one that lives only as long
 *                      as this command; serves the app on loopback and prints the address to open.
 *                      Ctrl-C stops what this command started (never an attached daemon).
 */
import type { Command } from 'commander';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { readDaemonInfo, resolveHome } from '../daemon/common.ts';
import { spawnDaemon, type RunningDaemon } from '../daemon/spawn.ts';
import { intArg } from './util.ts';

export interface AppBrowserOptions {
  /** Hush home (default HUSH_HOME or ~/.hush). */
  home?: string;
  /** Port of the page server (0 or absent: any free port). */
  port?: number;
  /** For a daemon this command starts: its libp2p listen address and API port (defaults: HUSH_LISTEN / HUSH_API_PORT, as the desktop app). */
  listen?: string;
  apiPort?: number;
  /** Ready timeout of a daemon this command starts. */
  startTimeoutMs?: number;
}

export interface AppBrowserSession {
  /** Address to open: the page, with the API token in the fragment. */
  openUrl: string;
  /** The page server's address (no token). */
  url: string;
  apiUrl: string;
  home: string;
  /** 'started': this command started the daemon and stop() ends it; 'attached': it was already running. */
  daemon: 'started' | 'attached';
  /** The daemon this command started, if any. */
  started: RunningDaemon | null;
  stop(): Promise<void>;
}

/** Does HOME have a live device daemon that answers its health check? */
async function liveDaemon(home: string): Promise<boolean> {
  const info = readDaemonInfo(home, 'device');
  if (!info?.healthUrl) return false;
  return fetch(info.healthUrl, { signal: AbortSignal.timeout(3000) }).then((r) => r.ok, () => false);
}

/** Browser mode: attach to or start the device daemon of HOME, then serve the app for it. */
export async function startAppBrowser(o: AppBrowserOptions = {}): Promise<AppBrowserSession> {
  const home = resolveHome(o.home);
  const [{ startBrowserMode }, { daemonSettings }] = await Promise.all([import('../../desktop-app/serve.ts'), import('../../desktop-app/main/daemon-command.ts')]);
  let started: RunningDaemon | null = null;
  if (!(await liveDaemon(home))) {
    const s = daemonSettings();
    started = await spawnDaemon('device', home, ['--listen', o.listen ?? s.listen, '--api-port', String(o.apiPort ?? s.apiPort)], { timeoutMs: o.startTimeoutMs });
  }
  try {
    const web = await startBrowserMode({ home, port: o.port ?? 0 });
    let stopping: Promise<void> | null = null;
    return {
      openUrl: web.openUrl, url: web.url, apiUrl: web.api, home, daemon: started ? 'started' : 'attached', started,
      stop: () => (stopping ??= (async () => {
        await web.close();
        if (started) await started.stop();
      })()),
    };
  } catch (e) {
    await started?.stop();
    throw e;
  }
}

/** Electron, as `npm run app` does; the exit code of Electron, or 2 when its binary is missing. */
export async function runElectronApp(o: { home?: string; args?: string[] } = {}): Promise<number> {
  const { electronBinary, NO_ELECTRON_HELP } = await import('../../desktop-app/launch.ts');
  const bin = electronBinary();
  if (!bin) {
    console.error(NO_ELECTRON_HELP);
    return 2;
  }
  const { buildApp, DIST } = await import('../../desktop-app/build.ts');
  await buildApp({ electron: true });
  const env: NodeJS.ProcessEnv = { ...process.env, ELECTRON_RUN_AS_NODE: undefined, ...(o.home ? { HUSH_HOME: resolveHome(o.home) } : {}) };
  const child = spawn(bin, [join(DIST, 'main.mjs'), ...(o.args ?? [])], { stdio: 'inherit', env });
  // Electron quits cleanly (stopping the daemon it started) on SIGTERM; pass ours on.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  return new Promise((ok) => child.on('exit', (code, signal) => ok(code ?? (signal ? 1 : 0))));
}

export function registerAppCommands(program: Command): void {
  program.command('app')
    .description('the Hush desktop app (Electron), or with --browser the same app in your browser')
    .option('--browser', 'serve the app on loopback for a browser instead of opening Electron')
    .option('--home <dir>', 'Hush home of the device daemon', process.env.HUSH_HOME)
    .option('--port <n>', 'port of the browser-mode page server (0 = any)', intArg('port', 0, 65535), process.env.HUSH_APP_PORT ? Number(process.env.HUSH_APP_PORT) : 0)
    .action(async (o: { browser?: boolean; home?: string; port: number }) => {
      if (!o.browser) {
        if (o.port) console.error('hush app: --port applies to --browser only; ignored');
        process.exitCode = await runElectronApp({ home: o.home });
        return;
      }
      const s = await startAppBrowser({ home: o.home, port: o.port });
      console.log(`Hush app (browser mode) for ${s.home}`);
      console.log(s.daemon === 'started'
        ? `Started the device daemon (API ${s.apiUrl}); it stops when this command does.`
        : `Using the device daemon already running (API ${s.apiUrl}); it keeps running after this command.`);
      console.log(`Open: ${s.openUrl}\n(the link holds the API token: do not share it)\nCtrl-C to stop.`);
      let exiting = false;
      const stop = (code: number) => {
        if (exiting) return;
        exiting = true;
        const force = setTimeout(() => process.exit(1), 15_000);
        force.unref();
        s.stop().then(() => process.exit(code), () => process.exit(1));
      };
      process.on('SIGINT', () => stop(0));
      process.on('SIGTERM', () => stop(0));
      s.started?.child.once('exit', (code, signal) => {
        if (exiting) return;
        console.error(`hush app: the device daemon stopped (${signal ?? `exit code ${code}`}):\n${s.started!.stderr.slice(-10).join('\n')}`);
        stop(1);
      });
    });
}
