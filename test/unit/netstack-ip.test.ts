import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.ts';
import { formatIP, PacketError, parseIP } from '../../src/netstack/addr.ts';
import { verifyChecksum } from '../../src/netstack/checksum.ts';
import {
  buildIP,
  buildIPv4,
  buildIPv6,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_UDP,
  parsePacket,
} from '../../src/netstack/ip.ts';
import { thrownCode } from '../support/errors.ts';

const h = (s: string) => fromHex(s.replace(/\s+/g, ''))!;

const code = (f: () => unknown): string => thrownCode(f, PacketError);

// Packets captured from Linux on lo (see the test names); link-layer header removed.
const LINUX = {
  /** ping -c1 -s16 127.0.0.1: echo request, DF, TTL 64. */
  ping4: h('4500002c80ac40004001bc227f0000017f00000108000a800d4f000197d7076b000000003eed020000000000'),
  /** UDP with IPv4 options NOP NOP NOP EOL (IHL 6) to port 9, payload "pierce-v4". */
  udp4opts: h('46000029d8124000401161ae7f0000017f00000101010100a97600090011fe247069657263652d7634'),
  /** The kernel's ICMP port unreachable for it (TOS c0, quoting the packet). */
  unreach4: h(
    '45c0004583a600004001f84f7f0000017f0000010303ba8f0000000046000029d8124000401161ae7f0000017f00000101010100a97600090011fe247069657263652d7634',
  ),
  /** UDP [::1] → [::1]:9 behind Hop-by-Hop (PadN) and Destination options (PadN), "pierce-v6". */
  udp6ext: h(
    '600817990021004000000000000000000000000000000001000000000000000000000000000000013c000104000000001100010400000000d3e2000900118f277069657263652d7636',
  ),
  /** ping -6 -c1 ::1: echo request. */
  ping6: h('600366e500183a4000000000000000000000000000000001000000000000000000000000000000018000c9080d79000199d7076b0000000002e6050000000000'),
};

describe('parsePacket on packets captured from Linux', () => {
  it('IPv4 echo request', () => {
    const p = parsePacket(LINUX.ping4);
    expect(p.version).toBe(4);
    expect(formatIP(p.src)).toBe('127.0.0.1');
    expect(formatIP(p.dst)).toBe('127.0.0.1');
    expect(p.protocol).toBe(IPPROTO_ICMP);
    expect(p.ttl).toBe(64);
    expect(p.headerLength).toBe(20);
    expect(p.length).toBe(44);
    expect(p.payload.length).toBe(24);
    expect(p.payload[0]).toBe(8);
  });

  it('IPv4 with options: IHL 6', () => {
    const p = parsePacket(LINUX.udp4opts);
    expect(p.headerLength).toBe(24);
    expect(p.protocol).toBe(IPPROTO_UDP);
    expect(new TextDecoder().decode(p.payload.subarray(8))).toBe('pierce-v4');
  });

  it('ICMP error quoting a packet', () => {
    const p = parsePacket(LINUX.unreach4);
    expect(p.protocol).toBe(IPPROTO_ICMP);
    expect(p.payload[0]).toBe(3);
    expect(toHex(parsePacket(p.payload.subarray(8)).payload)).toBe(toHex(LINUX.udp4opts.subarray(24)));
  });

  it('IPv6 with Hop-by-Hop and Destination options skipped', () => {
    const p = parsePacket(LINUX.udp6ext);
    expect(p.version).toBe(6);
    expect(formatIP(p.src)).toBe('::1');
    expect(p.protocol).toBe(IPPROTO_UDP);
    expect(p.headerLength).toBe(56);
    expect(p.ttl).toBe(64);
    expect(new TextDecoder().decode(p.payload.subarray(8))).toBe('pierce-v6');
  });

  it('IPv6 echo request', () => {
    const p = parsePacket(LINUX.ping6);
    expect(p.protocol).toBe(IPPROTO_ICMPV6);
    expect(p.headerLength).toBe(40);
    expect(p.payload.length).toBe(24);
  });

  it('payload is a subarray, addresses are copies', () => {
    const pkt = Uint8Array.from(LINUX.ping4);
    const p = parsePacket(pkt);
    expect(p.payload.buffer).toBe(pkt.buffer);
    pkt[12] = 1;
    expect(p.src[0]).toBe(127);
  });
});

