import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatPrefix, maskPrefix, PacketError, parseIP, parsePrefix, prefixContains } from '../../src/netstack/addr.ts';
import { AllowedIPs } from '../../src/wg/allowedips.ts';

function table(entries: [string, string][]): AllowedIPs<string> {
  const t = new AllowedIPs<string>();
  for (const [prefix, v] of entries) {
    const p = parsePrefix(prefix);
    t.insert(p.addr, p.bits, v);
  }
  return t;
}
const look = (t: AllowedIPs<string>, ip: string) => t.lookup(parseIP(ip));
const prefixes = (t: AllowedIPs<string>, v: string) => t.entriesFor(v).map(formatPrefix).sort();

describe('AllowedIPs: the Linux kernel selftest cases (selftest/allowedips.h, as ported to wireguard-go)', () => {
  it('IPv4', () => {
    const t = new AllowedIPs<string>();
    const ins = (v: string, a: number, b: number, c: number, d: number, bits: number) => t.insert(new Uint8Array([a, b, c, d]), bits, v);
    const at = (a: number, b: number, c: number, d: number) => t.lookup(new Uint8Array([a, b, c, d]));
    ins('a', 192, 168, 4, 0, 24);
    ins('b', 192, 168, 4, 4, 32);
    ins('c', 192, 168, 0, 0, 16);
    ins('d', 192, 95, 5, 64, 27);
    ins('c', 192, 95, 5, 65, 27); // replaces d, and needs the host bit masked
    ins('e', 0, 0, 0, 0, 0);
    ins('g', 64, 15, 112, 0, 20);
    ins('h', 64, 15, 123, 211, 25); // host bits masked
    ins('a', 10, 0, 0, 0, 25);
    ins('b', 10, 0, 0, 128, 25);
    ins('a', 10, 1, 0, 0, 30);
    ins('b', 10, 1, 0, 4, 30);
    ins('c', 10, 1, 0, 8, 29);
    ins('d', 10, 1, 0, 16, 29);
    expect(at(192, 168, 4, 20)).toBe('a');
    expect(at(192, 168, 4, 0)).toBe('a');
    expect(at(192, 168, 4, 4)).toBe('b');
    expect(at(192, 168, 200, 182)).toBe('c');
    expect(at(192, 95, 5, 68)).toBe('c');
    expect(at(192, 95, 5, 96)).toBe('e');
    expect(at(64, 15, 116, 26)).toBe('g');
    expect(at(64, 15, 127, 3)).toBe('g');
    expect(at(64, 15, 123, 211)).toBe('h');
    expect(at(10, 0, 0, 200)).toBe('b');
    expect(at(10, 1, 0, 20)).toBe('d');
    for (const b of [1, 64, 128, 192, 255]) ins('a', b, 0, 0, 0, 32);
    for (const b of [1, 64, 128, 192, 255]) expect(at(b, 0, 0, 0)).toBe('a');
    t.removeByValue('a');
    for (const b of [1, 64, 128, 192, 255]) expect(at(b, 0, 0, 0)).not.toBe('a');
    expect(t.entriesFor('a')).toEqual([]);
    for (const v of ['a', 'b', 'c', 'd', 'e', 'g', 'h']) t.removeByValue(v);
    expect(t.size).toBe(0);
    expect([...t.entries()]).toEqual([]);
    expect(at(1, 2, 3, 4)).toBeUndefined();
    ins('a', 192, 168, 0, 0, 16);
    ins('a', 192, 168, 0, 0, 24);
    t.removeByValue('a');
    expect(at(192, 168, 0, 1)).toBeUndefined();
  });

  it('IPv6', () => {
    const t = new AllowedIPs<string>();
    const addr = (a: number, b: number, c: number, d: number) => {
      const out = new Uint8Array(16);
      const v = new DataView(out.buffer);
      [a, b, c, d].forEach((x, i) => v.setUint32(i * 4, x));
      return out;
    };
    const ins = (v: string, a: number, b: number, c: number, d: number, bits: number) => t.insert(addr(a, b, c, d), bits, v);
    const at = (a: number, b: number, c: number, d: number) => t.lookup(addr(a, b, c, d));
    ins('d', 0x26075300, 0x60006b00, 0, 0xc05f0543, 128);
    ins('c', 0x26075300, 0x60006b00, 0, 0, 64);
    ins('e', 0, 0, 0, 0, 0);
    ins('f', 0, 0, 0, 0, 0);
    ins('g', 0x24046800, 0, 0, 0, 32);
    ins('h', 0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef, 64);
    ins('a', 0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef, 128);
    ins('c', 0x24446800, 0x40e40800, 0xdeaebeef, 0xdefbeef, 128);
    ins('b', 0x24446800, 0xf0e40800, 0xeeaebeef, 0, 98);
    expect(at(0x26075300, 0x60006b00, 0, 0xc05f0543)).toBe('d');
    expect(at(0x26075300, 0x60006b00, 0, 0xc02e01ee)).toBe('c');
    expect(at(0x26075300, 0x60006b01, 0, 0)).toBe('f');
    expect(at(0x24046800, 0x40040806, 0, 0x1006)).toBe('g');
    expect(at(0x24046800, 0x40040806, 0x1234, 0x5678)).toBe('g');
    expect(at(0x240467ff, 0x40040806, 0x1234, 0x5678)).toBe('f');
    expect(at(0x24046801, 0x40040806, 0x1234, 0x5678)).toBe('f');
    expect(at(0x24046800, 0x40040800, 0x1234, 0x5678)).toBe('h');
    expect(at(0x24046800, 0x40040800, 0, 0)).toBe('h');
    expect(at(0x24046800, 0x40040800, 0x10101010, 0x10101010)).toBe('h');
    expect(at(0x24046800, 0x40040800, 0xdeadbeef, 0xdeadbeef)).toBe('a');
    expect(t.entriesFor('e')).toEqual([]); // /0 now belongs to f
    expect(prefixes(t, 'f')).toEqual(['::/0']);
  });
});

