/**
 * A whole mesh, end to end, with real processes only: `pierce control` and `pierce relay` in the
 * hub of a star of network namespaces, and three `pierce up` nodes, one per host namespace,
 * tagged with the project's example policy (test/fixtures/example-policy.hujson):
 *
 *   hub  10.201.0.1   pierce control :8080 (--policy example) + pierce relay :8443 (region r1)
 *   h0   10.201.0.2   "trusted"    tag:trusted    sshd 127.0.0.1:22, http 127.0.0.1:8080
 *   h1   10.201.0.3   "server"     tag:server     sshd 127.0.0.1:22
 *   h2   10.201.0.4   "untrusted"  tag:untrusted
 *
 * Every node runs `pierce up --forward …` with its own state directory and API socket (a file,
 * so the CLI reaches it from any namespace; it is still run in the node's own). Nodes only know
 * the relay, so all mesh traffic goes through it. What is proved:
 *   - `pierce ping` in all six directions: "untrusted" runs `--relay-only`, so its pings go via
 *     relay(r1); trusted and server share a bridge and upgrade to a direct UDP path;
 *   - OpenSSH's ssh with `ProxyCommand pierce nc …` runs a command on a peer's sshd, and scp of
 *     50 MB arrives intact;
 *   - the example policy: untrusted cannot open trusted:22 (the trusted node's inbound filter
 *     drops the SYN, counted in `dropped.filter`) but reaches trusted:8080; a policy set live
 *     with `pierce admin policy set` flips both on the running nodes;
 *   - faults: a relay restart (sessions and pings resume), a node restart with the same state
 *     (same tailnet IP, reachable again), an expired node (dropped from the peers' maps), and a
 *     dead control server (an open ssh session and new pings keep working).
 *
 * The tests of this file share one mesh and run in order. Nothing asserts on timing: waits are
 * polls with a bound.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  PIERCE_MJS,
  TOOLS,
  cleanupAll,
  createStar,
  execIn,
  labProblems,
  makeSshKeys,
  requireLab,
  requireTools,
  run,
  scp,
  sha256File,
  spawnIn,
  spawnPierce,
  sshExec,
  sshOptions,
  startSshd,
  tempPath,
  waitFor,
  writeRandomFile,
  writeTempFile,
  type ChildHandle,
  type ExecResult,
  type SshKeys,
  type SshRun,
  type Sshd,
  type Star,
} from './lab.ts';
import { apiRequest } from '../../gateway/src/node/api.ts';
import type { EngineStatus } from '../../src/engine/types.ts';

const EXAMPLE_POLICY = fileURLToPath(new URL('../fixtures/example-policy.hujson', import.meta.url));
const OWNER = 'SignorMercurio@github';
const CONTROL_PORT = 8080;
const RELAY_PORT = 8443;
const MESH_TOOLS = [TOOLS.ssh, TOOLS.sshd, TOOLS.scp, TOOLS.sshKeygen, TOOLS.python3];

type Role = 'trusted' | 'server' | 'untrusted';
const ROLES: readonly Role[] = ['trusted', 'server', 'untrusted'];

interface MeshNode {
  role: Role;
  ns: string;
  state: string;
  sock: string;
  authKey: string;
  forwards: string[];
  proc: ChildHandle;
  /** Tailnet IPv4, from the "running" line. */
  ip: string;
}

interface Mesh {
  star: Star;
  hub: string;
  controlUrl: string;
  relayUrl: string;
  db: string;
  env: Record<string, string>;
  relay: ChildHandle;
  control: ChildHandle;
  nodes: Record<Role, MeshNode>;
  sshKeys: SshKeys;
  /** sshd behind the trusted node's --forward 22. */
  sshdTrusted: Sshd;
  /** Content served by the trusted node's http server, at /hello.txt. */
  hello: string;
}

let mesh: Mesh | undefined;

function m(): Mesh {
  if (!mesh) throw new Error('the mesh was not set up (see the beforeAll error)');
  return mesh;
}

/** `node pierce.mjs ARGS` inside `ns`, to completion; never throws for a non-zero exit. */
function pierceIn(ns: string, args: string[], timeoutMs = 30_000, input?: string): Promise<ExecResult> {
  return execIn(ns, process.execPath, [PIERCE_MJS, ...args], { check: false, timeoutMs, env: m().env, ...(input !== undefined ? { input } : {}) });
}

