/**
 * Packet filters: the compiled form of the policy for one destination node, and its matchers.
 *
 *   compileFilter(policy, self, nodes)   reference compile: per rule whose dst matches `self`,
 *                                        sources = addresses of the matched nodes (/32, /128)
 *                                        plus the selectors' literal prefixes
 *   mergeFilter(rules)                   merged and minimal; deterministic order
 *   filterAllows(filter, src, dst, …)    the reference check the receiving node runs
 *   compileMatcher(filter)               the same check, compiled for raw 4/16-byte addresses
 *
 * A packet is allowed when some rule lists its protocol, holds its source address, and has a dst
 * entry holding its destination address whose port range holds its destination port — the port
 * only for TCP, UDP and SCTP (ICMP and other protocols have none).
 *
 * Addresses are handled as numbers (IPv4 uint32, IPv6 bigint); string work is limited to parsing
 * (memoized) and formatting results.
 */
import { aggregate4, aggregate6, addrFromBytes, formatNet, formatV4, netContains, netCovers, parseV4, size4, size6, type Addr, type Net } from './net.ts';
import { coalescePorts, hasPorts } from './ports.ts';
import { cachedAddr, cachedNet, dstMatches, policyUser, selectorPrefixes, srcMatches } from './selectors.ts';
import { PolicyError, type FilterRule, type Identity, type PacketFilter, type Policy, type PortRange } from './types.ts';

function netOf(s: string): Net {
  const n = cachedNet(s);
  if (!n) throw new PolicyError('POLICY_INVALID', `packet filter: ${JSON.stringify(s)} is not an IP prefix`);
  return n;
}

/** Host prefixes ("/32", "/128") of a node's addresses (invalid ones are skipped). */
function hostPrefixes(addrs: readonly string[]): string[] {
  const out: string[] = [];
  for (const s of addrs) {
    const a = cachedAddr(s);
    if (a) out.push(a.v6 ? formatNet({ v6: true, addr: a.n, bits: 128 }) : `${formatV4(a.n)}/32`);
  }
  return out;
}

/** Aggregates prefixes: canonical text, IPv4 first, sorted, contained ones dropped, siblings joined. */
export function aggregatePrefixes(prefixes: Iterable<string>): string[] {
  return formatSet(aggregateNets(prefixes));
}

/** "a.b.c.d/n" → addr * 64 + n without allocating; -1 for anything else (then parsed in full). */
function fastV4(s: string): number {
  const slash = s.indexOf('/');
  if (slash < 7 || slash > 15 || s.length - slash < 2 || s.length - slash > 3) return -1;
  const addr = parseV4(s, 0, slash);
  if (addr < 0) return -1;
  let bits = 0;
  for (let i = slash + 1; i < s.length; i++) {
    const c = s.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    bits = bits * 10 + c;
  }
  if (bits > 32 || (s.length - slash === 3 && s.charCodeAt(slash + 1) === 48)) return -1;
  return addr * 64 + bits;
}

interface NetSet {
  v4a: number[];
  v4b: number[];
  v6: { addr: bigint; bits: number }[];
}

function aggregateNets(prefixes: Iterable<string>): NetSet {
  const a4: number[] = [];
  const b4: number[] = [];
  const n6: { addr: bigint; bits: number }[] = [];
  for (const s of prefixes) {
    const v4 = fastV4(s);
    if (v4 >= 0) {
      const bits = v4 % 64;
      const addr = (v4 - bits) / 64;
      a4.push(addr - (addr % size4(bits)));
      b4.push(bits);
      continue;
    }
    const n = netOf(s);
    if (n.v6) n6.push({ addr: n.addr, bits: n.bits });
    else {
      a4.push(n.addr);
      b4.push(n.bits);
    }
  }
  const [v4a, v4b] = aggregate4(a4, b4);
  return { v4a, v4b, v6: aggregate6(n6) };
}

function formatSet(s: NetSet): string[] {
  const out: string[] = [];
  for (let i = 0; i < s.v4a.length; i++) out.push(`${formatV4(s.v4a[i]!)}/${s.v4b[i]!}`);
  for (const p of s.v6) out.push(formatNet({ v6: true, addr: p.addr, bits: p.bits }));
  return out;
}

