import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.ts';
import { PacketError, parseIP } from '../../src/netstack/addr.ts';
import { internetChecksum, pseudoHeaderSum } from '../../src/netstack/checksum.ts';
import { buildEchoReply, buildEchoRequest } from '../../src/netstack/icmp.ts';
import {
  buildIcmpError,
  buildPortUnreachable,
  ICMPV4_DEST_UNREACH,
  ICMPV4_FRAG_NEEDED,
  ICMPV4_TIME_EXCEEDED,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_TIME_EXCEEDED,
  icmpErrorAllowed,
  parseIcmpError,
} from '../../src/netstack/icmp-error.ts';
import { buildIP, buildIPv4, buildIPv6, parsePacket } from '../../src/netstack/ip.ts';
import { ACK, buildTcpPacket, SYN } from '../../src/netstack/tcp/segment.ts';
import { buildUdp, buildUdpPacket } from '../../src/netstack/udp.ts';
import { thrownCode } from '../support/errors.ts';

const h = (s: string) => fromHex(s.replace(/\s+/g, ''))!;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const code = (f: () => unknown): string => thrownCode(f, PacketError);

const A4 = parseIP('10.77.0.1'); // Linux, in a network namespace behind a TUN device
const B4 = parseIP('10.77.0.2'); // the capture script
const A6 = parseIP('fd00:77::1');
const B6 = parseIP('fd00:77::2');

/** The capture script's test payload: byte i is (7i + 3) mod 256. */
const pattern = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);

/**
 * Captured from Linux through a TUN device: a Python script sent UDP 40000 → 9 (closed) with
 * `pattern(n)` as data, the kernel answered port unreachable. Small: n = 12. Big: n = 1000 over
 * IPv4 (the kernel quotes 548 bytes: 576 in all), n = 1400 over IPv6 (it quotes 1232: 1280 in
 * all); for those the first bytes of the reply and a SHA-256 of all of it.
 */
const LINUX = {
  udp4: h('4500002800004000401126290a4d00020a4d00019c400009001469d1030a11181f262d343b424950'),
  unreach4: h('45c00044d933000040018c290a4d00010a4d0002030311bf000000004500002800004000401126290a4d00020a4d00019c400009001469d1030a11181f262d343b424950'),
  udp6: h('6000000000141140fd000077000000000000000000000002fd0000770000000000000000000000019c4000090014837b030a11181f262d343b424950'),
  unreach6: h(
    '600cf7f000443a40fd000077000000000000000000000001fd0000770000000000000000000000020104925b000000006000000000141140fd000077000000000000000000000002fd0000770000000000000000000000019c4000090014837b030a11181f262d343b424950',
  ),
  big4: {
    head: h('45c00240d934000040018a2c0a4d00010a4d000203034c630000000045000404000040004011224d0a4d00020a4d00019c40000903f03063'),
    sha256: 'd5538229f618c3fdb5ee38e19557275666b364a3ecae44099f1b08fcfdd51a8c',
  },
  big6: {
    head: h('600cf7f004d83a40fd000077000000000000000000000001fd000077000000000000000000000002010483b2000000006000000005801140fd000077000000000000000000000002fd0000770000000000000000000000019c400009058082b0'),
    sha256: '44218c809fd6ea55507d3891598c5089ed0628b735fc76526371577b76ad08d2',
  },
};

/** Copies the fields Linux chose freely (IPv4 ID + header checksum, IPv6 flow label) from `kernel` into `ours`. */
function withKernelIPFields(ours: Uint8Array, kernel: Uint8Array): Uint8Array {
  const x = Uint8Array.from(ours);
  if (x[0]! >> 4 === 4) for (const i of [4, 5, 10, 11]) x[i] = kernel[i]!;
  else for (const i of [1, 2, 3]) x[i] = kernel[i]!;
  return x;
}

