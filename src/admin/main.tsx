/** The admin console (admin.html, served by `pierce control --web DIR` at /admin). */
import { render } from 'preact';
import { App } from './app.tsx';
import '../ui/style.css';
import './admin.css';

const root = document.getElementById('app')!;
root.textContent = '';
render(<App />, root);
root.dataset['ready'] = 'true';
