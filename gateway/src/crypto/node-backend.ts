/**
 * The node:crypto backend (Node only): OpenSSL's ChaCha20-Poly1305 and X25519. Raw 32-byte keys
 * are wrapped in fixed DER prefixes (RFC 8410) to make KeyObjects; private KeyObjects are cached
 * per key array so a static key is parsed once.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, type KeyObject } from 'node:crypto';
import type { CryptoBackend } from '../../../src/crypto/backend.ts';
import { isZero } from '../../../src/crypto/bytes.ts';
import { CryptoError } from '../../../src/errors.ts';

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');
const TAG = 16;
const EMPTY = Buffer.alloc(0);

const privCache = new WeakMap<Uint8Array, KeyObject>();

function privateKeyObject(priv: Uint8Array): KeyObject {
  let k = privCache.get(priv);
  if (!k) {
    if (priv.length !== 32) throw new CryptoError('CRYPTO_LENGTH', 'X25519 private key must be 32 bytes');
    k = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, priv]), format: 'der', type: 'pkcs8' });
    privCache.set(priv, k);
  }
  return k;
}

function publicKeyObject(pub: Uint8Array): KeyObject {
  if (pub.length !== 32) throw new CryptoError('CRYPTO_LENGTH', 'X25519 public key must be 32 bytes');
  return createPublicKey({ key: Buffer.concat([SPKI_X25519, pub]), format: 'der', type: 'spki' });
}

function view(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export const nodeBackend: CryptoBackend = {
  name: 'node:crypto',
  x25519(priv, pub) {
    let out: Buffer;
    try {
      out = diffieHellman({ privateKey: privateKeyObject(priv), publicKey: publicKeyObject(pub) });
    } catch (e) {
      throw new CryptoError('CRYPTO_LOW_ORDER', 'X25519 produced an invalid (low-order) shared secret', { cause: e });
    }
    const r = new Uint8Array(out);
    if (isZero(r)) throw new CryptoError('CRYPTO_LOW_ORDER', 'X25519 shared secret is all zero');
    return r;
  },
  x25519Public(priv) {
    const jwk = createPublicKey(privateKeyObject(priv)).export({ format: 'der', type: 'spki' });
    return new Uint8Array(jwk.subarray(jwk.length - 32));
  },
  seal(key, nonce, plaintext, ad, out) {
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
    if (ad && ad.length) c.setAAD(ad, { plaintextLength: plaintext.length });
    const body = c.update(plaintext);
    c.final();
    const tag = c.getAuthTag();
    const res = out ?? new Uint8Array(plaintext.length + TAG);
    if (res.length !== plaintext.length + TAG) throw new CryptoError('CRYPTO_LENGTH', 'seal output has the wrong length');
    res.set(body, 0);
    res.set(tag, plaintext.length);
    return res;
  },
  open(key, nonce, ciphertext, ad, out) {
    if (ciphertext.length < TAG) return null;
    const n = ciphertext.length - TAG;
    try {
      const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG });
      d.setAuthTag(view(ciphertext.subarray(n)));
      if (ad && ad.length) d.setAAD(ad, { plaintextLength: n });
      const body = n ? d.update(view(ciphertext.subarray(0, n))) : EMPTY;
      d.final();
      const res = out ?? new Uint8Array(n);
      res.set(body, 0);
      return res;
    } catch {
      return null;
    }
  },
};
