/**
 * ICMP echo ("ping") for IPv4 (RFC 792) and IPv6 (RFC 4443 §4). Pure.
 *
 * Echo Request / Echo Reply message, the payload of the IP packet:
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   ┌───────────────┬───────────────┬───────────────────────────────┐
 *   │     Type      │     Code = 0  │           Checksum            │
 *   ├───────────────┴───────────────┼───────────────────────────────┤
 *   │           Identifier          │        Sequence Number        │
 *   ├───────────────────────────────┴───────────────────────────────┤
 *   │     Data ...                                                  │
 *   └───────────────────────────────────────────────────────────────┘
 *   ICMPv4 (IP protocol 1):  type 8 request, 0 reply; checksum over the ICMP message (RFC 792).
 *   ICMPv6 (Next Header 58): type 128 request, 129 reply (RFC 4443 §4.1, §4.2); the checksum
 *     also covers the IPv6 pseudo-header (RFC 4443 §2.3, RFC 8200 §8.1).
 *
 * Parsers here return null, never throw, for anything that is not a well-formed echo message
 * with a correct checksum: the netstack drops such packets silently.
 */
import { PacketError } from './addr.ts';
import { internetChecksum, pseudoHeaderSum, sumWords } from './checksum.ts';
import { buildIP, IPPROTO_ICMP, IPPROTO_ICMPV6, parsePacket, type IPPacket } from './ip.ts';

export const ICMPV4_ECHO_REPLY = 0; // RFC 792
export const ICMPV4_ECHO_REQUEST = 8; // RFC 792
export const ICMPV6_ECHO_REQUEST = 128; // RFC 4443 §4.1
export const ICMPV6_ECHO_REPLY = 129; // RFC 4443 §4.2
/** Type, code, checksum, identifier, sequence number. */
export const ICMP_ECHO_HEADER_LEN = 8;

export interface Echo {
  src: Uint8Array;
  dst: Uint8Array;
  id: number;
  seq: number;
  /** The echo data, a subarray of the input packet. */
  payload: Uint8Array;
}

export interface EchoFields {
  src: Uint8Array;
  dst: Uint8Array;
  /** Identifier, 0..65535. */
  id: number;
  /** Sequence number, 0..65535. */
  seq: number;
  payload?: Uint8Array;
  /** TTL / hop limit; default 64. */
  ttl?: number;
}

function checkU16(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new PacketError('PACKET_FIELD', `${name} ${v} is not in 0..65535`);
  return v;
}

function buildEcho(f: EchoFields, v4Type: number, v6Type: number): Uint8Array {
  const v6 = f.src.length === 16;
  const data = f.payload ?? new Uint8Array(0);
  const msg = new Uint8Array(ICMP_ECHO_HEADER_LEN + data.length);
  msg[0] = v6 ? v6Type : v4Type;
  const id = checkU16('id', f.id);
  const seq = checkU16('seq', f.seq);
  msg[4] = id >> 8;
  msg[5] = id & 0xff;
  msg[6] = seq >> 8;
  msg[7] = seq & 0xff;
  msg.set(data, ICMP_ECHO_HEADER_LEN);
  const protocol = v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
  // Validate the addresses (and size) before summing a pseudo-header over them.
  const pkt = buildIP({ src: f.src, dst: f.dst, protocol, payload: msg, ttl: f.ttl });
  const initial = v6 ? pseudoHeaderSum(f.src, f.dst, IPPROTO_ICMPV6, msg.length) : 0;
  const ck = internetChecksum(msg, initial);
  const at = pkt.length - msg.length;
  pkt[at + 2] = ck >> 8;
  pkt[at + 3] = ck & 0xff;
  return pkt;
}

/** A full IPv4 or IPv6 packet (by address length) carrying an echo request. */
export function buildEchoRequest(f: EchoFields): Uint8Array {
  return buildEcho(f, ICMPV4_ECHO_REQUEST, ICMPV6_ECHO_REQUEST);
}

