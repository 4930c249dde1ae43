/**
 * Pierce's userspace TCP against the kernel's over a bad path: loss, reordering and duplication
 * of the WireGuard UDP packets between Pierce (ns A) and wireguard-go (ns B).
 *
 * Two ways to make the path bad (this kernel has no netem):
 * - relay: lab/lossy-relay.mjs in ns A; Pierce's peer Endpoint is the relay, which forwards to
 *   wireguard-go and back, each way dropping 5% at random, holding back a random 20% for
 *   5–30 ms (reordering) and sending 1% twice. wireguard-go learns the relay's address from
 *   Pierce's handshake (it has no Endpoint for Pierce).
 * - nftables: `udp dport/sport 51821 numgen random mod 100 < 5 counter drop` in ns B's input
 *   and output hooks, on the direct path.
 *
 * Through each: an ssh command, and scp of a 32 MiB random file both ways (sha256 equal), via
 * `pierce wg up --forward`. The relay's and nftables' counters show the damage was done.
 * (Duplicated WireGuard packets exercise the receivers' replay windows; what reaches TCP is
 * loss and reordering.)
 * A control (wireguard-go on both sides, no Pierce) proves the relay forwards and the nft rule
 * drops. PIERCE_NETSTACK_CONTROL=kernel runs the main tests with the kernel's stack in A.
 * Never skipped: without root or a tool every test fails saying what to install.
 */
import { rmSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  B_UDP_PORT,
  NETSTACK_TOOLS,
  TUN,
  addUdpLoss,
  cleanupAll,
  cleanupChildren,
  createNamespacePair,
  fileSize,
  labProblems,
  makeSshKeys,
  ping,
  requireLab,
  requireTools,
  scp,
  sha256File,
  sideAKind,
  sideALabel,
  sshExec,
  startLossyRelay,
  startSshd,
  startTunnel,
  tempPath,
  toolProblems,
  writeRandomFile,
  type Impairment,
  type NamespacePair,
  type SshKeys,
  type SshRun,
  type Tunnel,
} from './lab.ts';

const KIND = sideAKind();
const FWD_PORT = 2203;
const FILE_SIZE = 32 << 20;
const IMPAIR: Impairment = { dropPct: 5, delayPct: 20, delayMinMs: 5, delayMaxMs: 30, dupPct: 1 };
/**
 * ssh options for a lossy path: a lost WireGuard handshake message costs 5 s and SYN backoff
 * more, so wait longer for the banner; give up on a dead connection rather than hang.
 */
const SSH_OPTS = ['ConnectTimeout=60', 'ServerAliveInterval=5', 'ServerAliveCountMax=6'];

function labReady(): boolean {
  return labProblems().length === 0 && toolProblems(NETSTACK_TOOLS).length === 0;
}

function mbit(bytes: number, ms: number): string {
  return ((bytes * 8) / (ms * 1000)).toFixed(1);
}

type Variant = 'relay' | 'nft';

interface BadPath {
  tunnel: Tunnel;
  /** What the impairment did so far, as text; also checks it did something when `check`. */
  damage(check: boolean): Promise<string>;
}

