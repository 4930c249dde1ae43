/**
 * The admin API: JSON over HTTP under /api/v1, authorised by `Authorization: Bearer <API key>`
 * or by the `pierce_admin` session cookie of a logged-in admin (the browser console); with the
 * cookie, every method but GET/HEAD needs `X-Pierce-Request: 1` (403 CSRF otherwise).
 * `pierce admin …` is a client of it. Errors are `{"error": message, "code": CODE}` with 400
 * (bad request), 401 (no or bad key), 403, 404, 409 (conflict), 422 (policy invalid or tests
 * failed), 429 (login throttled). Every successful change is written to the audit log.
 *
 *   POST   /login {name, password} → {admin: {name}} + Set-Cookie   POST /logout   GET /me
 *   GET    /admins                     POST /admins {name, password} DELETE /admins/NAME
 *   GET    /shares                     POST /shares {tags?, ttlSeconds?, uses?, to?, user?, description?}
 *   DELETE /shares/ID    (revoke: the key stops working, its nodes are deleted)
 *   GET    /audit?limit=100&before=ID&kind=admin|ssh
 *   POST   /policy/check  (body: HuJSON) → {valid: true, rules, tests, failures} or 422
 *          {valid: false, error, code, line, column}
 *
 *   GET    /users                      POST /users {name}            DELETE /users/NAME
 *   GET    /authkeys                   POST /authkeys {user, reusable?, ephemeral?, tags?, expirySeconds?, description?, maxUses?}
 *   DELETE /authkeys/ID   (revoke)
 *   GET    /nodes                      DELETE /nodes/ID
 *   POST   /nodes/ID/expire            POST /nodes/ID/tags {tags}    POST /nodes/ID/rename {name}
 *   GET    /registrations              POST /registrations/ID/approve {user}
 *   GET    /policy  → {text, rules, tests}      PUT /policy  (body: the HuJSON text)
 *   GET    /apikeys                    POST /apikeys {description?, expirySeconds?}   DELETE /apikeys/ID
 *   GET    /leases/NODEKEY  → {node: {id, name}, stun: ["ip:port"], peers: ["ip:port"]}
 *          what a UDP-lease gateway (`pierce relay --udp-leases`) may let that node reach: the
 *          relay map's STUN servers and the endpoints of the node's visible peers; 404 for an
 *          unknown key, 403 for an expired or logged-out node (docs/udp-leases.md)
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isPierceError } from '../../../src/errors.ts';
import { NodePublic } from '../../../src/key/keys.ts';
import { checkPolicy, PolicyError } from '../../../src/policy/index.ts';
import { createApiKey, type ControlState } from './state.ts';
import { SESSION_TTL_MS } from './admins.ts';
import type { NodeRecord } from '../store/types.ts';
import { json } from './server.ts';

const MAX_BODY = 1 << 20;

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_BODY) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const t = await readBody(req);
  if (t.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(t);
  } catch {
    throw Object.assign(new Error('request body is not JSON'), { status: 400, code: 'BAD_REQUEST' });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw Object.assign(new Error('request body must be a JSON object'), { status: 400, code: 'BAD_REQUEST' });
  return v as Record<string, unknown>;
}

function bad(message: string): never {
  throw Object.assign(new Error(message), { status: 400, code: 'BAD_REQUEST' });
}

function optString(o: Record<string, unknown>, k: string): string | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') bad(`"${k}" must be a string`);
  return v;
}
function optBool(o: Record<string, unknown>, k: string): boolean | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') bad(`"${k}" must be a boolean`);
  return v;
}
function optSeconds(o: Record<string, unknown>, k: string): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !(v > 0)) bad(`"${k}" must be a positive number of seconds`);
  return v * 1000;
}
function tagList(o: Record<string, unknown>, k: string): string[] | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((t) => typeof t !== 'string')) bad(`"${k}" must be a list of tags`);
  return v as string[];
}

const STATUS: Record<string, number> = {
  NOT_FOUND: 404,
  ADMIN_EXISTS: 409,
  BAD_LOGIN: 401,
  LOGIN_THROTTLED: 429,
  USER_EXISTS: 409,
  USER_HAS_NODES: 409,
  NAME_TAKEN: 409,
  STORE_CONFLICT: 409,
  POLICY_TESTS_FAILED: 422,
  POLICY_INVALID: 422,
  POLICY_SYNTAX: 422,
};

/** A response with a status other than 200 (thrown by a route). */
class Reply {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {}
}

