/**
 * A NAT lab of network namespaces: an "internet" (a bridge with two server addresses) and sites
 * behind routers of the kinds real peers sit behind. Pierce nodes run in the hosts.
 *
 *   internet ns (<base>-inet): br0 203.0.113.1/24, 203.0.113.2/24, 2001:db8:113::1/64
 *     ├─ public host                 203.0.113.X (+ 2001:db8:113::X)   no router
 *     ├─ router wan 203.0.113.X ── lan 192.168.N.1/24 ── host 192.168.N.2    easy, hard, udp-blocked, hard-upnp
 *     ├─ router wan …           ── bridge 192.168.N.1/24 ── hosts .2, .3     lan
 *     ├─ carrier wan …          ── bridge 100.64.N.1/24
 *     │     ├─ home 1 wan 100.64.N.2 ── lan 10.N.1.1/24 ── host 10.N.1.2      cgnat, cgnat-hairpin
 *     │     └─ home 2 wan 100.64.N.3 ── lan 10.N.2.1/24 ── host 10.N.2.2
 *     └─ router wan …           ── lan fd00:64:N::1/64 ── host fd00:64:N::2 (IPv6 only)   nat64
 * N is the site's position in the list plus 1; WAN addresses X are handed out from .10 up in
 * list order (public hosts included). Router rules (EIM/EDM NAT, hairpinning, filtering): rules.ts;
 * miniupnpd and its STUN server: miniupnpd.ts; tayga and DNS64: nat64.ts.
 *
 * Helpers for tests (re-exported here): startInternetServers (servers.ts: Pierce's STUN server on
 * both internet addresses, UDP/TCP echo), stunProbe / startUdpAgent (agent.ts, driving
 * udp-agent.ts in a host: one UDP socket, STUN to several servers, send, receive).
 *
 * Namespaces are `plab-<pid>-<run>-<n>-<site>-{h1,h2,r,r1,r2,c}` and `…-inet`, registered with the
 * interop lab's registry, so its exit handlers and `cleanupAll()` remove them as well as
 * `destroy()`. Nothing is added to the root namespace (veth ends are made inside the namespaces),
 * and no traffic leaves these namespaces.
 */
import { newNamespaceBase } from '../interop/lab/env.ts';
import { deleteNamespace, ping } from '../interop/lab/netns.ts';
import { execIn, run, waitFor, type ChildHandle } from '../interop/lab/proc.ts';
import { installExitHandlers, namespaces } from '../interop/lab/registry.ts';
import { startLabStun, startMiniupnpd, LAB_STUN_PORT } from './miniupnpd.ts';
import { NAT64_PREFIX, startNat64 } from './nat64.ts';
import { carrierRules, routerRules, type NatMode } from './rules.ts';
import { NATLAB_BASE_TOOLS, NATLAB_KIND_TOOLS, requireNatlab } from './tools.ts';
import type { Tool } from '../interop/lab/tools.ts';

export { startUdpAgent, stunProbe, type AgentOptions, type ProbeResult, type Received, type StunAnswer, type UdpAgent } from './agent.ts';
export { startInternetServers, type InternetServers } from './servers.ts';

export type SiteKind = 'public' | 'easy' | 'hard' | 'udp-blocked' | 'hard-upnp' | 'cgnat' | 'cgnat-hairpin' | 'lan' | 'nat64';
export interface SiteSpec {
  name: string;
  kind: SiteKind;
}
export interface LabHost {
  ns: string;
  site: string;
  kind: SiteKind;
  ipv4?: string;
  ipv6?: string;
  /** the router's LAN address (default gateway), if any */
  gateway?: string;
  /** The IPv4 address its traffic reaches the internet from (the outermost NAT's WAN; public hosts: their own). */
  wan: string;
}
export interface NatLab {
  /** The "internet" namespace: holds the bridge all routers' WAN sides plug into, and two server addresses. */
  internet: {
    ns: string;
    ips: [string, string];
    /** an IPv6 address on the internet bridge, if any */
    ipv6?: string;
    /** With a 'hard-upnp' site: the port of the lab's RFC 5780 STUN server (coturn) on both ips (and +1). */
    labStunPort?: number;
  };
  /** site name → its hosts ('lan', 'cgnat', 'cgnat-hairpin' have 2 hosts; others 1). */
  hosts: Record<string, LabHost[]>;
  /** for 'nat64' sites: site name → the DNS64 server address (IPv6) the host should query, and the prefix '64:ff9b::/96'. */
  dns64: Record<string, { server: string; prefix: string }>;
  /** for 'hard-upnp' sites: site name → the router namespace and its LAN address (miniupnpd listens there). */
  routers: Record<string, { ns: string; lan: string; wan: string; /** UPnP IGD description URL */ descUrl: string }>;
  destroy(): Promise<void>;
}

