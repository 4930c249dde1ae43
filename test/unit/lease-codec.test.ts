/**
 * The UDP lease codec (src/lease/codec.ts): every frame round-trips, the hello proves the node
 * key (and only for this challenge and context), and arbitrary bytes only ever raise LeaseError.
 * Batch frames round-trip, are checked strictly (truncation, empty entries, nesting, handshake
 * frames inside), and the batcher (src/lease/batcher.ts) sends the first frame of a turn alone
 * and the rest of the turn as Batches, in order.
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
  MAX_BATCH,
  MAX_DATAGRAM,
  decodeFrame,
  decodeFrames,
  encodeBatch,
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
  type LeaseFrame,
  type ReadyInfo,
} from '../../src/lease/codec.ts';
import { frameBatcher } from '../../src/lease/batcher.ts';
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
      encodeBatch([encodeSend(1, '1.2.3.4', 5, new Uint8Array(4)), encodeClose(2), encodeRecv(1, '::1', 9, new Uint8Array(2))]),
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

  it('round-trips Batch: the frames of a message, in order, each as if alone', () => {
    const frames = [
      encodeSend(1, '203.0.113.9', 41641, new Uint8Array([1, 2, 3])),
      encodeRecv(2, '2001:db8::1', 3478, new Uint8Array(0)),
      encodeDenied(1, '10.0.0.1', 22, DenyReason.RateLimited),
      encodeError(9, 'LEASE_BIND_FAILED', 'busy'),
      encodeBind(3, 0),
      encodeBound(3, 4, 5000),
      encodeClose(4),
    ];
    const b = encodeBatch(frames);
    expect(b[0]).toBe(FrameType.Batch);
    expect(b.length).toBe(1 + frames.reduce((n, f) => n + 2 + f.length, 0));
    const want = frames.map((f) => decodeFrame(f) as LeaseFrame);
    expect(decodeFrame(b)).toEqual({ type: 'batch', frames: want });
    expect(decodeFrames(b)).toEqual(want);
    expect(decodeFrames(frames[0]!)).toEqual([want[0]]);
    // A Batch of one is valid (the batcher never makes one, but it means that frame).
    expect(decodeFrames(encodeBatch([frames[6]!]))).toEqual([want[6]]);

    // Up to MAX_BATCH bytes: a datagram filling a Batch exactly fits, one more byte does not.
    const fill = MAX_BATCH - 1 - 2 - encodeSend(1, '::1', 5, new Uint8Array(0)).length;
    const full = encodeBatch([encodeSend(1, '::1', 5, new Uint8Array(fill))]);
    expect(full.length).toBe(MAX_BATCH);
    expect((decodeFrames(full)[0] as { payload: Uint8Array }).payload.length).toBe(fill);
    expectCode(() => encodeBatch([encodeSend(1, '::1', 5, new Uint8Array(fill + 1))]), LeaseError, 'LEASE_BAD_FRAME');

    // Ready says whether the gateway takes Batch frames.
    const info: ReadyInfo = { version: 1, node: { id: 1, name: 'a' }, addresses: [], limits: { sockets: 1, packetsPerSecond: 1, bytesPerSecond: 1, maxDatagram: 1 }, batch: true };
    expect(decodeFrame(encodeReady(info))).toEqual({ type: 'ready', info });
    expect((decodeFrame(encodeReady({ ...info, batch: false })) as { info: ReadyInfo }).info.batch).toBe(false);
    expect('batch' in (decodeFrame(encodeReady({ ...info, batch: undefined })) as { info: ReadyInfo }).info).toBe(false);
    const wrong = new TextEncoder().encode(JSON.stringify({ ...info, batch: 'yes' }));
    expectCode(() => decodeFrame(concatBytes(new Uint8Array([FrameType.Ready]), wrong)), LeaseError, 'LEASE_BAD_JSON');
  });

  it('rejects malformed Batches with LEASE_BAD_FRAME', () => {
    const send = encodeSend(1, '1.2.3.4', 5, new Uint8Array([7, 7]));
    const ok = encodeBatch([send, send]);
    const B = FrameType.Batch;
    const cases: [string, Uint8Array][] = [
      ['no entries', new Uint8Array([B])],
      ['a length cut off', new Uint8Array([B, 0])],
      ['a length with nothing after it', concatBytes(ok, new Uint8Array([0]))],
      ['a zero-length entry', new Uint8Array([B, 0, 0])],
      ['a zero-length entry after a good one', concatBytes(ok, new Uint8Array([0, 0]))],
      ['an entry cut off', ok.subarray(0, ok.length - 1)],
      ['an entry longer than the rest', concatBytes(new Uint8Array([B, 0xff, 0xff]), send)],
      ['a nested Batch', concatBytes(new Uint8Array([B, 0, ok.length]), ok)],
      ['a ServerHello inside', concatBytes(new Uint8Array([B, 0, 66]), encodeServerHello(gw.public(), challenge))],
      ['a ClientHello inside', (() => { const h = encodeClientHello(node, gw.public(), challenge, cryptoRandom); return concatBytes(new Uint8Array([B, h.length >> 8, h.length & 0xff]), h); })()],
      ['a Ready inside', (() => { const r = encodeReady({ version: 1, node: { id: 1, name: 'a' }, addresses: [], limits: { sockets: 1, packetsPerSecond: 1, bytesPerSecond: 1, maxDatagram: 1 } }); return concatBytes(new Uint8Array([B, r.length >> 8, r.length & 0xff]), r); })()],
      ['an unknown type inside', new Uint8Array([B, 0, 1, 0x7f])],
      ['a bad frame inside', concatBytes(new Uint8Array([B, 0, 5]), encodeBind(1, 2).subarray(0, 5), new Uint8Array([0, 2]))],
      ['over MAX_BATCH', concatBytes(new Uint8Array([B]), ...Array.from({ length: 2 }, () => concatBytes(new Uint8Array([0x80, 0]), new Uint8Array(0x8000).fill(FrameType.Close))))],
    ];
    for (const [what, b] of cases) expect([what, thrownCode(() => decodeFrame(b), LeaseError)]).toEqual([what, 'LEASE_BAD_FRAME']);
    // The encoder refuses what the decoder would.
    expectCode(() => encodeBatch([]), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => encodeBatch([new Uint8Array(0)]), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => encodeBatch([ok]), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => encodeBatch([encodeServerHello(gw.public(), challenge)]), LeaseError, 'LEASE_BAD_FRAME');
    expectCode(() => encodeBatch([send, encodeSend(1, '::1', 1, new Uint8Array(MAX_DATAGRAM))]), LeaseError, 'LEASE_BAD_FRAME');
  });

  it('fuzz: Batches of any frames round-trip, and mutated Batches only raise LeaseError', () => {
    const inner = fc.oneof(
      fc.tuple(fc.nat({ max: 0xffffffff }), fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 1, max: 65535 }), fc.uint8Array({ maxLength: 1400 }), fc.boolean()).map(([s, ip, p, d, up]) => (up ? encodeSend : encodeRecv)(s, ip, p, d)),
      fc.tuple(fc.nat({ max: 0xffffffff }), fc.ipV4(), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 1, max: 255 })).map(([s, ip, p, r]) => encodeDenied(s, ip, p, r)),
      fc.tuple(fc.integer({ min: 1, max: 0xffffffff }), fc.integer({ min: 0, max: 65535 })).map(([r, p]) => encodeBind(r, p)),
      fc.nat({ max: 0xffffffff }).map((s) => encodeClose(s)),
      fc.tuple(fc.nat({ max: 0xffffffff }), fc.string({ minLength: 1, maxLength: 10 }), fc.string({ maxLength: 30 })).map(([r, c, m]) => encodeError(r, c, m)),
    );
    fc.assert(
      fc.property(fc.array(inner, { minLength: 1, maxLength: 40 }), (frames) => {
        const b = encodeBatch(frames);
        expect(decodeFrames(b)).toEqual(frames.map((f) => decodeFrame(f)));
      }),
      { numRuns: 300 },
    );
    const ok = (b: Uint8Array) => thrownCode(() => decodeFrame(b), LeaseError);
    fc.assert(
      fc.property(fc.array(inner, { minLength: 1, maxLength: 6 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.integer({ min: -8, max: 8 }), (frames, edits, cut) => {
        const b = encodeBatch(frames);
        for (const [i, v] of edits) b[i % b.length] = v;
        ok(cut < 0 ? b.subarray(0, Math.max(0, b.length + cut)) : concatBytes(b, new Uint8Array(cut)));
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (tail) => {
        ok(concatBytes(new Uint8Array([FrameType.Batch]), tail));
      }),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }), (frames) => {
        thrownCode(() => encodeBatch(frames), LeaseError);
      }),
      { numRuns: 1000 },
    );
  });

  it('batcher: the first frame of a turn goes alone, the rest of the turn as Batches, in order', () => {
    const sent: Uint8Array[] = [];
    let endTurn: (() => void) | null = null;
    const out = frameBatcher(
      (m) => sent.push(m),
      (fn) => {
        expect(endTurn).toBeNull();
        endTurn = fn;
      },
      4096,
    );
    const turn = () => {
      const f = endTurn!;
      endTurn = null;
      f();
    };
    const dgram = (i: number, n = 1000) => encodeRecv(1, '10.0.0.1', 41641, new Uint8Array(n).fill(i));
    // A lone frame: at once, nothing held.
    out.write(dgram(0));
    expect(sent).toHaveLength(1);
    turn();
    expect(sent).toHaveLength(1);
    // Ten frames in one turn: one alone, then Batches of at most 4096 bytes (four frames each),
    // and the last held frame bare.
    sent.length = 0;
    for (let i = 1; i <= 10; i++) out.write(dgram(i));
    expect(out.pendingBytes()).toBeGreaterThan(0);
    turn();
    expect(out.pendingBytes()).toBe(0);
    expect(sent.map((m) => m[0])).toEqual([FrameType.Recv, FrameType.Batch, FrameType.Batch, FrameType.Recv]);
    expect(sent.every((m) => m.length <= 4096)).toBe(true);
    const got = sent.flatMap((m) => decodeFrames(m)).map((f) => (f as { payload: Uint8Array }).payload[0]);
    expect(got).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // Two in a turn: the second goes bare (no Batch of one).
    sent.length = 0;
    out.write(dgram(1));
    out.write(dgram(2));
    turn();
    expect(sent.map((m) => m[0])).toEqual([FrameType.Recv, FrameType.Recv]);
    // A frame too big for a Batch, or one no Batch may carry, goes alone after what is held.
    sent.length = 0;
    out.write(dgram(1));
    out.write(dgram(2));
    out.write(dgram(3));
    out.write(dgram(4, 5000));
    out.write(encodeReady({ version: 1, node: { id: 1, name: 'a' }, addresses: [], limits: { sockets: 1, packetsPerSecond: 1, bytesPerSecond: 1, maxDatagram: 1 } }));
    out.write(dgram(5));
    out.flush(); // e.g. before a close: the held frame leaves now, the turn still ends later
    expect(sent.map((m) => m[0])).toEqual([FrameType.Recv, FrameType.Batch, FrameType.Recv, FrameType.Ready, FrameType.Recv]);
    turn();
    expect(sent).toHaveLength(5);
  });
});
