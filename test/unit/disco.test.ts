/**
 * Disco codec (src/disco/message.ts): byte layouts built by hand, a known-answer packet pinned
 * to NaCl's box test vectors, round trips, Tailscale's lax decoding, tampering, the shared-key
 * cache, and fuzzing (only DiscoError may escape).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { xsalsa20 } from '@noble/ciphers/salsa.js';
import { poly1305 } from '@noble/ciphers/_poly1305.js';
import {
  DISCO_DEMUX_LEN,
  DISCO_HEADER_LEN,
  DISCO_MAGIC,
  DISCO_MIN_LEN,
  DISCO_TYPE,
  DiscoError,
  DiscoKeyCache,
  computeShared,
  decodeInner,
  discoSummary,
  encodeInner,
  formatEndpoint,
  looksLikeDisco,
  openDisco,
  parseDiscoHeader,
  sealDisco,
  type DiscoEndpoint,
  type DiscoMessage,
} from '../../src/disco/message.ts';
import { boxBeforenm, boxSealAfternm } from '../../src/crypto/box.ts';
import { concatBytes, fromHex, toHex } from '../../src/crypto/bytes.ts';
import { DiscoPrivate, DiscoPublic, NodePublic } from '../../src/key/keys.ts';
import { formatIP, isIPv4Mapped, parseIP } from '../../src/netstack/addr.ts';
import { nodeBackend } from '../../gateway/src/crypto/node-backend.ts';
import { seededRandom } from '../support/wg-net.ts';

const h = (s: string) => fromHex(s.replace(/\s+/g, ''))!;

// RFC 7748 §6.1 Alice and Bob, which NaCl's box tests also use.
const ALICE_PRIV = DiscoPrivate.fromRaw(h('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'));
const ALICE_PUB = DiscoPublic.fromRaw(h('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a'));
const BOB_PRIV = DiscoPrivate.fromRaw(h('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'));
const BOB_PUB = DiscoPublic.fromRaw(h('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f'));
// NaCl tests/box.c: "firstkey" = crypto_box_beforenm(bobpk, alicesk), nonce, message, box.
const FIRSTKEY = h('1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389');
const NACL_NONCE = h('69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37');
const NACL_MSG = h(`be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffce5ecbaaf33bd751a1ac728d45e6c61296cdc3c01233561f41db66cce314adb310e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde048977eb48f59ffd4924ca1c60902e52f0a089bc76897040e082f937763848645e0705`);
const NACL_BOX = h(`f3ffc7703f9400e52a7dfb4b3d3305d98e993b9f48681273c29650ba32fc76ce48332ea7164d96a4476fb8c531a1186ac0dfc17c98dce87b4da7f011ec48c97271d2c20f9b928fe2270d6fb863d51738b48eeee314a7cc8ab932164548e526ae90224368517acfeabd6bb3732bc0e9da99832b61ca01b6de56244a9e88d5f9b37973f622a43d14a6599b1f654cb45a74e355a5`);

// The box of the Alice → Bob ping below (TXID, NODE_KEY) under NACL_NONCE: tag ‖ ciphertext.
// Its parts are re-derived from NaCl's vector in the test; the whole is pinned here.
const PINNED_BOX =
  '9d8f759b1630f6ba7fe2edf4efc066db' +
  '319e645b76eae4a30b854ba5d31c5a943838cfa87c0875593c380e6d61b061a11d0a3b92e922d9241127908ce275';

const TXID = h('000102030405060708090a0b');
const NODE_KEY = NodePublic.fromRaw(h('2021222324252627282930313233343536373839404142434445464748495051'));

const rand = seededRandom(0xd15c0);
const PEERS = Array.from({ length: 4 }, () => {
  const priv = DiscoPrivate.generate(rand);
  return { priv, pub: priv.public() };
});

/** The DiscoError code `f` throws; undefined when it returns; rethrows anything else. */
function codeOf(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    if (e instanceof DiscoError) return e.code;
    throw e;
  }
}

/** What an endpoint IP decodes to: IPv4 (also v4-mapped IPv6) dotted, IPv6 RFC 5952. */
function canonicalIP(text: string): string {
  const b = parseIP(text);
  return isIPv4Mapped(b) ? formatIP(b.subarray(12)) : formatIP(b);
}

const canonicalEndpoint = (ep: DiscoEndpoint): DiscoEndpoint => ({ ip: canonicalIP(ep.ip), port: ep.port });

