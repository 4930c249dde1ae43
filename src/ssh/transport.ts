/**
 * The SSH transport layer (RFC 4253) over any byte duplex, for both roles: identification
 * exchange, binary packets, key exchange (curve25519-sha256, ssh-ed25519 host keys,
 * chacha20-poly1305@openssh.com / aes256-gcm@openssh.com) with OpenSSH's strict KEX, and re-keys
 * started by either side (or by us after `rekeyAfterBytes`).
 *
 *   client role: new SshTransport(duplex, { verifyHostKey })      sends KEX_ECDH_INIT, checks the host key
 *   server role: new SshTransport(duplex, { role: 'server', hostKey })  answers KEX_ECDH_REPLY, signs H
 *
 * Strict KEX (OpenSSH PROTOCOL, "kex-strict-*-v00@openssh.com"): when both sides offer it, the
 * server's first packet must be KEXINIT, no other message may arrive during the initial key
 * exchange, and each direction's sequence number resets to 0 after its NEWKEYS.
 *
 * Incoming bytes are decoded synchronously; the one asynchronous step, the host key callback,
 * only delays our NEWKEYS (and with it everything we send afterwards).
 */
import { cryptoRandom, type RandomSource } from '../crypto/backend.ts';
import { equalBytes } from '../crypto/bytes.ts';
import { makeCipher, type PacketCipher, noneCipher } from './cipher.ts';
import { SshReader, SshWriter, fromUtf8, utf8 } from './codec.ts';
import {
  DISCONNECT_BY_APPLICATION,
  DISCONNECT_HOST_KEY_NOT_VERIFIABLE,
  DISCONNECT_KEY_EXCHANGE_FAILED,
  DISCONNECT_MAC_ERROR,
  DISCONNECT_PROTOCOL_ERROR,
  MSG_DEBUG,
  MSG_DISCONNECT,
  MSG_IGNORE,
  MSG_KEXINIT,
  MSG_KEX_ECDH_INIT,
  MSG_KEX_ECDH_REPLY,
  MSG_NEWKEYS,
  MSG_UNIMPLEMENTED,
} from './constants.ts';
import { SshError, toSshError } from './errors.ts';
import {
  clientKexInit,
  deriveKey,
  serverKexInit,
  ecdhKeyPair,
  ecdhShared,
  encodeKexInit,
  exchangeHash,
  negotiate,
  parseKexInit,
  type EcdhKeyPair,
  type Negotiated,
} from './kex.ts';
import { fingerprintSha256, keyBlobType, verifyEd25519, type SshEd25519Key } from './keys.ts';
import { PacketDecoder, encodePacket } from './packet.ts';

/** A reliable, ordered byte stream: a TCP socket, a netstack connection, a WebSocket, … */
export interface SshDuplex {
  write(bytes: Uint8Array): void;
  onData(cb: (bytes: Uint8Array) => void): void;
  /** Called once when the stream ends or fails. */
  onClose(cb: (err?: unknown) => void): void;
  close(): void;
}

/** Decides whether to trust the server's host key (blob as on the wire, fingerprint `SHA256:…`). */
export type HostKeyVerifier = (keyBlob: Uint8Array, fingerprint: string) => boolean | Promise<boolean>;

interface CommonTransportOptions {
  random?: RandomSource;
  /** Start a re-key after sending this many bytes since the last one; default 1 GiB (OpenSSH's RekeyLimit default is similar). */
  rekeyAfterBytes?: number;
}

/** The client role (the default). */
export interface TransportOptions extends CommonTransportOptions {
  role?: 'client';
  verifyHostKey: HostKeyVerifier;
  /** Our identification string, default `SSH-2.0-Pierce_0.1`. */
  clientVersion?: string;
}

/** The server role: answers key exchanges with `hostKey`. */
export interface ServerTransportOptions extends CommonTransportOptions {
  role: 'server';
  hostKey: SshEd25519Key;
  /** Our identification string, default `SSH-2.0-Pierce_1.0`. */
  serverVersion?: string;
}

export const DEFAULT_CLIENT_VERSION = 'SSH-2.0-Pierce_0.1';
export const DEFAULT_SERVER_VERSION = 'SSH-2.0-Pierce_1.0';
const DEFAULT_REKEY_BYTES = 1024 * 1024 * 1024;

