/**
 * DERP framing, protocol version 2, as Tailscale's `derp/derp.go` defines it (constants and
 * frame numbers from there; snapshot de9ec7ee2562).
 *
 * Every frame is a 5-byte header and a payload:
 *   0      1                   5
 *   | type | length (u32, BE)  | payload (length bytes) ...
 * The length counts the payload only. Frames are a byte stream: over WebSocket one message may
 * hold part of a frame, several frames, or both, so `FrameReader` parses by length only.
 *
 * Payloads (S = server, C = client, M = mesh peer):
 *   0x01 ServerKey     S→C  magic "DERP🔑"(8) | server public key(32) | [future bytes, ignored]
 *   0x02 ClientInfo    C→S  client public key(32) | nonce(24) | box(JSON)   (see handshake.ts)
 *   0x03 ServerInfo    S→C  nonce(24) | box(JSON)
 *   0x04 SendPacket    C→S  destination key(32) | packet (≤ 64 KiB)
 *   0x05 RecvPacket    S→C  source key(32) | packet (≤ 64 KiB)          (v2: source key added)
 *   0x06 KeepAlive     S→C  empty
 *   0x07 NotePreferred C→S  1 byte: 0x01 this is the client's home region, 0x00 not
 *   0x08 PeerGone      S→C  key(32) | reason(1)   (reason absent on old servers = Disconnected)
 *   0x09 PeerPresent   S→M  key(32) [| IP(16) | port(2, BE) [| flags(1)]]  (older servers send less)
 *   0x0a ForwardPacket M→S  source key(32) | destination key(32) | packet
 *   0x10 WatchConns    M→S  empty (needs the mesh key)
 *   0x11 ClosePeer     M→S  key(32) (needs the mesh key)
 *   0x12 Ping          both 8 bytes to echo (Go's server accepts up to 1000 and echoes the first 8)
 *   0x13 Pong          both the 8 bytes of the ping
 *   0x14 Health        S→C  UTF-8 text; empty clears the problem
 *   0x15 Restarting    S→C  reconnectIn ms (u32 BE) | tryFor ms (u32 BE)
 *
 * Unknown frame types are passed through by the reader and skipped by the client, as Go's client
 * and server both do, so a newer peer can add frames.
 */
import { NodePublic } from '../key/keys.ts';
import { DerpError } from './errors.ts';

/** "DERP🔑", the first 8 bytes of a ServerKey payload (derp.go `Magic`). */
export const MAGIC = Uint8Array.of(0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91);
/** derp.go `ProtocolVersion`: version 2 puts the source key in RecvPacket. */
export const PROTOCOL_VERSION = 2;
/** derp.go `MaxPacketSize`: the largest packet a Send/Recv/ForwardPacket may carry. */
export const MAX_PACKET_SIZE = 64 << 10;
/** derp.go `KeepAlive`: the server sends a KeepAlive at least this often (plus jitter). */
export const KEEPALIVE_MS = 60_000;
/** derp_client.go `Recv`: the client gives up after this long without a frame. */
export const CLIENT_READ_TIMEOUT_MS = 120_000;
export const FRAME_HEADER_LEN = 5;
export const KEY_LEN = 32;
export const NONCE_LEN = 24;
/** derp.go `MaxInfoLen`. */
export const MAX_INFO_LEN = 1 << 20;
/** derp_client.go: the client rejects frames over 1 MiB. */
export const MAX_FRAME_SIZE = 1 << 20;
/** derp_client.go `recvServerKey`: the greeting frame is read with a 1 KiB limit. */
export const MAX_SERVER_KEY_FRAME = 1 << 10;
/** derpserver.go `recvClientKey`: ClientInfo over 256 KiB is refused. */
export const MAX_CLIENT_INFO_LEN = 256 << 10;
/** derpserver.go `handleFramePing`: ping bodies over 1000 bytes are refused. */
export const MAX_PING_BODY = 1000;
export const PING_LEN = 8;

