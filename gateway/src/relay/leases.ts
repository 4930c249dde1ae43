/**
 * UDP leases (docs/udp-leases.md): `pierce relay --udp-leases` lends an authenticated browser
 * node UDP sockets of its own over a WebSocket (`/lease`, subprotocol `pierce-lease`, frames in
 * src/lease/codec.ts). The node's engine runs STUN, disco, hole punching and birthday probing
 * through them; this side only moves opaque datagrams and never holds a key of the node.
 *
 *   WebSocket ─ ServerHello(challenge) ─▶ ClientHello(box) ─▶ control: GET /api/v1/leases/KEY
 *        ─▶ Ready ─▶ Bind/Bound, Send ─▶ checks ─▶ dgram.send;  dgram 'message' ─▶ Recv
 *
 * It must not become an open UDP proxy, so every Send is checked:
 *   - destination: a STUN server of the relay map (exact ip:port), or any port on an IP that is
 *     an endpoint of one of the node's peers (any port, so the easy side of birthday probing can
 *     spray the hard side's ports; src/engine/birthday.ts). Unspecified, multicast and broadcast
 *     addresses never; loopback only with `allowLoopback`; `deny` prefixes never.
 *   - rate: token buckets of packets/s and bytes/s per lease, with a burst of one second.
 *   - sockets: at most `sockets` per lease, and one lease per node key (a new one replaces the
 *     old), so a node holds at most that many sockets on this gateway. Ports below 1024 are
 *     never bound.
 * The allowlist comes from control and is cached; while a lease lives it is refreshed every
 * `refreshMs`, and at most once a second when a Send is refused (the Send waits for that answer,
 * so a peer's new endpoint is reachable at once). Control being down keeps the last allowlist
 * (DESIGN invariant 3); control saying the node is gone or expired ends the lease.
 * Inbound datagrams are forwarded from any source (the engine drops senders it does not know),
 * but dropped while the WebSocket has more than `maxBufferedBytes` queued.
 * Frames to the node after Ready are batched (src/lease/batcher.ts): the first of an event-loop
 * turn goes alone at once, the rest of the turn (e.g. every datagram read from the leased sockets
 * in one poll phase) leaves as one Batch message; a browser pays per message. A Batch from the
 * node is taken apart and each frame handled as if it had come alone (checks and rate limits
 * apply per Send); Ready says `batch: true` so the node knows it may send them.
 * Everything of a lease is freed when its WebSocket closes.
 */
import { createSocket, type Socket } from 'node:dgram';
import type { WebSocket } from 'ws';
import { cryptoRandom, type RandomSource } from '../../../src/crypto/backend.ts';
import { isPierceError } from '../../../src/errors.ts';
import type { NodePrivate, NodePublic } from '../../../src/key/keys.ts';
import {
  CHALLENGE_LEN,
  DenyReason,
  LEASE_VERSION,
  LeaseError,
  MAX_DATAGRAM,
  decodeFrame,
  encodeBound,
  encodeDenied,
  encodeError,
  encodeReady,
  encodeRecv,
  encodeServerHello,
  verifyClientHello,
  type LeaseFrame,
  type LeaseLimits,
} from '../../../src/lease/codec.ts';
import { frameBatcher, type FrameBatcher } from '../../../src/lease/batcher.ts';
import { formatIP, isIPv4Mapped, parsePrefix, prefixContains, tryParseIP, type Prefix } from '../../../src/netstack/addr.ts';
import { parseAddr } from '../../../src/paths/paths.ts';
import { interfaceAddresses } from '../node/udp.ts';

