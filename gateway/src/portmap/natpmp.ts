/**
 * NAT-PMP wire codec (RFC 6886): pure encoders and length-checked decoders, no sockets.
 *
 * Every field is big-endian ("network byte order", §3). Messages:
 *
 *   External address request (§3.2), 2 bytes:   vers 0 | op 0
 *   External address response (§3.2), 12 bytes: vers 0 | op 128 | result (16) | epoch (32) |
 *                                                external IPv4 (32)
 *   Mapping request (§3.3), 12 bytes:            vers 0 | op 1 (UDP) / 2 (TCP) | reserved (16, 0) |
 *                                                internal port (16) | suggested external port (16) |
 *                                                requested lifetime (32)
 *   Mapping response (§3.3), 16 bytes:           vers 0 | op 129 / 130 | result (16) | epoch (32) |
 *                                                internal port (16) | mapped external port (16) |
 *                                                lifetime (32)
 *
 * A response's opcode is the request's plus 128 (§3.5). Servers answer a request with a
 * version other than 0 with the 8-byte "Unsupported Version" form (vers 0, op = request op + 128,
 * result 1, epoch; §3.5), and an unknown opcode by echoing the request with the top bit of the
 * opcode set and result 5; `decodeNatPmpResponse` returns both as `kind: 'error'`.
 *
 * Decoders throw only `NatPmpError`. Requests must have exactly their fixed length; responses
 * must have at least it (trailing bytes are ignored), except that a response with a non-zero
 * result may be the 8-byte short form.
 */
import { PierceError } from '../../../src/errors.ts';

/** Bad NAT-PMP input or encoder arguments. Codes: see `NATPMP_ERROR`. */
export class NatPmpError extends PierceError {}

/** Stable `NatPmpError` codes. */
export const NATPMP_ERROR = {
  /** Shorter than the message's fixed layout (or longer, for requests). */
  LENGTH: 'NATPMP_LENGTH',
  /** Version field is not 0. */
  VERSION: 'NATPMP_VERSION',
  /** Opcode is not one this codec knows, or a request where a response was expected (or back). */
  OPCODE: 'NATPMP_OPCODE',
  /** Encoder argument out of range (port, lifetime, epoch, result, address length). */
  ARGUMENT: 'NATPMP_ARGUMENT',
} as const;

/** Protocol version (§3). */
export const NATPMP_VERSION = 0;
/** UDP port the gateway listens on (§3). */
export const NATPMP_SERVER_PORT = 5351;
/** UDP port clients listen on for address-change announcements to 224.0.0.1 (§3.2.1). */
export const NATPMP_CLIENT_PORT = 5350;

/** Request opcodes (§3.2, §3.3). */
export const NATPMP_OP = {
  EXTERNAL_ADDRESS: 0,
  MAP_UDP: 1,
  MAP_TCP: 2,
} as const;
/** A response's opcode is the request's opcode plus 128 (§3.2, §3.5). */
export const NATPMP_RESPONSE_BIT = 0x80;

/** Fixed lengths of each message (§3.2, §3.3, §3.5). */
export const NATPMP_LEN = {
  EXTERNAL_ADDRESS_REQUEST: 2,
  EXTERNAL_ADDRESS_RESPONSE: 12,
  MAPPING_REQUEST: 12,
  MAPPING_RESPONSE: 16,
  /** vers, op, result, epoch: the "Unsupported Version" response and the common prefix (§3.5). */
  ERROR_RESPONSE: 8,
} as const;

/** Result codes (§3.5). */
export const NATPMP_RESULT = {
  SUCCESS: 0,
  UNSUPPORTED_VERSION: 1,
  NOT_AUTHORIZED: 2,
  NETWORK_FAILURE: 3,
  OUT_OF_RESOURCES: 4,
  UNSUPPORTED_OPCODE: 5,
} as const;

/** Result code names as RFC 6886 §3.5 lists them. */
export const NATPMP_RESULT_NAMES: Readonly<Record<number, string>> = {
  0: 'Success',
  1: 'Unsupported Version',
  2: 'Not Authorized/Refused',
  3: 'Network Failure',
  4: 'Out of resources',
  5: 'Unsupported opcode',
};

/** The name of a result code; "Unknown (n)" for codes RFC 6886 does not define. */
export function natPmpResultName(code: number): string {
  return NATPMP_RESULT_NAMES[code] ?? `Unknown (${code})`;
}

/**
 * Retransmission schedule (§3.1): wait 250 ms for an answer, then retransmit, doubling the wait
 * each time; after the ninth attempt (and its 64 s wait) the gateway does not support NAT-PMP.
 * Entry i is how long to wait after transmission i + 1.
 */
export const NATPMP_RETRANSMIT_MS: readonly number[] = Object.freeze(
  Array.from({ length: 9 }, (_, i) => 250 * 2 ** i),
);
/** Recommended requested lifetime for a mapping, seconds (§3.3). */
export const NATPMP_RECOMMENDED_LIFETIME = 7200;

export type NatPmpProtocol = 'udp' | 'tcp';

