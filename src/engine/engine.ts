/**
 * The engine: one mesh node, the same code in a browser worker and in `pierce up`.
 *
 *   control ──map──▶ peers (with endpoints), relays, filter
 *   netstack ─IP─▶ WireGuard (cryptokey routing) ─datagram─▶ paths(peer) ─▶ direct UDP / relay
 *   relay, UDP ─▶ disco? ─▶ disco agent ─▶ direct paths (candidates, trust, birthday probing)
 *              └─▶ WireGuard ─IP─▶ inbound filter ─▶ netstack
 *
 * It touches no socket, timer or clock: everything comes in through EngineOptions. One timer is
 * armed at the earliest deadline of WireGuard, the netstack and the relay set.
 */
import { Device } from '../wg/device.ts';
import type { Peer } from '../wg/peer.ts';
import type { Endpoint } from '../wg/types.ts';
import { NodePublic } from '../key/keys.ts';
import { Stack } from '../netstack/stack.ts';
import { formatIP, parsePrefix, tryParseIP } from '../netstack/addr.ts';
import type { MapResponse, PeerInfo } from '../control/messages.ts';
import { PierceError } from '../errors.ts';
import { PeerPaths, pathName, formatAddr, type Path } from '../paths/paths.ts';
import { ControlLoop } from './control-loop.ts';
import { InboundFilter } from './filter.ts';
import { buildIcmpError, ICMPV4_ADMIN_PROHIBITED, ICMPV4_DEST_UNREACH, ICMPV6_ADMIN_PROHIBITED, ICMPV6_DEST_UNREACH } from '../netstack/icmp-error.ts';
import { RelaySet } from './relays.ts';
import { DiscoAgent, type PingResult, type Via } from './disco.ts';
import { DirectPaths, type DirectPeer } from './direct.ts';
import type { EngineOptions, EngineStatus, TimerHandle } from './types.ts';

export class EngineError extends PierceError {}

/** A peer as WireGuard sees it: the peer's node key; the engine picks the path. */
export interface PeerEndpoint extends Endpoint {
  readonly key: string;
  readonly node: NodePublic;
}

interface MeshPeer extends DirectPeer {
  ep: PeerEndpoint;
}

/** Policy-denied SYNs answered with ICMP per second (more are dropped silently). */
const REJECTS_PER_SECOND = 10;
/**
 * No UDP socket at start (e.g. a browser's lease gateway is down or does not know us yet): try
 * again after 30 s, doubling to 5 min, until one binds or the engine stops.
 */
const DIRECT_RETRY_MS = 30_000;
const DIRECT_RETRY_MAX_MS = 300_000;

export class Engine {
  readonly filter = new InboundFilter();
  readonly device: Device<PeerEndpoint>;
  readonly control: ControlLoop;
  readonly relays: RelaySet;
  readonly disco: DiscoAgent<MeshPeer>;
  /** Direct UDP paths; undefined on a relay-only node (no UDP, or disabled). */
  readonly direct: DirectPaths<MeshPeer> | undefined;
  stack: Stack | undefined;
  private readonly peers = new Map<string, MeshPeer>();
  private readonly endpoints = new Map<string, PeerEndpoint>();
  private readonly byDisco = new Map<string, MeshPeer>();
  private timer: TimerHandle;
  private rejectWindow = -Infinity;
  private rejectsInWindow = 0;
  private timerAt = Infinity;
  private relayDeadline = Infinity;
  private stopped = false;
  private directRetry: TimerHandle | undefined;
  private readonly runningWaiters: (() => void)[] = [];
  readonly mtu: number;