/**
 * The reference compile of the policy for destination node `self`, given every node that may send
 * to it (`nodes`, which may include `self`). Merged with `mergeFilter`.
 */
export function compileFilter(policy: Policy, self: Identity, nodes: readonly Identity[]): PacketFilter {
  const selfDst = hostPrefixes(self.addrs);
  const selfUser = policyUser(self);
  const rules: FilterRule[] = [];
  for (const rule of policy.acls) {
    const ports: PortRange[] = [];
    const selfPorts: PortRange[] = [];
    for (const d of rule.dst) {
      if (d.sel.kind === 'self') {
        if (selfUser !== undefined) selfPorts.push(...d.ports);
      } else if (dstMatches(policy, d.sel, self, self)) {
        ports.push(...d.ports);
      }
    }
    if (ports.length === 0 && selfPorts.length === 0) continue;
    const matched = nodes.filter((n) => rule.src.some((s) => srcMatches(policy, s, n)));
    const emit = (src: string[], p: PortRange[]) => {
      if (src.length === 0 || p.length === 0) return;
      const dst = selfDst.flatMap((prefix) => p.map((r) => ({ prefix, ports: { first: r.first, last: r.last } })));
      rules.push({ src, dst, protos: [...rule.protos] });
    };
    emit([...rule.src.flatMap(selectorPrefixes), ...matched.flatMap((n) => hostPrefixes(n.addrs))], ports);
    emit(matched.filter((n) => policyUser(n) === selfUser).flatMap((n) => hostPrefixes(n.addrs)), selfPorts);
  }
  return mergeFilter(rules);
}

interface Work {
  src: NetSet;
  srcKey: string;
  dst: { net: Net; ports: PortRange }[];
  dstKey: string;
  protos: number[];
  protosKey: string;
}

function netCmp(a: Net, b: Net): number {
  if (a.v6 !== b.v6) return a.v6 ? 1 : -1;
  if (a.addr !== b.addr) return a.addr < b.addr ? -1 : 1;
  return a.bits - b.bits;
}

/** Per prefix: ports coalesced; entries covered by another entry (prefix and ports) dropped. */
function normalizeDst(dst: { net: Net; ports: PortRange }[]): { net: Net; ports: PortRange }[] {
  const byNet = new Map<string, { net: Net; ports: PortRange[] }>();
  for (const d of dst) {
    const k = formatNet(d.net);
    const e = byNet.get(k);
    if (e) e.ports.push(d.ports);
    else byNet.set(k, { net: d.net, ports: [d.ports] });
  }
  const entries = [...byNet.values()].map((e) => ({ net: e.net, ports: coalescePorts(e.ports) }));
  const out: { net: Net; ports: PortRange }[] = [];
  for (const e of entries) {
    for (const r of e.ports) {
      const covered = entries.some(
        (o) => o !== e && netCovers(o.net, e.net) && o.ports.some((x) => x.first <= r.first && x.last >= r.last),
      );
      if (!covered) out.push({ net: e.net, ports: r });
    }
  }
  return out.sort((a, b) => netCmp(a.net, b.net) || a.ports.first - b.ports.first);
}

function dstKeyOf(dst: { net: Net; ports: PortRange }[]): string {
  return dst.map((d) => `${formatNet(d.net)}:${d.ports.first}-${d.ports.last}`).join(',');
}

/** A compact key of a source set (numbers, not formatted addresses). */
function setKey(s: NetSet): string {
  let k = '';
  for (let i = 0; i < s.v4a.length; i++) k += s.v4a[i]!.toString(36) + '/' + s.v4b[i]! + ',';
  for (const p of s.v6) k += p.addr.toString(36) + '/' + p.bits + ',';
  return k;
}

function withKeys(src: NetSet, srcKey: string | undefined, dst: { net: Net; ports: PortRange }[], protos: number[]): Work {
  const nd = normalizeDst(dst);
  const p = [...new Set(protos)].sort((a, b) => a - b);
  return { src, srcKey: srcKey ?? setKey(src), dst: nd, dstKey: dstKeyOf(nd), protos: p, protosKey: p.join(',') };
}

