import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { NodePrivate } from '../../src/key/keys.ts';
import { boxOpen, boxSeal } from '../../src/crypto/box.ts';
import { concatBytes, toHex } from '../../src/crypto/bytes.ts';
import type { RandomSource } from '../../src/crypto/backend.ts';
import { DerpError } from '../../src/derp/errors.ts';
import {
  clientInfoJSON,
  openClientInfo,
  openServerInfo,
  sealClientInfo,
  sealServerInfo,
  serverInfoJSON,
} from '../../src/derp/handshake.ts';
import { seededRandom } from '../support/wg-net.ts';
import { thrownCode } from '../support/errors.ts';

const seeded = (seed: number): RandomSource => seededRandom(seed);

const rnd = seeded(7);
const serverPriv = NodePrivate.generate(rnd);
const clientPriv = NodePrivate.generate(rnd);
const otherPriv = NodePrivate.generate(rnd);
const serverPub = serverPriv.public();
const clientPub = clientPriv.public();
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const enc = (s: string) => new TextEncoder().encode(s);

const code = (fn: () => unknown): string => thrownCode(fn, DerpError);

/** A ClientInfo payload carrying arbitrary plaintext, sealed properly. */
function clientInfoWith(plain: string, from = clientPriv, to = serverPub): Uint8Array {
  const nonce = rnd(24);
  return concatBytes(from.public().rawView(), nonce, boxSeal(enc(plain), nonce, to.rawView(), from.rawView()));
}

describe('info JSON matches Go json.Marshal (derp_client.go ClientInfo, derp.go ServerInfo)', () => {
  it('ClientInfo: field order, names, omissions', () => {
    expect(clientInfoJSON({ canAckPings: true })).toBe('{"version":2,"CanAckPings":true}');
    expect(clientInfoJSON({})).toBe('{"version":2,"CanAckPings":false}');
    const mk = new Uint8Array(32).fill(0xab);
    expect(clientInfoJSON({ meshKey: mk, canAckPings: false, isProber: true, appName: 'pierce' })).toBe(
      `{"meshKey":"${'ab'.repeat(32)}","version":2,"CanAckPings":false,"IsProber":true,"AppName":"pierce"}`,
    );
  });
  it('ServerInfo', () => {
    expect(serverInfoJSON({})).toBe('{"version":2}');
    expect(serverInfoJSON({ tokenBucketBytesPerSecond: 1000, tokenBucketBytesBurst: 70000 })).toBe(
      '{"version":2,"TokenBucketBytesPerSecond":1000,"TokenBucketBytesBurst":70000}',
    );
  });
});

