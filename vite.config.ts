import { defineConfig } from 'vite';

export default defineConfig({
  root: '.',
  publicDir: 'public',
  // Relative asset URLs: dist/ can be served from any path of any static server.
  base: './',
  server: { host: '127.0.0.1', port: 5173 },
  // Pre-bundle the worker's dependencies too (noble, …), so that the dev server does not
  // discover them late and reload the page (which would lose a #authkey fragment already read).
  optimizeDeps: { entries: ['index.html', 'worker/engine-worker.ts'] },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022' },
  // The engine's worker is an ES module worker (new Worker(url, { type: 'module' })).
  worker: { format: 'es' },
  // preact's automatic JSX runtime (vite 8 transforms with oxc).
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
});