/** The message `decodeInner(encodeInner(m))` must give back. */
function expectedDecode(m: DiscoMessage): DiscoMessage {
  switch (m.type) {
    case 'ping': {
      const out: DiscoMessage = { type: 'ping', txid: m.txid };
      if (m.nodeKey && !m.nodeKey.isZero()) out.nodeKey = m.nodeKey;
      if (m.padding) out.padding = m.padding;
      return out;
    }
    case 'pong':
      return { type: 'pong', txid: m.txid, src: canonicalEndpoint(m.src) };
    case 'call-me-maybe':
      return { type: 'call-me-maybe', endpoints: m.endpoints.map(canonicalEndpoint) };
    case 'punch':
      return { ...m, ip: canonicalIP(m.ip) };
  }
}

/** Comparable form (keys as hex, byte arrays as hex). */
function plain(m: DiscoMessage): unknown {
  return JSON.parse(JSON.stringify(m, (_k, v: unknown) => (v instanceof Uint8Array ? toHex(v) : v)));
}

const arbIP = fc.oneof(fc.ipV4(), fc.ipV6());
const arbEndpoint: fc.Arbitrary<DiscoEndpoint> = fc.record({ ip: arbIP, port: fc.integer({ min: 0, max: 0xffff }) });
const arbTxid = fc.uint8Array({ minLength: 12, maxLength: 12 });
const arbNodeKey = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => NodePublic.fromRaw(b));
const arbMessage: fc.Arbitrary<DiscoMessage> = fc.oneof(
  fc.record(
    { type: fc.constant('ping' as const), txid: arbTxid, nodeKey: arbNodeKey, padding: fc.integer({ min: 0, max: 1500 }) },
    { requiredKeys: ['type', 'txid'] },
  ),
  fc.record({ type: fc.constant('pong' as const), txid: arbTxid, src: arbEndpoint }),
  fc.record({ type: fc.constant('call-me-maybe' as const), endpoints: fc.array(arbEndpoint, { maxLength: 8 }) }),
  fc.record({
    type: fc.constant('punch' as const),
    ip: arbIP,
    sockets: fc.integer({ min: 0, max: 0xffff }),
    durationS: fc.integer({ min: 0, max: 0xffff }),
    sprays: fc.boolean(),
  }),
);

describe('constants and demux', () => {
  it('the magic is "TS💬" and the header is 6 + 32 + 24 bytes', () => {
    expect(toHex(DISCO_MAGIC)).toBe('5453f09f92ac');
    expect(toHex(new TextEncoder().encode('TS💬'))).toBe('5453f09f92ac');
    expect([DISCO_DEMUX_LEN, DISCO_HEADER_LEN, DISCO_MIN_LEN]).toEqual([38, 62, 78]);
    expect(DISCO_TYPE).toEqual({ ping: 1, pong: 2, 'call-me-maybe': 3, punch: 0x40 });
  });

  it('looksLikeDisco wants the magic and a sender key, like magicsock', () => {
    const p = concatBytes(DISCO_MAGIC, new Uint8Array(32));
    expect(looksLikeDisco(p)).toBe(true);
    expect(looksLikeDisco(p.subarray(0, 37))).toBe(false);
    expect(looksLikeDisco(new Uint8Array(0))).toBe(false);
    for (let i = 0; i < 6; i++) {
      const q = Uint8Array.from(p);
      q[i]! ^= 1;
      expect(looksLikeDisco(q)).toBe(false);
    }
    // WireGuard messages (type 1..4, three zero bytes) never look like disco.
    for (let t = 1; t <= 4; t++) expect(looksLikeDisco(concatBytes(Uint8Array.of(t, 0, 0, 0), new Uint8Array(144)))).toBe(false);
    // A genuine packet does.
    expect(looksLikeDisco(sealDisco({ type: 'ping', txid: TXID }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE))).toBe(true);
  });
});

