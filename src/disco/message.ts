/**
 * Disco messages (Tailscale's `disco` package, `disco/disco.go`): the path-discovery pings,
 * pongs and call-me-maybes that peers exchange over DERP and direct UDP. Pure: no I/O, no clock,
 * no randomness (callers pass nonces and transaction IDs); runs in browsers and Node.
 *
 *   Outer packet (what goes on the wire, over UDP or inside a DERP packet frame)
 *     ┌──────────────┬────────────────────────┬──────────────┬─────────────────────────────┐
 *     │ magic (6)    │ sender disco key (32)  │ nonce (24)   │ NaCl box of the inner       │
 *     │ 54 53 f0 9f  │ X25519 public key      │ random       │ message: tag (16) ‖         │
 *     │ 92 ac "TS💬" │                        │              │ XSalsa20 ciphertext         │
 *     └──────────────┴────────────────────────┴──────────────┴─────────────────────────────┘
 *     offset 0       6                        38             62
 *   The box key is crypto_box_beforenm(receiver disco public, sender disco private), the same
 *   from both ends; the box is Go's x/crypto/nacl/box output (no 16 leading zero bytes).
 *
 *   Inner message (the box plaintext)
 *     ┌──────────┬─────────────┬──────────────────────────────────────────────────────────┐
 *     │ type (1) │ version (1) │ payload; receivers ignore bytes past what they know      │
 *     └──────────┴─────────────┴──────────────────────────────────────────────────────────┘
 *     0x01 Ping          TxID (12) ‖ sender node key (32, optional) ‖ zero padding (MTU probes)
 *     0x02 Pong          TxID (12) ‖ observed source IP (16, IPv4 as ::ffff:a.b.c.d) ‖ port (2, BE)
 *     0x03 CallMeMaybe   n × [ IP (16, IPv4 v4-mapped) ‖ port (2, BE) ], n ≥ 0
 *     0x40 Punch         Pierce's own (not Tailscale's): flags (1) ‖ sockets (2, BE) ‖
 *                        duration s (2, BE) ‖ public IP (16) of a sender behind a hard NAT
 *                        (endpoint-dependent mapping), asking for birthday-paradox probing.
 *                        Flags: 0x01 the sender also sprays (both sides hard, opted in).
 *
 * Decoding follows Tailscale's parser where it is lax, so both read the same bytes alike:
 *   - the version byte is ignored for Ping and Pong; trailing bytes are ignored;
 *   - a Ping whose 32 bytes after the TxID are all zero (or that has fewer than 32) carries no
 *     node key; every byte after the TxID and key counts as `padding`, whatever its value;
 *   - a CallMeMaybe with a non-zero version or a payload that is not a whole number of 18-byte
 *     endpoints decodes to zero endpoints (Tailscale returns an empty list, not an error);
 *   - IPv4-mapped addresses decode to dotted IPv4 text; IPv6 to RFC 5952 canonical text.
 *
 * CallMeMaybe must be accepted only when it arrived over DERP; the codec does not know the
 * transport, the engine enforces that. The engine should also check that the sender's disco key
 * (`parseDiscoHeader`) belongs to a known peer before calling `openDisco`, so that junk packets
 * cost no X25519.
 */
import { BOX_NONCE, BOX_OVERHEAD, boxBeforenm, boxOpenAfternm, boxSealAfternm, type X25519 } from '../crypto/box.ts';
import { isZero, toHex, wipe } from '../crypto/bytes.ts';
import { PierceError } from '../errors.ts';
import { DiscoPublic, NodePublic, type DiscoPrivate } from '../key/keys.ts';
import { formatIP, hostPort, isIPv4Mapped, tryParseIP } from '../netstack/addr.ts';

/**
 * Disco errors. Codes:
 *   DISCO_SHORT    fewer bytes than the outer header plus box tag (78), than the inner header
 *                  (2), or than a Ping (12) / Pong (30) payload
 *   DISCO_MAGIC    the packet does not start with "TS💬"
 *   DISCO_KEY      the peer's disco key is unusable (low-order point: all-zero shared secret)
 *   DISCO_OPEN     the box does not authenticate (wrong key, wrong receiver, corrupted)
 *   DISCO_TYPE     an inner message type this codec does not know (0x04–0x09 are Tailscale's
 *                  peer-relay messages, not supported)
 *   DISCO_ENCODE   bad encoder input: TxID or nonce length, IP text, port, padding, a key cache
 *                  made for another private key
 */
