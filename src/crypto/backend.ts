/**
 * The crypto backend interface. The engine only ever calls these two primitives on its hot
 * paths (X25519 for handshakes, ChaCha20-Poly1305 for every packet), so they are the ones a
 * faster platform implementation may replace: browsers use noble (`nobleBackend`), Node uses
 * node:crypto (`gateway/src/crypto/node-backend.ts`), measured 2x and 29x faster here.
 * Everything else (BLAKE2s, XChaCha20, NaCl box) is noble in both.
 */
export interface CryptoBackend {
  readonly name: string;
  /** X25519(priv, pub). Throws CryptoError `CRYPTO_LOW_ORDER` when the result is all zero. */
  x25519(priv: Uint8Array, pub: Uint8Array): Uint8Array;
  /** X25519(priv, basepoint). */
  x25519Public(priv: Uint8Array): Uint8Array;
  /**
   * ChaCha20-Poly1305 (RFC 8439) seal: returns ciphertext || 16-byte tag. When `out` is given
   * (length plaintext.length + 16) the result is written there and `out` is returned.
   */
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad?: Uint8Array, out?: Uint8Array): Uint8Array;
  /** ChaCha20-Poly1305 open: the plaintext, or null when authentication fails. */
  open(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, ad?: Uint8Array, out?: Uint8Array): Uint8Array | null;
}

/** Randomness is injected everywhere; this is the signature. */
export type RandomSource = (n: number) => Uint8Array;

const POOL_SIZE = 4096;
let pool = new Uint8Array(0);
let poolOff = 0;

/**
 * The platform CSPRNG (Web Crypto's getRandomValues, present in browsers, workers and Node 20).
 * Small requests (timer jitter, indices, nonces) are served from a pooled block so the hot path
 * does not make a system call each time; every byte is still used once.
 */
export const cryptoRandom: RandomSource = (n) => {
  if (n <= 64) {
    if (poolOff + n > pool.length) {
      pool = new Uint8Array(POOL_SIZE);
      globalThis.crypto.getRandomValues(pool);
      poolOff = 0;
    }
    const out = pool.slice(poolOff, poolOff + n);
    pool.fill(0, poolOff, poolOff + n);
    poolOff += n;
    return out;
  }
  const out = new Uint8Array(n);
  // getRandomValues is limited to 65536 bytes per call.
  for (let o = 0; o < n; o += 65536) globalThis.crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
  return out;
};