/** An ICMP message (type, code, word, body) from `src` to `dst` with a correct checksum, as an IP packet. */
function icmpPacket(src: Uint8Array, dst: Uint8Array, type: number, code: number, body: Uint8Array, word = 0): Uint8Array {
  const v6 = src.length === 16;
  const msg = new Uint8Array(8 + body.length);
  msg[0] = type;
  msg[1] = code;
  new DataView(msg.buffer).setUint32(4, word);
  msg.set(body, 8);
  const ck = internetChecksum(msg, v6 ? pseudoHeaderSum(src, dst, 58, msg.length) : 0);
  msg[2] = ck >> 8;
  msg[3] = ck & 0xff;
  return buildIP({ src, dst, protocol: v6 ? 58 : 1, payload: msg });
}

describe('port unreachable against Linux', () => {
  it('builds the kernel replies byte for byte', () => {
    const r4 = buildPortUnreachable(LINUX.udp4)!;
    expect(toHex(withKernelIPFields(r4, LINUX.unreach4))).toBe(toHex(LINUX.unreach4));
    const r6 = buildPortUnreachable(LINUX.udp6)!;
    expect(toHex(withKernelIPFields(r6, LINUX.unreach6))).toBe(toHex(LINUX.unreach6));
  });

  it('quotes up to 576 (IPv4) and 1280 (IPv6) bytes like the kernel', () => {
    const big4 = buildUdpPacket({ srcPort: 40000, dstPort: 9, payload: pattern(1000) }, B4, A4);
    const r4 = buildPortUnreachable(big4)!;
    expect(r4.length).toBe(576);
    expect(toHex(withKernelIPFields(r4, LINUX.big4.head).subarray(0, LINUX.big4.head.length))).toBe(toHex(LINUX.big4.head));
    expect(sha256(withKernelIPFields(r4, LINUX.big4.head))).toBe(LINUX.big4.sha256);
    const big6 = buildUdpPacket({ srcPort: 40000, dstPort: 9, payload: pattern(1400) }, B6, A6);
    const r6 = buildPortUnreachable(big6)!;
    expect(r6.length).toBe(1280);
    expect(toHex(withKernelIPFields(r6, LINUX.big6.head).subarray(0, LINUX.big6.head.length))).toBe(toHex(LINUX.big6.head));
    expect(sha256(withKernelIPFields(r6, LINUX.big6.head))).toBe(LINUX.big6.sha256);
  });

  it('parses the kernel replies', () => {
    const e4 = parseIcmpError(LINUX.unreach4)!;
    expect(e4).toMatchObject({ version: 4, type: 3, code: 3, portUnreachable: true });
    expect(e4.mtu).toBeUndefined();
    expect(toHex(e4.from)).toBe(toHex(A4));
    expect({ ...e4.quoted, src: toHex(e4.quoted.src), dst: toHex(e4.quoted.dst) }).toEqual({
      protocol: 17,
      src: toHex(B4),
      dst: toHex(A4),
      srcPort: 40000,
      dstPort: 9,
    });
    const e6 = parseIcmpError(LINUX.unreach6)!;
    expect(e6).toMatchObject({ version: 6, type: 1, code: 4, portUnreachable: true });
    expect([toHex(e6.quoted.src), toHex(e6.quoted.dst), e6.quoted.srcPort, e6.quoted.dstPort]).toEqual([toHex(B6), toHex(A6), 40000, 9]);
    // A bit flipped anywhere in the message breaks the checksum (IPv6: the pseudo-header too).
    const bad = Uint8Array.from(LINUX.unreach6);
    bad[bad.length - 1]! ^= 1;
    expect(parseIcmpError(bad)).toBeNull();
  });
});

