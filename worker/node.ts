/**
 * The browser node behind the worker's API (worker/api.ts): keys, the engine of src/ on the
 * browser platform, status for the page, ping, SSH sessions, known hosts.
 *
 * What is stored where (docs/browser.md):
 *   normal session     IndexedDB "pierce"/"kv": machine.key, node.key, ssh.seed (base64),
 *                      control:<url> (the pinned control key), session ({controlUrl, hostname}),
 *                      kh:<host> (known hosts)
 *   ephemeral session  the same keys in a Map in this worker; nothing is written anywhere
 * The disco key is made fresh for every engine (as `pierce up` does).
 */
import * as Comlink from 'comlink';
import { cryptoRandom } from '../src/crypto/backend.ts';
import { fromBase64, toBase64, toHex } from '../src/crypto/bytes.ts';
import { nobleBackend } from '../src/crypto/noble.ts';
import { Engine } from '../src/engine/engine.ts';
import type { EngineState } from '../src/engine/types.ts';
import { DiscoPrivate, MachinePrivate, MachinePublic, NodePrivate } from '../src/key/keys.ts';
import type { WebSocketCtor } from '../src/control/client.ts';
import { browserClock, browserTransports } from '../src/browser/platform.ts';
import { SshEd25519Key } from '../src/ssh/keys.ts';
import { KnownHosts, type KeyValueStore } from '../src/ssh/known-hosts.ts';
import type { JoinOptions, KnownHostEntry, PierceApi, PingOutcome, Result, SshConnectOptions, WorkerStatus, HostKeyNotice } from './api.ts';
import { apiError } from './errors.ts';
import { runSshSession } from './ssh-session.ts';
import { leaseTransport, leaseUrlFor, type LeaseTransport } from './udp-lease.ts';
import { IDB_NAME, memoryStore, openIdbStore, type KvStore } from './store.ts';


/** Status pushes to subscribers at most this often. */
const NOTIFY_MS = 250;
/** …and at least this often while joined (paths and round trips change without events). */
const HEARTBEAT_MS = 2000;
/** join() waits this long for "running" or "needs-login". */
const JOIN_WAIT_MS = 20_000;

const log = (level: 'debug' | 'info' | 'warn', m: string) => {
  if (level !== 'debug') console[level === 'warn' ? 'warn' : 'info'](`[pierce] ${m}`);
};

/** A KvStore seen through a key prefix, as the known-hosts store (which lists every key). */
function prefixed(s: KvStore, prefix: string): KeyValueStore {
  return {
    get: (k) => s.get(prefix + k),
    set: (k, v) => s.set(prefix + k, v),
    delete: (k) => s.delete(prefix + k),
    keys: async () => (await s.keys(prefix)).map((k) => k.slice(prefix.length)),
  };
}

async function loadKey<T extends { toBase64(): string }>(s: KvStore, name: string, parse: (t: string) => T, make: () => T): Promise<T> {
  const t = await s.get(name);
  if (t) {
    try {
      return parse(t);
    } catch {
      log('warn', `stored ${name} is unreadable; making a new one`);
    }
  }
  const k = make();
  await s.set(name, k.toBase64());
  return k;
}

async function idbExists(): Promise<boolean> {
  if (typeof indexedDB === 'undefined') return false;
  if (typeof indexedDB.databases !== 'function') return true;
  return (await indexedDB.databases()).some((d) => d.name === IDB_NAME);
}

interface Session {
  engine: Engine;
  store: KvStore;
  ephemeral: boolean;
  controlUrl: string;
  hostname: string;
  knownHosts: KnownHosts;
  sshKey: SshEd25519Key;
  lease: LeaseTransport | undefined;
  saved: boolean;
}

