/**
 * A WireGuard device (wireguard-go's Device, without sockets or goroutines): the static identity,
 * the peers, the receiver-index table, cryptokey routing and the cookie checker.
 *
 *   send(ipPacket, now)           outbound: route by destination → peer → encrypt or handshake
 *   receive(datagram, from, now)  inbound: demux by message type; returns a WgError or undefined
 *   tick(now) / nextDeadline()    the §6 timers, on the injected clock
 *
 * Output goes to the injected `DeviceSink`. Bad input never throws from `receive`: it returns a
 * typed error and changes no session state.
 */
import { cryptoRandom, type CryptoBackend, type RandomSource } from '../crypto/backend.ts';
import { equalBytes, toHex } from '../crypto/bytes.ts';
import { isPierceError } from '../errors.ts';
import { NodePrivate, NodePublic, PresharedKey } from '../key/keys.ts';
import { AllowedIPs } from './allowedips.ts';
import {
  DEFAULT_LIMITS,
  DEFAULT_MTU,
  MSG_COOKIE_REPLY,
  MSG_INITIATION,
  MSG_RESPONSE,
  MSG_TRANSPORT,
  UNDER_LOAD_AFTER_TIME,
  type WgLimits,
} from './constants.ts';
import { CookieChecker } from './cookie.ts';
import { WgError } from './errors.ts';
import { Keypair } from './keypair.ts';
import { messageType, parseMessage, senderIndex, type CookieReply, type Initiation, type Response, type TransportHeader } from './messages.ts';
import { acceptInitiation, consumeResponse, createResponse, deriveTransportKeys, openInitiation, type LocalStatic } from './noise.ts';
import { Peer, TIMER_NAMES } from './peer.ts';
import type { Context, DeviceCore, DeviceEvent, DeviceSink, Endpoint, LogLevel } from './types.ts';

export interface PeerConfig<E extends Endpoint> {
  publicKey: NodePublic;
  presharedKey?: PresharedKey;
  endpoint?: E;
  allowedIPs?: { addr: Uint8Array; bits: number }[];
  /** Seconds; 0 or absent is off. */
  persistentKeepalive?: number;
}

export interface DeviceOptions<E extends Endpoint> {
  privateKey: NodePrivate;
  backend: CryptoBackend;
  sink: DeviceSink<E>;
  random?: RandomSource;
  wallClock?: () => number;
  mtu?: number;
  limits?: Partial<WgLimits>;
  log?: (level: LogLevel, message: string) => void;
  onEvent?: (e: DeviceEvent<E>) => void;
}

export interface DeviceCounters {
  /** Inbound datagrams dropped, by error code. */
  dropped: Record<string, number>;
  cookieRepliesSent: number;
}

/** Token bucket per source address, used only while under load (wireguard-go ratelimiter). */
class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(
    private readonly perSecond = 20,
    private readonly burst = 5,
  ) {}
  allow(key: string, now: number): boolean {
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size > 65536) this.buckets.clear();
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}

interface IndexEntry<E extends Endpoint> {
  peer: Peer<E>;
  keypair: Keypair | null;
}

const te = new TextEncoder();

export class Device<E extends Endpoint = Endpoint> implements DeviceCore<E> {
  readonly ctx: Context;
  readonly local: LocalStatic;
  readonly publicKey: NodePublic;
  readonly limits: WgLimits;
  readonly mtu: number;
  readonly sink: DeviceSink<E>;
  readonly routes = new AllowedIPs<Peer<E>>();
  readonly counters: DeviceCounters = { dropped: {}, cookieRepliesSent: 0 };
  /** Demand cookies from every handshake regardless of load (tests, or an operator under attack). */
  forceUnderLoad = false;
  private readonly peersByKey = new Map<string, Peer<E>>();
  private readonly indices = new Map<number, IndexEntry<E>>();
  private readonly checker: CookieChecker;
  private readonly limiter = new RateLimiter();
  private readonly logFn: (level: LogLevel, message: string) => void;
  private readonly onEvent: (e: DeviceEvent<E>) => void;
  private loadWindowStart = -Infinity;
  private loadWindowCount = 0;
  private underLoadUntil = -Infinity;

