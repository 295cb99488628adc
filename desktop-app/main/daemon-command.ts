/**
 * Where the app's daemon lives and how to run it. No Electron import: main passes in what Electron knows.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';

/** The port of the daemon's control API unless HUSH_API_PORT says otherwise. */
export const DEFAULT_API_PORT = 7420;
/** Listen on every interface so devices on the LAN can pair; the port is picked by the OS. */
export const DEFAULT_LISTEN = '/ip4/0.0.0.0/tcp/0';
/** The daemon's identity key file when it keeps its own key (CLI-made homes). */
export const IDENTITY_FILE = 'identity.key';
/** The fd the app channel uses (JSON lines, see desktop-app/README.md). */
export const APP_CHANNEL_FD = 3;

export interface DaemonSettings {
  home: string;
  apiPort: number;
  listen: string;
}

/** Settings from the environment with defaults; the same home as the CLI so either can attach to the other's daemon. */
export function daemonSettings(env: NodeJS.ProcessEnv = process.env): DaemonSettings {
  const port = Number(env.HUSH_API_PORT ?? DEFAULT_API_PORT);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new RangeError(`HUSH_API_PORT must be a TCP port, got ${env.HUSH_API_PORT}`);
  return {
    home: resolve(env.HUSH_HOME ?? join(homedir(), '.hush')),
    apiPort: port,
    listen: env.HUSH_LISTEN ?? DEFAULT_LISTEN,
  };
}

export interface DaemonCommand {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string | undefined;
  /** Same command, arguments that print `device start --help` (to ask what the daemon supports). */
  helpArgs: string[];
  /** What was found, for logs and error dialogs. */
  describe: string;
}

export interface ResolveOptions {
  settings: DaemonSettings;
  /** The repository / app root that holds peers/ and node_modules/. */
  appRoot: string;
  /** process.execPath; under Electron it is the Electron binary, run as Node with ELECTRON_RUN_AS_NODE. */
  execPath: string;
  underElectron: boolean;
  /** Hand the identity over fd 3 instead of a key file. */
  appChannel: boolean;
  env?: NodeJS.ProcessEnv;
}

function onPath(name: string, env: NodeJS.ProcessEnv): string | null {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

/**
 * The command that runs `hush device start ...`, first match wins:
 *   HUSH_BIN (an executable `hush`) > APP/peers/bin/hush.js (run by this Node / Electron-as-Node)
 *   > APP/peers/cli.ts through APP/node_modules/.bin/tsx > `hush` on PATH.
 */
export function resolveDaemonCommand(o: ResolveOptions): DaemonCommand {
  const env: NodeJS.ProcessEnv = { ...(o.env ?? process.env) };
  const s = o.settings;
  const daemonArgs = ['device', 'start', '--home', s.home, '--listen', s.listen, '--api-port', String(s.apiPort)];
  if (o.appChannel) daemonArgs.push('--app-channel', String(APP_CHANNEL_FD));
  const cwd = existsSync(o.appRoot) ? o.appRoot : undefined;
  const help = ['device', 'start', '--help'];
  if (env.HUSH_BIN) {
    return { command: env.HUSH_BIN, args: daemonArgs, helpArgs: help, env, cwd, describe: `HUSH_BIN=${env.HUSH_BIN}` };
  }
  const binJs = join(o.appRoot, 'peers', 'bin', 'hush.js');
  if (existsSync(binJs)) {
    if (o.underElectron) env.ELECTRON_RUN_AS_NODE = '1';
    return { command: o.execPath, args: [binJs, ...daemonArgs], helpArgs: [binJs, ...help], env, cwd, describe: binJs };
  }
  const cliTs = join(o.appRoot, 'peers', 'cli.ts');
  const tsx = join(o.appRoot, 'node_modules', '.bin', 'tsx');
  if (existsSync(cliTs) && existsSync(tsx)) {
    return { command: tsx, args: [cliTs, ...daemonArgs], helpArgs: [cliTs, ...help], env, cwd, describe: `tsx ${cliTs}` };
  }
  const hush = onPath('hush', env);
  if (hush) return { command: hush, args: daemonArgs, helpArgs: help, env, cwd, describe: hush };
  throw new Error(`no Hush daemon found: set HUSH_BIN, or run the app from the Hush repository (looked for ${binJs} and ${cliTs})`);
}

/**
 * Does this daemon's `device start` accept an option (e.g. --app-channel)? Asks its --help, so an app
 * newer than its daemon falls back instead of failing to start it. Never throws.
 */
export function daemonSupports(cmd: DaemonCommand, option: string, timeoutMs = 30_000): Promise<boolean> {
  return new Promise((resolve) => {
    let out = '';
    let child;
    try {
      child = spawn(cmd.command, cmd.helpArgs, { cwd: cmd.cwd, env: cmd.env, stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      resolve(false);
      return;
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      if (out.length < 65536) out += b.toString('utf8');
    });
    child.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve(code === 0 && out.split(/[\s,]+/).includes(option));
    });
  });
}
