/**
 * WireGuard protocol constants. Sources: "WireGuard: Next Generation Kernel Network Tunnel"
 * (J. A. Donenfeld), §5.4 (handshake), §5.4.7 (cookies), §6 (timers); wireguard-go
 * device/constants.go for the implementation limits marked "wireguard-go".
 */

// §5.4: Noise construction, identifier and labels.
export const CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s';
export const IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com';
export const LABEL_MAC1 = 'mac1----';
export const LABEL_COOKIE = 'cookie--';

// §5.4: message types (first byte; the next three are reserved zero).
export const MSG_INITIATION = 1;
export const MSG_RESPONSE = 2;
export const MSG_COOKIE_REPLY = 3;
export const MSG_TRANSPORT = 4;

// §5.4.2-§5.4.7: message sizes.
export const INITIATION_SIZE = 148;
export const RESPONSE_SIZE = 92;
export const COOKIE_REPLY_SIZE = 64;
export const TRANSPORT_HEADER_SIZE = 16;
export const AEAD_TAG_SIZE = 16;
export const TRANSPORT_MIN_SIZE = TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE;
export const TAI64N_SIZE = 12;
export const MAC_SIZE = 16;

/** §5.4.6: plaintext is zero-padded to a multiple of 16 bytes (never past the MTU). */
export const PADDING_MULTIPLE = 16;

// §6.1: timers, in milliseconds.
export const REKEY_AFTER_TIME = 120_000;
export const REJECT_AFTER_TIME = 180_000;
export const REKEY_ATTEMPT_TIME = 90_000;
export const REKEY_TIMEOUT = 5_000;
export const KEEPALIVE_TIMEOUT = 10_000;
/** wireguard-go: the cookie secret is rotated, and a received cookie trusted, for 2 minutes. */
export const COOKIE_REFRESH_TIME = 120_000;
/** wireguard-go: up to 333 ms of random jitter is added to Rekey-Timeout. */
export const REKEY_TIMEOUT_JITTER_MAX = 334;
/** wireguard-go: at most one initiation per peer is consumed every 1/50 s (flood protection). */
export const HANDSHAKE_INITIATION_RATE = 20;
/** wireguard-go: give up after Rekey-Attempt-Time / Rekey-Timeout attempts. */
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT - 1;
/** wireguard-go: "under load" lasts this long after the handshake load drops. */
export const UNDER_LOAD_AFTER_TIME = 1_000;

// §6.1: message counters. The paper's values are 2^60 and 2^64 - 2^13 - 1. Pierce's counters are
// JavaScript numbers, exact up to 2^53; at a million packets a second 2^53 is 285 years, so the
// reject limit is capped there. Both limits are options (`WgLimits`) so tests can reach them.
export const REKEY_AFTER_MESSAGES = 2 ** 60 > Number.MAX_SAFE_INTEGER ? Number.MAX_SAFE_INTEGER - 2 ** 16 : 2 ** 60;
export const REJECT_AFTER_MESSAGES = Number.MAX_SAFE_INTEGER - 2 ** 13;

/** wireguard-go: packets queued per peer while a handshake is in flight (QueueStagedSize). */
export const MAX_STAGED_PACKETS = 128;
/** The tunnel MTU Pierce assumes (wg-quick's default over an IPv6 underlay is 1420). */
export const DEFAULT_MTU = 1420;

export interface WgLimits {
  rekeyAfterMessages: number;
  rejectAfterMessages: number;
  rekeyAfterTime: number;
  rejectAfterTime: number;
  rekeyAttemptTime: number;
  rekeyTimeout: number;
  keepaliveTimeout: number;
  maxStagedPackets: number;
  /** Handshake messages per second above which the device is "under load" and demands cookies. */
  underLoadHandshakesPerSecond: number;
}

export const DEFAULT_LIMITS: WgLimits = {
  rekeyAfterMessages: REKEY_AFTER_MESSAGES,
  rejectAfterMessages: REJECT_AFTER_MESSAGES,
  rekeyAfterTime: REKEY_AFTER_TIME,
  rejectAfterTime: REJECT_AFTER_TIME,
  rekeyAttemptTime: REKEY_ATTEMPT_TIME,
  rekeyTimeout: REKEY_TIMEOUT,
  keepaliveTimeout: KEEPALIVE_TIMEOUT,
  maxStagedPackets: MAX_STAGED_PACKETS,
  underLoadHandshakesPerSecond: 128,
};
