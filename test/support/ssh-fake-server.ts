/**
 * An in-memory scripted SSH server built from src/ssh's own codecs, for the client's unit tests
 * (test/unit/ssh-client.test.ts, test/unit/ssh-known-hosts.test.ts): version line, KEXINIT,
 * curve25519 + ssh-ed25519 key exchange (strict KEX unless told otherwise), chacha20-poly1305
 * afterwards; every later client payload goes to the script's onPayload.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { expect } from 'vitest';
import { ChaCha20Poly1305OpenSSH, noneCipher, type PacketCipher } from '../../src/ssh/cipher.ts';
import { SshReader, SshWriter } from '../../src/ssh/codec.ts';
import { deriveKey, ecdhKeyPair, ecdhShared, encodeKexInit, exchangeHash, type KexInit } from '../../src/ssh/kex.ts';
import { ed25519PublicBlob, SshEd25519Key } from '../../src/ssh/keys.ts';
import { PacketDecoder, encodePacket } from '../../src/ssh/packet.ts';
import type { SshDuplex } from '../../src/ssh/index.ts';

const enc = new TextEncoder();
const rnd = (n: number): Uint8Array => crypto.getRandomValues(new Uint8Array(n));
export const SERVER_VERSION = 'SSH-2.0-FakeServer_1';
export const HOST_SEED = new Uint8Array(32).fill(9);
export const HOST_BLOB = ed25519PublicBlob(ed25519.getPublicKey(HOST_SEED));

export interface Script {
  /** Extra payloads sent (unencrypted) right before the server's KEXINIT. */
  beforeKexInit?: Uint8Array[];
  strict?: boolean;
  corruptSignature?: boolean;
  /** The host key's ed25519 seed; default HOST_SEED. */
  hostSeed?: Uint8Array;
  /** Called with each post-kex client payload; return payloads to send back. */
  onPayload?: (p: Uint8Array, s: FakeServer) => void;
}

export class FakeServer {
  private decoder = new PacketDecoder();
  private tx: PacketCipher = noneCipher;
  private txSeq = 0;
  private clientKexInit?: Uint8Array;
  private serverKexInit: Uint8Array;
  readonly hostSeed: Uint8Array;
  /** The host key blob this server presents. */
  readonly hostBlob: Uint8Array;
  private clientVersion = '';
  private rxPending?: PacketCipher;
  sessionId?: Uint8Array;
  closed = false;
  readonly duplex: SshDuplex;
  private toClient: (b: Uint8Array) => void = () => {};
  private closeClient: () => void = () => {};

  constructor(private readonly script: Script) {
    this.hostSeed = script.hostSeed ?? HOST_SEED;
    this.hostBlob = ed25519PublicBlob(ed25519.getPublicKey(this.hostSeed));
    const ki: KexInit = {
      cookie: new Uint8Array(16),
      kex: ['curve25519-sha256', ...(script.strict === false ? [] : ['kex-strict-s-v00@openssh.com'])],
      hostKey: ['ssh-ed25519'],
      encC2S: ['chacha20-poly1305@openssh.com'],
      encS2C: ['chacha20-poly1305@openssh.com'],
      macC2S: ['hmac-sha2-256'],
      macS2C: ['hmac-sha2-256'],
      compC2S: ['none'],
      compS2C: ['none'],
      langC2S: [],
      langS2C: [],
      firstKexFollows: false,
    };
    this.serverKexInit = encodeKexInit(ki);
    const self = this;
    this.duplex = {
      write: (b) => queueMicrotask(() => self.receive(b)),
      onData: (cb) => (self.toClient = cb),
      onClose: (cb) => (self.closeClient = cb),
      close: () => {
        self.closed = true;
      },
    };
    queueMicrotask(() => {
      this.toClient(enc.encode(`${SERVER_VERSION}\r\n`));
      for (const p of script.beforeKexInit ?? []) this.send(p);
      this.send(this.serverKexInit);
    });
  }

