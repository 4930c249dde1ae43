/** `pierce policy check FILE [--json]`: validates an ACL policy and runs its tests, offline. */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { checkPolicy, PolicyError, type TestFailure } from '../../../src/policy/index.ts';
import { UsageError, type Io } from './main.ts';

export const POLICY_USAGE = `Usage: pierce policy check FILE [--json]

Checks an ACL policy file (Tailscale's syntax: HuJSON with acls, groups, hosts, tagOwners,
tests, ssh) without a control server: parses and validates it, then runs its tests.

  --json      print {valid, errors?, failures?, rules, tests} on stdout

Exit status: 0 valid and every test passes; 1 a test fails; 2 the policy is invalid (or a usage
error). See docs/policy.md.
`;

function where(file: string, e: PolicyError): string {
  if (e.code === 'POLICY_SYNTAX') return `${file}: ${e.message}`; // the message has line:column
  const pos = e.line !== undefined ? `${file}:${e.line}:${e.column}` : file;
  const path = e.path && !e.message.startsWith(e.path) ? `${e.path}: ` : '';
  return `${pos}: ${path}${e.message}`;
}

export async function policyCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help' || rest.includes('--help') || rest.includes('-h')) {
    io.stdout(POLICY_USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'check') throw new UsageError(`unknown policy command "${sub}"`);
  const { values, positionals } = parseArgs({ args: rest, options: { json: { type: 'boolean' } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new UsageError('policy check needs exactly one FILE');
  const file = positionals[0]!;
  const json = values.json === true;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const msg = `cannot read ${file}: ${(e as Error).message}`;
    if (json) io.stdout(JSON.stringify({ valid: false, errors: [{ message: msg }], rules: 0, tests: 0 }) + '\n');
    else io.stderr(`pierce: ${msg}\n`);
    return 2;
  }
  let result: ReturnType<typeof checkPolicy>;
  try {
    result = checkPolicy(text);
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    if (json) {
      const err = { code: e.code, message: e.message, ...(e.path ? { path: e.path } : {}), ...(e.line !== undefined ? { line: e.line, column: e.column } : {}) };
      io.stdout(JSON.stringify({ valid: false, errors: [err], rules: 0, tests: 0 }) + '\n');
    } else {
      io.stderr(`${where(file, e)}\n`);
    }
    return 2;
  }
  const { policy, failures } = result;
  const rules = policy.acls.length;
  const tests = policy.tests.length;
  if (json) {
    const out: { valid: true; rules: number; tests: number; failures?: TestFailure[] } = { valid: true, rules, tests };
    if (failures.length) out.failures = failures;
    io.stdout(JSON.stringify(out) + '\n');
    return failures.length ? 1 : 0;
  }
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  const ignored = policy.ignored.length ? ` (ignored: ${policy.ignored.join(', ')})` : '';
  if (failures.length === 0) {
    io.stdout(`${file}: ok: ${plural(rules, 'rule')}, ${plural(tests, 'test')} passed${ignored}\n`);
    return 0;
  }
  for (const f of failures) io.stdout(`${f.message}\n`);
  const failedTests = new Set(failures.map((f) => f.test)).size;
  io.stdout(`${file}: ${plural(failures.length, 'assertion')} failed in ${failedTests} of ${plural(tests, 'test')} (${plural(rules, 'rule')})\n`);
  return 1;
}
