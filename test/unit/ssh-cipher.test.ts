/**
 * chacha20-poly1305@openssh.com (OpenSSH PROTOCOL.chacha20poly1305): the worked example of
 * draft-ietf-sshm-chacha20-poly1305-02 Appendix A, a second independent computation with the
 * original 64-bit-nonce ChaCha20, and tampering → SSH_MAC.
 */
import { chacha20orig } from '@noble/ciphers/chacha.js';
import { Poly1305 } from '@noble/ciphers/_poly1305.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../src/crypto/bytes.ts';
import { createCipheriv } from 'node:crypto';
import { Aes256GcmOpenSSH, ChaCha20Poly1305OpenSSH } from '../../src/ssh/cipher.ts';
import { SshError } from '../../src/ssh/errors.ts';

const hex = (s: string): Uint8Array => fromHex(s.replace(/\s+/g, ''))!;

// draft-ietf-sshm-chacha20-poly1305-02, Appendix A (Figures 4, 5, 8, 11, 17).
const A = {
  key: hex(`8bbff6855fc102338c373e73aac0c914f076a905b2444a32eecaffeae22becc5
            e9b7a7a5825a8249346ec1c28301cf394543fc7569887d76e168f37562ac0740`),
  seq: 7,
  length: hex('00000048'),
  plain: hex(`065e00000000000000384c6f72656d20697073756d20646f6c6f722073697420
              616d65742c20636f6e73656374657475722061646970697369636 96e6720656c
              69744e43e804dc6c`),
  encLength: hex('2c3ecce4'),
  cipher: hex(`a5bc05895bf07a7ba956b6c68829ac7c83b780b7000ecde745afc705bbc378ce
               03a280236b87b53bed5839662302b164b6286a48cd1e097138e3cb909b8b2b82
               9dd18d2a35ff82d9`),
  tag: hex('95349e855bf02c298ef775f2d1a7e8b8'),
};

/** The construction written out with the original ChaCha20 (8-byte nonce, 64-bit counter). */
function referenceSeal(key: Uint8Array, seq: number, plain: Uint8Array): Uint8Array {
  const k2 = key.subarray(0, 32);
  const k1 = key.subarray(32, 64);
  const nonce = new Uint8Array(8);
  new DataView(nonce.buffer).setBigUint64(0, BigInt(seq));
  const encLen = chacha20orig(k1, nonce, plain.subarray(0, 4));
  // Block 0 of K_2 is the Poly1305 key; the payload starts at block 1 (skip 64 bytes of stream).
  const stream = chacha20orig(k2, nonce, new Uint8Array(64 + plain.length - 4));
  const polyKey = stream.subarray(0, 32);
  const body = plain.subarray(4).map((b, i) => b ^ stream[64 + i]!);
  const mac = new Poly1305(polyKey).update(encLen).update(body).digest();
  const out = new Uint8Array(plain.length + 16);
  out.set(encLen);
  out.set(body, 4);
  out.set(mac, plain.length);
  return out;
}

describe('chacha20-poly1305@openssh.com', () => {
  it('matches draft-ietf-sshm-chacha20-poly1305-02 Appendix A', () => {
    const c = new ChaCha20Poly1305OpenSSH(A.key);
    const plain = new Uint8Array(4 + A.plain.length);
    plain.set(A.length);
    plain.set(A.plain, 4);
    const wire = c.seal(A.seq, plain);
    expect(toHex(wire.subarray(0, 4))).toBe(toHex(A.encLength));
    expect(toHex(wire.subarray(4, 4 + A.plain.length))).toBe(toHex(A.cipher));
    expect(toHex(wire.subarray(4 + A.plain.length))).toBe(toHex(A.tag));
    expect(c.decryptLength(A.seq, wire.subarray(0, 4))).toBe(0x48);
    expect(toHex(c.open(A.seq, wire))).toBe(toHex(A.plain));
    expect(toHex(referenceSeal(A.key, A.seq, plain))).toBe(toHex(wire));
  });

  it('agrees with the reference construction for random keys, sequence numbers and packets', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 64 }), fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ minLength: 4, maxLength: 300 }), (key, seq, plain) => {
        const c = new ChaCha20Poly1305OpenSSH(key);
        const wire = c.seal(seq, plain);
        expect(toHex(wire)).toBe(toHex(referenceSeal(key, seq, plain)));
        expect(toHex(c.open(seq, wire))).toBe(toHex(plain.subarray(4)));
      }),
      { numRuns: 200 },
    );
  });

  it('any flipped bit, a wrong sequence number or a truncated tag gives SSH_MAC', () => {
    const c = new ChaCha20Poly1305OpenSSH(A.key);
    const plain = new Uint8Array(4 + A.plain.length);
    plain.set(A.length);
    plain.set(A.plain, 4);
    const wire = c.seal(A.seq, plain);
    const code = (f: () => unknown): string => {
      try {
        f();
        return 'none';
      } catch (e) {
        return e instanceof SshError ? e.code : 'untyped';
      }
    };
    for (let bit = 0; bit < wire.length * 8; bit += 7) {
      const t = Uint8Array.from(wire);
      t[bit >> 3]! ^= 1 << (bit & 7);
      expect(code(() => c.open(A.seq, t)), `bit ${bit}`).toBe('SSH_MAC');
    }
    expect(code(() => c.open(A.seq + 1, wire))).toBe('SSH_MAC');
    expect(code(() => c.open(A.seq, wire.subarray(0, wire.length - 1)))).toBe('SSH_MAC');
    expect(code(() => new ChaCha20Poly1305OpenSSH(new Uint8Array(32)))).toBe('SSH_KEX');
  });
});

describe('aes256-gcm@openssh.com', () => {
  it('equals node:crypto AES-256-GCM with the length as AAD and a per-packet invocation counter', () => {
    const key = Uint8Array.from({ length: 32 }, (_, i) => i * 7);
    const iv = hex('00000001fffffffffffffffe'); // the invocation counter wraps (RFC 5647 §7.1)
    const c = new Aes256GcmOpenSSH(key, iv);
    const d = new Aes256GcmOpenSSH(key, iv);
    for (let i = 0; i < 3; i++) {
      const plain = Uint8Array.from({ length: 4 + 32 }, (_, j) => (j < 4 ? [0, 0, 0, 32][j]! : j + i));
      const nonce = Uint8Array.from(iv);
      new DataView(nonce.buffer).setBigUint64(4, (0xfffffffffffffffen + BigInt(i)) & 0xffffffffffffffffn);
      const ref = createCipheriv('aes-256-gcm', key, nonce);
      ref.setAAD(plain.subarray(0, 4));
      const expected = Buffer.concat([plain.subarray(0, 4), ref.update(plain.subarray(4)), ref.final(), ref.getAuthTag()]);
      const wire = c.seal(i, plain);
      expect(toHex(wire)).toBe(expected.toString('hex'));
      expect(d.decryptLength(i, wire)).toBe(32);
      expect(toHex(d.open(i, wire))).toBe(toHex(plain.subarray(4)));
    }
    const e = new Aes256GcmOpenSSH(key, iv);
    const wire = new Aes256GcmOpenSSH(key, iv).seal(0, new Uint8Array(36));
    wire[2]! ^= 1; // the clear length is authenticated
    expect(() => e.open(0, wire)).toThrow(expect.objectContaining({ code: 'SSH_MAC' }));
  });
});