describe('inner message layout', () => {
  it('ping: type, version 0, TxID, optional node key, zero padding', () => {
    expect(toHex(encodeInner({ type: 'ping', txid: TXID }))).toBe('0100' + toHex(TXID));
    expect(toHex(encodeInner({ type: 'ping', txid: TXID, nodeKey: NODE_KEY }))).toBe('0100' + toHex(TXID) + toHex(NODE_KEY.raw()));
    expect(toHex(encodeInner({ type: 'ping', txid: TXID, nodeKey: NODE_KEY, padding: 5 }))).toBe(
      '0100' + toHex(TXID) + toHex(NODE_KEY.raw()) + '0000000000',
    );
    expect(toHex(encodeInner({ type: 'ping', txid: TXID, padding: 3 }))).toBe('0100' + toHex(TXID) + '000000');
    // A zero node key is "no key", as in Tailscale.
    expect(toHex(encodeInner({ type: 'ping', txid: TXID, nodeKey: NodePublic.fromRaw(new Uint8Array(32)) }))).toBe('0100' + toHex(TXID));
    expect(encodeInner({ type: 'ping', txid: TXID, nodeKey: NODE_KEY, padding: 1200 }).length).toBe(2 + 12 + 32 + 1200);
  });

  it('pong: TxID, v4-mapped IPv6 source, big-endian port', () => {
    expect(toHex(encodeInner({ type: 'pong', txid: TXID, src: { ip: '192.0.2.1', port: 54321 } }))).toBe(
      '0200' + toHex(TXID) + '00000000000000000000ffff' + 'c0000201' + 'd431',
    );
    expect(toHex(encodeInner({ type: 'pong', txid: TXID, src: { ip: '2001:db8::1', port: 443 } }))).toBe(
      '0200' + toHex(TXID) + '20010db8000000000000000000000001' + '01bb',
    );
    // "::ffff:a.b.c.d" is the same bytes as "a.b.c.d", and decodes to the latter.
    const mapped = encodeInner({ type: 'pong', txid: TXID, src: { ip: '::ffff:192.0.2.1', port: 1 } });
    expect(toHex(mapped)).toBe('0200' + toHex(TXID) + '00000000000000000000ffffc0000201' + '0001');
    expect(decodeInner(mapped)).toMatchObject({ src: { ip: '192.0.2.1', port: 1 } });
  });

  it('punch (Pierce\'s 0x40): flags, sockets, duration, v4-mapped IP; short payloads are refused', () => {
    const b = encodeInner({ type: 'punch', ip: '203.0.113.7', sockets: 256, durationS: 30, sprays: true });
    expect(toHex(b)).toBe('4000' + '01' + '0100' + '001e' + '00000000000000000000ffffcb007107');
    expect(decodeInner(b)).toEqual({ type: 'punch', ip: '203.0.113.7', sockets: 256, durationS: 30, sprays: true });
    expect(codeOf(() => decodeInner(b.subarray(0, b.length - 1)))).toBe('DISCO_SHORT');
    expect(codeOf(() => encodeInner({ type: 'punch', ip: '1.2.3.4', sockets: 70000, durationS: 1, sprays: false }))).toBe('DISCO_ENCODE');
  });

  it('call-me-maybe: n × (16-byte address, port); n may be 0', () => {
    expect(toHex(encodeInner({ type: 'call-me-maybe', endpoints: [] }))).toBe('0300');
    const b = encodeInner({
      type: 'call-me-maybe',
      endpoints: [
        { ip: '203.0.113.7', port: 41641 },
        { ip: 'fe80::1:2', port: 0xffff },
        { ip: '0.0.0.0', port: 0 },
      ],
    });
    expect(toHex(b)).toBe(
      '0300' +
        '00000000000000000000ffffcb007107' + 'a2a9' +
        'fe800000000000000000000000010002' + 'ffff' +
        '00000000000000000000ffff00000000' + '0000',
    );
    expect(decodeInner(b)).toEqual({
      type: 'call-me-maybe',
      endpoints: [
        { ip: '203.0.113.7', port: 41641 },
        { ip: 'fe80::1:2', port: 65535 },
        { ip: '0.0.0.0', port: 0 },
      ],
    });
  });

  it('decodes IPv6 to RFC 5952 text', () => {
    const b = encodeInner({ type: 'pong', txid: TXID, src: { ip: '2001:0DB8:0000:0000:0001:0000:0000:0001', port: 9 } });
    expect(decodeInner(b)).toMatchObject({ src: { ip: '2001:db8::1:0:0:1', port: 9 } });
    const z = encodeInner({ type: 'pong', txid: TXID, src: { ip: '::', port: 9 } });
    expect(decodeInner(z)).toMatchObject({ src: { ip: '::', port: 9 } });
  });

  it('round-trips every message type (v4 and v6, with and without node key, padding)', () => {
    const examples: DiscoMessage[] = [
      { type: 'ping', txid: TXID },
      { type: 'ping', txid: TXID, nodeKey: NODE_KEY },
      { type: 'ping', txid: TXID, nodeKey: NODE_KEY, padding: 1400 },
      { type: 'ping', txid: TXID, padding: 31 },
      { type: 'ping', txid: TXID, padding: 32 },
      { type: 'ping', txid: TXID, padding: 500 },
      { type: 'pong', txid: TXID, src: { ip: '100.64.0.1', port: 41641 } },
      { type: 'pong', txid: TXID, src: { ip: 'fd7a:115c:a1e0::1', port: 65535 } },
      { type: 'call-me-maybe', endpoints: [] },
      { type: 'call-me-maybe', endpoints: [{ ip: '1.2.3.4', port: 5 }, { ip: '2001:db8::5', port: 6 }] },
    ];
    for (const m of examples) expect(plain(decodeInner(encodeInner(m)))).toEqual(plain(expectedDecode(m)));
    const d = decodeInner(encodeInner({ type: 'ping', txid: TXID, nodeKey: NODE_KEY }));
    expect(d.type === 'ping' && d.nodeKey instanceof NodePublic && d.nodeKey.equals(NODE_KEY)).toBe(true);
    fc.assert(
      fc.property(arbMessage, (m) => {
        expect(plain(decodeInner(encodeInner(m)))).toEqual(plain(expectedDecode(m)));
      }),
      { numRuns: 500 },
    );
  });

  it('decoded TxIDs are copies, not views into the input', () => {
    const b = encodeInner({ type: 'pong', txid: TXID, src: { ip: '1.2.3.4', port: 5 } });
    const m = decodeInner(b);
    b.fill(0xee);
    expect(m.type === 'pong' && toHex(m.txid)).toBe(toHex(TXID));
  });
});