/** Sockets per lease: the browser is the easy side of birthday probing, which needs one. */
export const DEFAULT_LEASE_SOCKETS = 16;
/** Sends per second per lease: ~10k WireGuard packets of 1280 bytes is 100 Mbit/s (issue 8). */
export const DEFAULT_LEASE_PACKETS_PER_SECOND = 20_000;
/** Payload bytes per second per lease (25 MB/s = 200 Mbit/s). */
export const DEFAULT_LEASE_BYTES_PER_SECOND = 25_000_000;
export const LEASE_REFRESH_MS = 10_000;
/** A refused destination triggers an allowlist refresh at most this often. */
export const LEASE_DENIED_REFRESH_MS = 1_000;
/** Control's answer is reused this long (reconnects, several leases of one node). */
export const LEASE_CACHE_MS = 5_000;
export const LEASE_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Handshakes waiting for control at once; more are refused (control is not a free oracle). */
export const LEASE_MAX_PENDING = 64;
export const LEASE_MAX_BUFFERED = 1 << 20;
/** Sends held while a refused destination is re-checked with control. */
const MAX_HELD = 16;
/** Denied frames per second per lease; more refusals are only counted. */
const DENIED_PER_SECOND = 50;
const WS_OPEN = 1;

/** What control allows a node (GET /api/v1/leases/NODEKEY). */
export interface LeaseGrant {
  node: { id: number; name: string };
  /** "ip:port" of the relay map's STUN servers. */
  stun: string[];
  /** "ip:port" endpoints of the node's peers. */
  peers: string[];
}

/**
 * Asks control about a node key. Throws LeaseError LEASE_UNKNOWN_NODE, LEASE_NODE_EXPIRED
 * (the node may not have a lease) or LEASE_CONTROL_UNAVAILABLE (no answer).
 */
export type LeaseAuthority = (nodeKey: NodePublic) => Promise<LeaseGrant>;

/** A LeaseAuthority backed by control's admin API. */
export function controlAuthority(o: { controlUrl: string; apiKey: string; fetch?: typeof fetch; timeoutMs?: number }): LeaseAuthority {
  const f = o.fetch ?? globalThis.fetch;
  return async (key) => {
    const url = new URL(`/api/v1/leases/${encodeURIComponent(key.toString())}`, o.controlUrl);
    let res: Response;
    try {
      res = await f(url, { headers: { Authorization: `Bearer ${o.apiKey}` }, signal: AbortSignal.timeout(o.timeoutMs ?? 5000) });
    } catch (e) {
      throw new LeaseError('LEASE_CONTROL_UNAVAILABLE', `cannot reach control at ${o.controlUrl}: ${(e as Error).message}`);
    }
    const body = (await res.json().catch(() => ({}))) as Record<string, unknown>;
    const msg = typeof body['error'] === 'string' ? body['error'] : `HTTP ${res.status}`;
    if (res.status === 404) throw new LeaseError('LEASE_UNKNOWN_NODE', `${key.short()} is not a node of this tailnet`);
    if (res.status === 403) throw new LeaseError('LEASE_NODE_EXPIRED', msg);
    if (res.status === 401) throw new LeaseError('LEASE_CONTROL_UNAVAILABLE', `control refused this gateway's API key (${msg})`);
    if (!res.ok) throw new LeaseError('LEASE_CONTROL_UNAVAILABLE', `control: ${msg}`);
    const node = body['node'] as { id?: unknown; name?: unknown } | undefined;
    const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
    if (!node || typeof node.id !== 'number' || typeof node.name !== 'string') throw new LeaseError('LEASE_CONTROL_UNAVAILABLE', 'control sent a malformed lease grant');
    return { node: { id: node.id, name: node.name }, stun: list(body['stun']), peers: list(body['peers']) };
  };
}

export interface LeaseOptions {
  authority: LeaseAuthority;
  /** The gateway's key (the relay's), which nodes seal their hello to. */
  privateKey: NodePrivate;
  sockets?: number;
  packetsPerSecond?: number;
  bytesPerSecond?: number;
  /** Bind leased sockets on this address only (default: 0.0.0.0 and :: on one port). */
  bindAddress?: string;
  /** Addresses told to nodes to advertise with a leased port (default: interface addresses). */
  addresses?: string[];
  /** Let nodes send to loopback addresses (tests on one host; default false). */
  allowLoopback?: boolean;
  /** Prefixes never sent to, e.g. the gateway's own internal networks. */
  deny?: string[];
  refreshMs?: number;
  cacheMs?: number;
  handshakeTimeoutMs?: number;
  maxBufferedBytes?: number;
  random?: RandomSource;
  log?: (level: 'debug' | 'info' | 'warn', message: string) => void;
}

