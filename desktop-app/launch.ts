/**
 * `npm run app`: builds the desktop app and starts it in Electron when Electron's binary is installed;
 * otherwise says plainly how to run the same UI in a browser instead.
 *
 *   npx tsx desktop-app/launch.ts [--tray] [electron args...]
 */
import '../runtime/polyfill.ts';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildApp, DIST } from './build.ts';

/** Path of the Electron binary, or null when the npm package is installed without it. */
export function electronBinary(): string | null {
  if (process.env.HUSH_ELECTRON && existsSync(process.env.HUSH_ELECTRON)) return process.env.HUSH_ELECTRON;
  try {
    // The electron package exports the binary path, and throws when its download never happened.
    const p = createRequire(import.meta.url)('electron') as unknown;
    return typeof p === 'string' && existsSync(p) ? p : null;
  } catch {
    return null;
  }
}

export const NO_ELECTRON_HELP = `Electron's binary is not installed here, so the desktop window cannot open.
(The electron npm package fetches its binary at install time, and this project skips that
script. With network access, fetch it with: node node_modules/electron/install.js
or point HUSH_ELECTRON at an Electron 41 binary.)

The same app runs in your browser instead:

  npx tsx peers/cli.ts app --browser          # starts or attaches to your daemon and prints the address
  npx tsx desktop-app/serve.ts --home ~/.hush # with a daemon you started yourself

Open the printed http://127.0.0.1:.../#token=... address in any browser on this machine.`;

async function main(argv: string[]): Promise<number> {
  const bin = electronBinary();
  if (!bin) {
    console.error(NO_ELECTRON_HELP);
    return 2;
  }
  await buildApp({ electron: true });
  const child = spawn(bin, [join(DIST, 'main.mjs'), ...argv], { stdio: 'inherit', env: { ...process.env, ELECTRON_RUN_AS_NODE: undefined } });
  // Electron quits cleanly (stopping the daemon it started) on SIGTERM; pass ours on.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => child.kill(sig));
  return new Promise((ok) => child.on('exit', (code, signal) => ok(code ?? (signal ? 1 : 0))));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(`${(e as Error).name}: ${(e as Error).message}`);
      process.exit(1);
    },
  );
}
