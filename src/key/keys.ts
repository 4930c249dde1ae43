/**
 * Typed keys. A key is never passed around as bare bytes: each kind has its own class so a disco
 * key cannot be used where a node key is expected. All are 32-byte Curve25519 keys.
 *
 * Text forms:
 *   - `toBase64()` / `fromBase64()`: what `wg` prints and reads (standard base64, 44 chars).
 *   - `toString()`: prefixed hex for logs and JSON, Tailscale style: `nodekey:…`, `discokey:…`,
 *     `mkey:…`, `privkey:…` (private keys print only with `toString()` called explicitly).
 *   - `short()`: `[abcde]`, the first five base64 characters, for log lines.
 */
import { x25519 } from '@noble/curves/ed25519.js';
import { cryptoRandom, type RandomSource } from '../crypto/backend.ts';
import { equalBytes, fromBase64, fromHex, isZero, toBase64, toHex } from '../crypto/bytes.ts';
import { KeyError } from '../errors.ts';

export const KEY_LEN = 32;

/** Clamps a Curve25519 scalar in place (RFC 7748 §5), as `wg genkey` does. */
export function clamp(k: Uint8Array): Uint8Array {
  k[0]! &= 248;
  k[31]! &= 127;
  k[31]! |= 64;
  return k;
}

abstract class Key32 {
  protected readonly bytes: Uint8Array;
  protected constructor(bytes: Uint8Array) {
    if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_LEN) {
      throw new KeyError('KEY_LENGTH', `a key is ${KEY_LEN} bytes, got ${bytes?.length ?? typeof bytes}`);
    }
    this.bytes = Uint8Array.from(bytes);
  }
  /** The text prefix of this kind, e.g. `nodekey`. */
  protected abstract get prefix(): string;
  /** A copy of the raw bytes. */
  raw(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
  /** The raw bytes without copying; callers must not modify them. */
  rawView(): Uint8Array {
    return this.bytes;
  }
  /** Constant-time equality with another key of the same kind. */
  equals(other: this): boolean {
    return other instanceof this.constructor && equalBytes(this.bytes, other.bytes);
  }
  isZero(): boolean {
    return isZero(this.bytes);
  }
  toBase64(): string {
    return toBase64(this.bytes);
  }
  toString(): string {
    return `${this.prefix}:${toHex(this.bytes)}`;
  }
  toJSON(): string {
    return this.toString();
  }
  short(): string {
    return `[${toBase64(this.bytes).slice(0, 5)}]`;
  }
}

function decodeText(text: string, prefix: string, kind: string): Uint8Array {
  const t = text.trim();
  let b: Uint8Array | null;
  if (t.startsWith(prefix + ':')) b = fromHex(t.slice(prefix.length + 1));
  else b = fromBase64(t);
  if (!b || b.length !== KEY_LEN) {
    throw new KeyError('KEY_PARSE', `not a valid ${kind}: expected 44 base64 characters or ${prefix}:<64 hex digits>`);
  }
  return b;
}

abstract class PublicKey32 extends Key32 {}

abstract class PrivateKey32<P extends PublicKey32> extends Key32 {
  protected abstract makePublic(b: Uint8Array): P;
  protected override get prefix(): string {
    return 'privkey';
  }
  /** The matching public key (X25519 with the base point). */
  public(): P {
    return this.makePublic(x25519.getPublicKey(this.bytes));
  }
  /** Private keys never print in logs by accident. */
  override short(): string {
    return '[private]';
  }
  override toJSON(): string {
    return '[private]';
  }
}

export class NodePublic extends PublicKey32 {
  protected override get prefix() {
    return 'nodekey';
  }
  static fromRaw(b: Uint8Array): NodePublic {
    return new NodePublic(b);
  }
  static parse(text: string): NodePublic {
    return new NodePublic(decodeText(text, 'nodekey', 'node public key'));
  }
}

export class NodePrivate extends PrivateKey32<NodePublic> {
  protected override makePublic(b: Uint8Array) {
    return NodePublic.fromRaw(b);
  }
  static fromRaw(b: Uint8Array): NodePrivate {
    return new NodePrivate(b);
  }
  static parse(text: string): NodePrivate {
    return new NodePrivate(decodeText(text, 'privkey', 'private key'));
  }
  static generate(random: RandomSource = cryptoRandom): NodePrivate {
    return new NodePrivate(clamp(random(KEY_LEN)));
  }
}

export class DiscoPublic extends PublicKey32 {
  protected override get prefix() {
    return 'discokey';
  }
  static fromRaw(b: Uint8Array): DiscoPublic {
    return new DiscoPublic(b);
  }
  static parse(text: string): DiscoPublic {
    return new DiscoPublic(decodeText(text, 'discokey', 'disco public key'));
  }
}

export class DiscoPrivate extends PrivateKey32<DiscoPublic> {
  protected override makePublic(b: Uint8Array) {
    return DiscoPublic.fromRaw(b);
  }
  static fromRaw(b: Uint8Array): DiscoPrivate {
    return new DiscoPrivate(b);
  }
  static generate(random: RandomSource = cryptoRandom): DiscoPrivate {
    return new DiscoPrivate(clamp(random(KEY_LEN)));
  }
}

export class MachinePublic extends PublicKey32 {
  protected override get prefix() {
    return 'mkey';
  }
  static fromRaw(b: Uint8Array): MachinePublic {
    return new MachinePublic(b);
  }
  static parse(text: string): MachinePublic {
    return new MachinePublic(decodeText(text, 'mkey', 'machine public key'));
  }
}

export class MachinePrivate extends PrivateKey32<MachinePublic> {
  protected override makePublic(b: Uint8Array) {
    return MachinePublic.fromRaw(b);
  }
  static fromRaw(b: Uint8Array): MachinePrivate {
    return new MachinePrivate(b);
  }
  static parse(text: string): MachinePrivate {
    return new MachinePrivate(decodeText(text, 'privkey', 'private key'));
  }
  static generate(random: RandomSource = cryptoRandom): MachinePrivate {
    return new MachinePrivate(clamp(random(KEY_LEN)));
  }
}

/** A WireGuard preshared key (32 random bytes, not a curve point). */
export class PresharedKey extends Key32 {
  protected override get prefix() {
    return 'psk';
  }
  static fromRaw(b: Uint8Array): PresharedKey {
    return new PresharedKey(b);
  }
  static parse(text: string): PresharedKey {
    return new PresharedKey(decodeText(text, 'psk', 'preshared key'));
  }
  static generate(random: RandomSource = cryptoRandom): PresharedKey {
    return new PresharedKey(random(KEY_LEN));
  }
  static zero(): PresharedKey {
    return new PresharedKey(new Uint8Array(KEY_LEN));
  }
  override short(): string {
    return '[psk]';
  }
  override toJSON(): string {
    return '[psk]';
  }
}
