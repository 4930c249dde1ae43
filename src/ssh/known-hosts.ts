/**
 * Trust on first use for SSH host keys, like OpenSSH's known_hosts: the first key a host:port
 * presents is remembered, later connections must present the same key. Browser-safe (no Node
 * imports); records live in any async key-value store (memory, IndexedDB, localStorage, a file).
 *
 * Record keys are OpenSSH's known_hosts host patterns: `host` for port 22, `[host]:port`
 * otherwise (hosts lower-cased, as OpenSSH does). Record values are JSON:
 *
 *   {"keyType":"ssh-ed25519","key":"AAAAC3NzaC1lZDI1NTE5AAAA…","addedAt":1718000000000}
 *
 * `key` is the base64 public key blob (the second field of a known_hosts line), `keyType` the
 * algorithm name inside it, `addedAt` milliseconds since the epoch. One key per host:port (the
 * client only speaks ssh-ed25519).
 *
 * A stored value that is not such a record (not JSON, missing fields, bad base64, a blob whose
 * type disagrees with keyType) is not treated as absent, which would silently re-trust whatever
 * key the server shows next: check() and the verifier throw SshError SSH_KNOWN_HOSTS_CORRUPT
 * naming the host, and forget() (or remember()) replaces it. list() skips such records.
 *
 * The store should hold only known-hosts records (wrap a shared store with a prefix otherwise):
 * list() reads every key in it.
 */
import { equalBytes, fromBase64, toBase64 } from '../crypto/bytes.ts';
import { SshReader } from './codec.ts';
import { SshError } from './errors.ts';
import { fingerprintSha256, publicKeyLine } from './keys.ts';
import type { HostKeyVerifier } from './transport.ts';

/** An async string key-value store. */
export interface KeyValueStore {
  get(k: string): Promise<string | undefined>;
  set(k: string, v: string): Promise<void>;
  delete(k: string): Promise<void>;
  keys(): Promise<string[]>;
}

/** A KeyValueStore in a Map (lost with the page / process). */
export function memoryStore(): KeyValueStore {
  const m = new Map<string, string>();
  return {
    get: async (k) => m.get(k),
    set: async (k, v) => void m.set(k, v),
    delete: async (k) => void m.delete(k),
    keys: async () => [...m.keys()],
  };
}

export interface HostKeyCheck {
  /** 'new': nothing on record; 'match': the key on record; 'mismatch': a different key is on record. */
  status: 'new' | 'match' | 'mismatch';
  /** Fingerprint (`SHA256:…`) of the key checked. */
  fingerprint: string;
  /** Fingerprint of the key on record (set for 'mismatch'). */
  known?: string;
}

export interface KnownHostEntry {
  host: string;
  port: number;
  keyType: string;
  fingerprint: string;
  addedAt: number;
}

interface HostRecord {
  keyType: string;
  blob: Uint8Array;
  addedAt: number;
}

/** OpenSSH's known_hosts name for host:port: `host` for 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h.length === 0 || /[\s[\]]/.test(h)) throw new RangeError(`not a host name or address: ${JSON.stringify(host)}`);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`not a TCP port: ${port}`);
  return port === 22 ? h : `[${h}]:${port}`;
}

/** A `known_hosts` line for host:port and a key blob, e.g. `[127.0.0.1]:2222 ssh-ed25519 AAAA…`. */
export function knownHostsLine(host: string, port: number, blob: Uint8Array): string {
  return `${knownHostsName(host, port)} ${publicKeyLine(blob)}`;
}

function parseName(name: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(name);
  if (m) {
    const port = Number(m[2]);
    return port >= 1 && port <= 65535 ? { host: m[1]!, port } : undefined;
  }
  return name.length > 0 && !/[\s[\]]/.test(name) ? { host: name, port: 22 } : undefined;
}

/** The algorithm name at the start of a public key blob; SSH_PROTOCOL unless it is a printable name. */
function blobType(blob: Uint8Array): string {
  const t = new SshReader(blob, 'public key blob').text();
  if (!/^[\x21-\x7e]{1,64}$/.test(t)) throw new SshError('SSH_PROTOCOL', 'public key blob: bad algorithm name');
  return t;
}

function corrupt(name: string, why: string): SshError {
  return new SshError('SSH_KNOWN_HOSTS_CORRUPT', `known hosts record for ${name} is corrupt (${why}); forget it to trust the host again`);
}

