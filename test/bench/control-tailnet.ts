/**
 * The simulated tailnet of the control benchmark (test/bench/control.ts): a deterministic
 * population of users, groups, user devices and tagged servers, and a realistic policy for it.
 *
 *   70% user devices: users own 1–4 devices each; every user is in one of 10 groups
 *        (group:eng 30%, sales 18%, support 13%, …, sre 2.5%, security 2%, admins 0.5%), some
 *        in a second one (eng+sre, eng+data, support+sales)
 *   30% tagged servers: 23 tag sets over 17 tags (tag:prod+tag:api, tag:build, tag:batch,
 *        tag:dev+tag:k8s, tag:monitoring, …), owned by a device-less admin@example.com
 *   policy: groups, tagOwners for every tag, a host alias, 37 rules (group → tag, tag → tag,
 *        autogroup:member → tag:web:443, autogroup:member → autogroup:self:*,
 *        tag:monitoring → *:9100, group:admins → *:*, autogroup:tagged → tag:logging, a
 *        UDP-only rule, a subnet), 4 policy tests. A node sees ~8% of the tailnet on average
 *        (admins and monitoring servers see everyone).
 *
 * Variants (PolicyVariant): engProd adds "group:eng → tag:prod:443" (eng devices gain every
 * prod server as a peer, prod servers gain the eng devices and a filter rule); monitoringWide
 * widens "tag:monitoring → *:9100" to "*:9100-9101" (no peer changes, every node's packet
 * filter changes); denyAll keeps groups, tagOwners and hosts but no rules (the bootstrap).
 */

import { createHash } from 'node:crypto';

/** mulberry32: a small deterministic PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const GROUPS: readonly [string, number][] = [
  ['group:eng', 30],
  ['group:sales', 18],
  ['group:support', 13],
  ['group:sre', 2.5],
  ['group:data', 4],
  ['group:interns', 7],
  ['group:finance', 9],
  ['group:design', 8],
  ['group:security', 2],
  ['group:admins', 0.5],
];

/** Tag sets of servers with their weights (percent of servers). */
export const TAG_SETS: readonly [string[], number][] = [
  [['tag:prod', 'tag:web'], 1],
  [['tag:prod', 'tag:api'], 10],
  [['tag:prod', 'tag:db'], 5],
  [['tag:prod', 'tag:k8s'], 6],
  [['tag:prod', 'tag:crm'], 2],
  [['tag:prod', 'tag:erp'], 2],
  [['tag:prod', 'tag:cache'], 4],
  [['tag:dev', 'tag:web'], 0.5],
  [['tag:dev', 'tag:api'], 3],
  [['tag:dev', 'tag:db'], 1],
  [['tag:dev', 'tag:k8s'], 2],
  [['tag:dev'], 2],
  [['tag:staging', 'tag:web'], 0.5],
  [['tag:staging', 'tag:api'], 3],
  [['tag:staging', 'tag:db'], 1],
  [['tag:monitoring'], 0.5],
  [['tag:ci'], 5],
  [['tag:build'], 29],
  [['tag:batch'], 15],
  [['tag:backup'], 3],
  [['tag:logging'], 1],
  [['tag:prod', 'tag:web', 'tag:monitoring'], 0.5],
  [['tag:vpn'], 2],
];

export const TAGS = [...new Set(TAG_SETS.flatMap(([t]) => t))].sort();

export interface Spec {
  /** 0-based index in the population. */
  idx: number;
  hostname: string;
  kind: 'user' | 'server';
  /** The owning user (user devices), the admin who owns the tag key (servers). */
  user: string;
  tags: string[];
  /** Key into the auth-key table: the user name, or the tag set joined by ",". */
  keyName: string;
}

export interface Tailnet {
  users: { name: string; groups: string[] }[];
  specs: Spec[];
  policy: string;
  admin: string;
}

function pick<T>(r: () => number, items: readonly [T, number][]): T {
  const total = items.reduce((s, [, w]) => s + w, 0);
  let x = r() * total;
  for (const [v, w] of items) {
    x -= w;
    if (x < 0) return v;
  }
  return items[items.length - 1]![0];
}

/** The population of `n` nodes, shuffled (join order mixes users and servers). */
export function makeTailnet(n: number, seed = 1): Tailnet {
  const r = rng(seed);
  const servers = Math.round(n * 0.3);
  const devices = n - servers;
  const users: { name: string; groups: string[] }[] = [];
  const specs: Omit<Spec, 'idx'>[] = [];
  let d = 0;
  while (d < devices) {
    const name = `user${users.length + 1}@example.com`;
    const g = pick(r, GROUPS);
    const groups = [g];
    // Some users are in a second group (eng ↔ sre, eng ↔ data, support ↔ sales).
    if (g === 'group:eng' && r() < 0.15) groups.push(r() < 0.5 ? 'group:sre' : 'group:data');
    if (g === 'group:support' && r() < 0.2) groups.push('group:sales');
    users.push({ name, groups });
    const k = Math.min(devices - d, 1 + Math.floor(r() * 4));
    for (let i = 0; i < k; i++) specs.push({ hostname: `u${users.length}-dev${i + 1}`, kind: 'user', user: name, tags: [], keyName: name });
    d += k;
  }
  // A device-less administrator owns the tag keys (and the tagged servers).
  const admin = { name: 'admin@example.com', groups: ['group:admins'] };
  users.push(admin);
  for (let i = 0; i < servers; i++) {
    const tags = pick(r, TAG_SETS);
    specs.push({ hostname: `srv${i + 1}-${tags.map((t) => t.slice(4)).join('-')}`, kind: 'server', user: admin.name, tags, keyName: tags.join(',') });
  }
  // Fisher-Yates shuffle: users and servers join interleaved.
  for (let i = specs.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [specs[i], specs[j]] = [specs[j]!, specs[i]!];
  }
  return { users, specs: specs.map((s, idx) => ({ idx, ...s })), policy: policyText(users, {}), admin: admin.name };
}

