/**
 * The UDP lease protocol (docs/udp-leases.md): a browser node borrows UDP sockets from a
 * gateway (`pierce relay --udp-leases`) over a WebSocket with subprotocol `pierce-lease`. Every
 * WebSocket message is exactly one binary frame (a Batch frame carries several); the first byte
 * is its type. Integers are big endian. The gateway moves opaque datagrams only: WireGuard,
 * disco and STUN stay in the browser.
 *
 *   frame       type(1) | body
 *
 *   0x01 ServerHello  gateway → node, first    version(1)=1 | gateway key(32) | challenge(32)
 *   0x02 ClientHello  node → gateway, answer   node key(32) | nonce(24) | box(48+16)
 *                     box = NaCl crypto_box from the node key to the gateway key of
 *                           HELLO_CONTEXT(16) | challenge(32)
 *   0x03 Ready        gateway → node           JSON (ReadyInfo), UTF-8
 *   0x04 Error        either way               reqId(4) | code length(1) | code (ASCII) | message (UTF-8)
 *                     reqId 0: the lease is over (the WebSocket closes); otherwise the Bind
 *                     with that reqId failed
 *
 *   0x10 Bind         node → gateway           reqId(4, ≠ 0) | port(2) (0: any)
 *   0x11 Bound        gateway → node           reqId(4) | sockId(4) | port(2)
 *   0x12 Close        node → gateway           sockId(4)
 *
 *   0x20 Send         node → gateway           sockId(4) | addr | port(2) | payload
 *   0x21 Recv         gateway → node           sockId(4) | addr | port(2) | payload
 *   0x22 Denied       gateway → node           sockId(4) | addr | port(2) | reason(1)
 *
 *   0x30 Batch        either way, after Ready  entry | entry | … (one or more, nothing after)
 *                     entry = len(2, ≥ 1) | frame (len bytes): a whole Error, Bind, Bound,
 *                     Close, Send, Recv or Denied frame (never a hello, Ready or Batch)
 *                     The whole Batch is at most MAX_BATCH bytes.
 *
 *   addr        family(1) | 4 bytes (family 4) or 16 bytes (family 6)
 *
 * Batch exists because a browser pays per WebSocket message (an IPC hop from its network process
 * and a task on the worker), and bulk traffic over a leased path is ~10k datagrams/s: both sides
 * send the first frame of a turn alone (no added latency) and join the rest of the turn into one
 * Batch (src/lease/batcher.ts). A Batch means exactly its inner frames, in order, each handled as
 * if it had come alone. The gateway may send Batch to any node once Ready is sent (this codec and
 * its nodes ship together); a node sends Batch only to a gateway whose Ready says `batch: true`.
 *
 * The hello box proves the node holds the private key of the node key it names; the random
 * challenge makes each proof good for one connection only. The 16-byte context in front of the
 * challenge separates this box from every other box sealed with a node key: without it a
 * malicious gateway could choose a "challenge" that is a valid DERP ClientInfo JSON
 * (`{"version":2,"CanAckPings":true}` is exactly 32 bytes) and replay the node's answer to a
 * DERP relay as that node.
 *
 * Pure functions over Uint8Array, browser-safe; bad input throws LeaseError with a stable code
 * (LEASE_BAD_FRAME, LEASE_BAD_JSON, LEASE_BAD_BOX, LEASE_VERSION), never anything else.
 */
import { boxOpen, boxSeal, BOX_NONCE, BOX_OVERHEAD, type X25519 } from '../crypto/box.ts';
import type { RandomSource } from '../crypto/backend.ts';
import { equalBytes } from '../crypto/bytes.ts';
import { PierceError } from '../errors.ts';
import { NodePublic, type NodePrivate } from '../key/keys.ts';
import { formatIP, tryParseIP } from '../netstack/addr.ts';

export class LeaseError extends PierceError {}

