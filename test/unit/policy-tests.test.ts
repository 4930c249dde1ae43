/**
 * Policy tests: the example policy from the brief passes unchanged; broken variants fail with
 * explanations naming the assertion and the rule (or the near misses).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkPolicy, evaluate, parsePolicy, runPolicyTests, type Identity } from '../../src/policy/index.ts';

const EXAMPLE = readFileSync(fileURLToPath(new URL('../fixtures/example-policy.hujson', import.meta.url)), 'utf8');

/** The example with its rules changed (the tests stay as they are). */
function broken(): string {
  const text = EXAMPLE.replace('"dst": ["tag:trusted:80,443,1024-65535"]', '"dst": ["tag:trusted:22,80,443,1024-65535"]').replace(
    '"dst": ["tag:trusted:80,443,1024-65535", "tag:server:80,443,1024-65535"]',
    '"dst": ["tag:trusted:80,443,1024-65535", "tag:server:443"]',
  );
  expect(text).not.toBe(EXAMPLE);
  return text;
}

describe('the example policy', () => {
  const { policy, failures } = checkPolicy(EXAMPLE);
  const node = (tag: string): Identity => ({ tags: [tag], addrs: [] });
  const [trusted, server, untrusted] = [node('tag:trusted'), node('tag:server'), node('tag:untrusted')];

  it('is valid and its tests pass', () => {
    expect(failures).toEqual([]);
    expect(policy.acls).toHaveLength(4);
    expect(policy.tests).toHaveLength(3);
    expect([...policy.tagOwners.keys()]).toEqual(['tag:trusted', 'tag:server', 'tag:untrusted']);
  });

  it('trusted reaches everything', () => {
    for (const dst of [trusted, server, untrusted]) for (const port of [1, 22, 80, 443, 1023, 8080, 65535]) expect(evaluate(policy, trusted, dst, 6, port).allowed).toBe(true);
  });

  it('server reaches server on all ports and trusted on 80, 443, 1024-65535', () => {
    for (const port of [1, 22, 80, 65535]) expect(evaluate(policy, server, server, 6, port).allowed).toBe(true);
    for (const [port, want] of [[22, false], [79, false], [80, true], [443, true], [1023, false], [1024, true], [65535, true]] as const) {
      expect(evaluate(policy, server, trusted, 17, port).allowed, `port ${port}`).toBe(want);
    }
    expect(evaluate(policy, server, untrusted, 6, 8080).allowed).toBe(false);
  });

  it('untrusted reaches trusted and server on 80, 443, 1024-65535 only', () => {
    for (const dst of [trusted, server]) {
      for (const [port, want] of [[22, false], [80, true], [443, true], [444, false], [1024, true]] as const) expect(evaluate(policy, untrusted, dst, 6, port).allowed).toBe(want);
    }
    expect(evaluate(policy, untrusted, untrusted, 6, 8080).allowed).toBe(false);
  });
});

describe('failure explanations', () => {
  it('a broken variant of the example fails with the assertion and the rule', () => {
    const { failures } = checkPolicy(broken());
    expect(failures.map((f) => f.message)).toEqual([
      'tests[1] (src "tag:server"): deny "tag:trusted:22" failed: allowed by acls[2] (src ["tag:server"] dst ["tag:trusted:22,80,443,1024-65535"])',
      'tests[2] (src "tag:untrusted"): accept "tag:server:80" failed: no rule allows it (acls[3] matches the source and destination but not port 80 (ports 443))',
      'tests[2] (src "tag:untrusted"): accept "tag:server:8080" failed: no rule allows it (acls[3] matches the source and destination but not port 8080 (ports 443))',
    ]);
    expect(failures[0]).toEqual({
      test: 1,
      src: 'tag:server',
      kind: 'deny',
      dst: 'tag:trusted:22',
      ruleIndex: 2,
      message: expect.stringContaining('allowed by acls[2]'),
    });
    expect(failures[1]).toMatchObject({ test: 2, src: 'tag:untrusted', kind: 'accept', dst: 'tag:server:80' });
    expect(failures[1]!.ruleIndex).toBeUndefined();
  });

  it('an accept failure lists rules that match the source but not the destination, port or proto', () => {
    const p = parsePolicy(`{
      "tagOwners": {"tag:a": [], "tag:b": [], "tag:c": []},
      "acls": [
        {"action": "accept", "src": ["tag:a"], "dst": ["tag:b:80"]},
        {"action": "accept", "src": ["tag:a"], "proto": "udp", "dst": ["tag:c:22"]},
        {"action": "accept", "src": ["tag:a"], "dst": ["tag:c:443"]},
        {"action": "accept", "src": ["tag:b"], "dst": ["tag:c:22"]},
      ],
      "tests": [
        {"src": "tag:a", "accept": ["tag:c:22"]},
        {"src": "tag:c", "accept": ["tag:a:22"]},
        {"src": "tag:a", "proto": "udp", "accept": ["tag:c:22"], "deny": ["tag:c:23", "tag:b:80"]},
      ],
    }`);
    expect(runPolicyTests(p).map((f) => f.message)).toEqual([
      'tests[0] (src "tag:a"): accept "tag:c:22" failed: no rule allows it (acls[0] matches the source but not the destination "tag:c"; ' +
        'acls[1] matches the source, destination and port but not proto tcp (protos udp); acls[2] matches the source and destination but not port 22 (ports 443))',
      'tests[1] (src "tag:c"): accept "tag:a:22" failed: no rule allows it (no rule has "tag:c" among its sources)',
      'tests[2] (src "tag:a", proto "udp"): deny "tag:b:80" failed: allowed by acls[0] (src ["tag:a"] dst ["tag:b:80"])',
    ]);
  });

  it('users, groups and autogroup:self in tests', () => {
    const p = parsePolicy(`{
      "groups": {"group:eng": ["alice@example.com"]},
      "hosts": {"db": "100.64.0.5"},
      "acls": [
        {"action": "accept", "src": ["group:eng"], "dst": ["db:5432"]},
        {"action": "accept", "src": ["autogroup:member"], "dst": ["autogroup:self:*"]},
      ],
      "tests": [
        {"src": "alice@example.com", "accept": ["db:5432", "alice@example.com:22"], "deny": ["bob@example.com:22", "db:22"]},
        {"src": "bob@example.com", "deny": ["db:5432"], "accept": ["bob@example.com:8080"]},
      ],
    }`);
    expect(runPolicyTests(p)).toEqual([]);
  });
});