describe('when not to send an ICMP error (RFC 1122 §3.2.2, RFC 4443 §2.4(e))', () => {
  const udp = (src: string, dst: string) => buildUdpPacket({ srcPort: 1, dstPort: 2, payload: pattern(3) }, parseIP(src), parseIP(dst));

  it('answers unicast UDP, TCP and ICMP queries', () => {
    expect(buildPortUnreachable(udp('100.64.0.2', '100.64.0.1'))).not.toBeNull();
    expect(buildPortUnreachable(udp('fd7a:115c:a1e0::2', 'fd7a:115c:a1e0::1'))).not.toBeNull();
    expect(buildPortUnreachable(buildTcpPacket({ srcPort: 1, dstPort: 2, seq: 0, ack: 0, flags: SYN, window: 0, urgent: 0 }, B4, A4))).not.toBeNull();
    expect(buildIcmpError(buildEchoRequest({ src: B4, dst: A4, id: 1, seq: 1 }), ICMPV4_DEST_UNREACH, 2)).not.toBeNull();
    expect(buildIcmpError(buildEchoReply({ src: B6, dst: A6, id: 1, seq: 1 }), 4, 1)).not.toBeNull();
  });

  it('never answers an ICMP error', () => {
    expect(buildPortUnreachable(LINUX.unreach4)).toBeNull();
    expect(buildPortUnreachable(LINUX.unreach6)).toBeNull();
    for (const t of [3, 4, 5, 11, 12, 42 /* unknown: treated as an error */]) {
      expect(buildPortUnreachable(icmpPacket(B4, A4, t, 0, pattern(28))), `type ${t}`).toBeNull();
    }
    for (const t of [1, 2, 3, 4, 127]) {
      expect(buildPortUnreachable(icmpPacket(B6, A6, t, 0, pattern(48))), `type ${t}`).toBeNull();
    }
    expect(buildPortUnreachable(icmpPacket(B6, A6, 200, 0, pattern(4)))).not.toBeNull(); // informational
    expect(buildPortUnreachable(buildIPv4({ src: B4, dst: A4, protocol: 1, payload: new Uint8Array(0) }))).toBeNull();
    expect(buildPortUnreachable(buildIPv6({ src: B6, dst: A6, protocol: 58, payload: new Uint8Array(0) }))).toBeNull();
  });

  it('never answers to or from multicast, broadcast, unspecified or loopback', () => {
    for (const [s, d] of [
      ['100.64.0.2', '224.0.0.1'],
      ['100.64.0.2', '239.255.255.250'],
      ['100.64.0.2', '255.255.255.255'],
      ['100.64.0.2', '0.0.0.0'],
      ['0.0.0.0', '100.64.0.1'],
      ['127.0.0.1', '100.64.0.1'],
      ['224.0.0.5', '100.64.0.1'],
      ['240.0.0.1', '100.64.0.1'],
      ['255.255.255.255', '100.64.0.1'],
      ['fd7a:115c:a1e0::2', 'ff02::1'],
      ['fd7a:115c:a1e0::2', '::'],
      ['::', 'fd7a:115c:a1e0::1'],
      ['::1', 'fd7a:115c:a1e0::1'],
      ['ff02::1', 'fd7a:115c:a1e0::1'],
    ]) {
      expect(buildPortUnreachable(udp(s!, d!)), `${s} → ${d}`).toBeNull();
      expect(icmpErrorAllowed(parsePacket(udp(s!, d!)))).toBe(false);
    }
  });

  it('never answers a malformed packet or a fragment', () => {
    expect(buildPortUnreachable(new Uint8Array(0))).toBeNull();
    expect(buildPortUnreachable(LINUX.udp4.subarray(0, 30))).toBeNull();
    const frag = Uint8Array.from(LINUX.udp4);
    frag[6] = 0x20; // MF
    frag[10] = frag[11] = 0;
    const ck = internetChecksum(frag.subarray(0, 20));
    frag[10] = ck >> 8;
    frag[11] = ck & 0xff;
    expect(buildPortUnreachable(frag)).toBeNull();
  });
});