  constructor(opts: DeviceOptions<E>) {
    this.ctx = { backend: opts.backend, random: opts.random ?? cryptoRandom, wallClock: opts.wallClock ?? (() => Date.now()) };
    const priv = opts.privateKey.raw();
    this.local = { priv, pub: opts.backend.x25519Public(priv) };
    this.publicKey = NodePublic.fromRaw(this.local.pub);
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.mtu = opts.mtu ?? DEFAULT_MTU;
    this.sink = opts.sink;
    this.checker = new CookieChecker(this.local.pub, this.ctx.random);
    this.logFn = opts.log ?? (() => {});
    this.onEvent = opts.onEvent ?? (() => {});
  }

  // ---- DeviceCore ----

  log(level: LogLevel, message: string): void {
    this.logFn(level, message);
  }

  event(e: DeviceEvent<E>): void {
    this.onEvent(e);
  }

  allocateIndex(peer: Peer<E>, keypair: Keypair | null): number {
    for (;;) {
      const r = this.ctx.random(4);
      const index = ((r[0]! << 24) | (r[1]! << 16) | (r[2]! << 8) | r[3]!) >>> 0;
      if (index !== 0 && !this.indices.has(index)) {
        this.indices.set(index, { peer, keypair });
        return index;
      }
    }
  }

  releaseIndex(index: number): void {
    if (index !== 0) this.indices.delete(index);
  }

  dropKeypair(kp: Keypair | null): void {
    if (!kp) return;
    const e = this.indices.get(kp.localIndex);
    if (e && e.keypair === kp) this.indices.delete(kp.localIndex);
    kp.wipe();
  }

  // ---- peers ----

  addPeer(cfg: PeerConfig<E>): Peer<E> {
    const id = toHex(cfg.publicKey.rawView());
    if (this.peersByKey.has(id)) throw new WgError('WG_STATE', `peer ${cfg.publicKey.short()} already exists`);
    if (equalBytes(cfg.publicKey.rawView(), this.local.pub)) throw new WgError('WG_STATE', 'a peer cannot have the device\'s own public key');
    const peer = new Peer<E>(this, cfg.publicKey, cfg.presharedKey, cfg.endpoint, cfg.persistentKeepalive ?? 0);
    this.peersByKey.set(id, peer);
    for (const p of cfg.allowedIPs ?? []) this.routes.insert(p.addr, p.bits, peer);
    return peer;
  }

  removePeer(pub: NodePublic): boolean {
    const id = toHex(pub.rawView());
    const peer = this.peersByKey.get(id);
    if (!peer) return false;
    peer.zeroAndFlushAll();
    this.routes.removeByValue(peer);
    this.peersByKey.delete(id);
    return true;
  }

  peer(pub: NodePublic): Peer<E> | undefined {
    return this.peersByKey.get(toHex(pub.rawView()));
  }

  peers(): Peer<E>[] {
    return [...this.peersByKey.values()];
  }

  // ---- timers ----

  /** The earliest timer deadline across peers, or null when nothing is pending. */
  nextDeadline(): number | null {
    let min: number | null = null;
    for (const p of this.peersByKey.values()) {
      const d = p.nextDeadline();
      if (d !== null && (min === null || d < min)) min = d;
    }
    return min;
  }

  /** Fires every timer whose deadline is at or before `now`. */
  tick(now: number): void {
    for (const p of [...this.peersByKey.values()]) {
      for (const t of TIMER_NAMES) {
        const d = p.timers[t];
        if (d !== null && d <= now) p.fire(t, now);
      }
    }
  }

  // ---- outbound ----

  /**
   * Sends an IP packet to the peer whose allowed IPs contain its destination. Returns a WgError
   * (`WG_NO_ROUTE`, `WG_PACKET`) when it cannot be routed, undefined otherwise (sent or staged).
   */
  send(packet: Uint8Array, now: number): WgError | undefined {
    const dst = destinationOf(packet);
    if (!dst) return new WgError('WG_PACKET', 'not an IPv4 or IPv6 packet');
    const peer = this.routes.lookup(dst);
    if (!peer) return new WgError('WG_NO_ROUTE', 'no peer has an allowed IP matching the destination');
    peer.stage(packet);
    peer.sendStaged(now);
    return undefined;
  }

  // ---- inbound ----

