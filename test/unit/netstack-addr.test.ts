import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  formatIP,
  formatPrefix,
  isIPv4,
  isIPv4Mapped,
  maskPrefix,
  PacketError,
  parseIP,
  parsePrefix,
  prefixContains,
  tryParseIP,
} from '../../src/netstack/addr.ts';
import { toHex } from '../../src/crypto/bytes.ts';
import { expectCode as expectErrorCode } from '../support/errors.ts';

const hex = (b: Uint8Array) => toHex(b);

const expectCode = (f: () => unknown, code: string): void => expectErrorCode(f, PacketError, code);

describe('parseIP / formatIP', () => {
  it('parses IPv4 dotted quads', () => {
    expect([...parseIP('0.0.0.0')]).toEqual([0, 0, 0, 0]);
    expect([...parseIP('192.0.2.1')]).toEqual([192, 0, 2, 1]);
    expect([...parseIP('255.255.255.255')]).toEqual([255, 255, 255, 255]);
    expect(isIPv4(parseIP('10.1.2.3'))).toBe(true);
    expect(isIPv4(parseIP('::1'))).toBe(false);
  });

  it('rejects loose IPv4 forms', () => {
    for (const s of [
      '', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.04', '1..2.3', '.1.2.3.4', '1.2.3.4.',
      '1.2.3.4 ', ' 1.2.3.4', '0x1.2.3.4', '1.2.3.-4', '1234.1.1.1', '1.2.3.٤', '1e1.1.1.1', '4294967295',
    ]) {
      expectCode(() => parseIP(s), 'ADDR_PARSE');
    }
  });

  // RFC 4291 §2.2 text forms, with RFC 5952 canonical output.
  const rfc4291: [string, string, string][] = [
    ['2001:DB8:0:0:8:800:200C:417A', '20010db80000000000080800200c417a', '2001:db8::8:800:200c:417a'],
    ['FF01:0:0:0:0:0:0:101', 'ff010000000000000000000000000101', 'ff01::101'],
    ['0:0:0:0:0:0:0:1', '00000000000000000000000000000001', '::1'],
    ['0:0:0:0:0:0:0:0', '00000000000000000000000000000000', '::'],
    ['2001:DB8::8:800:200C:417A', '20010db80000000000080800200c417a', '2001:db8::8:800:200c:417a'],
    ['FF01::101', 'ff010000000000000000000000000101', 'ff01::101'],
    ['::1', '00000000000000000000000000000001', '::1'],
    ['::', '00000000000000000000000000000000', '::'],
    ['0:0:0:0:0:0:13.1.68.3', '0000000000000000000000000d014403', '::d01:4403'],
    ['0:0:0:0:0:FFFF:129.144.52.38', '00000000000000000000ffff81903426', '::ffff:129.144.52.38'],
    ['::13.1.68.3', '0000000000000000000000000d014403', '::d01:4403'],
    ['::FFFF:129.144.52.38', '00000000000000000000ffff81903426', '::ffff:129.144.52.38'],
  ];
  it.each(rfc4291)('RFC 4291 §2.2: %s', (text, bytes, canonical) => {
    expect(hex(parseIP(text))).toBe(bytes);
    expect(formatIP(parseIP(text))).toBe(canonical);
  });

  // RFC 5952 §4 recommendations, each with the section that decides it.
  const rfc5952: [string, string][] = [
    ['2001:0db8::0001', '2001:db8::1'], // §4.1 leading zeros suppressed
    ['2001:db8:0:0:0:0:2:1', '2001:db8::2:1'], // §4.2.1 shorten as much as possible
    ['2001:db8::0:1', '2001:db8::1'], // §4.2.1
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // §4.2.2 no "::" for one group
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // §4.2.3 longest run
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // §4.2.3 first of equal runs
    ['2001:DB8::AAAA', '2001:db8::aaaa'], // §4.3 lowercase
    ['2001:db8:aaaa:bbbb:cccc:dddd:eeee:aaaa', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:aaaa'], // §2.1
    ['2001:db8::1:0:0:0', '2001:db8:0:0:1::'], // §4.2.3 longest run is the tail
    ['0:0:1:0:0:0:0:0', '0:0:1::'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['0:0:0:0:0:0:0:2', '::2'],
    ['1::2:3:4:5:6:7', '1:0:2:3:4:5:6:7'], // "::" for one group accepted on input
  ];
  it.each(rfc5952)('RFC 5952: %s → %s', (text, canonical) => {
    expect(formatIP(parseIP(text))).toBe(canonical);
  });

  it('rejects malformed IPv6', () => {
    for (const s of [
      ':', ':::', '1:::2', '1::2::3', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7:8::', '::1:2:3:4:5:6:7:8',
      '12345::', 'g::', '1:2:3:4:5:6:7:', ':1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:', '::1.2.3', '::1.2.3.4:5',
      '1:2:3:4:5:6:7:1.2.3.4', '1:2:3:4:5:1.2.3.4', '::ffff:01.2.3.4', '::ffff:1.2.3.256', '[::1]', 'fe80::1%eth0',
      '::1 ', ' ::1', '1.2.3.4::', '::1.2.3.4::',
    ]) {
      expectCode(() => parseIP(s), 'ADDR_PARSE');
    }
    expect(() => parseIP('fe80::1%eth0')).toThrow(/zone/);
  });

  it('formats IPv4-mapped in mixed notation (RFC 5952 §5)', () => {
    expect(isIPv4Mapped(parseIP('::ffff:1.2.3.4'))).toBe(true);
    expect(formatIP(parseIP('::ffff:0102:0304'))).toBe('::ffff:1.2.3.4');
    expect(isIPv4Mapped(parseIP('::fffe:1.2.3.4'))).toBe(false);
  });

  it('rejects byte arrays of the wrong length', () => {
    expectCode(() => formatIP(new Uint8Array(5)), 'ADDR_LENGTH');
  });

  it('round-trips any address (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 })), (b) => {
        expect(hex(parseIP(formatIP(b)))).toBe(hex(b));
      }),
      { numRuns: 2000 },
    );
  });

  it('formats IPv6 like the WHATWG URL serializer (property; independent oracle)', () => {
    // WHATWG URL host serialization compresses like RFC 5952 §4.2 but never uses mixed notation.
    const groupsAndZeros = fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
      minLength: 8,
      maxLength: 8,
    });
    fc.assert(
      fc.property(groupsAndZeros, (g) => {
        const full = g.map((x) => x.toString(16)).join(':');
        const b = parseIP(full);
        fc.pre(!isIPv4Mapped(b));
        expect(`[${formatIP(b)}]`).toBe(new URL(`http://[${full}]/`).hostname);
      }),
      { numRuns: 3000 },
    );
  });

  it('accepts exactly what node:net isIP accepts, over a small alphabet (property)', () => {
    const chars = fc.constantFrom(...'0123456789abcdefABCDEF:.'.split(''), ':', ':', '.', '1');
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 45 }).map((a) => a.join('')), (s) => {
        expect(tryParseIP(s) !== null).toBe(isIP(s) !== 0);
      }),
      { numRuns: 20000 },
    );
    // Valid addresses with one random edit: near misses are where parsers disagree.
    const addr = fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 }));
    const edit = fc.tuple(fc.nat(), fc.constantFrom('', ':', '.', '0', '1', 'f', '::', '00', '1.2.3.4'), fc.integer({ min: 0, max: 2 }));
    let valid = 0;
    fc.assert(
      fc.property(addr, edit, fc.boolean(), (b, [at, ins, del], mixed) => {
        let s = formatIP(b);
        if (mixed && b.length === 16) s = s.replace(/:[0-9a-f]{1,4}:[0-9a-f]{1,4}$/, ':' + formatIP(b.subarray(12)));
        const i = at % (s.length + 1);
        s = s.slice(0, i) + ins + s.slice(i + del);
        if (isIP(s) !== 0) valid++;
        expect(tryParseIP(s) !== null).toBe(isIP(s) !== 0);
      }),
      { numRuns: 20000 },
    );
    expect(valid).toBeGreaterThan(1000);
    for (const s of ['::ffff:1.2.3.4', '1::2:3:4:5:6:7', '::1.2.3.4', '1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5::1.2.3.4']) {
      expect(tryParseIP(s) !== null).toBe(isIP(s) !== 0);
    }
  });

  it('never throws anything but PacketError ADDR_PARSE (fuzz)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        try {
          const b = parseIP(s);
          expect(b.length === 4 || b.length === 16).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(PacketError);
          expect((e as PacketError).code).toBe('ADDR_PARSE');
        }
      }),
      { numRuns: 5000 },
    );
  });
});

