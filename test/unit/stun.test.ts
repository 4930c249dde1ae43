/**
 * STUN codec (src/stun/message.ts): RFC 5769 sample messages, round trips, malformed input and
 * fuzzing; then the Node server and client (gateway/src/stun) against each other on loopback.
 */
import { createHmac } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  ATTR,
  BINDING,
  MAGIC_COOKIE,
  StunError,
  buildBindingError,
  buildBindingRequest,
  buildBindingSuccess,
  crc32,
  encodeStun,
  getAttribute,
  looksLikeStun,
  messageType,
  parseStun,
  readErrorCode,
  readMappedAddress,
  readOtherAddress,
  readResponseOrigin,
  readSoftware,
  readUnknownAttributes,
  readXorMappedAddress,
  type StunMessage,
} from '../../src/stun/message.ts';
import { formatIP, parseIP } from '../../src/netstack/addr.ts';
import { fromHex, toHex } from '../../src/crypto/bytes.ts';
import { startStunServer, type StunServer } from '../../gateway/src/stun/server.ts';
import { stunBinding } from '../../gateway/src/stun/client.ts';
import { thrownCode } from '../support/errors.ts';

const hex = (s: string) => fromHex(s.replace(/\s+/g, ''))!;

// RFC 5769 §2.1 Sample Request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY,
// FINGERPRINT); short-term password "VOkJxbRl1RmTxUk/WvJxBt".
const RFC5769_REQUEST = hex(`
  00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
  00 24 00 04 6e 00 01 ff
  80 29 00 08 93 2f f9 b1 51 26 3b 36
  00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
  00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
  80 28 00 04 e5 7a 3b cf`);
// RFC 5769 §2.2 Sample IPv4 Response: 192.0.2.1 port 32853.
const RFC5769_IPV4 = hex(`
  01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 08 00 01 a1 47 e1 12 a6 43
  00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
  80 28 00 04 c0 7d 4c 96`);
// RFC 5769 §2.3 Sample IPv6 Response: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
const RFC5769_IPV6 = hex(`
  01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
  80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
  00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
  00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
  80 28 00 04 c8 fb 0b 4c`);
const RFC5769_TXID = 'b7e7a701bc34d686fa87dfae';
const RFC5769_PASSWORD = 'VOkJxbRl1RmTxUk/WvJxBt';

/** HMAC-SHA1 MESSAGE-INTEGRITY check (RFC 8489 §14.5), short-term key = the password. */
function integrityOK(b: Uint8Array, key: string): boolean {
  const m = parseStun(b);
  let o = 20;
  for (const a of m.attributes) {
    if (a.type === ATTR.MESSAGE_INTEGRITY) break;
    o += 4 + ((a.value.length + 3) & ~3);
  }
  const covered = b.slice(0, o);
  covered[2] = (o + 24 - 20) >> 8;
  covered[3] = (o + 24 - 20) & 0xff;
  const mac = createHmac('sha1', key).update(covered).digest();
  return toHex(mac) === toHex(getAttribute(m, ATTR.MESSAGE_INTEGRITY)!);
}

const stunCode = (f: () => unknown): string => thrownCode(f, StunError, 'none');

