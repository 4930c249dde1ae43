/**
 * Sources and destinations of rules: what each kind of text means, and which nodes it matches.
 *
 *   "*"                     any            everything (as a source also non-tailnet addresses)
 *   "alice@example.com"     user           the user's untagged nodes (any text with "@")
 *   "group:eng"             group          the untagged nodes of the group's users
 *   "tag:server"            tag            nodes carrying the tag
 *   "autogroup:member"      member         untagged nodes (nodes owned by a user)
 *   "autogroup:tagged"      tagged         tagged nodes
 *   "autogroup:self"        self           (dst only) untagged nodes of the source's own user
 *   "autogroup:internet"    internet       (dst only) addresses outside the tailnet; no node
 *   "autogroup:danger-all"  danger-all     (src only) every address, tailnet or not
 *   "db"                    host           a `hosts` alias, resolved to its prefix
 *   "100.64.0.5", "10.0.0.0/8", "fd7a::/48"  prefix
 *
 * A tagged node has no user identity for the policy: user, group, member and self never match it.
 */
import { netContains, parseAddr, parseNet, formatNet, TAILNET_NETS, type Addr, type Net } from './net.ts';
import type { Identity, Policy, Selector } from './types.ts';

/** What a selector may refer to while parsing. */
export interface SelectorContext {
  groups: ReadonlyMap<string, readonly string[]>;
  hosts: ReadonlyMap<string, string>;
  tagOwners: ReadonlyMap<string, readonly string[]>;
}

export type Side = 'src' | 'dst';

export const SRC_AUTOGROUPS = ['autogroup:member', 'autogroup:tagged', 'autogroup:danger-all'] as const;
export const DST_AUTOGROUPS = ['autogroup:member', 'autogroup:tagged', 'autogroup:self', 'autogroup:internet'] as const;

const AUTOGROUP_KINDS: Record<string, Selector['kind']> = {
  'autogroup:member': 'member',
  'autogroup:tagged': 'tagged',
  'autogroup:self': 'self',
  'autogroup:internet': 'internet',
  'autogroup:danger-all': 'danger-all',
};

/** Tag names: a letter, then letters, digits and dashes (Tailscale's rule). */
export const TAG_RE = /^tag:[A-Za-z][A-Za-z0-9-]*$/;
/** Host alias names: no colon, "@", "/" or spaces; not an address; not a reserved prefix. */
export const HOST_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function isUser(s: string): boolean {
  return s.includes('@') && !/\s/.test(s);
}

/** Text that was probably meant as an IP or CIDR (digits, dots, colons, slash, hex). */
function looksLikeAddress(s: string): boolean {
  return /^[0-9a-fA-F.:/[\]]+$/.test(s) && /[.:]/.test(s);
}

/**
 * Parses one source or destination host (without ports). `entry` is the whole text shown in
 * messages (for a destination with its ports). Returns the selector or an error message.
 */
export function parseSelector(text: string, side: Side, entry: string, ctx: SelectorContext): Selector | { error: string } {
  const q = (s: string) => JSON.stringify(s);
  const at = `${side}=${q(entry)}`;
  if (text === '*') return { kind: 'any', text };
  if (text.startsWith('autogroup:')) {
    const kind = AUTOGROUP_KINDS[text];
    const valid: readonly string[] = side === 'src' ? SRC_AUTOGROUPS : DST_AUTOGROUPS;
    if (kind && !valid.includes(text)) return { error: `${q(text)} not valid on the ${side} side of a rule` };
    if (!kind) return { error: `${at}: unknown autogroup ${q(text)} (on the ${side} side of a rule: ${valid.join(', ')})` };
    return { kind, text } as Selector;
  }
  if (text.startsWith('group:')) {
    if (!ctx.groups.has(text)) return { error: `${side}=group not found: ${q(text)}` };
    return { kind: 'group', text, group: text };
  }
  if (text.startsWith('tag:')) {
    if (!ctx.tagOwners.has(text)) return { error: `${side}=tag not found: ${q(text)}` };
    return { kind: 'tag', text, tag: text };
  }
  if (text.includes('@')) {
    if (!isUser(text)) return { error: `${at}: invalid user ${q(text)} (no spaces allowed)` };
    return { kind: 'user', text, user: text };
  }
  const host = ctx.hosts.get(text);
  if (host !== undefined) return { kind: 'host', text, host: text, prefix: host };
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const p = parseNet(bare);
  if (p) {
    if (bare !== text && !p.net.v6) return { error: `${at}: brackets are for IPv6 addresses only` };
    if (p.hostBits) return { error: `${at}: ${q(bare)} has host bits set (did you mean ${q(formatNet(p.net))}?)` };
    return { kind: 'prefix', text, prefix: formatNet(p.net) };
  }
  if (text === '') return { error: `${at}: empty ${side === 'src' ? 'source' : 'destination'}` };
  if (looksLikeAddress(bare)) return { error: `${at}: ${q(bare)} is not a valid IP address or CIDR prefix` };
  return { error: `${side}=host not found: ${q(text)} (not a user, group, tag, autogroup, host alias or IP; users contain "@")` };
}

