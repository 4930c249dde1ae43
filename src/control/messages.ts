/**
 * The control protocol's messages: JSON objects carried over the Noise channel (see
 * docs/protocol.md). Every message has a `t` (type) field. This file holds the types shared by
 * the server (gateway/src/control) and the client (src/control/client.ts), and strict
 * validators for everything a peer sends: a bad message is a typed ControlError, never a crash.
 *
 *   node → control   register, map, update, logout, keepalive, audit
 *   control → node   register (ok | needs-login), map (full, then deltas), keepalive, error
 */
import { PierceError } from '../errors.ts';
import type { FilterRuleRef, SetPatch } from './filter-sets.ts';

/** Protocol version spoken by this code; sent in the Noise handshake payload. */
export const CONTROL_PROTOCOL_VERSION = 1;
/** WebSocket subprotocol of the control channel. */
export const CONTROL_SUBPROTOCOL = 'pierce-control';
/** Noise prologue: binds the handshake to this protocol and version. */
export const CONTROL_PROLOGUE = 'Pierce control protocol v1';
/** Server keepalive period on an idle map stream (ms). The client gives up after 3 periods. */
export const KEEPALIVE_INTERVAL_MS = 30_000;

export class ControlError extends PierceError {}

// ---- shared shapes ----

export interface RelayNode {
  /** Base URL of the relay, e.g. https://relay1.example.com or http://127.0.0.1:8443. */
  url: string;
  /** STUN host:port, when the relay answers STUN. */
  stun?: string;
}
export interface RelayRegion {
  id: number;
  code: string;
  name: string;
  nodes: RelayNode[];
}
export interface RelayMap {
  regions: RelayRegion[];
}

/** A mesh peer as a node sees it. */
export interface PeerInfo {
  id: number;
  name: string;
  /** Login name of the owner; absent for tagged nodes (they have no user identity). */
  user?: string;
  tags: string[];
  nodeKey: string;
  discoKey: string;
  /** Tailnet addresses as host prefixes: "100.64.0.1/32", "fd7a:115c:a1e0::6440:1/128". */
  addrs: string[];
  endpoints: string[];
  /** Home relay region id; 0 when unknown. */
  homeRelay: number;
  online: boolean;
  /** Milliseconds since the epoch of the last disconnect; null while online or never seen. */
  lastSeen: number | null;
  /** Milliseconds since the epoch; null when the key does not expire. */
  keyExpiry: number | null;
}

/** A partial update of one peer (fan-out of reports and presence). */
export interface PeerPatch {
  id: number;
  endpoints?: string[];
  homeRelay?: number;
  discoKey?: string;
  online?: boolean;
  lastSeen?: number | null;
}

/** This node as control knows it. */
export interface SelfInfo extends PeerInfo {
  ephemeral: boolean;
  machineKey: string;
}

// ---- node → control ----

export interface RegisterRequest {
  t: 'register';
  nodeKey: string;
  /** The current key when renewing it (re-registration with a new node key). */
  oldNodeKey?: string;
  authKey?: string;
  hostname: string;
  /** Tags this node asks for (need the policy's tagOwners, or a pre-tagged auth key). */
  tags?: string[];
  ephemeral?: boolean;
}
export interface MapRequest {
  t: 'map';
  discoKey: string;
  endpoints: string[];
  homeRelay: number;
  /** false: one full map, then control closes the stream. */
  stream: boolean;
  /** The node runs the built-in SSH server (`pierce up --ssh`): control sends it `ssh` rules. */
  sshServer?: boolean;
}
export interface UpdateRequest {
  t: 'update';
  endpoints?: string[];
  homeRelay?: number;
  discoKey?: string;
}
export interface LogoutRequest {
  t: 'logout';
}
export interface Keepalive {
  t: 'keepalive';
}
/** An SSH session event a node reports for control's audit log. */
export interface AuditEvent {
  kind: 'ssh';
  action: 'accept' | 'reject' | 'end';
  /** Milliseconds since the epoch, on the node's clock. */
  at: number;
  /** The node's id for the session (ties accept and end together). */
  session: string;
  /** Tailnet address (and port) the connection came from. */
  srcAddr: string;
  /** Name of the peer node, when known. */
  srcNode?: string;
  sshUser: string;
  localUser?: string;
  reason?: string;
  exitStatus?: number;
  durationMs?: number;
}
/** Audit events from a node (at most MAX_AUDIT_EVENTS per message). */
export interface AuditRequest {
  t: 'audit';
  events: AuditEvent[];
}
export const MAX_AUDIT_EVENTS = 32;
export type ClientMessage = RegisterRequest | MapRequest | UpdateRequest | LogoutRequest | Keepalive | AuditRequest;