export class WorkerNode implements PierceApi {
  private s: Session | undefined;
  /** Persistent store, opened when first needed (never for an ephemeral session). */
  private idb: Promise<KvStore> | undefined;
  private subscribers: ((st: WorkerStatus) => unknown)[] = [];
  private notifyTimer: ReturnType<typeof setTimeout> | undefined;
  private lastNotify = 0;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private homeWaiters: (() => void)[] = [];
  private savedSession: { controlUrl: string; hostname: string } | undefined;
  readonly ready: Promise<void>;

  constructor() {
    this.ready = this.loadSaved().catch(() => {});
  }

  private persistent(): Promise<KvStore> {
    this.idb ??= openIdbStore().catch((e: Error) => {
      log('warn', `IndexedDB unavailable (${e.message}): keys are kept in memory only`);
      return memoryStore();
    });
    return this.idb;
  }

  private async loadSaved(): Promise<void> {
    if (!(await idbExists())) return;
    const t = await (await this.persistent()).get('session');
    if (t) this.savedSession = JSON.parse(t) as { controlUrl: string; hostname: string };
  }

  // ---- join / leave

  async join(o: JoinOptions): Promise<Result<WorkerStatus>> {
    await this.ready;
    if (this.s) return { ok: false, error: apiError('ALREADY_JOINED', `already joined to ${this.s.controlUrl}; leave first`) };
    let controlUrl: string;
    try {
      const u = new URL(o.controlUrl);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)');
      controlUrl = u.toString().replace(/\/$/, '');
    } catch {
      return { ok: false, error: apiError('JOIN_FAILED', `the control URL ${JSON.stringify(o.controlUrl)} is not an http(s) URL`) };
    }
    const ephemeral = !!o.ephemeral;
    const store = ephemeral ? memoryStore() : await this.persistent();
    const machine = await loadKey(store, 'machine.key', (t) => MachinePrivate.parse(t), () => MachinePrivate.generate());
    const node = await loadKey(store, 'node.key', (t) => NodePrivate.parse(t), () => NodePrivate.generate());
    const seedText = await store.get('ssh.seed');
    let seed = seedText ? fromBase64(seedText) : null;
    if (!seed || seed.length !== 32) {
      seed = cryptoRandom(32);
      await store.set('ssh.seed', toBase64(seed));
    }
    const sshKey = SshEd25519Key.fromSeed(seed);
    const pinned = await store.get(`control:${controlUrl}`);
    let serverKey: MachinePublic | undefined;
    try {
      serverKey = pinned ? MachinePublic.parse(pinned) : undefined;
    } catch {
      serverKey = undefined;
    }
    const hostname =
      o.hostname?.trim() || (this.savedSession?.controlUrl === controlUrl ? this.savedSession.hostname : '') || `browser-${toHex(node.public().rawView().subarray(0, 2))}`;

    const WS = globalThis.WebSocket as unknown as WebSocketCtor;
    const transports = browserTransports({ WebSocket: WS, fetch: globalThis.fetch.bind(globalThis), clock: browserClock });
    let lease: Session['lease'];
    if (o.leases !== false) {
      // Direct paths through UDP sockets leased from the home relay's gateway. Without a lease
      // gateway the first bind fails, the engine logs "direct paths disabled" and stays relay-only.
      try {
        lease = leaseTransport({
          url: async () => leaseUrlFor(await this.homeRelayUrl()),
          nodeKey: node,
          WebSocket: WS,
          clock: browserClock,
          log,
        });
        transports.udp = lease;
      } catch (e) {
        log('warn', `UDP leases unavailable: ${(e as Error).message}; relay only`);
      }
    }
    const engine = new Engine({
      controlUrl,
      hostname,
      ...(o.authKey ? { authKey: o.authKey.trim() } : {}),
      ...(ephemeral ? { ephemeral: true } : {}),
      keys: { machine, node, disco: DiscoPrivate.generate() },
      ...(serverKey ? { serverKey } : {}),
      backend: nobleBackend,
      random: cryptoRandom,
      clock: browserClock,
      transports,
      log,
      events: {
        serverKey: (k) => void store.set(`control:${controlUrl}`, k.toString()),
        login: () => this.notify(true),
        state: (st) => this.onState(st),
        // Soon: a peer coming online may be what the page waits for (an automatic SSH).
        netmap: () => this.notify(true),
      },
    });
    const knownHosts = new KnownHosts(prefixed(store, 'kh:'));
    this.s = { engine, store, ephemeral, controlUrl, hostname, knownHosts, sshKey, lease, saved: false };
    engine.start();
    this.heartbeat = setInterval(() => this.notify(), HEARTBEAT_MS);

