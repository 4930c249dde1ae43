import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  encodeCookieReply,
  encodeInitiation,
  encodeResponse,
  parseMessage,
  readCounter,
  writeTransportHeader,
  type CookieReply,
  type Initiation,
  type Response,
  type TransportHeader,
} from '../../src/wg/messages.ts';
import { ReplayWindow, WINDOW_SIZE } from '../../src/wg/replay.ts';
import { tai64n, tai64nAfter } from '../../src/wg/tai64n.ts';
import { paddedLength } from '../../src/wg/keypair.ts';
import { WgError } from '../../src/wg/errors.ts';
import { toHex } from '../../src/crypto/bytes.ts';

const bytes = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });

describe('message codecs', () => {
  it('initiation, response and cookie reply round-trip (property)', () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), bytes(32), bytes(48), bytes(28), bytes(16), bytes(16), (sender, e, s, t, m1, m2) => {
        const enc = encodeInitiation({ sender, ephemeral: e, encryptedStatic: s, encryptedTimestamp: t, mac1: m1, mac2: m2 });
        expect(enc.length).toBe(148);
        const p = parseMessage(enc) as Initiation;
        expect([p.type, p.sender, toHex(p.ephemeral), toHex(p.encryptedStatic), toHex(p.encryptedTimestamp), toHex(p.mac1), toHex(p.mac2)]).toEqual([
          1, sender, toHex(e), toHex(s), toHex(t), toHex(m1), toHex(m2),
        ]);
      }),
    );
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), bytes(32), bytes(16), (sender, receiver, e, n) => {
        const enc = encodeResponse({ sender, receiver, ephemeral: e, encryptedNothing: n, mac1: n, mac2: n });
        expect(enc.length).toBe(92);
        const p = parseMessage(enc) as Response;
        expect([p.sender, p.receiver, toHex(p.ephemeral)]).toEqual([sender, receiver, toHex(e)]);
        const c = parseMessage(encodeCookieReply({ receiver, nonce: bytes24(n), encryptedCookie: new Uint8Array(32) })) as CookieReply;
        expect(c.receiver).toBe(receiver);
      }),
    );
  });

  it('transport header counters round-trip below 2^53 and read as Infinity above', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.nat({ max: 0xffffffff }), (counter, receiver) => {
        const b = new Uint8Array(32);
        writeTransportHeader(b, receiver, counter);
        const p = parseMessage(b) as TransportHeader;
        expect([p.receiver, p.counter, p.encrypted.length]).toEqual([receiver, counter, 16]);
      }),
    );
    const b = new Uint8Array(16).fill(0xff);
    expect(readCounter(b, 8)).toBe(Infinity);
  });

  it('rejects every malformed datagram with WG_MALFORMED only (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (d) => {
        try {
          parseMessage(d);
        } catch (e) {
          expect(e).toBeInstanceOf(WgError);
          expect((e as WgError).code).toBe('WG_MALFORMED');
        }
      }),
      { numRuns: 2000 },
    );
    for (const bad of [new Uint8Array(0), Uint8Array.of(1, 0, 0), Uint8Array.of(5, 0, 0, 0), Uint8Array.of(1, 1, 0, 0), new Uint8Array(147).fill(0).map((_, i) => (i === 0 ? 1 : 0)), Uint8Array.of(4, 0, 0, 0, ...new Uint8Array(27))]) {
      expect(() => parseMessage(bad)).toThrow(WgError);
    }
  });
});

function bytes24(seed: Uint8Array): Uint8Array {
  const n = new Uint8Array(24);
  n.set(seed.subarray(0, 16));
  return n;
}

describe('replay window', () => {
  it('accepts each counter once, in any order within the window (wireguard-go replay_test cases)', () => {
    const w = new ReplayWindow();
    const L = 10_000;
    const T = (c: number, ok: boolean) => expect(w.validate(c, 2 ** 40)).toBe(ok);
    T(0, true);
    T(1, true);
    T(1, false);
    T(9, true);
    T(8, true);
    T(7, true);
    T(7, false);
    T(L, true);
    T(L - WINDOW_SIZE + 1, true);
    T(L - WINDOW_SIZE, true); // the window spans last - WINDOW_SIZE .. last
    T(L - WINDOW_SIZE - 1, false);
    T(L + 16, true);
    T(L + 15, true);
    T(L + 15, false);
    T(2 ** 40, false); // at the limit
    T(-1, false);
  });

  it('matches a naive model (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 5000 }), { maxLength: 300 }), (seq) => {
        const w = new ReplayWindow();
        const seen = new Set<number>();
        let max = -1;
        for (const c of seq) {
          const expected = !seen.has(c) && (c > max || max - c <= WINDOW_SIZE);
          const got = w.validate(c, 1e9);
          // The ring may forget slightly more than the minimum window; never accept a replay.
          if (seen.has(c)) expect(got).toBe(false);
          else if (c > max) expect(got).toBe(true);
          else if (max - c < WINDOW_SIZE - 32) expect(got).toBe(expected);
          if (got) {
            seen.add(c);
            max = Math.max(max, c);
          }
        }
      }),
    );
  });

  it('jumps far ahead and clears the ring', () => {
    const w = new ReplayWindow();
    expect(w.validate(5, 1e12)).toBe(true);
    expect(w.validate(1e9, 1e12)).toBe(true);
    expect(w.validate(5, 1e12)).toBe(false);
    expect(w.validate(1e9 - 1, 1e12)).toBe(true);
  });
});

describe('TAI64N', () => {
  it('encodes 2^62 + 10 + seconds and whitened nanoseconds, ordered by time', () => {
    const t = tai64n(0);
    expect(toHex(t)).toBe('400000000000000a00000000');
    const t1 = tai64n(1_700_000_000_123);
    expect(toHex(t1.subarray(0, 8))).toBe((2n ** 62n + 10n + 1_700_000_000n).toString(16).padStart(16, '0'));
    // 123 ms = 123e6 ns, rounded down to a multiple of 2^24.
    expect(new DataView(t1.buffer).getUint32(8)).toBe(Math.floor(123e6 / 2 ** 24) * 2 ** 24);
    expect(tai64nAfter(tai64n(1_700_000_000_200), t1)).toBe(true);
    expect(tai64nAfter(t1, t1)).toBe(false);
    expect(tai64nAfter(tai64n(1_700_000_000_124), t1)).toBe(false); // same 16.8 ms bucket
  });
});

describe('padding', () => {
  it('pads to 16 and never past the MTU (wireguard-go calculatePaddingSize)', () => {
    expect(paddedLength(1, 1420)).toBe(16);
    expect(paddedLength(16, 1420)).toBe(16);
    expect(paddedLength(17, 1420)).toBe(32);
    expect(paddedLength(1419, 1420)).toBe(1420);
    expect(paddedLength(1420, 1420)).toBe(1420);
    expect(paddedLength(1505, 1420)).toBe(1505 + (96 - 85));
  });
});