/** WebSocket subprotocol of the lease channel. */
export const LEASE_SUBPROTOCOL = 'pierce-lease';
/** HTTP path of the lease WebSocket on a relay. */
export const LEASE_PATH = '/lease';
export const LEASE_VERSION = 1;
export const KEY_LEN = 32;
export const CHALLENGE_LEN = 32;
/** Domain separation for the hello box (see the header). */
export const HELLO_CONTEXT = new TextEncoder().encode('pierce lease v1\0');
/** The largest UDP payload over IPv4 (65535 − 20 IP − 8 UDP; RFC 768, RFC 791). */
export const MAX_DATAGRAM = 65_507;
/** Ready and Error bodies are small; anything bigger is refused. */
export const MAX_JSON_LEN = 16 << 10;
export const MAX_ERROR_CODE_LEN = 64;
export const MAX_ERROR_MESSAGE_LEN = 1024;
/** Largest frame on the wire: Send/Recv with a v6 address and a maximal datagram. */
export const MAX_FRAME = 1 + 4 + 17 + 2 + MAX_DATAGRAM;
/**
 * Largest Batch frame (under 64 KiB). The same as MAX_FRAME, so no WebSocket message is ever
 * larger than MAX_FRAME (the gateway's `maxPayload`); a frame too big to share a Batch goes alone.
 */
export const MAX_BATCH = MAX_FRAME;
/** Bytes a frame adds to a Batch: its length prefix. */
export const BATCH_ENTRY_OVERHEAD = 2;

export const FrameType = {
  ServerHello: 0x01,
  ClientHello: 0x02,
  Ready: 0x03,
  Error: 0x04,
  Bind: 0x10,
  Bound: 0x11,
  Close: 0x12,
  Send: 0x20,
  Recv: 0x21,
  Denied: 0x22,
  Batch: 0x30,
} as const;

/** The frame types a Batch may carry: everything after the handshake, but not Batch itself. */
const BATCHABLE = new Uint8Array(256);
for (const t of [FrameType.Error, FrameType.Bind, FrameType.Bound, FrameType.Close, FrameType.Send, FrameType.Recv, FrameType.Denied]) BATCHABLE[t] = 1;

/** Whether `frame` may travel inside a Batch (not a hello, Ready or Batch). */
export function canBatch(frame: Uint8Array): boolean {
  return frame.length > 0 && BATCHABLE[frame[0]!] === 1;
}

/** Why a Send was refused (Denied frame). */
export const DenyReason = {
  /** The destination is neither a STUN server of the relay map nor an endpoint IP of a peer. */
  NotAllowed: 1,
  /** Over the lease's packets/s or bytes/s budget. */
  RateLimited: 2,
  /** No such socket (closed, or never bound on this connection). */
  NoSocket: 3,
} as const;
export type DenyReason = (typeof DenyReason)[keyof typeof DenyReason];

export interface LeaseLimits {
  /** Sockets one lease may hold at once. */
  sockets: number;
  /** Sends per second (token bucket, burst of one second). */
  packetsPerSecond: number;
  /** Sent payload bytes per second (token bucket, burst of one second). */
  bytesPerSecond: number;
  /** Largest datagram accepted. */
  maxDatagram: number;
}

/** The Ready frame's JSON. */
export interface ReadyInfo {
  version: number;
  /** The node as control knows it. */
  node: { id: number; name: string };
  /** The gateway's interface addresses worth advertising with a leased port (same-LAN peers). */
  addresses: string[];
  limits: LeaseLimits;
  /** The gateway accepts Batch frames from the node (absent: send every frame alone). */
  batch?: boolean;
}

export type LeaseFrame =
  | { type: 'server-hello'; version: number; gatewayKey: NodePublic; challenge: Uint8Array }
  | { type: 'client-hello'; nodeKey: NodePublic; sealed: Uint8Array }
  | { type: 'ready'; info: ReadyInfo }
  | { type: 'error'; reqId: number; code: string; message: string }
  | { type: 'bind'; reqId: number; port: number }
  | { type: 'bound'; reqId: number; sockId: number; port: number }
  | { type: 'close'; sockId: number }
  | { type: 'send' | 'recv'; sockId: number; ip: string; port: number; payload: Uint8Array }
  | { type: 'denied'; sockId: number; ip: string; port: number; reason: number };

/** What one WebSocket message decodes to: a frame, or a Batch of frames (never nested). */
export type LeaseMessage = LeaseFrame | { type: 'batch'; frames: LeaseFrame[] };

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function bad(message: string, code = 'LEASE_BAD_FRAME'): never {
  throw new LeaseError(code, message);
}