describe('lax decoding (as Tailscale)', () => {
  it('ignores trailing bytes and the version of Ping and Pong', () => {
    const pong = concatBytes(encodeInner({ type: 'pong', txid: TXID, src: { ip: '1.2.3.4', port: 80 } }), h('deadbeef'));
    expect(plain(decodeInner(pong))).toEqual(plain({ type: 'pong', txid: TXID, src: { ip: '1.2.3.4', port: 80 } }));
    pong[1] = 7;
    expect(decodeInner(pong)).toMatchObject({ type: 'pong', src: { ip: '1.2.3.4', port: 80 } });
    const ping = encodeInner({ type: 'ping', txid: TXID, nodeKey: NODE_KEY });
    ping[1] = 1;
    expect(decodeInner(ping)).toMatchObject({ type: 'ping', nodeKey: NODE_KEY });
  });

  it('a ping with fewer than 32 bytes after the TxID, or 32 zeros, has no node key', () => {
    const short = concatBytes(h('0100'), TXID, new Uint8Array(31).fill(0x55));
    expect(plain(decodeInner(short))).toEqual(plain({ type: 'ping', txid: TXID, padding: 31 }));
    const zeros = concatBytes(h('0100'), TXID, new Uint8Array(40));
    expect(plain(decodeInner(zeros))).toEqual(plain({ type: 'ping', txid: TXID, padding: 40 }));
    // Non-zero "padding" bytes are accepted (receivers ignore what they do not know).
    const junk = concatBytes(h('0100'), TXID, NODE_KEY.raw(), h('ff'));
    expect(plain(decodeInner(junk))).toEqual(plain({ type: 'ping', txid: TXID, nodeKey: NODE_KEY, padding: 1 }));
  });

  it('a call-me-maybe with a partial endpoint or a non-zero version has no endpoints', () => {
    const cmm = encodeInner({ type: 'call-me-maybe', endpoints: [{ ip: '1.2.3.4', port: 5 }] });
    expect(decodeInner(concatBytes(cmm, h('00')))).toEqual({ type: 'call-me-maybe', endpoints: [] });
    expect(decodeInner(cmm.subarray(0, cmm.length - 1))).toEqual({ type: 'call-me-maybe', endpoints: [] });
    const v1 = Uint8Array.from(cmm);
    v1[1] = 1;
    expect(decodeInner(v1)).toEqual({ type: 'call-me-maybe', endpoints: [] });
  });
});