function unionSets(sets: NetSet[]): NetSet {
  if (sets.length === 1) return sets[0]!;
  const a4: number[] = [];
  const b4: number[] = [];
  const n6: { addr: bigint; bits: number }[] = [];
  for (const s of sets) {
    for (let i = 0; i < s.v4a.length; i++) {
      a4.push(s.v4a[i]!);
      b4.push(s.v4b[i]!);
    }
    n6.push(...s.v6);
  }
  const [v4a, v4b] = aggregate4(a4, b4);
  return { v4a, v4b, v6: aggregate6(n6) };
}

/** Groups `work` by `key`; each group of more than one is merged by `merge`. */
function mergeBy(work: Work[], key: (w: Work) => string, merge: (ws: Work[]) => Work): Work[] {
  const groups = new Map<string, Work[]>();
  for (const w of work) {
    const k = key(w);
    const g = groups.get(k);
    if (g) g.push(w);
    else groups.set(k, [w]);
  }
  return [...groups.values()].map((g) => (g.length === 1 ? g[0]! : merge(g)));
}

/**
 * Merges a filter into an equivalent minimal one: source prefixes aggregated; rules with the same
 * sources and protocols share one dst list, rules with the same dst list and protocols share
 * sources, rules with the same sources and dst list share protocols; port ranges of a prefix
 * coalesced; empty rules dropped; rules and entries in a deterministic order.
 */
