/**
 * Noise_IK_25519_ChaChaPoly_BLAKE2s (The Noise Protocol Framework, revision 34): the handshake
 * and transport of the control channel. The initiator is the node (its static key is its machine
 * key); the responder is the control server, whose static key the node knows in advance.
 *
 *   IK:
 *     <- s
 *     ...
 *     -> e, es, s, ss          initiation: e.pub(32) || AEAD(s.pub)(32+16) || AEAD(payload)(n+16)
 *     <- e, ee, se             response:   e.pub(32) || AEAD(payload)(n+16)
 *   then transport messages:   AEAD(plaintext)(n+16), implicit 64-bit counter nonces
 *
 * Primitives (§12): DH = X25519 (DHLEN 32); cipher = ChaCha20-Poly1305 with the 96-bit nonce
 * 0x00000000 || LE64(n) (§12.3); hash = BLAKE2s (HASHLEN 32, BLOCKLEN 64); HKDF (§4.3) with
 * HMAC-BLAKE2s, which is WireGuard's KDF (`src/crypto/blake2s.ts`). Every AEAD in the handshake
 * uses h as associated data; transport messages use none. A Noise message is at most 65535 bytes
 * (§3).
 *
 * Every step computes on copies and commits only when the whole message has been accepted, so a
 * forged or corrupted message (handshake or transport) leaves the state exactly as it was: an
 * attacker who injects bytes costs the receiver one failed AEAD and nothing else.
 *
 * Errors are `NoiseError` with codes:
 *   NOISE_SHORT            message shorter than its fixed part (or than a tag)
 *   NOISE_TOO_LONG         message over 65535 bytes, or a payload that would make one
 *   NOISE_DECRYPT          an AEAD did not authenticate (wrong keys, corruption, reordering, replay)
 *   NOISE_LOW_ORDER        a DH produced the all-zero (low-order) result
 *   NOISE_KEY              a key of the wrong length
 *   NOISE_NONCE_EXHAUSTED  the 64-bit counter reached 2^64-1 (§5.1); rekey by a new handshake
 *   NOISE_STATE            a pending handshake used twice
 */
import type { CryptoBackend, RandomSource } from '../crypto/backend.ts';
import { hash, kdf } from '../crypto/blake2s.ts';
import { isPierceError, PierceError } from '../errors.ts';
import { clamp } from '../key/keys.ts';

export class NoiseError extends PierceError {}

/** §8: the protocol name; longer than HASHLEN, so h0 = HASH(name) (§5.2 InitializeSymmetric). */
export const PROTOCOL_NAME = 'Noise_IK_25519_ChaChaPoly_BLAKE2s';
/** §12.1 */
export const DHLEN = 32;
/** §12.3 (BLAKE2s) */
export const HASHLEN = 32;
export const BLOCKLEN = 64;
/** ChaCha20-Poly1305 tag. */
export const TAGLEN = 16;
/** §3: every Noise message, handshake or transport, is at most 65535 bytes. */
export const MAX_MESSAGE_LEN = 65535;
/** The largest transport plaintext (65519). */
export const MAX_PLAINTEXT_LEN = MAX_MESSAGE_LEN - TAGLEN;
/** Fixed part of the initiation: e, encrypted s, payload tag (96). */
export const INITIATION_OVERHEAD = DHLEN + DHLEN + TAGLEN + TAGLEN;
/** Fixed part of the response: e, payload tag (48). */
export const RESPONSE_OVERHEAD = DHLEN + TAGLEN;
export const MAX_INITIATION_PAYLOAD = MAX_MESSAGE_LEN - INITIATION_OVERHEAD;
export const MAX_RESPONSE_PAYLOAD = MAX_MESSAGE_LEN - RESPONSE_OVERHEAD;

const EMPTY = new Uint8Array(0);
const H0 = hash(new TextEncoder().encode(PROTOCOL_NAME));

