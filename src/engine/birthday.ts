/**
 * Birthday-paradox probing, for a peer behind a NAT that maps every destination to a new
 * random port ("hard", endpoint-dependent mapping), where ordinary hole punching fails.
 *
 *   hard side  opens N sockets (default 256) and pings the easy side's public endpoints from
 *              each: N mappings open on its NAT, at N unknown ports of its public IP; it tells
 *              the peer (disco Punch over the relay) its public IP
 *   easy side  pings random ports of that IP, without repeats, at a bounded rate (default 100
 *              per second), and stops at the first pong: a probe that hits one of the N ports
 *              passes the hard NAT (that mapping was opened toward us) and the pong comes back
 *
 * With N = 256 of 64,512 ports, a probe hits with p = 1/252: 174 probes succeed with 50%,
 * 256 with 64%, 1,024 with 98%, 2,048 with 99.9% (1 − (1 − p)^k). The winning socket is kept
 * for the path; the others close. When both sides are hard, each new destination gets a new
 * port on both NATs, so the method only runs on an explicit opt-in, bounded in time.
 */
import type { DiscoEndpoint, DiscoPunch } from '../disco/message.ts';
import { PING_TIMEOUT_MS, type UdpPath } from '../paths/paths.ts';
import type { DiscoAgent } from './disco.ts';
import type { DirectPeer } from './direct.ts';
import type { EngineOptions } from './types.ts';

export const BIRTHDAY_SOCKETS = 256;
export const BIRTHDAY_RATE = 100;
export const BIRTHDAY_SECONDS = 30;
/** A failed attempt is not repeated for the same peer sooner than this. */
export const BIRTHDAY_RETRY_MS = 60_000;
const PORT_MIN = 1024;
const PORT_MAX = 65535;
const HARD_REPING_MS = 5_000;
const SPRAY_STEP_MS = 10;

/** Probability that k probes find one of n open ports among `range`. */
export function birthdaySuccess(k: number, n = BIRTHDAY_SOCKETS, range = PORT_MAX - PORT_MIN + 1): number {
  return 1 - Math.pow(1 - n / range, k);
}

export interface BirthdayHooks<P extends DirectPeer> {
  disco: DiscoAgent<P>;
  /** Binds an extra socket; resolves with its id. */
  bind(onPacket: (sock: number, d: Uint8Array, ip: string, port: number) => void): Promise<number>;
  closeSock(id: number): void;
  /** The relay path to `peer` (for the Punch message). */
  relay(peer: P): { kind: 'relay'; region: number };
  /** A probe's pong proved `path` (round trip in ms). */
  probeSucceeded(peer: P, path: UdpPath, rttMs: number): void;
}

interface HardSession {
  sockets: number[];
  targets: DiscoEndpoint[];
  until: number;
  lastPing: number;
  done: boolean;
  punch: DiscoPunch | undefined;
  punchSent: boolean;
}

interface Spray {
  ip: string;
  tried: Set<number>;
  budget: number;
  start: number;
  sent: number;
  timer: unknown;
}

export class Birthday<P extends DirectPeer> {
  readonly stats = { attempts: 0, successes: 0, probesSent: 0 };
  private readonly hard = new Map<P, HardSession>();
  private readonly sprays = new Map<P, Spray>();
  private readonly lastAttempt = new Map<P, number>();
  private readonly lastSpray = new Map<P, number>();
  /** The socket a successful hard session kept, per peer. */
  private readonly kept = new Map<P, number>();

  constructor(
    private readonly opts: EngineOptions,
    private readonly hooks: BirthdayHooks<P>,
  ) {}

  private get rate(): number {
    return this.opts.direct?.birthdayRate ?? BIRTHDAY_RATE;
  }

  private log(m: string): void {
    this.opts.log?.('info', `birthday: ${m}`);
  }

  /** Hard side: opens the sockets, pings `targets` from each, and asks the peer to spray. */
  startHard(peer: P, publicIp: string, targets: DiscoEndpoint[], now: number): void {
    if (this.hard.has(peer) || targets.length === 0) return;
    if (now - (this.lastAttempt.get(peer) ?? -Infinity) < BIRTHDAY_RETRY_MS) return;
    this.lastAttempt.set(peer, now);
    this.stats.attempts++;
    const n = this.opts.direct?.birthdaySockets ?? BIRTHDAY_SOCKETS;
    const seconds = this.opts.direct?.birthdaySeconds ?? BIRTHDAY_SECONDS;
    const s: HardSession = { sockets: [], targets, until: now + seconds * 1000, lastPing: now, done: false, punch: undefined, punchSent: false };
    this.hard.set(peer, s);
    this.log(`${peer.info.name}: our NAT maps per destination; opening ${n} sockets toward ${targets.map((t) => `${t.ip}:${t.port}`).join(' ')}`);
    s.punch = { type: 'punch', ip: publicIp, sockets: n, durationS: seconds, sprays: !!this.opts.direct?.birthdayHardHard };
    // Re-sent each second until the relay takes it (the link to the peer's region may still be
    // opening), then with every re-ping.
    s.punchSent = this.hooks.disco.send(peer, this.hooks.relay(peer), s.punch);
    void (async () => {
      for (let i = 0; i < n && !s.done; i++) {
        let id: number;
        try {
          id = await this.hooks.bind(() => {});
        } catch {
          break;
        }
        if (s.done) {
          this.hooks.closeSock(id);
          break;
        }
        s.sockets.push(id);
        this.pingFrom(peer, s, id);
      }
    })();
  }

  private pingFrom(peer: P, s: HardSession, sock: number): void {
    for (const t of s.targets) {
      const path: UdpPath = { kind: 'udp', ip: t.ip, port: t.port, sock };
      this.hooks.disco.ping(peer, path, PING_TIMEOUT_MS, { pong: (rtt) => this.hooks.probeSucceeded(peer, path, rtt), timeout: () => {} });
    }
  }

