/**
 * The NAT64 side of 'nat64' sites: tayga (stateless NAT64 on a TUN device, with a dynamic IPv4
 * pool that the router then masquerades out of its WAN) and the DNS64 script (dns64.mjs).
 *
 * tayga 0.9.2 refuses the well-known prefix 64:ff9b::/96 for non-global IPv4 addresses (the lab's
 * 203.0.113/24 is TEST-NET), so it runs on a ULA /96 of its own; the router's nftables rewrite
 * 64:ff9b::/96 onto it (`dnat ip6 prefix to`, rules.ts) and conntrack rewrites the answers back,
 * so the host only ever sees 64:ff9b::/96.
 *
 *   host fd00:64:N::2 ──► router lan fd00:64:N::1 ─dnat─► fd64:ff9b:N::/96 ─► tun "nat64" (tayga)
 *     tayga: fd64:ff9b:N::cb00:7101 ⇄ 203.0.113.1, the host ⇄ a pool address 192.168.N.128/25
 *   pool ─► masquerade (EIM) out of "wan" 203.0.113.x
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nextSerial } from '../interop/lab/env.ts';
import { run, spawnIn, type ChildHandle } from '../interop/lab/proc.ts';
import { labTempDir } from '../interop/lab/registry.ts';

export const DNS64_MJS = fileURLToPath(new URL('./dns64.mjs', import.meta.url));
export const NAT64_PREFIX = '64:ff9b::/96';
export const NAT64_TUN = 'nat64';

export interface Nat64Options {
  /** Router namespace. */
  ns: string;
  /** tayga's own /96, e.g. fd64:ff9b:5::/96. */
  taygaPrefix: string;
  /** tayga's own IPv4 address (not on any interface), e.g. 192.168.5.1. */
  taygaIpv4: string;
  /** The IPv4 pool for IPv6 hosts, e.g. 192.168.5.128/25 (masqueraded out of the WAN). */
  pool: string;
  /** Where the DNS64 listens (the router's LAN IPv6 address), port 53. */
  dnsListen: string;
}

export interface Nat64 {
  tayga: ChildHandle;
  dns64: ChildHandle;
}

/** Makes the TUN device and its routes, then starts tayga and the DNS64. */
export async function startNat64(o: Nat64Options): Promise<Nat64> {
  const dataDir = join(labTempDir(), `${nextSerial()}-tayga`);
  mkdirSync(dataDir, { recursive: true });
  const conf = join(dataDir, 'tayga.conf');
  writeFileSync(
    conf,
    [`tun-device ${NAT64_TUN}`, `ipv4-addr ${o.taygaIpv4}`, `prefix ${o.taygaPrefix}`, `dynamic-pool ${o.pool}`, `data-dir ${dataDir}`, ''].join('\n'),
  );
  // A persistent TUN device made here; tayga attaches to it by name.
  await run('ip', ['-n', o.ns, '-batch', '-'], {
    input: [
      `tuntap add dev ${NAT64_TUN} mode tun`,
      `link set ${NAT64_TUN} up`,
      `route add ${o.pool} dev ${NAT64_TUN}`,
      `route add ${o.taygaPrefix} dev ${NAT64_TUN}`,
      '',
    ].join('\n'),
  });
  const tayga = spawnIn(o.ns, 'tayga', ['--nodetach', '-c', conf], { name: `tayga@${o.ns}` });
  const dns64 = spawnIn(o.ns, process.execPath, [DNS64_MJS, o.dnsListen, '53', NAT64_PREFIX], { name: `dns64@${o.ns}` });
  try {
    await dns64.waitForLine(/^dns64 listening/, 10_000);
    // tayga prints nothing when it is up; it must not have exited (bad config, no TUN).
    await new Promise((r) => setTimeout(r, 100));
    if (tayga.exited) throw new Error(`tayga exited at start:\n${tayga.output()}`);
  } catch (e) {
    await Promise.all([tayga.kill(500), dns64.kill(500)]);
    throw e;
  }
  return { tayga, dns64 };
}
