import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.ts';
import { PacketError, parseIP } from '../../src/netstack/addr.ts';
import { parsePacket } from '../../src/netstack/ip.ts';
import { buildUdp, buildUdpPacket, parseUdp } from '../../src/netstack/udp.ts';
import { thrownCode } from '../support/errors.ts';

const h = (s: string) => fromHex(s.replace(/\s+/g, ''))!;

const code = (f: () => unknown): string => thrownCode(f, PacketError);

/** RFC 1071 checksum over the RFC 768 / RFC 8200 §8.1 pseudo-header and data, written out independently. */
function refUdpChecksum(src: Uint8Array, dst: Uint8Array, dgram: Uint8Array): number {
  const len = dgram.length;
  const pseudo = src.length === 4 ? [...src, ...dst, 0, 17, len >> 8, len & 0xff] : [...src, ...dst, 0, 0, len >> 8, len & 0xff, 0, 0, 0, 17];
  const all = [...pseudo, ...dgram];
  all[pseudo.length + 6] = all[pseudo.length + 7] = 0;
  if (all.length % 2) all.push(0);
  let s = 0;
  for (let i = 0; i < all.length; i += 2) s += (all[i]! << 8) | all[i + 1]!;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff || 0xffff;
}

const A4 = parseIP('10.77.0.1'); // Linux, in a network namespace behind a TUN device
const B4 = parseIP('10.77.0.2');
const A6 = parseIP('fd00:77::1');
const B6 = parseIP('fd00:77::2');

/**
 * Captured from Linux through a TUN device (no checksum offload): `k*` the kernel sent
 * (sendto "pierce udp!", 11 bytes, port 5353 → 5353); `py*` a Python script sent to a closed
 * port and the kernel verified (it answered with ICMP port unreachable, which it does only after
 * the checksum passes).
 */
const LINUX = {
  k4: h('45000027404f40004011e5da0a4d00010a4d000214e914e90013e2327069657263652075647021'),
  k6: h('6003b5fd00131140fd000077000000000000000000000001fd00007700000000000000000000000214e914e90013fbdc7069657263652075647021'),
  py4: h('4500002800004000401126290a4d00020a4d00019c400009001469d1030a11181f262d343b424950'),
  py6: h('6000000000141140fd000077000000000000000000000002fd0000770000000000000000000000019c4000090014837b030a11181f262d343b424950'),
};

/**
 * A datagram (1000 → 5353, 4 bytes) whose checksum computes to 0 and so goes out as 0xffff
 * (RFC 768), built by `buildUdpPacket` and injected into the TUN device: a Linux UDP socket
 * received these payloads (the kernel accepted 0xffff).
 */
const LINUX_RECEIVED_0XFFFF = { v4: h('d2680000'), v6: h('ec120000') };

const full = (pkt: Uint8Array) => {
  const ip = parsePacket(pkt);
  return parseUdp(ip.payload, ip.src, ip.dst);
};