  send(payload: Uint8Array): void {
    if (this.closed) return;
    const w = encodePacket(this.tx, this.txSeq, payload, rnd);
    this.txSeq = (this.txSeq + 1) >>> 0;
    this.toClient(w);
  }
  sendRaw(b: Uint8Array): void {
    if (!this.closed) this.toClient(b);
  }
  hangUp(): void {
    this.closeClient();
  }

  private receive(b: Uint8Array): void {
    if (this.closed) return;
    this.decoder.push(b);
    for (let p = this.decoder.next(); p !== undefined; p = this.decoder.next()) {
      if (!this.clientVersion) this.clientVersion = this.decoder.serverVersion!;
      this.onPacket(p);
    }
    if (!this.clientVersion && this.decoder.serverVersion) this.clientVersion = this.decoder.serverVersion;
  }

  private onPacket(p: Uint8Array): void {
    const type = p[0]!;
    if (type === 20) {
      this.clientKexInit = p;
      return;
    }
    if (type === 30) {
      const r = new SshReader(p);
      r.byte();
      const q = r.string();
      const eph = ecdhKeyPair(rnd);
      const k = ecdhShared(eph.priv, q);
      const h = exchangeHash({
        clientVersion: this.clientVersion,
        serverVersion: SERVER_VERSION,
        clientKexInit: this.clientKexInit!,
        serverKexInit: this.serverKexInit,
        hostKeyBlob: this.hostBlob,
        clientPub: q,
        serverPub: eph.pub,
        shared: k,
      });
      this.sessionId ??= h;
      const sig = ed25519.sign(h, this.hostSeed);
      if (this.script.corruptSignature) sig[0]! ^= 1;
      const sigBlob = new SshWriter().string('ssh-ed25519').string(sig).bytes();
      this.send(new SshWriter().byte(31).string(this.hostBlob).string(eph.pub).string(sigBlob).bytes());
      this.send(Uint8Array.of(21));
      this.tx = new ChaCha20Poly1305OpenSSH(deriveKey(k, h, 'D', this.sessionId, 64));
      if (this.script.strict !== false) this.txSeq = 0;
      this.rxPending = new ChaCha20Poly1305OpenSSH(deriveKey(k, h, 'C', this.sessionId, 64));
      return;
    }
    if (type === 21) {
      this.decoder.cipher = this.rxPending!;
      if (this.script.strict !== false) this.decoder.seq = 0;
      return;
    }
    this.script.onPayload?.(p, this);
  }
}

export const user = SshEd25519Key.fromSeed(new Uint8Array(32).fill(3));

/** A server script that accepts `user`'s publickey and runs one session channel. */
export function acceptingServer(onChannel?: (p: Uint8Array, s: FakeServer) => void): Script {
  return {
    onPayload: (p, s) => {
      const r = new SshReader(p);
      const type = r.byte();
      if (type === 5) return s.send(new SshWriter().byte(6).string('ssh-userauth').bytes());
      if (type === 50) {
        const name = r.text();
        r.text();
        const method = r.text();
        if (method !== 'publickey') return s.send(new SshWriter().byte(51).nameList(['publickey']).bool(false).bytes());
        expect(name).toBe('root');
        r.bool();
        r.text();
        const blob = r.string();
        const sigBlob = new SshReader(r.string());
        sigBlob.text();
        const sig = sigBlob.string();
        const signed = new SshWriter().string(s.sessionId!).raw(p.subarray(0, p.length - 4 - 83)).bytes();
        const authorized = Buffer.from(blob).equals(Buffer.from(user.publicBlob()));
        const ok = authorized && ed25519.verify(sig, signed, user.publicKey);
        return s.send(ok ? Uint8Array.of(52) : new SshWriter().byte(51).nameList(['publickey']).bool(false).bytes());
      }
      onChannel?.(p, s);
    },
  };
}