export const INTERNET_IPS: [string, string] = ['203.0.113.1', '203.0.113.2'];

/** One site of each kind, two of easy and hard (for easy–easy and hard–hard pairs). */
export const ONE_OF_EACH: SiteSpec[] = [
  { name: 'pub', kind: 'public' },
  { name: 'e1', kind: 'easy' },
  { name: 'e2', kind: 'easy' },
  { name: 'h1', kind: 'hard' },
  { name: 'h2', kind: 'hard' },
  { name: 'blk', kind: 'udp-blocked' },
  { name: 'up', kind: 'hard-upnp' },
  { name: 'cg', kind: 'cgnat' },
  { name: 'cgh', kind: 'cgnat-hairpin' },
  { name: 'lan', kind: 'lan' },
  { name: 'n64', kind: 'nat64' },
];
export const INTERNET_IPV6 = '2001:db8:113::1';
const FIRST_WAN_OCTET = 10;

const KINDS: readonly SiteKind[] = ['public', 'easy', 'hard', 'udp-blocked', 'hard-upnp', 'cgnat', 'cgnat-hairpin', 'lan', 'nat64'];

/** The tools a lab with these sites needs (for requireNatlab / natlabProblems). */
export function natlabTools(sites: readonly SiteSpec[]): Tool[] {
  const tools: Tool[] = [...NATLAB_BASE_TOOLS];
  for (const [kind, list] of Object.entries(NATLAB_KIND_TOOLS)) if (sites.some((s) => s.kind === kind)) tools.push(...list);
  return tools;
}

// ---------------------------------------------------------------------------------------------
// Building blocks

interface Ctx {
  base: string;
  inet: string;
  made: string[];
  children: ChildHandle[];
  port: number;
  labStun?: Promise<unknown>;
}

const ROUTER_SYSCTLS = [
  'net.ipv4.ip_forward=1',
  'net.ipv4.conf.all.rp_filter=0',
  'net.ipv4.conf.default.rp_filter=0',
  'net.ipv4.conf.all.send_redirects=0',
  'net.ipv4.conf.default.send_redirects=0',
];
const BRIDGE_SYSCTLS = ['net.bridge.bridge-nf-call-iptables=0', 'net.bridge.bridge-nf-call-ip6tables=0', 'net.bridge.bridge-nf-call-arptables=0'];

/** `ip -n ns -batch -`: many ip commands in one process. */
function ipb(ns: string, lines: readonly string[]): Promise<unknown> {
  return run('ip', ['-n', ns, '-batch', '-'], { input: `${lines.join('\n')}\n` });
}

async function addNs(ctx: Ctx, name: string, o: { router?: boolean; bridge?: boolean; ipv6Forward?: boolean } = {}): Promise<string> {
  namespaces.add(name); // registered first: the exit handlers remove it even if the next line fails
  ctx.made.push(name);
  await run('ip', ['netns', 'add', name]);
  // Before any interface exists, so new interfaces inherit the "default" values.
  const sysctls = [...(o.router ? ROUTER_SYSCTLS : []), ...(o.bridge ? BRIDGE_SYSCTLS : []), ...(o.ipv6Forward ? ['net.ipv6.conf.all.forwarding=1'] : [])];
  if (sysctls.length > 0) await execIn(name, 'sysctl', ['-q', '-e', '-w', ...sysctls]); // -e: no br_netfilter, no bridge keys
  await ipb(name, ['link set lo up']);
  return name;
}

/** A veth from the internet bridge into `ns` (as `ifname`), with the address and a default route. */
async function plugIntoInternet(ctx: Ctx, ns: string, ifname: string, ipv4: string, ipv6?: string): Promise<void> {
  const port = `p${ctx.port++}`;
  await ipb(ctx.inet, [`link add ${port} type veth peer name ${ifname} netns ${ns}`, `link set ${port} master br0`, `link set ${port} up`]);
  const lines = [`addr add ${ipv4}/24 dev ${ifname}`, `link set ${ifname} up`, `route add default via ${INTERNET_IPS[0]}`];
  if (ipv6) lines.push(`addr add ${ipv6}/64 dev ${ifname} nodad`, `route add default via ${INTERNET_IPV6}`);
  await ipb(ns, lines);
}

