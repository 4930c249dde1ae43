/**
 * Tailnet address allocation: IPv4 from 100.64.0.0/10 (the CGNAT range, RFC 6598) and IPv6
 * from fd7a:115c:a1e0::/48, as Tailscale uses them. Addresses are handed out in order (which
 * keeps packet-filter prefixes aggregatable), never reused while a node holds them, and skip:
 *   100.64.0.0          the network address
 *   100.100.100.100     the "quad-100" service address
 *   100.115.92.0/23     reserved (ChromeOS's ARC uses it)
 *   100.127.255.255     the broadcast address of the /10
 * A node's IPv6 address embeds its IPv4 address (fd7a:115c:a1e0::6440:1 for 100.64.0.1), so both
 * are stable together: they are stored with the node and survive restarts and re-registration.
 */
import { PierceError } from '../../../src/errors.ts';

const BASE = (100 << 24) | (64 << 16); // 100.64.0.0
const SIZE = 1 << 22; // a /10
const RESERVED: readonly [number, number][] = [
  [ip4(100, 100, 100, 100), ip4(100, 100, 100, 100)],
  [ip4(100, 115, 92, 0), ip4(100, 115, 93, 255)],
];

function ip4(a: number, b: number, c: number, d: number): number {
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

export function v4ToString(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function v4FromString(s: string): number {
  const p = s.split('.').map(Number);
  return ip4(p[0]!, p[1]!, p[2]!, p[3]!);
}

/** The IPv6 tailnet address paired with an IPv4 one. */
export function v6For(v4: number): string {
  return `fd7a:115c:a1e0::${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
}

export function isAllocatable(n: number): boolean {
  const off = (n - (BASE >>> 0)) >>> 0;
  if (off === 0 || off >= SIZE - 1) return false;
  return !RESERVED.some(([lo, hi]) => n >= lo && n <= hi);
}

export class AddressAllocator {
  private readonly used = new Set<number>();
  private next = ip4(100, 64, 0, 1);

  /** Marks an address as held (at start, from the store). */
  hold(ipv4: string): void {
    this.used.add(v4FromString(ipv4));
  }
  release(ipv4: string): void {
    this.used.delete(v4FromString(ipv4));
  }

  allocate(): { ipv4: string; ipv6: string } {
    for (let i = 0; i < SIZE; i++) {
      const n = this.next;
      this.next = isAllocatable(n + 1) ? n + 1 : this.wrap(n + 1);
      if (isAllocatable(n) && !this.used.has(n)) {
        this.used.add(n);
        return { ipv4: v4ToString(n), ipv6: v6For(n) };
      }
    }
    throw new PierceError('ADDRESSES_EXHAUSTED', 'no free address left in 100.64.0.0/10');
  }

  private wrap(n: number): number {
    let m = n >>> 0;
    while (!isAllocatable(m)) {
      m = m + 1;
      if (((m - (BASE >>> 0)) >>> 0) >= SIZE) m = ip4(100, 64, 0, 1);
    }
    return m;
  }
}
