/**
 * The engine's disco agent: seals and opens disco messages (src/disco) with the disco keys from
 * the netmap, answers pings with pongs on the path they came by, and matches pongs to pings.
 * What the messages mean for paths (candidates, trust, birthday probing) is the engine's
 * business (direct.ts); this file only speaks the protocol, over the relay or UDP.
 *
 *   relay:  src node key must be the disco sender's node key (else dropped as spoofed)
 *   UDP:    a ping must carry the node key the netmap gives that disco key; CallMeMaybe and
 *           Punch are accepted only over the relay (they tell us where to send).
 */
import { toHex } from '../crypto/bytes.ts';
import { DiscoPublic, NodePublic } from '../key/keys.ts';
import { PierceError } from '../errors.ts';
import type { PeerInfo } from '../control/messages.ts';
import { looksLikeDisco, openDisco, parseDiscoHeader, sealDisco, DiscoKeyCache, type DiscoEndpoint, type DiscoMessage, type DiscoPunch } from '../disco/message.ts';
import type { UdpPath } from '../paths/paths.ts';
import type { EngineOptions } from './types.ts';

/** The IP Tailscale puts in pongs that came over DERP; the port is the region id. */
export const RELAY_MAGIC_IP = '127.3.3.40';

export interface PingResult {
  peer: string;
  ip: string;
  path: string;
  ms: number;
  direct: boolean;
}

export interface DiscoPeer {
  info: PeerInfo;
  node: NodePublic;
}

/** Where a disco packet came from / goes to. */
export type Via = { kind: 'relay'; region: number } | UdpPath;

export interface DiscoIo<P extends DiscoPeer> {
  sendRelay(node: NodePublic, region: number, packet: Uint8Array): boolean;
  sendUdp(path: UdpPath, packet: Uint8Array): void;
  peerByDisco(disco: string): P | undefined;
  /** A ping from `peer` arrived over UDP from `path` (already answered). */
  pinged(peer: P, path: UdpPath): void;
  callMeMaybe(peer: P, endpoints: DiscoEndpoint[]): void;
  punch(peer: P, m: DiscoPunch): void;
}

export interface PingHandlers {
  pong(rttMs: number, observed: DiscoEndpoint): void;
  timeout(): void;
}

interface Pending<P> {
  peer: P;
  via: Via;
  sentAt: number;
  h: PingHandlers;
  timer: unknown;
}

export class DiscoAgent<P extends DiscoPeer> {
  private readonly pending = new Map<string, Pending<P>>();
  private readonly cache: DiscoKeyCache;
  private readonly discoPub: DiscoPublic;
  /** Our node key, carried in every ping (computed once: it is an X25519 base multiplication). */
  private readonly nodePub: NodePublic;
  readonly stats = { pingsSent: 0, pongsSent: 0, pongsReceived: 0, bad: 0 };
  private closed = false;

  constructor(
    private readonly opts: EngineOptions,
    private readonly io: DiscoIo<P>,
  ) {
    this.cache = new DiscoKeyCache(opts.keys.disco);
    this.discoPub = opts.keys.disco.public();
    this.nodePub = opts.keys.node.public();
  }

  isDisco(data: Uint8Array): boolean {
    return looksLikeDisco(data);
  }

  private seal(to: DiscoPublic, msg: DiscoMessage): Uint8Array {
    return sealDisco(msg, this.opts.keys.disco, this.discoPub, to, this.opts.random(24), this.cache);
  }

  /** Sends `msg` to `peer` by `via`; false when the relay link is not up yet. */
  send(peer: P, via: Via, msg: DiscoMessage): boolean {
    const packet = this.seal(DiscoPublic.parse(peer.info.discoKey), msg);
    if (via.kind === 'relay') return this.io.sendRelay(peer.node, via.region, packet);
    this.io.sendUdp(via, packet);
    return true;
  }

  private drop(why: string): void {
    this.stats.bad++;
    this.opts.log?.('debug', `disco: dropped a packet: ${why}`);
  }

