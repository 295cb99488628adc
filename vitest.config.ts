import { defineConfig } from 'vitest/config';

// Multi-process tests (real daemons, a real browser) run one file at a time after the unit tests:
// two of them side by side on two cores starve each other's daemons and the tests measure the load.
const MULTI_PROCESS = ['test/e2e-*.test.ts', 'test/emulation-*.test.ts', 'test/app-browser.test.ts', 'test/net-revocation.test.ts'];

export default defineConfig({
  test: {
    setupFiles: ['./runtime/polyfill.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: MULTI_PROCESS, maxWorkers: 2, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: 'multi-process', include: MULTI_PROCESS, maxWorkers: 1, fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
