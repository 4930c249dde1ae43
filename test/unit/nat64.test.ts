/**
 * NAT64 synthesis (RFC 6052) and prefix discovery (RFC 7050), against the RFCs' own examples.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { discoverPrefix, extract, synthesize, WELL_KNOWN_PREFIX, type Nat64PrefixLength } from '../../src/paths/nat64.ts';
import { formatIP, parseIP, parsePrefix } from '../../src/netstack/addr.ts';

const v4 = parseIP('192.0.2.33');

// RFC 6052 §2.4, Table 2: 192.0.2.33 embedded under each prefix.
const TABLE2: [string, string][] = [
  ['2001:db8::/32', '2001:db8:c000:221::'],
  ['2001:db8:100::/40', '2001:db8:1c0:2:21::'],
  ['2001:db8:122::/48', '2001:db8:122:c000:2:2100::'],
  ['2001:db8:122:300::/56', '2001:db8:122:3c0:0:221::'],
  ['2001:db8:122:344::/64', '2001:db8:122:344:c0:2:2100:0'],
  ['2001:db8:122:344::/96', '2001:db8:122:344::c000:221'],
];

describe('RFC 6052 address synthesis', () => {
  it.each(TABLE2)('%s embeds 192.0.2.33 as %s (Table 2)', (prefix, want) => {
    const p = parsePrefix(prefix);
    const got = synthesize({ prefix: p.addr, length: p.bits as Nat64PrefixLength }, v4);
    expect(formatIP(got)).toBe(formatIP(parseIP(want)));
    expect(formatIP(extract(got, p.bits))).toBe('192.0.2.33');
  });

  it('uses the Well-Known Prefix 64:ff9b::/96 (§2.1, Table 1)', () => {
    expect(formatIP(synthesize({ prefix: WELL_KNOWN_PREFIX, length: 96 }, v4))).toBe(formatIP(parseIP('64:ff9b::c000:221')));
  });

  it('refuses other prefix lengths and wrong sizes with typed errors', () => {
    expect(() => synthesize({ prefix: WELL_KNOWN_PREFIX, length: 80 as Nat64PrefixLength }, v4)).toThrow(/RFC 6052/);
    expect(() => synthesize({ prefix: WELL_KNOWN_PREFIX, length: 96 }, new Uint8Array(3))).toThrow(/4 bytes/);
    expect(() => extract(new Uint8Array(4), 96)).toThrow(/16 bytes/);
  });

  it('extract undoes synthesize for every length and address', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.constantFrom(32, 40, 48, 56, 64, 96), (pre, a, len) => {
        const got = synthesize({ prefix: pre, length: len as Nat64PrefixLength }, a);
        expect([...extract(got, len)]).toEqual([...a]);
        if (len < 96) expect(got[8]).toBe(0);
      }),
    );
  });
});

describe('RFC 7050 prefix discovery', () => {
  it('finds the prefix and its length from the AAAA answers for ipv4only.arpa', () => {
    for (const [prefix] of TABLE2) {
      const p = parsePrefix(prefix);
      const answer = synthesize({ prefix: p.addr, length: p.bits as Nat64PrefixLength }, parseIP('192.0.0.171'));
      const found = discoverPrefix([answer])!;
      expect(found.length).toBe(p.bits);
      expect(formatIP(found.prefix)).toBe(formatIP(p.addr));
    }
    const wkp = discoverPrefix([parseIP('64:ff9b::c000:aa')])!;
    expect(formatIP(wkp.prefix)).toBe('64:ff9b::');
    expect(wkp.length).toBe(96);
  });

  it('finds nothing when no answer embeds a well-known address (no DNS64)', () => {
    expect(discoverPrefix([])).toBeUndefined();
    expect(discoverPrefix([parseIP('2001:db8::1'), new Uint8Array(4)])).toBeUndefined();
  });
});