    // Wait for running (or a login URL); a control error on the way ends the join.
    const end = Date.now() + JOIN_WAIT_MS;
    for (;;) {
      const st = engine.status();
      const err = engine.control.lastError;
      if (st.state === 'running' || (st.state === 'needs-login' && st.loginUrl && !o.authKey)) break;
      if (err && (o.authKey || err.code !== 'ERROR') && (st.state === 'needs-login' || st.state === 'stopped' || Date.now() > end)) {
        await this.stopSession();
        return { ok: false, error: apiError(err.code, `could not join: ${err.message}`) };
      }
      if (Date.now() > end) {
        await this.stopSession();
        return {
          ok: false,
          error: apiError('JOIN_FAILED', `could not reach the control server at ${controlUrl}${err ? `: ${err.message}` : ''}`),
        };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return { ok: true, value: await this.status() };
  }

  async rejoin(): Promise<Result<WorkerStatus>> {
    await this.ready;
    if (!this.savedSession) return { ok: false, error: apiError('NOT_JOINED', 'no saved session to rejoin') };
    return this.join({ controlUrl: this.savedSession.controlUrl, hostname: this.savedSession.hostname });
  }

  private onState(st: EngineState): void {
    const s = this.s;
    if (s && st === 'running' && !s.ephemeral && !s.saved) {
      s.saved = true;
      this.savedSession = { controlUrl: s.controlUrl, hostname: s.hostname };
      void s.store.set('session', JSON.stringify(this.savedSession));
    }
    this.notify(true);
  }

  async leave(): Promise<void> {
    const s = this.s;
    if (!s) return;
    try {
      if (s.engine.control.connected) await s.engine.logout();
    } catch (e) {
      log('warn', `logout: ${(e as Error).message}`);
    }
    if (!s.ephemeral) {
      // Logged out: that node key is expired at control; the next join makes a new one.
      await s.store.delete('node.key');
      await s.store.delete('session');
      this.savedSession = undefined;
    }
    await this.stopSession();
  }

  private async stopSession(): Promise<void> {
    const s = this.s;
    this.s = undefined;
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    s?.engine.stop();
    s?.lease?.close();
    this.notify(true);
  }

  /** The home relay's URL, once the engine has picked one. */
  private homeRelayUrl(): Promise<string> {
    const find = () => {
      const st = this.s?.engine.status();
      return st?.relays.find((r) => r.region === st.homeRelay)?.url;
    };
    return new Promise((resolve) => {
      const tryNow = () => {
        const u = find();
        if (u) {
          resolve(u);
          return true;
        }
        return false;
      };
      if (tryNow()) return;
      const poll = setInterval(() => (!this.s || tryNow()) && clearInterval(poll), 250);
      this.homeWaiters.push(() => tryNow() && clearInterval(poll));
    });
  }

  // ---- status

  async status(): Promise<WorkerStatus> {
    await this.ready;
    const s = this.s;
    const lease = { enabled: !!s?.lease, connected: !!s?.lease?.connected };
    const saved = this.savedSession ? { saved: this.savedSession } : {};
    if (!s) {
      return { state: 'stopped', controlConnected: false, homeRelay: 0, relays: [], peers: [], dropped: {}, joined: false, ephemeral: false, lease, ...saved };
    }
    const st = s.engine.status();
    const err = s.engine.control.lastError;
    return {
      ...st,
      joined: true,
      ephemeral: s.ephemeral,
      controlUrl: s.controlUrl,
      ...(err && st.state !== 'running' ? { lastError: err } : {}),
      lease,
      ...saved,
    };
  }

  async subscribe(cb: (s: WorkerStatus) => void): Promise<void> {
    this.subscribers.push(cb);
    void this.status().then((st) => this.push(cb, st));
  }

  private push(cb: (s: WorkerStatus) => unknown, st: WorkerStatus): void {
    try {
      Promise.resolve(cb(st)).catch(() => (this.subscribers = this.subscribers.filter((x) => x !== cb)));
    } catch {
      this.subscribers = this.subscribers.filter((x) => x !== cb);
    }
  }

  /** Pushes the status to subscribers, throttled to one push per NOTIFY_MS. */
  private notify(soon = false): void {
    for (const w of this.homeWaiters.splice(0)) w();
    if (this.notifyTimer !== undefined) return;
    const wait = Math.max(0, this.lastNotify + NOTIFY_MS - Date.now());
    this.notifyTimer = setTimeout(
      () => {
        this.notifyTimer = undefined;
        this.lastNotify = Date.now();
        void this.status().then((st) => {
          for (const cb of this.subscribers) this.push(cb, st);
        });
      },
      soon ? Math.min(wait, 50) : wait,
    );
  }

  // ---- ping / ssh

  async ping(peer: string, timeoutMs = 5000): Promise<Result<PingOutcome>> {
    const s = this.s;
    if (!s?.engine.stack) return { ok: false, error: apiError('NOT_JOINED', 'not joined to a mesh yet') };
    const info = s.engine.findPeer(peer);
    if (!info) return { ok: false, error: apiError('PEER_NOT_FOUND', `${peer} is not in your netmap: it does not exist or the policy does not let you reach it`) };
    try {
      const r = await s.engine.ping(peer, timeoutMs);
      this.notify();
      return { ok: true, value: { ...r } };
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'PING_TIMEOUT') {
        return { ok: false, error: apiError(info.online ? 'PING_TIMEOUT' : 'PEER_OFFLINE', info.online ? `no answer from ${info.name} within ${timeoutMs / 1000} s` : `${info.name} is offline`) };
      }
      return { ok: false, error: apiError(code ?? 'ERROR', (e as Error).message) };
    }
  }

