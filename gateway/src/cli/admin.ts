/** `pierce admin`: a client of the control server's admin API (/api/v1, Bearer API key). */
import { readFile } from 'node:fs/promises';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PierceError } from '../../../src/errors.ts';
import { UsageError, type Io } from './main.ts';
import { parseDuration } from './duration.ts';

export const ADMIN_USAGE = `Usage: pierce admin [--control URL] [--api-key KEY] [--json] <what> <action> …

  users   list | create NAME | delete NAME
  keys    list | create --user NAME [--reusable] [--ephemeral] [--tags tag:a,tag:b]
                        [--expiry 90d] [--description TEXT] [--uses N]
          revoke ID
  nodes   list | show ID | pending | approve REGISTRATION --user NAME | delete ID | expire ID
          tag ID tag:a,tag:b | rename ID NAME
  policy  get | set FILE | check FILE
  apikeys list | create [--description TEXT] [--expiry 30d] | revoke ID
  accounts list | add NAME [--password-stdin] | delete NAME
                   browser console logins; the password comes from stdin, or from
                   $PIERCE_ADMIN_PASSWORD without --password-stdin (never from the command line)
  audit   [--limit 100] [--before ID] [--kind admin|ssh]

  --control URL    the control server (default $PIERCE_CONTROL or http://127.0.0.1:8080);
                   --server URL is the same
  --api-key KEY    an API key from \`pierce control apikey\` (default $PIERCE_API_KEY)
  --json           print the API's JSON instead of a table

Shareable session links: \`pierce share --help\`.

Exit codes: 0 ok, 1 the server refused (message printed), 2 usage error.
`;

class AdminError extends PierceError {}

export interface Ctx {
  server: string;
  apiKey: string;
  json: boolean;
  io: Io;
}

