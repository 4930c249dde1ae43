/**
 * STUN messages (RFC 8489): a length-checked parser, attribute readers and builders for the
 * Binding method. Pure: no I/O, no clock, no randomness (callers pass transaction IDs).
 *
 *   Header (RFC 8489 §5)
 *      0                   1                   2                   3
 *     ┌─┬─┬───────────────────────────┬───────────────────────────────┐
 *     │0│0│ message type (14 bits)    │ message length (bytes after   │
 *     │ │ │ M11..M7 C1 M6..M4 C0 M3..0│ the header; a multiple of 4)  │
 *     ├─┴─┴───────────────────────────┴───────────────────────────────┤
 *     │ magic cookie 0x2112A442                                       │
 *     ├───────────────────────────────────────────────────────────────┤
 *     │ transaction ID (96 bits)                                      │
 *     └───────────────────────────────────────────────────────────────┘
 *   Attributes (§14), each padded to a multiple of 4 bytes (padding not counted in `length`)
 *     ┌───────────────────────────────┬───────────────────────────────┐
 *     │ type (16)                     │ length of value (16)          │
 *     ├───────────────────────────────┴───────────────────────────────┤
 *     │ value … + 0-3 bytes of padding                                │
 *     └───────────────────────────────────────────────────────────────┘
 *   (XOR-)MAPPED-ADDRESS value (§14.1, §14.2)
 *     ┌───────────────┬───────────────┬───────────────────────────────┐
 *     │ 0             │ family 1 or 2 │ port (XOR top 16 cookie bits) │
 *     ├───────────────┴───────────────┴───────────────────────────────┤
 *     │ address, 4 or 16 bytes (XOR cookie, or cookie ‖ transaction ID) │
 *     └───────────────────────────────────────────────────────────────┘
 *
 * RFC 3489 clients send a 128-bit transaction ID and no cookie (RFC 8489 §12): `parseStun`
 * rejects them unless `{ rfc3489: true }`; then `cookie` holds the first 4 ID bytes, which a
 * response must echo. Attribute values returned by the parser are views into the input.
 */
import { PierceError } from '../errors.ts';

/**
 * STUN errors. Codes:
 *   STUN_SHORT        fewer than 20 bytes
 *   STUN_TYPE         top two bits of the message type are not zero
 *   STUN_COOKIE       magic cookie is not 0x2112A442 (and RFC 3489 messages were not allowed)
 *   STUN_LENGTH       length field not a multiple of 4 or not equal to the bytes after the header
 *   STUN_ATTRIBUTE    an attribute runs past the end, or too many attributes
 *   STUN_FINGERPRINT  FINGERPRINT present but wrong, misplaced or not 4 bytes
 *   STUN_ADDRESS      malformed (XOR-)MAPPED-ADDRESS-style value
 *   STUN_VALUE        other malformed attribute value (ERROR-CODE, UNKNOWN-ATTRIBUTES)
 *   STUN_ENCODE       bad builder input (ID length, port, address length, text too long)
 *   STUN_TIMEOUT      (client) no response after all retransmissions
 *   STUN_ERROR_RESPONSE (client) the server answered with an error response
 */
export class StunError extends PierceError {}

export const HEADER_LENGTH = 20; // RFC 8489 §5
export const MAGIC_COOKIE = 0x2112a442; // RFC 8489 §5
export const TRANSACTION_ID_LENGTH = 12; // RFC 8489 §5
export const FINGERPRINT_XOR = 0x5354554e; // RFC 8489 §14.7 ("STUN")
/** Default cap on attributes per message (`ParseOptions.maxAttributes`). */
export const DEFAULT_MAX_ATTRIBUTES = 64;
/** SOFTWARE and reason phrases: < 128 characters, ≤ 763 bytes (RFC 8489 §14.8, §14.14). */
export const MAX_TEXT_CHARS = 127;
export const MAX_TEXT_BYTES = 763;

/** Methods (RFC 8489 §18.2). */
export const BINDING = 0x001;

export type StunClass = 'request' | 'indication' | 'success' | 'error';
const CLASSES: readonly StunClass[] = ['request', 'indication', 'success', 'error'];