export interface LeaseStats {
  /** Live leases (handshake done). */
  leases: number;
  /** Bound sockets over all leases. */
  sockets: number;
  handshakes: number;
  refused: number;
  sent: number;
  sentBytes: number;
  received: number;
  receivedBytes: number;
  denied: { notAllowed: number; rateLimited: number; noSocket: number };
  /** Inbound datagrams dropped because the WebSocket was backed up. */
  inboundDropped: number;
  /** WebSocket messages to nodes after Ready (a Batch counts once). */
  messagesOut: number;
  /** WebSocket messages from nodes after Ready (a Batch counts once). */
  messagesIn: number;
}

interface Leased {
  id: number;
  s4?: Socket;
  s6?: Socket;
  port: number;
}

/** Every refused-always range: unspecified, multicast, limited broadcast. */
const NEVER = ['0.0.0.0/8', '224.0.0.0/4', '255.255.255.255/32', '::/128', 'ff00::/8'].map(parsePrefix);
const LOOPBACK = ['127.0.0.0/8', '::1/128'].map(parsePrefix);

/** Canonical text of an IP (IPv4-mapped IPv6 as IPv4), or null. */
function canonIP(ip: string): string | null {
  const b = tryParseIP(ip);
  if (!b) return null;
  return formatIP(isIPv4Mapped(b) ? b.subarray(12) : b);
}

class Bucket {
  private tokens: number;
  private at: number;
  constructor(
    private readonly rate: number,
    now: number,
  ) {
    this.tokens = rate;
    this.at = now;
  }
  take(n: number, now: number): boolean {
    if (this.rate <= 0) return true;
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.at) * this.rate) / 1000);
    this.at = now;
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
}

export class LeaseGateway {
  readonly limits: LeaseLimits;
  private readonly counters: Omit<LeaseStats, 'leases' | 'sockets'> = {
    handshakes: 0,
    refused: 0,
    sent: 0,
    sentBytes: 0,
    received: 0,
    receivedBytes: 0,
    denied: { notAllowed: 0, rateLimited: 0, noSocket: 0 },
    inboundDropped: 0,
    messagesOut: 0,
    messagesIn: 0,
  };
  private readonly leases = new Map<string, Lease>();
  private readonly conns = new Set<Lease>();
  private readonly cache = new Map<string, { at: number; grant: LeaseGrant }>();
  private pending = 0;
  readonly deny: Prefix[];
  readonly random: RandomSource;

  constructor(readonly opts: LeaseOptions) {
    this.limits = {
      sockets: opts.sockets ?? DEFAULT_LEASE_SOCKETS,
      packetsPerSecond: opts.packetsPerSecond ?? DEFAULT_LEASE_PACKETS_PER_SECOND,
      bytesPerSecond: opts.bytesPerSecond ?? DEFAULT_LEASE_BYTES_PER_SECOND,
      maxDatagram: MAX_DATAGRAM,
    };
    this.deny = [...NEVER, ...(opts.allowLoopback ? [] : LOOPBACK), ...(opts.deny ?? []).map(parsePrefix)];
    this.random = opts.random ?? cryptoRandom;
  }

  log(level: 'debug' | 'info' | 'warn', m: string): void {
    this.opts.log?.(level, m);
  }

  stats(): LeaseStats {
    let sockets = 0;
    for (const l of this.conns) sockets += l.socketCount;
    return { ...this.counters, denied: { ...this.counters.denied }, leases: this.leases.size, sockets };
  }

  /** The counters, live (the lease connections add to them). */
  get count(): Omit<LeaseStats, 'leases' | 'sockets'> {
    return this.counters;
  }