/** One admin API call; a refusal throws with the server's message and code. */
export async function call(ctx: Ctx, method: string, path: string, body?: unknown, raw?: string): Promise<Record<string, unknown>> {
  let res: Response;
  try {
    res = await fetch(new URL(`/api/v1${path}`, ctx.server), {
      method,
      headers: { Authorization: `Bearer ${ctx.apiKey}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      ...(raw !== undefined ? { body: raw } : body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  } catch (e) {
    throw new AdminError('ADMIN_UNREACHABLE', `cannot reach ${ctx.server}: ${(e as Error).cause instanceof Error ? ((e as Error).cause as Error).message : (e as Error).message}`);
  }
  const text = await res.text();
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new AdminError('ADMIN_BAD_RESPONSE', `${method} ${path}: HTTP ${res.status}: ${text.slice(0, 200)}`);
  }
  if (!res.ok) throw new AdminError(String(v['code'] ?? 'ADMIN_FAILED'), String(v['error'] ?? `HTTP ${res.status}`));
  return v;
}

export function when(ms: unknown): string {
  if (typeof ms !== 'number') return '-';
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Prints rows as an aligned table. */
export function table(io: Io, header: string[], rows: string[][]): void {
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd() + '\n';
  io.stdout(line(header));
  for (const r of rows) io.stdout(line(r));
}

export function out(ctx: Ctx, v: Record<string, unknown>, human: () => void): number {
  if (ctx.json) ctx.io.stdout(JSON.stringify(v, null, 2) + '\n');
  else human();
  return 0;
}

export type Row = Record<string, unknown>;
export const s = (v: unknown) => (v === null || v === undefined ? '-' : Array.isArray(v) ? v.join(',') || '-' : String(v));

/** Connection flags shared by `pierce admin` and `pierce share`. */
export const CONNECTION_OPTIONS = {
  control: { type: 'string' },
  server: { type: 'string' },
  'api-key': { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** The context for --control/--server, --api-key and --json (falling back to the environment). */
export function connection(values: { control?: string | undefined; server?: string | undefined; 'api-key'?: string | undefined; json?: boolean | undefined }, io: Io, cmd: string): Ctx {
  const apiKey = values['api-key'] ?? process.env['PIERCE_API_KEY'];
  if (!apiKey) throw new UsageError(`${cmd} needs --api-key KEY or $PIERCE_API_KEY (make one with \`pierce control apikey --db FILE\`)`);
  const server = values.control ?? values.server ?? process.env['PIERCE_CONTROL'] ?? 'http://127.0.0.1:8080';
  try {
    new URL(server);
  } catch {
    throw new UsageError(`--control: "${server}" is not a URL (e.g. http://127.0.0.1:8080)`);
  }
  return { server, apiKey, json: values.json ?? false, io };
}

/**
 * The start of `pierce admin` and `pierce share`: no arguments or --help/-h print `usage` and
 * give the exit code (2, 0); else `argv` is parsed (strictly, with positionals) with the
 * connection flags (CONNECTION_OPTIONS) and `options`.
 */
export function parseCommand<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], io: Io, usage: string, options: O) {
  if (argv.length === 0 || argv.includes('--help') || argv.includes('-h')) {
    io.stdout(usage);
    return argv.length === 0 ? 2 : 0;
  }
  return parseArgs({ args: argv, allowPositionals: true, strict: true, options: { ...CONNECTION_OPTIONS, ...options } });
}

/** `--uses N` (or another count flag): a whole number above 0. */
export function positiveCount(flag: string, v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`${flag}: "${v}" is not a positive whole number`);
  return Number(v);
}

/** A password from stdin (first line) or, unless --password-stdin, $PIERCE_ADMIN_PASSWORD. */
async function readPassword(io: Io, fromStdin: boolean): Promise<string> {
  const env = process.env['PIERCE_ADMIN_PASSWORD'];
  const text = !fromStdin && env ? env : (await io.readStdin()).split(/\r?\n/)[0]!;
  if (text === '') throw new UsageError('no password: give it on stdin (--password-stdin) or in $PIERCE_ADMIN_PASSWORD');
  return text;
}

export async function adminCommand(argv: string[], io: Io): Promise<number> {
  const parsed = parseCommand(argv, io, ADMIN_USAGE, {
    'password-stdin': { type: 'boolean' },
    uses: { type: 'string' },
    limit: { type: 'string' },
    before: { type: 'string' },
    kind: { type: 'string' },
    user: { type: 'string' },
    reusable: { type: 'boolean' },
    ephemeral: { type: 'boolean' },
    tags: { type: 'string' },
    expiry: { type: 'string' },
    description: { type: 'string' },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const ctx = connection(values, io, 'admin');
  const [what, action, a1, a2] = positionals;
  if (what === 'audit') {
    const q = new URLSearchParams();
    for (const k of ['limit', 'before', 'kind'] as const) if (values[k] !== undefined) q.set(k, values[k]!);
    const v = await call(ctx, 'GET', `/audit${q.size ? `?${q}` : ''}`);
    return out(ctx, v, () =>
      table(io, ['ID', 'AT', 'KIND', 'ACTOR', 'ACTION', 'TARGET', 'DETAIL'], (v['events'] as Row[]).map((e) => [s(e['id']), when(e['at']), s(e['kind']), s(e['actor']), s(e['action']), s(e['target']), JSON.stringify(e['detail'])])),
    );
  }
  const need = (v: string | undefined, name: string): string => v ?? (() => { throw new UsageError(`admin ${what} ${action} needs ${name}`); })();
  const seconds = (flag: string, v: string | undefined) => (v === undefined ? undefined : parseDuration(v, flag) / 1000);

  switch (`${what} ${action}`) {
    case 'users list': {
      const v = await call(ctx, 'GET', '/users');
      return out(ctx, v, () => table(io, ['ID', 'NAME', 'NODES', 'CREATED'], (v['users'] as Row[]).map((u) => [s(u['id']), s(u['name']), s(u['nodes']), when(u['createdAt'])])));
    }
    case 'users create': {
      const v = await call(ctx, 'POST', '/users', { name: need(a1, 'NAME') });
      return out(ctx, v, () => io.stdout(`created user ${s((v['user'] as Row)['name'])}\n`));
    }
    case 'users delete': {
      const v = await call(ctx, 'DELETE', `/users/${encodeURIComponent(need(a1, 'NAME'))}`);
      return out(ctx, v, () => io.stdout(`deleted user ${a1}\n`));
    }
    case 'keys list': {
      const v = await call(ctx, 'GET', '/authkeys');
      return out(ctx, v, () =>
        table(io, ['ID', 'USER', 'REUSABLE', 'EPHEMERAL', 'TAGS', 'USED', 'VALID', 'EXPIRES'], (v['authKeys'] as Row[]).map((k) => [s(k['id']), s(k['user']), s(k['reusable']), s(k['ephemeral']), s(k['tags']), s(k['usedCount']), s(k['valid']), when(k['expiresAt'])])),
      );
    }
    case 'keys create': {
      const body: Row = { user: need(values.user, '--user NAME') };
      if (values.reusable) body['reusable'] = true;
      if (values.ephemeral) body['ephemeral'] = true;
      if (values.tags) body['tags'] = values.tags.split(',').filter(Boolean);
      if (values.expiry) body['expirySeconds'] = seconds('--expiry', values.expiry);
      if (values.description) body['description'] = values.description;
      if (values.uses !== undefined) {
        body['maxUses'] = positiveCount('--uses', values.uses);
        if (Number(values.uses) > 1) body['reusable'] = true;
      }
      const v = await call(ctx, 'POST', '/authkeys', body);
      return out(ctx, v, () => io.stdout(`${s(v['key'])}\n`));
    }
    case 'keys revoke': {
      const v = await call(ctx, 'DELETE', `/authkeys/${encodeURIComponent(need(a1, 'ID'))}`);
      return out(ctx, v, () => io.stdout(`revoked auth key ${a1}\n`));
    }
    case 'nodes list': {
      const v = await call(ctx, 'GET', '/nodes');
      return out(ctx, v, () =>
        table(io, ['ID', 'NAME', 'USER', 'TAGS', 'IPV4', 'ONLINE', 'PEERS', 'EPHEMERAL', 'KEY EXPIRY'], (v['nodes'] as Row[]).map((n) => [s(n['id']), s(n['name']), s(n['user']), s(n['tags']), s((n['addresses'] as string[])[0]), n['online'] ? 'yes' : n['expired'] ? 'expired' : `no (${when(n['lastSeen'])})`, s(n['peers']), s(n['ephemeral']), when(n['keyExpiry'])])),
      );
    }
    case 'nodes show': {
      const v = await call(ctx, 'GET', `/nodes/${need(a1, 'ID')}`);
      return out(ctx, v, () => io.stdout(JSON.stringify(v, null, 2) + '\n'));
    }
    case 'nodes pending': {
      const v = await call(ctx, 'GET', '/registrations');
      return out(ctx, v, () => table(io, ['REGISTRATION', 'HOSTNAME', 'TAGS', 'SINCE'], (v['registrations'] as Row[]).map((r) => [s(r['id']), s(r['hostname']), s(r['tags']), when(r['createdAt'])])));
    }
    case 'nodes approve': {
      const v = await call(ctx, 'POST', `/registrations/${need(a1, 'REGISTRATION')}/approve`, { user: need(values.user, '--user NAME') });
      const n = v['node'] as Row;
      return out(ctx, v, () => io.stdout(`approved: node ${s(n['id'])} "${s(n['name'])}" ${s(n['addresses'])}\n`));
    }
    case 'nodes delete':
    case 'nodes expire': {
      const id = need(a1, 'ID');
      const v = await call(ctx, action === 'delete' ? 'DELETE' : 'POST', action === 'delete' ? `/nodes/${id}` : `/nodes/${id}/expire`);
      return out(ctx, v, () => io.stdout(`${action === 'delete' ? 'deleted' : 'expired'} node ${id}\n`));
    }
    case 'nodes tag': {
      const v = await call(ctx, 'POST', `/nodes/${need(a1, 'ID')}/tags`, { tags: (a2 ?? '').split(',').filter(Boolean) });
      return out(ctx, v, () => io.stdout(`node ${a1} tags: ${s((v['node'] as Row)['tags'])}\n`));
    }
    case 'nodes rename': {
      const v = await call(ctx, 'POST', `/nodes/${need(a1, 'ID')}/rename`, { name: need(a2, 'NAME') });
      return out(ctx, v, () => io.stdout(`node ${a1} is now "${s((v['node'] as Row)['name'])}"\n`));
    }
    case 'policy get': {
      const v = await call(ctx, 'GET', '/policy');
      return out(ctx, v, () => io.stdout(String(v['text'])));
    }
    case 'policy set':
    case 'policy check': {
      const text = await readFile(need(a1, 'FILE'), 'utf8');
      const v = await call(ctx, 'POST', action === 'set' ? '/policy' : '/policy/check', undefined, text);
      const failures = (v['failures'] as Row[] | undefined) ?? [];
      if (!ctx.json) {
        for (const f of failures) io.stdout(`${s(f['message'])}\n`);
        io.stdout(`${action === 'set' ? 'policy applied' : 'policy valid'}: ${s(v['rules'])} rules, ${s(v['tests'])} tests${failures.length ? `, ${failures.length} failed` : ' passed'}\n`);
      } else io.stdout(JSON.stringify(v, null, 2) + '\n');
      return failures.length ? 1 : 0;
    }
    case 'apikeys list': {
      const v = await call(ctx, 'GET', '/apikeys');
      return out(ctx, v, () => table(io, ['ID', 'DESCRIPTION', 'CREATED', 'EXPIRES', 'REVOKED'], (v['apiKeys'] as Row[]).map((k) => [s(k['id']), s(k['description']), when(k['createdAt']), when(k['expiresAt']), when(k['revokedAt'])])));
    }
    case 'apikeys create': {
      const v = await call(ctx, 'POST', '/apikeys', { ...(values.description ? { description: values.description } : {}), ...(values.expiry ? { expirySeconds: seconds('--expiry', values.expiry) } : {}) });
      return out(ctx, v, () => io.stdout(`${s(v['key'])}\n`));
    }
    case 'apikeys revoke': {
      const v = await call(ctx, 'DELETE', `/apikeys/${encodeURIComponent(need(a1, 'ID'))}`);
      return out(ctx, v, () => io.stdout(`revoked API key ${a1}\n`));
    }
    case 'accounts list': {
      const v = await call(ctx, 'GET', '/admins');
      return out(ctx, v, () => table(io, ['NAME', 'CREATED'], (v['admins'] as Row[]).map((a) => [s(a['name']), when(a['createdAt'])])));
    }
    case 'accounts add': {
      const name = need(a1, 'NAME');
      const password = await readPassword(io, values['password-stdin'] ?? false);
      const v = await call(ctx, 'POST', '/admins', { name, password });
      return out(ctx, v, () => io.stdout(`added admin account ${name}\n`));
    }
    case 'accounts delete': {
      const v = await call(ctx, 'DELETE', `/admins/${encodeURIComponent(need(a1, 'NAME'))}`);
      return out(ctx, v, () => io.stdout(`deleted admin account ${a1}\n`));
    }
    default:
      throw new UsageError(`unknown admin command "${positionals.join(' ')}"`);
  }
}
