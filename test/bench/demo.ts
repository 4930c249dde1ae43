/**
 * The embedded default (`npm start`, issue 9), timed on this machine:
 *
 *   cold start   `npm start` on an empty data folder until it prints the URL: vite build,
 *                control (new SQLite), relay, demo host registered and running.
 *                Baseline in the same run: `npm run build` alone (the page's build).
 *   resume       the second `npm start` on the same folder (same keys, same nodes).
 *   first shell  a fresh browser opens the printed URL with `&ssh=USER@demo-host`: join with
 *                the demo key, netmap, relay, WireGuard, SSH to the built-in server, prompt.
 *                From the navigation's start (the page's clock) to the prompt drawn.
 *                Baseline: OpenSSH `ssh -tt USER@demo-host` through `pierce nc` of a node
 *                already in the mesh, until its prompt (process start included).
 *
 *   npx tsx test/bench/demo.ts [--runs N] [--json]      (needs Debian's chromium)
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pty from 'node-pty';
import { startNode } from '../../gateway/src/node/daemon.ts';
import { launchChromium } from '../e2e/browser.ts';
import { benchArgs } from './args.ts';

const args = benchArgs('npx tsx test/bench/demo.ts [--runs N] [--json]');
const RUNS = args.num('--runs', 3);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PIERCE = join(ROOT, 'gateway/bin/pierce.mjs');
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const progress = (m: string): void => void process.stderr.write(`demo bench: ${m}\n`);
const USER = userInfo().username;
const PROMPT = USER === 'root' ? '# ' : '$ ';

function timed(cmd: string, argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(cmd, argv, { cwd: ROOT, stdio: 'ignore' });
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${cmd} ${argv.join(' ')} exited ${code}`))));
  });
}

/** `npm start` until its JSON line; the running process and the elapsed ms. */
function npmStart(data: string): Promise<{ proc: ChildProcess; ms: number; info: { url: string; adminPassword: string } }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const proc = spawn('npm', ['start', '--', '--data', data, '--listen', '127.0.0.1:0', '--json'], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve({ proc, ms: performance.now() - t0, info: JSON.parse(line) as { url: string; adminPassword: string } });
    });
    proc.on('exit', (code) => reject(new Error(`npm start exited ${code}: ${out}`)));
  });
}

function stop(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    proc.removeAllListeners('exit');
    proc.on('exit', () => resolve());
    process.kill(-proc.pid!, 'SIGINT');
  });
}

const dir = mkdtempSync(join(tmpdir(), 'pierce-bench-demo-'));
const browser = await launchChromium();
const cold: number[] = [];
const build: number[] = [];
const resume: number[] = [];
const shell: number[] = [];
const baseline: number[] = [];
try {
  for (let i = 0; i < RUNS; i++) {
    build.push(await timed('npm', ['run', 'build', '--', '--logLevel', 'warn']));
    const data = join(dir, `data-${i}`);
    const first = await npmStart(data);
    cold.push(first.ms);
    await stop(first.proc);
    const again = await npmStart(data);
    resume.push(again.ms);
    // First visit of a fresh browser, straight to a shell.
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${again.info.url}&ssh=${encodeURIComponent(`${USER}@demo-host`)}`);
    const ms = (await page.evaluate(`new Promise((resolve) => {
      let obs;
      const check = () => {
        const rows = document.querySelector('[data-testid="terminal"] .xterm-rows');
        if (rows && (rows.textContent || '').includes(${JSON.stringify(PROMPT)})) { obs.disconnect(); resolve(performance.now()); }
      };
      obs = new MutationObserver(check);
      obs.observe(document.body, { subtree: true, childList: true, characterData: true });
      check();
    })`)) as number;
    shell.push(ms);
    await ctx.close();
    // Baseline: OpenSSH from a node already in the mesh (a second key of the demo's kind).
    const key = decodeURIComponent(/authkey=([^&]+)/.exec(again.info.url)![1]!);
    const client = await startNode({ controlUrl: new URL(again.info.url).origin, stateDir: join(dir, `client-${i}`), socketPath: join(dir, `client-${i}.sock`), hostname: 'bench-client', authKey: key, ephemeral: true, direct: { port: 0 }, log: () => {} });
    await client.engine.whenRunning();
    for (let k = 0; k < 200 && !client.engine.status().peers.some((p) => p.name === 'demo-host' && p.online); k++) await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const term = pty.spawn('ssh', ['-F', '/dev/null', '-tt', '-o', `ProxyCommand=${process.execPath} ${PIERCE} nc --socket ${join(dir, `client-${i}.sock`)} %h %p`, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', `${USER}@demo-host`], { cols: 100, rows: 30 });
      let out = '';
      const t = setTimeout(() => reject(new Error(`no prompt from ssh: ${out}`)), 30_000);
      term.onData((d) => {
        out += d;
        if (out.includes(PROMPT)) {
          clearTimeout(t);
          baseline.push(performance.now() - t0);
          term.kill();
          resolve();
        }
      });
    });
    await client.stop();
    await stop(again.proc);
    progress(`run ${i + 1}/${RUNS}: build ${build.at(-1)!.toFixed(0)} ms, cold start ${cold.at(-1)!.toFixed(0)} ms, resume ${resume.at(-1)!.toFixed(0)} ms, browser first shell ${shell.at(-1)!.toFixed(0)} ms, OpenSSH shell ${baseline.at(-1)!.toFixed(0)} ms`);
  }
} finally {
  await browser.close();
  rmSync(dir, { recursive: true, force: true });
}
const r = { runs: RUNS, buildMs: median(build), coldStartMs: median(cold), resumeMs: median(resume), browserFirstShellMs: median(shell), opensshShellMs: median(baseline) };
if (args.json) console.log(JSON.stringify(r));
else {
  console.log(`\nnpm start, the embedded default (median of ${RUNS})`);
  console.log(`  cold start to URL      ${r.coldStartMs.toFixed(0)} ms   (npm run build alone: ${r.buildMs.toFixed(0)} ms, ratio ${(r.coldStartMs / r.buildMs).toFixed(2)}×)`);
  console.log(`  resume to URL          ${r.resumeMs.toFixed(0)} ms`);
  console.log(`  browser: URL → shell   ${r.browserFirstShellMs.toFixed(0)} ms   (OpenSSH via pierce nc to the same host: ${r.opensshShellMs.toFixed(0)} ms, ratio ${(r.browserFirstShellMs / r.opensshShellMs).toFixed(2)}×)`);
}
