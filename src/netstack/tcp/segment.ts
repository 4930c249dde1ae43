/**
 * TCP segment codec (RFC 9293 §3.1 header, §3.2 options): a length-checked parse with checksum
 * verification, and builders for the segment alone or the whole IP packet. Pure.
 *
 * Header (RFC 9293 §3.1):
 *    0                   1                   2                   3
 *    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *   ┌───────────────────────────────┬───────────────────────────────┐
 *   │          Source Port          │       Destination Port        │
 *   ├───────────────────────────────┴───────────────────────────────┤
 *   │                        Sequence Number                        │
 *   ├───────────────────────────────────────────────────────────────┤
 *   │                    Acknowledgment Number                      │
 *   ├───────┬───────┬─┬─┬─┬─┬─┬─┬─┬─┬───────────────────────────────┤
 *   │  Data │       │C│E│U│A│P│R│S│F│                               │
 *   │ Offset│ Rsrvd │W│C│R│C│S│S│Y│I│            Window             │
 *   │       │       │R│E│G│K│H│T│N│N│                               │
 *   ├───────┴───────┴─┴─┴─┴─┴─┴─┴─┴─┼───────────────────────────────┤
 *   │           Checksum            │         Urgent Pointer        │
 *   ├───────────────────────────────┴───────────────────────────────┤
 *   │                   [Options]  (Data Offset > 5)                │
 *   ├───────────────────────────────────────────────────────────────┤
 *   │                             Data …                            │
 *   └───────────────────────────────────────────────────────────────┘
 *   Data Offset: header length in 32-bit words, 5..15. Checksum: over the pseudo-header
 *   (IPv4: RFC 9293 §3.1; IPv6: RFC 8200 §8.1; see checksum.ts), the header and the data.
 *
 * Options (RFC 9293 §3.2): kind 0 End of Option List and kind 1 No-Operation are one byte; every
 * other option is kind, length (counting both), data:
 *   kind 2  MSS             len 4   ┌──02──┬──04──┬── MSS (16) ──┐          RFC 9293 §3.7.1
 *   kind 3  Window Scale    len 3   ┌──03──┬──03──┬─shift─┐                 RFC 7323 §2.2
 *   kind 4  SACK-Permitted  len 2   ┌──04──┬──02──┐                         RFC 2018 §2
 *   kind 5  SACK            len 2+8n┌──05──┬─len──┬ (left, right) × n ┐     RFC 2018 §3, n 1..4
 *   kind 8  Timestamps      len 10  ┌──08──┬──0a──┬ TSval (32) ┬ TSecr (32) ┐ RFC 7323 §3.2
 * Unknown kinds are skipped by their length. A length below 2, running past the header, or
 * wrong for a known kind is an error (RFC 9293 §3.2: "MUST handle an illegal option length").
 *
 * Built options are laid out as Linux lays them out (tcp_options_write), each on a 32-bit
 * boundary with leading NOPs, so no trailing padding is ever needed:
 *   MSS(4) │ SACK-Perm+TS(12) or NOP NOP TS(12) │ NOP NOP SACK-Perm(4) if no TS │ NOP WS(4) │
 *   NOP NOP SACK(4+8n)
 * The option space is 40 bytes: with timestamps at most 3 SACK blocks fit.
 *
 * Errors are `PacketError`: TCP_TRUNCATED, TCP_OFFSET, TCP_CHECKSUM, TCP_OPTION (parse);
 * PACKET_FIELD, TCP_OPTION, PACKET_TOO_BIG, ADDR_LENGTH (build).
 */
import { PacketError } from '../addr.ts';
import { pseudoHeaderSum, sumWords, finishChecksum } from '../checksum.ts';
import { allocIPPacket, IPPROTO_TCP } from '../ip.ts';

/** Control bits (RFC 9293 §3.1; ECE and CWR from RFC 3168 §6.1). */
export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;
export const URG = 0x20;
export const ECE = 0x40;
export const CWR = 0x80;

