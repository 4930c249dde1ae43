/**
 * DERP client state machine over a byte stream (Tailscale derp_client.go, made transport-agnostic
 * and clock-free). The transport feeds received bytes to `onBytes(chunk, now)` and writes what
 * the client hands to `send(bytes)`; one call to `send` is one whole frame, so a WebSocket
 * transport can send it as one message. The caller arms one timer at `nextDeadline()` and calls
 * `tick(now)` when it fires.
 *
 *   new ──start──▶ awaitServerKey ──ServerKey──▶ send ClientInfo ──▶ awaitServerInfo ──ServerInfo──▶ ready
 *        └─(server key pinned: send ClientInfo at once)──────────────▶ awaitServerInfo
 *   any ──error / timeout / EOF / close()──▶ closed   (final; make a new client to reconnect)
 *
 * As in Go, packets may be sent as soon as the ClientInfo is out (no round trip wait for
 * ServerInfo); with a pinned key that is immediately after `start`. A ServerKey that arrives
 * while pinned must match the pin.
 *
 * Behaviour copied from Go's client: the server's token bucket (ServerInfo) is applied to
 * SendPacket frames, counting header + key + packet bytes, and over-budget sends are dropped
 * silently (counted in `stats`); a malformed non-handshake frame (e.g. a short RecvPacket) is
 * dropped and the connection kept; unknown frame types are skipped; 120 s without a complete
 * frame is fatal (the server sends KeepAlive every 60 s). Server Pings are answered with Pongs.
 */
import type { RandomSource } from '../crypto/backend.ts';
import { toHex } from '../crypto/bytes.ts';
import type { NodePrivate, NodePublic } from '../key/keys.ts';
import { DerpError } from './errors.ts';
import {
  CLIENT_READ_TIMEOUT_MS,
  decodeHealth,
  decodePeerGone,
  decodePeerPresent,
  decodePing,
  decodeRecvPacket,
  decodeRestarting,
  decodeServerKey,
  encodeClosePeer,
  encodeForwardPacket,
  encodeFrame,
  encodeNotePreferred,
  encodePing,
  encodePong,
  encodeSendPacket,
  encodeWatchConns,
  FRAME_HEADER_LEN,
  FrameReader,
  FrameType,
  KEY_LEN,
  MAX_FRAME_SIZE,
  MAX_PACKET_SIZE,
  MAX_SERVER_KEY_FRAME,
  PING_LEN,
  type DerpFrame,
  type PeerPresent,
} from './frames.ts';
import { MESH_KEY_LEN, openServerInfo, sealClientInfo, type ServerInfo } from './handshake.ts';

export { Backoff, type BackoffOptions } from './backoff.ts';

export type DerpClientState = 'new' | 'awaitServerKey' | 'awaitServerInfo' | 'ready' | 'closed';

/** Callbacks; all optional. Byte arguments may be views into the chunk given to `onBytes`. */
export interface DerpClientEvents {
  /** The first ServerInfo arrived and opened: the handshake is complete. */
  ready(info: ServerInfo): void;
  packet(src: NodePublic, packet: Uint8Array): void;
  peerGone(key: NodePublic, reason: number): void;
  peerPresent(p: PeerPresent): void;
  /** The server's connection health text; empty means healthy again. */
  health(problem: string): void;
  restarting(reconnectInMs: number, tryForMs: number): void;
  keepAlive(): void;
  /** A Pong matched one of our pings. */
  pong(data: Uint8Array, rttMs: number): void;
  pingTimeout(data: Uint8Array): void;
  /** A frame was dropped as malformed (the connection continues). */
  malformed(err: DerpError, frameType: number): void;
  /** A fatal error; `closed` follows. */
  error(err: DerpError): void;
  /** Emitted once; `err` is null after `close()`. */
  closed(err: DerpError | null): void;
}