describe('UDP against Linux', () => {
  it('parses the kernel datagrams (odd length)', () => {
    for (const k of [LINUX.k4, LINUX.k6]) {
      const d = full(k);
      expect([d.srcPort, d.dstPort]).toEqual([5353, 5353]);
      expect(new TextDecoder().decode(d.payload)).toBe('pierce udp!');
    }
    const p = full(LINUX.py4);
    expect([p.srcPort, p.dstPort, toHex(p.payload)]).toEqual([40000, 9, '030a11181f262d343b424950']);
  });

  it('builds them byte for byte', () => {
    const payload = new TextEncoder().encode('pierce udp!');
    const b4 = buildUdpPacket({ srcPort: 5353, dstPort: 5353, payload }, A4, B4);
    expect(toHex(b4.subarray(20))).toBe(toHex(LINUX.k4.subarray(20)));
    // The IP header differs only in the kernel's IP ID (and so the header checksum).
    expect(toHex(b4.subarray(0, 4)) + toHex(b4.subarray(6, 10)) + toHex(b4.subarray(12, 20))).toBe(
      toHex(LINUX.k4.subarray(0, 4)) + toHex(LINUX.k4.subarray(6, 10)) + toHex(LINUX.k4.subarray(12, 20)),
    );
    const b6 = buildUdpPacket({ srcPort: 5353, dstPort: 5353, payload }, A6, B6);
    expect(toHex(b6.subarray(4))).toBe(toHex(LINUX.k6.subarray(4))); // all but the flow label
    const q = h('030a11181f262d343b424950');
    expect(toHex(buildUdpPacket({ srcPort: 40000, dstPort: 9, payload: q }, B4, A4))).toBe(toHex(LINUX.py4));
    expect(toHex(buildUdpPacket({ srcPort: 40000, dstPort: 9, payload: q }, B6, A6))).toBe(toHex(LINUX.py6));
  });

  it('a computed checksum of 0 goes out as 0xffff, and Linux takes it', () => {
    for (const [src, dst, payload] of [[B4, A4, LINUX_RECEIVED_0XFFFF.v4], [B6, A6, LINUX_RECEIVED_0XFFFF.v6]] as const) {
      const d = buildUdp({ srcPort: 1000, dstPort: 5353, payload }, src, dst);
      expect(toHex(d.subarray(6, 8))).toBe('ffff');
      expect(toHex(parseUdp(d, src, dst).payload)).toBe(toHex(payload));
      // A 0 in its place is "no checksum": fine over IPv4, an error over IPv6.
      d[6] = d[7] = 0;
      if (src.length === 4) expect(toHex(parseUdp(d, src, dst).payload)).toBe(toHex(payload));
      else expect(code(() => parseUdp(d, src, dst))).toBe('UDP_CHECKSUM');
    }
  });
});

describe('parseUdp checks', () => {
  const d4 = buildUdp({ srcPort: 1, dstPort: 2, payload: h('aabbcc') }, B4, A4);

  it('lengths', () => {
    expect(code(() => parseUdp(d4.subarray(0, 7), B4, A4))).toBe('UDP_TRUNCATED');
    expect(code(() => parseUdp(d4.subarray(0, 10), B4, A4))).toBe('UDP_TRUNCATED'); // Length 11 > 10 bytes
    for (const len of [0, 7]) {
      const b = Uint8Array.from(d4);
      b[4] = 0;
      b[5] = len;
      expect(code(() => parseUdp(b, B4, A4))).toBe('UDP_LENGTH');
    }
    // Bytes after Length are ignored; the checksum covers only Length bytes.
    const padded = new Uint8Array(d4.length + 5).fill(0xee);
    padded.set(d4);
    expect(toHex(parseUdp(padded, B4, A4).payload)).toBe('aabbcc');
    // A shorter Length with the checksum made for it.
    const short = buildUdp({ srcPort: 1, dstPort: 2, payload: h('aa') }, B4, A4);
    const longer = new Uint8Array([...short, 0xbb, 0xcc]);
    expect(toHex(parseUdp(longer, B4, A4).payload)).toBe('aa');
  });

  it('checksum and addresses', () => {
    const bad = Uint8Array.from(d4);
    bad[9]! ^= 1;
    expect(code(() => parseUdp(bad, B4, A4))).toBe('UDP_CHECKSUM');
    expect(code(() => parseUdp(d4, A4, B4))).toBe('no error'); // addresses swap: same sum
    expect(code(() => parseUdp(d4, B4, parseIP('10.77.0.3')))).toBe('UDP_CHECKSUM');
    expect(code(() => parseUdp(d4, B6, A6))).toBe('UDP_CHECKSUM');
    expect(code(() => parseUdp(d4, B4, A6))).toBe('ADDR_LENGTH');
    const zero = Uint8Array.from(d4);
    zero[6] = zero[7] = 0;
    expect(code(() => parseUdp(zero, B4, A6))).toBe('ADDR_LENGTH');
  });

  it('the payload is a view of the input', () => {
    const p = parseUdp(d4, B4, A4).payload;
    expect(p.buffer).toBe(d4.buffer);
    expect(p.byteOffset).toBe(d4.byteOffset + 8);
  });
});

