import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DiscoPrivate, MachinePrivate, NodePrivate, NodePublic, PresharedKey, DiscoPublic, clamp } from '../../src/key/keys.ts';
import { fromHex, toHex } from '../../src/crypto/bytes.ts';
import { isPierceError } from '../../src/errors.ts';

// RFC 7748 §6.1 Alice.
const ALICE_PRIV = '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a';
const ALICE_PUB = '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a';

describe('typed keys', () => {
  it('derive the public key and print wg-compatible base64 and prefixed forms', () => {
    const priv = NodePrivate.fromRaw(fromHex(ALICE_PRIV)!);
    const pub = priv.public();
    expect(toHex(pub.raw())).toBe(ALICE_PUB);
    expect(pub.toBase64()).toBe(Buffer.from(ALICE_PUB, 'hex').toString('base64'));
    expect(pub.toString()).toBe(`nodekey:${ALICE_PUB}`);
    expect(pub.short()).toBe(`[${pub.toBase64().slice(0, 5)}]`);
    expect(NodePublic.parse(pub.toBase64()).equals(pub)).toBe(true);
    expect(NodePublic.parse(pub.toString()).equals(pub)).toBe(true);
    expect(JSON.stringify({ k: pub })).toBe(`{"k":"nodekey:${ALICE_PUB}"}`);
  });

  it('never print private keys by accident', () => {
    const priv = NodePrivate.generate();
    expect(priv.short()).toBe('[private]');
    expect(JSON.stringify({ priv })).toBe('{"priv":"[private]"}');
    expect(JSON.stringify(PresharedKey.generate())).toBe('"[psk]"');
  });

  it('generate clamped private keys, as wg genkey does', () => {
    for (const k of [NodePrivate.generate(), DiscoPrivate.generate(), MachinePrivate.generate()]) {
      const b = k.raw();
      expect(b[0]! & 7).toBe(0);
      expect(b[31]! & 0x80).toBe(0);
      expect(b[31]! & 0x40).toBe(0x40);
    }
  });

  it('compare in constant time and only within one kind', () => {
    const raw = fromHex(ALICE_PUB)!;
    expect(NodePublic.fromRaw(raw).equals(NodePublic.fromRaw(raw))).toBe(true);
    const other = Uint8Array.from(raw);
    other[31]! ^= 1;
    expect(NodePublic.fromRaw(raw).equals(NodePublic.fromRaw(other))).toBe(false);
    // A disco key with the same bytes is a different kind of key.
    expect(NodePublic.fromRaw(raw).equals(DiscoPublic.fromRaw(raw) as unknown as NodePublic)).toBe(false);
    expect(DiscoPublic.fromRaw(raw).toString().startsWith('discokey:')).toBe(true);
    expect(MachinePrivate.generate().public().toString().startsWith('mkey:')).toBe(true);
  });

  it('reject bad text and lengths with KeyError codes (fuzz)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        try {
          NodePublic.parse(s);
        } catch (e) {
          expect(isPierceError(e, 'KEY_PARSE')).toBe(true);
        }
      }),
    );
    expect(() => NodePublic.fromRaw(new Uint8Array(31))).toThrow(/32 bytes/);
    expect(() => NodePublic.parse('nodekey:abcd')).toThrow(/not a valid node public key/);
  });

  it('clamp is idempotent', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (b) => {
        const once = clamp(Uint8Array.from(b));
        expect(toHex(clamp(Uint8Array.from(once)))).toBe(toHex(once));
      }),
    );
  });
});
