/**
 * The inbound packet filter (invariant 2: the receiving node enforces it on every packet).
 *
 * Control sends a stateless filter (src prefixes, dst prefix + ports, protocols); like
 * Tailscale's `wgengine/filter`, the node adds just enough state for replies to its own
 * connections:
 *   - TCP: only a SYN without ACK opens a connection, so it alone is checked against the filter;
 *     any other TCP segment belongs to a connection one side already opened (and the netstack
 *     answers stray ones with RST, as a kernel would).
 *   - UDP: an outbound datagram records its flow; the reply (reversed addresses and ports) is
 *     let in while the flow is fresh.
 *   - ICMP: echo replies and errors are let in (they answer something we sent).
 * Everything else that the filter does not allow is dropped and counted by reason.
 *
 *   IPv4: proto @9, src @12, dst @16, ports @ihl        IPv6: next header @6, src @8, dst @24, ports @40
 */
import { compileMatcher, type Matcher, type PacketFilter } from '../policy/index.ts';

const TCP = 6;
const UDP = 17;
const ICMP = 1;
const ICMPV6 = 58;
const SCTP = 132;
/** UDP flows stay open this long after their last outbound datagram (ms). */
export const UDP_FLOW_TTL_MS = 120_000;
const MAX_FLOWS = 8192;

export interface Tuple {
  src: Uint8Array;
  dst: Uint8Array;
  proto: number;
  sport: number;
  dport: number;
  /** TCP flags, ICMP type; 0 otherwise. */
  extra: number;
}

/** Reads the addresses, protocol and ports of an IP packet; null when too short to tell. */
export function packetTuple(p: Uint8Array): Tuple | null {
  if (p.length < 1) return null;
  const v = p[0]! >> 4;
  let off: number;
  let proto: number;
  let src: Uint8Array;
  let dst: Uint8Array;
  if (v === 4) {
    if (p.length < 20) return null;
    off = (p[0]! & 15) * 4;
    proto = p[9]!;
    src = p.subarray(12, 16);
    dst = p.subarray(16, 20);
    // Later fragments carry no transport header.
    if (((p[6]! & 0x1f) << 8) | p[7]!) return { src, dst, proto, sport: 0, dport: 0, extra: -1 };
  } else if (v === 6) {
    if (p.length < 40) return null;
    off = 40;
    proto = p[6]!;
    src = p.subarray(8, 24);
    dst = p.subarray(24, 40);
  } else return null;
  let sport = 0;
  let dport = 0;
  let extra = 0;
  if (proto === TCP || proto === UDP || proto === SCTP) {
    if (p.length < off + 4) return null;
    sport = (p[off]! << 8) | p[off + 1]!;
    dport = (p[off + 2]! << 8) | p[off + 3]!;
    if (proto === TCP) {
      if (p.length < off + 14) return null;
      extra = p[off + 13]!;
    }
  } else if (proto === ICMP || proto === ICMPV6) {
    if (p.length < off + 1) return null;
    extra = p[off]!;
  }
  return { src, dst, proto, sport, dport, extra };
}

function flowKey(a: Uint8Array, ap: number, b: Uint8Array, bp: number): string {
  return `${a.join('.')}|${ap}|${b.join('.')}|${bp}`;
}

export type Verdict = 'pass' | 'drop' | 'reject';

export class InboundFilter {
  private match: Matcher = () => false;
  private readonly flows = new Map<string, number>();
  readonly dropped: Record<string, number> = {};
  accepted = 0;

  setFilter(f: PacketFilter): void {
    this.match = compileMatcher(f);
  }

  /** Records an outbound packet (opens UDP reply flows). */
  noteOutbound(p: Uint8Array, now: number): void {
    const t = packetTuple(p);
    if (!t || t.proto !== UDP) return;
    const k = flowKey(t.dst, t.dport, t.src, t.sport);
    this.flows.delete(k);
    this.flows.set(k, now + UDP_FLOW_TTL_MS);
    if (this.flows.size > MAX_FLOWS) this.flows.delete(this.flows.keys().next().value!);
  }

  /** Whether an inbound packet may be delivered; a refusal is counted under its reason. */
  allow(p: Uint8Array, now: number): boolean {
    return this.check(p, now) === 'pass';
  }

  /**
   * Like `allow`, but tells apart a TCP SYN the policy denies ('reject'): the engine answers it
   * with ICMP "administratively prohibited" so the client fails at once with a clear reason
   * instead of retrying its SYN until it times out. Everything else refused is 'drop'.
   */
  check(p: Uint8Array, now: number): Verdict {
    const t = packetTuple(p);
    if (!t) return this.drop('malformed');
    if (t.extra === -1) return this.drop('fragment');
    if (t.proto === TCP && (t.extra & 0x12) !== 0x02) return this.pass(); // not an opening SYN
    if (t.proto === ICMP && (t.extra === 0 || t.extra === 3 || t.extra === 11)) return this.pass();
    if (t.proto === ICMPV6 && (t.extra === 129 || t.extra < 128)) return this.pass();
    if (t.proto === UDP) {
      const exp = this.flows.get(flowKey(t.src, t.sport, t.dst, t.dport));
      if (exp !== undefined && exp > now) return this.pass();
    }
    if (this.match(t.src, t.dst, t.proto, t.dport)) return this.pass();
    this.drop('filter');
    return t.proto === TCP ? 'reject' : 'drop';
  }

  private pass(): 'pass' {
    this.accepted++;
    return 'pass';
  }

  private drop(reason: string): 'drop' {
    this.dropped[reason] = (this.dropped[reason] ?? 0) + 1;
    return 'drop';
  }
}
