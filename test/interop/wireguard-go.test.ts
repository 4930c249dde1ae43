/**
 * Pierce's WireGuard against a peer nobody here wrote: wireguard-go, with the Linux kernel
 * behind it answering ICMP. Pierce runs in namespace A, wireguard-go in namespace B (see
 * lab.ts). lab.test.ts is the control: if it fails too, the lab is broken, not Pierce.
 *
 * CLI contract under test (`node gateway/bin/pierce.mjs`, or the command in $PIERCE_CLI):
 *   pierce wg up --config FILE
 *     foreground; stderr line /listening on udp port (\d+)/ once ready; answers ICMP/ICMPv6
 *     echo to its tunnel addresses; exit 0 on SIGINT/SIGTERM; SIGUSR1 forces a new handshake
 *     with every peer and logs a line matching /handshake/.
 *   pierce wg ping --config FILE [--count N] [--interval MS] [--timeout SECONDS] DEST_IP
 *     prints `64 bytes from DEST: icmp_seq=N time=T ms` per reply; exit 0 when every echo was
 *     answered, 1 otherwise; an unreachable endpoint exits non-zero with /handshake.*time/i.
 *
 * Tunnel: Pierce 10.99.0.1/24 fd99::1/64, wireguard-go 10.99.0.2/24 fd99::2/64.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  cleanupAll,
  cleanupChildren,
  createNamespacePair,
  formatWgQuick,
  genKeyPair,
  genPsk,
  labProblems,
  parsePingOutput,
  ping,
  requireLab,
  sleep,
  spawnIn,
  startWireguardGo,
  writeTempFile,
  type ChildHandle,
  type KeyPair,
  type NamespacePair,
  type WgPeer,
  type WireguardGo,
} from './lab.ts';

const PIERCE_MJS = fileURLToPath(new URL('../../gateway/bin/pierce.mjs', import.meta.url));

const P4 = '10.99.0.1';
const P6 = 'fd99::1';
const W4 = '10.99.0.2';
const W6 = 'fd99::2';
const PIERCE_ADDRESSES = [`${P4}/24`, `${P6}/64`];
const WG_ADDRESSES = [`${W4}/24`, `${W6}/64`];
const PIERCE_PORT = 51820;
const WG_PORT = 51821;
const TEST_TIMEOUT = 30_000;

/** Starts the pierce CLI inside `ns`. */
function pierce(ns: string, args: string[]): ChildHandle {
  const override = process.env.PIERCE_CLI?.trim();
  if (override) {
    const [cmd, ...pre] = override.split(/\s+/);
    return spawnIn(ns, cmd!, [...pre, ...args], { name: `pierce ${args[0]} ${args[1]}` });
  }
  if (!existsSync(PIERCE_MJS)) {
    throw new Error(`${PIERCE_MJS} does not exist: the pierce CLI is needed for these tests (or set PIERCE_CLI)`);
  }
  return spawnIn(ns, process.execPath, [PIERCE_MJS, ...args], { name: `pierce ${args[0]} ${args[1]}` });
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function replyLines(p: ChildHandle, dest: string): string[] {
  const re = new RegExp(`^\\d+ bytes from ${escapeRe(dest)}: icmp_seq=\\d+ time=[\\d.]+ ms`);
  return p.stdoutLines().filter((l) => re.test(l));
}

describe('pierce wg <-> wireguard-go', () => {
  let pair: NamespacePair;
  let A: string;
  let B: string;
  let pk: KeyPair; // pierce's keys, made by `wg genkey`

  beforeAll(async () => {
    if (labProblems().length > 0) return;
    pair = await createNamespacePair();
    A = pair.a.name;
    B = pair.b.name;
    pk = await genKeyPair();
  }, 30_000);
  beforeEach(requireLab); // fails every test, loudly, when the lab cannot run
  afterEach(cleanupChildren);
  afterAll(cleanupAll, 30_000);

  /** wireguard-go in B with pierce as its only peer. */
  function startWg(opts: { psk?: string; endpointToPierce?: string; listenPort?: number } = {}): Promise<WireguardGo> {
    return startWireguardGo({
      ns: B,
      listenPort: opts.listenPort ?? WG_PORT,
      addresses: WG_ADDRESSES,
      peers: [pierceAsPeer(opts)],
    });
  }

  function pierceAsPeer(opts: { psk?: string; endpointToPierce?: string }): WgPeer {
    return {
      publicKey: pk.publicKey,
      presharedKey: opts.psk,
      endpoint: opts.endpointToPierce,
      allowedIPs: [`${P4}/32`, `${P6}/128`],
    };
  }

  /** pierce's wg-quick config with wireguard-go (or whatever key/endpoint given) as peer. */
  function pierceConfig(peer: { publicKey: string; psk?: string; endpoint?: string }, listenPort?: number): string {
    return writeTempFile(
      'pierce.conf',
      formatWgQuick({
        privateKey: pk.privateKey,
        addresses: PIERCE_ADDRESSES,
        listenPort,
        peers: [{ publicKey: peer.publicKey, presharedKey: peer.psk, endpoint: peer.endpoint, allowedIPs: ['10.99.0.0/24', 'fd99::/64'] }],
      }),
    );
  }

  async function startPierceUp(conf: string): Promise<{ up: ChildHandle; port: number }> {
    const up = pierce(A, ['wg', 'up', '--config', conf]);
    const m = await up.waitForLine(/listening on udp port (\d+)/, 15_000);
    return { up, port: Number(m[1]) };
  }

  async function stopPierce(up: ChildHandle, sig: 'SIGINT' | 'SIGTERM'): Promise<void> {
    up.signal(sig);
    const res = await up.waitForExit(5_000);
    expect(res.code, `pierce wg up after ${sig}:\n${up.output()}`).toBe(0);
  }

  // ---- Pierce as initiator: `pierce wg ping` ----------------------------------------------

  describe.each([
    ['without preshared key', false],
    ['with preshared key', true],
  ] as const)('initiator, %s', (_name, withPsk) => {
    it.each([
      ['IPv4', W4],
      ['IPv6', W6],
    ] as const)('wg ping reaches the kernel behind wireguard-go over tunnel %s', async (_family, dest) => {
      const psk = withPsk ? await genPsk() : undefined;
      const wg = await startWg({ psk });
      const conf = pierceConfig({ publicKey: wg.publicKey, psk, endpoint: `${pair.b.ipv4}:${wg.listenPort}` });
      const p = pierce(A, ['wg', 'ping', '--config', conf, '--count', '3', '--interval', '200', '--timeout', '10', dest]);
      const res = await p.waitForExit(25_000);
      expect(res.code, p.output()).toBe(0);
      expect(replyLines(p, dest), p.output()).toHaveLength(3);
      const st = await wg.peer(pk.publicKey);
      expect(st?.latestHandshake, 'wireguard-go saw no handshake').toBeGreaterThan(0);
      expect(st?.rxBytes).toBeGreaterThan(0);
      expect(st?.endpoint).toMatch(new RegExp(`^${escapeRe(pair.a.ipv4)}:\\d+$`));
    }, TEST_TIMEOUT);
  });

  it('initiator over an IPv6 underlay endpoint', async () => {
    const wg = await startWg();
    const conf = pierceConfig({ publicKey: wg.publicKey, endpoint: `[${pair.b.ipv6}]:${wg.listenPort}` });
    const p = pierce(A, ['wg', 'ping', '--config', conf, '--count', '2', '--interval', '200', '--timeout', '10', W4]);
    const res = await p.waitForExit(25_000);
    expect(res.code, p.output()).toBe(0);
    expect(replyLines(p, W4), p.output()).toHaveLength(2);
    expect((await wg.peer(pk.publicKey))?.endpoint).toMatch(new RegExp(`^\\[${escapeRe(pair.a.ipv6)}\\]:\\d+$`));
  }, TEST_TIMEOUT);

  // ---- Pierce as responder: `pierce wg up`, the kernel in B pings it -------------------------

  describe.each([
    ['IPv4 underlay, no psk', 'IPv4', false],
    ['IPv4 underlay, psk', 'IPv4', true],
    ['IPv6 underlay, no psk', 'IPv6', false],
  ] as const)('responder (%s)', (_name, underlay, withPsk) => {
    it('the kernel behind wireguard-go pings pierce over tunnel IPv4 and IPv6', async () => {
      const psk = withPsk ? await genPsk() : undefined;
      // wireguard-go's key must be in pierce's config, so make it first.
      const wgKeys = await genKeyPair();
      const conf = pierceConfig({ publicKey: wgKeys.publicKey, psk }, PIERCE_PORT); // no Endpoint
      const { up, port } = await startPierceUp(conf);
      expect(port).toBe(PIERCE_PORT);
      const endpoint = underlay === 'IPv6' ? `[${pair.a.ipv6}]:${port}` : `${pair.a.ipv4}:${port}`;
      const wg = await startWireguardGo({
        ns: B,
        privateKey: wgKeys.privateKey,
        listenPort: WG_PORT,
        addresses: WG_ADDRESSES,
        peers: [pierceAsPeer({ psk, endpointToPierce: endpoint })],
      });
      for (const dest of [P4, P6]) {
        const r = await ping(B, dest, { count: 3, intervalS: 0.5, timeoutS: 5 });
        expect(r.ok, `${r.output}\n${up.output()}`).toBe(true);
        expect(r.received, `${r.output}\n${up.output()}`).toBe(3);
      }
      expect((await wg.peer(pk.publicKey))?.latestHandshake).toBeGreaterThan(0);
      await stopPierce(up, 'SIGINT');
    }, TEST_TIMEOUT);
  });

  // ---- Cookies: pierce under load answers with cookie replies, wireguard-go retries with mac2 ----

  it('under load, pierce sends cookie replies; wireguard-go retries with a valid mac2 and the handshake completes', async () => {
    const wgKeys = await genKeyPair();
    const conf = pierceConfig({ publicKey: wgKeys.publicKey }, PIERCE_PORT);
    const up = pierce(A, ['wg', 'up', '--config', conf, '--under-load', '--verbose']);
    await up.waitForLine(/listening on udp port (\d+)/, 15_000);
    const wg = await startWireguardGo({
      ns: B,
      privateKey: wgKeys.privateKey,
      listenPort: WG_PORT,
      addresses: WG_ADDRESSES,
      peers: [pierceAsPeer({ endpointToPierce: `${pair.a.ipv4}:${PIERCE_PORT}` })],
    });
    // The first initiation gets a cookie reply; wireguard-go's retry (Rekey-Timeout, 5 s) carries mac2.
    const r = await ping(B, P4, { count: 12, intervalS: 1, timeoutS: 2 });
    expect(r.received, `${r.output}\n${up.output()}`).toBeGreaterThan(0);
    expect(up.output()).toMatch(/under load: answered with a cookie reply/);
    expect((await wg.peer(pk.publicKey))?.latestHandshake).toBeGreaterThan(0);
    await stopPierce(up, 'SIGINT');
  }, TEST_TIMEOUT);

  // ---- Re-handshakes keep traffic flowing ----------------------------------------------------

  it('forced re-handshakes (SIGUSR1 to pierce; peer removed and re-added on wireguard-go) keep a ping flowing', async () => {
    const wgKeys = await genKeyPair();
    // Both sides know each other's endpoint so either can initiate.
    const conf = pierceConfig({ publicKey: wgKeys.publicKey, endpoint: `${pair.b.ipv4}:${WG_PORT}` }, PIERCE_PORT);
    const { up, port } = await startPierceUp(conf);
    const peer = pierceAsPeer({ endpointToPierce: `${pair.a.ipv4}:${port}` });
    const wg = await startWireguardGo({ ns: B, privateKey: wgKeys.privateKey, listenPort: WG_PORT, addresses: WG_ADDRESSES, peers: [peer] });

    const pinger = spawnIn(B, 'ping', ['-4', '-n', '-i', '0.2', '-c', '40', '-W', '2', P4]);
    await pinger.waitForLine(/bytes from/, 10_000);
    const hs0 = await wg.waitForHandshake(pk.publicKey);
    await sleep(1_200); // latest-handshake has 1 s resolution

    // (a) pierce initiates anew.
    const mark = up.lineCount();
    up.signal('SIGUSR1');
    await up.waitForLine(/handshake/i, 5_000, { from: mark });
    const hs1 = await wg.waitForHandshake(pk.publicKey, { newerThan: hs0, timeoutMs: 8_000 });
    await sleep(1_200);

    // (b) wireguard-go forgets the peer (sessions included) and must initiate anew.
    await wg.removePeer(pk.publicKey);
    await wg.setPeer(peer);
    await wg.waitForHandshake(pk.publicKey, { newerThan: hs1, timeoutMs: 8_000 });

    const exit = await pinger.waitForExit(20_000);
    const s = parsePingOutput(pinger.output());
    const why = `${pinger.output()}\n${up.output()}`;
    expect(s.transmitted, why).toBe(40);
    expect(s.received, why).toBeGreaterThanOrEqual(36);
    expect(exit.code, why).toBe(0);
    await stopPierce(up, 'SIGTERM');
  }, TEST_TIMEOUT);

  // ---- Failures --------------------------------------------------------------------------------

  it.each([
    ['closed port', (): string => `${pair.b.ipv4}:${WG_PORT + 7}`],
    ['address nobody has', (): string => `${pair.b.ipv4.replace(/\.\d+$/, '.99')}:51820`],
  ] as const)('unreachable endpoint (%s): handshake timeout error', async (_name, endpoint) => {
    const wg = await startWg(); // running, but not where pierce sends
    const conf = pierceConfig({ publicKey: wg.publicKey, endpoint: endpoint() });
    const p = pierce(A, ['wg', 'ping', '--config', conf, '--count', '1', '--timeout', '3', W4]);
    const res = await p.waitForExit(20_000);
    expect(res.code, p.output()).not.toBe(0);
    expect(res.code, p.output()).not.toBeNull();
    expect(p.output()).toMatch(/handshake.*time/i);
    expect(replyLines(p, W4)).toHaveLength(0);
    expect((await wg.peer(pk.publicKey))?.latestHandshake).toBe(0);
  }, TEST_TIMEOUT);

  it('wrong peer public key in pierce config: no handshake, wg ping exits 1', async () => {
    const wg = await startWg();
    const wrong = await genKeyPair();
    const conf = pierceConfig({ publicKey: wrong.publicKey, endpoint: `${pair.b.ipv4}:${wg.listenPort}` });
    const p = pierce(A, ['wg', 'ping', '--config', conf, '--count', '2', '--interval', '200', '--timeout', '3', W4]);
    const res = await p.waitForExit(20_000);
    expect(res.code, p.output()).toBe(1);
    expect(replyLines(p, W4)).toHaveLength(0);
    const st = await wg.peer(pk.publicKey);
    expect(st?.latestHandshake).toBe(0);
    expect(st?.rxBytes).toBe(0);
  }, TEST_TIMEOUT);
});
