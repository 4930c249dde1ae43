/**
 * The node side of the control protocol, for browsers and Node alike: one connection
 * (`ControlConnection`: WebSocket + Noise IK + framing + JSON messages) and the netmap view a
 * node keeps by applying the full map and then each delta (`NetmapView`).
 *
 * The WebSocket constructor is injected (browsers pass `WebSocket`, Node 20 passes `ws`), so
 * this file touches no platform API except `fetch` for `/key`.
 */
import type { CryptoBackend, RandomSource } from '../crypto/backend.ts';
import { MachinePublic, type MachinePrivate } from '../key/keys.ts';
import { finishInitiator, initiate, type NoiseSession } from './noise.ts';
import { Reassembler, decodeJson, encodeJson, sealMessage } from './framing.ts';
import {
  CONTROL_PROLOGUE,
  CONTROL_PROTOCOL_VERSION,
  CONTROL_SUBPROTOCOL,
  ControlError,
  MAX_AUDIT_EVENTS,
  parseServerMessage,
  type AuditEvent,
  type ClientMessage,
  type MapResponse,
  type PeerInfo,
  type RelayMap,
  type SelfInfo,
  type ServerMessage,
} from './messages.ts';
import type { SshPolicyRule } from './messages.ts';
import type { PacketFilter } from '../policy/types.ts';
import { FilterState } from './filter-sets.ts';

/** The subset of the WebSocket API used here (browser WebSocket and `ws` both have it). */
export interface WebSocketLike {
  binaryType: string;
  readonly protocol: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketCtor = new (url: string, protocols: string | string[]) => WebSocketLike;

/** Fetches the server's static key from `/key` (to pin on first use); `fetchFn` defaults to the global. */
export async function fetchServerKey(baseUrl: string, fetchFn: typeof fetch = globalThis.fetch): Promise<MachinePublic> {
  const res = await fetchFn(new URL('/key', baseUrl));
  if (!res.ok) throw new ControlError('CONTROL_KEY_FETCH', `GET ${baseUrl}/key: HTTP ${res.status}`);
  const body = (await res.json()) as { publicKey?: unknown };
  if (typeof body.publicKey !== 'string') throw new ControlError('CONTROL_KEY_FETCH', `${baseUrl}/key has no publicKey`);
  return MachinePublic.parse(body.publicKey);
}

/** The WebSocket URL of the control channel for a base URL (http→ws, https→wss). */
export function controlWsUrl(baseUrl: string): string {
  const u = new URL('/control', baseUrl);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.toString();
}

export interface ConnectOptions {
  url: string;
  machineKey: MachinePrivate;
  serverKey: MachinePublic;
  backend: CryptoBackend;
  random: RandomSource;
  WebSocket: WebSocketCtor;
  /** Called for every message control sends. */
  onMessage: (m: ServerMessage) => void;
  onClose?: (code: number, reason: string) => void;
  timeoutMs?: number;
}

const utf8 = new TextEncoder();

/** One authenticated control connection. */
export class ControlConnection {
  private closed = false;
  private constructor(
    private readonly ws: WebSocketLike,
    private readonly session: NoiseSession,
  ) {}

