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

/** One bound UDP socket (IPv4 and, where the platform can, IPv6 on the same port). */
export interface UdpSocket {
  readonly port: number;
  send(ip: string, port: number, data: Uint8Array): void;
  close(): void;
}

export interface PortMapping {
  ip: string;
  port: number;
  /** 'pmp' | 'pcp' | 'upnp' */
  protocol: string;
}

/**
 * Native UDP (the Node daemon; the browser gets it through leased sockets). Without it the
 * node is relay-only.
 */
export interface UdpTransport {
  /** Binds a socket on `port` (0: any free port). */
  bind(port: number, onPacket: (data: Uint8Array, ip: string, port: number) => void): Promise<UdpSocket>;
  /** This host's interface addresses worth advertising (no loopback, no link-local). */
  localAddresses(): string[];
  /** Keeps a port mapping (NAT-PMP, PCP, UPnP) for `localPort`, reporting changes; optional. */
  portMap?(localPort: number, onChange: (m: PortMapping | null) => void): { close(): void };
}

export interface EngineTransports {
  WebSocket: WebSocketCtor;
  /** GET {controlUrl}/key. */
  fetchServerKey(controlUrl: string): Promise<MachinePublic>;
  /** Opens a reconnecting DERP connection to a relay node with our node key. */
  relay(node: RelayNode, key: NodePrivate, h: RelayHandlers): RelayConn;
  /** Round-trip time of `HEAD {url}/derp/probe` in ms (warmed up); rejects when unreachable. */
  probe(node: RelayNode): Promise<number>;
  /** Direct paths need native UDP; absent: relay only. */
  udp?: UdpTransport;
}

/** NAT traversal knobs (`pierce up` flags). */
export interface DirectOptions {
  /** Local UDP port (0: any; default 0). */
  port?: number;
  /** Extra endpoints to advertise ("ip:port"), e.g. a router's static port forward. */
  endpoints?: string[];
  /** Birthday probing: probes per second from the easy side (default 100). */
  birthdayRate?: number;
  /** Sockets the hard side opens (default 256). */
  birthdaySockets?: number;
  /** How long a birthday attempt lasts, seconds (default 30). */
  birthdaySeconds?: number;
  /** Also try when both NATs are hard (default false: the relay is used). */
  birthdayHardHard?: boolean;
  /** No direct paths at all (relay only). */
  disable?: boolean;
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
  /** Asks control for the policy's `ssh` rules (the node runs the built-in SSH server). */
  sshServer?: boolean;
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
  direct?: DirectOptions;
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
    /** The path is a proven direct UDP path. */
    direct: boolean;
    /** Round trip on the direct path (ms), when direct. */
    directRttMs: number | null;
    /** UDP candidates known for the peer. */
    candidates: string[];
    relayRegion: number;
    rxBytes: number;
    txBytes: number;
    lastHandshake: number | null;
  }[];
  dropped: Record<string, number>;
  /** NAT traversal: our endpoints, NAT kind and port mapping; absent on relay-only nodes. */
  direct?: {
    port: number;
    endpoints: string[];
    /** Mapping varies by destination (a "hard" NAT), from STUN against two servers; null: unknown. */
    hardNat: boolean | null;
    portMapping: string | null;
    birthday: { attempts: number; successes: number; probesSent: number };
  };
}