function u32(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) bad(`${what} ${n} is not a 32-bit unsigned integer`);
  return n;
}
function u16(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) bad(`${what} ${n} is not a port`);
  return n;
}

// ---- encoders ----

export function encodeServerHello(gatewayKey: NodePublic, challenge: Uint8Array): Uint8Array {
  if (challenge.length !== CHALLENGE_LEN) bad(`the challenge must be ${CHALLENGE_LEN} bytes`);
  const out = new Uint8Array(2 + KEY_LEN + CHALLENGE_LEN);
  out[0] = FrameType.ServerHello;
  out[1] = LEASE_VERSION;
  out.set(gatewayKey.rawView(), 2);
  out.set(challenge, 2 + KEY_LEN);
  return out;
}

/** Node side: answers a ServerHello by sealing context|challenge from our key to the gateway's. */
export function encodeClientHello(nodeKey: NodePrivate, gatewayKey: NodePublic, challenge: Uint8Array, random: RandomSource, dh?: X25519): Uint8Array {
  if (challenge.length !== CHALLENGE_LEN) bad(`the challenge must be ${CHALLENGE_LEN} bytes`);
  const nonce = random(BOX_NONCE);
  if (nonce.length !== BOX_NONCE) bad('random source returned the wrong length');
  const msg = new Uint8Array(HELLO_CONTEXT.length + CHALLENGE_LEN);
  msg.set(HELLO_CONTEXT);
  msg.set(challenge, HELLO_CONTEXT.length);
  const box = boxSeal(msg, nonce, gatewayKey.rawView(), nodeKey.rawView(), dh);
  const out = new Uint8Array(1 + KEY_LEN + BOX_NONCE + box.length);
  out[0] = FrameType.ClientHello;
  out.set(nodeKey.public().rawView(), 1);
  out.set(nonce, 1 + KEY_LEN);
  out.set(box, 1 + KEY_LEN + BOX_NONCE);
  return out;
}

/**
 * Gateway side: checks a ClientHello's box against the node key it names and the challenge we
 * sent; throws LEASE_BAD_BOX when it does not open or does not hold that challenge.
 */
export function verifyClientHello(f: { nodeKey: NodePublic; sealed: Uint8Array }, gatewayKey: NodePrivate, challenge: Uint8Array, dh?: X25519): void {
  const nonce = f.sealed.subarray(0, BOX_NONCE);
  let msg: Uint8Array | null;
  try {
    msg = boxOpen(f.sealed.subarray(BOX_NONCE), nonce, f.nodeKey.rawView(), gatewayKey.rawView(), dh);
  } catch (e) {
    throw new LeaseError('LEASE_BAD_BOX', `the hello from ${f.nodeKey.short()} does not open`, { cause: e });
  }
  const want = new Uint8Array(HELLO_CONTEXT.length + CHALLENGE_LEN);
  want.set(HELLO_CONTEXT);
  want.set(challenge, HELLO_CONTEXT.length);
  if (!msg || msg.length !== want.length || !equalBytes(msg, want)) bad(`the hello from ${f.nodeKey.short()} does not prove its key`, 'LEASE_BAD_BOX');
}

export function encodeReady(info: ReadyInfo): Uint8Array {
  const json = utf8.encode(JSON.stringify(info));
  if (json.length > MAX_JSON_LEN) bad('Ready is too large');
  const out = new Uint8Array(1 + json.length);
  out[0] = FrameType.Ready;
  out.set(json, 1);
  return out;
}

export function encodeError(reqId: number, code: string, message: string): Uint8Array {
  const c = utf8.encode(code.slice(0, MAX_ERROR_CODE_LEN).replace(/[^\x21-\x7e]/g, '_'));
  let m = utf8.encode(message);
  if (m.length > MAX_ERROR_MESSAGE_LEN) m = utf8.encode(message.slice(0, MAX_ERROR_MESSAGE_LEN / 4));
  const out = new Uint8Array(6 + c.length + m.length);
  out[0] = FrameType.Error;
  new DataView(out.buffer).setUint32(1, u32(reqId, 'reqId'));
  out[5] = c.length;
  out.set(c, 6);
  out.set(m, 6 + c.length);
  return out;
}