describe('inner message errors', () => {
  it('short messages give DISCO_SHORT', () => {
    expect(codeOf(() => decodeInner(new Uint8Array(0)))).toBe('DISCO_SHORT');
    expect(codeOf(() => decodeInner(h('01')))).toBe('DISCO_SHORT');
    expect(codeOf(() => decodeInner(concatBytes(h('0100'), TXID.subarray(0, 11))))).toBe('DISCO_SHORT');
    expect(codeOf(() => decodeInner(concatBytes(h('0100'), TXID)))).toBeUndefined();
    const pong = encodeInner({ type: 'pong', txid: TXID, src: { ip: '1.2.3.4', port: 5 } });
    expect(codeOf(() => decodeInner(pong.subarray(0, pong.length - 1)))).toBe('DISCO_SHORT');
    expect(codeOf(() => decodeInner(h('0200')))).toBe('DISCO_SHORT');
  });

  it('unknown types give DISCO_TYPE', () => {
    for (let t = 0; t < 256; t++) {
      if ((t >= 1 && t <= 3) || t === 0x40) continue;
      const b = concatBytes(Uint8Array.of(t, 0), new Uint8Array(64));
      expect(codeOf(() => decodeInner(b))).toBe('DISCO_TYPE');
    }
    expect(() => decodeInner(h('0400'))).toThrow(/0x04/);
  });

  it('bad encoder input gives DISCO_ENCODE', () => {
    const bad: unknown[] = [
      { type: 'ping', txid: TXID.subarray(1) },
      { type: 'ping', txid: 'abc' },
      { type: 'ping', txid: TXID, padding: -1 },
      { type: 'ping', txid: TXID, padding: 1.5 },
      { type: 'ping', txid: TXID, padding: 1e6 },
      { type: 'pong', txid: TXID, src: { ip: '1.2.3', port: 1 } },
      { type: 'pong', txid: TXID, src: { ip: 'fe80::1%eth0', port: 1 } },
      { type: 'pong', txid: TXID, src: { ip: '1.2.3.4', port: 65536 } },
      { type: 'pong', txid: TXID, src: { ip: '1.2.3.4', port: -1 } },
      { type: 'pong', txid: TXID, src: { ip: '1.2.3.4', port: 80.5 } },
      { type: 'pong', txid: TXID },
      { type: 'call-me-maybe', endpoints: [{ ip: '1.2.3.4', port: 1 }, { ip: 'x', port: 1 }] },
      { type: 'call-me-maybe' },
      { type: 'call-me-maybe', endpoints: Array.from({ length: 4000 }, () => ({ ip: '1.2.3.4', port: 1 })) },
      { type: 'hello' },
      null,
    ];
    for (const m of bad) expect(codeOf(() => encodeInner(m as DiscoMessage))).toBe('DISCO_ENCODE');
    expect(codeOf(() => sealDisco({ type: 'ping', txid: TXID }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE.subarray(1)))).toBe(
      'DISCO_ENCODE',
    );
  });
});

