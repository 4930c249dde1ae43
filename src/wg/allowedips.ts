/**
 * Cryptokey routing (WireGuard paper §II "Cryptokey Routing"; wireguard-go allowedips.go): a
 * table from IP prefixes to peers. Outbound, the longest prefix containing a packet's destination
 * picks the peer; inbound, a decrypted packet's source must map back to the peer it came from.
 *
 * One path-compressed binary trie (a PATRICIA/radix-2 trie) per address family. Every node
 * holds a prefix; a child's prefix extends its parent's, and the child slot is chosen by the
 * first bit after the parent's prefix. Nodes without a value only exist to join two branches.
 *
 *                      (root) 10.0.0.0/8 → A
 *                        bit 8 = 0 /        \ bit 8 = 1
 *             (join) 10.0.0.0/15           10.128.0.0/9 → C
 *          bit 15 = 0 /       \ bit 15 = 1
 *      10.0.0.0/16 → B       10.1.2.0/24 → D
 *
 * Insert replaces the owner of an existing exact prefix (as wireguard-go does: a prefix belongs
 * to one peer). Host bits of inserted prefixes are masked. A per-value index makes
 * `removeByValue` and `entriesFor` cost O(entries of that value), not O(table).
 *
 * Bad arguments (address not 4 or 16 bytes, bits out of range) throw PacketError (ADDR_LENGTH,
 * PREFIX_BITS).
 */
import { addrBits, maskAddr, PacketError } from '../netstack/addr.ts';

interface Node<T> {
  /** The prefix, host bits cleared. */
  key: Uint8Array;
  bits: number;
  hasValue: boolean;
  value: T | undefined;
  children: [Node<T> | null, Node<T> | null];
  parent: Node<T> | null;
}

/** Bit `i` (0 = most significant of byte 0) of `b`. */
function bitAt(b: Uint8Array, i: number): 0 | 1 {
  return ((b[i >> 3]! >> (7 - (i & 7))) & 1) as 0 | 1;
}

/** The number of equal leading bits of `a` and `b`, at most `max`. */
function commonBits(a: Uint8Array, b: Uint8Array, max: number): number {
  let n = 0;
  for (let k = 0; n < max; k++) {
    const x = a[k]! ^ b[k]!;
    if (x === 0) {
      n += 8;
      continue;
    }
    n += Math.clz32(x) - 24;
    break;
  }
  return Math.min(n, max);
}

export class AllowedIPs<T> {
  /** Roots by family: [IPv4, IPv6]. */
  private readonly roots: [Node<T> | null, Node<T> | null] = [null, null];
  /** The nodes each value owns, in insertion order. */
  private readonly byValue = new Map<T, Set<Node<T>>>();

  /** The number of prefixes in the table. */
  get size(): number {
    let n = 0;
    for (const s of this.byValue.values()) n += s.size;
    return n;
  }

  /** Removes everything. */
  clear(): void {
    this.roots[0] = this.roots[1] = null;
    this.byValue.clear();
  }

  /**
   * Routes `addr/bits` to `value`, replacing the previous owner of exactly that prefix.
   * Host bits of `addr` are ignored.
   */
  insert(addr: Uint8Array, bits: number, value: T): void {
    const key = maskAddr(addr, bits); // checks length and bits
    const fam = addr.length === 4 ? 0 : 1;
    let parent: Node<T> | null = null;
    let node = this.roots[fam];
    for (;;) {
      if (node === null) {
        const leaf = this.newNode(key, bits, parent);
        this.own(leaf, value);
        this.attach(fam, parent, leaf, key);
        return;
      }
      const c = commonBits(node.key, key, Math.min(node.bits, bits));
      if (c === node.bits && c === bits) {
        this.own(node, value); // exact prefix: replace the owner
        return;
      }
      if (c === node.bits) {
        // node's prefix contains ours: descend.
        parent = node;
        node = node.children[bitAt(key, node.bits)];
        continue;
      }
      // node's prefix is not a prefix of ours: splice in above node.
      const fresh = this.newNode(key, bits, parent);
      this.own(fresh, value);
      if (c === bits) {
        // Ours contains node's prefix: node becomes our child.
        fresh.children[bitAt(node.key, bits)] = node;
        node.parent = fresh;
        this.replace(fam, parent, node, fresh);
      } else {
        // They diverge at bit c: a value-less join node holds both.
        const join = this.newNode(maskAddr(key, c), c, parent);
        join.children[bitAt(key, c)] = fresh;
        join.children[bitAt(node.key, c)] = node;
        fresh.parent = join;
        node.parent = join;
        this.replace(fam, parent, node, join);
      }
      return;
    }
  }

