/**
 * The sealed JSON messages of the DERP handshake (derp_client.go `sendClientKey`,
 * `parseServerInfo`; derpserver.go `recvClientKey`, `sendServerInfo`; types/key/node.go
 * `SealTo` / `OpenFrom`).
 *
 *   server → client  ServerKey   magic | server key
 *   client → server  ClientInfo  client key(32) | nonce(24) | box_{client→server}(ClientInfo JSON)
 *   server → client  ServerInfo  nonce(24) | box_{server→client}(ServerInfo JSON)
 *
 * The box is NaCl crypto_box (X25519 + XSalsa20-Poly1305) with a random nonce; only the holder of
 * the server's private key can open the ClientInfo, and only a client that holds the private key
 * of the key it announced can open the ServerInfo, which is how each side proves its key.
 *
 * JSON field names and omission rules follow Go's structs exactly, so the bytes match
 * `json.Marshal` for the same values:
 *   ClientInfo  {"meshKey":"<64 hex>"?, "version":2, "CanAckPings":bool, "IsProber":true?, "AppName":"…"?}
 *   ServerInfo  {"version":2, "TokenBucketBytesPerSecond":n?, "TokenBucketBytesBurst":n?}
 * On input, names match case-insensitively (as Go's decoder does) and unknown fields are ignored.
 */
import { boxOpen, boxSeal, BOX_OVERHEAD, type X25519 } from '../crypto/box.ts';
import type { RandomSource } from '../crypto/backend.ts';
import { concatBytes, fromHex, toHex } from '../crypto/bytes.ts';
import { NodePublic, type NodePrivate } from '../key/keys.ts';
import { DerpError } from './errors.ts';
import { KEY_LEN, MAX_CLIENT_INFO_LEN, MAX_INFO_LEN, NONCE_LEN, PROTOCOL_VERSION } from './frames.ts';

export const MESH_KEY_LEN = 32;

export interface ClientInfo {
  /** DERP protocol version the client speaks; 2. */
  version: number;
  /** Pre-shared mesh key (32 bytes) for trusted clients: mesh peers and watchers. */
  meshKey?: Uint8Array;
  /** The client answers the server's Ping frames with Pong. */
  canAckPings: boolean;
  isProber?: boolean;
  /** Opaque app name for the server's stats. */
  appName?: string;
}

export interface ServerInfo {
  /** Protocol version the server announced (0 when omitted). */
  version: number;
  /** Bytes per second the server accepts from this client, framing included; 0 = unspecified. */
  tokenBucketBytesPerSecond?: number;
  /** Burst allowance for the token bucket, in bytes. */
  tokenBucketBytesBurst?: number;
}

const utf8 = new TextEncoder();

function seal(ourPriv: NodePrivate, theirPub: NodePublic, msg: Uint8Array, random: RandomSource, dh?: X25519): Uint8Array {
  const nonce = random(NONCE_LEN);
  if (nonce.length !== NONCE_LEN) throw new DerpError('DERP_BAD_FRAME', 'random source returned the wrong length');
  return concatBytes(nonce, boxSeal(msg, nonce, theirPub.rawView(), ourPriv.rawView(), dh));
}

/** Opens nonce(24) || box; DERP_BAD_BOX for every failure, including a low-order peer key. */
function open(ourPriv: NodePrivate, theirPub: NodePublic, sealed: Uint8Array, what: string, dh?: X25519): Uint8Array {
  if (sealed.length < NONCE_LEN + BOX_OVERHEAD) throw new DerpError('DERP_BAD_FRAME', `${what} is too short to hold a sealed message`);
  let msg: Uint8Array | null;
  try {
    msg = boxOpen(sealed.subarray(NONCE_LEN), sealed.subarray(0, NONCE_LEN), theirPub.rawView(), ourPriv.rawView(), dh);
  } catch (e) {
    throw new DerpError('DERP_BAD_BOX', `${what}: cannot open the box from ${theirPub.short()}`, { cause: e });
  }
  if (!msg) throw new DerpError('DERP_BAD_BOX', `${what}: the box from ${theirPub.short()} does not open (wrong key or corrupted)`);
  return msg;
}

