/**
 * The audit log: every successful change through the admin API is recorded with who made it
 * (and never a secret); nodes report SSH session events with the `audit` message, which is
 * validated strictly and rate-limited per connection.
 */
import { describe, expect, it } from 'vitest';
import { AUDIT_EVENTS_PER_MINUTE } from '../../gateway/src/control/session.ts';
import { AuditSender, AUDIT_QUEUE_MAX } from '../../src/control/client.ts';
import { ControlError, MAX_AUDIT_EVENTS, parseClientMessage, type AuditEvent, type ClientMessage } from '../../src/control/messages.ts';
import { ControlFixture } from '../support/control-fixture.ts';
import { thrownCode } from '../support/errors.ts';

const ctl = new ControlFixture('pierce-audit-', { apiKey: true });
const { api, start, node } = ctl;

// One timestamp for every event the tests make, so that two calls of ev() compare equal (Date.now()
// per call flaked across a millisecond boundary); near now, as control checks the node's clock.
const AT = Date.now();
const ev = (over: Partial<AuditEvent> = {}): AuditEvent => ({ kind: 'ssh', action: 'accept', at: AT, session: 's1', srcAddr: '100.64.0.2:51234', sshUser: 'root', ...over });

async function events(q = ''): Promise<Record<string, any>[]> {
  return (await api('GET', `/audit${q}`)).body.events as Record<string, any>[];
}

