/**
 * IP prefixes as numbers for the policy: IPv4 as a uint32 in a `number`, IPv6 as a 128-bit
 * `bigint`, so that sorting, containment and aggregation never compare strings. IPv6 text is
 * parsed by src/netstack/addr.ts (RFC 4291 §2.2) and formatted here (RFC 5952 §4).
 */
import { tryParseIP } from '../netstack/addr.ts';

export type Addr = { v6: false; n: number } | { v6: true; n: bigint };
/** A prefix with host bits cleared. */
export type Net = { v6: false; addr: number; bits: number } | { v6: true; addr: bigint; bits: number };

const SIZE6 = Array.from({ length: 129 }, (_, b) => 1n << BigInt(128 - b));
const ALL6 = (1n << 128n) - 1n;
/** MASK6[b]: the top b bits set. */
const MASK6 = SIZE6.map((s) => ALL6 ^ (s - 1n));

/** Strict dotted quad ("a.b.c.d", 0..255, no leading zeros) → uint32; -1 when invalid. */
export function parseV4(s: string, start = 0, end = s.length): number {
  let n = 0;
  let parts = 0;
  let i = start;
  while (parts < 4) {
    const begin = i;
    let v = 0;
    while (i < end) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
      i++;
    }
    const len = i - begin;
    if (len === 0 || len > 3 || v > 255 || (len > 1 && s.charCodeAt(begin) === 48)) return -1;
    n = n * 256 + v;
    parts++;
    if (parts < 4) {
      if (i >= end || s.charCodeAt(i) !== 46) return -1;
      i++;
    }
  }
  return i === end ? n : -1;
}

const HEX2 = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Big-endian bytes → bigint (through one hex string: one native conversion, not 16 shifts). */
export function bytesToBig(b: Uint8Array): bigint {
  let h = '0x0';
  for (let i = 0; i < b.length; i++) h += HEX2[b[i]!]!;
  return BigInt(h);
}

/** RFC 5952 §4 text of a 128-bit address: lowercase, no leading zeros, longest zero run (≥ 2
 * groups, first on ties) as "::", IPv4-mapped addresses as "::ffff:a.b.c.d". */
export function formatV6(n: bigint): string {
  const hex = n.toString(16).padStart(32, '0');
  if (hex.startsWith('00000000000000000000ffff')) return '::ffff:' + formatV4(parseInt(hex.slice(24), 16));
  const g: string[] = [];
  for (let i = 0; i < 32; i += 4) {
    let j = i;
    while (j < i + 3 && hex.charCodeAt(j) === 48) j++;
    g.push(hex.slice(j, i + 4));
  }
  let bestAt = -1;
  let bestLen = 1;
  for (let k = 0; k < 8; ) {
    if (g[k] !== '0') {
      k++;
      continue;
    }
    let e = k;
    while (e < 8 && g[e] === '0') e++;
    if (e - k > bestLen) {
      bestAt = k;
      bestLen = e - k;
    }
    k = e;
  }
  if (bestAt < 0) return g.join(':');
  return g.slice(0, bestAt).join(':') + '::' + g.slice(bestAt + bestLen).join(':');
}

/** Raw 4- or 16-byte address → Addr; null for other lengths. */
export function addrFromBytes(b: Uint8Array): Addr | null {
  if (b.length === 4) return { v6: false, n: ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0 };
  if (b.length === 16) return { v6: true, n: bytesToBig(b) };
  return null;
}

/** An address from text; null when not an IPv4 or IPv6 address. */
export function parseAddr(s: string): Addr | null {
  if (typeof s !== 'string') return null;
  if (!s.includes(':')) {
    const n = parseV4(s);
    return n < 0 ? null : { v6: false, n };
  }
  const b = tryParseIP(s);
  return b && b.length === 16 ? { v6: true, n: bytesToBig(b) } : null;
}

export function size4(bits: number): number {
  return 2 ** (32 - bits);
}

export function size6(bits: number): bigint {
  return SIZE6[bits]!;
}

/**
 * "addr/bits" or a bare address (a host prefix). `hostBits` is true when bits below the prefix
 * length were set in the text (the returned prefix has them cleared). Null when invalid.
 */
