/**
 * netcheck (Tailscale's net/netcheck, reduced): what this host's network lets a node do.
 *
 *   UDP / IPv4 / IPv6      a STUN Binding answered over that family
 *   public addresses       the reflexive addresses STUN saw
 *   mapping varies         two STUN servers (different IPs) saw different ip:port from ONE socket:
 *                          an endpoint-dependent NAT, where hole punching needs birthday probing
 *   NAT64                  RFC 7050 prefix (gateway/src/nat64)
 *   relay latency          HEAD /derp/probe timing per relay, and the preferred one
 *   port mapping           which of NAT-PMP, PCP and UPnP IGD the default gateway offers
 *                          (gateway/src/portmap/mapper.ts probePortMapping; null: no gateway)
 *   hairpinning            whether a packet from a second socket to the first one's public
 *                          IPv4 ip:port comes back in (hairpin.ts; null: no NAT or no public IPv4)
 *
 * One socket per family is used for every STUN server, as a node's WireGuard socket would be.
 * Captive portals are not measured yet.
 */
import type { Socket } from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { formatIP, hostPort } from '../../../src/netstack/addr.ts';
import type { RelayNode } from '../../../src/control/messages.ts';
import { chooseHome } from '../../../src/engine/relays.ts';
import { stunBinding, type StunServerAddress } from '../stun/client.ts';
import { detectNat64 } from '../nat64/detect.ts';
import { probeRelay } from '../node/platform.ts';
import { defaultGateway } from '../portmap/client.ts';
import { probePortMapping, type PortMapAvailability } from '../portmap/mapper.ts';
import { checkHairpinning } from './hairpin.ts';
import { bindSocket } from '../node/udp.ts';

export interface NetcheckOptions {
  /** STUN servers ("host:port"), e.g. the relays' STUN addresses. */
  stun: StunServerAddress[];
  /** Relays to time (region id → node). */
  relays?: Map<number, RelayNode>;
  timeoutMs?: number;
  /** DNS servers for NAT64 detection (default: the system's). */
  dns?: string[];
  /** Gateway to probe for port mapping (default: the IPv4 default route's; null: skip the probe). */
  gateway?: string | null;
}

export interface StunObservation {
  server: string;
  family: 4 | 6;
  mapped: string | null;
  rttMs: number | null;
}

export interface NetcheckReport {
  udp: boolean;
  ipv4: boolean;
  ipv6: boolean;
  globalV4: string | null;
  globalV6: string | null;
  /** null when fewer than two IPv4 servers answered. */
  mappingVariesByDestIP: boolean | null;
  nat64Prefix: string | null;
  /** Port-mapping services of the gateway; null when there is no gateway (or it was not probed). */
  portMapping: PortMapAvailability | null;
  /** Whether the NAT hairpins; null without a public IPv4 or when that is a local address (no NAT). */
  hairpinning: boolean | null;
  stun: StunObservation[];
  relayLatencyMs: Record<string, number | null>;
  preferredRelay: number;
  durationMs: number;
}

/** A socket of the family, or null when the host has none; later errors (unreachable) are ignored. */
const bind = (type: 'udp4' | 'udp6'): Promise<Socket | null> =>
  bindSocket(type, 0).then(
    (s) => s.on('error', () => {}),
    () => null,
  );

export async function netcheck(o: NetcheckOptions): Promise<NetcheckReport> {
  const t0 = performance.now();
  const timeoutMs = o.timeoutMs ?? 3000;
  const [s4, s6] = await Promise.all([bind('udp4'), bind('udp6')]);
  const portMapping = (async (): Promise<PortMapAvailability | null> => {
    const gw = o.gateway === null ? undefined : (o.gateway ?? (await defaultGateway()));
    return gw ? probePortMapping(gw, { timeoutMs: Math.min(1000, timeoutMs), upnpTimeoutMs: Math.min(2000, timeoutMs) }) : null;
  })();
  try {
    const stun = await Promise.all(
      o.stun.map(async (srv): Promise<StunObservation> => {
        const family = srv.host.includes(':') ? 6 : 4;
        const sock = family === 6 ? s6 : s4;
        const server = hostPort(srv.host, srv.port);
        if (!sock) return { server, family, mapped: null, rttMs: null };
        try {
          const r = await stunBinding(sock, srv, { timeoutMs, rto: 100 });
          return { server, family, mapped: hostPort(r.address, r.port), rttMs: r.rtt };
        } catch {
          return { server, family, mapped: null, rttMs: null };
        }
      }),
    );
    const relays = [...(o.relays ?? new Map<number, RelayNode>()).entries()];
    const v4 = stun.filter((x) => x.family === 4 && x.mapped);
    const [latencies, nat64, hairpinning, pm] = await Promise.all([
      Promise.all(relays.map(async ([id, node]) => [id, await probeRelay(node, timeoutMs).catch(() => null)] as const)),
      detectNat64({ timeoutMs: Math.min(timeoutMs, 2000), ...(o.dns ? { servers: o.dns } : {}) }),
      s4 && v4[0]?.mapped ? checkHairpinning(s4, v4[0].mapped) : null,
      portMapping,
    ]);
    const v6 = stun.filter((x) => x.family === 6 && x.mapped);
    const serversV4 = new Set(v4.map((x) => x.server.split(':')[0]));
    const lat = new Map<number, number | null>(latencies);
    return {
      udp: v4.length + v6.length > 0,
      ipv4: v4.length > 0,
      ipv6: v6.length > 0,
      globalV4: v4[0]?.mapped ?? null,
      globalV6: v6[0]?.mapped ?? null,
      mappingVariesByDestIP: serversV4.size < 2 ? null : new Set(v4.map((x) => x.mapped)).size > 1,
      nat64Prefix: nat64 ? `${formatIP(nat64.prefix)}/${nat64.length}` : null,
      portMapping: pm,
      hairpinning,
      stun,
      relayLatencyMs: Object.fromEntries(latencies.map(([id, ms]) => [String(id), ms])),
      preferredRelay: chooseHome(lat, 0),
      durationMs: performance.now() - t0,
    };
  } finally {
    await portMapping.catch(() => null); // never left running past the report
    s4?.close();
    s6?.close();
  }
}
