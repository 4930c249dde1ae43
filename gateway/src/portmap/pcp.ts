/**
 * PCP wire codec (RFC 6887): pure encoders and length-checked decoders, no sockets.
 *
 * All fields big-endian. Addresses are always 16 bytes on the wire; IPv4 addresses travel
 * IPv4-mapped, ::ffff:a.b.c.d (§5). Encoders take 4- or 16-byte addresses; decoders return the
 * 16 wire bytes (`fromPcpAddress` unmaps them).
 *
 *   Request header (§7.1), 24 bytes:  version 2 | R=0 + opcode (7) | reserved (16) |
 *                                     requested lifetime (32) | client IP (128)
 *   Response header (§7.2), 24 bytes: version 2 | R=1 + opcode (7) | reserved (8) | result (8) |
 *                                     lifetime (32) | epoch time (32) | reserved (96)
 *   MAP opcode data (§11.1), 36 bytes: nonce (96) | protocol (8) | reserved (24) |
 *                                     internal port (16) | suggested/assigned external port (16) |
 *                                     suggested/assigned external IP (128)
 *   ANNOUNCE (§14.1): opcode 0, header only.
 *   Options (§7.3): code (8) | reserved (8) | length (16) | data, padded to a multiple of 4.
 *
 * Version negotiation (§9): a NAT-PMP-only gateway answers a PCP request with a NAT-PMP
 * "Unsupported Version" response — version 0, opcode = request opcode + 128, 16-bit result 1 —
 * whose byte 3 is 1, PCP's UNSUPP_VERSION too. `classifyPcpReply` tells it apart from a PCP reply,
 * and `decodePcpResponse` throws `PCP_NATPMP_ONLY` for it.
 *
 * Decoders throw only `PcpError`.
 */
import { PierceError } from '../../../src/errors.ts';

/** Bad PCP input or encoder arguments. Codes: see `PCP_ERROR`. */
export class PcpError extends PierceError {}

/** Stable `PcpError` codes. */
export const PCP_ERROR = {
  /** Too short for its layout, over 1100 bytes, or not a multiple of 4 (§7, §8.3). */
  LENGTH: 'PCP_LENGTH',
  /** Version is not 2. */
  VERSION: 'PCP_VERSION',
  /** A NAT-PMP "Unsupported Version" reply: the gateway speaks NAT-PMP only (§9). */
  NATPMP_ONLY: 'PCP_NATPMP_ONLY',
  /** R bit wrong for the direction (a request where a response was expected, or back). */
  DIRECTION: 'PCP_DIRECTION',
  /** Opcode not known to this codec. */
  OPCODE: 'PCP_OPCODE',
  /** An option's length runs past the end of the message (§7.3). */
  OPTION: 'PCP_OPTION',
  /** Encoder argument out of range. */
  ARGUMENT: 'PCP_ARGUMENT',
} as const;

/** Protocol version (§7.1). */
export const PCP_VERSION = 2;
/** UDP port the server listens on (§19.1). */
export const PCP_SERVER_PORT = 5351;
/** UDP port clients listen on for unsolicited ANNOUNCE responses to 224.0.0.1 / ff02::1 (§14.1.2). */
export const PCP_CLIENT_PORT = 5350;
/** Maximum UDP payload of any PCP message (§7). */
export const PCP_MAX_LENGTH = 1100;
/** Header lengths (§7.1, §7.2), MAP opcode data (§11.1), nonce (§11.1). */
export const PCP_HEADER_LENGTH = 24;
export const PCP_MAP_LENGTH = 36;
export const PCP_NONCE_LENGTH = 12;
/** R bit: set in responses (§7.1, §7.2). */
export const PCP_RESPONSE_BIT = 0x80;

/** Opcodes (§19.2). */
export const PCP_OP = {
  ANNOUNCE: 0,
  MAP: 1,
  PEER: 2,
} as const;

/** Option codes (§19.3). */
export const PCP_OPTION = {
  THIRD_PARTY: 1,
  PREFER_FAILURE: 2,
  FILTER: 3,
} as const;