describe.each([
  ['userspace relay: each way 5% lost, 20% delayed 5–30 ms, 1% duplicated', 'relay'],
  ['nftables in B: each way 5% of the WireGuard UDP dropped', 'nft'],
] as const)(`netstack TCP over a bad path (%s): ${sideALabel(KIND)} <-> kernel behind wireguard-go`, (_name, variant: Variant) => {
  let pair: NamespacePair;
  let keys: SshKeys;
  let file: { path: string; sha256: string };

  beforeAll(async () => {
    if (!labReady()) return;
    pair = await createNamespacePair();
    keys = await makeSshKeys();
    file = writeRandomFile('loss.bin', FILE_SIZE);
  }, 60_000);
  beforeEach(() => {
    requireLab();
    requireTools(NETSTACK_TOOLS);
  });
  afterEach(cleanupChildren);
  afterAll(cleanupAll, 60_000);

  /** The bad path, side A forwarding 127.0.0.1:FWD_PORT to sshd on wireguard-go's tunnel address. */
  async function start(): Promise<BadPath & { via: SshRun; why: () => string }> {
    const forward = [`${FWD_PORT}=${TUN.b4}:22`];
    let path: BadPath;
    if (variant === 'relay') {
      const relay = await startLossyRelay({ ns: pair.a.name, listen: `${pair.a.ipv4}:0`, upstream: `${pair.b.ipv4}:${B_UDP_PORT}`, ...IMPAIR });
      const tunnel = await startTunnel({ pair, forward, endpointForA: relay.endpoint, bKnowsA: false });
      path = {
        tunnel,
        async damage(check) {
          const s = await relay.stats();
          const text = `relay (seed ${relay.seed}): ${JSON.stringify(s)}`;
          if (check) {
            for (const d of [s.toUpstream, s.toClient]) {
              expect(d.dropped, text).toBeGreaterThan(0);
              expect(d.delayed, text).toBeGreaterThan(0);
              expect(d.duplicated, text).toBeGreaterThan(0);
            }
          }
          return text;
        },
      };
    } else {
      const tunnel = await startTunnel({ pair, forward });
      const loss = await addUdpLoss(pair.b.name, { percent: IMPAIR.dropPct!, port: B_UDP_PORT });
      path = {
        tunnel,
        async damage(check) {
          const c = await loss.counters();
          const text = `nft drops in B: ${JSON.stringify(c)}`;
          if (check) {
            expect(c.input, text).toBeGreaterThan(0);
            expect(c.output, text).toBeGreaterThan(0);
          }
          return text;
        },
      };
    }
    const sshd = await startSshd({ ns: pair.b.name, address: TUN.b4, keys });
    return {
      ...path,
      via: { ns: pair.a.name, host: '127.0.0.1', port: FWD_PORT, keys, options: SSH_OPTS },
      why: () => `${path.tunnel.output()}\n${sshd.log()}`,
    };
  }

  it('an ssh command works', async () => {
    const p = await start();
    const res = await sshExec({ ...p.via, timeoutMs: 60_000 }, 'echo hello; head -c 200000 /dev/zero | wc -c');
    const why = `${res.stdout}${res.stderr}\n${await p.damage(false)}\n${p.why()}`;
    expect(res.code, why).toBe(0);
    expect(res.stdout, why).toBe('hello\n200000\n');
  }, 90_000);

  it.each(['upload', 'download'] as const)('scp of 32 MiB (%s) arrives intact (sha256 equal)', async (dir) => {
    const p = await start();
    const dst = tempPath(`loss-${dir}.bin`);
    const t0 = Date.now();
    const res = await scp({ ...p.via, timeoutMs: 170_000 }, dir, dir === 'upload' ? file.path : dst, dir === 'upload' ? dst : file.path);
    const ms = Date.now() - t0;
    const damage = await p.damage(false);
    const why = `scp ${dir} exit ${res.code} after ${ms} ms (${fileSize(dst)} of ${FILE_SIZE} bytes arrived): ${res.stdout}${res.stderr}\n${damage}\n${p.why()}`;
    expect(res.code, why).toBe(0);
    expect(await sha256File(dst), why).toBe(file.sha256);
    console.log(`[${KIND}] ${variant}: scp ${dir} 32 MiB in ${ms} ms (${mbit(FILE_SIZE, ms)} Mbit/s); ${damage}`);
    await p.damage(true); // the path really was bad
    rmSync(dst, { force: true });
  }, 200_000);
});