  async sshConnect(o: SshConnectOptions, port: MessagePort): Promise<Result<{ hostKey: HostKeyNotice }>> {
    const s = this.s;
    if (!s) {
      const error = apiError('NOT_JOINED', 'not joined to a mesh yet');
      port.postMessage({ t: 'error', error });
      port.postMessage({ t: 'state', state: 'closed' });
      return { ok: false, error };
    }
    return runSshSession({ engine: s.engine, knownHosts: s.knownHosts, sshKey: s.sshKey }, o, port);
  }

  // ---- keys

  async publicKeyLine(): Promise<string> {
    const s = this.s;
    if (!s) throw new Error('join first: the SSH key belongs to the session (persistent or ephemeral)');
    return s.sshKey.authorizedKeysLine(`pierce@${s.hostname}`);
  }

  async knownHosts(): Promise<KnownHostEntry[]> {
    const s = this.s;
    if (!s) return [];
    return (await s.knownHosts.list()).map((e) => ({ host: e.port === 22 ? e.host : `[${e.host}]:${e.port}`, fingerprint: e.fingerprint }));
  }

  async forgetHost(host: string): Promise<void> {
    const s = this.s;
    if (!s) return;
    const m = /^\[([^\]]+)\]:(\d+)$/.exec(host.trim());
    await s.knownHosts.forget(m ? m[1]! : host.trim(), m ? Number(m[2]) : 22);
  }
}

/** Exposes a WorkerNode on `endpoint` (the worker's global scope). */
export function exposeNode(endpoint: Comlink.Endpoint): WorkerNode {
  const node = new WorkerNode();
  Comlink.expose(node, endpoint);
  return node;
}
