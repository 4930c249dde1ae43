/**
 * Shareable sessions: POST /api/v1/shares makes a short-lived, limited-use ephemeral auth key
 * behind a URL; nodes that join with it show in the listing, and a revoke or the share's
 * expiry deletes them (their control stream gets NODE_DELETED, peers drop them).
 */
import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { MIGRATIONS, SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { ControlFixture } from '../support/control-fixture.ts';

const POLICY = `{
  "tagOwners": { "tag:demo": ["autogroup:admin"], "tag:web": ["alice@example.com"] },
  "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }],
}`;

const ctl = new ControlFixture('pierce-shares-', { apiKey: true, defaults: { policyText: POLICY } });
const { api, start } = ctl;

const node = (hostname: string, authKey?: string) => ctl.node(hostname, authKey ? { authKey } : {});

/** The auth key inside a share URL's fragment. */
function keyOf(url: string): string {
  return decodeURIComponent(/#authkey=([^&]+)/.exec(url)![1]!);
}

describe('shares', () => {
  it('create gives a URL with the key; the node that joins is listed live; revoke deletes it and tells it', async () => {
    await start();
    await ctl.server.state.createUser('alice@example.com');
    const { key: aliceKey } = await ctl.server.state.createAuthKey({ user: 'alice@example.com', reusable: true });
    const host = await node('host', aliceKey).join();

    const r = await api('POST', '/shares', { tags: ['tag:demo'], ttlSeconds: 600, to: 'root@host:22', description: 'demo' });
    expect(r.status).toBe(200);
    const { share, key, url } = r.body;
    expect(share.id).toMatch(/^shr_[A-Za-z0-9_-]{11}$/);
    expect(key).toMatch(/^pak_[0-9a-f]{12}_/);
    expect(url).toBe(`${ctl.server.url}/#authkey=${encodeURIComponent(key)}&ephemeral=1&ssh=${encodeURIComponent('root@host:22')}`);
    expect(share).toMatchObject({ tags: ['tag:demo'], uses: 1, to: 'root@host:22', description: 'demo', user: 'shared', state: 'active', used: 0, nodes: [] });
    expect(share.createdBy).toMatch(/^apikey:[0-9a-f]{12}$/);
    expect(share.expiresAt - share.createdAt).toBe(600_000);
    expect(ctl.server.state.userByName('shared')).toBeDefined();
    expect(JSON.stringify((await api('GET', '/authkeys')).body)).not.toContain(key);

    const guest = await node('browser', keyOf(url)).join();
    expect(guest.view.self!.ephemeral).toBe(true);
    expect(guest.view.self!.tags).toEqual(['tag:demo']);
    expect(guest.view.self!.keyExpiry).toBe(share.expiresAt);
    await host.waitFor(() => host.view.peerByName('browser')?.online, 3000, 'guest visible');

    const list = await api('GET', '/shares');
    expect(list.body.shares).toHaveLength(1);
    expect(list.body.shares[0]).toMatchObject({ id: share.id, state: 'used-up', used: 1, nodes: [{ id: guest.id, name: 'browser', online: true }] });
    const nodesView = (await api('GET', '/nodes')).body.nodes as Record<string, unknown>[];
    expect(nodesView.find((n) => n['name'] === 'browser')).toMatchObject({ shareId: share.id, authKeyId: share.authKeyId });
    expect(nodesView.find((n) => n['name'] === 'host')).not.toHaveProperty('shareId');

    // single use: a second browser is refused
    const second = node('browser2', keyOf(url));
    await second.connect();
    await expect(second.register()).rejects.toThrow(/AUTH_KEY_USED/);

    const del = await api('DELETE', `/shares/${share.id}`);
    expect(del.body).toEqual({ ok: true, deletedNodes: [guest.id] });
    await guest.waitFor(() => guest.closed, 3000, 'guest closed');
    expect(guest.errors).toContainEqual({ code: 'NODE_DELETED', message: 'the share this node joined through was revoked' });
    await host.waitFor(() => !host.view.peerByName('browser'), 3000, 'guest gone from the host map');
    expect(ctl.server.state.nodes.has(guest.id)).toBe(false);
    const after = await api('GET', '/shares');
    expect(after.body.shares[0]).toMatchObject({ state: 'revoked', nodes: [] });
    expect(after.body.shares[0].revokedAt).toBeTypeOf('number');
    // the key is dead too
    const again = node('browser3', keyOf(url));
    await again.connect();
    await expect(again.register()).rejects.toThrow(/AUTH_KEY_REVOKED/);
    expect((await api('DELETE', '/shares/shr_nope')).status).toBe(404);
  });

  it('a share with uses N lets N nodes join, then reports used-up', async () => {
    await start();
    const r = await api('POST', '/shares', { uses: 3 });
    expect(r.body.share).toMatchObject({ uses: 3, tags: [], to: null });
    expect(r.body.url).not.toContain('&ssh=');
    const k = keyOf(r.body.url);
    for (const h of ['g1', 'g2', 'g3']) await node(h, k).join();
    const extra = node('g4', k);
    await extra.connect();
    await expect(extra.register()).rejects.toThrow(/AUTH_KEY_USED/);
    const v = (await api('GET', '/shares')).body.shares[0];
    expect(v).toMatchObject({ state: 'used-up', used: 3 });
    expect(v.nodes.map((n: { name: string }) => n.name).sort()).toEqual(['g1', 'g2', 'g3']);
    // a node that joined presents the key again on reconnect: that is not a new use
    const g1 = ctl.nodes[0]!;
    g1.close();
    await g1.waitFor(() => g1.closed, 3000, 'closed');
    await g1.join();
    expect(g1.view.self!.name).toBe('g1');
  });

  it('nodes of a share are deleted when it expires', async () => {
    await start();
    const r = await api('POST', '/shares', { ttlSeconds: 0.6, user: undefined });
    const g = await node('short', keyOf(r.body.url)).join();
    const other = await node('other', keyOf((await api('POST', '/shares', { ttlSeconds: 60 })).body.url)).join();
    await other.waitFor(() => other.view.peerByName('short'), 3000, 'peer');
    await g.waitFor(() => g.closed, 5000, 'expired share closes the stream');
    expect(g.errors.map((e) => e.code)).toContain('NODE_DELETED');
    await other.waitFor(() => !other.view.peerByName('short'), 3000, 'peer gone');
    expect(ctl.server.state.nodes.has(g.id)).toBe(false);
    const list = (await api('GET', '/shares')).body.shares as { id: string; state: string; nodes: unknown[] }[];
    expect(list.find((s) => s.id === r.body.share.id)).toMatchObject({ state: 'expired', nodes: [] });
    expect(other.closed).toBeUndefined();
  });

  it('a share that expired while control was down is cleaned up at start', async () => {
    await start();
    const r = await api('POST', '/shares', { ttlSeconds: 1 });
    const g = await node('sleeper', keyOf(r.body.url)).join();
    const id = g.id;
    g.close();
    await ctl.stop();
    await new Promise((res) => setTimeout(res, 1100));
    await start();
    expect(ctl.server.state.nodes.has(id)).toBe(false);
    expect((await api('GET', '/shares')).body.shares[0]).toMatchObject({ state: 'expired', nodes: [] });
  });

  it('refuses bad requests with clear errors', async () => {
    await start({ webUrl: 'https://pierce.example/app/' });
    const bad = async (body: unknown) => (await api('POST', '/shares', body)).body;
    expect(await bad({ to: 'root@host;rm -rf' })).toMatchObject({ code: 'BAD_TARGET' });
    expect(await bad({ uses: 0 })).toMatchObject({ code: 'BAD_REQUEST' });
    expect(await bad({ uses: 1.5 })).toMatchObject({ code: 'BAD_REQUEST' });
    expect(await bad({ ttlSeconds: -1 })).toMatchObject({ code: 'BAD_REQUEST' });
    expect(await bad({ tags: ['tag:unknown'] })).toMatchObject({ code: 'TAG_NOT_OWNED' });
    expect(await bad({ tags: ['nope'] })).toMatchObject({ code: 'BAD_TAG' });
    expect(await bad({ user: 'ghost@example.com' })).toMatchObject({ code: 'NOT_FOUND' });
    expect((await api('POST', '/shares', { user: 'ghost@example.com' })).status).toBe(404);
    const ok = await api('POST', '/shares', { to: '[fd7a:115c:a1e0::1]:2222' });
    expect(ok.status).toBe(200);
    expect(ok.body.url).toMatch(/^https:\/\/pierce\.example\/app\/#authkey=pak_/);
    expect(ok.body.url).toContain(`&ssh=${encodeURIComponent('[fd7a:115c:a1e0::1]:2222')}`);
    // an existing user can own share keys; tags an admin gives need only be declared
    await ctl.server.state.createUser('alice@example.com');
    const t = await api('POST', '/shares', { user: 'alice@example.com', tags: ['tag:web', 'tag:demo'] });
    expect(t.body.share).toMatchObject({ user: 'alice@example.com', tags: ['tag:web', 'tag:demo'] });
  });
});

describe('auth key use limits and the schema upgrade', () => {
  it('POST /authkeys with maxUses allows that many registrations; listings say when it is spent', async () => {
    await start();
    await ctl.server.state.createUser('alice@example.com');
    const k = await api('POST', '/authkeys', { user: 'alice@example.com', reusable: true, maxUses: 2 });
    expect(k.body.authKey).toMatchObject({ maxUses: 2, reusable: true });
    await node('k1', k.body.key).join();
    await node('k2', k.body.key).join();
    const k3 = node('k3', k.body.key);
    await k3.connect();
    await expect(k3.register()).rejects.toThrow(/AUTH_KEY_USED/);
    expect((await api('GET', '/authkeys')).body.authKeys[0]).toMatchObject({ usedCount: 2, maxUses: 2, valid: false });
    expect((await api('POST', '/authkeys', { user: 'alice@example.com', maxUses: 0 })).status).toBe(400);
  });

  it('a version 1 database is upgraded in place, keys keeping no use limit', async () => {
    const file = join(ctl.dir, 'old.db');
    const db = new Database(file);
    db.exec(MIGRATIONS[0]!);
    db.pragma('user_version = 1');
    db.prepare("INSERT INTO users(name, created_at) VALUES ('u', 1)").run();
    db.prepare("INSERT INTO auth_keys(id, hash, user_id, reusable, ephemeral, tags, created_at) VALUES ('aaaaaaaaaaaa', 'h', 1, 0, 0, '[]', 1)").run();
    db.close();
    const st = new SqliteStore(file);
    try {
      expect(st.schemaVersion).toBe(MIGRATIONS.length);
      expect((await st.listAuthKeys())[0]).toMatchObject({ id: 'aaaaaaaaaaaa', maxUses: null });
      expect(await st.listShares()).toEqual([]);
      expect(await st.listAdmins()).toEqual([]);
      expect(await st.listAudit({ limit: 10 })).toEqual([]);
    } finally {
      await st.close();
    }
  });
});

describe('pierce share (CLI)', () => {
  async function pierce(args: string[], stdin = ''): Promise<{ code: number; stdout: string; stderr: string }> {
    const { main } = await import('../../gateway/src/cli/main.ts');
    let stdout = '';
    let stderr = '';
    const code = await main(args, { stdout: (x) => void (stdout += x), stderr: (x) => void (stderr += x), readStdin: () => Promise.resolve(stdin) });
    return { code, stdout, stderr };
  }

  it('create, list and revoke drive the admin API', async () => {
    await start();
    const conn = ['--control', ctl.server.url, '--api-key', ctl.apiKey];
    const help = await pierce(['share', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('pierce share create');
    expect(help.stdout).toContain('--uses N');

    const c = await pierce(['share', 'create', '--tags', 'tag:demo', '--ttl', '30m', '--uses', '2', '--to', 'root@host', '--description', 'for bob', ...conn]);
    expect(c.code).toBe(0);
    const [url, info] = c.stdout.split('\n');
    expect(url).toMatch(new RegExp(`^${ctl.server.url}/#authkey=pak_[0-9a-f]{12}_[A-Za-z0-9_-]+&ephemeral=1&ssh=root%40host$`));
    const id = /share (shr_\S+): 2 use\(s\), expires (\S+), tags tag:demo, ssh root@host/.exec(info!)!;
    expect(id).not.toBeNull();
    expect(Date.parse(id[2]!) - Date.now()).toBeGreaterThan(29 * 60_000);

    const g = await node('cli-guest', keyOf(url!)).join();
    const list = await pierce(['share', 'list', ...conn]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`${id[1]}\\s+active\\s+1/2\\s+tag:demo\\s+root@host\\s+\\S+\\s+cli-guest\\(${g.id}\\)\\s+for bob`));
    const json = JSON.parse((await pierce(['share', 'list', '--json', ...conn])).stdout);
    expect(json.shares[0]).toMatchObject({ id: id[1], used: 1, uses: 2 });

    const r = await pierce(['share', 'revoke', id[1]!, ...conn]);
    expect(r).toMatchObject({ code: 0, stdout: `revoked share ${id[1]}; deleted node(s) ${g.id}\n` });
    await g.waitFor(() => g.closed, 3000, 'closed');

    const again = await pierce(['share', 'revoke', 'shr_missing', ...conn]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('no share "shr_missing"');
    expect((await pierce(['share', 'create', '--uses', 'zero', ...conn])).code).toBe(2);
    expect((await pierce(['share', 'create', '--ttl', 'soon', ...conn])).stderr).toContain('--ttl: "soon" is not a duration');
    expect((await pierce(['share', 'create', '--to', 'a b', ...conn])).stderr).toContain('is not [user@]host[:port]');
    expect((await pierce(['share', 'frobnicate', ...conn])).code).toBe(2);
    const saved = process.env['PIERCE_API_KEY'];
    delete process.env['PIERCE_API_KEY'];
    try {
      const noKey = await pierce(['share', 'list', '--control', ctl.server.url]);
      expect(noKey.code).toBe(2);
      expect(noKey.stderr).toContain('needs --api-key KEY or $PIERCE_API_KEY');
    } finally {
      if (saved !== undefined) process.env['PIERCE_API_KEY'] = saved;
    }
  });
});