/** A full IPv4 or IPv6 packet (by address length) carrying an echo reply. */
export function buildEchoReply(f: EchoFields): Uint8Array {
  return buildEcho(f, ICMPV4_ECHO_REPLY, ICMPV6_ECHO_REPLY);
}

function tryParse(pkt: Uint8Array): IPPacket | null {
  try {
    return parsePacket(pkt);
  } catch (e) {
    if (e instanceof PacketError) return null;
    throw e;
  }
}

/** Checks protocol, length, type, code 0 and checksum; returns the echo fields or null. */
function parseEcho(pkt: Uint8Array, v4Type: number, v6Type: number): (Echo & { ip: IPPacket }) | null {
  const ip = tryParse(pkt);
  if (!ip) return null;
  const msg = ip.payload;
  if (msg.length < ICMP_ECHO_HEADER_LEN) return null;
  if (ip.version === 4) {
    if (ip.protocol !== IPPROTO_ICMP || msg[0] !== v4Type) return null;
    if (sumWords(msg) !== 0xffff) return null;
  } else {
    if (ip.protocol !== IPPROTO_ICMPV6 || msg[0] !== v6Type) return null;
    if (sumWords(msg, pseudoHeaderSum(ip.src, ip.dst, IPPROTO_ICMPV6, msg.length)) !== 0xffff) return null;
  }
  if (msg[1] !== 0) return null;
  return {
    ip,
    src: ip.src,
    dst: ip.dst,
    id: (msg[4]! << 8) | msg[5]!,
    seq: (msg[6]! << 8) | msg[7]!,
    payload: msg.subarray(ICMP_ECHO_HEADER_LEN),
  };
}

/** The echo request in `packet`, or null when it is not a valid one. Never throws. */
export function parseEchoRequest(packet: Uint8Array): Echo | null {
  const e = parseEcho(packet, ICMPV4_ECHO_REQUEST, ICMPV6_ECHO_REQUEST);
  return e && { src: e.src, dst: e.dst, id: e.id, seq: e.seq, payload: e.payload };
}

/** The echo reply in `packet`, or null when it is not a valid one. Never throws. */
export function parseEchoReply(packet: Uint8Array): Echo | null {
  const e = parseEcho(packet, ICMPV4_ECHO_REPLY, ICMPV6_ECHO_REPLY);
  return e && { src: e.src, dst: e.dst, id: e.id, seq: e.seq, payload: e.payload };
}

/**
 * True for addresses that may not be the source of a reply nor the target of a request we answer:
 * unspecified, IPv4 limited broadcast, IPv4 multicast 224/4 (RFC 1112 §4), "this network" 0/8
 * (RFC 1122 §3.2.1.3), IPv6 multicast ff00::/8 (RFC 4291 §2.7).
 */
function isNonUnicast(a: Uint8Array): boolean {
  if (a.length === 4) return a[0] === 0 || a[0]! >= 224;
  if (a[0] === 0xff) return true;
  for (let k = 0; k < 16; k++) if (a[k] !== 0) return false;
  return true; // ::
}

/**
 * When `packet` is a valid echo request to an address for which `isLocal` is true, returns the
 * echo reply (source and destination swapped, same identifier, sequence number and data; TTL 64,
 * or `opts.ttl`); otherwise null. Requests from or to a multicast, broadcast or unspecified
 * address get no answer (a reply must come from a unicast address, RFC 4443 §4.2; RFC 1122
 * §3.2.2.6). Never throws on malformed input.
 */
export function answerEcho(
  packet: Uint8Array,
  isLocal: (dst: Uint8Array) => boolean,
  opts: { ttl?: number } = {},
): Uint8Array | null {
  const e = parseEcho(packet, ICMPV4_ECHO_REQUEST, ICMPV6_ECHO_REQUEST);
  if (!e) return null;
  if (isNonUnicast(e.src) || isNonUnicast(e.dst)) return null;
  if (!isLocal(e.dst)) return null;
  return buildEchoReply({ src: e.dst, dst: e.src, id: e.id, seq: e.seq, payload: e.payload, ttl: opts.ttl });
}