function describeRun(what: string, r: ExecResult): string {
  return `${what}: exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** `pierce admin …` from the hub; throws with its output unless it exits 0. */
async function admin(...args: string[]): Promise<string> {
  const r = await pierceIn(m().hub, ['admin', ...args]);
  if (r.code !== 0) throw new Error(describeRun(`pierce admin ${args.join(' ')}`, r));
  return r.stdout;
}

/** The node's status straight from its API socket (what `pierce status --json` prints); for polls. */
async function apiStatus(n: MeshNode): Promise<EngineStatus> {
  const r = await apiRequest(n.sock, 'GET', '/status', 5000);
  if (r.status !== 200) throw new Error(`GET /status on ${n.role}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as unknown as EngineStatus;
}

/** `pierce status --json` in the node's namespace. */
async function cliStatus(n: MeshNode): Promise<EngineStatus> {
  const r = await pierceIn(n.ns, ['status', '--json', '--socket', n.sock]);
  if (r.code !== 0) throw new Error(describeRun(`pierce status on ${n.role}`, r));
  return JSON.parse(r.stdout) as EngineStatus;
}

/** `pierce ping PEER` from `from`. */
function cliPing(from: MeshNode, peer: string, count = 1, timeoutMs = 5000): Promise<ExecResult> {
  return pierceIn(from.ns, ['ping', peer, '--socket', from.sock, '--count', String(count), '--timeout', String(timeoutMs)], timeoutMs * count + 30_000);
}

/** A disco ping through the node's API (fast, for polls); true when a pong came back. */
async function apiPingOk(from: MeshNode, peer: string, timeoutMs = 2000): Promise<boolean> {
  try {
    const r = await apiRequest(from.sock, 'POST', `/ping?peer=${encodeURIComponent(peer)}&timeout=${timeoutMs}`, timeoutMs + 5000);
    return r.status === 200;
  } catch {
    return false;
  }
}

