/**
 * Builds the desktop app into desktop-app/dist/ with esbuild:
 *   renderer.js    the UI (browser IIFE; the same file in Electron and in a browser)
 *   dev-bridge.js  the browser-only bridge shim (window.hush over fetch)
 *   styles.css
 *   index.html     the Electron page (no dev bridge; CSP forbids any network access)
 *   browser.html   the browser page (dev bridge first; CSP allows loopback HTTP only)
 *   main.mjs, preload.cjs   Electron main and the sandboxed preload
 *
 *   npx tsx desktop-app/build.ts             # everything
 *   npx tsx desktop-app/build.ts --renderer  # only what the browser mode needs
 */
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const DIST = join(here, 'dist');

const BASE_CSP = ["default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:", "base-uri 'none'", "form-action 'none'"];
/** Electron: the page talks to main over IPC only, so it may open no connection at all. */
export const CSP_ELECTRON = [...BASE_CSP, "connect-src 'none'"].join('; ');
/** Browser: fetch to the daemon on loopback (or to serve.ts's own origin, which proxies the API). */
export const CSP_BROWSER = [...BASE_CSP, "connect-src 'self' http://127.0.0.1:* http://localhost:*"].join('; ');

export interface BuildOptions {
  outdir?: string;
  /** Also build Electron main and preload (not needed for browser mode). */
  electron?: boolean;
  minify?: boolean;
}

function page(template: string, csp: string, scripts: string[]): string {
  return template.replace('%CSP%', csp).replace('%SCRIPTS%', scripts.map((s) => `<script src="${s}"></script>`).join('\n    '));
}

export async function buildApp(opts: BuildOptions = {}): Promise<string> {
  const outdir = resolve(opts.outdir ?? DIST);
  mkdirSync(outdir, { recursive: true });
  const common = { bundle: true, minify: opts.minify ?? false, sourcemap: true, legalComments: 'none', logLevel: 'warning' } as const;
  const jobs: Promise<unknown>[] = [
    build({ ...common, entryPoints: [join(here, 'renderer', 'app.ts')], outfile: join(outdir, 'renderer.js'), format: 'iife', platform: 'browser', target: ['chrome120'] }),
    build({ ...common, entryPoints: [join(here, 'renderer', 'dev-bridge.ts')], outfile: join(outdir, 'dev-bridge.js'), format: 'iife', platform: 'browser', target: ['chrome120'] }),
  ];
  if (opts.electron !== false) {
    jobs.push(
      build({ ...common, entryPoints: [join(here, 'main', 'main.ts')], outfile: join(outdir, 'main.mjs'), format: 'esm', platform: 'node', target: ['node20'], external: ['electron'] }),
      // Sandboxed preloads cannot import other files: one CommonJS bundle, electron external.
      build({ ...common, entryPoints: [join(here, 'preload', 'preload.ts')], outfile: join(outdir, 'preload.cjs'), format: 'cjs', platform: 'node', target: ['node20'], external: ['electron'] }),
    );
  }
  await Promise.all(jobs);
  copyFileSync(join(here, 'renderer', 'styles.css'), join(outdir, 'styles.css'));
  const template = readFileSync(join(here, 'renderer', 'index.html'), 'utf8');
  writeFileSync(join(outdir, 'index.html'), page(template, CSP_ELECTRON, ['renderer.js']));
  writeFileSync(join(outdir, 'browser.html'), page(template, CSP_BROWSER, ['dev-bridge.js', 'renderer.js']));
  return outdir;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const rendererOnly = process.argv.includes('--renderer');
  buildApp({ electron: !rendererOnly, minify: process.argv.includes('--minify') }).then(
    (dir) => console.log(`built the Hush app into ${dir}`),
    (e: unknown) => {
      console.error((e as Error).message);
      process.exit(1);
    },
  );
}
