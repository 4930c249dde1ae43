/** SSH data types (RFC 4251 §5): round trips with fast-check and the RFC's mpint examples. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/crypto/bytes.ts';
import { SshReader, SshWriter } from '../../src/ssh/codec.ts';
import { SshError } from '../../src/ssh/errors.ts';

const nameArb = fc.stringMatching(/^[\x21-\x2b\x2d-\x7e]{1,20}$/); // printable US-ASCII without ','

describe('SSH codec', () => {
  it('round-trips byte, boolean, uint32, uint64, string, name-list and mpint', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.uint8Array({ maxLength: 300 }),
        fc.array(nameArb, { maxLength: 8 }),
        fc.bigInt({ min: -(1n << 600n), max: 1n << 600n }),
        fc.string(),
        (b, bool, u32, u64, bytes, names, mp, text) => {
          const w = new SshWriter(1).byte(b).bool(bool).uint32(u32).uint64(u64).string(bytes).nameList(names).mpint(mp).string(text);
          const r = new SshReader(w.bytes());
          expect(r.byte()).toBe(b);
          expect(r.bool()).toBe(bool);
          expect(r.uint32()).toBe(u32);
          expect(r.uint64()).toBe(u64);
          expect(r.string()).toEqual(bytes);
          expect(r.nameList()).toEqual(names);
          expect(r.mpint()).toBe(mp);
          expect(r.text()).toBe(text);
          r.end();
        },
      ),
    );
  });

  it('encodes the mpint examples of RFC 4251 §5', () => {
    const mp = (v: bigint): string => toHex(new SshWriter().mpint(v).bytes());
    expect(mp(0n)).toBe('00000000');
    expect(mp(0x9a378f9b2e332a7n)).toBe('0000000809a378f9b2e332a7');
    expect(mp(0x80n)).toBe('000000020080');
    expect(mp(-0x1234n)).toBe('00000002edcc');
    expect(mp(-0xdeadbeefn)).toBe('00000005ff21524111');
    // Unsigned magnitudes (how the X25519 secret K is written, RFC 8731 §3.1).
    const mb = (hex: string): string => toHex(new SshWriter().mpintBytes(Uint8Array.from(Buffer.from(hex, 'hex'))).bytes());
    expect(mb('0000ff')).toBe('0000000200ff');
    expect(mb('0001')).toBe('0000000101');
    expect(mb('0000')).toBe('00000000');
  });

  it('truncated or malformed input throws SSH_PROTOCOL, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (buf) => {
        const r = new SshReader(buf);
        try {
          for (;;) {
            r.nameList();
            r.mpint();
            r.uint64();
          }
        } catch (e) {
          expect(e).toBeInstanceOf(SshError);
          expect((e as SshError).code).toBe('SSH_PROTOCOL');
        }
      }),
    );
    expect(() => new SshReader(new SshWriter().string('a,,b').bytes()).nameList()).toThrow(SshError);
    expect(() => new SshReader(new SshWriter().string('a b').bytes()).nameList()).toThrow(SshError);
    expect(() => new SshReader(Uint8Array.of(0, 0, 1, 0, 1)).string()).toThrow(/truncated/);
    expect(() => new SshReader(Uint8Array.of(1, 2)).end()).toThrow(/trailing/);
  });
});
