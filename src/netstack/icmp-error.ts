/**
 * ICMP error messages: the ones this stack sends (destination unreachable, chiefly "port
 * unreachable" for UDP to a closed port) and reading the ones it receives so that a TCP or UDP
 * socket learns its peer is unreachable. Pure. Echo lives in icmp.ts.
 *
 * Error message, the payload of the IP packet (RFC 792; RFC 4443 §2.1, §3):
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   ┌───────────────┬───────────────┬───────────────────────────────┐
 *   │     Type      │     Code      │           Checksum            │
 *   ├───────────────┴───────────────┴───────────────────────────────┤
 *   │ unused (0) │ MTU (ICMPv4 3/4: low 16 bits; ICMPv6 2: all 32) │ pointer │
 *   ├───────────────────────────────────────────────────────────────┤
 *   │   As much of the invoking packet as fits, from its IP header: │
 *   │   IPv4: the whole message ≤ 576 bytes (RFC 1812 §4.3.2.3; at  │
 *   │   least IP header + 8 bytes, RFC 1122 §3.2.2);                │
 *   │   IPv6: ≤ 1280 bytes, the minimum MTU (RFC 4443 §2.4(c)).     │
 *   └───────────────────────────────────────────────────────────────┘
 *   ICMPv4 (protocol 1): checksum over the message. ICMPv6 (next header 58): also over the
 *   pseudo-header (RFC 4443 §2.3).
 *
 * Never sent (RFC 1122 §3.2.2; RFC 4443 §2.4(e)) in answer to: an ICMP error message (ICMPv4
 * types other than the known queries, ICMPv6 types < 128); a packet to a multicast, broadcast or
 * unspecified address; a packet from an address that does not name a single host (unspecified,
 * "this network" 0/8, loopback, multicast, class E 240/4 and broadcast; ::, ::1, ff00::/8); a
 * fragment (`parsePacket` refuses fragments) or a malformed packet. The sender must also limit
 * the rate of errors (RFC 4443 §2.4(f), RFC 1812 §4.3.2.8): that is the stack's job, it has the
 * clock. ICMPv4 errors go out with precedence 6 (TOS 0xc0, RFC 1812 §4.3.2.5) and without DF,
 * as Linux sends them, so that they match Linux's byte for byte apart from the IP ID.
 */
import { PacketError } from './addr.ts';
import { finishChecksum, pseudoHeaderSum, sumWords } from './checksum.ts';
import { allocIPPacket, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, parsePacket, type IPPacket } from './ip.ts';

/** ICMPv4 types and codes (RFC 792; codes 4 RFC 1191, 13 RFC 1812 §5.2.7.1). */
export const ICMPV4_DEST_UNREACH = 3;
export const ICMPV4_NET_UNREACH = 0;
export const ICMPV4_HOST_UNREACH = 1;
export const ICMPV4_PROTO_UNREACH = 2;
export const ICMPV4_PORT_UNREACH = 3;
export const ICMPV4_FRAG_NEEDED = 4;
export const ICMPV4_ADMIN_PROHIBITED = 13;
export const ICMPV4_SOURCE_QUENCH = 4; // deprecated; hosts ignore it (RFC 6633 §1)
export const ICMPV4_TIME_EXCEEDED = 11;
export const ICMPV4_PARAM_PROBLEM = 12;

/** ICMPv6 types and codes (RFC 4443 §3). */
export const ICMPV6_DEST_UNREACH = 1;
export const ICMPV6_NO_ROUTE = 0;
export const ICMPV6_ADMIN_PROHIBITED = 1;
export const ICMPV6_ADDR_UNREACH = 3;
export const ICMPV6_PORT_UNREACH = 4;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;
export const ICMPV6_PARAM_PROBLEM = 4;

/** Type, code, checksum and the 32-bit word after them. */
export const ICMP_ERROR_HEADER_LEN = 8;
/** Largest ICMPv4 error packet (RFC 1812 §4.3.2.3, RFC 1122 §3.2.2: 576, the minimum reassembly size). */
export const ICMPV4_ERROR_MAX_LEN = 576;
/** Largest ICMPv6 error packet: the IPv6 minimum MTU (RFC 4443 §2.4(c), RFC 8200 §5). */
export const ICMPV6_ERROR_MAX_LEN = 1280;
/** TOS of ICMPv4 errors: precedence 6, internetwork control (RFC 1812 §4.3.2.5; Linux too). */
const ICMPV4_ERROR_TOS = 0xc0;

