/**
 * WireGuard message codecs (paper §5.4.2-§5.4.7). Parsing is length-checked and returns views
 * into the input (no copies); malformed input throws WgError `WG_MALFORMED`. All integers are
 * little-endian.
 *
 * Handshake initiation (type 1, 148 bytes)
 *   0     1       4        8          40                 88               116    132    148
 *   | 1 | 0 0 0 | sender | ephemeral | static (32+16)   | timestamp(12+16)| mac1 | mac2 |
 *
 * Handshake response (type 2, 92 bytes)
 *   0     1       4        8          12          44            60     76     92
 *   | 2 | 0 0 0 | sender | receiver | ephemeral | empty (0+16)| mac1 | mac2 |
 *
 * Cookie reply (type 3, 64 bytes)
 *   0     1       4          8        32                64
 *   | 3 | 0 0 0 | receiver | nonce  | cookie (16+16)   |
 *
 * Transport data (type 4, 32+ bytes)
 *   0     1       4          8              16
 *   | 4 | 0 0 0 | receiver | counter (u64) | encrypted packet + tag (16) |
 */
import {
  COOKIE_REPLY_SIZE,
  INITIATION_SIZE,
  MAC_SIZE,
  MSG_COOKIE_REPLY,
  MSG_INITIATION,
  MSG_RESPONSE,
  MSG_TRANSPORT,
  RESPONSE_SIZE,
  TRANSPORT_HEADER_SIZE,
  TRANSPORT_MIN_SIZE,
} from './constants.ts';
import { WgError } from './errors.ts';

export interface Initiation {
  type: typeof MSG_INITIATION;
  sender: number;
  ephemeral: Uint8Array; // 32
  encryptedStatic: Uint8Array; // 48
  encryptedTimestamp: Uint8Array; // 28
  mac1: Uint8Array;
  mac2: Uint8Array;
}

export interface Response {
  type: typeof MSG_RESPONSE;
  sender: number;
  receiver: number;
  ephemeral: Uint8Array; // 32
  encryptedNothing: Uint8Array; // 16
  mac1: Uint8Array;
  mac2: Uint8Array;
}

export interface CookieReply {
  type: typeof MSG_COOKIE_REPLY;
  receiver: number;
  nonce: Uint8Array; // 24
  encryptedCookie: Uint8Array; // 32
}

export interface TransportHeader {
  type: typeof MSG_TRANSPORT;
  receiver: number;
  /** The 64-bit counter; exact only below 2^53 (larger values come back as Infinity). */
  counter: number;
  /** Ciphertext including the 16-byte tag. */
  encrypted: Uint8Array;
}

export type Message = Initiation | Response | CookieReply | TransportHeader;

function u32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 255;
  b[o + 1] = (v >>> 8) & 255;
  b[o + 2] = (v >>> 16) & 255;
  b[o + 3] = (v >>> 24) & 255;
}

/** Reads the little-endian u64 counter at `o`; values ≥ 2^53 read as Infinity (always rejected). */
export function readCounter(b: Uint8Array, o: number): number {
  const lo = u32(b, o);
  const hi = u32(b, o + 4);
  if (hi >= 0x200000) return Infinity;
  return hi * 0x1_0000_0000 + lo;
}

export function writeCounter(b: Uint8Array, o: number, v: number): void {
  putU32(b, o, v >>> 0);
  putU32(b, o + 4, Math.floor(v / 0x1_0000_0000));
}

function malformed(what: string): never {
  throw new WgError('WG_MALFORMED', what);
}

/** The message type (1-4) of a datagram, after checking the reserved bytes; throws otherwise. */
export function messageType(b: Uint8Array): number {
  if (b.length < 4) malformed(`datagram of ${b.length} bytes is too short for a WireGuard message`);
  if (b[1] !== 0 || b[2] !== 0 || b[3] !== 0) malformed('reserved bytes are not zero');
  const t = b[0]!;
  if (t < MSG_INITIATION || t > MSG_TRANSPORT) malformed(`unknown message type ${t}`);
  return t;
}

