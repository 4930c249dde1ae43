/** The noble backend: pure JavaScript, runs everywhere (browser worker and Node). */
import { x25519 } from '@noble/curves/ed25519.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import type { CryptoBackend } from './backend.ts';
import { CryptoError } from '../errors.ts';
import { isZero } from './bytes.ts';

const TAG = 16;

export const nobleBackend: CryptoBackend = {
  name: 'noble',
  x25519(priv, pub) {
    let out: Uint8Array;
    try {
      out = x25519.getSharedSecret(priv, pub);
    } catch (e) {
      throw new CryptoError('CRYPTO_LOW_ORDER', 'X25519 produced an invalid (low-order) shared secret', { cause: e });
    }
    if (isZero(out)) throw new CryptoError('CRYPTO_LOW_ORDER', 'X25519 shared secret is all zero');
    return out;
  },
  x25519Public(priv) {
    return x25519.getPublicKey(priv);
  },
  seal(key, nonce, plaintext, ad, out) {
    const c = chacha20poly1305(key, nonce, ad);
    if (out) {
      if (out.length !== plaintext.length + TAG) throw new CryptoError('CRYPTO_LENGTH', 'seal output has the wrong length');
      return c.encrypt(plaintext, out);
    }
    return c.encrypt(plaintext);
  },
  open(key, nonce, ciphertext, ad, out) {
    if (ciphertext.length < TAG) return null;
    try {
      const c = chacha20poly1305(key, nonce, ad);
      return out ? c.decrypt(ciphertext, out) : c.decrypt(ciphertext);
    } catch {
      return null;
    }
  },
};
