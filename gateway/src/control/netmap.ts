/**
 * The netmap: which node sees which peers, each node's packet filter, and the deltas that keep
 * every connected node up to date.
 *
 * Scale comes from working on classes, not nodes. Nodes the policy cannot tell apart (same
 * user when untagged, same tags, same matches of the policy's IP selectors: `classKey`) share
 * a class; visibility and filters are computed once per class:
 *
 *   S[r]  classes matched by rule r's sources      D[r]  classes matched by its destinations
 *   A sees B  ⇔  some rule has (A ∈ S[r] and B ∈ D[r]) or (B ∈ S[r] and A ∈ D[r])
 *               (autogroup:self: both untagged, same user, one of them in S[r])
 *
 * Each class keeps the bitset of node slots it sees (`peerBits`); a policy change rebuilds the
 * classes and diffs old against new bitsets once per (old class, new class) pair, so a change
 * costs O(classes × nodes / 32) plus the deltas actually sent. A node joining an existing class
 * is incremental: its bit is set in the classes that see it and they get one `peersChanged`.
 * Deltas are batched per node and flushed once per event-loop turn.
 */
import type { PeerInfo, PeerPatch, RelayMap, SelfInfo } from '../../../src/control/messages.ts';
import { classKey, dstMatches, srcMatches, selectorPrefixes, aggregatePrefixes } from '../../../src/policy/index.ts';
import type { Identity, Policy, PortRange, Rule } from '../../../src/policy/index.ts';
import type { NodeRecord } from '../store/types.ts';
import { materializeFilter } from '../../../src/control/filter-sets.ts';
import { SrcSetRegistry, hostPrefixes, type SrcSet } from './srcsets.ts';
import { sshRulesFor, sshSources, type SshSources } from './ssh-rules.ts';

/** Where a connected node's map messages go; `send` gets the fields after "t" and "seq". */
export interface MapSink {
  send(body: string): void;
}

export interface LiveReport {
  discoKey?: string;
  endpoints?: string[];
  homeRelay?: number;
  /** The node runs the built-in SSH server and gets `ssh` rules. */
  sshServer?: boolean;
}

interface Pending {
  changed: Set<number>;
  removed: Set<number>;
  patches: Map<number, PeerPatch>;
  self: boolean;
  filter: boolean;
  relays: boolean;
  setPatches: string[];
  /** New `ssh` rules JSON for an SSH-server node. */
  ssh?: string;
}

/** One node as the netmap holds it. */
export class MapNode {
  slot = -1;
  cls!: NodeClass;
  identity!: Identity;
  online = false;
  endpoints: string[] = [];
  homeRelay = 0;
  sink: MapSink | undefined;
  pending: Pending | undefined;
  /** The class filter signature last sent to this node, and the source sets it holds. */
  sentFilter: string | undefined;
  sentSets = new Set<string>();
  /** Runs the built-in SSH server; the `ssh` rules JSON last sent to it. */
  sshServer = false;
  sentSsh: string | undefined;
  private peerJsonCache: string | undefined;
  private selfJsonCache: string | undefined;

  constructor(
    public rec: NodeRecord,
    public userName: string | undefined,
  ) {}

  get id(): number {
    return this.rec.id;
  }

  invalidate(): void {
    this.peerJsonCache = undefined;
    this.selfJsonCache = undefined;
  }

  info(): PeerInfo {
    const r = this.rec;
    const p: PeerInfo = {
      id: r.id,
      name: r.name,
      tags: r.tags,
      nodeKey: r.nodeKey,
      discoKey: r.discoKey,
      addrs: [`${r.ipv4}/32`, `${r.ipv6}/128`],
      endpoints: this.endpoints,
      homeRelay: this.homeRelay,
      online: this.online,
      lastSeen: this.online ? null : r.lastSeen,
      keyExpiry: r.keyExpiry,
    };
    if (r.tags.length === 0 && this.userName !== undefined) p.user = this.userName;
    return p;
  }