/** A router's LAN: a veth to one host, or (for two hosts) a bridge with a port per host. */
async function lanWithHosts(router: string, hosts: readonly string[], o: { v4?: { prefix: string }; v6?: { prefix: string } }): Promise<void> {
  const addr = (last: number): string[] => [
    ...(o.v4 ? [`addr add ${o.v4.prefix}.${last}/24 dev %IF%`] : []),
    ...(o.v6 ? [`addr add ${o.v6.prefix}${last.toString(16)}/64 dev %IF% nodad`] : []),
  ];
  const r: string[] = [];
  if (hosts.length === 1) {
    r.push(`link add lan type veth peer name eth0 netns ${hosts[0]}`);
  } else {
    r.push('link add lan type bridge');
    hosts.forEach((h, i) => r.push(`link add p${i + 1} type veth peer name eth0 netns ${h}`, `link set p${i + 1} master lan`, `link set p${i + 1} up`));
  }
  r.push(...addr(1).map((l) => l.replace('%IF%', 'lan')), 'link set lan up');
  await ipb(router, r);
  await Promise.all(
    hosts.map((h, i) =>
      ipb(h, [
        ...addr(i + 2).map((l) => l.replace('%IF%', 'eth0')),
        'link set eth0 up',
        ...(o.v4 ? [`route add default via ${o.v4.prefix}.1`] : []),
        ...(o.v6 ? [`route add default via ${o.v6.prefix}1`] : []),
      ]),
    ),
  );
}

function nft(ns: string, ruleset: string): Promise<unknown> {
  return execIn(ns, 'nft', ['-f', '-'], { input: ruleset });
}

// ---------------------------------------------------------------------------------------------
// Sites

interface SiteResult {
  hosts: LabHost[];
  router?: NatLab['routers'][string];
  dns64?: NatLab['dns64'][string];
}

async function buildSite(ctx: Ctx, spec: SiteSpec, n: number, wan: string): Promise<SiteResult> {
  const { name: site, kind } = spec;
  const ns = (suffix: string): string => `${ctx.base}-${site}-${suffix}`;
  const host = (h: string, extra: Partial<LabHost>): LabHost => ({ ns: h, site, kind, wan, ...extra });

  if (kind === 'public') {
    const h = await addNs(ctx, ns('h1'));
    const ipv6 = `2001:db8:113::${wan.split('.')[3]}`;
    await plugIntoInternet(ctx, h, 'eth0', wan, ipv6);
    return { hosts: [host(h, { ipv4: wan, ipv6 })] };
  }

  if (kind === 'cgnat' || kind === 'cgnat-hairpin') {
    const c = await addNs(ctx, ns('c'), { router: true, bridge: true });
    const homes = await Promise.all([1, 2].map((k) => addNs(ctx, ns(`r${k}`), { router: true })));
    const hs = await Promise.all([1, 2].map((k) => addNs(ctx, ns(`h${k}`))));
    await plugIntoInternet(ctx, c, 'wan', wan);
    const carrier = `100.64.${n}`;
    await ipb(c, [
      'link add cgn type bridge',
      `addr add ${carrier}.1/24 dev cgn`,
      'link set cgn up',
      ...homes.flatMap((r, i) => [`link add p${i + 1} type veth peer name wan netns ${r}`, `link set p${i + 1} master cgn`, `link set p${i + 1} up`]),
    ]);
    await nft(c, carrierRules({ wanIf: 'wan', wan, insideIf: 'cgn', hairpin: kind === 'cgnat-hairpin' }));
    await Promise.all(
      homes.map(async (r, i) => {
        const homeWan = `${carrier}.${i + 2}`;
        await ipb(r, [`addr add ${homeWan}/24 dev wan`, 'link set wan up', `route add default via ${carrier}.1`]);
        await lanWithHosts(r, [hs[i]!], { v4: { prefix: `10.${n}.${i + 1}` } });
        await nft(r, routerRules({ wanIf: 'wan', wan: homeWan, mode: 'eim' }));
      }),
    );
    return { hosts: hs.map((h, i) => host(h, { ipv4: `10.${n}.${i + 1}.2`, gateway: `10.${n}.${i + 1}.1` })) };
  }

  // One router with a LAN.
  const nHosts = kind === 'lan' ? 2 : 1;
  const r = await addNs(ctx, ns('r'), { router: true, bridge: kind === 'lan', ipv6Forward: kind === 'nat64' });
  const hs = await Promise.all(Array.from({ length: nHosts }, (_, i) => addNs(ctx, ns(`h${i + 1}`))));
  await plugIntoInternet(ctx, r, 'wan', wan);

  if (kind === 'nat64') {
    const v6 = `fd00:64:${n.toString(16)}::`;
    await lanWithHosts(r, hs, { v6: { prefix: v6 } });
    const taygaPrefix = `fd64:ff9b:${n.toString(16)}::/96`;
    await nft(r, routerRules({ wanIf: 'wan', wan, mode: 'eim', nat64: { from: NAT64_PREFIX, to: taygaPrefix } }));
    const nat = await startNat64({ ns: r, taygaPrefix, taygaIpv4: `192.168.${n}.1`, pool: `192.168.${n}.128/25`, dnsListen: `${v6}1` });
    ctx.children.push(nat.tayga, nat.dns64);
    return { hosts: [host(hs[0]!, { ipv6: `${v6}2`, gateway: `${v6}1` })], dns64: { server: `${v6}1`, prefix: NAT64_PREFIX } };
  }

  const lan = `192.168.${n}`;
  await lanWithHosts(r, hs, { v4: { prefix: lan } });
  const mode: NatMode = kind === 'hard' || kind === 'hard-upnp' ? 'edm' : 'eim';
  const upnp = kind === 'hard-upnp' ? { stunServers: INTERNET_IPS, stunPorts: [LAB_STUN_PORT, LAB_STUN_PORT + 1] } : undefined;
  await nft(r, routerRules({ wanIf: 'wan', wan, mode, blockUdp: kind === 'udp-blocked', upnp }));
  const hosts = hs.map((h, i) => host(h, { ipv4: `${lan}.${i + 2}`, gateway: `${lan}.1` }));
  if (kind !== 'hard-upnp') return { hosts };

  await ctx.labStun;
  const mu = await startMiniupnpd({ ns: r, wanIf: 'wan', lanIf: 'lan', lanSubnet: `${lan}.0/24`, stunHost: INTERNET_IPS[0] });
  ctx.children.push(mu.child);
  return { hosts, router: { ns: r, lan: `${lan}.1`, wan, descUrl: mu.descUrl(`${lan}.1`) } };
}

