/**
 * Direct evaluation of the rules: may node `src` send (proto, port) to node `dst`? Rules add up
 * (any accepting rule allows) and everything else is denied. For protocols without ports (ICMP,
 * GRE, …) the port is ignored; a rule with ports "22" and the default protocols therefore lets
 * its sources ping the destination, as its compiled filter does.
 *
 * Also: `classKey` (nodes the policy cannot tell apart) and `canOwnTag`.
 */
import { hasPorts, portsContain } from './ports.ts';
import { addrsIn, dstMatches, isInternet, isTagged, srcMatches } from './selectors.ts';
import type { Identity, Policy, Rule } from './types.ts';

/** Why a rule does not allow a packet, or 'allowed'. Checked in the order src, dst, port, proto. */
export type RuleVerdict = 'allowed' | 'src' | 'dst' | 'port' | 'proto';

/** How one rule judges (src, dst, proto, port). */
export function ruleVerdict(policy: Policy, rule: Rule, src: Identity, dst: Identity, proto: number, port: number): RuleVerdict {
  if (!rule.src.some((s) => srcMatches(policy, s, src))) return 'src';
  const dsts = rule.dst.filter((d) => dstMatches(policy, d.sel, src, dst));
  if (dsts.length === 0) return 'dst';
  const anyPort = !hasPorts(proto);
  const portOk = anyPort || dsts.some((d) => portsContain(d.ports, port));
  const protoOk = rule.protos.includes(proto);
  if (!portOk) return 'port';
  return protoOk ? 'allowed' : 'proto';
}

/** Evaluates the acls directly: allowed, and by which rule (the first that allows). */
export function evaluate(policy: Policy, src: Identity, dst: Identity, proto: number, port: number): { allowed: boolean; rule?: number } {
  for (const rule of policy.acls) {
    if (ruleVerdict(policy, rule, src, dst, proto, port) === 'allowed') return { allowed: true, rule: rule.index };
  }
  return { allowed: false };
}

interface PolicyIndex {
  /** The distinct prefixes of prefix and host selectors (acls and ssh), in first-use order. */
  prefixes: string[];
  usesInternet: boolean;
}

const indexes = new WeakMap<Policy, PolicyIndex>();

function policyIndex(policy: Policy): PolicyIndex {
  let ix = indexes.get(policy);
  if (ix) return ix;
  const seen = new Set<string>();
  let usesInternet = false;
  const visit = (sel: { kind: string; prefix?: string }) => {
    if ((sel.kind === 'prefix' || sel.kind === 'host') && sel.prefix !== undefined) seen.add(sel.prefix);
    if (sel.kind === 'internet') usesInternet = true;
  };
  for (const r of policy.acls) {
    r.src.forEach(visit);
    r.dst.forEach((d) => visit(d.sel));
  }
  for (const r of policy.ssh) {
    r.src.forEach(visit);
    r.dst.forEach(visit);
  }
  ix = { prefixes: [...seen], usesInternet };
  indexes.set(policy, ix);
  return ix;
}

/**
 * A key such that two identities with the same key are matched alike by every selector of the
 * policy (as source and as destination, autogroup:self included): the user for untagged nodes,
 * the sorted tags for tagged ones, and which of the policy's IP prefixes contain the node.
 */
export function classKey(policy: Policy, id: Identity): string {
  const ix = policyIndex(policy);
  let bits = '';
  let word = 0;
  ix.prefixes.forEach((p, i) => {
    if (addrsIn(p, id.addrs)) word |= 1 << (i % 30);
    if (i % 30 === 29) {
      bits += word.toString(36) + '.';
      word = 0;
    }
  });
  if (ix.prefixes.length % 30 !== 0) bits += word.toString(36);
  const who = isTagged(id) ? 'T' + JSON.stringify([...new Set(id.tags)].sort()) : id.user === undefined ? 'N' : 'U' + JSON.stringify(id.user);
  return `${who}|${bits}${ix.usesInternet && isInternet(id) ? '|i' : ''}`;
}

/**
 * Whether `user` may apply `tag` to a node: the tag is in tagOwners and the user is listed, is in
 * a listed group, or autogroup:member / autogroup:admin is listed (every user, since Pierce has
 * no admin role). `user` may also be a tag ("tag:ci"): tags listed as owners can apply the tag.
 */
export function canOwnTag(policy: Policy, user: string, tag: string): boolean {
  const owners = policy.tagOwners.get(tag);
  if (!owners) return false;
  for (const o of owners) {
    if (o === user) return true;
    if (user.startsWith('tag:')) continue;
    if (o === 'autogroup:member' || o === 'autogroup:admin') return true;
    if (o.startsWith('group:') && policy.groups.get(o)?.includes(user)) return true;
  }
  return false;
}
