/**
 * Policy semantics: which nodes each selector matches, direct evaluation of the rules, classKey and
 * canOwnTag.
 */
import { describe, expect, it } from 'vitest';
import { canOwnTag, classKey, dstMatches, evaluate, parsePolicy, selectorPrefixes, srcMatches, type Identity, type Selector } from '../../src/policy/index.ts';

const policy = parsePolicy(`{
  "groups": {"group:eng": ["alice@example.com", "bob@github"], "group:ops": ["olga@example.com"]},
  "tagOwners": {"tag:server": ["group:ops"], "tag:db": ["alice@example.com", "tag:server"], "tag:ci": ["autogroup:member"], "tag:locked": []},
  "hosts": {"lan": "10.0.0.0/8", "gw": "100.64.0.1"},
  "acls": [
    {"action": "accept", "src": ["group:eng"], "dst": ["tag:server:22,80"]},
    {"action": "accept", "src": ["tag:server"], "proto": "tcp", "dst": ["tag:db:5432"]},
    {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]},
    {"action": "accept", "src": ["olga@example.com"], "dst": ["lan:*", "autogroup:internet:443"]},
    {"action": "accept", "src": ["gw"], "proto": "udp", "dst": ["tag:server:53"]},
    {"action": "accept", "src": ["tag:server"], "dst": ["tag:server:9000-9100"]},
    {"action": "accept", "src": ["tag:server"], "dst": ["tag:server:9050-9200"]},
  ],
}`);

const alice: Identity = { user: 'alice@example.com', tags: [], addrs: ['100.64.0.10', 'fd7a:115c:a1e0::10'] };
const alice2: Identity = { user: 'alice@example.com', tags: [], addrs: ['100.64.0.11'] };
const bob: Identity = { user: 'bob@github', tags: [], addrs: ['100.64.0.20'] };
const olga: Identity = { user: 'olga@example.com', tags: [], addrs: ['100.64.0.30'] };
const server: Identity = { user: 'olga@example.com', tags: ['tag:server'], addrs: ['100.64.0.40'] };
const db: Identity = { user: 'alice@example.com', tags: ['tag:db'], addrs: ['100.64.0.50'] };
const gw: Identity = { tags: ['tag:server'], addrs: ['100.64.0.1'] };
const lanHost: Identity = { tags: [], addrs: ['10.1.2.3'] };
const internetHost: Identity = { tags: [], addrs: ['8.8.8.8'] };

const TCP = 6;
const UDP = 17;
const ICMP = 1;

const sel = (s: Selector['kind'], extra: Record<string, string> = {}) => ({ kind: s, text: s, ...extra }) as Selector;

describe('selectors', () => {
  it('a tagged node does not match its user\'s selector', () => {
    expect(srcMatches(policy, sel('user', { user: 'alice@example.com' }), alice)).toBe(true);
    expect(srcMatches(policy, sel('user', { user: 'alice@example.com' }), db)).toBe(false);
    expect(srcMatches(policy, sel('group', { group: 'group:ops' }), olga)).toBe(true);
    expect(srcMatches(policy, sel('group', { group: 'group:ops' }), server)).toBe(false);
  });

  it('autogroup:member matches untagged nodes, autogroup:tagged tagged ones', () => {
    expect([alice, server, lanHost].map((n) => srcMatches(policy, sel('member'), n))).toEqual([true, false, false]);
    expect([alice, server, lanHost].map((n) => srcMatches(policy, sel('tagged'), n))).toEqual([false, true, false]);
  });

  it('* and autogroup:danger-all match everything', () => {
    for (const n of [alice, server, lanHost, internetHost]) {
      expect(srcMatches(policy, sel('any'), n)).toBe(true);
      expect(srcMatches(policy, sel('danger-all'), n)).toBe(true);
    }
  });

  it('a prefix matches a node with one of its addresses inside', () => {
    const s = sel('prefix', { prefix: 'fd7a:115c:a1e0::/120' });
    expect(srcMatches(policy, s, alice)).toBe(true);
    expect(srcMatches(policy, s, bob)).toBe(false);
  });

  it('autogroup:self matches untagged nodes of the source\'s own user only', () => {
    const self = sel('self');
    expect(dstMatches(policy, self, alice, alice2)).toBe(true);
    expect(dstMatches(policy, self, alice, bob)).toBe(false);
    expect(dstMatches(policy, self, alice, db)).toBe(false); // db is tagged, though alice's
    expect(dstMatches(policy, self, db, alice)).toBe(false);
    expect(srcMatches(policy, self, alice)).toBe(false);
  });

  it('autogroup:internet matches no tailnet node', () => {
    const inet = sel('internet');
    for (const n of [alice, server, gw, { tags: [], addrs: ['100.64.3.3'] }]) expect(dstMatches(policy, inet, olga, n)).toBe(false);
    expect(dstMatches(policy, inet, olga, internetHost)).toBe(true);
  });

  it('selectorPrefixes lists literal prefixes only', () => {
    expect(selectorPrefixes(sel('any'))).toEqual(['0.0.0.0/0', '::/0']);
    expect(selectorPrefixes(sel('danger-all'))).toEqual(['0.0.0.0/0', '::/0']);
    expect(selectorPrefixes(policy.acls[3]!.dst[0]!.sel)).toEqual(['10.0.0.0/8']);
    expect(selectorPrefixes(sel('prefix', { prefix: '100.64.0.1/32' }))).toEqual(['100.64.0.1/32']);
    expect(selectorPrefixes(sel('tag', { tag: 'tag:server' }))).toEqual([]);
    expect(selectorPrefixes(sel('member'))).toEqual([]);
  });
});