describe('AllowedIPs', () => {
  it('longest prefix match with overlapping prefixes, /0, /32 and /128', () => {
    const t = table([
      ['0.0.0.0/0', 'default4'],
      ['100.64.0.0/10', 'cgnat'],
      ['100.64.0.0/24', 'subnet'],
      ['100.64.0.7/32', 'host'],
      ['::/0', 'default6'],
      ['fd7a:115c:a1e0::/48', 'tailnet6'],
      ['fd7a:115c:a1e0::7/128', 'host6'],
    ]);
    expect(look(t, '8.8.8.8')).toBe('default4');
    expect(look(t, '100.127.0.1')).toBe('cgnat');
    expect(look(t, '100.64.0.9')).toBe('subnet');
    expect(look(t, '100.64.0.7')).toBe('host');
    expect(look(t, '100.64.1.7')).toBe('cgnat');
    expect(look(t, '2001:db8::1')).toBe('default6');
    expect(look(t, 'fd7a:115c:a1e0::8')).toBe('tailnet6');
    expect(look(t, 'fd7a:115c:a1e0::7')).toBe('host6');
    // Families are separate tables: ::ffff:100.64.0.7 is not 100.64.0.7.
    expect(look(t, '::ffff:100.64.0.7')).toBe('default6');
  });

  it('masks host bits and replaces exact-prefix owners', () => {
    const t = table([['10.1.2.3/8', 'a']]);
    expect(prefixes(t, 'a')).toEqual(['10.0.0.0/8']);
    t.insert(parseIP('10.9.9.9'), 8, 'b');
    expect(t.entriesFor('a')).toEqual([]);
    expect(prefixes(t, 'b')).toEqual(['10.0.0.0/8']);
    expect(look(t, '10.200.0.1')).toBe('b');
    expect(t.size).toBe(1);
  });

  it('remove only removes a prefix owned by the given value', () => {
    const t = table([
      ['10.0.0.0/8', 'a'],
      ['10.1.0.0/16', 'b'],
    ]);
    t.remove(parseIP('10.1.0.0'), 16, 'a'); // not a's
    expect(look(t, '10.1.0.1')).toBe('b');
    t.remove(parseIP('10.1.0.0'), 15, 'b'); // not that prefix
    expect(look(t, '10.1.0.1')).toBe('b');
    t.remove(parseIP('10.1.255.255'), 16, 'b'); // host bits ignored
    expect(look(t, '10.1.0.1')).toBe('a');
    t.remove(parseIP('10.0.0.0'), 8, 'a');
    expect(look(t, '10.1.0.1')).toBeUndefined();
    expect(t.size).toBe(0);
  });

  it('entriesFor lists a value\'s prefixes in insertion order; entries lists all', () => {
    const t = table([
      ['10.0.0.0/8', 'a'],
      ['fd00::/8', 'a'],
      ['192.168.1.0/24', 'b'],
      ['10.2.0.0/16', 'a'],
    ]);
    expect(t.entriesFor('a').map(formatPrefix)).toEqual(['10.0.0.0/8', 'fd00::/8', '10.2.0.0/16']);
    expect([...t.entries()].map((e) => `${formatPrefix(e)}=${e.value}`)).toEqual([
      '10.0.0.0/8=a',
      '10.2.0.0/16=a',
      '192.168.1.0/24=b',
      'fd00::/8=a',
    ]);
    const e = t.entriesFor('a')[0]!;
    e.addr[0] = 99; // a copy
    expect(look(t, '10.0.0.1')).toBe('a');
    t.clear();
    expect(t.size).toBe(0);
    expect(look(t, '10.0.0.1')).toBeUndefined();
  });

  it('values may be objects, and undefined-free lookups distinguish "no route"', () => {
    const peerA = { name: 'a' };
    const t = new AllowedIPs<{ name: string }>();
    t.insert(parseIP('::'), 0, peerA);
    expect(t.lookup(parseIP('::1'))).toBe(peerA);
    expect(t.lookup(parseIP('1.2.3.4'))).toBeUndefined();
  });

  it('rejects bad lengths and bits with PacketError', () => {
    const t = new AllowedIPs<string>();
    expect(() => t.insert(new Uint8Array(5), 8, 'x')).toThrow(PacketError);
    expect(() => t.insert(parseIP('1.2.3.4'), 33, 'x')).toThrow(PacketError);
    expect(() => t.insert(parseIP('::'), -1, 'x')).toThrow(PacketError);
    expect(() => t.insert(parseIP('::'), 1.5, 'x')).toThrow(PacketError);
    expect(() => t.lookup(new Uint8Array(3))).toThrow(PacketError);
  });
});