  constructor(readonly opts: EngineOptions) {
    this.mtu = opts.mtu ?? 1280;
    const log = opts.log ?? (() => {});
    this.device = new Device<PeerEndpoint>({
      privateKey: opts.keys.node,
      backend: opts.backend,
      random: opts.random,
      wallClock: () => opts.clock.wall(),
      mtu: this.mtu,
      log,
      sink: {
        send: (to, datagram) => this.sendDatagram(to, datagram),
        deliver: (packet) => this.deliver(packet),
      },
    });
    this.relays = new RelaySet(opts.keys.node, opts.transports, opts.clock, log, (src, data, region) => this.onRelayPacket(src, data, region), (home) => {
      this.control.update({ homeRelay: home });
      this.reschedule();
    });
    this.disco = new DiscoAgent<MeshPeer>(opts, {
      sendRelay: (peerNode, region, packet) => this.relays.send(region || this.relays.home, peerNode, packet),
      sendUdp: (path, packet) => this.direct?.send(path, packet),
      peerByDisco: (disco) => this.byDisco.get(disco),
      pinged: (peer, path) => this.direct?.pinged(peer, path),
      callMeMaybe: (peer, eps) => this.direct?.callMeMaybe(peer, eps),
      punch: (peer, m) => this.direct?.punch(peer, m),
    });
    this.control = new ControlLoop(opts, (m) => this.onMap(m));
    const udp = opts.transports.udp;
    this.direct =
      udp && !opts.direct?.disable
        ? new DirectPaths<MeshPeer>(opts, udp, {
            disco: this.disco,
            peers: () => this.peers.values(),
            relayMap: () => this.control.view.relays,
            homeRelay: () => this.relays.home,
            report: (endpoints) => this.control.update({ endpoints }),
            receive: (peer, data) => {
              this.device.receive(data, peer.ep, this.now());
              this.reschedule();
            },
          })
        : undefined;
  }

  /** Starts talking to control; resolves at once (watch `status()` or `whenRunning()`). */
  start(): void {
    void this.control.run();
    this.startDirect(0);
  }

  private startDirect(attempt: number): void {
    this.direct?.start().catch((e: Error) => {
      if (this.stopped) return;
      const delay = Math.min(DIRECT_RETRY_MAX_MS, DIRECT_RETRY_MS * 2 ** attempt);
      this.opts.log?.('warn', `direct paths disabled: ${e.message} (trying again in ${delay / 1000} s)`);
      this.directRetry = this.opts.clock.setTimer(() => {
        this.directRetry = undefined;
        if (!this.stopped) this.startDirect(attempt + 1);
      }, delay);
    });
  }

  /** Resolves when the first map has been applied. */
  whenRunning(): Promise<void> {
    if (this.stack) return Promise.resolve();
    return new Promise((r) => this.runningWaiters.push(r));
  }

  private now(): number {
    return this.opts.clock.now();
  }

  // ---- netmap ----

  private onMap(m: MapResponse): void {
    const view = this.control.view;
    if (m.relays || m.full) {
      this.relays.setMap(view.relays);
      this.direct?.relaysChanged();
    }
    if (m.filter || m.full || m.sets || m.setsPatch) this.filter.setFilter(view.filter);
    if (!this.stack && view.self) {
      this.stack = new Stack({
        addresses: view.self.addrs.map((a) => parsePrefix(a).addr),
        output: (p) => {
          this.filter.noteOutbound(p, this.now());
          this.device.send(p, this.now());
        },
        now: () => this.now(),
        mtu: this.mtu,
        random: this.opts.random,
        wake: () => this.reschedule(),
      });
      for (const w of this.runningWaiters.splice(0)) w();
    }
    this.syncPeers();
    this.opts.events?.netmap?.();
    this.reschedule();
  }