/**
 * Attribute types (RFC 8489 §18.3). CHANGE-REQUEST, PADDING, RESPONSE-PORT, RESPONSE-ORIGIN,
 * OTHER-ADDRESS: RFC 5780 §7; SOURCE-/CHANGED-ADDRESS: RFC 3489 §11.2 (deprecated); PRIORITY,
 * USE-CANDIDATE, ICE-CONTROLLED/-CONTROLLING: RFC 8445 §16.1.
 */
export const ATTR = {
  MAPPED_ADDRESS: 0x0001, CHANGE_REQUEST: 0x0003, SOURCE_ADDRESS: 0x0004, CHANGED_ADDRESS: 0x0005,
  USERNAME: 0x0006, MESSAGE_INTEGRITY: 0x0008, ERROR_CODE: 0x0009, UNKNOWN_ATTRIBUTES: 0x000a,
  REALM: 0x0014, NONCE: 0x0015, MESSAGE_INTEGRITY_SHA256: 0x001c, PASSWORD_ALGORITHM: 0x001d,
  USERHASH: 0x001e, XOR_MAPPED_ADDRESS: 0x0020, PRIORITY: 0x0024, USE_CANDIDATE: 0x0025,
  PADDING: 0x0026, RESPONSE_PORT: 0x0027, PASSWORD_ALGORITHMS: 0x8002, ALTERNATE_DOMAIN: 0x8003,
  SOFTWARE: 0x8022, ALTERNATE_SERVER: 0x8023, FINGERPRINT: 0x8028, ICE_CONTROLLED: 0x8029,
  ICE_CONTROLLING: 0x802a, RESPONSE_ORIGIN: 0x802b, OTHER_ADDRESS: 0x802c,
} as const;

/** Attribute types 0x0000-0x7FFF are comprehension-required (RFC 8489 §14). */
export function isComprehensionRequired(type: number): boolean {
  return type < 0x8000;
}

export interface StunAttribute {
  type: number;
  /** The value without padding (a view into the parsed bytes). */
  value: Uint8Array;
}

export interface StunMessage {
  method: number;
  class: StunClass;
  /** 12 bytes (a copy). */
  transactionId: Uint8Array;
  /** MAGIC_COOKIE, or the first 4 bytes of an RFC 3489 transaction ID. */
  cookie: number;
  attributes: StunAttribute[];
  /** True when a FINGERPRINT attribute was present (and verified; a wrong one throws). */
  fingerprint: boolean;
}

export interface ParseOptions {
  /** Accept messages without the magic cookie (RFC 3489 clients). Default false. */
  rfc3489?: boolean;
  /** Reject messages with more attributes than this (STUN_ATTRIBUTE). Default 64. */
  maxAttributes?: number;
}

/** A transport address from an address attribute; `address` is 4 or 16 bytes. */
export interface StunAddress {
  family: 4 | 6;
  address: Uint8Array;
  port: number;
}

/** Message type from method and class (RFC 8489 §5, figure 3). */
export function messageType(method: number, cls: StunClass): number {
  const c = CLASSES.indexOf(cls);
  return (method & 0x000f) | ((method & 0x0070) << 1) | ((method & 0x0f80) << 2) | ((c & 1) << 4) | ((c & 2) << 7);
}

const rd16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;
const rd32 = (b: Uint8Array, o: number) => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
const wr16 = (b: Uint8Array, o: number, v: number) => b.set([v >>> 8, v & 0xff], o);
const wr32 = (b: Uint8Array, o: number, v: number) => b.set([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff], o);
const pad4 = (n: number) => (n + 3) & ~3;

