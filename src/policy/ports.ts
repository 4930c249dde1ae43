/**
 * Ports and IP protocols of policy rules: "*", "22", "22,80,443", "1024-65535"; protocol names as
 * Tailscale spells them (IANA "Assigned Internet Protocol Numbers") or numbers 0..255.
 *
 * Error wording follows Tailscale's where it has one:
 *   port range "ssh": invalid first integer
 *   port range "0": first port must be >0, or use '*' for wildcard
 */
import type { PortRange } from './types.ts';

/** IANA protocol numbers (https://www.iana.org/assignments/protocol-numbers). */
export const PROTO = { ICMP: 1, IGMP: 2, IPV4: 4, TCP: 6, EGP: 8, IGP: 9, UDP: 17, GRE: 47, ESP: 50, AH: 51, ICMPV6: 58, SCTP: 132, DCCP: 33 } as const;

/** Names accepted in `proto` (lowercase; matching is case-insensitive). */
export const PROTO_NAMES: ReadonlyMap<string, number> = new Map([
  ['icmp', PROTO.ICMP],
  ['igmp', PROTO.IGMP],
  ['ipv4', PROTO.IPV4],
  ['ip-in-ip', PROTO.IPV4],
  ['tcp', PROTO.TCP],
  ['egp', PROTO.EGP],
  ['igp', PROTO.IGP],
  ['udp', PROTO.UDP],
  ['dccp', PROTO.DCCP],
  ['gre', PROTO.GRE],
  ['esp', PROTO.ESP],
  ['ah', PROTO.AH],
  ['ipv6-icmp', PROTO.ICMPV6],
  ['icmpv6', PROTO.ICMPV6],
  ['sctp', PROTO.SCTP],
]);

/** No `proto`: TCP, UDP, ICMP and ICMPv6 (as in Tailscale). */
export const DEFAULT_PROTOS: readonly number[] = [PROTO.TCP, PROTO.UDP, PROTO.ICMP, PROTO.ICMPV6];

/** Protocols whose packets carry ports that the filter checks. For any other protocol a rule's
 * ports must be "*", and the filter ignores ports (ICMP has none). */
export function hasPorts(proto: number): boolean {
  return proto === PROTO.TCP || proto === PROTO.UDP || proto === PROTO.SCTP;
}

export const ALL_PORTS: PortRange = Object.freeze({ first: 0, last: 65535 });

/** Parses a `proto` value: a name or a decimal number 0..255. Returns the number, or a reason. */
export function parseProto(v: string | number): number | string {
  if (typeof v === 'number') {
    return Number.isInteger(v) && v >= 0 && v <= 255 ? v : `protocol number ${v} is out of range (0-255)`;
  }
  const name = PROTO_NAMES.get(v.toLowerCase());
  if (name !== undefined) return name;
  if (/^[0-9]+$/.test(v)) {
    if (v.length > 1 && v.startsWith('0')) return `protocol number ${JSON.stringify(v)} has a leading 0`;
    const n = Number(v);
    return n <= 255 ? n : `protocol number ${v} is out of range (0-255)`;
  }
  return `unknown protocol ${JSON.stringify(v)} (use a name like "tcp", "udp", "icmp" or a number 0-255)`;
}

/** The name Pierce prints for a protocol number. */
export function protoName(n: number): string {
  for (const [k, v] of PROTO_NAMES) if (v === n) return k;
  return String(n);
}

function parsePort(s: string): number | null {
  if (!/^[0-9]{1,5}$/.test(s)) return null;
  return Number(s);
}

/**
 * Parses the ports part of a destination ("*", "22", "80,443", "1024-65535"). Returns the ranges
 * or the reason (without the `dst=…` prefix). Items may repeat or overlap; filters coalesce them.
 */
export function parsePorts(s: string): PortRange[] | string {
  if (s === '*') return [{ ...ALL_PORTS }];
  const out: PortRange[] = [];
  for (const item of s.split(',')) {
    if (item === '*') {
      out.push({ ...ALL_PORTS });
      continue;
    }
    const bad = (why: string) => `port range ${JSON.stringify(item)}: ${why}`;
    const dash = item.indexOf('-');
    const firstText = dash < 0 ? item : item.slice(0, dash);
    const first = parsePort(firstText);
    if (first === null) return bad('invalid first integer');
    let last = first;
    if (dash >= 0) {
      const l = parsePort(item.slice(dash + 1));
      if (l === null) return bad('invalid last integer');
      last = l;
    }
    if (first === 0) return bad("first port must be >0, or use '*' for wildcard");
    if (first > 65535) return bad('first port must be <=65535');
    if (last > 65535) return bad('last port must be <=65535');
    if (last < first) return bad('last port must be >= first port');
    out.push({ first, last });
  }
  return out;
}

/** Sorted, with overlapping and adjacent ranges joined. */
export function coalescePorts(ranges: readonly PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.first - b.first || a.last - b.last);
  const out: PortRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.first <= last.last + 1) {
      if (r.last > last.last) last.last = r.last;
    } else {
      out.push({ first: r.first, last: r.last });
    }
  }
  return out;
}

/** "*", "22", "80,443,1024-65535". */
export function formatPorts(ranges: readonly PortRange[]): string {
  if (ranges.some((r) => r.first === 0 && r.last === 65535)) return '*';
  return ranges.map((r) => (r.first === r.last ? String(r.first) : `${r.first}-${r.last}`)).join(',');
}

export function portsContain(ranges: readonly PortRange[], port: number): boolean {
  for (const r of ranges) if (port >= r.first && port <= r.last) return true;
  return false;
}
