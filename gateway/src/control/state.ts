/**
 * The control server's state: users, auth keys, API keys, nodes, the policy and pending
 * interactive registrations. Everything is held in memory and written through to the Store;
 * the netmap (who sees whom, filters, deltas) is fed from here.
 */
import { NodePublic, DiscoPublic } from '../../../src/key/keys.ts';
import { PierceError } from '../../../src/errors.ts';
import { sanitizeHostname, type RegisterRequest, type RelayMap } from '../../../src/control/messages.ts';
import { canOwnTag, checkPolicy, type Policy } from '../../../src/policy/index.ts';
import { randomBytes } from 'node:crypto';
import type { AuditKind, AuthKeyRecord, NodeRecord, ShareRecord, Store, UserRecord } from '../store/types.ts';
import { AdminSessions, checkAdminName, checkPassword, dummyHash, hashPassword, verifyPassword } from './admins.ts';
import { AddressAllocator } from './addresses.ts';
import { Netmap } from './netmap.ts';
import { hashSecret, newSecret, secretId, secretMatches } from './secrets.ts';

/** Tailscale's default: everyone reaches everything. Used until a policy is set. */
export const DEFAULT_POLICY = `{
  // The default policy: every node may reach every other node on every port.
  "acls": [{ "action": "accept", "src": ["*"], "dst": ["*:*"] }],
}
`;

export class ControlStateError extends PierceError {}

export interface ControlOptions {
  store: Store;
  relays: RelayMap;
  serverUrl: string;
  /** Base URL of the web page share links point to (default `<serverUrl>/`). */
  webUrl?: string;
  /** Node key lifetime in ms (default 180 days); 0 disables expiry. Tagged nodes never expire. */
  keyExpiryMs?: number;
  /** How long an ephemeral node survives a disconnect (default 10 minutes). */
  ephemeralTimeoutMs?: number;
  now?: () => number;
  log?: (msg: string) => void;
}

export interface PendingRegistration {
  id: string;
  machineKey: string;
  req: RegisterRequest;
  createdAt: number;
  resolve: (node: NodeRecord) => void;
  reject: (e: Error) => void;
  promise: Promise<NodeRecord>;
}

export type RegisterResult = { status: 'ok'; node: NodeRecord } | { status: 'needs-login'; pending: PendingRegistration };

export class ControlState {
  readonly netmap: Netmap;
  readonly users = new Map<number, UserRecord>();
  readonly authKeys = new Map<string, AuthKeyRecord>();
  readonly nodes = new Map<number, NodeRecord>();
  readonly pending = new Map<string, PendingRegistration>();
  readonly shares = new Map<string, ShareRecord>();
  private readonly shareByKey = new Map<string, ShareRecord>();
  private readonly deleting = new Set<number>();
  readonly adminSessions: AdminSessions;
  policy!: Policy;
  policyText = DEFAULT_POLICY;
  private readonly byMachine = new Map<string, NodeRecord>();
  private readonly byNodeKey = new Map<string, NodeRecord>();
  private readonly byName = new Map<string, number>();
  private expiryAt = Infinity;
  private readonly addrs = new AddressAllocator();
  private readonly timers = new Map<number, NodeJS.Timeout>();
  private expiryTimer: NodeJS.Timeout | undefined;
  readonly now: () => number;
  readonly keyExpiryMs: number;
  readonly ephemeralTimeoutMs: number;
  private readonly log: (msg: string) => void;

  constructor(readonly opts: ControlOptions) {
    this.netmap = new Netmap({ relays: opts.relays });
    this.now = opts.now ?? Date.now;
    this.keyExpiryMs = opts.keyExpiryMs ?? 180 * 86_400_000;
    this.ephemeralTimeoutMs = opts.ephemeralTimeoutMs ?? 10 * 60_000;
    this.log = opts.log ?? (() => {});
    this.adminSessions = new AdminSessions(this.now);
  }

  get store(): Store {
    return this.opts.store;
  }