/** The fixed header, and the most Data Offset can describe (15 words) (RFC 9293 §3.1). */
export const TCP_HEADER_LEN = 20;
export const TCP_MAX_HEADER_LEN = 60;
export const TCP_MAX_OPTIONS_LEN = TCP_MAX_HEADER_LEN - TCP_HEADER_LEN;

/** Option kinds (IANA "TCP Option Kind Numbers") and their lengths. */
export const TCPOPT_EOL = 0; // RFC 9293 §3.2
export const TCPOPT_NOP = 1; // RFC 9293 §3.2
export const TCPOPT_MSS = 2; // RFC 9293 §3.2
export const TCPOPT_WINDOW_SCALE = 3; // RFC 7323 §2.2
export const TCPOPT_SACK_PERMITTED = 4; // RFC 2018 §2
export const TCPOPT_SACK = 5; // RFC 2018 §3
export const TCPOPT_TIMESTAMP = 8; // RFC 7323 §3.2
export const TCPOLEN_MSS = 4;
export const TCPOLEN_WINDOW_SCALE = 3;
export const TCPOLEN_SACK_PERMITTED = 2;
export const TCPOLEN_SACK_BASE = 2;
export const TCPOLEN_SACK_PER_BLOCK = 8;
export const TCPOLEN_TIMESTAMP = 10;
/** The largest window shift; larger received values are taken as 14 (RFC 7323 §2.3). */
export const TCP_MAX_WINDOW_SCALE = 14;
/** SACK blocks that fit in the option space (RFC 2018 §3): (40 − 2) / 8. */
export const TCP_MAX_SACK_BLOCKS = 4;

export interface SackBlock {
  /** First sequence number of the block. */
  left: number;
  /** Sequence number just after the block. */
  right: number;
}

export interface TcpOptions {
  /** Maximum Segment Size, 0..65535 (RFC 9293 §3.7.1; only meaningful on SYN). */
  mss?: number;
  /** Window scale shift count (RFC 7323 §2); values > 14 received are clamped to 14 (§2.3). */
  windowScale?: number;
  /** SACK-Permitted (RFC 2018 §2). */
  sackPermitted?: boolean;
  /** SACK blocks (RFC 2018 §3), up to 4 (3 with timestamps). */
  sack?: SackBlock[];
  /** Timestamps option (RFC 7323 §3): TSval and TSecr, unsigned 32-bit. */
  timestamp?: { value: number; echo: number };
}

export interface TcpSegment {
  srcPort: number;
  dstPort: number;
  /** Sequence number, unsigned 32-bit. */
  seq: number;
  /** Acknowledgment number, unsigned 32-bit (meaningful when ACK is set). */
  ack: number;
  /** Control bits: FIN | SYN | RST | PSH | ACK | URG | ECE | CWR. */
  flags: number;
  /** The raw 16-bit window field (not yet shifted by the window scale). */
  window: number;
  /** Urgent pointer (meaningful when URG is set). */
  urgent: number;
  options: TcpOptions;
  /** Segment data: a subarray of the input when parsed (no copy). */
  payload: Uint8Array;
}

/** What the builders take: a segment whose options and payload may be left out. */
export type TcpSegmentFields = Omit<TcpSegment, 'payload' | 'options'> & {
  options?: TcpOptions;
  payload?: Uint8Array;
};

const EMPTY = new Uint8Array(0);
const NO_OPTIONS: TcpOptions = Object.freeze({});

function fail(code: string, message: string): never {
  throw new PacketError(code, message);
}

// ---------------------------------------------------------------------------------------------
// Parse

function u32(b: Uint8Array, i: number): number {
  return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
}

function optionLengthError(kind: number, len: number, want: string): never {
  return fail('TCP_OPTION', `TCP option ${kind} has length ${len}, want ${want}`);
}