function parseObject(msg: Uint8Array, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(msg));
  } catch (e) {
    throw new DerpError('DERP_BAD_JSON', `${what} is not valid JSON`, { cause: e });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DerpError('DERP_BAD_JSON', `${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

/** A field by Go's rule: the exact name first, else a case-insensitive match; null = absent. */
function field(obj: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(obj, name)) return obj[name] ?? undefined;
  const lower = name.toLowerCase();
  for (const k of Object.keys(obj)) if (k.toLowerCase() === lower) return obj[k] ?? undefined;
  return undefined;
}

function intField(obj: Record<string, unknown>, name: string, what: string): number | undefined {
  const v = field(obj, name);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new DerpError('DERP_BAD_JSON', `${what}.${name} is not an integer`);
  return v;
}

function boolField(obj: Record<string, unknown>, name: string, what: string): boolean | undefined {
  const v = field(obj, name);
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new DerpError('DERP_BAD_JSON', `${what}.${name} is not a boolean`);
  return v;
}

/** ClientInfo JSON exactly as Go's json.Marshal writes it (field order and omissions). */
export function clientInfoJSON(info: Partial<ClientInfo>): string {
  const parts: string[] = [];
  if (info.meshKey !== undefined) {
    if (info.meshKey.length !== MESH_KEY_LEN) throw new DerpError('DERP_BAD_JSON', `mesh key must be ${MESH_KEY_LEN} bytes`);
    parts.push(`"meshKey":"${toHex(info.meshKey)}"`);
  }
  const version = info.version ?? PROTOCOL_VERSION;
  if (version !== 0) parts.push(`"version":${version}`);
  parts.push(`"CanAckPings":${info.canAckPings === true}`);
  if (info.isProber) parts.push(`"IsProber":true`);
  if (info.appName) parts.push(`"AppName":${JSON.stringify(info.appName)}`);
  return `{${parts.join(',')}}`;
}

/** ServerInfo JSON exactly as Go's json.Marshal writes it. */
export function serverInfoJSON(info: Partial<ServerInfo>): string {
  const parts: string[] = [];
  const version = info.version ?? PROTOCOL_VERSION;
  if (version !== 0) parts.push(`"version":${version}`);
  if (info.tokenBucketBytesPerSecond) parts.push(`"TokenBucketBytesPerSecond":${info.tokenBucketBytesPerSecond}`);
  if (info.tokenBucketBytesBurst) parts.push(`"TokenBucketBytesBurst":${info.tokenBucketBytesBurst}`);
  return `{${parts.join(',')}}`;
}

/**
 * Client side: the ClientInfo frame payload, client key(32) | nonce(24) | box(JSON), sealed from
 * `clientPriv` to `serverPub`. `version` defaults to 2.
 */
export function sealClientInfo(
  clientPriv: NodePrivate,
  serverPub: NodePublic,
  info: Partial<ClientInfo>,
  random: RandomSource,
): Uint8Array {
  const json = utf8.encode(clientInfoJSON(info));
  return concatBytes(clientPriv.public().rawView(), seal(clientPriv, serverPub, json, random));
}

/**
 * Server side: opens a ClientInfo payload. Bounds its size first (`maxBytes`, default 256 KiB as
 * Go's server), then authenticates the box against the key the client announced, then parses
 * the JSON. Requires version 2 (this implementation sends v2 RecvPacket frames only).
 */
export function openClientInfo(
  serverPriv: NodePrivate,
  payload: Uint8Array,
  maxBytes: number = MAX_CLIENT_INFO_LEN,
  dh?: X25519,
): { clientKey: NodePublic; info: ClientInfo } {
  if (payload.length > maxBytes) throw new DerpError('DERP_INFO_TOO_LARGE', `ClientInfo of ${payload.length} bytes is over ${maxBytes}`);
  if (payload.length < KEY_LEN + NONCE_LEN + BOX_OVERHEAD) throw new DerpError('DERP_BAD_FRAME', `ClientInfo of ${payload.length} bytes is too short`);
  const clientKey = NodePublic.fromRaw(payload.subarray(0, KEY_LEN));
  const obj = parseObject(open(serverPriv, clientKey, payload.subarray(KEY_LEN), 'ClientInfo', dh), 'ClientInfo');
  const what = 'ClientInfo';
  const version = intField(obj, 'version', what) ?? 0;
  const info: ClientInfo = { version, canAckPings: boolField(obj, 'CanAckPings', what) ?? false };
  const mk = field(obj, 'meshKey');
  if (mk !== undefined) {
    const raw = typeof mk === 'string' && mk.length === 2 * MESH_KEY_LEN ? fromHex(mk) : null;
    if (!raw) throw new DerpError('DERP_BAD_JSON', `ClientInfo.meshKey is not ${2 * MESH_KEY_LEN} hex digits`);
    info.meshKey = raw;
  }
  const prober = boolField(obj, 'IsProber', what);
  if (prober !== undefined) info.isProber = prober;
  const app = field(obj, 'AppName');
  if (app !== undefined) {
    if (typeof app !== 'string') throw new DerpError('DERP_BAD_JSON', 'ClientInfo.AppName is not a string');
    info.appName = app;
  }
  if (version !== PROTOCOL_VERSION) {
    throw new DerpError('DERP_BAD_VERSION', `client speaks DERP version ${version}, this server speaks ${PROTOCOL_VERSION}`);
  }
  return { clientKey, info };
}

/** Server side: the ServerInfo frame payload, nonce(24) | box(JSON), sealed to the client. */
export function sealServerInfo(
  serverPriv: NodePrivate,
  clientPub: NodePublic,
  info: Partial<ServerInfo>,
  random: RandomSource,
  dh?: X25519,
): Uint8Array {
  return seal(serverPriv, clientPub, utf8.encode(serverInfoJSON(info)), random, dh);
}

/**
 * Client side: opens a ServerInfo payload from `serverPub`. Like Go's client it does not insist
 * on a version (servers always send 2), but token bucket values must be non-negative integers.
 */
export function openServerInfo(clientPriv: NodePrivate, serverPub: NodePublic, payload: Uint8Array): ServerInfo {
  if (payload.length > NONCE_LEN + MAX_INFO_LEN) throw new DerpError('DERP_INFO_TOO_LARGE', `ServerInfo of ${payload.length} bytes is too long`);
  const what = 'ServerInfo';
  const obj = parseObject(open(clientPriv, serverPub, payload, what), what);
  const info: ServerInfo = { version: intField(obj, 'version', what) ?? 0 };
  const rate = intField(obj, 'TokenBucketBytesPerSecond', what);
  const burst = intField(obj, 'TokenBucketBytesBurst', what);
  if ((rate ?? 0) < 0 || (burst ?? 0) < 0) throw new DerpError('DERP_BAD_JSON', 'ServerInfo token bucket values must not be negative');
  if (rate) info.tokenBucketBytesPerSecond = rate;
  if (burst) info.tokenBucketBytesBurst = burst;
  return info;
}