export class DiscoError extends PierceError {}

const MAGIC = [0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac] as const;
/** "TS💬" in UTF-8 (for callers; the codec keeps its own copy, so changing this changes nothing). */
export const DISCO_MAGIC: Uint8Array = Uint8Array.from(MAGIC);
export const DISCO_MAGIC_LEN = 6;
export const DISCO_KEY_LEN = 32;
export const DISCO_NONCE_LEN = BOX_NONCE; // 24
/** Magic + sender key + nonce: the offset of the box. */
export const DISCO_HEADER_LEN = DISCO_MAGIC_LEN + DISCO_KEY_LEN + DISCO_NONCE_LEN; // 62
/** The shortest packet `parseDiscoHeader` accepts: header plus the box tag. */
export const DISCO_MIN_LEN = DISCO_HEADER_LEN + BOX_OVERHEAD; // 78
/** Magic + sender key: the length magicsock's demux requires (`discoHeaderLen`). */
export const DISCO_DEMUX_LEN = DISCO_MAGIC_LEN + DISCO_KEY_LEN; // 38
/** Type + version. */
export const DISCO_INNER_HEADER_LEN = 2;
/** The only version written; ignored on receipt except by CallMeMaybe (see above). */
export const DISCO_VERSION = 0;
export const DISCO_TXID_LEN = 12;
/** Ping payload with a node key, without padding. */
export const DISCO_PING_LEN = DISCO_TXID_LEN + DISCO_KEY_LEN; // 44
/** Pong payload. */
export const DISCO_PONG_LEN = DISCO_TXID_LEN + 16 + 2; // 30
/** One CallMeMaybe endpoint: IPv6 (or v4-mapped) address and big-endian port. */
export const DISCO_ENDPOINT_LEN = 16 + 2; // 18
/** Largest `padding` the encoder writes (a disco packet must fit a UDP datagram). */
export const DISCO_MAX_PADDING = 65_000;
/** Most endpoints the encoder writes in one CallMeMaybe (likewise). */
export const DISCO_MAX_ENDPOINTS = 3_600;

/** Inner message types. */
export const DISCO_TYPE = { ping: 0x01, pong: 0x02, 'call-me-maybe': 0x03, punch: 0x40 } as const;

/** Punch payload: flags (1) + sockets (2) + duration (2) + IP (16). */
export const DISCO_PUNCH_LEN = 1 + 2 + 2 + 16;

/** An IP address (IPv4 dotted or IPv6 text) and UDP port. */
export interface DiscoEndpoint {
  ip: string;
  port: number;
}

export interface DiscoPing {
  type: 'ping';
  /** 12 random bytes chosen by the pinger, echoed in the pong. */
  txid: Uint8Array;
  /** The sender's WireGuard key, as it claims (trust only together with the netmap). */
  nodeKey?: NodePublic;
  /** Bytes after TxID and key (zeros when we write them); absent when 0. */
  padding?: number;
}

export interface DiscoPong {
  type: 'pong';
  txid: Uint8Array;
  /** The source address the ping came from, as the pong's sender saw it. */
  src: DiscoEndpoint;
}

export interface DiscoCallMeMaybe {
  type: 'call-me-maybe';
  /** The sender's own idea of its endpoints. */
  endpoints: DiscoEndpoint[];
}

/**
 * Birthday-paradox probing (Pierce's extension, type 0x40; Tailscale's receivers drop unknown
 * types). Sent over the relay by a node whose NAT maps per destination: it has opened `sockets`
 * sockets toward the receiver's endpoints; the receiver probes random ports of `ip` for at most
 * `durationS` seconds and stops at the first pong.
 */
export interface DiscoPunch {
  type: 'punch';
  ip: string;
  sockets: number;
  durationS: number;
  /** The sender sprays too (both NATs hard; only with an explicit opt-in). */
  sprays: boolean;
}

export type DiscoMessage = DiscoPing | DiscoPong | DiscoCallMeMaybe | DiscoPunch;

/** The outer header of a packet: views into it except `sender` (a copy). */
export interface DiscoHeader {
  sender: DiscoPublic;
  /** 24 bytes (a view into the packet). */
  nonce: Uint8Array;
  /** Tag ‖ ciphertext, the rest of the packet (a view). */
  boxed: Uint8Array;
}

