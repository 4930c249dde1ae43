import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { NodePrivate, NodePublic } from '../../src/key/keys.ts';
import { concatBytes, toHex } from '../../src/crypto/bytes.ts';
import { DerpError } from '../../src/derp/errors.ts';
import {
  decodeClientInfo,
  decodeClosePeer,
  decodeForwardPacket,
  decodeHealth,
  decodeNotePreferred,
  decodePeerGone,
  decodePeerPresent,
  decodePing,
  decodePong,
  decodeRecvPacket,
  decodeRestarting,
  decodeSendPacket,
  decodeServerInfo,
  decodeServerKey,
  decodeWatchConns,
  encodeClientInfo,
  encodeClosePeer,
  encodeForwardPacket,
  encodeFrame,
  encodeHealth,
  encodeKeepAlive,
  encodeNotePreferred,
  encodePeerGone,
  encodePeerPresent,
  encodePing,
  encodePong,
  encodeRecvPacket,
  encodeRestarting,
  encodeSendPacket,
  encodeServerInfo,
  encodeServerKey,
  encodeWatchConns,
  FrameReader,
  FrameType,
  KEEPALIVE_MS,
  MAGIC,
  MAX_FRAME_SIZE,
  MAX_PACKET_SIZE,
  PeerGoneReason,
  PeerPresentFlags,
  PROTOCOL_VERSION,
  type DerpFrame,
} from '../../src/derp/frames.ts';

const key = (b: number) => NodePublic.fromRaw(new Uint8Array(32).fill(b));
const K1 = key(0x11);
const K2 = key(0x22);
const hex = (s: string) => Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!.map((x) => parseInt(x, 16)));

function readAll(bytes: Uint8Array): DerpFrame[] {
  return new FrameReader().push(bytes);
}

function one(bytes: Uint8Array): DerpFrame {
  const fs = readAll(bytes);
  expect(fs).toHaveLength(1);
  return fs[0]!;
}

/** Frames in comparable form (payload copied as hex). */
const norm = (fs: DerpFrame[]) => fs.map((f) => [f.type, toHex(f.payload)]);

function expectDerpError(fn: () => unknown, code: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DerpError);
    expect((e as DerpError).code).toBe(code);
    return;
  }
  throw new Error(`expected DerpError ${code}`);
}

describe('constants (derp/derp.go)', () => {
  it('magic is "DERP🔑" and the numbers match Tailscale', () => {
    expect(toHex(MAGIC)).toBe('44455250f09f9491');
    expect(toHex(new TextEncoder().encode('DERP🔑'))).toBe(toHex(MAGIC));
    expect(PROTOCOL_VERSION).toBe(2);
    expect(MAX_PACKET_SIZE).toBe(65536);
    expect(KEEPALIVE_MS).toBe(60_000);
    expect(MAX_FRAME_SIZE).toBe(1 << 20);
    expect(FrameType).toMatchObject({ ServerKey: 1, ClientInfo: 2, ServerInfo: 3, SendPacket: 4, RecvPacket: 5, KeepAlive: 6, NotePreferred: 7 });
    expect(FrameType).toMatchObject({ PeerGone: 8, PeerPresent: 9, ForwardPacket: 0x0a, WatchConns: 0x10, ClosePeer: 0x11 });
    expect(FrameType).toMatchObject({ Ping: 0x12, Pong: 0x13, Health: 0x14, Restarting: 0x15 });
    expect(PeerGoneReason).toEqual({ Disconnected: 0, NotHere: 1, MeshConnBroke: 0xf0 });
    expect(PeerPresentFlags).toEqual({ Regular: 1, MeshPeer: 2, Prober: 4, NotIdeal: 8 });
  });
});

