/**
 * UDP for the engine in a browser, leased from a gateway (`pierce relay --udp-leases`; protocol
 * in src/lease/codec.ts and docs/udp-leases.md). A browser cannot open UDP sockets, so this
 * `UdpTransport` asks a relay, over one WebSocket with subprotocol `pierce-lease`, for UDP
 * sockets on the relay's host and moves datagrams through them. The engine runs STUN, disco,
 * hole punching and birthday probing itself exactly as with native UDP: the gateway only sees
 * opaque (WireGuard-encrypted or disco-sealed) datagrams, and every key stays in this tab.
 *
 *   bind() ─first use─▶ WebSocket ─ServerHello─▶ ClientHello (box: our node key proves itself)
 *          ─Ready (limits, the gateway's addresses)─▶ Bind ─Bound─▶ UdpSocket
 *   UdpSocket.send ─▶ Send frame;   Recv frame ─▶ onPacket;   Denied frame ─▶ counted, logged
 *
 * Batching (a browser pays per WebSocket message: an IPC hop and a task on this worker): Batch
 * frames from the gateway are taken apart, each frame handled as if it had come alone. When the
 * gateway's Ready says `batch: true`, the frames we send within one task are batched too
 * (src/lease/batcher.ts): the first goes at once, the rest leave as one Batch in a task of their
 * own right after this one (`clock.setTimer(fn, 0)`), so sends made across the awaits of one
 * task share a message. `stats` counts datagrams and WebSocket messages separately.
 *
 * Failure and recovery:
 *   - The first connection fails (gateway unreachable, node unknown or expired): bind() rejects
 *     with a LeaseError (the gateway's code, e.g. LEASE_UNKNOWN_NODE, or LEASE_UNREACHABLE) and
 *     the engine stays relay-only ("direct paths disabled"), trying again after 30 s, doubling
 *     to 5 min (src/engine/engine.ts); a bind() before any lease was up dials afresh.
 *   - The gateway replaced this lease with a newer one of the same node key (another tab with
 *     the same key): this transport stays down rather than take the lease back.
 *   - The WebSocket drops after it was up: every socket goes quiet (sends are dropped, as a full
 *     UDP queue would), and the lease is redialled with exponential backoff and jitter
 *     (250 ms doubling to 30 s, src/derp/backoff.ts). Each live socket is bound again, asking
 *     for its old port first, so usually nothing changes; when the port does change, the
 *     socket's `port` reports the new one, the engine's next STUN round (every 20–26 s) finds
 *     the new mapping and reports the new endpoints, and until then direct paths fall back to
 *     the relay as they do for any path that stops answering.
 *
 * Browser-safe: no Node imports. The WebSocket constructor, the clock and randomness are
 * injected (tests pass `ws`).
 */
import { cryptoRandom, type RandomSource } from '../src/crypto/backend.ts';
import type { WebSocketCtor, WebSocketLike } from '../src/control/client.ts';
import { Backoff } from '../src/derp/backoff.ts';
import type { Clock, LogFn, TimerHandle, UdpSocket, UdpTransport } from '../src/engine/types.ts';
import { isPierceError } from '../src/errors.ts';
import type { NodePrivate } from '../src/key/keys.ts';
import { frameBatcher, type FrameBatcher } from '../src/lease/batcher.ts';
import {
  LEASE_PATH,
  LEASE_SUBPROTOCOL,
  LeaseError,
  decodeFrame,
  denyReasonText,
  encodeBind,
  encodeClientHello,
  encodeClose,
  encodeSend,
  type LeaseFrame,
  type ReadyInfo,
} from '../src/lease/codec.ts';

/** Reconnect backoff after a lease that was up drops. */
export const LEASE_BACKOFF_BASE_MS = 250;
export const LEASE_BACKOFF_MAX_MS = 30_000;
/** The WebSocket must open and the handshake finish within this long. */
export const LEASE_CONNECT_TIMEOUT_MS = 10_000;
/** A Bind unanswered this long fails. */
export const LEASE_BIND_TIMEOUT_MS = 10_000;
/** Sends are dropped while the WebSocket has more than this queued (a stalled gateway). */
export const LEASE_MAX_BUFFERED = 4 << 20;

