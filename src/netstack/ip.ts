/**
 * IPv4 and IPv6 packet headers: a length-checked parse and builders. Pure.
 *
 * IPv4 header (RFC 791 §3.1):
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   ┌───────┬───────┬───────────────┬───────────────────────────────┐
 *   │Version│  IHL  │  DSCP  │ ECN  │          Total Length         │
 *   ├───────┴───────┴───────────────┼─────┬─────────────────────────┤
 *   │         Identification        │Flags│     Fragment Offset     │   Flags: 0 DF MF
 *   ├───────────────┬───────────────┼─────┴─────────────────────────┤
 *   │  Time to Live │    Protocol   │        Header Checksum        │
 *   ├───────────────┴───────────────┴───────────────────────────────┤
 *   │                         Source Address                        │
 *   ├───────────────────────────────────────────────────────────────┤
 *   │                      Destination Address                      │
 *   ├───────────────────────────────────────────────────────────────┤
 *   │                 Options (IHL > 5) … │ Padding                 │
 *   └───────────────────────────────────────────────────────────────┘
 *
 * IPv6 header (RFC 8200 §3), followed by a chain of extension headers (§4):
 *   ┌───────┬───────────────┬───────────────────────────────────────┐
 *   │Version│ Traffic Class │              Flow Label               │
 *   ├───────┴───────────────┴───────┬───────────────┬───────────────┤
 *   │         Payload Length        │  Next Header  │   Hop Limit   │
 *   ├───────────────────────────────┴───────────────┴───────────────┤
 *   │                    Source Address (16 bytes)                  │
 *   ├───────────────────────────────────────────────────────────────┤
 *   │                 Destination Address (16 bytes)                │
 *   └───────────────────────────────────────────────────────────────┘
 *   Extension header (Hop-by-Hop §4.3, Routing §4.4, Destination Options §4.6):
 *   ┌───────────────┬───────────────┬───────────────┬───────────────┐
 *   │  Next Header  │  Hdr Ext Len  │ Routing Type  │ Segments Left │  (bytes 2-3: Routing only)
 *   ├───────────────┴───────────────┴───────────────┴───────────────┤
 *   │  … options / data; total length = 8 * (1 + Hdr Ext Len)       │
 *   └───────────────────────────────────────────────────────────────┘
 *
 * Policy: fragments are rejected (`PACKET_FRAGMENT`): IPv4 with MF set or a non-zero offset,
 * IPv6 with a Fragment header (44, §4.5). Hop-by-Hop must come first (§4.1). A Routing header
 * with Segments Left ≠ 0 is rejected (`PACKET_EXTENSION`): this node is not a router, and the
 * destination field would not be the final destination. Other next headers end the chain.
 *
 * Errors are `PacketError` with codes PACKET_TRUNCATED, PACKET_VERSION, PACKET_HEADER,
 * PACKET_LENGTH, PACKET_CHECKSUM, PACKET_FRAGMENT, PACKET_EXTENSION (parse) and ADDR_LENGTH,
 * PACKET_FIELD, PACKET_TOO_BIG (build).
 */
import { PacketError } from './addr.ts';
import { finishChecksum, verifyChecksum } from './checksum.ts';

/** Header lengths (RFC 791 §3.1, RFC 8200 §3). */
export const IPV4_HEADER_LEN = 20;
export const IPV6_HEADER_LEN = 40;
/** The largest IP packet / IPv6 payload a 16-bit length field can describe. */
export const IP_MAX_LEN = 0xffff;

/** Protocol numbers (IANA "Assigned Internet Protocol Numbers"). */
export const IPPROTO_HOPOPTS = 0; // RFC 8200 §4.3
export const IPPROTO_ICMP = 1; // RFC 792
export const IPPROTO_TCP = 6; // RFC 9293
export const IPPROTO_UDP = 17; // RFC 768
export const IPPROTO_ROUTING = 43; // RFC 8200 §4.4
export const IPPROTO_FRAGMENT = 44; // RFC 8200 §4.5
export const IPPROTO_ICMPV6 = 58; // RFC 4443
export const IPPROTO_NONE = 59; // RFC 8200 §4.7
export const IPPROTO_DSTOPTS = 60; // RFC 8200 §4.6

