/**
 * Logical messages on the control channel. A message of any size (up to a limit) travels as a
 * sequence of Noise transport messages, each sent as one WebSocket binary message and each at
 * most 65535 bytes (Noise §3). Every chunk's plaintext starts with a flag byte:
 *
 *   chunk plaintext: | flag (1) | data (0..65518) |      ciphertext = AEAD(plaintext) (+16)
 *     flag 0x00  more chunks of this message follow
 *     flag 0x01  final chunk of this message
 *
 * An empty message is one final chunk with no data. The receiver refuses a message as soon as
 * its running total passes the limit, before buffering the rest.
 *
 * Errors are `FrameError` with codes:
 *   FRAME_TOO_LARGE  the message exceeds the limit (sender or receiver side)
 *   FRAME_BAD_FLAG   a chunk's flag is neither 0x00 nor 0x01
 *   FRAME_EMPTY      a chunk's plaintext has no flag byte
 *   FRAME_BROKEN     push after one of the above: the stream is out of step, close it
 *   FRAME_BAD_UTF8   decodeJson: the bytes are not UTF-8
 *   FRAME_BAD_JSON   decodeJson: not JSON; encodeJson: a value JSON cannot represent
 * Decryption failures are the session's NoiseError (NOISE_DECRYPT, ...) and change nothing.
 */
import { PierceError } from '../errors.ts';
import { MAX_PLAINTEXT_LEN, type NoiseSession } from './noise.ts';

export class FrameError extends PierceError {}

export const FLAG_MORE = 0x00;
export const FLAG_FINAL = 0x01;
/** Data bytes per chunk: 65535 - 16 (tag) - 1 (flag) = 65518. */
export const MAX_CHUNK_DATA = MAX_PLAINTEXT_LEN - 1;
/** The default limit on one logical message (32 MiB). */
export const DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

function checkLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`message limit must be a non-negative integer, got ${limit}`);
}

/**
 * Seals `data` as one logical message: returns the ciphertexts in order, each to be sent as one
 * WebSocket binary message. Throws FRAME_TOO_LARGE when `data` is over `maxMessageBytes` (what
 * the peer would refuse anyway).
 */
export function sealMessage(session: NoiseSession, data: Uint8Array, maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES): Uint8Array[] {
  checkLimit(maxMessageBytes);
  if (data.length > maxMessageBytes) {
    throw new FrameError('FRAME_TOO_LARGE', `message is ${data.length} bytes; the limit is ${maxMessageBytes}`);
  }
  const out: Uint8Array[] = [];
  let off = 0;
  do {
    const n = Math.min(MAX_CHUNK_DATA, data.length - off);
    const last = off + n === data.length;
    const pt = new Uint8Array(1 + n);
    pt[0] = last ? FLAG_FINAL : FLAG_MORE;
    pt.set(data.subarray(off, off + n), 1);
    out.push(session.encrypt(pt));
    off += n;
  } while (off < data.length);
  return out;
}

/**
 * Receives chunks (one per WebSocket message) and returns each logical message when its final
 * chunk arrives. A chunk that fails to decrypt throws the session's NoiseError and changes
 * nothing; an authenticated chunk that breaks the framing throws a FrameError and the
 * reassembler refuses everything after it (FRAME_BROKEN).
 */
export class Reassembler {
  private parts: Uint8Array[] = [];
  private total = 0;
  private broken: FrameError | null = null;

  constructor(
    private readonly session: NoiseSession,
    readonly maxMessageBytes: number = DEFAULT_MAX_MESSAGE_BYTES,
  ) {
    checkLimit(maxMessageBytes);
  }

  /** Bytes of the message in progress buffered so far. */
  get buffered(): number {
    return this.total;
  }

  push(ciphertext: Uint8Array): Uint8Array | null {
    if (this.broken) throw new FrameError('FRAME_BROKEN', `the stream failed earlier (${this.broken.code})`, { cause: this.broken });
    const pt = this.session.decrypt(ciphertext);
    if (pt.length === 0) return this.fail(new FrameError('FRAME_EMPTY', 'chunk has no flag byte'));
    const flag = pt[0]!;
    if (flag !== FLAG_MORE && flag !== FLAG_FINAL) {
      return this.fail(new FrameError('FRAME_BAD_FLAG', `chunk flag is 0x${flag.toString(16).padStart(2, '0')}; expected 0x00 or 0x01`));
    }
    const data = pt.subarray(1);
    if (this.total + data.length > this.maxMessageBytes) {
      return this.fail(
        new FrameError('FRAME_TOO_LARGE', `message exceeds the limit of ${this.maxMessageBytes} bytes (${this.total + data.length} so far)`),
      );
    }
    if (flag === FLAG_MORE) {
      if (data.length) this.parts.push(data);
      this.total += data.length;
      return null;
    }
    if (this.parts.length === 0) return data;
    const msg = new Uint8Array(this.total + data.length);
    let o = 0;
    for (const p of this.parts) {
      msg.set(p, o);
      o += p.length;
    }
    msg.set(data, o);
    this.parts = [];
    this.total = 0;
    return msg;
  }

  private fail(e: FrameError): never {
    this.broken = e;
    this.parts = [];
    this.total = 0;
    throw e;
  }
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** JSON.stringify as UTF-8; FRAME_BAD_JSON for values JSON cannot represent (undefined, cycles, BigInt). */
export function encodeJson(value: unknown): Uint8Array {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    throw new FrameError('FRAME_BAD_JSON', `value cannot be encoded as JSON: ${(e as Error).message}`, { cause: e });
  }
  if (text === undefined) throw new FrameError('FRAME_BAD_JSON', `value of type ${typeof value} has no JSON form`);
  return utf8.encode(text);
}

/** Strict UTF-8 then JSON.parse; FRAME_BAD_UTF8 / FRAME_BAD_JSON on failure. */
export function decodeJson(bytes: Uint8Array): unknown {
  let text: string;
  try {
    text = utf8Strict.decode(bytes);
  } catch (e) {
    throw new FrameError('FRAME_BAD_UTF8', 'message is not valid UTF-8', { cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FrameError('FRAME_BAD_JSON', `message is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}
