/**
 * XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03): 24-byte nonces, safe to choose at random.
 * WireGuard uses it to encrypt cookies (paper §5.4.7). noble in every environment.
 */
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';

export function xaeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad?: Uint8Array): Uint8Array {
  return xchacha20poly1305(key, nonce, ad).encrypt(plaintext);
}

/** The plaintext, or null when the tag does not verify. */
export function xaeadOpen(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, ad?: Uint8Array): Uint8Array | null {
  if (ciphertext.length < 16) return null;
  try {
    return xchacha20poly1305(key, nonce, ad).decrypt(ciphertext);
  } catch {
    return null;
  }
}
