/**
 * The engine's disco agent: answers pings with pongs and measures round trips, over whatever
 * path it is given (the relay today; UDP candidates with NAT traversal). Disco messages are
 * sealed with the disco keys from the netmap (src/disco), separate from WireGuard's keys.
 */
import { toHex } from '../crypto/bytes.ts';
import { DiscoPublic, NodePublic } from '../key/keys.ts';
import { PierceError } from '../errors.ts';
import type { PeerInfo } from '../control/messages.ts';
import { looksLikeDisco, openDisco, sealDisco, DiscoKeyCache, type DiscoMessage } from '../disco/message.ts';
import type { EngineOptions } from './types.ts';

/** The IP Tailscale puts in pongs that came over DERP; the port is the region id. */
export const RELAY_MAGIC_IP = '127.3.3.40';

export interface PingResult {
  peer: string;
  ip: string;
  path: string;
  ms: number;
}

interface DiscoPeer {
  info: PeerInfo;
  node: NodePublic;
}

export interface DiscoIo {
  sendRelay(node: NodePublic, region: number, packet: Uint8Array): boolean;
  peerByDisco(disco: string): DiscoPeer | undefined;
}

interface Pending {
  resolve: (r: PingResult) => void;
  reject: (e: Error) => void;
  sentAt: number;
  peer: DiscoPeer;
  path: string;
  timer: unknown;
}

export class DiscoAgent {
  private readonly pending = new Map<string, Pending>();
  private readonly cache: DiscoKeyCache;
  private readonly discoPub: DiscoPublic;
  readonly stats = { pingsSent: 0, pongsSent: 0, pongsReceived: 0, bad: 0 };

  constructor(
    private readonly opts: EngineOptions,
    private readonly io: DiscoIo,
  ) {
    this.cache = new DiscoKeyCache(opts.keys.disco);
    this.discoPub = opts.keys.disco.public();
  }

  isDisco(data: Uint8Array): boolean {
    return looksLikeDisco(data);
  }

  private seal(to: DiscoPublic, msg: DiscoMessage): Uint8Array {
    return sealDisco(msg, this.opts.keys.disco, this.discoPub, to, this.opts.random(24), this.cache);
  }

  /** A disco packet arrived over the relay from `src` (a node key). */
  onPacket(src: NodePublic, data: Uint8Array, region: number): void {
    let opened;
    try {
      opened = openDisco(data, this.opts.keys.disco, this.cache);
    } catch (e) {
      this.stats.bad++;
      this.opts.log?.('debug', `disco: dropped a packet from ${src.short()}: ${(e as PierceError).message}`);
      return;
    }
    const peer = this.io.peerByDisco(opened.sender.toString());
    if (!peer || !peer.node.equals(src)) {
      this.stats.bad++;
      return;
    }
    const m = opened.msg;
    if (m.type === 'ping') {
      this.stats.pongsSent++;
      const pong = this.seal(opened.sender, { type: 'pong', txid: m.txid, src: { ip: RELAY_MAGIC_IP, port: region } });
      this.io.sendRelay(src, region, pong);
    } else if (m.type === 'pong') {
      const k = toHex(m.txid);
      const p = this.pending.get(k);
      if (!p || !p.peer.node.equals(src)) return;
      this.pending.delete(k);
      this.opts.clock.clearTimer(p.timer);
      this.stats.pongsReceived++;
      p.resolve({ peer: p.peer.info.name, ip: p.peer.info.addrs[0]!.split('/')[0]!, path: p.path, ms: this.opts.clock.now() - p.sentAt });
    }
    // CallMeMaybe: used by NAT traversal (direct paths), not on relay-only nodes.
  }

  /** Sends a ping to `peer` through relay `region`; resolves with the pong's round trip. */
  ping(peer: DiscoPeer, region: number, path: string, timeoutMs: number): Promise<PingResult> {
    return new Promise((resolve, reject) => {
      const txid = this.opts.random(12);
      const k = toHex(txid);
      const disco = DiscoPublic.parse(peer.info.discoKey);
      const packet = this.seal(disco, { type: 'ping', txid, nodeKey: this.opts.keys.node.public() });
      const timer = this.opts.clock.setTimer(() => {
        this.pending.delete(k);
        reject(new PierceError('PING_TIMEOUT', `no pong from ${peer.info.name} via ${path} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(k, { resolve, reject, sentAt: this.opts.clock.now(), peer, path, timer });
      // While the relay link to the peer's region is still opening, try again shortly.
      const send = () => {
        if (!this.pending.has(k)) return;
        this.stats.pingsSent++;
        // Sent: ask again each second (the peer may not have reached the relay yet); the
        // round trip counts from the latest send. Not sent (link still opening): retry soon.
        if (this.io.sendRelay(peer.node, region, packet)) {
          this.pending.get(k)!.sentAt = this.opts.clock.now();
          this.opts.clock.setTimer(send, 1000);
        } else this.opts.clock.setTimer(send, 250);
      };
      send();
    });
  }

  close(): void {
    for (const p of this.pending.values()) {
      this.opts.clock.clearTimer(p.timer);
      p.reject(new PierceError('ENGINE_STOPPED', 'the engine stopped'));
    }
    this.pending.clear();
  }
}