interface ShapeNode {
  key: Uint8Array;
  bits: number;
  hasValue: boolean;
  children: [ShapeNode | null, ShapeNode | null];
  parent: ShapeNode | null;
}

/**
 * Checks the trie's internal invariants (white-box): parent links, each child's prefix extends
 * its parent's on the side of its slot, keys are masked, and every value-less node joins two
 * branches (so removal leaves no garbage). Returns the node count.
 */
function checkShape(t: AllowedIPs<unknown>): number {
  const roots = (t as unknown as { roots: (ShapeNode | null)[] }).roots;
  let count = 0;
  const walk = (n: ShapeNode, parent: ShapeNode | null) => {
    count++;
    expect(n.parent).toBe(parent);
    const own = { addr: n.key, bits: n.bits };
    expect(formatPrefix(maskPrefix(own))).toBe(formatPrefix(own));
    if (!n.hasValue) expect(n.children[0] && n.children[1]).toBeTruthy();
    n.children.forEach((c, side) => {
      if (!c) return;
      expect(c.bits).toBeGreaterThan(n.bits);
      expect(prefixContains(own, c.key)).toBe(true);
      expect((c.key[n.bits >> 3]! >> (7 - (n.bits & 7))) & 1).toBe(side);
      walk(c, n);
    });
  };
  for (const r of roots) if (r) walk(r, null);
  return count;
}