  get peerJson(): string {
    return (this.peerJsonCache ??= JSON.stringify(this.info()));
  }

  get selfJson(): string {
    const s: SelfInfo = { ...this.info(), ephemeral: this.rec.ephemeral, machineKey: this.rec.machineKey };
    return (this.selfJsonCache ??= JSON.stringify(s));
  }
}

/** A compiled filter rule of a class: sources by set (shared), the destination is the node. */
interface ClassRule {
  set: SrcSet | undefined;
  literalJson: string;
  ports: PortRange[];
  protos: number[];
}

export class NodeClass {
  readonly members = new Set<MapNode>();
  /** Classes this class sees (symmetric), itself included when its members see each other. */
  visible: NodeClass[] = [];
  peerBits: Uint32Array;
  rules: ClassRule[] = [];
  /** JSON of `rules`; nodes whose sentFilter differs get the filter again. */
  filterSig = '';
  /** Source sets this class's members belong to (they join and leave them). */
  memberOf: SrcSet[] = [];
  index = 0;

  constructor(
    readonly key: string,
    readonly rep: Identity,
    words: number,
  ) {
    this.peerBits = new Uint32Array(words);
  }
}

function setBit(b: Uint32Array, i: number): void {
  b[i >>> 5]! |= 1 << (i & 31);
}
function clearBit(b: Uint32Array, i: number): void {
  b[i >>> 5]! &= ~(1 << (i & 31));
}

function portsJson(ports: PortRange[]): string[] {
  return ports.map((p) => `{"first":${p.first},"last":${p.last}}`);
}

function coalesce(ports: PortRange[]): PortRange[] {
  const s = [...ports].sort((a, b) => a.first - b.first);
  const out: PortRange[] = [];
  for (const p of s) {
    const last = out[out.length - 1];
    if (last && p.first <= last.last + 1) last.last = Math.max(last.last, p.last);
    else out.push({ first: p.first, last: p.last });
  }
  return out;
}

export interface NetmapOptions {
  relays: RelayMap;
  /** Called after deltas were handed to sinks (tests and benchmarks observe it). */
  onFlush?: (nodes: number) => void;
}

export class Netmap {
  private policy: Policy | undefined;
  private readonly nodes = new Map<number, MapNode>();
  private slots: (MapNode | undefined)[] = [];
  private freeSlots: number[] = [];
  private words = 32;
  private classes = new Map<string, NodeClass>();
  private byUser = new Map<string, NodeClass[]>();
  /** Rule index → classes matched by its sources / non-self destinations; and self-dst flags. */
  private srcSets: Set<NodeClass>[] = [];
  private dstSets: Set<NodeClass>[] = [];
  /** Rule index → destination index → classes it matches (for the ports of that entry). */
  private dstEntrySets: Set<NodeClass>[][] = [];
  private selfRule: boolean[] = [];
  private readonly srcSetReg = new SrcSetRegistry();
  private literalCache = new Map<number, string>();
  /** Rule index → its sources as text: the definition of its source set. */
  private ruleDefs: string[] = [];
  private relaysJson: string;
  private flushScheduled = false;
  private readonly dirty = new Set<MapNode>();
  /** Nodes running the built-in SSH server, and whether their `ssh` rules may have changed. */
  private readonly sshNodes = new Set<MapNode>();
  private sshDirty = false;
  /** Statistics for status and benchmarks. */
  readonly stats = { rebuilds: 0, lastRebuildMs: 0, flushes: 0, messages: 0 };

  constructor(private readonly opts: NetmapOptions) {
    this.relaysJson = JSON.stringify(opts.relays);
  }

  get size(): number {
    return this.nodes.size;
  }
  get classCount(): number {
    return this.classes.size;
  }
  node(id: number): MapNode | undefined {
    return this.nodes.get(id);
  }

  setRelays(relays: RelayMap): void {
    this.relaysJson = JSON.stringify(relays);
    for (const n of this.nodes.values()) this.mark(n).relays = true;
  }