describe('buildIcmpError', () => {
  it('carries MTU and other types; parseIcmpError reads them back', () => {
    const tcp4 = buildTcpPacket({ srcPort: 5000, dstPort: 22, seq: 0xdeadbeef, ack: 1, flags: ACK, window: 1, urgent: 0, payload: pattern(1400) }, A4, B4);
    const fn = parseIcmpError(buildIcmpError(tcp4, ICMPV4_DEST_UNREACH, ICMPV4_FRAG_NEEDED, {}, 1400)!)!;
    expect(fn).toMatchObject({ version: 4, type: 3, code: 4, mtu: 1400, portUnreachable: false });
    expect(fn.quoted).toMatchObject({ protocol: 6, srcPort: 5000, dstPort: 22, seq: 0xdeadbeef });
    const te = parseIcmpError(buildIcmpError(tcp4, ICMPV4_TIME_EXCEEDED, 0)!)!;
    expect(te).toMatchObject({ type: 11, code: 0, portUnreachable: false });
    expect(te.mtu).toBeUndefined();
    const tcp6 = buildTcpPacket({ srcPort: 5000, dstPort: 22, seq: 7, ack: 1, flags: ACK, window: 1, urgent: 0, payload: pattern(1400) }, A6, B6);
    const ptb = parseIcmpError(buildIcmpError(tcp6, ICMPV6_PACKET_TOO_BIG, 0, {}, 1280)!)!;
    expect(ptb).toMatchObject({ version: 6, type: 2, mtu: 1280, portUnreachable: false });
    expect(ptb.quoted.seq).toBe(7);
    expect(parseIcmpError(buildIcmpError(tcp6, ICMPV6_TIME_EXCEEDED, 1)!)).toMatchObject({ type: 3, code: 1 });
  });

  it('source, TTL and argument checks', () => {
    const me = parseIP('100.64.0.9');
    const r = buildPortUnreachable(LINUX.udp4, { src: me, ttl: 5 })!;
    const ip = parsePacket(r);
    expect([toHex(ip.src), toHex(ip.dst), ip.ttl]).toEqual([toHex(me), toHex(B4), 5]);
    expect(code(() => buildPortUnreachable(LINUX.udp4, { src: A6 }))).toBe('ADDR_LENGTH');
    expect(code(() => buildIcmpError(LINUX.udp4, 256, 0))).toBe('PACKET_FIELD');
    expect(code(() => buildIcmpError(LINUX.udp4, 3, -1))).toBe('PACKET_FIELD');
    expect(code(() => buildIcmpError(LINUX.udp4, 3, 4, {}, 2 ** 32))).toBe('PACKET_FIELD');
  });
});