export function encodeBind(reqId: number, port: number): Uint8Array {
  const out = new Uint8Array(7);
  const v = new DataView(out.buffer);
  out[0] = FrameType.Bind;
  if (reqId === 0) bad('reqId 0 is reserved');
  v.setUint32(1, u32(reqId, 'reqId'));
  v.setUint16(5, u16(port, 'port'));
  return out;
}

export function encodeBound(reqId: number, sockId: number, port: number): Uint8Array {
  const out = new Uint8Array(11);
  const v = new DataView(out.buffer);
  out[0] = FrameType.Bound;
  v.setUint32(1, u32(reqId, 'reqId'));
  v.setUint32(5, u32(sockId, 'sockId'));
  v.setUint16(9, u16(port, 'port'));
  return out;
}

export function encodeClose(sockId: number): Uint8Array {
  const out = new Uint8Array(5);
  out[0] = FrameType.Close;
  new DataView(out.buffer).setUint32(1, u32(sockId, 'sockId'));
  return out;
}

function addrBytes(ip: string): Uint8Array {
  const b = tryParseIP(ip);
  if (!b) bad(`"${ip}" is not an IP address`);
  return b;
}

/** sockId | addr | port, then `tail` bytes left for the caller at the returned offset. */
function addressed(type: number, sockId: number, ip: string, port: number, tail: number): { out: Uint8Array; at: number } {
  const a = addrBytes(ip);
  const out = new Uint8Array(1 + 4 + 1 + a.length + 2 + tail);
  const v = new DataView(out.buffer);
  out[0] = type;
  v.setUint32(1, u32(sockId, 'sockId'));
  out[5] = a.length === 4 ? 4 : 6;
  out.set(a, 6);
  v.setUint16(6 + a.length, u16(port, 'port'));
  return { out, at: 8 + a.length };
}

function encodeDatagram(type: number, sockId: number, ip: string, port: number, payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_DATAGRAM) bad(`a datagram of ${payload.length} bytes is over ${MAX_DATAGRAM}`);
  const { out, at } = addressed(type, sockId, ip, port, payload.length);
  out.set(payload, at);
  return out;
}

export function encodeSend(sockId: number, ip: string, port: number, payload: Uint8Array): Uint8Array {
  return encodeDatagram(FrameType.Send, sockId, ip, port, payload);
}

export function encodeRecv(sockId: number, ip: string, port: number, payload: Uint8Array): Uint8Array {
  return encodeDatagram(FrameType.Recv, sockId, ip, port, payload);
}

export function encodeDenied(sockId: number, ip: string, port: number, reason: number): Uint8Array {
  const { out, at } = addressed(FrameType.Denied, sockId, ip, port, 1);
  if (!Number.isInteger(reason) || reason < 1 || reason > 255) bad(`deny reason ${reason} is out of range`);
  out[at] = reason;
  return out;
}

/**
 * A Batch of whole frames, in order: len(2) | frame for each. Throws LeaseError for no frames, an
 * empty or oversized frame, a frame that may not be batched (hellos, Ready, Batch) or a result
 * over MAX_BATCH.
 */
export function encodeBatch(frames: readonly Uint8Array[]): Uint8Array {
  if (frames.length === 0) bad('a Batch needs at least one frame');
  let size = 1;
  for (const f of frames) {
    if (f.length === 0) bad('an empty frame cannot be batched');
    if (!BATCHABLE[f[0]!]) bad(`frame type 0x${f[0]!.toString(16).padStart(2, '0')} cannot be batched`);
    size += BATCH_ENTRY_OVERHEAD + f.length;
  }
  if (size > MAX_BATCH) bad(`a Batch of ${size} bytes is over ${MAX_BATCH}`);
  const out = new Uint8Array(size);
  out[0] = FrameType.Batch;
  let at = 1;
  for (const f of frames) {
    out[at] = f.length >>> 8;
    out[at + 1] = f.length & 0xff;
    out.set(f, at + 2);
    at += 2 + f.length;
  }
  return out;
}

// ---- decoder ----

