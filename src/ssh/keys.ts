/**
 * ssh-ed25519 keys (RFC 8709): public key blobs, signatures, OpenSSH `SHA256:` fingerprints and
 * `authorized_keys` lines.
 *
 *   public key blob:  string "ssh-ed25519" || string key (32)
 *   signature blob:   string "ssh-ed25519" || string signature (64)
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { cryptoRandom, type RandomSource } from '../crypto/backend.ts';
import { fromBase64, toBase64 } from '../crypto/bytes.ts';
import { SshReader, SshWriter } from './codec.ts';
import { HOSTKEY_ED25519 } from './constants.ts';
import { SshError } from './errors.ts';

/** The wire blob of an ed25519 public key. */
export function ed25519PublicBlob(publicKey: Uint8Array): Uint8Array {
  return new SshWriter(51).string(HOSTKEY_ED25519).string(publicKey).bytes();
}

/** The algorithm name of a public key blob (its first string), or throws SSH_PROTOCOL. */
export function keyBlobType(blob: Uint8Array): string {
  return new SshReader(blob, 'public key blob').text();
}

/** The 32-byte key inside an ssh-ed25519 public key blob; throws SSH_KEX when it is not one. */
export function parseEd25519PublicBlob(blob: Uint8Array): Uint8Array {
  const r = new SshReader(blob, 'ssh-ed25519 public key');
  const type = r.text();
  if (type !== HOSTKEY_ED25519) throw new SshError('SSH_KEX', `host key type ${JSON.stringify(type)} is not ${HOSTKEY_ED25519}`);
  const key = r.string();
  r.end();
  if (key.length !== 32) throw new SshError('SSH_KEX', `ssh-ed25519 key is ${key.length} bytes, not 32`);
  return key;
}

/** Verifies an ssh-ed25519 signature blob over `data` with a public key blob. */
export function verifyEd25519(publicBlob: Uint8Array, signatureBlob: Uint8Array, data: Uint8Array): boolean {
  const pub = parseEd25519PublicBlob(publicBlob);
  const r = new SshReader(signatureBlob, 'ssh-ed25519 signature');
  const type = r.text();
  if (type !== HOSTKEY_ED25519) throw new SshError('SSH_KEX', `signature type ${JSON.stringify(type)} is not ${HOSTKEY_ED25519}`);
  const sig = r.string();
  r.end();
  if (sig.length !== 64) throw new SshError('SSH_KEX', `ssh-ed25519 signature is ${sig.length} bytes, not 64`);
  try {
    return ed25519.verify(sig, data, pub);
  } catch {
    return false;
  }
}

/** OpenSSH's fingerprint of a public key blob: `SHA256:` + unpadded base64 of SHA-256(blob). */
export function fingerprintSha256(blob: Uint8Array): string {
  return `SHA256:${toBase64(sha256(blob)).replace(/=+$/, '')}`;
}

/** Parses an `authorized_keys` / `.pub` line (`ssh-ed25519 AAAA… comment`) into its blob. */
export function parsePublicKeyLine(line: string): { type: string; blob: Uint8Array; comment: string } {
  const parts = line.trim().split(/\s+/);
  const blob = parts[1] !== undefined ? fromBase64(parts[1]) : null;
  if (!blob || parts[0] === undefined) throw new SshError('SSH_PROTOCOL', 'not an OpenSSH public key line');
  const type = keyBlobType(blob);
  if (type !== parts[0]) throw new SshError('SSH_PROTOCOL', `key line says ${parts[0]} but the blob is ${type}`);
  return { type, blob, comment: parts.slice(2).join(' ') };
}

/** A user's ed25519 key pair for publickey authentication. The seed never leaves this object. */
export class SshEd25519Key {
  private readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;

  private constructor(seed: Uint8Array) {
    if (seed.length !== 32) throw new SshError('SSH_PROTOCOL', `an ed25519 seed is 32 bytes, got ${seed.length}`);
    this.seed = Uint8Array.from(seed);
    this.publicKey = ed25519.getPublicKey(this.seed);
  }

  static generate(random: RandomSource = cryptoRandom): SshEd25519Key {
    return new SshEd25519Key(random(32));
  }

  /** From the 32-byte private seed (RFC 8032 §5.1.5 secret key). */
  static fromSeed(seed: Uint8Array): SshEd25519Key {
    return new SshEd25519Key(seed);
  }

  readonly algorithm = HOSTKEY_ED25519;

  /** The public key blob (RFC 8709 §4). */
  publicBlob(): Uint8Array {
    return ed25519PublicBlob(this.publicKey);
  }

  /** An ssh-ed25519 signature blob over `data`. */
  sign(data: Uint8Array): Uint8Array {
    return new SshWriter(83).string(HOSTKEY_ED25519).string(ed25519.sign(data, this.seed)).bytes();
  }

  /** `ssh-ed25519 AAAA… comment`, for authorized_keys. */
  authorizedKeysLine(comment = ''): string {
    return publicKeyLine(this.publicBlob(), comment);
  }

  fingerprint(): string {
    return fingerprintSha256(this.publicBlob());
  }
}

// ---- Host keys (server role) ----------------------------------------------------------------

/** A new ed25519 host key: its 32-byte private seed (keep it secret; `serveSsh` signs with it). */
export function generateHostKeySeed(random: RandomSource = cryptoRandom): Uint8Array {
  return random(32);
}

/** The ssh-ed25519 public key blob of a host key seed. */
export function hostKeyPublicBlob(seed: Uint8Array): Uint8Array {
  return SshEd25519Key.fromSeed(seed).publicBlob();
}

/** OpenSSH public key line `ssh-ed25519 AAAA… [comment]` for a public key blob. */
export function publicKeyLine(blob: Uint8Array, comment = ''): string {
  const line = `${keyBlobType(blob)} ${toBase64(blob)}`;
  return comment ? `${line} ${comment}` : line;
}