describe('sealed packets', () => {
  const PING: DiscoMessage = { type: 'ping', txid: TXID, nodeKey: NODE_KEY };

  it('lay out magic, sender key, nonce, then tag and ciphertext', () => {
    const p = sealDisco(PING, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE);
    expect(p.length).toBe(62 + 16 + 46);
    expect(toHex(p.subarray(0, 6))).toBe('5453f09f92ac');
    expect(toHex(p.subarray(6, 38))).toBe(toHex(ALICE_PUB.raw()));
    expect(toHex(p.subarray(38, 62))).toBe(toHex(NACL_NONCE));
    const hdr = parseDiscoHeader(p);
    expect(hdr.sender.equals(ALICE_PUB)).toBe(true);
    expect(toHex(hdr.nonce)).toBe(toHex(NACL_NONCE));
    expect(toHex(hdr.boxed)).toBe(toHex(p.subarray(62)));
  });

  it('match a vector derived from NaCl box.c (firstkey, nonce, keystream)', () => {
    expect(toHex(computeShared(ALICE_PRIV, BOB_PUB))).toBe(toHex(FIRSTKEY));
    const inner = encodeInner(PING);
    const p = sealDisco(PING, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE);
    const tag = p.subarray(62, 78);
    const ct = p.subarray(78);
    // XSalsa20 keystream bytes 32.. are NaCl's ciphertext XOR its message (box.c output, Go layout).
    const ks = NACL_BOX.subarray(16).map((c, i) => c ^ NACL_MSG[i]!);
    expect(toHex(ct)).toBe(toHex(inner.map((b, i) => b ^ ks[i]!)));
    // The tag is Poly1305 over the ciphertext under keystream bytes 0..31.
    const polyKey = xsalsa20(FIRSTKEY, NACL_NONCE, new Uint8Array(32));
    expect(toHex(tag)).toBe(toHex(poly1305(ct, polyKey)));
    expect(toHex(p)).toBe(
      '5453f09f92ac' +
        '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a' +
        '69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37' +
        PINNED_BOX,
    );
    // Bob opens it, with noble's X25519 and with node:crypto's.
    for (const opts of [undefined, { dh: nodeBackend.x25519 }]) {
      const o = openDisco(p, BOB_PRIV, opts);
      expect(o.sender.equals(ALICE_PUB)).toBe(true);
      expect(plain(o.msg)).toEqual(plain(PING));
    }
  });

  it('round-trip every message type between random peers', () => {
    fc.assert(
      fc.property(arbMessage, fc.uint8Array({ minLength: 24, maxLength: 24 }), fc.nat(3), fc.nat(3), (m, nonce, a, b) => {
        const s = PEERS[a]!;
        const r = PEERS[b]!;
        const p = sealDisco(m, s.priv, s.pub, r.pub, nonce, { dh: nodeBackend.x25519 });
        const o = openDisco(p, r.priv, { dh: nodeBackend.x25519 });
        expect(o.sender.equals(s.pub)).toBe(true);
        expect(plain(o.msg)).toEqual(plain(expectedDecode(m)));
      }),
      { numRuns: 200 },
    );
  });

  it('any flipped byte fails: DISCO_MAGIC in the magic, DISCO_OPEN elsewhere', () => {
    // Except the top bit of the sender key, which X25519 ignores (RFC 7748 §5): that box still
    // opens, but names a sender key no peer has, so the engine's peer lookup drops it.
    const msgs: DiscoMessage[] = [
      PING,
      { type: 'pong', txid: TXID, src: { ip: '1.2.3.4', port: 5 } },
      { type: 'call-me-maybe', endpoints: [] },
    ];
    for (const m of msgs) {
      const p = sealDisco(m, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE);
      for (let i = 0; i < p.length; i++) {
        for (const bit of [0x01, 0x80]) {
          const q = Uint8Array.from(p);
          q[i]! ^= bit;
          const code = codeOf(() => openDisco(q, BOB_PRIV, { dh: nodeBackend.x25519 }));
          if (i === 37 && bit === 0x80) {
            expect(code).toBeUndefined();
            expect(openDisco(q, BOB_PRIV).sender.equals(ALICE_PUB)).toBe(false);
            continue;
          }
          expect(code, `byte ${i} bit ${bit}`).toBe(i < 6 ? 'DISCO_MAGIC' : 'DISCO_OPEN');
        }
      }
    }
  });

  it('truncated or extended packets fail', () => {
    const p = sealDisco(PING, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE);
    for (let n = 0; n < p.length; n++) {
      const code = codeOf(() => openDisco(p.subarray(0, n), BOB_PRIV));
      expect(code).toBe(n < 78 ? 'DISCO_SHORT' : 'DISCO_OPEN');
    }
    expect(codeOf(() => openDisco(concatBytes(p, h('00')), BOB_PRIV))).toBe('DISCO_OPEN');
  });

  it('the wrong receiver cannot open it', () => {
    const p = sealDisco(PING, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE);
    expect(codeOf(() => openDisco(p, PEERS[0]!.priv))).toBe('DISCO_OPEN');
    expect(codeOf(() => openDisco(p, ALICE_PRIV))).toBe('DISCO_OPEN');
    // Nor does lying about the sender help.
    const q = Uint8Array.from(p);
    q.set(PEERS[1]!.pub.raw(), 6);
    expect(codeOf(() => openDisco(q, BOB_PRIV))).toBe('DISCO_OPEN');
  });

  it('a low-order sender or receiver key gives DISCO_KEY', () => {
    const p = sealDisco(PING, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE);
    for (const low of [new Uint8Array(32), h('0100000000000000000000000000000000000000000000000000000000000000')]) {
      const q = Uint8Array.from(p);
      q.set(low, 6);
      expect(codeOf(() => openDisco(q, BOB_PRIV))).toBe('DISCO_KEY');
      expect(codeOf(() => openDisco(q, BOB_PRIV, { dh: nodeBackend.x25519 }))).toBe('DISCO_KEY');
      expect(codeOf(() => sealDisco(PING, ALICE_PRIV, ALICE_PUB, DiscoPublic.fromRaw(low), NACL_NONCE))).toBe('DISCO_KEY');
    }
  });

  it('a genuine box around a malformed inner message gives its inner error', () => {
    const k = boxBeforenm(BOB_PUB.raw(), ALICE_PRIV.raw());
    const pack = (inner: Uint8Array) => concatBytes(DISCO_MAGIC, ALICE_PUB.raw(), NACL_NONCE, boxSealAfternm(k, NACL_NONCE, inner));
    expect(codeOf(() => openDisco(pack(new Uint8Array(0)), BOB_PRIV))).toBe('DISCO_SHORT');
    expect(codeOf(() => openDisco(pack(h('0100')), BOB_PRIV))).toBe('DISCO_SHORT');
    expect(codeOf(() => openDisco(pack(h('0900')), BOB_PRIV))).toBe('DISCO_TYPE');
    const trailing = concatBytes(encodeInner({ type: 'pong', txid: TXID, src: { ip: '1.2.3.4', port: 5 } }), new Uint8Array(9).fill(7));
    expect(openDisco(pack(trailing), BOB_PRIV).msg).toMatchObject({ type: 'pong', src: { ip: '1.2.3.4', port: 5 } });
  });
});