describe('AllowedIPs matches a naive linear longest-prefix match (property)', () => {
  type Op = { kind: 'insert' | 'remove'; addr: Uint8Array; bits: number; value: number } | { kind: 'removeByValue'; value: number };

  /** Addresses drawn from a few clustered bases so prefixes overlap often. */
  function addrArb(len: 4 | 16) {
    const base = len === 4 ? [parseIP('10.0.0.0'), parseIP('10.128.0.0'), parseIP('192.168.1.0')] : [parseIP('fd00::'), parseIP('fd00::8000:0'), parseIP('2001:db8::')];
    return fc.tuple(fc.constantFrom(...base), fc.uint8Array({ minLength: len, maxLength: len }), fc.integer({ min: 0, max: len * 8 })).map(([b, r, keep]) => {
      // Keep the first `keep` bits of a base, random after that.
      const out = Uint8Array.from(r);
      for (let i = 0; i < keep; i++) {
        const bit = (b[i >> 3]! >> (7 - (i & 7))) & 1;
        out[i >> 3] = (out[i >> 3]! & ~(0x80 >> (i & 7))) | (bit << (7 - (i & 7)));
      }
      return out;
    });
  }

  function run(len: 4 | 16) {
    const max = len * 8;
    const bitsArb = fc.oneof(fc.integer({ min: 0, max }), fc.constantFrom(0, max, max - 1, 8, 16, 24));
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('insert' as const), addr: addrArb(len), bits: bitsArb, value: fc.integer({ min: 0, max: 5 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('remove' as const), addr: addrArb(len), bits: bitsArb, value: fc.integer({ min: 0, max: 5 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('removeByValue' as const), value: fc.integer({ min: 0, max: 5 }) }) },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.array(addrArb(len), { minLength: 1, maxLength: 30 }), (ops, probes) => {
        const t = new AllowedIPs<number>();
        // The model: masked prefix text → { prefix, value }.
        const model = new Map<string, { addr: Uint8Array; bits: number; value: number }>();
        const removeFromModel = (addr: Uint8Array, bits: number, value: number) => {
          const k = formatPrefix(maskPrefix({ addr, bits }));
          if (model.get(k)?.value === value) model.delete(k);
        };
        // Also probe the inserted addresses themselves and their neighbours.
        const extra: Uint8Array[] = [];
        for (const o of ops) {
          if (o.kind === 'insert') {
            t.insert(o.addr, o.bits, o.value);
            const m = maskPrefix({ addr: o.addr, bits: o.bits });
            model.set(formatPrefix(m), { ...m, value: o.value });
            extra.push(o.addr, m.addr);
          } else if (o.kind === 'remove') {
            t.remove(o.addr, o.bits, o.value);
            removeFromModel(o.addr, o.bits, o.value);
          } else {
            t.removeByValue(o.value);
            for (const [k, e] of model) if (e.value === o.value) model.delete(k);
          }
        }
        for (const p of [...probes, ...extra]) {
          let best: { bits: number; value: number } | undefined;
          for (const e of model.values()) {
            if (prefixContains(e, p) && (!best || e.bits > best.bits)) best = e;
          }
          expect(t.lookup(p)).toBe(best?.value);
        }
        expect(t.size).toBe(model.size);
        expect(checkShape(t)).toBeGreaterThanOrEqual(model.size);
        for (let v = 0; v <= 5; v++) {
          const want = [...model.values()].filter((e) => e.value === v).map((e) => formatPrefix(e)).sort();
          expect(t.entriesFor(v).map(formatPrefix).sort()).toEqual(want);
        }
        expect([...t.entries()].map((e) => `${formatPrefix(e)}=${e.value}`).sort()).toEqual(
          [...model.values()].map((e) => `${formatPrefix(e)}=${e.value}`).sort(),
        );
        // Removing everything leaves an empty trie that routes nothing.
        for (let v = 0; v <= 5; v++) t.removeByValue(v);
        for (const p of probes) expect(t.lookup(p)).toBeUndefined();
        expect(t.size).toBe(0);
        expect(checkShape(t)).toBe(0);
      }),
      { numRuns: 600 },
    );
  }

  it('IPv4', () => run(4));
  it('IPv6', () => run(16));
});
