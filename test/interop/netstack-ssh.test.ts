/**
 * Pierce's userspace TCP/IP stack against the kernel's, through wireguard-go: OpenSSH, scp and
 * iperf3 carried by `pierce wg up --forward` (Pierce's stack is the TCP client) and `--listen`
 * (Pierce's stack is the TCP server).
 *
 *   ns A: pierce wg up --config C --forward 2201=10.99.0.2:22 …     (10.99.0.1, UDP 51820)
 *         ssh/scp/iperf3 -c → 127.0.0.1:2201
 *   ns B: wireguard-go (10.99.0.2, UDP 51821); sshd and iperf3 -s on 10.99.0.2
 *
 * CLI contract (`pierce wg up`, in addition to what wireguard-go.test.ts uses):
 *   --forward [BIND:]LPORT=IP:PORT  local TCP listener (default bind 127.0.0.1); each connection
 *                                   is carried through the tunnel to IP:PORT.
 *                                   stderr: /forwarding tcp \S+:(\d+) -> /
 *   --socks5 [BIND:]PORT            SOCKS5 CONNECT proxy into the tunnel.
 *                                   stderr: /socks5 proxy on \S+:(\d+)/
 *   --listen PORT=HOST:PORT         TCP port PORT on Pierce's tunnel address; connections are
 *                                   carried to HOST:PORT on the local machine.
 *                                   stderr: /tunnel tcp port (\d+) -> /
 *   ready when it has printed /listening on udp port (\d+)/ and one line per option.
 *
 * PIERCE_NETSTACK_CONTROL=kernel runs the same tests with the kernel's stack in A instead
 * (wireguard-go + lab/tcp-gateway.mjs): if they fail then, the lab is broken, not Pierce.
 * Never skipped: without root or a tool every test fails saying what to install.
 */
import { rmSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  NETSTACK_TOOLS,
  TUN,
  cleanupAll,
  cleanupChildren,
  createNamespacePair,
  execIn,
  fileSize,
  labProblems,
  makeSshKeys,
  requireLab,
  requireTools,
  scp,
  sha256File,
  sideAKind,
  sideALabel,
  spawnIn,
  sshExec,
  startSshd,
  startTunnel,
  tempPath,
  toolProblems,
  writeRandomFile,
  type NamespacePair,
  type SshKeys,
  type SshRun,
} from './lab.ts';

const KIND = sideAKind();
const FWD_PORT = 2201;
const IPERF_PORT = 5201;
const BIG = 100 * 1024 * 1024;

function labReady(): boolean {
  return labProblems().length === 0 && toolProblems(NETSTACK_TOOLS).length === 0;
}

function mbit(bytes: number, ms: number): string {
  return ((bytes * 8) / (ms * 1000)).toFixed(1);
}

