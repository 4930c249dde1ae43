/**
 * Source sets: the tailnet nodes a rule's sources match, shared by reference between the
 * filters of every class the rule reaches (src/control/filter-sets.ts has the wire format).
 *
 * A set is defined by the rule's source selectors (plus the user, for autogroup:self), so a
 * policy edit that keeps a rule's sources keeps its set id and sends only the members that
 * changed. Ids are never reused, for the life of the server.
 */
import type { MapNode, NodeClass } from './netmap.ts';

export function hostPrefixes(n: MapNode): string[] {
  return [`${n.rec.ipv4}/32`, `${n.rec.ipv6}/128`];
}

export class SrcSet {
  readonly members = new Set<MapNode>();
  /** Classes whose filter refers to this set. */
  readonly classes = new Set<NodeClass>();
  /** Prefixes that joined or left since the last flush. */
  added: string[] = [];
  removed: string[] = [];

  constructor(
    readonly id: string,
    readonly def: string,
    readonly rule: number,
    readonly user: string | undefined,
  ) {}

  contentJson(): string {
    const out: string[] = [];
    for (const m of this.members) out.push(...hostPrefixes(m));
    return JSON.stringify(out);
  }

  prefixes(): string[] {
    const out: string[] = [];
    for (const m of this.members) out.push(...hostPrefixes(m));
    return out;
  }

  join(n: MapNode): void {
    if (this.members.has(n)) return;
    this.members.add(n);
    this.added.push(...hostPrefixes(n));
  }

  leave(n: MapNode): void {
    if (!this.members.delete(n)) return;
    this.removed.push(...hostPrefixes(n));
  }

  /** The pending change as a setsPatch entry, or undefined; clears it. */
  takePatch(): string | undefined {
    if (this.added.length === 0 && this.removed.length === 0) return undefined;
    const parts = [`"id":${JSON.stringify(this.id)}`];
    if (this.added.length) parts.push(`"add":${JSON.stringify(this.added)}`);
    if (this.removed.length) parts.push(`"remove":${JSON.stringify(this.removed)}`);
    this.added = [];
    this.removed = [];
    return `{${parts.join(',')}}`;
  }
}

export class SrcSetRegistry {
  private readonly ids = new Map<string, string>();
  private nextId = 1;
  /** Sets of the current policy, by definition and by id. */
  byDef = new Map<string, SrcSet>();
  byId = new Map<string, SrcSet>();
  /** Sets with members joining or leaving since the last flush. */
  readonly dirty = new Set<SrcSet>();

  /** Starts a new generation (policy rebuild); returns the old sets by definition. */
  reset(): Map<string, SrcSet> {
    const old = this.byDef;
    this.byDef = new Map();
    this.byId = new Map();
    this.dirty.clear();
    return old;
  }

  /** The set for a definition, made (with `fill` adding its members) when new. */
  get(def: string, rule: number, user: string | undefined, fill: (s: SrcSet) => void): SrcSet {
    let s = this.byDef.get(def);
    if (s) return s;
    let id = this.ids.get(def);
    if (id === undefined) {
      id = `s${(this.nextId++).toString(36)}`;
      this.ids.set(def, id);
    }
    s = new SrcSet(id, def, rule, user);
    this.byDef.set(def, s);
    this.byId.set(id, s);
    fill(s);
    s.added = [];
    s.removed = [];
    return s;
  }
}