/** Result codes (§7.4). */
export const PCP_RESULT = {
  SUCCESS: 0,
  UNSUPP_VERSION: 1,
  NOT_AUTHORIZED: 2,
  MALFORMED_REQUEST: 3,
  UNSUPP_OPCODE: 4,
  UNSUPP_OPTION: 5,
  MALFORMED_OPTION: 6,
  NETWORK_FAILURE: 7,
  NO_RESOURCES: 8,
  UNSUPP_PROTOCOL: 9,
  USER_EX_QUOTA: 10,
  CANNOT_PROVIDE_EXTERNAL: 11,
  ADDRESS_MISMATCH: 12,
  EXCESSIVE_REMOTE_PEERS: 13,
} as const;

/** Result code names as RFC 6887 §7.4 spells them. */
export const PCP_RESULT_NAMES: Readonly<Record<number, string>> = Object.freeze(
  Object.fromEntries(Object.entries(PCP_RESULT).map(([name, code]) => [code, name])),
);

/** The name of a result code; "UNKNOWN(n)" for codes RFC 6887 does not define. */
export function pcpResultName(code: number): string {
  return PCP_RESULT_NAMES[code] ?? `UNKNOWN(${code})`;
}

/** IANA protocol numbers commonly mapped; 0 means all protocols (§11.1). */
export const PCP_PROTOCOL = { ALL: 0, TCP: 6, UDP: 17 } as const;

export interface PcpOptionField {
  code: number;
  /** Option data without padding. */
  data: Uint8Array;
}

export interface PcpMapData {
  /** 12 bytes (§11.1). */
  nonce: Uint8Array;
  protocol: number;
  internalPort: number;
  /** Suggested (request) or assigned (response) external port. */
  externalPort: number;
  /** Suggested (request) or assigned (response) external address, 16 wire bytes. */
  externalAddress: Uint8Array;
}

export type PcpRequest =
  | { opcode: typeof PCP_OP.ANNOUNCE; lifetime: number; clientAddress: Uint8Array; options: PcpOptionField[] }
  | { opcode: typeof PCP_OP.MAP; lifetime: number; clientAddress: Uint8Array; map: PcpMapData; options: PcpOptionField[] };

export interface PcpResponseHeader {
  result: number;
  /** Seconds: the mapping's lifetime, or for errors how long the error is likely to persist (§7.2). */
  lifetime: number;
  /** Server's epoch time, seconds (§8.5). */
  epoch: number;
}

export type PcpResponse =
  | (PcpResponseHeader & { opcode: typeof PCP_OP.ANNOUNCE; options: PcpOptionField[] })
  | (PcpResponseHeader & {
      opcode: typeof PCP_OP.MAP;
      /** Null only for an error response too short to carry the MAP data (§8.3 allows header-only errors). */
      map: PcpMapData | null;
      options: PcpOptionField[];
    });

function fail(code: string, message: string): never {
  throw new PcpError(code, message);
}