  /** Removes `addr/bits` if (and only if) it is routed to `value`. */
  remove(addr: Uint8Array, bits: number, value: T): void {
    const key = maskAddr(addr, bits);
    const fam = addr.length === 4 ? 0 : 1;
    let node = this.roots[fam];
    while (node !== null && node.bits <= bits) {
      if (commonBits(node.key, key, node.bits) !== node.bits) return;
      if (node.bits === bits) {
        if (node.hasValue && node.value === value) this.disown(fam, node);
        return;
      }
      node = node.children[bitAt(key, node.bits)];
    }
  }

  /** Removes every prefix routed to `value`. */
  removeByValue(value: T): void {
    const set = this.byValue.get(value);
    if (!set) return;
    for (const node of [...set]) this.disown(node.key.length === 4 ? 0 : 1, node);
  }

  /** The value of the longest prefix containing `addr`, or undefined. */
  lookup(addr: Uint8Array): T | undefined {
    const max = addrBits(addr);
    let node = this.roots[max === 32 ? 0 : 1];
    let best: T | undefined;
    while (node !== null) {
      if (commonBits(node.key, addr, node.bits) !== node.bits) break;
      if (node.hasValue) best = node.value;
      if (node.bits === max) break;
      node = node.children[bitAt(addr, node.bits)];
    }
    return best;
  }

  /** The prefixes routed to `value` (copies, host bits cleared), in insertion order. */
  entriesFor(value: T): { addr: Uint8Array; bits: number }[] {
    const set = this.byValue.get(value);
    if (!set) return [];
    return [...set].map((n) => ({ addr: Uint8Array.from(n.key), bits: n.bits }));
  }

  /** Every (prefix, value) pair, IPv4 then IPv6, in trie order (shorter prefixes first along a path). */
  *entries(): IterableIterator<{ addr: Uint8Array; bits: number; value: T }> {
    for (const root of this.roots) {
      const stack: Node<T>[] = root ? [root] : [];
      while (stack.length > 0) {
        const n = stack.pop()!;
        if (n.hasValue) yield { addr: Uint8Array.from(n.key), bits: n.bits, value: n.value as T };
        if (n.children[1]) stack.push(n.children[1]);
        if (n.children[0]) stack.push(n.children[0]);
      }
    }
  }

  private newNode(key: Uint8Array, bits: number, parent: Node<T> | null): Node<T> {
    return { key, bits, hasValue: false, value: undefined, children: [null, null], parent };
  }

  private own(node: Node<T>, value: T): void {
    if (node.hasValue) this.unindex(node);
    node.hasValue = true;
    node.value = value;
    let set = this.byValue.get(value);
    if (!set) this.byValue.set(value, (set = new Set()));
    set.add(node);
  }

  private unindex(node: Node<T>): void {
    const set = this.byValue.get(node.value as T);
    if (!set) return;
    set.delete(node);
    if (set.size === 0) this.byValue.delete(node.value as T);
  }

  private attach(fam: 0 | 1, parent: Node<T> | null, child: Node<T>, key: Uint8Array): void {
    if (parent === null) this.roots[fam] = child;
    else parent.children[bitAt(key, parent.bits)] = child;
  }

  private replace(fam: 0 | 1, parent: Node<T> | null, old: Node<T>, next: Node<T> | null): void {
    if (parent === null) this.roots[fam] = next;
    else parent.children[parent.children[0] === old ? 0 : 1] = next;
  }

  /** Clears `node`'s value and removes nodes that no longer join two branches. */
  private disown(fam: 0 | 1, node: Node<T>): void {
    this.unindex(node);
    node.hasValue = false;
    node.value = undefined;
    let n: Node<T> | null = node;
    while (n !== null && !n.hasValue) {
      const [a, b] = n.children;
      if (a && b) break; // still joins two branches
      const child = a ?? b;
      const parent: Node<T> | null = n.parent;
      this.replace(fam, parent, n, child);
      if (child) child.parent = parent;
      n.parent = null;
      if (child) break; // parent's child count is unchanged
      n = parent; // parent lost a child; it may now be a useless join node
    }
  }
}
