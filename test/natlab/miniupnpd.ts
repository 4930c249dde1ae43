/**
 * The port-mapping side of 'hard-upnp' sites: a lab STUN server (coturn, RFC 5780) in the
 * internet namespace and miniupnpd (Debian's miniupnpd-nftables, 2.3.1) in the router.
 *
 * Why the STUN server: miniupnpd 2.3.1 treats a WAN address in 203.0.113/24 (TEST-NET) as
 * private and then refuses to forward ports; `ext_perform_stun=yes` makes it ask a STUN server
 * instead. Its check sends four Binding requests (with and without CHANGE-REQUEST for the IP
 * and the port) and only enables forwarding when all four come back with its own address and
 * port, so the server has to be RFC 5780 capable with two addresses: coturn `--stun-only` on
 * both internet addresses, port STUN_PORT and its alternate port STUN_PORT + 1. The router's
 * WAN is not NATed, so miniupnpd sees itself "unrestricted" and enables NAT-PMP, PCP and IGD.
 *
 * miniupnpd's nftables backend writes into `table inet plab` (rules.ts makes the chains it
 * names: upnp_forward, upnp_prerouting, upnp_postrouting); it runs in the foreground (-d) with
 * its own pid file, so several can run at once, and is spawned with spawnIn (killed at cleanup).
 * A mapping only adds an inbound DNAT (and its forward accept); the router's outbound NAT stays
 * `masquerade fully-random`, so packets the host sends from the mapped port to a new peer leave
 * from a random port, as on many real routers.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nextSerial } from '../interop/lab/env.ts';
import { spawnIn, type ChildHandle } from '../interop/lab/proc.ts';
import { labTempDir } from '../interop/lab/registry.ts';
import { UPNP_CHAINS, TABLE } from './rules.ts';

/** The lab STUN server for miniupnpd (coturn); the RFC 5780 alternate port is +1. */
export const LAB_STUN_PORT = 3578;
/** miniupnpd's HTTP port (UPnP IGD description at http://<router lan>:UPNP_HTTP_PORT/rootDesc.xml). */
export const UPNP_HTTP_PORT = 5000;

function tempFile(name: string, text: string): string {
  const path = join(labTempDir(), `${nextSerial()}-${name}`);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
}

/** coturn as a STUN-only RFC 5780 server on both `ips`, ports LAB_STUN_PORT and +1. Resolves once it listens. */
export async function startLabStun(ns: string, ips: readonly [string, string]): Promise<ChildHandle> {
  const dir = labTempDir();
  const tag = nextSerial();
  const conf = tempFile(
    'turnserver.conf',
    [
      ...ips.map((ip) => `listening-ip=${ip}`),
      `listening-port=${LAB_STUN_PORT}`,
      `alt-listening-port=${LAB_STUN_PORT + 1}`,
      'stun-only',
      'no-cli',
      'no-tls',
      'no-dtls',
      'no-tcp',
      'log-file=stdout',
      'simple-log',
      'verbose', // prints the "UDP listener opened on" lines waited for below
      `pidfile=${join(dir, `${tag}-turnserver.pid`)}`,
      `userdb=${join(dir, `${tag}-turndb`)}`,
      '',
    ].join('\n'),
  );
  const child = spawnIn(ns, 'turnserver', ['-c', conf], { name: `turnserver@${ns}` });
  // One "UDP listener opened on: <ip>:<port>" line per address and port (from several threads).
  try {
    for (const ip of ips) {
      for (const port of [LAB_STUN_PORT, LAB_STUN_PORT + 1]) {
        await child.waitForLine(new RegExp(`UDP listener opened on\\s*:\\s*${ip.replace(/\./g, '\\.')}:${port}\\b`), 15_000);
      }
    }
  } catch (e) {
    await child.kill(500);
    throw e;
  }
  return child;
}

export interface MiniupnpdOptions {
  /** Router namespace. */
  ns: string;
  wanIf: string;
  lanIf: string;
  /** LAN subnet allowed to map (CIDR), e.g. 192.168.5.0/24. */
  lanSubnet: string;
  /** The lab STUN server (one of the internet addresses). */
  stunHost: string;
}

export interface Miniupnpd {
  child: ChildHandle;
  /** http://<lan>:<port>/rootDesc.xml */
  descUrl(lan: string): string;
}

/** Starts miniupnpd in the router; resolves once STUN enabled forwarding and IGD, NAT-PMP and PCP listen. */
export async function startMiniupnpd(o: MiniupnpdOptions): Promise<Miniupnpd> {
  const tag = nextSerial();
  const dir = labTempDir();
  const conf = tempFile(
    'miniupnpd.conf',
    [
      `ext_ifname=${o.wanIf}`,
      `listening_ip=${o.lanIf}`,
      `http_port=${UPNP_HTTP_PORT}`,
      'enable_natpmp=yes', // NAT-PMP and PCP (2.3.1 has no separate PCP switch)
      'enable_upnp=yes',
      'secure_mode=yes',
      'system_uptime=yes',
      'notify_interval=60',
      'clean_ruleset_interval=600',
      'ext_perform_stun=yes',
      `ext_stun_host=${o.stunHost}`,
      `ext_stun_port=${LAB_STUN_PORT}`,
      `upnp_table_name=${TABLE}`,
      `upnp_nat_table_name=${TABLE}`,
      `upnp_forward_chain=${UPNP_CHAINS.forward}`,
      `upnp_nat_chain=${UPNP_CHAINS.prerouting}`,
      `upnp_nat_postrouting_chain=${UPNP_CHAINS.postrouting}`,
      `lease_file=${join(dir, `${tag}-upnp.leases`)}`,
      `uuid=${randomUUID()}`,
      'friendly_name=Pierce NAT lab router',
      `allow 1024-65535 ${o.lanSubnet} 1024-65535`,
      'deny 0-65535 0.0.0.0/0 0-65535',
      '',
    ].join('\n'),
  );
  const child = spawnIn(o.ns, 'miniupnpd', ['-d', '-f', conf, '-P', join(dir, `${tag}-miniupnpd.pid`)], { name: `miniupnpd@${o.ns}` });
  try {
    await child.waitForLine(/Port forwarding is now enabled/i, 15_000);
    await child.waitForLine(/HTTP listening on port/, 15_000);
    await child.waitForLine(/Listening for NAT-PMP\/PCP traffic/, 15_000);
  } catch (e) {
    await child.kill(500);
    throw e;
  }
  return { child, descUrl: (lan) => `http://${lan}:${UPNP_HTTP_PORT}/rootDesc.xml` };
}