/** Crypto options for `sealDisco` / `openDisco` (or just a `DiscoKeyCache`). */
export interface DiscoCryptoOptions {
  /** An X25519 implementation (e.g. a CryptoBackend's) for the shared key; noble's by default. */
  dh?: X25519;
  /**
   * Memoized shared keys for our private key; when given, `dh` is not used (the cache has its
   * own). Must have been made for the same private key (DISCO_ENCODE otherwise).
   */
  cache?: DiscoKeyCache;
}

export interface OpenedDisco {
  sender: DiscoPublic;
  msg: DiscoMessage;
}

/**
 * True when a datagram (or DERP payload) starts with the disco magic and is long enough to hold
 * a sender key, as magicsock's demux checks. No WireGuard message starts with 0x54, so a short
 * packet with the magic is still disco (and `parseDiscoHeader` rejects it as DISCO_SHORT).
 */
export function looksLikeDisco(packet: Uint8Array): boolean {
  return packet.length >= DISCO_DEMUX_LEN && hasMagic(packet);
}

function hasMagic(b: Uint8Array): boolean {
  for (let i = 0; i < DISCO_MAGIC_LEN; i++) if (b[i] !== MAGIC[i]) return false;
  return true;
}

function encodeError(why: string): DiscoError {
  return new DiscoError('DISCO_ENCODE', `disco: ${why}`);
}

function checkTxid(txid: unknown): Uint8Array {
  if (!(txid instanceof Uint8Array) || txid.length !== DISCO_TXID_LEN) {
    throw encodeError(`a TxID is ${DISCO_TXID_LEN} bytes`);
  }
  return txid;
}

/** Writes an endpoint (16-byte address, v4-mapped for IPv4, then big-endian port) at `o`. */
function writeEndpoint(out: Uint8Array, o: number, ep: DiscoEndpoint): void {
  const ip = typeof ep?.ip === 'string' ? tryParseIP(ep.ip) : null;
  if (!ip) throw encodeError(`not an IP address: ${JSON.stringify(String(ep?.ip)).slice(0, 64)}`);
  const port = ep.port;
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw encodeError(`bad port ${String(port)}`);
  if (ip.length === 4) {
    out[o + 10] = 0xff;
    out[o + 11] = 0xff;
    out.set(ip, o + 12);
  } else {
    out.set(ip, o);
  }
  out[o + 16] = port >>> 8;
  out[o + 17] = port & 0xff;
}

function readEndpoint(b: Uint8Array, o: number): DiscoEndpoint {
  const ip16 = b.subarray(o, o + 16);
  const ip = isIPv4Mapped(ip16) ? formatIP(ip16.subarray(12)) : formatIP(ip16);
  return { ip, port: (b[o + 16]! << 8) | b[o + 17]! };
}

/** Encodes an inner message (type ‖ version 0 ‖ payload). Throws DiscoError DISCO_ENCODE. */
export function encodeInner(msg: DiscoMessage): Uint8Array {
  const H = DISCO_INNER_HEADER_LEN;
  let out: Uint8Array;
  switch (msg?.type) {
    case 'ping': {
      const txid = checkTxid(msg.txid);
      const padding = msg.padding ?? 0;
      if (!Number.isInteger(padding) || padding < 0 || padding > DISCO_MAX_PADDING) {
        throw encodeError(`padding must be an integer 0..${DISCO_MAX_PADDING}, got ${String(padding)}`);
      }
      // A zero node key is "no key", as in Tailscale (NodeKey.IsZero()).
      const key = msg.nodeKey && !msg.nodeKey.isZero() ? msg.nodeKey : undefined;
      out = new Uint8Array(H + DISCO_TXID_LEN + (key ? DISCO_KEY_LEN : 0) + padding);
      out.set(txid, H);
      if (key) out.set(key.rawView(), H + DISCO_TXID_LEN);
      break;
    }
    case 'pong': {
      const txid = checkTxid(msg.txid);
      out = new Uint8Array(H + DISCO_PONG_LEN);
      out.set(txid, H);
      writeEndpoint(out, H + DISCO_TXID_LEN, msg.src);
      break;
    }
    case 'call-me-maybe': {
      const eps = msg.endpoints;
      if (!Array.isArray(eps)) throw encodeError('call-me-maybe endpoints must be an array');
      if (eps.length > DISCO_MAX_ENDPOINTS) throw encodeError(`too many endpoints (${eps.length})`);
      out = new Uint8Array(H + eps.length * DISCO_ENDPOINT_LEN);
      eps.forEach((ep, i) => writeEndpoint(out, H + i * DISCO_ENDPOINT_LEN, ep));
      break;
    }
    case 'punch': {
      out = new Uint8Array(H + DISCO_PUNCH_LEN + 2); // + the port writeEndpoint adds, cut below
      for (const [name, v] of [['sockets', msg.sockets], ['durationS', msg.durationS]] as const) {
        if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw encodeError(`punch ${name} must be an integer 0..65535, got ${String(v)}`);
      }
      out[H] = msg.sprays ? 1 : 0;
      out[H + 1] = msg.sockets >>> 8;
      out[H + 2] = msg.sockets & 0xff;
      out[H + 3] = msg.durationS >>> 8;
      out[H + 4] = msg.durationS & 0xff;
      writeEndpoint(out, H + 5, { ip: msg.ip, port: 0 });
      out = out.slice(0, H + DISCO_PUNCH_LEN);
      break;
    }
    default:
      throw encodeError(`unknown message type ${JSON.stringify(String((msg as { type?: unknown })?.type))}`);
  }
  out[0] = DISCO_TYPE[msg.type];
  out[1] = DISCO_VERSION;
  return out;
}

