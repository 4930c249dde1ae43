/** The relay's Prometheus metrics (prom-client), on a registry of its own. */
import { Counter, Gauge, Registry } from 'prom-client';

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