export const FrameType = {
  ServerKey: 0x01,
  ClientInfo: 0x02,
  ServerInfo: 0x03,
  SendPacket: 0x04,
  RecvPacket: 0x05,
  KeepAlive: 0x06,
  NotePreferred: 0x07,
  PeerGone: 0x08,
  PeerPresent: 0x09,
  ForwardPacket: 0x0a,
  WatchConns: 0x10,
  ClosePeer: 0x11,
  Ping: 0x12,
  Pong: 0x13,
  Health: 0x14,
  Restarting: 0x15,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** derp.go `PeerGoneReasonType`. MeshConnBroke is invented locally, never sent on the wire. */
export const PeerGoneReason = {
  Disconnected: 0x00,
  NotHere: 0x01,
  MeshConnBroke: 0xf0,
} as const;

/** derp.go `PeerPresentFlags` bits; zero means the server does not send flags. */
export const PeerPresentFlags = {
  Regular: 1 << 0,
  MeshPeer: 1 << 1,
  Prober: 1 << 2,
  NotIdeal: 1 << 3,
} as const;

/** One frame as read off the stream. `type` may be a value this code does not know. */
export interface DerpFrame {
  type: number;
  payload: Uint8Array;
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** A whole frame: header plus a copy of `payload`. */
export function encodeFrame(type: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  return frameOf(type, payload.length, (out, o) => out.set(payload, o));
}

function frameOf(type: number, len: number, fill: (out: Uint8Array, off: number) => void): Uint8Array {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw new DerpError('DERP_BAD_FRAME', `frame type ${type} is not a byte`);
  if (len > 0xffffffff) throw new DerpError('DERP_FRAME_TOO_LARGE', `frame of ${len} bytes`);
  const out = new Uint8Array(FRAME_HEADER_LEN + len);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, len, false);
  fill(out, FRAME_HEADER_LEN);
  return out;
}

function checkPacket(packet: Uint8Array): void {
  if (packet.length > MAX_PACKET_SIZE) {
    throw new DerpError('DERP_PACKET_TOO_LARGE', `packet of ${packet.length} bytes is over the DERP limit of ${MAX_PACKET_SIZE}`);
  }
}

function checkLen(b: Uint8Array, n: number, what: string): void {
  if (b.length !== n) throw new DerpError('DERP_BAD_FRAME', `${what} must be ${n} bytes, got ${b.length}`);
}

export function encodeServerKey(serverKey: NodePublic, extra: Uint8Array = new Uint8Array(0)): Uint8Array {
  return frameOf(FrameType.ServerKey, MAGIC.length + KEY_LEN + extra.length, (out, o) => {
    out.set(MAGIC, o);
    out.set(serverKey.rawView(), o + MAGIC.length);
    out.set(extra, o + MAGIC.length + KEY_LEN);
  });
}

/** `sealed` is nonce(24) || box, as `sealClientInfo` builds it after the key. */
export function encodeClientInfo(clientKey: NodePublic, sealed: Uint8Array): Uint8Array {
  return frameOf(FrameType.ClientInfo, KEY_LEN + sealed.length, (out, o) => {
    out.set(clientKey.rawView(), o);
    out.set(sealed, o + KEY_LEN);
  });
}

/** `sealed` is nonce(24) || box. */
export function encodeServerInfo(sealed: Uint8Array): Uint8Array {
  return encodeFrame(FrameType.ServerInfo, sealed);
}

function keyAndPacket(type: number, k: NodePublic, packet: Uint8Array): Uint8Array {
  checkPacket(packet);
  return frameOf(type, KEY_LEN + packet.length, (out, o) => {
    out.set(k.rawView(), o);
    out.set(packet, o + KEY_LEN);
  });
}

export function encodeSendPacket(dst: NodePublic, packet: Uint8Array): Uint8Array {
  return keyAndPacket(FrameType.SendPacket, dst, packet);
}

export function encodeRecvPacket(src: NodePublic, packet: Uint8Array): Uint8Array {
  return keyAndPacket(FrameType.RecvPacket, src, packet);
}

export function encodeForwardPacket(src: NodePublic, dst: NodePublic, packet: Uint8Array): Uint8Array {
  checkPacket(packet);
  return frameOf(FrameType.ForwardPacket, 2 * KEY_LEN + packet.length, (out, o) => {
    out.set(src.rawView(), o);
    out.set(dst.rawView(), o + KEY_LEN);
    out.set(packet, o + 2 * KEY_LEN);
  });
}

export function encodeKeepAlive(): Uint8Array {
  return encodeFrame(FrameType.KeepAlive);
}

export function encodeNotePreferred(preferred: boolean): Uint8Array {
  return encodeFrame(FrameType.NotePreferred, Uint8Array.of(preferred ? 1 : 0));
}

export function encodePeerGone(peer: NodePublic, reason: number = PeerGoneReason.Disconnected): Uint8Array {
  return frameOf(FrameType.PeerGone, KEY_LEN + 1, (out, o) => {
    out.set(peer.rawView(), o);
    out[o + KEY_LEN] = reason & 0xff;
  });
}

export interface PeerPresent {
  key: NodePublic;
  /** The client's address as the server saw it: 4 bytes (IPv4, unmapped as Go does) or 16. */
  ip?: Uint8Array;
  port?: number;
  /** PeerPresentFlags bits; absent when an older server did not send them. */
  flags?: number;
}

/** Encodes the 41-byte form current servers send (key, IP, port, flags). */
export function encodePeerPresent(p: PeerPresent): Uint8Array {
  if (p.ip === undefined) return encodeFrame(FrameType.PeerPresent, p.key.rawView());
  const ip16 = new Uint8Array(16);
  if (p.ip.length === 4) {
    ip16[10] = 0xff;
    ip16[11] = 0xff;
    ip16.set(p.ip, 12);
  } else {
    checkLen(p.ip, 16, 'PeerPresent IP');
    ip16.set(p.ip);
  }
  const port = p.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new DerpError('DERP_BAD_FRAME', `port ${port} is not a u16`);
  const withFlags = p.flags !== undefined;
  return frameOf(FrameType.PeerPresent, KEY_LEN + 18 + (withFlags ? 1 : 0), (out, o) => {
    out.set(p.key.rawView(), o);
    out.set(ip16, o + KEY_LEN);
    out[o + KEY_LEN + 16] = port >>> 8;
    out[o + KEY_LEN + 17] = port & 0xff;
    if (withFlags) out[o + KEY_LEN + 18] = p.flags! & 0xff;
  });
}

export function encodeWatchConns(): Uint8Array {
  return encodeFrame(FrameType.WatchConns);
}

export function encodeClosePeer(peer: NodePublic): Uint8Array {
  return encodeFrame(FrameType.ClosePeer, peer.rawView());
}

export function encodePing(data: Uint8Array): Uint8Array {
  checkLen(data, PING_LEN, 'ping data');
  return encodeFrame(FrameType.Ping, data);
}

export function encodePong(data: Uint8Array): Uint8Array {
  checkLen(data, PING_LEN, 'pong data');
  return encodeFrame(FrameType.Pong, data);
}

export function encodeHealth(problem: string): Uint8Array {
  return encodeFrame(FrameType.Health, new TextEncoder().encode(problem));
}

function u32(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new DerpError('DERP_BAD_FRAME', `${what} ${n} is not a u32`);
  return n;
}

export function encodeRestarting(reconnectInMs: number, tryForMs: number): Uint8Array {
  const a = u32(reconnectInMs, 'reconnectIn');
  const b = u32(tryForMs, 'tryFor');
  return frameOf(FrameType.Restarting, 8, (out, o) => {
    const v = new DataView(out.buffer);
    v.setUint32(o, a, false);
    v.setUint32(o + 4, b, false);
  });
}

// ---------------------------------------------------------------------------------------------
// Decoding payloads. Each checks lengths and throws DerpError; byte fields are views into the
// payload (no copies), keys are copied into NodePublic.

function atLeast(p: Uint8Array, n: number, what: string): void {
  if (p.length < n) throw new DerpError('DERP_BAD_FRAME', `${what} frame too short: ${p.length} bytes, need ${n}`);
}

export interface ServerKey {
  key: NodePublic;
  /** Bytes after the key, reserved for future use; ignored. */
  extra: Uint8Array;
}

export function decodeServerKey(p: Uint8Array): ServerKey {
  atLeast(p, MAGIC.length + KEY_LEN, 'ServerKey');
  for (let i = 0; i < MAGIC.length; i++) {
    if (p[i] !== MAGIC[i]) throw new DerpError('DERP_BAD_MAGIC', 'ServerKey frame does not start with the DERP magic');
  }
  return {
    key: NodePublic.fromRaw(p.subarray(MAGIC.length, MAGIC.length + KEY_LEN)),
    extra: p.subarray(MAGIC.length + KEY_LEN),
  };
}

export interface ClientInfoFrame {
  clientKey: NodePublic;
  nonce: Uint8Array;
  box: Uint8Array;
}

export function decodeClientInfo(p: Uint8Array): ClientInfoFrame {
  atLeast(p, KEY_LEN + NONCE_LEN + 16, 'ClientInfo');
  return {
    clientKey: NodePublic.fromRaw(p.subarray(0, KEY_LEN)),
    nonce: p.subarray(KEY_LEN, KEY_LEN + NONCE_LEN),
    box: p.subarray(KEY_LEN + NONCE_LEN),
  };
}

export interface ServerInfoFrame {
  nonce: Uint8Array;
  box: Uint8Array;
}

export function decodeServerInfo(p: Uint8Array): ServerInfoFrame {
  atLeast(p, NONCE_LEN + 16, 'ServerInfo');
  return { nonce: p.subarray(0, NONCE_LEN), box: p.subarray(NONCE_LEN) };
}

export interface KeyedPacket {
  /** Destination for SendPacket, source for RecvPacket. */
  key: NodePublic;
  packet: Uint8Array;
}

function decodeKeyed(p: Uint8Array, what: string): KeyedPacket {
  atLeast(p, KEY_LEN, what);
  if (p.length - KEY_LEN > MAX_PACKET_SIZE) {
    throw new DerpError('DERP_FRAME_TOO_LARGE', `${what} packet of ${p.length - KEY_LEN} bytes is over ${MAX_PACKET_SIZE}`);
  }
  return { key: NodePublic.fromRaw(p.subarray(0, KEY_LEN)), packet: p.subarray(KEY_LEN) };
}

export function decodeSendPacket(p: Uint8Array): KeyedPacket {
  return decodeKeyed(p, 'SendPacket');
}

export function decodeRecvPacket(p: Uint8Array): KeyedPacket {
  return decodeKeyed(p, 'RecvPacket');
}

export interface ForwardPacket {
  src: NodePublic;
  dst: NodePublic;
  packet: Uint8Array;
}

export function decodeForwardPacket(p: Uint8Array): ForwardPacket {
  atLeast(p, 2 * KEY_LEN, 'ForwardPacket');
  if (p.length - 2 * KEY_LEN > MAX_PACKET_SIZE) {
    throw new DerpError('DERP_FRAME_TOO_LARGE', `ForwardPacket packet of ${p.length - 2 * KEY_LEN} bytes is over ${MAX_PACKET_SIZE}`);
  }
  return {
    src: NodePublic.fromRaw(p.subarray(0, KEY_LEN)),
    dst: NodePublic.fromRaw(p.subarray(KEY_LEN, 2 * KEY_LEN)),
    packet: p.subarray(2 * KEY_LEN),
  };
}

export interface PeerGone {
  key: NodePublic;
  reason: number;
}

/** Key plus reason; an old server's 32-byte form means Disconnected; extra bytes are ignored (as Go). */
export function decodePeerGone(p: Uint8Array): PeerGone {
  atLeast(p, KEY_LEN, 'PeerGone');
  return { key: NodePublic.fromRaw(p.subarray(0, KEY_LEN)), reason: p.length > KEY_LEN ? p[KEY_LEN]! : PeerGoneReason.Disconnected };
}

/** Key, then IP+port when at least 18 more bytes, then flags when one more (as Go's client). */
export function decodePeerPresent(p: Uint8Array): PeerPresent {
  atLeast(p, KEY_LEN, 'PeerPresent');
  const out: PeerPresent = { key: NodePublic.fromRaw(p.subarray(0, KEY_LEN)) };
  if (p.length < KEY_LEN + 18) return out;
  const ip = p.subarray(KEY_LEN, KEY_LEN + 16);
  let mapped = ip[10] === 0xff && ip[11] === 0xff;
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) mapped = false;
  out.ip = Uint8Array.from(mapped ? ip.subarray(12) : ip);
  out.port = (p[KEY_LEN + 16]! << 8) | p[KEY_LEN + 17]!;
  if (p.length > KEY_LEN + 18) out.flags = p[KEY_LEN + 18]!;
  return out;
}

