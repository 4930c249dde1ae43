/**
 * One client connection on the relay (the server side of Tailscale's DERP v2):
 *
 *   accept ─▶ send ServerKey ─▶ ClientInfo (≤ 256 KiB, within 10 s) ─▶ ServerInfo ─▶ ready
 *   ready:  SendPacket → route; Ping → Pong; NotePreferred; mesh only: WatchConns, ClosePeer,
 *           ForwardPacket; unknown frames are skipped (newer clients may send them)
 *
 * Outbound packets wait in two bounded queues (32 packets, plus 32 for disco, as Tailscale's
 * server): when full the oldest is dropped. The queues feed the socket only while its own buffer
 * is small; a reader that stays behind longer than the write timeout is disconnected. Received
 * bytes pass a per-client token bucket. Any protocol error closes this connection only.
 */
import type { RandomSource } from '../../../src/crypto/backend.ts';
import { equalBytes } from '../../../src/crypto/bytes.ts';
import type { NodePrivate, NodePublic } from '../../../src/key/keys.ts';
import { DerpError } from '../../../src/derp/errors.ts';
import {
  FrameReader,
  FrameType,
  decodeClosePeer,
  decodeForwardPacket,
  decodeNotePreferred,
  decodePing,
  encodeKeepAlive,
  encodePong,
  encodeServerInfo,
  encodeServerKey,
  type DerpFrame,
} from '../../../src/derp/frames.ts';
import { openClientInfo, sealServerInfo, type ClientInfo } from '../../../src/derp/handshake.ts';
import type { ByteConn } from './transport.ts';
import { nodeBackend } from '../crypto/node-backend.ts';

export interface RelayLimits {
  handshakeTimeoutMs: number;
  maxClientInfoBytes: number;
  queuePackets: number;
  queueDisco: number;
  /** A client whose socket buffer stays over `writeBufferHigh` this long is disconnected. */
  writeTimeoutMs: number;
  writeBufferHigh: number;
  keepaliveMs: number;
  keepaliveJitterMs: number;
  /** Per-client token bucket on received frame bytes (0 = unlimited). */
  rateBytesPerSec: number;
  burstBytes: number;
}

export const DEFAULT_RELAY_LIMITS: RelayLimits = {
  handshakeTimeoutMs: 10_000,
  maxClientInfoBytes: 256 << 10,
  queuePackets: 32,
  queueDisco: 32,
  writeTimeoutMs: 2_000,
  writeBufferHigh: 256 << 10,
  keepaliveMs: 60_000,
  keepaliveJitterMs: 5_000,
  rateBytesPerSec: 0,
  burstBytes: 0,
};

/** What a session needs from the relay. */
export interface RelayCore {
  readonly privateKey: NodePrivate;
  readonly publicKey: NodePublic;
  readonly meshKey: Uint8Array | null;
  readonly limits: RelayLimits;
  readonly random: RandomSource;
  register(s: Session): void;
  unregister(s: Session): void;
  /** `dst` is the raw 32-byte key (no object per packet on the hot path). */
  route(from: Session, dst: Uint8Array, packet: Uint8Array, frame: Uint8Array | null): void;
  forward(from: Session, src: NodePublic, dst: NodePublic, packet: Uint8Array): void;
  watch(s: Session): void;
  closePeer(key: NodePublic): void;
  drop(reason: string): void;
  log(level: 'debug' | 'info' | 'warn', message: string): void;
}

/** Tailscale's disco magic "TS💬": disco packets get their own queue. */
const DISCO_MAGIC = Uint8Array.of(0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac);

export function isDisco(packet: Uint8Array): boolean {
  return packet.length >= DISCO_MAGIC.length + 32 && equalBytes(packet.subarray(0, DISCO_MAGIC.length), DISCO_MAGIC);
}

export class Session {
  key: NodePublic | null = null;
  /** The key as a map id (see keyId). */
  keyId = '';
  info: ClientInfo | null = null;
  state: 'handshake' | 'ready' | 'closed' = 'handshake';
  preferred = false;
  readonly connectedAt = Date.now();
  private readonly reader: FrameReader;
  private readonly queue: Uint8Array[] = [];
  private readonly discoQueue: Uint8Array[] = [];
  private tokens: number;
  private tokensAt = Date.now();
  private handshakeTimer: NodeJS.Timeout | null;
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private writeStalledSince: number | null = null;
  private stallTimer: NodeJS.Timeout | null = null;
  readonly stats = { framesIn: 0, bytesIn: 0, packetsOut: 0, bytesOut: 0, dropped: 0 };

