/** The stack around TCP: ICMP echo, UDP sockets, ICMP errors, demux, limits, and bad input. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { StackPair, concat, payload } from '../support/stack-pair.ts';
import { buildEchoRequest, parseEchoReply } from '../../src/netstack/icmp.ts';
import { buildUdpPacket } from '../../src/netstack/udp.ts';
import { buildIcmpError, ICMPV4_ADMIN_PROHIBITED, ICMPV4_DEST_UNREACH, ICMPV6_ADMIN_PROHIBITED, ICMPV6_DEST_UNREACH, parseIcmpError } from '../../src/netstack/icmp-error.ts';
import { parseIP } from '../../src/netstack/addr.ts';
import { buildTcpPacket, SYN } from '../../src/netstack/tcp/segment.ts';
import { toHex } from '../../src/crypto/bytes.ts';
import type { TcpConnection } from '../../src/netstack/tcp/connection.ts';
import { isPierceError } from '../../src/errors.ts';

describe('ICMP', () => {
  for (const v6 of [false, true]) {
    it(`answers echo requests to its addresses only (IPv${v6 ? 6 : 4})`, () => {
      const p = new StackPair({}, { v6 });
      const out: Uint8Array[] = [];
      const s = new StackPair({}, { v6 });
      void s;
      p.keepWire = true;
      p.inject('b', buildEchoRequest({ src: p.addrA, dst: p.addrB, id: 7, seq: 1, payload: Uint8Array.of(1, 2, 3) }));
      const reply = p.wire.find((w) => w.from === 'b');
      expect(reply).toBeDefined();
      const e = parseEchoReply(reply!.packet)!;
      expect([e.id, e.seq, toHex(e.payload)]).toEqual([7, 1, '010203']);
      // Not ours: dropped, no reply.
      const other = parseIP(v6 ? 'fd00::9' : '10.0.0.9');
      p.inject('b', buildEchoRequest({ src: p.addrA, dst: other, id: 7, seq: 2 }));
      expect(p.wire.filter((w) => w.from === 'b')).toHaveLength(1);
      expect(p.b.counters.dropped['NOT_LOCAL']).toBe(1);
      void out;
    });
  }
});

describe('ICMP administratively prohibited (a peer\'s policy refused the SYN)', () => {
  for (const v6 of [false, true]) {
    it(`fails the connect at once with EACCES, not a SYN timeout (IPv${v6 ? 6 : 4})`, () => {
      const p = new StackPair({}, { v6 });
      // b's "policy" refuses every SYN to port 22 and answers as a Pierce node does.
      const answers: Uint8Array[] = [];
      p.filter = (from, packet) => {
        if (from !== 'a' || packet[v6 ? 6 : 9] !== 6) return true;
        const icmp = buildIcmpError(packet, v6 ? ICMPV6_DEST_UNREACH : ICMPV4_DEST_UNREACH, v6 ? ICMPV6_ADMIN_PROHIBITED : ICMPV4_ADMIN_PROHIBITED);
        expect(parseIcmpError(icmp!)?.adminProhibited).toBe(true);
        answers.push(icmp!);
        return false;
      };
      const c = p.a.connect({ address: p.addrB, port: 22 });
      const errors: string[] = [];
      c.on('error', (e) => errors.push(e.code));
      p.run(10);
      expect(answers).toHaveLength(1);
      p.inject('a', answers[0]!);
      p.run(20);
      expect(errors, JSON.stringify(p.a.counters.dropped)).toEqual(["EACCES"]);
      expect(c.state).toBe('CLOSED');
    });
  }
});

describe('UDP sockets', () => {
  it('send and receive datagrams both ways', () => {
    const p = new StackPair();
    const sa = p.a.bindUdp({ port: 5000 });
    const sb = p.b.bindUdp({ port: 53 });
    const got: { data: Uint8Array; port: number }[] = [];
    sb.on('message', (data, from) => {
      got.push({ data: Uint8Array.from(data), port: from.port });
      sb.send(Uint8Array.of(...data, 0xff), from.address, from.port);
    });
    const back: Uint8Array[] = [];
    sa.on('message', (d) => back.push(Uint8Array.from(d)));
    sa.send(Uint8Array.of(1, 2), p.addrB, 53);
    p.run(100);
    expect(got).toEqual([{ data: Uint8Array.of(1, 2), port: 5000 }]);
    expect(back).toEqual([Uint8Array.of(1, 2, 0xff)]);
  });

  it('a datagram to a closed port gets ICMP port unreachable, which reaches the sender as ECONNREFUSED', () => {
    const p = new StackPair();
    p.keepWire = true;
    const sa = p.a.bindUdp({ port: 5000 });
    const errors: string[] = [];
    sa.on('error', (e) => errors.push(e.code));
    sa.send(Uint8Array.of(1), p.addrB, 9999);
    p.run(100);
    const icmp = p.wire.find((w) => w.from === 'b')!;
    expect(parseIcmpError(icmp.packet)?.portUnreachable).toBe(true);
    expect(errors).toEqual(['ECONNREFUSED']);
  });

  it('refuses a second bind to the same port (EADDRINUSE) and binds a free one for port 0', () => {
    const p = new StackPair();
    p.a.bindUdp({ port: 7 });
    expect(() => p.a.bindUdp({ port: 7 })).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
    const s = p.a.bindUdp();
    expect(s.port).toBeGreaterThanOrEqual(49152);
    s.close();
    expect(() => p.a.bindUdp({ port: s.port })).not.toThrow();
  });

  it('does not answer an ICMP error with an ICMP error, nor a multicast datagram', () => {
    const p = new StackPair();
    p.keepWire = true;
    p.inject('b', buildUdpPacket({ srcPort: 1, dstPort: 9, payload: new Uint8Array(4) }, p.addrA, parseIP('224.0.0.1')));
    expect(p.wire.filter((w) => w.from === 'b')).toHaveLength(0);
  });
});

describe('TCP demux and limits', () => {
  it('refuses a second listener on a port, listens per address, and enforces the connection limit', () => {
    const p = new StackPair({}, { a: { limits: { maxConnections: 2 } } });
    p.b.listen({ port: 80 }, () => {});
    expect(() => p.b.listen({ port: 80 }, () => {})).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
    expect(() => p.b.listen({ port: 81, address: parseIP('10.9.9.9') }, () => {})).toThrow(expect.objectContaining({ code: 'EADDRNOTAVAIL' }));
    p.a.connect({ address: p.addrB, port: 80 });
    p.a.connect({ address: p.addrB, port: 80 });
    expect(() => p.a.connect({ address: p.addrB, port: 80 })).toThrow(expect.objectContaining({ code: 'EMFILE' }));
    expect(() => p.a.connect({ address: parseIP('fd00::5'), port: 80 })).toThrow(expect.objectContaining({ code: 'ENETUNREACH' }));
  });

  it('many concurrent connections each carry their own data', () => {
    const p = new StackPair({ latency: 2 });
    const received = new Map<number, Uint8Array[]>();
    p.b.listen({ port: 22 }, (c) => {
      const chunks: Uint8Array[] = [];
      received.set(c.remotePort, chunks);
      c.on('data', (d) => chunks.push(Uint8Array.from(d)));
      c.on('end', () => c.end());
    });
    const clients: TcpConnection[] = [];
    for (let i = 0; i < 50; i++) {
      const c = p.a.connect({ address: p.addrB, port: 22 });
      c.on('connect', () => {
        c.write(payload(1000 + i, i));
        c.end();
      });
      clients.push(c);
    }
    p.run(5_000);
    expect(received.size).toBe(50);
    for (const c of clients) expect(toHex(concat(received.get(c.localPort)!))).toBe(toHex(payload(1000 + clients.indexOf(c), clients.indexOf(c))));
  });

  it('random, truncated and mutated packets are dropped with typed codes and never disturb a transfer (fuzz)', () => {
    const p = new StackPair({ latency: 5 });
    p.keepWire = true;
    let server: TcpConnection | null = null;
    const got: Uint8Array[] = [];
    p.b.listen({ port: 80 }, (c) => {
      server = c;
      c.on('data', (d) => got.push(Uint8Array.from(d)));
    });
    const client = p.a.connect({ address: p.addrB, port: 80 });
    p.run(100);
    const data = payload(200_000, 9);
    let off = 0;
    const samples = p.wire.map((w) => w.packet);
    samples.push(buildTcpPacket({ srcPort: 1, dstPort: 80, seq: 1, ack: 0, flags: SYN, window: 100, urgent: 0 }, p.addrA, p.addrB));
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 120 }),
          fc.tuple(fc.constantFrom(...samples), fc.nat(), fc.integer({ min: 1, max: 255 })).map(([s, i, x]) => {
            const c = Uint8Array.from(s);
            c[i % c.length]! ^= x;
            return c;
          }),
          fc.tuple(fc.constantFrom(...samples), fc.nat()).map(([s, n]) => s.slice(0, n % s.length)),
        ),
        (junk) => {
          expect(() => p.b.input(junk)).not.toThrow();
          if (off < data.length) {
            client.write(data.subarray(off, off + 1000));
            off += 1000;
          }
          p.run(p.now + 1);
        },
      ),
      { numRuns: 300 },
    );
    while (off < data.length) {
      client.write(data.subarray(off, off + 1000));
      off += 1000;
    }
    p.run(p.now + 5_000);
    expect(server).not.toBeNull();
    expect(toHex(concat(got))).toBe(toHex(data));
    expect(client.state).toBe('ESTABLISHED');
    for (const code of Object.keys(p.b.counters.dropped)) expect(code).not.toBe('INTERNAL');
    expect(isPierceError(new Error('x'))).toBe(false);
  });

  it('well-formed segments with random fields on a live connection never throw; other connections carry on (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            seq: fc.nat({ max: 0xffffffff }),
            ack: fc.nat({ max: 0xffffffff }),
            flags: fc.nat({ max: 0xff }),
            window: fc.nat({ max: 0xffff }),
            len: fc.nat({ max: 1500 }),
            offset: fc.integer({ min: -3000, max: 3000 }),
          }),
          { maxLength: 30 },
        ),
        (segs) => {
          const p = new StackPair({ latency: 3 });
          const got = new Map<number, Uint8Array[]>();
          p.b.listen({ port: 80 }, (c) => {
            const l: Uint8Array[] = [];
            got.set(c.remotePort, l);
            c.on('data', (d) => l.push(Uint8Array.from(d)));
            c.on('error', () => {});
          });
          const victim = p.a.connect({ address: p.addrB, port: 80, localPort: 40000 });
          const bystander = p.a.connect({ address: p.addrB, port: 80, localPort: 40001 });
          victim.on('error', () => {});
          p.run(50);
          const server = p.b.connections().find((c) => c.remotePort === 40000)!;
          for (const f of segs) {
            // Half the time aim near the live sequence numbers, so the state machine is exercised.
            const near = f.offset % 2 === 0;
            const seq = near ? (server.rcvNxt + f.offset) >>> 0 : f.seq;
            const ack = near ? (server.sndNxt + (f.offset >> 4)) >>> 0 : f.ack;
            const pkt = buildTcpPacket({ srcPort: 40000, dstPort: 80, seq, ack, flags: f.flags, window: f.window, urgent: 0, payload: new Uint8Array(f.len) }, p.addrA, p.addrB);
            expect(() => p.b.input(pkt)).not.toThrow();
            p.run(p.now + 1);
          }
          const data = payload(50_000, 4);
          bystander.write(data);
          p.run(p.now + 3_000);
          expect(toHex(concat(got.get(40001) ?? []))).toBe(toHex(data));
          expect(bystander.state).toBe('ESTABLISHED');
        },
      ),
      { numRuns: 60 },
    );
  });
});
