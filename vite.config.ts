import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const ROOT = fileURLToPath(new URL('.', import.meta.url));
const ADMIN_SRC = fileURLToPath(new URL('./src/admin/', import.meta.url));
/** A chunk only the admin console uses (its entry, or code of src/admin alone). */
const adminOnly = (c: { name: string; isEntry?: boolean; moduleIds: readonly string[] }): boolean =>
  (c.isEntry === true && c.name === 'admin') || (c.moduleIds.length > 0 && c.moduleIds.every((id) => id.startsWith(ADMIN_SRC)));

export default defineConfig({
  root: '.',
  publicDir: 'public',
  // Relative asset URLs: dist/ can be served from any path of any static server.
  base: './',
  // `PIERCE_CONTROL=http://127.0.0.1:8080 npm run dev`: the dev server passes /api to that control
  // server, so that the admin console (/admin.html) works from the dev server too.
  server: { host: '127.0.0.1', port: 5173, ...(process.env['PIERCE_CONTROL'] ? { proxy: { '/api': { target: process.env['PIERCE_CONTROL'], changeOrigin: true } } } : {}) },
  // Pre-bundle the worker's dependencies too (noble, …), so that the dev server does not
  // discover them late and reload the page (which would lose a #authkey fragment already read).
  optimizeDeps: { entries: ['index.html', 'admin.html', 'worker/engine-worker.ts'] },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    rolldownOptions: {
      // Two pages: the browser node (index.html) and the admin console (admin.html, served by
      // `pierce control --web dist` at /admin; docs/admin-console.md).
      input: { index: `${ROOT}index.html`, admin: `${ROOT}admin.html` },
      output: {
        // The console's own code goes to assets/admin/, so that dist/assets/*.js stays the
        // browser node's JavaScript (test/bench/browser.ts weighs exactly that). Code both
        // pages use (preact) stays in assets/ and counts for the browser node.
        entryFileNames: (c) => (adminOnly(c) ? 'assets/admin/[name]-[hash].js' : 'assets/[name]-[hash].js'),
        chunkFileNames: (c) => (adminOnly(c) ? 'assets/admin/[name]-[hash].js' : c.moduleIds.some((id) => id.includes('/node_modules/preact/')) ? 'assets/shared-[hash].js' : 'assets/[name]-[hash].js'),
        assetFileNames: (a) => ((a.originalFileNames ?? []).length > 0 && a.originalFileNames.every((f) => f.startsWith('src/admin/') || f === 'admin.html') ? 'assets/admin/[name]-[hash][extname]' : 'assets/[name]-[hash][extname]'),
      },
    },
  },
  // The engine's worker is an ES module worker (new Worker(url, { type: 'module' })).
  worker: { format: 'es' },
  // preact's automatic JSX runtime (vite 8 transforms with oxc).
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
});