export interface DerpClientOptions {
  privateKey: NodePrivate;
  /** Pinned server key (e.g. from the DERP map); otherwise learned from the ServerKey frame. */
  serverPublicKey?: NodePublic;
  /** 32-byte mesh key, for relays meshing with each other and other trusted clients. */
  meshKey?: Uint8Array;
  /** Announce that we answer pings (Tailscale's clients do); default true. */
  canAckPings?: boolean;
  isProber?: boolean;
  appName?: string;
  random: RandomSource;
  /** Writes one whole frame to the transport. */
  send(bytes: Uint8Array): void;
  events?: Partial<DerpClientEvents>;
  /** Fatal silence from the server; default 120 s (derp_client.go). */
  readTimeoutMs?: number;
  /** Fatal when no ServerInfo by then; default 10 s (the server's own per-step limit). */
  handshakeTimeoutMs?: number;
  /** Our pings expire after this; default 5 s. */
  pingTimeoutMs?: number;
  /** Outstanding pings at most; default 16. */
  maxPendingPings?: number;
  /** Largest frame accepted from the server; default 1 MiB. */
  maxFrameSize?: number;
}

export interface DerpClientStats {
  framesReceived: number;
  packetsReceived: number;
  packetsSent: number;
  /** Frame bytes written for SendPacket frames. */
  bytesSent: number;
  /** SendPackets dropped by the server's token bucket, and their frame bytes. */
  droppedRateLimited: number;
  droppedRateLimitedBytes: number;
  malformedFrames: number;
  unknownFrames: number;
  pingsAnswered: number;
  unmatchedPongs: number;
}

/**
 * Token bucket with the semantics of golang.org/x/time/rate's Limiter as Go's client uses it
 * (`AllowN`): starts full at `burst`, refills at `ratePerSecond`, and a request larger than the
 * tokens available (or than `burst`) is refused without taking any.
 */
export class TokenBucket {
  private tokens: number;
  private last: number | null = null;
  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
  ) {
    this.tokens = burst;
  }
  allow(n: number, now: number): boolean {
    if (this.last !== null && now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.ratePerSecond) / 1000);
    }
    if (this.last === null || now > this.last) this.last = now;
    if (n > this.tokens) return false;
    this.tokens -= n;
    return true;
  }
}

export class DerpClient {
  readonly publicKey: NodePublic;
  readonly stats: DerpClientStats = {
    framesReceived: 0,
    packetsReceived: 0,
    packetsSent: 0,
    bytesSent: 0,
    droppedRateLimited: 0,
    droppedRateLimitedBytes: 0,
    malformedFrames: 0,
    unknownFrames: 0,
    pingsAnswered: 0,
    unmatchedPongs: 0,
  };
  private readonly opts: DerpClientOptions;
  private readonly ev: Partial<DerpClientEvents>;
  private readonly reader: FrameReader;
  private readonly pinned: NodePublic | null;
  private readonly readTimeoutMs: number;
  private readonly handshakeTimeoutMs: number;
  private readonly pingTimeoutMs: number;
  private readonly maxPendingPings: number;
  private st: DerpClientState = 'new';
  private srvKey: NodePublic | null;
  private sawServerKey = false;
  private info: ServerInfo | null = null;
  private bucket: TokenBucket | null = null;
  private startedAt = 0;
  private lastFrameAt = 0;
  private readonly pings = new Map<string, { data: Uint8Array; sentAt: number }>();
  private failure: DerpError | null = null;

  constructor(opts: DerpClientOptions) {
    if (opts.meshKey !== undefined && opts.meshKey.length !== MESH_KEY_LEN) {
      throw new DerpError('DERP_BAD_FRAME', `mesh key must be ${MESH_KEY_LEN} bytes`);
    }
    this.opts = opts;
    this.ev = opts.events ?? {};
    this.publicKey = opts.privateKey.public();
    this.pinned = opts.serverPublicKey ?? null;
    this.srvKey = this.pinned;
    this.reader = new FrameReader({ maxFrameSize: opts.maxFrameSize ?? MAX_FRAME_SIZE });
    this.readTimeoutMs = opts.readTimeoutMs ?? CLIENT_READ_TIMEOUT_MS;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 10_000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 5_000;
    this.maxPendingPings = opts.maxPendingPings ?? 16;
  }