describe('parseIcmpError', () => {
  const quote4 = LINUX.udp4;
  const quote6 = LINUX.udp6;

  it('ignores non-errors, source quench, other protocols and short quotes', () => {
    expect(parseIcmpError(buildEchoRequest({ src: B4, dst: A4, id: 1, seq: 1 }))).toBeNull();
    expect(parseIcmpError(buildEchoReply({ src: B6, dst: A6, id: 1, seq: 1, payload: pattern(60) }))).toBeNull();
    expect(parseIcmpError(icmpPacket(A4, B4, 4, 0, quote4))).toBeNull(); // source quench (RFC 6633)
    expect(parseIcmpError(icmpPacket(A4, B4, 5, 0, quote4))).toBeNull(); // redirect
    expect(parseIcmpError(icmpPacket(A4, B4, 12, 0, quote4))).toMatchObject({ type: 12 });
    expect(parseIcmpError(icmpPacket(A6, B6, 4, 0, quote6))).toMatchObject({ type: 4 });
    expect(parseIcmpError(icmpPacket(A6, B6, 128, 0, quote6))).toBeNull();
    // ICMPv4 under next header 58 and vice versa.
    expect(parseIcmpError(buildIP({ src: A4, dst: B4, protocol: 58, payload: parsePacket(LINUX.unreach4).payload }))).toBeNull();
    // Quote: IP header + 8 bytes is the minimum (RFC 792).
    expect(parseIcmpError(icmpPacket(A4, B4, 3, 3, quote4.subarray(0, 28)))).not.toBeNull();
    expect(parseIcmpError(icmpPacket(A4, B4, 3, 3, quote4.subarray(0, 27)))).toBeNull();
    expect(parseIcmpError(icmpPacket(A6, B6, 1, 4, quote6.subarray(0, 48)))).not.toBeNull();
    expect(parseIcmpError(icmpPacket(A6, B6, 1, 4, quote6.subarray(0, 47)))).toBeNull();
    expect(parseIcmpError(icmpPacket(A4, B4, 3, 3, new Uint8Array(0)))).toBeNull();
    // A quoted ICMP echo has no ports; an IPv6 quote in ICMPv4 is nonsense.
    expect(parseIcmpError(icmpPacket(A4, B4, 3, 1, buildEchoRequest({ src: B4, dst: parseIP('10.1.1.1'), id: 1, seq: 1 })))).toBeNull();
    expect(parseIcmpError(icmpPacket(A4, B4, 3, 3, quote6))).toBeNull();
    expect(parseIcmpError(icmpPacket(A6, B6, 1, 4, quote4))).toBeNull();
  });

  it('quoted IPv4 options and fragments', () => {
    // IHL 6 (one option word), a first fragment (MF), then a later fragment.
    const udp = buildUdp({ srcPort: 7, dstPort: 8, payload: pattern(4) }, B4, A4);
    const hdr = Uint8Array.from([...LINUX.udp4.subarray(0, 20), 1, 1, 1, 0]);
    hdr[0] = 0x46;
    const q = new Uint8Array([...hdr, ...udp]);
    expect(parseIcmpError(icmpPacket(A4, B4, 3, 3, q))!.quoted).toMatchObject({ srcPort: 7, dstPort: 8 });
    q[6] = 0x20;
    expect(parseIcmpError(icmpPacket(A4, B4, 3, 3, q))).not.toBeNull();
    q[7] = 1;
    expect(parseIcmpError(icmpPacket(A4, B4, 3, 3, q))).toBeNull();
  });

  it('quoted IPv6 extension headers', () => {
    const udp = buildUdp({ srcPort: 7, dstPort: 8, payload: pattern(4) }, B6, A6);
    const dstOpts = h('1100 0104 00000000'); // next 17, 8 bytes, PadN
    const withOpts = buildIPv6({ src: B6, dst: A6, protocol: 60, payload: new Uint8Array([...dstOpts, ...udp]) });
    // The offending packet itself has an extension header: built and read back.
    const r = buildPortUnreachable(withOpts)!;
    expect(parseIcmpError(r)!.quoted).toMatchObject({ protocol: 17, srcPort: 7, dstPort: 8 });
    // Fragment header in the quote: first fragment fine, a later one has no ports.
    const frag = (offset: number) => buildIPv6({ src: B6, dst: A6, protocol: 44, payload: new Uint8Array([17, 0, offset >> 5, (offset << 3) & 0xff | 1, 0, 0, 0, 9, ...udp]) });
    expect(parseIcmpError(icmpPacket(A6, B6, 1, 4, frag(0)))!.quoted).toMatchObject({ srcPort: 7, dstPort: 8 });
    expect(parseIcmpError(icmpPacket(A6, B6, 1, 4, frag(1)))).toBeNull();
    // An extension header running past the quote.
    expect(parseIcmpError(icmpPacket(A6, B6, 1, 4, withOpts.subarray(0, 41)))).toBeNull();
    expect(parseIcmpError(icmpPacket(A6, B6, 1, 4, withOpts.subarray(0, 55)))).toBeNull();
    expect(parseIcmpError(icmpPacket(A6, B6, 1, 4, withOpts.subarray(0, 56)))).not.toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------
// Properties and fuzz

const u16 = fc.integer({ min: 0, max: 0xffff });
const hosts = fc.oneof(fc.constant([B4, A4] as const), fc.constant([B6, A6] as const));

describe('properties', () => {
  it('quotes min(packet, limit) bytes and the quote reads back (UDP and TCP)', () => {
    fc.assert(
      fc.property(hosts, fc.boolean(), u16, u16, fc.integer({ min: 0, max: 2000 }), ([src, dst], tcp, sp, dp, n) => {
        const payload = pattern(n);
        const pkt = tcp
          ? buildTcpPacket({ srcPort: sp, dstPort: dp, seq: n, ack: 0, flags: SYN, window: 0, urgent: 0, payload }, src, dst)
          : buildUdpPacket({ srcPort: sp, dstPort: dp, payload }, src, dst);
        const r = buildPortUnreachable(pkt)!;
        const v6 = src.length === 16;
        const limit = v6 ? 1280 : 576;
        const hdr = v6 ? 48 : 28;
        expect(r.length).toBe(Math.min(limit, hdr + pkt.length));
        expect(toHex(r.subarray(hdr))).toBe(toHex(pkt.subarray(0, r.length - hdr)));
        const e = parseIcmpError(r)!;
        expect(e.portUnreachable).toBe(true);
        expect(toHex(e.from)).toBe(toHex(dst));
        expect(e.quoted).toMatchObject({ protocol: tcp ? 6 : 17, srcPort: sp, dstPort: dp });
        expect(e.quoted.seq).toBe(tcp ? n : undefined);
        expect([toHex(e.quoted.src), toHex(e.quoted.dst)]).toEqual([toHex(src), toHex(dst)]);
      }),
      { numRuns: 500 },
    );
  });
});

describe('fuzz: never throws on bad input', () => {
  const seeds = [LINUX.udp4, LINUX.udp6, LINUX.unreach4, LINUX.unreach6, buildPortUnreachable(buildTcpPacket({ srcPort: 1, dstPort: 2, seq: 3, ack: 4, flags: ACK, window: 5, urgent: 0 }, B6, A6))!];

  const check = (b: Uint8Array) => {
    parseIcmpError(b);
    const r = buildPortUnreachable(b);
    if (r) {
      const ip = parsePacket(r);
      expect(ip.protocol).toBe(ip.version === 4 ? 1 : 58);
      expect(r.length).toBeLessThanOrEqual(ip.version === 4 ? 576 : 1280);
      expect(buildPortUnreachable(r)).toBeNull(); // never an error about an error
    }
  };

  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), check), { numRuns: 3000 });
    // Random bytes behind a valid IPv4/IPv6 header with protocol ICMP / UDP.
    fc.assert(
      fc.property(hosts, fc.constantFrom(1, 17, 58), fc.uint8Array({ maxLength: 120 }), ([src, dst], protocol, payload) => {
        check(buildIP({ src, dst, protocol, payload }));
      }),
      { numRuns: 3000 },
    );
  });

  it('truncated and mutated packets, ICMP checksum fixed up so the quote parser runs', () => {
    let parsed = 0;
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat(), fc.boolean(), (seed, muts, cut, fix) => {
        const p = Uint8Array.from(seed.subarray(0, Math.max(0, seed.length - (cut % 40))));
        const ipLen = p.length > 0 && p[0]! >> 4 === 6 ? 40 : 20;
        for (const [at, v] of muts) if (p.length > ipLen) p[ipLen + (at % (p.length - ipLen))] = v;
        if (fix && p.length >= ipLen + 8) {
          // Rebuild around the mutated ICMP message with correct lengths and checksum.
          const msg = Uint8Array.from(p.subarray(ipLen));
          const [src, dst] = ipLen === 40 ? [B6, A6] : [B4, A4];
          const again = icmpPacket(src, dst, msg[0]!, msg[1]!, msg.subarray(8), new DataView(msg.buffer).getUint32(4));
          if (parseIcmpError(again)) parsed++;
          check(again);
        }
        check(p);
      }),
      { numRuns: 5000 },
    );
    expect(parsed).toBeGreaterThan(0);
  });
});
