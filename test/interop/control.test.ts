/**
 * pierce control end to end: test nodes speaking the real protocol (WebSocket, Noise IK, JSON)
 * register, receive full maps and deltas, follow policy changes, expire, log out and disappear
 * when ephemeral; a restart of control (same SQLite file) loses nothing; `pierce admin` drives
 * the admin API from the command line.
 */
import { describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { get as httpsGet } from 'node:https';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { createApiKey } from '../../gateway/src/control/state.ts';
import { filterAllows } from '../../src/policy/index.ts';
import { TestNode } from '../support/control-node.ts';
import { ControlFixture } from '../support/control-fixture.ts';
import { MachinePublic } from '../../src/key/keys.ts';

const PIERCE = fileURLToPath(new URL('../../gateway/bin/pierce.mjs', import.meta.url));
const EXAMPLE_POLICY = readFileSync(new URL('../fixtures/example-policy.hujson', import.meta.url), 'utf8');
const OWNER = 'SignorMercurio@github';
const RELAYS = { regions: [{ id: 1, code: 'r1', name: 'relay1', nodes: [{ url: 'http://127.0.0.1:9', stun: '127.0.0.1:3478' }] }] };

function pierce(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PIERCE, ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

const ctl = new ControlFixture('pierce-control-', { defaults: { relays: RELAYS } });
const { start, node } = ctl;

async function tagged(tag: string, hostname: string): Promise<TestNode> {
  const s = ctl.server.state;
  const { key } = await s.createAuthKey({ user: OWNER, tags: [tag] });
  return node(hostname, { authKey: key }).join();
}

describe('registration and the map stream', () => {
  it('nodes registered with an auth key get addresses in the tailnet ranges and a full map of each other', async () => {
    await start();
    await ctl.server.state.createUser('alice@example.com');
    const { key } = await ctl.server.state.createAuthKey({ user: 'alice@example.com', reusable: true });
    const [a, b, c] = [node('alpha', { authKey: key }), node('beta', { authKey: key }), node('gamma', { authKey: key })];
    await a.join(['192.0.2.1:41641']);
    await b.join();
    await c.join();
    await a.waitFor(() => a.view.peers.size === 2 && [...a.view.peers.values()].every((p) => p.online), 5000, 'two online peers');
    const self = a.view.self!;
    expect(self.addrs[0]).toMatch(/^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.\d+\.\d+\/32$/);
    expect(self.addrs[1]).toMatch(/^fd7a:115c:a1e0::[0-9a-f:]+\/128$/);
    expect(self.user).toBe('alice@example.com');
    expect(a.view.relays).toEqual(RELAYS);
    expect(a.view.filter.length).toBeGreaterThan(0);
    const beta = b.view.peerByName('alpha')!;
    expect(beta.endpoints).toEqual(['192.0.2.1:41641']);
    expect(beta.discoKey).toBe(a.discoKey.public().toString());
    expect(beta.nodeKey).toBe(a.nodeKey.public().toString());
    // Deltas only after the full map: the later joins reached alpha as peersChanged.
    const maps = a.messages.filter((m) => m.t === 'map');
    expect(maps[0]).toMatchObject({ full: true, seq: 1 });
    expect(maps.slice(1).every((m) => m.t === 'map' && !m.full && m.peers === undefined)).toBe(true);
  });

  it('reported endpoints and home relay fan out as patches; a disconnect shows as offline with last seen', async () => {
    await start();
    await ctl.server.state.createUser('u@x');
    const { key } = await ctl.server.state.createAuthKey({ user: 'u@x', reusable: true });
    const a = await node('a', { authKey: key }).join();
    const b = await node('b', { authKey: key }).join();
    b.conn!.send({ t: 'update', endpoints: ['198.51.100.7:1234', '[2001:db8::7]:1234'], homeRelay: 1 });
    const patched = await a.waitFor(() => a.messages.find((m) => m.t === 'map' && m.peersPatch?.some((p) => p.endpoints?.length === 2)), 3000, 'patch');
    expect(patched.t === 'map' && patched.peersChanged).toBeFalsy();
    expect(a.view.peerByName('b')!.endpoints).toEqual(['198.51.100.7:1234', '[2001:db8::7]:1234']);
    b.close();
    await a.waitFor(() => a.view.peerByName('b')!.online === false, 3000, 'offline');
    expect(a.view.peerByName('b')!.lastSeen).toBeGreaterThan(Date.now() - 10_000);
  });

  it('interactive registration waits for an admin; approval through `pierce admin` lets the node in', async () => {
    await start();
    await ctl.server.state.createUser('bob@example.com');
    const { key: apiKey } = await createApiKey(ctl.server.opts.store, Date.now(), 'test');
    const n = node('laptop');
    await n.connect();
    const done = n.register();
    await n.waitFor(() => n.loginUrl, 3000, 'login URL');
    expect(n.loginUrl).toBe(`${ctl.server.url}/register/${n.registrationId}`);
    const page = await (await fetch(n.loginUrl!)).text();
    expect(page).toContain(`pierce admin nodes approve ${n.registrationId}`);
    const env = { PIERCE_CONTROL: ctl.server.url, PIERCE_API_KEY: apiKey };
    const pending = await pierce(['admin', 'nodes', 'pending', '--json'], env);
    expect(JSON.parse(pending.stdout).registrations[0].hostname).toBe('laptop');
    const r = await pierce(['admin', 'nodes', 'approve', n.registrationId!, '--user', 'bob@example.com'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    await done;
    await n.map();
    expect(n.view.self!.user).toBe('bob@example.com');
  });

  it('auth keys: single-use, revoked, expired and unknown keys are refused with typed errors; tags need tagOwners', async () => {
    await start({ policyText: EXAMPLE_POLICY });
    await ctl.server.state.createUser(OWNER);
    await ctl.server.state.createUser('mallory@example.com');
    const s = ctl.server.state;
    const once = await s.createAuthKey({ user: OWNER });
    await node('one', { authKey: once.key }).join();
    const again = node('two', { authKey: once.key });
    await again.connect();
    await expect(again.register()).rejects.toMatchObject({ code: 'AUTH_KEY_USED' });
    const revoked = await s.createAuthKey({ user: OWNER, reusable: true });
    await s.revokeAuthKey(revoked.record.id);
    await expect(again.register({ authKey: revoked.key })).rejects.toMatchObject({ code: 'AUTH_KEY_REVOKED' });
    await expect(again.register({ authKey: 'pak_000000000000_' + 'A'.repeat(32) })).rejects.toMatchObject({ code: 'AUTH_KEY_INVALID' });
    const short = await s.createAuthKey({ user: OWNER, expiryMs: 1 });
    await new Promise((r) => setTimeout(r, 5));
    await expect(again.register({ authKey: short.key })).rejects.toMatchObject({ code: 'AUTH_KEY_EXPIRED' });
    await expect(s.createAuthKey({ user: 'mallory@example.com', tags: ['tag:server'] })).rejects.toMatchObject({ code: 'TAG_NOT_OWNED' });
    const plain = await s.createAuthKey({ user: 'mallory@example.com' });
    await expect(again.register({ authKey: plain.key, tags: ['tag:trusted'] })).rejects.toMatchObject({ code: 'TAG_NOT_OWNED' });
    // The session survived every refusal and still works.
    await again.register({ authKey: (await s.createAuthKey({ user: OWNER, tags: ['tag:server'] })).key });
    await again.map();
    expect(again.view.self!.tags).toEqual(['tag:server']);
    expect(again.view.self!.keyExpiry).toBeNull(); // tagged nodes do not expire
    expect(again.view.self!.user).toBeUndefined();
    expect(s.authKeys.get(once.record.id)!.hash).not.toContain(once.key.slice('pak_000000000000_'.length));
  });
});

describe('policy', () => {
  it('the example policy decides who sees whom and what each filter lets in; a change applies live within a second', async () => {
    await start({ policyText: EXAMPLE_POLICY });
    await ctl.server.state.createUser(OWNER);
    const trusted = await tagged('tag:trusted', 'trusted');
    const srv = await tagged('tag:server', 'server');
    const untrusted = await tagged('tag:untrusted', 'untrusted');
    await trusted.waitFor(() => trusted.view.peers.size === 2, 3000, 'trusted sees both');
    await untrusted.waitFor(() => untrusted.view.peers.size === 2, 3000, 'untrusted sees both');
    const ip = (n: TestNode) => n.view.self!.addrs[0]!.split('/')[0]!;
    const f = trusted.view.filter;
    expect(filterAllows(f, ip(untrusted), ip(trusted), 6, 8080)).toBe(true);
    expect(filterAllows(f, ip(untrusted), ip(trusted), 6, 22)).toBe(false);
    expect(filterAllows(f, ip(srv), ip(trusted), 6, 443)).toBe(true);
    expect(filterAllows(f, ip(srv), ip(trusted), 6, 22)).toBe(false);
    expect(filterAllows(srv.view.filter, ip(untrusted), ip(srv), 6, 22)).toBe(false);
    expect(filterAllows(srv.view.filter, ip(trusted), ip(srv), 6, 22)).toBe(true);
    // untrusted accepts nothing from anyone but trusted.
    expect(filterAllows(untrusted.view.filter, ip(srv), ip(untrusted), 6, 8080)).toBe(false);
    expect(filterAllows(untrusted.view.filter, ip(trusted), ip(untrusted), 6, 22)).toBe(true);

    // Live change: only trusted → server on 22 remains; untrusted loses both peers.
    const narrow = `{"tagOwners": {"tag:trusted": ["${OWNER}"], "tag:server": ["${OWNER}"], "tag:untrusted": ["${OWNER}"]},
      "acls": [{"action": "accept", "src": ["tag:trusted"], "dst": ["tag:server:22"]}]}`;
    const t0 = performance.now();
    await ctl.server.state.setPolicy(narrow);
    await untrusted.waitFor(() => untrusted.view.peers.size === 0, 1000, 'untrusted isolated');
    await srv.waitFor(() => !filterAllows(srv.view.filter, ip(trusted), ip(srv), 6, 80) && filterAllows(srv.view.filter, ip(trusted), ip(srv), 6, 22), 1000, 'server filter');
    await trusted.waitFor(() => trusted.peerNames().join() === 'server' && trusted.view.filter.length === 0, 1000, 'trusted peers');
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('a policy whose tests fail is refused with the failing assertion and the running policy stays', async () => {
    await start({ policyText: EXAMPLE_POLICY });
    const { key } = await createApiKey(ctl.server.opts.store, Date.now());
    const broken = EXAMPLE_POLICY.replace('"dst": ["tag:server:*"]', '"dst": ["tag:server:80"]');
    const res = await fetch(`${ctl.server.url}/api/v1/policy`, { method: 'PUT', headers: { Authorization: `Bearer ${key}` }, body: broken });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: string; code: string };
    expect(body.code).toBe('POLICY_TESTS_FAILED');
    expect(body.error).toContain('accept "tag:server:22"');
    expect(ctl.server.state.policyText).toBe(EXAMPLE_POLICY);
    const invalid = await fetch(`${ctl.server.url}/api/v1/policy`, { method: 'PUT', headers: { Authorization: `Bearer ${key}` }, body: '{"acls": [{"action": "deny", "src": ["*"], "dst": ["*:*"]}]}' });
    expect(invalid.status).toBe(422);
    expect(((await invalid.json()) as { error: string }).error).toContain('action="deny" is not supported');
    const unauth = await fetch(`${ctl.server.url}/api/v1/policy`, { headers: { Authorization: 'Bearer nope' } });
    expect(unauth.status).toBe(401);
  });
});

describe('lifecycle', () => {
  it('ephemeral nodes are deleted a set time after they disconnect, also across a control restart', async () => {
    await start({ ephemeralTimeoutMs: 600 });
    await ctl.server.state.createUser('u@x');
    const { key } = await ctl.server.state.createAuthKey({ user: 'u@x', reusable: true });
    const { key: ephKey } = await ctl.server.state.createAuthKey({ user: 'u@x', reusable: true, ephemeral: true });
    const stay = await node('stay', { authKey: key }).join();
    const eph = await node('eph', { authKey: ephKey }).join();
    await stay.waitFor(() => stay.view.peerByName('eph'), 3000, 'eph visible');
    expect(eph.view.self!.ephemeral).toBe(true);
    eph.close();
    await stay.waitFor(() => stay.view.peerByName('eph')?.online === false, 3000, 'eph offline');
    await stay.waitFor(() => !stay.view.peerByName('eph'), 3000, 'eph removed');
    expect([...ctl.server.state.nodes.values()].map((n) => n.name)).toEqual(['stay']);

    // Restart while an ephemeral node is offline: it still goes after its timeout.
    const eph2 = await node('eph2', { authKey: ephKey }).join();
    eph2.close();
    await new Promise((r) => setTimeout(r, 100));
    stay.close();
    await ctl.stop();
    await start({ ephemeralTimeoutMs: 600 });
    expect([...ctl.server.state.nodes.values()].map((n) => n.name).sort()).toEqual(['eph2', 'stay']);
    await new Promise((r) => setTimeout(r, 900));
    expect([...ctl.server.state.nodes.values()].map((n) => n.name)).toEqual(['stay']);
  });

  it('a control restart loses nothing: nodes come back with the same addresses and names, no new auth', async () => {
    await start({ policyText: EXAMPLE_POLICY });
    await ctl.server.state.createUser(OWNER);
    const a = await tagged('tag:trusted', 'a');
    const b = await tagged('tag:server', 'b');
    const { key: apiKey } = await createApiKey(ctl.server.opts.store, Date.now());
    const before = { a: a.view.self!, b: b.view.self!, serverKey: ctl.server.publicKey };
    const policyBefore = ctl.server.state.policyText;
    a.close();
    b.close();
    await ctl.stop();
    await start();
    expect(ctl.server.publicKey).toBe(before.serverKey);
    expect(ctl.server.state.policyText).toBe(policyBefore);
    for (const [old, name] of [[a, 'a'], [b, 'b']] as const) {
      const again = node(name, { machineKey: old.machineKey, nodeKey: old.nodeKey });
      await again.join();
      const self = again.view.self!;
      expect(self.addrs).toEqual(before[name].addrs);
      expect(self.id).toBe(before[name].id);
      expect(self.tags).toEqual(before[name].tags);
    }
    const r = await pierce(['admin', 'nodes', 'list', '--json'], { PIERCE_CONTROL: ctl.server.url, PIERCE_API_KEY: apiKey });
    expect(JSON.parse(r.stdout).nodes.map((n: { name: string; online: boolean }) => [n.name, n.online])).toEqual([['a', true], ['b', true]]);
  });

  it('a registered node reconnecting with the single-use auth key it joined with is let back in; the key stays spent for others', async () => {
    await start();
    await ctl.server.state.createUser('u@x');
    const once = await ctl.server.state.createAuthKey({ user: 'u@x' });
    const a = await node('a', { authKey: once.key }).join();
    const id = a.view.self!.id;
    a.close();
    // `pierce up --authkey K` sends K at every (re)connection and restart, with the same keys.
    const again = await node('a', { authKey: once.key, machineKey: a.machineKey, nodeKey: a.nodeKey }).join();
    expect(again.view.self!.id).toBe(id);
    expect(ctl.server.state.authKeys.get(once.record.id)!.usedCount).toBe(1);
    const other = node('b', { authKey: once.key });
    await other.connect();
    await expect(other.register()).rejects.toMatchObject({ code: 'AUTH_KEY_USED' });
  });

  it('node keys expire (peers drop the node), renew with the old key, and logout forces a new registration', async () => {
    await start({ keyExpiryMs: 1500 });
    await ctl.server.state.createUser('u@x');
    const { key } = await ctl.server.state.createAuthKey({ user: 'u@x', reusable: true });
    const a = await node('a', { authKey: key }).join();
    const b = await node('b', { authKey: key }).join();
    await a.waitFor(() => a.view.peerByName('b'), 3000, 'b');
    // b renews its key before expiry, with no auth key, proving the old one.
    const { NodePrivate } = await import('../../src/key/keys.ts');
    const newKey = NodePrivate.generate();
    const c = node('b', { machineKey: b.machineKey, nodeKey: newKey });
    await c.connect();
    await c.register({ oldNodeKey: b.nodeKey.public().toString() });
    await c.map();
    expect(c.view.self!.nodeKey).toBe(newKey.public().toString());
    await a.waitFor(() => a.view.peerByName('b')?.nodeKey === newKey.public().toString(), 3000, 'renewed key');
    // a's key runs out: b no longer sees it, and a is told.
    await c.waitFor(() => !c.view.peerByName('a'), 4000, 'a dropped');
    await a.waitFor(() => a.errors.some((e) => e.code === 'NODE_KEY_EXPIRED'), 3000, 'expiry notice');
    // Logout: the node must register again with an auth key.
    const d = await node('d', { authKey: key }).join();
    d.conn!.send({ t: 'logout' });
    await d.waitFor(() => d.closed, 3000, 'closed');
    const d2 = node('d', { machineKey: d.machineKey, nodeKey: d.nodeKey });
    await d2.connect();
    const noAuth = d2.register({ authKey: undefined as unknown as string });
    await d2.waitFor(() => d2.loginUrl, 3000, 'login required again');
    void noAuth.catch(() => {});
  });
});

describe('TLS', () => {
  it('serves /key over HTTPS and the control channel over WSS', async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(ctl.dir, 'key.pem'), '-out', join(ctl.dir, 'cert.pem')], { stdio: 'ignore' });
    const ca = readFileSync(join(ctl.dir, 'cert.pem'));
    await start({ tls: { cert: ca, key: readFileSync(join(ctl.dir, 'key.pem')) } });
    expect(ctl.server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const keyText = await new Promise<string>((resolve, reject) => {
      httpsGet(`${ctl.server.url}/key`, { ca }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => (b += d.toString()));
        res.on('end', () => resolve(b));
      }).on('error', reject);
    });
    const serverKey = MachinePublic.parse((JSON.parse(keyText) as { publicKey: string }).publicKey);
    await ctl.server.state.createUser('u@x');
    const { key } = await ctl.server.state.createAuthKey({ user: 'u@x' });
    // ws with the test CA, in the shape of the browser's WebSocket constructor.
    class TrustingWs extends WebSocket {
      constructor(url: string, protocols: string | string[]) {
        super(url, protocols, { ca });
      }
    }
    const n = node('secure', { authKey: key, serverKey, WebSocket: TrustingWs as never });
    await n.join();
    expect(n.view.self!.name).toBe('secure');
  });
});

describe('robustness', () => {
  it('garbage handshakes, forged messages and bad JSON cost only their own connection', async () => {
    await start();
    await ctl.server.state.createUser('u@x');
    const { key } = await ctl.server.state.createAuthKey({ user: 'u@x', reusable: true });
    const a = await node('a', { authKey: key }).join();
    const closes: number[] = [];
    for (const payload of [Buffer.alloc(0), Buffer.from('hello'), Buffer.alloc(96, 7), Buffer.alloc(70_000, 1)]) {
      const ws = new WebSocket(ctl.server.url.replace('http', 'ws') + '/control', 'pierce-control');
      await new Promise<void>((resolve) => {
        ws.on('open', () => ws.send(payload));
        ws.on('close', (code) => {
          closes.push(code);
          resolve();
        });
        ws.on('error', () => {});
      });
    }
    expect(closes.every((c) => c === 1008 || c === 1009 || c === 1006)).toBe(true);
    // A node sending an unknown message type or a bad field is refused and cut off alone.
    const b = await node('b', { authKey: key }).join();
    b.conn!.send({ t: 'bogus' } as never);
    await b.waitFor(() => b.errors.some((e) => e.code === 'CONTROL_BAD_MESSAGE'), 3000, 'error');
    await b.waitFor(() => b.closed, 3000, 'closed');
    const c = await node('c', { authKey: key }).join();
    c.conn!.send({ t: 'update', endpoints: ['not an endpoint'] } as never);
    await c.waitFor(() => c.closed, 3000, 'closed');
    // a carried on throughout.
    const d = await node('d', { authKey: key }).join();
    await a.waitFor(() => a.view.peerByName('d')?.online, 3000, 'a still gets deltas');
    expect(a.closed).toBeUndefined();
    void d;
  });
});

describe('pierce control and pierce admin from the command line', () => {
  it('runs, prints --help, and every listing has --json', async () => {
    const db = join(ctl.dir, 'cli.db');
    const help = await pierce(['control', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--policy FILE');
    const policyFile = join(ctl.dir, 'policy.hujson');
    writeFileSync(policyFile, EXAMPLE_POLICY);
    const apikey = await pierce(['control', 'apikey', '--db', db]);
    expect(apikey.code).toBe(0);
    const env = { PIERCE_API_KEY: apikey.stdout.trim() };
    const { spawn } = await import('node:child_process');
    const proc = spawn(process.execPath, [PIERCE, 'control', '--listen', '127.0.0.1:0', '--db', db, '--policy', policyFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let err = '';
        proc.stderr!.on('data', (d: Buffer) => {
          err += d.toString();
          const m = /listening on (\S+)/.exec(err);
          if (m) resolve(m[1]!);
        });
        proc.on('exit', () => reject(new Error(`control exited: ${err}`)));
      });
      const e = { ...env, PIERCE_CONTROL: url };
      expect((await pierce(['admin', 'users', 'create', OWNER], e)).code).toBe(0);
      const users = JSON.parse((await pierce(['admin', 'users', 'list', '--json'], e)).stdout);
      expect(users.users[0].name).toBe(OWNER);
      const k = await pierce(['admin', 'keys', 'create', '--user', OWNER, '--tags', 'tag:server', '--reusable', '--expiry', '1h'], e);
      expect(k.stdout).toMatch(/^pak_[0-9a-f]{12}_\S+\n$/);
      const keys = JSON.parse((await pierce(['admin', 'keys', 'list', '--json'], e)).stdout);
      expect(keys.authKeys[0]).toMatchObject({ user: OWNER, tags: ['tag:server'], reusable: true, valid: true });
      expect(JSON.stringify(keys)).not.toContain('hash');
      const n = new TestNode({ url, hostname: 'web', authKey: k.stdout.trim() });
      ctl.nodes.push(n);
      await n.join();
      const list = await pierce(['admin', 'nodes', 'list'], e);
      expect(list.stdout).toMatch(/web\s+SignorMercurio@github\s+tag:server\s+100\.64\.0\.1\s+yes/);
      const pol = await pierce(['admin', 'policy', 'get', '--json'], e);
      expect(JSON.parse(pol.stdout)).toMatchObject({ rules: 4, tests: 3 });
      const bad = join(ctl.dir, 'bad.hujson');
      writeFileSync(bad, '{"acls": [{"action": "accept", "src": ["tag:nonexistent"], "dst": ["*:*"]}]}');
      const refused = await pierce(['admin', 'policy', 'set', bad], e);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('src=tag not found: "tag:nonexistent"');
      const noKey = await pierce(['admin', 'users', 'list'], { PIERCE_CONTROL: url, PIERCE_API_KEY: '' });
      expect(noKey.code).toBe(2);
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
  });
});