  /** Opens the WebSocket and runs the Noise handshake. Rejects with a ControlError. */
  static connect(o: ConnectOptions): Promise<ControlConnection> {
    return new Promise((resolve, reject) => {
      const ws = new o.WebSocket(controlWsUrl(o.url), CONTROL_SUBPROTOCOL);
      ws.binaryType = 'arraybuffer';
      let conn: ControlConnection | undefined;
      let reasm: Reassembler | undefined;
      const timer = setTimeout(() => {
        ws.close();
        reject(new ControlError('CONTROL_TIMEOUT', `no handshake answer from ${o.url} within ${o.timeoutMs ?? 10_000} ms`));
      }, o.timeoutMs ?? 10_000);
      const { message, pending } = initiate(
        { backend: o.backend, random: o.random, prologue: utf8.encode(CONTROL_PROLOGUE) },
        o.machineKey.rawView(),
        o.serverKey.rawView(),
        encodeJson({ v: CONTROL_PROTOCOL_VERSION }),
      );
      ws.onopen = () => ws.send(message);
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        clearTimeout(timer);
        if (!conn) reject(new ControlError('CONTROL_CLOSED', `control closed the connection during the handshake (${ev.code} ${ev.reason})`));
        else {
          conn.closed = true;
          o.onClose?.(ev.code, ev.reason);
        }
      };
      ws.onmessage = (ev) => {
        const data = ev.data instanceof ArrayBuffer ? new Uint8Array(ev.data) : ev.data instanceof Uint8Array ? ev.data : undefined;
        if (!data) return ws.close(1003, 'binary only');
        try {
          if (!conn) {
            const r = finishInitiator(pending, data);
            clearTimeout(timer);
            conn = new ControlConnection(ws, r.session);
            reasm = new Reassembler(r.session);
            return resolve(conn);
          }
          const msg = reasm!.push(data);
          if (msg !== null) o.onMessage(parseServerMessage(decodeJson(msg)));
        } catch (e) {
          ws.close(1008, 'bad message');
          if (!conn) {
            clearTimeout(timer);
            reject(e);
          }
        }
      };
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  send(m: ClientMessage): void {
    if (this.closed) throw new ControlError('CONTROL_CLOSED', 'the control connection is closed');
    for (const c of sealMessage(this.session, encodeJson(m))) this.ws.send(c);
  }

  /** Sends SSH audit events (in messages of at most MAX_AUDIT_EVENTS); throws when closed. Use AuditSender to queue across reconnects. */
  audit(events: AuditEvent[]): void {
    for (let i = 0; i < events.length; i += MAX_AUDIT_EVENTS) this.send({ t: 'audit', events: events.slice(i, i + MAX_AUDIT_EVENTS) });
  }

  close(): void {
    this.closed = true;
    this.ws.close(1000, 'bye');
  }
}

/** Events an AuditSender keeps while disconnected; the oldest are dropped beyond this. */
export const AUDIT_QUEUE_MAX = 256;

/**
 * Reports SSH session events to control's audit log: sent at once (in messages of at most
 * MAX_AUDIT_EVENTS) while a registered connection is set, queued (bounded) while there is
 * none, and flushed when one is set again. Control rate-limits what it stores per connection.
 */
export class AuditSender {
  private conn: { send(m: ClientMessage): void; readonly isClosed: boolean } | undefined;
  private readonly queue: AuditEvent[] = [];
  /** Events dropped because the queue was full. */
  dropped = 0;

  /** The registered connection to send on (undefined while disconnected); flushes the queue. */
  setConnection(conn: { send(m: ClientMessage): void; readonly isClosed: boolean } | undefined): void {
    this.conn = conn;
    this.flush();
  }

  audit(events: AuditEvent[]): void {
    for (const e of events) this.queue.push(e);
    if (this.queue.length > AUDIT_QUEUE_MAX) this.dropped += this.queue.splice(0, this.queue.length - AUDIT_QUEUE_MAX).length;
    this.flush();
  }

  get pending(): number {
    return this.queue.length;
  }

  private flush(): void {
    const c = this.conn;
    if (!c || c.isClosed) return;
    while (this.queue.length) {
      const batch = this.queue.slice(0, MAX_AUDIT_EVENTS);
      try {
        c.send({ t: 'audit', events: batch });
      } catch {
        return; // closed meanwhile: keep them for the next connection
      }
      this.queue.splice(0, batch.length);
    }
  }
}

/** What a node knows of its tailnet: the full map, then every delta applied. */
export class NetmapView {
  self: SelfInfo | undefined;
  readonly peers = new Map<number, PeerInfo>();
  relays: RelayMap = { regions: [] };
  readonly filterState = new FilterState();
  seq = 0;
  /** The `ssh` rules for this node's built-in SSH server (empty unless it asked for them). */
  ssh: SshPolicyRule[] = [];

  /** The inbound packet filter, materialized from rules and source sets. */
  get filter(): PacketFilter {
    return this.filterState.filter;
  }

  /** Applies a map message; throws ControlError when a delta arrives out of order. */
  apply(m: MapResponse): void {
    if (!m.full && m.seq !== this.seq + 1) throw new ControlError('CONTROL_MAP_SEQ', `map delta ${m.seq} after ${this.seq}`);
    this.seq = m.seq;
    if (m.full) {
      this.peers.clear();
      for (const p of m.peers ?? []) this.peers.set(p.id, p);
    }
    if (m.self) this.self = m.self;
    if (m.relays) this.relays = m.relays;
    if (m.ssh) this.ssh = m.ssh;
    else if (m.full) this.ssh = [];
    this.filterState.apply(m);
    for (const p of m.peersChanged ?? []) this.peers.set(p.id, p);
    for (const id of m.peersRemoved ?? []) this.peers.delete(id);
    for (const patch of m.peersPatch ?? []) {
      const p = this.peers.get(patch.id);
      if (p) this.peers.set(patch.id, { ...p, ...patch });
    }
  }

  peerByName(name: string): PeerInfo | undefined {
    for (const p of this.peers.values()) if (p.name === name) return p;
    return undefined;
  }
}
