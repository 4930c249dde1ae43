/**
 * A DERP connection over the browser's WebSocket that stays up: the pure client state machine
 * (src/derp/client.ts: handshake, frames, pings, timeouts) on top of a `WebSocket` with
 * subprotocol `derp`, redialled with exponential backoff and jitter (250 ms doubling to 5 s)
 * whenever the relay goes away — a relay restart costs a reconnect, not a session (DESIGN
 * invariant 3).
 *
 *   dial ──open──▶ DerpClient.start ──ServerKey/ClientInfo/ServerInfo──▶ connected
 *     ▲                                                                     │
 *     └── backoff.next() ◀── close / error / bad frame / timeout ◀─────────┘
 *
 * Framing: each of our frames goes out as one binary message (as Go's client writes), but the
 * relay's messages are read as a byte stream: one message may hold part of a frame, several
 * frames, or both, so every message goes to the client's length-based FrameReader
 * (facts §2, derp/derpserver/websocket.go, net/wsconn).
 *
 * Browser-safe: the WebSocket constructor, the clock and randomness are injected (tests pass
 * `ws`'s WebSocket and fakes). Malformed input never throws out of a WebSocket callback: it
 * becomes a typed DerpError (`error` event), then a reconnect.
 */
import type { RandomSource } from '../crypto/backend.ts';
import type { WebSocketCtor, WebSocketLike } from '../control/client.ts';
import { Backoff } from '../derp/backoff.ts';
import { DerpClient, type DerpClientStats } from '../derp/client.ts';
import { DerpError } from '../derp/errors.ts';
import type { ServerInfo } from '../derp/handshake.ts';
import type { NodePrivate, NodePublic } from '../key/keys.ts';
import type { Clock, TimerHandle } from '../engine/types.ts';

/** DERP over WebSocket uses this subprotocol (derp/derphttp/websocket.go). */
export const DERP_SUBPROTOCOL = 'derp';
/** Reconnect backoff: first delay and cap (before/after jitter), as the Node platform uses. */
export const DERP_WS_BACKOFF_BASE_MS = 250;
export const DERP_WS_BACKOFF_MAX_MS = 5000;
/** No open WebSocket within this long: give up on this attempt and back off. */
export const DERP_WS_CONNECT_TIMEOUT_MS = 10_000;
/**
 * Packets are dropped (send returns false, as a full UDP queue would) while the socket has
 * more than this many bytes queued: a stalled relay must not buffer the tab's memory away.
 */
export const DERP_WS_MAX_BUFFERED = 4 << 20;

/** WebSocket readyState OPEN (the same in browsers and `ws`). */
const WS_OPEN = 1;

export interface DerpWsEvents {
  /** A packet from `src` through the relay (a view: copy it to keep it past the callback). */
  packet(src: NodePublic, data: Uint8Array): void;
  /** Handshake done (true) or connection lost (false; a reconnect is scheduled). */
  state(connected: boolean): void;
  /** The relay says `key` is gone (0x00 Disconnected) or was never here (0x01 NotHere). */
  peerGone(key: NodePublic, reason: number): void;
  /** Why a connection attempt or a live connection ended (typed; the link keeps going). */
  error(err: DerpError): void;
  /** A single bad frame was dropped; the connection continues. */
  malformed(err: DerpError, frameType: number): void;
  /** The relay's health text; empty means healthy. */
  health(problem: string): void;
  /** A reconnect was scheduled in `delayMs` (attempt = consecutive failures so far). */
  reconnecting(delayMs: number, attempt: number): void;
}

export interface DerpWsOptions {
  /** The relay's DERP URL: ws(s)://host/derp, or http(s):// (converted). */
  url: string;
  privateKey: NodePrivate;
  WebSocket: WebSocketCtor;
  clock: Clock;
  random: RandomSource;
  /** Pinned relay key; otherwise learned from each ServerKey frame. */
  serverPublicKey?: NodePublic;
  events?: Partial<DerpWsEvents>;
  backoff?: { baseMs?: number; maxMs?: number };
  connectTimeoutMs?: number;
  /** Forwarded to the client state machine (defaults there: 10 s, 120 s). */
  handshakeTimeoutMs?: number;
  readTimeoutMs?: number;
  maxBufferedBytes?: number;
  appName?: string;
}

export interface DerpWsStats {
  /** Successful handshakes. */
  connects: number;
  /** Connection attempts (dials). */
  dials: number;
  /** Connections or attempts lost. */
  disconnects: number;
  /** Sends refused: not connected, rate limit, or backpressure. */
  sendsDropped: number;
}

