/**
 * Admin accounts and browser login: scrypt hashes, the session cookie, the CSRF header rule,
 * the login throttle, account management through the API and `pierce admin accounts`.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControl, type ControlServer, type ControlServerOptions } from '../../gateway/src/control/server.ts';
import { SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { createApiKey } from '../../gateway/src/control/state.ts';
import { hashPassword, verifyPassword } from '../../gateway/src/control/admins.ts';

let dir: string;
let server: ControlServer | undefined;
let apiKey = '';
let clock = 0;

async function start(extra: Partial<ControlServerOptions> = {}): Promise<ControlServer> {
  server = await startControl({ store: new SqliteStore(join(dir, 'control.db')), now: () => Date.now() + clock, ...extra });
  apiKey = (await createApiKey(server.state.store, Date.now(), 'test')).key;
  return server;
}

interface Res {
  status: number;
  body: Record<string, any>;
  headers: Headers;
}

async function req(method: string, path: string, o: { body?: unknown; cookie?: string; key?: string; csrf?: boolean } = {}): Promise<Res> {
  const headers: Record<string, string> = {};
  if (o.body !== undefined) headers['Content-Type'] = 'application/json';
  if (o.cookie) headers['Cookie'] = o.cookie;
  if (o.key) headers['Authorization'] = `Bearer ${o.key}`;
  if (o.csrf) headers['X-Pierce-Request'] = '1';
  const res = await fetch(`http://127.0.0.1:${server!.port}/api/v1${path}`, { method, headers, ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}) });
  return { status: res.status, body: (await res.json()) as Record<string, any>, headers: res.headers };
}

async function login(name: string, password: string): Promise<Res> {
  return req('POST', '/login', { body: { name, password } });
}

/** The cookie pair ("pierce_admin=…") from a login response. */
function cookieOf(r: Res): string {
  return r.headers.get('set-cookie')!.split(';')[0]!;
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pierce-login-'));
  clock = 0;
});
afterEach(async () => {
  await server?.close();
  server = undefined;
  rmSync(dir, { recursive: true, force: true });
});

describe('password hashes', () => {
  it('are scrypt with a random salt and verify in constant time', async () => {
    const a = await hashPassword('correct horse');
    const b = await hashPassword('correct horse');
    expect(a).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9+/=]{24}\$[A-Za-z0-9+/=]{44}$/);
    expect(a).not.toBe(b);
    expect(await verifyPassword('correct horse', a)).toBe(true);
    expect(await verifyPassword('correct horsE', a)).toBe(false);
    expect(await verifyPassword('correct horse', 'scrypt$3$8$1$AAAA$AAAA')).toBe(false);
    expect(await verifyPassword('x', 'plain')).toBe(false);
  });
});

