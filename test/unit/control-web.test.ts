/**
 * Control serving the web page (`--web DIR`): the page, the admin console, assets with the
 * right types and cache headers, nothing outside DIR and no dot files; control's own routes
 * keep priority. Also POST /api/v1/policy/check's answers for the console's editor.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startControl, type ControlServer } from '../../gateway/src/control/server.ts';
import { SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { createApiKey } from '../../gateway/src/control/state.ts';
import { staticPath } from '../../gateway/src/control/static.ts';

let dir: string;
let web: string;
let server: ControlServer;
let apiKey: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pierce-web-'));
  web = join(dir, 'dist');
  mkdirSync(join(web, 'assets'), { recursive: true });
  writeFileSync(join(web, 'index.html'), '<!doctype html><title>pierce</title>');
  writeFileSync(join(web, 'admin.html'), '<!doctype html><title>admin</title>');
  writeFileSync(join(web, 'assets', 'index-abc123.js'), 'console.log(1)');
  writeFileSync(join(web, 'assets', 'index-abc123.css'), 'body{}');
  writeFileSync(join(web, 'assets', 'index-abc123.js.map'), '{}');
  writeFileSync(join(web, 'assets', 'font.woff2'), 'wOF2');
  writeFileSync(join(web, 'logo.svg'), '<svg/>');
  writeFileSync(join(web, 'icon.png'), 'png');
  writeFileSync(join(web, 'manifest.json'), '{}');
  writeFileSync(join(web, '.env'), 'SECRET=1');
  writeFileSync(join(dir, 'outside.txt'), 'outside');
  symlinkSync(join(dir, 'outside.txt'), join(web, 'link.txt'));
  server = await startControl({ store: new SqliteStore(join(dir, 'control.db')), webRoot: web });
  apiKey = (await createApiKey(server.state.store, Date.now())).key;
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A request with the path sent exactly as given (fetch would normalise it). */
function raw(path: string, method = 'GET'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port: server.port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    r.on('error', reject);
    r.end();
  });
}