describe('buildUdp', () => {
  it('rejects bad ports and sizes', () => {
    const payload = new Uint8Array(0);
    expect(code(() => buildUdp({ srcPort: 65536, dstPort: 1, payload }, B4, A4))).toBe('PACKET_FIELD');
    expect(code(() => buildUdp({ srcPort: 1, dstPort: -1, payload }, B4, A4))).toBe('PACKET_FIELD');
    expect(code(() => buildUdp({ srcPort: 1, dstPort: 1.5, payload }, B4, A4))).toBe('PACKET_FIELD');
    expect(code(() => buildUdp({ srcPort: 1, dstPort: 2, payload }, B4, A6))).toBe('ADDR_LENGTH');
    expect(code(() => buildUdp({ srcPort: 1, dstPort: 2, payload: new Uint8Array(65528) }, B6, A6))).toBe('PACKET_TOO_BIG');
    expect(buildUdp({ srcPort: 1, dstPort: 2, payload: new Uint8Array(65527) }, B6, A6).length).toBe(65535);
    expect(code(() => buildUdpPacket({ srcPort: 1, dstPort: 2, payload: new Uint8Array(65508) }, B4, A4))).toBe('PACKET_TOO_BIG');
    expect(buildUdpPacket({ srcPort: 1, dstPort: 2, payload: new Uint8Array(65507) }, B4, A4).length).toBe(65535);
    expect(buildUdpPacket({ srcPort: 1, dstPort: 2, payload: new Uint8Array(65527) }, B6, A6).length).toBe(65575);
    expect(parsePacket(buildUdpPacket({ srcPort: 1, dstPort: 2, payload }, B6, A6, 3)).ttl).toBe(3);
  });
});

const u16 = fc.integer({ min: 0, max: 0xffff });
const addrs = fc.oneof(
  fc.tuple(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 4, maxLength: 4 })),
  fc.tuple(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 16, maxLength: 16 })),
);
const datagram = fc.record({ srcPort: u16, dstPort: u16, payload: fc.uint8Array({ maxLength: 600 }) });

describe('properties', () => {
  it('buildUdpPacket → parsePacket → parseUdp round-trips; checksum matches a reference', () => {
    fc.assert(
      fc.property(datagram, addrs, fc.integer({ min: 0, max: 255 }), (d, [src, dst], ttl) => {
        const pkt = buildUdpPacket(d, src, dst, ttl);
        const ip = parsePacket(pkt);
        expect(ip.protocol).toBe(17);
        expect(ip.ttl).toBe(ttl);
        const p = parseUdp(ip.payload, ip.src, ip.dst);
        expect([p.srcPort, p.dstPort, toHex(p.payload)]).toEqual([d.srcPort, d.dstPort, toHex(d.payload)]);
        expect((ip.payload[6]! << 8) | ip.payload[7]!).toBe(refUdpChecksum(src, dst, ip.payload));
        expect(toHex(ip.payload)).toBe(toHex(buildUdp(d, src, dst)));
      }),
      { numRuns: 1000 },
    );
  });

  it('a single bit flip never passes', () => {
    fc.assert(
      fc.property(datagram, addrs, fc.nat(), (d, [src, dst], bit) => {
        const b = buildUdp(d, src, dst);
        const at = bit % (b.length * 8);
        b[at >> 3]! ^= 1 << (at & 7);
        const c = code(() => parseUdp(b, src, dst));
        // Flipping the checksum 0xffff ↔ 0x0000 is impossible with one bit; a flipped Length
        // bit either breaks the length check or the checksum (it is summed too).
        expect(c).toMatch(/^UDP_(CHECKSUM|LENGTH|TRUNCATED)$/);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('fuzz: parseUdp throws only PacketError', () => {
  const seeds = Object.values(LINUX).map((p) => {
    const ip = parsePacket(p);
    return { d: ip.payload, src: ip.src, dst: ip.dst };
  });

  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), addrs, (b, [src, dst]) => {
        try {
          parseUdp(b, src, dst);
        } catch (e) {
          expect(e).toBeInstanceOf(PacketError);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('truncated and mutated kernel datagrams', () => {
    let parsed = 0;
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.nat(), ({ d, src, dst }, muts, cut) => {
        const b = Uint8Array.from(d.subarray(0, Math.max(0, d.length - (cut % 12))));
        for (const [at, v] of muts) if (b.length > 0) b[at % b.length] = v;
        try {
          parseUdp(b, src, dst);
          parsed++;
        } catch (e) {
          expect(e).toBeInstanceOf(PacketError);
        }
      }),
      { numRuns: 5000 },
    );
    expect(parsed).toBeGreaterThan(0);
  });
});
