/**
 * The binary packet protocol (RFC 4253 §6) and the identification line (§4.2).
 *
 *   uint32    packet_length   (not counting itself or the MAC)
 *   byte      padding_length  (4..255)
 *   byte[n1]  payload         n1 = packet_length - padding_length - 1
 *   byte[n2]  random padding  n2 = padding_length
 *   byte[m]   mac / tag
 *
 * (4 + packet_length) is a multiple of the block size (8 here); AEAD ciphers that authenticate
 * the length as AAD align packet_length alone.
 *
 * `PacketDecoder` is fed arbitrary chunks of the byte stream and yields whole payloads; every
 * malformed input throws an SshError (SSH_PROTOCOL, or SSH_MAC for a bad tag).
 */
import type { RandomSource } from '../crypto/backend.ts';
import { noneCipher, type PacketCipher } from './cipher.ts';
import { MAX_PACKET_LENGTH, MAX_PRE_BANNER_LINES, MAX_VERSION_LINE } from './constants.ts';
import { SshError } from './errors.ts';

const MIN_PADDING = 4;

/** Frames and encrypts one payload as packet number `seq`. */
export function encodePacket(cipher: PacketCipher, seq: number, payload: Uint8Array, random: RandomSource): Uint8Array {
  const bs = cipher.blockSize;
  const base = (cipher.lengthAligned ? 5 : 1) + payload.length;
  let pad = bs - (base % bs);
  if (pad < MIN_PADDING) pad += bs;
  const len = 1 + payload.length + pad;
  const plain = new Uint8Array(4 + len);
  const v = new DataView(plain.buffer);
  v.setUint32(0, len);
  plain[4] = pad;
  plain.set(payload, 5);
  plain.set(random(pad), 5 + payload.length);
  return cipher.seal(seq, plain);
}

/** Parses an identification line (without CR LF): `SSH-protoversion-softwareversion SP comments`. */
export function parseVersionLine(line: string): { proto: string; software: string } {
  const m = /^SSH-([^-\s]+)-(\S+)(?: .*)?$/.exec(line);
  if (!m) throw new SshError('SSH_PROTOCOL', `bad identification line ${JSON.stringify(line.slice(0, 80))}`);
  const proto = m[1]!;
  if (proto !== '2.0' && proto !== '1.99') throw new SshError('SSH_PROTOCOL', `unsupported SSH protocol version ${proto}`);
  return { proto, software: m[2]! };
}

export class PacketDecoder {
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;
  private versionDone = false;
  private preLines = 0;
  /** Decrypted length of the packet whose header has been read (-1: none yet). */
  private pendingLen = -1;
  /** The peer's identification line, once seen (named for the client role; a server reads the client's here). */
  serverVersion: string | undefined;
  /**
   * Lines accepted before the identification line: RFC 4253 §4.2 lets only a server send them,
   * so the server role sets 0 (as sshd does).
   */
  maxPreLines = MAX_PRE_BANNER_LINES;
  cipher: PacketCipher = noneCipher;
  /** Sequence number of the next packet to be received (uint32, wraps). */
  seq = 0;
  /** Number of packets received so far (for strict KEX wrap detection). */
  received = 0;

  push(chunk: Uint8Array): void {
    if (this.start === this.end) this.start = this.end = 0;
    if (this.end + chunk.length > this.buf.length) {
      const live = this.end - this.start;
      if (live + chunk.length <= this.buf.length) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        let size = Math.max(4096, this.buf.length * 2);
        while (size < live + chunk.length) size *= 2;
        const nb = new Uint8Array(size);
        nb.set(this.buf.subarray(this.start, this.end));
        this.buf = nb;
      }
      this.start = 0;
      this.end = live;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** The next identification line (only before the version is done); undefined if incomplete. */
  private nextVersion(): string | undefined {
    for (;;) {
      const avail = this.buf.subarray(this.start, this.end);
      const nl = avail.indexOf(0x0a);
      if (nl < 0) {
        if (avail.length > MAX_VERSION_LINE * 4) throw new SshError('SSH_PROTOCOL', 'no identification line from the peer');
        return undefined;
      }
      let line = avail.subarray(0, nl);
      this.start += nl + 1;
      if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
      const text = String.fromCharCode(...line.subarray(0, Math.min(line.length, 1024)));
      if (text.startsWith('SSH-')) {
        if (line.length > MAX_VERSION_LINE - 2) throw new SshError('SSH_PROTOCOL', 'identification line too long');
        parseVersionLine(text);
        return text;
      }
      if (++this.preLines > this.maxPreLines) {
        throw new SshError('SSH_PROTOCOL', this.maxPreLines === 0 ? 'the peer sent something other than an identification line' : 'too many lines before the identification line');
      }
    }
  }

  /**
   * The next payload, or undefined when more bytes are needed. Before the first packet, the
   * server's identification line is consumed (see serverVersion).
   */
  next(): Uint8Array | undefined {
    if (!this.versionDone) {
      const v = this.nextVersion();
      if (v === undefined) return undefined;
      this.serverVersion = v;
      this.versionDone = true;
    }
    const c = this.cipher;
    const avail = this.end - this.start;
    if (this.pendingLen < 0) {
      if (avail < 4) return undefined;
      const len = c.decryptLength(this.seq, this.buf.subarray(this.start, this.start + 4));
      if (len > MAX_PACKET_LENGTH || len < 1 + MIN_PADDING) throw new SshError('SSH_PROTOCOL', `bad packet length ${len}`);
      if (((c.lengthAligned ? 4 : 0) + len) % c.blockSize !== 0) {
        throw new SshError('SSH_PROTOCOL', `packet length ${len} is not a multiple of the block size ${c.blockSize}`);
      }
      this.pendingLen = len;
    }
    const total = 4 + this.pendingLen + c.tagLength;
    if (avail < total) return undefined;
    const wire = this.buf.subarray(this.start, this.start + total);
    const body = c.open(this.seq, wire);
    this.start += total;
    this.pendingLen = -1;
    this.seq = (this.seq + 1) >>> 0;
    this.received++;
    const pad = body[0]!;
    if (pad < MIN_PADDING) throw new SshError('SSH_PROTOCOL', `padding length ${pad} < ${MIN_PADDING}`);
    const payloadLen = body.length - 1 - pad;
    if (payloadLen < 1) throw new SshError('SSH_PROTOCOL', `padding length ${pad} leaves no payload`);
    // Copy: the buffer is reused.
    return body.slice(1, 1 + payloadLen);
  }
}
