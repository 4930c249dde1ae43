/**
 * Policy `tests`, evaluated symbolically: a test's source and each destination stand for the
 * identity they name ("tag:server" → a node tagged tag:server; "alice@example.com" → an untagged
 * node of alice; "100.64.0.5" or a host alias → a node with that address only).
 *
 * Unlike Tailscale, which answers "test(s) failed", every failure says which assertion failed and
 * why:
 *   tests[1] (src "tag:server"): deny "tag:trusted:22" failed: allowed by acls[0] (src ["tag:server"] dst ["*:*"])
 *   tests[2] (src "tag:untrusted"): accept "tag:untrusted:22" failed: no rule allows it
 *     (acls[3] matches the source but not the destination "tag:untrusted"; acls[4] matches the
 *     source and destination but not port 22)
 */
import { ruleVerdict } from './evaluate.ts';
import { parsePolicy } from './parse.ts';
import { formatPorts, hasPorts, protoName } from './ports.ts';
import { dstMatches } from './selectors.ts';
import type { Policy, PolicyTest, Rule, TestDst, TestFailure } from './types.ts';

const q = (s: string) => JSON.stringify(s);

/** How many near-miss rules an accept failure lists. */
const MAX_HINTS = 5;

/** `acls[2] (src ["tag:server"] dst ["tag:trusted:80,443"])`, with the proto when one was given. */
export function describeRule(rule: Rule): string {
  const src = JSON.stringify(rule.src.map((s) => s.text));
  const dst = JSON.stringify(rule.dst.map((d) => d.text));
  return `acls[${rule.index}] (src ${src}${rule.proto !== undefined ? ` proto ${q(rule.proto)}` : ''} dst ${dst})`;
}

function explainDenied(policy: Policy, t: PolicyTest, d: TestDst): string {
  const hints: string[] = [];
  for (const rule of policy.acls) {
    const v = ruleVerdict(policy, rule, t.srcId, d.id, t.proto, d.port);
    if (v === 'dst') hints.push(`acls[${rule.index}] matches the source but not the destination ${q(d.host)}`);
    else if (v === 'port') {
      const ports = rule.dst.filter((x) => dstMatches(policy, x.sel, t.srcId, d.id)).map((x) => formatPorts(x.ports)).join(' and ');
      hints.push(`acls[${rule.index}] matches the source and destination but not port ${d.port} (ports ${ports})`);
    } else if (v === 'proto') {
      hints.push(`acls[${rule.index}] matches the source, destination and port but not proto ${protoName(t.proto)} (protos ${rule.protos.map(protoName).join(', ')})`);
    }
  }
  if (hints.length === 0) return `no rule allows it (no rule has ${q(t.src)} among its sources)`;
  const more = hints.length > MAX_HINTS ? `; and ${hints.length - MAX_HINTS} more` : '';
  return `no rule allows it (${hints.slice(0, MAX_HINTS).join('; ')}${more})`;
}

/** Runs the policy's tests; returns one failure per failed assertion (empty when all pass). */
export function runPolicyTests(policy: Policy): TestFailure[] {
  const failures: TestFailure[] = [];
  for (const t of policy.tests) {
    const head = `tests[${t.index}] (src ${q(t.src)}${t.protoText !== undefined ? `, proto ${q(t.protoText)}` : ''})`;
    const check = (kind: 'accept' | 'deny', d: TestDst) => {
      let allowedBy: Rule | undefined;
      for (const rule of policy.acls) {
        if (ruleVerdict(policy, rule, t.srcId, d.id, t.proto, hasPorts(t.proto) ? d.port : 0) === 'allowed') {
          allowedBy = rule;
          break;
        }
      }
      if (kind === 'accept' && !allowedBy) {
        failures.push({ test: t.index, src: t.src, kind, dst: d.text, message: `${head}: accept ${q(d.text)} failed: ${explainDenied(policy, t, d)}` });
      } else if (kind === 'deny' && allowedBy) {
        failures.push({
          test: t.index,
          src: t.src,
          kind,
          dst: d.text,
          message: `${head}: deny ${q(d.text)} failed: allowed by ${describeRule(allowedBy)}`,
          ruleIndex: allowedBy.index,
        });
      }
    };
    for (const d of t.accept) check('accept', d);
    for (const d of t.deny) check('deny', d);
  }
  return failures;
}

/** Parses the policy (throws PolicyError when invalid) and runs its tests. */
export function checkPolicy(text: string): { policy: Policy; failures: TestFailure[] } {
  const policy = parsePolicy(text);
  return { policy, failures: runPolicyTests(policy) };
}
