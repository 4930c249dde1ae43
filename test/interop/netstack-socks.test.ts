/**
 * Pierce's userspace TCP/IP stack against the kernel's, through wireguard-go: the SOCKS5 proxy
 * (`pierce wg up --socks5`) fetching from an HTTP server in ns B with curl, and what closed
 * ports look like on both sides:
 *
 * - a `--forward` (or SOCKS CONNECT) to a port where nothing listens in B: the kernel answers
 *   Pierce's SYN with a RST, and the local client sees its connection closed (or the SOCKS
 *   request refused) promptly;
 * - the kernel in B connecting to a closed TCP port on Pierce's tunnel address gets a RST
 *   ("Connection refused"), and a UDP datagram to a closed Pierce port gets ICMP (v6) port
 *   unreachable (ECONNREFUSED on the connected socket).
 *
 * The CLI contract is described in netstack-ssh.test.ts. PIERCE_NETSTACK_CONTROL=kernel runs
 * the same tests with the kernel's stack in A (wireguard-go + lab/tcp-gateway.mjs).
 * Never skipped: without root or a tool every test fails saying what to install.
 */
import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  NETSTACK_TOOLS,
  TUN,
  cleanupAll,
  cleanupChildren,
  createNamespacePair,
  execIn,
  labProblems,
  ping,
  requireLab,
  requireTools,
  sha256File,
  sideAKind,
  sideALabel,
  spawnIn,
  startTunnel,
  tcpProbe,
  tempPath,
  toolProblems,
  udpProbe,
  writeRandomFile,
  type ChildHandle,
  type NamespacePair,
} from './lab.ts';

const KIND = sideAKind();
const SOCKS_PORT = 1080;
const FWD_PORT = 2202;
const HTTP_PORT = 8000;
const CLOSED_PORT = 8001; // nothing listens here, in A or in B
const FILE_SIZE = 8 << 20;
/** "Promptly": a RST or ICMP error arrives in well under this (a lost SYN would take 1 s+). */
const PROMPT_MS = 3_000;

/** curl must not pick up a proxy from the environment. */
const NO_PROXY_ENV = { http_proxy: '', https_proxy: '', HTTP_PROXY: '', HTTPS_PROXY: '', ALL_PROXY: '', all_proxy: '', no_proxy: '', NO_PROXY: '' };

function labReady(): boolean {
  return labProblems().length === 0 && toolProblems(NETSTACK_TOOLS).length === 0;
}

