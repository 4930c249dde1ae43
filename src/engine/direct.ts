/**
 * Direct UDP paths (Tailscale's magicsock, in small pieces): the node's UDP socket, its
 * endpoints, and path discovery per peer.
 *
 *   socket ─┬─ STUN reply   → our reflexive address (endpoints, NAT kind)
 *           ├─ disco        → DiscoAgent (pings answered on the path they came by)
 *           └─ WireGuard    → the peer that proved this ip:port with disco, else dropped
 *
 *   endpoints   local interface addresses, STUN (every relay's STUN server, re-run every
 *               20–26 s), the port mapping, and `--endpoint`s; reported to control, which
 *               hands them to peers; the NAT is "hard" when two STUN servers at different IPs
 *               see different mappings of the one socket
 *   discovery   any send without a trusted direct path pings every candidate (each at most
 *               every 5 s) and sends CallMeMaybe over the relay so both sides punch at once;
 *               a hard NAT without a port mapping also starts birthday probing (birthday.ts)
 *   heartbeat   every 3 s of an active session the best path is pinged; the trust of 6.5 s
 *               it earns keeps traffic on it; an unanswered path falls back to the relay
 */
import { PierceError } from '../errors.ts';
import type { RelayMap } from '../control/messages.ts';
import type { DiscoEndpoint, DiscoPunch } from '../disco/message.ts';
import { parseStun, readReflexiveAddress, buildBindingRequest, looksLikeStun } from '../stun/message.ts';
import { formatIP } from '../netstack/addr.ts';
import { toHex } from '../crypto/bytes.ts';
import { HEARTBEAT_MS, PING_TIMEOUT_MS, formatAddr, parseAddr, type Candidate, type PeerPaths, type UdpPath } from '../paths/paths.ts';
import type { DiscoAgent, DiscoPeer } from './disco.ts';
import { Birthday } from './birthday.ts';
import type { EngineOptions, EngineStatus, PortMapping, UdpSocket, UdpTransport } from './types.ts';

export interface DirectPeer extends DiscoPeer {
  paths: PeerPaths;
}

export interface DirectHooks<P extends DirectPeer> {
  disco: DiscoAgent<P>;
  peers(): Iterable<P>;
  relayMap(): RelayMap;
  homeRelay(): number;
  /** Our endpoints changed: tell control. */
  report(endpoints: string[]): void;
  /** A WireGuard datagram arrived over UDP from a proven address of `peer`. */
  receive(peer: P, data: Uint8Array): void;
}

const STUN_WAIT_MS = 1_000;
const RESTUN_MIN_MS = 20_000;
const RESTUN_JITTER_MS = 6_000;
const TICK_MS = 1_000;
const CMM_INTERVAL_MS = 5_000;

const key = (ip: string, port: number): string => `${ip}|${port}`;

export class DirectPaths<P extends DirectPeer> {
  private readonly sockets = new Map<number, UdpSocket>();
  private nextSock = 1;
  /** Proven addresses (a disco ping or pong came from there) → peer, for WireGuard demux. */
  private readonly byAddr = new Map<string, P>();
  private readonly stunPending = new Map<string, string>();
  private readonly cmmRetrying = new WeakSet<P>();
  private stunSeen = new Map<string, string>();
  private timers: unknown[] = [];
  private stopped = false;
  endpoints: string[] = [];
  hardNat: boolean | null = null;
  publicV4: string | null = null;
  mapping: PortMapping | null = null;
  private portMap: { close(): void } | undefined;
  readonly birthday: Birthday<P>;
  readonly stats = { unknownSource: 0, udpIn: 0, udpOut: 0 };

  constructor(
    private readonly opts: EngineOptions,
    private readonly udp: UdpTransport,
    private readonly hooks: DirectHooks<P>,
  ) {
    this.birthday = new Birthday<P>(opts, {
      disco: hooks.disco,
      bind: (onPacket) => this.bindExtra(onPacket),
      closeSock: (id) => this.closeSock(id),
      relay: (peer) => this.relayVia(peer),
      probeSucceeded: (peer, path, rtt) => this.confirm(peer, path, rtt, 'birthday'),
    });
  }

  get port(): number {
    return this.sockets.get(0)?.port ?? 0;
  }

  private log(level: 'debug' | 'info' | 'warn', m: string): void {
    this.opts.log?.(level, m);
  }

