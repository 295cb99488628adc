import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    setupFiles: ['./runtime/polyfill.ts'],
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores: onnxruntime already uses both; more workers only thrash.
    maxWorkers: 2,
    pool: 'forks',
  },
});