export const SESSION_COOKIE = 'pierce_admin';

export interface AdminApiOptions {
  /** Served over TLS (or behind an https URL): the session cookie gets `Secure`. */
  secure?: boolean;
}

/** Who makes a request: `admin:NAME` (cookie) or `apikey:ID`. */
interface Caller {
  actor: string;
  admin?: string;
  token?: string;
}

interface Ctx {
  state: ControlState;
  req: IncomingMessage;
  caller: Caller;
  opts: AdminApiOptions;
  /** Records a successful change in the audit log. */
  audit(action: string, target?: string, detail?: Record<string, unknown>): Promise<void>;
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

function remoteOf(req: IncomingMessage): string {
  return `${req.socket.remoteAddress ?? '?'}`;
}

function sessionCookie(value: string, maxAgeS: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${maxAgeS}${secure ? '; Secure' : ''}`;
}

/** Serves one admin request. */
export async function handleAdmin(state: ControlState, req: IncomingMessage, res: ServerResponse, path: string, opts: AdminApiOptions = {}): Promise<void> {
  const parts = path.split('/').filter(Boolean);
  try {
    let segs: string[];
    try {
      segs = parts.map(decodeURIComponent);
    } catch {
      bad('malformed percent-encoding in the path');
    }
    const method = req.method ?? 'GET';
    // Login needs no credentials; everything else needs an API key or a session.
    if (segs.length === 1 && segs[0] === 'login' && method === 'POST') {
      const r = await login(state, req, opts);
      return json(res, r.status, r.body, r.headers);
    }
    let caller: Caller | undefined;
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer (\S+)$/.exec(auth);
      const id = m ? await state.apiKeyId(m[1]!) : undefined;
      if (id === undefined) return json(res, 401, { error: 'missing or invalid API key (Authorization: Bearer papi_…)', code: 'UNAUTHORIZED' });
      caller = { actor: `apikey:${id}` };
    } else {
      const token = cookie(req, SESSION_COOKIE);
      const sess = state.adminSessions.get(token);
      if (!sess) {
        return json(res, 401, { error: 'log in (POST /api/v1/login) or send an API key (Authorization: Bearer papi_…)', code: 'UNAUTHORIZED' });
      }
      if (method !== 'GET' && method !== 'HEAD' && req.headers['x-pierce-request'] !== '1') {
        return json(res, 403, { error: 'requests made with the session cookie need the header X-Pierce-Request: 1', code: 'CSRF' });
      }
      caller = { actor: `admin:${sess.name}`, admin: sess.name, token: token! };
    }
    const c = caller;
    const ctx: Ctx = { state, req, caller: c, opts, audit: (action, target = '', detail = {}) => state.audit({ actor: c.actor, action, target, detail }) };
    const body = await route(ctx, segs);
    json(res, 200, body ?? { ok: true });
  } catch (e) {
    if (e instanceof Reply) return json(res, e.status, e.body, e.headers);
    const err = e as { status?: number; code?: string; message?: string };
    if (isPierceError(e)) return json(res, STATUS[e.code] ?? 400, { error: e.message, code: e.code });
    if (err.status) return json(res, err.status, { error: err.message, code: err.code ?? 'BAD_REQUEST' });
    throw e;
  }
}

async function login(state: ControlState, req: IncomingMessage, opts: AdminApiOptions): Promise<Reply> {
  const b = await readJson(req);
  const name = optString(b, 'name') ?? bad('"name" is required');
  const password = optString(b, 'password') ?? bad('"password" is required');
  if (name.length > 256) bad('"name" is too long');
  const actor = `admin:${name}`;
  try {
    const token = await state.login(name, password);
    await state.audit({ actor, action: 'login', target: name, detail: { ok: true, remote: remoteOf(req) } });
    return new Reply(200, { admin: { name } }, { 'Set-Cookie': sessionCookie(token, SESSION_TTL_MS / 1000, !!opts.secure) });
  } catch (e) {
    if (isPierceError(e) && (e.code === 'BAD_LOGIN' || e.code === 'LOGIN_THROTTLED')) {
      await state.audit({ actor, action: 'login', target: name, detail: { ok: false, code: e.code, remote: remoteOf(req) } });
      return new Reply(STATUS[e.code]!, { error: e.message, code: e.code }, e.code === 'LOGIN_THROTTLED' ? { 'Retry-After': '60' } : {});
    }
    throw e;
  }
}

/** The lease grant of a node key (GET /leases/NODEKEY). */
export function leaseGrant(state: ControlState, nodeKeyText: string): { node: { id: number; name: string }; stun: string[]; peers: string[] } {
  let key: NodePublic;
  try {
    key = NodePublic.parse(nodeKeyText);
  } catch {
    bad(`"${nodeKeyText.slice(0, 80)}" is not a node key`);
  }
  const text = key.toString();
  let n: NodeRecord | undefined;
  for (const x of state.nodes.values()) if (x.nodeKey === text) n = x;
  if (!n) throw Object.assign(new Error(`no node has key ${key.short()}`), { status: 404, code: 'NOT_FOUND' });
  if (n.loggedOut) throw Object.assign(new Error(`node ${n.name} is logged out`), { status: 403, code: 'NODE_LOGGED_OUT' });
  if (state.isExpired(n)) throw Object.assign(new Error(`the key of node ${n.name} has expired`), { status: 403, code: 'NODE_EXPIRED' });
  const stun = new Set<string>();
  for (const r of state.opts.relays.regions) for (const rn of r.nodes) if (rn.stun) stun.add(rn.stun);
  const peers = new Set<string>();
  for (const pid of state.netmap.peersOf(n.id)) for (const e of state.netmap.node(pid)?.endpoints ?? []) peers.add(e);
  return { node: { id: n.id, name: n.name }, stun: [...stun], peers: [...peers] };
}

function nodeView(state: ControlState, id: number) {
  const n = state.nodes.get(id)!;
  const live = state.netmap.node(id);
  const share = state.shareOfNode(n);
  return {
    ...(share ? { authKeyId: n.authKeyId, shareId: share.id } : {}),
    id: n.id,
    name: n.name,
    hostname: n.hostname,
    user: state.userName(n.userId) ?? null,
    tags: n.tags,
    addresses: [n.ipv4, n.ipv6],
    nodeKey: n.nodeKey,
    machineKey: n.machineKey,
    online: live?.online ?? false,
    lastSeen: live?.online ? null : n.lastSeen,
    endpoints: live?.endpoints ?? [],
    homeRelay: live?.homeRelay ?? 0,
    ephemeral: n.ephemeral,
    keyExpiry: n.keyExpiry,
    expired: state.isExpired(n),
    loggedOut: n.loggedOut,
    createdAt: n.createdAt,
    peers: state.netmap.peersOf(id).length,
  };
}

function positiveInt(o: Record<string, unknown>, k: string): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) bad(`"${k}" must be a positive integer`);
  return v;
}

async function route(ctx: Ctx, p: string[]): Promise<unknown> {
  const { state, req } = ctx;
  const method = req.method ?? 'GET';
  const [what, id, action] = p;
  if (p.length > 3) bad(`no such endpoint: /api/v1/${p.join('/')}`);
  switch (`${method} ${what ?? ''}${id !== undefined ? '/:id' : ''}${action !== undefined ? `/${action}` : ''}`) {
    case 'GET me':
      if (!ctx.caller.admin) throw new Reply(401, { error: 'not logged in (this request used an API key)', code: 'UNAUTHORIZED' });
      return { admin: { name: ctx.caller.admin } };
    case 'POST logout':
      if (ctx.caller.token) {
        state.adminSessions.end(ctx.caller.token);
        await ctx.audit('logout', ctx.caller.admin);
      }
      throw new Reply(200, { ok: true }, { 'Set-Cookie': sessionCookie('', 0, !!ctx.opts.secure) });
    case 'GET admins':
      return { admins: await state.listAdmins() };
    case 'POST admins': {
      const b = await readJson(req);
      const name = optString(b, 'name') ?? bad('"name" is required');
      const a = await state.createAdmin(name, optString(b, 'password') ?? bad('"password" is required'));
      await ctx.audit('admin.create', name);
      return { admin: a };
    }
    case 'DELETE admins/:id':
      await state.deleteAdmin(id!);
      await ctx.audit('admin.delete', id);
      return { ok: true };
    case 'GET shares':
      return { shares: [...state.shares.values()].map((sh) => state.shareView(sh)).reverse() };
    case 'GET shares/:id': {
      const sh = state.shares.get(id!) ?? bad(`no share "${id}"`);
      return { share: state.shareView(sh) };
    }
    case 'POST shares': {
      const b = await readJson(req);
      const o: Parameters<ControlState['createShare']>[0] = { createdBy: ctx.caller.actor };
      const tags = tagList(b, 'tags');
      if (tags) o.tags = tags;
      const ttl = optSeconds(b, 'ttlSeconds');
      if (ttl !== undefined) o.ttlMs = ttl;
      const uses = positiveInt(b, 'uses');
      if (uses !== undefined) o.uses = uses;
      const to = optString(b, 'to');
      if (to !== undefined) o.to = to;
      const user = optString(b, 'user');
      if (user !== undefined) o.user = user;
      const d = optString(b, 'description');
      if (d !== undefined) o.description = d;
      const { share, key, url } = await state.createShare(o);
      await ctx.audit('share.create', share.id, { tags: share.tags, uses: share.uses, expiresAt: share.expiresAt, to: share.to, authKeyId: share.authKeyId });
      return { share: state.shareView(share), key, url };
    }
    case 'DELETE shares/:id': {
      const deleted = await state.revokeShare(id!);
      await ctx.audit('share.revoke', id, { deletedNodes: deleted });
      return { ok: true, deletedNodes: deleted };
    }
    case 'GET audit': {
      const q = new URL(req.url ?? '/', 'http://x').searchParams;
      const limit = q.has('limit') ? Number(q.get('limit')) : 100;
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) bad('"limit" must be an integer 1..1000');
      const before = q.has('before') ? Number(q.get('before')) : undefined;
      if (before !== undefined && (!Number.isInteger(before) || before < 1)) bad('"before" must be an event id');
      const kind = q.get('kind') ?? undefined;
      if (kind !== undefined && kind !== 'admin' && kind !== 'ssh') bad('"kind" must be admin or ssh');
      return { events: await state.store.listAudit({ limit, ...(before !== undefined ? { before } : {}), ...(kind !== undefined ? { kind } : {}) }) };
    }
    case 'GET users': {
      const count = new Map<number, number>();
      for (const n of state.nodes.values()) count.set(n.userId, (count.get(n.userId) ?? 0) + 1);
      return { users: [...state.users.values()].map((u) => ({ ...u, nodes: count.get(u.id) ?? 0 })) };
    }
    case 'POST users': {
      const name = optString(await readJson(req), 'name') ?? bad('"name" is required');
      const user = await state.createUser(name);
      await ctx.audit('user.create', name);
      return { user };
    }
    case 'DELETE users/:id':
      await state.deleteUser(id!);
      await ctx.audit('user.delete', id);
      return { ok: true };
    case 'GET authkeys':
      return {
        authKeys: [...state.authKeys.values()].map(({ hash: _h, ...k }) => ({
          ...k,
          user: state.userName(k.userId) ?? null,
          maxUses: k.maxUses ?? null,
          valid: state.authKeyProblem(k) === undefined,
        })),
      };
    case 'POST authkeys': {
      const b = await readJson(req);
      const o: Parameters<ControlState['createAuthKey']>[0] = { user: optString(b, 'user') ?? bad('"user" is required') };
      const reusable = optBool(b, 'reusable');
      if (reusable !== undefined) o.reusable = reusable;
      const eph = optBool(b, 'ephemeral');
      if (eph !== undefined) o.ephemeral = eph;
      const tags = tagList(b, 'tags');
      if (tags) o.tags = tags;
      const exp = optSeconds(b, 'expirySeconds');
      if (exp !== undefined) o.expiryMs = exp;
      const d = optString(b, 'description');
      if (d !== undefined) o.description = d;
      const maxUses = positiveInt(b, 'maxUses');
      if (maxUses !== undefined) o.maxUses = maxUses;
      const { key, record } = await state.createAuthKey(o);
      const { hash: _h, ...rest } = record;
      await ctx.audit('authkey.create', record.id, { user: o.user, reusable: record.reusable, ephemeral: record.ephemeral, tags: record.tags, expiresAt: record.expiresAt });
      return { key, authKey: { ...rest, user: o.user } };
    }
    case 'DELETE authkeys/:id':
      await state.revokeAuthKey(id!);
      await ctx.audit('authkey.revoke', id);
      return { ok: true };
    case 'GET nodes':
      return { nodes: [...state.nodes.keys()].map((n) => nodeView(state, n)) };
    case 'GET nodes/:id':
      if (!state.nodes.has(Number(id))) bad(`no node ${id}`);
      return { node: nodeView(state, Number(id)), filter: JSON.parse(state.netmap.filterJsonOf(Number(id))) as unknown };
    case 'DELETE nodes/:id': {
      const name = state.nodes.get(Number(id))?.name;
      await state.deleteNode(Number(id));
      await ctx.audit('node.delete', id, { name });
      return { ok: true };
    }
    case 'POST nodes/:id/expire':
      await state.expireNode(Number(id));
      await ctx.audit('node.expire', id, { name: state.nodes.get(Number(id))?.name });
      return { node: nodeView(state, Number(id)) };
    case 'POST nodes/:id/tags': {
      const tags = tagList(await readJson(req), 'tags') ?? bad('"tags" is required');
      await state.setTags(Number(id), tags);
      await ctx.audit('node.tags', id, { name: state.nodes.get(Number(id))?.name, tags });
      return { node: nodeView(state, Number(id)) };
    }
    case 'POST nodes/:id/rename': {
      const old = state.nodes.get(Number(id))?.name;
      await state.rename(Number(id), optString(await readJson(req), 'name') ?? bad('"name" is required'));
      await ctx.audit('node.rename', id, { from: old, to: state.nodes.get(Number(id))?.name });
      return { node: nodeView(state, Number(id)) };
    }
    case 'GET registrations':
      return { registrations: [...state.pending.values()].map((r) => ({ id: r.id, hostname: r.req.hostname, machineKey: r.machineKey, tags: r.req.tags ?? [], createdAt: r.createdAt })) };
    case 'POST registrations/:id/approve': {
      const user = optString(await readJson(req), 'user') ?? bad('"user" is required');
      const n = await state.approve(id!, user);
      await ctx.audit('registration.approve', id, { user, nodeId: n.id, name: n.name });
      return { node: nodeView(state, n.id) };
    }
    case 'GET policy':
      return { text: state.policyText, rules: state.policy.acls.length, tests: state.policy.tests.length };
    case 'PUT policy':
    case 'POST policy': {
      const text = await readBody(req);
      const r = await state.setPolicy(text);
      await ctx.audit('policy.set', 'policy', { ...r, bytes: Buffer.byteLength(text) });
      return { ok: true, ...r };
    }
    case 'POST policy/:id': {
      if (id !== 'check') throw Object.assign(new Error(`no such endpoint: POST /api/v1/policy/${id}`), { status: 404, code: 'NOT_FOUND' });
      let checked: ReturnType<typeof checkPolicy>;
      try {
        checked = checkPolicy(await readBody(req));
      } catch (e) {
        if (e instanceof PolicyError) throw new Reply(422, { valid: false, error: e.message, code: e.code, line: e.line ?? null, column: e.column ?? null, path: e.path || null });
        throw e;
      }
      const { policy, failures } = checked;
      return { valid: true, rules: policy.acls.length, tests: policy.tests.length, failures };
    }
    case 'GET apikeys':
      return { apiKeys: (await state.store.listApiKeys()).map(({ hash: _h, ...k }) => k) };
    case 'POST apikeys': {
      const b = await readJson(req);
      const k = await createApiKey(state.store, state.now(), optString(b, 'description') ?? '', optSeconds(b, 'expirySeconds'));
      await ctx.audit('apikey.create', k.id);
      return k;
    }
    case 'GET leases/:id':
      return leaseGrant(state, id!);
    case 'DELETE apikeys/:id':
      await state.store.revokeApiKey(id!, state.now());
      await ctx.audit('apikey.revoke', id);
      return { ok: true };
    default:
      throw Object.assign(new Error(`no such endpoint: ${method} /api/v1/${p.join('/')}`), { status: 404, code: 'NOT_FOUND' });
  }
}
