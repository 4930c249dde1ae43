/**
 * IP addresses and prefixes as bytes: an address is a `Uint8Array` of 4 (IPv4) or 16 (IPv6)
 * bytes in network order, a prefix is `{ addr, bits }`. Pure; no allocation beyond the result.
 *
 *   IPv4 (RFC 791 §3.1; text: RFC 6943 §3.1.1 strict dotted-quad, no leading zeros)
 *     ┌────────┬────────┬────────┬────────┐
 *     │ a      │ b      │ c      │ d      │   "a.b.c.d", each 0..255 in decimal
 *     └────────┴────────┴────────┴────────┘
 *   IPv6 (RFC 4291 §2.2 text forms; RFC 5952 §4 canonical output)
 *     ┌────┬────┬────┬────┬────┬────┬────┬────┐
 *     │ g0 │ g1 │ g2 │ g3 │ g4 │ g5 │ g6 │ g7 │   eight 16-bit groups, "g0:g1:…:g7"
 *     └────┴────┴────┴────┴────┴────┴────┴────┘
 *     "::" stands for one or more zero groups (at most once); the last 32 bits may be written as
 *     a dotted quad ("::ffff:1.2.3.4", RFC 4291 §2.2 form 3). Zone ids ("%eth0") are rejected.
 *
 *   Prefix (RFC 4632 §3.1 / RFC 4291 §2.3): "addr/bits", bits 0..32 or 0..128 in decimal without
 *   leading zeros; a missing "/bits" means a host prefix (/32 or /128).
 *
 * Parse errors throw `PacketError` with code `ADDR_PARSE`; a byte array of the wrong length
 * throws code `ADDR_LENGTH`.
 */
import { PierceError } from '../errors.ts';

/** A malformed packet, address or prefix in the netstack. `code` says which check failed. */
export class PacketError extends PierceError {}

export const IPV4_LEN = 4;
export const IPV6_LEN = 16;

export interface Prefix {
  addr: Uint8Array;
  bits: number;
}

/** True for a 4-byte (IPv4) address. */
export function isIPv4(b: Uint8Array): boolean {
  return b.length === IPV4_LEN;
}

/** True for a 16-byte (IPv6) address. */
export function isIPv6(b: Uint8Array): boolean {
  return b.length === IPV6_LEN;
}

/** The number of bits in an address of this family (32 or 128); throws ADDR_LENGTH otherwise. */
export function addrBits(b: Uint8Array): 32 | 128 {
  if (b.length === IPV4_LEN) return 32;
  if (b.length === IPV6_LEN) return 128;
  throw new PacketError('ADDR_LENGTH', `an IP address is 4 or 16 bytes, got ${b.length}`);
}

function bad(text: string, why: string): PacketError {
  const shown = text.length > 64 ? text.slice(0, 64) + '…' : text;
  return new PacketError('ADDR_PARSE', `${JSON.stringify(shown)}: ${why}`);
}

