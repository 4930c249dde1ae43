/**
 * The browser node's lab: the built page, a mesh and a real sshd, all in network namespaces.
 *
 *   internet ns: 203.0.113.1  static server :8000 (dist/ of `vite build`)
 *                             pierce control :8080 (policy: tailnet ports 22 and 2222 only)
 *                             pierce relay :8443 (+ STUN :3478, + UDP leases)
 *   site "host" (easy NAT):   sshd 127.0.0.1:22 (Debian's defaults + the lab's key setup)
 *                             sshd 127.0.0.1:2222 (hardened: curve25519-sha256, ssh-ed25519,
 *                               chacha20-poly1305@openssh.com)
 *                             pierce up --forward 22 --forward 2222  (tailnet name "host")
 *   site "web" (easy NAT):    headless Chromium (test/e2e/browser.ts) opening the page
 *
 * The page reaches control and the relay over the lab's internet, joins with an auth key in
 * the URL fragment, and the worker's SSH client reaches host's sshd through the mesh: over the
 * relay, or over a direct UDP path through a socket leased from the relay.
 */
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { createNatLab, type LabHost, type NatLab } from '../natlab/lab.ts';
import { PIERCE_MJS, execIn, run, spawnIn, spawnPierce, tempPath, type ChildHandle } from '../interop/lab.ts';
import { makeSshKeys, startSshd, type Sshd, type SshKeys } from '../interop/lab/sshd.ts';
import { launchChromium } from './browser.ts';

