/**
 * Packet ciphers for the binary packet protocol (RFC 4253 §6).
 *
 * chacha20-poly1305@openssh.com (OpenSSH PROTOCOL.chacha20poly1305):
 *
 *   key (64 bytes) = K_2 (first 32: payload) || K_1 (last 32: length)
 *   nonce          = uint64 sequence number, big-endian
 *   packet on wire = ChaCha20(K_1, nonce, ctr 0)(uint32 length)        4
 *                 || ChaCha20(K_2, nonce, ctr 1)(padlen || payload || padding)
 *                 || Poly1305(key = ChaCha20(K_2, nonce, ctr 0)[0..32],
 *                             msg = encrypted length || encrypted rest)  16
 *
 * The original ChaCha20 takes a 64-bit counter and a 64-bit nonce; with the counter below 2^32
 * that state equals RFC 8439's with nonce = 0x00000000 || seqnr, which is what is passed here.
 */
import { gcm } from '@noble/ciphers/aes.js';
import { chacha20 } from '@noble/ciphers/chacha.js';
import { poly1305 } from '@noble/ciphers/_poly1305.js';
import { equalBytes } from '../crypto/bytes.ts';
import { SshError } from './errors.ts';

export interface PacketCipher {
  readonly name: string;
  /** Padding alignment. */
  readonly blockSize: number;
  /** Bytes of MAC/tag after each packet. */
  readonly tagLength: number;
  /** Whether the 4-byte length counts toward the block alignment (false for AEAD modes that treat it as AAD). */
  readonly lengthAligned: boolean;
  /** The packet_length field of a packet, from its first 4 bytes on the wire. */
  decryptLength(seq: number, first4: Uint8Array): number;
  /** Verifies and decrypts one whole packet (4 + length + tag bytes); returns padlen||payload||padding. */
  open(seq: number, packet: Uint8Array): Uint8Array;
  /** Encrypts uint32 length || padlen || payload || padding; returns the wire bytes including tag. */
  seal(seq: number, plain: Uint8Array): Uint8Array;
}

/** The "none" cipher used before the first NEWKEYS. */
export const noneCipher: PacketCipher = {
  name: 'none',
  blockSize: 8,
  tagLength: 0,
  lengthAligned: true,
  decryptLength: (_seq, first4) => new DataView(first4.buffer, first4.byteOffset, 4).getUint32(0),
  open: (_seq, packet) => packet.subarray(4),
  seal: (_seq, plain) => plain,
};

function nonceFor(seq: number): Uint8Array {
  const n = new Uint8Array(12);
  new DataView(n.buffer).setUint32(8, seq >>> 0);
  return n;
}

export class ChaCha20Poly1305OpenSSH implements PacketCipher {
  readonly name = 'chacha20-poly1305@openssh.com';
  readonly blockSize = 8;
  readonly tagLength = 16;
  readonly lengthAligned = false;
  private readonly mainKey: Uint8Array;
  private readonly headerKey: Uint8Array;

  constructor(key: Uint8Array) {
    if (key.length !== 64) throw new SshError('SSH_KEX', `chacha20-poly1305@openssh.com needs a 64-byte key, got ${key.length}`);
    this.mainKey = key.slice(0, 32);
    this.headerKey = key.slice(32, 64);
  }

  decryptLength(seq: number, first4: Uint8Array): number {
    const len = chacha20(this.headerKey, nonceFor(seq), first4.slice(0, 4), undefined, 0);
    return new DataView(len.buffer, len.byteOffset, 4).getUint32(0);
  }

  open(seq: number, packet: Uint8Array): Uint8Array {
    if (packet.length < 4 + 16) throw new SshError('SSH_PROTOCOL', 'packet shorter than length + tag');
    const nonce = nonceFor(seq);
    const body = packet.subarray(0, packet.length - 16);
    const tag = packet.subarray(packet.length - 16);
    const polyKey = chacha20(this.mainKey, nonce, new Uint8Array(32), undefined, 0);
    const expect = poly1305(body, polyKey);
    if (!equalBytes(expect, tag)) throw new SshError('SSH_MAC', `packet ${seq}: Poly1305 tag mismatch`);
    // A view, not a copy: chacha20 writes its output to a new array and leaves the input alone.
    return chacha20(this.mainKey, nonce, body.subarray(4), undefined, 1);
  }