describe('ClientInfo', () => {
  it('seal → open round trip; payload is key | nonce | box of the JSON', () => {
    const mk = new Uint8Array(32).fill(1);
    const p = sealClientInfo(clientPriv, serverPub, { canAckPings: true, meshKey: mk, appName: 'x' }, seeded(1));
    expect(toHex(p.subarray(0, 32))).toBe(toHex(clientPub.raw()));
    expect(toHex(p.subarray(32, 56))).toBe(toHex(seeded(1)(24)));
    const plain = boxOpen(p.subarray(56), p.subarray(32, 56), clientPub.rawView(), serverPriv.rawView());
    expect(dec(plain!)).toBe(`{"meshKey":"${'01'.repeat(32)}","version":2,"CanAckPings":true,"AppName":"x"}`);
    const { clientKey, info } = openClientInfo(serverPriv, p);
    expect(clientKey.equals(clientPub)).toBe(true);
    expect(info).toEqual({ version: 2, canAckPings: true, meshKey: mk, appName: 'x' });
  });
  it('sealed to another server key: DERP_BAD_BOX', () => {
    const p = sealClientInfo(clientPriv, otherPriv.public(), { canAckPings: true }, rnd);
    expect(code(() => openClientInfo(serverPriv, p))).toBe('DERP_BAD_BOX');
  });
  it('announcing a key the client does not hold: DERP_BAD_BOX', () => {
    const p = sealClientInfo(clientPriv, serverPub, {}, rnd);
    p.set(otherPriv.public().rawView(), 0);
    expect(code(() => openClientInfo(serverPriv, p))).toBe('DERP_BAD_BOX');
  });
  it('zero (low-order) client key: DERP_BAD_BOX, not a CryptoError', () => {
    const p = sealClientInfo(clientPriv, serverPub, {}, rnd);
    p.fill(0, 0, 32);
    expect(code(() => openClientInfo(serverPriv, p))).toBe('DERP_BAD_BOX');
  });
  it('corrupted box: DERP_BAD_BOX', () => {
    const p = sealClientInfo(clientPriv, serverPub, {}, rnd);
    p[p.length - 1]! ^= 1;
    expect(code(() => openClientInfo(serverPriv, p))).toBe('DERP_BAD_BOX');
  });
  it('size bounds', () => {
    const p = sealClientInfo(clientPriv, serverPub, { appName: 'a'.repeat(300) }, rnd);
    expect(code(() => openClientInfo(serverPriv, p, 200))).toBe('DERP_INFO_TOO_LARGE');
    expect(code(() => openClientInfo(serverPriv, new Uint8Array(32 + 24 + 15)))).toBe('DERP_BAD_FRAME');
    expect(code(() => openClientInfo(serverPriv, clientInfoWith(`{"version":2,"AppName":"${'a'.repeat(300 << 10)}"}`)))).toBe('DERP_INFO_TOO_LARGE');
  });
  it('bad JSON: DERP_BAD_JSON', () => {
    for (const plain of ['', 'nope', '[]', 'null', '2', '{"version":"2"}', '{"version":2.5}', '{"version":2,"CanAckPings":1}',
      '{"version":2,"meshKey":"abc"}', `{"version":2,"meshKey":"${'zz'.repeat(32)}"}`, '{"version":2,"meshKey":5}',
      '{"version":2,"IsProber":"yes"}', '{"version":2,"AppName":7}', '\xff\xfe']) {
      expect([plain, code(() => openClientInfo(serverPriv, clientInfoWith(plain)))]).toEqual([plain, 'DERP_BAD_JSON']);
    }
  });
  it('wrong version: DERP_BAD_VERSION', () => {
    expect(code(() => openClientInfo(serverPriv, sealClientInfo(clientPriv, serverPub, { version: 1 }, rnd)))).toBe('DERP_BAD_VERSION');
    expect(code(() => openClientInfo(serverPriv, clientInfoWith('{}')))).toBe('DERP_BAD_VERSION');
    expect(code(() => openClientInfo(serverPriv, clientInfoWith('{"version":3}')))).toBe('DERP_BAD_VERSION');
  });
  it('accepts names case-insensitively and ignores unknown fields and nulls, as Go does', () => {
    const { info } = openClientInfo(serverPriv, clientInfoWith('{"VERSION":2,"canackpings":true,"isProber":null,"Future":[1,{}]}'));
    expect(info).toEqual({ version: 2, canAckPings: true });
  });
  it('fuzz: random payloads only ever raise DerpError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        try {
          openClientInfo(serverPriv, b);
        } catch (e) {
          expect(e).toBeInstanceOf(DerpError);
        }
        try {
          openServerInfo(clientPriv, serverPub, b);
        } catch (e) {
          expect(e).toBeInstanceOf(DerpError);
        }
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.json(), (j) => {
        try {
          openClientInfo(serverPriv, clientInfoWith(j));
        } catch (e) {
          expect(e).toBeInstanceOf(DerpError);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('ServerInfo', () => {
  it('seal → open round trip', () => {
    const p = sealServerInfo(serverPriv, clientPub, { tokenBucketBytesPerSecond: 5000, tokenBucketBytesBurst: 70000 }, rnd);
    expect(openServerInfo(clientPriv, serverPub, p)).toEqual({ version: 2, tokenBucketBytesPerSecond: 5000, tokenBucketBytesBurst: 70000 });
    expect(openServerInfo(clientPriv, serverPub, sealServerInfo(serverPriv, clientPub, {}, rnd))).toEqual({ version: 2 });
  });
  it('from a server holding another key: DERP_BAD_BOX', () => {
    const p = sealServerInfo(otherPriv, clientPub, {}, rnd);
    expect(code(() => openServerInfo(clientPriv, serverPub, p))).toBe('DERP_BAD_BOX');
  });
  it('bad JSON and negative token bucket values', () => {
    const seal = (s: string) => {
      const nonce = rnd(24);
      return concatBytes(nonce, boxSeal(enc(s), nonce, clientPub.rawView(), serverPriv.rawView()));
    };
    expect(code(() => openServerInfo(clientPriv, serverPub, seal('x')))).toBe('DERP_BAD_JSON');
    expect(code(() => openServerInfo(clientPriv, serverPub, seal('{"TokenBucketBytesPerSecond":-1}')))).toBe('DERP_BAD_JSON');
    expect(code(() => openServerInfo(clientPriv, serverPub, seal('{"TokenBucketBytesBurst":"1"}')))).toBe('DERP_BAD_JSON');
    // Like Go's client, a missing version is accepted.
    expect(openServerInfo(clientPriv, serverPub, seal('{}'))).toEqual({ version: 0 });
  });
});
