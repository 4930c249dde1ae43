import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.ts';
import { PacketError, parseIP } from '../../src/netstack/addr.ts';
import { parsePacket } from '../../src/netstack/ip.ts';
import { inWindow, seqAdd, seqGe, seqGt, seqLe, seqLt, seqMax, seqMin, seqSub } from '../../src/netstack/tcp/seq.ts';
import {
  ACK,
  buildTcp,
  buildTcpPacket,
  CWR,
  ECE,
  FIN,
  formatFlags,
  parseTcp,
  PSH,
  RST,
  SYN,
  tcpOptionsLength,
  URG,
  type TcpOptions,
  type TcpSegment,
} from '../../src/netstack/tcp/segment.ts';
import { thrownCode } from '../support/errors.ts';

const h = (s: string) => fromHex(s.replace(/\s+/g, ''))!;

const code = (f: () => unknown): string => thrownCode(f, PacketError);

/** RFC 1071 checksum written out independently of checksum.ts, for cross-checks. */
function refChecksum(...parts: Uint8Array[]): number {
  const all = parts.flatMap((p) => [...p]);
  if (all.length % 2) all.push(0);
  let s = 0;
  for (let i = 0; i < all.length; i += 2) s += (all[i]! << 8) | all[i + 1]!;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function refPseudo(src: Uint8Array, dst: Uint8Array, proto: number, len: number): Uint8Array {
  if (src.length === 4) return new Uint8Array([...src, ...dst, 0, proto, len >> 8, len & 0xff]);
  return new Uint8Array([...src, ...dst, 0, 0, len >> 8, len & 0xff, 0, 0, 0, proto]);
}

// ---------------------------------------------------------------------------------------------
// Sequence numbers

const U32 = 2 ** 32;

describe('sequence arithmetic (RFC 9293 §3.4)', () => {
  it('wraps around 2^32', () => {
    expect(seqAdd(0xffffffff, 1)).toBe(0);
    expect(seqAdd(0, -1)).toBe(0xffffffff);
    expect(seqAdd(0xfffffff0, 0x20)).toBe(0x10);
    expect(seqAdd(-1, 0)).toBe(0xffffffff); // signed input taken modulo 2^32
    expect(seqSub(0, 0xffffffff)).toBe(1);
    expect(seqSub(0xffffffff, 0)).toBe(-1);
    expect(seqSub(0x10, 0xfffffff0)).toBe(0x20);
    expect(seqLt(0xfffffff0, 0x10)).toBe(true);
    expect(seqGt(0x10, 0xfffffff0)).toBe(true);
    expect(seqLe(5, 5) && seqGe(5, 5) && !seqLt(5, 5) && !seqGt(5, 5)).toBe(true);
    expect(seqMax(0xfffffff0, 0x10)).toBe(0x10);
    expect(seqMin(0xfffffff0, 0x10)).toBe(0xfffffff0);
    expect(seqMax(-1, 3)).toBe(3);
    expect(seqMin(-1, 3)).toBe(0xffffffff);
  });

  it('2^31 apart is the ambiguous pair (RFC 1982 §3.2)', () => {
    expect(seqSub(0, 0x80000000)).toBe(-(2 ** 31));
    expect(seqSub(0x80000000, 0)).toBe(-(2 ** 31));
    expect(seqSub(0x7fffffff, 0)).toBe(2 ** 31 - 1);
  });

  it('inWindow (RFC 9293 §3.10.7.4)', () => {
    expect(inWindow(0xfffffffe, 0xfffffffe, 4)).toBe(true);
    expect(inWindow(1, 0xfffffffe, 4)).toBe(true);
    expect(inWindow(2, 0xfffffffe, 4)).toBe(false);
    expect(inWindow(0xfffffffd, 0xfffffffe, 4)).toBe(false);
    expect(inWindow(7, 7, 0)).toBe(false); // empty window
    expect(inWindow(7, 8, U32)).toBe(true); // the whole space
  });

  const u32 = fc.integer({ min: 0, max: U32 - 1 });
  const dist = fc.integer({ min: 1, max: 2 ** 31 - 1 });

  it('agrees with a BigInt model (property)', () => {
    fc.assert(
      fc.property(u32, u32, fc.integer({ min: -(U32 - 1), max: U32 - 1 }), (a, b, n) => {
        const m = 2n ** 32n;
        const add = Number((((BigInt(a) + BigInt(n)) % m) + m) % m);
        expect(seqAdd(a, n)).toBe(add);
        let d = (((BigInt(a) - BigInt(b)) % m) + m) % m;
        if (d >= 2n ** 31n) d -= m;
        expect(seqSub(a, b)).toBe(Number(d));
        expect(seqLt(a, b)).toBe(d < 0n);
        expect(seqGe(a, b)).toBe(d >= 0n);
      }),
      { numRuns: 2000 },
    );
  });

  it('orders a before a + d for 0 < d < 2^31, across the wrap (property)', () => {
    fc.assert(
      fc.property(fc.oneof(u32, fc.integer({ min: U32 - 100, max: U32 - 1 })), dist, (a, d) => {
        const b = seqAdd(a, d);
        expect(b >>> 0).toBe(b);
        expect(seqLt(a, b) && seqLe(a, b) && seqGt(b, a) && seqGe(b, a)).toBe(true);
        expect(seqLt(b, a) || seqLe(b, a) || seqGt(a, b) || seqGe(a, b)).toBe(false);
        expect(seqSub(b, a)).toBe(d);
        expect(seqSub(a, b)).toBe(-d);
        expect(seqMax(a, b)).toBe(b);
        expect(seqMin(b, a)).toBe(a);
        expect(seqAdd(b, -d)).toBe(a);
        // Exactly one of <, =, > holds.
        expect([seqLt(a, b), a === b, seqGt(a, b)].filter(Boolean).length).toBe(1);
      }),
      { numRuns: 2000 },
    );
  });

  it('inWindow(start + k, start, len) ⇔ k < len (property)', () => {
    fc.assert(
      fc.property(fc.oneof(u32, fc.integer({ min: U32 - 50, max: U32 - 1 })), fc.integer({ min: 0, max: 2 ** 31 }), fc.integer({ min: 0, max: 2 ** 31 }), (start, k, len) => {
        const x = seqAdd(start, k);
        expect(inWindow(x, start, len)).toBe(k < len);
        if (len > 0 && len < 2 ** 31) {
          expect(inWindow(x, start, len)).toBe(seqLe(start, x) && seqLt(x, seqAdd(start, len)));
        }
      }),
      { numRuns: 2000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Segments

const A4 = parseIP('10.77.0.1'); // the Linux kernel in a network namespace, behind a TUN device
const B4 = parseIP('10.77.0.2'); // the capture script
const A6 = parseIP('fd00:77::1');
const B6 = parseIP('fd00:77::2');

/**
 * Captured from Linux 6.x through a TUN device (no checksum offload, so every checksum is the
 * kernel's own): `k*` are packets the kernel sent, `py*` packets a Python script crafted and the
 * kernel accepted (it answered them). Flow: kernel connect() → SYN; SYN-ACK (py); kernel ACK;
 * kernel sends "hello pierce"; an out-of-order segment "world" 10 bytes ahead (py) → kernel dup
 * ACK with a SACK block; then a SYN to a kernel listener with window scale 16 (py) → SYN-ACK.
 */
const LINUX = {
  v4: {
    kSyn: h('4500003c1e974000400607890a4d00010a4d0002e6e81b5878474e8400000000a002faf097c50000020405b40402080ad8d2feca000000000103030a'),
    pySynAck: h('4500003c00004000400626200a4d00020a4d00011b58e6e8000003e878474e85a012ffff7b740000020405780402080a00001388d8d2feca01030307'),
    kAck: h('450000341e984000400607900a4d00010a4d0002e6e81b5878474e85000003e98010003fa9c500000101080ad8d2feca00001388'),
    kData: h('450000401e994000400607830a4d00010a4d0002e6e81b5878474e85000003e98018003f2c7e00000101080ad8d2feca0000138868656c6c6f20706965726365'),
    pyOoo: h('4500003900004000400626230a4d00020a4d00011b58e6e8000003f378474e91801802005a0400000101080a00001389d8d2feca776f726c64'),
    kSack: h('450000401e9a4000400607820a4d00010a4d0002e6e81b5878474e91000003e9b010003f6bb600000101080ad8d2fecb000013880101050a000003f3000003f8'),
    pySyn: h('4500003400004000400626280a4d00020a4d00019c411f90fffffff000000000800272102d9d0000020404b00103031001010402'),
    kSynAck: h('4500003400004000400626280a4d00010a4d00021f909c41b4f33d9ffffffff18012faf0b11a0000020405b4010104020103030a'),
  },
  v6: {
    kSyn: h('600cea4600280640fd000077000000000000000000000001fd00007700000000000000000000000283aa1b5828daa15400000000a002fd20beea0000020405a00402080a0c411ba1000000000103030a'),
    pySynAck: h('6000000000280640fd000077000000000000000000000002fd0000770000000000000000000000011b5883aa000003e828daa155a012ffffa4b50000020405780402080a000013880c411ba101030307'),
    kAck: h('600cea4600200640fd000077000000000000000000000001fd00007700000000000000000000000283aa1b5828daa155000003e980100040d30500000101080a0c411ba100001388'),
    kData: h('600cea46002c0640fd000077000000000000000000000001fd00007700000000000000000000000283aa1b5828daa155000003e98018004055bd00000101080a0c411ba20000138868656c6c6f20706965726365'),
    pyOoo: h('6000000000250640fd000077000000000000000000000002fd0000770000000000000000000000011b5883aa000003f328daa16180180200834400000101080a000013890c411ba2776f726c64'),
    kSack: h('600cea46002c0640fd000077000000000000000000000001fd00007700000000000000000000000283aa1b5828daa161000003e9b010004094f600000101080a0c411ba2000013880101050a000003f3000003f8'),
    pySyn: h('6000000000200640fd000077000000000000000000000002fd0000770000000000000000000000019c411f90fffffff0000000008002721047470000020404b00103031001010402'),
    kSynAck: h('600f8d6300200640fd000077000000000000000000000001fd0000770000000000000000000000021f909c41c8ac4195fffffff18012fd20b0f90000020405a0010104020103030a'),
  },
};

/**
 * Linux's answer to a SYN built by `buildTcpPacket` (10.77.0.2:41000 → 10.77.0.1:8080, seq
 * 0xfffffffe, MSS 1400, SACK-Permitted, TSval 1, window scale 7) injected into the same TUN
 * device: the kernel took the checksum, acked seq + 1 across the wrap and echoed TSval 1,
 * SACK-Permitted and a window scale, so it read every option. The ACK with "hello kernel" that
 * followed (also built here) was delivered to accept()/recv(); nstat showed no checksum errors.
 */
const LINUX_ANSWERS_PIERCE = {
  v4: h('4500003c00004000400626200a4d00010a4d00021f90a0286e771e07ffffffffa012fe88c7fc0000020405b40402080a7ae5a5ad000000010103030a'),
  v6: h('60011b8c00280640fd000077000000000000000000000001fd0000770000000000000000000000021f90a0289d6cf54fffffffffa012fb0420250000020405a00402080ae07efeef000000010103030a'),
};

function parseFull(pkt: Uint8Array): TcpSegment {
  const ip = parsePacket(pkt);
  return parseTcp(ip.payload, ip.src, ip.dst);
}

/** Rebuilds a parsed packet with `buildTcpPacket`. */
function rebuild(pkt: Uint8Array): Uint8Array {
  const ip = parsePacket(pkt);
  return buildTcpPacket(parseTcp(ip.payload, ip.src, ip.dst), ip.src, ip.dst, ip.ttl);
}

/** The IP header bytes a builder fixes: all but the IPv4 ID and header checksum, or the IPv6 flow label. */
function fixedIPHeader(pkt: Uint8Array): string {
  const x = Uint8Array.from(pkt.subarray(0, pkt[0]! >> 4 === 4 ? 20 : 40));
  if (x.length === 20) x[4] = x[5] = x[10] = x[11] = 0;
  else x.fill(0, 1, 4);
  return toHex(x);
}

describe('TCP segments against Linux', () => {
  it('parses the kernel SYN: MSS, SACK-Permitted, timestamps, window scale', () => {
    const s = parseFull(LINUX.v4.kSyn);
    expect(s).toMatchObject({ srcPort: 0xe6e8, dstPort: 7000, seq: 0x78474e84, ack: 0, flags: SYN, window: 64240, urgent: 0 });
    expect(s.options).toEqual({ mss: 1460, sackPermitted: true, timestamp: { value: 0xd8d2feca, echo: 0 }, windowScale: 10 });
    expect(s.payload.length).toBe(0);
    const s6 = parseFull(LINUX.v6.kSyn);
    expect(s6.options).toEqual({ mss: 1440, sackPermitted: true, timestamp: { value: 0x0c411ba1, echo: 0 }, windowScale: 10 });
    expect(formatFlags(s.flags)).toBe('S');
  });

  it('parses data, timestamps and SACK blocks', () => {
    for (const v of [LINUX.v4, LINUX.v6]) {
      const d = parseFull(v.kData);
      expect(d.flags).toBe(PSH | ACK);
      expect(formatFlags(d.flags)).toBe('P.');
      expect(new TextDecoder().decode(d.payload)).toBe('hello pierce');
      expect(d.ack).toBe(1001);
      expect(d.options.timestamp!.echo).toBe(5000);
      const k = parseFull(v.kSack);
      expect(k.flags).toBe(ACK);
      expect(k.options.sack).toEqual([{ left: 1011, right: 1016 }]); // "world" 10 bytes ahead
      expect(k.ack).toBe(1001); // a duplicate ACK: 1001..1010 still missing
      expect(k.seq).toBe(seqAdd(d.seq, 12));
      const o = parseFull(v.pyOoo);
      expect(new TextDecoder().decode(o.payload)).toBe('world');
    }
  });

  it('clamps a window scale above 14 (RFC 7323 §2.3)', () => {
    for (const v of [LINUX.v4, LINUX.v6]) {
      const s = parseFull(v.pySyn);
      expect(s.options).toEqual({ mss: 1200, windowScale: 14, sackPermitted: true });
      expect(s.seq).toBe(0xfffffff0);
      // The kernel's SYN-ACK acknowledges seq + 1 and offers SACK and scaling, no timestamps.
      const a = parseFull(v.kSynAck);
      expect(a.ack).toBe(0xfffffff1);
      expect(a.flags).toBe(SYN | ACK);
      expect(a.options.timestamp).toBeUndefined();
      expect(a.options.sackPermitted).toBe(true);
    }
  });

  it('builds the kernel packets byte for byte (Linux option layout)', () => {
    for (const v of [LINUX.v4, LINUX.v6]) {
      for (const pkt of [v.kSyn, v.kAck, v.kData, v.kSack, v.kSynAck, v.pySynAck, v.pyOoo]) {
        const b = rebuild(pkt);
        const ipLen = pkt[0]! >> 4 === 4 ? 20 : 40;
        expect(toHex(b.subarray(ipLen))).toBe(toHex(pkt.subarray(ipLen)));
        expect(fixedIPHeader(b)).toBe(fixedIPHeader(pkt));
      }
      // Python wrote IP ID 0 like the builder: the whole packet matches.
      expect(toHex(rebuild(v.pySynAck))).toBe(toHex(v.pySynAck));
      expect(toHex(rebuild(v.pyOoo))).toBe(toHex(v.pyOoo));
    }
  });

  it('the kernel accepted a SYN built here and answered it', () => {
    for (const [src, dst, answer] of [[B4, A4, LINUX_ANSWERS_PIERCE.v4], [B6, A6, LINUX_ANSWERS_PIERCE.v6]] as const) {
      const syn = buildTcpPacket(
        { srcPort: 41000, dstPort: 8080, seq: 0xfffffffe, ack: 0, flags: SYN, window: 65535, urgent: 0, options: { mss: 1400, sackPermitted: true, timestamp: { value: 1, echo: 0 }, windowScale: 7 } },
        src,
        dst,
      );
      const ours = parseFull(syn);
      const a = parseFull(answer);
      expect(a.flags).toBe(SYN | ACK);
      expect([a.srcPort, a.dstPort]).toEqual([ours.dstPort, ours.srcPort]);
      expect(a.ack).toBe(seqAdd(ours.seq, 1));
      expect(a.options.timestamp!.echo).toBe(1);
      expect(a.options.sackPermitted).toBe(true);
      expect(a.options.windowScale).toBeDefined();
    }
  });
});

describe('parseTcp checks', () => {
  /** A segment with these option bytes (EOL-padded to a multiple of 4) and a correct checksum. */
  const seg = (o: number[], payload: number[] = [], src = B4, dst = A4) => {
    const opts = [...o, ...new Array((4 - (o.length % 4)) % 4).fill(0)];
    const hdr = new Uint8Array(20 + opts.length + payload.length);
    hdr.set([0x9c, 0x41, 0x1f, 0x90, 0, 0, 0, 1, 0, 0, 0, 0, ((20 + opts.length) / 4) << 4, ACK, 0xff, 0xff]);
    hdr.set(opts, 20);
    hdr.set(payload, 20 + opts.length);
    const ck = refChecksum(refPseudo(src, dst, 6, hdr.length), hdr);
    hdr[16] = ck >> 8;
    hdr[17] = ck & 0xff;
    return hdr;
  };

  it('length, data offset and checksum', () => {
    const ok = seg([]);
    expect(parseTcp(ok, B4, A4).flags).toBe(ACK);
    expect(code(() => parseTcp(ok.subarray(0, 19), B4, A4))).toBe('TCP_TRUNCATED');
    expect(code(() => parseTcp(new Uint8Array(0), B4, A4))).toBe('TCP_TRUNCATED');
    const low = Uint8Array.from(ok);
    low[12] = 4 << 4;
    expect(code(() => parseTcp(low, B4, A4))).toBe('TCP_OFFSET');
    const high = Uint8Array.from(ok);
    high[12] = 6 << 4; // 24-byte header in a 20-byte segment
    expect(code(() => parseTcp(high, B4, A4))).toBe('TCP_OFFSET');
    const bad = Uint8Array.from(ok);
    bad[4]! ^= 0x80;
    expect(code(() => parseTcp(bad, B4, A4))).toBe('TCP_CHECKSUM');
    // The pseudo-header counts: other addresses, or a checksum made for IPv4 checked as IPv6.
    expect(code(() => parseTcp(ok, B4, B4))).toBe('TCP_CHECKSUM');
    expect(code(() => parseTcp(ok, B6, A6))).toBe('TCP_CHECKSUM');
    expect(code(() => parseTcp(ok, B6, A4))).toBe('ADDR_LENGTH');
    // IPv6 pseudo-header
    const v6 = seg([], [1, 2, 3], B6, A6);
    expect(toHex(parseTcp(v6, B6, A6).payload)).toBe('010203');
  });

  it('options: EOL, NOP, unknown kinds, exact lengths (RFC 9293 §3.2)', () => {
    // NOP padding and EOL; bytes after EOL are ignored.
    expect(parseTcp(seg([1, 1, 1, 2, 4, 0x05, 0xb4, 0, 0xee, 0xee, 0xee]), B4, A4).options).toEqual({ mss: 1460 });
    expect(parseTcp(seg([0, 2, 4, 0x05, 0xb4, 0, 0, 0]), B4, A4).options).toEqual({});
    // Unknown kinds (e.g. 30 MPTCP, 34 TFO, 254 experimental) are skipped by their length.
    expect(parseTcp(seg([30, 4, 0, 0, 254, 2, 3, 3, 7, 1]), B4, A4).options).toEqual({ windowScale: 7 });
    // SACK with 1..4 blocks; a Linux-style EOL pad at the end.
    const sack4 = [5, 34, ...Array.from({ length: 32 }, (_, i) => i), 1, 1, 0, 0];
    expect(parseTcp(seg(sack4), B4, A4).options.sack).toHaveLength(4);
    expect(parseTcp(seg(sack4), B4, A4).options.sack![3]).toEqual({ left: 0x18191a1b, right: 0x1c1d1e1f });
    // Malformed
    for (const o of [
      [1, 1, 1, 2], // kind without a length byte, at the end of the header
      [2], // EOL padding read as its length: 0
      [30, 0, 0, 0], // length 0
      [30, 1, 0, 0], // length 1
      [30, 8, 0, 0], // past the header
      [1, 30, 4, 0], // past the header by one byte
      [1, 1, 1, 1, 1, 1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0], // timestamps one byte past the end
      [2, 3, 0, 1], // MSS of length 3
      [2, 5, 0, 0, 0, 1, 1, 1], // MSS of length 5
      [3, 4, 7, 0], // window scale of length 4
      [4, 3, 0, 1], // SACK-Permitted of length 3
      [5, 2, 1, 1], // SACK with no block
      [5, 9, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1], // SACK not 2 + 8n
      [8, 8, 0, 0, 0, 0, 0, 0], // timestamps of length 8
    ]) {
      expect(code(() => parseTcp(seg(o), B4, A4)), JSON.stringify(o)).toBe('TCP_OPTION');
    }
  });

  it('the payload is a view of the input, not a copy', () => {
    const s = seg([], [9, 8, 7]);
    const p = parseTcp(s, B4, A4).payload;
    expect(p.buffer).toBe(s.buffer);
    expect(p.byteOffset).toBe(s.byteOffset + 20);
  });
});

describe('buildTcp', () => {
  const base = { srcPort: 1, dstPort: 2, seq: 3, ack: 4, flags: ACK, window: 5, urgent: 0 };

  it('lays options out like Linux, 4-byte aligned', () => {
    const opts = (o: TcpOptions) => toHex(buildTcp({ ...base, options: o }, B4, A4).subarray(20));
    expect(opts({})).toBe('');
    expect(opts({ mss: 1460 })).toBe('020405b4');
    expect(opts({ windowScale: 0 })).toBe('01030300');
    expect(opts({ sackPermitted: true })).toBe('01010402');
    expect(opts({ timestamp: { value: 1, echo: 2 } })).toBe('0101080a0000000100000002');
    expect(opts({ timestamp: { value: 1, echo: 2 }, sackPermitted: true })).toBe('0402080a0000000100000002');
    expect(opts({ sack: [{ left: 1, right: 2 }] })).toBe('0101050a0000000100000002');
    expect(opts({ sack: [] })).toBe('');
    expect(opts({ sackPermitted: false })).toBe('');
    expect(tcpOptionsLength({ mss: 1, sackPermitted: true, timestamp: { value: 0, echo: 0 }, windowScale: 14 })).toBe(20);
    expect(buildTcp({ ...base, options: { mss: 1 } }, B4, A4)[12]).toBe(6 << 4);
  });

  it('checksum matches an independent RFC 1071 implementation', () => {
    for (const [src, dst] of [[B4, A4], [B6, A6]] as const) {
      for (const payload of [new Uint8Array(0), h('01'), h('0102'), h('ff'.repeat(1001))]) {
        const s = buildTcp({ ...base, options: { timestamp: { value: 0xffffffff, echo: 7 } }, payload }, src, dst);
        const zeroed = Uint8Array.from(s);
        zeroed[16] = zeroed[17] = 0;
        expect((s[16]! << 8) | s[17]!).toBe(refChecksum(refPseudo(src, dst, 6, s.length), zeroed));
      }
    }
  });

  it('buildTcpPacket = IP header + buildTcp, in one buffer', () => {
    const seg = { ...base, flags: FIN | ACK, options: { sack: [{ left: 10, right: 20 }] }, payload: h('abcdef') };
    for (const [src, dst] of [[B4, A4], [B6, A6]] as const) {
      const pkt = buildTcpPacket(seg, src, dst, 9);
      const ip = parsePacket(pkt);
      expect(ip.ttl).toBe(9);
      expect(ip.protocol).toBe(6);
      expect(toHex(ip.payload)).toBe(toHex(buildTcp(seg, src, dst)));
    }
  });

  it('rejects bad fields and options that do not fit', () => {
    const bad = (f: Partial<TcpSegment>) => code(() => buildTcp({ ...base, ...f }, B4, A4));
    expect(bad({ srcPort: 65536 })).toBe('PACKET_FIELD');
    expect(bad({ dstPort: -1 })).toBe('PACKET_FIELD');
    expect(bad({ seq: 2 ** 32 })).toBe('PACKET_FIELD');
    expect(bad({ ack: -1 })).toBe('PACKET_FIELD');
    expect(bad({ seq: 1.5 })).toBe('PACKET_FIELD');
    expect(bad({ flags: 256 })).toBe('PACKET_FIELD');
    expect(bad({ window: 70000 })).toBe('PACKET_FIELD');
    expect(bad({ urgent: NaN })).toBe('PACKET_FIELD');
    expect(bad({ options: { mss: 65536 } })).toBe('PACKET_FIELD');
    expect(bad({ options: { windowScale: 15 } })).toBe('PACKET_FIELD');
    expect(bad({ options: { timestamp: { value: -1, echo: 0 } } })).toBe('PACKET_FIELD');
    expect(bad({ options: { sack: [{ left: 0, right: 2 ** 32 }] } })).toBe('PACKET_FIELD');
    const blocks = (n: number) => Array.from({ length: n }, (_, i) => ({ left: i, right: i + 1 }));
    expect(bad({ options: { sack: blocks(5) } })).toBe('TCP_OPTION');
    expect(bad({ options: { sack: blocks(4), timestamp: { value: 0, echo: 0 } } })).toBe('TCP_OPTION');
    expect(bad({ options: { sack: blocks(3), timestamp: { value: 0, echo: 0 } } })).toBe('no error');
    expect(bad({ options: { sack: blocks(4) } })).toBe('no error');
    expect(code(() => buildTcp(base, B4, A6))).toBe('ADDR_LENGTH');
    expect(code(() => buildTcpPacket(base, new Uint8Array(5), new Uint8Array(5)))).toBe('ADDR_LENGTH');
    expect(code(() => buildTcpPacket({ ...base, payload: new Uint8Array(65496) }, B4, A4))).toBe('PACKET_TOO_BIG');
    expect(buildTcpPacket({ ...base, payload: new Uint8Array(65495) }, B4, A4).length).toBe(65535);
    expect(buildTcpPacket({ ...base, payload: new Uint8Array(65495) }, B6, A6).length).toBe(65555);
  });

  it('formatFlags prints like tcpdump', () => {
    expect(formatFlags(SYN | ACK)).toBe('S.');
    expect(formatFlags(FIN | PSH | ACK)).toBe('FP.');
    expect(formatFlags(RST)).toBe('R');
    expect(formatFlags(SYN | ECE | CWR)).toBe('SEW');
    expect(formatFlags(URG | ACK)).toBe('.U');
    expect(formatFlags(0)).toBe('none');
  });
});

// ---------------------------------------------------------------------------------------------
// Properties and fuzz

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
const options: fc.Arbitrary<TcpOptions> = fc
  .record(
    {
      mss: u16,
      windowScale: fc.integer({ min: 0, max: 14 }),
      sackPermitted: fc.constant(true),
      sack: fc.array(fc.record({ left: u32, right: u32 }), { minLength: 1, maxLength: 4 }),
      timestamp: fc.record({ value: u32, echo: u32 }),
    },
    { requiredKeys: [] },
  )
  .filter((o) => {
    try {
      tcpOptionsLength(o);
      return true;
    } catch {
      return false;
    }
  });
const segment = fc.record({
  srcPort: u16,
  dstPort: u16,
  seq: u32,
  ack: u32,
  flags: fc.integer({ min: 0, max: 255 }),
  window: u16,
  urgent: u16,
  options,
  payload: fc.uint8Array({ maxLength: 300 }),
});
const addrs = fc.oneof(
  fc.tuple(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 4, maxLength: 4 })),
  fc.tuple(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 16, maxLength: 16 })),
);

describe('properties', () => {
  it('buildTcpPacket → parsePacket → parseTcp round-trips', () => {
    fc.assert(
      fc.property(segment, addrs, (s, [src, dst]) => {
        const pkt = buildTcpPacket(s, src, dst);
        const ip = parsePacket(pkt);
        const p = parseTcp(ip.payload, ip.src, ip.dst);
        expect({ ...p, payload: toHex(p.payload) }).toEqual({ ...s, payload: toHex(s.payload) });
        expect(ip.payload.length).toBe(20 + tcpOptionsLength(s.options) + s.payload.length);
      }),
      { numRuns: 1000 },
    );
  });

  it('any single bit flip is caught by the checksum or a header check', () => {
    fc.assert(
      fc.property(segment, addrs, fc.nat(), (s, [src, dst], bit) => {
        const b = buildTcp(s, src, dst);
        const at = bit % (b.length * 8);
        b[at >> 3]! ^= 1 << (at & 7);
        expect(code(() => parseTcp(b, src, dst))).toMatch(/^TCP_(CHECKSUM|OFFSET|OPTION)$/);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('fuzz: parseTcp throws only PacketError', () => {
  const seeds = [...Object.values(LINUX.v4), ...Object.values(LINUX.v6)].map((p) => {
    const ip = parsePacket(p);
    return { seg: ip.payload, src: ip.src, dst: ip.dst };
  });

  const onlyPacketError = (f: () => unknown): boolean => {
    try {
      f();
      return true;
    } catch (e) {
      if (e instanceof PacketError) return false;
      throw e;
    }
  };

  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), addrs, (b, [src, dst]) => {
        onlyPacketError(() => parseTcp(b, src, dst));
      }),
      { numRuns: 3000 },
    );
  });

  it('truncated and mutated kernel segments, checksum fixed up so the options parser runs', () => {
    let parsed = 0;
    let optionErrors = 0;
    fc.assert(
      fc.property(
        fc.constantFrom(...seeds),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        fc.nat(),
        fc.boolean(),
        ({ seg, src, dst }, muts, cut, fix) => {
          const b = Uint8Array.from(seg.subarray(0, Math.max(0, seg.length - (cut % 24))));
          if (b.length === 0) return;
          for (const [at, v] of muts) b[at % b.length] = v;
          if (fix && b.length >= 20) {
            b[16] = b[17] = 0;
            const ck = refChecksum(refPseudo(src, dst, 6, b.length), b);
            b[16] = ck >> 8;
            b[17] = ck & 0xff;
          }
          try {
            const p = parseTcp(b, src, dst);
            parsed++;
            // Whatever parsed must build again (window scale clamped, options re-laid-out).
            try {
              buildTcp(p, src, dst);
            } catch (e) {
              expect(e).toBeInstanceOf(PacketError);
              expect((e as PacketError).code).toBe('TCP_OPTION'); // e.g. 4 SACK blocks + TS
            }
          } catch (e) {
            expect(e).toBeInstanceOf(PacketError);
            if ((e as PacketError).code === 'TCP_OPTION') optionErrors++;
          }
        },
      ),
      { numRuns: 5000 },
    );
    expect(parsed).toBeGreaterThan(0);
    expect(optionErrors).toBeGreaterThan(0);
  });
});
