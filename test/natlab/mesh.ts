/**
 * A Pierce mesh inside the NAT lab: `pierce control` and two `pierce relay`s (regions r1 and
 * r2, each answering STUN on its own internet address, so a node sees whether its NAT maps per
 * destination) in the internet namespace, and one `pierce up` per lab host. Everyone reaches
 * everyone (control's default policy). Used by the matrix test and the NAT traversal bench.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PIERCE_MJS, execIn, run, spawnPierce, tempPath, waitFor, type ChildHandle, type ExecResult } from '../interop/lab.ts';
import { apiRequest } from '../../gateway/src/node/api.ts';
import type { EngineStatus } from '../../src/engine/types.ts';
import type { LabHost, NatLab } from './lab.ts';

export const CONTROL_PORT = 8080;
export const RELAY_PORT = 8443;
export const STUN_PORT = 3478;

export interface MeshNodeSpec {
  name: string;
  host: LabHost;
  /** Extra `pierce up` flags. */
  args?: string[];
}

export interface NatMeshNode extends MeshNodeSpec {
  sock: string;
  state: string;
  proc: ChildHandle;
  ip: string;
}

export interface NatMesh {
  controlUrl: string;
  nodes: Map<string, NatMeshNode>;
  node(name: string): NatMeshNode;
  status(name: string): Promise<EngineStatus>;
  /** One disco ping over the current path (API); null on timeout. */
  ping(from: string, to: string, timeoutMs?: number): Promise<{ path: string; ms: number; direct: boolean } | null>;
  cli(from: string, args: string[], timeoutMs?: number): Promise<ExecResult>;
  /** The node's log lines about paths (direct, birthday, portmap, NAT64), for failure messages. */
  pathLog(name: string, lines?: number): string;
  /** Resolves once the node is ready (peers, home relay, public endpoints). */
  ready(name: string): Promise<unknown>;
  /** Starts one more node (or restarts a stopped one, same identity). */
  startNode(spec: MeshNodeSpec): Promise<NatMeshNode>;
  stopNode(name: string): Promise<void>;
}

function relayFlag(ip: string): string {
  return `http://${ip}:${RELAY_PORT},stun=${ip}:${STUN_PORT}`;
}

