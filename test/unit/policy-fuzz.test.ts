/**
 * parsePolicy never crashes: random text, random JSON values, policy-shaped random values and
 * mutations of valid policies either parse or throw PolicyError — nothing else escapes. What
 * parses can be tested, evaluated and compiled without throwing.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkPolicy, compileFilter, evaluate, PolicyError, type Identity } from '../../src/policy/index.ts';

const EXAMPLE = readFileSync(fileURLToPath(new URL('../fixtures/example-policy.hujson', import.meta.url)), 'utf8');

const RICH = `{
  // every section
  "groups": {"group:eng": ["alice@example.com", "bob@github"]},
  "tagOwners": {"tag:server": ["group:eng"], "tag:ci": ["autogroup:member", "tag:server"]},
  "hosts": {"db": "100.64.0.5", "lan": "10.0.0.0/8", "six": "fd7a:115c:a1e0::/64"},
  "acls": [
    {"action": "accept", "src": ["group:eng", "tag:ci"], "dst": ["tag:server:22,80,443", "db:5432", "[fd7a:115c:a1e0::1]:22"]},
    {"action": "accept", "src": ["autogroup:member"], "proto": "udp", "dst": ["autogroup:self:1024-65535", "six:53"]},
    {"Action": "accept", "Users": ["lan", "autogroup:danger-all"], "proto": "icmp", "Ports": ["autogroup:internet:*"]},
  ],
  "tests": [{"src": "alice@example.com", "proto": "tcp", "accept": ["tag:server:22"], "deny": ["db:22"]}],
  "ssh": [{"action": "check", "src": ["group:eng"], "dst": ["tag:server"], "users": ["root"], "checkPeriod": "12h"}],
  "grants": [], "nodeAttrs": [],
}`;

const NODES: Identity[] = [
  { user: 'alice@example.com', tags: [], addrs: ['100.64.0.1', 'fd7a:115c:a1e0::1'] },
  { user: 'bob@github', tags: ['tag:server'], addrs: ['100.64.0.5'] },
  { tags: [], addrs: ['10.1.1.1'] },
];

/** Parses; anything but a PolicyError fails the test. Exercises whatever parsed. */
function survive(text: string): void {
  let result;
  try {
    result = checkPolicy(text);
  } catch (e) {
    if (!(e instanceof PolicyError)) throw new Error(`non-PolicyError for ${JSON.stringify(text).slice(0, 300)}: ${String(e)}`, { cause: e });
    expect(['POLICY_SYNTAX', 'POLICY_INVALID']).toContain(e.code);
    expect(e.message.length).toBeGreaterThan(0);
    return;
  }
  const { policy } = result;
  for (const n of NODES) {
    compileFilter(policy, n, NODES);
    evaluate(policy, NODES[0]!, n, 6, 22);
  }
}

const SNIPPETS = ['{', '}', '[', ']', ',', ':', '"', '*', '//', '/*', '*/', '\n', 'null', '0', '-1', '1e400', '"tag:x"', '"group:y"', '"autogroup:self"', '"::"', '"__proto__"', '"constructor"', '"a@b"', '"100.64.0.1/33"', '"*:*"', '"x:99999"', '"accept"', '"deny"', 'true', '\\u0000', '\uD800'];

/** Applies one random edit to `text`. */
const mutation = fc.tuple(fc.nat(), fc.nat(), fc.constantFrom('delete', 'insert', 'replace', 'duplicate'), fc.constantFrom(...SNIPPETS));
function mutate(text: string, [a, b, op, snippet]: [number, number, string, string]): string {
  const i = a % (text.length + 1);
  const j = Math.min(text.length, i + (b % 20));
  switch (op) {
    case 'delete':
      return text.slice(0, i) + text.slice(j);
    case 'insert':
      return text.slice(0, i) + snippet + text.slice(i);
    case 'replace':
      return text.slice(0, i) + snippet + text.slice(j);
    default:
      return text.slice(0, j) + text.slice(i, j) + text.slice(j);
  }
}

const sectionValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.array(fc.dictionary(fc.constantFrom('action', 'src', 'dst', 'proto', 'users', 'ports', 'accept', 'deny', 'Action', 'checkPeriod'), fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.array(fc.constantFrom(...SNIPPETS.map((s) => s.replaceAll('"', '')), 'tag:server:22', 'db:80', 'alice@example.com', '*:*', 'fd7a::/48:22')))), { maxLength: 3 }),
  fc.dictionary(fc.constantFrom('group:eng', 'tag:server', 'db', 'tag:ci', 'group:a', '__proto__', 'x'), fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.array(fc.constantFrom('alice@example.com', 'group:eng', 'tag:server', 'autogroup:admin', '100.64.0.1', 'x')))),
);

describe('parsePolicy never crashes', () => {
  it('on the example and the rich policy', () => {
    expect(checkPolicy(EXAMPLE).failures).toEqual([]);
    expect(checkPolicy(RICH).failures).toEqual([]);
  });

  it('on random strings', () => {
    fc.assert(fc.property(fc.string({ maxLength: 200 }), survive), { numRuns: 2000 });
    fc.assert(fc.property(fc.string({ unit: fc.constantFrom(...SNIPPETS), maxLength: 40 }), survive), { numRuns: 2000 });
  });

  it('on random JSON values', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => survive(JSON.stringify(v) ?? 'null')), { numRuns: 1000 });
  });

  it('on random policy-shaped values', () => {
    const policy = fc.dictionary(fc.constantFrom('acls', 'groups', 'hosts', 'tagOwners', 'tests', 'ssh', 'grants', 'ACLS', 'TagOwners'), sectionValue);
    fc.assert(fc.property(policy, (v) => survive(JSON.stringify(v))), { numRuns: 1500 });
  });

  it('on mutations of valid policies', () => {
    fc.assert(
      fc.property(fc.constantFrom(EXAMPLE, RICH), fc.array(mutation, { minLength: 1, maxLength: 4 }), (base, edits) => survive(edits.reduce(mutate, base))),
      { numRuns: 3000 },
    );
  });

  it('on pathological input', () => {
    for (const text of ['{'.repeat(50_000), '['.repeat(64) + ']'.repeat(64), `{"acls": [${'{},'.repeat(10_000)}]}`, '"\\ud800"', '\u0000', '{"acls": [{"action": "accept", "src": ["*"], "dst": ["' + ':'.repeat(10_000) + '"]}]}']) {
      survive(text);
    }
  });
});