const WS_OPEN = 1;

export interface LeaseTransportOptions {
  /** ws(s)://relay-host:port/lease, or a function resolving it when first needed. */
  url: string | (() => Promise<string>);
  nodeKey: NodePrivate;
  WebSocket: WebSocketCtor;
  clock: Clock;
  log?: LogFn;
  random?: RandomSource;
  connectTimeoutMs?: number;
  backoff?: { baseMs?: number; maxMs?: number };
  maxBufferedBytes?: number;
  events?: {
    /** The gateway refused a send (destination not allowed, rate limited, no socket). */
    denied?(ip: string, port: number, reason: number): void;
    /** The lease came up (true) or dropped (false; a redial follows). */
    state?(up: boolean): void;
  };
}

export interface LeaseClientStats {
  /** Datagrams handed to the gateway. */
  sent: number;
  /** Datagrams from the gateway delivered to a socket. */
  received: number;
  /** WebSocket messages sent once the lease was up (a Batch counts once). */
  messagesSent: number;
  /** WebSocket messages received once the lease was up (a Batch counts once). */
  messagesReceived: number;
  /** Sends refused by the gateway (Denied frames). */
  denied: number;
  /** Sends dropped here: lease down, socket not bound, WebSocket backed up. */
  dropped: number;
  connects: number;
  disconnects: number;
}

export type LeaseTransport = UdpTransport & {
  close(): void;
  readonly connected: boolean;
  /** The gateway's Ready info (limits, addresses, our node's name), once connected. */
  readonly info: ReadyInfo | null;
  readonly stats: LeaseClientStats;
};

/** ws(s)://host:port/lease for a relay URL (http→ws, https→wss; ws(s) kept). */
export function leaseUrlFor(relayUrl: string): string {
  const u = new URL(relayUrl);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new LeaseError('LEASE_BAD_URL', `relay URL ${relayUrl} is not http(s) or ws(s)`);
  u.pathname = LEASE_PATH;
  u.search = '';
  u.hash = '';
  return u.toString();
}

interface Sock {
  /** The gateway's socket id on the current connection; 0 while not bound there. */
  remote: number;
  port: number;
  live: boolean;
  onPacket: (data: Uint8Array, ip: string, port: number) => void;
}

interface PendingBind {
  resolve(b: { sockId: number; port: number }): void;
  reject(e: LeaseError): void;
  timer: TimerHandle;
}

type WsExtra = WebSocketLike & { readyState?: number; bufferedAmount?: number };

function bytesOf(d: unknown): Uint8Array | null {
  if (d instanceof ArrayBuffer) return new Uint8Array(d);
  if (ArrayBuffer.isView(d)) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  return null;
}

class LeaseClient {
  readonly stats: LeaseClientStats = { sent: 0, received: 0, messagesSent: 0, messagesReceived: 0, denied: 0, dropped: 0, connects: 0, disconnects: 0 };
  info: ReadyInfo | null = null;
  up = false;
  private ws: WsExtra | null = null;
  /** Frames to the gateway on the current connection (batched when the gateway allows it). */
  private out: FrameBatcher | null = null;
  private connecting: Promise<void> | null = null;
  private everUp = false;
  private closed = false;
  private readonly socks = new Set<Sock>();
  private readonly byRemote = new Map<number, Sock>();
  private readonly binds = new Map<number, PendingBind>();
  private nextReq = 1;
  private readonly backoff: Backoff;
  private redial: TimerHandle | undefined;
  private deniedLogged = 0;

  constructor(private readonly o: LeaseTransportOptions) {
    this.backoff = new Backoff({ baseMs: o.backoff?.baseMs ?? LEASE_BACKOFF_BASE_MS, maxMs: o.backoff?.maxMs ?? LEASE_BACKOFF_MAX_MS, random: o.random ?? cryptoRandom });
  }

  private log(level: 'debug' | 'info' | 'warn', m: string): void {
    this.o.log?.(level, `lease: ${m}`);
  }