describe('parsePacket rejects malformed packets with typed codes', () => {
  const v4 = () => Uint8Array.from(LINUX.ping4);
  const fixV4 = (p: Uint8Array, ihl = 20) => {
    p[10] = p[11] = 0;
    let s = 0;
    for (let i = 0; i < ihl; i += 2) s += (p[i]! << 8) | p[i + 1]!;
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    const c = ~s & 0xffff;
    p[10] = c >> 8;
    p[11] = c & 0xff;
    return p;
  };

  it('IPv4', () => {
    expect(code(() => parsePacket(new Uint8Array(0)))).toBe('PACKET_TRUNCATED');
    expect(code(() => parsePacket(LINUX.ping4.subarray(0, 19)))).toBe('PACKET_TRUNCATED');
    expect(code(() => parsePacket(LINUX.ping4.subarray(0, 43)))).toBe('PACKET_TRUNCATED');
    expect(code(() => parsePacket(h('50')))).toBe('PACKET_VERSION');
    let p = v4();
    p[0] = 0x44;
    expect(code(() => parsePacket(fixV4(p)))).toBe('PACKET_HEADER');
    p = v4();
    p[0] = 0x4f; // 60-byte header in a 44-byte packet
    expect(code(() => parsePacket(p))).toBe('PACKET_TRUNCATED');
    p = v4();
    p[3] = 19;
    expect(code(() => parsePacket(fixV4(p)))).toBe('PACKET_LENGTH');
    p = v4();
    p[11]! ^= 1;
    expect(code(() => parsePacket(p))).toBe('PACKET_CHECKSUM');
    p = v4();
    p[6] = 0x20; // MF
    expect(code(() => parsePacket(fixV4(p)))).toBe('PACKET_FRAGMENT');
    p = v4();
    p[6] = 0x40;
    p[7] = 0x01; // offset 8
    expect(code(() => parsePacket(fixV4(p)))).toBe('PACKET_FRAGMENT');
  });

  it('IPv4 trims link-layer padding to Total Length', () => {
    const padded = new Uint8Array(LINUX.ping4.length + 10);
    padded.set(LINUX.ping4);
    const p = parsePacket(padded);
    expect(p.length).toBe(44);
    expect(p.payload.length).toBe(24);
  });

  const v6 = (next: number, ext: Uint8Array, tail: Uint8Array = new Uint8Array(8)) =>
    buildIPv6({ src: parseIP('fd00::1'), dst: parseIP('fd00::2'), protocol: next, payload: new Uint8Array([...ext, ...tail]) });

  it('IPv6', () => {
    expect(code(() => parsePacket(LINUX.ping6.subarray(0, 39)))).toBe('PACKET_TRUNCATED');
    expect(code(() => parsePacket(LINUX.ping6.subarray(0, 63)))).toBe('PACKET_TRUNCATED');
    // Fragment header (44), directly or after destination options.
    expect(code(() => parsePacket(v6(44, h('1100000000000001'))))).toBe('PACKET_FRAGMENT');
    expect(code(() => parsePacket(v6(60, h('2c00010400000000'), h('1100000000000001'))))).toBe('PACKET_FRAGMENT');
    // Hop-by-Hop after another header.
    expect(code(() => parsePacket(v6(60, h('0000010400000000'), h('1100010400000000'))))).toBe('PACKET_EXTENSION');
    // Routing header with segments left.
    expect(code(() => parsePacket(v6(43, h('1102000100000000' + '00'.repeat(16)), new Uint8Array(0))))).toBe('PACKET_EXTENSION');
    // Extension header longer than the payload.
    expect(code(() => parsePacket(v6(60, h('1105000000000000'))))).toBe('PACKET_TRUNCATED');
    expect(code(() => parsePacket(v6(60, h('1100'), new Uint8Array(0))))).toBe('PACKET_TRUNCATED');
  });

  it('IPv6 skips a routing header with no segments left, and trims padding', () => {
    const p = parsePacket(v6(43, h('3a02000000000000' + '00'.repeat(16)), h('8000000000000000')));
    expect(p.protocol).toBe(58);
    expect(p.headerLength).toBe(64);
    const padded = new Uint8Array(LINUX.ping6.length + 3);
    padded.set(LINUX.ping6);
    expect(parsePacket(padded).payload.length).toBe(24);
    // Payload length 0 is an empty payload (no jumbograms).
    const empty = buildIPv6({ src: parseIP('::1'), dst: parseIP('::1'), protocol: 59, payload: new Uint8Array(0) });
    expect(parsePacket(empty).payload.length).toBe(0);
  });
});

