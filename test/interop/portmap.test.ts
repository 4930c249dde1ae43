/**
 * Port mapping against a real miniupnpd (Debian miniupnpd-nftables 2.3.1: NAT-PMP, PCP, UPnP IGD)
 * in the NAT lab (test/natlab): a 'hard-upnp' router (endpoint-dependent `masquerade
 * fully-random` NAT with miniupnpd on its LAN), an 'easy' router without any port-mapping
 * service, and a public host.
 *
 * Pierce's PortMapper runs inside the host namespace (a small agent script run with tsx, one
 * process per mapping); a UDP agent in the internet namespace sends to the external ip:port it
 * reports, and the datagram must reach the host's socket. natpmpc and upnpc (miniupnpc) are the
 * reference clients: natpmpc for the public address, `upnpc -l` for miniupnpd's own list of
 * redirections (NAT-PMP and PCP mappings appear there too, as "NAT-PMP <port> udp" and
 * "PCP MAP <nonce>"). Release is proven twice: the entry is gone from that list, and a datagram
 * from a new source port no longer arrives (the old source's conntrack entry would still forward).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createNatLab, type LabHost, type NatLab } from '../natlab/lab.ts';
import { startUdpAgent, TSX_LOADER, type UdpAgent } from '../natlab/agent.ts';
import { requireNatlab } from '../natlab/tools.ts';
import { PIERCE_MJS } from './lab/netstack.ts';
import { execIn, sleep, spawnIn, type ChildHandle } from './lab/proc.ts';
import { labTempDir } from './lab/registry.ts';

const MAPPER_TS = fileURLToPath(new URL('../../gateway/src/portmap/mapper.ts', import.meta.url));

/** The host-side agent: one UDP socket, one PortMapper for its port, JSON lines on stdout. SIGUSR1 closes the mapper. */
const AGENT_SOURCE = `
import { createSocket } from 'node:dgram';
const { PortMapper } = await import(process.env.PIERCE_MAPPER);
const arg = (n) => { const i = process.argv.indexOf(n); return i < 0 ? undefined : process.argv[i + 1]; };
const print = (o) => void process.stdout.write(JSON.stringify(o) + '\\n');
const sock = createSocket('udp4');
await new Promise((r) => sock.bind(0, '0.0.0.0', r));
sock.on('message', (m, r) => print({ type: 'recv', from: r.address + ':' + r.port, data: m.toString() }));
const protocols = arg('--protocols')?.split(',');
const mapper = new PortMapper({
  localPort: sock.address().port,
  gateway: arg('--gateway'),
  ...(protocols ? { protocols } : {}),
  lifetimeSec: Number(arg('--lifetime') ?? 7200),
  onChange: (m) => print({ type: 'change', mapping: m }),
  onRenew: (m) => print({ type: 'renew', mapping: m }),
  log: (line) => print({ type: 'log', line }),
});
print({ type: 'ready', port: sock.address().port });
process.on('SIGUSR1', () => void mapper.close().then(() => print({ type: 'closed' })));
process.on('SIGTERM', () => void mapper.close().finally(() => { sock.close(); process.exit(0); }));
const t0 = performance.now();
print({ type: 'started', mapping: await mapper.start(), ms: Math.round(performance.now() - t0) });
`;

interface Mapping {
  protocol: 'pmp' | 'pcp' | 'upnp';
  externalAddress: string;
  externalPort: number;
  external: string;
  internalPort: number;
  lifetimeSec: number;
}

interface Agent {
  child: ChildHandle;
  port: number;
  mapping: Mapping | null;
  ms: number;
}

let lab: NatLab;
let agentPath: string;
let sender: UdpAgent;
let upHost: LabHost;
let plainHost: LabHost;
let publicHost: LabHost;
const agents: ChildHandle[] = [];

beforeAll(async () => {
  requireNatlab([
    ['natpmpc', 'natpmpc'],
    ['upnpc', 'miniupnpc'],
  ]);
  lab = await createNatLab([
    { name: 'up', kind: 'hard-upnp' },
    { name: 'plain', kind: 'easy' },
    { name: 'pub', kind: 'public' },
  ]);
  upHost = lab.hosts.up![0]!;
  plainHost = lab.hosts.plain![0]!;
  publicHost = lab.hosts.pub![0]!;
  agentPath = join(labTempDir(), 'portmap-agent.mjs');
  writeFileSync(agentPath, AGENT_SOURCE);
  sender = await startUdpAgent(lab.internet.ns, [], { bind: lab.internet.ips[1] });
}, 90_000);

afterAll(async () => {
  await Promise.all(agents.map((a) => a.kill(1000)));
  await sender?.close();
  await lab?.destroy();
});