  get state(): DerpClientState {
    return this.st;
  }
  /** The server's key: pinned, or learned from ServerKey; null before then. */
  get serverPublicKey(): NodePublic | null {
    return this.srvKey;
  }
  /** The latest ServerInfo, null before the handshake completes. */
  get serverInfo(): ServerInfo | null {
    return this.info;
  }
  /** The fatal error that closed the client, if any. */
  get error(): DerpError | null {
    return this.failure;
  }
  /** True once packets may be sent (ClientInfo is out). */
  get canSend(): boolean {
    return this.st === 'awaitServerInfo' || this.st === 'ready';
  }

  /** Starts the handshake clock (called by the first `onBytes` if not before). */
  start(now: number): void {
    if (this.st !== 'new') return;
    this.startedAt = now;
    this.lastFrameAt = now;
    if (this.pinned) {
      this.st = 'awaitServerInfo';
      this.sendClientInfo();
    } else {
      this.st = 'awaitServerKey';
    }
  }

  /** Feeds bytes from the transport. Fatal problems close the client and emit error + closed. */
  onBytes(chunk: Uint8Array, now: number): void {
    if (this.st === 'closed') return;
    this.start(now);
    let frames: DerpFrame[];
    try {
      frames = this.reader.push(chunk);
    } catch (e) {
      this.fail(e as DerpError);
      return;
    }
    for (const f of frames) {
      if (this.closed()) return;
      this.lastFrameAt = now;
      this.stats.framesReceived++;
      this.handle(f, now);
    }
  }

  /** The transport closed (EOF or error). */
  onTransportClosed(): void {
    if (this.st === 'closed') return;
    const mid = this.reader.buffered > 0 ? ' in the middle of a frame' : '';
    this.fail(new DerpError('DERP_CLOSED', `connection to the DERP server closed${mid}`));
  }

  /** Closes locally: emits `closed(null)`. The caller closes the transport. */
  close(): void {
    if (this.st === 'closed') return;
    this.st = 'closed';
    this.pings.clear();
    this.ev.closed?.(null);
  }

  /**
   * Sends a packet to `dst` through the server. Returns false when the server's token bucket
   * had no room and the packet was dropped (as Go's client does, without error).
   */
  sendPacket(dst: NodePublic, packet: Uint8Array, now: number): boolean {
    this.requireSendable();
    if (packet.length > MAX_PACKET_SIZE) {
      throw new DerpError('DERP_PACKET_TOO_LARGE', `packet of ${packet.length} bytes is over ${MAX_PACKET_SIZE}`);
    }
    const frameLen = FRAME_HEADER_LEN + KEY_LEN + packet.length;
    if (this.bucket && !this.bucket.allow(frameLen, now)) {
      this.stats.droppedRateLimited++;
      this.stats.droppedRateLimitedBytes += frameLen;
      return false;
    }
    this.opts.send(encodeSendPacket(dst, packet));
    this.stats.packetsSent++;
    this.stats.bytesSent += frameLen;
    return true;
  }

  /** Tells the server whether it is our home (preferred) region; stats only. */
  notePreferred(preferred: boolean): void {
    this.requireSendable();
    this.opts.send(encodeNotePreferred(preferred));
  }