describe('browser login', () => {
  it('an initial admin is made at start only when there is none; login sets an HttpOnly SameSite cookie', async () => {
    await start({ initialAdmin: { name: 'admin', password: 'first-password' } });
    const db = new Database(join(dir, 'control.db'), { readonly: true });
    const rows = db.prepare('SELECT name, password_hash FROM admins').all() as { name: string; password_hash: string }[];
    db.close();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.name).toBe('admin');
    expect(rows[0]!.password_hash).toMatch(/^scrypt\$/);
    expect(rows[0]!.password_hash).not.toContain('first-password');

    const r = await login('admin', 'first-password');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ admin: { name: 'admin' } });
    const set = r.headers.get('set-cookie')!;
    expect(set).toMatch(/^pierce_admin=[A-Za-z0-9_-]{43}; HttpOnly; SameSite=Strict; Path=\/; Max-Age=43200$/);
    const me = await req('GET', '/me', { cookie: cookieOf(r) });
    expect(me).toMatchObject({ status: 200, body: { admin: { name: 'admin' } } });

    await server!.close();
    // another initial admin is ignored once an account exists
    await start({ initialAdmin: { name: 'other', password: 'second-password' } });
    expect((await req('GET', '/admins', { key: apiKey })).body.admins.map((a: { name: string }) => a.name)).toEqual(['admin']);
    // sessions do not survive a restart
    expect((await req('GET', '/me', { cookie: cookieOf(r) })).status).toBe(401);
  });

  it('the cookie works on every endpoint, and changes need X-Pierce-Request: 1', async () => {
    await start({ initialAdmin: { name: 'root', password: 'hunter2hunter2' } });
    const c = cookieOf(await login('root', 'hunter2hunter2'));
    expect((await req('GET', '/nodes', { cookie: c })).status).toBe(200);
    expect((await req('GET', '/policy', { cookie: c })).body.rules).toBe(1);
    const csrf = await req('POST', '/users', { cookie: c, body: { name: 'bob@example.com' } });
    expect(csrf).toMatchObject({ status: 403, body: { code: 'CSRF' } });
    expect(server!.state.userByName('bob@example.com')).toBeUndefined();
    const ok = await req('POST', '/users', { cookie: c, csrf: true, body: { name: 'bob@example.com' } });
    expect(ok.status).toBe(200);
    expect((await req('DELETE', '/users/bob@example.com', { cookie: c })).status).toBe(403);
    // no cookie, a forged cookie, a wrong API key
    expect((await req('GET', '/nodes')).body.code).toBe('UNAUTHORIZED');
    expect((await req('GET', '/nodes', { cookie: 'pierce_admin=AAAA' })).status).toBe(401);
    expect((await req('GET', '/nodes', { key: 'papi_000000000000_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' })).status).toBe(401);
    // the API key needs no CSRF header; /me is for sessions only
    expect((await req('POST', '/users', { key: apiKey, body: { name: 'carol@example.com' } })).status).toBe(200);
    expect((await req('GET', '/me', { key: apiKey })).status).toBe(401);

    const out = await req('POST', '/logout', { cookie: c, csrf: true });
    expect(out.status).toBe(200);
    expect(out.headers.get('set-cookie')).toMatch(/^pierce_admin=; HttpOnly; SameSite=Strict; Path=\/; Max-Age=0$/);
    expect((await req('GET', '/me', { cookie: c })).status).toBe(401);
    expect((await req('GET', '/nodes', { cookie: c })).status).toBe(401);
  });

  it('wrong name and wrong password fail alike; 5 failures lock the name for a minute', async () => {
    await start({ initialAdmin: { name: 'root', password: 'hunter2hunter2' } });
    const unknown = await login('nobody', 'hunter2hunter2');
    const wrong = await login('root', 'nope-nope');
    expect(unknown).toMatchObject({ status: 401, body: { code: 'BAD_LOGIN', error: 'wrong name or password' } });
    expect(wrong).toMatchObject({ status: 401, body: unknown.body });
    expect(wrong.headers.get('set-cookie')).toBeNull();
    for (let i = 0; i < 4; i++) expect((await login('root', `bad-${i}-password`)).status).toBe(401);
    const locked = await login('root', 'hunter2hunter2');
    expect(locked).toMatchObject({ status: 429, body: { code: 'LOGIN_THROTTLED' } });
    expect(locked.headers.get('retry-after')).toBe('60');
    clock += 30_000;
    expect((await login('root', 'hunter2hunter2')).status).toBe(429);
    clock += 31_000;
    expect((await login('root', 'hunter2hunter2')).status).toBe(200);
    // another name was never locked
    expect((await login('nobody', 'x')).status).toBe(401);
    // sessions last 12 h
    const c = cookieOf(await login('root', 'hunter2hunter2'));
    clock += 12 * 3_600_000 - 1000;
    expect((await req('GET', '/me', { cookie: c })).status).toBe(200);
    clock += 2000;
    expect((await req('GET', '/me', { cookie: c })).status).toBe(401);
    // malformed logins
    expect((await req('POST', '/login', { body: { name: 'root' } })).body.code).toBe('BAD_REQUEST');
    expect((await req('POST', '/login', { body: { name: 'root', password: 5 } })).status).toBe(400);
  });

  it('the cookie is Secure when control is reached over https', async () => {
    await start({ serverUrl: 'https://control.example.com', initialAdmin: { name: 'root', password: 'hunter2hunter2' } });
    expect((await login('root', 'hunter2hunter2')).headers.get('set-cookie')).toMatch(/; Secure$/);
  });
});