/** Decodes an inner message (the opened box). Throws DiscoError DISCO_SHORT or DISCO_TYPE. */
export function decodeInner(bytes: Uint8Array): DiscoMessage {
  if (bytes.length < DISCO_INNER_HEADER_LEN) {
    throw new DiscoError('DISCO_SHORT', `disco message is ${bytes.length} bytes, less than its 2-byte header`);
  }
  const type = bytes[0]!;
  const version = bytes[1]!;
  const p = bytes.subarray(DISCO_INNER_HEADER_LEN);
  switch (type) {
    case DISCO_TYPE.ping: {
      if (p.length < DISCO_TXID_LEN) {
        throw new DiscoError('DISCO_SHORT', `disco ping payload is ${p.length} bytes, less than ${DISCO_TXID_LEN}`);
      }
      const msg: DiscoPing = { type: 'ping', txid: p.slice(0, DISCO_TXID_LEN) };
      let rest = p.length - DISCO_TXID_LEN;
      if (rest >= DISCO_KEY_LEN) {
        const raw = p.subarray(DISCO_TXID_LEN, DISCO_PING_LEN);
        if (!isZero(raw)) {
          msg.nodeKey = NodePublic.fromRaw(raw);
          rest -= DISCO_KEY_LEN;
        }
      }
      if (rest > 0) msg.padding = rest;
      return msg;
    }
    case DISCO_TYPE.pong: {
      if (p.length < DISCO_PONG_LEN) {
        throw new DiscoError('DISCO_SHORT', `disco pong payload is ${p.length} bytes, less than ${DISCO_PONG_LEN}`);
      }
      return { type: 'pong', txid: p.slice(0, DISCO_TXID_LEN), src: readEndpoint(p, DISCO_TXID_LEN) };
    }
    case DISCO_TYPE['call-me-maybe']: {
      const endpoints: DiscoEndpoint[] = [];
      if (version === DISCO_VERSION && p.length % DISCO_ENDPOINT_LEN === 0) {
        for (let o = 0; o < p.length; o += DISCO_ENDPOINT_LEN) endpoints.push(readEndpoint(p, o));
      }
      return { type: 'call-me-maybe', endpoints };
    }
    case DISCO_TYPE.punch: {
      if (p.length < DISCO_PUNCH_LEN) {
        throw new DiscoError('DISCO_SHORT', `disco punch payload is ${p.length} bytes, less than ${DISCO_PUNCH_LEN}`);
      }
      return {
        type: 'punch',
        sprays: (p[0]! & 1) === 1,
        sockets: (p[1]! << 8) | p[2]!,
        durationS: (p[3]! << 8) | p[4]!,
        ip: readEndpoint(p, 5).ip,
      };
    }
    default:
      throw new DiscoError('DISCO_TYPE', `unknown disco message type 0x${type.toString(16).padStart(2, '0')}`);
  }
}

/**
 * Splits a packet into sender key, nonce and box. Throws DiscoError DISCO_SHORT (under 78
 * bytes) or DISCO_MAGIC. Does no crypto.
 */
