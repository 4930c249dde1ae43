/**
 * SQLite store (better-sqlite3, WAL). Schema changes are numbered migrations applied in order
 * inside one transaction each; `PRAGMA user_version` records the last one applied, so a newer
 * server upgrades an older database in place and an older server refuses a newer one.
 */
import Database from 'better-sqlite3';
import { PierceError } from '../../../src/errors.ts';
import type { AdminRecord, ApiKeyRecord, AuditKind, AuditRecord, AuthKeyRecord, NewAudit, NewNode, NodePatch, NodeRecord, PolicyRecord, ShareRecord, Store, UserRecord } from './types.ts';

export class StoreError extends PierceError {}

/** Migration N brings the schema from version N-1 to N. Never edit one that has shipped. */
export const MIGRATIONS: readonly string[] = [
  // 1: the first schema.
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE users (
     id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL);
   CREATE TABLE auth_keys (
     id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
     reusable INTEGER NOT NULL, ephemeral INTEGER NOT NULL, tags TEXT NOT NULL,
     created_at INTEGER NOT NULL, expires_at INTEGER, revoked_at INTEGER,
     used_count INTEGER NOT NULL DEFAULT 0, description TEXT NOT NULL DEFAULT '');
   CREATE TABLE api_keys (
     id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL,
     expires_at INTEGER, revoked_at INTEGER, description TEXT NOT NULL DEFAULT '');
   CREATE TABLE nodes (
     id INTEGER PRIMARY KEY, machine_key TEXT NOT NULL UNIQUE, node_key TEXT NOT NULL UNIQUE,
     disco_key TEXT NOT NULL, name TEXT NOT NULL UNIQUE, hostname TEXT NOT NULL,
     user_id INTEGER NOT NULL REFERENCES users(id), tags TEXT NOT NULL,
     ipv4 TEXT NOT NULL UNIQUE, ipv6 TEXT NOT NULL UNIQUE, ephemeral INTEGER NOT NULL,
     auth_key_id TEXT, created_at INTEGER NOT NULL, key_expiry INTEGER, last_seen INTEGER,
     logged_out INTEGER NOT NULL DEFAULT 0);
   CREATE TABLE policies (id INTEGER PRIMARY KEY, text TEXT NOT NULL, created_at INTEGER NOT NULL);`,
  // 2: use limits on auth keys, shareable sessions, admin accounts, the audit log.
  `ALTER TABLE auth_keys ADD COLUMN max_uses INTEGER;
   CREATE TABLE shares (
     id TEXT PRIMARY KEY, auth_key_id TEXT NOT NULL, "to" TEXT, tags TEXT NOT NULL,
     created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, uses INTEGER NOT NULL,
     revoked_at INTEGER, description TEXT NOT NULL DEFAULT '', created_by TEXT NOT NULL DEFAULT '');
   CREATE TABLE admins (
     id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL, created_at INTEGER NOT NULL);
   CREATE TABLE audit (
     id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL,
     action TEXT NOT NULL, target TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '{}');
   CREATE INDEX audit_at ON audit(at);`,
];

interface NodeRow {
  id: number;
  machine_key: string;
  node_key: string;
  disco_key: string;
  name: string;
  hostname: string;
  user_id: number;
  tags: string;
  ipv4: string;
  ipv6: string;
  ephemeral: number;
  auth_key_id: string | null;
  created_at: number;
  key_expiry: number | null;
  last_seen: number | null;
  logged_out: number;
}

const NODE_COLUMNS: Record<keyof NodePatch, string> = {
  nodeKey: 'node_key',
  discoKey: 'disco_key',
  name: 'name',
  hostname: 'hostname',
  userId: 'user_id',
  tags: 'tags',
  ipv4: 'ipv4',
  ipv6: 'ipv6',
  ephemeral: 'ephemeral',
  authKeyId: 'auth_key_id',
  keyExpiry: 'key_expiry',
  lastSeen: 'last_seen',
  loggedOut: 'logged_out',
};

function nodeFromRow(r: NodeRow): NodeRecord {
  return {
    id: r.id,
    machineKey: r.machine_key,
    nodeKey: r.node_key,
    discoKey: r.disco_key,
    name: r.name,
    hostname: r.hostname,
    userId: r.user_id,
    tags: JSON.parse(r.tags) as string[],
    ipv4: r.ipv4,
    ipv6: r.ipv6,
    ephemeral: r.ephemeral === 1,
    authKeyId: r.auth_key_id,
    createdAt: r.created_at,
    keyExpiry: r.key_expiry,
    lastSeen: r.last_seen,
    loggedOut: r.logged_out === 1,
  };
}

/** Column value for SQLite: booleans as 0/1, lists as JSON. */
function toColumn(v: unknown): unknown {
  if (typeof v === 'boolean') return v ? 1 : 0;
  if (Array.isArray(v)) return JSON.stringify(v);
  return v;
}

function wrap<T>(what: string, f: () => T): Promise<T> {
  try {
    return Promise.resolve(f());
  } catch (e) {
    const err = e as { code?: string; message?: string };
    const code = err.code?.startsWith('SQLITE_CONSTRAINT') ? 'STORE_CONFLICT' : 'STORE_FAILED';
    return Promise.reject(new StoreError(code, `${what}: ${err.message ?? String(e)}`, { cause: e }));
  }
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  private readonly db: Database.Database;

  constructor(file: string) {
    try {
      this.db = new Database(file);
    } catch (e) {
      throw new StoreError('STORE_OPEN', `cannot open database ${file}: ${(e as Error).message}`);
    }
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  /** The schema version of the open database. */
  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    const have = this.schemaVersion;
    if (have > MIGRATIONS.length) {
      throw new StoreError('STORE_TOO_NEW', `database schema version ${have} is newer than this server (${MIGRATIONS.length}); upgrade pierce`);
    }
    for (let v = have; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  close(): Promise<void> {
    this.db.close();
    return Promise.resolve();
  }

  getMeta(key: string): Promise<string | undefined> {
    return wrap('meta', () => (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value);
  }
  setMeta(key: string, value: string): Promise<void> {
    return wrap('meta', () => void this.db.prepare('INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value));
  }

  listUsers(): Promise<UserRecord[]> {
    return wrap('users', () => (this.db.prepare('SELECT id, name, created_at AS createdAt FROM users ORDER BY id').all() as UserRecord[]));
  }
  createUser(name: string, now: number): Promise<UserRecord> {
    return wrap(`user ${name}`, () => {
      const r = this.db.prepare('INSERT INTO users(name, created_at) VALUES (?, ?)').run(name, now);
      return { id: Number(r.lastInsertRowid), name, createdAt: now };
    });
  }
  deleteUser(id: number): Promise<void> {
    return wrap('user', () => void this.db.prepare('DELETE FROM users WHERE id = ?').run(id));
  }

  listAuthKeys(): Promise<AuthKeyRecord[]> {
    return wrap('auth keys', () =>
      (this.db.prepare('SELECT * FROM auth_keys ORDER BY created_at').all() as Record<string, unknown>[]).map((r) => ({
        id: r['id'] as string,
        hash: r['hash'] as string,
        userId: r['user_id'] as number,
        reusable: r['reusable'] === 1,
        ephemeral: r['ephemeral'] === 1,
        tags: JSON.parse(r['tags'] as string) as string[],
        createdAt: r['created_at'] as number,
        expiresAt: r['expires_at'] as number | null,
        revokedAt: r['revoked_at'] as number | null,
        usedCount: r['used_count'] as number,
        description: r['description'] as string,
        maxUses: (r['max_uses'] as number | null) ?? null,
      })),
    );
  }
  createAuthKey(k: AuthKeyRecord): Promise<void> {
    return wrap('auth key', () => {
      this.db
        .prepare(
          'INSERT INTO auth_keys(id, hash, user_id, reusable, ephemeral, tags, created_at, expires_at, revoked_at, used_count, description, max_uses) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)',
        )
        .run(k.id, k.hash, k.userId, toColumn(k.reusable), toColumn(k.ephemeral), toColumn(k.tags), k.createdAt, k.expiresAt, k.revokedAt, k.usedCount, k.description, k.maxUses ?? null);
    });
  }
  updateAuthKey(id: string, patch: Partial<Pick<AuthKeyRecord, 'usedCount' | 'revokedAt'>>): Promise<void> {
    return wrap('auth key', () => {
      if (patch.usedCount !== undefined) this.db.prepare('UPDATE auth_keys SET used_count = ? WHERE id = ?').run(patch.usedCount, id);
      if (patch.revokedAt !== undefined) this.db.prepare('UPDATE auth_keys SET revoked_at = ? WHERE id = ?').run(patch.revokedAt, id);
    });
  }

  listShares(): Promise<ShareRecord[]> {
    return wrap('shares', () =>
      (this.db.prepare('SELECT * FROM shares ORDER BY created_at').all() as Record<string, unknown>[]).map((r) => ({
        id: r['id'] as string,
        authKeyId: r['auth_key_id'] as string,
        to: r['to'] as string | null,
        tags: JSON.parse(r['tags'] as string) as string[],
        createdAt: r['created_at'] as number,
        expiresAt: r['expires_at'] as number,
        uses: r['uses'] as number,
        revokedAt: r['revoked_at'] as number | null,
        description: r['description'] as string,
        createdBy: r['created_by'] as string,
      })),
    );
  }
  createShare(x: ShareRecord): Promise<void> {
    return wrap('share', () => {
      this.db
        .prepare('INSERT INTO shares(id, auth_key_id, "to", tags, created_at, expires_at, uses, revoked_at, description, created_by) VALUES (?,?,?,?,?,?,?,?,?,?)')
        .run(x.id, x.authKeyId, x.to, toColumn(x.tags), x.createdAt, x.expiresAt, x.uses, x.revokedAt, x.description, x.createdBy);
    });
  }
  revokeShare(id: string, now: number): Promise<void> {
    return wrap('share', () => void this.db.prepare('UPDATE shares SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id));
  }

  listAdmins(): Promise<AdminRecord[]> {
    return wrap('admins', () => this.db.prepare('SELECT name, password_hash AS passwordHash, created_at AS createdAt FROM admins ORDER BY id').all() as AdminRecord[]);
  }
  createAdmin(a: AdminRecord): Promise<void> {
    return wrap(`admin ${a.name}`, () => void this.db.prepare('INSERT INTO admins(name, password_hash, created_at) VALUES (?,?,?)').run(a.name, a.passwordHash, a.createdAt));
  }
  deleteAdmin(name: string): Promise<boolean> {
    return wrap('admin', () => this.db.prepare('DELETE FROM admins WHERE name = ?').run(name).changes > 0);
  }

  addAudit(e: NewAudit): Promise<number> {
    return wrap('audit', () =>
      Number(this.db.prepare('INSERT INTO audit(at, kind, actor, action, target, detail) VALUES (?,?,?,?,?,?)').run(e.at, e.kind, e.actor, e.action, e.target, JSON.stringify(e.detail)).lastInsertRowid),
    );
  }
  listAudit(q: { limit: number; before?: number; kind?: AuditKind }): Promise<AuditRecord[]> {
    return wrap('audit', () => {
      const where: string[] = [];
      const args: unknown[] = [];
      if (q.before !== undefined) (where.push('id < ?'), args.push(q.before));
      if (q.kind !== undefined) (where.push('kind = ?'), args.push(q.kind));
      const sql = `SELECT * FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`;
      return (this.db.prepare(sql).all(...args, q.limit) as Record<string, unknown>[]).map((r) => ({
        id: r['id'] as number,
        at: r['at'] as number,
        kind: r['kind'] as AuditKind,
        actor: r['actor'] as string,
        action: r['action'] as string,
        target: r['target'] as string,
        detail: JSON.parse(r['detail'] as string) as Record<string, unknown>,
      }));
    });
  }

  listApiKeys(): Promise<ApiKeyRecord[]> {
    return wrap('api keys', () =>
      this.db
        .prepare('SELECT id, hash, created_at AS createdAt, expires_at AS expiresAt, revoked_at AS revokedAt, description FROM api_keys ORDER BY created_at')
        .all() as ApiKeyRecord[],
    );
  }
  createApiKey(k: ApiKeyRecord): Promise<void> {
    return wrap('api key', () => {
      this.db.prepare('INSERT INTO api_keys(id, hash, created_at, expires_at, revoked_at, description) VALUES (?,?,?,?,?,?)').run(k.id, k.hash, k.createdAt, k.expiresAt, k.revokedAt, k.description);
    });
  }
  revokeApiKey(id: string, now: number): Promise<void> {
    return wrap('api key', () => void this.db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id));
  }

  listNodes(): Promise<NodeRecord[]> {
    return wrap('nodes', () => (this.db.prepare('SELECT * FROM nodes ORDER BY id').all() as NodeRow[]).map(nodeFromRow));
  }
  insertNode(n: NewNode): Promise<NodeRecord> {
    return wrap(`node ${n.name}`, () => {
      const r = this.db
        .prepare(
          `INSERT INTO nodes(machine_key, node_key, disco_key, name, hostname, user_id, tags, ipv4, ipv6, ephemeral, auth_key_id, created_at, key_expiry, last_seen, logged_out)
           VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
        )
        .run(n.machineKey, n.nodeKey, n.discoKey, n.name, n.hostname, n.userId, toColumn(n.tags), n.ipv4, n.ipv6, toColumn(n.ephemeral), n.authKeyId, n.createdAt, n.keyExpiry, n.lastSeen, toColumn(n.loggedOut));
      // id first: every record then has the same shape (V8 hidden class), which keeps scans fast.
      return { id: Number(r.lastInsertRowid), ...n };
    });
  }
  updateNode(id: number, patch: NodePatch): Promise<void> {
    return wrap('node', () => {
      const keys = (Object.keys(patch) as (keyof NodePatch)[]).filter((k) => patch[k] !== undefined && k in NODE_COLUMNS);
      if (keys.length === 0) return;
      const sql = `UPDATE nodes SET ${keys.map((k) => `${NODE_COLUMNS[k]} = ?`).join(', ')} WHERE id = ?`;
      this.db.prepare(sql).run(...keys.map((k) => toColumn(patch[k])), id);
    });
  }
  deleteNode(id: number): Promise<void> {
    return wrap('node', () => void this.db.prepare('DELETE FROM nodes WHERE id = ?').run(id));
  }

  currentPolicy(): Promise<PolicyRecord | undefined> {
    return wrap('policy', () => this.db.prepare('SELECT id, text, created_at AS createdAt FROM policies ORDER BY id DESC LIMIT 1').get() as PolicyRecord | undefined);
  }
  savePolicy(text: string, now: number): Promise<PolicyRecord> {
    return wrap('policy', () => {
      const r = this.db.prepare('INSERT INTO policies(text, created_at) VALUES (?, ?)').run(text, now);
      return { id: Number(r.lastInsertRowid), text, createdAt: now };
    });
  }
}

/** Opens the store named by `--db`: a file path (SQLite) or a postgres:// URL. */
export function openStore(db: string): Store {
  if (/^postgres(ql)?:\/\//.test(db)) {
    throw new StoreError('STORE_UNSUPPORTED', 'Postgres is not implemented yet: the Store interface (gateway/src/store/types.ts) is ready for it; use a file path for SQLite');
  }
  return new SqliteStore(db);
}