async function startAgent(host: LabHost, o: { protocols?: string; lifetime?: number } = {}): Promise<Agent> {
  const args = ['--import', TSX_LOADER, agentPath, '--gateway', host.gateway!, '--lifetime', String(o.lifetime ?? 7200)];
  if (o.protocols) args.push('--protocols', o.protocols);
  const child = spawnIn(host.ns, process.execPath, args, { env: { PIERCE_MAPPER: MAPPER_TS }, name: `portmap-agent@${host.site}` });
  agents.push(child);
  const ready = await child.waitForLine(/^\{"type":"ready","port":(\d+)\}$/, 15_000);
  const started = await child.waitForLine(/^(\{"type":"started".*)$/, 15_000);
  const s = JSON.parse(started[1]!) as { mapping: Mapping | null; ms: number };
  return { child, port: Number(ready[1]), mapping: s.mapping, ms: s.ms };
}

/** miniupnpd's redirections as upnpc lists them. */
async function upnpcList(host: LabHost): Promise<{ externalPort: number; client: string; description: string; lease: number }[]> {
  // -u: the description URL directly (no SSDP wait); -i: use the IGD although its external address looks private.
  const r = await execIn(host.ns, 'upnpc', ['-u', lab.routers[host.site]!.descUrl, '-i', '-l'], { check: false, timeoutMs: 15_000 });
  return [...r.stdout.matchAll(/^\s*\d+\s+UDP\s+(\d+)->(\S+)\s+'([^']*)'\s+'[^']*'\s+(\d+)/gm)].map((m) => ({
    externalPort: Number(m[1]),
    client: m[2]!,
    description: m[3]!,
    lease: Number(m[4]),
  }));
}

async function natpmpcPublicAddress(host: LabHost): Promise<string | undefined> {
  const r = await execIn(host.ns, 'natpmpc', ['-g', host.gateway!], { check: false, timeoutMs: 15_000 });
  return /Public IP address : (\S+)/.exec(r.stdout)?.[1];
}

let token = 0;
/** Sends a fresh token to `to` from `from` and waits for the agent to receive it. */
async function delivered(agent: Agent, to: string, from: UdpAgent = sender, timeoutMs = 5000): Promise<boolean> {
  const data = `portmap-${process.pid}-${++token}`;
  const mark = agent.child.lineCount();
  await from.send(to, data, 3);
  return agent.child
    .waitForLine(new RegExp(`"type":"recv".*"data":"${data}"`), timeoutMs, { from: mark })
    .then(() => true)
    .catch(() => false);
}

/** Closes the mapper (SIGUSR1) and waits for its "closed" line and onChange(null). */
async function release(agent: Agent): Promise<void> {
  const mark = agent.child.lineCount();
  agent.child.signal('SIGUSR1');
  await agent.child.waitForLine(/^\{"type":"closed"\}$/, 10_000, { from: mark });
  await agent.child.waitForLine(/^\{"type":"change","mapping":null\}$/, 1000, { from: mark });
}

/** After release: gone from miniupnpd's list, and a new source's datagram does not arrive. */
async function expectReleased(agent: Agent, m: Mapping): Promise<void> {
  expect((await upnpcList(upHost)).some((e) => e.externalPort === m.externalPort)).toBe(false);
  const fresh = await startUdpAgent(lab.internet.ns, [], { bind: lab.internet.ips[1] });
  try {
    expect(await delivered(agent, m.external, fresh, 1500)).toBe(false);
  } finally {
    await fresh.close();
  }
}

const DESCRIPTION = { pmp: /^NAT-PMP \d+ udp$/, pcp: /^PCP MAP [0-9a-f]{24}$/, upnp: /^pierce$/ } as const;