export function decodeClosePeer(p: Uint8Array): NodePublic {
  checkLen(p, KEY_LEN, 'ClosePeer payload');
  return NodePublic.fromRaw(p);
}

/** Empty payloads (KeepAlive from the server is tolerated with any payload by Go; WatchConns not). */
export function decodeWatchConns(p: Uint8Array): void {
  checkLen(p, 0, 'WatchConns payload');
}

/**
 * Ping and Pong bodies: at least 8 bytes and at most MAX_PING_BODY; the first 8 are the data.
 * Go's server and client both accept a longer body and use its first 8 bytes ("room for future
 * extensibility"); senders always send exactly 8.
 */
export function decodePing(p: Uint8Array): Uint8Array {
  atLeast(p, PING_LEN, 'Ping');
  if (p.length > MAX_PING_BODY) throw new DerpError('DERP_BAD_FRAME', `ping body of ${p.length} bytes is over ${MAX_PING_BODY}`);
  return p.subarray(0, PING_LEN);
}

export const decodePong: (p: Uint8Array) => Uint8Array = decodePing;

export function decodeNotePreferred(p: Uint8Array): boolean {
  checkLen(p, 1, 'NotePreferred payload');
  return p[0] !== 0;
}

export function decodeHealth(p: Uint8Array): string {
  return new TextDecoder().decode(p);
}