  private syncPeers(): void {
    const view = this.control.view;
    const want = new Set<string>();
    for (const info of view.peers.values()) {
      const node = NodePublic.parse(info.nodeKey);
      const k = node.toString();
      want.add(k);
      let p = this.peers.get(k);
      if (!p) {
        p = { info, node, ep: this.endpointFor(node), paths: new PeerPaths() };
        this.peers.set(k, p);
        this.device.addPeer({
          publicKey: node,
          endpoint: p.ep,
          allowedIPs: info.addrs.map((a) => parsePrefix(a)),
        });
      } else if (info.addrs.join() !== p.info.addrs.join()) {
        this.device.removePeer(node);
        this.device.addPeer({ publicKey: node, endpoint: p.ep, allowedIPs: info.addrs.map((a) => parsePrefix(a)) });
      }
      if (p.info.discoKey !== info.discoKey) {
        // A new disco key is a restarted peer (a reloaded browser tab, a restarted node): its
        // old sockets are gone, so every proven path and candidate goes with them — otherwise
        // our replies would keep going to a dead address until the path's trust ran out.
        this.byDisco.delete(p.info.discoKey);
        this.opts.log?.('info', `peer ${info.name}: new disco key (restarted), its paths start over`);
        this.direct?.forgetPeer(p);
        this.disco.forget(p);
        const region = p.paths.relayRegion;
        p.paths = new PeerPaths();
        p.paths.relayRegion = region;
      }
      p.info = info;
      this.byDisco.set(info.discoKey, p);
      p.paths.relayRegion = info.homeRelay;
      this.direct?.setPeerEndpoints(p, info.endpoints);
    }
    for (const [k, p] of this.peers) {
      if (want.has(k)) continue;
      this.device.removePeer(p.node);
      this.peers.delete(k);
      if (this.byDisco.get(p.info.discoKey) === p) this.byDisco.delete(p.info.discoKey);
      this.direct?.forgetPeer(p);
      this.disco.forget(p);
    }
  }

  private endpointFor(node: NodePublic): PeerEndpoint {
    const k = node.toString();
    let ep = this.endpoints.get(k);
    if (!ep) {
      ep = { key: k, node };
      this.endpoints.set(k, ep);
    }
    return ep;
  }

  // ---- data plane ----

  private sendDatagram(to: PeerEndpoint, datagram: Uint8Array): void {
    const p = this.peers.get(to.key);
    if (!p) return;
    const now = this.now();
    const t = p.paths.sendTargets(now);
    if (t.udp) this.direct?.send(t.udp, datagram);
    if (t.relay) this.relays.send(p.paths.relayRegion, to.node, datagram);
    this.direct?.noteSend(p, now);
  }

  private onRelayPacket(src: NodePublic, data: Uint8Array, region: number): void {
    if (this.disco.isDisco(data)) {
      this.disco.onPacket(data, { relay: src, region });
      return;
    }
    this.device.receive(data, this.endpointFor(src), this.now());
    this.reschedule();
  }

  private deliver(packet: Uint8Array): void {
    if (!this.stack) return;
    const v = this.filter.check(packet, this.now());
    if (v === 'pass') this.stack.input(packet);
    else if (v === 'reject') this.rejectSyn(packet);
  }

  /**
   * Answers a SYN the policy denies with ICMP "communication administratively prohibited"
   * (ICMPv4 3/13, ICMPv6 1/1), at most REJECTS_PER_SECOND a second, so the peer's client
   * reports the policy at once. Tailscale drops silently; the answer tells the peer only what
   * its own netmap already shows (that we exist), and a denied SYN still never reaches a socket.
   */
  private rejectSyn(packet: Uint8Array): void {
    const now = this.now();
    if (now - this.rejectWindow >= 1000) {
      this.rejectWindow = now;
      this.rejectsInWindow = 0;
    }
    if (++this.rejectsInWindow > REJECTS_PER_SECOND) return;
    const v6 = packet[0]! >> 4 === 6;
    const icmp = buildIcmpError(packet, v6 ? ICMPV6_DEST_UNREACH : ICMPV4_DEST_UNREACH, v6 ? ICMPV6_ADMIN_PROHIBITED : ICMPV4_ADMIN_PROHIBITED);
    if (icmp) this.device.send(icmp, now);
  }

  // ---- timers ----