  /** One connection attempt: resolves when Ready arrives, rejects with a LeaseError. */
  private connect(): Promise<void> {
    this.connecting ??= this.dial().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async dial(): Promise<void> {
    let url: string;
    try {
      url = typeof this.o.url === 'string' ? this.o.url : await this.o.url();
    } catch (e) {
      throw new LeaseError('LEASE_UNREACHABLE', `no lease gateway: ${(e as Error).message}`, { cause: e });
    }
    if (this.closed) throw new LeaseError('LEASE_CLOSED', 'the lease transport is closed');
    const clock = this.o.clock;
    return new Promise<void>((resolve, reject) => {
      let ws: WsExtra;
      try {
        ws = new this.o.WebSocket(url, LEASE_SUBPROTOCOL) as WsExtra;
      } catch (e) {
        return reject(new LeaseError('LEASE_UNREACHABLE', `cannot open ${url}: ${(e as Error).message}`, { cause: e }));
      }
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      let phase: 'hello' | 'ready' | 'up' = 'hello';
      let refusal: LeaseError | null = null;
      const fail = (e: LeaseError): void => {
        clock.clearTimer(timer);
        if (this.ws === ws) this.ws = null;
        try {
          ws.close();
        } catch {
          // not open yet
        }
        reject(e);
      };
      const timer = clock.setTimer(() => fail(new LeaseError('LEASE_TIMEOUT', `no lease from ${url} within ${this.o.connectTimeoutMs ?? LEASE_CONNECT_TIMEOUT_MS} ms`)), this.o.connectTimeoutMs ?? LEASE_CONNECT_TIMEOUT_MS);
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        if (phase !== 'up') {
          return fail(refusal ?? new LeaseError('LEASE_UNREACHABLE', `the lease gateway at ${url} closed the connection (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`));
        }
        // Replaced by a newer lease of this node key (another tab with the same key): redialling
        // would only take it back and start a tug of war, so this transport stays down.
        if (this.ws === ws) this.lost(`closed (${ev.code}${refusal ? `: ${refusal.message}` : ''})`, refusal?.code !== 'LEASE_REPLACED');
      };
      ws.onmessage = (ev) => {
        const b = bytesOf(ev.data);
        let m;
        try {
          if (!b) throw new LeaseError('LEASE_BAD_FRAME', 'a text message on the lease channel');
          m = decodeFrame(b);
        } catch (e) {
          const err = isPierceError(e) ? new LeaseError(e.code, e.message) : new LeaseError('LEASE_BAD_FRAME', String(e));
          if (phase !== 'up') return fail(err);
          this.log('warn', `bad frame from the gateway: ${err.message}`);
          return ws.close(1002, err.code);
        }
        if (m.type !== 'batch') return handle(m);
        if (phase !== 'up') return fail(new LeaseError('LEASE_BAD_FRAME', 'a Batch before Ready'));
        this.stats.messagesReceived++;
        // Each frame as if it had come alone (stop if one of them ended this connection).
        for (const f of m.frames) {
          if (this.ws !== ws) return;
          handle(f, true);
        }
      };
      const handle = (f: LeaseFrame, inBatch = false): void => {
        if (phase === 'up' && !inBatch) this.stats.messagesReceived++;
        if (f.type === 'error' && f.reqId === 0) {
          refusal = new LeaseError(f.code, `the lease gateway refused: ${f.message}`);
          if (phase !== 'up') return fail(refusal);
          this.log('warn', refusal.message);
          return;
        }
        if (phase === 'hello') {
          if (f.type !== 'server-hello') return fail(new LeaseError('LEASE_BAD_FRAME', `expected ServerHello, got ${f.type}`));
          phase = 'ready';
          ws.send(encodeClientHello(this.o.nodeKey, f.gatewayKey, f.challenge, this.o.random ?? cryptoRandom));
          return;
        }
        if (phase === 'ready') {
          if (f.type !== 'ready') return fail(new LeaseError('LEASE_BAD_FRAME', `expected Ready, got ${f.type}`));
          clock.clearTimer(timer);
          phase = 'up';
          this.info = f.info;
          this.out = this.writerFor(ws, f.info.batch === true);
          this.up = true;
          this.everUp = true;
          this.stats.connects++;
          this.log('info', `up on ${url} as ${f.info.node.name} (${f.info.limits.sockets} sockets, ${f.info.limits.packetsPerSecond} packets/s)`);
          this.o.events?.state?.(true);
          return resolve();
        }
        this.onFrame(f);
      };
    });
  }