describe('RFC 5769 sample messages', () => {
  it('§2.1 request: header, attributes, SOFTWARE, FINGERPRINT and MESSAGE-INTEGRITY', () => {
    const m = parseStun(RFC5769_REQUEST);
    expect([m.method, m.class, toHex(m.transactionId), m.cookie, m.fingerprint]).toEqual([BINDING, 'request', RFC5769_TXID, MAGIC_COOKIE, true]);
    expect(m.attributes.map((a) => a.type)).toEqual([0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028]);
    expect(readSoftware(m)).toBe('STUN test client');
    expect(new TextDecoder().decode(getAttribute(m, ATTR.USERNAME))).toBe('evtj:h6vY');
    expect(integrityOK(RFC5769_REQUEST, RFC5769_PASSWORD)).toBe(true);
    expect(looksLikeStun(RFC5769_REQUEST)).toBe(true);
  });

  it('§2.2 IPv4 response: XOR-MAPPED-ADDRESS 192.0.2.1:32853', () => {
    const m = parseStun(RFC5769_IPV4);
    expect([m.class, toHex(m.transactionId), m.fingerprint, readSoftware(m)]).toEqual(['success', RFC5769_TXID, true, 'test vector']);
    const a = readXorMappedAddress(m)!;
    expect([a.family, formatIP(a.address), a.port]).toEqual([4, '192.0.2.1', 32853]);
    expect(readMappedAddress(m)).toBeNull();
    expect(integrityOK(RFC5769_IPV4, RFC5769_PASSWORD)).toBe(true);
  });

  it('§2.3 IPv6 response: XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853', () => {
    const m = parseStun(RFC5769_IPV6);
    const a = readXorMappedAddress(m)!;
    expect([a.family, formatIP(a.address), a.port]).toEqual([6, '2001:db8:1234:5678:11:2233:4455:6677', 32853]);
    expect(m.fingerprint).toBe(true);
    expect(integrityOK(RFC5769_IPV6, RFC5769_PASSWORD)).toBe(true);
  });

  it('our encoder reproduces the XOR-MAPPED-ADDRESS bytes of §2.2 and §2.3', () => {
    const txid = hex(RFC5769_TXID);
    const v4 = buildBindingSuccess(txid, parseIP('192.0.2.1'), 32853, { mappedAddress: false });
    expect(toHex(v4.subarray(20))).toBe('002000080001a147e112a643');
    const v6 = buildBindingSuccess(txid, parseIP('2001:db8:1234:5678:11:2233:4455:6677'), 32853, { mappedAddress: false });
    expect(toHex(v6.subarray(20))).toBe('002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9');
  });

  it('any flipped byte is caught (FINGERPRINT covers the whole message)', () => {
    for (const vec of [RFC5769_REQUEST, RFC5769_IPV4, RFC5769_IPV6]) {
      for (let i = 0; i < vec.length; i++) {
        if (i === vec.length - 8 || i === vec.length - 7) continue; // FINGERPRINT's own type: then it is not a FINGERPRINT
        const b = vec.slice();
        b[i]! ^= 0x01;
        expect(stunCode(() => parseStun(b))).not.toBe('none');
      }
    }
  });
});