export function parseDiscoHeader(packet: Uint8Array): DiscoHeader {
  if (packet.length < DISCO_MAGIC_LEN) {
    throw new DiscoError('DISCO_SHORT', `disco packet is ${packet.length} bytes, less than ${DISCO_MIN_LEN}`);
  }
  if (!hasMagic(packet)) throw new DiscoError('DISCO_MAGIC', 'not a disco packet: bad magic');
  if (packet.length < DISCO_MIN_LEN) {
    throw new DiscoError('DISCO_SHORT', `disco packet is ${packet.length} bytes, less than ${DISCO_MIN_LEN}`);
  }
  return {
    sender: DiscoPublic.fromRaw(packet.subarray(DISCO_MAGIC_LEN, DISCO_DEMUX_LEN)),
    nonce: packet.subarray(DISCO_DEMUX_LEN, DISCO_HEADER_LEN),
    boxed: packet.subarray(DISCO_HEADER_LEN),
  };
}

/**
 * The box key for (ours, peer): from the cache, or computed (and then owned by the caller, who
 * wipes it; `owned` says which).
 */
function sharedKey(
  ours: DiscoPrivate,
  peer: DiscoPublic,
  opts: DiscoCryptoOptions | DiscoKeyCache | undefined,
): { key: Uint8Array; owned: boolean } {
  const cache = opts instanceof DiscoKeyCache ? opts : opts?.cache;
  if (cache) {
    if (!cache.isFor(ours)) throw encodeError('the key cache was made for another disco private key');
    return { key: cache.shared(peer), owned: false };
  }
  return { key: computeShared(ours, peer, (opts as DiscoCryptoOptions | undefined)?.dh), owned: true };
}

/** crypto_box_beforenm for disco keys; a low-order peer key throws DiscoError DISCO_KEY. */
export function computeShared(ours: DiscoPrivate, peer: DiscoPublic, dh?: X25519): Uint8Array {
  try {
    return boxBeforenm(peer.rawView(), ours.rawView(), dh);
  } catch (e) {
    throw new DiscoError('DISCO_KEY', `disco key ${peer.short()} is unusable (low-order point)`, { cause: e });
  }
}

/**
 * Seals `msg` from us (`senderPriv`, whose public key is `senderPub`: passed in so that it is
 * not recomputed per packet) to `receiverPub`, with a fresh random 24-byte `nonce`. Returns the
 * whole packet. Throws DiscoError DISCO_ENCODE or DISCO_KEY.
 */
export function sealDisco(
  msg: DiscoMessage,
  senderPriv: DiscoPrivate,
  senderPub: DiscoPublic,
  receiverPub: DiscoPublic,
  nonce: Uint8Array,
  opts?: DiscoCryptoOptions | DiscoKeyCache,
): Uint8Array {
  if (!(nonce instanceof Uint8Array) || nonce.length !== DISCO_NONCE_LEN) {
    throw encodeError(`a nonce is ${DISCO_NONCE_LEN} bytes`);
  }
  const inner = encodeInner(msg);
  const { key, owned } = sharedKey(senderPriv, receiverPub, opts);
  let boxed: Uint8Array;
  try {
    boxed = boxSealAfternm(key, nonce, inner);
  } finally {
    if (owned) wipe(key);
  }
  const out = new Uint8Array(DISCO_HEADER_LEN + boxed.length);
  out.set(MAGIC, 0);
  out.set(senderPub.rawView(), DISCO_MAGIC_LEN);
  out.set(nonce, DISCO_DEMUX_LEN);
  out.set(boxed, DISCO_HEADER_LEN);
  return out;
}

/**
 * Opens a packet addressed to `receiverPriv` and decodes its message. Throws DiscoError:
 * DISCO_SHORT / DISCO_MAGIC (header), DISCO_KEY (sender key), DISCO_OPEN (authentication),
 * then DISCO_SHORT / DISCO_TYPE (inner message).
 */
export function openDisco(
  packet: Uint8Array,
  receiverPriv: DiscoPrivate,
  opts?: DiscoCryptoOptions | DiscoKeyCache,
): OpenedDisco {
  const h = parseDiscoHeader(packet);
  const { key, owned } = sharedKey(receiverPriv, h.sender, opts);
  let inner: Uint8Array | null;
  try {
    inner = boxOpenAfternm(key, h.nonce, h.boxed);
  } finally {
    if (owned) wipe(key);
  }
  if (!inner) throw new DiscoError('DISCO_OPEN', `disco packet from ${h.sender.short()} does not authenticate`);
  return { sender: h.sender, msg: decodeInner(inner) };
}