describe('parseDiscoHeader', () => {
  it('rejects short input and bad magic with typed errors', () => {
    expect(codeOf(() => parseDiscoHeader(new Uint8Array(0)))).toBe('DISCO_SHORT');
    expect(codeOf(() => parseDiscoHeader(DISCO_MAGIC.subarray(0, 5)))).toBe('DISCO_SHORT');
    expect(codeOf(() => parseDiscoHeader(concatBytes(DISCO_MAGIC, new Uint8Array(71))))).toBe('DISCO_SHORT');
    expect(codeOf(() => parseDiscoHeader(concatBytes(DISCO_MAGIC, new Uint8Array(72))))).toBeUndefined();
    expect(codeOf(() => parseDiscoHeader(new Uint8Array(200)))).toBe('DISCO_MAGIC');
    expect(codeOf(() => parseDiscoHeader(h('5453f09f92')))).toBe('DISCO_SHORT');
    expect(codeOf(() => parseDiscoHeader(h('5453f09f92ad')))).toBe('DISCO_MAGIC');
  });

  it('returns the sender as a copy and nonce and box as views', () => {
    const p = sealDisco({ type: 'ping', txid: TXID }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE);
    const hdr = parseDiscoHeader(p);
    p[6]! ^= 0xff;
    expect(hdr.sender.equals(ALICE_PUB)).toBe(true);
    expect(hdr.nonce.buffer).toBe(p.buffer);
    expect(hdr.nonce.byteOffset).toBe(38);
    expect(hdr.boxed.byteOffset).toBe(62);
  });
});

describe('DiscoKeyCache', () => {
  function counting() {
    let calls = 0;
    const dh = (priv: Uint8Array, pub: Uint8Array) => {
      calls++;
      return nodeBackend.x25519(priv, pub);
    };
    return { dh, calls: () => calls };
  }

  it('memoizes one beforenm per peer and gives NaCl\'s firstkey', () => {
    const c = counting();
    const cache = new DiscoKeyCache(ALICE_PRIV, { dh: c.dh });
    expect(cache.publicKey.equals(ALICE_PUB)).toBe(true);
    expect(toHex(cache.shared(BOB_PUB))).toBe(toHex(FIRSTKEY));
    for (let i = 0; i < 5; i++) {
      const p = cache.seal({ type: 'ping', txid: TXID }, BOB_PUB, NACL_NONCE);
      expect(toHex(p)).toBe(toHex(sealDisco({ type: 'ping', txid: TXID }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE)));
      sealDisco({ type: 'ping', txid: TXID }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE, cache);
      sealDisco({ type: 'ping', txid: TXID }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE, { cache });
    }
    expect(c.calls()).toBe(1);
    expect(cache.size).toBe(1);
  });

  it('opens with cached keys on the receiving side', () => {
    const c = counting();
    const bob = new DiscoKeyCache(BOB_PRIV, { dh: c.dh });
    for (let i = 0; i < 3; i++) {
      const p = sealDisco({ type: 'pong', txid: TXID, src: { ip: '::1', port: i } }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE);
      const o = bob.open(p);
      expect(o.sender.equals(ALICE_PUB)).toBe(true);
      expect(o.msg).toMatchObject({ type: 'pong', src: { ip: '::1', port: i } });
      expect(openDisco(p, BOB_PRIV, bob).msg).toMatchObject({ src: { port: i } });
    }
    expect(c.calls()).toBe(1);
  });

  it('evicts (and wipes) the least recently used key beyond maxEntries', () => {
    const c = counting();
    const cache = new DiscoKeyCache(BOB_PRIV, { maxEntries: 2, dh: c.dh });
    const k0 = cache.shared(PEERS[0]!.pub);
    cache.shared(PEERS[1]!.pub);
    cache.shared(PEERS[0]!.pub); // refresh 0: 1 is now the oldest
    const k2 = cache.shared(PEERS[2]!.pub);
    expect(cache.size).toBe(2);
    expect(cache.has(PEERS[0]!.pub)).toBe(true);
    expect(cache.has(PEERS[1]!.pub)).toBe(false);
    expect(c.calls()).toBe(3);
    cache.shared(PEERS[1]!.pub); // evicts 0
    expect(c.calls()).toBe(4);
    expect(toHex(k0)).toBe('00'.repeat(32));
    expect(cache.delete(PEERS[2]!.pub)).toBe(true);
    expect(toHex(k2)).toBe('00'.repeat(32));
    expect(cache.delete(PEERS[2]!.pub)).toBe(false);
    cache.clear();
    expect(cache.size).toBe(0);
  });

  it('does not cache a low-order key, and refuses another private key', () => {
    const cache = new DiscoKeyCache(BOB_PRIV);
    expect(codeOf(() => cache.shared(DiscoPublic.fromRaw(new Uint8Array(32))))).toBe('DISCO_KEY');
    expect(cache.size).toBe(0);
    const p = sealDisco({ type: 'ping', txid: TXID }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE);
    expect(codeOf(() => openDisco(p, ALICE_PRIV, cache))).toBe('DISCO_ENCODE');
    expect(codeOf(() => sealDisco({ type: 'ping', txid: TXID }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE, { cache }))).toBe('DISCO_ENCODE');
    expect(codeOf(() => new DiscoKeyCache(BOB_PRIV, { maxEntries: 0 }))).toBe('DISCO_ENCODE');
  });
});

