/**
 * UDP datagram codec (RFC 768; IPv6 rules from RFC 8200 §8.1). Pure.
 *
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   ┌───────────────────────────────┬───────────────────────────────┐
 *   │          Source Port          │       Destination Port        │
 *   ├───────────────────────────────┼───────────────────────────────┤
 *   │            Length             │           Checksum            │
 *   ├───────────────────────────────┴───────────────────────────────┤
 *   │                             Data …                            │
 *   └───────────────────────────────────────────────────────────────┘
 *   Length: header + data in bytes, ≥ 8. Checksum: over the pseudo-header (see checksum.ts), the
 *   header and the data. A computed checksum of 0 is sent as 0xffff; a received 0 means "no
 *   checksum", allowed over IPv4 (RFC 768) but not over IPv6 (RFC 8200 §8.1: "IPv6 receivers
 *   must discard UDP packets containing a zero checksum"). This node always sends one.
 *
 * Bytes after Length (the IP payload being longer) are ignored, as Linux does. Errors are
 * `PacketError`: UDP_TRUNCATED (fewer than 8 bytes, or Length beyond the bytes received),
 * UDP_LENGTH (Length < 8), UDP_CHECKSUM (parse); PACKET_FIELD, PACKET_TOO_BIG, ADDR_LENGTH (build).
 */
import { PacketError } from './addr.ts';
import { finishChecksum, pseudoHeaderSum, sumWords } from './checksum.ts';
import { allocIPPacket, IPPROTO_UDP } from './ip.ts';

export const UDP_HEADER_LEN = 8;
/** The most a 16-bit Length field can describe (header included). */
export const UDP_MAX_LEN = 0xffff;

export interface UdpDatagram {
  srcPort: number;
  dstPort: number;
  /** The datagram data: a subarray of the input when parsed (no copy). */
  payload: Uint8Array;
}

function fail(code: string, message: string): never {
  throw new PacketError(code, message);
}

/**
 * Parses a UDP datagram (the IP payload) sent from `src` to `dst` (both 4 or both 16 bytes).
 * Throws PacketError UDP_TRUNCATED, UDP_LENGTH, UDP_CHECKSUM (or ADDR_LENGTH for bad addresses).
 */
export function parseUdp(payload: Uint8Array, src: Uint8Array, dst: Uint8Array): UdpDatagram {
  const b = payload;
  if (b.length < UDP_HEADER_LEN) fail('UDP_TRUNCATED', `UDP datagram of ${b.length} bytes is shorter than its 8-byte header`);
  const len = (b[4]! << 8) | b[5]!;
  if (len < UDP_HEADER_LEN) fail('UDP_LENGTH', `UDP length ${len} is less than 8`);
  if (len > b.length) fail('UDP_TRUNCATED', `UDP length ${len} is more than the ${b.length} bytes received`);
  const ck = (b[6]! << 8) | b[7]!;
  const dgram = len === b.length ? b : b.subarray(0, len);
  if (ck === 0) {
    if (src.length === 16) fail('UDP_CHECKSUM', 'UDP over IPv6 without a checksum (RFC 8200 §8.1)');
    if (src.length !== 4 || dst.length !== 4) fail('ADDR_LENGTH', `UDP addresses must both be 4 or 16 bytes, got ${src.length} and ${dst.length}`);
  } else if (sumWords(dgram, pseudoHeaderSum(src, dst, IPPROTO_UDP, len)) !== 0xffff) {
    fail('UDP_CHECKSUM', 'UDP checksum is wrong');
  }
  return {
    srcPort: (b[0]! << 8) | b[1]!,
    dstPort: (b[2]! << 8) | b[3]!,
    payload: b.subarray(UDP_HEADER_LEN, len),
  };
}

function checkPort(name: string, v: number): number {
  if ((v & 0xffff) !== v) fail('PACKET_FIELD', `UDP ${name} ${v} is not in 0..65535`);
  return v;
}

/** Writes the datagram into b[at..end) and fills in the checksum (0 sent as 0xffff). */
function writeDatagram(b: Uint8Array, at: number, d: UdpDatagram, src: Uint8Array, dst: Uint8Array): void {
  const sp = checkPort('source port', d.srcPort);
  const dp = checkPort('destination port', d.dstPort);
  const len = b.length - at;
  b[at] = sp >>> 8;
  b[at + 1] = sp;
  b[at + 2] = dp >>> 8;
  b[at + 3] = dp;
  b[at + 4] = len >>> 8;
  b[at + 5] = len;
  b.set(d.payload, at + UDP_HEADER_LEN);
  // Header words summed in place (no subarray, see tcp/segment.ts), then the payload.
  const sum = pseudoHeaderSum(src, dst, IPPROTO_UDP, len) + sp + dp + len;
  const ck = finishChecksum(sumWords(d.payload, sum)) || 0xffff;
  b[at + 6] = ck >>> 8;
  b[at + 7] = ck;
}

function udpLength(d: UdpDatagram): number {
  const len = UDP_HEADER_LEN + d.payload.length;
  if (len > UDP_MAX_LEN) fail('PACKET_TOO_BIG', `UDP datagram of ${len} bytes exceeds ${UDP_MAX_LEN}`);
  return len;
}

/** The UDP datagram bytes (header + payload) with a checksum for `src` → `dst`. */
export function buildUdp(d: UdpDatagram, src: Uint8Array, dst: Uint8Array): Uint8Array {
  const out = new Uint8Array(udpLength(d));
  writeDatagram(out, 0, d, src, dst);
  return out;
}

/**
 * The whole IPv4 or IPv6 packet (by address length; header as `buildIP` writes it, TTL / hop
 * limit `ttl`, default 64) carrying the datagram, in a single allocation. Throws PacketError
 * PACKET_FIELD, PACKET_TOO_BIG, ADDR_LENGTH.
 */
export function buildUdpPacket(d: UdpDatagram, src: Uint8Array, dst: Uint8Array, ttl?: number): Uint8Array {
  const len = udpLength(d);
  const pkt = allocIPPacket({ src, dst, protocol: IPPROTO_UDP, ttl }, len);
  writeDatagram(pkt, pkt.length - len, d, src, dst);
  return pkt;
}