export const STATIC_SERVER_MJS = fileURLToPath(new URL('./static-server.mjs', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const PAGE_PORT = 8000;
export const CONTROL_PORT = 8080;
export const RELAY_PORT = 8443;
export const STUN_PORT = 3478;
/** What the browser's user may reach: SSH on 22 and 2222, nothing else. */
export const E2E_POLICY = `{
  // The browser test's tailnet: SSH (stock sshd on 22, hardened on 2222) and nothing else.
  "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:22,2222"] }],
}`;
export const HARDENED_SSHD = ['KexAlgorithms curve25519-sha256', 'HostKeyAlgorithms ssh-ed25519', 'Ciphers chacha20-poly1305@openssh.com'];

/** Builds the page (vite build) into a fresh directory; returns it. */
export async function buildPage(): Promise<string> {
  const out = tempPath('page-dist');
  await run(process.execPath, [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', ROOT, '--config', join(ROOT, 'vite.config.ts'), '--logLevel', 'warn', '--outDir', out, '--emptyOutDir'], { timeoutMs: 180_000 });
  return out;
}

export interface BrowserLab {
  lab: NatLab;
  controlUrl: string;
  relayUrl: string;
  /** The page's base URL (append `?control=…#authkey=…`). */
  pageBase: string;
  authKey: string;
  host: LabHost;
  web: LabHost;
  hostNode: ChildHandle;
  keys: SshKeys;
  sshd: Sshd;
  hardened: Sshd;
  browser: Browser;
  /** `pierce admin …` against control; stdout. */
  admin(...args: string[]): Promise<string>;
  /** The page URL that joins with the auth key (fragment options appended). */
  pageUrl(fragment?: Record<string, string>): string;
  /** Lets `line` (an authorized_keys line) log in as root on both sshds. */
  authorize(line: string): void;
  /** Restarts the stock sshd with a new host key (a host-key change). */
  changeHostKey(): Promise<void>;
  destroy(): Promise<void>;
}

export async function startBrowserLab(o: { leases?: boolean; pageDir?: string } = {}): Promise<BrowserLab> {
  const pageDir = o.pageDir ?? (await buildPage());
  const lab = await createNatLab([
    { name: 'host', kind: 'easy' },
    { name: 'web', kind: 'easy' },
  ]);
  const children: ChildHandle[] = [];
  let browser: Browser | undefined;
  const destroy = async (): Promise<void> => {
    await browser?.close().catch(() => {});
    await Promise.all(children.map((c) => c.kill(2000)));
    await lab.destroy();
  };
  try {
    const inet = lab.internet.ns;
    const ip = lab.internet.ips[0];
    const host = lab.hosts['host']![0]!;
    const web = lab.hosts['web']![0]!;
    const stat = spawnIn(inet, process.execPath, [STATIC_SERVER_MJS, pageDir, ip, String(PAGE_PORT)], { name: 'static server' });
    children.push(stat);

    const db = tempPath('e2e-control.db');
    const policy = tempPath('e2e-policy.hujson');
    writeFileSync(policy, E2E_POLICY);
    const apiKey = (await run(process.execPath, [PIERCE_MJS, 'control', 'apikey', '--db', db], { timeoutMs: 30_000 })).stdout.trim();
    const relayUrl = `http://${ip}:${RELAY_PORT}`;
    const control = spawnPierce(inet, ['control', '--listen', `${ip}:${CONTROL_PORT}`, '--db', db, '--policy', policy, '--relay', `${relayUrl},stun=${ip}:${STUN_PORT}`], 'pierce control');
    children.push(control);
    const controlUrl = (await control.waitForLine(/listening on (\S+)/, 30_000))[1]!;
    const leaseArgs = o.leases === false ? [] : ['--udp-leases', '--control', controlUrl, '--control-api-key', apiKey];
    const relay = spawnPierce(inet, ['relay', '--listen', `${ip}:${RELAY_PORT}`, '--stun', `${ip}:${STUN_PORT}`, '--metrics', ...leaseArgs], 'pierce relay');
    children.push(relay);
    await relay.waitForLine(/relay listening on/, 30_000);
    await stat.waitForLine(/static server listening/, 30_000);

    const env = { PIERCE_CONTROL: controlUrl, PIERCE_API_KEY: apiKey };
    const admin = async (...args: string[]): Promise<string> => {
      const r = await execIn(inet, process.execPath, [PIERCE_MJS, 'admin', ...args], { check: false, timeoutMs: 30_000, env });
      if (r.code !== 0) throw new Error(`pierce admin ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    await admin('users', 'create', 'web@example.com');
    const authKey = (await admin('keys', 'create', '--user', 'web@example.com', '--reusable')).match(/pak_\S+/)![0];

    const keys = await makeSshKeys();
    const sshd = await startSshd({ ns: host.ns, address: '127.0.0.1', port: 22, keys });
    const hardened = await startSshd({ ns: host.ns, address: '127.0.0.1', port: 2222, keys, extraConfig: HARDENED_SSHD });
    children.push(sshd.process, hardened.process);
    const state = tempPath('e2e-host');
    mkdirSync(state, { mode: 0o700 });
    const hostNode = spawnPierce(
      host.ns,
      ['up', '--control', controlUrl, '--authkey', authKey, '--hostname', 'host', '--state', join(state, 's'), '--socket', join(state, 'sock'), '--forward', '22=127.0.0.1:22', '--forward', '2222=127.0.0.1:2222', '--verbose'],
      'pierce up host',
    );
    children.push(hostNode);
    await hostNode.waitForLine(/pierce up: host \S+ \S+ running/, 60_000);

    browser = await launchChromium(web.ns);
    const pageBase = `http://${ip}:${PAGE_PORT}/`;
    let current = sshd;
    return {
      lab,
      controlUrl,
      relayUrl,
      pageBase,
      authKey,
      host,
      web,
      hostNode,
      keys,
      get sshd() {
        return current;
      },
      hardened,
      browser,
      admin,
      pageUrl(fragment = {}) {
        const f = new URLSearchParams({ authkey: authKey, ...fragment });
        return `${pageBase}?control=${encodeURIComponent(controlUrl)}#${f.toString()}`;
      },
      authorize(line) {
        appendFileSync(keys.authorizedKeys, `${line.trim()}\n`);
      },
      async changeHostKey() {
        await current.stop();
        const other = await makeSshKeys();
        current = await startSshd({ ns: host.ns, address: '127.0.0.1', port: 22, keys: { ...other, authorizedKeys: keys.authorizedKeys } });
        children.push(current.process);
      },
      destroy,
    };
  } catch (e) {
    await destroy();
    throw e;
  }
}
