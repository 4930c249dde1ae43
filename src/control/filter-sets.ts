/**
 * Packet filters on the wire, with source sets by reference.
 *
 * A rule's sources are mostly tailnet nodes ("group:eng", "autogroup:member"), and the same set
 * appears in many nodes' filters. Control therefore sends each set once per node, by id, and
 * afterwards only what joins or leaves it:
 *
 *   "filter":    [{"sets":["s3"], "src":["10.0.0.0/8"], "dst":[…], "protos":[6]}]   rules
 *   "sets":      {"s3": ["100.64.0.7/32", "fd7a:115c:a1e0::6440:7/128", …]}         full contents
 *   "setsPatch": [{"id":"s3", "add":[…], "remove":[…]}]                            changes
 *
 * A node joining a group then costs each peer that filters on the group one small patch instead
 * of its whole filter. The node materializes the plain PacketFilter (src = literal prefixes ∪
 * its sets' members, aggregated) that the engine enforces; control materializes the same one
 * for admins, with the same function, so both agree text for text.
 */
import { aggregatePrefixes, type PacketFilter } from '../policy/index.ts';
import type { PortRange } from '../policy/types.ts';

export interface FilterRuleRef {
  /** Source sets by id; their members are sources too. */
  sets?: string[];
  /** Literal source prefixes (IPs and CIDRs written in the policy). */
  src: string[];
  dst: { prefix: string; ports: PortRange }[];
  protos: number[];
}

export interface SetPatch {
  id: string;
  add?: string[];
  remove?: string[];
}

/** Expands rules by reference into a plain packet filter. Unknown set ids count as empty. */
export function materializeFilter(rules: readonly FilterRuleRef[], members: (id: string) => Iterable<string> | undefined): PacketFilter {
  return rules.map((r) => {
    const src: string[] = [...r.src];
    for (const id of r.sets ?? []) for (const p of members(id) ?? []) src.push(p);
    return { src: aggregatePrefixes(src), dst: r.dst, protos: r.protos };
  });
}

/** The node side: rules and sets as received, and the materialized filter (built lazily). */
export class FilterState {
  rules: FilterRuleRef[] = [];
  readonly sets = new Map<string, Set<string>>();
  private cached: PacketFilter | undefined = [];

  /** Applies the filter parts of a map message; returns whether anything changed. */
  apply(m: { full?: boolean; filter?: FilterRuleRef[]; sets?: Record<string, string[]>; setsPatch?: SetPatch[] }): boolean {
    if (m.full) this.sets.clear();
    let changed = false;
    if (m.filter) {
      this.rules = m.filter;
      changed = true;
    }
    for (const [id, list] of Object.entries(m.sets ?? {})) {
      this.sets.set(id, new Set(list));
      changed = true;
    }
    for (const p of m.setsPatch ?? []) {
      let s = this.sets.get(p.id);
      if (!s) this.sets.set(p.id, (s = new Set()));
      for (const x of p.remove ?? []) s.delete(x);
      for (const x of p.add ?? []) s.add(x);
      changed = true;
    }
    if (m.filter) {
      // Sets no rule refers to any more are dropped.
      const used = new Set(this.rules.flatMap((r) => r.sets ?? []));
      for (const id of this.sets.keys()) if (!used.has(id)) this.sets.delete(id);
    }
    if (changed) this.cached = undefined;
    return changed;
  }

  get filter(): PacketFilter {
    return (this.cached ??= materializeFilter(this.rules, (id) => this.sets.get(id)));
  }
}