export type NatPmpRequest =
  | { kind: 'external-address' }
  | {
      kind: 'mapping';
      protocol: NatPmpProtocol;
      internalPort: number;
      suggestedExternalPort: number;
      /** Seconds; 0 deletes the mapping (§3.4). */
      lifetime: number;
    };

export type NatPmpResponse =
  | {
      kind: 'external-address';
      result: number;
      /** Seconds since start of epoch (§3.6). */
      epoch: number;
      /** 4 bytes; undefined (zero) when result is not SUCCESS (§3.2). */
      externalAddress: Uint8Array;
    }
  | {
      kind: 'mapping';
      protocol: NatPmpProtocol;
      result: number;
      epoch: number;
      internalPort: number;
      externalPort: number;
      lifetime: number;
    }
  | {
      /** A short (8-byte) error response, or an error to an opcode this codec does not know. */
      kind: 'error';
      /** The response opcode (request opcode + 128). */
      opcode: number;
      result: number;
      /** Seconds since start of epoch; null when the message is under 8 bytes (an echoed 2-byte request). */
      epoch: number | null;
    };

function fail(code: string, message: string): never {
  throw new NatPmpError(code, message);
}

function checkUint(name: string, v: number, bits: 8 | 16 | 32): void {
  const max = bits === 32 ? 0xffffffff : (1 << bits) - 1;
  if (!Number.isInteger(v) || v < 0 || v > max) fail(NATPMP_ERROR.ARGUMENT, `NAT-PMP ${name} ${v} is not a ${bits}-bit unsigned integer`);
}

