import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { equalBytes, fromHex, toHex } from '../../src/crypto/bytes.ts';
import { formatIP, parseIP } from '../../src/netstack/addr.ts';
import {
  answerEcho,
  buildEchoReply,
  buildEchoRequest,
  parseEchoReply,
  parseEchoRequest,
} from '../../src/netstack/icmp.ts';
import { buildIP, parsePacket } from '../../src/netstack/ip.ts';
import { internetChecksum, verifyChecksum } from '../../src/netstack/checksum.ts';

const h = (s: string) => fromHex(s.replace(/\s+/g, ''))!;

// Captured from Linux on lo: `ping -c1 -s16` and the kernel's own replies.
const LINUX = {
  request4: h('4500002c80ac40004001bc227f0000017f00000108000a800d4f000197d7076b000000003eed020000000000'),
  reply4: h('4500002c80ad00004001fc217f0000017f000001000012800d4f000197d7076b000000003eed020000000000'),
  request6: h('600366e500183a4000000000000000000000000000000001000000000000000000000000000000018000c9080d79000199d7076b0000000002e6050000000000'),
  reply6: h('600e6c1900183a4000000000000000000000000000000001000000000000000000000000000000018100c8080d79000199d7076b0000000002e6050000000000'),
};

const everyone = () => true;

describe('ICMP echo against Linux', () => {
  it('parses the Linux echo requests and replies', () => {
    const q4 = parseEchoRequest(LINUX.request4)!;
    expect(q4).not.toBeNull();
    expect(q4.id).toBe(0x0d4f);
    expect(q4.seq).toBe(1);
    expect(q4.payload.length).toBe(16);
    const r4 = parseEchoReply(LINUX.reply4)!;
    expect(r4.id).toBe(0x0d4f);
    expect(toHex(r4.payload)).toBe(toHex(q4.payload));
    const q6 = parseEchoRequest(LINUX.request6)!;
    expect(q6.id).toBe(0x0d79);
    expect(formatIP(q6.dst)).toBe('::1');
    const r6 = parseEchoReply(LINUX.reply6)!;
    expect(r6.seq).toBe(1);
    // A request is not a reply and vice versa.
    expect(parseEchoReply(LINUX.request4)).toBeNull();
    expect(parseEchoRequest(LINUX.reply6)).toBeNull();
  });

  it('answers like the Linux kernel: same ICMP message byte for byte', () => {
    const a4 = answerEcho(LINUX.request4, everyone)!;
    // The IP headers differ only in fields the kernel chooses (IP ID, DF, flow label).
    expect(toHex(a4.subarray(20))).toBe(toHex(LINUX.reply4.subarray(20)));
    const a6 = answerEcho(LINUX.request6, everyone)!;
    expect(toHex(a6.subarray(40))).toBe(toHex(LINUX.reply6.subarray(40)));
    expect(toHex(a6.subarray(4))).toBe(toHex(LINUX.reply6.subarray(4)));
  });

  it('buildEchoRequest reproduces the Linux requests', () => {
    const data4 = parseEchoRequest(LINUX.request4)!.payload;
    const b4 = buildEchoRequest({ src: parseIP('127.0.0.1'), dst: parseIP('127.0.0.1'), id: 0x0d4f, seq: 1, payload: data4 });
    expect(toHex(b4.subarray(20))).toBe(toHex(LINUX.request4.subarray(20)));
    const data6 = parseEchoRequest(LINUX.request6)!.payload;
    const b6 = buildEchoRequest({ src: parseIP('::1'), dst: parseIP('::1'), id: 0x0d79, seq: 1, payload: data6 });
    expect(toHex(b6.subarray(4))).toBe(toHex(LINUX.request6.subarray(4)));
  });
});

