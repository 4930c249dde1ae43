/**
 * The paths to one peer (Tailscale's magicsock endpoint, split small and kept pure: no I/O, the
 * caller passes `now`). A peer always has its home relay; direct UDP candidates come from the
 * netmap, CallMeMaybe, pings that arrived from new addresses and birthday probing, and win once
 * a disco pong proves them.
 *
 *   sendTargets(now)   trusted best UDP path        → UDP only
 *                      best path, trust expired     → UDP and relay (nothing is lost meanwhile)
 *                      no best path                 → relay only
 *
 * A pong makes its candidate trusted for TRUST_MS (6.5 s); the heartbeat pings the best path
 * every HEARTBEAT_MS (3 s) while the peer is active, so a working path stays trusted and a dead
 * one falls back to the relay within seconds. A ping that times out on an untrusted best path
 * drops it. Switching between direct paths needs a clear gain (`betterPath`), so paths don't flap.
 */

import { hostPort } from '../netstack/addr.ts';

export type UdpPath = { kind: 'udp'; ip: string; port: number; /** local socket (0: the main one) */ sock: number };
export type Path = { kind: 'relay'; region: number } | UdpPath;

/** Tailscale's timing (facts §4). */
export const TRUST_MS = 6_500;
export const HEARTBEAT_MS = 3_000;
export const PING_INTERVAL_MS = 5_000;
export const PING_TIMEOUT_MS = 5_000;
export const UPGRADE_INTERVAL_MS = 60_000;
export const GOOD_ENOUGH_MS = 5;
export const SESSION_ACTIVE_MS = 45_000;
/** Candidates learned from pings or CallMeMaybe are forgotten this long after last heard. */
export const LEARNED_TTL_MS = 45_000;

/** "1.2.3.4:5" or "[v6]:5". */
export const formatAddr = (ip: string, port: number): string => hostPort(ip, port);

export function pathName(p: Path | undefined, regionCode: (id: number) => string): string {
  if (!p) return 'none';
  return p.kind === 'relay' ? `relay(${regionCode(p.region)})` : formatAddr(p.ip, p.port);
}

/** Parses "1.2.3.4:5" / "[v6]:5"; undefined when malformed. */
export function parseAddr(s: string): { ip: string; port: number } | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s) ?? /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port > 0 && port <= 0xffff ? { ip: m[1]!.toLowerCase(), port } : undefined;
}

export type CandidateSource = 'netmap' | 'call-me-maybe' | 'learned' | 'birthday';

export interface Candidate {
  readonly path: UdpPath;
  source: CandidateSource;
  /** Last measured round trip (ms), null before the first pong. */
  rttMs: number | null;
  trustedUntil: number;
  lastPing: number;
  /** When a learned candidate was last heard from (pings, pongs). */
  lastHeard: number;
}

/** Bonus points (Tailscale's betterAddr): loopback 50, link-local 30, private 20, IPv6 10. */
export function addrPoints(ip: string): number {
  if (ip === '::1' || ip.startsWith('127.')) return 50;
  if (/^fe[89ab]/i.test(ip) || ip.startsWith('169.254.')) return 30;
  if (/^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(ip) || /^f[cd]/i.test(ip)) return 20;
  return ip.includes(':') ? 10 : 0;
}

/**
 * Is `a` clearly better than `b`? Latency decides, in percent, with the address bonuses added;
 * equal-ish paths keep the current one (hysteresis: a needs more than 1 point of advantage).
 */
export function betterPath(a: Candidate, b: Candidate): boolean {
  if (a === b) return false;
  const ra = a.rttMs ?? Infinity;
  const rb = b.rttMs ?? Infinity;
  if (rb === Infinity) return ra < Infinity;
  if (ra === Infinity) return false;
  let aPoints = addrPoints(a.path.ip);
  let bPoints = addrPoints(b.path.ip);
  if (ra < rb) aPoints += Math.min(100, ((rb - ra) / rb) * 100);
  else if (rb < ra) bPoints += Math.min(100, ((ra - rb) / ra) * 100);
  return aPoints > bPoints + 1;
}

/** A candidate is a remote ip:port reached from one local socket (birthday sockets differ). */
const key = (ip: string, port: number, sock = 0): string => `${ip}|${port}|${sock}`;