  /** Handles one datagram. Returns the reason it was dropped, or undefined when it was accepted. */
  receive(datagram: Uint8Array, from: E, now: number): WgError | undefined {
    try {
      const t = messageType(datagram);
      switch (t) {
        case MSG_INITIATION:
        case MSG_RESPONSE:
          this.admitHandshake(datagram, from, now);
          if (t === MSG_INITIATION) this.onInitiation(parseMessage(datagram) as Initiation, from, now);
          else this.onResponse(parseMessage(datagram) as Response, from, now);
          return undefined;
        case MSG_COOKIE_REPLY:
          this.onCookieReply(parseMessage(datagram) as CookieReply, now);
          return undefined;
        case MSG_TRANSPORT:
          this.onTransport(parseMessage(datagram) as TransportHeader, from, now);
          return undefined;
      }
      throw new WgError('WG_MALFORMED', `unknown message type ${t}`);
    } catch (e) {
      const err = isPierceError(e) ? (e as WgError) : new WgError('WG_INTERNAL', `internal error: ${String(e)}`, { cause: e });
      this.counters.dropped[err.code] = (this.counters.dropped[err.code] ?? 0) + 1;
      this.log(err.code === 'WG_INTERNAL' ? 'warn' : 'debug', `dropped datagram from ${from.key}: ${err.message}`);
      return err;
    }
  }

  isUnderLoad(now: number): boolean {
    return this.forceUnderLoad || now < this.underLoadUntil;
  }

  /** mac1, load accounting, and under load: mac2 (cookie) and a per-source rate limit. */
  private admitHandshake(datagram: Uint8Array, from: E, now: number): void {
    const expected = datagram[0] === MSG_INITIATION ? 148 : 92;
    if (datagram.length !== expected) throw new WgError('WG_MALFORMED', `handshake message must be ${expected} bytes, got ${datagram.length}`);
    if (!this.checker.checkMac1(datagram)) throw new WgError('WG_MAC1', 'mac1 does not verify');
    if (now - this.loadWindowStart >= 1000) {
      this.loadWindowStart = now;
      this.loadWindowCount = 0;
    }
    if (++this.loadWindowCount > this.limits.underLoadHandshakesPerSecond) this.underLoadUntil = now + UNDER_LOAD_AFTER_TIME;
    if (!this.isUnderLoad(now)) return;
    const source = te.encode(from.key);
    if (!this.checker.checkMac2(datagram, source, now)) {
      this.sink.send(from, this.checker.createReply(datagram, senderIndex(datagram), source, now));
      this.counters.cookieRepliesSent++;
      throw new WgError('WG_COOKIE_REQUIRED', 'under load: answered with a cookie reply');
    }
    if (!this.limiter.allow(from.ip ?? from.key, now)) throw new WgError('WG_RATE_LIMITED', 'under load: too many handshakes from this source');
  }

  private onInitiation(msg: Initiation, from: E, now: number): void {
    let peer: Peer<E> | undefined;
    const opened = openInitiation(this.ctx, this.local, msg, (pub) => {
      peer = this.peersByKey.get(toHex(pub));
      return peer?.handshake.precomputedStaticStatic;
    });
    const p = peer!;
    acceptInitiation(p.handshake, opened, msg, now);
    p.endpoint = from;
    p.stats.rxBytes += 148;
    p.timersAnyAuthenticatedPacketTraversal(now);
    p.timersAnyAuthenticatedPacketReceived();

    this.releaseIndex(p.handshake.localIndex);
    const index = this.allocateIndex(p, null);
    const response = createResponse(this.ctx, p.handshake, index);
    p.cookies.addMacs(response, now);
    this.beginSession(p, now);
    p.timersSessionDerived(now);
    p.timersAnyAuthenticatedPacketTraversal(now);
    p.timersAnyAuthenticatedPacketSent();
    p.stats.txBytes += response.length;
    this.sink.send(from, response);
  }

  private onResponse(msg: Response, from: E, now: number): void {
    const entry = this.indices.get(msg.receiver);
    if (!entry || entry.keypair) throw new WgError('WG_UNKNOWN_INDEX', 'response to an index with no handshake in flight');
    const p = entry.peer;
    consumeResponse(this.ctx, this.local, p.handshake, msg);
    p.endpoint = from;
    p.stats.rxBytes += 92;
    p.timersAnyAuthenticatedPacketTraversal(now);
    p.timersAnyAuthenticatedPacketReceived();
    this.beginSession(p, now);
    p.timersSessionDerived(now);
    p.timersHandshakeComplete(now);
    this.event({ type: 'handshake-complete', peer: p, initiator: true });
    p.sendKeepalive(now);
  }

