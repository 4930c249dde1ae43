import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromHex } from '../../src/crypto/bytes.ts';
import {
  addSums,
  finishChecksum,
  foldSum,
  internetChecksum,
  pseudoHeaderSum,
  sumWords,
  updateChecksum,
  verifyChecksum,
} from '../../src/netstack/checksum.ts';
import { parseIP, PacketError } from '../../src/netstack/addr.ts';

const h = (s: string) => fromHex(s.replace(/\s+/g, ''))!;

/** A deliberately naive reference: sum 16-bit words as a BigInt, then fold. */
function naive(data: Uint8Array): number {
  let s = 0n;
  for (let i = 0; i < data.length; i += 2) s += BigInt((data[i]! << 8) | (data[i + 1] ?? 0));
  while (s > 0xffffn) s = (s & 0xffffn) + (s >> 16n);
  return Number(~s & 0xffffn);
}

describe('Internet checksum (RFC 1071)', () => {
  it('RFC 1071 §3 numerical example', () => {
    // Bytes 00 01 f2 03 f4 f5 f6 f7: the sum is ddf2 after the end-around carry.
    const data = h('0001f203f4f5f6f7');
    expect(sumWords(data).toString(16)).toBe('ddf2');
    expect(internetChecksum(data).toString(16)).toBe('220d');
  });

  it('IPv4 header example (checksum b861)', () => {
    // The classic example header 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
    const hdr = h('450000730000400040110000c0a80001c0a800c7');
    expect(internetChecksum(hdr).toString(16)).toBe('b861');
    hdr[10] = 0xb8;
    hdr[11] = 0x61;
    expect(verifyChecksum(hdr)).toBe(true);
    hdr[11] = 0x62;
    expect(verifyChecksum(hdr)).toBe(false);
  });

  it('edge cases: empty, odd length, all zero, all ones', () => {
    expect(internetChecksum(new Uint8Array(0))).toBe(0xffff);
    expect(internetChecksum(h('01'))).toBe(0xfeff); // padded to 0100
    expect(internetChecksum(new Uint8Array(10))).toBe(0xffff);
    expect(internetChecksum(new Uint8Array(10).fill(0xff))).toBe(0);
    expect(foldSum(0x1ffff)).toBe(1);
    expect(foldSum(0xffffffff)).toBe(0xffff);
  });

  it('matches a naive reference on random data (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (d) => {
        expect(internetChecksum(d)).toBe(naive(d));
      }),
      { numRuns: 1000 },
    );
    const big = new Uint8Array(70000).fill(0xff);
    expect(internetChecksum(big)).toBe(naive(big));
  });

  it('partial sums chain over even chunks and add in any order (RFC 1071 §2 (B))', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (d, cut) => {
        const at = (cut % (d.length + 1)) & ~1;
        const a = d.subarray(0, at);
        const b = d.subarray(at);
        expect(internetChecksum(b, sumWords(a))).toBe(internetChecksum(d));
        expect(finishChecksum(addSums(sumWords(b), sumWords(a)))).toBe(internetChecksum(d));
      }),
    );
  });

  it('a packet with its checksum in place verifies', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 200 }), (d) => {
        const p = Uint8Array.from(d);
        p[2] = p[3] = 0;
        const ck = internetChecksum(p);
        p[2] = ck >> 8;
        p[3] = ck & 0xff;
        expect(verifyChecksum(p)).toBe(true);
      }),
    );
  });

  it('incremental update equals recomputation (RFC 1624 §3 eqn. 3)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 20, maxLength: 60 }), fc.nat(), fc.integer({ min: 0, max: 0xffff }), (d, w, nw) => {
        const p = Uint8Array.from(d.subarray(0, d.length & ~1));
        p[0] = p[1] = 0;
        const ck = internetChecksum(p);
        const i = 2 + 2 * (w % ((p.length - 2) / 2));
        const old = (p[i]! << 8) | p[i + 1]!;
        p[i] = nw >> 8;
        p[i + 1] = nw & 0xff;
        const want = internetChecksum(p);
        const got = updateChecksum(ck, old, nw);
        // RFC 1624 eqn. 3 never yields 0x0000 where the full sum yields 0xffff (±0): compare as
        // ones' complement values.
        expect(got === want || (got | want) === 0xffff && (got & want) === 0).toBe(true);
      }),
      { numRuns: 2000 },
    );
    // RFC 1624 §4: a TTL decrement in the classic example header.
    const hdr = h('45000073000040004011b861c0a80001c0a800c7');
    const oldWord = (hdr[8]! << 8) | hdr[9]!;
    hdr[8] = hdr[8]! - 1;
    const nc = updateChecksum(0xb861, oldWord, (hdr[8]! << 8) | hdr[9]!);
    hdr[10] = nc >> 8;
    hdr[11] = nc & 0xff;
    expect(verifyChecksum(hdr)).toBe(true);
  });

  it('pseudo-header sums (RFC 768, RFC 8200 §8.1) on packets captured from Linux', () => {
    // Captured on Linux loopback. Plain IPv4 UDP there uses checksum offload (CHECKSUM_PARTIAL): the
    // checksum field holds the folded, uncomplemented pseudo-header sum, for the NIC to finish.
    // UDP 127.0.0.1:43382 → 127.0.0.1:9 "pierce-v4", IPv4 header with options; field fe24.
    const v4 = h('46000029d8124000401161ae7f0000017f00000101010100a97600090011fe247069657263652d7634');
    const udp4 = v4.subarray(24);
    expect(pseudoHeaderSum(v4.subarray(12, 16), v4.subarray(16, 20), 17, udp4.length)).toBe(0xfe24);
    // UDP [::1]:54242 → [::1]:9 "pierce-v6" behind Hop-by-Hop and Destination options. With
    // extension headers Linux computes the full checksum (8f27) in software, so it verifies.
    const v6 = h(
      '600817990021004000000000000000000000000000000001000000000000000000000000000000013c000104000000001100010400000000d3e2000900118f277069657263652d7636',
    );
    const udp6 = v6.subarray(56);
    const ph6 = pseudoHeaderSum(v6.subarray(8, 24), v6.subarray(24, 40), 17, udp6.length);
    expect(verifyChecksum(udp6, ph6)).toBe(true);
    expect(verifyChecksum(udp6, pseudoHeaderSum(v6.subarray(8, 24), v6.subarray(24, 40), 17, udp6.length + 1))).toBe(false);
    expect(verifyChecksum(udp6, pseudoHeaderSum(v6.subarray(8, 24), v6.subarray(24, 40), 6, udp6.length))).toBe(false);
  });

  it('pseudo-header rejects mixed or bad address lengths', () => {
    expect(() => pseudoHeaderSum(parseIP('1.2.3.4'), parseIP('::1'), 17, 8)).toThrow(PacketError);
    expect(() => pseudoHeaderSum(new Uint8Array(5), new Uint8Array(5), 17, 8)).toThrow(PacketError);
  });
});

describe('sumWords fast path', () => {
  it('equals the plain 16-bit big-endian sum for any length and alignment (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.nat({ max: 7 }), fc.nat({ max: 0xffff }), (data, shift, init) => {
        const buf = new Uint8Array(data.length + 8);
        buf.set(data, shift);
        const view = buf.subarray(shift, shift + data.length);
        let naive = init;
        for (let i = 0; i < data.length; i += 2) naive += (data[i]! << 8) | (data[i + 1] ?? 0);
        expect(sumWords(view, init)).toBe(foldSum(naive));
      }),
      { numRuns: 500 },
    );
  });
});
