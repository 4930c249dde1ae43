/**
 * The UDP lease codec (src/lease/codec.ts): every frame round-trips, the hello proves the node
 * key (and only for this challenge and context), and arbitrary bytes only ever raise LeaseError.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { boxSeal } from '../../src/crypto/box.ts';
import { concatBytes } from '../../src/crypto/bytes.ts';
import { cryptoRandom } from '../../src/crypto/backend.ts';
import { NodePrivate } from '../../src/key/keys.ts';
import {
  CHALLENGE_LEN,
  DenyReason,
  FrameType,
  HELLO_CONTEXT,
  LEASE_VERSION,
  LeaseError,
  MAX_DATAGRAM,
  decodeFrame,
  encodeBind,
  encodeBound,
  encodeClientHello,
  encodeClose,
  encodeDenied,
  encodeError,
  encodeReady,
  encodeRecv,
  encodeSend,
  encodeServerHello,
  verifyClientHello,
  type ReadyInfo,
} from '../../src/lease/codec.ts';
import { expectCode, thrownCode } from '../support/errors.ts';

const gw = NodePrivate.generate();
const node = NodePrivate.generate();
const challenge = cryptoRandom(CHALLENGE_LEN);

describe('lease codec', () => {
  it('round-trips the handshake and the hello proves the node key', () => {
    const sh = decodeFrame(encodeServerHello(gw.public(), challenge));
    expect(sh.type).toBe('server-hello');
    if (sh.type !== 'server-hello') return;
    expect(sh.version).toBe(LEASE_VERSION);
    expect(sh.gatewayKey.equals(gw.public())).toBe(true);
    expect(sh.challenge).toEqual(challenge);

    const ch = decodeFrame(encodeClientHello(node, sh.gatewayKey, sh.challenge, cryptoRandom));
    expect(ch.type).toBe('client-hello');
    if (ch.type !== 'client-hello') return;
    expect(ch.nodeKey.equals(node.public())).toBe(true);
    verifyClientHello(ch, gw, challenge);

    // Another challenge, another gateway key, or a claimed key the sender does not hold: refused.
    expectCode(() => verifyClientHello(ch, gw, cryptoRandom(CHALLENGE_LEN)), LeaseError, 'LEASE_BAD_BOX');
    expectCode(() => verifyClientHello(ch, NodePrivate.generate(), challenge), LeaseError, 'LEASE_BAD_BOX');
    expectCode(() => verifyClientHello({ ...ch, nodeKey: NodePrivate.generate().public() }, gw, challenge), LeaseError, 'LEASE_BAD_BOX');
  });

  it('refuses a box of the bare challenge (the domain separation context is required)', () => {
    // A box that a DERP-style sealer would make over the same 32+16 bytes but without the context.
    const nonce = cryptoRandom(24);
    const wrong = concatBytes(cryptoRandom(HELLO_CONTEXT.length), challenge);
    const sealed = concatBytes(nonce, boxSeal(wrong, nonce, gw.public().rawView(), node.rawView()));
    const f = decodeFrame(concatBytes(new Uint8Array([FrameType.ClientHello]), node.public().rawView(), sealed));
    if (f.type !== 'client-hello') throw new Error('not a hello');
    expectCode(() => verifyClientHello(f, gw, challenge), LeaseError, 'LEASE_BAD_BOX');
  });

  it('round-trips Ready, Error, Bind, Bound, Close, Send, Recv and Denied', () => {
    const info: ReadyInfo = {
      version: 1,
      node: { id: 7, name: 'web' },
      addresses: ['192.168.1.5', 'fd00::5'],
      limits: { sockets: 16, packetsPerSecond: 20000, bytesPerSecond: 25_000_000, maxDatagram: MAX_DATAGRAM },
    };
    expect(decodeFrame(encodeReady(info))).toEqual({ type: 'ready', info });
    expect(decodeFrame(encodeError(0, 'LEASE_UNKNOWN_NODE', 'nobody — ünïcode'))).toEqual({ type: 'error', reqId: 0, code: 'LEASE_UNKNOWN_NODE', message: 'nobody — ünïcode' });
    expect(decodeFrame(encodeBind(5, 41641))).toEqual({ type: 'bind', reqId: 5, port: 41641 });
    expect(decodeFrame(encodeBound(5, 0xffffffff, 1))).toEqual({ type: 'bound', reqId: 5, sockId: 0xffffffff, port: 1 });
    expect(decodeFrame(encodeClose(3))).toEqual({ type: 'close', sockId: 3 });
    const payload = new Uint8Array([1, 2, 3]);
    expect(decodeFrame(encodeSend(1, '203.0.113.9', 3478, payload))).toEqual({ type: 'send', sockId: 1, ip: '203.0.113.9', port: 3478, payload });
    expect(decodeFrame(encodeRecv(2, '2001:DB8::1', 41641, payload))).toEqual({ type: 'recv', sockId: 2, ip: '2001:db8::1', port: 41641, payload });
    expect(decodeFrame(encodeSend(1, '::ffff:1.2.3.4', 9, new Uint8Array(0)))).toMatchObject({ ip: '::ffff:1.2.3.4', payload: new Uint8Array(0) });
    expect(decodeFrame(encodeDenied(1, '10.0.0.1', 22, DenyReason.NotAllowed))).toEqual({ type: 'denied', sockId: 1, ip: '10.0.0.1', port: 22, reason: 1 });
    const big = new Uint8Array(MAX_DATAGRAM);
    expect((decodeFrame(encodeSend(1, '::1', 1, big)) as { payload: Uint8Array }).payload.length).toBe(MAX_DATAGRAM);
  });

  it('rejects bad input with stable codes', () => {
    expectCode(() => decodeFrame(new Uint8Array(0)), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => decodeFrame(new Uint8Array([0x7f])), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => decodeFrame(encodeBind(1, 2).subarray(0, 6)), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => decodeFrame(new Uint8Array([FrameType.Bind, 0, 0, 0, 0, 0, 1])), LeaseError, 'LEASE_BAD_FRAME');
    const hello = encodeServerHello(gw.public(), challenge);
    hello[1] = 2;
    expectCode(() => decodeFrame(hello), LeaseError, 'LEASE_VERSION');
    const send = encodeSend(1, '1.2.3.4', 5, new Uint8Array(1));
    send[5] = 5; // family
    expectCode(() => decodeFrame(send), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => decodeFrame(encodeSend(1, '1.2.3.4', 0, new Uint8Array(1))), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => decodeFrame(new Uint8Array([FrameType.Ready, 0x7b])), LeaseError, 'LEASE_BAD_JSON');
    expectCode(() => decodeFrame(concatBytes(new Uint8Array([FrameType.Ready]), new TextEncoder().encode('{"version":1}'))), LeaseError, 'LEASE_BAD_JSON');
    expectCode(() => decodeFrame(concatBytes(new Uint8Array([FrameType.Ready]), new TextEncoder().encode('{"version":9}'))), LeaseError, 'LEASE_VERSION');
    expectCode(() => decodeFrame(new Uint8Array([FrameType.Error, 0, 0, 0, 0, 0])), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => encodeSend(1, 'example.com', 5, new Uint8Array(1)), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => encodeSend(1, '1.2.3.4', 5, new Uint8Array(MAX_DATAGRAM + 1)), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => encodeBind(0, 5), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => encodeBind(1, 70000), LeaseError, 'LEASE_BAD_FRAME');
  });

  it('fuzz: arbitrary bytes and mutated frames only raise LeaseError', () => {
    const valid = [
      encodeServerHello(gw.public(), challenge),
      encodeClientHello(node, gw.public(), challenge, cryptoRandom),
      encodeReady({ version: 1, node: { id: 1, name: 'a' }, addresses: ['10.0.0.1'], limits: { sockets: 1, packetsPerSecond: 1, bytesPerSecond: 1, maxDatagram: 1 } }),
      encodeError(3, 'X', 'y'),
      encodeBind(1, 0),
      encodeBound(1, 2, 3),
      encodeClose(4),
      encodeSend(1, '1.2.3.4', 5, new Uint8Array(20)),
      encodeRecv(1, 'fe80::1', 5, new Uint8Array(3)),
      encodeDenied(1, '::', 5, 2),
    ];
    const ok = (b: Uint8Array) => thrownCode(() => decodeFrame(b), LeaseError);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        ok(b);
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.integer({ min: -8, max: 8 }), (frame, edits, cut) => {
        const b = Uint8Array.from(frame);
        for (const [i, v] of edits) b[i % b.length] = v;
        ok(cut < 0 ? b.subarray(0, Math.max(0, b.length + cut)) : concatBytes(b, new Uint8Array(cut)));
      }),
      { numRuns: 3000 },
    );
    // Round trips of arbitrary datagrams and addresses.
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 1, max: 65535 }), fc.uint8Array({ maxLength: 1500 }), fc.nat({ max: 0xffffffff }), (ip, port, payload, sock) => {
        const f = decodeFrame(encodeSend(sock, ip, port, payload));
        expect(f).toMatchObject({ type: 'send', sockId: sock, port, payload });
        const back = decodeFrame(encodeRecv(sock, (f as { ip: string }).ip, port, payload));
        expect((back as { ip: string }).ip).toBe((f as { ip: string }).ip);
      }),
      { numRuns: 500 },
    );
  });
});