/** IPv4 flag bits in the Flags/Fragment Offset word (RFC 791 §3.1). */
const IPV4_FLAG_DF = 0x4000;
const IPV4_FLAG_MF = 0x2000;
const IPV4_OFFSET_MASK = 0x1fff;

/** The default TTL / hop limit for packets this node makes (RFC 1700 suggests 64). */
export const DEFAULT_TTL = 64;

export interface IPPacket {
  version: 4 | 6;
  /** Source address (a copy, 4 or 16 bytes). */
  src: Uint8Array;
  /** Destination address (a copy, 4 or 16 bytes). */
  dst: Uint8Array;
  /** IPv4 Protocol, or for IPv6 the Next Header after the skipped extension headers. */
  protocol: number;
  /** IPv4 TTL or IPv6 Hop Limit. */
  ttl: number;
  /** Bytes before the payload: IPv4 header with options, or IPv6 header plus extension headers. */
  headerLength: number;
  /** The packet length after trimming link-layer padding (Total Length, or 40 + Payload Length). */
  length: number;
  /** The upper-layer payload, a subarray of the input (no copy). */
  payload: Uint8Array;
}

function fail(code: string, message: string): never {
  throw new PacketError(code, message);
}

/** The IP version nibble of the first byte, or 0 for an empty buffer. */
export function ipVersion(pkt: Uint8Array): number {
  return pkt.length === 0 ? 0 : pkt[0]! >> 4;
}

/** Parses and checks an IPv4 or IPv6 packet; throws PacketError on anything malformed. */
export function parsePacket(pkt: Uint8Array): IPPacket {
  if (!(pkt instanceof Uint8Array)) fail('PACKET_TRUNCATED', 'not a byte array');
  if (pkt.length === 0) fail('PACKET_TRUNCATED', 'empty packet');
  const v = ipVersion(pkt);
  if (v === 4) return parseIPv4(pkt);
  if (v === 6) return parseIPv6(pkt);
  return fail('PACKET_VERSION', `IP version ${v} is neither 4 nor 6`);
}

function parseIPv4(pkt: Uint8Array): IPPacket {
  if (pkt.length < IPV4_HEADER_LEN) fail('PACKET_TRUNCATED', `IPv4 packet of ${pkt.length} bytes is shorter than its header`);
  const ihl = (pkt[0]! & 0x0f) * 4;
  if (ihl < IPV4_HEADER_LEN) fail('PACKET_HEADER', `IPv4 IHL ${ihl / 4} is less than 5`);
  if (pkt.length < ihl) fail('PACKET_TRUNCATED', `IPv4 header of ${ihl} bytes in a ${pkt.length}-byte packet`);
  const total = (pkt[2]! << 8) | pkt[3]!;
  if (total < ihl) fail('PACKET_LENGTH', `IPv4 total length ${total} is less than the header length ${ihl}`);
  if (total > pkt.length) fail('PACKET_TRUNCATED', `IPv4 total length ${total} is more than the ${pkt.length} bytes received`);
  if (!verifyChecksum(pkt.subarray(0, ihl))) fail('PACKET_CHECKSUM', 'IPv4 header checksum is wrong');
  const frag = (pkt[6]! << 8) | pkt[7]!;
  if (frag & IPV4_FLAG_MF || frag & IPV4_OFFSET_MASK) {
    fail('PACKET_FRAGMENT', `IPv4 fragment (offset ${(frag & IPV4_OFFSET_MASK) * 8}, MF ${frag & IPV4_FLAG_MF ? 1 : 0}) not supported`);
  }
  return {
    version: 4,
    src: pkt.slice(12, 16),
    dst: pkt.slice(16, 20),
    protocol: pkt[9]!,
    ttl: pkt[8]!,
    headerLength: ihl,
    length: total,
    payload: pkt.subarray(ihl, total),
  };
}

