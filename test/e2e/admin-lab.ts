/**
 * The admin console's lab, all in this process on loopback (no namespaces: the console talks
 * only to control, on the same origin):
 *
 *   vite build → DIR                 (both pages; the console is DIR/admin.html)
 *   pierce relay 127.0.0.1:0          region r1
 *   pierce control 127.0.0.1:0        --web DIR, admin "admin" made at start, SQLite in a temp dir
 *   pierce up "a", "b" (in process)   user alice@example.com; b forwards tailnet TCP 8080 to a
 *                                     local server that greets every connection
 *   Chromium (Debian's, headless)     opens CONTROL/admin
 *
 * `connect(from, to, port)` opens a mesh TCP connection from one node's netstack to another's,
 * so a test can feel the policy the console saved: the receiving node's filter answers a denied
 * SYN with ICMP "administratively prohibited" (EACCES).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { startControl, type ControlServer } from '../../gateway/src/control/server.ts';
import { engineNet, startNode, type NodeOptions, type RunningNode } from '../../gateway/src/node/daemon.ts';
import { startRelay, type RelayServer } from '../../gateway/src/relay/server.ts';
import { SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { parseIP } from '../../src/netstack/addr.ts';
import { waitUntil } from '../support/wait.ts';
import { launchChromium } from './browser.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const GREETING = 'hello from b';
export const USER = 'alice@example.com';
export const ADMIN = { name: 'admin', password: 'correct horse battery staple' };

/** `vite build` of both pages into `out`. */
export function buildPages(out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', ROOT, '--config', join(ROOT, 'vite.config.ts'), '--logLevel', 'warn', '--outDir', out, '--emptyOutDir'],
      { timeout: 180_000, cwd: ROOT },
      (err, _stdout, stderr) => (err ? reject(new Error(`vite build failed: ${err.message}\n${stderr}`)) : resolve()),
    );
  });
}

export interface AdminLab {
  dir: string;
  dist: string;
  control: ControlServer;
  relay: RelayServer;
  nodes: Record<'a' | 'b', RunningNode>;
  browser: Browser;
  /** The console's URL (CONTROL/admin). */
  consoleUrl: string;
  /** Starts one more node (stopped with the lab); without `authKey` it waits for approval. */
  up(name: string, extra?: Partial<NodeOptions>): Promise<RunningNode>;
  /** Opens a mesh TCP connection from `from` to `to`:port; resolves with the first line read. */
  connect(from: 'a' | 'b', to: 'a' | 'b', port: number, timeoutMs?: number): Promise<string>;
  destroy(): Promise<void>;
}

export async function startAdminLab(policyText: string): Promise<AdminLab> {
  const dir = mkdtempSync(join(tmpdir(), 'pierce-admin-'));
  const dist = join(dir, 'dist');
  let relay: RelayServer | undefined;
  let control: ControlServer | undefined;
  let greeter: Server | undefined;
  let browser: Browser | undefined;
  const running: RunningNode[] = [];
  const destroy = async (): Promise<void> => {
    await browser?.close().catch(() => {});
    for (const n of running.splice(0)) await n.stop().catch(() => {});
    await control?.close().catch(() => {});
    await relay?.close().catch(() => {});
    greeter?.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await buildPages(dist);
    greeter = createServer((s) => {
      s.on('error', () => {});
      s.end(`${GREETING}\n`);
    });
    await new Promise<void>((r) => greeter!.listen(0, '127.0.0.1', r));
    const greeterPort = (greeter.address() as { port: number }).port;

    relay = await startRelay({ host: '127.0.0.1', port: 0 });
    control = await startControl({
      store: new SqliteStore(join(dir, 'control.db')),
      relays: { regions: [{ id: 1, code: 'r1', name: 'r1', nodes: [{ url: `http://127.0.0.1:${relay.port}` }] }] },
      policyText,
      webRoot: dist,
      initialAdmin: ADMIN,
    });
    await control.state.createUser(USER);
    const { key } = await control.state.createAuthKey({ user: USER, reusable: true });
    const up = async (name: string, extra: Partial<NodeOptions> = {}): Promise<RunningNode> => {
      const n = await startNode({ controlUrl: control!.url, stateDir: join(dir, name), socketPath: join(dir, `${name}.sock`), hostname: name, log: () => {}, ...extra });
      running.push(n);
      return n;
    };
    const a = await up('a', { authKey: key });
    const b = await up('b', { authKey: key, forwards: [`8080=127.0.0.1:${greeterPort}`] });
    await a.engine.whenRunning();
    await b.engine.whenRunning();
    await waitUntil('a and b to see each other online', () => [a, b].every((n) => n.engine.status().peers.some((p) => p.online)), 30_000);
    const nodes = { a, b };

    browser = await launchChromium();
    const lab: AdminLab = {
      dir,
      dist,
      control,
      relay,
      nodes,
      browser,
      consoleUrl: `${control.url}/admin`,
      up,
      async connect(from, to, port, timeoutMs = 10_000) {
        const ip = nodes[to].engine.status().self!.addrs[0]!.split('/')[0]!;
        const signal = AbortSignal.timeout(timeoutMs);
        const sock = await engineNet(nodes[from].engine).connect(parseIP(ip), port, { signal });
        return await new Promise<string>((resolve, reject) => {
          let got = '';
          const timer = setTimeout(() => {
            sock.destroy();
            reject(new Error(`no line from ${to}:${port} within ${timeoutMs} ms (got ${JSON.stringify(got)})`));
          }, timeoutMs);
          sock.on('data', (d: Buffer) => {
            got += d.toString();
            if (got.includes('\n')) {
              clearTimeout(timer);
              sock.destroy();
              resolve(got.split('\n')[0]!);
            }
          });
          sock.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
          });
        });
      },
      destroy,
    };
    return lab;
  } catch (e) {
    await destroy();
    throw e;
  }
}