describe('port mapping against miniupnpd (NAT lab)', () => {
  it('automatic order: NAT-PMP first; the reported ip:port reaches the socket; close releases it', async () => {
    const a = await startAgent(upHost);
    const m = a.mapping!;
    expect(m).toMatchObject({ protocol: 'pmp', externalAddress: upHost.wan, internalPort: a.port, lifetimeSec: 7200 });
    expect(await natpmpcPublicAddress(upHost)).toBe(m.externalAddress);
    const entry = (await upnpcList(upHost)).find((e) => e.externalPort === m.externalPort);
    expect(entry).toMatchObject({ client: `${upHost.ipv4}:${a.port}` });
    expect(entry!.description).toMatch(DESCRIPTION.pmp);
    expect(await delivered(a, m.external)).toBe(true);
    await release(a);
    await expectReleased(a, m);
    await a.child.kill();
  }, 60_000);

  it.each(['pmp', 'pcp', 'upnp'] as const)('forced %s: mapped, reachable from the internet, listed by upnpc, released on close', async (proto) => {
    const a = await startAgent(upHost, { protocols: proto });
    const m = a.mapping;
    expect(m, a.child.output()).not.toBeNull();
    expect(m).toMatchObject({ protocol: proto, externalAddress: upHost.wan, internalPort: a.port, lifetimeSec: 7200 });
    const entry = (await upnpcList(upHost)).find((e) => e.externalPort === m!.externalPort);
    expect(entry, JSON.stringify(await upnpcList(upHost))).toBeDefined();
    expect(entry!.client).toBe(`${upHost.ipv4}:${a.port}`);
    expect(entry!.description).toMatch(DESCRIPTION[proto]);
    expect(entry!.lease).toBeGreaterThan(7000);
    expect(await delivered(a, m!.external)).toBe(true);
    await release(a);
    await expectReleased(a, m!);
    await a.child.kill();
  }, 60_000);

  it.each(['pmp', 'upnp'] as const)('renewal (%s, 4 s lifetime): renewed every ~2 s, still mapped and reachable after 9 s, while a reference client\'s unrenewed one expired', async (proto) => {
    const a = await startAgent(upHost, { protocols: proto, lifetime: 4 });
    const m = a.mapping!;
    expect(m).toMatchObject({ protocol: proto, lifetimeSec: 4 });
    // A control mapping made by the reference client with the same 4 s lifetime and never renewed.
    const control = 20_000 + token++;
    const ref =
      proto === 'pmp'
        ? await execIn(upHost.ns, 'natpmpc', ['-g', upHost.gateway!, '-a', String(control), String(control), 'udp', '4'], { check: false })
        : await execIn(upHost.ns, 'upnpc', ['-u', lab.routers.up!.descUrl, '-i', '-e', 'control', '-a', upHost.ipv4!, String(control), String(control), 'UDP', '4'], { check: false });
    expect((await upnpcList(upHost)).some((e) => e.externalPort === control), ref.stdout).toBe(true);
    await sleep(9000);
    const renewals = a.child.stdoutLines().filter((l) => l.startsWith('{"type":"renew"'));
    expect(renewals.length).toBeGreaterThanOrEqual(3);
    expect(renewals.every((l) => (JSON.parse(l) as { mapping: Mapping }).mapping.external === m.external)).toBe(true);
    // miniupnpd drops a lease when it runs out (the control mapping is gone), so the entry being
    // there after 9 s is the renewals' doing.
    const list = await upnpcList(upHost);
    expect(list.some((e) => e.externalPort === control)).toBe(false);
    const entry = list.find((e) => e.externalPort === m.externalPort);
    expect(entry).toBeDefined();
    expect(entry!.lease).toBeLessThanOrEqual(4);
    expect(await delivered(a, m.external)).toBe(true);
    // Only one change (the first mapping): renewals keep the same ip:port.
    expect(a.child.stdoutLines().filter((l) => l.startsWith('{"type":"change"'))).toHaveLength(1);
    await release(a);
    await expectReleased(a, m);
    await a.child.kill();
  }, 60_000);

  it('PCP: miniupnpd raises a short lifetime to its 120 s minimum, and the mapper uses the granted one', async () => {
    const a = await startAgent(upHost, { protocols: 'pcp', lifetime: 4 });
    expect(a.mapping).toMatchObject({ protocol: 'pcp', lifetimeSec: 120 });
    await release(a);
    await expectReleased(a, a.mapping!);
    await a.child.kill();
  }, 60_000);

  it('a router without any port-mapping service: no mapping, quickly', async () => {
    const a = await startAgent(plainHost);
    expect(a.mapping).toBeNull();
    expect(a.ms).toBeLessThan(1500);
    expect(a.child.stdoutLines().some((l) => l.startsWith('{"type":"change"'))).toBe(false);
    await release(a).catch(() => undefined); // nothing to release: no onChange(null) either
    expect(a.child.stdoutLines().some((l) => l.startsWith('{"type":"change"'))).toBe(false);
    await a.child.kill();
  }, 30_000);

  it('pierce netcheck --json: port mapping and hairpinning per site', async () => {
    const stun = lab.internet.ips.flatMap((ip) => ['--stun', `${ip}:${lab.internet.labStunPort!}`]);
    const netcheck = async (host: LabHost, json = true): Promise<string> => {
      const r = await execIn(host.ns, process.execPath, [PIERCE_MJS, 'netcheck', ...stun, '--dns', '127.0.0.1:9', '--timeout', '2000', ...(json ? ['--json'] : [])], { timeoutMs: 30_000 });
      return r.stdout;
    };
    type Report = { ipv4: boolean; globalV4: string | null; portMapping: { pmp: boolean; pcp: boolean; upnp: boolean } | null; hairpinning: boolean | null };
    const up = JSON.parse(await netcheck(upHost)) as Report;
    expect(up.portMapping).toEqual({ pmp: true, pcp: true, upnp: true });
    expect(up.globalV4?.startsWith(`${upHost.wan}:`)).toBe(true);
    expect(up.hairpinning).toBe(false); // Linux NAT does not hairpin
    const plain = JSON.parse(await netcheck(plainHost)) as Report;
    expect(plain.portMapping).toEqual({ pmp: false, pcp: false, upnp: false });
    expect(plain.hairpinning).toBe(false);
    const pub = JSON.parse(await netcheck(publicHost)) as Report;
    expect(pub.ipv4).toBe(true);
    expect(pub.hairpinning).toBeNull(); // the public address is its own: no NAT to hairpin
    const human = await netcheck(upHost, false);
    expect(human).toContain('port mapping: NAT-PMP yes, PCP yes, UPnP yes');
    expect(human).toContain('hairpinning: no');
  }, 60_000);
});