function parseIPv6(pkt: Uint8Array): IPPacket {
  if (pkt.length < IPV6_HEADER_LEN) fail('PACKET_TRUNCATED', `IPv6 packet of ${pkt.length} bytes is shorter than its header`);
  const plen = (pkt[4]! << 8) | pkt[5]!;
  const end = IPV6_HEADER_LEN + plen;
  if (end > pkt.length) fail('PACKET_TRUNCATED', `IPv6 payload length ${plen} is more than the ${pkt.length - IPV6_HEADER_LEN} bytes received`);
  let next = pkt[6]!;
  let off = IPV6_HEADER_LEN;
  // Each extension header is at least 8 bytes, so the loop ends within plen / 8 steps.
  for (;;) {
    if (next === IPPROTO_FRAGMENT) fail('PACKET_FRAGMENT', 'IPv6 fragment header: fragments not supported');
    if (next !== IPPROTO_HOPOPTS && next !== IPPROTO_ROUTING && next !== IPPROTO_DSTOPTS) break;
    if (next === IPPROTO_HOPOPTS && off !== IPV6_HEADER_LEN) {
      fail('PACKET_EXTENSION', 'IPv6 Hop-by-Hop options header not directly after the IPv6 header (RFC 8200 §4.1)');
    }
    if (off + 8 > end) fail('PACKET_TRUNCATED', `IPv6 extension header ${next} at offset ${off} runs past the payload`);
    const len = 8 * (1 + pkt[off + 1]!);
    if (off + len > end) fail('PACKET_TRUNCATED', `IPv6 extension header ${next} of ${len} bytes at offset ${off} runs past the payload`);
    if (next === IPPROTO_ROUTING && pkt[off + 3] !== 0) {
      fail('PACKET_EXTENSION', `IPv6 routing header (type ${pkt[off + 2]}) with ${pkt[off + 3]} segments left: not a router`);
    }
    next = pkt[off]!;
    off += len;
  }
  return {
    version: 6,
    src: pkt.slice(8, 24),
    dst: pkt.slice(24, 40),
    protocol: next,
    ttl: pkt[7]!,
    headerLength: off,
    length: end,
    payload: pkt.subarray(off, end),
  };
}

interface BuildCommon {
  src: Uint8Array;
  dst: Uint8Array;
  /** Upper-layer protocol (IPv4 Protocol, IPv6 Next Header). */
  protocol: number;
  payload: Uint8Array;
  /** TTL / Hop Limit; default 64. */
  ttl?: number;
}

export interface IPv4Fields extends BuildCommon {
  /** Identification; default 0 (fine with DF set, RFC 6864 §4.1). */
  id?: number;
  /** The DSCP/ECN byte; default 0. */
  tos?: number;
  /** Don't Fragment; default true. */
  dontFragment?: boolean;
}

export interface IPv6Fields extends BuildCommon {
  /** Traffic Class; default 0. */
  trafficClass?: number;
  /** 20-bit Flow Label; default 0. */
  flowLabel?: number;
}

function checkField(name: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 0 || v > max) fail('PACKET_FIELD', `${name} ${v} is not in 0..${max}`);
  return v;
}

function checkAddrs(src: Uint8Array, dst: Uint8Array, len: number, family: string): void {
  if (src.length !== len || dst.length !== len) {
    fail('ADDR_LENGTH', `${family} addresses are ${len} bytes, got ${src.length} and ${dst.length}`);
  }
}

/**
 * The fields of an IP header without the payload, for `allocIPPacket`: the IPv4 and IPv6 builder
 * fields together (those of the other family are ignored).
 */
export type IPHeaderFields = Omit<IPv4Fields & IPv6Fields, 'payload'>;

/** A zeroed IPv4 packet for `payloadLength` bytes of payload, its 20-byte header written. */
function allocIPv4(f: Omit<IPv4Fields, 'payload'>, payloadLength: number): Uint8Array {
  checkAddrs(f.src, f.dst, 4, 'IPv4');
  const total = IPV4_HEADER_LEN + payloadLength;
  if (total > IP_MAX_LEN) fail('PACKET_TOO_BIG', `IPv4 packet of ${total} bytes exceeds ${IP_MAX_LEN}`);
  const out = new Uint8Array(total);
  out[0] = 0x45;
  out[1] = checkField('tos', f.tos ?? 0, 0xff);
  out[2] = total >> 8;
  out[3] = total & 0xff;
  const id = checkField('id', f.id ?? 0, 0xffff);
  out[4] = id >> 8;
  out[5] = id & 0xff;
  out[6] = (f.dontFragment ?? true) ? IPV4_FLAG_DF >> 8 : 0;
  out[8] = checkField('ttl', f.ttl ?? DEFAULT_TTL, 0xff);
  out[9] = checkField('protocol', f.protocol, 0xff);
  out.set(f.src, 12);
  out.set(f.dst, 16);
  // Summed in place rather than through a subarray: a view of a small (on-heap) typed array
  // makes V8 move it off-heap, which costs more than building the packet.
  let sum = 0;
  for (let k = 0; k < IPV4_HEADER_LEN; k += 2) sum += (out[k]! << 8) | out[k + 1]!;
  const ck = finishChecksum(sum);
  out[10] = ck >> 8;
  out[11] = ck & 0xff;
  return out;
}

