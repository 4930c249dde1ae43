/**
 * The paths to one peer (Tailscale's magicsock endpoint, split small). Today a peer has one
 * path, its home relay; direct UDP candidates join the set later and win once a disco pong
 * proves them. Sending always asks `best()`, so callers never hard-code the relay.
 */

export type Path = { kind: 'relay'; region: number } | { kind: 'udp'; ip: string; port: number };

export function pathName(p: Path | undefined, regionCode: (id: number) => string): string {
  if (!p) return 'none';
  return p.kind === 'relay' ? `relay(${regionCode(p.region)})` : p.ip.includes(':') ? `[${p.ip}]:${p.port}` : `${p.ip}:${p.port}`;
}

interface Candidate {
  path: Path & { kind: 'udp' };
  /** Last measured round trip (ms) and until when the path is trusted. */
  rttMs: number | null;
  trustedUntil: number;
}

export class PeerPaths {
  /** The peer's home relay region (0: unknown, then our own home relay is tried). */
  relayRegion = 0;
  private readonly candidates = new Map<string, Candidate>();
  /** Round trip over the relay, as last measured by a disco ping. */
  relayRttMs: number | null = null;

  /** Replaces the UDP candidates (endpoints from control, CallMeMaybe, pings). */
  setCandidates(endpoints: { ip: string; port: number }[]): void {
    const keep = new Set<string>();
    for (const e of endpoints) {
      const k = `${e.ip}|${e.port}`;
      keep.add(k);
      if (!this.candidates.has(k)) this.candidates.set(k, { path: { kind: 'udp', ip: e.ip, port: e.port }, rttMs: null, trustedUntil: 0 });
    }
    for (const k of this.candidates.keys()) if (!keep.has(k)) this.candidates.delete(k);
  }

  /** A pong proved a UDP path: trust it for `trustMs`. */
  confirmUdp(ip: string, port: number, rttMs: number, now: number, trustMs: number): void {
    const c = this.candidates.get(`${ip}|${port}`);
    if (!c) return;
    c.rttMs = rttMs;
    c.trustedUntil = now + trustMs;
  }

  /** The path to send on: the fastest trusted UDP path, else the relay. */
  best(now: number): Path {
    let best: Candidate | undefined;
    for (const c of this.candidates.values()) {
      if (c.trustedUntil <= now) continue;
      if (!best || (c.rttMs ?? Infinity) < (best.rttMs ?? Infinity)) best = c;
    }
    return best ? best.path : { kind: 'relay', region: this.relayRegion };
  }
}