// ───────────────────────────── CipherState (§5.1) ─────────────────────────────

/**
 * A key and a 64-bit nonce counter, kept as two uint32 halves. Nonce 2^64-1 is reserved: once n
 * reaches it every call fails (NOISE_NONCE_EXHAUSTED). A failed decrypt does not advance n.
 */
export class CipherState {
  private readonly k: Uint8Array;
  private lo = 0;
  private hi = 0;
  private readonly nonce: Uint8Array = new Uint8Array(12);
  private readonly nonceView: DataView = new DataView(this.nonce.buffer);

  constructor(
    private readonly backend: CryptoBackend,
    key: Uint8Array,
  ) {
    if (key.length !== 32) throw new NoiseError('NOISE_KEY', `a cipher key is 32 bytes, got ${key.length}`);
    this.k = Uint8Array.from(key);
  }

  /** §5.1 SetNonce. */
  setNonce(n: bigint): void {
    if (n < 0n || n >= 1n << 64n) throw new NoiseError('NOISE_STATE', 'a nonce is a 64-bit unsigned integer');
    this.lo = Number(n & 0xffffffffn);
    this.hi = Number(n >> 32n);
  }

  /** The next nonce to be used. */
  get n(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  private nextNonce(): Uint8Array {
    if (this.lo === 0xffffffff && this.hi === 0xffffffff) {
      throw new NoiseError('NOISE_NONCE_EXHAUSTED', 'the nonce counter is exhausted; a new handshake is needed');
    }
    this.nonceView.setUint32(4, this.lo, true);
    this.nonceView.setUint32(8, this.hi, true);
    return this.nonce;
  }

  private advance(): void {
    if (this.lo === 0xffffffff) {
      this.lo = 0;
      this.hi++;
    } else this.lo++;
  }

  /** §5.1 EncryptWithAd. */
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    const ct = this.backend.seal(this.k, this.nextNonce(), plaintext, ad);
    this.advance();
    return ct;
  }

  /** §5.1 DecryptWithAd; NOISE_DECRYPT (n unchanged) when the tag does not verify. */
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (ciphertext.length < TAGLEN) throw new NoiseError('NOISE_SHORT', `a ciphertext is at least ${TAGLEN} bytes, got ${ciphertext.length}`);
    const pt = this.backend.open(this.k, this.nextNonce(), ciphertext, ad);
    if (!pt) throw new NoiseError('NOISE_DECRYPT', 'message does not authenticate');
    this.advance();
    return pt;
  }

  /** Overwrites the key. The state is unusable afterwards. */
  wipe(): void {
    this.k.fill(0);
  }
}

// ──────────────────────────── SymmetricState (§5.2) ────────────────────────────

/**
 * ck, h and an optional key k; copied (`clone`) before every message so failures commit nothing.
 * EncryptAndHash/DecryptAndHash use k at nonce n; IK never uses a key twice between MixKeys
 * (`s` and `ss` are separated by a MixKey), so n is always 0 there and a fresh CipherState per
 * call is exact.
 */
class SymmetricState {
  constructor(
    private readonly backend: CryptoBackend,
    public ck: Uint8Array,
    public h: Uint8Array,
    private k: Uint8Array | null = null,
  ) {}

  /** §5.2 InitializeSymmetric + MixHash(prologue), then the IK pre-message `<- s`: MixHash(rs). */
  static initialize(backend: CryptoBackend, prologue: Uint8Array, responderStatic: Uint8Array): SymmetricState {
    const h = hash(hash(H0, prologue), responderStatic);
    return new SymmetricState(backend, H0, h);
  }

  clone(): SymmetricState {
    return new SymmetricState(this.backend, this.ck, this.h, this.k);
  }

  mixHash(data: Uint8Array): void {
    this.h = hash(this.h, data);
  }

