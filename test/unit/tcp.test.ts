/** TCP state machine tests on an in-memory pair; each names the RFC behaviour it checks. */
import { describe, expect, it } from 'vitest';
import { StackPair, concat, payload } from '../support/stack-pair.ts';
import type { TcpConnection } from '../../src/netstack/tcp/connection.ts';
import { parsePacket } from '../../src/netstack/ip.ts';
import { parseTcp, SYN, ACK, RST } from '../../src/netstack/tcp/segment.ts';
import { toHex } from '../../src/crypto/bytes.ts';
import type { SocketError } from '../../src/netstack/errors.ts';

function collect(c: TcpConnection) {
  const r = { data: [] as Uint8Array[], ended: false, closed: false, error: null as SocketError | null, connected: false };
  c.on('data', (d) => r.data.push(Uint8Array.from(d)));
  c.on('end', () => (r.ended = true));
  c.on('close', () => (r.closed = true));
  c.on('error', (e) => (r.error = e));
  c.on('connect', () => (r.connected = true));
  return r;
}

function connectPair(p: StackPair, port = 80) {
  let server: TcpConnection | null = null;
  p.b.listen({ port }, (c) => (server = c));
  const client = p.a.connect({ address: p.addrB, port });
  const cr = collect(client);
  p.runUntil(() => server !== null && cr.connected, 5_000);
  expect(server).not.toBeNull();
  const sr = collect(server!);
  return { client, server: server! as TcpConnection, cr, sr };
}

function segmentsFrom(p: StackPair, who: 'a' | 'b') {
  return p.wire.filter((w) => w.from === who).map((w) => {
    const ip = parsePacket(w.packet);
    return { t: w.t, ...parseTcp(ip.payload, ip.src, ip.dst) };
  });
}

/** Writes all of `data` respecting backpressure. */
function pump(c: TcpConnection, data: Uint8Array, chunk = 16384): () => boolean {
  let off = 0;
  const go = () => {
    while (off < data.length) {
      const ok = c.write(data.subarray(off, off + chunk));
      off += chunk;
      if (!ok) return;
    }
  };
  c.on('drain', go);
  go();
  return () => off >= data.length;
}