  seal(seq: number, plain: Uint8Array): Uint8Array {
    const nonce = nonceFor(seq);
    const out = new Uint8Array(plain.length + 16);
    out.set(chacha20(this.headerKey, nonce, plain.subarray(0, 4), undefined, 0), 0);
    out.set(chacha20(this.mainKey, nonce, plain.subarray(4), undefined, 1), 4);
    const polyKey = chacha20(this.mainKey, nonce, new Uint8Array(32), undefined, 0);
    out.set(poly1305(out.subarray(0, plain.length), polyKey), plain.length);
    return out;
  }
}

/**
 * aes256-gcm@openssh.com (RFC 5647 with OpenSSH's naming; MAC ignored): the packet length is
 * sent in clear as AAD, padlen||payload||padding is AES-GCM encrypted, the 16-byte tag follows.
 * Nonce = 4-byte fixed field || 8-byte invocation counter (both from the derived IV); the
 * counter increments after every packet (RFC 5647 §7.1).
 */
export class Aes256GcmOpenSSH implements PacketCipher {
  readonly name = 'aes256-gcm@openssh.com';
  readonly blockSize = 16;
  readonly tagLength = 16;
  readonly lengthAligned = false;
  private readonly key: Uint8Array;
  private readonly iv: Uint8Array;

  constructor(key: Uint8Array, iv: Uint8Array) {
    if (key.length !== 32 || iv.length !== 12) throw new SshError('SSH_KEX', 'aes256-gcm@openssh.com needs a 32-byte key and a 12-byte IV');
    this.key = Uint8Array.from(key);
    this.iv = Uint8Array.from(iv);
  }

  private nextNonce(): Uint8Array {
    const n = Uint8Array.from(this.iv);
    const v = new DataView(this.iv.buffer, this.iv.byteOffset, 12);
    v.setBigUint64(4, (v.getBigUint64(4) + 1n) & 0xffffffffffffffffn);
    return n;
  }

  decryptLength(_seq: number, first4: Uint8Array): number {
    return new DataView(first4.buffer, first4.byteOffset, 4).getUint32(0);
  }

  open(_seq: number, packet: Uint8Array): Uint8Array {
    if (packet.length < 4 + 16) throw new SshError('SSH_PROTOCOL', 'packet shorter than length + tag');
    try {
      return gcm(this.key, this.nextNonce(), packet.subarray(0, 4)).decrypt(packet.subarray(4));
    } catch (e) {
      throw new SshError('SSH_MAC', 'AES-GCM tag mismatch', { cause: e });
    }
  }

  seal(_seq: number, plain: Uint8Array): Uint8Array {
    const out = new Uint8Array(plain.length + 16);
    out.set(plain.subarray(0, 4));
    out.set(gcm(this.key, this.nextNonce(), plain.subarray(0, 4)).encrypt(plain.subarray(4)), 4);
    return out;
  }
}

/** The cipher names this client offers, most preferred first. */
export const CIPHERS = ['chacha20-poly1305@openssh.com', 'aes256-gcm@openssh.com'] as const;

/** A packet cipher by name, keyed through `derive(letter, length)` (RFC 4253 §7.2 letters). */
export function makeCipher(name: string, derive: (kind: 'key' | 'iv', len: number) => Uint8Array): PacketCipher {
  if (name === 'chacha20-poly1305@openssh.com') return new ChaCha20Poly1305OpenSSH(derive('key', 64));
  if (name === 'aes256-gcm@openssh.com') return new Aes256GcmOpenSSH(derive('key', 32), derive('iv', 12));
  throw new SshError('SSH_KEX', `unsupported cipher ${name}`);
}