  /** §5.2 MixKey: ck, k = HKDF(ck, ikm, 2); n = 0. */
  mixKey(ikm: Uint8Array): void {
    [this.ck, this.k] = kdf(2, this.ck, ikm);
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ct = this.k ? new CipherState(this.backend, this.k).encryptWithAd(this.h, plaintext) : Uint8Array.from(plaintext);
    this.mixHash(ct);
    return ct;
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const pt = this.k ? new CipherState(this.backend, this.k).decryptWithAd(this.h, ciphertext) : Uint8Array.from(ciphertext);
    this.mixHash(ciphertext);
    return pt;
  }

  /** §5.2 Split: (k1, k2) = HKDF(ck, ε, 2); k1 carries initiator → responder. */
  split(): [Uint8Array, Uint8Array] {
    return kdf(2, this.ck, EMPTY);
  }
}

// ─────────────────────────────── HandshakeState (§5.3) ───────────────────────────────

export interface NoiseConfig {
  backend: CryptoBackend;
  random: RandomSource;
  /** Bound into h by both sides (§6); both must use the same bytes. */
  prologue: Uint8Array;
  /** Tests only: a fixed ephemeral private key instead of `random(32)`. */
  ephemeral?: Uint8Array;
}

/** A static key pair; pass one to avoid recomputing the public key per handshake. */
export interface KeyPair {
  readonly priv: Uint8Array;
  readonly pub: Uint8Array;
}

/** A local static key: the private key alone (its public key is derived) or a KeyPair. */
export type LocalStatic = Uint8Array | KeyPair;

export function keyPair(backend: CryptoBackend, priv: Uint8Array): KeyPair {
  checkKey(priv, 'static private key');
  return { priv: Uint8Array.from(priv), pub: backend.x25519Public(priv) };
}

function localPair(backend: CryptoBackend, s: LocalStatic): KeyPair {
  if (s instanceof Uint8Array) return keyPair(backend, s);
  checkKey(s.priv, 'static private key');
  checkKey(s.pub, 'static public key');
  return s;
}

function checkKey(k: Uint8Array, what: string): void {
  if (!(k instanceof Uint8Array) || k.length !== DHLEN) {
    throw new NoiseError('NOISE_KEY', `${what} must be ${DHLEN} bytes, got ${k?.length ?? typeof k}`);
  }
}

function dh(backend: CryptoBackend, priv: Uint8Array, pub: Uint8Array, what: string): Uint8Array {
  try {
    return backend.x25519(priv, pub);
  } catch (e) {
    if (isPierceError(e)) throw new NoiseError('NOISE_LOW_ORDER', `${what}: DH result is low order`, { cause: e });
    throw e;
  }
}

function ephemeral(cfg: NoiseConfig): { priv: Uint8Array; pub: Uint8Array } {
  const priv = cfg.ephemeral ? Uint8Array.from(cfg.ephemeral) : clamp(cfg.random(DHLEN));
  checkKey(priv, 'ephemeral private key');
  return { priv, pub: cfg.backend.x25519Public(priv) };
}

/** The initiator's state between sending the initiation and receiving the response. */
export class PendingInitiator {
  /** @internal */
  done = false;
  /** @internal */
  constructor(
    readonly backend: CryptoBackend,
    readonly sym: SymmetricState,
    readonly s: KeyPair,
    readonly e: Uint8Array,
    readonly rs: Uint8Array,
  ) {}

  /** Forgets the ephemeral key (abandoning the handshake). */
  discard(): void {
    this.e.fill(0);
    this.done = true;
  }
}

/**
 * Initiator, first message: `-> e, es, s, ss` carrying `payload` (≤ 65439 bytes). Returns the
 * initiation to send and the state `finishInitiator` needs.
 */