describe(`netstack SOCKS5 and closed ports: ${sideALabel(KIND)} <-> kernel behind wireguard-go`, () => {
  let pair: NamespacePair;
  let A: string;
  let B: string;
  let webRoot: string;
  let file: { path: string; sha256: string };

  beforeAll(async () => {
    if (!labReady()) return;
    pair = await createNamespacePair();
    A = pair.a.name;
    B = pair.b.name;
    webRoot = tempPath('www');
    mkdirSync(webRoot);
    file = writeRandomFile('file.bin', FILE_SIZE);
    symlinkSync(file.path, join(webRoot, 'file'));
  }, 60_000);
  beforeEach(() => {
    requireLab();
    requireTools(NETSTACK_TOOLS);
  });
  afterEach(cleanupChildren);
  afterAll(cleanupAll, 60_000);

  /** python3 -m http.server in B on [::]:HTTP_PORT (dual stack: 10.99.0.2 and fd99::2), serving `file` as /file. */
  async function startHttpServer(): Promise<ChildHandle> {
    const server = spawnIn(B, 'python3', ['-u', '-m', 'http.server', String(HTTP_PORT), '--bind', '::', '--directory', webRoot], { name: `http.server@${B}` });
    await server.waitForLine(/Serving HTTP on/, 10_000);
    return server;
  }

  async function curlViaSocks(url: string, out: string, socksPort: number): Promise<{ code: number | null; stderr: string; ms: number }> {
    const t0 = Date.now();
    const res = await execIn(A, 'curl', ['-sS', '--fail', '--max-time', '60', '--socks5', `127.0.0.1:${socksPort}`, '-o', out, url], {
      check: false,
      timeoutMs: 70_000,
      env: NO_PROXY_ENV,
    });
    return { code: res.code, stderr: res.stdout + res.stderr, ms: Date.now() - t0 };
  }

  it.each([
    ['IPv4', `http://${TUN.b4}:${HTTP_PORT}/file`],
    ['IPv6', `http://[${TUN.b6}]:${HTTP_PORT}/file`],
  ] as const)('curl --socks5 fetches 8 MiB from an HTTP server in B over tunnel %s; sha256 equal', async (_family, url) => {
    const t = await startTunnel({ pair, socks5: [`127.0.0.1:${SOCKS_PORT}`] });
    expect(t.socksPorts).toEqual([SOCKS_PORT]);
    const server = await startHttpServer();
    const out = tempPath('fetched.bin');
    const res = await curlViaSocks(url, out, SOCKS_PORT);
    const why = `curl exit ${res.code}: ${res.stderr}\n${t.output()}\n${server.output()}`;
    expect(res.code, why).toBe(0);
    expect(await sha256File(out), why).toBe(file.sha256);
    console.log(`[${KIND}] curl --socks5 ${url}: ${FILE_SIZE} bytes in ${res.ms} ms`);
    rmSync(out, { force: true });
  }, 60_000);

  it('curl --socks5 to a closed port in B fails promptly with a SOCKS error', async () => {
    const t = await startTunnel({ pair, socks5: [`127.0.0.1:${SOCKS_PORT}`] });
    const server = await startHttpServer(); // B is up and serving, only not on this port
    const res = await curlViaSocks(`http://${TUN.b4}:${CLOSED_PORT}/file`, tempPath('never.bin'), SOCKS_PORT);
    const why = `curl exit ${res.code} after ${res.ms} ms: ${res.stderr}\n${t.output()}\n${server.output()}`;
    // curl 7.73+: 97 = CURLE_PROXY ("Can't complete SOCKS5 connection … (5)", 5 = connection refused).
    expect(res.code, why).toBe(97);
    expect(res.stderr, why).toMatch(/SOCKS5/);
    expect(res.ms, why).toBeLessThan(PROMPT_MS);
  }, 60_000);

  it('--forward to a closed port in B: the local client sees its connection closed promptly, no data', async () => {
    const t = await startTunnel({ pair, forward: [`${FWD_PORT}=${TUN.b4}:${CLOSED_PORT}`] });
    // B is reachable (so a failure below is about the RST, not the tunnel).
    const echo = await ping(B, TUN.a4, { count: 1, timeoutS: 5 });
    expect(echo.ok, `${echo.output}\n${t.output()}`).toBe(true);
    const p = await tcpProbe(A, '127.0.0.1', FWD_PORT, { read: true, timeoutS: 10 });
    const why = `${JSON.stringify(p)}\n${t.output()}`;
    // The local listener may accept first (then close or reset) or refuse outright.
    expect(['connected', 'refused'], why).toContain(p.connect);
    if (p.connect === 'connected') expect(['eof', 'reset'], why).toContain(p.read);
    expect(p.bytes, why).toBe(0);
    expect(p.ms, why).toBeLessThan(PROMPT_MS);
  }, 60_000);

  it.each([
    ['IPv4', TUN.a4],
    ['IPv6', TUN.a6],
  ] as const)("the kernel in B: TCP to a closed port on A's tunnel address %s is refused (RST), promptly", async (_family, addr) => {
    const t = await startTunnel({ pair });
    const p = await tcpProbe(B, addr, CLOSED_PORT, { timeoutS: 10 });
    const why = `${JSON.stringify(p)}\n${t.output()}`;
    expect(p.connect, why).toBe('refused');
    expect(p.ms, why).toBeLessThan(PROMPT_MS);
  }, 60_000);

  it.each([
    ['IPv4', TUN.a4],
    ['IPv6', TUN.a6],
  ] as const)("the kernel in B: UDP to a closed port on A's tunnel address %s gets ICMP port unreachable", async (_family, addr) => {
    const t = await startTunnel({ pair });
    const p = await udpProbe(B, addr, CLOSED_PORT, { timeoutS: 5 });
    const why = `${JSON.stringify(p)}\n${t.output()}`;
    expect(p.result, why).toBe('refused');
    expect(p.ms, why).toBeLessThan(PROMPT_MS);
  }, 60_000);
});
