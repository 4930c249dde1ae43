/**
 * The control server's persistent store. The server keeps its working state in memory and
 * writes through this interface; nothing else in the server sees SQL. SQLite
 * (better-sqlite3, WAL) is the embedded implementation; a Postgres one (for several control
 * replicas) fills the same interface, which is why every method is asynchronous.
 *
 * Times are milliseconds since the epoch. Secrets (auth keys, API keys) are stored hashed.
 */

export interface UserRecord {
  id: number;
  name: string;
  createdAt: number;
}

export interface AuthKeyRecord {
  /** Public id ("ak_…"), shown in listings; the secret is id + "_" + random. */
  id: string;
  /** SHA-256 of the whole key, hex. */
  hash: string;
  userId: number;
  reusable: boolean;
  ephemeral: boolean;
  tags: string[];
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
  usedCount: number;
  description: string;
  /** How many registrations the key allows; null/absent: one, or unlimited when reusable. */
  maxUses?: number | null;
}

/** A shareable session: a short-lived, limited-use ephemeral auth key behind a URL. */
export interface ShareRecord {
  /** Public id, "shr_…". */
  id: string;
  authKeyId: string;
  /** SSH target the page opens, "[user@]host[:port]"; null when none. */
  to: string | null;
  tags: string[];
  createdAt: number;
  expiresAt: number;
  /** Registrations allowed. */
  uses: number;
  revokedAt: number | null;
  description: string;
  /** Who made it: "admin:NAME" or "apikey:ID". */
  createdBy: string;
}

export interface AdminRecord {
  name: string;
  /** "scrypt$N$r$p$salt$hash" (base64 salt and hash). */
  passwordHash: string;
  createdAt: number;
}

export type AuditKind = 'admin' | 'ssh';

export interface AuditRecord {
  id: number;
  at: number;
  kind: AuditKind;
  actor: string;
  action: string;
  target: string;
  /** JSON object; never secrets. */
  detail: Record<string, unknown>;
}

export type NewAudit = Omit<AuditRecord, 'id'>;

export interface ApiKeyRecord {
  id: string;
  hash: string;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
  description: string;
}

export interface NodeRecord {
  id: number;
  machineKey: string;
  nodeKey: string;
  discoKey: string;
  name: string;
  hostname: string;
  userId: number;
  tags: string[];
  ipv4: string;
  ipv6: string;
  ephemeral: boolean;
  authKeyId: string | null;
  createdAt: number;
  /** When the node key expires; null for tagged nodes and when expiry is off. */
  keyExpiry: number | null;
  /** Last disconnect (or last report while connected when control stopped). */
  lastSeen: number | null;
  /** Set when the node logged out or an admin expired it: it must register again. */
  loggedOut: boolean;
}

export type NewNode = Omit<NodeRecord, 'id'>;
export type NodePatch = Partial<Omit<NodeRecord, 'id' | 'machineKey' | 'createdAt'>>;

export interface PolicyRecord {
  id: number;
  text: string;
  createdAt: number;
}

export interface Store {
  readonly kind: string;
  close(): Promise<void>;

  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;

  listUsers(): Promise<UserRecord[]>;
  createUser(name: string, now: number): Promise<UserRecord>;
  deleteUser(id: number): Promise<void>;

  listAuthKeys(): Promise<AuthKeyRecord[]>;
  createAuthKey(k: AuthKeyRecord): Promise<void>;
  updateAuthKey(id: string, patch: Partial<Pick<AuthKeyRecord, 'usedCount' | 'revokedAt'>>): Promise<void>;

  listShares(): Promise<ShareRecord[]>;
  createShare(s: ShareRecord): Promise<void>;
  revokeShare(id: string, now: number): Promise<void>;

  listAdmins(): Promise<AdminRecord[]>;
  /** Throws StoreError STORE_CONFLICT when the name exists. */
  createAdmin(a: AdminRecord): Promise<void>;
  deleteAdmin(name: string): Promise<boolean>;

  addAudit(e: NewAudit): Promise<number>;
  /** Newest first; `before`: only ids below it. */
  listAudit(q: { limit: number; before?: number; kind?: AuditKind }): Promise<AuditRecord[]>;

  listApiKeys(): Promise<ApiKeyRecord[]>;
  createApiKey(k: ApiKeyRecord): Promise<void>;
  revokeApiKey(id: string, now: number): Promise<void>;

  listNodes(): Promise<NodeRecord[]>;
  insertNode(n: NewNode): Promise<NodeRecord>;
  updateNode(id: number, patch: NodePatch): Promise<void>;
  deleteNode(id: number): Promise<void>;

  /** The newest policy, if any was ever stored. */
  currentPolicy(): Promise<PolicyRecord | undefined>;
  savePolicy(text: string, now: number): Promise<PolicyRecord>;
}
