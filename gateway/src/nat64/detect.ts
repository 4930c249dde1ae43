/**
 * DNS64 / NAT64 detection for a node (RFC 7050 §3): ask the system's (or given) DNS servers for
 * the AAAA records of ipv4only.arpa; a DNS64 synthesizes them under its NAT64 prefix, which
 * `discoverPrefix` recovers. No answer, or none embedding the well-known addresses: no NAT64.
 */
import { Resolver } from 'node:dns/promises';
import { parseIP } from '../../../src/netstack/addr.ts';
import { IPV4ONLY_ARPA, discoverPrefix, type Nat64Prefix } from '../../../src/paths/nat64.ts';

export interface DetectOptions {
  /** DNS servers ("IP" or "IP:PORT"); default: the system's. */
  servers?: string[];
  timeoutMs?: number;
}

export async function detectNat64(o: DetectOptions = {}): Promise<Nat64Prefix | undefined> {
  const r = new Resolver({ timeout: o.timeoutMs ?? 2000, tries: 2 });
  if (o.servers) r.setServers(o.servers);
  let answers: string[];
  try {
    answers = await r.resolve6(IPV4ONLY_ARPA);
  } catch {
    return undefined; // NXDOMAIN, no AAAA, no DNS: no DNS64 here
  }
  return discoverPrefix(answers.map((a) => parseIP(a)));
}