  /** Asks control (or the cache, when its answer is younger than `maxAgeMs`). */
  async lookup(key: NodePublic, maxAgeMs: number): Promise<LeaseGrant> {
    const k = key.toString();
    const now = performance.now();
    const c = this.cache.get(k);
    if (c && now - c.at <= maxAgeMs) return c.grant;
    const grant = await this.opts.authority(key);
    if (this.cache.size > 4096) for (const [ck, v] of this.cache) if (now - v.at > (this.opts.cacheMs ?? LEASE_CACHE_MS)) this.cache.delete(ck);
    this.cache.set(k, { at: performance.now(), grant });
    return grant;
  }

  /** Takes a WebSocket that asked for `pierce-lease`. */
  accept(ws: WebSocket, remote: string): void {
    if (this.pending >= LEASE_MAX_PENDING) {
      ws.send(encodeError(0, 'LEASE_BUSY', 'too many lease handshakes at once; try again'));
      ws.close(1013, 'busy');
      return;
    }
    this.pending++;
    const l = new Lease(this, ws, remote, () => {
      this.pending--;
    });
    this.conns.add(l);
    ws.on('close', () => {
      this.conns.delete(l);
      if (l.key && this.leases.get(l.key.toString()) === l) this.leases.delete(l.key.toString());
    });
  }

  /** Lease `l` is ready: it replaces an older lease of the same node. */
  register(l: Lease): void {
    const k = l.key!.toString();
    const old = this.leases.get(k);
    this.leases.set(k, l);
    if (old && old !== l) old.end('LEASE_REPLACED', 'a newer lease of this node replaced this one');
  }

  close(): void {
    for (const l of [...this.conns]) l.end('LEASE_SHUTDOWN', 'the gateway is shutting down');
  }
}

class Lease {
  key: NodePublic | undefined;
  private state: 'hello' | 'checking' | 'ready' | 'closed' = 'hello';
  private readonly challenge: Uint8Array;
  private readonly socks = new Map<number, Leased>();
  private binding = 0;
  private nextSock = 1;
  private stun = new Set<string>();
  private peerIPs = new Set<string>();
  private name = '?';
  private lastForced = -Infinity;
  private refreshing: Promise<void> | null = null;
  private held: { sock: number; ip: string; port: number; payload: Uint8Array }[] = [];
  private readonly pkts: Bucket;
  private readonly bytes: Bucket;
  private readonly deniedBucket: Bucket;
  private timer: NodeJS.Timeout | undefined;
  private pendingDone: (() => void) | null;
  /** Frames to the node after Ready, batched per event-loop turn. */
  private readonly out: FrameBatcher;