  /** Applies a (new) policy: classes, visibility and filters are rebuilt; nodes get deltas. */
  setPolicy(policy: Policy): void {
    this.policy = policy;
    this.rebuild();
  }

  /** Adds a node or applies a change to its record (keys, tags, user, name, expiry). */
  upsert(rec: NodeRecord, userName: string | undefined): void {
    const old = this.nodes.get(rec.id);
    if (old) {
      const identityChanged = old.userName !== userName || old.rec.ipv4 !== rec.ipv4 || old.rec.tags.join(',') !== rec.tags.join(',');
      // Disco key and last-seen are live state kept here, not in the stored record.
      old.rec = { ...rec, discoKey: old.rec.discoKey, lastSeen: old.online ? null : (rec.lastSeen ?? old.rec.lastSeen) };
      old.userName = userName;
      old.invalidate();
      if (identityChanged) {
        old.identity = this.identityOf(old);
        if (!this.policy || classKey(this.policy, old.identity) !== old.cls.key) this.rebuild();
      }
      this.mark(old).self = true;
      this.fanOutChanged(old);
      if (identityChanged) this.touchSsh();
      return;
    }
    const n = new MapNode(rec, userName);
    n.identity = this.identityOf(n);
    this.nodes.set(rec.id, n);
    this.assignSlot(n);
    const key = this.policy ? classKey(this.policy, n.identity) : '';
    if (!this.policy) return;
    this.joinClass(n, this.classes.get(key) ?? this.addClass(key, n.identity));
  }

  /**
   * A class the netmap has not seen (a user's first device, a new tag set): its row of the
   * visibility relation is computed against the existing classes, O(rules × classes), instead
   * of rebuilding everything.
   */
  private addClass(key: string, rep: Identity): NodeClass {
    const policy = this.policy!;
    const c = new NodeClass(key, rep, this.words);
    c.index = this.classes.size;
    this.classes.set(key, c);
    const untaggedUser = rep.tags.length === 0 ? rep.user : undefined;
    if (untaggedUser !== undefined) {
      const l = this.byUser.get(untaggedUser) ?? [];
      l.push(c);
      this.byUser.set(untaggedUser, l);
    }
    const vis = new Set<NodeClass>();
    policy.acls.forEach((rule, r) => {
      const inSrc = rule.src.some((sel) => srcMatches(policy, sel, rep));
      if (inSrc) this.srcSets[r]!.add(c);
      rule.dst.forEach((dst, j) => {
        if (dst.sel.kind !== 'self' && dstMatches(policy, dst.sel, rep, rep)) {
          this.dstSets[r]!.add(c);
          this.dstEntrySets[r]![j]!.add(c);
        }
      });
      if (inSrc) for (const b of this.dstSets[r]!) vis.add(b);
      if (this.dstSets[r]!.has(c)) for (const b of this.srcSets[r]!) vis.add(b);
      if (this.selfRule[r] && untaggedUser !== undefined) {
        for (const b of this.byUser.get(untaggedUser)!) if (inSrc || this.srcSets[r]!.has(b)) vis.add(b);
      }
    });
    c.visible = [...vis];
    for (const b of vis) {
      if (b !== c) b.visible.push(c);
      for (const m of b.members) setBit(c.peerBits, m.slot);
    }
    for (const s of this.srcSetReg.byDef.values()) if (this.inSet(c, s)) c.memberOf.push(s);
    this.compileClassFilter(c);
    return c;
  }

  /** Removes a node (deleted, expired, logged out); peers get `peersRemoved`. */
  remove(id: number): void {
    const n = this.nodes.get(id);
    if (!n) return;
    this.nodes.delete(id);
    this.sshNodes.delete(n);
    this.touchSsh();
    const cls = n.cls;
    cls.members.delete(n);
    for (const v of cls.visible) {
      clearBit(v.peerBits, n.slot);
      for (const m of v.members) if (m !== n) this.removePeer(m, id);
    }
    this.slots[n.slot] = undefined;
    this.freeSlots.push(n.slot);
    this.dirty.delete(n);
    for (const s of cls.memberOf) this.setChanged(s, () => s.leave(n));
  }