export function parseNet(s: string): { net: Net; hostBits: boolean } | null {
  if (typeof s !== 'string') return null;
  const slash = s.indexOf('/');
  const a = parseAddr(slash < 0 ? s : s.slice(0, slash));
  if (!a) return null;
  const max = a.v6 ? 128 : 32;
  let bits = max;
  if (slash >= 0) {
    const t = s.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(t)) return null;
    bits = Number(t);
    if (bits > max) return null;
  }
  if (a.v6) {
    const addr = a.n & MASK6[bits]!;
    return { net: { v6: true, addr, bits }, hostBits: addr !== a.n };
  }
  const addr = a.n - (a.n % size4(bits));
  return { net: { v6: false, addr, bits }, hostBits: addr !== a.n };
}

export function formatV4(n: number): string {
  return `${Math.floor(n / 16777216) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function formatAddr(a: Addr): string {
  return a.v6 ? formatV6(a.n) : formatV4(a.n);
}

export function formatNet(p: Net): string {
  return (p.v6 ? formatV6(p.addr) : formatV4(p.addr)) + '/' + p.bits;
}

/** True when `a` is inside `p` (false for the other family). */
export function netContains(p: Net, a: Addr): boolean {
  if (p.v6) return a.v6 && (a.n & MASK6[p.bits]!) === p.addr;
  return !a.v6 && a.n >= p.addr && a.n < p.addr + size4(p.bits);
}

/** True when prefix `inner` lies within `outer`. */
export function netCovers(outer: Net, inner: Net): boolean {
  if (outer.v6 !== inner.v6 || inner.bits < outer.bits) return false;
  return netContains(outer, inner.v6 ? { v6: true, n: inner.addr as bigint } : { v6: false, n: inner.addr as number });
}

/** Canonical text of a prefix or address ("100.64.0.1" → "100.64.0.1/32"); null when invalid. */
export function canonicalPrefix(s: string): string | null {
  const p = parseNet(s);
  return p ? formatNet(p.net) : null;
}

/**
 * Minimal set of IPv4 prefixes covering exactly the union of the input (given as parallel arrays
 * of addresses and lengths, host bits clear): sorted, contained prefixes dropped, sibling pairs
 * joined into their parent, repeatedly. Returns [addrs, bits].
 */
export function aggregate4(addrs: ArrayLike<number>, bitsIn: ArrayLike<number>): [number[], number[]] {
  const n = addrs.length;
  // addr < 2^32 and bits < 64: addr * 64 + bits is exact in a double, so one numeric sort orders
  // by address, then shorter prefix first.
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) keys[i] = addrs[i]! * 64 + bitsIn[i]!;
  keys.sort();
  const outA: number[] = [];
  const outB: number[] = [];
  for (let i = 0; i < n; i++) {
    const k = keys[i]!;
    const bits = k % 64;
    const addr = (k - bits) / 64;
    const top = outA.length - 1;
    if (top >= 0 && addr < outA[top]! + size4(outB[top]!)) continue; // contained in the last one
    outA.push(addr);
    outB.push(bits);
    for (let t = outA.length - 1; t >= 1; t = outA.length - 1) {
      const b = outB[t]!;
      const s = size4(b);
      const a0 = outA[t - 1]!;
      // Siblings: same length, the first has the bit above the prefix clear, the second follows.
      if (b === 0 || outB[t - 1] !== b || Math.floor(a0 / s) % 2 !== 0 || outA[t] !== a0 + s) break;
      outA.length = t;
      outB.length = t;
      outB[t - 1] = b - 1;
    }
  }
  return [outA, outB];
}

/** The same as aggregate4 for IPv6. */
export function aggregate6(nets: { addr: bigint; bits: number }[]): { addr: bigint; bits: number }[] {
  const sorted = [...nets].sort((x, y) => (x.addr < y.addr ? -1 : x.addr > y.addr ? 1 : x.bits - y.bits));
  const out: { addr: bigint; bits: number }[] = [];
  for (const p of sorted) {
    const last = out[out.length - 1];
    if (last && p.addr < last.addr + SIZE6[last.bits]!) continue;
    out.push({ addr: p.addr, bits: p.bits });
    for (let t = out.length - 1; t >= 1; t = out.length - 1) {
      const a = out[t - 1]!;
      const b = out[t]!;
      if (b.bits === 0 || a.bits !== b.bits) break;
      const s = SIZE6[b.bits]!;
      if ((a.addr & s) !== 0n || b.addr !== (a.addr | s)) break;
      out.length = t;
      a.bits--;
    }
  }
  return out;
}

/** Tailscale's tailnet ranges: 100.64.0.0/10 (CGNAT, RFC 6598) and fd7a:115c:a1e0::/48. */
export const TAILNET_NETS: readonly Net[] = [parseNet('100.64.0.0/10')!.net, parseNet('fd7a:115c:a1e0::/48')!.net];