function decodeRecord(name: string, value: string): HostRecord {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch {
    throw corrupt(name, 'not JSON');
  }
  if (typeof v !== 'object' || v === null) throw corrupt(name, 'not an object');
  const { keyType, key, addedAt } = v as Record<string, unknown>;
  if (typeof keyType !== 'string' || typeof key !== 'string' || typeof addedAt !== 'number' || !Number.isFinite(addedAt)) {
    throw corrupt(name, 'missing or mistyped keyType / key / addedAt');
  }
  const blob = fromBase64(key);
  if (!blob || blob.length === 0) throw corrupt(name, 'key is not base64');
  let inner: string;
  try {
    inner = blobType(blob);
  } catch {
    throw corrupt(name, 'key is not an SSH public key blob');
  }
  if (inner !== keyType) throw corrupt(name, `keyType ${JSON.stringify(keyType)} but the key is ${inner}`);
  return { keyType, blob, addedAt };
}

function encodeRecord(r: HostRecord): string {
  return JSON.stringify({ keyType: r.keyType, key: toBase64(r.blob), addedAt: r.addedAt });
}

export class KnownHosts {
  private readonly now: () => number;

  constructor(
    private readonly store: KeyValueStore,
    opts: { now?: () => number } = {},
  ) {
    this.now = opts.now ?? Date.now;
  }

  /** Compares `keyBlob` with the record for host:port. Throws SSH_KNOWN_HOSTS_CORRUPT for an unreadable record. */
  async check(host: string, port: number, keyBlob: Uint8Array): Promise<HostKeyCheck> {
    const name = knownHostsName(host, port);
    const fingerprint = fingerprintSha256(keyBlob);
    const value = await this.store.get(name);
    if (value === undefined) return { status: 'new', fingerprint };
    const rec = decodeRecord(name, value);
    if (equalBytes(rec.blob, keyBlob)) return { status: 'match', fingerprint };
    return { status: 'mismatch', fingerprint, known: fingerprintSha256(rec.blob) };
  }

  /** Records (or replaces) the key for host:port. Throws SSH_PROTOCOL when keyBlob is not a key blob. */
  async remember(host: string, port: number, keyBlob: Uint8Array): Promise<void> {
    const name = knownHostsName(host, port);
    const keyType = blobType(keyBlob);
    await this.store.set(name, encodeRecord({ keyType, blob: Uint8Array.from(keyBlob), addedAt: this.now() }));
  }

  /** Every readable record, sorted by host then port; corrupt records are skipped. */
  async list(): Promise<KnownHostEntry[]> {
    const out: KnownHostEntry[] = [];
    for (const name of await this.store.keys()) {
      const hp = parseName(name);
      if (!hp) continue;
      const value = await this.store.get(name);
      if (value === undefined) continue;
      let rec: HostRecord;
      try {
        rec = decodeRecord(name, value);
      } catch {
        continue;
      }
      out.push({ ...hp, keyType: rec.keyType, fingerprint: fingerprintSha256(rec.blob), addedAt: rec.addedAt });
    }
    return out.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : a.port - b.port));
  }

  /** Removes the record for host:port (corrupt or not); no-op when there is none. */
  async forget(host: string, port: number): Promise<void> {
    await this.store.delete(knownHostsName(host, port));
  }

  /**
   * A HostKeyVerifier doing TOFU for host:port: a new key is remembered (and reported through
   * `onNew`; exceptions from it are ignored) and accepted, the key on record is accepted, a
   * different key throws SshError SSH_HOSTKEY_MISMATCH (SshClient.connect rejects with it).
   */
  verifier(host: string, port: number, onNew?: (fingerprint: string) => void): HostKeyVerifier {
    const name = knownHostsName(host, port);
    return async (keyBlob) => {
      const c = await this.check(host, port, keyBlob);
      if (c.status === 'match') return true;
      if (c.status === 'mismatch') {
        throw new SshError(
          'SSH_HOSTKEY_MISMATCH',
          `host key for ${name} has changed: known ${c.known}, the server presented ${c.fingerprint} ` +
            '(possible man-in-the-middle; if the host was re-keyed, forget the old key)',
        );
      }
      await this.remember(host, port, keyBlob);
      try {
        onNew?.(c.fingerprint);
      } catch {
        /* a report only */
      }
      return true;
    };
  }
}