describe('admin accounts', () => {
  it('are listed, added and deleted through the API; deleting one ends its sessions', async () => {
    await start();
    expect((await req('GET', '/admins', { key: apiKey })).body).toEqual({ admins: [] });
    const add = await req('POST', '/admins', { key: apiKey, body: { name: 'ops', password: 'long enough' } });
    expect(add.status).toBe(200);
    expect(add.body.admin.name).toBe('ops');
    expect((await req('POST', '/admins', { key: apiKey, body: { name: 'ops', password: 'long enough' } })).body.code).toBe('ADMIN_EXISTS');
    expect((await req('POST', '/admins', { key: apiKey, body: { name: 'ops2', password: 'short' } })).body).toMatchObject({ code: 'WEAK_PASSWORD' });
    expect((await req('POST', '/admins', { key: apiKey, body: { name: 'bad name', password: 'long enough' } })).body.code).toBe('BAD_ADMIN');
    const list = await req('GET', '/admins', { key: apiKey });
    expect(list.body.admins).toEqual([{ name: 'ops', createdAt: expect.any(Number) }]);
    expect(JSON.stringify(list.body)).not.toContain('scrypt');
    const c = cookieOf(await login('ops', 'long enough'));
    expect((await req('POST', '/admins', { cookie: c, csrf: true, body: { name: 'ops2', password: 'long enough 2' } })).status).toBe(200);
    expect((await req('DELETE', '/admins/ops', { key: apiKey })).status).toBe(200);
    expect((await req('GET', '/me', { cookie: c })).status).toBe(401);
    expect((await req('DELETE', '/admins/ops', { key: apiKey })).status).toBe(404);
  });

  it('pierce admin accounts reads the password from stdin or $PIERCE_ADMIN_PASSWORD', async () => {
    await start();
    const { main } = await import('../../gateway/src/cli/main.ts');
    const run = async (args: string[], stdin = '') => {
      let stdout = '';
      let stderr = '';
      const code = await main(['admin', '--control', server!.url, '--api-key', apiKey, ...args], { stdout: (x) => void (stdout += x), stderr: (x) => void (stderr += x), readStdin: () => Promise.resolve(stdin) });
      return { code, stdout, stderr };
    };
    const saved = process.env['PIERCE_ADMIN_PASSWORD'];
    try {
      delete process.env['PIERCE_ADMIN_PASSWORD'];
      expect(await run(['accounts', 'add', 'alice', '--password-stdin'], 'stdin-password\n')).toMatchObject({ code: 0, stdout: 'added admin account alice\n' });
      expect((await login('alice', 'stdin-password')).status).toBe(200);
      process.env['PIERCE_ADMIN_PASSWORD'] = 'env-password';
      expect((await run(['accounts', 'add', 'bob'])).code).toBe(0);
      expect((await login('bob', 'env-password')).status).toBe(200);
      // --password-stdin wins over the environment
      expect((await run(['accounts', 'add', 'carol', '--password-stdin'], 'carol-password'))).toMatchObject({ code: 0 });
      expect((await login('carol', 'carol-password')).status).toBe(200);
      const short = await run(['accounts', 'add', 'dave', '--password-stdin'], 'short\n');
      expect(short.code).toBe(1);
      expect(short.stderr).toContain('at least 8 characters');
      delete process.env['PIERCE_ADMIN_PASSWORD'];
      expect((await run(['accounts', 'add', 'erin'], '')).code).toBe(2);
      const list = await run(['accounts', 'list']);
      expect(list.stdout).toMatch(/^NAME\s+CREATED\nalice\s+\S+\nbob\s+\S+\ncarol\s+\S+\n$/);
      expect((await run(['accounts', 'delete', 'bob'])).stdout).toBe('deleted admin account bob\n');
      expect((await run(['accounts', 'delete', 'bob'])).code).toBe(1);
      const help = await run(['--help']);
      expect(help.stdout).toContain('accounts list | add NAME [--password-stdin] | delete NAME');
    } finally {
      if (saved === undefined) delete process.env['PIERCE_ADMIN_PASSWORD'];
      else process.env['PIERCE_ADMIN_PASSWORD'] = saved;
    }
  });
});