let crcTable: Uint32Array | undefined;
/** CRC-32 (ISO-HDLC, reflected polynomial 0xEDB88320), as used by FINGERPRINT. */
export function crc32(b: Uint8Array, end = b.length): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < end; i++) c = crcTable[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * The cheap demultiplexing check for a socket shared with WireGuard and disco (the zero bits
 * and the cookie exist for this, RFC 8489 §5): at least 20 bytes, top two bits zero, the magic cookie at bytes 4-8, and a
 * length field that is a multiple of 4 and accounts for exactly the rest of the datagram.
 */
export function looksLikeStun(b: Uint8Array): boolean {
  if (b.length < HEADER_LENGTH || (b[0]! & 0xc0) !== 0) return false;
  if (rd32(b, 4) !== MAGIC_COOKIE) return false;
  const len = rd16(b, 2);
  return (len & 3) === 0 && HEADER_LENGTH + len === b.length;
}

/** Parses one STUN message that is exactly `b` (one UDP datagram). Throws StunError. */
export function parseStun(b: Uint8Array, opts: ParseOptions = {}): StunMessage {
  if (b.length < HEADER_LENGTH) throw new StunError('STUN_SHORT', `STUN message is ${b.length} bytes, less than 20`);
  const type = rd16(b, 0);
  if (type & 0xc000) throw new StunError('STUN_TYPE', 'top two bits of a STUN message must be zero');
  const cookie = rd32(b, 4);
  if (cookie !== MAGIC_COOKIE && !opts.rfc3489) {
    throw new StunError('STUN_COOKIE', `magic cookie is 0x${cookie.toString(16).padStart(8, '0')}, not 0x2112a442`);
  }
  const len = rd16(b, 2);
  if (len & 3) throw new StunError('STUN_LENGTH', `STUN length ${len} is not a multiple of 4`);
  if (HEADER_LENGTH + len !== b.length) {
    throw new StunError('STUN_LENGTH', `STUN length ${len} but ${b.length - HEADER_LENGTH} bytes follow the header`);
  }
  const max = opts.maxAttributes ?? DEFAULT_MAX_ATTRIBUTES;
  const attributes: StunAttribute[] = [];
  let fingerprint = false;
  for (let o = HEADER_LENGTH; o < b.length; ) {
    if (fingerprint) throw new StunError('STUN_FINGERPRINT', 'FINGERPRINT must be the last attribute');
    if (attributes.length >= max) throw new StunError('STUN_ATTRIBUTE', `more than ${max} attributes`);
    if (o + 4 > b.length) throw new StunError('STUN_ATTRIBUTE', `attribute header at ${o} runs past the end`);
    const at = rd16(b, o);
    const alen = rd16(b, o + 2);
    const end = o + 4 + alen;
    if (o + 4 + pad4(alen) > b.length) {
      throw new StunError('STUN_ATTRIBUTE', `attribute 0x${at.toString(16)} at ${o} (${alen} bytes) runs past the end`);
    }
    if (at === ATTR.FINGERPRINT) {
      if (alen !== 4) throw new StunError('STUN_FINGERPRINT', `FINGERPRINT is ${alen} bytes, not 4`);
      if (((crc32(b, o) ^ FINGERPRINT_XOR) >>> 0) !== rd32(b, o + 4)) {
        throw new StunError('STUN_FINGERPRINT', 'FINGERPRINT does not match the message');
      }
      fingerprint = true;
    }
    attributes.push({ type: at, value: b.subarray(o + 4, end) });
    o += 4 + pad4(alen);
  }
  const cls = CLASSES[((type >> 4) & 1) | ((type >> 7) & 2)]!;
  const method = (type & 0x000f) | ((type >> 1) & 0x0070) | ((type >> 2) & 0x0f80);
  return { method, class: cls, transactionId: b.slice(8, HEADER_LENGTH), cookie, attributes, fingerprint };
}

/** The value of the first attribute of this type, or undefined. */
export function getAttribute(msg: StunMessage, type: number): Uint8Array | undefined {
  for (const a of msg.attributes) if (a.type === type) return a.value;
  return undefined;
}

/**
 * Comprehension-required attribute types in `msg` that are not in `known` (for a 420 error
 * response, RFC 8489 §6.3.1); each type once, in order of appearance.
 */
export function unknownRequiredAttributes(msg: StunMessage, known: ReadonlySet<number>): number[] {
  const out: number[] = [];
  for (const a of msg.attributes) {
    if (isComprehensionRequired(a.type) && !known.has(a.type) && !out.includes(a.type)) out.push(a.type);
  }
  return out;
}

/** Decodes a MAPPED-ADDRESS-style value; with `xor`, undoes the XOR (RFC 8489 §14.2). */
export function decodeAddress(v: Uint8Array, xor?: { cookie: number; transactionId: Uint8Array }): StunAddress {
  const fam = v.length >= 2 ? v[1] : -1;
  const family = fam === 0x01 ? 4 : fam === 0x02 ? 6 : 0;
  if (family === 0) throw new StunError('STUN_ADDRESS', `unknown address family ${fam}`);
  const alen = family === 4 ? 4 : 16;
  if (v.length !== 4 + alen) throw new StunError('STUN_ADDRESS', `IPv${family} address attribute is ${v.length} bytes, not ${4 + alen}`);
  let port = rd16(v, 2);
  const address = v.slice(4);
  if (xor) {
    port ^= xor.cookie >>> 16;
    const mask = new Uint8Array(16);
    wr32(mask, 0, xor.cookie);
    mask.set(xor.transactionId.subarray(0, 12), 4);
    for (let i = 0; i < alen; i++) address[i]! ^= mask[i]!;
  }
  return { family, address, port };
}

/** Encodes a MAPPED-ADDRESS-style value; with `xor`, applies the XOR (RFC 8489 §14.2). */
export function encodeAddress(address: Uint8Array, port: number, xor?: { cookie: number; transactionId: Uint8Array }): Uint8Array {
  if (address.length !== 4 && address.length !== 16) throw new StunError('STUN_ENCODE', `address is ${address.length} bytes, not 4 or 16`);
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new StunError('STUN_ENCODE', `port ${port} out of range`);
  const v = new Uint8Array(4 + address.length);
  v[1] = address.length === 4 ? 0x01 : 0x02;
  wr16(v, 2, port);
  v.set(address, 4);
  if (xor) {
    const x = decodeAddress(v, xor); // XOR is its own inverse
    wr16(v, 2, x.port);
    v.set(x.address, 4);
  }
  return v;
}

function readAddressAttr(msg: StunMessage, type: number, xor: boolean): StunAddress | null {
  const v = getAttribute(msg, type);
  if (!v) return null;
  return decodeAddress(v, xor ? { cookie: MAGIC_COOKIE, transactionId: msg.transactionId } : undefined);
}

/** XOR-MAPPED-ADDRESS (RFC 8489 §14.2), or null when absent; throws STUN_ADDRESS when malformed. */
export const readXorMappedAddress = (m: StunMessage) => readAddressAttr(m, ATTR.XOR_MAPPED_ADDRESS, true);
/** MAPPED-ADDRESS (RFC 8489 §14.1; what RFC 3489 servers send). */
export const readMappedAddress = (m: StunMessage) => readAddressAttr(m, ATTR.MAPPED_ADDRESS, false);
/** OTHER-ADDRESS (RFC 5780 §7.4). */
export const readOtherAddress = (m: StunMessage) => readAddressAttr(m, ATTR.OTHER_ADDRESS, false);
/** RESPONSE-ORIGIN (RFC 5780 §7.3). */
export const readResponseOrigin = (m: StunMessage) => readAddressAttr(m, ATTR.RESPONSE_ORIGIN, false);
/** The reflexive address: XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS, else null. */
export const readReflexiveAddress = (m: StunMessage) => readXorMappedAddress(m) ?? readMappedAddress(m);

const utf8 = new TextDecoder('utf-8'); // lenient: bad bytes become U+FFFD

/** SOFTWARE (RFC 8489 §14.14) as text, or null. */
export function readSoftware(msg: StunMessage): string | null {
  const v = getAttribute(msg, ATTR.SOFTWARE);
  return v ? utf8.decode(v) : null;
}

/** ERROR-CODE (RFC 8489 §14.8): code 300-699 and reason phrase, or null; STUN_VALUE when malformed. */
export function readErrorCode(msg: StunMessage): { code: number; reason: string } | null {
  const v = getAttribute(msg, ATTR.ERROR_CODE);
  if (!v) return null;
  if (v.length < 4) throw new StunError('STUN_VALUE', `ERROR-CODE is ${v.length} bytes`);
  const cls = v[2]! & 0x07;
  const num = v[3]!;
  if (cls < 3 || cls > 6 || num > 99) throw new StunError('STUN_VALUE', `ERROR-CODE class ${cls} number ${num} out of range`);
  return { code: cls * 100 + num, reason: utf8.decode(v.subarray(4)) };
}

/** UNKNOWN-ATTRIBUTES (RFC 8489 §14.9): attribute types, or null; STUN_VALUE when odd length. */
export function readUnknownAttributes(msg: StunMessage): number[] | null {
  const v = getAttribute(msg, ATTR.UNKNOWN_ATTRIBUTES);
  if (!v) return null;
  if (v.length & 1) throw new StunError('STUN_VALUE', `UNKNOWN-ATTRIBUTES is ${v.length} bytes`);
  const out: number[] = [];
  for (let i = 0; i < v.length; i += 2) out.push(rd16(v, i));
  return out;
}

/** CHANGE-REQUEST flags (RFC 5780 §7.2): change IP 0x4, change port 0x2; null when absent. */
export function readChangeRequest(msg: StunMessage): { changeIP: boolean; changePort: boolean } | null {
  const v = getAttribute(msg, ATTR.CHANGE_REQUEST);
  if (!v) return null;
  if (v.length !== 4) throw new StunError('STUN_VALUE', `CHANGE-REQUEST is ${v.length} bytes, not 4`);
  return { changeIP: (v[3]! & 0x04) !== 0, changePort: (v[3]! & 0x02) !== 0 };
}

const utf8enc = new TextEncoder();

/** UTF-8 for SOFTWARE / reason phrases, checking the RFC 8489 limits. */
export function encodeText(s: string, what = 'text'): Uint8Array {
  const v = utf8enc.encode(s);
  if ([...s].length > MAX_TEXT_CHARS || v.length > MAX_TEXT_BYTES) {
    throw new StunError('STUN_ENCODE', `${what} is longer than ${MAX_TEXT_CHARS} characters or ${MAX_TEXT_BYTES} bytes`);
  }
  return v;
}

/** ERROR-CODE value (RFC 8489 §14.8). */
export function encodeErrorCode(code: number, reason: string): Uint8Array {
  if (!Number.isInteger(code) || code < 300 || code > 699) throw new StunError('STUN_ENCODE', `error code ${code} not in 300-699`);
  const r = encodeText(reason, 'reason phrase');
  const v = new Uint8Array(4 + r.length);
  v[2] = Math.floor(code / 100);
  v[3] = code % 100;
  v.set(r, 4);
  return v;
}

/** Bytes an attribute with a value of `n` bytes takes on the wire. */
export const attributeSize = (n: number) => 4 + pad4(n);

export interface EncodeInput {
  method: number;
  class: StunClass;
  transactionId: Uint8Array;
  /** Default MAGIC_COOKIE; pass a request's `cookie` to answer an RFC 3489 client. */
  cookie?: number;
  attributes: readonly StunAttribute[];
  /** Append FINGERPRINT (RFC 8489 §14.7). */
  fingerprint?: boolean;
}

/** Encodes a message; padding bytes are zero. */
export function encodeStun(m: EncodeInput): Uint8Array {
  if (m.transactionId.length !== TRANSACTION_ID_LENGTH) {
    throw new StunError('STUN_ENCODE', `transaction ID is ${m.transactionId.length} bytes, not 12`);
  }
  if (!Number.isInteger(m.method) || m.method < 0 || m.method > 0xfff) throw new StunError('STUN_ENCODE', `method ${m.method} out of range`);
  let len = m.fingerprint ? 8 : 0;
  for (const a of m.attributes) {
    if (a.value.length > 0xffff) throw new StunError('STUN_ENCODE', `attribute 0x${a.type.toString(16)} too long`);
    len += attributeSize(a.value.length);
  }
  if (len > 0xffff) throw new StunError('STUN_ENCODE', `message length ${len} too long`);
  const out = new Uint8Array(HEADER_LENGTH + len);
  wr16(out, 0, messageType(m.method, m.class));
  wr16(out, 2, len);
  wr32(out, 4, m.cookie ?? MAGIC_COOKIE);
  out.set(m.transactionId, 8);
  let o = HEADER_LENGTH;
  for (const a of m.attributes) {
    wr16(out, o, a.type);
    wr16(out, o + 2, a.value.length);
    out.set(a.value, o + 4);
    o += attributeSize(a.value.length);
  }
  if (m.fingerprint) {
    wr16(out, o, ATTR.FINGERPRINT);
    wr16(out, o + 2, 4);
    wr32(out, o + 4, (crc32(out, o) ^ FINGERPRINT_XOR) >>> 0);
  }
  return out;
}

export interface BuildOptions {
  /** SOFTWARE text (RFC 8489 §14.14); omitted when undefined. */
  software?: string;
  /** Append FINGERPRINT. Default false. */
  fingerprint?: boolean;
  /** Echo an RFC 3489 request's `cookie` (first 4 bytes of its 128-bit ID). */
  cookie?: number;
}

/** A Binding request (RFC 8489 §6.1) with optional SOFTWARE and FINGERPRINT. */
export function buildBindingRequest(transactionId: Uint8Array, opts: BuildOptions = {}): Uint8Array {
  const attributes: StunAttribute[] = [];
  if (opts.software !== undefined) attributes.push({ type: ATTR.SOFTWARE, value: encodeText(opts.software, 'SOFTWARE') });
  return encodeStun({ method: BINDING, class: 'request', transactionId, cookie: opts.cookie, attributes, fingerprint: opts.fingerprint });
}

export interface SuccessOptions extends BuildOptions {
  /** XOR-MAPPED-ADDRESS (default true; RFC 3489 clients need it off, §12). */
  xorMappedAddress?: boolean;
  /** MAPPED-ADDRESS as well, for RFC 3489 clients (default true). */
  mappedAddress?: boolean;
  responseOrigin?: { address: Uint8Array; port: number };
  otherAddress?: { address: Uint8Array; port: number };
}

/**
 * A Binding success response (RFC 8489 §6.3.1.1) reporting `address`:`port`. Attribute order:
 * XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS, SOFTWARE, FINGERPRINT.
 */
export function buildBindingSuccess(transactionId: Uint8Array, address: Uint8Array, port: number, opts: SuccessOptions = {}): Uint8Array {
  const attributes: StunAttribute[] = [];
  if (opts.xorMappedAddress !== false) {
    const xor = { cookie: MAGIC_COOKIE, transactionId };
    attributes.push({ type: ATTR.XOR_MAPPED_ADDRESS, value: encodeAddress(address, port, xor) });
  }
  if (opts.mappedAddress !== false) attributes.push({ type: ATTR.MAPPED_ADDRESS, value: encodeAddress(address, port) });
  if (opts.responseOrigin) {
    attributes.push({ type: ATTR.RESPONSE_ORIGIN, value: encodeAddress(opts.responseOrigin.address, opts.responseOrigin.port) });
  }
  if (opts.otherAddress) attributes.push({ type: ATTR.OTHER_ADDRESS, value: encodeAddress(opts.otherAddress.address, opts.otherAddress.port) });
  if (opts.software !== undefined) attributes.push({ type: ATTR.SOFTWARE, value: encodeText(opts.software, 'SOFTWARE') });
  return encodeStun({ method: BINDING, class: 'success', transactionId, cookie: opts.cookie, attributes, fingerprint: opts.fingerprint });
}

/** A Binding error response (RFC 8489 §6.3.1.1) with ERROR-CODE and, for 420, UNKNOWN-ATTRIBUTES. */
export function buildBindingError(
  transactionId: Uint8Array,
  code: number,
  reason: string,
  opts: BuildOptions & { unknownAttributes?: readonly number[] } = {},
): Uint8Array {
  const attributes: StunAttribute[] = [{ type: ATTR.ERROR_CODE, value: encodeErrorCode(code, reason) }];
  if (opts.unknownAttributes && opts.unknownAttributes.length > 0) {
    const v = new Uint8Array(2 * opts.unknownAttributes.length);
    opts.unknownAttributes.forEach((t, i) => wr16(v, 2 * i, t));
    attributes.push({ type: ATTR.UNKNOWN_ATTRIBUTES, value: v });
  }
  if (opts.software !== undefined) attributes.push({ type: ATTR.SOFTWARE, value: encodeText(opts.software, 'SOFTWARE') });
  return encodeStun({ method: BINDING, class: 'error', transactionId, cookie: opts.cookie, attributes, fingerprint: opts.fingerprint });
}
