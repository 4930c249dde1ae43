/**
 * The Noise_IKpsk2 handshake of WireGuard (paper §5.4.2-§5.4.5). Functions compute on local
 * variables and commit to the handshake state only at the end, so a message that fails any check
 * leaves the state exactly as it was.
 *
 *   Initiator                                    Responder
 *   Ci = HASH(CONSTRUCTION); Hi = HASH(Ci || IDENTIFIER); Hi = HASH(Hi || Sr.pub)
 *   Ei ← DH_GENERATE; Ci = KDF1(Ci, Ei.pub); Hi = HASH(Hi || Ei.pub)
 *   (Ci, k) = KDF2(Ci, DH(Ei, Sr.pub)); static = AEAD(k, 0, Si.pub, Hi); Hi = HASH(Hi || static)
 *   (Ci, k) = KDF2(Ci, DH(Si, Sr.pub)); timestamp = AEAD(k, 0, TAI64N, Hi); Hi = HASH(Hi || timestamp)
 *   ──────────── initiation ────────────▶
 *                                    Er ← DH_GENERATE; Cr = KDF1(Cr, Er.pub); Hr = HASH(Hr || Er.pub)
 *                                    Cr = KDF1(Cr, DH(Er, Ei.pub)); Cr = KDF1(Cr, DH(Er, Si.pub))
 *                                    (Cr, τ, k) = KDF3(Cr, Q); Hr = HASH(Hr || τ)
 *                                    empty = AEAD(k, 0, ε, Hr); Hr = HASH(Hr || empty)
 *   ◀──────────── response ─────────────
 *   (T_send, T_recv) = KDF2(C, ε) for the initiator; swapped for the responder.
 */
import type { CryptoBackend, RandomSource } from '../crypto/backend.ts';
import { hash, kdf } from '../crypto/blake2s.ts';
import { isZero } from '../crypto/bytes.ts';
import { clamp } from '../key/keys.ts';
import { isPierceError } from '../errors.ts';
import { CONSTRUCTION, HANDSHAKE_INITIATION_RATE, IDENTIFIER, MAC_SIZE, TAI64N_SIZE } from './constants.ts';
import { WgError } from './errors.ts';
import { encodeInitiation, encodeResponse, type Initiation, type Response } from './messages.ts';
import { tai64n, tai64nAfter } from './tai64n.ts';

const te = new TextEncoder();
const INITIAL_CHAIN_KEY = hash(te.encode(CONSTRUCTION));
const INITIAL_HASH = hash(INITIAL_CHAIN_KEY, te.encode(IDENTIFIER));
const ZERO_NONCE = new Uint8Array(12);
const EMPTY = new Uint8Array(0);
const ZERO_MAC = new Uint8Array(MAC_SIZE);

export type HandshakeStage = 'zeroed' | 'initiation-created' | 'initiation-consumed' | 'response-created' | 'response-consumed';

/** This device's static identity. */
export interface LocalStatic {
  readonly priv: Uint8Array;
  readonly pub: Uint8Array;
}

/** Per-peer handshake state (wireguard-go's Handshake). */
export class Handshake {
  stage: HandshakeStage = 'zeroed';
  hash: Uint8Array = new Uint8Array(32);
  chainKey: Uint8Array = new Uint8Array(32);
  localEphemeral: Uint8Array | null = null;
  remoteEphemeral: Uint8Array | null = null;
  localIndex = 0;
  remoteIndex = 0;
  /** The latest TAI64N timestamp accepted from this peer (replay protection). */
  lastTimestamp: Uint8Array = new Uint8Array(TAI64N_SIZE);
  lastInitiationConsumption = -Infinity;
  lastSentHandshake = -Infinity;
  /** DH(our static, peer static), computed once; all zero when the peer key is unusable. */
  precomputedStaticStatic: Uint8Array;

  constructor(
    readonly remoteStatic: Uint8Array,
    public presharedKey: Uint8Array,
    local: LocalStatic,
    backend: CryptoBackend,
  ) {
    try {
      this.precomputedStaticStatic = backend.x25519(local.priv, remoteStatic);
    } catch {
      this.precomputedStaticStatic = new Uint8Array(32);
    }
  }

  /** Forgets everything but the replay-protection fields. */
  clear(): void {
    this.stage = 'zeroed';
    this.hash.fill(0);
    this.chainKey.fill(0);
    this.localEphemeral?.fill(0);
    this.localEphemeral = null;
    this.remoteEphemeral = null;
    this.localIndex = 0;
    this.remoteIndex = 0;
  }
}