  /** A node's map stream opened: it is online, gets a full map, its peers a patch. */
  attach(id: number, sink: MapSink, report: LiveReport): void {
    const n = this.nodes.get(id);
    if (!n) return;
    n.sink = sink;
    n.online = true;
    this.applyReport(n, report);
    n.sshServer = report.sshServer === true;
    if (n.sshServer) this.sshNodes.add(n);
    else this.sshNodes.delete(n);
    n.invalidate();
    n.pending = undefined;
    this.dirty.delete(n);
    this.sendFull(n);
    this.fanOutPatch(n, { id, online: true, lastSeen: null, ...(report.endpoints ? { endpoints: n.endpoints } : {}), homeRelay: n.homeRelay, discoKey: n.rec.discoKey });
  }

  /** The stream closed. Only the current sink detaches (a replaced session must not). */
  detach(id: number, sink: MapSink, lastSeen: number): void {
    const n = this.nodes.get(id);
    if (!n || n.sink !== sink) return;
    n.sink = undefined;
    n.online = false;
    n.rec = { ...n.rec, lastSeen };
    n.invalidate();
    this.fanOutPatch(n, { id, online: false, lastSeen });
  }

  /** Endpoints, home relay or disco key reported by a node: fanned out as patches. */
  report(id: number, r: LiveReport): void {
    const n = this.nodes.get(id);
    if (!n) return;
    const patch = this.applyReport(n, r);
    if (Object.keys(patch).length > 1) {
      n.invalidate();
      this.fanOutPatch(n, patch);
    }
  }

  isOnline(id: number): boolean {
    return this.nodes.get(id)?.online ?? false;
  }

  /** Ids of the peers a node currently sees (admin, tests). */
  peersOf(id: number): number[] {
    const n = this.nodes.get(id);
    if (!n) return [];
    const out: number[] = [];
    this.forEachPeer(n, (p) => out.push(p.id));
    return out;
  }

  /** The packet filter JSON a node gets (admin, tests). */
  filterJsonOf(id: number): string {
    const n = this.nodes.get(id);
    if (!n) return '[]';
    const rules = n.cls.rules.map((r) => ({ sets: r.set ? [r.set.id] : [], src: JSON.parse(r.literalJson) as string[], dst: this.dstFor(n, r.ports), protos: r.protos }));
    return JSON.stringify(materializeFilter(rules, (sid) => this.srcSetReg.byId.get(sid)?.prefixes()));
  }

  // ---- internals ----

  private identityOf(n: MapNode): Identity {
    const id: Identity = { tags: n.rec.tags, addrs: [n.rec.ipv4, n.rec.ipv6] };
    if (n.userName !== undefined) id.user = n.userName;
    return id;
  }

  private applyReport(n: MapNode, r: LiveReport): PeerPatch {
    const patch: PeerPatch = { id: n.id };
    if (r.endpoints && r.endpoints.join(',') !== n.endpoints.join(',')) patch.endpoints = n.endpoints = r.endpoints;
    if (r.homeRelay !== undefined && r.homeRelay !== n.homeRelay) patch.homeRelay = n.homeRelay = r.homeRelay;
    if (r.discoKey !== undefined && r.discoKey !== n.rec.discoKey) {
      n.rec = { ...n.rec, discoKey: r.discoKey };
      patch.discoKey = r.discoKey;
    }
    return patch;
  }

  private assignSlot(n: MapNode): void {
    const slot = this.freeSlots.pop() ?? this.slots.length;
    n.slot = slot;
    this.slots[slot] = n;
    if (slot >= this.words * 32) {
      while (slot >= this.words * 32) this.words *= 2;
      for (const c of this.classes.values()) {
        const b = new Uint32Array(this.words);
        b.set(c.peerBits);
        c.peerBits = b;
      }
    }
  }