export async function startNatMesh(lab: NatLab, specs: MeshNodeSpec[]): Promise<NatMesh> {
  const inet = lab.internet.ns;
  const [ip1, ip2] = lab.internet.ips;
  const db = tempPath('natlab-control.db');
  const relays = [ip1, ip2].map((ip) => spawnPierce(inet, ['relay', '--listen', `${ip}:${RELAY_PORT}`, '--stun', `${ip}:${STUN_PORT}`], `pierce relay ${ip}`));
  const apikey = await run(process.execPath, [PIERCE_MJS, 'control', 'apikey', '--db', db], { timeoutMs: 30_000 });
  await Promise.all(relays.map((r) => r.waitForLine(/relay listening on/, 30_000)));
  const control = spawnPierce(inet, ['control', '--listen', `${ip1}:${CONTROL_PORT}`, '--db', db, '--relay', relayFlag(ip1), '--relay', relayFlag(ip2)], 'pierce control');
  const controlUrl = (await control.waitForLine(/listening on (\S+)/, 30_000))[1]!;
  const env = { PIERCE_CONTROL: controlUrl, PIERCE_API_KEY: apikey.stdout.trim() };
  const admin = async (...args: string[]): Promise<string> => {
    const r = await execIn(inet, process.execPath, [PIERCE_MJS, 'admin', ...args], { check: false, timeoutMs: 30_000, env });
    if (r.code !== 0) throw new Error(`pierce admin ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await admin('users', 'create', 'lab@example.com');
  const authKey = (await admin('keys', 'create', '--user', 'lab@example.com', '--reusable')).match(/pak_\S+/)![0];
  const dir = tempPath('natlab-nodes');
  mkdirSync(dir, { mode: 0o700 });
  const nodes = new Map<string, NatMeshNode>();

  const startNode = async (spec: MeshNodeSpec): Promise<NatMeshNode> => {
    const state = join(dir, spec.name); // a restart keeps the identity (and the name)
    const sock = join(dir, `${spec.name}.sock`);
    const dns = lab.dns64[spec.host.site];
    const proc = spawnPierce(
      spec.host.ns,
      ['up', '--control', controlUrl, '--authkey', authKey, '--hostname', spec.name, '--state', state, '--socket', sock, ...(process.env['NATLAB_QUIET'] ? [] : ['--verbose']), ...(dns ? ['--dns', dns.server] : []), ...(spec.args ?? [])],
      `pierce up ${spec.name}@${spec.host.ns}`,
    );
    const m = await proc.waitForLine(new RegExp(`pierce up: ${spec.name} (\\d+\\.\\d+\\.\\d+\\.\\d+)/32 \\S+ running`), 60_000);
    const n: NatMeshNode = { ...spec, sock, state, proc, ip: m[1]! };
    nodes.set(spec.name, n);
    return n;
  };
  await Promise.all(specs.map(startNode));

  const node = (name: string): NatMeshNode => {
    const n = nodes.get(name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  };
  const status = async (name: string): Promise<EngineStatus> => {
    const r = await apiRequest(node(name).sock, 'GET', '/status', 5000);
    if (r.status !== 200) throw new Error(`status of ${name}: HTTP ${r.status}`);
    return r.body as unknown as EngineStatus;
  };
  // Every node knows every other, has a home relay, and has STUNned its endpoints.
  const ready = (name: string): Promise<unknown> =>
    waitFor(`${name}: all peers, a home relay and its public endpoints`, 60_000, async () => {
      const n = node(name);
      const s = await status(name);
      const ok =
        s.peers.length === nodes.size - 1 &&
        s.relays.some((r) => r.home && r.connected) &&
        (n.args?.includes('--relay-only') || n.host.kind === 'udp-blocked' || (s.direct?.endpoints ?? []).some((e) => e.startsWith('203.0.113.')));
      return ok ? true : undefined;
    }, 200);
  await Promise.all([...nodes.keys()].map(ready));
  return {
    controlUrl,
    nodes,
    node,
    status,
    async ping(from, to, timeoutMs = 3000) {
      const r = await apiRequest(node(from).sock, 'POST', `/ping?peer=${encodeURIComponent(to)}&timeout=${timeoutMs}`, timeoutMs + 5000);
      if (r.status !== 200) return null;
      return { path: String(r.body['path']), ms: Number(r.body['ms']), direct: r.body['direct'] === true };
    },
    cli: (from, args, timeoutMs = 60_000) => execIn(node(from).host.ns, process.execPath, [PIERCE_MJS, ...args, '--socket', node(from).sock], { check: false, timeoutMs }),
    ready,
    pathLog(name, lines = 40) {
      const n = nodes.get(name);
      if (!n) return `(no node ${name})`;
      return n.proc
        .stderrLines()
        .filter((l) => /direct|birthday|portmap|NAT64|disco/.test(l))
        .slice(-lines)
        .map((l) => `  ${name}| ${l}`)
        .join('\n');
    },
    startNode,
    async stopNode(name) {
      const n = node(name);
      n.proc.signal('SIGTERM');
      await n.proc.waitForExit(10_000).catch(() => n.proc.signal('SIGKILL'));
      nodes.delete(name);
    },
  };
}

/**
 * Pings `to` from `from` about every 500 ms (each ping also drives discovery) until the path is
 * direct or `timeoutMs` passes. Returns the time to the direct path (ms) and the path, or null.
 */
export async function timeToDirect(mesh: NatMesh, from: string, to: string, timeoutMs: number): Promise<{ ms: number; path: string } | null> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    const r = await mesh.ping(from, to, 1000);
    if (r?.direct) return { ms: performance.now() - t0, path: r.path };
    // Status can show the upgrade before the next ping.
    const st = await mesh.status(from);
    const p = st.peers.find((x) => x.name === to);
    if (p?.direct) return { ms: performance.now() - t0, path: p.path };
    await new Promise((r) => setTimeout(r, 50));
  }
  return null;
}
