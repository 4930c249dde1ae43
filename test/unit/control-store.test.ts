/**
 * The SQLite store: migrations from an empty file, a reopen keeps everything, constraints come
 * back as typed errors, and a database from a newer server is refused.
 */
import { afterEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MIGRATIONS, SqliteStore, openStore } from '../../gateway/src/store/sqlite.ts';
import { AddressAllocator, isAllocatable, v4FromString, v6For } from '../../gateway/src/control/addresses.ts';
import type { NewNode } from '../../gateway/src/store/types.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'pierce-store-'));
  dirs.push(d);
  return join(d, 'control.db');
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const node = (over: Partial<NewNode> = {}): NewNode => ({
  machineKey: 'mkey:1',
  nodeKey: 'nodekey:1',
  discoKey: 'discokey:1',
  name: 'a',
  hostname: 'a',
  userId: 1,
  tags: ['tag:x'],
  ipv4: '100.64.0.1',
  ipv6: 'fd7a:115c:a1e0::6440:1',
  ephemeral: false,
  authKeyId: null,
  createdAt: 1,
  keyExpiry: null,
  lastSeen: null,
  loggedOut: false,
  ...over,
});

describe('SqliteStore', () => {
  it('creates the schema on an empty file in WAL mode and records the version', async () => {
    const f = tmp();
    const s = new SqliteStore(f);
    expect(s.schemaVersion).toBe(MIGRATIONS.length);
    await s.close();
    const db = new Database(f);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('keeps users, keys, nodes, policy and meta across a reopen', async () => {
    const f = tmp();
    let s = new SqliteStore(f);
    const u = await s.createUser('alice@example.com', 5);
    await s.createAuthKey({ id: 'k1', hash: 'h1', userId: u.id, reusable: true, ephemeral: false, tags: ['tag:a'], createdAt: 1, expiresAt: null, revokedAt: null, usedCount: 0, description: 'd' });
    await s.updateAuthKey('k1', { usedCount: 3 });
    const n = await s.insertNode(node({ userId: u.id }));
    await s.updateNode(n.id, { lastSeen: 42, tags: [], loggedOut: true });
    await s.savePolicy('{"acls": []}', 7);
    await s.setMeta('k', 'v');
    await s.close();
    s = new SqliteStore(f);
    expect(await s.listUsers()).toEqual([{ id: u.id, name: 'alice@example.com', createdAt: 5 }]);
    expect((await s.listAuthKeys())[0]).toMatchObject({ id: 'k1', reusable: true, tags: ['tag:a'], usedCount: 3 });
    expect((await s.listNodes())[0]).toMatchObject({ id: n.id, lastSeen: 42, tags: [], loggedOut: true, ephemeral: false });
    expect((await s.currentPolicy())?.text).toBe('{"acls": []}');
    expect(await s.getMeta('k')).toBe('v');
    await s.close();
  });

  it('a duplicate address or key is a STORE_CONFLICT error, and the store keeps working', async () => {
    const s = new SqliteStore(tmp());
    const u = await s.createUser('u', 1);
    await s.insertNode(node({ userId: u.id }));
    await expect(s.insertNode(node({ userId: u.id, machineKey: 'mkey:2', nodeKey: 'nodekey:2', name: 'b' }))).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
    await expect(s.createUser('u', 2)).rejects.toMatchObject({ code: 'STORE_CONFLICT' });
    expect((await s.listNodes()).length).toBe(1);
    await s.close();
  });

  it('refuses a database written by a newer schema', async () => {
    const f = tmp();
    const db = new Database(f);
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    expect(() => new SqliteStore(f)).toThrow(/newer than this server/);
  });

  it('postgres URLs are recognised and refused with a clear error for now', () => {
    expect(() => openStore('postgres://u@localhost/pierce')).toThrow(/Postgres is not implemented/);
  });
});

describe('tailnet addresses', () => {
  it('are handed out in order from 100.64.0.1, with the matching IPv6 address', () => {
    const a = new AddressAllocator();
    expect(a.allocate()).toEqual({ ipv4: '100.64.0.1', ipv6: 'fd7a:115c:a1e0::6440:1' });
    expect(a.allocate().ipv4).toBe('100.64.0.2');
    expect(v6For(v4FromString('100.127.1.2'))).toBe('fd7a:115c:a1e0::647f:102');
  });

  it('never hand out the reserved addresses and skip held ones', () => {
    expect(isAllocatable(v4FromString('100.100.100.100'))).toBe(false);
    expect(isAllocatable(v4FromString('100.115.92.7'))).toBe(false);
    expect(isAllocatable(v4FromString('100.115.93.255'))).toBe(false);
    expect(isAllocatable(v4FromString('100.115.94.0'))).toBe(true);
    expect(isAllocatable(v4FromString('100.64.0.0'))).toBe(false);
    expect(isAllocatable(v4FromString('100.128.0.1'))).toBe(false);
    const a = new AddressAllocator();
    a.hold('100.64.0.1');
    a.hold('100.64.0.2');
    expect(a.allocate().ipv4).toBe('100.64.0.3');
  });
});