function need(b: Uint8Array, n: number, what: string): void {
  if (b.length < n) bad(`${what} of ${b.length} bytes is too short (need ${n})`);
}
function exact(b: Uint8Array, n: number, what: string): void {
  if (b.length !== n) bad(`${what} is ${b.length} bytes, not ${n}`);
}

function readAddr(b: Uint8Array, at: number, what: string): { ip: string; port: number; end: number } {
  need(b, at + 1, what);
  const fam = b[at]!;
  const len = fam === 4 ? 4 : fam === 6 ? 16 : bad(`${what}: address family ${fam} is neither 4 nor 6`);
  need(b, at + 1 + len + 2, what);
  const ip = formatIP(b.slice(at + 1, at + 1 + len));
  const port = (b[at + 1 + len]! << 8) | b[at + 2 + len]!;
  return { ip, port, end: at + 3 + len };
}

function isStringList(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

function parseReady(body: Uint8Array): ReadyInfo {
  if (body.length > MAX_JSON_LEN) bad(`Ready of ${body.length} bytes is over ${MAX_JSON_LEN}`);
  let v: unknown;
  try {
    v = JSON.parse(utf8Strict.decode(body));
  } catch (e) {
    throw new LeaseError('LEASE_BAD_JSON', 'Ready is not valid JSON', { cause: e });
  }
  const o = v as Record<string, unknown> | null;
  const json = (m: string): never => bad(`Ready: ${m}`, 'LEASE_BAD_JSON');
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return json('not an object');
  if (typeof o['version'] !== 'number') return json('no version');
  if (o['version'] !== LEASE_VERSION) bad(`the gateway speaks lease version ${String(o['version'])}, not ${LEASE_VERSION}`, 'LEASE_VERSION');
  const node = o['node'] as Record<string, unknown> | null;
  if (typeof node !== 'object' || node === null || typeof node['id'] !== 'number' || typeof node['name'] !== 'string') return json('bad node');
  if (!isStringList(o['addresses']) || o['addresses'].some((a) => !tryParseIP(a))) return json('addresses must be a list of IP addresses');
  const l = o['limits'] as Record<string, unknown> | null;
  if (typeof l !== 'object' || l === null) return json('no limits');
  const limits = {} as LeaseLimits;
  for (const k of ['sockets', 'packetsPerSecond', 'bytesPerSecond', 'maxDatagram'] as const) {
    const x = l[k];
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) return json(`limits.${k} is not a non-negative integer`);
    limits[k] = x;
  }
  const batch = o['batch'];
  if (batch !== undefined && typeof batch !== 'boolean') return json('batch is not a boolean');
  return { version: LEASE_VERSION, node: { id: node['id'], name: node['name'] }, addresses: o['addresses'], limits, ...(batch !== undefined ? { batch } : {}) };
}

/**
 * Parses one WebSocket message: a frame, or a Batch whose frames are all checked and decoded
 * (any bad entry fails the whole message). Throws LeaseError for anything malformed.
 */
export function decodeFrame(b: Uint8Array): LeaseMessage {
  if (!(b instanceof Uint8Array)) bad('a frame must be bytes');
  need(b, 1, 'a frame');
  if (b[0] === FrameType.Batch) return { type: 'batch', frames: decodeBatch(b) };
  return decodeOne(b);
}

/** The frames of one WebSocket message, in order: a Batch's frames, or the frame itself. */
export function decodeFrames(b: Uint8Array): LeaseFrame[] {
  const m = decodeFrame(b);
  return m.type === 'batch' ? m.frames : [m];
}

function decodeBatch(b: Uint8Array): LeaseFrame[] {
  if (b.length > MAX_BATCH) bad(`a Batch of ${b.length} bytes is over ${MAX_BATCH}`);
  if (b.length === 1) bad('a Batch with no frames');
  const frames: LeaseFrame[] = [];
  let at = 1;
  while (at < b.length) {
    if (at + BATCH_ENTRY_OVERHEAD > b.length) bad(`Batch entry ${frames.length + 1}: length cut off`);
    const n = (b[at]! << 8) | b[at + 1]!;
    at += BATCH_ENTRY_OVERHEAD;
    if (n === 0) bad(`Batch entry ${frames.length + 1} is empty`);
    if (at + n > b.length) bad(`Batch entry ${frames.length + 1} of ${n} bytes is cut off at ${b.length - at}`);
    const t = b[at]!;
    if (!BATCHABLE[t]) bad(t === FrameType.Batch ? 'a Batch inside a Batch' : `Batch entry ${frames.length + 1}: frame type 0x${t.toString(16).padStart(2, '0')} cannot be batched`);
    frames.push(decodeOne(b.subarray(at, at + n)));
    at += n;
  }
  return frames;
}