  /** A disco packet arrived: over the relay from node `src`, or over UDP from `path`. */
  onPacket(data: Uint8Array, from: { relay: NodePublic; region: number } | { udp: UdpPath }): void {
    // The sender must be a peer before any crypto: junk under random keys costs no X25519 and
    // cannot push real peers out of the shared-key cache.
    let peer: P | undefined;
    try {
      const sender = parseDiscoHeader(data).sender;
      peer = this.io.peerByDisco(sender.toString());
      if (!peer) return this.drop(`unknown disco key ${sender.short()}`);
    } catch (e) {
      return this.drop((e as PierceError).message);
    }
    let opened;
    try {
      opened = openDisco(data, this.opts.keys.disco, this.cache);
    } catch (e) {
      this.drop((e as PierceError).message);
      return;
    }
    if ('relay' in from && !peer.node.equals(from.relay)) return this.drop('relay source does not own the disco key');
    const m = opened.msg;
    const via: Via = 'relay' in from ? { kind: 'relay', region: from.region } : from.udp;
    switch (m.type) {
      case 'ping': {
        if ('udp' in from && !(m.nodeKey && m.nodeKey.equals(peer.node))) return this.drop('UDP ping without the peer\'s node key');
        this.stats.pongsSent++;
        const src = 'udp' in from ? { ip: from.udp.ip, port: from.udp.port } : { ip: RELAY_MAGIC_IP, port: from.region };
        this.send(peer, via, { type: 'pong', txid: m.txid, src });
        if ('udp' in from) this.io.pinged(peer, from.udp);
        return;
      }
      case 'pong': {
        const k = toHex(m.txid);
        const p = this.pending.get(k);
        if (!p || p.peer !== peer) return;
        // A UDP pong must come back from where the ping went (else it proves nothing).
        if (p.via.kind === 'udp' && !('udp' in from && from.udp.ip === p.via.ip && from.udp.port === p.via.port)) return this.drop('pong from another address');
        this.pending.delete(k);
        this.opts.clock.clearTimer(p.timer);
        this.stats.pongsReceived++;
        p.h.pong(this.opts.clock.now() - p.sentAt, m.src);
        return;
      }
      case 'call-me-maybe':
        if ('relay' in from) this.io.callMeMaybe(peer, m.endpoints);
        return;
      case 'punch':
        if ('relay' in from) this.io.punch(peer, m);
        return;
    }
  }

  /** Pings `peer` by `via` once; exactly one of the handlers runs (unless the agent closes). */
  ping(peer: P, via: Via, timeoutMs: number, h: PingHandlers): boolean {
    if (this.closed) return false;
    const txid = this.opts.random(12);
    const k = toHex(txid);
    const timer = this.opts.clock.setTimer(() => {
      if (this.pending.delete(k)) h.timeout();
    }, timeoutMs);
    this.pending.set(k, { peer, via, sentAt: this.opts.clock.now(), h, timer });
    this.stats.pingsSent++;
    const sent = this.send(peer, via, { type: 'ping', txid, nodeKey: this.nodePub });
    if (!sent) {
      this.pending.delete(k);
      this.opts.clock.clearTimer(timer);
    }
    return sent;
  }

  /**
   * A user's ping (`pierce ping`): re-sent each second until answered (the peer may not have
   * reached the relay yet); the round trip counts from the latest send.
   */
  pingUntilAnswered(peer: P, via: () => Via, describe: (v: Via) => string, timeoutMs: number): Promise<PingResult> {
    const start = this.opts.clock.now();
    return new Promise((resolve, reject) => {
      let done = false;
      const attempt = (): void => {
        if (done) return;
        if (this.closed) {
          done = true;
          reject(new PierceError('ENGINE_STOPPED', 'the engine stopped'));
          return;
        }
        const left = timeoutMs - (this.opts.clock.now() - start);
        if (left <= 0) {
          done = true;
          reject(new PierceError('PING_TIMEOUT', `no pong from ${peer.info.name} within ${timeoutMs} ms`));
          return;
        }
        const v = via();
        const sent = this.ping(peer, v, Math.min(left, 1000), {
          pong: (ms) => {
            if (done) return;
            done = true;
            resolve({ peer: peer.info.name, ip: peer.info.addrs[0]!.split('/')[0]!, path: describe(v), ms, direct: v.kind === 'udp' });
          },
          timeout: attempt,
        });
        if (!sent) this.opts.clock.setTimer(attempt, 250);
      };
      attempt();
    });
  }

  /** Forgets pings to peers that left. */
  forget(peer: P): void {
    for (const [k, p] of this.pending) {
      if (p.peer !== peer) continue;
      this.opts.clock.clearTimer(p.timer);
      this.pending.delete(k);
    }
  }

  close(): void {
    this.closed = true;
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) {
      this.opts.clock.clearTimer(p.timer);
      p.h.timeout();
    }
  }
}
