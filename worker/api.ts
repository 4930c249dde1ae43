/**
 * The worker's API, as the page sees it through comlink (types only: shared by worker/ and
 * src/ui/). The page holds a proxy, never engine state. Terminal bytes do not go through these
 * calls: each SSH session gets a MessagePort (see `SshPortMessage`), and data crosses it as
 * transferred ArrayBuffers.
 */
import type { EngineStatus } from '../src/engine/types.ts';

/** A failure the UI shows as a banner: a stable code and a sentence for a person. */
export interface ApiError {
  code: ErrorCode;
  message: string;
  /** HOST_KEY_MISMATCH: the remembered and the offered fingerprints. */
  expected?: string;
  got?: string;
}

export type ErrorCode =
  /** join: bad input, or the control server is unreachable / refused us. */
  | 'JOIN_FAILED'
  | 'NOT_JOINED'
  | 'ALREADY_JOINED'
  /** The peer is not in the netmap: it does not exist, or the policy hides it. */
  | 'PEER_NOT_FOUND'
  | 'PEER_OFFLINE'
  /** The peer answered the SYN with ICMP "administratively prohibited": its policy denies us. */
  | 'POLICY_DENIED'
  /** RST: nothing listens on that port. */
  | 'CONNECTION_REFUSED'
  | 'HOST_UNREACHABLE'
  | 'CONNECT_TIMEOUT'
  | 'PING_TIMEOUT'
  | 'AUTH_FAILED'
  | 'HOST_KEY_MISMATCH'
  | 'SSH_TIMEOUT'
  | 'SSH_ERROR'
  | 'CONNECTION_LOST'
  /** A control error (AUTH_KEY_INVALID, NODE_KEY_EXPIRED, …) is passed through with its own code. */
  | (string & {});

export type Result<T> = { ok: true; value: T } | { ok: false; error: ApiError };

export interface JoinOptions {
  controlUrl: string;
  /** Without one: interactive login (status().loginUrl, and the `login` notice). */
  authKey?: string;
  hostname?: string;
  /** Keys, known hosts and SSH key in memory only; the node goes away when the tab does. */
  ephemeral?: boolean;
  /** Lease UDP sockets from the home relay's gateway for direct paths (default true). */
  leases?: boolean;
}

/** status(): the engine snapshot plus the worker's own state. Before join, state is 'stopped'. */
export interface WorkerStatus extends EngineStatus {
  joined: boolean;
  ephemeral: boolean;
  controlUrl?: string;
  /** The last control error (e.g. AUTH_KEY_INVALID), if the engine is stuck on it. */
  lastError?: { code: string; message: string };
  /** UDP lease: available in this build, and its WebSocket is up. */
  lease: { enabled: boolean; connected: boolean };
  /** A saved (non-ephemeral) session the worker can rejoin with `rejoin()`. */
  saved?: { controlUrl: string; hostname: string };
}

export interface PingOutcome {
  peer: string;
  ip: string;
  path: string;
  ms: number;
  direct: boolean;
}

export type SshAuth = { kind: 'password'; password: string } | { kind: 'publickey' } | { kind: 'keyboard-interactive'; responses?: string[] };

export interface SshConnectOptions {
  /** Peer name or tailnet IP. */
  host: string;
  port?: number;
  username: string;
  auth: SshAuth;
  cols: number;
  rows: number;
  term?: string;
}

export interface HostKeyNotice {
  /** 'new': first use, now remembered; 'match': as remembered. */
  status: 'new' | 'match';
  fingerprint: string;
  /** The known-hosts entry: `name`, or `[name]:port` when the port is not 22. */
  host: string;
}

export interface KnownHostEntry {
  host: string;
  fingerprint: string;
}

/** Worker → page on a session's port. */
export type SshPortMessage =
  | { t: 'state'; state: 'connecting' | 'open' | 'closed' }
  | { t: 'hostkey'; notice: HostKeyNotice }
  | { t: 'banner'; text: string }
  /** keyboard-interactive: answer with { t: 'kbd', responses } */
  | { t: 'kbd'; name: string; instruction: string; prompts: { prompt: string; echo: boolean }[] }
  /** Terminal output, batched; acknowledge with { t: 'ack', bytes } once drawn. */
  | { t: 'data'; buf: ArrayBuffer }
  | { t: 'exit'; exitStatus?: number; exitSignal?: string; error?: ApiError }
  | { t: 'error'; error: ApiError };

/** Page → worker on a session's port. */
export type SshPageMessage =
  | { t: 'data'; buf: ArrayBuffer }
  | { t: 'ack'; bytes: number }
  | { t: 'resize'; cols: number; rows: number }
  | { t: 'kbd'; responses: string[] }
  | { t: 'close' };

export interface PierceApi {
  join(o: JoinOptions): Promise<Result<WorkerStatus>>;
  /** Rejoins the saved normal session with its keys (no auth key needed). */
  rejoin(): Promise<Result<WorkerStatus>>;
  status(): Promise<WorkerStatus>;
  /** `cb` (a comlink.proxy) gets the status on netmap and state changes, at most ~4 times a second. */
  subscribe(cb: (s: WorkerStatus) => void): Promise<void>;
  ping(peer: string, timeoutMs?: number): Promise<Result<PingOutcome>>;
  /**
   * Opens an SSH shell; `port` carries the session (SshPortMessage / SshPageMessage). Resolves
   * when the shell is open (with the host key notice) or failed.
   */
  sshConnect(o: SshConnectOptions, port: MessagePort): Promise<Result<{ hostKey: HostKeyNotice }>>;
  /** The browser's ed25519 SSH key as an authorized_keys line. */
  publicKeyLine(): Promise<string>;
  knownHosts(): Promise<KnownHostEntry[]>;
  forgetHost(host: string): Promise<void>;
  /** Logs out at control (normal sessions forget their node key) and stops. */
  leave(): Promise<void>;
}
