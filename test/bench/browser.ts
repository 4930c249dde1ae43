/**
 * The browser node's budgets (issue 8), in the browser lab (test/e2e/lab.ts: Chromium behind
 * one NAT, sshd behind `pierce up` behind another, control, a relay with STUN and UDP leases;
 * network namespaces, needs root):
 *
 *   weight       all JavaScript of `vite build` (page, worker, xterm), gzip -9 (budget 250 KB)
 *   prompt       page load → shell prompt in the terminal, for a returning browser: keys in
 *                IndexedDB, `#ssh=root@host` in the fragment (rejoin, netmap, relay, SSH key
 *                exchange and publickey auth, PTY, the shell's prompt drawn). Budget 1.5 s.
 *                Baseline in the same run: OpenSSH's `ssh root@host true` through `pierce nc`
 *                of a `pierce up` node in the same namespace (process start included).
 *   bulk         `head -c MB /dev/zero; exit` typed into the terminal, until the session ends: over a leased direct path and over the relay (`#leases=0`). Goal
 *                ≥ 100 Mbit/s. Baselines: OpenSSH through `pierce nc` of a `pierce up` node
 *                in the browser's namespace, direct and `--relay-only` (the relay's figure),
 *                with a PTY (`ssh -tt`, like the browser's shell) and without one.
 *
 *   npx tsx test/bench/browser.ts [--runs N] [--mb N] [--json]
 */
import { gzipSync } from 'node:zlib';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { PIERCE_MJS, cleanupAll, execIn, spawnPierce, tempPath, waitFor, type ChildHandle } from '../interop/lab.ts';
import { sshOptions } from '../interop/lab/sshd.ts';
import { buildPage, startBrowserLab, type BrowserLab } from '../e2e/lab.ts';
import { benchArgs } from './args.ts';

const args = benchArgs('npx tsx test/bench/browser.ts [--runs N] [--mb N] [--json]');
const json = args.json;
const RUNS = args.num('--runs', 5);
const MB = args.num('--mb', 50);
const BYTES = MB * 1_000_000;
const progress = (m: string): void => void process.stderr.write(`browser bench: ${m}\n`);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mbit = (bytes: number, ms: number): number => (bytes * 8) / 1e6 / (ms / 1000);

function pageWeight(dir: string): { files: { name: string; bytes: number; gzip: number }[]; totalGzip: number; totalBytes: number } {
  const assets = join(dir, 'assets');
  const files = readdirSync(assets)
    .filter((f) => f.endsWith('.js'))
    .map((name) => {
      const b = readFileSync(join(assets, name));
      return { name, bytes: b.length, gzip: gzipSync(b, { level: 9 }).length };
    });
  return { files, totalGzip: files.reduce((s, f) => s + f.gzip, 0), totalBytes: files.reduce((s, f) => s + f.bytes, 0) };
}

const PROMPT = /root@\S+:\S*#/;

async function termText(page: Page, nth = 0): Promise<string> {
  return page.getByTestId('terminal').nth(nth).locator('.xterm-rows').innerText();
}

/** A page of `ctx` joined (once per context) with its browser key authorized on the host. */
async function joinContext(lab: BrowserLab, ctx: BrowserContext, fragment: Record<string, string>): Promise<void> {
  const page = await ctx.newPage();
  await page.goto(lab.pageUrl(fragment));
  await page.locator('[data-testid="peer"][data-name="host"][data-online="true"]').waitFor({ timeout: 60_000 });
  const line: string = await page.evaluate(() => (window as unknown as { pierce: { publicKeyLine(): Promise<string> } }).pierce.publicKeyLine());
  lab.authorize(line);
  await page.close();
}

/**
 * Loads the page of a joined context with #ssh=root@host; ms from the navigation's start (the
 * page's own clock) to the prompt drawn. Watched from inside the page with a MutationObserver:
 * polling the terminal's text from here would force layouts and slow down what is measured.
 */
async function timeToPrompt(lab: BrowserLab, ctx: BrowserContext, extra: Record<string, string> = {}): Promise<{ ms: number; page: Page }> {
  const page = await ctx.newPage();
  const f = new URLSearchParams({ ssh: 'root@host', ...extra });
  await page.goto(`${lab.pageBase}?control=${encodeURIComponent(lab.controlUrl)}#${f.toString()}`);
  // A string, not a function: tsx (esbuild keepNames) would wrap a function's inner arrows in
  // a `__name` helper that does not exist in the page.
  const ms = (await page.evaluate(`new Promise((resolve) => {
    const re = new RegExp(${JSON.stringify(PROMPT.source)});
    let obs;
    const check = () => {
      const rows = document.querySelector('[data-testid="terminal"] .xterm-rows');
      if (rows && re.test(rows.textContent || '')) {
        obs.disconnect();
        resolve(performance.now());
      }
    };
    obs = new MutationObserver(check);
    obs.observe(document.body, { subtree: true, childList: true, characterData: true });
    check();
  })`)) as number;
  return { ms, page };
}

