/**
 * Share links for untrusted devices, end to end in Debian's Chromium, on the embedded demo mesh
 * (`startDemo`: control with the page, relay, demo-host with the built-in SSH server), with a
 * policy that lets tag:untrusted reach the demo host's port 22 and log in as GUEST only:
 *
 *   pierce share create --tags tag:untrusted --ttl 1h --uses 1 --to GUEST@demo-host
 *   → a fresh browser context opens the link → an in-memory session (no IndexedDB) opens a
 *     shell as GUEST straight away → what the policy does not allow fails: root on the same
 *     host (refused by the built-in SSH server, saying why), another port (POLICY_DENIED)
 *   → the link is single-use: a second browser is refused
 *   → `pierce share revoke` ends the live session (the page says so; control lists no node)
 *   → a link with --ttl 8s: its session ends by itself when the time runs out
 *   → a link whose tab closes: its node leaves the mesh (ephemeral; 2 s here, 1 min in the demo).
 * Needs root (a local user GUEST is made for the run).
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemo, type Demo } from '../../gateway/src/cli/demo.ts';
import { createApiKey } from '../../gateway/src/control/state.ts';
import { createUser, removeAllUsers } from '../interop/lab/users.ts';
import { buildPages } from './admin-lab.ts';
import { launchChromium, newPage } from './browser.ts';

const PIERCE = fileURLToPath(new URL('../../gateway/bin/pierce.mjs', import.meta.url));

let dir: string;
let demo: Demo;
let browser: Browser;
let guest: string;
let apiKey: string;
const contexts: BrowserContext[] = [];

function pierce(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PIERCE, ...args, '--control', demo.control.url], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, PIERCE_API_KEY: apiKey } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function shareCreate(args: string[]): Promise<{ url: string; id: string }> {
  const r = await pierce(['share', 'create', ...args, '--json']);
  expect(r.code, r.stderr).toBe(0);
  const v = JSON.parse(r.stdout) as { url: string; share: { id: string } };
  return { url: v.url, id: v.share.id };
}

async function fresh(): Promise<{ page: Page; log: string[] }> {
  const ctx = await browser.newContext({ viewport: { width: 900, height: 700 } });
  contexts.push(ctx);
  return newPage(ctx);
}

async function typeAndWait(page: Page, cmd: string, want: RegExp): Promise<void> {
  const term = page.getByTestId('terminal').last();
  await term.click();
  await page.keyboard.type(`${cmd}\n`);
  await expect.poll(async () => want.test(await term.locator('.xterm-rows').innerText()), { timeout: 20_000 }).toBe(true);
}

async function nodeNames(): Promise<string[]> {
  const res = await fetch(`${demo.control.url}/api/v1/nodes`, { headers: { Authorization: `Bearer ${apiKey}` } });
  return ((await res.json()) as { nodes: { name: string }[] }).nodes.map((n) => n.name);
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the share test needs root (it makes a local user for the built-in SSH server)');
  dir = mkdtempSync(join(tmpdir(), 'pierce-share-'));
  guest = await createUser('unused-password');
  execFileSync('usermod', ['-s', '/bin/bash', guest]);
  await buildPages(join(dir, 'dist'));
  demo = await startDemo({ data: join(dir, 'data'), listen: '127.0.0.1:0', relayListen: '127.0.0.1:0', web: join(dir, 'dist'), sshUser: 'root', ephemeralTimeoutMs: 2000, log: () => {} });
  apiKey = (await createApiKey(demo.control.state.store, Date.now(), 'share test')).key;
  // The demo's policy, plus untrusted devices: the demo host's SSH port, as GUEST only.
  const policy = JSON.stringify({
    tagOwners: { 'tag:demo-host': ['demo@pierce.local'], 'tag:demo-browser': ['demo@pierce.local'], 'tag:untrusted': ['demo@pierce.local'] },
    acls: [
      { action: 'accept', src: ['tag:demo-browser'], dst: ['tag:demo-host:22'] },
      { action: 'accept', src: ['tag:untrusted'], dst: ['tag:demo-host:22'] },
    ],
    ssh: [
      { action: 'accept', src: ['tag:demo-browser'], dst: ['tag:demo-host'], users: ['root'] },
      { action: 'accept', src: ['tag:untrusted'], dst: ['tag:demo-host'], users: [guest] },
    ],
    tests: [{ src: 'tag:untrusted', accept: ['tag:demo-host:22'], deny: ['tag:demo-host:2222'] }],
  });
  await demo.control.state.setPolicy(policy);
  browser = await launchChromium();
}, 240_000);

afterAll(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close().catch(() => {});
  await demo?.stop();
  await removeAllUsers();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('pierce share: links for untrusted devices', () => {
  let first: { url: string; id: string };
  let page: Page;

  it('opens an in-memory session straight onto --to, limited by the policy for its tags', async () => {
    first = await shareCreate(['--tags', 'tag:untrusted', '--ttl', '1h', '--uses', '1', '--to', `${guest}@demo-host`]);
    expect(first.url).toMatch(new RegExp(`^${demo.control.url}/#authkey=pak_[^&]+&ephemeral=1&ssh=`));
    ({ page } = await fresh());
    await page.goto(first.url);
    const term = page.getByTestId('terminal').first();
    await expect.poll(() => term.getAttribute('data-state'), { timeout: 45_000 }).toBe('open');
    await typeAndWait(page, 'echo "I am $(id -un)"', new RegExp(`I am ${guest}`));
    // Nothing of the session is kept in the browser.
    expect(await page.evaluate('indexedDB.databases().then((d) => d.length)')).toBe(0);
    expect(await page.getByTestId('self').innerText()).toContain('ephemeral');
    // The tailnet identity is untrusted: root on the same host is refused by the SSH server…
    await page.locator('[data-testid="peer"][data-name="demo-host"] [data-testid="peer-ssh"]').click();
    await page.getByTestId('ssh-user').fill('root');
    await page.getByTestId('ssh-connect').click();
    const refused = page.getByTestId('terminal').last().locator('..').getByTestId('error');
    await expect.poll(() => refused.getAttribute('data-code'), { timeout: 30_000 }).toBe('AUTH_FAILED');
    expect(await refused.innerText()).toMatch(/does not allow .* to log in as root/);
    // …and any other port is closed by the packet filter.
    await page.locator('[data-testid="peer"][data-name="demo-host"] [data-testid="peer-ssh"]').click();
    await page.getByTestId('ssh-user').fill(guest);
    await page.getByTestId('ssh-port').fill('2222');
    await page.getByTestId('ssh-connect').click();
    const denied = page.getByTestId('terminal').last().locator('..').getByTestId('error');
    await expect.poll(() => denied.getAttribute('data-code'), { timeout: 30_000 }).toBe('POLICY_DENIED');
  }, 120_000);

  it('is single-use: a second browser with the same link is refused', async () => {
    const { page: other } = await fresh();
    await other.goto(first.url);
    await expect.poll(() => other.getByTestId('error').first().getAttribute('data-code'), { timeout: 30_000 }).toMatch(/^AUTH_KEY_(USED|INVALID)$/);
    const list = await pierce(['share', 'list', '--json']);
    const sh = (JSON.parse(list.stdout) as { shares: { id: string; state: string; nodes: unknown[] }[] }).shares.find((x) => x.id === first.id)!;
    expect(sh.state).toBe('used-up');
    expect(sh.nodes).toHaveLength(1);
  }, 60_000);

  it('revoking ends the live session and removes its node', async () => {
    const before = await nodeNames();
    const r = await pierce(['share', 'revoke', first.id]);
    expect(r.code, r.stderr).toBe(0);
    await expect.poll(() => page.getByTestId('error').first().getAttribute('data-code'), { timeout: 30_000 }).toBe('NODE_DELETED');
    expect(await page.getByTestId('error').first().innerText()).toContain('session has ended');
    expect(await page.getByTestId('terminal').count()).toBe(0);
    const after = await nodeNames();
    expect(after.length).toBe(before.length - 1);
    expect(after).toContain('demo-host');
  }, 60_000);

  it('a link whose TTL runs out ends its session by itself', async () => {
    const short = await shareCreate(['--tags', 'tag:untrusted', '--ttl', '8s']);
    const { page: p } = await fresh();
    await p.goto(short.url);
    await p.locator('[data-testid="peer"][data-name="demo-host"][data-online="true"]').waitFor({ timeout: 30_000 });
    const count = (await nodeNames()).length;
    await expect.poll(() => p.getByTestId('error').first().getAttribute('data-code').catch(() => null), { timeout: 30_000 }).toBe('NODE_DELETED');
    expect((await nodeNames()).length).toBe(count - 1);
    const list = await pierce(['share', 'list', '--json']);
    expect((JSON.parse(list.stdout) as { shares: { id: string; state: string }[] }).shares.find((x) => x.id === short.id)!.state).toBe('expired');
  }, 60_000);

  it('a session whose tab closes leaves the mesh', async () => {
    const link = await shareCreate(['--tags', 'tag:untrusted', '--ttl', '1h']);
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    await p.goto(link.url);
    await p.locator('[data-testid="peer"][data-name="demo-host"][data-online="true"]').waitFor({ timeout: 30_000 });
    const count = (await nodeNames()).length;
    await ctx.close();
    await expect.poll(async () => (await nodeNames()).length, { timeout: 30_000 }).toBe(count - 1);
  }, 60_000);
});