describe('RFC 9293 §3.5 connection establishment', () => {
  it('three-way handshake, data both ways, MSS clamped to the tunnel (1380 over IPv4)', () => {
    const p = new StackPair();
    p.keepWire = true;
    const { client, server, cr, sr } = connectPair(p);
    expect(client.state).toBe('ESTABLISHED');
    expect(server.state).toBe('ESTABLISHED');
    const syn = segmentsFrom(p, 'a')[0]!;
    expect(syn.flags & (SYN | ACK)).toBe(SYN);
    expect(syn.options.mss).toBe(1380);
    expect(syn.options.windowScale).toBeGreaterThan(0);
    expect(syn.options.sackPermitted).toBe(true);
    client.write(new TextEncoder().encode('ping'));
    p.run(p.now + 100);
    expect(new TextDecoder().decode(concat(sr.data))).toBe('ping');
    server.write(new TextEncoder().encode('pong'));
    p.run(p.now + 100);
    expect(new TextDecoder().decode(concat(cr.data))).toBe('pong');
  });

  it('MSS is 1360 over IPv6', () => {
    const p = new StackPair({}, { v6: true });
    p.keepWire = true;
    connectPair(p);
    expect(segmentsFrom(p, 'a')[0]!.options.mss).toBe(1360);
  });

  it('simultaneous open (figure 8) ends ESTABLISHED on both sides', () => {
    const p = new StackPair();
    const a = p.a.connect({ address: p.addrB, port: 2000, localPort: 1000 });
    const b = p.b.connect({ address: p.addrA, port: 1000, localPort: 2000 });
    const ar = collect(a);
    const br = collect(b);
    p.run(2_000);
    expect([a.state, b.state]).toEqual(['ESTABLISHED', 'ESTABLISHED']);
    expect(ar.connected && br.connected).toBe(true);
    a.write(Uint8Array.of(1, 2, 3));
    p.run(p.now + 100);
    expect(concat(br.data)).toEqual(Uint8Array.of(1, 2, 3));
  });

  it('a SYN to a closed port is refused with RST (§3.10.7.1): ECONNREFUSED', () => {
    const p = new StackPair();
    const c = p.a.connect({ address: p.addrB, port: 81 });
    const r = collect(c);
    p.run(1000);
    expect(r.error?.code).toBe('ECONNREFUSED');
    expect(r.closed).toBe(true);
    expect(p.b.counters.rstSent).toBe(1);
  });

  it('SYN retransmissions back off and end in ETIMEDOUT (RFC 6298 §5.5)', () => {
    const p = new StackPair({}, { a: { tcp: { synRetries: 3 } } });
    p.keepWire = true;
    p.filter = () => false;
    const c = p.a.connect({ address: p.addrB, port: 80 });
    const r = collect(c);
    p.run(60_000);
    expect(r.error?.code).toBe('ETIMEDOUT');
    const times = segmentsFrom(p, 'a').map((s) => s.t);
    expect(times).toEqual([0, 1000, 3000, 7000]); // 1 s initial RTO, doubled each time
  });

  it('a full backlog drops SYNs; the client retries and gets in once there is room', () => {
    const p = new StackPair();
    let accepted = 0;
    p.b.listen({ port: 80, backlog: 1 }, () => accepted++);
    // Hold the first client's final ACK so its connection stays half-open.
    let holdAck = true;
    p.filter = (from, pkt) => {
      if (from !== 'a' || !holdAck) return true;
      const ip = parsePacket(pkt);
      const s = parseTcp(ip.payload, ip.src, ip.dst);
      return !(s.srcPort === 40000 && (s.flags & (SYN | ACK)) === ACK);
    };
    p.a.connect({ address: p.addrB, port: 80, localPort: 40000 });
    p.run(100);
    const second = collect(p.a.connect({ address: p.addrB, port: 80, localPort: 40001 }));
    p.run(500);
    expect(p.b.counters.dropped['TCP_BACKLOG']).toBeGreaterThanOrEqual(1);
    expect(second.connected).toBe(false);
    holdAck = false;
    p.run(10_000);
    expect(accepted).toBe(2);
    expect(second.connected).toBe(true);
  });
});

describe('RFC 9293 §3.6 closing', () => {
  it('half-close: the other side can still send; the active closer waits 2 MSL in TIME-WAIT', () => {
    const p = new StackPair();
    const { client, server, cr, sr } = connectPair(p);
    client.end();
    p.run(p.now + 100);
    expect(sr.ended).toBe(true);
    expect(client.state).toBe('FIN-WAIT-2');
    expect(server.state).toBe('CLOSE-WAIT');
    server.write(Uint8Array.of(9, 9));
    p.run(p.now + 100);
    expect(concat(cr.data)).toEqual(Uint8Array.of(9, 9));
    server.end();
    p.run(p.now + 100);
    expect(cr.ended).toBe(true);
    expect(client.state).toBe('TIME-WAIT');
    expect(server.state).toBe('CLOSED');
    expect(sr.closed).toBe(true);
    p.run(p.now + 59_000);
    expect(client.state).toBe('TIME-WAIT');
    p.run(p.now + 2_000);
    expect(client.state).toBe('CLOSED');
    expect(cr.closed && !cr.error).toBe(true);
    expect(p.a.connections()).toHaveLength(0);
  });

  it('simultaneous close passes through CLOSING to TIME-WAIT on both sides (figure 13)', () => {
    const p = new StackPair();
    const { client, server } = connectPair(p);
    client.end();
    server.end();
    p.run(p.now + 3);
    expect([client.state, server.state]).toEqual(['FIN-WAIT-1', 'FIN-WAIT-1']);
    p.run(p.now + 3); // both FINs arrived (latency 5), our FINs not yet acknowledged
    expect([client.state, server.state]).toEqual(['CLOSING', 'CLOSING']);
    p.run(p.now + 100);
    expect([client.state, server.state]).toEqual(['TIME-WAIT', 'TIME-WAIT']);
  });

  it('abort() sends RST; the peer reports ECONNRESET (§3.10.7.4 second check)', () => {
    const p = new StackPair();
    const { client, sr } = connectPair(p);
    client.abort();
    p.run(p.now + 100);
    expect(sr.error?.code).toBe('ECONNRESET');
    expect(p.b.connections()).toHaveLength(0);
  });

  it('a RST with the wrong sequence number in the window gets a challenge ACK (RFC 5961 §3.2)', () => {
    const p = new StackPair();
    p.keepWire = true;
    const { client, server, sr } = connectPair(p);
    const before = segmentsFrom(p, 'b').length;
    // Forge a RST from the client 100 bytes into the server's window.
    const forged = forgeFrom(p, client, server.rcvNxt + 100, RST);
    p.inject('b', forged);
    p.run(p.now + 50);
    expect(sr.error).toBeNull();
    expect(server.state).toBe('ESTABLISHED');
    expect(segmentsFrom(p, 'b').length).toBe(before + 1); // the challenge ACK
    client.write(Uint8Array.of(1));
    p.run(p.now + 100);
    expect(sr.data).toHaveLength(1);
  });

  it('a SYN on an established connection gets a challenge ACK, not a reset (RFC 5961 §4)', () => {
    const p = new StackPair();
    const { client, server, sr } = connectPair(p);
    p.inject('b', forgeFrom(p, client, server.rcvNxt + 5, SYN));
    p.run(p.now + 50);
    expect(server.state).toBe('ESTABLISHED');
    expect(sr.error).toBeNull();
  });
});