function mapOpcode(protocol: NatPmpProtocol): number {
  if (protocol === 'udp') return NATPMP_OP.MAP_UDP;
  if (protocol === 'tcp') return NATPMP_OP.MAP_TCP;
  return fail(NATPMP_ERROR.ARGUMENT, `NAT-PMP protocol ${String(protocol)} is not "udp" or "tcp"`);
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** External address request (§3.2): `00 00`. */
export function encodeNatPmpExternalAddressRequest(): Uint8Array {
  return Uint8Array.of(NATPMP_VERSION, NATPMP_OP.EXTERNAL_ADDRESS);
}

/** Mapping request (§3.3). Lifetime 0 with suggested port 0 deletes a mapping (§3.4). */
export function encodeNatPmpMappingRequest(req: {
  protocol: NatPmpProtocol;
  internalPort: number;
  suggestedExternalPort?: number;
  lifetime?: number;
}): Uint8Array {
  const op = mapOpcode(req.protocol);
  const suggested = req.suggestedExternalPort ?? 0;
  const lifetime = req.lifetime ?? NATPMP_RECOMMENDED_LIFETIME;
  checkUint('internal port', req.internalPort, 16);
  checkUint('suggested external port', suggested, 16);
  checkUint('lifetime', lifetime, 32);
  const b = new Uint8Array(NATPMP_LEN.MAPPING_REQUEST);
  const v = view(b);
  b[0] = NATPMP_VERSION;
  b[1] = op;
  // 2..3 reserved, MUST be zero (§3.3)
  v.setUint16(4, req.internalPort);
  v.setUint16(6, suggested);
  v.setUint32(8, lifetime);
  return b;
}

/** External address response (§3.2), for test gateways. */
export function encodeNatPmpExternalAddressResponse(res: { result: number; epoch: number; externalAddress: Uint8Array }): Uint8Array {
  checkUint('result', res.result, 16);
  checkUint('epoch', res.epoch, 32);
  if (res.externalAddress.length !== 4) fail(NATPMP_ERROR.ARGUMENT, `NAT-PMP external address must be 4 bytes, got ${res.externalAddress.length}`);
  const b = new Uint8Array(NATPMP_LEN.EXTERNAL_ADDRESS_RESPONSE);
  const v = view(b);
  b[0] = NATPMP_VERSION;
  b[1] = NATPMP_RESPONSE_BIT | NATPMP_OP.EXTERNAL_ADDRESS;
  v.setUint16(2, res.result);
  v.setUint32(4, res.epoch);
  b.set(res.externalAddress, 8);
  return b;
}

/** Mapping response (§3.3), for test gateways. */
export function encodeNatPmpMappingResponse(res: Omit<Extract<NatPmpResponse, { kind: 'mapping' }>, 'kind'>): Uint8Array {
  const op = mapOpcode(res.protocol);
  checkUint('result', res.result, 16);
  checkUint('epoch', res.epoch, 32);
  checkUint('internal port', res.internalPort, 16);
  checkUint('external port', res.externalPort, 16);
  checkUint('lifetime', res.lifetime, 32);
  const b = new Uint8Array(NATPMP_LEN.MAPPING_RESPONSE);
  const v = view(b);
  b[0] = NATPMP_VERSION;
  b[1] = NATPMP_RESPONSE_BIT | op;
  v.setUint16(2, res.result);
  v.setUint32(4, res.epoch);
  v.setUint16(8, res.internalPort);
  v.setUint16(10, res.externalPort);
  v.setUint32(12, res.lifetime);
  return b;
}

/** The 8-byte error response (§3.5): vers 0, op = request op + 128, result, epoch. */
export function encodeNatPmpErrorResponse(res: { requestOpcode: number; result: number; epoch: number }): Uint8Array {
  checkUint('request opcode', res.requestOpcode, 8);
  if (res.requestOpcode >= NATPMP_RESPONSE_BIT) fail(NATPMP_ERROR.ARGUMENT, `NAT-PMP request opcode ${res.requestOpcode} has the response bit set`);
  checkUint('result', res.result, 16);
  checkUint('epoch', res.epoch, 32);
  const b = new Uint8Array(NATPMP_LEN.ERROR_RESPONSE);
  const v = view(b);
  b[0] = NATPMP_VERSION;
  b[1] = NATPMP_RESPONSE_BIT | res.requestOpcode;
  v.setUint16(2, res.result);
  v.setUint32(4, res.epoch);
  return b;
}

function needLength(b: Uint8Array, n: number, what: string, exact: boolean): void {
  if (b.length < n || (exact && b.length !== n)) {
    fail(NATPMP_ERROR.LENGTH, `NAT-PMP ${what} must be ${exact ? '' : 'at least '}${n} bytes, got ${b.length}`);
  }
}

function checkVersion(b: Uint8Array): void {
  needLength(b, 2, 'message', false);
  if (b[0] !== NATPMP_VERSION) fail(NATPMP_ERROR.VERSION, `NAT-PMP version ${b[0]} is not ${NATPMP_VERSION}`);
}

/** Decodes a request (what a gateway receives). Exact lengths (§3.2, §3.3). */
export function decodeNatPmpRequest(b: Uint8Array): NatPmpRequest {
  checkVersion(b);
  const op = b[1]!;
  if (op === NATPMP_OP.EXTERNAL_ADDRESS) {
    needLength(b, NATPMP_LEN.EXTERNAL_ADDRESS_REQUEST, 'external address request', true);
    return { kind: 'external-address' };
  }
  if (op === NATPMP_OP.MAP_UDP || op === NATPMP_OP.MAP_TCP) {
    needLength(b, NATPMP_LEN.MAPPING_REQUEST, 'mapping request', true);
    const v = view(b);
    return {
      kind: 'mapping',
      protocol: op === NATPMP_OP.MAP_UDP ? 'udp' : 'tcp',
      internalPort: v.getUint16(4),
      suggestedExternalPort: v.getUint16(6),
      lifetime: v.getUint32(8),
    };
  }
  if (op >= NATPMP_RESPONSE_BIT) return fail(NATPMP_ERROR.OPCODE, `NAT-PMP opcode ${op} is a response, not a request`);
  return fail(NATPMP_ERROR.OPCODE, `NAT-PMP request opcode ${op} is not supported`);
}

/** Decodes a response (what a client receives). */
export function decodeNatPmpResponse(b: Uint8Array): NatPmpResponse {
  checkVersion(b);
  const op = b[1]!;
  if (op < NATPMP_RESPONSE_BIT) return fail(NATPMP_ERROR.OPCODE, `NAT-PMP opcode ${op} is a request, not a response`);
  needLength(b, 4, 'response', false);
  const v = view(b);
  const result = v.getUint16(2);
  const full =
    op === (NATPMP_RESPONSE_BIT | NATPMP_OP.EXTERNAL_ADDRESS)
      ? NATPMP_LEN.EXTERNAL_ADDRESS_RESPONSE
      : op === (NATPMP_RESPONSE_BIT | NATPMP_OP.MAP_UDP) || op === (NATPMP_RESPONSE_BIT | NATPMP_OP.MAP_TCP)
        ? NATPMP_LEN.MAPPING_RESPONSE
        : 0;
  if (full === 0 || (result !== NATPMP_RESULT.SUCCESS && b.length < full)) {
    // Unknown opcode (answered by echoing the request, §3.5) or the short error form.
    if (full === 0 && result === NATPMP_RESULT.SUCCESS) return fail(NATPMP_ERROR.OPCODE, `NAT-PMP response opcode ${op} is not supported`);
    if (full !== 0) needLength(b, NATPMP_LEN.ERROR_RESPONSE, 'error response', false);
    return { kind: 'error', opcode: op, result, epoch: b.length >= NATPMP_LEN.ERROR_RESPONSE ? v.getUint32(4) : null };
  }
  needLength(b, full, full === NATPMP_LEN.MAPPING_RESPONSE ? 'mapping response' : 'external address response', false);
  const epoch = v.getUint32(4);
  if (full === NATPMP_LEN.EXTERNAL_ADDRESS_RESPONSE) {
    return { kind: 'external-address', result, epoch, externalAddress: b.slice(8, 12) };
  }
  return {
    kind: 'mapping',
    protocol: op === (NATPMP_RESPONSE_BIT | NATPMP_OP.MAP_UDP) ? 'udp' : 'tcp',
    result,
    epoch,
    internalPort: v.getUint16(8),
    externalPort: v.getUint16(10),
    lifetime: v.getUint32(12),
  };
}
