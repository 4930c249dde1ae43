/** The relay's Prometheus metrics (prom-client), on a registry of its own. */
import { Counter, Gauge, Registry } from 'prom-client';

export class RelayMetrics {
  readonly registry = new Registry();
  readonly clients = new Gauge({ name: 'pierce_relay_clients', help: 'Connected DERP clients', registers: [this.registry] });
  readonly meshPeers = new Gauge({ name: 'pierce_relay_mesh_watchers', help: 'Mesh peers watching connections', registers: [this.registry] });
  readonly connections = new Counter({ name: 'pierce_relay_connections_total', help: 'Accepted connections by transport', labelNames: ['transport'], registers: [this.registry] });
  readonly packets = new Counter({ name: 'pierce_relay_packets_forwarded_total', help: 'Packets queued to a recipient', registers: [this.registry] });
  readonly bytes = new Counter({ name: 'pierce_relay_bytes_forwarded_total', help: 'Packet bytes queued to a recipient', registers: [this.registry] });
  readonly drops = new Counter({ name: 'pierce_relay_drops_total', help: 'Dropped packets and closed connections by reason', labelNames: ['reason'], registers: [this.registry] });
}