// ---- control → node ----

export type RegisterResponse =
  | { t: 'register'; status: 'ok'; node: SelfInfo; user: string | null }
  | { t: 'register'; status: 'needs-login'; loginUrl: string; id: string };

export interface MapResponse {
  t: 'map';
  /** Increases by one per map message on a stream. */
  seq: number;
  /** true: self, peers, relays and filter are complete; otherwise a delta. */
  full?: boolean;
  self?: SelfInfo;
  peers?: PeerInfo[];
  peersChanged?: PeerInfo[];
  peersRemoved?: number[];
  peersPatch?: PeerPatch[];
  relays?: RelayMap;
  /** The inbound packet filter's rules (sources by set id); in full maps and when they change. */
  filter?: FilterRuleRef[];
  /** Full contents of source sets this node did not have (src/control/filter-sets.ts). */
  sets?: Record<string, string[]>;
  /** Members that joined or left source sets the node has. */
  setsPatch?: SetPatch[];
  /** For a node with the built-in SSH server: the policy's `ssh` rules that reach it, complete
   * whenever present (in full maps and when they change). */
  ssh?: SshPolicyRule[];
}

/** One `ssh` rule as a node enforces it: tailnet addresses that may log in, as which users. */
export interface SshPolicyRule {
  action: 'accept' | 'check';
  /** Source nodes' tailnet IPs ("100.64.0.3", "fd7a:115c:a1e0::3"). */
  principals: string[];
  /** "root", "autogroup:nonroot", "localpart:*@domain" or login names. */
  users: string[];
  /** Environment variable names (with * wildcards) the client may set. */
  acceptEnv?: string[];
  /** The rule's index in the policy's `ssh` section (for audit lines). */
  rule: number;
}
export interface ErrorMessage {
  t: 'error';
  code: string;
  message: string;
}
export type ServerMessage = RegisterResponse | MapResponse | Keepalive | ErrorMessage;

/** Handshake payload sent by the node inside the Noise initiation. */
export interface HelloPayload {
  v: number;
}

// ---- validation of what a node sends ----

const MAX_ENDPOINTS = 64;
const MAX_TAGS = 32;

function fail(msg: string): never {
  throw new ControlError('CONTROL_BAD_MESSAGE', msg);
}

function str(o: Record<string, unknown>, k: string, max = 256): string {
  const v = o[k];
  if (typeof v !== 'string' || v.length === 0 || v.length > max) fail(`"${k}" must be a non-empty string of at most ${max} characters`);
  return v;
}
function optStr(o: Record<string, unknown>, k: string, max = 256): string | undefined {
  return o[k] === undefined ? undefined : str(o, k, max);
}
function optBool(o: Record<string, unknown>, k: string): boolean | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') fail(`"${k}" must be a boolean`);
  return v;
}
function optInt(o: Record<string, unknown>, k: string, max: number): number | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) fail(`"${k}" must be an integer 0..${max}`);
  return v;
}
function strList(o: Record<string, unknown>, k: string, maxItems: number, maxLen: number): string[] | undefined {
  const v = o[k];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length > maxItems) fail(`"${k}" must be a list of at most ${maxItems} strings`);
  for (const s of v) if (typeof s !== 'string' || s.length === 0 || s.length > maxLen) fail(`"${k}" must hold non-empty strings`);
  return v as string[];
}

/** Checks an endpoint "ip:port" / "[ip6]:port" string (syntax only). */
export function isEndpoint(s: string): boolean {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s) ?? /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(s);
  if (!m) return false;
  const port = Number(m[2]);
  return port > 0 && port <= 65535;
}

function endpoints(o: Record<string, unknown>): string[] | undefined {
  const e = strList(o, 'endpoints', MAX_ENDPOINTS, 64);
  if (e) for (const s of e) if (!isEndpoint(s)) fail(`endpoint "${s}" is not IP:PORT`);
  return e;
}

const AUDIT_ACTIONS = new Set(['accept', 'reject', 'end']);
const AUDIT_FIELDS = new Set(['kind', 'action', 'at', 'session', 'srcAddr', 'srcNode', 'sshUser', 'localUser', 'reason', 'exitStatus', 'durationMs']);