describe('byte-exact encodings', () => {
  it('ServerKey: 01 00000028 | magic | key', () => {
    const f = encodeServerKey(K1);
    expect(toHex(f)).toBe('0100000028' + '44455250f09f9491' + '11'.repeat(32));
  });
  it('ServerKey with extra bytes counts them in the length; the decoder ignores them', () => {
    const f = encodeServerKey(K1, Uint8Array.of(9, 9));
    expect(toHex(f.subarray(0, 5))).toBe('010000002a');
    const d = decodeServerKey(one(f).payload);
    expect(d.key.equals(K1)).toBe(true);
    expect(toHex(d.extra)).toBe('0909');
  });
  it('SendPacket / RecvPacket: type | BE length | key | packet', () => {
    expect(toHex(encodeSendPacket(K2, Uint8Array.of(0xaa, 0xbb)))).toBe('0400000022' + '22'.repeat(32) + 'aabb');
    expect(toHex(encodeRecvPacket(K1, new Uint8Array(0)))).toBe('0500000020' + '11'.repeat(32));
  });
  it('ForwardPacket: src | dst | packet', () => {
    expect(toHex(encodeForwardPacket(K1, K2, Uint8Array.of(7)))).toBe('0a00000041' + '11'.repeat(32) + '22'.repeat(32) + '07');
  });
  it('small frames', () => {
    expect(toHex(encodeKeepAlive())).toBe('0600000000');
    expect(toHex(encodeNotePreferred(true))).toBe('070000000101');
    expect(toHex(encodeNotePreferred(false))).toBe('070000000100');
    expect(toHex(encodePeerGone(K1, PeerGoneReason.NotHere))).toBe('0800000021' + '11'.repeat(32) + '01');
    expect(toHex(encodeWatchConns())).toBe('1000000000');
    expect(toHex(encodeClosePeer(K2))).toBe('1100000020' + '22'.repeat(32));
    expect(toHex(encodePing(hex('0102030405060708')))).toBe('12000000080102030405060708');
    expect(toHex(encodePong(hex('0102030405060708')))).toBe('13000000080102030405060708');
    expect(toHex(encodeHealth('dup'))).toBe('1400000003' + '647570');
    expect(toHex(encodeRestarting(1500, 0x01020304))).toBe('1500000008' + '000005dc' + '01020304');
  });
  it('PeerPresent: the 41-byte form, IPv4 mapped to ::ffff:a.b.c.d', () => {
    const f = encodePeerPresent({ key: K1, ip: Uint8Array.of(192, 0, 2, 1), port: 41641, flags: PeerPresentFlags.Regular | PeerPresentFlags.NotIdeal });
    expect(toHex(f)).toBe('0900000033' + '11'.repeat(32) + '00000000000000000000ffffc0000201' + 'a2a9' + '09');
  });
  it('ClientInfo / ServerInfo carry the sealed bytes after the key', () => {
    const sealed = new Uint8Array(24 + 16 + 3).fill(5);
    expect(toHex(encodeClientInfo(K1, sealed))).toBe('020000004b' + '11'.repeat(32) + '05'.repeat(43));
    expect(toHex(encodeServerInfo(sealed))).toBe('030000002b' + '05'.repeat(43));
  });
  it('refuses to encode oversize packets and bad arguments', () => {
    expectDerpError(() => encodeSendPacket(K1, new Uint8Array(MAX_PACKET_SIZE + 1)), 'DERP_PACKET_TOO_LARGE');
    expectDerpError(() => encodeForwardPacket(K1, K2, new Uint8Array(MAX_PACKET_SIZE + 1)), 'DERP_PACKET_TOO_LARGE');
    expect(encodeSendPacket(K1, new Uint8Array(MAX_PACKET_SIZE)).length).toBe(5 + 32 + MAX_PACKET_SIZE);
    expectDerpError(() => encodePing(new Uint8Array(7)), 'DERP_BAD_FRAME');
    expectDerpError(() => encodeRestarting(-1, 0), 'DERP_BAD_FRAME');
    expectDerpError(() => encodeFrame(256), 'DERP_BAD_FRAME');
  });
});