export function mergeFilter(rules: PacketFilter): PacketFilter {
  let work: Work[] = [];
  for (const r of rules) {
    const protos = r.protos.filter((p) => Number.isInteger(p) && p >= 0 && p <= 255);
    const dst = r.dst
      .filter((d) => d.ports.first <= d.ports.last)
      .map((d) => ({ net: netOf(d.prefix), ports: { first: Math.max(0, d.ports.first), last: Math.min(65535, d.ports.last) } }));
    if (r.src.length === 0 || dst.length === 0 || protos.length === 0) continue;
    work.push(withKeys(aggregateNets(r.src), undefined, dst, protos));
  }
  for (let round = 0; round < 8; round++) {
    const before = work.length;
    work = mergeBy(work, (w) => `${w.protosKey}|${w.srcKey}`, (ws) => withKeys(ws[0]!.src, ws[0]!.srcKey, ws.flatMap((w) => w.dst), ws[0]!.protos));
    work = mergeBy(work, (w) => `${w.protosKey}|${w.dstKey}`, (ws) => withKeys(unionSets(ws.map((w) => w.src)), undefined, ws[0]!.dst, ws[0]!.protos));
    work = mergeBy(work, (w) => `${w.srcKey}|${w.dstKey}`, (ws) => withKeys(ws[0]!.src, ws[0]!.srcKey, ws[0]!.dst, ws.flatMap((w) => w.protos)));
    if (work.length === before) break;
  }
  work.sort((a, b) => cmpStr(a.protosKey, b.protosKey) || cmpStr(a.srcKey, b.srcKey) || cmpStr(a.dstKey, b.dstKey));
  return work.map((w) => ({
    src: formatSet(w.src),
    dst: w.dst.map((d) => ({ prefix: formatNet(d.net), ports: { first: d.ports.first, last: d.ports.last } })),
    protos: w.protos,
  }));
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function toAddr(ip: string | Uint8Array): Addr | null {
  return typeof ip === 'string' ? cachedAddr(ip) : addrFromBytes(ip);
}

/** The reference per-packet check: is this inbound packet allowed by `filter`? */
export function filterAllows(filter: PacketFilter, srcIp: string | Uint8Array, dstIp: string | Uint8Array, proto: number, port: number): boolean {
  const s = toAddr(srcIp);
  const d = toAddr(dstIp);
  if (!s || !d || s.v6 !== d.v6) return false;
  const ports = hasPorts(proto);
  for (const rule of filter) {
    if (!rule.protos.includes(proto)) continue;
    if (!rule.src.some((p) => netContains(netOf(p), s))) continue;
    for (const e of rule.dst) {
      if (netContains(netOf(e.prefix), d) && (!ports || (port >= e.ports.first && port <= e.ports.last))) return true;
    }
  }
  return false;
}

/** A compiled filter: raw 4- or 16-byte addresses in network order; ports ignored without a port. */
export type Matcher = (src: Uint8Array, dst: Uint8Array, proto: number, port: number) => boolean;

interface CompiledRule {
  /** IPv4 sources as sorted disjoint ranges: lo[i]..hi[i]. */
  lo4: Float64Array;
  hi4: Float64Array;
  lo6: bigint[];
  hi6: bigint[];
  dst4: { lo: number; hi: number; first: number; last: number }[];
  dst6: { lo: bigint; hi: bigint; first: number; last: number }[];
}

/** Index of the last range starting at or before x, or -1. */
function lastAtOrBefore<T extends number | bigint>(lo: ArrayLike<T>, x: T): number {
  let a = 0;
  let b = lo.length - 1;
  let found = -1;
  while (a <= b) {
    const m = (a + b) >> 1;
    if (lo[m]! <= x) {
      found = m;
      a = m + 1;
    } else {
      b = m - 1;
    }
  }
  return found;
}

function compileRule(rule: FilterRule): CompiledRule {
  const set = aggregateNets(rule.src);
  const lo4: number[] = [];
  const hi4: number[] = [];
  for (let i = 0; i < set.v4a.length; i++) {
    const lo = set.v4a[i]!;
    const hi = lo + size4(set.v4b[i]!) - 1;
    if (lo4.length && hi4[hi4.length - 1]! + 1 === lo) hi4[hi4.length - 1] = hi;
    else {
      lo4.push(lo);
      hi4.push(hi);
    }
  }
  const lo6: bigint[] = [];
  const hi6: bigint[] = [];
  for (const p of set.v6) {
    const hi = p.addr + size6(p.bits) - 1n;
    if (lo6.length && hi6[hi6.length - 1]! + 1n === p.addr) hi6[hi6.length - 1] = hi;
    else {
      lo6.push(p.addr);
      hi6.push(hi);
    }
  }
  const c: CompiledRule = { lo4: Float64Array.from(lo4), hi4: Float64Array.from(hi4), lo6, hi6, dst4: [], dst6: [] };
  for (const d of rule.dst) {
    const n = netOf(d.prefix);
    if (n.v6) c.dst6.push({ lo: n.addr, hi: n.addr + size6(n.bits) - 1n, first: d.ports.first, last: d.ports.last });
    else c.dst4.push({ lo: n.addr, hi: n.addr + size4(n.bits) - 1, first: d.ports.first, last: d.ports.last });
  }
  return c;
}

/** Compiles a filter into a fast per-packet matcher (rules indexed by protocol, sources by binary search). */
export function compileMatcher(filter: PacketFilter): Matcher {
  const byProto: (CompiledRule[] | undefined)[] = new Array(256);
  for (const rule of filter) {
    const c = compileRule(rule);
    for (const p of new Set(rule.protos)) {
      if (!Number.isInteger(p) || p < 0 || p > 255) continue;
      (byProto[p] ??= []).push(c);
    }
  }
  return (src, dst, proto, port) => {
    const rules = byProto[proto];
    if (!rules || src.length !== dst.length) return false;
    const ports = hasPorts(proto);
    if (src.length === 4) {
      const s = ((src[0]! << 24) | (src[1]! << 16) | (src[2]! << 8) | src[3]!) >>> 0;
      const d = ((dst[0]! << 24) | (dst[1]! << 16) | (dst[2]! << 8) | dst[3]!) >>> 0;
      for (const r of rules) {
        let ok = false;
        for (const e of r.dst4) {
          if (d >= e.lo && d <= e.hi && (!ports || (port >= e.first && port <= e.last))) {
            ok = true;
            break;
          }
        }
        if (!ok) continue;
        const i = lastAtOrBefore(r.lo4, s);
        if (i >= 0 && s <= r.hi4[i]!) return true;
      }
      return false;
    }
    if (src.length !== 16) return false;
    const sa = addrFromBytes(src)!.n as bigint;
    const da = addrFromBytes(dst)!.n as bigint;
    for (const r of rules) {
      let ok = false;
      for (const e of r.dst6) {
        if (da >= e.lo && da <= e.hi && (!ports || (port >= e.first && port <= e.last))) {
          ok = true;
          break;
        }
      }
      if (!ok) continue;
      const i = lastAtOrBefore(r.lo6, sa);
      if (i >= 0 && sa <= r.hi6[i]!) return true;
    }
    return false;
  };
}