export interface Restarting {
  reconnectInMs: number;
  tryForMs: number;
}

/** Two BE u32 millisecond values; extra bytes are ignored, as Go does. */
export function decodeRestarting(p: Uint8Array): Restarting {
  atLeast(p, 8, 'Restarting');
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return { reconnectInMs: v.getUint32(0, false), tryForMs: v.getUint32(4, false) };
}

// ---------------------------------------------------------------------------------------------
// Incremental reader

export interface FrameReaderOptions {
  /** Largest payload accepted for any frame; default MAX_FRAME_SIZE (1 MiB), the client's limit. */
  maxFrameSize?: number;
}

/** Largest payload that packet-carrying frame types may announce, checked from the header. */
function packetFrameLimit(type: number): number {
  switch (type) {
    case FrameType.SendPacket:
    case FrameType.RecvPacket:
      return KEY_LEN + MAX_PACKET_SIZE;
    case FrameType.ForwardPacket:
      return 2 * KEY_LEN + MAX_PACKET_SIZE;
    default:
      return Infinity;
  }
}

/**
 * Splits a byte stream into frames. Feed it chunks of any size with `push`; it returns the frames
 * completed by that chunk. Oversize lengths are refused from the header, before any payload is
 * buffered. After an error the reader is dead: every later `push` throws DERP_DEAD.
 *
 * A payload that arrives whole inside one chunk is returned as a view into that chunk (no copy);
 * do not reuse a chunk's memory after pushing it. Split payloads are assembled into a new array.
 */