describe('codec', () => {
  it('message types per RFC 8489 §5 and CRC-32 check value', () => {
    expect(['request', 'indication', 'success', 'error'].map((c) => messageType(BINDING, c as StunMessage['class']))).toEqual([0x0001, 0x0011, 0x0101, 0x0111]);
    expect(messageType(0xfff, 'error')).toBe(0x3fff);
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });

  it('rejects bad headers and attributes with stable codes', () => {
    const req = buildBindingRequest(new Uint8Array(12), { software: 'x', fingerprint: true });
    const bad = (f: (b: Uint8Array) => void, len = req.length) => {
      const b = new Uint8Array(len);
      b.set(req.subarray(0, Math.min(len, req.length)));
      f(b);
      return stunCode(() => parseStun(b));
    };
    expect(bad(() => {}, 19)).toBe('STUN_SHORT');
    expect(bad((b) => (b[0] = 0x40))).toBe('STUN_TYPE');
    expect(bad((b) => (b[4] = 0))).toBe('STUN_COOKIE');
    expect(bad((b) => (b[3]! += 1))).toBe('STUN_LENGTH');
    expect(bad((b) => (b[3]! += 4))).toBe('STUN_LENGTH');
    expect(bad((b) => (b[23] = 0xff))).toBe('STUN_ATTRIBUTE'); // SOFTWARE length past the end
    expect(bad((b) => (b[req.length - 1]! ^= 1))).toBe('STUN_FINGERPRINT');
    // A correct FINGERPRINT followed by another attribute.
    const fpThenMore = new Uint8Array(20 + 8 + 4);
    fpThenMore.set([0, 1, 0, 12, 0x21, 0x12, 0xa4, 0x42]);
    fpThenMore.set([0x80, 0x28, 0, 4], 20);
    new DataView(fpThenMore.buffer).setUint32(24, (crc32(fpThenMore, 20) ^ 0x5354554e) >>> 0);
    fpThenMore.set([0x80, 0x22, 0, 0], 28);
    expect(stunCode(() => parseStun(fpThenMore))).toBe('STUN_FINGERPRINT');
    expect(() => parseStun(fpThenMore)).toThrow(/last attribute/);
    const many = encodeStun({ method: 1, class: 'request', transactionId: new Uint8Array(12), attributes: Array.from({ length: 65 }, () => ({ type: 0x8000, value: new Uint8Array(0) })) });
    expect(stunCode(() => parseStun(many))).toBe('STUN_ATTRIBUTE');
    expect(parseStun(many, { maxAttributes: 100 }).attributes.length).toBe(65);
  });

  it('RFC 3489 messages (no cookie) only with { rfc3489: true }', () => {
    const stund = hex('0001000801821a580d76c2169e02f7732d27b209 0003000400000000'); // captured from stun-client 0.97
    expect(stunCode(() => parseStun(stund))).toBe('STUN_COOKIE');
    expect(looksLikeStun(stund)).toBe(false);
    const m = parseStun(stund, { rfc3489: true });
    expect([m.cookie, toHex(m.transactionId), m.attributes[0]!.type]).toEqual([0x01821a58, '0d76c2169e02f7732d27b209', ATTR.CHANGE_REQUEST]);
    const r = parseStun(buildBindingSuccess(m.transactionId, parseIP('10.1.2.3'), 4242, { cookie: m.cookie, xorMappedAddress: false }), { rfc3489: true });
    expect([r.cookie, formatIP(readMappedAddress(r)!.address), readMappedAddress(r)!.port, readXorMappedAddress(r)]).toEqual([0x01821a58, '10.1.2.3', 4242, null]);
  });

  it('looksLikeStun tells STUN from WireGuard and disco', () => {
    expect(looksLikeStun(buildBindingRequest(new Uint8Array(12)))).toBe(true);
    const wgInit = new Uint8Array(148);
    wgInit[0] = 1;
    expect(looksLikeStun(wgInit)).toBe(false);
    const disco = new Uint8Array(80);
    disco.set([0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac]);
    expect(looksLikeStun(disco)).toBe(false);
    const truncated = RFC5769_IPV4.subarray(0, 40);
    expect(looksLikeStun(truncated)).toBe(false);
  });

  it('success responses round-trip (property): XOR-MAPPED, MAPPED, ORIGIN, OTHER, SOFTWARE, FINGERPRINT', () => {
    const addr = fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 }));
    const port = fc.integer({ min: 0, max: 65535 });
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 12, maxLength: 12 }), addr, port, addr, port, fc.option(fc.string({ maxLength: 40 })), fc.boolean(), (txid, a, p, oa, op, sw, fp) => {
        const b = buildBindingSuccess(txid, a, p, { software: sw ?? undefined, fingerprint: fp, responseOrigin: { address: oa, port: op }, otherAddress: { address: oa, port: op } });
        expect(looksLikeStun(b)).toBe(true);
        const m = parseStun(b);
        expect([m.class, m.method, toHex(m.transactionId), m.fingerprint]).toEqual(['success', BINDING, toHex(txid), fp]);
        for (const r of [readXorMappedAddress(m)!, readMappedAddress(m)!]) expect([toHex(r.address), r.port, r.family]).toEqual([toHex(a), p, a.length === 4 ? 4 : 6]);
        for (const r of [readOtherAddress(m)!, readResponseOrigin(m)!]) expect([toHex(r.address), r.port]).toEqual([toHex(oa), op]);
        expect(readSoftware(m)).toBe(sw);
      }),
    );
  });

  it('requests and error responses round-trip', () => {
    const txid = hex('000102030405060708090a0b');
    const req = parseStun(buildBindingRequest(txid, { software: 'pierce', fingerprint: true }));
    expect([req.class, readSoftware(req), req.fingerprint, req.attributes.length]).toEqual(['request', 'pierce', true, 2]);
    expect(toHex(buildBindingRequest(txid))).toBe('000100002112a442000102030405060708090a0b');
    const e = parseStun(buildBindingError(txid, 420, 'Unknown Attribute', { unknownAttributes: [0x0003, 0x7777, 0x0001] }));
    expect([e.class, readErrorCode(e), readUnknownAttributes(e)]).toEqual(['error', { code: 420, reason: 'Unknown Attribute' }, [3, 0x7777, 1]]);
  });

  it('builders reject bad input with STUN_ENCODE', () => {
    const t = new Uint8Array(12);
    expect(stunCode(() => buildBindingRequest(new Uint8Array(16)))).toBe('STUN_ENCODE');
    expect(stunCode(() => buildBindingSuccess(t, new Uint8Array(5), 1))).toBe('STUN_ENCODE');
    expect(stunCode(() => buildBindingSuccess(t, new Uint8Array(4), 65536))).toBe('STUN_ENCODE');
    expect(stunCode(() => buildBindingRequest(t, { software: 'x'.repeat(128) }))).toBe('STUN_ENCODE');
    expect(stunCode(() => buildBindingError(t, 200, 'OK'))).toBe('STUN_ENCODE');
  });

  it('fuzz: parseStun and the readers throw only StunError', () => {
    const readers = [readXorMappedAddress, readMappedAddress, readOtherAddress, readResponseOrigin, readSoftware, readErrorCode, readUnknownAttributes];
    const check = (b: Uint8Array, rfc3489: boolean) => {
      let m: StunMessage;
      try {
        m = parseStun(b, { rfc3489 });
      } catch (e) {
        expect(e).toBeInstanceOf(StunError);
        return;
      }
      for (const r of readers) {
        try {
          r(m);
        } catch (e) {
          expect(e).toBeInstanceOf(StunError);
        }
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), check), { numRuns: 3000 });
    // Structured: a valid header over random attribute bytes, so the parser gets past the header.
    const attr = fc.record({ type: fc.constantFrom(0x0001, 0x0009, 0x000a, 0x0020, 0x8022, 0x8028, 0x802b, 0x802c, 0x0003), value: fc.uint8Array({ maxLength: 24 }) });
    fc.assert(
      fc.property(fc.array(attr, { maxLength: 6 }), fc.nat({ max: 300 }), fc.integer({ min: 0, max: 255 }), (attrs, at, x) => {
        const b = encodeStun({ method: BINDING, class: 'success', transactionId: new Uint8Array(12), attributes: attrs });
        check(b, false);
        const c = b.slice();
        if (c.length > 0) c[at % c.length]! ^= x;
        check(c, false);
        check(c.subarray(0, at % (c.length + 1)), true);
      }),
      { numRuns: 3000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Server and client on loopback

function udp(type: 'udp4' | 'udp6', host: string): Promise<Socket> {
  const s = createSocket(type);
  return new Promise((resolve) => s.bind(0, host, () => resolve(s)));
}

/** Sends `b` from `s` and collects replies for `ms`. */
async function exchange(s: Socket, b: Uint8Array, port: number, host: string, ms = 150): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  const on = (m: Buffer) => got.push(new Uint8Array(m));
  s.on('message', on);
  s.send(b, port, host);
  await new Promise((r) => setTimeout(r, ms));
  s.off('message', on);
  return got;
}

async function withServer<T>(opts: Parameters<typeof startStunServer>[0], f: (srv: StunServer) => Promise<T>): Promise<T> {
  const srv = await startStunServer({ port: 0, ...opts });
  try {
    return await f(srv);
  } finally {
    await srv.close();
  }
}

describe('server and client on loopback', () => {
  it('our client gets its own source back over IPv4 and IPv6, also via a dual-stack "::" server', async () => {
    await withServer({ host: ['127.0.0.1', '::1'] }, async (srv) => {
      expect(srv.addresses.map((a) => a.family)).toEqual([4, 6]);
      for (const [type, host] of [['udp4', '127.0.0.1'], ['udp6', '::1']] as const) {
        const s = await udp(type, host);
        // A request large enough that SOFTWARE fits in the response (see fitToRequest).
        const r = await stunBinding(s, { host, port: srv.port }, { rto: 50, timeoutMs: 2000, software: 'pierce unit test client, long enough that the answer has SOFTWARE' });
        expect([r.address, r.port, r.xor, r.software]).toEqual([host, s.address().port, true, 'pierce']);
        s.close();
      }
      expect(srv.stats()).toMatchObject({ requests: 2, responses: 2, malformed: 0 });
    });
    await withServer({ host: '::' }, async (srv) => {
      const r = await stunBinding({ host: '127.0.0.1' }, { host: '127.0.0.1', port: srv.port }, 2000);
      expect([r.address, r.family, r.port]).toEqual(['127.0.0.1', 4, r.local.port]);
    });
  });

  it('responses never exceed the request, beyond the mandatory address attribute', async () => {
    const txid = hex('0102030405060708090a0b0c');
    await withServer({ host: ['127.0.0.1', '::1'] }, async (srv) => {
      for (const [type, host, min] of [['udp4', '127.0.0.1', 32], ['udp6', '::1', 44]] as const) {
        const s = await udp(type, host);
        const bare = (await exchange(s, buildBindingRequest(txid), srv.port, host))[0]!;
        expect(bare.length).toBe(min);
        expect(parseStun(bare).attributes.map((a) => a.type)).toEqual([ATTR.XOR_MAPPED_ADDRESS]);
        const req = buildBindingRequest(txid, { software: 'a client of some length', fingerprint: true });
        const resp = (await exchange(s, req, srv.port, host))[0]!;
        expect(resp.length).toBeLessThanOrEqual(req.length);
        const m = parseStun(resp);
        expect(m.fingerprint).toBe(true);
        expect(readXorMappedAddress(m)!.port).toBe(s.address().port);
        s.close();
      }
    });
    await withServer({ host: '127.0.0.1', fitToRequest: false }, async (srv) => {
      const s = await udp('udp4', '127.0.0.1');
      const m = parseStun((await exchange(s, buildBindingRequest(txid), srv.port, '127.0.0.1'))[0]!);
      expect(m.attributes.map((a) => a.type)).toEqual([ATTR.XOR_MAPPED_ADDRESS, ATTR.MAPPED_ADDRESS, ATTR.SOFTWARE, ATTR.FINGERPRINT]);
      s.close();
    });
  });

  it('RFC 3489 requests, CHANGE-REQUEST and unknown attributes', async () => {
    const t = hex('0102030405060708090a0b0c');
    const change = (flags: number, cookie?: number) =>
      encodeStun({ method: BINDING, class: 'request', transactionId: t, cookie, attributes: [{ type: ATTR.CHANGE_REQUEST, value: new Uint8Array([0, 0, 0, flags]) }] });
    await withServer({ host: '127.0.0.1' }, async (srv) => {
      const s = await udp('udp4', '127.0.0.1');
      const legacy = parseStun((await exchange(s, change(0, 0xdeadbeef), srv.port, '127.0.0.1'))[0]!, { rfc3489: true });
      expect([legacy.cookie, readMappedAddress(legacy)!.port, readXorMappedAddress(legacy)]).toEqual([0xdeadbeef, s.address().port, null]);
      expect(await exchange(s, change(6, 0xdeadbeef), srv.port, '127.0.0.1')).toEqual([]);
      expect(readXorMappedAddress(parseStun((await exchange(s, change(0), srv.port, '127.0.0.1'))[0]!))!.port).toBe(s.address().port);
      const eb = (await exchange(s, change(4), srv.port, '127.0.0.1'))[0]!;
      const e = parseStun(eb);
      expect([e.class, readErrorCode(e), readUnknownAttributes(e)]).toEqual(['error', { code: 420, reason: '' }, [ATTR.CHANGE_REQUEST]]);
      expect(eb.length).toBeLessThanOrEqual(1.5 * change(4).length); // no reason phrase: it would not fit
      const odd = encodeStun({ method: BINDING, class: 'request', transactionId: t, attributes: [{ type: 0x7777, value: new Uint8Array(4) }, { type: 0xc001, value: new Uint8Array(0) }] });
      expect(readUnknownAttributes(parseStun((await exchange(s, odd, srv.port, '127.0.0.1'))[0]!))).toEqual([0x7777]);
      await expect(stunBinding(s, { host: '127.0.0.1', port: srv.port }, { rto: 50, timeoutMs: 1000, transactionId: t })).resolves.toMatchObject({ port: s.address().port });
      s.close();
      expect(srv.stats()).toMatchObject({ responses: 3, errorResponses: 2, ignored: 1 });
    });
  });

  it('ignores junk, counts malformed input and keeps answering', async () => {
    await withServer({ host: '127.0.0.1', rateLimit: false }, async (srv) => {
      const s = await udp('udp4', '127.0.0.1');
      const junk = fc.sample(fc.uint8Array({ minLength: 0, maxLength: 120 }), { numRuns: 300, seed: 7 });
      const stunish = fc.sample(fc.uint8Array({ minLength: 4, maxLength: 60 }), { numRuns: 200, seed: 8 }).map((v) => {
        const b = new Uint8Array(20 + ((v.length + 3) & ~3));
        b.set([0, 1, b.length >> 8, (b.length - 20) & 0xff, 0x21, 0x12, 0xa4, 0x42]);
        b.set(v, 20);
        return b;
      });
      const all = [...junk, ...stunish];
      for (let i = 0; i < all.length; i += 50) {
        for (const b of all.slice(i, i + 50)) s.send(b, srv.port, '127.0.0.1');
        await new Promise((r) => setTimeout(r, 20)); // within the default receive buffer
      }
      const ind = encodeStun({ method: BINDING, class: 'indication', transactionId: new Uint8Array(12), attributes: [] });
      expect(await exchange(s, ind, srv.port, '127.0.0.1', 300)).toEqual([]); // indications get no answer
      const r = await stunBinding(s, { host: '127.0.0.1', port: srv.port }, { rto: 50, timeoutMs: 2000 });
      expect(r.port).toBe(s.address().port);
      const st = srv.stats();
      expect(st.malformed).toBeGreaterThan(0);
      expect(st.ignored).toBeGreaterThan(0);
      expect(st.malformed + st.ignored + st.requests).toBe(junk.length + stunish.length + 2);
      s.close();
    });
  });

  it('rate-limits per source with a token bucket', async () => {
    let now = 0;
    await withServer({ host: '127.0.0.1', rateLimit: { perSecond: 1, burst: 2 }, now: () => now }, async (srv) => {
      const s = await udp('udp4', '127.0.0.1');
      const req = buildBindingRequest(new Uint8Array(12));
      for (let i = 0; i < 5; i++) s.send(req, srv.port, '127.0.0.1');
      await new Promise((r) => setTimeout(r, 200));
      expect(srv.stats()).toMatchObject({ requests: 5, responses: 2, rateLimited: 3 });
      now += 1000;
      expect((await exchange(s, req, srv.port, '127.0.0.1')).length).toBe(1);
      expect((await exchange(s, req, srv.port, '127.0.0.1')).length).toBe(0);
      s.close();
    });
  });

  it('client: retransmits with doubling RTO, times out, reports error responses', async () => {
    const srv = await udp('udp4', '127.0.0.1');
    const seen: number[] = [];
    srv.on('message', (m, r) => {
      seen.push(Date.now());
      const q = parseStun(m);
      if (seen.length === 3) srv.send(buildBindingSuccess(q.transactionId, parseIP(r.address), r.port), r.port, r.address);
    });
    const r = await stunBinding({ host: '127.0.0.1' }, { host: '127.0.0.1', port: srv.address().port }, { rto: 40 });
    expect([r.transmits, r.xor]).toEqual([3, true]);
    expect(seen[2]! - seen[0]!).toBeGreaterThanOrEqual(110); // 0, 40, 120 ms
    seen.length = 0;
    const t0 = Date.now();
    const err = await stunBinding({ host: '127.0.0.1' }, { host: '127.0.0.1', port: srv.address().port }, { rto: 20, maxTransmits: 2 }).catch((e) => e);
    expect([err.code, seen.length]).toEqual(['STUN_TIMEOUT', 2]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(20 + 16 * 20 - 5);
    srv.removeAllListeners('message');
    srv.on('message', (m, r) => srv.send(buildBindingError(parseStun(m).transactionId, 401, 'Unauthorized'), r.port, r.address));
    const e2 = await stunBinding({ host: '127.0.0.1' }, { host: '127.0.0.1', port: srv.address().port }, 1000).catch((e) => e);
    expect([e2.code, e2.message]).toEqual(['STUN_ERROR_RESPONSE', '401 Unauthorized']);
    srv.close();
  });
});