async function until<T>(f: () => Promise<T | undefined | false>, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('admin audit events', () => {
  it('records who changed what, newest first, without secrets', async () => {
    await start();
    const actor = `apikey:${ctl.apiKeyId}`;
    await api('POST', '/users', { name: 'alice@example.com' });
    const ak = await api('POST', '/authkeys', { user: 'alice@example.com', reusable: true });
    const n = node('web', { authKey: ak.body.key });
    await n.join();
    await api('POST', `/nodes/${n.id}/rename`, { name: 'web-1' });
    await api('POST', `/nodes/${n.id}/expire`);
    const policy = '{"tagOwners": {"tag:x": ["alice@example.com"]}, "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}';
    await api('PUT', '/policy', policy);
    await api('POST', `/nodes/${n.id}/tags`, { tags: ['tag:x'] });
    await api('DELETE', `/nodes/${n.id}`);
    await api('DELETE', `/authkeys/${ak.body.authKey.id}`);
    const sh = await api('POST', '/shares', { ttlSeconds: 60 });
    await api('DELETE', `/shares/${sh.body.share.id}`);
    const newKey = await api('POST', '/apikeys', { description: 'ci' });
    await api('DELETE', `/apikeys/${newKey.body.id}`);
    await api('POST', '/admins', { name: 'ops', password: 'ops-password-1' });
    const fail = await api('POST', '/login', { name: 'ops', password: 'wrong-password' });
    expect(fail.status).toBe(401);
    const ok = await api('POST', '/login', { name: 'ops', password: 'ops-password-1' });
    const cookie = ok.headers.get('set-cookie')!.split(';')[0]!;
    await api('POST', '/users', { name: 'bob@example.com' }, { Cookie: cookie, 'X-Pierce-Request': '1' });
    await api('POST', '/logout', undefined, { Cookie: cookie, 'X-Pierce-Request': '1' });
    await api('DELETE', '/admins/ops');
    await api('DELETE', '/users/bob@example.com');
    // refused changes are not recorded
    expect((await api('DELETE', '/nodes/999')).status).toBe(404);
    expect((await api('POST', '/users', { name: 'alice@example.com' })).status).toBe(409);

    const all = await events('?limit=1000');
    const actions = all.map((e) => e['action']).reverse();
    expect(actions).toEqual([
      'user.create',
      'authkey.create',
      'node.rename',
      'node.expire',
      'policy.set',
      'node.tags',
      'node.delete',
      'authkey.revoke',
      'share.create',
      'share.revoke',
      'apikey.create',
      'apikey.revoke',
      'admin.create',
      'login',
      'login',
      'user.create',
      'logout',
      'admin.delete',
      'user.delete',
    ]);
    expect(all.every((e) => e['kind'] === 'admin')).toBe(true);
    const by = (action: string) => all.filter((e) => e['action'] === action).reverse();
    expect(by('user.create')[0]).toMatchObject({ actor, target: 'alice@example.com' });
    expect(by('user.create')[1]).toMatchObject({ actor: 'admin:ops', target: 'bob@example.com' });
    expect(by('logout')[0]).toMatchObject({ actor: 'admin:ops' });
    expect(by('login')[0]).toMatchObject({ actor: 'admin:ops', detail: { ok: false, code: 'BAD_LOGIN' } });
    expect(by('login')[1]).toMatchObject({ actor: 'admin:ops', detail: { ok: true } });
    expect(by('node.rename')[0]).toMatchObject({ target: String(n.id), detail: { from: 'web', to: 'web-1' } });
    expect(by('node.tags')[0]!['detail']).toMatchObject({ tags: ['tag:x'] });
    expect(by('share.revoke')[0]).toMatchObject({ target: sh.body.share.id });
    expect(by('authkey.create')[0]).toMatchObject({ target: ak.body.authKey.id, detail: { user: 'alice@example.com', reusable: true } });
    const text = JSON.stringify(all);
    for (const secret of [ak.body.key, sh.body.key, newKey.body.key, ctl.apiKey, 'ops-password-1', 'wrong-password']) expect(text).not.toContain(secret);
    expect(all[0]!['at']).toBeGreaterThan(Date.now() - 60_000);

    // paging and filters
    const page = await events('?limit=3');
    expect(page.map((e) => e['action'])).toEqual(['user.delete', 'admin.delete', 'logout']);
    const next = await events(`?limit=2&before=${page[2]!['id']}`);
    expect(next.map((e) => e['action'])).toEqual(['user.create', 'login']);
    expect(await events('?kind=ssh')).toEqual([]);
    expect((await api('GET', '/audit?limit=0')).status).toBe(400);
    expect((await api('GET', '/audit?kind=nope')).status).toBe(400);
    expect((await api('GET', '/audit?before=x')).status).toBe(400);
    // reading the log is not itself logged
    expect((await events('?limit=1000')).length).toBe(all.length);
  });
});

describe('SSH audit events from nodes', () => {
  /** Starts control with user u@x and returns a reusable auth key of theirs. */
  async function startWithKey(): Promise<string> {
    await start();
    await ctl.server.state.createUser('u@x');
    return (await ctl.server.state.createAuthKey({ user: 'u@x', reusable: true })).key;
  }

  it('are stored with the reporting node as actor and the source as target', async () => {
    const key = await startWithKey();
    const host = await node('sshhost', { authKey: key }).join();
    const t0 = Date.now() - 5000;
    host.conn!.audit([
      ev({ at: t0, srcNode: 'laptop', localUser: 'root' }),
      ev({ action: 'end', at: t0 + 4000, srcNode: 'laptop', exitStatus: 0, durationMs: 4000 }),
      ev({ action: 'reject', session: 's2', srcAddr: '100.64.0.9:4000', sshUser: 'admin', reason: 'policy: no ssh rule', at: 1 }),
    ]);
    const got = await until(async () => {
      const e = await events('?kind=ssh');
      return e.length === 3 && e;
    });
    expect(got.map((e) => e['action'])).toEqual(['reject', 'end', 'accept']);
    expect(got[2]).toMatchObject({ kind: 'ssh', actor: 'sshhost', target: 'laptop', at: t0, detail: { session: 's1', srcAddr: '100.64.0.2:51234', sshUser: 'root', localUser: 'root', srcNode: 'laptop', nodeId: host.id } });
    expect(got[1]!['detail']).toMatchObject({ exitStatus: 0, durationMs: 4000 });
    // a clock far off is replaced by control's time; the node's value is kept in detail
    expect(got[0]).toMatchObject({ target: '100.64.0.9:4000', detail: { reason: 'policy: no ssh rule', reportedAt: 1 } });
    expect(got[0]!['at']).toBeGreaterThan(Date.now() - 60_000);
    expect(await events('?kind=admin')).toEqual([]);
    expect(host.closed).toBeUndefined();
  });

  it('are rate-limited per connection without an error', async () => {
    const key = await startWithKey();
    const host = await node('busy', { authKey: key }).join();
    host.conn!.audit(Array.from({ length: 130 }, (_, i) => ev({ session: `s${i}` })));
    host.conn!.send({ t: 'keepalive' });
    await until(async () => (await events('?kind=ssh&limit=1000')).length >= AUDIT_EVENTS_PER_MINUTE);
    await new Promise((r) => setTimeout(r, 200));
    const stored = await events('?kind=ssh&limit=1000');
    expect(stored).toHaveLength(AUDIT_EVENTS_PER_MINUTE);
    expect(stored.at(-1)!['detail']['session']).toBe('s0');
    expect(host.errors).toEqual([]);
    expect(host.closed).toBeUndefined();
  });

  it('a malformed audit message is refused like any bad message (error, then close); others carry on', async () => {
    const key = await startWithKey();
    const a = node('a', { authKey: key });
    const b = node('b', { authKey: key });
    await a.join();
    await b.join();
    b.conn!.send({ t: 'audit', events: [{ ...ev(), action: 'delete-everything' }] } as unknown as ClientMessage);
    await b.waitFor(() => b.closed, 3000, 'closed');
    expect(b.errors[0]!.code).toBe('CONTROL_BAD_MESSAGE');
    expect(b.closed!.code).toBe(1008);
    expect(await events('?kind=ssh')).toEqual([]);
    a.conn!.audit([ev()]);
    await until(async () => (await events('?kind=ssh')).length === 1);
    expect(a.closed).toBeUndefined();
  });

  it('an unregistered connection may not report', async () => {
    await start();
    const n = node('anon');
    await n.connect();
    n.conn!.audit([ev()]);
    await n.waitFor(() => n.errors.length > 0, 3000, 'error');
    expect(n.errors[0]!.code).toBe('NOT_REGISTERED');
    expect(await events('?kind=ssh')).toEqual([]);
  });
});

describe('parseClientMessage audit', () => {
  const parse = (v: unknown) => thrownCode(() => parseClientMessage(v), ControlError, 'ok');
  it('accepts well-formed events and keeps only known fields', () => {
    const m = parseClientMessage({ t: 'audit', events: [ev({ srcNode: 'n', localUser: 'u', reason: 'r', exitStatus: 1, durationMs: 5 })] });
    expect(m).toEqual({ t: 'audit', events: [ev({ srcNode: 'n', localUser: 'u', reason: 'r', exitStatus: 1, durationMs: 5 })] });
    expect(parse({ t: 'audit', events: Array.from({ length: MAX_AUDIT_EVENTS }, () => ev()) })).toBe('ok');
  });
  it('refuses everything else with CONTROL_BAD_MESSAGE', () => {
    const bad: unknown[] = [
      { t: 'audit' },
      { t: 'audit', events: [] },
      { t: 'audit', events: {} },
      { t: 'audit', events: Array.from({ length: MAX_AUDIT_EVENTS + 1 }, () => ev()) },
      { t: 'audit', events: [null] },
      { t: 'audit', events: ['x'] },
      { t: 'audit', events: [{ ...ev(), kind: 'admin' }] },
      { t: 'audit', events: [{ ...ev(), action: 'login' }] },
      { t: 'audit', events: [{ ...ev(), at: -1 }] },
      { t: 'audit', events: [{ ...ev(), at: 1.5 }] },
      { t: 'audit', events: [{ ...ev(), at: '2026' }] },
      { t: 'audit', events: [{ ...ev(), session: '' }] },
      { t: 'audit', events: [{ ...ev(), sshUser: 'x'.repeat(257) }] },
      { t: 'audit', events: [{ ...ev(), reason: 'x'.repeat(257) }] },
      { t: 'audit', events: [{ ...ev(), srcAddr: 5 }] },
      { t: 'audit', events: [{ ...ev(), exitStatus: 256 }] },
      { t: 'audit', events: [{ ...ev(), durationMs: -5 }] },
      { t: 'audit', events: [{ ...ev(), extra: 1 }] },
      { t: 'audit', events: [{ ...ev(), srcNode: null }] },
    ];
    for (const b of bad) expect(parse(b), JSON.stringify(b).slice(0, 120)).toBe('CONTROL_BAD_MESSAGE');
  });
});

describe('AuditSender', () => {
  it('sends while connected, queues (bounded) while not, flushes on reconnect', () => {
    const sent: ClientMessage[] = [];
    let closed = false;
    const conn = {
      send: (m: ClientMessage) => {
        if (closed) throw new ControlError('CONTROL_CLOSED', 'closed');
        sent.push(m);
      },
      get isClosed() {
        return closed;
      },
    };
    const a = new AuditSender();
    a.audit([ev({ session: 'early' })]);
    expect(a.pending).toBe(1);
    a.setConnection(conn);
    expect(sent).toEqual([{ t: 'audit', events: [ev({ session: 'early' })] }]);
    expect(a.pending).toBe(0);
    a.audit(Array.from({ length: 40 }, (_, i) => ev({ session: `b${i}` })));
    expect(sent.slice(1).map((m) => (m.t === 'audit' ? m.events.length : 0))).toEqual([MAX_AUDIT_EVENTS, 8]);
    closed = true;
    a.audit([ev({ session: 'while-closed' })]);
    expect(a.pending).toBe(1);
    a.setConnection(undefined);
    a.audit(Array.from({ length: AUDIT_QUEUE_MAX + 10 }, (_, i) => ev({ session: `q${i}` })));
    expect(a.pending).toBe(AUDIT_QUEUE_MAX);
    expect(a.dropped).toBe(11);
    closed = false;
    const before = sent.length;
    a.setConnection(conn);
    expect(a.pending).toBe(0);
    const flushed = sent.slice(before).flatMap((m) => (m.t === 'audit' ? m.events : []));
    expect(flushed).toHaveLength(AUDIT_QUEUE_MAX);
    expect(flushed[0]!.session).toBe('q10');
  });
});
