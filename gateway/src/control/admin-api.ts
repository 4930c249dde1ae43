/**
 * The admin API: JSON over HTTP under /api/v1, authorised by `Authorization: Bearer <API key>`.
 * `pierce admin …` is a client of it. Errors are `{"error": message, "code": CODE}` with 400
 * (bad request), 401 (no or bad key), 404, 409 (conflict), 422 (policy invalid or tests failed).
 *
 *   GET    /users                      POST /users {name}            DELETE /users/NAME
 *   GET    /authkeys                   POST /authkeys {user, reusable?, ephemeral?, tags?, expirySeconds?, description?}
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
import { checkPolicy } from '../../../src/policy/index.ts';
import { createApiKey, type ControlState } from './state.ts';
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
  USER_EXISTS: 409,
  USER_HAS_NODES: 409,
  NAME_TAKEN: 409,
  STORE_CONFLICT: 409,
  POLICY_TESTS_FAILED: 422,
  POLICY_INVALID: 422,
  POLICY_SYNTAX: 422,
};

/** Serves one admin request. */
export async function handleAdmin(state: ControlState, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const auth = req.headers.authorization ?? '';
  const m = /^Bearer (\S+)$/.exec(auth);
  if (!m || !(await state.checkApiKey(m[1]!))) return json(res, 401, { error: 'missing or invalid API key (Authorization: Bearer papi_…)', code: 'UNAUTHORIZED' });
  try {
    const body = await route(state, req, path.split('/').filter(Boolean).map(decodeURIComponent));
    json(res, body === undefined ? 200 : 200, body ?? { ok: true });
  } catch (e) {
    const err = e as { status?: number; code?: string; message?: string };
    if (isPierceError(e)) return json(res, STATUS[e.code] ?? 400, { error: e.message, code: e.code });
    if (err.status) return json(res, err.status, { error: err.message, code: err.code ?? 'BAD_REQUEST' });
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
  return {
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

async function route(state: ControlState, req: IncomingMessage, p: string[]): Promise<unknown> {
  const method = req.method ?? 'GET';
  const [what, id, action] = p;
  switch (`${method} ${what ?? ''}${id !== undefined ? '/:id' : ''}${action !== undefined ? `/${action}` : ''}`) {
    case 'GET users': {
      const count = new Map<number, number>();
      for (const n of state.nodes.values()) count.set(n.userId, (count.get(n.userId) ?? 0) + 1);
      return { users: [...state.users.values()].map((u) => ({ ...u, nodes: count.get(u.id) ?? 0 })) };
    }
    case 'POST users': {
      const name = optString(await readJson(req), 'name') ?? bad('"name" is required');
      return { user: await state.createUser(name) };
    }
    case 'DELETE users/:id':
      await state.deleteUser(id!);
      return { ok: true };
    case 'GET authkeys':
      return {
        authKeys: [...state.authKeys.values()].map(({ hash: _h, ...k }) => ({
          ...k,
          user: state.userName(k.userId) ?? null,
          valid: k.revokedAt === null && (k.expiresAt === null || k.expiresAt > state.now()) && (k.reusable || k.usedCount === 0),
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
      const { key, record } = await state.createAuthKey(o);
      const { hash: _h, ...rest } = record;
      return { key, authKey: { ...rest, user: o.user } };
    }
    case 'DELETE authkeys/:id':
      await state.revokeAuthKey(id!);
      return { ok: true };
    case 'GET nodes':
      return { nodes: [...state.nodes.keys()].map((n) => nodeView(state, n)) };
    case 'GET nodes/:id':
      if (!state.nodes.has(Number(id))) bad(`no node ${id}`);
      return { node: nodeView(state, Number(id)), filter: JSON.parse(state.netmap.filterJsonOf(Number(id))) as unknown };
    case 'DELETE nodes/:id':
      await state.deleteNode(Number(id));
      return { ok: true };
    case 'POST nodes/:id/expire':
      await state.expireNode(Number(id));
      return { node: nodeView(state, Number(id)) };
    case 'POST nodes/:id/tags':
      await state.setTags(Number(id), tagList(await readJson(req), 'tags') ?? bad('"tags" is required'));
      return { node: nodeView(state, Number(id)) };
    case 'POST nodes/:id/rename':
      await state.rename(Number(id), optString(await readJson(req), 'name') ?? bad('"name" is required'));
      return { node: nodeView(state, Number(id)) };
    case 'GET registrations':
      return { registrations: [...state.pending.values()].map((r) => ({ id: r.id, hostname: r.req.hostname, machineKey: r.machineKey, tags: r.req.tags ?? [], createdAt: r.createdAt })) };
    case 'POST registrations/:id/approve': {
      const user = optString(await readJson(req), 'user') ?? bad('"user" is required');
      const n = await state.approve(id!, user);
      return { node: nodeView(state, n.id) };
    }
    case 'GET policy':
      return { text: state.policyText, rules: state.policy.acls.length, tests: state.policy.tests.length };
    case 'PUT policy':
    case 'POST policy': {
      const text = await readBody(req);
      const r = await state.setPolicy(text);
      return { ok: true, ...r };
    }
    case 'POST policy/check': {
      const { policy, failures } = checkPolicy(await readBody(req));
      return { valid: true, rules: policy.acls.length, tests: policy.tests.length, failures };
    }
    case 'GET apikeys':
      return { apiKeys: (await state.store.listApiKeys()).map(({ hash: _h, ...k }) => k) };
    case 'POST apikeys': {
      const b = await readJson(req);
      return await createApiKey(state.store, state.now(), optString(b, 'description') ?? '', optSeconds(b, 'expirySeconds'));
    }
    case 'GET leases/:id':
      return leaseGrant(state, id!);
    case 'DELETE apikeys/:id':
      await state.store.revokeApiKey(id!, state.now());
      return { ok: true };
    default:
      throw Object.assign(new Error(`no such endpoint: ${method} /api/v1/${p.join('/')}`), { status: 404, code: 'NOT_FOUND' });
  }
}
