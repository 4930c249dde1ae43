/**
 * NaCl crypto_box (curve25519xsalsa20poly1305), which DERP and disco use to seal messages to a
 * peer's key. noble has no crypto_box, so it is assembled from its parts:
 *   k = HSalsa20(key = X25519(ourPriv, theirPub), input = 16 zero bytes)   (crypto_box_beforenm)
 *   box = XSalsa20-Poly1305(k, nonce24).seal(msg) = tag(16) || ciphertext  (crypto_secretbox)
 * The output is NaCl's box without its 16 leading zero bytes, as Go's x/crypto/nacl/box returns.
 */
import { hsalsa, xsalsa20poly1305 } from '@noble/ciphers/salsa.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { CryptoError } from '../errors.ts';
import { isZero } from './bytes.ts';

export const BOX_NONCE = 24;
export const BOX_OVERHEAD = 16;

// "expand 32-byte k" as little-endian words.
const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);

function toWords(b: Uint8Array): Uint32Array {
  const w = new Uint32Array(b.length / 4);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < w.length; i++) w[i] = v.getUint32(i * 4, true);
  return w;
}

function fromWords(w: Uint32Array): Uint8Array {
  const b = new Uint8Array(w.length * 4);
  const v = new DataView(b.buffer);
  for (let i = 0; i < w.length; i++) v.setUint32(i * 4, w[i]!, true);
  return b;
}

/** HSalsa20(key, 16-byte input): the 32-byte subkey. */
export function hsalsa20(key: Uint8Array, input16: Uint8Array): Uint8Array {
  const out = new Uint32Array(8);
  hsalsa(SIGMA, toWords(key), toWords(input16), out);
  return fromWords(out);
}

/** An X25519 implementation (a CryptoBackend's `x25519`); noble's by default. */
export type X25519 = (priv: Uint8Array, pub: Uint8Array) => Uint8Array;

const nobleX25519: X25519 = (priv, pub) => x25519.getSharedSecret(priv, pub);

/** crypto_box_beforenm: the shared key for (ourPriv, theirPub), computed once per peer. */
export function boxBeforenm(theirPub: Uint8Array, ourPriv: Uint8Array, dh: X25519 = nobleX25519): Uint8Array {
  let s: Uint8Array;
  try {
    s = dh(ourPriv, theirPub);
  } catch (e) {
    throw new CryptoError('CRYPTO_LOW_ORDER', 'box: invalid peer public key', { cause: e });
  }
  if (isZero(s)) throw new CryptoError('CRYPTO_LOW_ORDER', 'box: shared secret is all zero');
  const k = hsalsa20(s, new Uint8Array(16));
  s.fill(0);
  return k;
}

/** crypto_box_afternm: seals with a precomputed shared key. Output: tag || ciphertext. */
export function boxSealAfternm(shared: Uint8Array, nonce: Uint8Array, msg: Uint8Array): Uint8Array {
  if (nonce.length !== BOX_NONCE) throw new CryptoError('CRYPTO_LENGTH', `box nonce must be ${BOX_NONCE} bytes`);
  return xsalsa20poly1305(shared, nonce).encrypt(msg);
}

/** crypto_box_open_afternm: the message, or null when authentication fails. */
export function boxOpenAfternm(shared: Uint8Array, nonce: Uint8Array, boxed: Uint8Array): Uint8Array | null {
  if (nonce.length !== BOX_NONCE || boxed.length < BOX_OVERHEAD) return null;
  try {
    return xsalsa20poly1305(shared, nonce).decrypt(boxed);
  } catch {
    return null;
  }
}

/** crypto_box: seal `msg` from ourPriv to theirPub. */
export function boxSeal(msg: Uint8Array, nonce: Uint8Array, theirPub: Uint8Array, ourPriv: Uint8Array, dh?: X25519): Uint8Array {
  return boxSealAfternm(boxBeforenm(theirPub, ourPriv, dh), nonce, msg);
}

/** crypto_box_open: the message, or null when it does not authenticate. */
export function boxOpen(boxed: Uint8Array, nonce: Uint8Array, theirPub: Uint8Array, ourPriv: Uint8Array, dh?: X25519): Uint8Array | null {
  return boxOpenAfternm(boxBeforenm(theirPub, ourPriv, dh), nonce, boxed);
}