/** A zeroed IPv6 packet for `payloadLength` bytes of payload, its 40-byte header written. */
function allocIPv6(f: Omit<IPv6Fields, 'payload'>, payloadLength: number): Uint8Array {
  checkAddrs(f.src, f.dst, 16, 'IPv6');
  const plen = payloadLength;
  if (plen > IP_MAX_LEN) fail('PACKET_TOO_BIG', `IPv6 payload of ${plen} bytes exceeds ${IP_MAX_LEN} (no jumbograms)`);
  const tc = checkField('trafficClass', f.trafficClass ?? 0, 0xff);
  const fl = checkField('flowLabel', f.flowLabel ?? 0, 0xfffff);
  const out = new Uint8Array(IPV6_HEADER_LEN + plen);
  out[0] = 0x60 | (tc >> 4);
  out[1] = ((tc & 0x0f) << 4) | (fl >> 16);
  out[2] = (fl >> 8) & 0xff;
  out[3] = fl & 0xff;
  out[4] = plen >> 8;
  out[5] = plen & 0xff;
  out[6] = checkField('protocol', f.protocol, 0xff);
  out[7] = checkField('ttl', f.ttl ?? DEFAULT_TTL, 0xff);
  out.set(f.src, 8);
  out.set(f.dst, 24);
  return out;
}

/** Builds an IPv4 packet (20-byte header, no options) with a correct header checksum. */
export function buildIPv4(f: IPv4Fields): Uint8Array {
  const out = allocIPv4(f, f.payload.length);
  out.set(f.payload, IPV4_HEADER_LEN);
  return out;
}

/** Builds an IPv6 packet (40-byte header, no extension headers). */
export function buildIPv6(f: IPv6Fields): Uint8Array {
  const out = allocIPv6(f, f.payload.length);
  out.set(f.payload, IPV6_HEADER_LEN);
  return out;
}

/** The header length `allocIPPacket` writes for this source address: 20 (IPv4) or 40 (IPv6). */
export function ipHeaderLength(src: Uint8Array): number {
  if (src.length === 4) return IPV4_HEADER_LEN;
  if (src.length === 16) return IPV6_HEADER_LEN;
  return fail('ADDR_LENGTH', `an IP address is 4 or 16 bytes, got ${src.length}`);
}

/**
 * One allocation for a whole packet: a buffer of header + `payloadLength` bytes with the IPv4
 * or IPv6 header (by address length, as `buildIP` would write it) in place and the payload
 * zeroed, for the caller to write at `ipHeaderLength(f.src)` (= `length - payloadLength`).
 * Upper-layer builders use it to avoid building the payload in a buffer of its own and copying.
 */
export function allocIPPacket(f: IPHeaderFields, payloadLength: number): Uint8Array {
  if (!Number.isInteger(payloadLength) || payloadLength < 0) fail('PACKET_FIELD', `payload length ${payloadLength} is not a byte count`);
  if (f.src.length === 4) return allocIPv4(f, payloadLength);
  if (f.src.length === 16) return allocIPv6(f, payloadLength);
  return fail('ADDR_LENGTH', `an IP address is 4 or 16 bytes, got ${f.src.length}`);
}

/** Builds an IPv4 or IPv6 packet, chosen by the address length (4 or 16 bytes). */
export function buildIP(f: BuildCommon): Uint8Array {
  if (f.src.length === 4) return buildIPv4(f);
  if (f.src.length === 16) return buildIPv6(f);
  return fail('ADDR_LENGTH', `an IP address is 4 or 16 bytes, got ${f.src.length}`);
}
