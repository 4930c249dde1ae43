/** `pierce netcheck`: what this host's network allows (UDP, NAT mapping, port mapping, hairpinning, NAT64, relay latency). */
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import type { RelayNode } from '../../../src/control/messages.ts';
import { netcheck } from '../netcheck/netcheck.ts';
import { parseRelayFlag } from './control.ts';
import { UsageError, type Io } from './main.ts';
import { splitHostPort } from './relay.ts';

export const NETCHECK_USAGE = `Usage: pierce netcheck [--relay URL[,stun=HOST:PORT]]… [--stun HOST:PORT]… [--dns IP[:PORT]] [--gateway IP] [--json]

Measures what this host's network lets a node do: UDP over IPv4/IPv6, the public addresses STUN
sees, whether the NAT's mapping varies by destination (endpoint-dependent: hole punching then
needs birthday probing), which port-mapping protocols the gateway speaks (NAT-PMP, PCP, UPnP
IGD), whether the NAT hairpins, a NAT64 prefix (RFC 7050), and the latency to each relay.

  --relay URL[,stun=H:P]   a relay (region 1, 2, … in order); its STUN address is probed too
  --stun HOST:PORT         another STUN server (two with different IPs show mapping behaviour)
  --dns IP[:PORT]          DNS server for NAT64 detection (default: the system's)
  --gateway IP             gateway to probe for port mapping (default: the IPv4 default route's)
  --timeout MS             per probe (default 3000)
  --json                   the report as JSON
`;

export async function netcheckCommand(argv: string[], io: Io): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout(NETCHECK_USAGE);
    return 0;
  }
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { relay: { type: 'string', multiple: true }, stun: { type: 'string', multiple: true }, dns: { type: 'string', multiple: true }, gateway: { type: 'string' }, timeout: { type: 'string' }, json: { type: 'boolean' } },
  });
  const relays = new Map<number, RelayNode>();
  const stun: { host: string; port: number }[] = [];
  (values.relay ?? []).forEach((r, i) => {
    const region = parseRelayFlag(r, i + 1);
    const node = region.nodes[0]!;
    relays.set(region.id, node);
    if (node.stun) stun.push(splitHostPort(node.stun, '--relay stun='));
  });
  for (const s of values.stun ?? []) stun.push(splitHostPort(s, '--stun'));
  if (stun.length === 0 && relays.size === 0) throw new UsageError('netcheck needs --relay or --stun (e.g. the relays of your tailnet)');
  const timeoutMs = values.timeout === undefined ? 3000 : Number(values.timeout);
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new UsageError('--timeout must be a positive number of ms');
  if (values.gateway !== undefined && isIP(values.gateway) !== 4) throw new UsageError('--gateway must be an IPv4 address');
  const r = await netcheck({ stun, relays, timeoutMs, ...(values.dns ? { dns: values.dns } : {}), ...(values.gateway ? { gateway: values.gateway } : {}) });
  if (values.json) {
    io.stdout(JSON.stringify(r, null, 2) + '\n');
    return 0;
  }
  const yn = (b: boolean | null) => (b === null ? 'unknown' : b ? 'yes' : 'no');
  io.stdout(
    [
      `UDP: ${yn(r.udp)}`,
      `IPv4: ${yn(r.ipv4)}${r.globalV4 ? `, public ${r.globalV4}` : ''}`,
      `IPv6: ${yn(r.ipv6)}${r.globalV6 ? `, public ${r.globalV6}` : ''}`,
      `mapping varies by destination: ${yn(r.mappingVariesByDestIP)}`,
      `port mapping: ${r.portMapping ? `NAT-PMP ${yn(r.portMapping.pmp)}, PCP ${yn(r.portMapping.pcp)}, UPnP ${yn(r.portMapping.upnp)}` : 'no gateway'}`,
      `hairpinning: ${yn(r.hairpinning)}`,
      `NAT64: ${r.nat64Prefix ?? 'none'}`,
      ...r.stun.map((s) => `  STUN ${s.server}: ${s.mapped ?? 'no answer'}${s.rttMs !== null ? ` (${s.rttMs.toFixed(1)} ms)` : ''}`),
      ...Object.entries(r.relayLatencyMs).map(([id, ms]) => `  relay ${id}: ${ms === null ? 'unreachable' : `${ms.toFixed(1)} ms`}`),
      `preferred relay: ${r.preferredRelay || 'none'}`,
      '',
    ].join('\n'),
  );
  return 0;
}
