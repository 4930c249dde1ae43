/**
 * Transport keypairs and the transport data path (WireGuard paper §5.4.6).
 *
 * Sealing: the plaintext is zero-padded to a multiple of 16 (capped at the MTU), prefixed with the
 * 16-byte header, and encrypted in place with nonce = 32 zero bits || counter (u64 little-endian).
 * Opening decrypts in place into the datagram buffer. The same counter is never sent twice;
 * received counters pass the replay window only after they authenticate.
 */
import type { CryptoBackend } from '../crypto/backend.ts';
import { AEAD_TAG_SIZE, PADDING_MULTIPLE, TRANSPORT_HEADER_SIZE } from './constants.ts';
import { writeTransportHeader, type TransportHeader } from './messages.ts';
import { ReplayWindow } from './replay.ts';

export class Keypair {
  /** The next counter to send. */
  sendCounter = 0;
  readonly replay = new ReplayWindow();
  /** Per-keypair nonce scratch: 4 zero bytes then the counter. */
  private readonly nonce = new Uint8Array(12);

  constructor(
    readonly sendKey: Uint8Array,
    readonly recvKey: Uint8Array,
    readonly isInitiator: boolean,
    readonly localIndex: number,
    readonly remoteIndex: number,
    /** Monotonic time (ms) the keypair was derived. */
    readonly created: number,
  ) {}

  private setNonce(counter: number): Uint8Array {
    const n = this.nonce;
    const lo = counter >>> 0;
    const hi = Math.floor(counter / 0x1_0000_0000);
    n[4] = lo & 255;
    n[5] = (lo >>> 8) & 255;
    n[6] = (lo >>> 16) & 255;
    n[7] = (lo >>> 24) & 255;
    n[8] = hi & 255;
    n[9] = (hi >>> 8) & 255;
    n[10] = (hi >>> 16) & 255;
    n[11] = (hi >>> 24) & 255;
    return n;
  }

  /** Seals `packet` (empty for a keepalive) with counter `counter`; returns the datagram. */
  seal(backend: CryptoBackend, packet: Uint8Array, counter: number, mtu: number): Uint8Array {
    const padded = packet.length === 0 ? 0 : paddedLength(packet.length, mtu);
    const out = new Uint8Array(TRANSPORT_HEADER_SIZE + padded + AEAD_TAG_SIZE);
    writeTransportHeader(out, this.remoteIndex, counter);
    out.set(packet, TRANSPORT_HEADER_SIZE);
    backend.seal(this.sendKey, this.setNonce(counter), out.subarray(TRANSPORT_HEADER_SIZE, TRANSPORT_HEADER_SIZE + padded), undefined, out.subarray(TRANSPORT_HEADER_SIZE));
    return out;
  }

  /** Opens a transport message in place; the (padded) plaintext, or null if it does not authenticate. */
  open(backend: CryptoBackend, msg: TransportHeader): Uint8Array | null {
    const n = msg.encrypted.length - AEAD_TAG_SIZE;
    return backend.open(this.recvKey, this.setNonce(msg.counter), msg.encrypted, undefined, msg.encrypted.subarray(0, n));
  }

  wipe(): void {
    this.sendKey.fill(0);
    this.recvKey.fill(0);
  }
}

/** wireguard-go's calculatePaddingSize: round up to 16, never past the MTU. */
export function paddedLength(size: number, mtu: number): number {
  let last = size;
  if (mtu > 0 && last > mtu) last %= mtu;
  let padded = (last + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1);
  if (mtu > 0 && padded > mtu) padded = mtu;
  return size + (padded - last);
}
