/**
 * The page: starts the engine's worker, exposes its comlink proxy as `window.pierce` (test
 * hook: `await window.pierce.status()`), and renders the UI.
 */
import * as Comlink from 'comlink';
import { render } from 'preact';
import type { PierceApi } from '../../worker/api.ts';
import { App } from './app.tsx';
import { readPageOptions } from './fragment.ts';
import './style.css';

const worker = new Worker(new URL('../../worker/engine-worker.ts', import.meta.url), { type: 'module', name: 'pierce-engine' });
const api = Comlink.wrap<PierceApi>(worker);
(window as unknown as { pierce: typeof api }).pierce = api;

const options = readPageOptions();
// The terminal code is a chunk of its own, loaded on first use; with a terminal asked for in
// the URL it is fetched now, beside the worker's join, rather than after it.
if (options.ssh) void Promise.all([import('@xterm/xterm'), import('@xterm/addon-fit')]);

const root = document.getElementById('app')!;
root.textContent = '';
render(<App api={api} options={options} />, root);
root.dataset['ready'] = 'true';