  constructor(
    private readonly core: RelayCore,
    readonly conn: ByteConn,
  ) {
    this.reader = new FrameReader({ maxFrameSize: Math.max(core.limits.maxClientInfoBytes, 65536 + 64) });
    this.tokens = core.limits.burstBytes;
    conn.onData((chunk) => this.onBytes(chunk));
    conn.onClose(() => this.closed());
    conn.onDrain(() => this.flush());
    conn.write(encodeServerKey(core.publicKey));
    this.handshakeTimer = setTimeout(() => this.fail(new DerpError('DERP_HANDSHAKE_TIMEOUT', `no ClientInfo within ${core.limits.handshakeTimeoutMs} ms`)), core.limits.handshakeTimeoutMs);
    this.handshakeTimer.unref();
  }

  get isMesh(): boolean {
    return this.info?.meshKey !== undefined && this.core.meshKey !== null && equalBytes(this.info.meshKey, this.core.meshKey);
  }

  describe(): string {
    return `${this.key?.short() ?? '[?]'}@${this.conn.remote}`;
  }

  private onBytes(chunk: Uint8Array): void {
    if (this.state === 'closed') return;
    let frames: DerpFrame[];
    try {
      frames = this.reader.push(chunk);
    } catch (e) {
      this.fail(e);
      return;
    }
    for (const f of frames) {
      if ((this.state as Session['state']) === 'closed') return;
      this.stats.framesIn++;
      this.stats.bytesIn += f.payload.length + 5;
      try {
        if (this.state === 'handshake') this.onHandshake(f);
        else this.onFrame(f);
      } catch (e) {
        this.fail(e);
        return;
      }
    }
  }

  private onHandshake(f: DerpFrame): void {
    if (f.type !== FrameType.ClientInfo) throw new DerpError('DERP_UNEXPECTED_FRAME', `expected ClientInfo, got frame type 0x${f.type.toString(16)}`);
    const { clientKey, info } = openClientInfo(this.core.privateKey, f.payload, this.core.limits.maxClientInfoBytes, nodeBackend.x25519);
    if (info.meshKey && (!this.core.meshKey || !equalBytes(info.meshKey, this.core.meshKey))) {
      throw new DerpError('DERP_BAD_MESH_KEY', 'client presented a mesh key that does not match');
    }
    this.key = clientKey;
    this.keyId = keyId(clientKey.rawView());
    this.info = info;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    const l = this.core.limits;
    const rate = l.rateBytesPerSec > 0 && !this.isMesh ? { tokenBucketBytesPerSecond: l.rateBytesPerSec, tokenBucketBytesBurst: l.burstBytes } : {};
    this.conn.write(encodeServerInfo(sealServerInfo(this.core.privateKey, clientKey, { version: 2, ...rate }, this.core.random, nodeBackend.x25519)));
    this.state = 'ready';
    this.core.register(this);
    this.scheduleKeepalive();
  }

  private onFrame(f: DerpFrame): void {
    switch (f.type) {
      case FrameType.SendPacket: {
        if (!this.admit(f.payload.length + 5)) return;
        if (f.payload.length < 32) throw new DerpError('DERP_BAD_FRAME', `SendPacket of ${f.payload.length} bytes has no destination key`);
        this.core.route(this, f.payload.subarray(0, 32), f.payload.subarray(32), frameInPlace(f.payload));
        return;
      }
      case FrameType.Ping:
        this.conn.write(encodePong(decodePing(f.payload)));
        return;
      case FrameType.NotePreferred:
        this.preferred = decodeNotePreferred(f.payload);
        return;
      case FrameType.WatchConns:
        if (!this.isMesh) throw new DerpError('DERP_NOT_MESH', 'WatchConns needs the mesh key');
        this.core.watch(this);
        return;
      case FrameType.ClosePeer:
        if (!this.isMesh) throw new DerpError('DERP_NOT_MESH', 'ClosePeer needs the mesh key');
        this.core.closePeer(decodeClosePeer(f.payload));
        return;
      case FrameType.ForwardPacket: {
        if (!this.isMesh) throw new DerpError('DERP_NOT_MESH', 'ForwardPacket needs the mesh key');
        const p = decodeForwardPacket(f.payload);
        this.core.forward(this, p.src, p.dst, p.packet);
        return;
      }
      case FrameType.Pong:
      case FrameType.KeepAlive:
        return;
      default:
        return; // unknown or client-irrelevant frame types are skipped, as Go's server does
    }
  }