// ---- matching ----

const addrCache = new Map<string, Addr | null>();
const netCache = new Map<string, Net | null>();
const CACHE_MAX = 65536;

/** Parses an address text, remembering recent ones (identities are matched over and over). */
export function cachedAddr(s: string): Addr | null {
  let a = addrCache.get(s);
  if (a === undefined) {
    if (addrCache.size >= CACHE_MAX) addrCache.clear();
    a = parseAddr(s);
    addrCache.set(s, a);
  }
  return a;
}

export function cachedNet(s: string): Net | null {
  let n = netCache.get(s);
  if (n === undefined) {
    if (netCache.size >= CACHE_MAX) netCache.clear();
    n = parseNet(s)?.net ?? null;
    netCache.set(s, n);
  }
  return n;
}

export function isTagged(id: Identity): boolean {
  return id.tags.length > 0;
}

/** The user an identity stands for in the policy: none for tagged nodes. */
export function policyUser(id: Identity): string | undefined {
  return isTagged(id) ? undefined : id.user;
}

/** True when one of `addrs` lies in `prefix`. */
export function addrsIn(prefix: string, addrs: readonly string[]): boolean {
  const net = cachedNet(prefix);
  if (!net) return false;
  for (const s of addrs) {
    const a = cachedAddr(s);
    if (a && netContains(net, a)) return true;
  }
  return false;
}

/** True when `id` has addresses and none of them is in the tailnet ranges. */
export function isInternet(id: Identity): boolean {
  if (isTagged(id) || id.user !== undefined || id.addrs.length === 0) return false;
  for (const s of id.addrs) {
    const a = cachedAddr(s);
    if (!a || TAILNET_NETS.some((n) => netContains(n, a))) return false;
  }
  return true;
}

const groupSets = new WeakMap<ReadonlyMap<string, readonly string[]>, Map<string, Set<string>>>();

/** A group's members as a Set (groups of thousands are matched per node per rule). */
function groupSet(policy: Pick<Policy, 'groups'>, group: string): Set<string> | undefined {
  let m = groupSets.get(policy.groups);
  if (!m) groupSets.set(policy.groups, (m = new Map()));
  let s = m.get(group);
  if (!s) {
    const list = policy.groups.get(group);
    if (!list) return undefined;
    m.set(group, (s = new Set(list)));
  }
  return s;
}

/** Whether a node is matched by a source selector. */
export function srcMatches(policy: Pick<Policy, 'groups'>, sel: Selector, id: Identity): boolean {
  switch (sel.kind) {
    case 'any':
    case 'danger-all':
      return true;
    case 'user':
      return policyUser(id) === sel.user;
    case 'group': {
      const u = policyUser(id);
      return u !== undefined && (groupSet(policy, sel.group)?.has(u) ?? false);
    }
    case 'tag':
      return id.tags.includes(sel.tag);
    case 'host':
    case 'prefix':
      return addrsIn(sel.prefix, id.addrs);
    case 'member':
      return policyUser(id) !== undefined;
    case 'tagged':
      return isTagged(id);
    case 'self':
    case 'internet':
      return false;
  }
}

/** Whether node `dst` is matched by a destination selector for traffic from `src`. */
export function dstMatches(policy: Pick<Policy, 'groups'>, sel: Selector, src: Identity, dst: Identity): boolean {
  switch (sel.kind) {
    case 'self': {
      const u = policyUser(src);
      return u !== undefined && policyUser(dst) === u;
    }
    case 'internet':
      return isInternet(dst);
    default:
      return srcMatches(policy, sel, dst);
  }
}

/** The literal prefixes of a selector: what it matches besides nodes. */
export function selectorPrefixes(sel: Selector): string[] {
  switch (sel.kind) {
    case 'prefix':
    case 'host':
      return [sel.prefix];
    case 'any':
    case 'danger-all':
      return ['0.0.0.0/0', '::/0'];
    default:
      return [];
  }
}