  private beginSession(p: Peer<E>, now: number): void {
    const keys = deriveTransportKeys(p.handshake);
    const kp = new Keypair(keys.send, keys.recv, keys.isInitiator, keys.localIndex, keys.remoteIndex, now);
    this.indices.set(kp.localIndex, { peer: p, keypair: kp });
    p.installKeypair(kp);
  }

  private onCookieReply(msg: CookieReply, now: number): void {
    const entry = this.indices.get(msg.receiver);
    if (!entry) throw new WgError('WG_UNKNOWN_INDEX', 'cookie reply to an unknown index');
    if (!entry.peer.cookies.consumeReply(msg, now)) throw new WgError('WG_DECRYPT', 'cookie reply does not authenticate');
  }

  private onTransport(msg: TransportHeader, from: E, now: number): void {
    const entry = this.indices.get(msg.receiver);
    if (!entry || !entry.keypair) throw new WgError('WG_UNKNOWN_INDEX', 'transport message for an unknown index');
    const kp = entry.keypair;
    const p = entry.peer;
    if (now - kp.created >= this.limits.rejectAfterTime) throw new WgError('WG_EXPIRED', 'keypair is older than Reject-After-Time');
    if (!(msg.counter < this.limits.rejectAfterMessages)) throw new WgError('WG_EXPIRED', 'counter is past Reject-After-Messages');
    const datagramLength = msg.encrypted.length + 16;
    const plain = kp.open(this.ctx.backend, msg);
    if (!plain) throw new WgError('WG_DECRYPT', 'transport message does not authenticate');
    if (!kp.replay.validate(msg.counter, this.limits.rejectAfterMessages)) throw new WgError('WG_REPLAY', `counter ${msg.counter} was already received or is too old`);

    if (p.receivedWithKeypair(kp)) {
      p.timersHandshakeComplete(now);
      this.event({ type: 'handshake-complete', peer: p, initiator: false });
      p.sendStaged(now);
    }
    p.keepKeyFreshReceiving(now);
    p.timersAnyAuthenticatedPacketTraversal(now);
    p.timersAnyAuthenticatedPacketReceived();
    p.endpoint = from;
    p.stats.rxBytes += datagramLength;
    if (plain.length === 0) return; // keepalive
    p.timersDataReceived(now);

    const packet = trimToIPLength(plain);
    if (!packet) throw new WgError('WG_PACKET', 'decrypted payload is not a valid IPv4/IPv6 packet');
    const src = sourceOf(packet)!;
    if (this.routes.lookup(src) !== p) throw new WgError('WG_ALLOWED_IPS', 'packet source is not in the peer\'s allowed IPs');
    p.stats.rxPackets++;
    this.sink.deliver(packet, p);
  }
}

/** The destination address of an IPv4/IPv6 packet (a view), or null. */
export function destinationOf(packet: Uint8Array): Uint8Array | null {
  const v = packet.length > 0 ? packet[0]! >> 4 : 0;
  if (v === 4 && packet.length >= 20) return packet.subarray(16, 20);
  if (v === 6 && packet.length >= 40) return packet.subarray(24, 40);
  return null;
}

function sourceOf(packet: Uint8Array): Uint8Array | null {
  const v = packet[0]! >> 4;
  if (v === 4) return packet.subarray(12, 16);
  if (v === 6) return packet.subarray(8, 24);
  return null;
}

/** Removes WireGuard's zero padding using the IP header's length field; null when invalid. */
function trimToIPLength(p: Uint8Array): Uint8Array | null {
  const v = p[0]! >> 4;
  let len: number;
  if (v === 4) {
    if (p.length < 20) return null;
    len = (p[2]! << 8) | p[3]!;
    if (len < 20) return null;
  } else if (v === 6) {
    if (p.length < 40) return null;
    len = 40 + ((p[4]! << 8) | p[5]!);
  } else return null;
  if (len > p.length) return null;
  return p.subarray(0, len);
}
