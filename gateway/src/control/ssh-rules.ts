/**
 * The policy's `ssh` section compiled for one destination node: which tailnet addresses may
 * open an SSH session to its built-in server (`pierce up --ssh`) and as which local users.
 * Only nodes that run the server get these rules (MapRequest.sshServer), so the cost, one pass
 * over the classes per rule, is paid for a handful of nodes.
 *
 * A source class matches a rule when one of the rule's `src` selectors matches it and one of
 * its `dst` selectors matches the destination for that source (autogroup:self: same user,
 * both untagged). Its members' addresses become the rule's principals.
 */
import type { SshPolicyRule } from '../../../src/control/messages.ts';
import { dstMatches, srcMatches, type Identity, type Policy } from '../../../src/policy/index.ts';

export interface SshSourceClass {
  readonly rep: Identity;
  /** Tailnet addresses of the class's members. */
  addrs(): Iterable<string>;
}

export function sshRulesFor(policy: Policy, classes: Iterable<SshSourceClass>, dst: Identity): SshPolicyRule[] {
  const out: SshPolicyRule[] = [];
  const list = [...classes];
  for (const r of policy.ssh) {
    const principals: string[] = [];
    for (const c of list) {
      if (!r.src.some((s) => srcMatches(policy, s, c.rep))) continue;
      if (!r.dst.some((d) => dstMatches(policy, d, c.rep, dst))) continue;
      for (const a of c.addrs()) principals.push(a);
    }
    if (principals.length === 0) continue;
    const rule: SshPolicyRule = { action: r.action, principals: principals.sort(), users: r.users, rule: r.index };
    if (r.acceptEnv?.length) rule.acceptEnv = r.acceptEnv;
    out.push(rule);
  }
  return out;
}