  private mark(n: MapNode): Pending {
    if (!n.pending) n.pending = { changed: new Set(), removed: new Set(), patches: new Map(), self: false, filter: false, relays: false, setPatches: [] };
    if (n.sink) {
      this.dirty.add(n);
      this.scheduleFlush();
    }
    return n.pending;
  }

  private addPeer(m: MapNode, id: number): void {
    if (!m.sink) return;
    const p = this.mark(m);
    p.removed.delete(id);
    p.patches.delete(id);
    p.changed.add(id);
  }

  private removePeer(m: MapNode, id: number): void {
    if (!m.sink) return;
    const p = this.mark(m);
    p.changed.delete(id);
    p.patches.delete(id);
    p.removed.add(id);
  }

  private fanOutChanged(n: MapNode): void {
    for (const v of n.cls.visible) for (const m of v.members) if (m !== n) this.addPeer(m, n.id);
  }

  private fanOutPatch(n: MapNode, patch: PeerPatch): void {
    for (const v of n.cls.visible) {
      for (const m of v.members) {
        if (m === n || !m.sink) continue;
        const p = this.mark(m);
        if (p.changed.has(n.id)) continue; // the full entry goes anyway
        const prev = p.patches.get(n.id);
        p.patches.set(n.id, prev ? { ...prev, ...patch } : patch);
      }
    }
  }

  private forEachPeer(n: MapNode, f: (p: MapNode) => void): void {
    const bits = n.cls.peerBits;
    for (let w = 0; w < bits.length; w++) {
      let x = bits[w]!;
      while (x !== 0) {
        const b = 31 - Math.clz32(x & -x);
        x &= x - 1;
        const p = this.slots[(w << 5) | b];
        if (p && p !== n) f(p);
      }
    }
  }

  private joinClass(n: MapNode, cls: NodeClass): void {
    n.cls = cls;
    cls.members.add(n);
    for (const v of cls.visible) {
      setBit(v.peerBits, n.slot);
      for (const m of v.members) if (m !== n) this.addPeer(m, n.id);
    }
    for (const s of cls.memberOf) this.setChanged(s, () => s.join(n));
    this.touchSsh();
  }

  /** Something that can change SSH principals happened (policy, membership, identity). */
  private touchSsh(): void {
    if (this.sshNodes.size === 0) return;
    this.sshDirty = true;
    this.scheduleFlush();
  }

  /** The `ssh` rules JSON of one node; `sources` from sshSources(), shared by a flush's nodes. */
  private sshJson(n: MapNode, sources = this.sshSources()): string {
    return this.policy ? JSON.stringify(sshRulesFor(this.policy, sources, n.identity)) : '[]';
  }

  private sshSources(): SshSources {
    if (!this.policy) return [];
    const classes = [...this.classes.values()].map((c) => ({ rep: c.rep, addrs: [...c.members].flatMap((m) => [m.rec.ipv4, m.rec.ipv6]) }));
    return sshSources(this.policy, classes);
  }

  private setChanged(s: SrcSet, change: () => void): void {
    change();
    this.srcSetReg.dirty.add(s);
    this.scheduleFlush();
  }

  /** Whether members of class `c` belong to set `s`. */
  private inSet(c: NodeClass, s: SrcSet): boolean {
    if (!this.srcSets[s.rule]!.has(c)) return false;
    return s.user === undefined || (c.rep.tags.length === 0 && c.rep.user === s.user);
  }

  /** The source set of rule r (restricted to one user's untagged nodes for autogroup:self). */
  private srcSet(r: number, user?: string): SrcSet {
    const base = (this.ruleDefs[r] ??= JSON.stringify(this.policy!.acls[r]!.src.map((x) => x.text)));
    const def = user === undefined ? base : `${base}@${user}`;
    return this.srcSetReg.get(def, r, user, (s) => {
      // A user's set can only hold that user's classes: no scan of every class.
      for (const c of user === undefined ? this.classes.values() : (this.byUser.get(user) ?? [])) {
        if (!this.inSet(c, s)) continue;
        c.memberOf.push(s);
        for (const m of c.members) s.join(m);
      }
    });
  }