/** Parses any WireGuard message, checking its exact length. */
export function parseMessage(b: Uint8Array): Message {
  const t = messageType(b);
  switch (t) {
    case MSG_INITIATION:
      if (b.length !== INITIATION_SIZE) malformed(`initiation must be ${INITIATION_SIZE} bytes, got ${b.length}`);
      return {
        type: MSG_INITIATION,
        sender: u32(b, 4),
        ephemeral: b.subarray(8, 40),
        encryptedStatic: b.subarray(40, 88),
        encryptedTimestamp: b.subarray(88, 116),
        mac1: b.subarray(116, 132),
        mac2: b.subarray(132, 148),
      };
    case MSG_RESPONSE:
      if (b.length !== RESPONSE_SIZE) malformed(`response must be ${RESPONSE_SIZE} bytes, got ${b.length}`);
      return {
        type: MSG_RESPONSE,
        sender: u32(b, 4),
        receiver: u32(b, 8),
        ephemeral: b.subarray(12, 44),
        encryptedNothing: b.subarray(44, 60),
        mac1: b.subarray(60, 76),
        mac2: b.subarray(76, 92),
      };
    case MSG_COOKIE_REPLY:
      if (b.length !== COOKIE_REPLY_SIZE) malformed(`cookie reply must be ${COOKIE_REPLY_SIZE} bytes, got ${b.length}`);
      return { type: MSG_COOKIE_REPLY, receiver: u32(b, 4), nonce: b.subarray(8, 32), encryptedCookie: b.subarray(32, 64) };
    default:
      if (b.length < TRANSPORT_MIN_SIZE) malformed(`transport message of ${b.length} bytes is shorter than ${TRANSPORT_MIN_SIZE}`);
      return {
        type: MSG_TRANSPORT,
        receiver: u32(b, 4),
        counter: readCounter(b, 8),
        encrypted: b.subarray(TRANSPORT_HEADER_SIZE),
      };
  }
}

export function encodeInitiation(m: Omit<Initiation, 'type'>): Uint8Array {
  const b = new Uint8Array(INITIATION_SIZE);
  b[0] = MSG_INITIATION;
  putU32(b, 4, m.sender);
  b.set(m.ephemeral, 8);
  b.set(m.encryptedStatic, 40);
  b.set(m.encryptedTimestamp, 88);
  b.set(m.mac1, 116);
  b.set(m.mac2, 132);
  return b;
}

export function encodeResponse(m: Omit<Response, 'type'>): Uint8Array {
  const b = new Uint8Array(RESPONSE_SIZE);
  b[0] = MSG_RESPONSE;
  putU32(b, 4, m.sender);
  putU32(b, 8, m.receiver);
  b.set(m.ephemeral, 12);
  b.set(m.encryptedNothing, 44);
  b.set(m.mac1, 60);
  b.set(m.mac2, 76);
  return b;
}

export function encodeCookieReply(m: Omit<CookieReply, 'type'>): Uint8Array {
  const b = new Uint8Array(COOKIE_REPLY_SIZE);
  b[0] = MSG_COOKIE_REPLY;
  putU32(b, 4, m.receiver);
  b.set(m.nonce, 8);
  b.set(m.encryptedCookie, 32);
  return b;
}

/** Writes a transport header (type, receiver, counter) into the first 16 bytes of `b`. */
export function writeTransportHeader(b: Uint8Array, receiver: number, counter: number): void {
  b[0] = MSG_TRANSPORT;
  b[1] = 0;
  b[2] = 0;
  b[3] = 0;
  putU32(b, 4, receiver);
  writeCounter(b, 8, counter);
}

/** The offsets of mac1 and mac2 in a handshake message (they are its last 32 bytes). */
export function macOffsets(msg: Uint8Array): { mac1: number; mac2: number } {
  return { mac1: msg.length - 2 * MAC_SIZE, mac2: msg.length - MAC_SIZE };
}

/** The sender index of a handshake message (initiation or response), bytes 4-8. */
export function senderIndex(msg: Uint8Array): number {
  return u32(msg, 4);
}