describe(`netstack TCP: ${sideALabel(KIND)} <-> kernel behind wireguard-go (ssh, scp, iperf3)`, () => {
  let pair: NamespacePair;
  let A: string;
  let B: string;
  let keys: SshKeys;
  let big: { path: string; sha256: string } | undefined;

  beforeAll(async () => {
    if (!labReady()) return;
    pair = await createNamespacePair();
    A = pair.a.name;
    B = pair.b.name;
    keys = await makeSshKeys();
  }, 60_000);
  beforeEach(() => {
    requireLab();
    requireTools(NETSTACK_TOOLS);
  });
  afterEach(cleanupChildren);
  afterAll(cleanupAll, 60_000);

  function bigFile(): { path: string; sha256: string } {
    big ??= writeRandomFile('big.bin', BIG);
    return big;
  }

  /** sshd on wireguard-go's tunnel address, and side A forwarding 127.0.0.1:FWD_PORT to it. */
  async function sshThroughForward(): Promise<{ via: SshRun; why: () => string; logins: () => string[] }> {
    // The tunnel first: sshd binds wireguard-go's tunnel address.
    const t = await startTunnel({ pair, forward: [`${FWD_PORT}=${TUN.b4}:22`] });
    const sshd = await startSshd({ ns: B, address: TUN.b4, port: 22, keys });
    expect(t.forwardPorts).toEqual([FWD_PORT]);
    return {
      via: { ns: A, host: '127.0.0.1', port: FWD_PORT, keys },
      why: () => `${t.output()}\n${sshd.log()}`,
      logins: sshd.acceptedLogins,
    };
  }

  it('ssh through --forward runs a command on sshd behind wireguard-go', async () => {
    const { via, why, logins } = await sshThroughForward();
    const res = await sshExec(via, 'echo hello');
    expect(res.code, `${res.stdout}${res.stderr}\n${why()}`).toBe(0);
    expect(res.stdout).toBe('hello\n');
    expect(logins(), why()).toHaveLength(1);
    // A second connection on the same forward works too.
    const again = await sshExec(via, 'echo again; uname -s');
    expect(again.code, `${again.stdout}${again.stderr}\n${why()}`).toBe(0);
    expect(again.stdout).toBe('again\nLinux\n');
  }, 60_000);

  it.each(['upload', 'download'] as const)('scp of 100 MB random data through --forward (%s), sha256 equal at both ends', async (dir) => {
    const src = bigFile();
    const { via, why } = await sshThroughForward();
    const dst = tempPath(`${dir}.bin`);
    const t0 = Date.now();
    const res = await scp({ ...via, timeoutMs: 100_000 }, dir, dir === 'upload' ? src.path : dst, dir === 'upload' ? dst : src.path);
    const ms = Date.now() - t0;
    expect(res.code, `scp ${dir} exit ${res.code} after ${ms} ms (${fileSize(dst)} of ${BIG} bytes arrived): ${res.stdout}${res.stderr}\n${why()}`).toBe(0);
    expect(await sha256File(dst), `sha256 of the copy (${dir})`).toBe(src.sha256);
    console.log(`[${KIND}] scp ${dir} 100 MiB through --forward: ${ms} ms, ${mbit(BIG, ms)} Mbit/s`);
    rmSync(dst, { force: true });
  }, 120_000);

  it('iperf3 -c through --forward completes against iperf3 -s behind wireguard-go (throughput reported)', async () => {
    const t = await startTunnel({ pair, forward: [`${FWD_PORT}=${TUN.b4}:${IPERF_PORT}`] });
    const server = spawnIn(B, 'iperf3', ['-s', '-B', TUN.b4, '-p', String(IPERF_PORT), '--forceflush']);
    await server.waitForLine(/Server listening on/, 10_000);
    const res = await execIn(A, 'iperf3', ['-c', '127.0.0.1', '-p', String(FWD_PORT), '-t', '3', '-J'], { check: false, timeoutMs: 60_000 });
    const why = `${res.stdout}${res.stderr}\n${t.output()}\n${server.output()}`;
    let report: { error?: string; end?: { sum_sent?: { bits_per_second?: number; bytes?: number }; sum_received?: { bits_per_second?: number; bytes?: number } } };
    try {
      report = JSON.parse(res.stdout) as typeof report;
    } catch {
      throw new Error(`iperf3 printed no JSON (exit ${res.code}):\n${why}`);
    }
    expect(report.error, why).toBeUndefined();
    expect(res.code, why).toBe(0);
    const rx = report.end?.sum_received?.bits_per_second ?? 0;
    const tx = report.end?.sum_sent?.bits_per_second ?? 0;
    expect(rx, why).toBeGreaterThan(0);
    expect(report.end?.sum_received?.bytes ?? 0, why).toBeGreaterThan(0);
    console.log(`[${KIND}] iperf3 through --forward: received ${(rx / 1e6).toFixed(1)} Mbit/s, sent ${(tx / 1e6).toFixed(1)} Mbit/s`);
  }, 90_000);

  it("the kernel's ssh in B reaches sshd in A through --listen on side A's tunnel address", async () => {
    const SSHD_PORT = 2200;
    const LISTEN_PORT = 2222;
    const sshd = await startSshd({ ns: A, address: '127.0.0.1', port: SSHD_PORT, keys });
    const t = await startTunnel({ pair, listen: [`${LISTEN_PORT}=127.0.0.1:${SSHD_PORT}`] });
    expect(t.listenPorts).toEqual([LISTEN_PORT]);
    const res = await sshExec({ ns: B, host: TUN.a4, port: LISTEN_PORT, keys }, 'echo hello');
    const why = `${res.stdout}${res.stderr}\n${t.output()}\n${sshd.log()}`;
    expect(res.code, why).toBe(0);
    expect(res.stdout).toBe('hello\n');
    expect(sshd.acceptedLogins(), why).toHaveLength(1);
    // sshd saw the connection come from the local forwarder, not from B.
    expect(sshd.log(), why).toMatch(/Connection from 127\.0\.0\.1 port \d+ on 127\.0\.0\.1 port \d+/);
  }, 60_000);
});

describe('netstack lab control (no pierce): kernel ssh/scp over two wireguard-go peers', () => {
  let pair: NamespacePair;
  let keys: SshKeys;

  beforeAll(async () => {
    if (!labReady()) return;
    pair = await createNamespacePair();
    keys = await makeSshKeys();
  }, 60_000);
  beforeEach(() => {
    requireLab();
    requireTools(NETSTACK_TOOLS);
  });
  afterEach(cleanupChildren);
  afterAll(cleanupAll, 60_000);

  it('sshd in B on the tunnel address; ssh and scp (4 MiB) from A straight over wireguard-go', async () => {
    const t = await startTunnel({ pair, kind: 'kernel' });
    const sshd = await startSshd({ ns: pair.b.name, address: TUN.b4, keys });
    const via: SshRun = { ns: pair.a.name, host: TUN.b4, port: 22, keys };
    const res = await sshExec(via, 'echo hello');
    const why = (): string => `${res.stdout}${res.stderr}\n${t.output()}\n${sshd.log()}`;
    expect(res.code, why()).toBe(0);
    expect(res.stdout).toBe('hello\n');
    const src = writeRandomFile('ctl.bin', 4 << 20);
    const dst = tempPath('ctl-copy.bin');
    const cp = await scp(via, 'upload', src.path, dst);
    expect(cp.code, `${cp.stdout}${cp.stderr}\n${why()}`).toBe(0);
    expect(await sha256File(dst)).toBe(src.sha256);
  }, 60_000);
});