export interface IcmpErrorOptions {
  /** Source of the error; default the invoking packet's destination (this host). */
  src?: Uint8Array;
  /** TTL / hop limit; default 64. */
  ttl?: number;
}

/** Transport endpoints from the quoted invoking packet: the packet this host (or peer) sent. */
export interface IcmpQuote {
  /** IPPROTO_TCP or IPPROTO_UDP. */
  protocol: number;
  src: Uint8Array;
  dst: Uint8Array;
  srcPort: number;
  dstPort: number;
  /** TCP only: the quoted sequence number, to check it is in flight (RFC 5927 §4.1). */
  seq?: number;
}

export interface IcmpError {
  version: 4 | 6;
  /** ICMPv4 3/11/12 or ICMPv6 1/2/3/4; interpret by `version`. */
  type: number;
  code: number;
  /**
   * True for "port unreachable" (ICMPv4 3/3, ICMPv6 1/4): nothing listens on the quoted
   * destination port, the error a TCP connect maps to ECONNREFUSED.
   */
  portUnreachable: boolean;
  /**
   * True for "communication administratively prohibited" (ICMPv4 3/13, RFC 1812 §5.2.7.1;
   * ICMPv6 1/1): a packet filter refused the packet. A Pierce node sends it for a SYN its
   * policy denies, so a client can say "the policy does not allow this" instead of timing out.
   */
  adminProhibited: boolean;
  /** The host or router that sent the error (the outer source address). */
  from: Uint8Array;
  /**
   * Next-hop MTU for ICMPv4 "fragmentation needed" (type 3 code 4, RFC 1191 §4; 0 from old
   * routers) and ICMPv6 "packet too big" (type 2, RFC 4443 §3.2).
   */
  mtu?: number;
  quoted: IcmpQuote;
}

function tryParse(pkt: Uint8Array): IPPacket | null {
  try {
    return parsePacket(pkt);
  } catch (e) {
    if (e instanceof PacketError) return null;
    throw e;
  }
}

/** ICMPv4 query (non-error) types (RFC 792, RFC 1256, RFC 950); anything else counts as an error. */
function isIcmpv4Query(type: number): boolean {
  switch (type) {
    case 0: // echo reply
    case 8: // echo request
    case 9: // router advertisement (RFC 1256)
    case 10: // router solicitation (RFC 1256)
    case 13: // timestamp
    case 14: // timestamp reply
    case 15: // information request
    case 16: // information reply
    case 17: // address mask request (RFC 950)
    case 18: // address mask reply (RFC 950)
      return true;
    default:
      return false;
  }
}

function isZero(a: Uint8Array, from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (a[k] !== 0) return false;
  return true;
}

/** A source that names a single host (RFC 1122 §3.2.2; RFC 4443 §2.4(e.5)). */
function isSingleHostSource(a: Uint8Array): boolean {
  if (a.length === 4) {
    const x = a[0]!;
    return x !== 0 && x !== 127 && x < 224; // 0/8, loopback 127/8, multicast 224/4, 240/4 + broadcast
  }
  if (a[0] === 0xff) return false; // multicast ff00::/8
  return !(isZero(a, 0, 15) && (a[15] === 0 || a[15] === 1)); // :: and ::1
}

/** A destination that is one host: not multicast, broadcast or unspecified. */
function isUnicastDestination(a: Uint8Array): boolean {
  if (a.length === 4) {
    const x = a[0]!;
    return x !== 0 && x < 224; // 0/8, multicast 224/4, 240/4 incl. 255.255.255.255
  }
  if (a[0] === 0xff) return false;
  return !isZero(a, 0, 16);
}

/**
 * True when the rules of RFC 1122 §3.2.2 and RFC 4443 §2.4(e) allow an ICMP error in answer to
 * this (parsed) packet: it is not itself an ICMP error, and it is from a single host to a
 * unicast address.
 */