/** ws(s)://…/derp for a relay base or DERP URL given as http(s) or ws(s). */
export function derpWsUrl(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new DerpError('DERP_BAD_URL', `relay URL ${url} is not http(s) or ws(s)`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/derp';
  return u.toString();
}

/** Optional members some WebSocket implementations have (browsers and `ws` both do). */
type WsExtra = WebSocketLike & { readyState?: number; bufferedAmount?: number };

/** Bytes of a binary WebSocket message, or null when it is not binary (text, Blob). */
function messageBytes(d: unknown): Uint8Array | null {
  if (d instanceof ArrayBuffer) return new Uint8Array(d);
  if (ArrayBuffer.isView(d)) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  if (Array.isArray(d) && d.every((x) => ArrayBuffer.isView(x))) {
    // `ws` with binaryType 'fragments'.
    const parts = d as ArrayBufferView[];
    const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let o = 0;
    for (const p of parts) {
      out.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), o);
      o += p.byteLength;
    }
    return out;
  }
  return null;
}

const noop = (): void => {};

export class DerpWsClient {
  readonly stats: DerpWsStats = { connects: 0, dials: 0, disconnects: 0, sendsDropped: 0 };
  private readonly ev: Partial<DerpWsEvents>;
  private readonly backoff: Backoff;
  private readonly url: string;
  private ws: WsExtra | null = null;
  private client: DerpClient | null = null;
  private opened = false;
  private up = false;
  private stopped = false;
  private timer: TimerHandle | undefined;
  private timerAt = Infinity;
  private openDeadline = Infinity;
  private redialAt = Infinity;
  private preferred: boolean | null = null;
  private lastError: DerpError | null = null;

  constructor(private readonly opts: DerpWsOptions) {
    this.ev = opts.events ?? {};
    this.url = derpWsUrl(opts.url);
    this.backoff = new Backoff({
      baseMs: opts.backoff?.baseMs ?? DERP_WS_BACKOFF_BASE_MS,
      maxMs: opts.backoff?.maxMs ?? DERP_WS_BACKOFF_MAX_MS,
      random: opts.random,
    });
    this.dial();
  }

  /** Handshake complete on the current connection. */
  get connected(): boolean {
    return this.up;
  }

  /** The live client (handshake done), or null while (re)connecting. */
  get derp(): DerpClient | null {
    return this.up ? this.client : null;
  }

  /** Stats of the current connection's client, if any. */
  get clientStats(): DerpClientStats | null {
    return this.client?.stats ?? null;
  }

  get serverInfo(): ServerInfo | null {
    return this.client?.serverInfo ?? null;
  }

  /** The error that ended the last connection or attempt. */
  get error(): DerpError | null {
    return this.lastError;
  }

  /**
   * Sends `packet` to `dst` through the relay. False when it was dropped: not connected, the
   * relay's token bucket, too much queued, or too large (never throws for those).
   */
  sendPacket(dst: NodePublic, packet: Uint8Array): boolean {
    const c = this.client;
    const ws = this.ws;
    if (!this.up || !c || !ws || (ws.bufferedAmount ?? 0) > (this.opts.maxBufferedBytes ?? DERP_WS_MAX_BUFFERED)) {
      this.stats.sendsDropped++;
      return false;
    }
    try {
      if (c.sendPacket(dst, packet, this.opts.clock.now())) return true;
    } catch (e) {
      if (!(e instanceof DerpError)) throw e;
    }
    this.stats.sendsDropped++;
    return false;
  }

  /** Our home relay or not; remembered and re-sent after every reconnect (stats only). */
  notePreferred(home: boolean): void {
    this.preferred = home;
    if (this.up) this.client?.notePreferred(home);
  }

