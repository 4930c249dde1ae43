/**
 * The policy's `ssh` section compiled for one destination node: which tailnet addresses may
 * open an SSH session to its built-in server (`pierce up --ssh`) and as which local users.
 * Only nodes that run the server get these rules (MapRequest.sshServer). The source side
 * (`sshSources`) is computed once per netmap flush and shared by those nodes.
 *
 * A source class matches a rule when one of the rule's `src` selectors matches it and one of
 * its `dst` selectors matches the destination for that source (autogroup:self: same user,
 * both untagged). Its members' addresses become the rule's principals.
 */
import type { SshPolicyRule } from '../../../src/control/messages.ts';
import { dstMatches, srcMatches, type Identity, type Policy, type SshRule } from '../../../src/policy/index.ts';

export interface SshSourceClass {
  readonly rep: Identity;
  /** Tailnet addresses of the class's members. */
  readonly addrs: readonly string[];
}

/** Per `ssh` rule, the classes its `src` matches: the part that does not depend on the destination. */
export type SshSources = { rule: SshRule; classes: SshSourceClass[] }[];

export function sshSources(policy: Policy, classes: readonly SshSourceClass[]): SshSources {
  return policy.ssh.map((rule) => ({ rule, classes: classes.filter((c) => rule.src.some((s) => srcMatches(policy, s, c.rep))) }));
}

/** The rules for destination `dst`: each rule's source classes that its `dst` admits for them. */
export function sshRulesFor(policy: Policy, sources: SshSources, dst: Identity): SshPolicyRule[] {
  const out: SshPolicyRule[] = [];
  for (const { rule: r, classes } of sources) {
    const principals: string[] = [];
    for (const c of classes) if (r.dst.some((d) => dstMatches(policy, d, c.rep, dst))) principals.push(...c.addrs);
    if (principals.length === 0) continue;
    const rule: SshPolicyRule = { action: r.action, principals: principals.sort(), users: r.users, rule: r.index };
    if (r.acceptEnv?.length) rule.acceptEnv = r.acceptEnv;
    out.push(rule);
  }
  return out;
}