export function icmpErrorAllowed(ip: IPPacket): boolean {
  if (!isSingleHostSource(ip.src) || !isUnicastDestination(ip.dst)) return false;
  if (ip.version === 4 && ip.protocol === IPPROTO_ICMP) {
    return ip.payload.length > 0 && isIcmpv4Query(ip.payload[0]!);
  }
  if (ip.version === 6 && ip.protocol === IPPROTO_ICMPV6) {
    return ip.payload.length > 0 && ip.payload[0]! >= 128; // RFC 4443 §2.1: errors are 0..127
  }
  return true;
}

function checkByte(name: string, v: number): number {
  if ((v & 0xff) !== v) throw new PacketError('PACKET_FIELD', `ICMP ${name} ${v} is not in 0..255`);
  return v;
}

/**
 * An ICMP error of `type` and `code` (ICMPv4 or ICMPv6 numbers, matching the family of
 * `packet`) answering `packet`, quoting as much of it as fits; `rest` is the 32-bit word after
 * the checksum (MTU or pointer; default 0). Returns null when the packet is malformed or may not
 * be answered (see `icmpErrorAllowed`). Throws PacketError only for bad arguments: PACKET_FIELD
 * (type, code, rest or ttl out of range), ADDR_LENGTH (`opts.src` of the other family).
 */
export function buildIcmpError(packet: Uint8Array, type: number, code: number, opts: IcmpErrorOptions = {}, rest = 0): Uint8Array | null {
  checkByte('type', type);
  checkByte('code', code);
  if (rest >>> 0 !== rest) throw new PacketError('PACKET_FIELD', `ICMP word ${rest} is not in 0..2^32-1`);
  const ip = tryParse(packet);
  if (!ip || !icmpErrorAllowed(ip)) return null;
  const v6 = ip.version === 6;
  const headers = (v6 ? 40 : 20) + ICMP_ERROR_HEADER_LEN;
  const quote = Math.min(ip.length, (v6 ? ICMPV6_ERROR_MAX_LEN : ICMPV4_ERROR_MAX_LEN) - headers);
  const msgLen = ICMP_ERROR_HEADER_LEN + quote;
  const src = opts.src ?? ip.dst;
  const pkt = allocIPPacket(
    v6
      ? { src, dst: ip.src, protocol: IPPROTO_ICMPV6, ttl: opts.ttl }
      : { src, dst: ip.src, protocol: IPPROTO_ICMP, ttl: opts.ttl, tos: ICMPV4_ERROR_TOS, dontFragment: false },
    msgLen,
  );
  const at = pkt.length - msgLen;
  pkt[at] = type;
  pkt[at + 1] = code;
  pkt[at + 4] = rest >>> 24;
  pkt[at + 5] = rest >>> 16;
  pkt[at + 6] = rest >>> 8;
  pkt[at + 7] = rest;
  pkt.set(packet.subarray(0, quote), at + ICMP_ERROR_HEADER_LEN);
  const msg = pkt.subarray(at);
  const ck = finishChecksum(sumWords(msg, v6 ? pseudoHeaderSum(src, ip.src, IPPROTO_ICMPV6, msgLen) : 0));
  pkt[at + 2] = ck >> 8;
  pkt[at + 3] = ck & 0xff;
  return pkt;
}

/**
 * "Port unreachable" answering `packet` (a UDP datagram to a closed port): ICMPv4 type 3 code 3
 * (RFC 792) or ICMPv6 type 1 code 4 (RFC 4443 §3.1), or null when no error may be sent.
 */
export function buildPortUnreachable(packet: Uint8Array, opts: IcmpErrorOptions = {}): Uint8Array | null {
  const v6 = packet.length > 0 && packet[0]! >> 4 === 6;
  return v6
    ? buildIcmpError(packet, ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH, opts)
    : buildIcmpError(packet, ICMPV4_DEST_UNREACH, ICMPV4_PORT_UNREACH, opts);
}

function u32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