function aead(backend: CryptoBackend, key: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Uint8Array {
  return backend.seal(key, ZERO_NONCE, plaintext, ad);
}

function open(backend: CryptoBackend, key: Uint8Array, ciphertext: Uint8Array, ad: Uint8Array, what: string): Uint8Array {
  const pt = backend.open(key, ZERO_NONCE, ciphertext, ad);
  if (!pt) throw new WgError('WG_DECRYPT', `${what} does not authenticate`);
  return pt;
}

function dh(backend: CryptoBackend, priv: Uint8Array, pub: Uint8Array, what: string): Uint8Array {
  try {
    return backend.x25519(priv, pub);
  } catch (e) {
    if (isPierceError(e)) throw new WgError('WG_DECRYPT', `${what}: invalid public key (low order)`, { cause: e });
    throw e;
  }
}

export interface CryptoContext {
  backend: CryptoBackend;
  random: RandomSource;
}

/**
 * Creates a handshake initiation from `sender` (our new index); mac1/mac2 are left zero for the
 * cookie generator. `wallMs` is the wall clock for the TAI64N timestamp.
 */
export function createInitiation(ctx: CryptoContext, local: LocalStatic, hs: Handshake, sender: number, wallMs: number): Uint8Array {
  if (isZero(hs.precomputedStaticStatic)) throw new WgError('WG_STATE', 'peer public key is invalid (low order)');
  let h = hash(INITIAL_HASH, hs.remoteStatic);
  let ck = INITIAL_CHAIN_KEY;
  const eph = clamp(ctx.random(32));
  const ephPub = ctx.backend.x25519Public(eph);
  [ck] = kdf(1, ck, ephPub);
  h = hash(h, ephPub);
  let k: Uint8Array;
  [ck, k] = kdf(2, ck, dh(ctx.backend, eph, hs.remoteStatic, 'peer static key'));
  const encryptedStatic = aead(ctx.backend, k, local.pub, h);
  h = hash(h, encryptedStatic);
  [ck, k] = kdf(2, ck, hs.precomputedStaticStatic);
  const encryptedTimestamp = aead(ctx.backend, k, tai64n(wallMs), h);
  h = hash(h, encryptedTimestamp);

  hs.localEphemeral?.fill(0);
  hs.localEphemeral = eph;
  hs.hash = h;
  hs.chainKey = ck;
  hs.localIndex = sender;
  hs.remoteEphemeral = null;
  hs.stage = 'initiation-created';
  return encodeInitiation({ sender, ephemeral: ephPub, encryptedStatic, encryptedTimestamp, mac1: ZERO_MAC, mac2: ZERO_MAC });
}

/** The result of decrypting an initiation, before its peer is known to accept it. */
export interface OpenedInitiation {
  peerStatic: Uint8Array;
  timestamp: Uint8Array;
  hash: Uint8Array;
  chainKey: Uint8Array;
}

/**
 * Decrypts an initiation addressed to `local`: returns the initiator's static key and the state to
 * commit. `precomputedFor(peerStatic)` returns DH(our static, peer static) for a known peer, or
 * undefined for an unknown one (WG_UNKNOWN_PEER).
 */
export function openInitiation(
  ctx: CryptoContext,
  local: LocalStatic,
  msg: Initiation,
  precomputedFor: (peerStatic: Uint8Array) => Uint8Array | undefined,
): OpenedInitiation {
  let h = hash(INITIAL_HASH, local.pub);
  let ck = INITIAL_CHAIN_KEY;
  [ck] = kdf(1, ck, msg.ephemeral);
  h = hash(h, msg.ephemeral);
  let k: Uint8Array;
  [ck, k] = kdf(2, ck, dh(ctx.backend, local.priv, msg.ephemeral, 'initiation ephemeral'));
  const peerStatic = open(ctx.backend, k, msg.encryptedStatic, h, 'initiation static key');
  h = hash(h, msg.encryptedStatic);
  const ss = precomputedFor(peerStatic);
  if (!ss) throw new WgError('WG_UNKNOWN_PEER', 'initiation from a public key that is not a configured peer');
  if (isZero(ss)) throw new WgError('WG_UNKNOWN_PEER', 'initiation from a peer with an unusable (low-order) key');
  [ck, k] = kdf(2, ck, ss);
  const timestamp = open(ctx.backend, k, msg.encryptedTimestamp, h, 'initiation timestamp');
  h = hash(h, msg.encryptedTimestamp);
  return { peerStatic, timestamp, hash: h, chainKey: ck };
}

/** Checks replay and flood limits for an opened initiation and commits it to the peer's state. */
export function acceptInitiation(hs: Handshake, opened: OpenedInitiation, msg: Initiation, now: number): void {
  if (!tai64nAfter(opened.timestamp, hs.lastTimestamp)) {
    throw new WgError('WG_REPLAY', 'initiation timestamp is not newer than the last one accepted (replay)');
  }
  if (now - hs.lastInitiationConsumption <= HANDSHAKE_INITIATION_RATE) {
    throw new WgError('WG_FLOOD', 'initiations from this peer arrive faster than allowed');
  }
  hs.hash = opened.hash;
  hs.chainKey = opened.chainKey;
  hs.remoteIndex = msg.sender;
  hs.remoteEphemeral = Uint8Array.from(msg.ephemeral);
  hs.lastTimestamp = opened.timestamp;
  hs.lastInitiationConsumption = now;
  hs.localEphemeral?.fill(0);
  hs.localEphemeral = null;
  hs.stage = 'initiation-consumed';
}

/** Creates the response to a consumed initiation; mac1/mac2 left zero. */
export function createResponse(ctx: CryptoContext, hs: Handshake, sender: number): Uint8Array {
  if (hs.stage !== 'initiation-consumed' || !hs.remoteEphemeral) {
    throw new WgError('WG_STATE', `cannot respond in handshake state ${hs.stage}`);
  }
  let h = hs.hash;
  let ck = hs.chainKey;
  const eph = clamp(ctx.random(32));
  const ephPub = ctx.backend.x25519Public(eph);
  [ck] = kdf(1, ck, ephPub);
  h = hash(h, ephPub);
  [ck] = kdf(1, ck, dh(ctx.backend, eph, hs.remoteEphemeral, 'initiator ephemeral'));
  [ck] = kdf(1, ck, dh(ctx.backend, eph, hs.remoteStatic, 'initiator static'));
  const [ck2, tau, k] = kdf(3, ck, hs.presharedKey);
  h = hash(h, tau);
  const encryptedNothing = aead(ctx.backend, k, EMPTY, h);
  h = hash(h, encryptedNothing);
  eph.fill(0);

  hs.hash = h;
  hs.chainKey = ck2;
  hs.localIndex = sender;
  hs.stage = 'response-created';
  return encodeResponse({ sender, receiver: hs.remoteIndex, ephemeral: ephPub, encryptedNothing, mac1: ZERO_MAC, mac2: ZERO_MAC });
}

/** Consumes a response to our initiation; commits only when everything checks. */
export function consumeResponse(ctx: CryptoContext, local: LocalStatic, hs: Handshake, msg: Response): void {
  if (hs.stage !== 'initiation-created' || !hs.localEphemeral) {
    throw new WgError('WG_STATE', `unexpected handshake response in state ${hs.stage}`);
  }
  let h = hs.hash;
  let ck = hs.chainKey;
  [ck] = kdf(1, ck, msg.ephemeral);
  h = hash(h, msg.ephemeral);
  [ck] = kdf(1, ck, dh(ctx.backend, hs.localEphemeral, msg.ephemeral, 'response ephemeral'));
  [ck] = kdf(1, ck, dh(ctx.backend, local.priv, msg.ephemeral, 'response ephemeral'));
  const [ck2, tau, k] = kdf(3, ck, hs.presharedKey);
  h = hash(h, tau);
  open(ctx.backend, k, msg.encryptedNothing, h, 'handshake response');
  h = hash(h, msg.encryptedNothing);

  hs.hash = h;
  hs.chainKey = ck2;
  hs.remoteIndex = msg.sender;
  hs.localEphemeral.fill(0);
  hs.localEphemeral = null;
  hs.stage = 'response-consumed';
}

/** Transport keys from a completed handshake (§5.4.5); the handshake is cleared afterwards. */
export function deriveTransportKeys(hs: Handshake): { send: Uint8Array; recv: Uint8Array; isInitiator: boolean; localIndex: number; remoteIndex: number } {
  let isInitiator: boolean;
  if (hs.stage === 'response-consumed') isInitiator = true;
  else if (hs.stage === 'response-created') isInitiator = false;
  else throw new WgError('WG_STATE', `no completed handshake to derive keys from (state ${hs.stage})`);
  const [a, b] = kdf(2, hs.chainKey, EMPTY);
  const out = {
    send: isInitiator ? a : b,
    recv: isInitiator ? b : a,
    isInitiator,
    localIndex: hs.localIndex,
    remoteIndex: hs.remoteIndex,
  };
  hs.clear();
  return out;
}