  async start(): Promise<void> {
    const want = this.opts.direct?.port ?? 0;
    let sock: UdpSocket;
    try {
      sock = await this.udp.bind(want, (d, ip, port) => this.onPacket(0, d, ip, port));
    } catch (e) {
      if (want === 0) throw e;
      this.log('warn', `direct: UDP port ${want} is taken (${(e as Error).message}); using any free port`);
      sock = await this.udp.bind(0, (d, ip, port) => this.onPacket(0, d, ip, port));
    }
    if (this.stopped) return sock.close();
    this.sockets.set(0, sock);
    this.log('info', `direct: UDP port ${sock.port}`);
    this.portMap = this.udp.portMap?.(sock.port, (m) => {
      this.mapping = m;
      this.log('info', m ? `direct: port mapping ${formatAddr(m.ip, m.port)} (${m.protocol})` : 'direct: no port mapping');
      this.updateEndpoints();
    });
    this.updateEndpoints();
    this.restun();
    const tick = (): void => {
      if (this.stopped) return;
      this.tick(this.opts.clock.now());
      this.timers[0] = this.opts.clock.setTimer(tick, TICK_MS);
    };
    this.timers[0] = this.opts.clock.setTimer(tick, TICK_MS);
  }

  // ---- sockets ----

  private async bindExtra(onPacket: (sock: number, d: Uint8Array, ip: string, port: number) => void): Promise<number> {
    const id = this.nextSock++;
    const s = await this.udp.bind(0, (d, ip, port) => {
      this.onPacket(id, d, ip, port);
      onPacket(id, d, ip, port);
    });
    if (this.stopped) {
      s.close();
      throw new PierceError('ENGINE_STOPPED', 'the engine stopped');
    }
    this.sockets.set(id, s);
    return id;
  }

  private closeSock(id: number): void {
    if (id === 0) return;
    this.sockets.get(id)?.close();
    this.sockets.delete(id);
  }

  send(path: UdpPath, data: Uint8Array): void {
    const s = this.sockets.get(path.sock);
    if (!s) return;
    this.stats.udpOut++;
    try {
      s.send(path.ip, path.port, data);
    } catch (e) {
      this.log('debug', `direct: send to ${formatAddr(path.ip, path.port)}: ${(e as Error).message}`);
    }
  }

  private onPacket(sock: number, data: Uint8Array, ip: string, port: number): void {
    this.stats.udpIn++;
    if (sock === 0 && looksLikeStun(data)) return this.onStun(data, ip, port);
    if (this.hooks.disco.isDisco(data)) {
      this.hooks.disco.onPacket(data, { udp: { kind: 'udp', ip, port, sock } });
      return;
    }
    const peer = this.byAddr.get(key(ip, port));
    if (!peer) {
      this.stats.unknownSource++;
      return;
    }
    peer.paths.lastActive = this.opts.clock.now();
    this.hooks.receive(peer, data);
  }

  // ---- endpoints ----

  /** STUN servers of the relay map (IP literals only: the engine does no DNS). */
  private stunServers(): { ip: string; port: number }[] {
    const out: { ip: string; port: number }[] = [];
    for (const r of this.hooks.relayMap().regions) {
      for (const n of r.nodes) {
        const a = n.stun ? parseAddr(n.stun) : undefined;
        if (a && !out.some((o) => o.ip === a.ip && o.port === a.port)) out.push(a);
      }
    }
    return out;
  }

  private stunKey = '';

  /** The relay map changed: STUN again at once if its STUN servers did. */
  relaysChanged(): void {
    const k = this.stunServers()
      .map((s) => formatAddr(s.ip, s.port))
      .join();
    if (k === this.stunKey) return;
    this.stunKey = k;
    for (const t of this.timers.slice(1)) this.opts.clock.clearTimer(t);
    this.restun();
  }

  /** Sends a STUN round to every server (with two retransmissions), then reads the answers. */
  restun(): void {
    const sock = this.sockets.get(0);
    if (!sock || this.stopped) return;
    const servers = this.stunServers();
    this.stunPending.clear();
    this.stunSeen = new Map();
    const reqs = servers.map((s) => {
      const txid = this.opts.random(12);
      this.stunPending.set(toHex(txid), formatAddr(s.ip, s.port));
      return { s, packet: buildBindingRequest(txid) };
    });
    const sendAll = (): void => {
      for (const { s, packet } of reqs) if (this.stunPending.has(toHex(packet.subarray(8, 20)))) this.send({ kind: 'udp', ip: s.ip, port: s.port, sock: 0 }, packet);
    };
    sendAll();
    this.timers[1] = this.opts.clock.setTimer(sendAll, 100);
    this.timers[2] = this.opts.clock.setTimer(sendAll, 300);
    this.timers[3] = this.opts.clock.setTimer(() => this.stunDone(), servers.length ? STUN_WAIT_MS : 0);
    this.timers[4] = this.opts.clock.setTimer(() => this.restun(), RESTUN_MIN_MS + Math.random() * RESTUN_JITTER_MS);
  }

