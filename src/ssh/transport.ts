/**
 * The SSH transport layer (RFC 4253) over any byte duplex: identification exchange, binary
 * packets, key exchange (curve25519-sha256, ssh-ed25519 host keys, chacha20-poly1305@openssh.com)
 * with OpenSSH's strict KEX, and re-keys started by either side.
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
  ecdhKeyPair,
  ecdhShared,
  encodeKexInit,
  exchangeHash,
  negotiate,
  parseKexInit,
  type EcdhKeyPair,
  type Negotiated,
} from './kex.ts';
import { fingerprintSha256, keyBlobType, verifyEd25519 } from './keys.ts';
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

export interface TransportOptions {
  verifyHostKey: HostKeyVerifier;
  random?: RandomSource;
  /** Our identification string, default `SSH-2.0-Pierce_0.1`. */
  clientVersion?: string;
}

export const DEFAULT_CLIENT_VERSION = 'SSH-2.0-Pierce_0.1';

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
  readonly clientVersion: string;
  serverVersion: string | undefined;
  /** H of the first key exchange (RFC 4253 §7.2). */
  sessionId: Uint8Array | undefined;
  /** The server's host key blob. */
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
    private readonly opts: TransportOptions,
  ) {
    this.random = opts.random ?? cryptoRandom;
    this.clientVersion = opts.clientVersion ?? DEFAULT_CLIENT_VERSION;
    this.ready = new Promise((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    this.ready.catch(() => {}); // observed through closedWith / onClose as well
    duplex.onData((b) => this.receive(b));
    duplex.onClose((err) => this.fail(new SshError('SSH_CLOSED', 'the connection closed' + (err ? `: ${(err as Error).message ?? err}` : ''), { cause: err }), false));
    duplex.write(utf8(`${this.clientVersion}\r\n`));
    this.startKex();
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
    else this.writePacket(payload);
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
        if (this.serverVersion === undefined) this.serverVersion = this.decoder.serverVersion;
        this.dispatch(p);
      }
      if (this.serverVersion === undefined) this.serverVersion = this.decoder.serverVersion;
    } catch (e) {
      this.fail(toSshError(e));
    }
  }

  private startKex(): void {
    const init = encodeKexInit(clientKexInit(this.random(16)));
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
      throw new SshError('SSH_DISCONNECTED', `server disconnected (reason ${code}): ${desc}`);
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
      if (type === MSG_KEX_ECDH_REPLY) return this.onEcdhReply(p);
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
      // A re-key started by the server.
      this.startKex();
    }
    const kex = this.kex!;
    const ours = parseKexInit(kex.ourInit);
    const neg = negotiate(ours, theirs);
    if (this.kexCount === 0) {
      this.strict = neg.strict;
      if (this.strict && this.decoder.received !== 1) throw new SshError('SSH_PROTOCOL', 'strict KEX: KEXINIT was not the first packet');
    }
    kex.theirInit = p;
    kex.neg = neg;
    kex.ignoreNext = neg.ignoreGuess;
    kex.ecdh = ecdhKeyPair(this.random);
    this.writePacket(new SshWriter(48).byte(MSG_KEX_ECDH_INIT).string(kex.ecdh.pub).bytes());
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
      clientVersion: this.clientVersion,
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
    const verdict = (async () => this.opts.verifyHostKey(hostKey, fingerprintSha256(hostKey)))();
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