  /** Literal source prefixes of rule r (IPs and CIDRs in the policy), aggregated, as JSON. */
  private literalJson(r: number): string {
    let j = this.literalCache.get(r);
    if (j === undefined) {
      j = JSON.stringify(aggregatePrefixes(this.policy!.acls[r]!.src.flatMap((sel) => selectorPrefixes(sel))));
      this.literalCache.set(r, j);
    }
    return j;
  }

  private rebuild(): void {
    const t0 = performance.now();
    this.stats.rebuilds++;
    const policy = this.policy;
    if (!policy) return;
    const oldClassOf = new Map<MapNode, NodeClass | undefined>();
    for (const n of this.nodes.values()) oldClassOf.set(n, n.cls as NodeClass | undefined);
    // Group nodes into classes.
    const classes = new Map<string, NodeClass>();
    const byUser = new Map<string, NodeClass[]>();
    for (const n of this.nodes.values()) {
      const key = classKey(policy, n.identity);
      let c = classes.get(key);
      if (!c) {
        c = new NodeClass(key, n.identity, this.words);
        c.index = classes.size;
        classes.set(key, c);
        if (n.identity.tags.length === 0 && n.identity.user !== undefined) {
          const l = byUser.get(n.identity.user) ?? [];
          l.push(c);
          byUser.set(n.identity.user, l);
        }
      }
      c.members.add(n);
      n.cls = c;
    }
    this.classes = classes;
    this.byUser = byUser;
    // Per rule: source and destination class sets.
    const list = [...classes.values()];
    this.srcSets = [];
    this.dstSets = [];
    this.dstEntrySets = [];
    this.selfRule = [];
    for (const rule of policy.acls) {
      const s = new Set<NodeClass>();
      const d = new Set<NodeClass>();
      const entries = rule.dst.map(() => new Set<NodeClass>());
      const self = rule.dst.some((dst) => dst.sel.kind === 'self');
      for (const c of list) {
        if (rule.src.some((sel) => srcMatches(policy, sel, c.rep))) s.add(c);
        rule.dst.forEach((dst, j) => {
          if (dst.sel.kind !== 'self' && dstMatches(policy, dst.sel, c.rep, c.rep)) {
            d.add(c);
            entries[j]!.add(c);
          }
        });
      }
      this.srcSets.push(s);
      this.dstSets.push(d);
      this.dstEntrySets.push(entries);
      this.selfRule.push(self);
    }
    // Visibility.
    const vis = new Map<NodeClass, Set<NodeClass>>();
    for (const c of list) vis.set(c, new Set());
    policy.acls.forEach((_rule, r) => {
      const s = this.srcSets[r]!;
      const d = this.dstSets[r]!;
      for (const a of s) for (const b of d) {
        vis.get(a)!.add(b);
        vis.get(b)!.add(a);
      }
      if (this.selfRule[r]) {
        for (const a of s) {
          if (a.rep.tags.length !== 0 || a.rep.user === undefined) continue;
          for (const b of byUser.get(a.rep.user) ?? []) {
            vis.get(a)!.add(b);
            vis.get(b)!.add(a);
          }
        }
      }
    });
    for (const c of list) {
      c.visible = [...vis.get(c)!];
      for (const v of c.visible) for (const m of v.members) setBit(c.peerBits, m.slot);
    }
    // Filters, with source sets by reference: a set whose sources are unchanged keeps its id,
    // and nodes that hold it get only the members that joined or left.
    const oldSets = this.srcSetReg.reset();
    this.literalCache.clear();
    this.ruleDefs = [];
    for (const c of list) this.compileClassFilter(c);
    for (const s of this.srcSetReg.byDef.values()) {
      const was = oldSets.get(s.def);
      if (!was) continue;
      // What nodes holding the set have: the old members as of the last flush.
      const flushed = new Set(was.prefixes());
      for (const x of was.added) flushed.delete(x);
      for (const x of was.removed) flushed.add(x);
      const now = new Set(s.prefixes());
      for (const x of now) if (!flushed.has(x)) s.added.push(x);
      for (const x of flushed) if (!now.has(x)) s.removed.push(x);
      if (s.added.length || s.removed.length) this.srcSetReg.dirty.add(s);
    }
    // Deltas: diff each node's old peer bits against its new ones, once per class pair.
    const diffs = new Map<string, { added: number[]; removed: number[] }>();
    for (const n of this.nodes.values()) {
      const before = oldClassOf.get(n);
      const after = n.cls;
      if (n.sentFilter !== after.filterSig && n.sink) this.mark(n).filter = true;
      if (!n.sink) continue;
      if (!before) {
        // New node: its peers learn about it below; it gets a full map when it attaches.
        continue;
      }
      const k = `${before.index}/${after.index}/${before.key}`;
      let diff = diffs.get(k);
      if (!diff) {
        diff = this.diffBits(before.peerBits, after.peerBits);
        diffs.set(k, diff);
      }
      for (const s of diff.added) {
        const p = this.slots[s];
        if (p && p !== n) this.addPeer(n, p.id);
      }
      for (const s of diff.removed) {
        const p = this.slots[s];
        if (p && p !== n) this.removePeer(n, p.id);
      }
    }
    // Nodes that were not in any class before are new to everyone who sees them now.
    for (const [n, before] of oldClassOf) if (!before) this.fanOutChanged(n);
    this.touchSsh();
    this.stats.lastRebuildMs = performance.now() - t0;
  }