  /** Sends a Ping with 8 bytes of data; its Pong emits `pong`, or `pingTimeout` after the timeout. */
  ping(data: Uint8Array, now: number): void {
    this.requireSendable();
    if (data.length !== PING_LEN) throw new DerpError('DERP_BAD_FRAME', `ping data must be ${PING_LEN} bytes`);
    const id = toHex(data);
    if (this.pings.has(id)) throw new DerpError('DERP_PING_BUSY', `a ping with data ${id} is already outstanding`);
    if (this.pings.size >= this.maxPendingPings) throw new DerpError('DERP_PING_BUSY', `${this.pings.size} pings already outstanding`);
    this.pings.set(id, { data: Uint8Array.from(data), sentAt: now });
    this.opts.send(encodePing(data));
  }

  /** Mesh: forwards a packet on behalf of `src` (needs the mesh key; not rate-limited, as Go). */
  forwardPacket(src: NodePublic, dst: NodePublic, packet: Uint8Array): void {
    this.requireSendable();
    this.opts.send(encodeForwardPacket(src, dst, packet));
  }

  /** Mesh: subscribes to PeerPresent / PeerGone for every client of the server. */
  watchConns(): void {
    this.requireSendable();
    this.opts.send(encodeWatchConns());
  }

  /** Mesh: asks the server to close `peer`'s connection. */
  closePeer(peer: NodePublic): void {
    this.requireSendable();
    this.opts.send(encodeClosePeer(peer));
  }

  /** When `tick` must next be called; null when nothing is pending (not started, or closed). */
  nextDeadline(): number | null {
    if (this.st === 'new' || this.st === 'closed') return null;
    let d = this.lastFrameAt + this.readTimeoutMs;
    if (this.st !== 'ready') d = Math.min(d, this.startedAt + this.handshakeTimeoutMs);
    for (const p of this.pings.values()) d = Math.min(d, p.sentAt + this.pingTimeoutMs);
    return d;
  }

  tick(now: number): void {
    if (this.st === 'new' || this.st === 'closed') return;
    if (this.st !== 'ready' && now >= this.startedAt + this.handshakeTimeoutMs) {
      this.fail(new DerpError('DERP_HANDSHAKE_TIMEOUT', `no ServerInfo from the DERP server within ${this.handshakeTimeoutMs} ms`));
      return;
    }
    if (now >= this.lastFrameAt + this.readTimeoutMs) {
      this.fail(new DerpError('DERP_TIMEOUT', `nothing from the DERP server for ${now - this.lastFrameAt} ms`));
      return;
    }
    for (const [id, p] of this.pings) {
      if (now < p.sentAt + this.pingTimeoutMs) continue;
      this.pings.delete(id);
      this.ev.pingTimeout?.(p.data);
      if (this.closed()) return;
    }
  }

  // -------------------------------------------------------------------------------------------

  /** Re-reads the state (callbacks may have closed the client meanwhile). */
  private closed(): boolean {
    return this.st === 'closed';
  }

  private requireSendable(): void {
    if (this.st === 'closed') throw new DerpError('DERP_CLOSED', 'DERP client is closed', { cause: this.failure ?? undefined });
    if (!this.canSend) throw new DerpError('DERP_NOT_READY', `DERP client cannot send yet (state ${this.st})`);
  }

  private sendClientInfo(): void {
    const payload = sealClientInfo(
      this.opts.privateKey,
      this.srvKey!,
      {
        meshKey: this.opts.meshKey,
        canAckPings: this.opts.canAckPings ?? true,
        isProber: this.opts.isProber,
        appName: this.opts.appName,
      },
      this.opts.random,
    );
    this.opts.send(encodeFrame(FrameType.ClientInfo, payload));
  }

  private fail(err: DerpError): void {
    if (this.st === 'closed') return;
    this.st = 'closed';
    this.failure = err;
    this.pings.clear();
    this.ev.error?.(err);
    this.ev.closed?.(err);
  }

