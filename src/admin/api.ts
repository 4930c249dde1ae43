/**
 * The admin console's client of `pierce control`'s admin API (JSON under /api/v1, same origin).
 * The session is the HttpOnly `pierce_admin` cookie (credentials: same-origin); every request
 * carries `X-Pierce-Request: 1`, which control demands on non-GET requests (a cross-site form
 * cannot set it). Failures reject with an `AdminError` {status, code, message} (+ the body);
 * a 401 outside the login call also tells the app, which returns to the login form.
 */

/** `api/v1` beside the console's own URL: /api/v1 for /admin, /pierce/api/v1 behind a proxy's /pierce/admin. */
export const API_BASE = typeof document === 'undefined' ? '/api/v1' : new URL('api/v1', document.baseURI).pathname;

export class AdminError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export interface Admin {
  name: string;
}

export interface NodeView {
  id: number;
  name: string;
  hostname?: string;
  user?: string | null;
  tags?: string[];
  addresses?: string[];
  nodeKey?: string;
  online?: boolean;
  lastSeen?: number | null;
  endpoints?: string[];
  homeRelay?: number | string | null;
  homeRelayCode?: string;
  ephemeral?: boolean;
  keyExpiry?: number | null;
  expired?: boolean;
  loggedOut?: boolean;
  createdAt?: number;
  peers?: number;
}

export interface UserView {
  id: number;
  name: string;
  nodes?: number;
}

export interface AuthKeyView {
  id: string;
  user?: string | null;
  reusable?: boolean;
  ephemeral?: boolean;
  tags?: string[];
  createdAt?: number;
  expiresAt?: number | null;
  revokedAt?: number | null;
  usedCount?: number;
  description?: string;
  valid?: boolean;
}

export interface ShareView {
  id: string;
  tags?: string[];
  to?: string | null;
  expiresAt?: number | null;
  uses?: number | null;
  usedCount?: number;
  used?: number;
  user?: string | null;
  revokedAt?: number | null;
  state?: string;
  nodes?: number | { id: number; name: string; online?: boolean }[];
  createdAt?: number;
  description?: string;
}

export interface Registration {
  id: string;
  hostname?: string;
  machineKey?: string;
  tags?: string[];
  createdAt?: number;
}

export interface PolicyFailure {
  test?: number;
  message: string;
}

export interface PolicyCheck {
  valid: boolean;
  rules?: number;
  tests?: number;
  failures?: PolicyFailure[];
  error?: string;
  code?: string;
  line?: number;
  column?: number;
}

export interface AuditEvent {
  id: number | string;
  at: number;
  kind?: string;
  actor?: string;
  action?: string;
  target?: string | null;
  detail?: unknown;
}

let onUnauthorized: () => void = () => {};
/** Called on a 401 from any request but the login itself. */
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

/** One request; `body` is sent as JSON, or as is when a string (policy text). */
export async function request<T>(method: string, path: string, body?: unknown, o: { quiet401?: boolean } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', 'X-Pierce-Request': '1' };
  let payload: string | undefined;
  if (typeof body === 'string') {
    payload = body;
    headers['Content-Type'] = 'text/plain; charset=utf-8';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(API_BASE + path, { method, headers, credentials: 'same-origin', cache: 'no-store', ...(payload !== undefined ? { body: payload } : {}) });
  } catch (e) {
    throw new AdminError(0, 'NETWORK', `control is unreachable: ${(e as Error).message}`);
  }
  let data: Record<string, unknown> = {};
  const text = await res.text();
  try {
    const v: unknown = text ? JSON.parse(text) : {};
    if (v && typeof v === 'object' && !Array.isArray(v)) data = v as Record<string, unknown>;
  } catch {
    if (!res.ok) data = { error: text.trim().slice(0, 300) };
  }
  if (!res.ok) {
    if (res.status === 401 && !o.quiet401) onUnauthorized();
    const code = typeof data['code'] === 'string' ? data['code'] : res.status === 429 ? 'THROTTLED' : `HTTP_${res.status}`;
    const message = typeof data['error'] === 'string' && data['error'] ? data['error'] : `${method} ${path}: HTTP ${res.status}`;
    throw new AdminError(res.status, code, message, data);
  }
  return data as T;
}

const enc = encodeURIComponent;

export const api = {
  login: (name: string, password: string) => request<{ admin: Admin }>('POST', '/login', { name, password }, { quiet401: true }),
  logout: () => request<unknown>('POST', '/logout', {}, { quiet401: true }),
  me: () => request<{ admin: Admin }>('GET', '/me', undefined, { quiet401: true }),

  nodes: () => request<{ nodes?: NodeView[] }>('GET', '/nodes').then((r) => r.nodes ?? []),
  deleteNode: (id: number) => request<unknown>('DELETE', `/nodes/${id}`),
  expireNode: (id: number) => request<unknown>('POST', `/nodes/${id}/expire`, {}),
  setTags: (id: number, tags: string[]) => request<unknown>('POST', `/nodes/${id}/tags`, { tags }),
  registrations: () => request<{ registrations?: Registration[] }>('GET', '/registrations').then((r) => r.registrations ?? []),
  approve: (id: string, user: string) => request<unknown>('POST', `/registrations/${enc(id)}/approve`, { user }),

  users: () => request<{ users?: UserView[] }>('GET', '/users').then((r) => r.users ?? []),
  createUser: (name: string) => request<unknown>('POST', '/users', { name }),

  authKeys: () => request<{ authKeys?: AuthKeyView[] }>('GET', '/authkeys').then((r) => r.authKeys ?? []),
  createAuthKey: (o: { user: string; reusable?: boolean; ephemeral?: boolean; tags?: string[]; expirySeconds?: number; description?: string }) =>
    request<{ key: string; authKey?: AuthKeyView }>('POST', '/authkeys', o),
  revokeAuthKey: (id: string) => request<unknown>('DELETE', `/authkeys/${enc(id)}`),

  shares: () => request<{ shares?: ShareView[] }>('GET', '/shares').then((r) => r.shares ?? []),
  createShare: (o: { tags?: string[]; ttlSeconds?: number; uses?: number; to?: string; description?: string }) =>
    request<{ share?: ShareView; key?: string; url?: string }>('POST', '/shares', o),
  revokeShare: (id: string) => request<unknown>('DELETE', `/shares/${enc(id)}`),

  policy: () => request<{ text?: string; rules?: number; tests?: number }>('GET', '/policy'),
  setPolicy: (text: string) => request<{ rules?: number; tests?: number }>('PUT', '/policy', text),
  /** The check's verdict; a 422 (invalid) resolves too, with `valid: false`. */
  checkPolicy: async (text: string): Promise<PolicyCheck> => {
    try {
      const r = await request<PolicyCheck>('POST', '/policy/check', text);
      return { ...r, valid: r.valid !== false };
    } catch (e) {
      if (e instanceof AdminError && e.status === 422) return { ...(e.body as Partial<PolicyCheck>), valid: false, error: e.message, code: e.code };
      throw e;
    }
  },

  audit: (o: { limit?: number; before?: number | string; kind?: string }) => {
    const q = new URLSearchParams({ limit: String(o.limit ?? 50) });
    if (o.before !== undefined) q.set('before', String(o.before));
    if (o.kind) q.set('kind', o.kind);
    return request<{ events?: AuditEvent[] }>('GET', `/audit?${q}`).then((r) => r.events ?? []);
  },
};
