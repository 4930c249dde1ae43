/**
 * The browser node end to end (issue 8's proof): Debian's Chromium, driven by Playwright, in a
 * namespace behind a NAT, opens the built page; the page joins the mesh with an auth key from
 * the URL fragment; its worker runs WireGuard, disco, the netstack and the SSH client; a real
 * OpenSSH sshd behind `pierce up --forward 22` in another namespace behind another NAT answers.
 *
 * Proven here, through the page's UI only (plus `window.pierce` to read the key to authorize):
 *   - the peer list shows the host online; a command typed in the terminal prints its output;
 *     the host key's fingerprint is shown on first use; `exit 3` shows exit status 3;
 *   - with a UDP socket leased from the relay, the path to the host turns direct;
 *   - the hardened sshd (curve25519-sha256, ssh-ed25519, chacha20-poly1305 only) works;
 *   - a port the policy does not allow fails at once with the policy's message;
 *   - the PTY follows the terminal's size (window-change on resize);
 *   - a browser joins through the login URL once an admin approves it;
 *   - a phone-sized, ephemeral session opens a shell without sideways scrolling and stores nothing;
 *   - a changed host key is refused, loudly, and no shell opens.
 */
import { describe, expect, it } from 'vitest';
import type { Page } from 'playwright-core';
import { run } from '../interop/lab.ts';
import { terminalText } from './browser.ts';
import { labPage } from './lab-page.ts';
import { startBrowserLab, type BrowserLab } from './lab.ts';

let lab: BrowserLab | undefined;
let page: Page;
let log: string[] = [];

const L = (): BrowserLab => lab!;