describe('netstack loss lab control (no pierce): wireguard-go <-> wireguard-go', () => {
  let pair: NamespacePair;

  beforeAll(async () => {
    if (!labReady()) return;
    pair = await createNamespacePair();
  }, 60_000);
  beforeEach(() => {
    requireLab();
    requireTools(NETSTACK_TOOLS);
  });
  afterEach(cleanupChildren);
  afterAll(cleanupAll, 60_000);

  it('the relay forwards both ways: kernel pings over the tunnel through an unimpaired relay', async () => {
    const relay = await startLossyRelay({ ns: pair.a.name, listen: `${pair.a.ipv4}:0`, upstream: `${pair.b.ipv4}:${B_UDP_PORT}` });
    const t = await startTunnel({ pair, kind: 'kernel', endpointForA: relay.endpoint, bKnowsA: false });
    const r = await ping(pair.a.name, TUN.b4, { count: 10, intervalS: 0.1, timeoutS: 5 });
    const s = await relay.stats();
    const why = `${r.output}\n${JSON.stringify(s)}\n${t.output()}`;
    expect(r.received, why).toBe(10);
    expect(s.client, why).toBe(`${pair.a.ipv4}:${t.udpPort}`);
    for (const d of [s.toUpstream, s.toClient]) {
      expect(d.in, why).toBeGreaterThanOrEqual(11); // handshake + 10 echoes (or replies)
      expect(d.out, why).toBe(d.in);
      expect(d.dropped + d.delayed + d.duplicated, why).toBe(0);
    }
    // wireguard-go in B sees the relay, not A's WireGuard port, as the peer's endpoint.
    expect((await t.wgB.peer(t.aKeys.publicKey))?.endpoint, why).toMatch(new RegExp(`^${pair.a.ipv4.replaceAll('.', '\\.')}:\\d+$`));
    expect((await t.wgB.peer(t.aKeys.publicKey))?.endpoint, why).not.toBe(`${pair.a.ipv4}:${t.udpPort}`);
  }, 60_000);

  it('the relay impairs: with 30% loss, 50% delayed and 10% duplicated, pings are lost and counters move', async () => {
    const relay = await startLossyRelay({
      ns: pair.a.name,
      listen: `${pair.a.ipv4}:0`,
      upstream: `${pair.b.ipv4}:${B_UDP_PORT}`,
      dropPct: 30,
      delayPct: 50,
      delayMinMs: 5,
      delayMaxMs: 30,
      dupPct: 10,
      seed: 12345,
    });
    const t = await startTunnel({ pair, kind: 'kernel', endpointForA: relay.endpoint, bKnowsA: false });
    const r = await ping(pair.a.name, TUN.b4, { count: 60, intervalS: 0.05, timeoutS: 2 });
    const s = await relay.stats();
    const why = `${r.output}\n${JSON.stringify(s)}\n${t.output()}`;
    expect(r.received, why).toBeGreaterThan(0);
    expect(r.transmitted, why).toBeGreaterThan(r.received); // (with -w, ping sends on until 60 replies)
    // (Duplicates never reach ping: WireGuard's replay window drops the second copy.)
    for (const d of [s.toUpstream, s.toClient]) {
      expect(d.dropped, why).toBeGreaterThan(0);
      expect(d.delayed, why).toBeGreaterThan(0);
      expect(d.duplicated, why).toBeGreaterThan(0);
      // Every packet in is dropped, sent, or (delayed) still pending when the counters are read.
      expect(d.out, why).toBeLessThanOrEqual(d.in - d.dropped + d.duplicated);
      expect(d.out + s.pending, why).toBeGreaterThanOrEqual(d.in - d.dropped + d.duplicated);
    }
  }, 60_000);

  it('the nftables rule drops the WireGuard UDP in B both ways (30%): pings lost, counters move', async () => {
    const t = await startTunnel({ pair, kind: 'kernel' });
    const warm = await ping(pair.a.name, TUN.b4, { count: 1, timeoutS: 5 }); // handshake before the loss
    expect(warm.ok, `${warm.output}\n${t.output()}`).toBe(true);
    const loss = await addUdpLoss(pair.b.name, { percent: 30, port: B_UDP_PORT });
    const r = await ping(pair.a.name, TUN.b4, { count: 60, intervalS: 0.05, timeoutS: 2 });
    const c = await loss.counters();
    const why = `${r.output}\n${JSON.stringify(c)}\n${t.output()}`;
    expect(c.input, why).toBeGreaterThan(0);
    expect(c.output, why).toBeGreaterThan(0);
    expect(r.received, why).toBeGreaterThan(0);
    expect(r.transmitted, why).toBeGreaterThan(r.received); // (with -w, ping sends on until 60 replies)
    await loss.remove();
    const after = await ping(pair.a.name, TUN.b4, { count: 5, intervalS: 0.1, timeoutS: 3 });
    expect(after.received, `${after.output}\n${t.output()}`).toBe(5);
  }, 60_000);
});