function auditEvent(v: unknown): AuditEvent {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('audit events must be objects');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!AUDIT_FIELDS.has(k)) fail(`unknown audit event field ${JSON.stringify(k).slice(0, 40)}`);
  if (o['kind'] !== 'ssh') fail('audit event "kind" must be "ssh"');
  if (typeof o['action'] !== 'string' || !AUDIT_ACTIONS.has(o['action'])) fail('audit event "action" must be accept, reject or end');
  const at = o['at'];
  if (typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0) fail('audit event "at" must be milliseconds since the epoch');
  const e: AuditEvent = { kind: 'ssh', action: o['action'] as AuditEvent['action'], at, session: str(o, 'session'), srcAddr: str(o, 'srcAddr'), sshUser: str(o, 'sshUser') };
  const srcNode = optStr(o, 'srcNode');
  if (srcNode !== undefined) e.srcNode = srcNode;
  const localUser = optStr(o, 'localUser');
  if (localUser !== undefined) e.localUser = localUser;
  const reason = optStr(o, 'reason');
  if (reason !== undefined) e.reason = reason;
  const exit = optInt(o, 'exitStatus', 255);
  if (exit !== undefined) e.exitStatus = exit;
  const dur = optInt(o, 'durationMs', Number.MAX_SAFE_INTEGER);
  if (dur !== undefined) e.durationMs = dur;
  return e;
}

/** Parses and validates a message from a node. Throws ControlError CONTROL_BAD_MESSAGE. */
export function parseClientMessage(v: unknown): ClientMessage {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('message must be a JSON object');
  const o = v as Record<string, unknown>;
  switch (o['t']) {
    case 'register': {
      const m: RegisterRequest = { t: 'register', nodeKey: str(o, 'nodeKey', 80), hostname: str(o, 'hostname', 253) };
      const old = optStr(o, 'oldNodeKey', 80);
      if (old !== undefined) m.oldNodeKey = old;
      const ak = optStr(o, 'authKey', 200);
      if (ak !== undefined) m.authKey = ak;
      const tags = strList(o, 'tags', MAX_TAGS, 100);
      if (tags) m.tags = tags;
      const eph = optBool(o, 'ephemeral');
      if (eph !== undefined) m.ephemeral = eph;
      return m;
    }
    case 'map':
      return {
        t: 'map',
        discoKey: str(o, 'discoKey', 80),
        endpoints: endpoints(o) ?? [],
        homeRelay: optInt(o, 'homeRelay', 65535) ?? 0,
        stream: optBool(o, 'stream') ?? true,
        ...(optBool(o, 'sshServer') ? { sshServer: true } : {}),
      };
    case 'update': {
      const m: UpdateRequest = { t: 'update' };
      const e = endpoints(o);
      if (e) m.endpoints = e;
      const h = optInt(o, 'homeRelay', 65535);
      if (h !== undefined) m.homeRelay = h;
      const d = optStr(o, 'discoKey', 80);
      if (d !== undefined) m.discoKey = d;
      return m;
    }
    case 'logout':
      return { t: 'logout' };
    case 'keepalive':
      return { t: 'keepalive' };
    case 'audit': {
      const ev = o['events'];
      if (!Array.isArray(ev) || ev.length === 0 || ev.length > MAX_AUDIT_EVENTS) fail(`"events" must be a list of 1..${MAX_AUDIT_EVENTS} audit events`);
      return { t: 'audit', events: ev.map(auditEvent) };
    }
    default:
      return fail(`unknown message type ${JSON.stringify(o['t'])?.slice(0, 40)}`);
  }
}

/**
 * Parses a message from control. Control is authenticated by the Noise handshake, so this
 * checks shape only (type tag and the fields the client reads), not every value.
 */
export function parseServerMessage(v: unknown): ServerMessage {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('message must be a JSON object');
  const o = v as Record<string, unknown>;
  switch (o['t']) {
    case 'register':
      if (o['status'] !== 'ok' && o['status'] !== 'needs-login') fail('bad register status');
      return o as unknown as RegisterResponse;
    case 'map':
      if (typeof o['seq'] !== 'number') fail('map without seq');
      return o as unknown as MapResponse;
    case 'keepalive':
      return { t: 'keepalive' };
    case 'error':
      return { t: 'error', code: String(o['code']), message: String(o['message']) };
    default:
      return fail(`unknown message type ${JSON.stringify(o['t'])?.slice(0, 40)}`);
  }
}

/** Normalises a hostname into a DNS label: lower case, [a-z0-9-], at most 63 characters. */
export function sanitizeHostname(h: string): string {
  const s = h
    .toLowerCase()
    .split('.')[0]!
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return s || 'node';
}
