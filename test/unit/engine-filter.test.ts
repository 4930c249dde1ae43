/**
 * The engine's pure parts: the inbound filter (stateless rules from control plus reply state),
 * home relay choice with hysteresis (path selection: paths.test.ts).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { InboundFilter, packetTuple, UDP_FLOW_TTL_MS } from '../../src/engine/filter.ts';
import { chooseHome } from '../../src/engine/relays.ts';
import { buildIPv4, buildIPv6 } from '../../src/netstack/ip.ts';
import { parseIP } from '../../src/netstack/addr.ts';
import type { PacketFilter } from '../../src/policy/index.ts';

const A = '100.64.0.1';
const B = '100.64.0.2';
const C = '100.64.0.3';

/** A transport header: ports, and TCP flags at offset 13. */
function l4(sport: number, dport: number, flags = 0, len = 20): Uint8Array {
  const b = new Uint8Array(len);
  b[0] = sport >> 8;
  b[1] = sport & 255;
  b[2] = dport >> 8;
  b[3] = dport & 255;
  if (len > 13) b[13] = flags;
  return b;
}

function v4(src: string, dst: string, proto: number, payload: Uint8Array): Uint8Array {
  return buildIPv4({ src: parseIP(src), dst: parseIP(dst), protocol: proto, payload });
}

const SYN = 0x02;
const ACK = 0x10;
// B may reach A on TCP 22 only.
const FILTER: PacketFilter = [{ src: [`${B}/32`], dst: [{ prefix: `${A}/32`, ports: { first: 22, last: 22 } }], protos: [6] }];

describe('inbound filter', () => {
  it('checks a connection-opening SYN against the rules, and counts what it drops', () => {
    const f = new InboundFilter();
    f.setFilter(FILTER);
    expect(f.allow(v4(B, A, 6, l4(40000, 22, SYN)), 0)).toBe(true);
    expect(f.allow(v4(B, A, 6, l4(40000, 23, SYN)), 0)).toBe(false);
    expect(f.allow(v4(C, A, 6, l4(40000, 22, SYN)), 0)).toBe(false);
    expect(f.dropped).toEqual({ filter: 2 });
    // A denied SYN is 'reject' (the engine answers ICMP administratively prohibited); a denied
    // UDP datagram or ICMP echo is only dropped.
    expect(f.check(v4(B, A, 6, l4(40000, 23, SYN)), 0)).toBe('reject');
    expect(f.check(v4(B, A, 17, l4(40000, 23, 0, 8)), 0)).toBe('drop');
    expect(f.check(v4(B, A, 6, l4(40000, 22, SYN)), 0)).toBe('pass');
  });

  it('lets in the rest of TCP connections (SYN-ACK, ACK, FIN): they answer a SYN one side sent', () => {
    const f = new InboundFilter();
    f.setFilter([]);
    expect(f.allow(v4(C, A, 6, l4(22, 40000, SYN | ACK)), 0)).toBe(true);
    expect(f.allow(v4(C, A, 6, l4(22, 40000, ACK)), 0)).toBe(true);
    expect(f.allow(v4(C, A, 6, l4(22, 40000, SYN)), 0)).toBe(false);
  });

  it('lets UDP replies in while the flow we opened is fresh, and not after', () => {
    const f = new InboundFilter();
    f.setFilter([]);
    const reply = v4(C, A, 17, l4(53, 5555, 0, 8));
    expect(f.allow(reply, 0)).toBe(false);
    f.noteOutbound(v4(A, C, 17, l4(5555, 53, 0, 8)), 1000);
    expect(f.allow(reply, 2000)).toBe(true);
    expect(f.allow(v4(C, A, 17, l4(53, 5556, 0, 8)), 2000)).toBe(false);
    expect(f.allow(reply, 1000 + UDP_FLOW_TTL_MS + 1)).toBe(false);
  });

  it('lets ICMP echo replies and errors in, checks echo requests', () => {
    const f = new InboundFilter();
    f.setFilter([{ src: [`${B}/32`], dst: [{ prefix: `${A}/32`, ports: { first: 0, last: 65535 } }], protos: [1] }]);
    const icmp = (type: number) => Uint8Array.of(type, 0, 0, 0, 0, 0, 0, 0);
    expect(f.allow(v4(C, A, 1, icmp(0)), 0)).toBe(true);
    expect(f.allow(v4(C, A, 1, icmp(3)), 0)).toBe(true);
    expect(f.allow(v4(C, A, 1, icmp(8)), 0)).toBe(false);
    expect(f.allow(v4(B, A, 1, icmp(8)), 0)).toBe(true);
  });

  it('works for IPv6 and drops truncated or garbage packets as malformed', () => {
    const f = new InboundFilter();
    const a6 = 'fd7a:115c:a1e0::6440:1';
    const b6 = 'fd7a:115c:a1e0::6440:2';
    f.setFilter([{ src: [`${b6}/128`], dst: [{ prefix: `${a6}/128`, ports: { first: 22, last: 22 } }], protos: [6] }]);
    const p = buildIPv6({ src: parseIP(b6), dst: parseIP(a6), protocol: 6, payload: l4(1, 22, SYN) });
    expect(f.allow(p, 0)).toBe(true);
    expect(f.allow(p.subarray(0, 30), 0)).toBe(false);
    expect(f.allow(new Uint8Array(0), 0)).toBe(false);
    expect(f.dropped['malformed']).toBe(2);
  });

  it('never throws on random bytes', () => {
    const f = new InboundFilter();
    f.setFilter(FILTER);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
        f.noteOutbound(b, 0);
        expect(typeof f.allow(b, 0)).toBe('boolean');
        packetTuple(b);
      }),
    );
  });
});

describe('home relay choice', () => {
  it('takes the fastest region when there is no home yet', () => {
    expect(chooseHome(new Map([[1, 30], [2, 12], [3, null]]), 0)).toBe(2);
  });
  it('keeps the current home unless the best is 10 ms and a third faster', () => {
    expect(chooseHome(new Map([[1, 30], [2, 25]]), 1)).toBe(1);
    expect(chooseHome(new Map([[1, 30], [2, 21]]), 1)).toBe(1);
    expect(chooseHome(new Map([[1, 30], [2, 15]]), 1)).toBe(2);
    expect(chooseHome(new Map([[1, 12], [2, 1]]), 1)).toBe(2);
  });
  it('moves away from a home that stopped answering, and keeps it when nothing answers', () => {
    expect(chooseHome(new Map([[1, null], [2, 40]]), 1)).toBe(2);
    expect(chooseHome(new Map([[1, null], [2, null]]), 1)).toBe(1);
  });
});
