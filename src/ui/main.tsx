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

const root = document.getElementById('app')!;
root.textContent = '';
render(<App api={api} options={readPageOptions()} />, root);
root.dataset['ready'] = 'true';
