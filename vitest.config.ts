import { defineConfig } from 'vitest/config';

// One runner for everything: unit (fast, in-memory), interop (real peers in network
// namespaces; needs root) and, later, e2e (headless Chromium).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 60_000,
    // Interop tests create network namespaces with fixed names; run files one at a time.
    fileParallelism: false,
    reporters: ['default'],
  },
});
