/**
 * Packet filters: compileFilter, mergeFilter, filterAllows and compileMatcher — unit cases, and the
 * property that the compiled filter agrees with direct evaluation of the rules for random policies
 * and random node sets.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  aggregatePrefixes,
  classKey,
  compileFilter,
  compileMatcher,
  evaluate,
  filterAllows,
  mergeFilter,
  parsePolicy,
  type FilterRule,
  type Identity,
  type PacketFilter,
} from '../../src/policy/index.ts';
import { formatIP, parseIP } from '../../src/netstack/addr.ts';
import { formatV6 } from '../../src/policy/net.ts';

const ALL = { first: 0, last: 65535 };

describe('mergeFilter', () => {
  it('joins adjacent sibling prefixes into their parent', () => {
    expect(aggregatePrefixes(['100.64.0.0/32', '100.64.0.1/32'])).toEqual(['100.64.0.0/31']);
    expect(aggregatePrefixes(['100.64.0.3/32', '100.64.0.0/32', '100.64.0.2/32', '100.64.0.1/32'])).toEqual(['100.64.0.0/30']);
    expect(aggregatePrefixes(['100.64.0.1/32', '100.64.0.2/32'])).toEqual(['100.64.0.1/32', '100.64.0.2/32']); // not siblings
    expect(aggregatePrefixes(['fd7a:115c:a1e0::/128', 'fd7a:115c:a1e0::1/128'])).toEqual(['fd7a:115c:a1e0::/127']);
    expect(aggregatePrefixes(['0.0.0.0/1', '128.0.0.0/1'])).toEqual(['0.0.0.0/0']);
  });

  it('sorts, drops duplicates and contained prefixes, IPv4 first', () => {
    expect(aggregatePrefixes(['fd7a:115c:a1e0::1/128', '100.64.0.9/32', '100.64.0.0/24', '100.64.0.9/32', '10.0.0.0/8', '::/0'])).toEqual([
      '10.0.0.0/8',
      '100.64.0.0/24',
      '::/0',
    ]);
    expect(aggregatePrefixes(['100.64.0.7', '100.64.0.1/24'])).toEqual(['100.64.0.0/24']); // bare address; host bits cleared
  });

  it('merges rules with the same sources and protocols, coalescing port ranges', () => {
    const f = mergeFilter([
      { src: ['100.64.0.1/32'], dst: [{ prefix: '100.64.0.9/32', ports: { first: 22, last: 22 } }], protos: [6] },
      { src: ['100.64.0.1/32'], dst: [{ prefix: '100.64.0.9/32', ports: { first: 23, last: 30 } }], protos: [6] },
      { src: ['100.64.0.1/32'], dst: [{ prefix: '100.64.0.9/32', ports: { first: 25, last: 80 } }], protos: [6] },
      { src: ['100.64.0.1/32'], dst: [{ prefix: '100.64.0.9/32', ports: { first: 443, last: 443 } }], protos: [6] },
    ]);
    expect(f).toEqual([
      {
        src: ['100.64.0.1/32'],
        dst: [
          { prefix: '100.64.0.9/32', ports: { first: 22, last: 80 } },
          { prefix: '100.64.0.9/32', ports: { first: 443, last: 443 } },
        ],
        protos: [6],
      },
    ]);
  });

  it('merges rules with the same destinations and protocols by joining their sources', () => {
    const dst = [{ prefix: '100.64.0.9/32', ports: ALL }];
    expect(mergeFilter([
      { src: ['100.64.0.2/32'], dst, protos: [6, 17] },
      { src: ['100.64.0.3/32'], dst, protos: [17, 6] },
    ])).toEqual([{ src: ['100.64.0.2/31'], dst, protos: [6, 17] }]);
  });

  it('merges protocols of otherwise identical rules, drops empty rules and covered entries', () => {
    const f = mergeFilter([
      { src: ['100.64.0.2/32'], dst: [{ prefix: '100.64.0.9/32', ports: ALL }], protos: [6] },
      { src: ['100.64.0.2/32'], dst: [{ prefix: '100.64.0.9/32', ports: ALL }], protos: [1] },
      { src: [], dst: [{ prefix: '100.64.0.9/32', ports: ALL }], protos: [1] },
      { src: ['100.64.0.7/32'], dst: [], protos: [1] },
      { src: ['100.64.0.7/32'], dst: [{ prefix: '100.64.0.0/24', ports: ALL }, { prefix: '100.64.0.9/32', ports: { first: 22, last: 22 } }], protos: [17] },
    ]);
    expect(f).toEqual([
      { src: ['100.64.0.2/32'], dst: [{ prefix: '100.64.0.9/32', ports: ALL }], protos: [1, 6] },
      { src: ['100.64.0.7/32'], dst: [{ prefix: '100.64.0.0/24', ports: ALL }], protos: [17] },
    ]);
  });

  it('is deterministic: the order of its input does not matter', () => {
    const rules: PacketFilter = [
      { src: ['100.64.0.5/32', 'fd7a:115c:a1e0::5/128'], dst: [{ prefix: '100.64.0.1/32', ports: { first: 80, last: 80 } }], protos: [6] },
      { src: ['100.64.0.6/32'], dst: [{ prefix: '100.64.0.1/32', ports: { first: 22, last: 22 } }], protos: [6, 17] },
      { src: ['0.0.0.0/0', '::/0'], dst: [{ prefix: 'fd7a:115c:a1e0::1/128', ports: ALL }], protos: [1, 58] },
    ];
    const a = mergeFilter(rules);
    expect(mergeFilter([...rules].reverse())).toEqual(a);
    expect(mergeFilter(a)).toEqual(a);
  });

  it('aggregates 10,000 host prefixes quickly', () => {
    const src: string[] = [];
    for (let i = 0; i < 10_000; i++) src.push(`100.64.${i >> 8}.${i & 255}/32`, `fd7a:115c:a1e0::${((i * 7919) % 65536).toString(16)}/128`);
    const rules: FilterRule[] = [0, 1, 2].map((k) => ({ src, dst: [{ prefix: '100.64.200.1/32', ports: { first: 22 + k, last: 22 + k } }], protos: [6] }));
    const t = performance.now();
    const f = mergeFilter(rules);
    const ms = performance.now() - t;
    expect(f).toHaveLength(1);
    expect(f[0]!.src[0]).toBe('100.64.0.0/19'); // 8192 addresses
    expect(f[0]!.dst).toEqual([{ prefix: '100.64.200.1/32', ports: { first: 22, last: 24 } }]);
    expect(ms).toBeLessThan(2000);
  });
});

describe('filterAllows and compileMatcher', () => {
  const filter: PacketFilter = [
    { src: ['100.64.0.0/30', 'fd7a:115c:a1e0::/126'], dst: [{ prefix: '100.64.0.9/32', ports: { first: 22, last: 22 } }, { prefix: 'fd7a:115c:a1e0::9/128', ports: { first: 22, last: 22 } }], protos: [6, 1, 58] },
    { src: ['0.0.0.0/0'], dst: [{ prefix: '100.64.0.9/32', ports: { first: 53, last: 53 } }], protos: [17] },
  ];
  const m = compileMatcher(filter);
  const cases: [string, string, number, number, boolean][] = [
    ['100.64.0.1', '100.64.0.9', 6, 22, true],
    ['100.64.0.4', '100.64.0.9', 6, 22, false],
    ['100.64.0.1', '100.64.0.9', 6, 23, false],
    ['100.64.0.1', '100.64.0.8', 6, 22, false],
    ['100.64.0.1', '100.64.0.9', 1, 0, true], // ICMP: port ignored
    ['100.64.0.1', '100.64.0.9', 1, 999, true],
    ['100.64.0.1', '100.64.0.9', 17, 22, false],
    ['8.8.8.8', '100.64.0.9', 17, 53, true],
    ['8.8.8.8', '100.64.0.9', 17, 54, false],
    ['fd7a:115c:a1e0::3', 'fd7a:115c:a1e0::9', 6, 22, true],
    ['fd7a:115c:a1e0::4', 'fd7a:115c:a1e0::9', 6, 22, false],
    ['fd7a:115c:a1e0::3', 'fd7a:115c:a1e0::9', 58, 0, true],
    ['fd7a:115c:a1e0::3', '100.64.0.9', 6, 22, false],
  ];
  it.each(cases)('%s → %s proto %i port %i: %s', (s, d, proto, port, want) => {
    expect(filterAllows(filter, s, d, proto, port)).toBe(want);
    expect(filterAllows(filter, parseIP(s), parseIP(d), proto, port)).toBe(want);
    expect(m(parseIP(s), parseIP(d), proto, port)).toBe(want);
  });

  it('an empty filter allows nothing; bad addresses are refused', () => {
    expect(compileMatcher([])(parseIP('100.64.0.1'), parseIP('100.64.0.2'), 6, 22)).toBe(false);
    expect(filterAllows(filter, 'nonsense', '100.64.0.9', 6, 22)).toBe(false);
    expect(m(new Uint8Array(3), new Uint8Array(3), 6, 22)).toBe(false);
  });
});

describe('compileFilter', () => {
  const policy = parsePolicy(`{
    "tagOwners": {"tag:server": []},
    "acls": [
      {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*", "tag:server:22"]},
      {"action": "accept", "src": ["10.0.0.0/8"], "proto": "udp", "dst": ["tag:server:53"]},
    ],
  }`);
  const a1: Identity = { user: 'a@x', tags: [], addrs: ['100.64.0.1', 'fd7a:115c:a1e0::1'] };
  const a2: Identity = { user: 'a@x', tags: [], addrs: ['100.64.0.2', 'fd7a:115c:a1e0::2'] };
  const b: Identity = { user: 'b@x', tags: [], addrs: ['100.64.0.3'] };
  const s: Identity = { user: 'a@x', tags: ['tag:server'], addrs: ['100.64.0.4'] };
  const nodes = [a1, a2, b, s];

  it('autogroup:self: sources are the same user\'s untagged nodes', () => {
    expect(compileFilter(policy, a2, nodes)).toEqual([
      {
        src: ['100.64.0.1/32', '100.64.0.2/32', 'fd7a:115c:a1e0::1/128', 'fd7a:115c:a1e0::2/128'],
        dst: [{ prefix: '100.64.0.2/32', ports: ALL }, { prefix: 'fd7a:115c:a1e0::2/128', ports: ALL }],
        protos: [1, 6, 17, 58],
      },
    ]);
  });

  it('a tagged node gets the rules naming its tag, with literal source prefixes', () => {
    expect(compileFilter(policy, s, nodes)).toEqual([
      { src: ['100.64.0.1/32', '100.64.0.2/31', 'fd7a:115c:a1e0::1/128', 'fd7a:115c:a1e0::2/128'], dst: [{ prefix: '100.64.0.4/32', ports: { first: 22, last: 22 } }], protos: [1, 6, 17, 58] },
      { src: ['10.0.0.0/8'], dst: [{ prefix: '100.64.0.4/32', ports: { first: 53, last: 53 } }], protos: [17] },
    ]);
  });
});

// ---- property: the compiled filter agrees with direct evaluation ----

const USERS = ['u0@x', 'u1@x', 'u2@github', 'u3@x'];
const TAGS = ['tag:t0', 'tag:t1', 'tag:t2'];
const GROUPS = ['group:g0', 'group:g1'];
const PREFIXES = ['100.64.0.0/30', '100.64.0.4/31', '100.64.0.3', '100.64.0.0/29', 'fd7a:115c:a1e0::/126', 'fd7a:115c:a1e0::5', '10.0.0.0/8', '0.0.0.0/0'];
const PORTS = ['*', '22', '80,443', '1000-2000', '22-23,25', '1-1024', '443,1000-1500'];
const PROTOS = [undefined, undefined, 'tcp', 'udp', 'icmp', '17', 'sctp', 'gre', 'ipv6-icmp'];
const PORTLESS = new Set(['icmp', 'gre', 'ipv6-icmp']);

const arbSrc = fc.constantFrom('*', ...USERS, ...GROUPS, ...TAGS, 'autogroup:member', 'autogroup:tagged', 'autogroup:danger-all', 'h0', ...PREFIXES);
const arbDstHost = fc.constantFrom('*', ...USERS, ...GROUPS, ...TAGS, 'autogroup:member', 'autogroup:tagged', 'autogroup:self', 'autogroup:internet', 'h0', 'h1', ...PREFIXES);

const arbRule = fc.record({
  src: fc.array(arbSrc, { minLength: 1, maxLength: 3 }),
  dst: fc.array(fc.tuple(arbDstHost, fc.constantFrom(...PORTS)), { minLength: 1, maxLength: 3 }),
  proto: fc.constantFrom(...PROTOS),
});

const arbPolicyText = fc
  .record({
    groups: fc.tuple(fc.subarray(USERS), fc.subarray(USERS)),
    owners: fc.array(fc.constantFrom(...USERS, 'group:g0', 'autogroup:member'), { maxLength: 2 }),
    rules: fc.array(arbRule, { maxLength: 6 }),
  })
  .map(({ groups, owners, rules }) =>
    JSON.stringify({
      groups: { 'group:g0': groups[0], 'group:g1': groups[1] },
      tagOwners: Object.fromEntries(TAGS.map((t) => [t, owners])),
      hosts: { h0: '100.64.0.2', h1: 'fd7a:115c:a1e0::/127' },
      acls: rules.map((r) => {
        const portless = r.proto !== undefined && PORTLESS.has(r.proto);
        return {
          action: 'accept',
          src: r.src,
          dst: r.dst.map(([h, p]) => `${h}:${portless ? '*' : p}`),
          ...(r.proto !== undefined ? { proto: r.proto } : {}),
        };
      }),
    }),
  );

/** Nodes with unique addresses: index i gets 100.64.0.i and/or fd7a:115c:a1e0::i (or 10.0.0.i). */
const arbNodes = fc
  .array(
    fc.record({
      user: fc.option(fc.constantFrom(...USERS), { nil: undefined, freq: 6 }),
      tags: fc.subarray(TAGS, { maxLength: 2 }).chain((t) => fc.constantFrom(t, t, [] as string[])),
      fam: fc.constantFrom('both', 'both', 'v4', 'v6', 'lan'),
    }),
    { minLength: 1, maxLength: 8 },
  )
  .map((list) =>
    list.map((n, i): Identity => {
      const addrs = n.fam === 'lan' ? [`10.0.0.${i}`] : [...(n.fam !== 'v6' ? [`100.64.0.${i}`] : []), ...(n.fam !== 'v4' ? [`fd7a:115c:a1e0::${i.toString(16)}`] : [])];
      return { ...(n.user !== undefined ? { user: n.user } : {}), tags: n.tags, addrs };
    }),
  );