describe('payload decoders', () => {
  it('round-trip every frame type', () => {
    const pkt = Uint8Array.of(1, 2, 3);
    let d = decodeSendPacket(one(encodeSendPacket(K2, pkt)).payload);
    expect([d.key.equals(K2), toHex(d.packet)]).toEqual([true, '010203']);
    d = decodeRecvPacket(one(encodeRecvPacket(K1, pkt)).payload);
    expect([d.key.equals(K1), toHex(d.packet)]).toEqual([true, '010203']);
    const fp = decodeForwardPacket(one(encodeForwardPacket(K1, K2, pkt)).payload);
    expect([fp.src.equals(K1), fp.dst.equals(K2), toHex(fp.packet)]).toEqual([true, true, '010203']);
    const pg = decodePeerGone(one(encodePeerGone(K2, PeerGoneReason.NotHere)).payload);
    expect([pg.key.equals(K2), pg.reason]).toEqual([true, 1]);
    expect(decodeNotePreferred(one(encodeNotePreferred(true)).payload)).toBe(true);
    expect(decodeClosePeer(one(encodeClosePeer(K1)).payload).equals(K1)).toBe(true);
    expect(toHex(decodePing(one(encodePing(hex('0807060504030201'))).payload))).toBe('0807060504030201');
    expect(toHex(decodePong(one(encodePong(hex('0807060504030201'))).payload))).toBe('0807060504030201');
    expect(decodeHealth(one(encodeHealth('duplicate client ✓')).payload)).toBe('duplicate client ✓');
    expect(decodeHealth(new Uint8Array(0))).toBe('');
    expect(decodeRestarting(one(encodeRestarting(0xffffffff, 7)).payload)).toEqual({ reconnectInMs: 0xffffffff, tryForMs: 7 });
    decodeWatchConns(one(encodeWatchConns()).payload);
    const ci = decodeClientInfo(one(encodeClientInfo(K1, new Uint8Array(50).fill(3))).payload);
    expect([ci.clientKey.equals(K1), ci.nonce.length, ci.box.length]).toEqual([true, 24, 26]);
    const si = decodeServerInfo(one(encodeServerInfo(new Uint8Array(50).fill(3))).payload);
    expect([si.nonce.length, si.box.length]).toEqual([24, 26]);
  });
  it('PeerPresent: full, IPv6, and the shorter forms older servers send', () => {
    const p = decodePeerPresent(one(encodePeerPresent({ key: K1, ip: Uint8Array.of(10, 1, 2, 3), port: 443, flags: 2 })).payload);
    expect([p.key.equals(K1), toHex(p.ip!), p.port, p.flags]).toEqual([true, '0a010203', 443, 2]);
    const v6 = hex('20010db8000000000000000000000001');
    const q = decodePeerPresent(one(encodePeerPresent({ key: K2, ip: v6, port: 1 })).payload);
    expect([toHex(q.ip!), q.port, q.flags]).toEqual([toHex(v6), 1, undefined]);
    expect(decodePeerPresent(K1.raw())).toEqual({ key: K1 });
    expect(decodePeerPresent(concatBytes(K1.raw(), new Uint8Array(17))).ip).toBeUndefined();
    expect(decodePeerPresent(concatBytes(K1.raw(), new Uint8Array(25))).flags).toBe(0);
  });
  it('PeerGone without a reason byte (old servers) means Disconnected', () => {
    expect(decodePeerGone(K1.raw()).reason).toBe(PeerGoneReason.Disconnected);
  });
  it('length checks', () => {
    expectDerpError(() => decodeServerKey(new Uint8Array(39)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodeServerKey(concatBytes(new TextEncoder().encode('DERP🔒'), K1.raw())), 'DERP_BAD_MAGIC');
    expectDerpError(() => decodeClientInfo(new Uint8Array(32 + 24 + 15)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodeServerInfo(new Uint8Array(39)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodeSendPacket(new Uint8Array(31)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodeRecvPacket(new Uint8Array(32 + MAX_PACKET_SIZE + 1)), 'DERP_FRAME_TOO_LARGE');
    expectDerpError(() => decodeForwardPacket(new Uint8Array(63)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodePeerGone(new Uint8Array(31)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodePeerPresent(new Uint8Array(0)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodePing(new Uint8Array(7)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodePing(new Uint8Array(1001)), 'DERP_BAD_FRAME');
    expect(toHex(decodePing(hex('0102030405060708ffff')))).toBe('0102030405060708'); // Go: first 8 bytes
    expectDerpError(() => decodeRestarting(new Uint8Array(7)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodeNotePreferred(new Uint8Array(2)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodeNotePreferred(new Uint8Array(0)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodeClosePeer(new Uint8Array(33)), 'DERP_BAD_FRAME');
    expectDerpError(() => decodeWatchConns(new Uint8Array(1)), 'DERP_BAD_FRAME');
  });
});

/** A sample stream holding every frame type, including empty payloads and an unknown type. */
function sampleStream(): Uint8Array {
  return concatBytes(
    encodeServerKey(K1),
    encodeClientInfo(K2, new Uint8Array(60).fill(1)),
    encodeServerInfo(new Uint8Array(41).fill(2)),
    encodeSendPacket(K1, new Uint8Array(1400).fill(3)),
    encodeRecvPacket(K2, new Uint8Array(0)),
    encodeKeepAlive(),
    encodeNotePreferred(true),
    encodePeerGone(K1),
    encodePeerPresent({ key: K2, ip: Uint8Array.of(1, 2, 3, 4), port: 5, flags: 1 }),
    encodeForwardPacket(K1, K2, new Uint8Array(3000).fill(4)),
    encodeWatchConns(),
    encodeClosePeer(K1),
    encodePing(new Uint8Array(8).fill(5)),
    encodePong(new Uint8Array(8).fill(6)),
    encodeHealth('x'),
    encodeRestarting(1, 2),
    encodeFrame(0x7f, Uint8Array.of(1, 2, 3)),
  );
}

describe('FrameReader', () => {
  it('one byte at a time, all at once and per frame give the same frames', () => {
    const s = sampleStream();
    const whole = readAll(s);
    expect(whole.map((f) => f.type)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0a, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x7f]);
    const r = new FrameReader();
    const bytewise: DerpFrame[] = [];
    for (let i = 0; i < s.length; i++) bytewise.push(...r.push(s.subarray(i, i + 1)));
    expect(norm(bytewise)).toEqual(norm(whole));
    expect(r.buffered).toBe(0);
  });

  it('random splits give the same frames (property)', () => {
    const s = sampleStream();
    const expected = norm(readAll(s));
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: s.length }), { maxLength: 40 }), (cuts) => {
        const points = [...new Set([0, ...cuts, s.length])].sort((a, b) => a - b);
        const r = new FrameReader();
        const got: DerpFrame[] = [];
        for (let i = 0; i + 1 < points.length; i++) got.push(...r.push(s.subarray(points[i]!, points[i + 1]!)));
        expect(norm(got)).toEqual(expected);
        expect(r.buffered).toBe(0);
      }),
    );
  });

  it('random frames survive random splits (property)', () => {
    const frameArb = fc.record({ type: fc.integer({ min: 0, max: 255 }), payload: fc.uint8Array({ maxLength: 300 }) });
    fc.assert(
      fc.property(fc.array(frameArb, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 20 }), (frames, cuts) => {
        const s = concatBytes(...frames.map((f) => encodeFrame(f.type, f.payload)));
        const points = [...new Set([0, ...cuts.map((c) => c % (s.length + 1)), s.length])].sort((a, b) => a - b);
        const r = new FrameReader({ maxFrameSize: 300 });
        const got: DerpFrame[] = [];
        for (let i = 0; i + 1 < points.length; i++) got.push(...r.push(s.subarray(points[i]!, points[i + 1]!)));
        expect(norm(got)).toEqual(frames.map((f) => [f.type, toHex(f.payload)]));
      }),
    );
  });

  it('an empty chunk is fine; buffered counts a partial frame', () => {
    const r = new FrameReader();
    expect(r.push(new Uint8Array(0))).toEqual([]);
    const f = encodeSendPacket(K1, new Uint8Array(100));
    expect(r.push(f.subarray(0, 3))).toEqual([]);
    expect(r.buffered).toBe(3);
    expect(r.push(f.subarray(3, 50))).toEqual([]);
    expect(r.buffered).toBe(50);
    expect(r.push(f.subarray(50))).toHaveLength(1);
    expect(r.buffered).toBe(0);
  });

  it('rejects oversize frames from the header alone, then refuses all input', () => {
    const r = new FrameReader();
    const hdr = hex('09 00100001'); // 1 MiB + 1
    expectDerpError(() => r.push(hdr), 'DERP_FRAME_TOO_LARGE');
    expect(r.error?.code).toBe('DERP_FRAME_TOO_LARGE');
    expectDerpError(() => r.push(encodeKeepAlive()), 'DERP_DEAD');
    // exactly 1 MiB is allowed
    const ok = new FrameReader();
    expect(ok.push(hex('09 00100000'))).toEqual([]);
    expect(ok.buffered).toBe(5);
  });

  it('packet frames over 64 KiB are refused from the header', () => {
    expectDerpError(() => new FrameReader().push(hex('05 00010021')), 'DERP_FRAME_TOO_LARGE');
    expectDerpError(() => new FrameReader().push(hex('04 00010021')), 'DERP_FRAME_TOO_LARGE');
    expectDerpError(() => new FrameReader().push(hex('0a 00010041')), 'DERP_FRAME_TOO_LARGE');
    expect(new FrameReader().push(hex('05 00010020'))).toEqual([]); // exactly 32 + 64 KiB is fine
    expect(new FrameReader().push(hex('0a 00010040'))).toEqual([]);
  });

  it('honours a lower limit', () => {
    const r = new FrameReader({ maxFrameSize: 16 });
    expect(r.push(encodeFrame(0x14, new Uint8Array(16)))).toHaveLength(1);
    expectDerpError(() => r.push(encodeFrame(0x14, new Uint8Array(17))), 'DERP_FRAME_TOO_LARGE');
  });

  it('fuzz: random bytes in random chunks yield frames or a DerpError, nothing else', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), (chunks) => {
        const r = new FrameReader({ maxFrameSize: 4096 });
        for (const c of chunks) {
          try {
            for (const f of r.push(c)) expect(f.payload.length).toBeLessThanOrEqual(4096);
          } catch (e) {
            expect(e).toBeInstanceOf(DerpError);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it('fuzz: mutated valid streams, then every decoder on every frame: only DerpError', () => {
    const s = sampleStream();
    const decoders: Array<(p: Uint8Array) => unknown> = [
      decodeServerKey, decodeClientInfo, decodeServerInfo, decodeSendPacket, decodeRecvPacket, decodeForwardPacket,
      decodePeerGone, decodePeerPresent, decodeClosePeer, decodeWatchConns, decodePing, decodePong, decodeNotePreferred,
      decodeHealth, decodeRestarting,
    ];
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(), (muts, cut) => {
        const m = Uint8Array.from(s);
        for (const [at, v] of muts) m[at % m.length] = v;
        const r = new FrameReader();
        const k = cut % m.length;
        for (const c of [m.subarray(0, k), m.subarray(k)]) {
          let frames: DerpFrame[] = [];
          try {
            frames = r.push(c);
          } catch (e) {
            expect(e).toBeInstanceOf(DerpError);
            return;
          }
          for (const f of frames) {
            for (const d of decoders) {
              try {
                d(f.payload);
              } catch (e) {
                expect(e).toBeInstanceOf(DerpError);
              }
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