  private onStun(data: Uint8Array, _ip: string, _port: number): void {
    let msg;
    try {
      msg = parseStun(data);
    } catch {
      return;
    }
    const server = this.stunPending.get(toHex(msg.transactionId));
    if (!server || msg.class !== 'success') return;
    this.stunPending.delete(toHex(msg.transactionId));
    const a = readReflexiveAddress(msg);
    if (!a) return;
    this.stunSeen.set(server, formatAddr(formatIP(a.address), a.port));
    if (this.stunPending.size === 0) this.stunDone();
  }

  private stunDone(): void {
    this.opts.clock.clearTimer(this.timers[3]);
    const seen = [...this.stunSeen.entries()];
    const v4 = seen.filter(([, m]) => !m.startsWith('['));
    const serverIps = new Set(v4.map(([s]) => s.split(':')[0]));
    if (serverIps.size >= 2) this.hardNat = new Set(v4.map(([, m]) => m)).size > 1;
    this.publicV4 = v4[0] ? v4[0][1].split(':')[0]! : this.publicV4;
    this.updateEndpoints();
  }

  private updateEndpoints(): void {
    const port = this.port;
    if (!port) return;
    const eps: string[] = [];
    const add = (s: string): void => {
      if (!eps.includes(s)) eps.push(s);
    };
    if (this.mapping) add(formatAddr(this.mapping.ip, this.mapping.port));
    for (const m of this.stunSeen.values()) add(m);
    for (const e of this.opts.direct?.endpoints ?? []) add(e);
    for (const ip of this.udp.localAddresses()) add(formatAddr(ip, port));
    if (eps.join() === this.endpoints.join()) return;
    this.endpoints = eps;
    this.log('info', `direct: endpoints ${eps.join(' ') || '(none)'}${this.hardNat ? ' (hard NAT)' : ''}`);
    this.hooks.report(eps);
  }

  private ourEndpoints(): DiscoEndpoint[] {
    return this.endpoints.map(parseAddr).filter((e): e is DiscoEndpoint => !!e);
  }

  /** Birthday probing helps when our NAT maps per destination and no port mapping gets around it. */
  get canBirthday(): boolean {
    return this.hardNat === true && !this.mapping && !!this.publicV4;
  }

  // ---- peers ----

  /** The netmap changed a peer's endpoints. */
  setPeerEndpoints(peer: P, endpoints: string[]): void {
    const parsed = endpoints.map(parseAddr).filter((e): e is DiscoEndpoint => !!e);
    peer.paths.setNetmapEndpoints(parsed, this.opts.clock.now());
  }

  forgetPeer(peer: P): void {
    for (const [k, p] of this.byAddr) if (p === peer) this.byAddr.delete(k);
    this.birthday.stop(peer);
  }

  /** Data is about to go to `peer`: keep the session active and discover when not direct. */
  noteSend(peer: P, now: number): void {
    peer.paths.lastActive = now;
    // Throttled: this runs for every datagram while the peer is reached over the relay.
    if (!peer.paths.isDirect(now) && now - peer.paths.lastFullPing >= TICK_MS) this.discover(peer, now);
  }

  /** Pings every due candidate and asks the peer (over the relay) to ping us back. */
  discover(peer: P, now: number): void {
    if (this.stopped || !this.port) return;
    peer.paths.lastFullPing = now;
    for (const c of peer.paths.duePings(now)) this.pingCandidate(peer, c, now);
    if (now - peer.paths.lastCallMeMaybe >= CMM_INTERVAL_MS) {
      if (!this.cmmRetrying.has(peer)) this.sendCallMeMaybe(peer, 0);
      if (this.canBirthday) this.birthday.startHard(peer, this.publicV4!, this.targetsFor(peer), now);
    }
  }

  /**
   * CallMeMaybe through the peer's home relay. When the link there is still opening, it is
   * retried every 100 ms for 2 s (then discovery's next round tries again).
   */
  private sendCallMeMaybe(peer: P, attempt: number): void {
    if (this.stopped) return;
    this.cmmRetrying.delete(peer);
    if (this.hooks.disco.send(peer, this.relayVia(peer), { type: 'call-me-maybe', endpoints: this.ourEndpoints() })) {
      peer.paths.lastCallMeMaybe = this.opts.clock.now();
    } else if (attempt < 20) {
      this.cmmRetrying.add(peer);
      this.opts.clock.setTimer(() => this.sendCallMeMaybe(peer, attempt + 1), 100);
    }
  }

  private relayVia(peer: P): { kind: 'relay'; region: number } {
    return { kind: 'relay', region: peer.paths.relayRegion || this.hooks.homeRelay() };
  }