describe('builders', () => {
  it('buildIPv4 reproduces the Linux echo request header', () => {
    const pkt = buildIPv4({
      src: parseIP('127.0.0.1'),
      dst: parseIP('127.0.0.1'),
      protocol: IPPROTO_ICMP,
      payload: LINUX.ping4.subarray(20),
      id: 0x80ac,
    });
    expect(toHex(pkt)).toBe(toHex(LINUX.ping4));
    expect(verifyChecksum(pkt.subarray(0, 20))).toBe(true);
  });

  it('buildIPv6 reproduces the Linux echo request header', () => {
    const pkt = buildIPv6({
      src: parseIP('::1'),
      dst: parseIP('::1'),
      protocol: IPPROTO_ICMPV6,
      payload: LINUX.ping6.subarray(40),
      flowLabel: 0x366e5,
    });
    expect(toHex(pkt)).toBe(toHex(LINUX.ping6));
    const tc = buildIPv6({ src: parseIP('::1'), dst: parseIP('::1'), protocol: 17, payload: new Uint8Array(0), trafficClass: 0xab, flowLabel: 0xfffff, ttl: 1 });
    expect(toHex(tc.subarray(0, 8))).toBe('6abfffff00001101');
  });

  it('rejects bad fields', () => {
    const a4 = parseIP('1.2.3.4');
    const a6 = parseIP('::1');
    const payload = new Uint8Array(0);
    expect(code(() => buildIPv4({ src: a6, dst: a4, protocol: 1, payload }))).toBe('ADDR_LENGTH');
    expect(code(() => buildIPv6({ src: a4, dst: a4, protocol: 1, payload }))).toBe('ADDR_LENGTH');
    expect(code(() => buildIP({ src: new Uint8Array(5), dst: a4, protocol: 1, payload }))).toBe('ADDR_LENGTH');
    expect(code(() => buildIPv4({ src: a4, dst: a4, protocol: 256, payload }))).toBe('PACKET_FIELD');
    expect(code(() => buildIPv4({ src: a4, dst: a4, protocol: 1, payload, ttl: -1 }))).toBe('PACKET_FIELD');
    expect(code(() => buildIPv6({ src: a6, dst: a6, protocol: 1, payload, flowLabel: 1 << 20 }))).toBe('PACKET_FIELD');
    expect(code(() => buildIPv4({ src: a4, dst: a4, protocol: 1, payload: new Uint8Array(65516) }))).toBe('PACKET_TOO_BIG');
    expect(buildIPv4({ src: a4, dst: a4, protocol: 1, payload: new Uint8Array(65515) }).length).toBe(65535);
    expect(code(() => buildIPv6({ src: a6, dst: a6, protocol: 1, payload: new Uint8Array(65536) }))).toBe('PACKET_TOO_BIG');
  });

  const addr4 = fc.uint8Array({ minLength: 4, maxLength: 4 });
  const addr6 = fc.uint8Array({ minLength: 16, maxLength: 16 });
  const fields = fc.record({
    protocol: fc.constantFrom(1, 6, 17, 58, 59, 200),
    ttl: fc.integer({ min: 0, max: 255 }),
    payload: fc.uint8Array({ maxLength: 200 }),
  });

  it('build → parse round-trips (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.tuple(addr4, addr4), fc.tuple(addr6, addr6)), fields, ([src, dst], f) => {
        const pkt = buildIP({ src, dst, ...f });
        const p = parsePacket(pkt);
        expect(p.version).toBe(src.length === 4 ? 4 : 6);
        expect(toHex(p.src)).toBe(toHex(src));
        expect(toHex(p.dst)).toBe(toHex(dst));
        expect(p.protocol).toBe(f.protocol);
        expect(p.ttl).toBe(f.ttl);
        expect(toHex(p.payload)).toBe(toHex(f.payload));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('parsePacket fuzz: only PacketError, and results stay in bounds', () => {
  const check = (pkt: Uint8Array) => {
    try {
      const p = parsePacket(pkt);
      expect(p.headerLength + p.payload.length).toBe(p.length);
      expect(p.length).toBeLessThanOrEqual(pkt.length);
      expect(p.src.length).toBe(p.version === 4 ? 4 : 16);
    } catch (e) {
      if (!(e instanceof PacketError)) throw e;
    }
  };

  it('random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), check), { numRuns: 5000 });
    // Random bytes with a plausible first byte, so the deeper checks get exercised.
    fc.assert(
      fc.property(fc.constantFrom(0x45, 0x46, 0x4f, 0x60), fc.uint8Array({ minLength: 0, maxLength: 120 }), (b0, rest) =>
        check(new Uint8Array([b0, ...rest])),
      ),
      { numRuns: 5000 },
    );
  });

  it('truncated and mutated real packets', () => {
    const seeds = Object.values(LINUX);
    const ext = [43, 44, 59, 60, 0, 58, 17];
    fc.assert(
      fc.property(
        fc.constantFrom(...seeds),
        fc.array(fc.tuple(fc.nat(), fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(...ext))), { maxLength: 6 }),
        fc.nat(),
        (seed, muts, cut) => {
          const p = Uint8Array.from(seed);
          for (const [at, v] of muts) p[at % p.length] = v;
          check(p);
          check(p.subarray(0, cut % (p.length + 1)));
        },
      ),
      { numRuns: 10000 },
    );
  });
});