/**
 * Types the bulk command into the open terminal, then `exit`; ms until the session is closed,
 * seen by a MutationObserver on the terminal's data-state (no polling from here).
 */
async function bulkInTerminal(page: Page): Promise<number> {
  const term = page.getByTestId('terminal').first();
  await term.click();
  await page.keyboard.type(`head -c ${BYTES} /dev/zero; exit`);
  const closed = page.evaluate(`new Promise((resolve) => {
    const el = document.querySelector('[data-testid="terminal"]');
    const obs = new MutationObserver(() => {
      if (el.getAttribute('data-state') === 'closed') {
        obs.disconnect();
        resolve(performance.now());
      }
    });
    obs.observe(el, { attributes: true, attributeFilter: ['data-state'] });
  })`) as Promise<number>;
  const t0 = (await page.evaluate('performance.now()')) as number;
  await page.keyboard.press('Enter');
  return (await closed) - t0;
}

async function main(): Promise<void> {
  progress('building the page');
  const pageDir = await buildPage();
  const weight = pageWeight(pageDir);
  progress(`page JavaScript: ${(weight.totalGzip / 1024).toFixed(1)} KB gzip`);
  progress('starting the lab');
  const lab = await startBrowserLab({ pageDir });
  const baseNodes: ChildHandle[] = [];
  try {
    // Baselines: pierce up nodes in the browser's namespace, one direct, one relay-only.
    const dir = tempPath('bench-base');
    const base = async (name: string, extra: string[]): Promise<string> => {
      const sock = `${dir}-${name}.sock`;
      const p = spawnPierce(lab.web.ns, ['up', '--control', lab.controlUrl, '--authkey', lab.authKey, '--hostname', name, '--state', `${dir}-${name}`, '--socket', sock, '--port', '0', ...extra], `pierce up ${name}`);
      baseNodes.push(p);
      await p.waitForLine(new RegExp(`pierce up: ${name} \\S+ \\S+ running`), 60_000);
      return sock;
    };
    const direct = await base('base-direct', []);
    const relay = await base('base-relay', ['--relay-only']);
    await execIn(lab.web.ns, process.execPath, [PIERCE_MJS, 'ping', '--socket', direct, 'host', '--until-direct'], { timeoutMs: 60_000, check: false });
    const ssh = (sock: string, cmd: string, pty: boolean): string[] => [...sshOptions(lab.keys, [`ProxyCommand=${process.execPath} ${PIERCE_MJS} nc --socket ${sock} %h %p`]), ...(pty ? ['-tt'] : []), 'root@host', cmd];
    const timeSsh = async (sock: string, cmd: string, pipe = '', pty = false): Promise<number> => {
      const quoted = ssh(sock, cmd, pty).map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
      const t0 = performance.now();
      const r = await execIn(lab.web.ns, 'sh', ['-c', `ssh ${quoted}${pipe}`], { timeoutMs: 300_000, check: false });
      const ms = performance.now() - t0;
      if (r.code !== 0) throw new Error(`ssh ${cmd}: exit ${r.code}: ${r.stderr}`);
      if (pipe && Number(r.stdout.trim()) !== BYTES) throw new Error(`ssh ${cmd}: got ${r.stdout.trim()} bytes`);
      return ms;
    };

    const ctxLease = await lab.browser.newContext();
    const ctxRelay = await lab.browser.newContext();
    await joinContext(lab, ctxLease, {});
    await joinContext(lab, ctxRelay, { leases: '0', hostname: 'web-relay' });

    const prompt: number[] = [];
    const promptBase: number[] = [];
    const bulk = { direct: [] as number[], relay: [] as number[], sshDirect: [] as number[], sshRelay: [] as number[], ptyDirect: [] as number[], ptyRelay: [] as number[] };
    for (let i = 0; i < RUNS; i++) {
      progress(`run ${i + 1}/${RUNS}`);
      promptBase.push(await timeSsh(direct, 'true'));
      const { ms, page } = await timeToPrompt(lab, ctxLease);
      prompt.push(ms);
      // The lease path needs a moment to turn direct after a fresh load.
      await page.locator('[data-testid="peer"][data-name="host"][data-path="direct"]').waitFor({ timeout: 60_000 });
      bulk.direct.push(mbit(BYTES, await bulkInTerminal(page)));
      await page.close();
      const r = await timeToPrompt(lab, ctxRelay, { leases: '0' });
      bulk.relay.push(mbit(BYTES, await bulkInTerminal(r.page)));
      await r.page.close();
      const setupDirect = await timeSsh(direct, 'true');
      bulk.sshDirect.push(mbit(BYTES, (await timeSsh(direct, `head -c ${BYTES} /dev/zero`, ' | wc -c')) - setupDirect));
      const setupRelay = await timeSsh(relay, 'true');
      bulk.sshRelay.push(mbit(BYTES, (await timeSsh(relay, `head -c ${BYTES} /dev/zero`, ' | wc -c')) - setupRelay));
      // The same through a PTY (ssh -tt), as the browser's terminal session has one.
      bulk.ptyDirect.push(mbit(BYTES, (await timeSsh(direct, `head -c ${BYTES} /dev/zero`, ' 2>/dev/null | wc -c', true)) - setupDirect));
      bulk.ptyRelay.push(mbit(BYTES, (await timeSsh(relay, `head -c ${BYTES} /dev/zero`, ' 2>/dev/null | wc -c', true)) - setupRelay));
    }
    await ctxLease.close();
    await ctxRelay.close();

    const out = {
      weight,
      prompt: { runsMs: prompt.map(Math.round), medianMs: Math.round(median(prompt)), baselineRunsMs: promptBase.map(Math.round), baselineMedianMs: Math.round(median(promptBase)) },
      bulkMbit: Object.fromEntries(Object.entries(bulk).map(([k, v]) => [k, { runs: v.map((x) => Math.round(x)), median: Math.round(median(v)) }])),
      mb: MB,
      runs: RUNS,
    };
    if (json) console.log(JSON.stringify(out, null, 2));
    else {
      console.log('\nPage weight (vite build, gzip -9)\n');
      console.log('| file | bytes | gzip |');
      console.log('|---|---|---|');
      for (const f of weight.files) console.log(`| ${f.name} | ${f.bytes} | ${f.gzip} |`);
      console.log(`| **all JavaScript** | ${weight.totalBytes} | **${(weight.totalGzip / 1024).toFixed(1)} KB** (budget 250 KB) |`);
      console.log(`\nTime to a shell prompt (${RUNS} runs)\n`);
      console.log('| | median | runs (ms) |');
      console.log('|---|---|---|');
      console.log(`| page load → prompt (returning browser, budget 1.5 s) | ${out.prompt.medianMs} ms | ${out.prompt.runsMs.join(', ')} |`);
      console.log(`| baseline: OpenSSH \`ssh root@host true\` via pierce nc | ${out.prompt.baselineMedianMs} ms | ${out.prompt.baselineRunsMs.join(', ')} |`);
      console.log(`\nBulk: head -c ${MB}M /dev/zero inside SSH (${RUNS} runs, Mbit/s)\n`);
      console.log('| path | browser terminal (PTY) | OpenSSH -tt via pierce nc (PTY) | ratio | OpenSSH via pierce nc (no PTY) | ratio |');
      console.log('|---|---|---|---|---|---|');
      const m = out.bulkMbit as Record<string, { median: number; runs: number[] }>;
      const row = (name: string, b: string, pty: string, raw: string): void =>
        console.log(`| ${name} | ${m[b]!.median} (${m[b]!.runs.join(', ')}) | ${m[pty]!.median} (${m[pty]!.runs.join(', ')}) | ${(m[b]!.median / m[pty]!.median).toFixed(2)}× | ${m[raw]!.median} (${m[raw]!.runs.join(', ')}) | ${(m[b]!.median / m[raw]!.median).toFixed(2)}× |`);
      row('direct (leased UDP)', 'direct', 'ptyDirect', 'sshDirect');
      row('relay', 'relay', 'ptyRelay', 'sshRelay');
    }
  } finally {
    await Promise.all(baseNodes.map((p) => p.kill(2000)));
    await lab.destroy();
    await cleanupAll();
  }
}

main().catch(async (e) => {
  console.error(e);
  await cleanupAll().catch(() => {});
  process.exit(1);
});
