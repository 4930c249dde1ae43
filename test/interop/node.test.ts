/**
 * `pierce up` in process (loopback: control, relay and nodes in this process): interactive
 * login, state kept across restarts, the local API's errors, and the CLI's usage errors. The
 * network-namespace proof (OpenSSH, policy, faults) is test/interop/mesh.test.ts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startControl, type ControlServer } from '../../gateway/src/control/server.ts';
import { SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { startRelay, type RelayServer } from '../../gateway/src/relay/server.ts';
import { startNode, type RunningNode } from '../../gateway/src/node/daemon.ts';
import { apiConnect, apiRequest } from '../../gateway/src/node/api.ts';

const PIERCE = fileURLToPath(new URL('../../gateway/bin/pierce.mjs', import.meta.url));

function pierce(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PIERCE, ...args], { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

let dir: string;
let relay: RelayServer;
let control: ControlServer;
const nodes: RunningNode[] = [];
const quiet = () => {};

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pierce-node-'));
  relay = await startRelay({ host: '127.0.0.1', port: 0 });
  control = await startControl({ store: new SqliteStore(join(dir, 'c.db')), relays: { regions: [{ id: 1, code: 'r1', name: 'r1', nodes: [{ url: `http://127.0.0.1:${relay.port}` }] }] } });
  await control.state.createUser('u@x');
});
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.stop();
  await control.close();
  await relay.close();
  rmSync(dir, { recursive: true, force: true });
});

function up(name: string, extra: Partial<Parameters<typeof startNode>[0]> = {}): Promise<RunningNode> {
  return startNode({ controlUrl: control.url, stateDir: join(dir, name), socketPath: join(dir, `${name}.sock`), hostname: name, log: quiet, ...extra }).then((n) => {
    nodes.push(n);
    return n;
  });
}

describe('pierce up', () => {
  it('without an auth key shows a login URL and runs once an admin approves it; a restart keeps identity and address', async () => {
    let url: string | undefined;
    const a = await up('a', { onLogin: (u) => (url = u) });
    for (let i = 0; i < 100 && !url; i++) await new Promise((r) => setTimeout(r, 50));
    expect(url).toMatch(new RegExp(`^${control.url}/register/[0-9a-f]{24}$`));
    expect(a.engine.status().state).toBe('needs-login');
    await control.state.approve(url!.split('/').pop()!, 'u@x');
    await a.engine.whenRunning();
    const addr = a.engine.status().self!.addrs[0];
    expect(statSync(join(dir, 'a', 'node.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'a', 'machine.key')).mode & 0o777).toBe(0o600);
    await a.stop();
    nodes.pop();
    const again = await up('a');
    await again.engine.whenRunning();
    expect(again.engine.status().self!.addrs[0]).toBe(addr);
    expect(again.engine.status().state).toBe('running');
  });

  it('the local API answers status, ip and ping, and refuses unknown peers and ports with clear errors', async () => {
    const { key } = await control.state.createAuthKey({ user: 'u@x', reusable: true });
    const a = await up('a', { authKey: key });
    const b = await up('b', { authKey: key });
    await a.engine.whenRunning();
    await b.engine.whenRunning();
    const sock = join(dir, 'a.sock');
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    for (let i = 0; i < 100 && a.engine.status().peers.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const ping = await apiRequest(sock, 'POST', '/ping?peer=b');
    expect(ping.body).toMatchObject({});
    expect(ping.status, JSON.stringify(ping.body)).toBe(200);
    // Over the relay, or already over a direct UDP path (both nodes are on this host).
    expect(ping.body).toMatchObject({ peer: 'b' });
    expect(String(ping.body['path'])).toMatch(/^(relay\(r1\)|\S+:\d+)$/);
    const ip = await apiRequest(sock, 'GET', '/ip');
    expect((ip.body['addrs'] as string[])[0]).toMatch(/^100\.64\./);
    const missing = await apiRequest(sock, 'POST', '/ping?peer=nobody');
    expect(missing.status).toBe(404);
    expect(missing.body['code']).toBe('PEER_NOT_FOUND');
    await expect(apiConnect(sock, 'b', 70000)).rejects.toThrow(/port must be 1\.\.65535/);
    await expect(apiConnect(sock, 'nobody', 22)).rejects.toThrow(/PEER_NOT_FOUND/);
    // Nothing listens on b's port 9 (not forwarded): the mesh TCP connect is refused.
    await expect(apiConnect(sock, 'b', 9)).rejects.toThrow(/ECONNREFUSED/);
    void b;
  });
});

describe('pierce logout and down', () => {
  it('logout expires the key at control and stops the node; down just stops it', async () => {
    const { key } = await control.state.createAuthKey({ user: 'u@x', reusable: true });
    const a = await up('a', { authKey: key });
    const b = await up('b', { authKey: key });
    await a.engine.whenRunning();
    await b.engine.whenRunning();
    const idA = a.engine.status().self!.id;
    const out = await apiRequest(join(dir, 'a.sock'), 'POST', '/logout');
    expect(out.status).toBe(200);
    await a.stopped;
    expect(control.state.nodes.get(idA)!.loggedOut).toBe(true);
    for (let i = 0; i < 100 && b.engine.status().peers.length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(b.engine.status().peers).toEqual([]);
    const down = await apiRequest(join(dir, 'b.sock'), 'POST', '/down');
    expect(down.status).toBe(200);
    await b.stopped;
    expect(b.engine.status().state).toBe('stopped');
  });
});

describe('pierce node commands from the command line', () => {
  it('print --help, refuse bad arguments with exit 2, and say when no node runs', async () => {
    expect((await pierce(['up', '--help'])).stdout).toContain('--forward PORT[=HOST:PORT]');
    expect((await pierce(['up'])).code).toBe(2);
    expect((await pierce(['up', '--control', 'http://x', '--forward', 'abc'])).code).toBe(2);
    const none = await pierce(['status', '--socket', join(dir, 'none.sock')]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('no node is running');
  });
});