describe('static files', () => {
  it('serves the page, the console and assets with types and cache headers', async () => {
    const root = await raw('/');
    expect(root).toMatchObject({ status: 200, body: '<!doctype html><title>pierce</title>' });
    expect(root.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(root.headers['cache-control']).toBe('no-cache');
    expect(root.headers['x-content-type-options']).toBe('nosniff');
    for (const p of ['/admin', '/admin/']) {
      const a = await raw(p);
      expect(a.body).toBe('<!doctype html><title>admin</title>');
      expect(a.headers['cache-control']).toBe('no-cache');
    }
    expect((await raw('/index.html')).status).toBe(200);
    const types: [string, string][] = [
      ['/assets/index-abc123.js', 'text/javascript; charset=utf-8'],
      ['/assets/index-abc123.css', 'text/css; charset=utf-8'],
      ['/assets/index-abc123.js.map', 'application/json'],
      ['/assets/font.woff2', 'font/woff2'],
      ['/logo.svg', 'image/svg+xml'],
      ['/icon.png', 'image/png'],
      ['/manifest.json', 'application/json'],
    ];
    for (const [p, t] of types) {
      const r = await raw(p);
      expect(r.status, p).toBe(200);
      expect(r.headers['content-type'], p).toBe(t);
    }
    expect((await raw('/assets/index-abc123.js')).headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect((await raw('/logo.svg')).headers['cache-control']).toBe('no-cache');
    const head = await raw('/assets/index-abc123.js', 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(head.headers['content-length']).toBe('14');
    expect((await raw('/?x=1')).status).toBe(200);
    expect((await raw('/assets/index-abc123.js?v=2')).status).toBe(200);
  });

  it('refuses traversal, dot files, symlinks out of the root, other methods and missing files', async () => {
    const refused = [
      '/../package.json',
      '/%2e%2e/package.json',
      '/assets/%2e%2e/%2e%2e/outside.txt',
      '/assets/..%2f..%2foutside.txt',
      '/..%5c..%5coutside.txt',
      '/assets/../../outside.txt',
      '/.env',
      '/%2eenv',
      '/./index.html',
      '/link.txt',
      '/missing.js',
      '/assets',
      '/assets/',
      '//etc/passwd',
      '/%00',
      '/%zz',
      '/control',
    ];
    for (const p of refused) {
      const r = await raw(p);
      expect(r.status, p).toBe(404);
      expect(r.body, p).not.toContain('outside');
      expect(r.body, p).not.toContain('SECRET');
    }
    expect((await raw('/index.html', 'POST')).status).toBe(404);
    expect(staticPath('/a/b.js')).toBe('a/b.js');
    expect(staticPath('/a/../b.js')).toBeUndefined();
    expect(staticPath('/a/%2e%2e/b.js')).toBeUndefined();
  });

  it('leaves control routes alone', async () => {
    expect(JSON.parse((await raw('/key')).body).publicKey).toBe(server.publicKey);
    expect((await raw('/health')).body).toBe('ok\n');
    expect((await raw('/api/v1/nodes')).status).toBe(401);
    expect((await raw('/register/000000000000000000000000')).status).toBe(404);
  });

  it('without --web nothing but control routes is served', async () => {
    const s = await startControl({ store: new SqliteStore(join(dir, 'other.db')) });
    try {
      const r = await fetch(`${s.url}/`);
      expect(r.status).toBe(404);
    } finally {
      await s.close();
    }
  });
});

describe('POST /api/v1/policy/check', () => {
  const check = async (text: string) => {
    const r = await fetch(`${server.url}/api/v1/policy/check`, { method: 'POST', headers: { Authorization: `Bearer ${apiKey}` }, body: text });
    return { status: r.status, body: (await r.json()) as Record<string, any> };
  };

  it('reports a syntax error with its 1-based line and column', async () => {
    const r = await check('{\n  "acls": [\n    {"action": "accept",, }\n  ]\n}');
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({ valid: false, code: 'POLICY_SYNTAX', line: 3, column: expect.any(Number) });
    expect(r.body.column).toBeGreaterThanOrEqual(1);
    expect(r.body.error).toContain('3:');
  });

  it('reports an invalid policy with where it is', async () => {
    const r = await check('{\n  "acls": [\n    {"action": "accept", "src": ["tag:nope"], "dst": ["*:*"]}\n  ]\n}');
    expect(r.status).toBe(422);
    expect(r.body).toMatchObject({ valid: false, code: 'POLICY_INVALID', line: 3 });
    expect(r.body.error).toContain('tag:nope');
  });

  it('a valid policy: rule and test counts and the failing tests', async () => {
    const good = await check('{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}], "tests": [{"src": "a@x", "accept": ["b@x:22"]}]}');
    expect(good).toMatchObject({ status: 200, body: { valid: true, rules: 1, tests: 1, failures: [] } });
    const failing = await check('{"acls": [{"action": "accept", "src": ["a@x"], "dst": ["a@x:*"]}], "tests": [{"src": "a@x", "accept": ["b@x:22"]}]}');
    expect(failing.status).toBe(200);
    expect(failing.body).toMatchObject({ valid: true, rules: 1, tests: 1 });
    expect(failing.body.failures).toHaveLength(1);
    expect(failing.body.failures[0]).toMatchObject({ test: expect.any(Number), src: 'a@x', dst: 'b@x:22' });
    expect(failing.body.failures[0].message).toContain('b@x:22');
    // PUT still refuses a policy whose tests fail
    const put = await fetch(`${server.url}/api/v1/policy`, { method: 'PUT', headers: { Authorization: `Bearer ${apiKey}` }, body: '{"acls": [{"action": "accept", "src": ["a@x"], "dst": ["a@x:*"]}], "tests": [{"src": "a@x", "accept": ["b@x:22"]}]}' });
    expect(put.status).toBe(422);
    expect(((await put.json()) as { code: string }).code).toBe('POLICY_TESTS_FAILED');
  });
});

describe('pierce control flags for the web page and the first admin', () => {
  async function pierce(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
    const { main } = await import('../../gateway/src/cli/main.ts');
    let stdout = '';
    let stderr = '';
    const code = await main(args, { stdout: (x) => void (stdout += x), stderr: (x) => void (stderr += x), readStdin: () => Promise.resolve('') });
    return { code, stdout, stderr };
  }

  it('--help lists them; bad values are usage errors', async () => {
    const help = await pierce(['control', '--help']);
    for (const f of ['--web DIR', '--web-url URL', '--admin-password-file F', '--admin-name NAME']) expect(help.stdout).toContain(f);
    const db = join(dir, 'flags.db');
    const short = join(dir, 'short.txt');
    writeFileSync(short, 'short\n');
    const cases: [string[], string][] = [
      [['--web', join(dir, 'nope')], '--web: '],
      [['--web-url', 'not a url'], '--web-url: "not a url" is not a URL'],
      [['--admin-name', 'x'], '--admin-name goes with --admin-password-file'],
      [['--admin-password-file', join(dir, 'missing.txt')], '--admin-password-file: cannot read'],
      [['--admin-password-file', short], 'at least 8 characters'],
    ];
    for (const [extra, msg] of cases) {
      const r = await pierce(['control', '--listen', '127.0.0.1:0', '--db', db, ...extra]);
      expect(r.code, extra.join(' ')).toBe(2);
      expect(r.stderr).toContain(msg);
    }
  });
});