/** Polls `pierce ping` (CLI) until a pong arrives; returns its output. */
async function pingUntilPong(from: MeshNode, peer: string, timeoutMs: number): Promise<string> {
  let last: ExecResult | undefined;
  try {
    return await waitFor(`pong ${from.role} -> ${peer}`, timeoutMs, async () => {
      last = await cliPing(from, peer, 1, 3000);
      return last.code === 0 ? last.stdout : undefined;
    }, 250);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${last ? describeRun('last pierce ping', last) : ''}\n${from.proc.output().split('\n').slice(-30).join('\n')}`);
  }
}

/** TCP connections sshd accepted so far ("Connection from" lines of its log). */
function sshdConnections(d: Sshd): number {
  return d.log().split('\n').filter((l) => /Connection from /.test(l)).length;
}

function filterDrops(s: EngineStatus): number {
  return s.dropped['filter'] ?? 0;
}

/** ssh options that reach PEER through `from`'s node: ProxyCommand pierce nc. */
function via(from: MeshNode, peer: string, timeoutMs?: number, options: string[] = []): SshRun {
  return {
    ns: from.ns,
    host: peer,
    port: 22,
    keys: m().sshKeys,
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    options: [`ProxyCommand=${process.execPath} ${PIERCE_MJS} nc --socket ${from.sock} %h %p`, ...options],
  };
}

/** `pierce nc PEER PORT` from `from` with `input` on stdin, killed after `secs` (exit 124). */
function ncIn(from: MeshNode, peer: string, port: number, input: string, secs: number): Promise<ExecResult> {
  return execIn(from.ns, 'timeout', ['-k', '2', String(secs), process.execPath, PIERCE_MJS, 'nc', '--socket', from.sock, peer, String(port)], {
    input,
    check: false,
    timeoutMs: (secs + 10) * 1000,
  });
}

function startNode(star: Star, n: Omit<MeshNode, 'proc' | 'ip'>, controlUrl: string): ChildHandle {
  return spawnPierce(
    n.ns,
    [
      'up',
      '--control',
      controlUrl,
      '--authkey',
      n.authKey,
      '--hostname',
      n.role,
      '--state',
      n.state,
      '--socket',
      n.sock,
      ...n.forwards.flatMap((f) => ['--forward', f]),
      ...(n.role === 'untrusted' ? ['--relay-only'] : []),
    ],
    `pierce up ${n.role}@${star.hosts[ROLES.indexOf(n.role)]!.name}`,
  );
}

/** Waits for "pierce up: NAME ADDRS running"; returns the tailnet IPv4. */
async function waitRunning(proc: ChildHandle, role: Role, from = 0): Promise<string> {
  const mm = await proc.waitForLine(new RegExp(`pierce up: ${role} (\\d+\\.\\d+\\.\\d+\\.\\d+)/32 \\S+ running`), 60_000, { from });
  return mm[1]!;
}

function startRelay(hub: string, addr: string): ChildHandle {
  return spawnPierce(hub, ['relay', '--listen', `${addr}:${RELAY_PORT}`], 'pierce relay');
}

const HTTP_GET = 'GET /hello.txt HTTP/1.0\r\nHost: trusted\r\n\r\n';

beforeEach(requireLab);

beforeAll(async () => {
  if (labProblems().length > 0) return; // every test fails through requireLab
  requireTools(MESH_TOOLS);
  const star = await createStar({ hosts: 3 });
  const hub = star.hub.name;
  const db = tempPath('control.db');
  const relayUrl = `http://${star.hub.ipv4}:${RELAY_PORT}`;
  // The relay starts while `control apikey` creates and migrates the database (before control
  // opens it: the key goes straight into the database).
  const [relay, apiKeyRun] = await Promise.all([
    (async () => {
      const r = startRelay(hub, star.hub.ipv4);
      await r.waitForLine(/relay listening on/, 30_000);
      return r;
    })(),
    run(process.execPath, [PIERCE_MJS, 'control', 'apikey', '--db', db], { timeoutMs: 30_000 }),
  ]);
  const control = spawnPierce(hub, ['control', '--listen', `${star.hub.ipv4}:${CONTROL_PORT}`, '--db', db, '--policy', EXAMPLE_POLICY, '--relay', relayUrl], 'pierce control');
  const controlUrl = (await control.waitForLine(/listening on (\S+)/, 30_000))[1]!;
  const env = { PIERCE_CONTROL: controlUrl, PIERCE_API_KEY: apiKeyRun.stdout.trim() };
  mesh = { star, hub, controlUrl, relayUrl, db, env, relay, control, nodes: {} as Record<Role, MeshNode>, sshKeys: undefined as unknown as SshKeys, sshdTrusted: undefined as unknown as Sshd, hello: '' };

  await admin('users', 'create', OWNER);
  const [keys, sshKeys] = await Promise.all([
    Promise.all(ROLES.map(async (r) => (await admin('keys', 'create', '--user', OWNER, '--tags', `tag:${r}`)).match(/pak_\S+/)![0])),
    makeSshKeys(),
  ]);
  mesh.sshKeys = sshKeys;

  // Local services: sshd on trusted and server, an http server on trusted.
  const [T, S] = [star.hosts[0]!.name, star.hosts[1]!.name];
  [mesh.sshdTrusted] = await Promise.all([startSshd({ ns: T, address: '127.0.0.1', port: 22, keys: sshKeys }), startSshd({ ns: S, address: '127.0.0.1', port: 22, keys: sshKeys })]);
  const www = tempPath('www');
  mkdirSync(www);
  mesh.hello = `hello from the trusted node ${Date.now()}\n`;
  writeFileSync(join(www, 'hello.txt'), mesh.hello);
  const http = spawnIn(T, 'python3', ['-u', '-m', 'http.server', '8080', '--bind', '127.0.0.1', '--directory', www], { name: 'http.server@trusted' });
  await http.waitForLine(/Serving HTTP on 127\.0\.0\.1 port 8080/, 20_000);

  const nodesDir = tempPath('nodes');
  mkdirSync(nodesDir, { mode: 0o700 });
  const forwards: Record<Role, string[]> = { trusted: ['22', '8080'], server: ['22'], untrusted: [] };
  const specs = ROLES.map((role, i) => ({
    role,
    ns: star.hosts[i]!.name,
    state: join(nodesDir, role),
    sock: join(nodesDir, `${role}.sock`),
    authKey: keys[i]!,
    forwards: forwards[role],
  }));
  const procs = specs.map((s) => startNode(star, s, controlUrl));
  const ips = await Promise.all(procs.map((p, i) => waitRunning(p, specs[i]!.role)));
  for (const [i, s] of specs.entries()) mesh.nodes[s.role] = { ...s, proc: procs[i]!, ip: ips[i]! };
  // Every node has the other two in its map and its home relay connected.
  for (const n of Object.values(mesh.nodes)) {
    await waitFor(`${n.role}: two peers and relay r1 connected`, 30_000, async () => {
      const s = await apiStatus(n);
      return s.peers.length === 2 && s.relays.some((r) => r.home && r.connected) ? true : undefined;
    }, 100);
  }
}, 150_000);