function checkUint(name: string, v: number, bits: 8 | 16 | 32): void {
  const max = bits === 32 ? 0xffffffff : (1 << bits) - 1;
  if (!Number.isInteger(v) || v < 0 || v > max) fail(PCP_ERROR.ARGUMENT, `PCP ${name} ${v} is not a ${bits}-bit unsigned integer`);
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** 4-byte IPv4 → ::ffff:a.b.c.d; 16-byte addresses are copied as they are (§5). */
export function toPcpAddress(addr: Uint8Array): Uint8Array {
  if (addr.length === 16) return addr.slice();
  if (addr.length !== 4) return fail(PCP_ERROR.ARGUMENT, `PCP address must be 4 or 16 bytes, got ${addr.length}`);
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(addr, 12);
  return out;
}

/** 16 wire bytes → 4 bytes when IPv4-mapped, else a copy of the 16. */
export function fromPcpAddress(addr: Uint8Array): Uint8Array {
  if (addr.length !== 16) return fail(PCP_ERROR.ARGUMENT, `PCP wire address must be 16 bytes, got ${addr.length}`);
  for (let i = 0; i < 10; i++) if (addr[i] !== 0) return addr.slice();
  return addr[10] === 0xff && addr[11] === 0xff ? addr.slice(12) : addr.slice();
}

function isMapped(a16: Uint8Array): boolean {
  return fromPcpAddress(a16).length === 4;
}

function optionsLength(options: readonly PcpOptionField[]): number {
  let n = 0;
  for (const o of options) n += 4 + ((o.data.length + 3) & ~3);
  return n;
}

function writeOptions(b: Uint8Array, at: number, options: readonly PcpOptionField[]): void {
  const v = view(b);
  for (const o of options) {
    checkUint('option code', o.code, 8);
    checkUint('option length', o.data.length, 16);
    b[at] = o.code;
    v.setUint16(at + 2, o.data.length);
    b.set(o.data, at + 4);
    at += 4 + ((o.data.length + 3) & ~3);
  }
}

function allocate(bodyLength: number, options: readonly PcpOptionField[]): Uint8Array {
  const n = PCP_HEADER_LENGTH + bodyLength + optionsLength(options);
  if (n > PCP_MAX_LENGTH) fail(PCP_ERROR.ARGUMENT, `PCP message would be ${n} bytes, over ${PCP_MAX_LENGTH}`);
  return new Uint8Array(n);
}

function writeMap(b: Uint8Array, m: { nonce: Uint8Array; protocol: number; internalPort: number; externalPort: number; externalAddress: Uint8Array }): void {
  if (m.nonce.length !== PCP_NONCE_LENGTH) fail(PCP_ERROR.ARGUMENT, `PCP nonce must be ${PCP_NONCE_LENGTH} bytes, got ${m.nonce.length}`);
  checkUint('protocol', m.protocol, 8);
  checkUint('internal port', m.internalPort, 16);
  checkUint('external port', m.externalPort, 16);
  const v = view(b);
  const o = PCP_HEADER_LENGTH;
  b.set(m.nonce, o);
  b[o + 12] = m.protocol;
  // o+13..o+15 reserved
  v.setUint16(o + 16, m.internalPort);
  v.setUint16(o + 18, m.externalPort);
  b.set(toPcpAddress(m.externalAddress), o + 20);
}

function writeRequestHeader(b: Uint8Array, opcode: number, lifetime: number, clientAddress: Uint8Array): void {
  checkUint('lifetime', lifetime, 32);
  b[0] = PCP_VERSION;
  b[1] = opcode; // R = 0
  // 2..3 reserved
  view(b).setUint32(4, lifetime);
  b.set(toPcpAddress(clientAddress), 8);
}

function writeResponseHeader(b: Uint8Array, opcode: number, h: PcpResponseHeader): void {
  checkUint('result', h.result, 8);
  checkUint('lifetime', h.lifetime, 32);
  checkUint('epoch', h.epoch, 32);
  const v = view(b);
  b[0] = PCP_VERSION;
  b[1] = PCP_RESPONSE_BIT | opcode;
  // 2 reserved
  b[3] = h.result;
  v.setUint32(4, h.lifetime);
  v.setUint32(8, h.epoch);
  // 12..23 reserved
}

/** ANNOUNCE request (§14.1): a bare header; lifetime defaults to 0. */
export function encodePcpAnnounceRequest(req: { clientAddress: Uint8Array; lifetime?: number; options?: PcpOptionField[] }): Uint8Array {
  const options = req.options ?? [];
  const b = allocate(0, options);
  writeRequestHeader(b, PCP_OP.ANNOUNCE, req.lifetime ?? 0, req.clientAddress);
  writeOptions(b, PCP_HEADER_LENGTH, options);
  return b;
}

/**
 * MAP request (§11.1). Lifetime 0 deletes (§15). Without a suggested external address the
 * all-zeros address of the client's family is sent (::ffff:0.0.0.0 for IPv4, :: for IPv6, §11.1).
 */
export function encodePcpMapRequest(req: {
  clientAddress: Uint8Array;
  lifetime: number;
  nonce: Uint8Array;
  protocol: number;
  internalPort: number;
  suggestedExternalPort?: number;
  suggestedExternalAddress?: Uint8Array;
  options?: PcpOptionField[];
}): Uint8Array {
  const options = req.options ?? [];
  const client = toPcpAddress(req.clientAddress);
  const b = allocate(PCP_MAP_LENGTH, options);
  writeRequestHeader(b, PCP_OP.MAP, req.lifetime, client);
  writeMap(b, {
    nonce: req.nonce,
    protocol: req.protocol,
    internalPort: req.internalPort,
    externalPort: req.suggestedExternalPort ?? 0,
    externalAddress: req.suggestedExternalAddress ?? (isMapped(client) ? new Uint8Array(4) : new Uint8Array(16)),
  });
  writeOptions(b, PCP_HEADER_LENGTH + PCP_MAP_LENGTH, options);
  return b;
}

/** ANNOUNCE response (§14.1), for test servers. */
export function encodePcpAnnounceResponse(res: PcpResponseHeader & { options?: PcpOptionField[] }): Uint8Array {
  const options = res.options ?? [];
  const b = allocate(0, options);
  writeResponseHeader(b, PCP_OP.ANNOUNCE, res);
  writeOptions(b, PCP_HEADER_LENGTH, options);
  return b;
}

/** MAP response (§11.1), for test servers. */
export function encodePcpMapResponse(res: PcpResponseHeader & PcpMapData & { options?: PcpOptionField[] }): Uint8Array {
  const options = res.options ?? [];
  const b = allocate(PCP_MAP_LENGTH, options);
  writeResponseHeader(b, PCP_OP.MAP, res);
  writeMap(b, res);
  writeOptions(b, PCP_HEADER_LENGTH + PCP_MAP_LENGTH, options);
  return b;
}

/** Overall length rules for every PCP message (§7, §8.3): 4-aligned, at most 1100 bytes. */
function checkEnvelope(b: Uint8Array, what: string): void {
  if (b.length < 4 || b.length > PCP_MAX_LENGTH || b.length % 4 !== 0) {
    fail(PCP_ERROR.LENGTH, `PCP ${what} of ${b.length} bytes: must be 4..${PCP_MAX_LENGTH} and a multiple of 4`);
  }
}

/**
 * True when `b` is a NAT-PMP "Unsupported Version" reply (RFC 6886 §3.5) — version 0, R/top bit
 * set, 16-bit result 1, at least 8 bytes — which is how a NAT-PMP-only gateway answers a PCP
 * request (RFC 6887 §9).
 */
export function isNatPmpUnsupportedVersion(b: Uint8Array): boolean {
  return b.length >= 8 && b[0] === 0 && (b[1]! & PCP_RESPONSE_BIT) !== 0 && b[2] === 0 && b[3] === PCP_RESULT.UNSUPP_VERSION;
}

/** True when `b` looks like a PCP response: valid envelope, version 2, R bit set, full header. */
export function isPcpResponse(b: Uint8Array): boolean {
  return (
    b.length >= PCP_HEADER_LENGTH &&
    b.length <= PCP_MAX_LENGTH &&
    b.length % 4 === 0 &&
    b[0] === PCP_VERSION &&
    (b[1]! & PCP_RESPONSE_BIT) !== 0
  );
}

/**
 * What answered a PCP request (§9): 'pcp' for a PCP response, 'natpmp' for a NAT-PMP-only
 * gateway's Unsupported Version reply, 'other' for anything else.
 */
export function classifyPcpReply(b: Uint8Array): 'pcp' | 'natpmp' | 'other' {
  if (isPcpResponse(b)) return 'pcp';
  if (isNatPmpUnsupportedVersion(b)) return 'natpmp';
  return 'other';
}

function readOptions(b: Uint8Array, at: number): PcpOptionField[] {
  const v = view(b);
  const out: PcpOptionField[] = [];
  while (at < b.length) {
    if (b.length - at < 4) fail(PCP_ERROR.OPTION, `PCP option header at ${at} is truncated`);
    const code = b[at]!;
    const len = v.getUint16(at + 2);
    const padded = (len + 3) & ~3;
    if (at + 4 + padded > b.length) fail(PCP_ERROR.OPTION, `PCP option ${code} at ${at} (length ${len}) runs past the end`);
    out.push({ code, data: b.slice(at + 4, at + 4 + len) });
    at += 4 + padded;
  }
  return out;
}

function readMap(b: Uint8Array): PcpMapData {
  const v = view(b);
  const o = PCP_HEADER_LENGTH;
  return {
    nonce: b.slice(o, o + 12),
    protocol: b[o + 12]!,
    internalPort: v.getUint16(o + 16),
    externalPort: v.getUint16(o + 18),
    externalAddress: b.slice(o + 20, o + 36),
  };
}

function checkVersion(b: Uint8Array): void {
  if (b[0] === 0 && isNatPmpUnsupportedVersion(b)) {
    fail(PCP_ERROR.NATPMP_ONLY, 'NAT-PMP Unsupported Version reply: the gateway speaks NAT-PMP, not PCP (RFC 6887 §9)');
  }
  if (b[0] !== PCP_VERSION) fail(PCP_ERROR.VERSION, `PCP version ${b[0]} is not ${PCP_VERSION}`);
}

/** Decodes a request (what a server receives). */
export function decodePcpRequest(b: Uint8Array): PcpRequest {
  checkEnvelope(b, 'request');
  checkVersion(b);
  if ((b[1]! & PCP_RESPONSE_BIT) !== 0) fail(PCP_ERROR.DIRECTION, 'PCP message has the R bit set: a response, not a request');
  if (b.length < PCP_HEADER_LENGTH) fail(PCP_ERROR.LENGTH, `PCP request header needs ${PCP_HEADER_LENGTH} bytes, got ${b.length}`);
  const opcode = b[1]!;
  const lifetime = view(b).getUint32(4);
  const clientAddress = b.slice(8, 24);
  if (opcode === PCP_OP.ANNOUNCE) {
    return { opcode, lifetime, clientAddress, options: readOptions(b, PCP_HEADER_LENGTH) };
  }
  if (opcode === PCP_OP.MAP) {
    if (b.length < PCP_HEADER_LENGTH + PCP_MAP_LENGTH) fail(PCP_ERROR.LENGTH, `PCP MAP request needs ${PCP_HEADER_LENGTH + PCP_MAP_LENGTH} bytes, got ${b.length}`);
    return { opcode, lifetime, clientAddress, map: readMap(b), options: readOptions(b, PCP_HEADER_LENGTH + PCP_MAP_LENGTH) };
  }
  return fail(PCP_ERROR.OPCODE, `PCP opcode ${opcode} is not supported`);
}

/**
 * Decodes a response (what a client receives). A NAT-PMP answer throws `PCP_NATPMP_ONLY`.
 * A MAP error response shorter than the MAP data has `map: null` (§8.1 error responses may
 * carry only part of the request).
 */
export function decodePcpResponse(b: Uint8Array): PcpResponse {
  if (isNatPmpUnsupportedVersion(b)) checkVersion(b);
  checkEnvelope(b, 'response');
  checkVersion(b);
  if ((b[1]! & PCP_RESPONSE_BIT) === 0) fail(PCP_ERROR.DIRECTION, 'PCP message has the R bit clear: a request, not a response');
  if (b.length < PCP_HEADER_LENGTH) fail(PCP_ERROR.LENGTH, `PCP response header needs ${PCP_HEADER_LENGTH} bytes, got ${b.length}`);
  const v = view(b);
  const opcode = b[1]! & ~PCP_RESPONSE_BIT;
  const header: PcpResponseHeader = { result: b[3]!, lifetime: v.getUint32(4), epoch: v.getUint32(8) };
  if (opcode === PCP_OP.ANNOUNCE) {
    return { opcode, ...header, options: readOptions(b, PCP_HEADER_LENGTH) };
  }
  if (opcode === PCP_OP.MAP) {
    if (b.length < PCP_HEADER_LENGTH + PCP_MAP_LENGTH) {
      if (header.result === PCP_RESULT.SUCCESS) fail(PCP_ERROR.LENGTH, `PCP MAP response needs ${PCP_HEADER_LENGTH + PCP_MAP_LENGTH} bytes, got ${b.length}`);
      return { opcode, ...header, map: null, options: [] };
    }
    return { opcode, ...header, map: readMap(b), options: readOptions(b, PCP_HEADER_LENGTH + PCP_MAP_LENGTH) };
  }
  return fail(PCP_ERROR.OPCODE, `PCP response opcode ${opcode} is not supported`);
}
