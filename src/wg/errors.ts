import { PierceError } from '../errors.ts';

/**
 * WireGuard errors. Codes:
 *   WG_MALFORMED       wrong length, unknown type or non-zero reserved bytes
 *   WG_MAC1            mac1 does not verify (not for us, or corrupted)
 *   WG_DECRYPT         an AEAD did not authenticate
 *   WG_UNKNOWN_PEER    static key of an initiation is not a configured peer
 *   WG_UNKNOWN_INDEX   receiver index names no live handshake or keypair
 *   WG_REPLAY          replayed or older TAI64N timestamp, or replayed counter
 *   WG_FLOOD           initiations from a peer faster than the allowed rate
 *   WG_STATE           message not expected in the current handshake state
 *   WG_EXPIRED         keypair too old or counter past the limit
 *   WG_COOKIE_REQUIRED under load: a cookie reply was sent instead
 *   WG_RATE_LIMITED    under load: the source sent too many handshakes
 *   WG_ALLOWED_IPS     decrypted packet's source is not in the peer's allowed IPs
 *   WG_PACKET          decrypted packet is not a valid IPv4/IPv6 packet
 *   WG_NO_ROUTE        outbound packet matches no peer's allowed IPs
 */
export class WgError extends PierceError {}