afterAll(async () => {
  await cleanupAll();
}, 60_000);

describe('pierce up: three nodes, control and relay in network namespaces', () => {
  it('pierce ping answers in all six directions from the tailnet IPs: relay-only pairs via relay(r1), the others upgrade to direct', async () => {
    const { nodes } = m();
    const pairs = ROLES.flatMap((a) => ROLES.filter((b) => b !== a).map((b) => [nodes[a], nodes[b]] as const));
    const outs = await Promise.all(pairs.map(([a, b]) => pingUntilPong(a, b.role, 30_000)));
    for (const [i, [a, b]] of pairs.entries()) {
      const path = a.role === 'untrusted' || b.role === 'untrusted' ? 'relay\\(r1\\)' : '(relay\\(r1\\)|\\S+:\\d+)';
      expect(outs[i]).toMatch(new RegExp(`pong from ${b.role} \\(${b.ip.replace(/\./g, '\\.')}\\) via ${path} in [\\d.]+ ms`));
    }
    // trusted and server reach each other directly over the hub's bridge.
    const direct = await pierceIn(nodes.trusted.ns, ['ping', '--socket', nodes.trusted.sock, '--until-direct', '--count', '15', 'server']);
    expect(direct.code, describeRun('pierce ping --until-direct server', direct)).toBe(0);
    expect(direct.stdout).toMatch(/via (\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):\d+ in/);
    const st = await apiStatus(nodes.trusted);
    expect(st.peers.find((p) => p.name === 'server')!.direct).toBe(true);
    expect(st.peers.find((p) => p.name === 'untrusted')!.direct).toBe(false);
    // The addresses are the ones control handed out (`pierce ip`), all distinct.
    const ip = await pierceIn(nodes.server.ns, ['ip', '--socket', nodes.server.sock]);
    expect(ip.stdout.split('\n')[0]).toBe(nodes.server.ip);
    expect(new Set(ROLES.map((r) => nodes[r].ip)).size).toBe(3);
  }, 120_000);

  it('OpenSSH through ProxyCommand "pierce nc" runs a command on a peer sshd; scp of 50 MB arrives intact', async () => {
    const { nodes, star } = m();
    const T = nodes.trusted;
    const S = nodes.server;
    // The command runs in the server's namespace: its underlay address proves where it ran.
    const res = await sshExec(via(T, 'server', 60_000), 'echo ran-on; ip -4 -o addr show dev veth0');
    expect(res.code, describeRun('ssh', res)).toBe(0);
    expect(res.stdout).toContain('ran-on');
    expect(res.stdout).toContain(`${star.hosts[1]!.ipv4}/24`);
    // Both ends must be the nodes: the server's node saw bytes from the trusted node.
    const sStatus = await apiStatus(S);
    expect(sStatus.peers.find((p) => p.name === 'trusted')!.rxBytes).toBeGreaterThan(0);

    const src = writeRandomFile('mesh-50M.bin', 50 << 20);
    const dst = tempPath('mesh-50M.copy');
    const up = await scp(via(T, 'server', 150_000), 'upload', src.path, dst);
    expect(up.code, describeRun('scp', up)).toBe(0);
    expect(await sha256File(dst)).toBe(src.sha256);
  }, 180_000);

  describe('policy (example policy: trusted, server, untrusted)', () => {
    it('untrusted cannot open trusted:22 (dropped by the trusted node\'s filter) but reaches trusted:8080', async () => {
      const { nodes } = m();
      const T = nodes.trusted;
      const U = nodes.untrusted;
      const before = filterDrops(await cliStatus(T));
      const connsBefore = sshdConnections(m().sshdTrusted);
      const [ssh, http] = await Promise.all([sshExec(via(U, 'trusted', 10_000, ['ConnectTimeout=6']), 'echo should-not-run'), ncIn(U, 'trusted', 8080, HTTP_GET, 20)]);
      expect(http.code, describeRun('pierce nc trusted 8080', http)).toBe(0);
      expect(http.stdout).toMatch(/^HTTP\/1\.\d 200/);
      expect(http.stdout).toContain(m().hello);
      // ssh failed before any SSH banner: not an authentication refusal, not a closed port.
      expect(ssh.code, describeRun('ssh untrusted -> trusted', ssh)).not.toBe(0);
      expect(ssh.stdout).not.toContain('should-not-run');
      expect(ssh.stderr).not.toMatch(/Permission denied|Connection refused|Host key/i);
      // sshd (listening, as the next test shows) never saw a connection: the SYN never reached the forward.
      expect(sshdConnections(m().sshdTrusted), m().sshdTrusted.log()).toBe(connsBefore);
      const after = await cliStatus(T);
      expect(filterDrops(after), JSON.stringify(after.dropped)).toBeGreaterThan(before);
    }, 90_000);

    it('a policy set live with `pierce admin policy set` applies to the running nodes: trusted:22 opens, trusted:8080 closes', async () => {
      const { nodes } = m();
      const T = nodes.trusted;
      const U = nodes.untrusted;
      const policy = {
        tagOwners: { 'tag:trusted': [OWNER], 'tag:server': [OWNER], 'tag:untrusted': [OWNER] },
        acls: [
          { action: 'accept', src: ['tag:trusted'], dst: ['*:*'] },
          { action: 'accept', src: ['tag:server'], dst: ['tag:server:*', 'tag:trusted:80,443,1024-65535'] },
          // Changed: untrusted may ssh to trusted, and no longer reach its high ports.
          { action: 'accept', src: ['tag:untrusted'], dst: ['tag:trusted:22,80,443', 'tag:server:80,443,1024-65535'] },
        ],
        tests: [{ src: 'tag:untrusted', accept: ['tag:trusted:22', 'tag:trusted:80'], deny: ['tag:trusted:8080', 'tag:untrusted:22'] }],
      };
      const file = writeTempFile('policy-2.hujson', JSON.stringify(policy, null, 2));
      await admin('policy', 'set', file);
      const got = await admin('policy', 'get');
      expect(got).toContain('tag:trusted:22,80,443');

      // The new filter reaches the running trusted node through its map stream.
      const logins = m().sshdTrusted.acceptedLogins().length;
      const conns = sshdConnections(m().sshdTrusted);
      let ssh: ExecResult | undefined;
      await waitFor('ssh untrusted -> trusted after the policy change', 60_000, async () => {
        ssh = await sshExec(via(U, 'trusted', 20_000, ['ConnectTimeout=10']), 'echo policy-open');
        return ssh.code === 0 ? true : undefined;
      }, 250).catch((e: Error) => {
        throw new Error(`${e.message}\n${ssh ? describeRun('last ssh', ssh) : ''}`);
      });
      expect(ssh!.stdout).toContain('policy-open');
      expect(m().sshdTrusted.acceptedLogins().length).toBeGreaterThan(logins);
      expect(sshdConnections(m().sshdTrusted)).toBeGreaterThan(conns);

      const before = filterDrops(await apiStatus(T));
      const http = await ncIn(U, 'trusted', 8080, HTTP_GET, 6);
      expect(http.stdout, describeRun('pierce nc trusted 8080', http)).not.toContain('HTTP/1');
      const after = await cliStatus(T);
      expect(filterDrops(after), JSON.stringify(after.dropped)).toBeGreaterThan(before);
    }, 120_000);
  });

  describe('faults', () => {
    let session: ChildHandle | undefined;
    const ticks = (): number => session?.stdoutLines().filter((l) => l.startsWith('tick ')).length ?? 0;
    /** Waits until the open ssh session printed `more` new lines after now. */
    const sessionAdvances = async (what: string, more: number, timeoutMs: number): Promise<void> => {
      const base = ticks();
      await waitFor(`the ssh session to print ${more} more lines ${what}`, timeoutMs, () => {
        if (session?.exited) throw new Error(`the ssh session ended:\n${session.output()}`);
        return ticks() >= base + more ? true : undefined;
      }, 100).catch((e: Error) => {
        throw new Error(`${e.message}\n${session?.output().split('\n').slice(-20).join('\n')}`);
      });
    };

    beforeAll(async () => {
      if (!mesh) return;
      const T = mesh.nodes.trusted;
      // A long-lived ssh session trusted -> server that prints a line every 200 ms.
      const opts = sshOptions(mesh.sshKeys, [`ProxyCommand=${process.execPath} ${PIERCE_MJS} nc --socket ${T.sock} %h %p`]);
      session = spawnIn(T.ns, 'ssh', [...opts, '-n', '-T', '-p', '22', 'root@server', 'while :; do echo "tick $(date +%s%N)"; sleep 0.2; done'], { name: 'ssh session trusted->server' });
      await sessionAdvances('after it opened', 3, 60_000);
    }, 90_000);

    it('relay restarted on the same port: pings and the open ssh session resume', async () => {
      const mm = m();
      const { nodes } = mm;
      await mm.relay.kill();
      // Nothing else links a relay-only node: with the relay down, its pings fail.
      expect(await apiPingOk(nodes.untrusted, 'trusted', 1500)).toBe(false);
      mm.relay = startRelay(mm.hub, mm.star.hub.ipv4);
      await mm.relay.waitForLine(/relay listening on/, 30_000);
      expect(await pingUntilPong(nodes.trusted, 'server', 45_000)).toContain('pong from server');
      expect(await pingUntilPong(nodes.untrusted, 'trusted', 45_000)).toContain('via relay(r1)');
      await sessionAdvances('after the relay restart', 3, 60_000);
    }, 150_000);

    it('a node restarted (pierce down, pierce up with the same --state) is reachable again at the same tailnet IP', async () => {
      const mm = m();
      const U = mm.nodes.untrusted;
      const ipBefore = U.ip;
      const down = await pierceIn(U.ns, ['down', '--socket', U.sock]);
      expect(down.code, describeRun('pierce down', down)).toBe(0);
      const exit = await U.proc.waitForExit(20_000);
      expect(exit.code, U.proc.output()).toBe(0);
      // The same command line again: same state directory (keys), same single-use auth key.
      U.proc = startNode(mm.star, U, mm.controlUrl);
      U.ip = await waitRunning(U.proc, 'untrusted');
      expect(U.ip).toBe(ipBefore);
      const ip = await pierceIn(U.ns, ['ip', '--socket', U.sock]);
      expect(ip.stdout.split('\n')[0]).toBe(ipBefore);
      for (const from of [mm.nodes.trusted, mm.nodes.server]) {
        expect(await pingUntilPong(from, 'untrusted', 45_000)).toMatch(new RegExp(`pong from untrusted \\(${ipBefore.replace(/\./g, '\\.')}\\) via relay\\(r1\\)`));
      }
    }, 150_000);

    it('a node whose key an admin expired is dropped from the other nodes\' maps', async () => {
      const mm = m();
      const { nodes } = mm;
      const list = JSON.parse(await admin('nodes', 'list', '--json')) as { nodes: { id: number; name: string }[] };
      const id = list.nodes.find((n) => n.name === 'untrusted')!.id;
      for (const n of [nodes.trusted, nodes.server]) expect((await cliStatus(n)).peers.map((p) => p.name)).toContain('untrusted');
      await admin('nodes', 'expire', String(id));
      for (const n of [nodes.trusted, nodes.server]) {
        await waitFor(`${n.role} to drop untrusted`, 30_000, async () => ((await apiStatus(n)).peers.some((p) => p.name === 'untrusted') ? undefined : true), 100);
        const s = await cliStatus(n);
        expect(s.peers.map((p) => p.name).sort()).toEqual(ROLES.filter((r) => r !== n.role && r !== 'untrusted'));
      }
      // The expired node is told, and its single-use key cannot bring it back.
      await waitFor('untrusted to leave the running state', 30_000, async () => ((await apiStatus(nodes.untrusted)).state !== 'running' ? true : undefined), 100);
      const gone = await cliPing(nodes.trusted, 'untrusted', 1, 1000);
      expect(gone.code).not.toBe(0);
      expect(gone.stderr).toMatch(/no peer "untrusted"/);
    }, 120_000);

    it('control stopped: the open ssh session keeps working and new pings between known peers succeed', async () => {
      const mm = m();
      const { nodes } = mm;
      mm.control.signal('SIGKILL');
      await mm.control.waitForExit(10_000);
      for (const n of [nodes.trusted, nodes.server]) {
        await waitFor(`${n.role} to notice control is gone`, 30_000, async () => ((await apiStatus(n)).controlConnected ? undefined : true), 100);
      }
      await sessionAdvances('with control down', 5, 30_000);
      for (const [a, b] of [[nodes.trusted, 'server'], [nodes.server, 'trusted']] as const) {
        const r = await cliPing(a, b, 2, 5000);
        expect(r.code, describeRun(`pierce ping ${b}`, r)).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`pong from ${b} .* via `));
      }
      const st = await cliStatus(nodes.trusted);
      expect(st.controlConnected).toBe(false);
      expect(st.state).toBe('running');
      const res = await sshExec(via(nodes.trusted, 'server', 60_000), 'echo new-session-without-control');
      expect(res.code, describeRun('ssh', res)).toBe(0);
      expect(res.stdout).toContain('new-session-without-control');
      expect(session!.exited).toBe(false);
    }, 120_000);
  });
});