function forgeFrom(p: StackPair, c: TcpConnection, seq: number, flags: number): Uint8Array {
  // Build through a throwaway stack-free path: reuse the segment builder.
  return buildRaw(c.localAddress, c.remoteAddress, c.localPort, c.remotePort, seq >>> 0, c.rcvNxt, flags);
}

import { buildTcpPacket } from '../../src/netstack/tcp/segment.ts';
function buildRaw(src: Uint8Array, dst: Uint8Array, sport: number, dport: number, seq: number, ack: number, flags: number): Uint8Array {
  return buildTcpPacket({ srcPort: sport, dstPort: dport, seq, ack, flags, window: 1000, urgent: 0 }, src, dst);
}

describe('data transfer', () => {
  it('1 MB arrives intact and in order, with window scaling past 64 KiB in flight (RFC 7323 §2)', () => {
    const p = new StackPair({ latency: 25, bandwidth: 12_500 }); // 100 Mbit/s, 50 ms RTT
    const { client, server, sr } = connectPair(p);
    const data = payload(1 << 20);
    let maxFlight = 0;
    const done = pump(client, data);
    client.end();
    p.runUntil(() => {
      maxFlight = Math.max(maxFlight, client.sndMax - client.sndUna);
      return sr.ended;
    }, 60_000);
    expect(done()).toBe(true);
    expect(toHex(concat(sr.data))).toBe(toHex(data));
    expect(maxFlight).toBeGreaterThan(65_535);
    expect(server.stats.bytesIn).toBe(data.length);
  });

  it('5% loss, reordering and duplication: 1 MB arrives intact (fast retransmit, SACK, RTO)', () => {
    const p = new StackPair({ latency: 10, loss: 0.05, reorder: 0.1, reorderDelay: 8, dup: 0.02, seed: 7 });
    const { client, sr } = connectPair(p);
    const data = payload(1 << 20, 3);
    pump(client, data);
    client.end();
    expect(p.runUntil(() => sr.ended, 600_000, 10)).toBe(true);
    expect(toHex(concat(sr.data))).toBe(toHex(data));
    expect(client.stats.retransmits).toBeGreaterThan(0);
    expect(client.stats.fastRetransmits).toBeGreaterThan(0);
  });

  it('both directions at once under loss', () => {
    const p = new StackPair({ latency: 5, loss: 0.03, reorder: 0.05, seed: 11 });
    const { client, server, cr, sr } = connectPair(p);
    const up = payload(300_000, 1);
    const down = payload(300_000, 2);
    pump(client, up);
    pump(server, down);
    client.end();
    server.end();
    expect(p.runUntil(() => sr.ended && cr.ended, 600_000, 10)).toBe(true);
    expect(toHex(concat(sr.data))).toBe(toHex(up));
    expect(toHex(concat(cr.data))).toBe(toHex(down));
  });

  it('write() applies backpressure at the send buffer and emits drain', () => {
    const p = new StackPair({}, { a: { tcp: { sendBuffer: 10_000 } } });
    const { client } = connectPair(p);
    expect(client.write(new Uint8Array(5000))).toBe(true);
    expect(client.write(new Uint8Array(6000))).toBe(false);
    let drained = false;
    client.on('drain', () => (drained = true));
    p.run(p.now + 500);
    expect(drained).toBe(true);
  });

  it('zero window: a paused reader stops the sender; persist probes; resume completes (§3.8.6.1)', () => {
    const p = new StackPair({ latency: 5 }, { b: { tcp: { receiveBuffer: 64 * 1024 } } });
    p.keepWire = true;
    const { client, server, sr } = connectPair(p);
    server.pause();
    const data = payload(300_000, 5);
    pump(client, data);
    client.end();
    p.run(p.now + 10_000);
    expect(client.sndWnd).toBe(0);
    const probes = segmentsFrom(p, 'a').filter((s) => s.payload.length === 0 && (s.seq >>> 0) === ((client.sndUna - 1) >>> 0));
    expect(probes.length).toBeGreaterThanOrEqual(2);
    expect(sr.data.length).toBe(0);
    server.resume();
    expect(p.runUntil(() => sr.ended, 60_000)).toBe(true);
    expect(toHex(concat(sr.data))).toBe(toHex(data));
  });

  it('Nagle coalesces small writes while data is unacknowledged; setNoDelay sends each at once (RFC 896)', () => {
    const count = (noDelay: boolean) => {
      const p = new StackPair({ latency: 20 });
      p.keepWire = true;
      const { client } = connectPair(p);
      client.setNoDelay(noDelay);
      const before = segmentsFrom(p, 'a').filter((s) => s.payload.length > 0).length;
      for (let i = 0; i < 10; i++) client.write(Uint8Array.of(i));
      p.run(p.now + 1);
      return segmentsFrom(p, 'a').filter((s) => s.payload.length > 0).length - before;
    };
    expect(count(false)).toBe(1);
    expect(count(true)).toBe(10);
  });

  it('delays the ACK of a lone segment by up to 40 ms, ACKs every second full segment at once (RFC 1122 §4.2.3.2)', () => {
    const p = new StackPair({ latency: 5 });
    p.keepWire = true;
    const { client } = connectPair(p);
    client.write(Uint8Array.of(1));
    const t0 = p.now;
    p.run(p.now + 100);
    const acks = segmentsFrom(p, 'b').filter((s) => s.t > t0);
    expect(acks).toHaveLength(1);
    expect(acks[0]!.t - t0).toBe(5 + 40);
    const t1 = p.now;
    client.write(new Uint8Array(1380 * 2));
    p.run(p.now + 6);
    expect(segmentsFrom(p, 'b').filter((s) => s.t > t1)).toHaveLength(1);
  });

  it('keepalive probes an idle peer and gives up with ETIMEDOUT (RFC 1122 §4.2.3.6)', () => {
    const p = new StackPair({}, { a: { tcp: { keepaliveIdle: 10_000, keepaliveInterval: 1_000, keepaliveProbes: 3 } } });
    const { client, cr } = connectPair(p);
    client.setKeepAlive(true);
    p.run(p.now + 15_000);
    expect(client.state).toBe('ESTABLISHED'); // probes answered
    p.filter = () => false;
    p.run(p.now + 30_000);
    expect(cr.error?.code).toBe('ETIMEDOUT');
  });

  it('retransmission timeouts back off and give up with ETIMEDOUT when the peer vanishes', () => {
    const p = new StackPair({}, { a: { tcp: { dataRetries: 4 } } });
    const { client, cr } = connectPair(p);
    p.filter = () => false;
    client.write(new Uint8Array(1000));
    p.run(p.now + 120_000);
    expect(cr.error?.code).toBe('ETIMEDOUT');
    expect(client.stats.timeouts).toBe(5);
  });
});