export function initiate(
  cfg: NoiseConfig,
  localStatic: LocalStatic,
  remoteStaticPub: Uint8Array,
  payload: Uint8Array,
): { message: Uint8Array; pending: PendingInitiator } {
  checkKey(remoteStaticPub, 'responder static public key');
  if (payload.length > MAX_INITIATION_PAYLOAD) {
    throw new NoiseError('NOISE_TOO_LONG', `initiation payload is ${payload.length} bytes; at most ${MAX_INITIATION_PAYLOAD}`);
  }
  const { backend } = cfg;
  const s = localPair(backend, localStatic);
  const rs = Uint8Array.from(remoteStaticPub);
  const sym = SymmetricState.initialize(backend, cfg.prologue, rs);
  const e = ephemeral(cfg);
  sym.mixHash(e.pub); // e
  sym.mixKey(dh(backend, e.priv, rs, 'es')); // es
  const encS = sym.encryptAndHash(s.pub); // s
  sym.mixKey(dh(backend, s.priv, rs, 'ss')); // ss
  const encPayload = sym.encryptAndHash(payload);

  const message = new Uint8Array(DHLEN + encS.length + encPayload.length);
  message.set(e.pub, 0);
  message.set(encS, DHLEN);
  message.set(encPayload, DHLEN + encS.length);
  return { message, pending: new PendingInitiator(backend, sym, s, e.priv, rs) };
}

/**
 * Initiator, second message: reads `<- e, ee, se` and returns the responder's payload and the
 * transport session. A reply that fails any check throws and leaves `pending` usable for the
 * genuine reply; after success `pending` is spent (NOISE_STATE).
 */
export function finishInitiator(pending: PendingInitiator, reply: Uint8Array): { payload: Uint8Array; session: NoiseSession } {
  if (pending.done) throw new NoiseError('NOISE_STATE', 'this handshake has already completed or was discarded');
  checkLength(reply, RESPONSE_OVERHEAD, 'response');
  const { backend } = pending;
  const sym = pending.sym.clone();
  const re = reply.subarray(0, DHLEN);
  sym.mixHash(re); // e
  sym.mixKey(dh(backend, pending.e, re, 'ee')); // ee
  sym.mixKey(dh(backend, pending.s.priv, re, 'se')); // se
  const payload = sym.decryptAndHash(reply.subarray(DHLEN));

  pending.discard();
  const [k1, k2] = sym.split();
  return { payload, session: new NoiseSession(backend, k1, k2, sym.h, pending.rs, true) };
}

/** What the responder learns from an initiation before deciding to answer it. */
export interface Responder {
  /** The initiator's static public key (authenticated: the initiator holds its private key). */
  readonly remoteStatic: Uint8Array;
  /** The initiation's payload. */
  readonly payload: Uint8Array;
  /** Writes `<- e, ee, se` carrying `payload` (≤ 65487 bytes); callable once. */
  accept(payload: Uint8Array): { message: Uint8Array; session: NoiseSession };
}

/**
 * Responder, first message: reads `-> e, es, s, ss` addressed to `localStatic`. The caller
 * checks `remoteStatic` and the payload, then calls `accept` (or drops the result). Stateless
 * until `accept`: a bad initiation throws and changes nothing.
 */
