/** The relay's Prometheus metrics (prom-client), on a registry of its own. */
import { Counter, Gauge, Registry } from 'prom-client';
import type { LeaseStats } from './leases.ts';

export class RelayMetrics {
  readonly registry = new Registry();
  readonly clients = new Gauge({ name: 'pierce_relay_clients', help: 'Connected DERP clients', registers: [this.registry] });
  readonly meshPeers = new Gauge({ name: 'pierce_relay_mesh_watchers', help: 'Mesh peers watching connections', registers: [this.registry] });
  readonly connections = new Counter({ name: 'pierce_relay_connections_total', help: 'Accepted connections by transport', labelNames: ['transport'], registers: [this.registry] });
  // The per-packet counts are plain numbers, read into the registry only when it is scraped.
  private packetCount = 0;
  private byteCount = 0;
  readonly packets = collected('pierce_relay_packets_forwarded_total', 'Packets queued to a recipient', this.registry, () => this.packetCount);
  readonly bytes = collected('pierce_relay_bytes_forwarded_total', 'Packet bytes queued to a recipient', this.registry, () => this.byteCount);

  /** One packet of `bytes` forwarded (hot path). */
  count(bytes: number): void {
    this.packetCount++;
    this.byteCount += bytes;
  }
  readonly drops = new Counter({ name: 'pierce_relay_drops_total', help: 'Dropped packets and closed connections by reason', labelNames: ['reason'], registers: [this.registry] });

  /** UDP lease gauges and counters, read from the lease gateway when scraped. */
  attachLeases(read: () => LeaseStats): void {
    const r = this.registry;
    new Gauge({ name: 'pierce_relay_leases', help: 'Live UDP leases', registers: [r], collect() { this.set(read().leases); } });
    new Gauge({ name: 'pierce_relay_lease_sockets', help: 'UDP sockets held by leases', registers: [r], collect() { this.set(read().sockets); } });
    collected('pierce_relay_lease_datagrams_sent_total', 'Datagrams sent for leases', r, () => read().sent);
    collected('pierce_relay_lease_bytes_sent_total', 'Payload bytes sent for leases', r, () => read().sentBytes);
    collected('pierce_relay_lease_datagrams_received_total', 'Datagrams forwarded to lease holders', r, () => read().received);
    collected('pierce_relay_lease_bytes_received_total', 'Payload bytes forwarded to lease holders', r, () => read().receivedBytes);
    collected('pierce_relay_lease_refused_total', 'Lease handshakes refused (bad proof, unknown or expired node, control down)', r, () => read().refused);
    new Counter({
      name: 'pierce_relay_lease_denied_total',
      help: 'Lease sends refused by reason',
      labelNames: ['reason'],
      registers: [r],
      collect() {
        const d = read().denied;
        this.reset();
        this.inc({ reason: 'not_allowed' }, d.notAllowed);
        this.inc({ reason: 'rate_limited' }, d.rateLimited);
        this.inc({ reason: 'no_socket' }, d.noSocket);
      },
    });
  }
}

function collected(name: string, help: string, registry: Registry, read: () => number): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}
