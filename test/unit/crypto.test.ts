import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { nobleBackend } from '../../src/crypto/noble.ts';
import { nodeBackend } from '../../gateway/src/crypto/node-backend.ts';
import { fromHex, toHex, fromBase64, toBase64, equalBytes } from '../../src/crypto/bytes.ts';
import { hash, hmac, kdf, mac } from '../../src/crypto/blake2s.ts';
import { xaeadOpen, xaeadSeal } from '../../src/crypto/xaead.ts';
import { boxBeforenm, boxOpen, boxSeal, boxOpenAfternm } from '../../src/crypto/box.ts';
import { isPierceError } from '../../src/errors.ts';

const h = (s: string) => fromHex(s.replace(/\s+/g, ''))!;
const te = new TextEncoder();

// RFC 7748 §6.1
const ALICE_PRIV = h('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
const ALICE_PUB = h('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
const BOB_PRIV = h('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
const BOB_PUB = h('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
const SHARED = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

// RFC 8439 §2.8.2
const SUNSCREEN = te.encode(
  "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
);
const AEAD_KEY = h('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
const AEAD_NONCE = h('070000004041424344454647');
const AEAD_AAD = h('50515253c0c1c2c3c4c5c6c7');
const AEAD_CT =
  'd31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b' +
  '1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc' +
  '3ff4def08e4b7a9de576d26586cec64b6116' +
  '1ae10b594f09e26a7e902ecbd0600691';

for (const backend of [nobleBackend, nodeBackend]) {
  describe(`backend ${backend.name}`, () => {
    it('X25519 matches RFC 7748 §6.1', () => {
      expect(toHex(backend.x25519Public(ALICE_PRIV))).toBe(toHex(ALICE_PUB));
      expect(toHex(backend.x25519Public(BOB_PRIV))).toBe(toHex(BOB_PUB));
      expect(toHex(backend.x25519(ALICE_PRIV, BOB_PUB))).toBe(SHARED);
      expect(toHex(backend.x25519(BOB_PRIV, ALICE_PUB))).toBe(SHARED);
    });

    it('X25519 rejects a low-order point with a typed error', () => {
      let err: unknown;
      try {
        backend.x25519(ALICE_PRIV, new Uint8Array(32));
      } catch (e) {
        err = e;
      }
      expect(isPierceError(err, 'CRYPTO_LOW_ORDER')).toBe(true);
    });

    it('ChaCha20-Poly1305 matches RFC 8439 §2.8.2', () => {
      const ct = backend.seal(AEAD_KEY, AEAD_NONCE, SUNSCREEN, AEAD_AAD);
      expect(toHex(ct)).toBe(AEAD_CT);
      const pt = backend.open(AEAD_KEY, AEAD_NONCE, h(AEAD_CT), AEAD_AAD);
      expect(pt && new TextDecoder().decode(pt)).toBe(new TextDecoder().decode(SUNSCREEN));
    });

    it('ChaCha20-Poly1305 open returns null on any tampering', () => {
      const ct = h(AEAD_CT);
      for (const i of [0, 10, ct.length - 1]) {
        const bad = Uint8Array.from(ct);
        bad[i]! ^= 1;
        expect(backend.open(AEAD_KEY, AEAD_NONCE, bad, AEAD_AAD)).toBeNull();
      }
      expect(backend.open(AEAD_KEY, AEAD_NONCE, ct, new Uint8Array(1))).toBeNull();
      expect(backend.open(AEAD_KEY, AEAD_NONCE, ct.subarray(0, 15), AEAD_AAD)).toBeNull();
    });

    it('seal/open with an output buffer and empty plaintext', () => {
      const out = new Uint8Array(SUNSCREEN.length + 16);
      const r = backend.seal(AEAD_KEY, AEAD_NONCE, SUNSCREEN, AEAD_AAD, out);
      expect(r).toBe(out);
      expect(toHex(out)).toBe(AEAD_CT);
      const empty = backend.seal(AEAD_KEY, AEAD_NONCE, new Uint8Array(0));
      expect(empty.length).toBe(16);
      expect(backend.open(AEAD_KEY, AEAD_NONCE, empty)?.length).toBe(0);
    });
  });
}

describe('backends agree', () => {
  it('on random inputs (property)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.uint8Array({ maxLength: 300 }),
        fc.uint8Array({ maxLength: 40 }),
        (key, nonce, pt, ad) => {
          const a = nobleBackend.seal(key, nonce, pt, ad);
          const b = nodeBackend.seal(key, nonce, pt, ad);
          expect(toHex(a)).toBe(toHex(b));
          expect(toHex(nodeBackend.open(key, nonce, a, ad)!)).toBe(toHex(pt));
          expect(toHex(nobleBackend.x25519Public(key))).toBe(toHex(nodeBackend.x25519Public(key)));
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('BLAKE2s', () => {
  it('matches RFC 7693 Appendix B ("abc")', () => {
    expect(toHex(hash(te.encode('abc')))).toBe('508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982');
  });
  it('hash of parts equals hash of the concatenation, and matches OpenSSL', () => {
    const data = te.encode('WireGuard v1 zx2c4 Jason@zx2c4.com');
    expect(toHex(hash(data.subarray(0, 5), data.subarray(5)))).toBe(toHex(hash(data)));
    expect(toHex(hash(data))).toBe(createHash('blake2s256').update(data).digest('hex'));
  });
  it('HMAC-BLAKE2s matches OpenSSL HMAC(blake2s256)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 200 }), (key, msg) => {
        expect(toHex(hmac(key, msg))).toBe(createHmac('blake2s256', key).update(msg).digest('hex'));
      }),
      { numRuns: 50 },
    );
  });
  it('keyed MAC is 16 bytes and depends on the key', () => {
    const m1 = mac(new Uint8Array(32), te.encode('x'));
    const m2 = mac(new Uint8Array(32).fill(1), te.encode('x'));
    expect(m1.length).toBe(16);
    expect(equalBytes(m1, m2)).toBe(false);
  });
  it('KDF follows the HKDF chaining of the WireGuard paper §5.4', () => {
    const key = new Uint8Array(32).fill(7);
    const input = te.encode('input');
    const [t1, t2, t3] = kdf(3, key, input);
    const prk = createHmac('blake2s256', key).update(input).digest();
    const e1 = createHmac('blake2s256', prk).update(Uint8Array.of(1)).digest();
    const e2 = createHmac('blake2s256', prk).update(Buffer.concat([e1, Buffer.of(2)])).digest();
    const e3 = createHmac('blake2s256', prk).update(Buffer.concat([e2, Buffer.of(3)])).digest();
    expect([toHex(t1), toHex(t2), toHex(t3)]).toEqual([e1.toString('hex'), e2.toString('hex'), e3.toString('hex')]);
    expect(toHex(kdf(1, key, input)[0])).toBe(toHex(t1));
  });
});

describe('XChaCha20-Poly1305', () => {
  it('matches draft-irtf-cfrg-xchacha-03 §A.3.1', () => {
    const nonce = h('404142434445464748494a4b4c4d4e4f5051525354555657');
    const ct = xaeadSeal(AEAD_KEY, nonce, SUNSCREEN, AEAD_AAD);
    expect(toHex(ct)).toBe(
      'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39' +
        'ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9' +
        '21f9664c97637da9768812f615c68b13b52e' +
        'c0875924c1c7987947deafd8780acf49',
    );
    expect(xaeadOpen(AEAD_KEY, nonce, ct, AEAD_AAD)).not.toBeNull();
    expect(xaeadOpen(AEAD_KEY, nonce, ct, new Uint8Array(0))).toBeNull();
  });
});

describe('NaCl box', () => {
  // NaCl tests/box.c, box2.c, box7.c / "Cryptography in NaCl" §§9-10: Alice and Bob are the RFC 7748 keys.
  const NONCE = h('69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37');
  const MSG = h(`be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffce5ecbaaf33bd751a1ac728d45e6c61296cdc3c01233561f41db66cce314adb310e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde048977eb48f59ffd4924ca1c60902e52f0a089bc76897040e082f937763848645e0705`);
  const BOXED = h(`f3ffc7703f9400e52a7dfb4b3d3305d98e993b9f48681273c29650ba32fc76ce48332ea7164d96a4476fb8c531a1186ac0dfc17c98dce87b4da7f011ec48c97271d2c20f9b928fe2270d6fb863d51738b48eeee314a7cc8ab932164548e526ae90224368517acfeabd6bb3732bc0e9da99832b61ca01b6de56244a9e88d5f9b37973f622a43d14a6599b1f654cb45a74e355a5`);
  it('beforenm gives NaCl\'s "firstkey" known answer', () => {
    expect(toHex(boxBeforenm(BOB_PUB, ALICE_PRIV))).toBe('1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389');
    expect(toHex(boxBeforenm(ALICE_PUB, BOB_PRIV))).toBe('1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389');
  });
  it('seal matches box.c and open matches box2.c', () => {
    expect(toHex(boxSeal(MSG, NONCE, BOB_PUB, ALICE_PRIV))).toBe(toHex(BOXED));
    expect(toHex(boxSeal(MSG, NONCE, BOB_PUB, ALICE_PRIV, nodeBackend.x25519))).toBe(toHex(BOXED));
    expect(toHex(boxOpen(BOXED, NONCE, ALICE_PUB, BOB_PRIV, nodeBackend.x25519)!)).toBe(toHex(MSG));
    expect(toHex(boxOpen(BOXED, NONCE, ALICE_PUB, BOB_PRIV)!)).toBe(toHex(MSG));
  });
  it('open rejects tampering and short input', () => {
    const k = boxBeforenm(ALICE_PUB, BOB_PRIV);
    const bad = Uint8Array.from(BOXED);
    bad[20]! ^= 0x80;
    expect(boxOpenAfternm(k, NONCE, bad)).toBeNull();
    expect(boxOpenAfternm(k, NONCE, BOXED.subarray(0, 10))).toBeNull();
    expect(boxOpenAfternm(k, NONCE.subarray(1), BOXED)).toBeNull();
  });
});

describe('base64 and hex', () => {
  it('round-trip and reject non-canonical input', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        expect(toHex(fromBase64(toBase64(b))!)).toBe(toHex(b));
        expect(toBase64(b)).toBe(Buffer.from(b).toString('base64'));
        expect(toHex(fromHex(toHex(b))!)).toBe(toHex(b));
      }),
    );
    expect(fromBase64('YQ=')).toBeNull();
    expect(fromBase64('YR==')).toBeNull(); // stray low bits
    expect(fromHex('abc')).toBeNull();
    expect(fromHex('zz')).toBeNull();
  });
});