  /** Loads everything from the store and builds the netmap. */
  async load(policyOverride?: string): Promise<void> {
    for (const u of await this.store.listUsers()) this.users.set(u.id, u);
    for (const k of await this.store.listAuthKeys()) this.authKeys.set(k.id, k);
    for (const sh of await this.store.listShares()) this.indexShare(sh);
    const stored = await this.store.currentPolicy();
    const text = policyOverride ?? stored?.text ?? DEFAULT_POLICY;
    const { policy, failures } = checkPolicy(text);
    if (failures.length) throw new ControlStateError('POLICY_TESTS_FAILED', failures.map((f) => f.message).join('\n'));
    this.policy = policy;
    this.policyText = text;
    if (policyOverride !== undefined && stored?.text !== policyOverride) await this.store.savePolicy(policyOverride, this.now());
    this.netmap.setPolicy(policy);
    const start = this.now();
    for (const n of await this.store.listNodes()) {
      this.indexNode(n);
      this.addrs.hold(n.ipv4);
      if (this.isActive(n)) this.netmap.upsert(n, this.userName(n.userId));
      // Ephemeral nodes are offline now; they go unless they come back in time.
      if (n.ephemeral) this.scheduleEphemeral(n.id, (n.lastSeen ?? start) + this.ephemeralTimeoutMs);
    }
    this.scheduleExpiry();
  }

  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    clearTimeout(this.expiryTimer);
    for (const p of this.pending.values()) p.reject(new ControlStateError('SHUTTING_DOWN', 'control is shutting down'));
  }

  userName(id: number): string | undefined {
    return this.users.get(id)?.name;
  }

  userByName(name: string): UserRecord | undefined {
    for (const u of this.users.values()) if (u.name === name) return u;
    return undefined;
  }

  isExpired(n: NodeRecord): boolean {
    return n.keyExpiry !== null && n.keyExpiry <= this.now();
  }

  isActive(n: NodeRecord): boolean {
    return !n.loggedOut && !this.isExpired(n);
  }

  // ---- users ----

  async createUser(name: string): Promise<UserRecord> {
    if (!/^[^\s:]{1,100}$/.test(name)) throw new ControlStateError('BAD_USER', `user name "${name}" must be 1-100 characters without spaces or colons (e.g. alice@example.com)`);
    if (this.userByName(name)) throw new ControlStateError('USER_EXISTS', `user "${name}" already exists`);
    const u = await this.store.createUser(name, this.now());
    this.users.set(u.id, u);
    return u;
  }

  async deleteUser(name: string): Promise<void> {
    const u = this.userByName(name);
    if (!u) throw new ControlStateError('NOT_FOUND', `no user "${name}"`);
    if ([...this.nodes.values()].some((n) => n.userId === u.id)) throw new ControlStateError('USER_HAS_NODES', `user "${name}" still owns nodes; delete them first`);
    await this.store.deleteUser(u.id);
    this.users.delete(u.id);
    for (const [id, k] of this.authKeys) if (k.userId === u.id) this.authKeys.delete(id);
  }

  // ---- auth keys ----

  async createAuthKey(o: {
    user: string;
    reusable?: boolean;
    ephemeral?: boolean;
    tags?: string[];
    expiryMs?: number;
    description?: string;
    /** Registrations allowed (default: 1, or unlimited when reusable). */
    maxUses?: number;
    /** An admin applies the tags: any tag the policy's tagOwners declares, whoever the user. */
    adminTags?: boolean;
  }): Promise<{ key: string; record: AuthKeyRecord }> {
    const u = this.userByName(o.user);
    if (!u) throw new ControlStateError('NOT_FOUND', `no user "${o.user}"`);
    const tags = o.tags ?? [];
    if (o.adminTags) this.checkAdminTags(tags);
    else this.checkTags(u.name, tags);
    if (o.maxUses !== undefined && !(Number.isInteger(o.maxUses) && o.maxUses >= 1 && o.maxUses <= 10_000)) {
      throw new ControlStateError('BAD_USES', 'the use limit must be an integer 1..10000');
    }
    const s = newSecret('pak');
    const now = this.now();
    const record: AuthKeyRecord = {
      id: s.id,
      hash: s.hash,
      userId: u.id,
      reusable: o.reusable ?? false,
      ephemeral: o.ephemeral ?? false,
      tags,
      createdAt: now,
      expiresAt: now + (o.expiryMs ?? 90 * 86_400_000),
      revokedAt: null,
      usedCount: 0,
      description: o.description ?? '',
      maxUses: o.maxUses ?? null,
    };
    await this.store.createAuthKey(record);
    this.authKeys.set(record.id, record);
    return { key: s.key, record };
  }

  async revokeAuthKey(id: string): Promise<void> {
    const k = this.authKeys.get(id);
    if (!k) throw new ControlStateError('NOT_FOUND', `no auth key "${id}"`);
    k.revokedAt = this.now();
    await this.store.updateAuthKey(id, { revokedAt: k.revokedAt });
  }

  private checkAdminTags(tags: string[]): void {
    for (const t of tags) {
      if (!/^tag:[a-zA-Z0-9-]+$/.test(t)) throw new ControlStateError('BAD_TAG', `"${t}" is not a tag (tag:name)`);
      if (!this.policy.tagOwners.has(t)) throw new ControlStateError('TAG_NOT_OWNED', `${t} is not in the policy's tagOwners`);
    }
  }

  private checkTags(user: string, tags: string[]): void {
    for (const t of tags) {
      if (!/^tag:[a-zA-Z0-9-]+$/.test(t)) throw new ControlStateError('BAD_TAG', `"${t}" is not a tag (tag:name)`);
      if (!canOwnTag(this.policy, user, t)) throw new ControlStateError('TAG_NOT_OWNED', `user "${user}" may not apply ${t}: not in the policy's tagOwners`);
    }
  }

  /** Why an auth key cannot register a node now (revoked, expired, used up), or undefined. */
  authKeyProblem(k: Omit<AuthKeyRecord, 'hash'>): ControlStateError | undefined {
    if (k.revokedAt !== null) return new ControlStateError('AUTH_KEY_REVOKED', `auth key ${k.id} was revoked`);
    if (k.expiresAt !== null && k.expiresAt <= this.now()) return new ControlStateError('AUTH_KEY_EXPIRED', `auth key ${k.id} has expired`);
    if (k.maxUses != null && k.usedCount >= k.maxUses) return new ControlStateError('AUTH_KEY_USED', `auth key ${k.id} was already used ${k.usedCount} time(s), its limit`);
    if (!k.reusable && k.usedCount > 0) return new ControlStateError('AUTH_KEY_USED', `auth key ${k.id} was already used (it is single-use)`);
    return undefined;
  }

  private authKeyFor(text: string): AuthKeyRecord {
    const id = secretId(text, 'pak');
    const k = id === undefined ? undefined : this.authKeys.get(id);
    if (!k || !secretMatches(text, k.hash)) throw new ControlStateError('AUTH_KEY_INVALID', 'invalid auth key');
    const problem = this.authKeyProblem(k);
    if (problem) throw problem;
    return k;
  }

  /** True without an auth key, or when `text` is the key that registered node `n`. */
  private presentsOwnKey(n: NodeRecord, text: string | undefined): boolean {
    if (text === undefined) return true;
    if (n.authKeyId === null || secretId(text, 'pak') !== n.authKeyId) return false;
    const k = this.authKeys.get(n.authKeyId);
    return k !== undefined && secretMatches(text, k.hash);
  }

  // ---- registration ----

  /**
   * Registers (or re-authenticates, or renews) the node of `machineKey`. Without an auth key
   * an unknown node gets a pending registration an admin approves.
   */
  async register(machineKey: string, req: RegisterRequest): Promise<RegisterResult> {
    NodePublic.parse(req.nodeKey); // typed KeyError when malformed
    if (req.oldNodeKey !== undefined) NodePublic.parse(req.oldNodeKey);
    const existing = this.byMachine.get(machineKey);
    const holder = this.byNodeKey.get(req.nodeKey);
    if (holder && holder.machineKey !== machineKey) throw new ControlStateError('NODE_KEY_IN_USE', 'this node key belongs to another machine');
    // A registered node reconnecting (or restarted with the same state) may present the auth key
    // it registered with again, as `pierce up --authkey K` does at every connection: that key is
    // not spent again (a single-use key would otherwise be refused and the node locked out).
    if (existing && !existing.loggedOut && !this.isExpired(existing) && this.presentsOwnKey(existing, req.authKey)) {
      if (existing.nodeKey === req.nodeKey) return { status: 'ok', node: await this.touchHostname(existing, req.hostname) };
      if (req.oldNodeKey === existing.nodeKey) {
        // Key renewal: the machine proves itself with the Noise handshake and names its old key.
        return { status: 'ok', node: await this.updateNode(existing, { nodeKey: req.nodeKey, keyExpiry: this.nodeExpiry(existing.tags, existing.authKeyId) }) };
      }
    }
    if (req.authKey !== undefined) {
      const k = this.authKeyFor(req.authKey);
      const user = this.users.get(k.userId)!;
      const tags = k.tags.length ? k.tags : (req.tags ?? []);
      if (!k.tags.length) this.checkTags(user.name, tags);
      const node = await this.upsertNode(machineKey, req, user.id, tags, k.ephemeral || (req.ephemeral ?? false), k.id);
      k.usedCount++;
      await this.store.updateAuthKey(k.id, { usedCount: k.usedCount });
      return { status: 'ok', node };
    }
    for (const p of this.pending.values()) if (p.machineKey === machineKey) {
      p.req = req;
      return { status: 'needs-login', pending: p };
    }
    let resolve!: (n: NodeRecord) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<NodeRecord>((a, b) => ((resolve = a), (reject = b)));
    promise.catch(() => {});
    const id = newSecret('pak').id + newSecret('pak').id;
    const p: PendingRegistration = { id, machineKey, req, createdAt: this.now(), resolve, reject, promise };
    this.pending.set(id, p);
    this.log(`registration ${id} from ${req.hostname} waits for approval: ${this.opts.serverUrl}/register/${id}`);
    return { status: 'needs-login', pending: p };
  }

  /** An admin approves a pending interactive registration as `user`. */
  async approve(id: string, userName: string): Promise<NodeRecord> {
    const p = this.pending.get(id);
    if (!p) throw new ControlStateError('NOT_FOUND', `no pending registration "${id}"`);
    const u = this.userByName(userName);
    if (!u) throw new ControlStateError('NOT_FOUND', `no user "${userName}"`);
    const tags = p.req.tags ?? [];
    this.checkTags(u.name, tags);
    const node = await this.upsertNode(p.machineKey, p.req, u.id, tags, p.req.ephemeral ?? false, null);
    this.pending.delete(id);
    p.resolve(node);
    return node;
  }

  private expiryFor(tags: string[]): number | null {
    return tags.length > 0 || this.keyExpiryMs === 0 ? null : this.now() + this.keyExpiryMs;
  }

  /** A node from a share expires with the share, tagged or not; others as expiryFor. */
  private nodeExpiry(tags: string[], authKeyId: string | null): number | null {
    const sh = authKeyId === null ? undefined : this.shareByKey.get(authKeyId);
    return sh ? sh.expiresAt : this.expiryFor(tags);
  }

  /** The share a node registered through, if any. */
  shareOfNode(n: NodeRecord): ShareRecord | undefined {
    return n.authKeyId === null ? undefined : this.shareByKey.get(n.authKeyId);
  }

  private uniqueName(hostname: string, selfId?: number): string {
    const base = sanitizeHostname(hostname);
    const taken = (name: string) => {
      const id = this.byName.get(name);
      return id !== undefined && id !== selfId;
    };
    if (!taken(base)) return base;
    for (let i = 1; ; i++) if (!taken(`${base}-${i}`)) return `${base}-${i}`;
  }

  private async touchHostname(n: NodeRecord, hostname: string): Promise<NodeRecord> {
    if (n.hostname === hostname) return n;
    return this.updateNode(n, { hostname, name: this.uniqueName(hostname, n.id) });
  }

  private async upsertNode(machineKey: string, req: RegisterRequest, userId: number, tags: string[], ephemeral: boolean, authKeyId: string | null): Promise<NodeRecord> {
    const existing = this.byMachine.get(machineKey);
    if (existing) {
      return this.updateNode(existing, {
        nodeKey: req.nodeKey,
        userId,
        tags,
        ephemeral,
        authKeyId,
        hostname: req.hostname,
        name: existing.hostname === req.hostname ? existing.name : this.uniqueName(req.hostname, existing.id),
        keyExpiry: this.nodeExpiry(tags, authKeyId),
        loggedOut: false,
      });
    }
    const a = this.addrs.allocate();
    const now = this.now();
    const rec = await this.store.insertNode({
      machineKey,
      nodeKey: req.nodeKey,
      discoKey: DiscoPublic.fromRaw(new Uint8Array(32)).toString(),
      name: this.uniqueName(req.hostname),
      hostname: req.hostname,
      userId,
      tags,
      ipv4: a.ipv4,
      ipv6: a.ipv6,
      ephemeral,
      authKeyId,
      createdAt: now,
      keyExpiry: this.nodeExpiry(tags, authKeyId),
      lastSeen: null,
      loggedOut: false,
    });
    this.indexNode(rec);
    this.netmap.upsert(rec, this.userName(userId));
    this.noteExpiry(rec);
    return rec;
  }

  /** Applies a change to a node, in the store, in memory and in the netmap. */
  async updateNode(n: NodeRecord, patch: Partial<NodeRecord>): Promise<NodeRecord> {
    await this.store.updateNode(n.id, patch);
    const rec: NodeRecord = { ...n, ...patch };
    this.unindexNode(n);
    this.indexNode(rec);
    if (this.isActive(rec)) this.netmap.upsert(rec, this.userName(rec.userId));
    else this.netmap.remove(rec.id);
    this.noteExpiry(rec);
    return rec;
  }

  private indexNode(n: NodeRecord): void {
    this.nodes.set(n.id, n);
    this.byMachine.set(n.machineKey, n);
    this.byNodeKey.set(n.nodeKey, n);
    this.byName.set(n.name, n.id);
  }

  private unindexNode(n: NodeRecord): void {
    this.nodes.delete(n.id);
    this.byMachine.delete(n.machineKey);
    if (this.byNodeKey.get(n.nodeKey)?.id === n.id) this.byNodeKey.delete(n.nodeKey);
    if (this.byName.get(n.name) === n.id) this.byName.delete(n.name);
  }

  async deleteNode(id: number, why = 'this node was deleted'): Promise<void> {
    const n = this.nodes.get(id);
    if (!n) throw new ControlStateError('NOT_FOUND', `no node ${id}`);
    await this.store.deleteNode(id);
    if (!this.nodes.has(id)) return; // deleted meanwhile
    this.auditWindows.delete(id);
    this.unindexNode(n);
    this.addrs.release(n.ipv4);
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
    this.netmap.remove(id);
    this.onNodeGone?.(id, 'NODE_DELETED', why);
  }

  /** Set by the server: closes a node's session when it is deleted, expired or logged out. */
  onNodeGone: ((id: number, code: string, message: string) => void) | undefined;

  async logout(id: number): Promise<void> {
    const n = this.nodes.get(id);
    if (!n) return;
    if (n.ephemeral) return this.deleteNode(id);
    await this.updateNode(n, { loggedOut: true, keyExpiry: this.now() });
  }

  async expireNode(id: number): Promise<void> {
    const n = this.nodes.get(id);
    if (!n) throw new ControlStateError('NOT_FOUND', `no node ${id}`);
    await this.updateNode(n, { keyExpiry: this.now() });
    this.onNodeGone?.(id, 'NODE_KEY_EXPIRED', 'the node key expired; register again');
  }

  async setTags(id: number, tags: string[]): Promise<NodeRecord> {
    const n = this.nodes.get(id);
    if (!n) throw new ControlStateError('NOT_FOUND', `no node ${id}`);
    this.checkTags(this.userName(n.userId) ?? '', tags);
    const share = this.shareOfNode(n);
    return this.updateNode(n, { tags, keyExpiry: share ? share.expiresAt : tags.length ? null : (n.keyExpiry ?? this.expiryFor(tags)) });
  }

  async rename(id: number, name: string): Promise<NodeRecord> {
    const n = this.nodes.get(id);
    if (!n) throw new ControlStateError('NOT_FOUND', `no node ${id}`);
    const clean = sanitizeHostname(name);
    if ([...this.nodes.values()].some((o) => o.id !== id && o.name === clean)) throw new ControlStateError('NAME_TAKEN', `name "${clean}" is taken`);
    return this.updateNode(n, { name: clean });
  }

  // ---- presence ----

  /** A node's map stream closed. Ephemeral nodes are deleted after the timeout. */
  async disconnected(id: number): Promise<void> {
    const n = this.nodes.get(id);
    if (!n) return;
    const now = this.now();
    n.lastSeen = now;
    await this.store.updateNode(id, { lastSeen: now });
    if (n.ephemeral) this.scheduleEphemeral(id, now + this.ephemeralTimeoutMs);
  }

  connected(id: number): void {
    clearTimeout(this.timers.get(id));
    this.timers.delete(id);
  }

  private scheduleEphemeral(id: number, at: number): void {
    clearTimeout(this.timers.get(id));
    const t = setTimeout(() => {
      this.timers.delete(id);
      if (this.netmap.isOnline(id) || !this.nodes.has(id)) return;
      this.log(`ephemeral node ${id} deleted after ${this.ephemeralTimeoutMs} ms offline`);
      void this.deleteNode(id).catch((e) => this.log(`deleting ephemeral node ${id}: ${(e as Error).message}`));
    }, Math.max(0, at - this.now()));
    t.unref();
    this.timers.set(id, t);
  }

  /** A node's expiry changed: arm the timer earlier if needed (no scan of every node). */
  private noteExpiry(n: NodeRecord): void {
    if (n.keyExpiry === null || n.loggedOut) return;
    if (n.keyExpiry <= this.now() || n.keyExpiry < this.expiryAt) this.scheduleExpiry();
  }

  /** Drops nodes whose key expired from the netmap, at the next expiry time. */
  private scheduleExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryAt = Infinity;
    let next = Infinity;
    const now = this.now();
    const shareGone: number[] = [];
    for (const n of this.nodes.values()) {
      if (n.keyExpiry === null || n.loggedOut) continue;
      if (n.keyExpiry <= now && this.shareOfNode(n)) shareGone.push(n.id);
      else if (n.keyExpiry <= now) {
        if (this.netmap.node(n.id)) {
          this.netmap.remove(n.id);
          this.onNodeGone?.(n.id, 'NODE_KEY_EXPIRED', 'the node key expired; register again');
        }
      } else next = Math.min(next, n.keyExpiry);
    }
    // A share's nodes are deleted when it expires (also for ones that expired while control was down).
    for (const id of shareGone) this.dropNode(id, 'the share this node joined through has expired');
    if (next === Infinity) return;
    this.expiryAt = next;
    this.expiryTimer = setTimeout(() => this.scheduleExpiry(), Math.min(next - now + 1, 2 ** 31 - 1));
    this.expiryTimer.unref();
  }

  /** Deletes a node in the background (timers), at most once at a time. */
  private dropNode(id: number, why: string): void {
    if (this.deleting.has(id)) return;
    this.deleting.add(id);
    this.log(`node ${id} deleted: ${why}`);
    void this.deleteNode(id, why)
      .catch((e) => this.log(`deleting node ${id}: ${(e as Error).message}`))
      .finally(() => this.deleting.delete(id));
  }

  // ---- shares ----

  private indexShare(sh: ShareRecord): void {
    this.shares.set(sh.id, sh);
    this.shareByKey.set(sh.authKeyId, sh);
  }

  /** The name of the user share keys belong to when none is given. */
  static readonly SHARE_USER = 'shared';

  async createShare(o: { tags?: string[]; ttlMs?: number; uses?: number; to?: string; user?: string; description?: string; createdBy: string }): Promise<{ share: ShareRecord; key: string; url: string }> {
    const ttl = o.ttlMs ?? 3_600_000;
    if (!(ttl > 0 && ttl <= 366 * 86_400_000)) throw new ControlStateError('BAD_TTL', 'the share lifetime must be more than 0 and at most 366 days');
    const uses = o.uses ?? 1;
    if (!Number.isInteger(uses) || uses < 1 || uses > 10_000) throw new ControlStateError('BAD_USES', 'uses must be an integer 1..10000');
    const to = o.to === undefined || o.to === '' ? null : o.to;
    if (to !== null && !isSshTarget(to)) throw new ControlStateError('BAD_TARGET', `"${to.slice(0, 80)}" is not [user@]host[:port]`);
    const description = o.description ?? '';
    if (description.length > 500) throw new ControlStateError('BAD_DESCRIPTION', 'the description is longer than 500 characters');
    const userName = o.user ?? ControlState.SHARE_USER;
    if (!this.userByName(userName)) {
      if (o.user !== undefined) throw new ControlStateError('NOT_FOUND', `no user "${userName}"`);
      await this.createUser(userName);
    }
    const tags = [...new Set(o.tags ?? [])];
    const id = `shr_${randomBytes(8).toString('base64url')}`;
    const { key, record } = await this.createAuthKey({
      user: userName,
      reusable: uses > 1,
      ephemeral: true,
      tags,
      expiryMs: ttl,
      maxUses: uses,
      description: `share ${id}${description ? `: ${description}` : ''}`,
      adminTags: true,
    });
    const share: ShareRecord = { id, authKeyId: record.id, to, tags, createdAt: record.createdAt, expiresAt: record.expiresAt!, uses, revokedAt: null, description, createdBy: o.createdBy };
    await this.store.createShare(share);
    this.indexShare(share);
    return { share, key, url: this.shareUrl(key, to) };
  }

  shareUrl(key: string, to: string | null): string {
    const base = this.opts.webUrl ?? `${this.opts.serverUrl.replace(/\/+$/, '')}/`;
    return `${base}#authkey=${encodeURIComponent(key)}&ephemeral=1${to !== null ? `&ssh=${encodeURIComponent(to)}` : ''}`;
  }

  /** The share's state and its live nodes. */
  shareView(sh: ShareRecord) {
    const k = this.authKeys.get(sh.authKeyId);
    const used = k?.usedCount ?? 0;
    const problem = k ? this.authKeyProblem(k)?.code : 'AUTH_KEY_REVOKED';
    const state = sh.revokedAt !== null || problem === 'AUTH_KEY_REVOKED' ? 'revoked' : problem === 'AUTH_KEY_EXPIRED' ? 'expired' : problem === 'AUTH_KEY_USED' ? 'used-up' : 'active';
    const nodes = [...this.nodes.values()].filter((n) => n.authKeyId === sh.authKeyId).map((n) => ({ id: n.id, name: n.name, online: this.netmap.isOnline(n.id) }));
    const user = k ? (this.userName(k.userId) ?? null) : null;
    return { ...sh, user, state, used, nodes };
  }

  /** Revokes a share: its key stops working and every node that joined through it is deleted. */
  async revokeShare(id: string): Promise<number[]> {
    const sh = this.shares.get(id);
    if (!sh) throw new ControlStateError('NOT_FOUND', `no share "${id}"`);
    const now = this.now();
    if (sh.revokedAt === null) {
      sh.revokedAt = now;
      await this.store.revokeShare(id, now);
    }
    const k = this.authKeys.get(sh.authKeyId);
    if (k && k.revokedAt === null) await this.revokeAuthKey(k.id);
    const ids = [...this.nodes.values()].filter((n) => n.authKeyId === sh.authKeyId).map((n) => n.id);
    for (const nid of ids) if (this.nodes.has(nid)) await this.deleteNode(nid, 'the share this node joined through was revoked');
    return ids;
  }

  // ---- admin accounts ----

  async listAdmins(): Promise<{ name: string; createdAt: number }[]> {
    return (await this.store.listAdmins()).map((a) => ({ name: a.name, createdAt: a.createdAt }));
  }

  async createAdmin(name: string, password: string): Promise<{ name: string; createdAt: number }> {
    checkAdminName(name);
    checkPassword(password);
    if ((await this.store.listAdmins()).some((a) => a.name === name)) throw new ControlStateError('ADMIN_EXISTS', `admin "${name}" already exists`);
    const a = { name, passwordHash: await hashPassword(password), createdAt: this.now() };
    await this.store.createAdmin(a);
    return { name, createdAt: a.createdAt };
  }

  async deleteAdmin(name: string): Promise<void> {
    if (!(await this.store.deleteAdmin(name))) throw new ControlStateError('NOT_FOUND', `no admin "${name}"`);
    this.adminSessions.endAll(name);
  }

  /** Creates the account when there is no admin at all (`--admin-password-file`). */
  async ensureAdmin(name: string, password: string): Promise<boolean> {
    if ((await this.store.listAdmins()).length > 0) return false;
    await this.createAdmin(name, password);
    return true;
  }

  /** Checks a login; returns a session token. BAD_LOGIN for a wrong name or password alike. */
  async login(name: string, password: string): Promise<string> {
    const wait = this.adminSessions.lockedFor(name);
    if (wait > 0) throw new ControlStateError('LOGIN_THROTTLED', `too many failed logins; try again in ${Math.ceil(wait / 1000)} s`);
    const a = (await this.store.listAdmins()).find((x) => x.name === name);
    const ok = await verifyPassword(password, a?.passwordHash ?? (await dummyHash()));
    if (!a || !ok) {
      this.adminSessions.fail(name);
      throw new ControlStateError('BAD_LOGIN', 'wrong name or password');
    }
    this.adminSessions.succeed(name);
    return this.adminSessions.create(name);
  }

  // ---- audit ----

  /** Records an audit event; a store failure is logged, never thrown (the action happened). */
  /** Per node: the current minute's start and how many audit events it has stored in it. */
  private readonly auditWindows = new Map<number, { start: number; count: number }>();

  /** Whether node `id` may store one more audit event this minute (at most `perMinute`). */
  takeAuditSlot(id: number, perMinute: number): boolean {
    const now = this.now();
    let w = this.auditWindows.get(id);
    if (!w || now - w.start >= 60_000) this.auditWindows.set(id, (w = { start: now, count: 0 }));
    if (w.count >= perMinute) return false;
    w.count++;
    return true;
  }

  async audit(e: { kind?: AuditKind; actor: string; action: string; target?: string; detail?: Record<string, unknown>; at?: number }): Promise<void> {
    try {
      await this.store.addAudit({ at: e.at ?? this.now(), kind: e.kind ?? 'admin', actor: e.actor, action: e.action, target: e.target ?? '', detail: e.detail ?? {} });
    } catch (err) {
      this.log(`audit: ${(err as Error).message}`);
    }
  }

  // ---- policy ----

  /** Validates and applies a new policy; a policy whose tests fail is refused, the old one stays. */
  async setPolicy(text: string): Promise<{ rules: number; tests: number }> {
    const { policy, failures } = checkPolicy(text);
    if (failures.length) {
      throw new ControlStateError('POLICY_TESTS_FAILED', `policy tests failed; the running policy stays:\n${failures.map((f) => `  ${f.message}`).join('\n')}`);
    }
    await this.store.savePolicy(text, this.now());
    this.policy = policy;
    this.policyText = text;
    this.netmap.setPolicy(policy);
    return { rules: policy.acls.length, tests: policy.tests.length };
  }

  /** Checks an API key against the store (keys made offline by `pierce control apikey` count). */
  async checkApiKey(key: string): Promise<boolean> {
    return (await this.apiKeyId(key)) !== undefined;
  }

  /** The id of a valid API key, else undefined. */
  async apiKeyId(key: string): Promise<string | undefined> {
    const id = secretId(key, 'papi');
    if (id === undefined) return undefined;
    const k = (await this.store.listApiKeys()).find((x) => x.id === id);
    if (!k || k.revokedAt !== null || (k.expiresAt !== null && k.expiresAt <= this.now())) return undefined;
    return secretMatches(key, k.hash) ? id : undefined;
  }
}

/** Makes an API key in a store (used by the server and offline by `pierce control apikey`). */
export async function createApiKey(store: Store, now: number, description = '', expiryMs?: number): Promise<{ id: string; key: string }> {
  const s = newSecret('papi');
  await store.createApiKey({ id: s.id, hash: hashSecret(s.key), createdAt: now, expiresAt: expiryMs ? now + expiryMs : null, revokedAt: null, description });
  return { id: s.id, key: s.key };
}

/** "[user@]host[:port]": what a share's `to` may be (host: DNS name, IPv4 or [IPv6]). */
export function isSshTarget(s: string): boolean {
  const m = /^(?:([A-Za-z0-9._-]{1,64})@)?(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::(\d{1,5}))?$/.exec(s);
  if (!m) return false;
  return m[3] === undefined || (Number(m[3]) >= 1 && Number(m[3]) <= 65535);
}