  constructor(
    private readonly gw: LeaseGateway,
    private readonly ws: WebSocket,
    private readonly remote: string,
    pendingDone: () => void,
  ) {
    this.pendingDone = pendingDone;
    const now = performance.now();
    this.pkts = new Bucket(gw.limits.packetsPerSecond, now);
    this.bytes = new Bucket(gw.limits.bytesPerSecond, now);
    this.deniedBucket = new Bucket(DENIED_PER_SECOND, now);
    this.challenge = gw.random(CHALLENGE_LEN);
    ws.binaryType = 'nodebuffer';
    ws.on('message', (d: Buffer, isBinary: boolean) => {
      if (!isBinary) return this.end('LEASE_BAD_FRAME', 'text messages are not part of the lease protocol');
      this.onFrame(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    });
    ws.on('close', () => this.free());
    ws.on('error', () => ws.terminate());
    this.out = frameBatcher((m) => {
      if (this.ws.readyState !== WS_OPEN) return;
      if (this.state === 'ready') gw.count.messagesOut++;
      this.ws.send(m);
    }, setImmediate);
    this.timer = setTimeout(() => this.end('LEASE_TIMEOUT', 'no hello in time'), gw.opts.handshakeTimeoutMs ?? LEASE_HANDSHAKE_TIMEOUT_MS);
    this.timer.unref?.();
    ws.send(encodeServerHello(gw.opts.privateKey.public(), this.challenge));
  }

  get socketCount(): number {
    return this.socks.size;
  }

  /** Sends a frame, alone or in this turn's Batch (in order either way). */
  private send(frame: Uint8Array): void {
    if (this.ws.readyState === WS_OPEN) this.out.write(frame);
  }

  /** Ends the lease with an Error frame (reqId 0) and a close. */
  end(code: string, message: string): void {
    if (this.state === 'closed') return;
    this.send(encodeError(0, code, message));
    // What the batcher holds must reach the node before the close frame.
    this.out.flush();
    this.ws.close(code === 'LEASE_SHUTDOWN' ? 1001 : 1008, code);
    this.free();
    // A peer that never completes the close handshake is cut off.
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }

  private free(): void {
    if (this.state === 'closed') return;
    if (this.state === 'ready') this.gw.log('debug', `lease: ${this.name} ${this.key?.short()} from ${this.remote} closed`);
    this.state = 'closed';
    this.pendingDone?.();
    this.pendingDone = null;
    clearTimeout(this.timer);
    for (const s of this.socks.values()) closeLeased(s);
    this.socks.clear();
    this.held = [];
  }

  private onFrame(b: Uint8Array): void {
    let f;
    try {
      f = decodeFrame(b);
    } catch (e) {
      return this.end(isPierceError(e) ? e.code : 'LEASE_BAD_FRAME', (e as Error).message);
    }
    if (f.type === 'batch') {
      if (this.state !== 'ready') return this.end('LEASE_BAD_FRAME', 'batch before Ready');
      this.gw.count.messagesIn++;
      // Each frame as if it had come alone; one may end the lease.
      for (const inner of f.frames) {
        if (this.state !== 'ready') return;
        this.onReadyFrame(inner);
      }
      return;
    }
    if (this.state === 'hello') {
      if (f.type !== 'client-hello') return this.end('LEASE_BAD_FRAME', `expected ClientHello, got ${f.type}`);
      try {
        verifyClientHello(f, this.gw.opts.privateKey, this.challenge);
      } catch (e) {
        this.gw.count.refused++;
        return this.end(isPierceError(e) ? e.code : 'LEASE_BAD_BOX', (e as Error).message);
      }
      this.key = f.nodeKey;
      this.state = 'checking';
      void this.gw.lookup(f.nodeKey, this.gw.opts.cacheMs ?? LEASE_CACHE_MS).then(
        (g) => this.ready(g),
        (e: unknown) => {
          this.gw.count.refused++;
          const code = isPierceError(e) ? e.code : 'LEASE_CONTROL_UNAVAILABLE';
          this.gw.log('info', `lease: refused ${f.nodeKey.short()} from ${this.remote}: ${(e as Error).message}`);
          this.end(code, code === 'LEASE_UNKNOWN_NODE' ? `${f.nodeKey.short()} is not a node of this tailnet` : (e as Error).message);
        },
      );
      return;
    }
    if (this.state !== 'ready') return this.end('LEASE_BAD_FRAME', `${f.type} before Ready`);
    this.gw.count.messagesIn++;
    this.onReadyFrame(f);
  }

  /** A frame from the node once the lease is up (alone, or one of a Batch). */
  private onReadyFrame(f: LeaseFrame): void {
    switch (f.type) {
      case 'bind':
        return void this.bind(f.reqId, f.port);
      case 'close': {
        const s = this.socks.get(f.sockId);
        if (s) closeLeased(s);
        this.socks.delete(f.sockId);
        return;
      }
      case 'send':
        return this.onSend(f.sockId, f.ip, f.port, f.payload);
      default:
        return this.end('LEASE_BAD_FRAME', `a node does not send ${f.type}`);
    }
  }

  private ready(g: LeaseGrant): void {
    if (this.state !== 'checking') return;
    this.pendingDone?.();
    this.pendingDone = null;
    clearTimeout(this.timer);
    this.state = 'ready';
    this.gw.count.handshakes++;
    this.apply(g);
    this.gw.register(this);
    const addresses = (this.gw.opts.addresses ?? (this.gw.opts.bindAddress ? [this.gw.opts.bindAddress] : interfaceAddresses())).filter((a) => tryParseIP(a));
    this.send(encodeReady({ version: LEASE_VERSION, node: g.node, addresses, limits: this.gw.limits, batch: true }));
    this.gw.log('info', `lease: ${g.node.name} ${this.key!.short()} from ${this.remote}`);
    const period = this.gw.opts.refreshMs ?? LEASE_REFRESH_MS;
    const tick = () => {
      if (this.state !== 'ready') return;
      void this.refresh(this.gw.opts.cacheMs ?? LEASE_CACHE_MS).finally(() => {
        if (this.state === 'ready') this.timer = setTimeout(tick, period).unref();
      });
    };
    this.timer = setTimeout(tick, period).unref();
  }

  private apply(g: LeaseGrant): void {
    this.name = g.node.name;
    const stun = new Set<string>();
    for (const s of g.stun) {
      const a = parseAddr(s);
      const ip = a && canonIP(a.ip);
      if (ip) stun.add(`${ip}|${a.port}`);
    }
    const peers = new Set<string>();
    for (const e of g.peers) {
      const a = parseAddr(e);
      const ip = a && canonIP(a.ip);
      if (ip) peers.add(ip);
    }
    this.stun = stun;
    this.peerIPs = peers;
  }

  /** Re-reads the allowlist; control unreachable keeps the old one, a refusal ends the lease. */
  private refresh(maxAgeMs: number): Promise<void> {
    this.refreshing ??= this.gw
      .lookup(this.key!, maxAgeMs)
      .then(
        (g) => this.apply(g),
        (e: unknown) => {
          const code = isPierceError(e) ? e.code : '';
          if (code === 'LEASE_UNKNOWN_NODE' || code === 'LEASE_NODE_EXPIRED') this.end(code, (e as Error).message);
          else this.gw.log('debug', `lease: ${this.name}: allowlist refresh failed (${(e as Error).message}); keeping the last one`);
        },
      )
      .finally(() => {
        this.refreshing = null;
      });
    return this.refreshing;
  }

  private async bind(reqId: number, port: number): Promise<void> {
    const lim = this.gw.limits.sockets;
    if (this.socks.size + this.binding >= lim) return this.send(encodeError(reqId, 'LEASE_TOO_MANY_SOCKETS', `a lease holds at most ${lim} sockets`));
    if (port !== 0 && port < 1024) return this.send(encodeError(reqId, 'LEASE_PORT_NOT_ALLOWED', `port ${port} is privileged; ask for 0 or ≥ 1024`));
    this.binding++;
    let s: Leased;
    try {
      s = await bindLeased(this.nextSock++, port, this.gw.opts.bindAddress);
    } catch (e) {
      this.binding--;
      return this.send(encodeError(reqId, 'LEASE_BIND_FAILED', `cannot bind UDP port ${port}: ${(e as Error).message}`));
    }
    this.binding--;
    if (this.state !== 'ready') return closeLeased(s);
    for (const sock of [s.s4, s.s6]) {
      sock?.on('message', (msg, rinfo) => this.onInbound(s, msg, rinfo.address, rinfo.port));
    }
    this.socks.set(s.id, s);
    this.send(encodeBound(reqId, s.id, s.port));
  }

  private onInbound(s: Leased, msg: Buffer, address: string, port: number): void {
    const c = this.gw.count;
    if (this.state !== 'ready' || this.ws.bufferedAmount + this.out.pendingBytes() > (this.gw.opts.maxBufferedBytes ?? LEASE_MAX_BUFFERED)) {
      c.inboundDropped++;
      return;
    }
    const ip = address.startsWith('::ffff:') ? address.slice(7) : address;
    c.received++;
    c.receivedBytes += msg.length;
    this.send(encodeRecv(s.id, ip, port, new Uint8Array(msg.buffer, msg.byteOffset, msg.length)));
  }

  private allowed(ip: string, port: number): boolean {
    return this.stun.has(`${ip}|${port}`) || this.peerIPs.has(ip);
  }

  private deny(sock: number, ip: string, port: number, reason: DenyReason): void {
    const d = this.gw.count.denied;
    if (reason === DenyReason.NotAllowed) d.notAllowed++;
    else if (reason === DenyReason.RateLimited) d.rateLimited++;
    else d.noSocket++;
    if (this.deniedBucket.take(1, performance.now())) this.send(encodeDenied(sock, ip, port, reason));
  }

  private onSend(sockId: number, rawIp: string, port: number, payload: Uint8Array): void {
    const s = this.socks.get(sockId);
    if (!s) return this.deny(sockId, rawIp, port, DenyReason.NoSocket);
    const ip = canonIP(rawIp)!;
    const b = tryParseIP(ip)!;
    if (this.gw.deny.some((p) => prefixContains(p, b))) return this.deny(sockId, ip, port, DenyReason.NotAllowed);
    if (!this.allowed(ip, port)) {
      // Maybe a peer endpoint control learned after our last look: ask (at most once a second)
      // and hold a few sends for the answer.
      const now = performance.now();
      if (this.refreshing || now - this.lastForced >= LEASE_DENIED_REFRESH_MS) {
        if (!this.refreshing) this.lastForced = now;
        if (this.held.length >= MAX_HELD) return this.deny(sockId, ip, port, DenyReason.NotAllowed);
        this.held.push({ sock: sockId, ip, port, payload: Uint8Array.from(payload) });
        void this.refresh(0).then(() => {
          const held = this.held;
          this.held = [];
          for (const h of held) {
            if (this.state !== 'ready') return;
            if (this.allowed(h.ip, h.port)) this.transmit(h.sock, h.ip, h.port, h.payload);
            else this.deny(h.sock, h.ip, h.port, DenyReason.NotAllowed);
          }
        });
        return;
      }
      return this.deny(sockId, ip, port, DenyReason.NotAllowed);
    }
    this.transmit(sockId, ip, port, payload);
  }

  private transmit(sockId: number, ip: string, port: number, payload: Uint8Array): void {
    const s = this.socks.get(sockId);
    if (!s) return this.deny(sockId, ip, port, DenyReason.NoSocket);
    const now = performance.now();
    if (!this.pkts.take(1, now) || !this.bytes.take(payload.length, now)) return this.deny(sockId, ip, port, DenyReason.RateLimited);
    const sock = ip.includes(':') ? s.s6 : s.s4;
    if (!sock) return this.deny(sockId, ip, port, DenyReason.NotAllowed);
    const c = this.gw.count;
    c.sent++;
    c.sentBytes += payload.length;
    sock.send(payload, port, ip, () => {});
  }
}

function bindOne(type: 'udp4' | 'udp6', port: number, address?: string): Promise<Socket> {
  const s = createSocket(type === 'udp6' ? { type, ipv6Only: true } : { type });
  return new Promise((resolve, reject) => {
    s.once('error', (e) => {
      s.close();
      reject(e);
    });
    s.bind({ port, ...(address ? { address } : {}), exclusive: true }, () => {
      s.removeAllListeners('error');
      // ICMP errors and the like: a destination that does not answer, nothing more.
      s.on('error', () => {});
      resolve(s);
    });
  });
}

/** Binds a leased socket: IPv4 and IPv6 on one port (dual stack), or just `address`. */
async function bindLeased(id: number, port: number, address?: string): Promise<Leased> {
  if (address) {
    const s = await bindOne(address.includes(':') ? 'udp6' : 'udp4', port, address);
    const p = s.address().port;
    return address.includes(':') ? { id, s6: s, port: p } : { id, s4: s, port: p };
  }
  const s4 = await bindOne('udp4', port);
  const p = s4.address().port;
  const s6 = await bindOne('udp6', p).catch(() => undefined);
  return { id, s4, ...(s6 ? { s6 } : {}), port: p };
}

function closeLeased(s: Leased): void {
  for (const x of [s.s4, s.s6]) {
    try {
      x?.close();
    } catch {
      // already closed
    }
  }
}
