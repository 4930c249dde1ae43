/**
 * Relay connections: one to the home region, always; others opened when a peer homed there
 * needs a packet and closed after a minute unused (Tailscale's derpInactiveCleanupTime).
 *
 * The home region is the one with the lowest `/derp/probe` round trip (which a browser can time
 * too). Hysteresis as in Tailscale's netcheck: keep the current home while it answers unless
 * the best is both 10 ms and a third faster.
 */
import type { RelayMap, RelayRegion } from '../control/messages.ts';
import type { NodePrivate, NodePublic } from '../key/keys.ts';
import type { Clock, EngineTransports, LogFn, RelayConn } from './types.ts';

export const RELAY_IDLE_MS = 60_000;
/** Re-measure relay latency this often (ms). */
export const RELAY_PROBE_INTERVAL_MS = 5 * 60_000;
const SWITCH_MIN_GAIN_MS = 10;
/**
 * Packets for a region whose connection is still opening wait for it (as Tailscale's DERP
 * writers block until connected), at most this many and this long: without the wait, the first
 * WireGuard handshake of a node that just started is lost and retried only after REKEY_TIMEOUT
 * (5 s) — a page that opens an SSH session at once would stall for seconds.
 */
export const RELAY_PENDING_MAX = 64;
export const RELAY_PENDING_MS = 5_000;
const SWITCH_RATIO = 2 / 3;

interface Region {
  region: RelayRegion;
  conn: RelayConn | undefined;
  /** Sent while the connection was opening; flushed when it is up. */
  pending: { dst: NodePublic; packet: Uint8Array; at: number }[];
  lastUsed: number;
  latencyMs: number | null;
  connected: boolean;
}

/** Picks the home region from measured latencies, keeping `current` unless clearly beaten. */
export function chooseHome(latencies: Map<number, number | null>, current: number): number {
  let best = 0;
  let bestMs = Infinity;
  for (const [id, ms] of latencies) {
    if (ms !== null && ms < bestMs) {
      best = id;
      bestMs = ms;
    }
  }
  if (best === 0) return current;
  const cur = latencies.get(current);
  if (current !== 0 && cur !== null && cur !== undefined) {
    if (cur - bestMs < SWITCH_MIN_GAIN_MS || bestMs > cur * SWITCH_RATIO) return current;
  }
  return best;
}

export class RelaySet {
  private readonly regions = new Map<number, Region>();
  home = 0;
  /** The home was taken before any measurement: the first probe may move it freely. */
  private provisional = false;
  private probing = false;
  lastProbe = -Infinity;

  constructor(
    private readonly key: NodePrivate,
    private readonly transports: EngineTransports,
    private readonly clock: Clock,
    private readonly log: LogFn,
    private readonly onPacket: (src: NodePublic, data: Uint8Array, region: number) => void,
    private readonly onHomeChange: (region: number) => void,
  ) {}

  /** Applies a relay map from control (regions added, changed or removed). */
  setMap(map: RelayMap): void {
    const seen = new Set<number>();
    for (const r of map.regions) {
      seen.add(r.id);
      const have = this.regions.get(r.id);
      if (have && JSON.stringify(have.region) === JSON.stringify(r)) continue;
      have?.conn?.close();
      this.regions.set(r.id, { region: r, conn: undefined, pending: [], lastUsed: 0, latencyMs: have?.latencyMs ?? null, connected: false });
    }
    for (const [id, r] of this.regions) {
      if (seen.has(id)) continue;
      r.conn?.close();
      this.regions.delete(id);
    }
    if (this.home !== 0 && !this.regions.has(this.home)) this.home = 0;
    if (this.home === 0 && map.regions[0]) {
      // Be reachable at once: take the first region until the probe has measured them all.
      this.home = map.regions[0].id;
      this.provisional = true;
      this.onHomeChange(this.home);
      void this.probe();
    }
    this.ensure(this.home);
  }