/** The endpoints in a quoted IPv4 or IPv6 packet (truncated, so not `parsePacket`), or null. */
function parseQuote(q: Uint8Array, version: 4 | 6): IcmpQuote | null {
  let off: number;
  let protocol: number;
  let src: Uint8Array;
  let dst: Uint8Array;
  if (version === 4) {
    if (q.length < 20 || q[0]! >> 4 !== 4) return null;
    off = (q[0]! & 0x0f) * 4;
    if (off < 20) return null;
    if ((((q[6]! & 0x1f) << 8) | q[7]!) !== 0) return null; // a later fragment: no ports in it
    protocol = q[9]!;
    src = q.slice(12, 16);
    dst = q.slice(16, 20);
  } else {
    if (q.length < 40 || q[0]! >> 4 !== 6) return null;
    protocol = q[6]!;
    off = 40;
    // Skip extension headers (RFC 8200 §4); each is at least 8 bytes, so this ends.
    for (;;) {
      if (protocol === 0 || protocol === 43 || protocol === 60) {
        if (off + 2 > q.length) return null;
        const len = 8 * (1 + q[off + 1]!);
        protocol = q[off]!;
        off += len;
      } else if (protocol === 44) {
        if (off + 8 > q.length) return null;
        if ((((q[off + 2]! << 8) | q[off + 3]!) & 0xfff8) !== 0) return null; // not the first fragment
        protocol = q[off]!;
        off += 8;
      } else {
        break;
      }
    }
    src = q.slice(8, 24);
    dst = q.slice(24, 40);
  }
  if (protocol !== IPPROTO_TCP && protocol !== IPPROTO_UDP) return null;
  if (off + 8 > q.length) return null; // RFC 792: at least 64 bits of the original data
  const quote: IcmpQuote = {
    protocol,
    src,
    dst,
    srcPort: (q[off]! << 8) | q[off + 1]!,
    dstPort: (q[off + 2]! << 8) | q[off + 3]!,
  };
  if (protocol === IPPROTO_TCP) quote.seq = u32(q, off + 4);
  return quote;
}

/**
 * Reads an ICMP error (ICMPv4 destination unreachable, time exceeded, parameter problem; ICMPv6
 * destination unreachable, packet too big, time exceeded, parameter problem) about a TCP or UDP
 * packet. Returns null for anything else: other types, a wrong checksum, a quote too short to
 * hold the ports, a malformed packet. Never throws on bad input. The caller should check the
 * quote against a live socket (addresses, ports, and for TCP the sequence number, RFC 5927)
 * before acting on it.
 */
export function parseIcmpError(packet: Uint8Array): IcmpError | null {
  const ip = tryParse(packet);
  if (!ip) return null;
  const m = ip.payload;
  if (m.length < ICMP_ERROR_HEADER_LEN) return null;
  const type = m[0]!;
  const code = m[1]!;
  let mtu: number | undefined;
  if (ip.version === 4) {
    if (ip.protocol !== IPPROTO_ICMP) return null;
    if (type !== ICMPV4_DEST_UNREACH && type !== ICMPV4_TIME_EXCEEDED && type !== ICMPV4_PARAM_PROBLEM) return null;
    if (sumWords(m) !== 0xffff) return null;
    if (type === ICMPV4_DEST_UNREACH && code === ICMPV4_FRAG_NEEDED) mtu = (m[6]! << 8) | m[7]!;
  } else {
    if (ip.protocol !== IPPROTO_ICMPV6) return null;
    if (type < ICMPV6_DEST_UNREACH || type > ICMPV6_PARAM_PROBLEM) return null;
    if (sumWords(m, pseudoHeaderSum(ip.src, ip.dst, IPPROTO_ICMPV6, m.length)) !== 0xffff) return null;
    if (type === ICMPV6_PACKET_TOO_BIG) mtu = u32(m, 4);
  }
  const quoted = parseQuote(m.subarray(ICMP_ERROR_HEADER_LEN), ip.version);
  if (!quoted) return null;
  const portUnreachable =
    ip.version === 4
      ? type === ICMPV4_DEST_UNREACH && code === ICMPV4_PORT_UNREACH
      : type === ICMPV6_DEST_UNREACH && code === ICMPV6_PORT_UNREACH;
  const adminProhibited =
    ip.version === 4
      ? type === ICMPV4_DEST_UNREACH && code === ICMPV4_ADMIN_PROHIBITED
      : type === ICMPV6_DEST_UNREACH && code === ICMPV6_ADMIN_PROHIBITED;
  const e: IcmpError = { version: ip.version, type, code, portUnreachable, adminProhibited, from: ip.src, quoted };
  if (mtu !== undefined) e.mtu = mtu;
  return e;
}