describe('summaries', () => {
  it('describe messages for logs', () => {
    expect(discoSummary({ type: 'ping', txid: TXID, padding: 3 })).toBe('ping tx=000102030405 padding=3');
    expect(discoSummary({ type: 'pong', txid: TXID, src: { ip: '::1', port: 7 } })).toBe('pong tx=000102030405 src=[::1]:7');
    expect(discoSummary({ type: 'call-me-maybe', endpoints: [{ ip: '1.2.3.4', port: 5 }] })).toBe('call-me-maybe 1.2.3.4:5');
    expect(formatEndpoint({ ip: '10.0.0.1', port: 1 })).toBe('10.0.0.1:1');
  });
});

describe('fuzz: only DiscoError escapes', () => {
  const opts = { dh: nodeBackend.x25519 };
  const genuine = [
    sealDisco({ type: 'ping', txid: TXID, nodeKey: NODE_KEY, padding: 20 }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE),
    sealDisco({ type: 'pong', txid: TXID, src: { ip: '2001:db8::1', port: 1 } }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE),
    sealDisco({ type: 'call-me-maybe', endpoints: [{ ip: '1.2.3.4', port: 5 }] }, ALICE_PRIV, ALICE_PUB, BOB_PUB, NACL_NONCE),
  ];
  const isDiscoError = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      expect(e).toBeInstanceOf(DiscoError);
    }
  };

  it('random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (b, withMagic) => {
        const p = withMagic ? concatBytes(DISCO_MAGIC, b) : b;
        isDiscoError(() => parseDiscoHeader(p));
        isDiscoError(() => openDisco(p, BOB_PRIV, opts));
        isDiscoError(() => decodeInner(b));
        expect(typeof looksLikeDisco(p)).toBe('boolean');
      }),
      { numRuns: 1000 },
    );
  });

  it('random inner messages', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 100 }), (t, v, b) => {
        isDiscoError(() => decodeInner(concatBytes(Uint8Array.of(t, v), b)));
      }),
      { numRuns: 2000 },
    );
  });

  it('mutated genuine packets', () => {
    const mutation = fc.record({
      which: fc.nat(genuine.length - 1),
      edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      cut: fc.option(fc.nat()),
      extra: fc.uint8Array({ maxLength: 8 }),
    });
    fc.assert(
      fc.property(mutation, ({ which, edits, cut, extra }) => {
        let p: Uint8Array = Uint8Array.from(genuine[which]!);
        for (const [at, v] of edits) p[at % p.length] = v;
        if (cut !== null) p = p.subarray(0, cut % (p.length + 1));
        p = concatBytes(p, extra);
        isDiscoError(() => parseDiscoHeader(p));
        isDiscoError(() => openDisco(p, BOB_PRIV, opts));
      }),
      { numRuns: 1000 },
    );
  });
});
