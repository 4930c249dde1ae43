/** The binary packet protocol: framing round trips under any chunking, padding rules, and a fuzzed parser. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Aes256GcmOpenSSH, ChaCha20Poly1305OpenSSH, noneCipher, type PacketCipher } from '../../src/ssh/cipher.ts';
import { SshError } from '../../src/ssh/errors.ts';
import { PacketDecoder, encodePacket, parseVersionLine } from '../../src/ssh/packet.ts';

const enc = new TextEncoder();
const rnd = (n: number): Uint8Array => new Uint8Array(n).fill(0xaa);
const KEY = Uint8Array.from({ length: 64 }, (_, i) => i);

function split(buf: Uint8Array, cuts: number[]): Uint8Array[] {
  const pts = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of [...pts, buf.length]) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

describe('SSH binary packets', () => {
  it.each([
    ['none', () => noneCipher],
    ['chacha20-poly1305@openssh.com', () => new ChaCha20Poly1305OpenSSH(KEY)],
    ['aes256-gcm@openssh.com', () => new Aes256GcmOpenSSH(KEY.subarray(0, 32), KEY.subarray(32, 44))],
  ] as Array<[string, () => PacketCipher]>)('%s: payloads survive any chunking; padding is 4..255 and aligned', (_n, make) => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 600 }), { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 10 }), (payloads, cuts) => {
        const c = make();
        const wire = concat([enc.encode('banner line\r\nSSH-2.0-Test_1.0 comment\r\n'), ...payloads.map((p, i) => encodePacket(c, i, p, rnd))]);
        for (let i = 0; i < payloads.length; i++) {
          const len = payloads[i]!.length;
          const p = encodePacket(c, i, payloads[i]!, rnd);
          const total = p.length - c.tagLength;
          expect((c.lengthAligned ? total : total - 4) % c.blockSize).toBe(0);
          expect(total - 5 - len).toBeGreaterThanOrEqual(4);
        }
        const d = new PacketDecoder();
        d.cipher = make();
        const got: Uint8Array[] = [];
        for (const chunk of split(wire, cuts)) {
          d.push(chunk);
          for (let p = d.next(); p !== undefined; p = d.next()) got.push(p);
        }
        expect(d.serverVersion).toBe('SSH-2.0-Test_1.0 comment');
        expect(got).toEqual(payloads);
      }),
      { numRuns: 100 },
    );
  });

  it('parses identification lines and rejects bad ones', () => {
    expect(parseVersionLine('SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3')).toEqual({ proto: '2.0', software: 'OpenSSH_9.2p1' });
    expect(parseVersionLine('SSH-1.99-x').proto).toBe('1.99');
    for (const bad of ['SSH-1.5-old', 'SSH-2.0-', 'SSH-2.0', 'HTTP/1.1 200 OK']) expect(() => parseVersionLine(bad)).toThrow(SshError);
    const d = new PacketDecoder();
    d.push(enc.encode('SSH-1.5-old\r\n'));
    expect(() => d.next()).toThrow(/unsupported SSH protocol version/);
  });

  it('rejects bad lengths, padding and tags with typed errors', () => {
    const code = (wire: Uint8Array, cipher: PacketCipher = noneCipher): string => {
      const d = new PacketDecoder();
      d.cipher = cipher;
      d.push(enc.encode('SSH-2.0-x\r\n'));
      d.push(wire);
      try {
        return d.next() === undefined ? 'incomplete' : 'ok';
      } catch (e) {
        return e instanceof SshError ? e.code : `untyped ${String(e)}`;
      }
    };
    const be = (n: number): number[] => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
    expect(code(Uint8Array.of(...be(12), 4, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))).toBe('ok');
    expect(code(Uint8Array.of(...be(0x7fffffff)))).toBe('SSH_PROTOCOL'); // huge length
    expect(code(Uint8Array.of(...be(13)))).toBe('SSH_PROTOCOL'); // not block-aligned
    expect(code(Uint8Array.of(...be(12), 3, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))).toBe('SSH_PROTOCOL'); // padding < 4
    expect(code(Uint8Array.of(...be(12), 11, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))).toBe('SSH_PROTOCOL'); // no payload
    const good = encodePacket(new ChaCha20Poly1305OpenSSH(KEY), 0, Uint8Array.of(94, 1, 2, 3), rnd);
    expect(code(good, new ChaCha20Poly1305OpenSSH(KEY))).toBe('ok');
    const bad = Uint8Array.from(good);
    bad[bad.length - 1]! ^= 1;
    expect(code(bad, new ChaCha20Poly1305OpenSSH(KEY))).toBe('SSH_MAC');
  });

  it('fuzz: random bytes after a version line give payloads or SshErrors only', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.boolean(), fc.array(fc.nat(), { maxLength: 5 }), (junk, chacha, cuts) => {
        const d = new PacketDecoder();
        if (chacha) d.cipher = new ChaCha20Poly1305OpenSSH(KEY);
        try {
          d.push(enc.encode('SSH-2.0-fuzz\r\n'));
          for (const c of split(junk, cuts)) {
            d.push(c);
            while (d.next() !== undefined);
          }
        } catch (e) {
          expect(e).toBeInstanceOf(SshError);
        }
      }),
      { numRuns: 500 },
    );
    // And junk instead of a version line.
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (junk) => {
        const d = new PacketDecoder();
        try {
          d.push(junk);
          while (d.next() !== undefined);
        } catch (e) {
          expect(e).toBeInstanceOf(SshError);
        }
      }),
      { numRuns: 300 },
    );
  });
});