export function respond(cfg: NoiseConfig, localStatic: LocalStatic, message: Uint8Array): Responder {
  checkLength(message, INITIATION_OVERHEAD, 'initiation');
  const { backend } = cfg;
  const s = localPair(backend, localStatic);
  const sym = SymmetricState.initialize(backend, cfg.prologue, s.pub);
  const re = Uint8Array.from(message.subarray(0, DHLEN));
  sym.mixHash(re); // e
  sym.mixKey(dh(backend, s.priv, re, 'es')); // es
  const rs = sym.decryptAndHash(message.subarray(DHLEN, DHLEN + DHLEN + TAGLEN)); // s
  sym.mixKey(dh(backend, s.priv, rs, 'ss')); // ss
  const payload = sym.decryptAndHash(message.subarray(DHLEN + DHLEN + TAGLEN));

  let used = false;
  return {
    remoteStatic: rs,
    payload,
    accept(reply: Uint8Array) {
      if (used) throw new NoiseError('NOISE_STATE', 'this initiation has already been answered');
      if (reply.length > MAX_RESPONSE_PAYLOAD) {
        throw new NoiseError('NOISE_TOO_LONG', `response payload is ${reply.length} bytes; at most ${MAX_RESPONSE_PAYLOAD}`);
      }
      const st = sym.clone();
      const e = ephemeral(cfg);
      st.mixHash(e.pub); // e
      st.mixKey(dh(backend, e.priv, re, 'ee')); // ee
      st.mixKey(dh(backend, e.priv, rs, 'se')); // se
      const enc = st.encryptAndHash(reply);
      e.priv.fill(0);
      used = true;

      const out = new Uint8Array(DHLEN + enc.length);
      out.set(e.pub, 0);
      out.set(enc, DHLEN);
      const [k1, k2] = st.split();
      return { message: out, session: new NoiseSession(backend, k2, k1, st.h, rs, false) };
    },
  };
}

function checkLength(m: Uint8Array, min: number, what: string): void {
  if (m.length < min) throw new NoiseError('NOISE_SHORT', `${what} is ${m.length} bytes; at least ${min}`);
  if (m.length > MAX_MESSAGE_LEN) throw new NoiseError('NOISE_TOO_LONG', `${what} is ${m.length} bytes; at most ${MAX_MESSAGE_LEN}`);
}

// ─────────────────────────────── transport (§5.3 Split) ───────────────────────────────

/**
 * The transport after a completed handshake: one CipherState per direction (the initiator sends
 * with the first Split key). Messages must be decrypted in the order they were encrypted; a
 * reordered, replayed or altered message fails with NOISE_DECRYPT and changes nothing.
 */
export class NoiseSession {
  private readonly tx: CipherState;
  private readonly rx: CipherState;
  /** h after the handshake (§11.2 channel binding); the same on both sides. */
  readonly handshakeHash: Uint8Array;
  /** The peer's static public key. */
  readonly remoteStatic: Uint8Array;

  /** @internal use `finishInitiator` / `Responder.accept`. */
  constructor(
    backend: CryptoBackend,
    sendKey: Uint8Array,
    recvKey: Uint8Array,
    handshakeHash: Uint8Array,
    remoteStatic: Uint8Array,
    readonly isInitiator: boolean,
  ) {
    this.tx = new CipherState(backend, sendKey);
    this.rx = new CipherState(backend, recvKey);
    this.handshakeHash = Uint8Array.from(handshakeHash);
    this.remoteStatic = Uint8Array.from(remoteStatic);
    sendKey.fill(0);
    recvKey.fill(0);
  }

  /** Seals one transport message (plaintext ≤ 65519 bytes). */
  encrypt(plaintext: Uint8Array): Uint8Array {
    if (plaintext.length > MAX_PLAINTEXT_LEN) {
      throw new NoiseError('NOISE_TOO_LONG', `transport plaintext is ${plaintext.length} bytes; at most ${MAX_PLAINTEXT_LEN}`);
    }
    return this.tx.encryptWithAd(EMPTY, plaintext);
  }

  /** Opens the next transport message; throws NoiseError (state unchanged) on any failure. */
  decrypt(ciphertext: Uint8Array): Uint8Array {
    if (ciphertext.length > MAX_MESSAGE_LEN) {
      throw new NoiseError('NOISE_TOO_LONG', `transport message is ${ciphertext.length} bytes; at most ${MAX_MESSAGE_LEN}`);
    }
    return this.rx.decryptWithAd(EMPTY, ciphertext);
  }

  /** Messages sent and received so far (the next nonces). */
  get sendCount(): bigint {
    return this.tx.n;
  }
  get recvCount(): bigint {
    return this.rx.n;
  }

  /** Overwrites both keys; the session is unusable afterwards. */
  close(): void {
    this.tx.wipe();
    this.rx.wipe();
  }
}