describe('evaluate', () => {
  it('default deny', () => {
    expect(evaluate(policy, bob, olga, TCP, 22)).toEqual({ allowed: false });
    expect(evaluate(parsePolicy('{}'), alice, bob, TCP, 22)).toEqual({ allowed: false });
  });

  it('allows what a rule allows and names the rule', () => {
    expect(evaluate(policy, alice, server, TCP, 22)).toEqual({ allowed: true, rule: 0 });
    expect(evaluate(policy, bob, server, UDP, 80)).toEqual({ allowed: true, rule: 0 });
    expect(evaluate(policy, alice, server, TCP, 23).allowed).toBe(false);
    expect(evaluate(policy, olga, server, TCP, 22).allowed).toBe(false); // olga is not in group:eng
  });

  it('rules add up', () => {
    expect(evaluate(policy, server, server, TCP, 9000)).toEqual({ allowed: true, rule: 5 });
    expect(evaluate(policy, server, server, TCP, 9150)).toEqual({ allowed: true, rule: 6 });
    expect(evaluate(policy, server, server, TCP, 9201).allowed).toBe(false);
  });

  it('a proto restricts a rule to that protocol', () => {
    expect(evaluate(policy, server, db, TCP, 5432)).toEqual({ allowed: true, rule: 1 });
    expect(evaluate(policy, server, db, UDP, 5432).allowed).toBe(false);
    expect(evaluate(policy, server, db, ICMP, 0).allowed).toBe(false);
  });

  it('no proto allows TCP, UDP, ICMP and ICMPv6; ICMP ignores ports', () => {
    expect(evaluate(policy, alice, server, ICMP, 0)).toEqual({ allowed: true, rule: 0 });
    expect(evaluate(policy, alice, server, 58, 12345)).toEqual({ allowed: true, rule: 0 });
    expect(evaluate(policy, alice, server, 132, 22).allowed).toBe(false); // SCTP is not a default
  });

  it('autogroup:self lets a user reach their own untagged nodes', () => {
    expect(evaluate(policy, alice, alice2, TCP, 3000)).toEqual({ allowed: true, rule: 2 });
    expect(evaluate(policy, alice, bob, TCP, 3000).allowed).toBe(false);
    expect(evaluate(policy, alice, db, TCP, 3000).allowed).toBe(false);
  });

  it('host aliases and prefixes match by address', () => {
    expect(evaluate(policy, olga, lanHost, TCP, 1)).toEqual({ allowed: true, rule: 3 });
    expect(evaluate(policy, gw, server, UDP, 53)).toEqual({ allowed: true, rule: 4 });
    expect(evaluate(policy, { ...server, addrs: ['100.64.0.2'] }, server, UDP, 53).allowed).toBe(false);
  });

  it('autogroup:internet allows non-tailnet destinations', () => {
    expect(evaluate(policy, olga, internetHost, TCP, 443)).toEqual({ allowed: true, rule: 3 });
    expect(evaluate(policy, olga, internetHost, TCP, 80).allowed).toBe(false);
  });
});

describe('classKey', () => {
  it('is the same for nodes the policy cannot tell apart', () => {
    expect(classKey(policy, alice)).toBe(classKey(policy, alice2));
    expect(classKey(policy, server)).toBe(classKey(policy, { tags: ['tag:server'], addrs: ['100.64.0.99'] }));
    expect(classKey(policy, { tags: ['tag:b', 'tag:a'], addrs: [] })).toBe(classKey(policy, { user: 'x@y', tags: ['tag:a', 'tag:b'], addrs: [] }));
  });

  it('differs by user, tags and prefix matches', () => {
    const keys = [alice, bob, olga, server, db, gw, lanHost, internetHost].map((n) => classKey(policy, n));
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe('canOwnTag', () => {
  it('follows tagOwners: users, groups, autogroup:member, tags', () => {
    expect(canOwnTag(policy, 'olga@example.com', 'tag:server')).toBe(true); // via group:ops
    expect(canOwnTag(policy, 'alice@example.com', 'tag:server')).toBe(false);
    expect(canOwnTag(policy, 'alice@example.com', 'tag:db')).toBe(true);
    expect(canOwnTag(policy, 'tag:server', 'tag:db')).toBe(true);
    expect(canOwnTag(policy, 'tag:server', 'tag:ci')).toBe(false);
    expect(canOwnTag(policy, 'anyone@anywhere', 'tag:ci')).toBe(true);
    expect(canOwnTag(policy, 'olga@example.com', 'tag:locked')).toBe(false);
    expect(canOwnTag(policy, 'olga@example.com', 'tag:unknown')).toBe(false);
  });
});
