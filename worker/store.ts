/**
 * A tiny key/value store for the worker: one IndexedDB object store (normal sessions), or a Map
 * (ephemeral sessions: nothing is written anywhere). No dependency; values are strings.
 *
 *   database "pierce" ─ object store "kv" ─ key (string) → value (string)
 */

export interface KvStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
  /** Every key (with `prefix`, when given). */
  keys(prefix?: string): Promise<string[]>;
}

export const IDB_NAME = 'pierce';
export const IDB_STORE = 'kv';

/** An in-memory store: for ephemeral sessions, and where IndexedDB is unavailable. */
export function memoryStore(): KvStore {
  const m = new Map<string, string>();
  return {
    get: async (k) => m.get(k),
    set: async (k, v) => void m.set(k, v),
    delete: async (k) => void m.delete(k),
    keys: async (prefix = '') => [...m.keys()].filter((k) => k.startsWith(prefix)),
  };
}

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error ?? new Error('IndexedDB request failed'));
  });
}

/** Opens (creating on first use) the IndexedDB store. Rejects where IndexedDB is unavailable. */
export async function openIdbStore(name = IDB_NAME): Promise<KvStore> {
  if (typeof indexedDB === 'undefined') throw new Error('IndexedDB is not available');
  const open = indexedDB.open(name, 1);
  open.onupgradeneeded = () => {
    if (!open.result.objectStoreNames.contains(IDB_STORE)) open.result.createObjectStore(IDB_STORE);
  };
  const db = await req(open);
  const tx = (mode: IDBTransactionMode) => db.transaction(IDB_STORE, mode).objectStore(IDB_STORE);
  return {
    get: async (k) => {
      const v = await req(tx('readonly').get(k));
      return typeof v === 'string' ? v : undefined;
    },
    set: async (k, v) => void (await req(tx('readwrite').put(v, k))),
    delete: async (k) => void (await req(tx('readwrite').delete(k))),
    keys: async (prefix = '') => (await req(tx('readonly').getAllKeys())).map(String).filter((k) => k.startsWith(prefix)),
  };
}