  /** The peer's public IPv4 candidates on the main socket: what birthday sockets aim at. */
  private targetsFor(peer: P): DiscoEndpoint[] {
    return peer.paths
      .list()
      .filter((c) => c.path.sock === 0 && !c.path.ip.includes(':') && !/^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|127\.)/.test(c.path.ip))
      .slice(0, 4)
      .map((c) => ({ ip: c.path.ip, port: c.path.port }));
  }

  private pingCandidate(peer: P, c: Candidate, now: number): void {
    c.lastPing = now;
    this.hooks.disco.ping(peer, c.path, PING_TIMEOUT_MS, {
      pong: (rtt) => this.confirm(peer, c.path, rtt, c.source),
      timeout: () => peer.paths.timedOut(c, this.opts.clock.now()),
    });
  }

  private confirm(peer: P, path: UdpPath, rtt: number, source: Candidate['source']): void {
    const now = this.opts.clock.now();
    const { c } = peer.paths.add(path.ip, path.port, source, now, path.sock);
    this.byAddr.set(key(path.ip, path.port), peer);
    if (peer.paths.confirm(c, rtt, now)) {
      this.log('info', `direct: ${peer.info.name} via ${formatAddr(path.ip, path.port)}${path.sock ? ` (socket ${path.sock})` : ''} in ${rtt.toFixed(1)} ms`);
      this.birthday.succeeded(peer, path);
    }
  }

  /** Disco hooks (DiscoIo). */
  pinged(peer: P, path: UdpPath): void {
    const now = this.opts.clock.now();
    this.byAddr.set(key(path.ip, path.port), peer);
    const { c, isNew } = peer.paths.add(path.ip, path.port, 'learned', now, path.sock);
    // Ping back at once unless we already trust the path: our side trusts it only after a pong
    // of its own, and our earlier ping may have been dropped by the peer's NAT (the peer's ping
    // has just opened it). The peer's pings are rate-limited, so these are too.
    if (isNew || c.trustedUntil <= now || now - c.lastPing >= HEARTBEAT_MS) this.pingCandidate(peer, c, now);
  }

  callMeMaybe(peer: P, endpoints: DiscoEndpoint[]): void {
    const now = this.opts.clock.now();
    for (const e of endpoints.slice(0, 32)) peer.paths.add(e.ip, e.port, 'call-me-maybe', now).c.lastPing = -Infinity;
    peer.paths.lastActive = now;
    for (const c of peer.paths.duePings(now)) this.pingCandidate(peer, c, now);
    if (this.canBirthday && !peer.paths.isDirect(now)) this.birthday.startHard(peer, this.publicV4!, this.targetsFor(peer), now);
  }

  punch(peer: P, m: DiscoPunch): void {
    const now = this.opts.clock.now();
    if (peer.paths.isDirect(now) || !this.port) return;
    // Only ever probe the peer's own public IP (one of its endpoints): a peer must not be able
    // to aim our probes at a third party.
    if (!peer.paths.list().some((c) => c.path.ip === m.ip && c.source !== 'learned')) {
      this.log('info', `direct: ignored a punch from ${peer.info.name} for ${m.ip}, which is not one of its endpoints`);
      return;
    }
    if (this.hardNat === true && !this.mapping) {
      if (!this.opts.direct?.birthdayHardHard || !m.sprays) {
        this.log('info', `direct: ${peer.info.name} and this node are both behind hard NATs; staying on the relay (--birthday-hard-hard to try)`);
        return;
      }
      if (this.publicV4) this.birthday.startHard(peer, this.publicV4, this.targetsFor(peer), now);
    }
    // With a port mapping the peer's sockets reach us as they are; nothing to spray.
    if (this.mapping) return;
    this.birthday.spray(peer, m.ip, m.durationS, now);
  }

  // ---- timers ----

  private tick(now: number): void {
    for (const peer of this.hooks.peers()) {
      const p = peer.paths;
      for (const gone of p.expire(now)) if (this.byAddr.get(key(gone.ip, gone.port)) === peer) this.byAddr.delete(key(gone.ip, gone.port));
      if (!p.active(now)) continue;
      const b = p.best;
      if (b && now - b.lastPing >= HEARTBEAT_MS) this.pingCandidate(peer, b, now);
      if (p.wantsFullPing(now)) this.discover(peer, now);
    }
    this.birthday.tick(now);
  }

  status(): NonNullable<EngineStatus['direct']> {
    return {
      port: this.port,
      endpoints: this.endpoints,
      hardNat: this.hardNat,
      portMapping: this.mapping ? `${formatAddr(this.mapping.ip, this.mapping.port)} (${this.mapping.protocol})` : null,
      birthday: { ...this.birthday.stats },
    };
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) this.opts.clock.clearTimer(t);
    this.birthday.close();
    this.portMap?.close();
    for (const s of this.sockets.values()) s.close();
    this.sockets.clear();
  }
}