  /** The per-client token bucket on received bytes; mesh peers are exempt. */
  private admit(bytes: number): boolean {
    const l = this.core.limits;
    if (l.rateBytesPerSec <= 0 || this.isMesh) return true;
    const now = Date.now();
    this.tokens = Math.min(l.burstBytes, this.tokens + ((now - this.tokensAt) / 1000) * l.rateBytesPerSec);
    this.tokensAt = now;
    if (this.tokens < bytes) {
      this.stats.dropped++;
      this.core.drop('rate_limited');
      return false;
    }
    this.tokens -= bytes;
    return true;
  }

  /** Queues an encoded frame for this client (drop-oldest when the queue is full). */
  enqueue(frame: Uint8Array, disco: boolean): void {
    if (this.state !== 'ready') return;
    const q = disco ? this.discoQueue : this.queue;
    const max = disco ? this.core.limits.queueDisco : this.core.limits.queuePackets;
    q.push(frame);
    if (q.length > max) {
      q.shift();
      this.stats.dropped++;
      this.core.drop(disco ? 'queue_full_disco' : 'queue_full');
    }
    this.flush();
  }

  /** Control frames (PeerGone, PeerPresent) skip the packet queues. */
  sendControl(frame: Uint8Array): void {
    if (this.state !== 'closed') this.conn.write(frame);
  }

  private flush(): void {
    const high = this.core.limits.writeBufferHigh;
    while ((this.discoQueue.length > 0 || this.queue.length > 0) && this.conn.bufferedAmount() < high) {
      const f = this.discoQueue.length > 0 ? this.discoQueue.shift()! : this.queue.shift()!;
      this.stats.packetsOut++;
      this.stats.bytesOut += f.length;
      this.conn.write(f);
    }
    if (this.conn.bufferedAmount() >= high) {
      if (this.writeStalledSince === null) {
        this.writeStalledSince = Date.now();
        this.stallTimer = setTimeout(() => {
          if (this.conn.bufferedAmount() >= high) this.fail(new DerpError('DERP_WRITE_TIMEOUT', `client has not read for ${this.core.limits.writeTimeoutMs} ms`));
        }, this.core.limits.writeTimeoutMs);
        this.stallTimer.unref();
      }
    } else if (this.writeStalledSince !== null) {
      this.writeStalledSince = null;
      if (this.stallTimer) clearTimeout(this.stallTimer);
      this.stallTimer = null;
    }
  }

  private scheduleKeepalive(): void {
    const l = this.core.limits;
    const jitter = (this.core.random(2)[0]! / 256) * l.keepaliveJitterMs;
    this.keepaliveTimer = setTimeout(() => {
      if (this.state !== 'ready') return;
      this.conn.write(encodeKeepAlive());
      this.scheduleKeepalive();
    }, l.keepaliveMs + jitter);
    this.keepaliveTimer.unref();
  }

  /** Ends this connection because of `e` (logged); others are not affected. */
  fail(e: unknown): void {
    if (this.state === 'closed') return;
    const code = e instanceof DerpError ? e.code : 'DERP_INTERNAL';
    this.core.drop(`conn_${code.toLowerCase()}`);
    this.core.log(code === 'DERP_INTERNAL' ? 'warn' : 'debug', `relay: closing ${this.describe()}: ${(e as Error).message ?? String(e)}`);
    this.close();
  }

  close(): void {
    if (this.state === 'closed') return;
    this.conn.close();
    this.closed();
  }

  private closed(): void {
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    for (const t of [this.handshakeTimer, this.keepaliveTimer, this.stallTimer]) if (t) clearTimeout(t);
    this.queue.length = 0;
    this.discoQueue.length = 0;
    if (wasReady) this.core.unregister(this);
  }
}

/** A map id for a raw 32-byte key: its bytes as a latin1 string (native, cheaper than hex). */
export function keyId(raw: Uint8Array): string {
  return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('latin1');
}

/**
 * A SendPacket frame (type 4, dst key, packet) and the RecvPacket frame that delivers it (type 5,
 * src key, packet) have the same length. When the frame arrived whole, its header still stands in
 * front of the payload in the received chunk (which the relay owns): the whole frame, to be
 * rewritten in place instead of copied. Null when the payload was assembled from pieces.
 */
export function frameInPlace(payload: Uint8Array): Uint8Array | null {
  const o = payload.byteOffset;
  if (o < 5) return null;
  const f = new Uint8Array(payload.buffer, o - 5, payload.length + 5);
  const len = ((f[1]! << 24) >>> 0) + (f[2]! << 16) + (f[3]! << 8) + f[4]!;
  return f[0] === FrameType.SendPacket && len === payload.length ? f : null;
}