const arbQuery = fc.record({
  src: fc.nat(),
  dst: fc.nat(),
  proto: fc.constantFrom(6, 17, 1, 58, 132, 47, 33),
  port: fc.constantFrom(0, 1, 22, 23, 24, 25, 80, 443, 999, 1000, 1500, 2000, 2001, 65535),
});

/** Addresses no generated node has. */
const STRAY = ['100.64.0.200', '10.0.0.200', 'fd7a:115c:a1e0::c8', '8.8.8.8'];

function sameFamily(a: string, b: string): boolean {
  return a.includes(':') === b.includes(':');
}

describe('properties', () => {
  it('compileFilter + filterAllows (and compileMatcher) agree with evaluate', () => {
    fc.assert(
      fc.property(arbPolicyText, arbNodes, fc.array(arbQuery, { minLength: 1, maxLength: 20 }), (text, nodes, queries) => {
        const policy = parsePolicy(text);
        const filters = new Map<number, { f: PacketFilter; m: ReturnType<typeof compileMatcher> }>();
        for (const q of queries) {
          const si = q.src % nodes.length;
          const di = q.dst % nodes.length;
          let entry = filters.get(di);
          if (!entry) {
            const f = compileFilter(policy, nodes[di]!, nodes);
            entry = { f, m: compileMatcher(f) };
            filters.set(di, entry);
          }
          const want = evaluate(policy, nodes[si]!, nodes[di]!, q.proto, q.port).allowed;
          for (const sa of nodes[si]!.addrs) {
            for (const da of nodes[di]!.addrs) {
              if (!sameFamily(sa, da)) continue;
              const got = filterAllows(entry.f, sa, da, q.proto, q.port);
              if (got !== want) throw new Error(`filter ${got}, evaluate ${want}: ${sa} → ${da} proto ${q.proto} port ${q.port}\n${JSON.stringify(entry.f)}`);
              expect(entry.m(parseIP(sa), parseIP(da), q.proto, q.port)).toBe(want);
            }
          }
          // A source that is no node: allowed only through the rules' literal prefixes.
          for (const stray of STRAY) {
            const want2 = evaluate(policy, { tags: [], addrs: [stray] }, nodes[di]!, q.proto, q.port).allowed;
            for (const da of nodes[di]!.addrs) {
              if (sameFamily(stray, da)) expect(filterAllows(entry.f, stray, da, q.proto, q.port), `${stray} → ${da}`).toBe(want2);
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('nodes with the same classKey are treated alike', () => {
    fc.assert(
      fc.property(arbPolicyText, arbNodes, arbNodes, fc.array(arbQuery, { minLength: 1, maxLength: 10 }), (text, nodes, others, queries) => {
        const policy = parsePolicy(text);
        for (let i = 0; i < nodes.length; i++) {
          for (let j = i + 1; j < nodes.length; j++) {
            const a = nodes[i]!;
            const b = nodes[j]!;
            if (classKey(policy, a) !== classKey(policy, b)) continue;
            for (const q of queries) {
              const c = others[q.src % others.length]!;
              expect(evaluate(policy, a, c, q.proto, q.port).allowed).toBe(evaluate(policy, b, c, q.proto, q.port).allowed);
              expect(evaluate(policy, c, a, q.proto, q.port).allowed).toBe(evaluate(policy, c, b, q.proto, q.port).allowed);
              expect(evaluate(policy, a, a, q.proto, q.port).allowed).toBe(evaluate(policy, b, b, q.proto, q.port).allowed);
            }
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('mergeFilter keeps the meaning of a filter', () => {
    const v4 = fc.tuple(fc.integer({ min: 0, max: 15 }), fc.constantFrom(28, 29, 30, 31, 32)).map(([i, b]) => `100.64.0.${i}/${b}`);
    const v6 = fc.tuple(fc.integer({ min: 0, max: 15 }), fc.constantFrom(124, 126, 127, 128)).map(([i, b]) => `fd7a:115c:a1e0::${i.toString(16)}/${b}`);
    const prefix = fc.oneof(v4, v6);
    const range = fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 10 })).map(([f, n]) => ({ first: f, last: f + n }));
    const rule = fc.record({
      src: fc.array(prefix, { maxLength: 6 }),
      dst: fc.array(fc.record({ prefix, ports: range }), { maxLength: 4 }),
      protos: fc.subarray([1, 6, 17, 58], { minLength: 1 }),
    });
    const addr = fc.oneof(fc.integer({ min: 0, max: 17 }).map((i) => `100.64.0.${i}`), fc.integer({ min: 0, max: 17 }).map((i) => `fd7a:115c:a1e0::${i.toString(16)}`));
    fc.assert(
      fc.property(fc.array(rule, { maxLength: 6 }), fc.array(fc.tuple(addr, addr, fc.constantFrom(1, 6, 17, 58), fc.integer({ min: 0, max: 55 })), { maxLength: 30 }), (rules, packets) => {
        const merged = mergeFilter(rules);
        expect(mergeFilter(merged)).toEqual(merged);
        const m = compileMatcher(merged);
        for (const [s, d, proto, port] of packets) {
          const want = filterAllows(rules, s, d, proto, port);
          expect(filterAllows(merged, s, d, proto, port)).toBe(want);
          expect(m(parseIP(s), parseIP(d), proto, port)).toBe(want);
        }
        expect(merged.length).toBeLessThanOrEqual(rules.length);
      }),
      { numRuns: 500 },
    );
  });

  it('IPv6 prefixes are formatted as RFC 5952 says (as netstack formats them)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.constantFrom(0, 2, 4, 8), (b, zeros) => {
        const bytes = Uint8Array.from(b);
        bytes.fill(0, 4, 4 + zeros * 2); // make zero runs likely
        let n = 0n;
        for (const x of bytes) n = (n << 8n) | BigInt(x);
        expect(formatV6(n)).toBe(formatIP(bytes));
      }),
      { numRuns: 500 },
    );
  });
});
