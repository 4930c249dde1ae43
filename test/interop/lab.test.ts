/**
 * Control for the interop tests: the lab alone, no Pierce. Two wireguard-go peers in two
 * namespaces handshake and the kernels ping each other through the tunnel. If this fails,
 * the problem is the lab (tools, kernel, permissions), not Pierce.
 *
 * Never skipped: without root or the tools, every test fails saying what to install.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  cleanupAll,
  cleanupChildren,
  createNamespacePair,
  genKeyPair,
  genPsk,
  labProblems,
  parsePingOutput,
  ping,
  requireLab,
  sleep,
  spawnIn,
  startWireguardGo,
  type NamespacePair,
} from './lab.ts';

const A4 = '10.99.0.1';
const A6 = 'fd99::1';
const B4 = '10.99.0.2';
const B6 = 'fd99::2';

describe('interop lab control: wireguard-go <-> wireguard-go', () => {
  let pair: NamespacePair;

  beforeAll(async () => {
    if (labProblems().length === 0) pair = await createNamespacePair();
  }, 30_000);
  beforeEach(requireLab); // fails every test, loudly, when the lab cannot run
  afterEach(cleanupChildren);
  afterAll(cleanupAll, 30_000);

  async function startPeers(opts: { v6Underlay?: boolean } = {}) {
    const [ka, kb, psk] = await Promise.all([genKeyPair(), genKeyPair(), genPsk()]);
    const b = await startWireguardGo({
      ns: pair.b.name,
      privateKey: kb.privateKey,
      listenPort: 51820,
      addresses: [`${B4}/24`, `${B6}/64`],
      peers: [{ publicKey: ka.publicKey, presharedKey: psk, allowedIPs: [`${A4}/32`, `${A6}/128`] }],
    });
    const peerB = {
      publicKey: kb.publicKey,
      presharedKey: psk,
      endpoint: opts.v6Underlay ? `[${pair.b.ipv6}]:${b.listenPort}` : `${pair.b.ipv4}:${b.listenPort}`,
      allowedIPs: [`${B4}/32`, `${B6}/128`],
    };
    const a = await startWireguardGo({
      ns: pair.a.name,
      privateKey: ka.privateKey,
      addresses: [`${A4}/24`, `${A6}/64`],
      peers: [peerB],
    });
    return { a, b, peerB };
  }

  it('handshakes; the kernels ping each other over the tunnel, IPv4 and IPv6', async () => {
    const { a, b } = await startPeers();
    expect(b.listenPort).toBe(51820);
    expect(a.listenPort).toBeGreaterThan(0);

    for (const [ns, dst] of [[pair.a.name, B4], [pair.a.name, B6], [pair.b.name, A4], [pair.b.name, A6]] as const) {
      const r = await ping(ns, dst, { count: 3, intervalS: 0.2, timeoutS: 3 });
      expect(r.ok, r.output).toBe(true);
      expect(r.received, r.output).toBe(3);
      expect(r.rtts).toHaveLength(3);
    }
    const st = await a.show();
    expect(st.publicKey).toBe(a.publicKey);
    expect(st.peers).toHaveLength(1);
    expect(st.peers[0]!.latestHandshake).toBeGreaterThan(0);
    expect(st.peers[0]!.rxBytes).toBeGreaterThan(0);
    expect(st.peers[0]!.presharedKey).not.toBeNull();
    expect((await b.peer(a.publicKey))?.endpoint).toMatch(new RegExp(`^${pair.a.ipv4.replaceAll('.', '\\.')}:\\d+$`));

    await a.stop();
    await b.stop();
    expect(a.process.exited && b.process.exited).toBe(true);
  }, 30_000);

  it('re-handshake after remove/re-add of a peer loses few packets (IPv6 underlay)', async () => {
    const { a, b, peerB } = await startPeers({ v6Underlay: true });
    const pinger = spawnIn(pair.a.name, 'ping', ['-4', '-n', '-i', '0.2', '-c', '30', '-W', '2', B4]);
    await pinger.waitForLine(/bytes from/, 10_000);
    const hs0 = await b.waitForHandshake(a.publicKey);
    await sleep(1_200); // latest-handshake has 1 s resolution

    await a.removePeer(peerB.publicKey);
    expect((await a.show()).peers).toHaveLength(0);
    await a.setPeer(peerB);
    await b.waitForHandshake(a.publicKey, { newerThan: hs0, timeoutMs: 8_000 });

    const exit = await pinger.waitForExit(15_000);
    const s = parsePingOutput(pinger.output());
    expect(s.transmitted, pinger.output()).toBe(30);
    expect(s.received, pinger.output()).toBeGreaterThanOrEqual(27);
    expect(exit.code).toBe(0);
    expect((await b.peer(a.publicKey))?.endpoint).toMatch(/^\[fd00:200::1\]:\d+$/);
  }, 30_000);
});