  /** Easy side: probes random ports of `ip` at the configured rate for at most `durationS`. */
  spray(peer: P, ip: string, durationS: number, now: number): void {
    // One spray at a time per peer, and not again within BIRTHDAY_RETRY_MS (the hard side
    // re-sends its Punch every few seconds while its sockets are open).
    if (this.sprays.has(peer) || now - (this.lastSpray.get(peer) ?? -Infinity) < BIRTHDAY_RETRY_MS) return;
    this.lastSpray.set(peer, now);
    const seconds = Math.min(Math.max(1, durationS), this.opts.direct?.birthdaySeconds ?? BIRTHDAY_SECONDS * 2);
    const budget = Math.min(Math.ceil(this.rate * seconds), PORT_MAX - PORT_MIN + 1);
    this.stats.attempts++;
    const sp: Spray = { ip, tried: new Set(), budget, start: now, sent: 0, timer: undefined };
    this.sprays.set(peer, sp);
    this.log(`${peer.info.name} is behind a hard NAT at ${ip}: probing up to ${budget} random ports at ${this.rate}/s`);
    const step = (): void => {
      if (this.sprays.get(peer) !== sp) return;
      const t = this.opts.clock.now();
      const due = Math.min(sp.budget, Math.floor(((t - sp.start) * this.rate) / 1000) + 1);
      while (sp.sent < due) this.probe(peer, sp);
      if (sp.sent >= sp.budget) {
        // Wait for the last pongs, then give up.
        sp.timer = this.opts.clock.setTimer(() => this.endSpray(peer, sp, 'no port answered'), PING_TIMEOUT_MS);
        return;
      }
      sp.timer = this.opts.clock.setTimer(step, SPRAY_STEP_MS);
    };
    step();
  }

  private probe(peer: P, sp: Spray): void {
    let port: number;
    do port = PORT_MIN + Math.floor(Math.random() * (PORT_MAX - PORT_MIN + 1));
    while (sp.tried.has(port));
    sp.tried.add(port);
    sp.sent++;
    this.stats.probesSent++;
    const path: UdpPath = { kind: 'udp', ip: sp.ip, port, sock: 0 };
    this.hooks.disco.ping(peer, path, PING_TIMEOUT_MS, { pong: (rtt) => this.hooks.probeSucceeded(peer, path, rtt), timeout: () => {} });
  }

  private endSpray(peer: P, sp: Spray, why: string): void {
    if (this.sprays.get(peer) !== sp) return;
    this.opts.clock.clearTimer(sp.timer);
    this.sprays.delete(peer);
    this.log(`${peer.info.name}: spray ended after ${sp.sent} probes (${why})`);
  }

  /** A direct path to `peer` was proven: stop probing; keep only the socket the path uses. */
  succeeded(peer: P, path: UdpPath): void {
    const sp = this.sprays.get(peer);
    const h = this.hard.get(peer);
    if (!sp && !h) return;
    // Counted only when probing made the path (not a plain hole punch that won meanwhile).
    if ((sp && path.sock === 0 && path.ip === sp.ip) || (h && path.sock !== 0 && h.sockets.includes(path.sock))) this.stats.successes++;
    if (sp) this.endSpray(peer, sp, `port ${path.port} answered`);
    if (h) {
      h.done = true;
      this.hard.delete(peer);
      const old = this.kept.get(peer);
      if (old !== undefined && old !== path.sock) this.hooks.closeSock(old);
      for (const id of h.sockets) if (id !== path.sock) this.hooks.closeSock(id);
      if (path.sock !== 0) this.kept.set(peer, path.sock);
      this.log(`${peer.info.name}: direct through socket ${path.sock} of ${h.sockets.length}`);
    }
  }

  tick(now: number): void {
    for (const [peer, h] of this.hard) {
      if (now >= h.until) {
        this.log(`${peer.info.name}: no probe got through in time; the relay stays`);
        this.closeHard(peer, h);
      } else if (!h.punchSent && h.punch) {
        h.punchSent = this.hooks.disco.send(peer, this.hooks.relay(peer), { ...h.punch, durationS: Math.max(1, Math.round((h.until - now) / 1000)) });
      } else if (now - h.lastPing >= HARD_REPING_MS) {
        // Keep the mappings open while the peer probes, and make sure it heard us.
        h.lastPing = now;
        if (h.punch) this.hooks.disco.send(peer, this.hooks.relay(peer), { ...h.punch, durationS: Math.max(1, Math.round((h.until - now) / 1000)) });
        for (const id of h.sockets) this.pingFrom(peer, h, id);
      }
    }
  }

  private closeHard(peer: P, h: HardSession): void {
    h.done = true;
    this.hard.delete(peer);
    // A socket the peer's path runs on stays open (the pong on our side may still be coming).
    const inUse = peer.paths.best?.path.sock ?? 0;
    for (const id of h.sockets) {
      if (id === inUse && id !== 0) this.kept.set(peer, id);
      else this.hooks.closeSock(id);
    }
  }

  stop(peer: P): void {
    const h = this.hard.get(peer);
    if (h) this.closeHard(peer, h);
    const sp = this.sprays.get(peer);
    if (sp) this.endSpray(peer, sp, 'peer left');
    const k = this.kept.get(peer);
    if (k !== undefined) this.hooks.closeSock(k);
    this.kept.delete(peer);
    this.lastAttempt.delete(peer);
    this.lastSpray.delete(peer);
  }

  close(): void {
    for (const peer of [...this.hard.keys(), ...this.sprays.keys(), ...this.kept.keys()]) this.stop(peer);
  }
}