/** Parses the option bytes b[from..to) (RFC 9293 §3.2). */
function parseOptions(b: Uint8Array, from: number, to: number): TcpOptions {
  const o: TcpOptions = {};
  let i = from;
  while (i < to) {
    const kind = b[i]!;
    if (kind === TCPOPT_EOL) break;
    if (kind === TCPOPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= to) fail('TCP_OPTION', `TCP option ${kind} at offset ${i} has no length byte`);
    const len = b[i + 1]!;
    if (len < 2) fail('TCP_OPTION', `TCP option ${kind} at offset ${i} has length ${len} (< 2)`);
    if (i + len > to) fail('TCP_OPTION', `TCP option ${kind} of ${len} bytes at offset ${i} runs past the header (${to})`);
    switch (kind) {
      case TCPOPT_MSS:
        if (len !== TCPOLEN_MSS) optionLengthError(kind, len, '4');
        o.mss = (b[i + 2]! << 8) | b[i + 3]!;
        break;
      case TCPOPT_WINDOW_SCALE:
        if (len !== TCPOLEN_WINDOW_SCALE) optionLengthError(kind, len, '3');
        o.windowScale = Math.min(b[i + 2]!, TCP_MAX_WINDOW_SCALE);
        break;
      case TCPOPT_SACK_PERMITTED:
        if (len !== TCPOLEN_SACK_PERMITTED) optionLengthError(kind, len, '2');
        o.sackPermitted = true;
        break;
      case TCPOPT_SACK: {
        const n = (len - TCPOLEN_SACK_BASE) / TCPOLEN_SACK_PER_BLOCK;
        // len ≤ 40 here, so n ≤ 4 follows from fitting in the header.
        if (n < 1 || !Number.isInteger(n)) optionLengthError(kind, len, '2 + 8n');
        const blocks: SackBlock[] = [];
        for (let k = i + 2; k < i + len; k += 8) blocks.push({ left: u32(b, k), right: u32(b, k + 4) });
        o.sack = blocks;
        break;
      }
      case TCPOPT_TIMESTAMP:
        if (len !== TCPOLEN_TIMESTAMP) optionLengthError(kind, len, '10');
        o.timestamp = { value: u32(b, i + 2), echo: u32(b, i + 6) };
        break;
      default:
        break; // unknown kind: skipped by its length (RFC 9293 §3.2)
    }
    i += len;
  }
  return o;
}

/**
 * Parses a TCP segment (the IP payload) sent from `src` to `dst` (both 4 or both 16 bytes; they
 * enter the checksum). Checks length, Data Offset, checksum and options; throws PacketError
 * TCP_TRUNCATED, TCP_OFFSET, TCP_CHECKSUM, TCP_OPTION (or ADDR_LENGTH for bad addresses).
 */
export function parseTcp(payload: Uint8Array, src: Uint8Array, dst: Uint8Array): TcpSegment {
  const b = payload;
  const n = b.length;
  if (n < TCP_HEADER_LEN) fail('TCP_TRUNCATED', `TCP segment of ${n} bytes is shorter than its 20-byte header`);
  const off = (b[12]! >> 4) * 4;
  if (off < TCP_HEADER_LEN) fail('TCP_OFFSET', `TCP data offset ${off / 4} is less than 5`);
  if (off > n) fail('TCP_OFFSET', `TCP header of ${off} bytes in a ${n}-byte segment`);
  if (sumWords(b, pseudoHeaderSum(src, dst, IPPROTO_TCP, n)) !== 0xffff) fail('TCP_CHECKSUM', 'TCP checksum is wrong');
  return {
    srcPort: (b[0]! << 8) | b[1]!,
    dstPort: (b[2]! << 8) | b[3]!,
    seq: u32(b, 4),
    ack: u32(b, 8),
    flags: b[13]!,
    window: (b[14]! << 8) | b[15]!,
    urgent: (b[18]! << 8) | b[19]!,
    options: off > TCP_HEADER_LEN ? parseOptions(b, TCP_HEADER_LEN, off) : {},
    payload: b.subarray(off),
  };
}

// ---------------------------------------------------------------------------------------------
// Build

/**
 * The bytes `buildTcp` spends on these options (a multiple of 4, at most 40). The TCP state
 * machine needs it to size segments (RFC 9293 §3.7.1: options count against the MSS).
 * Throws TCP_OPTION when they do not fit.
 */