async function fingerprint(keyFile: string): Promise<string> {
  const r = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${keyFile}.pub`]);
  return r.stdout.split(/\s+/)[1]!;
}

/** Fails with the page's console log attached. */
async function step<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const shot = await page.screenshot({ path: `/tmp/pierce-e2e-${Date.now()}.png` }).then(() => 'screenshot saved in /tmp').catch(() => '');
    throw new Error(`${what}: ${(e as Error).message}\n--- page log (last 40) ---\n${log.slice(-40).join('\n')}\n${shot}`);
  }
}

/** Opens an SSH terminal to the host from its peer row; resolves with the terminal's locator. */
async function openSsh(opts: { port?: number; user?: string }) {
  const row = page.locator('[data-testid="peer"][data-name="host"]');
  await row.locator('[data-testid="peer-ssh"]').click();
  await page.getByTestId('ssh-user').fill(opts.user ?? 'root');
  await page.getByTestId('ssh-port').fill(String(opts.port ?? 22));
  await page.getByTestId('ssh-auth').selectOption('publickey');
  const before = await page.getByTestId('terminal').count();
  await page.getByTestId('ssh-connect').click();
  const term = page.getByTestId('terminal').nth(before);
  return term;
}

/** Types `cmd` + Enter into the focused terminal and waits for `expect` in its text. */
async function typeAndWait(term: ReturnType<Page['getByTestId']>, cmd: string, want: RegExp, timeout = 20_000): Promise<string> {
  await term.click();
  await page.keyboard.type(`${cmd}\n`);
  let text = '';
  await expect
    .poll(async () => {
      text = await term.locator('.xterm-rows').innerText();
      return want.test(text);
    }, { timeout, interval: 100 })
    .toBe(true);
  return text;
}

labPage(() => startBrowserLab(), { width: 1000, height: 800 }, (s) => ({ lab, page, log } = s));

describe('the browser node (Chromium behind a NAT, sshd behind pierce up behind another NAT)', () => {
  it('joins from the URL fragment and lists the host online', async () => {
    await step('load and join', async () => {
      await page.goto(L().pageUrl());
      await expect.poll(() => page.getByTestId('self').innerText(), { timeout: 30_000 }).toMatch(/100\.64\./);
      await page.locator('[data-testid="peer"][data-name="host"][data-online="true"]').waitFor({ timeout: 30_000 });
    });
  }, 60_000);

  it('opens a shell with the browser\'s own ed25519 key: host key shown on first use, command output, exit status', async () => {
    await step('ssh to host:22', async () => {
      const line: string = await page.evaluate(() => (window as unknown as { pierce: { publicKeyLine(): Promise<string> } }).pierce.publicKeyLine());
      expect(line).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\S+/);
      L().authorize(line);
      const term = await openSsh({ port: 22 });
      await expect.poll(() => term.getAttribute('data-state'), { timeout: 30_000 }).toBe('open');
      const fp = await fingerprint(L().keys.hostKey);
      await expect.poll(() => page.getByTestId('hostkey').last().innerText(), { timeout: 10_000 }).toContain(fp);
      await typeAndWait(term, 'echo pierce-$((6*7)) $(hostname -I | wc -w)', /pierce-42 \d/);
      await typeAndWait(term, 'exit 3', /./);
      await expect.poll(() => term.getAttribute('data-state'), { timeout: 15_000 }).toBe('closed');
      await expect.poll(() => page.getByTestId('exit-status').last().innerText(), { timeout: 10_000 }).toMatch(/\b3\b/);
    });
  }, 90_000);

  it('goes direct through a UDP socket leased from the relay', async () => {
    await step('direct path', async () => {
      // A ping starts discovery (the engine probes paths while it has traffic for the peer).
      await page.locator('[data-testid="peer"][data-name="host"] [data-testid="peer-ping"]').click();
      await page.locator('[data-testid="peer"][data-name="host"][data-path="direct"]').waitFor({ timeout: 45_000 });
      const st = await page.evaluate(() => (window as unknown as { pierce: { status(): Promise<{ peers: { name: string; direct: boolean; path: string }[] }> } }).pierce.status());
      const host = st.peers.find((p) => p.name === 'host')!;
      expect(host.direct, JSON.stringify(host)).toBe(true);
      // The direct path ends at the host's NAT: its public address on the lab's internet.
      expect(host.path).toMatch(/203\.0\.113\./);
      // SSH over the direct path.
      const term = await openSsh({ port: 22 });
      await expect.poll(() => term.getAttribute('data-state'), { timeout: 30_000 }).toBe('open');
      await typeAndWait(term, 'echo direct-$((2+2))', /direct-4/);
    });
  }, 90_000);

  it('works against the hardened sshd (curve25519-sha256, ssh-ed25519, chacha20-poly1305 only)', async () => {
    await step('ssh to host:2222', async () => {
      const term = await openSsh({ port: 2222 });
      await expect.poll(() => term.getAttribute('data-state'), { timeout: 30_000 }).toBe('open');
      await typeAndWait(term, 'echo hardened-$((40+2))', /hardened-42/);
      const log = L().hardened.log();
      expect(log).toMatch(/Accepted publickey for root/);
    });
  }, 60_000);

  it('shows the policy\'s refusal at once for a port the policy does not allow', async () => {
    await step('ssh to host:23', async () => {
      const t0 = Date.now();
      await openSsh({ port: 23 });
      const err = page.locator('[data-testid="error"][data-code="POLICY_DENIED"]');
      await err.last().waitFor({ timeout: 20_000 });
      expect(await err.last().innerText()).toMatch(/policy/i);
      // ICMP "administratively prohibited" from the host, not a SYN timeout (tens of seconds).
      expect(Date.now() - t0).toBeLessThan(15_000);
    });
  }, 60_000);

  it('on a phone-sized screen, an ephemeral session works without sideways scrolling and stores nothing', async () => {
    const phone = await L().browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    try {
      const p = await phone.newPage();
      await p.goto(L().pageUrl({ ephemeral: '1', hostname: 'phone' }));
      await p.locator('[data-testid="peer"][data-name="host"][data-online="true"]').waitFor({ timeout: 30_000 });
      await p.locator('[data-testid="peer"][data-name="host"] [data-testid="peer-ssh"]').click();
      await p.getByTestId('ssh-user').fill('root');
      await p.getByTestId('ssh-auth').selectOption('publickey');
      // The phone's key is a new one: authorize it, then connect.
      L().authorize(await p.evaluate('window.pierce.publicKeyLine()'));
      await p.getByTestId('ssh-connect').click();
      const term = p.getByTestId('terminal').first();
      await expect.poll(() => term.getAttribute('data-state'), { timeout: 30_000 }).toBe('open');
      expect(await p.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(390);
      // Ephemeral: no IndexedDB database was created for the page.
      expect(await p.evaluate('indexedDB.databases().then((d) => d.length)')).toBe(0);
    } finally {
      await phone.close();
    }
  }, 60_000);

  it('gives the PTY the terminal\'s size and sends window-change when it is resized', async () => {
    await step('resize', async () => {
      const term = await openSsh({ port: 22 });
      await expect.poll(() => term.getAttribute('data-state'), { timeout: 30_000 }).toBe('open');
      const size = async (tag: string): Promise<[number, number]> => {
        const t = await typeAndWait(term, `echo ${tag}-$(stty size | tr ' ' x)`, new RegExp(`${tag}-\\d+x\\d+`));
        const m = new RegExp(`${tag}-(\\d+)x(\\d+)`).exec(t)!;
        return [Number(m[1]), Number(m[2])];
      };
      const [rows1, cols1] = await size('before');
      expect(rows1).toBeGreaterThan(5);
      expect(cols1).toBeGreaterThan(20);
      await page.setViewportSize({ width: 700, height: 600 });
      await expect.poll(async () => (await size(`after${Date.now() % 1000}`))[1], { timeout: 15_000, interval: 500 }).toBeLessThan(cols1);
      await page.setViewportSize({ width: 1000, height: 800 });
    });
  }, 60_000);

  it('joins through the login URL flow once an admin approves the registration', async () => {
    const fresh = await L().browser.newContext();
    try {
      const p = await fresh.newPage();
      await p.goto(`${L().pageBase}?control=${encodeURIComponent(L().controlUrl)}#ephemeral=1`);
      await p.getByTestId('join-login').click();
      const link = p.getByTestId('login-url');
      await link.waitFor({ timeout: 30_000 });
      const url = (await link.getAttribute('href'))!;
      const id = /\/register\/([^/?#]+)/.exec(url)?.[1];
      expect(id, url).toBeTruthy();
      await L().admin('nodes', 'approve', id!, '--user', 'web@example.com');
      await expect.poll(() => p.getByTestId('self').innerText(), { timeout: 30_000 }).toMatch(/100\.64\./);
      await p.locator('[data-testid="peer"][data-name="host"][data-online="true"]').waitFor({ timeout: 30_000 });
    } finally {
      await fresh.close();
    }
  }, 60_000);

  it('refuses a changed host key loudly and opens no shell', async () => {
    await step('host key change', async () => {
      await L().changeHostKey();
      const logins = L().sshd.acceptedLogins().length;
      const term = await openSsh({ port: 22 });
      const err = page.locator('[data-testid="error"][data-code="HOST_KEY_MISMATCH"]');
      await err.last().waitFor({ timeout: 30_000 });
      const text = await err.last().innerText();
      expect(text).toContain(await fingerprint(L().keys.hostKey)); // the remembered one
      expect(await term.getAttribute('data-state')).not.toBe('open');
      expect(L().sshd.acceptedLogins().length).toBe(logins); // no authentication was attempted
    });
  }, 60_000);
});
