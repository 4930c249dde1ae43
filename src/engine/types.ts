/**
 * What the engine needs from its platform, injected (DESIGN.md): time, sockets and HTTP. The
 * browser worker and the Node daemon (gateway/src/node) each provide one set.
 */
import type { CryptoBackend, RandomSource } from '../crypto/backend.ts';
import type { DiscoPrivate, MachinePrivate, MachinePublic, NodePrivate, NodePublic } from '../key/keys.ts';
import type { WebSocketCtor } from '../control/client.ts';
import type { RelayNode } from '../control/messages.ts';

export type TimerHandle = unknown;

export interface Clock {
  /** Monotonic milliseconds. */
  now(): number;
  /** Milliseconds since the Unix epoch. */
  wall(): number;
  /** Runs `fn` after `ms` (≤ 0: as soon as the current work is done). */
  setTimer(fn: () => void, ms: number): TimerHandle;
  clearTimer(h: TimerHandle): void;
}

/** A reconnecting connection to one relay. */
export interface RelayConn {
  readonly connected: boolean;
  send(dst: NodePublic, packet: Uint8Array): boolean;
  /** Tells the relay whether this is our home relay (statistics only, as in DERP). */
  notePreferred(home: boolean): void;
  close(): void;
}

export interface RelayHandlers {
  packet(src: NodePublic, data: Uint8Array): void;
  /** Connected (handshake done) or lost (a reconnect follows). */
  state(connected: boolean): void;
}

export interface EngineTransports {
  WebSocket: WebSocketCtor;
  /** GET {controlUrl}/key. */
  fetchServerKey(controlUrl: string): Promise<MachinePublic>;
  /** Opens a reconnecting DERP connection to a relay node with our node key. */
  relay(node: RelayNode, key: NodePrivate, h: RelayHandlers): RelayConn;
  /** Round-trip time of `HEAD {url}/derp/probe` in ms (warmed up); rejects when unreachable. */
  probe(node: RelayNode): Promise<number>;
}

export interface EngineKeys {
  machine: MachinePrivate;
  node: NodePrivate;
  disco: DiscoPrivate;
}

export type LogFn = (level: 'debug' | 'info' | 'warn', message: string) => void;

export type EngineState = 'starting' | 'needs-login' | 'running' | 'expired' | 'stopped';

export interface EngineEvents {
  /** Interactive registration: show this URL to a person. */
  login(url: string): void;
  /** The control server's key, fetched on first use: persist it to pin it. */
  serverKey(key: MachinePublic): void;
  /** State changes (running, needs-login, …). */
  state(s: EngineState): void;
  /** A map message was applied. */
  netmap(): void;
}

export interface EngineOptions {
  controlUrl: string;
  hostname: string;
  authKey?: string;
  tags?: string[];
  ephemeral?: boolean;
  keys: EngineKeys;
  /** The pinned control key, when known. */
  serverKey?: MachinePublic;
  backend: CryptoBackend;
  random: RandomSource;
  clock: Clock;
  transports: EngineTransports;
  log?: LogFn;
  events?: Partial<EngineEvents>;
  /** Tailnet MTU (default 1280: a WireGuard packet then fits any path, DERP included). */
  mtu?: number;
}

/** A snapshot of everything `pierce status` shows. */
export interface EngineStatus {
  state: EngineState;
  controlConnected: boolean;
  loginUrl?: string;
  self?: { id: number; name: string; addrs: string[]; user?: string; tags: string[]; keyExpiry: number | null };
  homeRelay: number;
  relays: { region: number; code: string; url: string; connected: boolean; latencyMs: number | null; home: boolean }[];
  peers: {
    id: number;
    name: string;
    addrs: string[];
    user?: string;
    tags: string[];
    online: boolean;
    lastSeen: number | null;
    path: string;
    relayRegion: number;
    rxBytes: number;
    txBytes: number;
    lastHandshake: number | null;
  }[];
  dropped: Record<string, number>;
}
