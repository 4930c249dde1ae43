/**
 * MAC1, MAC2 and cookies (WireGuard paper §5.3 and §5.4.7).
 *
 *   mac1 = MAC(HASH(LABEL_MAC1 || S_responder_pub), msg[0 : mac1 offset])
 *   mac2 = MAC(cookie, msg[0 : mac2 offset])  or 16 zero bytes without a fresh cookie
 *   cookie = MAC(R_secret, source address bytes), R_secret rotated every 2 minutes
 *   cookie reply = XAEAD(HASH(LABEL_COOKIE || S_responder_pub), nonce24, cookie, ad = mac1 of msg)
 *
 * The checker is the receiving side (one per device), the generator the sending side (one per peer).
 */
import type { RandomSource } from '../crypto/backend.ts';
import { hash, mac } from '../crypto/blake2s.ts';
import { equalBytes } from '../crypto/bytes.ts';
import { xaeadOpen, xaeadSeal } from '../crypto/xaead.ts';
import { COOKIE_REFRESH_TIME, LABEL_COOKIE, LABEL_MAC1, MAC_SIZE } from './constants.ts';
import { encodeCookieReply, macOffsets, type CookieReply } from './messages.ts';

const te = new TextEncoder();
const MAC1_LABEL = te.encode(LABEL_MAC1);
const COOKIE_LABEL = te.encode(LABEL_COOKIE);

/** HASH(LABEL_MAC1 || pub): the key for mac1 of messages sent to `pub`. */
export function mac1Key(pub: Uint8Array): Uint8Array {
  return hash(MAC1_LABEL, pub);
}

/** HASH(LABEL_COOKIE || pub): the key that encrypts cookies sent by `pub`. */
export function cookieKey(pub: Uint8Array): Uint8Array {
  return hash(COOKIE_LABEL, pub);
}

/** The receiving side: verifies mac1/mac2 of handshake messages and makes cookie replies. */
export class CookieChecker {
  private readonly mac1Key: Uint8Array;
  private readonly encryptionKey: Uint8Array;
  private secret: Uint8Array = new Uint8Array(32);
  private secretSet = -Infinity;

  constructor(
    ourPublic: Uint8Array,
    private readonly random: RandomSource,
  ) {
    this.mac1Key = mac1Key(ourPublic);
    this.encryptionKey = cookieKey(ourPublic);
  }

  checkMac1(msg: Uint8Array): boolean {
    const { mac1, mac2 } = macOffsets(msg);
    return equalBytes(mac(this.mac1Key, msg.subarray(0, mac1)), msg.subarray(mac1, mac2));
  }

  /** True when mac2 carries a valid cookie for `source` (only while the secret is fresh). */
  checkMac2(msg: Uint8Array, source: Uint8Array, now: number): boolean {
    if (now - this.secretSet > COOKIE_REFRESH_TIME) return false;
    const { mac2 } = macOffsets(msg);
    const cookie = mac(this.secret, source);
    return equalBytes(mac(cookie, msg.subarray(0, mac2)), msg.subarray(mac2));
  }

  /** The cookie reply for handshake message `msg` from `source`, addressed to index `receiver`. */
  createReply(msg: Uint8Array, receiver: number, source: Uint8Array, now: number): Uint8Array {
    if (now - this.secretSet > COOKIE_REFRESH_TIME) {
      this.secret = this.random(32);
      this.secretSet = now;
    }
    const cookie = mac(this.secret, source);
    const { mac1, mac2 } = macOffsets(msg);
    const nonce = this.random(24);
    const encryptedCookie = xaeadSeal(this.encryptionKey, nonce, cookie, msg.subarray(mac1, mac2));
    return encodeCookieReply({ receiver, nonce, encryptedCookie });
  }
}

/** The sending side, one per peer: adds mac1/mac2 and remembers cookies the peer sent us. */
export class CookieGenerator {
  private readonly mac1Key: Uint8Array;
  private readonly decryptionKey: Uint8Array;
  private lastMac1: Uint8Array | null = null;
  private cookie: Uint8Array | null = null;
  private cookieSet = -Infinity;

  constructor(peerPublic: Uint8Array) {
    this.mac1Key = mac1Key(peerPublic);
    this.decryptionKey = cookieKey(peerPublic);
  }

  /** Fills in mac1 and (with a fresh cookie) mac2 of an encoded handshake message, in place. */
  addMacs(msg: Uint8Array, now: number): void {
    const { mac1, mac2 } = macOffsets(msg);
    const m1 = mac(this.mac1Key, msg.subarray(0, mac1));
    msg.set(m1, mac1);
    this.lastMac1 = m1;
    if (this.cookie && now - this.cookieSet <= COOKIE_REFRESH_TIME) {
      msg.set(mac(this.cookie, msg.subarray(0, mac2)), mac2);
    } else {
      msg.fill(0, mac2, mac2 + MAC_SIZE);
    }
  }

  /** Accepts a cookie reply to our last message; false when it does not authenticate. */
  consumeReply(reply: CookieReply, now: number): boolean {
    if (!this.lastMac1) return false;
    const cookie = xaeadOpen(this.decryptionKey, reply.nonce, reply.encryptedCookie, this.lastMac1);
    if (!cookie) return false;
    this.cookie = cookie;
    this.cookieSet = now;
    return true;
  }

  hasFreshCookie(now: number): boolean {
    return this.cookie !== null && now - this.cookieSet <= COOKIE_REFRESH_TIME;
  }
}
