/**
 * SSH data types (RFC 4251 §5): byte, boolean, uint32, uint64, string, mpint, name-list.
 * `SshReader` is length-checked: reading past the end throws SshError SSH_PROTOCOL.
 */
import { SshError } from './errors.ts';

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: false });

export function utf8(s: string): Uint8Array {
  return enc.encode(s);
}

export function fromUtf8(b: Uint8Array): string {
  return dec.decode(b);
}

/** Growable writer for SSH wire types. */
export class SshWriter {
  private buf: Uint8Array;
  private view: DataView;
  private n = 0;
  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
  }
  private ensure(k: number): void {
    if (this.n + k <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.n + k) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.n));
    this.buf = b;
    this.view = new DataView(b.buffer);
  }
  byte(v: number): this {
    this.ensure(1);
    this.buf[this.n++] = v & 0xff;
    return this;
  }
  bool(v: boolean): this {
    return this.byte(v ? 1 : 0);
  }
  uint32(v: number): this {
    this.ensure(4);
    this.view.setUint32(this.n, v >>> 0);
    this.n += 4;
    return this;
  }
  uint64(v: bigint): this {
    this.ensure(8);
    this.view.setBigUint64(this.n, v);
    this.n += 8;
    return this;
  }
  /** Raw bytes without a length prefix. */
  raw(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.n);
    this.n += b.length;
    return this;
  }
  /** string: uint32 length || bytes; a JS string is written as UTF-8. */
  string(s: Uint8Array | string): this {
    const b = typeof s === 'string' ? utf8(s) : s;
    this.uint32(b.length);
    return this.raw(b);
  }
  nameList(names: readonly string[]): this {
    return this.string(names.join(','));
  }
  /** mpint of a non-negative big-endian magnitude (leading zeros stripped, 0x00 added if the top bit is set). */
  mpintBytes(magnitude: Uint8Array): this {
    return this.string(mpintEncode(magnitude));
  }
  mpint(v: bigint): this {
    return this.string(mpintFromBigInt(v));
  }
  get length(): number {
    return this.n;
  }
  /** A copy of the bytes written. */
  bytes(): Uint8Array {
    return this.buf.slice(0, this.n);
  }
}

/** The body of an mpint (without its length) for a non-negative big-endian magnitude. */
export function mpintEncode(magnitude: Uint8Array): Uint8Array {
  let i = 0;
  while (i < magnitude.length && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  if (m.length > 0 && (m[0]! & 0x80) !== 0) {
    const out = new Uint8Array(m.length + 1);
    out.set(m, 1);
    return out;
  }
  return Uint8Array.from(m);
}

/** Two's complement mpint body for any bigint (RFC 4251 §5). */
export function mpintFromBigInt(v: bigint): Uint8Array {
  if (v === 0n) return new Uint8Array(0);
  const neg = v < 0n;
  let bytes: number[] = [];
  let x = neg ? -v : v;
  while (x > 0n) {
    bytes.unshift(Number(x & 0xffn));
    x >>= 8n;
  }
  if (!neg) {
    if ((bytes[0]! & 0x80) !== 0) bytes.unshift(0);
    return Uint8Array.from(bytes);
  }
  // Two's complement of the magnitude.
  bytes = bytes.map((b) => ~b & 0xff);
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = (bytes[i]! + 1) & 0xff;
    if (bytes[i] !== 0) break;
  }
  if ((bytes[0]! & 0x80) === 0) bytes.unshift(0xff);
  // Strip redundant leading 0xff bytes.
  while (bytes.length > 1 && bytes[0] === 0xff && (bytes[1]! & 0x80) !== 0) bytes.shift();
  return Uint8Array.from(bytes);
}

function mpintToBigInt(b: Uint8Array): bigint {
  if (b.length === 0) return 0n;
  let x = 0n;
  for (const byte of b) x = (x << 8n) | BigInt(byte);
  if ((b[0]! & 0x80) !== 0) x -= 1n << BigInt(b.length * 8);
  return x;
}

/** Length-checked reader; every failure is SshError SSH_PROTOCOL. */
export class SshReader {
  private off = 0;
  private readonly view: DataView;
  constructor(
    private readonly buf: Uint8Array,
    private readonly what = 'packet',
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  private need(k: number): void {
    if (this.off + k > this.buf.length) {
      throw new SshError('SSH_PROTOCOL', `${this.what}: truncated (need ${k} bytes at offset ${this.off}, have ${this.buf.length - this.off})`);
    }
  }
  byte(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }
  bool(): boolean {
    return this.byte() !== 0;
  }
  uint32(): number {
    this.need(4);
    const v = this.view.getUint32(this.off);
    this.off += 4;
    return v;
  }
  uint64(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.off);
    this.off += 8;
    return v;
  }
  raw(k: number): Uint8Array {
    this.need(k);
    const b = this.buf.subarray(this.off, this.off + k);
    this.off += k;
    return b;
  }
  /** A string's bytes (a view into the packet, not a copy). */
  string(): Uint8Array {
    const n = this.uint32();
    return this.raw(n);
  }
  text(): string {
    return fromUtf8(this.string());
  }
  nameList(): string[] {
    const s = this.string();
    if (s.length === 0) return [];
    for (const c of s) {
      if (c < 0x21 || c > 0x7e) throw new SshError('SSH_PROTOCOL', `${this.what}: name-list has a non-printable byte ${c}`);
    }
    const names = fromUtf8(s).split(',');
    if (names.some((n) => n.length === 0)) throw new SshError('SSH_PROTOCOL', `${this.what}: name-list has an empty name`);
    return names;
  }
  mpint(): bigint {
    return mpintToBigInt(this.string());
  }
  get remaining(): number {
    return this.buf.length - this.off;
  }
  /** Throws unless every byte was read. */
  end(): void {
    if (this.off !== this.buf.length) throw new SshError('SSH_PROTOCOL', `${this.what}: ${this.buf.length - this.off} trailing bytes`);
  }
}