export class FrameReader {
  private readonly maxFrameSize: number;
  private readonly hdr = new Uint8Array(FRAME_HEADER_LEN);
  private hdrFill = 0;
  private type = 0;
  private body: Uint8Array | null = null;
  private bodyFill = 0;
  private failure: DerpError | null = null;

  constructor(opts: FrameReaderOptions = {}) {
    this.maxFrameSize = opts.maxFrameSize ?? MAX_FRAME_SIZE;
  }

  /** The error that killed the reader, or null while it is healthy. */
  get error(): DerpError | null {
    return this.failure;
  }

  /** Bytes held for an incomplete frame (0 means the stream ended on a frame boundary). */
  get buffered(): number {
    return this.body ? FRAME_HEADER_LEN + this.bodyFill : this.hdrFill;
  }

  push(chunk: Uint8Array): DerpFrame[] {
    if (this.failure) throw new DerpError('DERP_DEAD', `DERP stream already failed: ${this.failure.message}`, { cause: this.failure });
    try {
      return this.parse(chunk);
    } catch (e) {
      this.failure = e instanceof DerpError ? e : new DerpError('DERP_BAD_FRAME', String(e), { cause: e });
      this.body = null;
      throw this.failure;
    }
  }

  private parse(chunk: Uint8Array): DerpFrame[] {
    const frames: DerpFrame[] = [];
    let off = 0;
    while (off < chunk.length) {
      if (this.body === null) {
        let type: number;
        let len: number;
        if (this.hdrFill === 0 && chunk.length - off >= FRAME_HEADER_LEN) {
          type = chunk[off]!;
          len = ((chunk[off + 1]! << 24) >>> 0) + (chunk[off + 2]! << 16) + (chunk[off + 3]! << 8) + chunk[off + 4]!;
          off += FRAME_HEADER_LEN;
        } else {
          const n = Math.min(FRAME_HEADER_LEN - this.hdrFill, chunk.length - off);
          this.hdr.set(chunk.subarray(off, off + n), this.hdrFill);
          this.hdrFill += n;
          off += n;
          if (this.hdrFill < FRAME_HEADER_LEN) break;
          const h = this.hdr;
          type = h[0]!;
          len = ((h[1]! << 24) >>> 0) + (h[2]! << 16) + (h[3]! << 8) + h[4]!;
          this.hdrFill = 0;
        }
        const limit = Math.min(this.maxFrameSize, packetFrameLimit(type));
        if (len > limit) {
          throw new DerpError('DERP_FRAME_TOO_LARGE', `frame type 0x${type.toString(16)} announces ${len} bytes, over the limit of ${limit}`);
        }
        if (chunk.length - off >= len) {
          frames.push({ type, payload: chunk.subarray(off, off + len) });
          off += len;
          continue;
        }
        this.type = type;
        this.body = new Uint8Array(len);
        this.bodyFill = 0;
      }
      const n = Math.min(this.body.length - this.bodyFill, chunk.length - off);
      this.body.set(chunk.subarray(off, off + n), this.bodyFill);
      this.bodyFill += n;
      off += n;
      if (this.bodyFill < this.body.length) break;
      frames.push({ type: this.type, payload: this.body });
      this.body = null;
    }
    return frames;
  }
}