interface KexState {
  ourInit: Uint8Array;
  theirInit?: Uint8Array;
  neg?: Negotiated;
  ecdh?: EcdhKeyPair;
  /** Keys computed from the ECDH reply, waiting for NEWKEYS. */
  rxPending?: PacketCipher;
  txPending?: PacketCipher;
  /** Host key accepted (initial KEX: the callback said yes). */
  hostKeyOk: boolean;
  sentNewKeys: boolean;
  gotNewKeys: boolean;
  ignoreNext: boolean;
}

export class SshTransport {
  readonly role: 'client' | 'server';
  /** The client's identification line (ours in the client role; the peer's, once read, in the server role). */
  clientVersion: string | undefined;
  /** The server's identification line (the peer's in the client role; ours in the server role). */
  serverVersion: string | undefined;
  /** H of the first key exchange (RFC 4253 §7.2). */
  sessionId: Uint8Array | undefined;
  /** The server's host key blob (in the server role, ours). */
  hostKey: Uint8Array | undefined;
  /** Negotiated algorithms of the latest key exchange. */
  algorithms: Negotiated | undefined;
  /** Set once closed; the reason. */
  closedWith: SshError | undefined;
  /** Sequence number of the packet being dispatched (for SSH_MSG_UNIMPLEMENTED). */
  currentSeq = 0;
  /** Receives every payload that is not a transport-layer message. */
  onMessage: (payload: Uint8Array) => void = () => {};
  private readonly closeListeners: Array<(err: SshError) => void> = [];
  private readonly decoder = new PacketDecoder();
  private readonly random: RandomSource;
  private txCipher: PacketCipher = noneCipher;
  private txSeq = 0;
  /** Bytes written since the last key exchange began. */
  private txBytes = 0;
  private readonly rekeyAfterBytes: number;
  private readonly serverKey: SshEd25519Key | undefined;
  private kex: KexState | undefined;
  private kexCount = 0;
  private strict = false;
  /** Payloads from the layers above, held while a key exchange runs. */
  private held: Uint8Array[] = [];
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private rejectReady!: (e: SshError) => void;