  /** The frame writer of connection `ws`: batched per task when the gateway accepts Batch. */
  private writerFor(ws: WsExtra, batch: boolean): FrameBatcher {
    const send = (m: Uint8Array): void => {
      // Held frames of a connection that is gone are dropped, as a full UDP queue would.
      if (this.ws !== ws || (ws.readyState !== undefined && ws.readyState !== WS_OPEN)) return;
      this.stats.messagesSent++;
      ws.send(m);
    };
    if (!batch) return { write: send, flush: () => {}, pendingBytes: () => 0 };
    return frameBatcher(send, (fn) => void this.o.clock.setTimer(fn, 0));
  }

  private onFrame(f: LeaseFrame): void {
    switch (f.type) {
      case 'recv': {
        const s = this.byRemote.get(f.sockId);
        if (!s) return;
        this.stats.received++;
        s.onPacket(f.payload, f.ip, f.port);
        return;
      }
      case 'bound': {
        const p = this.binds.get(f.reqId);
        if (!p) return;
        this.binds.delete(f.reqId);
        this.o.clock.clearTimer(p.timer);
        p.resolve({ sockId: f.sockId, port: f.port });
        return;
      }
      case 'error': {
        const p = this.binds.get(f.reqId);
        if (!p) return;
        this.binds.delete(f.reqId);
        this.o.clock.clearTimer(p.timer);
        p.reject(new LeaseError(f.code, f.message));
        return;
      }
      case 'denied':
        this.stats.denied++;
        this.o.events?.denied?.(f.ip, f.port, f.reason);
        if (this.deniedLogged++ < 20) this.log('debug', `send to ${f.ip}:${f.port} refused: ${denyReasonText(f.reason)}`);
        return;
      default:
        this.log('debug', `ignored ${f.type} from the gateway`);
    }
  }

  /** The connection that was up is gone: quiet the sockets, fail pending binds, redial. */
  private lost(why: string, redial = true): void {
    this.ws = null;
    this.out = null;
    this.up = false;
    this.stats.disconnects++;
    for (const s of this.socks) s.remote = 0;
    this.byRemote.clear();
    this.failBinds(new LeaseError('LEASE_DOWN', 'the lease connection dropped'));
    this.o.events?.state?.(false);
    if (this.closed) return;
    if (!redial) {
      this.log('warn', `connection ${why}; not redialling`);
      return;
    }
    this.log('info', `connection ${why}; redialling`);
    this.scheduleRedial();
  }

  private failBinds(e: LeaseError): void {
    for (const p of this.binds.values()) {
      this.o.clock.clearTimer(p.timer);
      p.reject(e);
    }
    this.binds.clear();
  }

  private scheduleRedial(): void {
    if (this.closed || this.redial !== undefined) return;
    const delay = this.backoff.next();
    this.redial = this.o.clock.setTimer(() => {
      this.redial = undefined;
      this.connect().then(
        () => {
          this.backoff.reset();
          void this.rebindAll();
        },
        (e: LeaseError) => {
          this.log('info', `redial failed (${e.code}: ${e.message})`);
          this.scheduleRedial();
        },
      );
    }, delay);
  }

  /** After a redial: every live socket is bound again, on its old port when that is free. */
  private async rebindAll(): Promise<void> {
    for (const s of [...this.socks]) {
      if (!s.live || !this.up) continue;
      let b: { sockId: number; port: number } | null = null;
      try {
        b = await this.requestBind(s.port);
      } catch {
        b = await this.requestBind(0).catch((e: LeaseError) => {
          this.log('warn', `cannot bind a socket again (${e.code}: ${e.message})`);
          return null;
        });
      }
      if (!b) continue;
      if (!s.live) {
        this.sendFrame(encodeClose(b.sockId));
        continue;
      }
      if (b.port !== s.port) this.log('info', `socket moved from port ${s.port} to ${b.port}`);
      s.remote = b.sockId;
      s.port = b.port;
      this.byRemote.set(b.sockId, s);
    }
  }

