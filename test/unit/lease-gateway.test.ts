/**
 * The UDP lease gateway (gateway/src/relay/leases.ts) in process on loopback, with a stubbed
 * control lookup, driven by the browser-side transport (worker/udp-lease.ts) over `ws`:
 * authentication, the destination allowlist (and its refresh), socket and rate limits, inbound
 * forwarding, freeing on close, and the redial after the gateway restarts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import WebSocket from 'ws';
import { startRelay, type RelayServer } from '../../gateway/src/relay/server.ts';
import type { LeaseGrant, LeaseOptions } from '../../gateway/src/relay/leases.ts';
import { NodePrivate, type NodePublic } from '../../src/key/keys.ts';
import { LeaseError, DenyReason } from '../../src/lease/codec.ts';
import { browserClock } from '../../src/browser/platform.ts';
import type { WebSocketCtor } from '../../src/control/client.ts';
import { leaseTransport, leaseUrlFor, type LeaseTransport } from '../../worker/udp-lease.ts';

let relay: RelayServer | undefined;
const open: { close(): void }[] = [];

afterEach(async () => {
  for (const o of open.splice(0)) o.close();
  await relay?.close();
  relay = undefined;
});

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function udpSink(host = '127.0.0.1'): Promise<{ sock: Socket; port: number; got: { data: string; port: number }[] }> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, host, r));
  const got: { data: string; port: number }[] = [];
  sock.on('message', (m, r) => got.push({ data: m.toString(), port: r.port }));
  open.push({ close: () => sock.close() });
  return { sock, port: sock.address().port, got };
}

const known = NodePrivate.generate();

async function gateway(grant: () => LeaseGrant, opts: Partial<LeaseOptions> = {}, port = 0): Promise<{ url: string; lookups: number }> {
  const st = { url: '', lookups: 0 };
  relay = await startRelay({
    host: '127.0.0.1',
    port,
    leases: {
      allowLoopback: true,
      cacheMs: 0,
      ...opts,
      authority: async (k: NodePublic) => {
        st.lookups++;
        if (!k.equals(known.public())) throw new LeaseError('LEASE_UNKNOWN_NODE', 'unknown');
        return grant();
      },
    },
  });
  st.url = leaseUrlFor(relay.url);
  return st;
}

function client(url: string, key = known, extra: Partial<Parameters<typeof leaseTransport>[0]> = {}): LeaseTransport {
  const t = leaseTransport({ url, nodeKey: key, WebSocket: WebSocket as unknown as WebSocketCtor, clock: browserClock, ...extra });
  open.push(t);
  return t;
}

describe('UDP lease gateway', () => {
  it('builds the lease URL from a relay URL', () => {
    expect(leaseUrlFor('https://relay.example/derp')).toBe('wss://relay.example/lease');
    expect(leaseUrlFor('http://127.0.0.1:8443')).toBe('ws://127.0.0.1:8443/lease');
    expect(leaseUrlFor('ws://[::1]:81/x?y')).toBe('ws://[::1]:81/lease');
  });

  it('refuses an unknown node key with a typed error, and /lease is 404 without --udp-leases', async () => {
    const g = await gateway(() => ({ node: { id: 1, name: 'web' }, stun: [], peers: [] }));
    const t = client(g.url, NodePrivate.generate());
    await expect(t.bind(0, () => {})).rejects.toMatchObject({ code: 'LEASE_UNKNOWN_NODE' });
    expect(t.connected).toBe(false);
    expect(relay!.leases!.stats()).toMatchObject({ leases: 0, sockets: 0, refused: 1 });
    await relay!.close();

    relay = await startRelay({ host: '127.0.0.1', port: 0 });
    const t2 = client(leaseUrlFor(relay.url));
    await expect(t2.bind(0, () => {})).rejects.toMatchObject({ code: 'LEASE_UNREACHABLE' });
    const r = await fetch(new URL('/lease', relay.url));
    expect(r.status).toBe(404);
  });

  it('sends only to STUN servers and peer endpoint IPs, forwards inbound datagrams, and frees sockets on close', async () => {
    const stun = await udpSink();
    const other = await udpSink();
    const peer = await udpSink('127.0.0.2');
    const g = await gateway(() => ({ node: { id: 1, name: 'web' }, stun: [`127.0.0.1:${stun.port}`], peers: ['127.0.0.2:1'] }));
    const denied: { ip: string; port: number; reason: number }[] = [];
    const t = client(g.url, known, { events: { denied: (ip, port, reason) => denied.push({ ip, port, reason }) } });
    const inbound: { data: string; ip: string; port: number }[] = [];
    const s = await t.bind(0, (d, ip, port) => inbound.push({ data: new TextDecoder().decode(d), ip, port }));
    expect(t.connected).toBe(true);
    expect(t.info!.node.name).toBe('web');
    expect(s.port).toBeGreaterThan(0);
    expect(relay!.leases!.stats()).toMatchObject({ leases: 1, sockets: 1 });

    s.send('127.0.0.1', stun.port, new TextEncoder().encode('stun'));
    s.send('127.0.0.2', peer.port, new TextEncoder().encode('peer, any port')); // the peer's IP, another port
    s.send('127.0.0.1', other.port, new TextEncoder().encode('nope'));
    await waitFor('the allowed datagrams', () => stun.got.length === 1 && peer.got.length === 1);
    await waitFor('the refusal', () => denied.length === 1);
    expect(stun.got[0]).toEqual({ data: 'stun', port: s.port });
    expect(denied[0]).toEqual({ ip: '127.0.0.1', port: other.port, reason: DenyReason.NotAllowed });
    expect(other.got).toEqual([]);

    // Inbound from anywhere reaches the node.
    other.sock.send('hello lease', s.port, '127.0.0.1');
    await waitFor('the inbound datagram', () => inbound.length === 1);
    expect(inbound[0]).toEqual({ data: 'hello lease', ip: '127.0.0.1', port: other.port });
    const metrics = await relay!.metrics.registry.metrics();
    expect(metrics).toMatch(/^pierce_relay_leases 1$/m);
    expect(metrics).toMatch(/^pierce_relay_lease_sockets 1$/m);
    expect(metrics).toMatch(/^pierce_relay_lease_datagrams_sent_total 2$/m);
    expect(metrics).toMatch(/^pierce_relay_lease_denied_total\{reason="not_allowed"\} 1$/m);

    // Closing the transport frees the lease and its sockets.
    t.close();
    await waitFor('the lease freed', () => relay!.leases!.stats().leases === 0 && relay!.leases!.stats().sockets === 0);
    other.sock.send('after close', s.port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 100));
    expect(inbound).toHaveLength(1);
  });

  it('refreshes the allowlist when a destination is refused, so new peer endpoints work at once', async () => {
    const later = await udpSink('127.0.0.3');
    const grant: LeaseGrant = { node: { id: 1, name: 'web' }, stun: [], peers: [] };
    const g = await gateway(() => grant, { refreshMs: 60_000 });
    const t = client(g.url);
    const s = await t.bind(0, () => {});
    const before = g.lookups;
    grant.peers = [`127.0.0.3:${later.port}`]; // control learned a new endpoint of a peer
    s.send('127.0.0.3', later.port, new TextEncoder().encode('new endpoint'));
    await waitFor('the held send', () => later.got.length === 1);
    expect(g.lookups).toBe(before + 1);
    expect(t.stats.denied).toBe(0);
  });

  it('caps sockets per lease, refuses privileged ports, and rate-limits sends', async () => {
    const stun = await udpSink();
    const g = await gateway(() => ({ node: { id: 1, name: 'web' }, stun: [`127.0.0.1:${stun.port}`], peers: [] }), { sockets: 2, packetsPerSecond: 5 });
    const t = client(g.url);
    await expect(t.bind(80, () => {})).rejects.toMatchObject({ code: 'LEASE_PORT_NOT_ALLOWED' });
    const a = await t.bind(0, () => {});
    await t.bind(0, () => {});
    await expect(t.bind(0, () => {})).rejects.toMatchObject({ code: 'LEASE_TOO_MANY_SOCKETS' });
    for (let i = 0; i < 20; i++) a.send('127.0.0.1', stun.port, new Uint8Array([i]));
    await waitFor('the rate refusals', () => t.stats.denied >= 10);
    await new Promise((r) => setTimeout(r, 100));
    expect(stun.got.length).toBeGreaterThanOrEqual(5);
    expect(stun.got.length).toBeLessThanOrEqual(7);
    expect(relay!.leases!.stats().denied.rateLimited).toBeGreaterThanOrEqual(13);
    expect(relay!.leases!.stats().sockets).toBe(2);
  });

  it('batches: a burst to a leased socket reaches the node in fewer messages, in order and intact', async () => {
    const src = await udpSink();
    const g = await gateway(() => ({ node: { id: 1, name: 'web' }, stun: [], peers: [] }));
    const t = client(g.url);
    const got: { data: Uint8Array; ip: string; port: number }[] = [];
    const s = await t.bind(0, (d, ip, port) => got.push({ data: Uint8Array.from(d), ip, port }));
    expect(t.info!.batch).toBe(true);
    const before = t.stats.messagesReceived;
    // WireGuard-sized datagrams in bursts (small enough for the loopback receive buffer).
    const N = 200;
    const dgram = (i: number) => {
      const b = Buffer.alloc(1280 + (i % 7));
      b.writeUInt32BE(i, 0);
      for (let j = 4; j < b.length; j++) b[j] = (i * 31 + j) & 0xff;
      return b;
    };
    for (let i = 0; i < N; i += 25) {
      for (let j = i; j < i + 25; j++) src.sock.send(dgram(j), s.port, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 10));
    }
    await waitFor('the burst', () => got.length === N);
    for (let i = 0; i < N; i++) {
      expect(got[i]!.port).toBe(src.port);
      expect(Buffer.from(got[i]!.data).equals(dgram(i))).toBe(true);
    }
    const messages = t.stats.messagesReceived - before;
    expect(t.stats.received).toBe(N);
    expect(messages).toBeLessThan(N / 2);
    expect(relay!.leases!.stats().received).toBe(N);
    expect(relay!.leases!.stats().messagesOut).toBe(messages + 2); // and Ready, Bound
  });

  it('takes a Batch from the node apart: a denied destination inside denies only that one', async () => {
    const stun = await udpSink();
    const other = await udpSink();
    const g = await gateway(() => ({ node: { id: 1, name: 'web' }, stun: [`127.0.0.1:${stun.port}`], peers: [] }));
    const denied: { ip: string; port: number; reason: number }[] = [];
    const t = client(g.url, known, { events: { denied: (ip, port, reason) => denied.push({ ip, port, reason }) } });
    const s = await t.bind(0, () => {});
    const sent = t.stats.messagesSent;
    const msgsIn = relay!.leases!.stats().messagesIn;
    // One task: the first goes alone, the other three in one Batch with the refused one inside.
    s.send('127.0.0.1', stun.port, new TextEncoder().encode('a'));
    s.send('127.0.0.1', stun.port, new TextEncoder().encode('b'));
    s.send('127.0.0.1', other.port, new TextEncoder().encode('refused'));
    s.send('127.0.0.1', stun.port, new TextEncoder().encode('c'));
    await waitFor('the allowed datagrams', () => stun.got.length === 3);
    await waitFor('the refusal', () => denied.length === 1);
    expect(stun.got.map((x) => x.data)).toEqual(['a', 'b', 'c']);
    expect(denied).toEqual([{ ip: '127.0.0.1', port: other.port, reason: DenyReason.NotAllowed }]);
    expect(other.got).toEqual([]);
    expect(t.stats.sent).toBe(4);
    expect(t.stats.messagesSent - sent).toBe(2);
    expect(relay!.leases!.stats().messagesIn - msgsIn).toBe(2);
    expect(relay!.leases!.stats()).toMatchObject({ sent: 3, denied: { notAllowed: 1, rateLimited: 0, noSocket: 0 } });
  });

  it('never sends to loopback unless allowed, nor to multicast', async () => {
    const g = await gateway(() => ({ node: { id: 1, name: 'web' }, stun: ['127.0.0.1:3478', '224.0.0.1:5'], peers: [] }), { allowLoopback: false });
    const t = client(g.url);
    const s = await t.bind(0, () => {});
    s.send('127.0.0.1', 3478, new Uint8Array(1));
    s.send('224.0.0.1', 5, new Uint8Array(1));
    await waitFor('two refusals', () => t.stats.denied === 2);
    expect(relay!.leases!.stats().sent).toBe(0);
  });

  it('one lease per node key: a newer lease replaces the older, which stays down', async () => {
    const g = await gateway(() => ({ node: { id: 1, name: 'web' }, stun: [], peers: [] }), { sockets: 1 });
    const states: boolean[] = [];
    const first = client(g.url, known, { backoff: { baseMs: 20, maxMs: 50 }, events: { state: (up) => states.push(up) } });
    await first.bind(0, () => {});
    const second = client(g.url);
    await second.bind(0, () => {}); // the cap is per node: the first lease's socket is gone
    await waitFor('the first lease down', () => states.includes(false));
    await new Promise((r) => setTimeout(r, 200));
    expect(first.connected).toBe(false);
    expect(second.connected).toBe(true);
    expect(relay!.leases!.stats()).toMatchObject({ leases: 1, sockets: 1 });
  });

  it('redials after the gateway restarts and binds its sockets again', async () => {
    const stun = await udpSink();
    const grant = () => ({ node: { id: 1, name: 'web' }, stun: [`127.0.0.1:${stun.port}`], peers: [] });
    const g = await gateway(grant);
    const port = relay!.port;
    const states: boolean[] = [];
    const t = client(g.url, known, { backoff: { baseMs: 50, maxMs: 200 }, events: { state: (up) => states.push(up) } });
    const s = await t.bind(0, () => {});
    const oldPort = s.port;
    await relay!.close();
    await waitFor('the loss', () => states.includes(false));
    s.send('127.0.0.1', stun.port, new Uint8Array(1)); // dropped while down
    expect(t.stats.dropped).toBe(1);
    await gateway(grant, {}, port);
    await waitFor('the redial', () => t.connected && relay!.leases!.stats().sockets === 1, 10_000);
    // The gateway counts the socket just before the node reads Bound: sends resume after that.
    await waitFor('a send after the redial', () => {
      s.send('127.0.0.1', stun.port, new TextEncoder().encode('again'));
      return stun.got.some((x) => x.data === 'again');
    });
    expect(s.port).toBe(oldPort); // asked for its old port again
    expect(stun.got.find((x) => x.data === 'again')!.port).toBe(oldPort);
  });
});
