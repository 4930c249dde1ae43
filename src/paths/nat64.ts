/**
 * NAT64 address synthesis and prefix discovery, for nodes on IPv6-only networks.
 *
 *   RFC 6052 §2.2  IPv4 embedded in an IPv6 prefix of length 32, 40, 48, 56, 64 or 96; bits
 *                  64–71 (the "u" octet) are zero and skipped:
 *
 *     /32  | prefix (4)  | v4 (4)      | u | suffix                 |
 *     /40  | prefix (5)  | v4[0..3]    | u | v4[3] | suffix         |
 *     /48  | prefix (6)  | v4[0..2]    | u | v4[2..4] | suffix      |
 *     /56  | prefix (7)  | v4[0]       | u | v4[1..4] | suffix      |
 *     /64  | prefix (8)                | u | v4 (4) | suffix        |
 *     /96  | prefix (12)                            | v4 (4)        |
 *
 *   RFC 7050 §3   a DNS64 answers AAAA for "ipv4only.arpa" with the well-known addresses
 *                  192.0.0.170 / 192.0.0.171 synthesized under its prefix; finding them in the
 *                  answer reveals the prefix and its length.
 */
import { PierceError } from '../errors.ts';

export const NAT64_PREFIX_LENGTHS = [32, 40, 48, 56, 64, 96] as const;
export type Nat64PrefixLength = (typeof NAT64_PREFIX_LENGTHS)[number];

/** RFC 6052 §2.1: the Well-Known Prefix. */
export const WELL_KNOWN_PREFIX: Uint8Array = Uint8Array.of(0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
/** RFC 7050 §2.2: the name a node asks for, and the IPv4 addresses it is known to have. */
export const IPV4ONLY_ARPA = 'ipv4only.arpa';
export const IPV4ONLY_ADDRESSES: readonly Uint8Array[] = [Uint8Array.of(192, 0, 0, 170), Uint8Array.of(192, 0, 0, 171)];

export class Nat64Error extends PierceError {}

export interface Nat64Prefix {
  /** 16 bytes; bits after `length` are zero. */
  prefix: Uint8Array;
  length: Nat64PrefixLength;
}

/** Byte positions of the IPv4 address inside the IPv6 address, per prefix length. */
function positions(length: number): number[] {
  switch (length) {
    case 32:
      return [4, 5, 6, 7];
    case 40:
      return [5, 6, 7, 9];
    case 48:
      return [6, 7, 9, 10];
    case 56:
      return [7, 9, 10, 11];
    case 64:
      return [9, 10, 11, 12];
    case 96:
      return [12, 13, 14, 15];
    default:
      throw new Nat64Error('NAT64_PREFIX_LENGTH', `NAT64 prefix length ${length} is not one of 32, 40, 48, 56, 64, 96 (RFC 6052 §2.2)`);
  }
}

/** RFC 6052 §2.3: the IPv6 address standing for `v4` under `p`. */
export function synthesize(p: Nat64Prefix, v4: Uint8Array): Uint8Array {
  if (p.prefix.length !== 16) throw new Nat64Error('NAT64_PREFIX', 'a NAT64 prefix is 16 bytes');
  if (v4.length !== 4) throw new Nat64Error('NAT64_ADDRESS', 'an IPv4 address is 4 bytes');
  const out = new Uint8Array(16);
  out.set(p.prefix.subarray(0, p.length / 8));
  positions(p.length).forEach((at, i) => (out[at] = v4[i]!));
  return out;
}

/** RFC 6052 §2.3: the IPv4 address embedded in `v6` under a prefix of `length`. */
export function extract(v6: Uint8Array, length: number): Uint8Array {
  if (v6.length !== 16) throw new Nat64Error('NAT64_ADDRESS', 'an IPv6 address is 16 bytes');
  return Uint8Array.from(positions(length).map((at) => v6[at]!));
}

/**
 * RFC 7050 §3: the NAT64 prefix revealed by the AAAA answers for ipv4only.arpa, or undefined
 * when none embeds a well-known address (no DNS64 on this network). For lengths below 96 the
 * "u" octet must be zero.
 */
export function discoverPrefix(aaaa: readonly Uint8Array[]): Nat64Prefix | undefined {
  for (const a of aaaa) {
    if (a.length !== 16) continue;
    for (const length of [96, 64, 56, 48, 40, 32] as const) {
      if (length < 96 && a[8] !== 0) continue;
      const v4 = extract(a, length);
      if (!IPV4ONLY_ADDRESSES.some((w) => w.every((b, i) => b === v4[i]))) continue;
      const prefix = new Uint8Array(16);
      prefix.set(a.subarray(0, length / 8));
      return { prefix, length };
    }
  }
  return undefined;
}