  /** Stops for good: closes the socket, cancels timers; no events after this. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    const wasUp = this.up;
    this.up = false;
    this.teardown();
    if (this.timer !== undefined) this.opts.clock.clearTimer(this.timer);
    this.timer = undefined;
    if (wasUp) this.ev.state?.(false);
  }

  // -------------------------------------------------------------------------------------------

  private dial(): void {
    if (this.stopped) return;
    this.redialAt = Infinity;
    this.stats.dials++;
    this.opened = false;
    let ws: WsExtra;
    const client = new DerpClient({
      privateKey: this.opts.privateKey,
      ...(this.opts.serverPublicKey ? { serverPublicKey: this.opts.serverPublicKey } : {}),
      ...(this.opts.handshakeTimeoutMs !== undefined ? { handshakeTimeoutMs: this.opts.handshakeTimeoutMs } : {}),
      ...(this.opts.readTimeoutMs !== undefined ? { readTimeoutMs: this.opts.readTimeoutMs } : {}),
      ...(this.opts.appName ? { appName: this.opts.appName } : {}),
      canAckPings: true,
      random: this.opts.random,
      send: (b) => {
        if (this.ws === ws && this.opened && (ws.readyState ?? WS_OPEN) === WS_OPEN) ws.send(b);
      },
      events: {
        ready: () => {
          if (this.client !== client || this.stopped) return;
          this.backoff.reset();
          this.up = true;
          this.stats.connects++;
          if (this.preferred !== null) client.notePreferred(this.preferred);
          this.ev.state?.(true);
        },
        packet: (src, data) => this.ev.packet?.(src, data),
        peerGone: (key, reason) => this.ev.peerGone?.(key, reason),
        health: (p) => this.ev.health?.(p),
        malformed: (err, type) => this.ev.malformed?.(err, type),
        closed: (err) => {
          if (this.client === client) this.lost(err ?? new DerpError('DERP_CLOSED', 'DERP connection closed'));
        },
      },
    });
    this.client = client;
    try {
      ws = new this.opts.WebSocket(this.url, [DERP_SUBPROTOCOL]);
    } catch (e) {
      // A bad URL or a refused scheme throws synchronously in browsers.
      this.lost(new DerpError('DERP_CLOSED', `cannot open a WebSocket to ${this.url}: ${(e as Error).message}`, { cause: e }));
      return;
    }
    this.ws = ws;
    ws.binaryType = 'arraybuffer';
    this.openDeadline = this.opts.clock.now() + (this.opts.connectTimeoutMs ?? DERP_WS_CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.opened = true;
      this.openDeadline = Infinity;
      client.start(this.opts.clock.now());
      this.schedule();
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      const bytes = messageBytes(ev.data);
      if (!bytes) {
        this.lost(new DerpError('DERP_BAD_FRAME', 'the relay sent a non-binary WebSocket message (DERP over WebSocket is binary only)'));
        return;
      }
      client.onBytes(bytes, this.opts.clock.now());
      this.schedule();
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      const mid = this.opened ? '' : ' before it opened';
      client.onTransportClosed();
      // onTransportClosed → closed → lost(); this covers an already-closed client.
      if (this.ws === ws) this.lost(new DerpError('DERP_CLOSED', `WebSocket to ${this.url} closed${mid} (code ${ev.code})`));
    };
    ws.onerror = () => {
      // Browsers say nothing useful here; the close event follows and reports it.
    };
    this.schedule();
  }

  /** Drops the current connection (if still current) and schedules the redial. */
  private lost(err: DerpError): void {
    if (this.stopped) return;
    const wasUp = this.up;
    this.up = false;
    this.lastError = err;
    this.stats.disconnects++;
    this.teardown();
    this.ev.error?.(err);
    if (wasUp) this.ev.state?.(false);
    if (this.stopped) return;
    const delay = this.backoff.next();
    this.redialAt = this.opts.clock.now() + delay;
    this.ev.reconnecting?.(delay, this.backoff.attempts);
    this.schedule();
  }

  private teardown(): void {
    const ws = this.ws;
    const client = this.client;
    this.ws = null;
    this.client = null;
    this.opened = false;
    this.openDeadline = Infinity;
    client?.close();
    if (ws) {
      // Keep no-op handlers: `ws` emits 'error' when closed while connecting, and an
      // EventEmitter without a listener would throw it.
      ws.onopen = noop;
      ws.onmessage = noop;
      ws.onclose = noop;
      ws.onerror = noop;
      try {
        ws.close(1000);
      } catch {
        // Already closing.
      }
    }
  }

  /** One timer at the earliest of: redial, open deadline, the client's own deadline. */
  private schedule(): void {
    if (this.stopped) return;
    const at = Math.min(this.redialAt, this.openDeadline, this.client?.nextDeadline() ?? Infinity);
    if (at === this.timerAt && this.timer !== undefined) return;
    if (this.timer !== undefined) this.opts.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === Infinity) return;
    this.timer = this.opts.clock.setTimer(() => this.fire(), Math.max(0, at - this.opts.clock.now()));
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    if (this.stopped) return;
    const now = this.opts.clock.now();
    if (now >= this.redialAt) {
      this.dial();
      return;
    }
    if (now >= this.openDeadline) {
      this.lost(new DerpError('DERP_HANDSHAKE_TIMEOUT', `WebSocket to ${this.url} did not open within ${this.opts.connectTimeoutMs ?? DERP_WS_CONNECT_TIMEOUT_MS} ms`));
      return;
    }
    this.client?.tick(now);
    this.schedule();
  }
}