  private sendFrame(frame: Uint8Array): boolean {
    const ws = this.ws;
    const out = this.out;
    if (!ws || !out || !this.up || (ws.readyState !== undefined && ws.readyState !== WS_OPEN)) return false;
    if ((ws.bufferedAmount ?? 0) + out.pendingBytes() > (this.o.maxBufferedBytes ?? LEASE_MAX_BUFFERED)) return false;
    out.write(frame);
    return true;
  }

  private requestBind(port: number): Promise<{ sockId: number; port: number }> {
    return new Promise((resolve, reject) => {
      const reqId = this.nextReq;
      this.nextReq = this.nextReq >= 0xffffffff ? 1 : this.nextReq + 1;
      if (!this.sendFrame(encodeBind(reqId, port))) return reject(new LeaseError('LEASE_DOWN', 'the lease connection is down'));
      const timer = this.o.clock.setTimer(() => {
        this.binds.delete(reqId);
        reject(new LeaseError('LEASE_TIMEOUT', `the gateway did not answer a bind within ${LEASE_BIND_TIMEOUT_MS} ms`));
      }, LEASE_BIND_TIMEOUT_MS);
      this.binds.set(reqId, { resolve, reject, timer });
    });
  }

  async bind(port: number, onPacket: Sock['onPacket']): Promise<UdpSocket> {
    if (this.closed) throw new LeaseError('LEASE_CLOSED', 'the lease transport is closed');
    if (!this.up) {
      if (this.everUp && !this.connecting) throw new LeaseError('LEASE_DOWN', 'the lease connection is down (redialling)');
      await this.connect();
    }
    const b = await this.requestBind(port);
    const s: Sock = { remote: b.sockId, port: b.port, live: true, onPacket };
    if (this.closed) {
      s.live = false;
      throw new LeaseError('LEASE_CLOSED', 'the lease transport is closed');
    }
    this.socks.add(s);
    this.byRemote.set(b.sockId, s);
    const self = this;
    return {
      get port() {
        return s.port;
      },
      send(ip, p, data) {
        if (!s.live || s.remote === 0 || !self.sendFrame(encodeSend(s.remote, ip, p, data))) {
          self.stats.dropped++;
          return;
        }
        self.stats.sent++;
      },
      close() {
        if (!s.live) return;
        s.live = false;
        self.socks.delete(s);
        if (s.remote) {
          self.byRemote.delete(s.remote);
          self.sendFrame(encodeClose(s.remote));
        }
        s.remote = 0;
      },
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.redial !== undefined) this.o.clock.clearTimer(this.redial);
    this.redial = undefined;
    this.failBinds(new LeaseError('LEASE_CLOSED', 'the lease transport is closed'));
    for (const s of this.socks) s.live = false;
    this.socks.clear();
    this.byRemote.clear();
    const ws = this.ws;
    // Frames held for the end of this task go before the WebSocket's close.
    this.out?.flush();
    this.out = null;
    this.ws = null;
    const wasUp = this.up;
    this.up = false;
    try {
      ws?.close(1000, 'closed');
    } catch {
      // already closed
    }
    if (wasUp) this.o.events?.state?.(false);
  }
}

/** A UdpTransport whose sockets are leased from a gateway over a WebSocket. */
export function leaseTransport(o: LeaseTransportOptions): LeaseTransport {
  const c = new LeaseClient(o);
  return {
    bind: (port, onPacket) => c.bind(port, onPacket),
    localAddresses: () => c.info?.addresses ?? [],
    close: () => c.close(),
    get connected() {
      return c.up;
    },
    get info() {
      return c.info;
    },
    stats: c.stats,
  };
}
