/**
 * TCP sequence-number arithmetic (RFC 9293 §3.4): sequence numbers live in a 32-bit space that
 * wraps, so "less than" means "less than in the half of the circle ahead of it".
 *
 *      0                                    2^31                                 2^32 - 1
 *      ├──────────────────────────────────────┼──────────────────────────────────────┤
 *                 a ──────► b                          a < b  ⇔  (b - a) mod 2^32 ∈ [1, 2^31)
 *      ─ ─ ─► b                                             a ─ ─ ─ ─ ─ ─ ─ ─ ─ ─►   (wraps)
 *
 * Every value returned is an unsigned 32-bit number (`>>> 0`), 0..2^32-1, so it can be stored,
 * compared with `===` and written to the wire as is. Inputs may be any 32-bit pattern (signed or
 * unsigned); they are taken modulo 2^32. Two numbers exactly 2^31 apart are an ambiguous pair
 * (RFC 1982 §3.2 leaves it undefined): here `seqSub` gives -2^31 both ways, so each is "less"
 * than the other. TCP never compares numbers that far apart: windows are at most 2^30
 * (RFC 7323 §2.3).
 */

/** a + n modulo 2^32, as an unsigned 32-bit number. `n` may be negative. */
export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/** The signed distance a − b, in −2^31..2^31−1: positive when a is after b. */
export function seqSub(a: number, b: number): number {
  return (a - b) | 0;
}

/** a < b in sequence space (RFC 9293 §3.4 "=<" family, RFC 1982 §3.2). */
export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

/** a ≤ b in sequence space. */
export function seqLe(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}

/** a > b in sequence space. */
export function seqGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

/** a ≥ b in sequence space. */
export function seqGe(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/** The later of a and b (unsigned 32-bit). */
export function seqMax(a: number, b: number): number {
  return ((a - b) | 0) >= 0 ? a >>> 0 : b >>> 0;
}

/** The earlier of a and b (unsigned 32-bit). */
export function seqMin(a: number, b: number): number {
  return ((a - b) | 0) <= 0 ? a >>> 0 : b >>> 0;
}

/**
 * True when start ≤ x < start + len in sequence space, the window test of RFC 9293 §3.10.7.4
 * ("RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND"). `len` is a byte count in 0..2^32; an empty window
 * (len 0) contains nothing.
 */
export function inWindow(x: number, start: number, len: number): boolean {
  return ((x - start) >>> 0) < len;
}