describe('prefixes', () => {
  it('parses with and without /bits', () => {
    const p = parsePrefix('10.0.0.0/8');
    expect([...p.addr]).toEqual([10, 0, 0, 0]);
    expect(p.bits).toBe(8);
    expect(parsePrefix('10.1.2.3').bits).toBe(32);
    expect(parsePrefix('::1').bits).toBe(128);
    expect(parsePrefix('::/0').bits).toBe(0);
    expect(parsePrefix('fd7a:115c:a1e0::/48').bits).toBe(48);
    expect(parsePrefix('1.2.3.4/32').bits).toBe(32);
    expect(parsePrefix('::/128').bits).toBe(128);
  });

  it('keeps host bits until masked', () => {
    const p = parsePrefix('10.1.2.3/8');
    expect(formatPrefix(p)).toBe('10.1.2.3/8');
    expect(formatPrefix(maskPrefix(p))).toBe('10.0.0.0/8');
    expect(formatPrefix(p)).toBe('10.1.2.3/8'); // mask made a copy
    expect(formatPrefix(maskPrefix(parsePrefix('100.127.255.255/10')))).toBe('100.64.0.0/10');
    expect(formatPrefix(maskPrefix(parsePrefix('fd7a:115c:a1e0:ab12:4843:cd96:626b:430b/48')))).toBe('fd7a:115c:a1e0::/48');
    expect(formatPrefix(maskPrefix(parsePrefix('2001:db8::ffff/127')))).toBe('2001:db8::fffe/127');
    expect(formatPrefix(maskPrefix(parsePrefix('255.255.255.255/0')))).toBe('0.0.0.0/0');
    expect(formatPrefix(maskPrefix(parsePrefix('255.255.255.255/31')))).toBe('255.255.255.254/31');
  });

  it('rejects bad prefixes', () => {
    for (const s of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/08', '10.0.0.0/-1', '10.0.0.0/8/8', '/8', '10.0.0.0/ 8', '10.0.0.0/1e1', 'x/8', '1.2.3.4/+8']) {
      expectCode(() => parsePrefix(s), 'ADDR_PARSE');
    }
  });

  it('contains', () => {
    const p = parsePrefix('100.64.0.0/10');
    expect(prefixContains(p, parseIP('100.64.0.1'))).toBe(true);
    expect(prefixContains(p, parseIP('100.127.255.255'))).toBe(true);
    expect(prefixContains(p, parseIP('100.128.0.0'))).toBe(false);
    expect(prefixContains(p, parseIP('100.63.255.255'))).toBe(false);
    expect(prefixContains(p, parseIP('::ffff:100.64.0.1'))).toBe(false); // other family
    expect(prefixContains(parsePrefix('0.0.0.0/0'), parseIP('1.2.3.4'))).toBe(true);
    expect(prefixContains(parsePrefix('::/0'), parseIP('1.2.3.4'))).toBe(false);
    expect(prefixContains(parsePrefix('fd7a:115c:a1e0::/48'), parseIP('fd7a:115c:a1e0:1::2'))).toBe(true);
    expect(prefixContains(parsePrefix('fd7a:115c:a1e0::/48'), parseIP('fd7a:115c:a1e1::2'))).toBe(false);
    expect(prefixContains(parsePrefix('1.2.3.4/32'), parseIP('1.2.3.4'))).toBe(true);
    expect(prefixContains(parsePrefix('1.2.3.4/32'), parseIP('1.2.3.5'))).toBe(false);
  });

  it('contains agrees with a bit-by-bit check (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 128 }), (a, b, bits) => {
        let same = true;
        for (let i = 0; i < bits; i++) if (((a[i >> 3]! >> (7 - (i & 7))) & 1) !== ((b[i >> 3]! >> (7 - (i & 7))) & 1)) same = false;
        expect(prefixContains({ addr: a, bits }, b)).toBe(same);
        expect(prefixContains(maskPrefix({ addr: a, bits }), a)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('parsePrefix round-trips and never throws anything but PacketError (fuzz)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 50 }), (s) => {
        try {
          const p = parsePrefix(s);
          expect(formatPrefix(parsePrefix(formatPrefix(p)))).toBe(formatPrefix(p));
        } catch (e) {
          expect(e).toBeInstanceOf(PacketError);
        }
      }),
      { numRuns: 5000 },
    );
  });
});