export function tcpOptionsLength(o: TcpOptions): number {
  let len = 0;
  if (o.mss !== undefined) len += 4;
  if (o.timestamp !== undefined) len += 12; // SACK-Permitted, when set, rides in the same 12
  else if (o.sackPermitted) len += 4;
  if (o.windowScale !== undefined) len += 4;
  const sack = o.sack;
  if (sack !== undefined && sack.length > 0) {
    if (sack.length > TCP_MAX_SACK_BLOCKS) fail('TCP_OPTION', `${sack.length} SACK blocks, at most ${TCP_MAX_SACK_BLOCKS}`);
    len += 4 + 8 * sack.length;
  }
  if (len > TCP_MAX_OPTIONS_LEN) fail('TCP_OPTION', `TCP options need ${len} bytes, only ${TCP_MAX_OPTIONS_LEN} fit`);
  return len;
}

function badField(name: string, v: number, max: string): never {
  return fail('PACKET_FIELD', `TCP ${name} ${v} is not in 0..${max}`);
}

function checkU16(name: string, v: number): number {
  if ((v & 0xffff) !== v) badField(name, v, '65535');
  return v;
}

function checkU32(name: string, v: number): number {
  if (v >>> 0 !== v) badField(name, v, '2^32-1');
  return v;
}

function put16(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 8;
  b[i + 1] = v;
}

function put32(b: Uint8Array, i: number, v: number): void {
  b[i] = v >>> 24;
  b[i + 1] = v >>> 16;
  b[i + 2] = v >>> 8;
  b[i + 3] = v;
}

/** Writes the options at b[i..] in the Linux layout; `tcpOptionsLength` has checked they fit. */
function writeOptions(b: Uint8Array, i: number, o: TcpOptions): void {
  if (o.mss !== undefined) {
    b[i] = TCPOPT_MSS;
    b[i + 1] = TCPOLEN_MSS;
    put16(b, i + 2, checkU16('MSS', o.mss));
    i += 4;
  }
  const ts = o.timestamp;
  if (ts !== undefined) {
    if (o.sackPermitted) {
      b[i] = TCPOPT_SACK_PERMITTED;
      b[i + 1] = TCPOLEN_SACK_PERMITTED;
    } else {
      b[i] = TCPOPT_NOP;
      b[i + 1] = TCPOPT_NOP;
    }
    b[i + 2] = TCPOPT_TIMESTAMP;
    b[i + 3] = TCPOLEN_TIMESTAMP;
    put32(b, i + 4, checkU32('TSval', ts.value));
    put32(b, i + 8, checkU32('TSecr', ts.echo));
    i += 12;
  } else if (o.sackPermitted) {
    b[i] = TCPOPT_NOP;
    b[i + 1] = TCPOPT_NOP;
    b[i + 2] = TCPOPT_SACK_PERMITTED;
    b[i + 3] = TCPOLEN_SACK_PERMITTED;
    i += 4;
  }
  if (o.windowScale !== undefined) {
    const ws = o.windowScale;
    if ((ws & 0xff) !== ws || ws > TCP_MAX_WINDOW_SCALE) badField('window scale', ws, String(TCP_MAX_WINDOW_SCALE));
    b[i] = TCPOPT_NOP;
    b[i + 1] = TCPOPT_WINDOW_SCALE;
    b[i + 2] = TCPOLEN_WINDOW_SCALE;
    b[i + 3] = ws;
    i += 4;
  }
  const sack = o.sack;
  if (sack !== undefined && sack.length > 0) {
    b[i] = TCPOPT_NOP;
    b[i + 1] = TCPOPT_NOP;
    b[i + 2] = TCPOPT_SACK;
    b[i + 3] = TCPOLEN_SACK_BASE + TCPOLEN_SACK_PER_BLOCK * sack.length;
    i += 4;
    for (let k = 0; k < sack.length; k++) {
      const blk = sack[k]!;
      put32(b, i, checkU32('SACK left edge', blk.left));
      put32(b, i + 4, checkU32('SACK right edge', blk.right));
      i += 8;
    }
  }
}

