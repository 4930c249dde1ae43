/**
 * BLAKE2s (RFC 7693) and the constructions WireGuard builds from it (WireGuard paper §5.4):
 *   HASH(x)      = BLAKE2s(x), 32 bytes
 *   MAC(key, x)  = Keyed-BLAKE2s(key, x), 16 bytes
 *   HMAC(key, x) = HMAC-BLAKE2s(key, x), 32 bytes (RFC 2104, block 64)
 *   KDFn(key, x) = HKDF with HMAC-BLAKE2s: τ0 = HMAC(key, x); τ1 = HMAC(τ0, 0x1);
 *                  τi = HMAC(τ0, τ(i-1) || i)
 */
import { blake2s } from '@noble/hashes/blake2.js';
import { hmac as nobleHmac } from '@noble/hashes/hmac.js';

/** BLAKE2s-256 over the concatenation of `parts`. */
export function hash(...parts: Uint8Array[]): Uint8Array {
  const h = blake2s.create();
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Keyed BLAKE2s with a 16-byte output (WireGuard's MAC). */
export function mac(key: Uint8Array, data: Uint8Array): Uint8Array {
  return blake2s(data, { key, dkLen: 16 });
}

/** HMAC-BLAKE2s, 32-byte output. */
export function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = nobleHmac.create(blake2s, key);
  for (const p of parts) h.update(p);
  return h.digest();
}

const ONE = Uint8Array.of(1);

/** WireGuard KDF producing `n` (1..3) 32-byte outputs. */
export function kdf(n: 1, key: Uint8Array, input: Uint8Array): [Uint8Array];
export function kdf(n: 2, key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array];
export function kdf(n: 3, key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array, Uint8Array];
export function kdf(n: 1 | 2 | 3, key: Uint8Array, input: Uint8Array): Uint8Array[] {
  const prk = hmac(key, input);
  const out: Uint8Array[] = [hmac(prk, ONE)];
  for (let i = 2; i <= n; i++) out.push(hmac(prk, out[i - 2]!, Uint8Array.of(i)));
  prk.fill(0);
  return out;
}