  private diffBits(a: Uint32Array, b: Uint32Array): { added: number[]; removed: number[] } {
    const added: number[] = [];
    const removed: number[] = [];
    const len = Math.max(a.length, b.length);
    for (let w = 0; w < len; w++) {
      const x = a[w] ?? 0;
      const y = b[w] ?? 0;
      let add = y & ~x;
      let rem = x & ~y;
      while (add !== 0) {
        added.push((w << 5) | (31 - Math.clz32(add & -add)));
        add &= add - 1;
      }
      while (rem !== 0) {
        removed.push((w << 5) | (31 - Math.clz32(rem & -rem)));
        rem &= rem - 1;
      }
    }
    return { added, removed };
  }

  private compileClassFilter(c: NodeClass): void {
    const policy = this.policy!;
    const merged = new Map<string, ClassRule>();
    for (const old of c.rules) old.set?.classes.delete(c);
    policy.acls.forEach((rule: Rule, r: number) => {
      const ports: PortRange[] = [];
      let selfPorts: PortRange[] | undefined;
      rule.dst.forEach((dst, j) => {
        if (dst.sel.kind === 'self') {
          if (c.rep.tags.length === 0 && c.rep.user !== undefined) (selfPorts ??= []).push(...dst.ports);
        } else if (this.dstEntrySets[r]![j]!.has(c)) ports.push(...dst.ports);
      });
      const add = (set: SrcSet, literalJson: string, p: PortRange[]) => {
        const mk = `${set.id}|${literalJson}|${rule.protos.join(',')}`;
        const have = merged.get(mk);
        if (have) have.ports.push(...p);
        else merged.set(mk, { set, literalJson, ports: [...p], protos: rule.protos });
      };
      if (ports.length) add(this.srcSet(r), this.literalJson(r), ports);
      // autogroup:self admits only the user's own nodes, never literal prefixes.
      if (selfPorts) add(this.srcSet(r, c.rep.user), '[]', selfPorts);
    });
    c.rules = [...merged.values()].map((x) => ({ ...x, ports: coalesce(x.ports) }));
    for (const x of c.rules) x.set?.classes.add(c);
    c.filterSig = c.rules.map((x) => `${x.set?.id ?? ''}:${x.literalJson}:${portsJson(x.ports).join(',')}:${x.protos.join(',')}`).join(';');
  }

  private dstFor(n: MapNode, ports: PortRange[]): { prefix: string; ports: PortRange }[] {
    return hostPrefixes(n).flatMap((prefix) => ports.map((p) => ({ prefix, ports: p })));
  }