describe('answerEcho', () => {
  const me4 = parseIP('100.64.0.1');
  const peer4 = parseIP('100.64.0.2');
  const me6 = parseIP('fd7a:115c:a1e0::1');
  const peer6 = parseIP('fd7a:115c:a1e0::2');
  const isMe = (d: Uint8Array) => equalBytes(d, me4) || equalBytes(d, me6);

  it('swaps addresses and keeps id, seq, payload', () => {
    for (const [src, dst] of [[peer4, me4], [peer6, me6]] as const) {
      const q = buildEchoRequest({ src, dst, id: 7, seq: 65535, payload: new TextEncoder().encode('hello'), ttl: 3 });
      const a = answerEcho(q, isMe, { ttl: 9 })!;
      const r = parseEchoReply(a)!;
      expect(formatIP(r.src)).toBe(formatIP(dst));
      expect(formatIP(r.dst)).toBe(formatIP(src));
      expect([r.id, r.seq]).toEqual([7, 65535]);
      expect(new TextDecoder().decode(r.payload)).toBe('hello');
      expect(parsePacket(a).ttl).toBe(9);
    }
  });

  it('returns null when not local, not a request, bad checksum, nonzero code, or non-unicast', () => {
    const q = buildEchoRequest({ src: peer4, dst: me4, id: 1, seq: 1 });
    expect(answerEcho(q, () => false)).toBeNull();
    expect(answerEcho(buildEchoReply({ src: peer4, dst: me4, id: 1, seq: 1 }), isMe)).toBeNull();
    const bad = Uint8Array.from(q);
    bad[bad.length - 1]! ^= 1;
    expect(answerEcho(bad, isMe)).toBeNull();
    const q6 = buildEchoRequest({ src: peer6, dst: me6, id: 1, seq: 1, payload: h('00') });
    // ICMPv6 checksum covers the pseudo-header: a changed source address breaks it.
    const moved = Uint8Array.from(q6);
    moved[23] = 3;
    expect(answerEcho(moved, everyone)).toBeNull();
    // ICMPv4 echo under protocol 58 (or vice versa) is not an echo.
    const msg4 = parsePacket(q).payload;
    expect(answerEcho(buildIP({ src: peer4, dst: me4, protocol: 58, payload: msg4 }), everyone)).toBeNull();
    // Nonzero code, with a correct checksum.
    const coded = Uint8Array.from(msg4);
    coded[1] = 1;
    coded[2] = coded[3] = 0;
    const ck = internetChecksum(coded);
    coded[2] = ck >> 8;
    coded[3] = ck & 0xff;
    coded[1] = 0; // same message with code 0 (and so a wrong checksum) is rejected too
    expect(parseEchoRequest(buildIP({ src: peer4, dst: me4, protocol: 1, payload: coded }))).toBeNull();
    coded[1] = 1;
    expect(verifyChecksum(coded)).toBe(true);
    expect(parseEchoRequest(buildIP({ src: peer4, dst: me4, protocol: 1, payload: coded }))).toBeNull();
    // Broadcast / multicast / unspecified.
    for (const [s, d] of [
      ['0.0.0.0', '100.64.0.1'],
      ['100.64.0.2', '255.255.255.255'],
      ['100.64.0.2', '224.0.0.1'],
      ['::', 'fd7a:115c:a1e0::1'],
      ['fd7a:115c:a1e0::2', 'ff02::1'],
    ] as const) {
      expect(answerEcho(buildEchoRequest({ src: parseIP(s), dst: parseIP(d), id: 1, seq: 1 }), everyone)).toBeNull();
    }
    // Too short to be an echo message.
    expect(answerEcho(buildIP({ src: peer4, dst: me4, protocol: 1, payload: h('0800f7ff') }), everyone)).toBeNull();
  });

  it('answers every valid request (property)', () => {
    const pair = fc.oneof(
      fc.constant([peer4, me4] as const),
      fc.constant([peer6, me6] as const),
    );
    fc.assert(
      fc.property(pair, fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }), fc.uint8Array({ maxLength: 300 }), ([src, dst], id, seq, payload) => {
        const a = answerEcho(buildEchoRequest({ src, dst, id, seq, payload }), isMe);
        expect(a).not.toBeNull();
        const r = parseEchoReply(a!)!;
        expect([r.id, r.seq, toHex(r.payload)]).toEqual([id, seq, toHex(payload)]);
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on garbage, truncated or mutated input (fuzz)', () => {
    const seeds = [...Object.values(LINUX), buildEchoRequest({ src: peer6, dst: me6, id: 1, seq: 2, payload: h('0102') })];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        answerEcho(b, everyone);
        parseEchoReply(b);
        parseEchoRequest(b);
      }),
      { numRuns: 3000 },
    );
    let answered = 0;
    fc.assert(
      fc.property(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.nat(), (seed, muts, cut) => {
        const p = Uint8Array.from(seed);
        for (const [at, v] of muts) p[at % p.length] = v;
        const t = p.subarray(0, muts.length === 0 ? p.length : Math.max(p.length - (cut % 8), 0));
        const a = answerEcho(t, everyone);
        if (a) {
          answered++;
          expect(parseEchoReply(a)).not.toBeNull();
        }
        parseEchoReply(t);
      }),
      { numRuns: 5000 },
    );
    expect(answered).toBeGreaterThan(0);
  });
});
