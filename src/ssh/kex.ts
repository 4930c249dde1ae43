/**
 * Algorithm negotiation (RFC 4253 §7.1), curve25519-sha256 key exchange (RFC 8731) and key
 * derivation (RFC 4253 §7.2).
 *
 * SSH_MSG_KEXINIT:
 *   byte 20 | byte[16] cookie | name-list kex | name-list host key | name-list enc c2s, s2c |
 *   name-list mac c2s, s2c | name-list comp c2s, s2c | name-list lang c2s, s2c |
 *   boolean first_kex_packet_follows | uint32 0
 *
 * Exchange hash H = SHA-256(string V_C || string V_S || string I_C || string I_S || string K_S ||
 *                           string Q_C || string Q_S || mpint K)
 * where K is the X25519 output read as a big-endian unsigned integer (RFC 8731 §3.1).
 */
import { x25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { isZero } from '../crypto/bytes.ts';
import { CIPHERS } from './cipher.ts';
import { SshReader, SshWriter, utf8 } from './codec.ts';
import {
  HOSTKEY_ED25519,
  KEX_CURVE25519,
  KEX_CURVE25519_LIBSSH,
  KEX_STRICT_CLIENT,
  KEX_STRICT_SERVER,
  MSG_KEXINIT,
} from './constants.ts';
import { SshError } from './errors.ts';

export interface KexInit {
  cookie: Uint8Array;
  kex: string[];
  hostKey: string[];
  encC2S: string[];
  encS2C: string[];
  macC2S: string[];
  macS2C: string[];
  compC2S: string[];
  compS2C: string[];
  langC2S: string[];
  langS2C: string[];
  firstKexFollows: boolean;
}

/** What this client offers. MACs are listed for peers that insist on a match; AEAD ignores them. */
export function clientKexInit(cookie: Uint8Array): KexInit {
  return {
    cookie,
    kex: [KEX_CURVE25519, KEX_CURVE25519_LIBSSH, KEX_STRICT_CLIENT],
    hostKey: [HOSTKEY_ED25519],
    encC2S: [...CIPHERS],
    encS2C: [...CIPHERS],
    macC2S: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-256'],
    macS2C: ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-256'],
    compC2S: ['none'],
    compS2C: ['none'],
    langC2S: [],
    langS2C: [],
    firstKexFollows: false,
  };
}

export function encodeKexInit(k: KexInit): Uint8Array {
  return new SshWriter(512)
    .byte(MSG_KEXINIT)
    .raw(k.cookie)
    .nameList(k.kex)
    .nameList(k.hostKey)
    .nameList(k.encC2S)
    .nameList(k.encS2C)
    .nameList(k.macC2S)
    .nameList(k.macS2C)
    .nameList(k.compC2S)
    .nameList(k.compS2C)
    .nameList(k.langC2S)
    .nameList(k.langS2C)
    .bool(k.firstKexFollows)
    .uint32(0)
    .bytes();
}

export function parseKexInit(payload: Uint8Array): KexInit {
  const r = new SshReader(payload, 'KEXINIT');
  if (r.byte() !== MSG_KEXINIT) throw new SshError('SSH_PROTOCOL', 'not a KEXINIT');
  const k: KexInit = {
    cookie: r.raw(16),
    kex: r.nameList(),
    hostKey: r.nameList(),
    encC2S: r.nameList(),
    encS2C: r.nameList(),
    macC2S: r.nameList(),
    macS2C: r.nameList(),
    compC2S: r.nameList(),
    compS2C: r.nameList(),
    langC2S: r.nameList(),
    langS2C: r.nameList(),
    firstKexFollows: r.bool(),
  };
  r.uint32(); // reserved
  return k;
}

export interface Negotiated {
  kex: string;
  hostKey: string;
  encC2S: string;
  encS2C: string;
  /** The client offered kex-strict-c-v00@openssh.com and the server kex-strict-s-v00@openssh.com. */
  strict: boolean;
  /** The peer sent a guessed KEX packet that is wrong and must be ignored. */
  ignoreGuess: boolean;
}

function pick(what: string, client: string[], server: string[]): string {
  const found = client.find((a) => server.includes(a));
  if (found === undefined) {
    throw new SshError('SSH_KEX', `no common ${what} algorithm (we offer ${client.join(',')}; the server offers ${server.join(',') || 'none'})`);
  }
  return found;
}

/** What the server role offers: the same algorithms, with the server's strict-KEX marker. */
export function serverKexInit(cookie: Uint8Array): KexInit {
  return { ...clientKexInit(cookie), kex: [KEX_CURVE25519, KEX_CURVE25519_LIBSSH, KEX_STRICT_SERVER] };
}

/**
 * RFC 4253 §7.1: for each list, the first client algorithm the server also supports.
 * `guessFrom` is the side whose first_kex_packet_follows matters to us (the peer): when its
 * guess is wrong, `ignoreGuess` tells us to drop its next key exchange packet.
 */
export function negotiate(c: KexInit, s: KexInit, guessFrom: 'client' | 'server' = 'server'): Negotiated {
  const realKex = (l: string[]): string[] => l.filter((a) => a !== KEX_STRICT_CLIENT && a !== KEX_STRICT_SERVER && !a.startsWith('ext-info-'));
  const kex = pick('key exchange', realKex(c.kex), realKex(s.kex));
  const hostKey = pick('host key', c.hostKey, s.hostKey);
  const encC2S = pick('client-to-server cipher', c.encC2S, s.encC2S);
  const encS2C = pick('server-to-client cipher', c.encS2C, s.encS2C);
  pick('client-to-server compression', c.compC2S, s.compC2S);
  pick('server-to-client compression', c.compS2C, s.compS2C);
  const g = guessFrom === 'server' ? s : c;
  const ignoreGuess = g.firstKexFollows && (realKex(g.kex)[0] !== kex || g.hostKey[0] !== hostKey);
  // OpenSSH PROTOCOL §1.10: strict KEX is in force only when both sides offer their marker.
  const strict = c.kex.includes(KEX_STRICT_CLIENT) && s.kex.includes(KEX_STRICT_SERVER);
  return { kex, hostKey, encC2S, encS2C, strict, ignoreGuess };
}

/** An ephemeral X25519 key pair for one exchange. */
export interface EcdhKeyPair {
  priv: Uint8Array;
  pub: Uint8Array;
}

export function ecdhKeyPair(random: (n: number) => Uint8Array): EcdhKeyPair {
  const priv = random(32);
  return { priv, pub: x25519.getPublicKey(priv) };
}

/** X25519 shared secret; SSH_KEX for a bad or low-order peer point (RFC 8731 §3). */
export function ecdhShared(priv: Uint8Array, peerPub: Uint8Array): Uint8Array {
  if (peerPub.length !== 32) throw new SshError('SSH_KEX', `peer ephemeral key is ${peerPub.length} bytes, not 32`);
  let k: Uint8Array;
  try {
    k = x25519.getSharedSecret(priv, peerPub);
  } catch (e) {
    throw new SshError('SSH_KEX', 'peer ephemeral key is invalid', { cause: e });
  }
  if (isZero(k)) throw new SshError('SSH_KEX', 'X25519 shared secret is all zero');
  return k;
}

export interface ExchangeHashInput {
  clientVersion: string;
  serverVersion: string;
  clientKexInit: Uint8Array;
  serverKexInit: Uint8Array;
  hostKeyBlob: Uint8Array;
  clientPub: Uint8Array;
  serverPub: Uint8Array;
  /** The shared secret (raw X25519 output). */
  shared: Uint8Array;
}

export function exchangeHash(x: ExchangeHashInput): Uint8Array {
  return sha256(
    new SshWriter(1024)
      .string(x.clientVersion)
      .string(x.serverVersion)
      .string(x.clientKexInit)
      .string(x.serverKexInit)
      .string(x.hostKeyBlob)
      .string(x.clientPub)
      .string(x.serverPub)
      .mpintBytes(x.shared)
      .bytes(),
  );
}

/**
 * RFC 4253 §7.2: HASH(K || H || letter || session_id), extended with HASH(K || H || K1 || …)
 * until `len` bytes. K is written as an mpint (with its length).
 */
export function deriveKey(shared: Uint8Array, h: Uint8Array, letter: 'A' | 'B' | 'C' | 'D' | 'E' | 'F', sessionId: Uint8Array, len: number): Uint8Array {
  const k = new SshWriter(40).mpintBytes(shared).bytes();
  const out = new Uint8Array(len);
  let have = sha256.create().update(k).update(h).update(utf8(letter)).update(sessionId).digest();
  out.set(have.subarray(0, Math.min(len, have.length)));
  let n = have.length;
  const parts: Uint8Array[] = [have];
  while (n < len) {
    const hh = sha256.create().update(k).update(h);
    for (const p of parts) hh.update(p);
    have = hh.digest();
    parts.push(have);
    out.set(have.subarray(0, Math.min(len - n, have.length)), n);
    n += have.length;
  }
  return out;
}