  /**
   * The filter rules for a node (sources by set id), plus the full contents of sets it does not
   * hold yet; afterwards the node holds exactly the sets its rules name.
   */
  private filterParts(n: MapNode): string {
    const dsts = hostPrefixes(n);
    const held = n.sentSets;
    n.sentSets = new Set();
    const newSets: string[] = [];
    const rules = n.cls.rules.map((r) => {
      const dst = dsts.flatMap((prefix) => portsJson(r.ports).map((p) => `{"prefix":"${prefix}","ports":${p}}`));
      const sets = r.set ? `"sets":["${r.set.id}"],` : '';
      if (r.set && !n.sentSets.has(r.set.id)) {
        n.sentSets.add(r.set.id);
        if (!held.has(r.set.id)) newSets.push(`"${r.set.id}":${r.set.contentJson()}`);
      }
      return `{${sets}"src":${r.literalJson},"dst":[${dst.join(',')}],"protos":[${r.protos.join(',')}]}`;
    });
    n.sentFilter = n.cls.filterSig;
    return `"filter":[${rules.join(',')}]${newSets.length ? `,"sets":{${newSets.join(',')}}` : ''}`;
  }

  private sendFull(n: MapNode): void {
    const peers: string[] = [];
    this.forEachPeer(n, (p) => peers.push(p.peerJson));
    n.sentSets = new Set();
    let ssh = '';
    if (n.sshServer) {
      n.sentSsh = this.sshJson(n);
      ssh = `,"ssh":${n.sentSsh}`;
    }
    n.sink!.send(`"full":true,"self":${n.selfJson},"peers":[${peers.join(',')}],"relays":${this.relaysJson},${this.filterParts(n)}${ssh}`);
    this.stats.messages++;
  }

  /** Queues each dirty set's patch for the nodes that hold the set. */
  private queueSetPatches(): void {
    for (const s of this.srcSetReg.dirty) {
      const patch = s.takePatch();
      if (!patch) continue;
      for (const c of s.classes) for (const m of c.members) if (m.sink && m.sentSets.has(s.id)) this.mark(m).setPatches.push(patch);
    }
    this.srcSetReg.dirty.clear();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Sends every node's batched delta. */
  flush(): void {
    this.flushScheduled = false;
    this.queueSetPatches();
    if (this.sshDirty) {
      this.sshDirty = false;
      const sources = this.sshSources();
      for (const n of this.sshNodes) {
        if (!n.sink) continue;
        const j = this.sshJson(n, sources);
        if (j !== n.sentSsh) this.mark(n).ssh = j;
      }
    }
    let count = 0;
    for (const n of this.dirty) {
      const p = n.pending;
      n.pending = undefined;
      if (!p || !n.sink) continue;
      const parts: string[] = [];
      if (p.self) parts.push(`"self":${n.selfJson}`);
      if (p.changed.size) {
        const l: string[] = [];
        for (const id of p.changed) {
          const peer = this.nodes.get(id);
          if (peer) l.push(peer.peerJson);
        }
        if (l.length) parts.push(`"peersChanged":[${l.join(',')}]`);
      }
      if (p.removed.size) parts.push(`"peersRemoved":[${[...p.removed].join(',')}]`);
      if (p.patches.size) parts.push(`"peersPatch":${JSON.stringify([...p.patches.values()])}`);
      if (p.relays) parts.push(`"relays":${this.relaysJson}`);
      if (p.setPatches.length) parts.push(`"setsPatch":[${p.setPatches.join(',')}]`);
      if (p.filter && n.sentFilter !== n.cls.filterSig) parts.push(this.filterParts(n));
      if (p.ssh !== undefined && p.ssh !== n.sentSsh) {
        n.sentSsh = p.ssh;
        parts.push(`"ssh":${p.ssh}`);
      }
      if (parts.length === 0) continue;
      n.sink.send(parts.join(','));
      count++;
    }
    this.dirty.clear();
    this.stats.flushes++;
    this.stats.messages += count;
    this.opts.onFlush?.(count);
  }
}