function decodeOne(b: Uint8Array): LeaseFrame {
  need(b, 1, 'a frame');
  if (b.length > MAX_FRAME) bad(`a frame of ${b.length} bytes is over ${MAX_FRAME}`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  switch (b[0]) {
    case FrameType.ServerHello: {
      exact(b, 2 + KEY_LEN + CHALLENGE_LEN, 'ServerHello');
      if (b[1] !== LEASE_VERSION) bad(`the gateway speaks lease version ${b[1]}, not ${LEASE_VERSION}`, 'LEASE_VERSION');
      return { type: 'server-hello', version: b[1]!, gatewayKey: NodePublic.fromRaw(b.subarray(2, 2 + KEY_LEN)), challenge: b.slice(2 + KEY_LEN) };
    }
    case FrameType.ClientHello: {
      exact(b, 1 + KEY_LEN + BOX_NONCE + HELLO_CONTEXT.length + CHALLENGE_LEN + BOX_OVERHEAD, 'ClientHello');
      return { type: 'client-hello', nodeKey: NodePublic.fromRaw(b.subarray(1, 1 + KEY_LEN)), sealed: b.slice(1 + KEY_LEN) };
    }
    case FrameType.Ready:
      return { type: 'ready', info: parseReady(b.subarray(1)) };
    case FrameType.Error: {
      need(b, 6, 'Error');
      const n = b[5]!;
      need(b, 6 + n, 'Error');
      if (b.length > 6 + n + MAX_ERROR_MESSAGE_LEN) bad('Error message is too long');
      const code = String.fromCharCode(...b.subarray(6, 6 + n));
      if (n === 0 || n > MAX_ERROR_CODE_LEN || !/^[\x21-\x7e]+$/.test(code)) bad('Error code must be 1–64 printable ASCII characters');
      let message: string;
      try {
        message = utf8Strict.decode(b.subarray(6 + n));
      } catch {
        return bad('Error message is not UTF-8');
      }
      return { type: 'error', reqId: v.getUint32(1), code, message };
    }
    case FrameType.Bind: {
      exact(b, 7, 'Bind');
      const reqId = v.getUint32(1);
      if (reqId === 0) bad('Bind with reqId 0');
      return { type: 'bind', reqId, port: v.getUint16(5) };
    }
    case FrameType.Bound:
      exact(b, 11, 'Bound');
      return { type: 'bound', reqId: v.getUint32(1), sockId: v.getUint32(5), port: v.getUint16(9) };
    case FrameType.Close:
      exact(b, 5, 'Close');
      return { type: 'close', sockId: v.getUint32(1) };
    case FrameType.Send:
    case FrameType.Recv: {
      const what = b[0] === FrameType.Send ? 'Send' : 'Recv';
      need(b, 5, what);
      const a = readAddr(b, 5, what);
      if (a.port === 0) bad(`${what} to port 0`);
      return { type: b[0] === FrameType.Send ? 'send' : 'recv', sockId: v.getUint32(1), ip: a.ip, port: a.port, payload: b.subarray(a.end) };
    }
    case FrameType.Denied: {
      need(b, 5, 'Denied');
      const a = readAddr(b, 5, 'Denied');
      exact(b, a.end + 1, 'Denied');
      return { type: 'denied', sockId: v.getUint32(1), ip: a.ip, port: a.port, reason: b[a.end]! };
    }
    default:
      return bad(`unknown frame type 0x${b[0]!.toString(16).padStart(2, '0')}`);
  }
}

/** Text of a deny reason for logs. */
export function denyReasonText(r: number): string {
  return r === DenyReason.NotAllowed ? 'destination not allowed' : r === DenyReason.RateLimited ? 'rate limited' : r === DenyReason.NoSocket ? 'no such socket' : `reason ${r}`;
}
