/**
 * The Internet checksum (RFC 1071): the 16-bit ones' complement of the ones' complement sum of
 * the data taken as big-endian 16-bit words, an odd final byte padded with a zero byte.
 *
 *   data:   ┌────┬────┬────┬────┬─ … ─┬────┬────┐
 *           │ w0      │ w1      │     │ last│ 00 │   (pad only the final odd byte)
 *           └────┴────┴────┴────┴─ … ─┴────┴────┘
 *   sum   = w0 +' w1 +' …        (+' = add with end-around carry, RFC 1071 §2 (A)-(C))
 *   check = ~sum & 0xffff
 *
 * Pseudo-headers covered by the upper-layer checksums:
 *
 *   IPv4 (RFC 768 UDP, RFC 9293 §3.1 TCP; ICMPv4 has none):
 *     ┌───────────────────────────────────┐
 *     │ source address (4)                │
 *     │ destination address (4)           │
 *     │ zero (1) │ protocol (1) │ length (2)│
 *     └───────────────────────────────────┘
 *   IPv6 (RFC 8200 §8.1; ICMPv6 too, RFC 4443 §2.3):
 *     ┌───────────────────────────────────┐
 *     │ source address (16)               │
 *     │ destination address (16)          │
 *     │ upper-layer packet length (4)     │
 *     │ zero (3)          │ next header (1)│
 *     └───────────────────────────────────┘
 *
 * Sums here are "partial": a folded 16-bit ones' complement sum, not yet complemented, that can
 * be carried from one call to the next (RFC 1071 §2 (B) associativity). Only the last chunk of a
 * multi-chunk sum may have odd length.
 */
import { PacketError } from './addr.ts';

/** Folds carries above bit 16 back in (end-around carry), giving a value in 0..0xffff. */
export function foldSum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * Adds the 16-bit words of `data` to the partial sum `initial` (default 0) and returns the folded
 * partial sum. If `data` has odd length its last byte is padded with zero; chain calls only with
 * even-length chunks before the last.
 */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function sumWords(data: Uint8Array, initial = 0): number {
  let sum = initial;
  const n = data.length;
  let i = 0;
  // Fast path (RFC 1071 §2(B), byte-order independence): add 32-bit words in the machine's
  // (little-endian) order, fold to 16 bits, then swap the two bytes of the result.
  if (LITTLE_ENDIAN && n >= 32 && (data.byteOffset & 3) === 0) {
    const words = n >>> 2;
    const u32 = new Uint32Array(data.buffer, data.byteOffset, words);
    let acc = 0;
    for (let k = 0; k < words; k++) acc += u32[k]!; // < 2^48 for any IP packet: exact
    let s = (acc % 0x10000) + Math.floor(acc / 0x10000);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    sum += ((s & 0xff) << 8) | (s >>> 8);
    i = words << 2;
  }
  const even = n & ~1;
  for (; i < even; i += 2) {
    sum += (data[i]! << 8) | data[i + 1]!;
    // Keep the accumulator well inside 2^53; folding every 32 Ki words is plenty.
    if ((i & 0xffff) === 0xfffe) sum = foldSum(sum);
  }
  if (i < n) sum += data[i]! << 8;
  return foldSum(sum);
}

/** The final checksum of a partial sum: its ones' complement, in 0..0xffff. */
export function finishChecksum(sum: number): number {
  return ~foldSum(sum) & 0xffff;
}

/** The Internet checksum of `data` (with an optional partial sum to start from). */
export function internetChecksum(data: Uint8Array, initial = 0): number {
  return finishChecksum(sumWords(data, initial));
}

/** Ones' complement addition of two partial sums. */
export function addSums(a: number, b: number): number {
  return foldSum(a + b);
}

/**
 * Incremental update of a stored checksum when one 16-bit word changes from `oldWord` to
 * `newWord` (RFC 1624 §3, eqn. 3: HC' = ~(~HC + ~m + m')). Use it to patch a TTL or an address
 * without summing the whole header again.
 */
export function updateChecksum(checksum: number, oldWord: number, newWord: number): number {
  const sum = (~checksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  return ~foldSum(sum) & 0xffff;
}

/**
 * The partial sum of the pseudo-header for an upper-layer checksum (UDP, TCP, ICMPv6).
 * `src` and `dst` are both 4 bytes (IPv4) or both 16 bytes (IPv6); `length` is the upper-layer
 * length (header + data) in bytes.
 */
export function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number {
  if (src.length !== dst.length || (src.length !== 4 && src.length !== 16)) {
    throw new PacketError('ADDR_LENGTH', `pseudo-header addresses must both be 4 or 16 bytes, got ${src.length} and ${dst.length}`);
  }
  let sum = sumWords(src);
  sum = sumWords(dst, sum);
  // IPv4: zero|protocol, length(16). IPv6: length(32), zero(24)|next header. Both reduce to
  // adding the length as words and the protocol as a word.
  sum += Math.floor(length / 0x10000) + (length & 0xffff) + (protocol & 0xff);
  return foldSum(sum);
}

/**
 * True when `data` (with the checksum field in place) sums to 0xffff over `initial`, i.e. the
 * stored checksum is right (RFC 1071 §1: the receiver's sum is all ones).
 */
export function verifyChecksum(data: Uint8Array, initial = 0): boolean {
  return sumWords(data, initial) === 0xffff;
}