/** Parses "a.b.c.d" strictly (four decimal parts 0..255, no leading zeros); null when invalid. */
function parseIPv4(s: string, start: number): Uint8Array | null {
  const out = new Uint8Array(4);
  let part = 0;
  let i = start;
  for (;;) {
    const begin = i;
    let v = 0;
    while (i < s.length) {
      const c = s.charCodeAt(i);
      if (c < 0x30 || c > 0x39) break;
      v = v * 10 + (c - 0x30);
      i++;
      if (i - begin > 3) return null;
    }
    const n = i - begin;
    if (n === 0 || v > 255) return null;
    if (n > 1 && s.charCodeAt(begin) === 0x30) return null; // leading zero: octal ambiguity
    out[part++] = v;
    if (part === 4) return i === s.length ? out : null;
    if (s.charCodeAt(i) !== 0x2e /* . */) return null;
    i++;
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** Parses RFC 4291 §2.2 text forms; null when invalid. */
function parseIPv6(s: string): Uint8Array | null {
  const out = new Uint8Array(16);
  let ellipsis = -1; // byte index where "::" stands
  let i = 0; // byte index in out
  let pos = 0; // char index in s
  if (s.startsWith('::')) {
    ellipsis = 0;
    pos = 2;
    if (pos === s.length) return out;
  }
  while (i < 16) {
    const begin = pos;
    let acc = 0;
    while (pos < s.length) {
      const h = hexValue(s.charCodeAt(pos));
      if (h < 0) break;
      acc = acc * 16 + h;
      pos++;
      if (pos - begin > 4) return null;
    }
    if (pos === begin) return null;
    if (pos < s.length && s.charCodeAt(pos) === 0x2e /* . */) {
      // Embedded IPv4 tail: must be the last 32 bits.
      if (i > 12 || (ellipsis < 0 && i !== 12)) return null;
      const v4 = parseIPv4(s, begin);
      if (!v4) return null;
      out.set(v4, i);
      i += 4;
      pos = s.length;
      break;
    }
    out[i] = acc >> 8;
    out[i + 1] = acc & 0xff;
    i += 2;
    if (pos === s.length) break;
    if (s.charCodeAt(pos) !== 0x3a /* : */) return null;
    pos++;
    if (pos < s.length && s.charCodeAt(pos) === 0x3a) {
      if (ellipsis >= 0) return null; // "::" twice
      ellipsis = i;
      pos++;
      if (pos === s.length) break;
    } else if (pos === s.length) {
      return null; // trailing single ':'
    }
  }
  if (pos !== s.length) return null;
  if (i < 16) {
    if (ellipsis < 0) return null;
    const n = 16 - i;
    out.copyWithin(ellipsis + n, ellipsis, i);
    out.fill(0, ellipsis, ellipsis + n);
  } else if (ellipsis >= 0) {
    return null; // "::" must stand for at least one group (RFC 4291 §2.2 form 2)
  }
  return out;
}

/** Parses an IPv4 or IPv6 address from text; throws PacketError `ADDR_PARSE`. */
export function parseIP(text: string): Uint8Array {
  const ip = tryParseIP(text);
  if (!ip) {
    if (typeof text === 'string' && text.includes('%')) throw bad(text, 'zone ids are not supported');
    throw bad(String(text), 'not an IPv4 or IPv6 address');
  }
  return ip;
}

/** Like `parseIP` but returns null instead of throwing. */
export function tryParseIP(text: string): Uint8Array | null {
  if (typeof text !== 'string' || text.length === 0 || text.length > 45) return null;
  return text.includes(':') ? parseIPv6(text) : parseIPv4(text, 0);
}

function formatIPv4(b: Uint8Array, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

/** True for ::ffff:0:0/96, the IPv4-mapped range (RFC 4291 §2.5.5.2). */
export function isIPv4Mapped(b: Uint8Array): boolean {
  if (b.length !== IPV6_LEN) return false;
  for (let k = 0; k < 10; k++) if (b[k] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/**
 * Formats an address as text. IPv6 follows RFC 5952 §4: lowercase hex without leading zeros,
 * the longest run of two or more zero groups replaced by "::" (the first on ties), and
 * IPv4-mapped addresses in mixed notation "::ffff:a.b.c.d" (§5).
 */
/** "1.2.3.4:80" or "[::1]:80" (an address as text or bytes, and a port). */
export function hostPort(address: Uint8Array | string, port: number): string {
  const a = typeof address === 'string' ? address : formatIP(address);
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`;
}

export function formatIP(b: Uint8Array): string {
  if (addrBits(b) === 32) return formatIPv4(b, 0);
  if (isIPv4Mapped(b)) return '::ffff:' + formatIPv4(b, 12);
  const groups: number[] = [];
  for (let k = 0; k < 16; k += 2) groups.push((b[k]! << 8) | b[k + 1]!);
  let bestAt = -1;
  let bestLen = 1; // a single zero group is never compressed (RFC 5952 §4.2.2)
  for (let k = 0; k < 8; ) {
    if (groups[k] !== 0) {
      k++;
      continue;
    }
    let e = k;
    while (e < 8 && groups[e] === 0) e++;
    if (e - k > bestLen) {
      bestAt = k;
      bestLen = e - k;
    }
    k = e;
  }
  const hex = (g: number[]) => g.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(groups);
  return hex(groups.slice(0, bestAt)) + '::' + hex(groups.slice(bestAt + bestLen));
}

function parseBits(text: string, s: string, max: number): number {
  if (!/^(0|[1-9][0-9]{0,2})$/.test(s)) throw bad(text, 'prefix length is not a decimal number');
  const n = Number(s);
  if (n > max) throw bad(text, `prefix length ${n} is more than ${max}`);
  return n;
}

/**
 * Parses "addr/bits"; bits defaults to the full length (32 or 128) when "/bits" is missing.
 * Host bits below the prefix are kept; use `maskPrefix` to clear them.
 */
export function parsePrefix(text: string): Prefix {
  if (typeof text !== 'string') throw bad(String(text), 'not a prefix');
  const slash = text.indexOf('/');
  if (slash < 0) {
    const addr = parseIP(text);
    return { addr, bits: addr.length * 8 };
  }
  const addr = tryParseIP(text.slice(0, slash));
  if (!addr) throw bad(text, 'not an IPv4 or IPv6 address before "/"');
  return { addr, bits: parseBits(text, text.slice(slash + 1), addr.length * 8) };
}

function checkPrefix(p: Prefix): void {
  const max = addrBits(p.addr);
  if (!Number.isInteger(p.bits) || p.bits < 0 || p.bits > max) {
    throw new PacketError('PREFIX_BITS', `prefix length ${p.bits} is not in 0..${max}`);
  }
}

/** Formats a prefix as "addr/bits" (the address as given, host bits included). */
export function formatPrefix(p: Prefix): string {
  checkPrefix(p);
  return `${formatIP(p.addr)}/${p.bits}`;
}

/** Returns a copy of `addr` with every bit after the first `bits` cleared. */
export function maskAddr(addr: Uint8Array, bits: number): Uint8Array {
  checkPrefix({ addr, bits });
  const out = Uint8Array.from(addr);
  const full = bits >> 3;
  if (full < out.length) {
    out[full] = out[full]! & ((0xff00 >> (bits & 7)) & 0xff);
    out.fill(0, full + 1);
  }
  return out;
}

/** The same prefix with host bits cleared (a new object; the input is not modified). */
export function maskPrefix(p: Prefix): Prefix {
  return { addr: maskAddr(p.addr, p.bits), bits: p.bits };
}

/** True when `addr` is inside `prefix`; false for a different address family. */
export function prefixContains(prefix: Prefix, addr: Uint8Array): boolean {
  checkPrefix(prefix);
  if (addr.length !== prefix.addr.length) return false;
  const full = prefix.bits >> 3;
  for (let k = 0; k < full; k++) if (addr[k] !== prefix.addr[k]) return false;
  const rest = prefix.bits & 7;
  if (rest === 0) return true;
  const m = (0xff00 >> rest) & 0xff;
  return ((addr[full]! ^ prefix.addr[full]!) & m) === 0;
}