  /** Decodes with `fn`; a DerpError makes the frame dropped (or fatal) and returns undefined. */
  private decode<T>(f: DerpFrame, fn: (p: Uint8Array) => T, fatal = false): T | undefined {
    try {
      return fn(f.payload);
    } catch (e) {
      if (!(e instanceof DerpError)) throw e;
      if (fatal) {
        this.fail(e);
      } else {
        this.stats.malformedFrames++;
        this.ev.malformed?.(e, f.type);
      }
      return undefined;
    }
  }

  private handle(f: DerpFrame, now: number): void {
    if (this.st === 'awaitServerKey') {
      if (f.type !== FrameType.ServerKey) {
        this.fail(new DerpError('DERP_UNEXPECTED_FRAME', `expected a ServerKey frame first, got type 0x${f.type.toString(16)}`));
        return;
      }
      if (f.payload.length > MAX_SERVER_KEY_FRAME) {
        this.fail(new DerpError('DERP_FRAME_TOO_LARGE', `ServerKey frame of ${f.payload.length} bytes is over ${MAX_SERVER_KEY_FRAME}`));
        return;
      }
      const sk = this.decode(f, decodeServerKey, true);
      if (!sk) return;
      this.srvKey = sk.key;
      this.sawServerKey = true;
      this.st = 'awaitServerInfo';
      this.sendClientInfo();
      return;
    }
    switch (f.type) {
      case FrameType.ServerKey: {
        // Pinned key: the server's greeting arrives after our ClientInfo went out; check it.
        // A later repeat is ignored, as Go's client ignores the type after the handshake.
        if (this.sawServerKey) break;
        this.sawServerKey = true;
        const sk = this.decode(f, decodeServerKey, true);
        if (!sk) return;
        if (!sk.key.equals(this.srvKey!)) {
          this.fail(new DerpError('DERP_SERVER_KEY_MISMATCH', `server key ${sk.key.short()} is not the pinned ${this.srvKey!.short()}`));
        }
        return;
      }
      case FrameType.ServerInfo: {
        const info = this.decode(f, (p) => openServerInfo(this.opts.privateKey, this.srvKey!, p), true);
        if (!info) return;
        const rate = info.tokenBucketBytesPerSecond ?? 0;
        this.bucket = rate > 0 ? new TokenBucket(rate, info.tokenBucketBytesBurst ?? 0) : null;
        const first = this.info === null;
        this.info = info;
        if (first) {
          this.st = 'ready';
          this.ev.ready?.(info);
        }
        return;
      }
      case FrameType.KeepAlive:
        this.ev.keepAlive?.();
        return;
      case FrameType.RecvPacket: {
        const rp = this.decode(f, decodeRecvPacket);
        if (!rp) return;
        this.stats.packetsReceived++;
        this.ev.packet?.(rp.key, rp.packet);
        return;
      }
      case FrameType.PeerGone: {
        const pg = this.decode(f, decodePeerGone);
        if (pg) this.ev.peerGone?.(pg.key, pg.reason);
        return;
      }
      case FrameType.PeerPresent: {
        const pp = this.decode(f, decodePeerPresent);
        if (pp) this.ev.peerPresent?.(pp);
        return;
      }
      case FrameType.Health:
        this.ev.health?.(decodeHealth(f.payload));
        return;
      case FrameType.Restarting: {
        const r = this.decode(f, decodeRestarting);
        if (r) this.ev.restarting?.(r.reconnectInMs, r.tryForMs);
        return;
      }
      case FrameType.Ping: {
        const data = this.decode(f, decodePing);
        if (!data) return;
        this.stats.pingsAnswered++;
        this.opts.send(encodePong(data));
        return;
      }
      case FrameType.Pong: {
        const data = this.decode(f, decodePing);
        if (!data) return;
        const id = toHex(data);
        const p = this.pings.get(id);
        if (!p) {
          this.stats.unmatchedPongs++;
          return;
        }
        this.pings.delete(id);
        this.ev.pong?.(p.data, now - p.sentAt);
        return;
      }
    }
    this.stats.unknownFrames++;
  }
}