/**
 * Writes the segment into b[at..end) (exactly header + options + payload bytes) and fills in the
 * checksum. `optLen` is `tcpOptionsLength(options)`.
 */
function writeSegment(
  b: Uint8Array,
  at: number,
  seg: TcpSegmentFields,
  options: TcpOptions,
  optLen: number,
  payload: Uint8Array,
  src: Uint8Array,
  dst: Uint8Array,
): void {
  put16(b, at, checkU16('source port', seg.srcPort));
  put16(b, at + 2, checkU16('destination port', seg.dstPort));
  put32(b, at + 4, checkU32('sequence number', seg.seq));
  put32(b, at + 8, checkU32('acknowledgment number', seg.ack));
  b[at + 12] = ((TCP_HEADER_LEN + optLen) >> 2) << 4;
  if ((seg.flags & 0xff) !== seg.flags) badField('flags', seg.flags, '255');
  b[at + 13] = seg.flags;
  put16(b, at + 14, checkU16('window', seg.window));
  put16(b, at + 18, checkU16('urgent pointer', seg.urgent));
  if (optLen > 0) writeOptions(b, at + TCP_HEADER_LEN, options);
  const hl = TCP_HEADER_LEN + optLen;
  b.set(payload, at + hl);
  // Checksum: the header words summed in place (no subarray: a view of a small on-heap array
  // costs more than the whole build), then the payload, which starts on a word boundary.
  let sum = pseudoHeaderSum(src, dst, IPPROTO_TCP, hl + payload.length);
  for (let k = at; k < at + hl; k += 2) sum += (b[k]! << 8) | b[k + 1]!;
  put16(b, at + 16, finishChecksum(sumWords(payload, sum)));
}

/**
 * The TCP segment bytes (header, options, payload) with a correct checksum for `src` → `dst`.
 * Throws PacketError PACKET_FIELD (a field out of range), TCP_OPTION (options do not fit),
 * ADDR_LENGTH.
 */
export function buildTcp(seg: TcpSegmentFields, src: Uint8Array, dst: Uint8Array): Uint8Array {
  const options = seg.options ?? NO_OPTIONS;
  const payload = seg.payload ?? EMPTY;
  const optLen = tcpOptionsLength(options);
  const out = new Uint8Array(TCP_HEADER_LEN + optLen + payload.length);
  writeSegment(out, 0, seg, options, optLen, payload, src, dst);
  return out;
}

/**
 * The whole IPv4 or IPv6 packet (by address length; header as `buildIP` writes it, TTL / hop
 * limit `ttl`, default 64) carrying the segment, in a single allocation. Throws like `buildTcp`,
 * and PACKET_TOO_BIG when the packet exceeds 65535 bytes.
 */
export function buildTcpPacket(seg: TcpSegmentFields, src: Uint8Array, dst: Uint8Array, ttl?: number): Uint8Array {
  const options = seg.options ?? NO_OPTIONS;
  const payload = seg.payload ?? EMPTY;
  const optLen = tcpOptionsLength(options);
  const tcpLen = TCP_HEADER_LEN + optLen + payload.length;
  const pkt = allocIPPacket({ src, dst, protocol: IPPROTO_TCP, ttl }, tcpLen);
  writeSegment(pkt, pkt.length - tcpLen, seg, options, optLen, payload, src, dst);
  return pkt;
}

/**
 * Flags as tcpdump prints them, for logs: F S R P . U E W in that order ("." is ACK), e.g.
 * "S." for SYN-ACK, "FP." for FIN-PSH-ACK; "none" for no flags.
 */
export function formatFlags(flags: number): string {
  let s = '';
  if (flags & FIN) s += 'F';
  if (flags & SYN) s += 'S';
  if (flags & RST) s += 'R';
  if (flags & PSH) s += 'P';
  if (flags & ACK) s += '.';
  if (flags & URG) s += 'U';
  if (flags & ECE) s += 'E';
  if (flags & CWR) s += 'W';
  return s === '' ? 'none' : s;
}
