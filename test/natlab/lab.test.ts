/**
 * The NAT lab (test/natlab/lab.ts) behaves like the NATs it stands for. One lab with every kind
 * of site; Pierce's STUN server on both internet addresses (and UDP/TCP echo); a UDP agent
 * (udp-agent.ts: one socket, Pierce's STUN client) in the hosts.
 *
 * Needs root, nftables, iproute2, procps, iputils-ping, python3, coturn, miniupnpd-nftables,
 * miniupnpc, natpmpc, tayga, dnsutils (see .ci/run); every test fails, never skips, when
 * something is missing, with the install command.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { performance } from 'node:perf_hooks';
import { cleanupAll } from '../interop/lab/cleanup.ts';
import { ping } from '../interop/lab/netns.ts';
import { tcpProbe, udpProbe } from '../interop/lab/probe.ts';
import { execIn } from '../interop/lab/proc.ts';
import { startUdpAgent, stunProbe, type UdpAgent } from './agent.ts';
import { ONE_OF_EACH, createNatLab, natlabTools, type LabHost, type NatLab, type SiteSpec } from './lab.ts';
import { startInternetServers, type InternetServers } from './servers.ts';
import { NATLAB_TEST_TOOLS, natlabProblems, requireNatlab } from './tools.ts';

const SITES: SiteSpec[] = ONE_OF_EACH;
const TOOLS = [...natlabTools(SITES), ...NATLAB_TEST_TOOLS];
/** 203.0.113.1 and .2 through the NAT64 prefix. */
const NAT64_SERVERS = ['64:ff9b::cb00:7101', '64:ff9b::cb00:7102'] as const;

let lab: NatLab | undefined;
let servers: InternetServers | undefined;
let buildMs = 0;

beforeAll(async () => {
  if (natlabProblems(TOOLS).length > 0) return; // every test fails in beforeEach with the install command
  const t0 = performance.now();
  lab = await createNatLab(SITES);
  buildMs = performance.now() - t0;
  servers = await startInternetServers(lab);
  console.log(`natlab: ${SITES.length} sites built in ${Math.round(buildMs)} ms; test servers up ${Math.round(performance.now() - t0 - buildMs)} ms later`);
}, 90_000);

afterAll(async () => {
  const t0 = performance.now();
  await lab?.destroy();
  await cleanupAll(); // agents and anything else a failed test left
  console.log(`natlab: torn down in ${Math.round(performance.now() - t0)} ms`);
}, 60_000);

beforeEach(() => {
  requireNatlab(TOOLS);
  if (!lab || !servers) throw new Error('NAT lab was not built (see beforeAll)');
});

const L = (): NatLab => lab!;
const S = (): InternetServers => servers!;
const host = (site: string, i = 0): LabHost => L().hosts[site]![i]!;
const allHosts = (): LabHost[] => Object.values(L().hosts).flat();

/** Agents started by a test, closed after it. */
const agents: UdpAgent[] = [];
async function agent(...a: Parameters<typeof startUdpAgent>): Promise<UdpAgent> {
  const ag = await startUdpAgent(...a);
  agents.push(ag);
  return ag;
}
async function closeAgents(): Promise<void> {
  await Promise.all(agents.splice(0).map((a) => a.close()));
}