  region(id: number): RelayRegion | undefined {
    return this.regions.get(id)?.region;
  }

  private ensure(id: number): Region | undefined {
    const r = this.regions.get(id);
    if (!r || r.region.nodes.length === 0) return undefined;
    r.lastUsed = this.clock.now();
    if (!r.conn) {
      const node = r.region.nodes[0]!;
      this.log('debug', `relay: connecting to region ${id} (${node.url})`);
      r.conn = this.transports.relay(node, this.key, {
        packet: (src, data) => this.onPacket(src, data, id),
        state: (up) => {
          r.connected = up;
          this.log('info', `relay ${r.region.code}: ${up ? 'connected' : 'disconnected'}`);
          if (up && id === this.home) r.conn?.notePreferred(true);
          if (up) this.flushPending(r);
        },
      });
    }
    return r;
  }

  /** Sends a packet to `dst` through region `id` (0: our home); held while it connects. */
  send(id: number, dst: NodePublic, packet: Uint8Array): boolean {
    const r = this.ensure(id || this.home);
    if (!r?.conn) return false;
    if (r.connected || r.conn.connected) return r.conn.send(dst, packet);
    if (r.pending.length >= RELAY_PENDING_MAX) r.pending.shift();
    r.pending.push({ dst, packet: Uint8Array.from(packet), at: this.clock.now() });
    return true;
  }

  private flushPending(r: Region): void {
    const fresh = this.clock.now() - RELAY_PENDING_MS;
    for (const p of r.pending.splice(0)) if (p.at >= fresh) r.conn?.send(p.dst, p.packet);
  }

  /** Measures every region and (re)chooses the home region. */
  async probe(): Promise<void> {
    if (this.probing || this.regions.size === 0) return;
    this.probing = true;
    this.lastProbe = this.clock.now();
    try {
      const lat = new Map<number, number | null>();
      await Promise.all(
        [...this.regions.values()].map(async (r) => {
          const node = r.region.nodes[0];
          let ms: number | null = null;
          if (node) ms = await this.transports.probe(node).catch(() => null);
          r.latencyMs = ms;
          lat.set(r.region.id, ms);
        }),
      );
      const next = chooseHome(lat, this.provisional ? 0 : this.home);
      if ([...lat.values()].some((ms) => ms !== null)) this.provisional = false;
      if (next !== 0 && next !== this.home) {
        const old = this.regions.get(this.home);
        old?.conn?.notePreferred(false);
        this.home = next;
        this.log('info', `home relay: region ${next} (${lat.get(next)?.toFixed(1)} ms)`);
        this.ensure(next)?.conn?.notePreferred(true);
        this.onHomeChange(next);
      }
    } finally {
      this.probing = false;
    }
  }

  /** Closes idle non-home connections; re-probes periodically. Returns the next deadline. */
  tick(now: number): number {
    let next = this.lastProbe + RELAY_PROBE_INTERVAL_MS;
    if (now >= next) {
      void this.probe();
      next = now + RELAY_PROBE_INTERVAL_MS;
    }
    for (const [id, r] of this.regions) {
      if (!r.conn || id === this.home) continue;
      const idleAt = r.lastUsed + RELAY_IDLE_MS;
      if (now >= idleAt) {
        this.log('debug', `relay: closing idle region ${id}`);
        r.conn.close();
        r.conn = undefined;
        r.connected = false;
        r.pending.length = 0;
      } else next = Math.min(next, idleAt);
    }
    return next;
  }

  status(): { region: number; code: string; url: string; connected: boolean; latencyMs: number | null; home: boolean }[] {
    return [...this.regions.values()].map((r) => ({
      region: r.region.id,
      code: r.region.code,
      url: r.region.nodes[0]?.url ?? '',
      connected: r.connected,
      latencyMs: r.latencyMs,
      home: r.region.id === this.home,
    }));
  }

  close(): void {
    for (const r of this.regions.values()) r.conn?.close();
    this.regions.clear();
  }
}
