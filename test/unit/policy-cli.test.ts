/**
 * `pierce policy check` end to end: the real CLI, spawned, against the example policy (exit 0),
 * a policy whose tests fail (exit 1) and an invalid one (exit 2).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const PIERCE = fileURLToPath(new URL('../../gateway/bin/pierce.mjs', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../fixtures/example-policy.hujson', import.meta.url));

const dir = mkdtempSync(join(tmpdir(), 'pierce-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function pierce(args: string[]) {
  return spawnSync(process.execPath, [PIERCE, ...args], { encoding: 'utf8', timeout: 30_000 });
}

const FAILING = file(
  'failing.hujson',
  readFileSync(EXAMPLE, 'utf8').replace('"dst": ["tag:trusted:80,443,1024-65535"]', '"dst": ["tag:trusted:22,80,443,1024-65535"]'),
);
const INVALID = file('invalid.hujson', '{\n  "tagOwners": {"tag:server": []},\n  "acls": [\n    {"action": "accept", "src": ["*"], "dst": ["tag:server:ssh"]},\n  ],\n}\n');

describe('pierce policy check', () => {
  it('exits 0 with a summary for a valid policy whose tests pass', () => {
    const r = pierce(['policy', 'check', EXAMPLE]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${EXAMPLE}: ok: 4 rules, 3 tests passed\n`);
  });

  it('exits 1 and prints each failure when a test fails', () => {
    const r = pierce(['policy', 'check', FAILING]);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('tests[1] (src "tag:server"): deny "tag:trusted:22" failed: allowed by acls[2] (src ["tag:server"] dst ["tag:trusted:22,80,443,1024-65535"])\n');
    expect(r.stdout).toContain(`${FAILING}: 1 assertion failed in 1 of 3 tests (4 rules)\n`);
  });

  it('exits 2 and prints the error with file, line and column when the policy is invalid', () => {
    const r = pierce(['policy', 'check', INVALID]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`${INVALID}:4:48: acls[0].dst[0]: dst="tag:server:ssh": port range "ssh": invalid first integer\n`);
    const s = pierce(['policy', 'check', file('syntax.hujson', '{"acls": [}')]);
    expect(s.status).toBe(2);
    expect(s.stderr).toMatch(/syntax\.hujson: HuJSON syntax error at 1:11: expected a value\n$/);
  });

  it('--json reports {valid, errors?, failures?, rules, tests}', () => {
    const ok = pierce(['policy', 'check', '--json', EXAMPLE]);
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ valid: true, rules: 4, tests: 3 });

    const failing = pierce(['policy', 'check', FAILING, '--json']);
    expect(failing.status).toBe(1);
    const f = JSON.parse(failing.stdout);
    expect(f).toMatchObject({ valid: true, rules: 4, tests: 3 });
    expect(f.failures).toEqual([expect.objectContaining({ test: 1, kind: 'deny', dst: 'tag:trusted:22', ruleIndex: 2 })]);

    const invalid = pierce(['policy', 'check', INVALID, '--json']);
    expect(invalid.status).toBe(2);
    expect(JSON.parse(invalid.stdout)).toEqual({
      valid: false,
      errors: [{ code: 'POLICY_INVALID', message: 'dst="tag:server:ssh": port range "ssh": invalid first integer', path: 'acls[0].dst[0]', line: 4, column: 48 }],
      rules: 0,
      tests: 0,
    });
  });

  it('prints usage with --help, and exits 2 on usage errors and unreadable files', () => {
    const h = pierce(['policy', 'check', '--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/^Usage: pierce policy check FILE \[--json\]/);
    expect(pierce(['--help']).stdout).toContain('policy check FILE');
    const u = pierce(['policy', 'frob']);
    expect(u.status).toBe(2);
    expect(u.stderr).toMatch(/unknown policy command "frob"/);
    expect(pierce(['policy', 'check']).status).toBe(2);
    const missing = pierce(['policy', 'check', join(dir, 'nope.hujson')]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/cannot read .*nope\.hujson/);
  });
});