describe('NAT lab', () => {
  it('builds all kinds of site fast', () => {
    expect(buildMs).toBeLessThan(30_000);
    expect(Object.keys(L().hosts).sort()).toEqual(SITES.map((s) => s.name).sort());
    expect(L().hosts.lan).toHaveLength(2);
    expect(L().hosts.cg).toHaveLength(2);
    expect(L().routers.up?.lan).toBe(host('up').gateway);
    expect(L().dns64.n64).toEqual({ server: host('n64').gateway, prefix: '64:ff9b::/96' });
  });

  it('every IPv4 host reaches both internet addresses: ping, UDP and TCP (udp-blocked: no UDP)', async () => {
    const rows = await Promise.all(
      allHosts()
        .filter((h) => h.kind !== 'nat64')
        .flatMap((h) =>
          L().internet.ips.map(async (ip) => {
            const [p, u, t] = await Promise.all([
              ping(h.ns, ip, { count: 1, timeoutS: 2 }),
              udpProbe(h.ns, ip, S().echoPort, { timeoutS: 2 }),
              tcpProbe(h.ns, ip, S().echoPort, { timeoutS: 3 }),
            ]);
            return `${h.site}/${h.ns.slice(-2)} -> ${ip}: ping ${p.ok} udp ${u.result} tcp ${t.connect}`;
          }),
        ),
    );
    const want = allHosts()
      .filter((h) => h.kind !== 'nat64')
      .flatMap((h) => L().internet.ips.map((ip) => `${h.site}/${h.ns.slice(-2)} -> ${ip}: ping true udp ${h.kind === 'udp-blocked' ? 'timeout' : 'reply'} tcp connected`));
    expect(rows).toEqual(want);
  }, 45_000);

  it('public: STUN sees the host itself; easy: one mapping for both servers, source port kept; hard: a mapping per server', async () => {
    const sites = ['pub', 'e1', 'e2', 'h1', 'h2', 'up', 'lan'];
    const probes = await Promise.all(sites.map((s) => stunProbe(host(s).ns, S().stun)));
    const got = Object.fromEntries(sites.map((s, i) => [s, probes[i]!]));
    for (const s of sites) {
      const { local, stun } = got[s]!;
      const ips = stun.map((a) => a.mapped?.split(':')[0]);
      const ports = stun.map((a) => Number(a.mapped?.split(':')[1]));
      expect(ips, `${s}: ${JSON.stringify(stun)}`).toEqual([host(s).wan, host(s).wan]);
      if (s === 'pub' || s.startsWith('e') || s === 'lan') {
        expect(ports, `${s} (easy): ${JSON.stringify(got[s])}`).toEqual([local.port, local.port]);
      } else {
        expect(ports[0], `${s} (hard): ${JSON.stringify(got[s])}`).not.toBe(ports[1]);
      }
    }
  }, 30_000);

  it('routers drop unsolicited inbound: a stranger cannot reach an easy mapping until the host has sent to it (hole punching)', async () => {
    const h = host('e1');
    const a = await agent(h.ns, [S().stun[0]]);
    const mapped = a.stun[0]!.mapped!;
    const stranger = await agent(L().internet.ns, [], { bind: L().internet.ips[1] });
    await stranger.send(mapped, 'unsolicited', 3);
    await a.send(`${L().internet.ips[1]}:${stranger.local.port}`, 'punch', 1);
    await stranger.waitRecv((x) => x.data === 'punch', 3000);
    await stranger.send(mapped, 'solicited', 3);
    await a.waitRecv((x) => x.data === 'solicited', 3000);
    expect(a.received.map((x) => x.data)).not.toContain('unsolicited');
    await closeAgents();
  }, 20_000);

  it('udp-blocked: no STUN answer, TCP works', async () => {
    const h = host('blk');
    const p = await stunProbe(h.ns, S().stun, { timeoutMs: 1500 });
    expect(p.stun.map((a) => a.mapped)).toEqual([null, null]);
    expect((await tcpProbe(h.ns, L().internet.ips[0], S().echoPort, { timeoutS: 3 })).connect).toBe('connected');
  }, 30_000);

  describe('hard-upnp', () => {
    it('NAT-PMP (natpmpc) and UPnP IGD (upnpc) map a port, and UDP from the internet reaches the host through the fully-random NAT', async () => {
      const h = host('up');
      const r = L().routers.up!;
      const from = await agent(L().internet.ns, [], { bind: L().internet.ips[0] });
      // Control: an unmapped port is closed.
      const closed = await agent(h.ns, [], { port: 41002 });
      await from.send(`${r.wan}:41002`, 'unmapped', 3);

      const a = await agent(h.ns, [], { port: 41000 });
      const pmp = await execIn(h.ns, 'natpmpc', ['-g', r.lan, '-a', '41000', '41000', 'udp', '60'], { timeoutMs: 15_000 });
      const m = pmp.stdout.match(/Mapped public port (\d+) protocol UDP to local port 41000/);
      expect(m, pmp.stdout + pmp.stderr).not.toBeNull();
      expect(pmp.stdout).toContain(`Public IP address : ${r.wan}`);
      await from.send(`${r.wan}:${m![1]}`, 'via-natpmp', 3);
      expect((await a.waitRecv((x) => x.data === 'via-natpmp', 5000)).from).toBe(`${L().internet.ips[0]}:${from.local.port}`);

      const b = await agent(h.ns, [], { port: 41001 });
      const igd = await execIn(h.ns, 'upnpc', ['-i', '-u', r.descUrl, '-a', h.ipv4!, '41001', '41001', 'UDP', '120'], { timeoutMs: 15_000 });
      expect(igd.stdout, igd.stdout + igd.stderr).toMatch(new RegExp(`external ${r.wan.replace(/\./g, '\\.')}:41001 UDP is redirected to internal ${h.ipv4!.replace(/\./g, '\\.')}:41001`));
      await from.send(`${r.wan}:41001`, 'via-igd', 3);
      await b.waitRecv((x) => x.data === 'via-igd', 5000);

      expect(closed.received).toEqual([]);
      await closeAgents();
    }, 40_000);
  });

  describe('carrier-grade NAT', () => {
    /** Both hosts STUN, then each sends to the other's mapped address; returns what arrived. */
    async function punch(site: string, port?: number): Promise<{ m1: string; m2: string; got1: string[]; got2: string[] }> {
      // One after the other: with the same port, the second must find the first's mapping in place.
      const a1 = await agent(host(site, 0).ns, [S().stun[0]], { port });
      const a2 = await agent(host(site, 1).ns, [S().stun[0]], { port });
      const m1 = a1.stun[0]!.mapped!;
      const m2 = a2.stun[0]!.mapped!;
      expect([m1.split(':')[0], m2.split(':')[0]]).toEqual([host(site).wan, host(site).wan]);
      await a1.send(m2, 'punch-from-1', 2); // host 1 opens its home NAT towards host 2's public mapping
      await a2.send(m1, 'hello-from-2', 3);
      const ok1 = await a1.waitRecv((x) => x.data === 'hello-from-2', 2500).then(
        () => true,
        () => false,
      );
      if (ok1) {
        await a1.send(m2, 'hello-from-1', 3);
        await a2.waitRecv((x) => x.data === 'hello-from-1', 2500).catch(() => undefined);
      }
      const res = { m1, m2, got1: a1.received.map((x) => `${x.data}@${x.from}`), got2: a2.received.map((x) => `${x.data}@${x.from}`) };
      await closeAgents();
      return res;
    }

    it('cgnat: no hairpinning: host 1 never hears host 2 through the carrier address', async () => {
      const r = await punch('cg');
      expect(r.got1).toEqual([]);
      expect(r.got2).toEqual([]);
    }, 30_000);

    it('cgnat-hairpin: host 2 reaches host 1 at its STUN-mapped address, seen from host 2\'s mapped address', async () => {
      const r = await punch('cgh', 41641); // both on the same port: the carrier gives the second another one
      expect(r.m1).not.toBe(r.m2);
      expect(r.got1).toContain(`hello-from-2@${r.m2}`);
      expect(r.got2).toContain(`hello-from-1@${r.m1}`);
    }, 30_000);
  });

  it('easy NAT with two hosts on the same port (lan): each gets one endpoint-independent mapping of its own', async () => {
    const [a, b] = L().hosts.lan!;
    const pa = await stunProbe(a!.ns, S().stun, { port: 41641 });
    const pb = await stunProbe(b!.ns, S().stun, { port: 41641 });
    const wan = a!.wan;
    expect(pa.stun.map((x) => x.mapped)).toEqual([`${wan}:41641`, `${wan}:41641`]);
    const mb = pb.stun.map((x) => x.mapped);
    expect(mb[0], JSON.stringify(pb)).toMatch(new RegExp(`^${wan.replace(/\./g, '\\.')}:\\d+$`));
    expect(mb[1]).toBe(mb[0]);
    expect(mb[0]).not.toBe(`${wan}:41641`);
  }, 20_000);

  it('lan: the two hosts ping each other on their private addresses', async () => {
    const [a, b] = L().hosts.lan!;
    const [ab, ba] = await Promise.all([ping(a!.ns, b!.ipv4!, { count: 1 }), ping(b!.ns, a!.ipv4!, { count: 1 })]);
    expect([ab.ok, ba.ok]).toEqual([true, true]);
    expect(b!.ipv4).toMatch(/^192\.168\./);
  }, 20_000);

  describe('nat64', () => {
    it('IPv6-only host: no IPv4 at all; DNS64 answers ipv4only.arpa; UDP, TCP and STUN through 64:ff9b::/96', async () => {
      const h = host('n64');
      const { server, prefix } = L().dns64.n64!;
      expect(prefix).toBe('64:ff9b::/96');
      const v4addr = await execIn(h.ns, 'ip', ['-4', '-o', 'addr', 'show', 'scope', 'global']);
      const v4route = await execIn(h.ns, 'ip', ['-4', 'route', 'show', 'table', 'main']);
      expect(v4addr.stdout + v4route.stdout).toBe('');
      expect((await ping(h.ns, L().internet.ips[0], { count: 1, timeoutS: 1 })).ok).toBe(false);

      const dig = await execIn(h.ns, 'dig', ['+short', '+time=2', '+tries=2', `@${server}`, 'ipv4only.arpa', 'AAAA'], { timeoutMs: 10_000 });
      expect(dig.stdout.trim().split('\n').sort()).toEqual(['64:ff9b::c000:aa', '64:ff9b::c000:ab']);

      const [u, t, s] = await Promise.all([
        udpProbe(h.ns, NAT64_SERVERS[0], S().echoPort, { timeoutS: 3 }),
        tcpProbe(h.ns, NAT64_SERVERS[0], S().echoPort, { timeoutS: 3 }),
        stunProbe(h.ns, NAT64_SERVERS.map((a) => `[${a}]:${S().stunPort}`)),
      ]);
      expect(u.result).toBe('reply');
      expect(t.connect).toBe('connected');
      // The STUN servers see the router's WAN, one mapping for both (tayga + EIM masquerade).
      const mapped = s.stun.map((a) => a.mapped);
      expect(mapped[0], JSON.stringify(s)).toMatch(new RegExp(`^${h.wan.replace(/\./g, '\\.')}:\\d+$`));
      expect(mapped[1]).toBe(mapped[0]);
    }, 30_000);
  });
});
