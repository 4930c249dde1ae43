/**
 * `npm start` on a clean data folder, as a person would use it, in Debian's Chromium:
 *
 *   npm start -- --data DIR --listen 127.0.0.1:0 --json    (vite build, then `pierce demo`)
 *   → the printed URL → the page joins by itself → demo-host online → one click "SSH as USER"
 *   → a shell on the demo host through its built-in SSH server → Ctrl-C stops everything
 *   → a second `npm start` resumes the same mesh (same host address, same link) → shell again.
 *
 * The npm process runs in a process group of its own and gets SIGINT like a terminal's Ctrl-C.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, newPage } from './browser.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Started {
  proc: ChildProcess;
  info: { url: string; admin: string; adminUser: string; adminPassword: string; data: string };
  stderr: () => string;
}

let dir: string;
let browser: Browser;
const procs = new Set<ChildProcess>();

/** `npm start` with a data folder; resolves with the JSON line it prints once everything runs. */
function npmStart(data: string): Promise<Started> {
  return new Promise((resolve, reject) => {
    const proc = spawn('npm', ['start', '--', '--data', data, '--listen', '127.0.0.1:0', '--json'], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    procs.add(proc);
    let out = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`npm start printed no URL within 120 s\nstdout: ${out}\nstderr: ${err}`)), 120_000);
    proc.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        clearTimeout(t);
        resolve({ proc, info: JSON.parse(line) as Started['info'], stderr: () => err });
      }
    });
    proc.stderr!.on('data', (d) => (err += d));
    proc.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`npm start exited with ${code}\nstdout: ${out}\nstderr: ${err}`));
    });
  });
}

/**
 * Ctrl-C: SIGINT to the whole process group, as a terminal sends it. Resolves once npm has
 * exited (npm itself ends by the signal, as in a shell: exit 130) and says whether any process
 * of the group was still alive 2 s later.
 */
function ctrlC(s: Started): Promise<{ code: number | null; signal: string | null; leftovers: boolean }> {
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      process.kill(-s.proc.pid!, 'SIGKILL');
      resolve({ code: -1, signal: 'timeout', leftovers: true });
    }, 30_000);
    s.proc.removeAllListeners('exit');
    s.proc.on('exit', (code, signal) => {
      clearTimeout(t);
      procs.delete(s.proc);
      setTimeout(() => {
        let leftovers = true;
        try {
          process.kill(-s.proc.pid!, 0);
        } catch {
          leftovers = false;
        }
        resolve({ code, signal, leftovers });
      }, 2000);
    });
    process.kill(-s.proc.pid!, 'SIGINT');
  });
}

async function shellThroughPage(page: Page, url: string, login: string): Promise<string> {
  await page.goto(url);
  const host = page.locator('[data-testid="peer"][data-name="demo-host"][data-online="true"]');
  await host.waitFor({ timeout: 45_000 });
  await host.locator('[data-testid="peer-ssh-quick"]').click();
  const term = page.getByTestId('terminal').last();
  await expect.poll(() => term.getAttribute('data-state'), { timeout: 30_000 }).toBe('open');
  await term.click();
  await page.keyboard.type('echo demo-$((6*7)) as $(id -un)\n');
  let text = '';
  await expect
    .poll(async () => {
      text = await term.locator('.xterm-rows').innerText();
      return text.includes(`demo-42 as ${login}`);
    }, { timeout: 20_000 })
    .toBe(true);
  return text;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pierce-demo-'));
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close().catch(() => {});
  for (const p of procs) {
    try {
      process.kill(-p.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('npm start: the embedded default', () => {
  it('runs control, relay and a demo host; the printed URL joins and one click opens a shell; Ctrl-C stops; a second start resumes the same mesh', async () => {
    const data = join(dir, 'data');
    const login = userInfo().username;
    const first = await npmStart(data);
    expect(first.info.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/#authkey=pak_[^&]+&ephemeral=1&user=/);
    const ctx = await browser.newContext({ viewport: { width: 1000, height: 800 } });
    const { page, log } = await newPage(ctx);
    try {
      await shellThroughPage(page, first.info.url, login);
      // The key left the address bar once read.
      expect(page.url()).not.toContain('authkey=');
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- page log ---\n${log.slice(-30).join('\n')}\n--- demo stderr ---\n${first.stderr().slice(-2000)}`);
    } finally {
      await ctx.close();
    }
    const hostAddr = await demoHostAddr(first.info.url, first.info.adminPassword);
    const stop1 = await ctrlC(first);
    expect(stop1.code === 0 || stop1.signal === 'SIGINT', JSON.stringify(stop1)).toBe(true);
    expect(stop1.leftovers).toBe(false);
    expect(first.stderr()).toContain('pierce demo: stopped');

    const second = await npmStart(data);
    expect(second.info.url.split('#')[1]).toBe(first.info.url.split('#')[1]);
    expect(second.info.adminPassword).toBe(first.info.adminPassword);
    expect(await demoHostAddr(second.info.url, second.info.adminPassword)).toBe(hostAddr);
    const ctx2 = await browser.newContext();
    const p2 = await newPage(ctx2);
    try {
      await shellThroughPage(p2.page, second.info.url, login);
    } finally {
      await ctx2.close();
    }
    const stop2 = await ctrlC(second);
    expect(stop2.leftovers).toBe(false);
    expect(second.stderr()).toContain('pierce demo: stopped');
  }, 300_000);
});

/** The demo host's tailnet address, read through the admin console's login and API. */
async function demoHostAddr(url: string, password: string): Promise<string> {
  const origin = new URL(url).origin;
  const login = await fetch(`${origin}/api/v1/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'admin', password }) });
  expect(login.status).toBe(200);
  const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
  const nodes = (await (await fetch(`${origin}/api/v1/nodes`, { headers: { cookie } })).json()) as { nodes: { name: string; addresses: string[] }[] };
  const host = nodes.nodes.find((n) => n.name === 'demo-host');
  expect(host, JSON.stringify(nodes)).toBeDefined();
  return host!.addresses[0]!;
}