export interface PolicyVariant {
  /** Add "group:eng → tag:prod:443". */
  engProd?: boolean;
  /** Widen "tag:monitoring → *:9100" to "*:9100-9101". */
  monitoringWide?: boolean;
  /** No rules and no tests (groups, tagOwners and hosts stay): the bootstrap policy. */
  denyAll?: boolean;
}

/** The policy text (HuJSON) for `users`, with the given changes applied. */
export function policyText(users: { name: string; groups: string[] }[], v: PolicyVariant): string {
  const groups: Record<string, string[]> = {};
  for (const [g] of GROUPS) groups[g] = [];
  for (const u of users) for (const g of u.groups) groups[g]!.push(u.name);
  const tagOwners: Record<string, string[]> = {};
  for (const t of TAGS) tagOwners[t] = ['group:admins', 'group:sre'];
  tagOwners['tag:ci'] = ['group:admins', 'group:sre', 'group:eng'];
  tagOwners['tag:dev'] = ['group:admins', 'group:sre', 'group:eng', 'tag:ci'];
  const acl = (src: string[], dst: string[], proto?: string) => ({ action: 'accept', src, dst, ...(proto ? { proto } : {}) });
  const acls = [
    acl(['group:admins'], ['*:*']),
    acl(['group:eng'], ['tag:dev:*']),
    acl(['group:eng'], ['tag:staging:22,80,443,8080']),
    acl(['group:sre'], ['tag:prod:22', 'tag:staging:*', 'tag:dev:*']),
    acl(['group:sre'], ['tag:k8s:*']),
    acl(['group:sre'], ['tag:monitoring:3000,9090']),
    acl(['group:sre'], ['tag:prod:53'], 'udp'),
    acl(['autogroup:member'], ['tag:web:443']),
    acl(['autogroup:member'], ['autogroup:self:*']),
    acl(['tag:monitoring'], [v.monitoringWide ? '*:9100-9101' : '*:9100']),
    acl(['tag:prod'], ['tag:db:5432']),
    acl(['tag:prod'], ['tag:monitoring:9090']),
    acl(['tag:dev'], ['tag:monitoring:9090']),
    acl(['tag:web'], ['tag:db:5432,6379']),
    acl(['tag:k8s'], ['tag:db:5432', 'tag:k8s:*']),
    acl(['tag:staging'], ['tag:db:5432']),
    acl(['tag:ci'], ['tag:dev:22', 'tag:staging:22', 'tag:k8s:6443']),
    acl(['tag:backup'], ['tag:db:22,5432']),
    acl(['autogroup:tagged'], ['tag:logging:514,6514']),
    acl(['group:data'], ['tag:db:5432']),
    acl(['group:data'], ['tag:k8s:8888']),
    acl(['group:sales'], ['tag:crm:443']),
    acl(['group:support'], ['tag:crm:443', 'tag:web:22']),
    acl(['group:finance'], ['tag:erp:443']),
    acl(['group:design'], ['tag:web:80,443', 'tag:staging:80,443']),
    acl(['group:interns'], ['tag:dev:80,443']),
    acl(['group:security'], ['tag:prod:22', 'tag:logging:*']),
    acl(['group:security'], ['tag:monitoring:*']),
    acl(['group:eng', 'group:sre'], ['corp-lan:*']),
    acl(['tag:ci'], ['tag:web:22']),
    acl(['group:support'], ['tag:logging:443']),
    acl(['tag:logging'], ['tag:backup:873']),
    acl(['tag:web'], ['tag:api:8080']),
    acl(['tag:api'], ['tag:db:5432', 'tag:api:8080', 'tag:cache:6379']),
    acl(['tag:batch'], ['tag:db:5432']),
    acl(['tag:ci'], ['tag:build:*']),
    acl(['group:sre', 'group:security'], ['tag:vpn:*']),
  ];
  if (v.engProd) acls.push(acl(['group:eng'], ['tag:prod:443']));
  if (v.denyAll) acls.length = 0;
  const first = (g: string) => groups[g]![0];
  const tests: unknown[] = [];
  if (first('group:eng')) tests.push({ src: first('group:eng'), accept: ['tag:dev:22', 'tag:web:443'], deny: ['tag:db:5432'] });
  if (first('group:sales')) tests.push({ src: first('group:sales'), accept: ['tag:crm:443'], deny: ['tag:dev:22', 'tag:db:5432'] });
  tests.push({ src: 'tag:prod', accept: ['tag:db:5432'], deny: ['tag:ci:22'] });
  tests.push({ src: 'tag:monitoring', accept: ['tag:web:9100', 'tag:db:9100'], deny: ['tag:web:22'] });
  if (v.denyAll) tests.length = 0;
  return `// Control benchmark policy (generated by test/bench/control-tailnet.ts).\n${JSON.stringify(
    { groups, tagOwners, hosts: { 'corp-lan': '10.0.0.0/8' }, acls, tests },
    null,
    1,
  )}\n`;
}

/** Order-independent digest of a set of ids (the server's netmap and the nodes' views are compared by it). */
export function idsDigest(ids: Iterable<number>): string {
  let n = 0;
  let sum = 0;
  let h = 0;
  for (const id of ids) {
    n++;
    sum += id;
    h = (h + Math.imul(id, 2654435761)) >>> 0;
  }
  return `${n}/${sum}/${h}`;
}

export function textHash(s: string): string {
  return createHash('sha1').update(s).digest('hex').slice(0, 16);
}