  constructor(
    private readonly duplex: SshDuplex,
    private readonly opts: TransportOptions | ServerTransportOptions,
  ) {
    this.random = opts.random ?? cryptoRandom;
    this.rekeyAfterBytes = opts.rekeyAfterBytes ?? DEFAULT_REKEY_BYTES;
    let ours: string;
    if (opts.role === 'server') {
      this.role = 'server';
      this.serverKey = opts.hostKey;
      this.hostKey = opts.hostKey.publicBlob();
      ours = this.serverVersion = opts.serverVersion ?? DEFAULT_SERVER_VERSION;
      this.decoder.maxPreLines = 0;
    } else {
      this.role = 'client';
      ours = this.clientVersion = opts.clientVersion ?? DEFAULT_CLIENT_VERSION;
    }
    this.ready = new Promise((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    this.ready.catch(() => {}); // observed through closedWith / onClose as well
    duplex.onData((b) => this.receive(b));
    duplex.onClose((err) => this.fail(new SshError('SSH_CLOSED', 'the connection closed' + (err ? `: ${(err as Error).message ?? err}` : ''), { cause: err }), false));
    duplex.write(utf8(`${ours}\r\n`));
    this.startKex();
  }

  /** The peer's identification line, once received. */
  get peerVersion(): string | undefined {
    return this.role === 'client' ? this.serverVersion : this.clientVersion;
  }

  /** Whether strict KEX (kex-strict-s-v00@openssh.com) is in force. */
  get strictKex(): boolean {
    return this.strict;
  }
  /** Key exchanges completed (1 after the handshake; more after re-keys). */
  get keyExchanges(): number {
    return this.kexCount;
  }

  onClose(cb: (err: SshError) => void): void {
    if (this.closedWith) cb(this.closedWith);
    else this.closeListeners.push(cb);
  }

  /** Sends a payload (held while a key exchange is in progress). */
  send(payload: Uint8Array): void {
    if (this.closedWith) throw this.closedWith;
    if (this.kex) this.held.push(payload);
    else {
      this.writePacket(payload);
      if (this.txBytes >= this.rekeyAfterBytes) this.rekey();
    }
  }

  /** Starts a key exchange now (no-op while one runs, before the first completes, or after close). */
  rekey(): void {
    if (this.closedWith || this.kex || this.kexCount === 0) return;
    this.startKex();
  }

  /** Closes with SSH_MSG_DISCONNECT (by application) and SSH_CLOSED. */
  close(description = 'bye'): void {
    this.fail(new SshError('SSH_CLOSED', `closed locally: ${description}`), true, DISCONNECT_BY_APPLICATION);
  }

  /** Closes the connection because of `err`; idempotent. */
  fail(err: SshError, sendDisconnect = true, reason?: number): void {
    if (this.closedWith) return;
    this.closedWith = err;
    if (sendDisconnect && err.code !== 'SSH_DISCONNECTED' && err.code !== 'SSH_MAC') {
      try {
        const code = reason ?? reasonFor(err);
        this.writePacket(new SshWriter(64).byte(MSG_DISCONNECT).uint32(code).string(err.message.slice(0, 200)).string('').bytes());
      } catch {
        /* best effort */
      }
    }
    try {
      this.duplex.close();
    } catch {
      /* ignore */
    }
    this.rejectReady(err);
    for (const cb of this.closeListeners.splice(0)) {
      try {
        cb(err);
      } catch {
        /* listeners must not break the close */
      }
    }
  }

  private writePacket(payload: Uint8Array): void {
    const wire = encodePacket(this.txCipher, this.txSeq, payload, this.random);
    this.txSeq = (this.txSeq + 1) >>> 0;
    this.txBytes += wire.length;
    this.duplex.write(wire);
  }

  private receive(chunk: Uint8Array): void {
    if (this.closedWith) return;
    try {
      this.decoder.push(chunk);
      for (;;) {
        if (this.closedWith) return;
        const p = this.decoder.next();
        if (p === undefined) break;
        this.currentSeq = (this.decoder.seq - 1) >>> 0;
        this.notePeerVersion();
        this.dispatch(p);
      }
      this.notePeerVersion();
    } catch (e) {
      this.fail(toSshError(e));
    }
  }

  private notePeerVersion(): void {
    const v = this.decoder.serverVersion;
    if (v === undefined) return;
    if (this.role === 'client') this.serverVersion ??= v;
    else this.clientVersion ??= v;
  }

  private startKex(): void {
    this.txBytes = 0;
    const cookie = this.random(16);
    const init = encodeKexInit(this.role === 'client' ? clientKexInit(cookie) : serverKexInit(cookie));
    this.kex = { ourInit: init, hostKeyOk: false, sentNewKeys: false, gotNewKeys: false, ignoreNext: false };
    this.writePacket(init);
  }

  private dispatch(p: Uint8Array): void {
    const type = p[0]!;
    const initial = this.kexCount === 0;
    if (type === MSG_DISCONNECT) {
      const r = new SshReader(p, 'DISCONNECT');
      r.byte();
      const code = r.uint32();
      const desc = fromUtf8(r.string());
      throw new SshError('SSH_DISCONNECTED', `${this.role === 'client' ? 'server' : 'client'} disconnected (reason ${code}): ${desc}`);
    }
    if (initial && this.strict && (type < MSG_KEXINIT || type > MSG_KEX_ECDH_REPLY)) {
      throw new SshError('SSH_PROTOCOL', `message ${type} during the initial strict key exchange`);
    }
    if (type === MSG_IGNORE || type === MSG_DEBUG || type === MSG_UNIMPLEMENTED) return;
    if (type === MSG_KEXINIT) return this.onKexInit(p);
    if (type >= 21 && type <= 49) {
      if (!this.kex?.theirInit) throw new SshError('SSH_PROTOCOL', `key exchange message ${type} outside a key exchange`);
      if (this.kex.ignoreNext && type >= 30) {
        this.kex.ignoreNext = false;
        return;
      }
      if (type === MSG_KEX_ECDH_REPLY && this.role === 'client') return this.onEcdhReply(p);
      if (type === MSG_KEX_ECDH_INIT && this.role === 'server') return this.onEcdhInit(p);
      if (type === MSG_NEWKEYS) return this.onNewKeys(p);
      throw new SshError('SSH_PROTOCOL', `unexpected key exchange message ${type}`);
    }
    if (initial) throw new SshError('SSH_PROTOCOL', `message ${type} before the first key exchange completed`);
    this.onMessage(p);
  }

  private onKexInit(p: Uint8Array): void {
    if (this.kex?.theirInit) throw new SshError('SSH_PROTOCOL', 'second KEXINIT during a key exchange');
    const theirs = parseKexInit(p);
    if (!this.kex) {
      // A re-key started by the peer.
      this.startKex();
    }
    const kex = this.kex!;
    const ours = parseKexInit(kex.ourInit);
    const neg = this.role === 'client' ? negotiate(ours, theirs, 'server') : negotiate(theirs, ours, 'client');
    if (this.kexCount === 0) {
      this.strict = neg.strict;
      if (this.strict && this.decoder.received !== 1) throw new SshError('SSH_PROTOCOL', 'strict KEX: KEXINIT was not the first packet');
    }
    kex.theirInit = p;
    kex.neg = neg;
    kex.ignoreNext = neg.ignoreGuess;
    if (this.role === 'server') return; // the client speaks next: KEX_ECDH_INIT
    kex.ecdh = ecdhKeyPair(this.random);
    this.writePacket(new SshWriter(48).byte(MSG_KEX_ECDH_INIT).string(kex.ecdh.pub).bytes());
  }

  /** Server role (RFC 5656 §4 / RFC 8731): Q_C in, K_S || Q_S || signature of H out, then NEWKEYS. */
  private onEcdhInit(p: Uint8Array): void {
    const kex = this.kex!;
    if (kex.rxPending) throw new SshError('SSH_PROTOCOL', 'second KEX_ECDH_INIT in one key exchange');
    const r = new SshReader(p, 'KEX_ECDH_INIT');
    r.byte();
    const clientPub = Uint8Array.from(r.string());
    r.end();
    const eph = ecdhKeyPair(this.random);
    const shared = ecdhShared(eph.priv, clientPub);
    const hostKey = this.hostKey!;
    const h = exchangeHash({
      clientVersion: this.clientVersion!,
      serverVersion: this.serverVersion!,
      clientKexInit: kex.theirInit!,
      serverKexInit: kex.ourInit,
      hostKeyBlob: hostKey,
      clientPub,
      serverPub: eph.pub,
      shared,
    });
    const sid = this.sessionId ?? h;
    kex.txPending = makeCipher(kex.neg!.encS2C, (kind, len) => deriveKey(shared, h, kind === 'iv' ? 'B' : 'D', sid, len));
    kex.rxPending = makeCipher(kex.neg!.encC2S, (kind, len) => deriveKey(shared, h, kind === 'iv' ? 'A' : 'C', sid, len));
    shared.fill(0);
    eph.priv.fill(0);
    const sig = this.serverKey!.sign(h);
    this.writePacket(new SshWriter(256).byte(MSG_KEX_ECDH_REPLY).string(hostKey).string(eph.pub).string(sig).bytes());
    this.sendNewKeys(kex, h);
  }

  private onEcdhReply(p: Uint8Array): void {
    const kex = this.kex!;
    if (!kex.ecdh || kex.rxPending) throw new SshError('SSH_PROTOCOL', 'unexpected KEX_ECDH_REPLY');
    const r = new SshReader(p, 'KEX_ECDH_REPLY');
    r.byte();
    const hostKey = Uint8Array.from(r.string());
    const serverPub = r.string();
    const sig = r.string();
    r.end();
    const keyType = keyBlobType(hostKey);
    if (keyType !== kex.neg!.hostKey) throw new SshError('SSH_KEX', `host key is ${keyType}, negotiated ${kex.neg!.hostKey}`);
    const shared = ecdhShared(kex.ecdh.priv, serverPub);
    const h = exchangeHash({
      clientVersion: this.clientVersion!,
      serverVersion: this.serverVersion!,
      clientKexInit: kex.ourInit,
      serverKexInit: kex.theirInit!,
      hostKeyBlob: hostKey,
      clientPub: kex.ecdh.pub,
      serverPub,
      shared,
    });
    if (!verifyEd25519(hostKey, sig, h)) throw new SshError('SSH_KEX', 'host key signature over the exchange hash does not verify');
    const sid = this.sessionId ?? h;
    // RFC 4253 §7.2: A/B IVs, C/D keys (client-to-server / server-to-client).
    kex.txPending = makeCipher(kex.neg!.encC2S, (kind, len) => deriveKey(shared, h, kind === 'iv' ? 'A' : 'C', sid, len));
    kex.rxPending = makeCipher(kex.neg!.encS2C, (kind, len) => deriveKey(shared, h, kind === 'iv' ? 'B' : 'D', sid, len));
    shared.fill(0);
    kex.ecdh.priv.fill(0);
    if (this.hostKey) {
      // Re-key: the host key must not change.
      if (!equalBytes(this.hostKey, hostKey)) throw new SshError('SSH_HOSTKEY_REJECTED', 'host key changed during a re-key');
      this.sendNewKeys(kex, h);
      return;
    }
    const verify = (this.opts as TransportOptions).verifyHostKey;
    const verdict = (async () => verify(hostKey, fingerprintSha256(hostKey)))();
    verdict.then(
      (ok) => {
        if (this.closedWith || this.kex !== kex) return;
        if (!ok) {
          this.fail(new SshError('SSH_HOSTKEY_REJECTED', `host key ${fingerprintSha256(hostKey)} refused by verifyHostKey`), true, DISCONNECT_HOST_KEY_NOT_VERIFIABLE);
          return;
        }
        this.hostKey = hostKey;
        this.sendNewKeys(kex, h);
      },
      (e: unknown) => {
        if (this.closedWith || this.kex !== kex) return;
        // An SshError from the verifier (e.g. KnownHosts' SSH_HOSTKEY_MISMATCH) is what connect() rejects with.
        const err = e instanceof SshError ? e : new SshError('SSH_HOSTKEY_REJECTED', `verifyHostKey threw: ${(e as Error)?.message ?? e}`, { cause: e });
        this.fail(err, true, DISCONNECT_HOST_KEY_NOT_VERIFIABLE);
      },
    );
  }

  private sendNewKeys(kex: KexState, h: Uint8Array): void {
    try {
      this.sessionId ??= h;
      this.writePacket(Uint8Array.of(MSG_NEWKEYS));
      this.txCipher = kex.txPending!;
      if (this.strict) this.txSeq = 0;
      kex.sentNewKeys = true;
      this.maybeFinishKex(kex);
    } catch (e) {
      this.fail(toSshError(e));
    }
  }

  private onNewKeys(p: Uint8Array): void {
    const kex = this.kex!;
    if (p.length !== 1) throw new SshError('SSH_PROTOCOL', 'NEWKEYS with trailing bytes');
    if (!kex.rxPending || kex.gotNewKeys) throw new SshError('SSH_PROTOCOL', 'NEWKEYS before the key exchange reply');
    // A client may send NEWKEYS only after reading ours (it needs KEX_ECDH_REPLY first), so in the server role rxPending implies sentNewKeys.
    this.decoder.cipher = kex.rxPending;
    if (this.strict) this.decoder.seq = 0;
    kex.gotNewKeys = true;
    this.maybeFinishKex(kex);
  }

  private maybeFinishKex(kex: KexState): void {
    if (!kex.sentNewKeys || !kex.gotNewKeys || this.kex !== kex) return;
    this.kex = undefined;
    this.algorithms = kex.neg;
    this.kexCount++;
    const held = this.held;
    this.held = [];
    for (const p of held) this.writePacket(p);
    this.resolveReady();
  }
}

function reasonFor(err: SshError): number {
  switch (err.code) {
    case 'SSH_KEX':
      return DISCONNECT_KEY_EXCHANGE_FAILED;
    case 'SSH_MAC':
      return DISCONNECT_MAC_ERROR;
    case 'SSH_HOSTKEY_REJECTED':
    case 'SSH_HOSTKEY_MISMATCH':
      return DISCONNECT_HOST_KEY_NOT_VERIFIABLE;
    case 'SSH_CLOSED':
      return DISCONNECT_BY_APPLICATION;
    default:
      return DISCONNECT_PROTOCOL_ERROR;
  }
}