/** A short description for logs, like Tailscale's MessageSummary: `ping tx=0a1b2c3d4e5f …`. */
export function discoSummary(msg: DiscoMessage): string {
  switch (msg.type) {
    case 'ping':
      return `ping tx=${toHex(msg.txid.subarray(0, 6))}${msg.nodeKey ? ` node=${msg.nodeKey.short()}` : ''} padding=${msg.padding ?? 0}`;
    case 'pong':
      return `pong tx=${toHex(msg.txid.subarray(0, 6))} src=${formatEndpoint(msg.src)}`;
    case 'call-me-maybe':
      return `call-me-maybe ${msg.endpoints.map(formatEndpoint).join(' ') || '(no endpoints)'}`;
    case 'punch':
      return `punch ip=${msg.ip} sockets=${msg.sockets} duration=${msg.durationS}s${msg.sprays ? ' sprays' : ''}`;
  }
}

/** "1.2.3.4:5" or "[::1]:5". */
export function formatEndpoint(ep: DiscoEndpoint): string {
  return hostPort(ep.ip, ep.port);
}

export interface DiscoKeyCacheOptions {
  /** Most peers whose keys are kept (default 1024). */
  maxEntries?: number;
  /** An X25519 implementation (e.g. a CryptoBackend's); noble's by default. */
  dh?: X25519;
}

export const DEFAULT_DISCO_CACHE_ENTRIES = 1024;

/**
 * A bounded cache of disco box keys: crypto_box_beforenm(peer disco public, our disco private)
 * costs an X25519, and the engine seals and opens pings to the same peers over and over
 * (Tailscale keeps one per peer in its discoInfo). Least recently used entries are evicted
 * (and wiped) beyond `maxEntries`. Pure: no clock, no I/O.
 */
export class DiscoKeyCache {
  /** Our disco public key (computed once). */
  readonly publicKey: DiscoPublic;
  readonly maxEntries: number;
  readonly #priv: DiscoPrivate;
  readonly #dh: X25519 | undefined;
  /** base64 of the peer key → shared key; Map order is recency order (oldest first). */
  readonly #entries = new Map<string, Uint8Array>();

  constructor(priv: DiscoPrivate, opts: DiscoKeyCacheOptions = {}) {
    const max = opts.maxEntries ?? DEFAULT_DISCO_CACHE_ENTRIES;
    if (!Number.isInteger(max) || max < 1) {
      throw new DiscoError('DISCO_ENCODE', `disco key cache: maxEntries must be a positive integer, got ${String(max)}`);
    }
    this.#priv = priv;
    this.publicKey = priv.public();
    this.maxEntries = max;
    this.#dh = opts.dh;
  }

  /** Number of cached peers. */
  get size(): number {
    return this.#entries.size;
  }

  /** True when this cache holds keys for `priv`. */
  isFor(priv: DiscoPrivate): boolean {
    return this.#priv.equals(priv);
  }

  /** True when `peer`'s key is cached (does not refresh its recency). */
  has(peer: DiscoPublic): boolean {
    return this.#entries.has(peer.toBase64());
  }

  /**
   * The box key shared with `peer`, computed on first use. Throws DiscoError DISCO_KEY for a
   * low-order key (not cached). The result belongs to the cache and is wiped on eviction: use
   * it at once and do not keep it.
   */
  shared(peer: DiscoPublic): Uint8Array {
    const id = peer.toBase64();
    const hit = this.#entries.get(id);
    if (hit) {
      this.#entries.delete(id);
      this.#entries.set(id, hit);
      return hit;
    }
    const k = computeShared(this.#priv, peer, this.#dh);
    this.#entries.set(id, k);
    while (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      wipe(this.#entries.get(oldest)!);
      this.#entries.delete(oldest);
    }
    return k;
  }

  /** Forgets (and wipes) `peer`'s key; true when it was cached. */
  delete(peer: DiscoPublic): boolean {
    const id = peer.toBase64();
    const k = this.#entries.get(id);
    if (!k) return false;
    wipe(k);
    return this.#entries.delete(id);
  }

  /** Forgets (and wipes) every key. */
  clear(): void {
    for (const k of this.#entries.values()) wipe(k);
    this.#entries.clear();
  }

  /** `sealDisco` from our key to `receiver` with a cached shared key. */
  seal(msg: DiscoMessage, receiver: DiscoPublic, nonce: Uint8Array): Uint8Array {
    return sealDisco(msg, this.#priv, this.publicKey, receiver, nonce, { cache: this });
  }

  /** `openDisco` to our key with a cached shared key. */
  open(packet: Uint8Array): OpenedDisco {
    return openDisco(packet, this.#priv, { cache: this });
  }
}
