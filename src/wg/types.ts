import type { CryptoBackend, RandomSource } from '../crypto/backend.ts';
import type { WgLimits } from './constants.ts';
import type { Keypair } from './keypair.ts';
import type { LocalStatic } from './noise.ts';
import type { Peer } from './peer.ts';

/**
 * Where a datagram goes or came from. The device never looks inside beyond `key` (a stable
 * string, e.g. `1.2.3.4:51820`, used for cookies and logs) and `ip` (rate limiting under load).
 */
export interface Endpoint {
  readonly key: string;
  readonly ip?: string;
}

/** What the device does with its output. */
export interface DeviceSink<E extends Endpoint> {
  /** Sends a datagram to a peer's endpoint. */
  send(to: E, datagram: Uint8Array): void;
  /** Delivers a decrypted inbound IP packet whose source is allowed for `peer`. */
  deliver(packet: Uint8Array, peer: Peer<E>): void;
}

export type DeviceEvent<E extends Endpoint> =
  | { type: 'handshake-complete'; peer: Peer<E>; initiator: boolean }
  | { type: 'handshake-failed'; peer: Peer<E> };

export type LogLevel = 'debug' | 'info' | 'warn';

export interface Context {
  backend: CryptoBackend;
  random: RandomSource;
  /** Wall clock in ms since the Unix epoch, for TAI64N timestamps and `lastHandshake`. */
  wallClock: () => number;
}

/** The part of the device a peer uses. */
export interface DeviceCore<E extends Endpoint> {
  readonly ctx: Context;
  readonly local: LocalStatic;
  readonly limits: WgLimits;
  readonly mtu: number;
  readonly sink: DeviceSink<E>;
  allocateIndex(peer: Peer<E>, keypair: Keypair | null): number;
  releaseIndex(index: number): void;
  dropKeypair(kp: Keypair | null): void;
  log(level: LogLevel, message: string): void;
  event(e: DeviceEvent<E>): void;
}