// ---------------------------------------------------------------------------------------------

/** Builds the internet and every site; resolves once every host reaches 203.0.113.1 (nat64: over NAT64). */
export async function createNatLab(sites: SiteSpec[]): Promise<NatLab> {
  requireNatlab(natlabTools(sites));
  installExitHandlers();
  const names = new Set<string>();
  for (const s of sites) {
    if (!/^[a-z][a-z0-9]{0,11}$/.test(s.name)) throw new Error(`createNatLab: bad site name ${JSON.stringify(s.name)} (a-z0-9, ≤ 12 chars, starting with a letter)`);
    if (names.has(s.name)) throw new Error(`createNatLab: duplicate site ${s.name}`);
    if (!KINDS.includes(s.kind)) throw new Error(`createNatLab: unknown kind ${JSON.stringify(s.kind)}`);
    names.add(s.name);
  }
  if (sites.length > 200) throw new Error('createNatLab: at most 200 sites');

  const base = newNamespaceBase();
  const ctx: Ctx = { base, inet: `${base}-inet`, made: [], children: [], port: 0 };
  let destroyed = false;
  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    await Promise.all(ctx.children.map((c) => c.kill(1000)));
    await Promise.all(ctx.made.map((ns) => deleteNamespace(ns)));
  };

  const lab: NatLab = {
    internet: { ns: ctx.inet, ips: [...INTERNET_IPS], ipv6: INTERNET_IPV6 },
    hosts: {},
    dns64: {},
    routers: {},
    destroy,
  };
  try {
    await addNs(ctx, ctx.inet, { bridge: true });
    await ipb(ctx.inet, [
      'link add br0 type bridge',
      ...INTERNET_IPS.map((ip) => `addr add ${ip}/24 dev br0`),
      `addr add ${INTERNET_IPV6}/64 dev br0 nodad`,
      'link set br0 up',
    ]);
    if (sites.some((s) => s.kind === 'hard-upnp')) {
      lab.internet.labStunPort = LAB_STUN_PORT;
      ctx.labStun = startLabStun(ctx.inet, INTERNET_IPS).then((c) => ctx.children.push(c));
      ctx.labStun.catch(() => undefined); // awaited by the sites that need it
    }
    // allSettled: on a failure, destroy() must not race sites still being built.
    const settled = await Promise.allSettled(sites.map((s, i) => buildSite(ctx, s, i + 1, `203.0.113.${FIRST_WAN_OCTET + i}`)));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    const results = settled.map((r) => (r as PromiseFulfilledResult<SiteResult>).value);
    sites.forEach((s, i) => {
      const r = results[i]!;
      lab.hosts[s.name] = r.hosts;
      if (r.router) lab.routers[s.name] = r.router;
      if (r.dns64) lab.dns64[s.name] = r.dns64;
    });
    await ctx.labStun?.catch(() => undefined); // a hard-upnp site has thrown its error already
    // Every host reaches the internet (through its NAT64 for IPv6-only hosts).
    const nat64Target = '64:ff9b::cb00:7101'; // 203.0.113.1
    await Promise.all(
      results.flatMap((r) => r.hosts).map((h) => {
        const to = h.kind === 'nat64' ? nat64Target : INTERNET_IPS[0];
        return waitFor(`${h.ns} reaches ${to}`, 15_000, async () => ((await ping(h.ns, to, { count: 1, timeoutS: 1 })).ok ? true : undefined), 50);
      }),
    );
  } catch (e) {
    await destroy().catch(() => undefined);
    throw e;
  }
  return lab;
}
