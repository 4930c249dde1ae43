/**
 * TAI64N timestamps (WireGuard paper §5.4.2): 8 bytes big-endian seconds since 1970 plus 2^62 + 10,
 * then 4 bytes big-endian nanoseconds. As wireguard-go does, the nanoseconds are rounded down to
 * 2^24 ns (≈16.8 ms) so the timestamp does not leak fine-grained timing.
 *
 *   0               8          12
 *   +---------------+-----------+
 *   | secs + 2^62+10| nanos     |
 *   +---------------+-----------+
 */
import { TAI64N_SIZE } from './constants.ts';

const BASE = 2n ** 62n + 10n;
const WHITENER = 0xffffff;

/** The TAI64N timestamp for wall-clock time `ms` (milliseconds since the Unix epoch). */
export function tai64n(ms: number): Uint8Array {
  const out = new Uint8Array(TAI64N_SIZE);
  const v = new DataView(out.buffer);
  const secs = Math.floor(ms / 1000);
  v.setBigUint64(0, BASE + BigInt(secs));
  const nanos = Math.floor((ms - secs * 1000) * 1e6);
  v.setUint32(8, (nanos & ~WHITENER) >>> 0);
  return out;
}

/** True when `a` is strictly later than `b` (big-endian byte order is time order). */
export function tai64nAfter(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < TAI64N_SIZE; i++) {
    if (a[i] !== b[i]) return a[i]! > b[i]!;
  }
  return false;
}