  /** Re-arms the one timer at the earliest deadline. Call after feeding the engine. */
  reschedule(): void {
    if (this.stopped) return;
    const at = Math.min(this.device.nextDeadline() ?? Infinity, this.stack?.nextDeadline() ?? Infinity, this.relayDeadline);
    if (at >= this.timerAt && this.timer !== undefined) return;
    if (this.timer !== undefined) this.opts.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === Infinity) return;
    this.timer = this.opts.clock.setTimer(() => this.fire(), at - this.now());
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.now();
    this.device.tick(now);
    this.stack?.tick();
    this.relayDeadline = this.relays.tick(now);
    this.reschedule();
  }

  // ---- queries ----

  /** A peer by name or tailnet IP. */
  findPeer(target: string): PeerInfo | undefined {
    const parsed = tryParseIP(target);
    const ip = parsed ? formatIP(parsed) : undefined;
    for (const p of this.peers.values()) {
      if (p.info.name === target) return p.info;
      if (ip && p.info.addrs.some((a) => a.split('/')[0] === ip)) return p.info;
    }
    return undefined;
  }

  private describePath(path: Path): string {
    return pathName(path.kind === 'relay' ? { kind: 'relay', region: path.region || this.relays.home } : path, (id) => this.relays.region(id)?.code ?? String(id));
  }

  /**
   * Disco ping through the peer's current path (direct when proven, else the relay). Like any
   * traffic, it starts path discovery, so repeated pings show the upgrade to a direct path.
   */
  async ping(target: string, timeoutMs = 5000): Promise<PingResult> {
    const info = this.findPeer(target);
    if (!info) throw new EngineError('PEER_NOT_FOUND', `no peer "${target}" in the netmap`);
    const p = this.peers.get(NodePublic.parse(info.nodeKey).toString())!;
    this.direct?.noteSend(p, this.now());
    const via = (): Via => {
      const path = p.paths.current(this.now());
      return path.kind === 'relay' ? { kind: 'relay', region: path.region || this.relays.home } : path;
    };
    return this.disco.pingUntilAnswered(p, via, (v) => this.describePath(v), timeoutMs);
  }

  status(): EngineStatus {
    const v = this.control.view;
    const now = this.now();
    const code = (id: number) => this.relays.region(id)?.code ?? String(id);
    const self = v.self;
    const st: EngineStatus = {
      state: this.control.state,
      controlConnected: this.control.connected,
      homeRelay: this.relays.home,
      relays: this.relays.status(),
      peers: [...this.peers.values()].map((p) => {
        const wg: Peer<PeerEndpoint> | undefined = this.device.peer(p.node);
        const path = p.paths.current(now);
        const direct = p.paths.isDirect(now);
        return {
          id: p.info.id,
          name: p.info.name,
          addrs: p.info.addrs,
          ...(p.info.user !== undefined ? { user: p.info.user } : {}),
          tags: p.info.tags,
          online: p.info.online,
          lastSeen: p.info.lastSeen,
          path: this.describePath(path),
          direct,
          directRttMs: direct ? (p.paths.best?.rttMs ?? null) : null,
          candidates: p.paths.list().map((c) => formatAddr(c.path.ip, c.path.port)),
          relayRegion: p.info.homeRelay,
          rxBytes: wg?.stats.rxBytes ?? 0,
          txBytes: wg?.stats.txBytes ?? 0,
          lastHandshake: wg && wg.stats.lastHandshake > 0 ? wg.stats.lastHandshake : null,
        };
      }),
      dropped: { ...this.filter.dropped },
    };
    if (this.control.loginUrl) st.loginUrl = this.control.loginUrl;
    if (this.direct) st.direct = this.direct.status();
    if (self) st.self = { id: self.id, name: self.name, addrs: self.addrs, ...(self.user !== undefined ? { user: self.user } : {}), tags: self.tags, keyExpiry: self.keyExpiry };
    return st;
  }

  async logout(): Promise<void> {
    await this.control.logout();
    this.stop();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== undefined) this.opts.clock.clearTimer(this.timer);
    if (this.directRetry !== undefined) this.opts.clock.clearTimer(this.directRetry);
    this.control.stop();
    this.relays.close();
    this.direct?.stop();
    this.disco.close();
    this.stack?.close();
  }
}