export class PeerPaths {
  /** The peer's home relay region (0: unknown, then our own home relay is tried). */
  relayRegion = 0;
  private readonly candidates = new Map<string, Candidate>();
  best: Candidate | null = null;
  /** Last time data was sent to / received from the peer (the session is active for 45 s). */
  lastActive = -Infinity;
  lastFullPing = -Infinity;
  lastCallMeMaybe = -Infinity;

  get size(): number {
    return this.candidates.size;
  }

  list(): Candidate[] {
    return [...this.candidates.values()];
  }

  get(ip: string, port: number, sock = 0): Candidate | undefined {
    return this.candidates.get(key(ip, port, sock));
  }

  /** Adds (or refreshes) a candidate; returns it and whether it is new. */
  add(ip: string, port: number, source: CandidateSource, now: number, sock = 0): { c: Candidate; isNew: boolean } {
    const k = key(ip, port, sock);
    const old = this.candidates.get(k);
    if (old) {
      old.lastHeard = Math.max(old.lastHeard, now);
      // A netmap endpoint outranks a learned one (it never expires on its own).
      if (source === 'netmap') old.source = 'netmap';
      return { c: old, isNew: false };
    }
    const c: Candidate = { path: { kind: 'udp', ip, port, sock }, source, rttMs: null, trustedUntil: 0, lastPing: -Infinity, lastHeard: now };
    this.candidates.set(k, c);
    return { c, isNew: true };
  }

  /** Replaces the netmap's endpoints; other sources stay. */
  setNetmapEndpoints(endpoints: { ip: string; port: number }[], now: number): void {
    const keep = new Set(endpoints.map((e) => key(e.ip, e.port)));
    for (const [k, c] of this.candidates) {
      if (c.source === 'netmap' && !keep.has(k)) {
        c.source = 'learned';
        c.lastHeard = Math.min(c.lastHeard, now);
      }
    }
    for (const e of endpoints) this.add(e.ip, e.port, 'netmap', now);
  }

  /** Forgets learned candidates not heard from for LEARNED_TTL_MS (never the best path). */
  expire(now: number): UdpPath[] {
    const gone: UdpPath[] = [];
    for (const [k, c] of this.candidates) {
      if (c.source === 'netmap' || c === this.best) continue;
      if (now - c.lastHeard > LEARNED_TTL_MS) {
        this.candidates.delete(k);
        gone.push(c.path);
      }
    }
    return gone;
  }

  /** A pong proved `c`: trust it and make it the best path when it is better (or best is stale). */
  confirm(c: Candidate, rttMs: number, now: number): boolean {
    c.rttMs = c.rttMs === null ? rttMs : c.rttMs * 0.5 + rttMs * 0.5;
    c.lastHeard = now;
    const switched = !this.best || this.best.trustedUntil <= now || betterPath(c, this.best);
    if (switched) this.best = c;
    if (this.best === c) c.trustedUntil = now + TRUST_MS;
    return switched && this.best === c;
  }

  /** A ping to `c` got no pong: an untrusted best path is dropped (sends fall back to the relay). */
  timedOut(c: Candidate, now: number): void {
    if (this.best === c && c.trustedUntil <= now) this.best = null;
  }

  /** Where to send now (see the file comment). */
  sendTargets(now: number): { udp: UdpPath | null; relay: boolean } {
    const b = this.best;
    if (!b) return { udp: null, relay: true };
    return { udp: b.path, relay: b.trustedUntil <= now };
  }

  /** The path traffic takes: the trusted direct path, else the relay. */
  current(now: number): Path {
    const b = this.best;
    return b && b.trustedUntil > now ? b.path : { kind: 'relay', region: this.relayRegion };
  }

  isDirect(now: number): boolean {
    return !!this.best && this.best.trustedUntil > now;
  }

  /** Does the session need a full round of pings (no trusted path, or a slow one for a minute)? */
  wantsFullPing(now: number): boolean {
    const b = this.best;
    if (!b || b.trustedUntil <= now) return true;
    return (b.rttMs ?? Infinity) > GOOD_ENOUGH_MS && now - this.lastFullPing >= UPGRADE_INTERVAL_MS;
  }

  /** Candidates due for a ping (not pinged in the last PING_INTERVAL_MS). */
  duePings(now: number): Candidate[] {
    return this.list().filter((c) => now - c.lastPing >= PING_INTERVAL_MS);
  }

  active(now: number): boolean {
    return now - this.lastActive < SESSION_ACTIVE_MS;
  }
}
