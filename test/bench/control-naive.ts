/**
 * The baseline the control benchmark compares its netmap against: every node's peers (all
 * pairs × all rules) and filter (compileFilter), computed node by node with no classes.
 */
import type { ControlServer } from '../../gateway/src/control/server.ts';
import { compileFilter, dstMatches, srcMatches, type Identity, type Policy } from '../../src/policy/index.ts';
import { idsDigest } from './control-tailnet.ts';

// ------------------------------------------------------------------------------------ naive recompute

export interface NaiveResult {
  nodes: number;
  sampled: number;
  /** Measured time × nodes / sampled. */
  ms: number;
  measuredMs: number;
  mismatches: number;
}

function identities(server: ControlServer): { id: number; ident: Identity }[] {
  const st = server.state;
  const out: { id: number; ident: Identity }[] = [];
  for (const n of st.nodes.values()) {
    if (!st.netmap.node(n.id)) continue;
    const ident: Identity = { tags: n.tags, addrs: [n.ipv4, n.ipv6] };
    const u = st.userName(n.userId);
    if (u !== undefined) ident.user = u;
    out.push({ id: n.id, ident });
  }
  return out;
}

/**
 * Every node's peers (all pairs × all rules) and filter (compileFilter), with no classes. Nodes
 * are taken evenly spread until `budgetMs` is spent; the time is extrapolated to all nodes.
 */
export function naiveRecompute(server: ControlServer, policy: Policy, budgetMs: number): NaiveResult {
  const all = identities(server);
  const list = all.map((x) => x.ident);
  const matchSrc = (a: Identity, r: Policy['acls'][number]) => r.src.some((s) => srcMatches(policy, s, a));
  const sees = (a: Identity, b: Identity) =>
    policy.acls.some((r) => (matchSrc(a, r) && r.dst.some((d) => dstMatches(policy, d.sel, a, b))) || (matchSrc(b, r) && r.dst.some((d) => dstMatches(policy, d.sel, b, a))));
  // A stride coprime with the count walks every node once, spread over the id space.
  let stride = Math.max(1, Math.floor(all.length / 7) + 1);
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  while (gcd(stride, all.length) !== 1) stride++;
  let mismatches = 0;
  const results: [number, number[]][] = [];
  const t0 = performance.now();
  let k = 0;
  for (; k < all.length && (k < 1 || performance.now() - t0 < budgetMs); k++) {
    const me = all[(k * stride) % all.length]!;
    const peers: number[] = [];
    for (const o of all) if (o !== me && sees(me.ident, o.ident)) peers.push(o.id);
    compileFilter(policy, me.ident, list);
    results.push([me.id, peers]);
  }
  const measuredMs = performance.now() - t0;
  for (const [id, peers] of results) if (idsDigest(peers) !== idsDigest(server.state.netmap.peersOf(id))) mismatches++;
  return { nodes: all.length, sampled: k, measuredMs, ms: (measuredMs * all.length) / k, mismatches };
}

