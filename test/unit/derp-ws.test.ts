/**
 * The browser's DERP-over-WebSocket link (src/browser/derp-ws.ts) against a fake WebSocket and
 * a virtual clock: stream reassembly across and within messages, the reconnect backoff
 * schedule, and bad input giving typed errors without throwing out of WebSocket callbacks.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { NodePrivate, NodePublic } from '../../src/key/keys.ts';
import type { RandomSource } from '../../src/crypto/backend.ts';
import { concatBytes } from '../../src/crypto/bytes.ts';
import type { WebSocketCtor, WebSocketLike } from '../../src/control/client.ts';
import type { Clock } from '../../src/engine/types.ts';
import { DerpError } from '../../src/derp/errors.ts';
import {
  decodeNotePreferred,
  decodeSendPacket,
  encodeFrame,
  encodeKeepAlive,
  encodePeerGone,
  encodePing,
  encodeRecvPacket,
  encodeServerInfo,
  encodeServerKey,
  FrameReader,
  FrameType,
  PeerGoneReason,
  type DerpFrame,
} from '../../src/derp/frames.ts';
import { openClientInfo, sealServerInfo } from '../../src/derp/handshake.ts';
import { DerpWsClient, derpWsUrl, type DerpWsEvents, type DerpWsOptions } from '../../src/browser/derp-ws.ts';
import { relayWsUrl } from '../../src/browser/platform.ts';
import { seededRandom } from '../support/wg-net.ts';

// ---- virtual clock ----

class FakeClock implements Clock {
  t = 1000;
  private seq = 0;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  now = (): number => this.t;
  wall = (): number => 1_700_000_000_000 + this.t;
  setTimer = (fn: () => void, ms: number): unknown => {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  };
  clearTimer = (h: unknown): void => void this.timers.delete(h as number);
  /** Runs due timers in time order up to now + ms. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }
}

// ---- fake WebSocket ----

class FakeWebSocket implements WebSocketLike {
  static all: FakeWebSocket[] = [];
  binaryType = 'blob';
  readonly protocol = 'derp';
  readyState = 0;
  bufferedAmount = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  readonly sent: Uint8Array[] = [];
  closedByClient = false;
  constructor(
    readonly url: string,
    readonly protocols: string | string[],
  ) {
    FakeWebSocket.all.push(this);
  }
  send(data: Uint8Array): void {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    this.sent.push(Uint8Array.from(data));
  }
  close(): void {
    this.closedByClient = true;
    this.readyState = 3;
  }
  // server side
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  deliver(data: unknown): void {
    this.onmessage?.({ data });
  }
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
  /** Frames the client sent. */
  frames(): DerpFrame[] {
    const r = new FrameReader();
    return r.push(concatBytes(...this.sent));
  }
}

const Ctor = FakeWebSocket as unknown as WebSocketCtor;

/** Delivers bytes as an ArrayBuffer (what browsers hand over with binaryType 'arraybuffer'). */
function ab(b: Uint8Array): ArrayBuffer {
  return Uint8Array.from(b).buffer;
}

const serverPriv = NodePrivate.generate(seededRandom(7));
const clientPriv = NodePrivate.generate(seededRandom(8));
const peer = NodePrivate.generate(seededRandom(9)).public();

/** The server's whole greeting: ServerKey then ServerInfo sealed to the client (needs only its key). */
function greeting(random: RandomSource = seededRandom(3), priv = serverPriv): Uint8Array {
  return concatBytes(encodeServerKey(serverPriv.public()), encodeServerInfo(sealServerInfo(priv, clientPriv.public(), { version: 2 }, random)));
}

interface Harness {
  clock: FakeClock;
  link: DerpWsClient;
  log: { packets: [string, Uint8Array][]; states: boolean[]; errors: DerpError[]; malformed: [string, number][]; delays: number[]; gone: [string, number][] };
}

function start(o: Partial<DerpWsOptions> = {}): Harness {
  FakeWebSocket.all = [];
  const clock = new FakeClock();
  const log: Harness['log'] = { packets: [], states: [], errors: [], malformed: [], delays: [], gone: [] };
  const events: Partial<DerpWsEvents> = {
    packet: (src, d) => log.packets.push([src.toString(), Uint8Array.from(d)]),
    state: (up) => log.states.push(up),
    error: (e) => log.errors.push(e),
    malformed: (e, t) => log.malformed.push([e.code, t]),
    reconnecting: (d) => log.delays.push(d),
    peerGone: (k, r) => log.gone.push([k.toString(), r]),
  };
  const link = new DerpWsClient({ url: 'http://relay.test:8443/derp', privateKey: clientPriv, WebSocket: Ctor, clock, random: seededRandom(11), events, ...o });
  return { clock, link, log };
}

function last(): FakeWebSocket {
  const ws = FakeWebSocket.all.at(-1);
  if (!ws) throw new Error('no socket');
  return ws;
}

/** Opens the latest socket and completes the handshake. */
function connect(h: Harness): FakeWebSocket {
  const ws = last();
  ws.open();
  ws.deliver(ab(greeting()));
  expect(h.link.connected).toBe(true);
  return ws;
}

describe('DerpWsClient: dialling and the handshake', () => {
  it('dials ws://…/derp with subprotocol derp and binary messages, and completes the v2 handshake', () => {
    const h = start();
    const ws = last();
    expect(ws.url).toBe('ws://relay.test:8443/derp');
    expect(ws.protocols).toEqual(['derp']);
    expect(ws.binaryType).toBe('arraybuffer');
    ws.open();
    expect(ws.sent).toHaveLength(0); // waits for ServerKey
    ws.deliver(ab(encodeServerKey(serverPriv.public())));
    const ci = ws.frames()[0]!;
    expect(ci.type).toBe(FrameType.ClientInfo);
    const { clientKey, info } = openClientInfo(serverPriv, ci.payload);
    expect(clientKey.equals(clientPriv.public())).toBe(true);
    expect(info).toMatchObject({ version: 2, canAckPings: true });
    expect(h.link.connected).toBe(false);
    ws.deliver(ab(encodeServerInfo(sealServerInfo(serverPriv, clientPriv.public(), { version: 2 }, seededRandom(1)))));
    expect(h.link.connected).toBe(true);
    expect(h.log.states).toEqual([true]);
  });

  it('sends packets as one SendPacket frame per message, answers Ping with Pong, reports PeerGone, survives KeepAlive', () => {
    const h = start();
    const ws = connect(h);
    ws.sent.length = 0;
    expect(h.link.sendPacket(peer, Uint8Array.of(1, 2, 3))).toBe(true);
    expect(ws.sent).toHaveLength(1);
    const sp = decodeSendPacket(ws.frames()[0]!.payload);
    expect(sp.key.equals(peer)).toBe(true);
    expect([...sp.packet]).toEqual([1, 2, 3]);
    ws.sent.length = 0;
    ws.deliver(ab(concatBytes(encodeKeepAlive(), encodePing(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)), encodePeerGone(peer, PeerGoneReason.NotHere))));
    const f = ws.frames();
    expect(f.map((x) => x.type)).toEqual([FrameType.Pong]);
    expect([...f[0]!.payload]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(h.log.gone).toEqual([[peer.toString(), PeerGoneReason.NotHere]]);
    expect(h.link.connected).toBe(true);
  });

  it('refuses sends (false, no throw) while not connected, over-size, or backed up', () => {
    const h = start();
    expect(h.link.sendPacket(peer, Uint8Array.of(1))).toBe(false);
    const ws = connect(h);
    expect(h.link.sendPacket(peer, new Uint8Array(70_000))).toBe(false);
    ws.bufferedAmount = 5 << 20;
    expect(h.link.sendPacket(peer, Uint8Array.of(1))).toBe(false);
    ws.bufferedAmount = 0;
    expect(h.link.sendPacket(peer, Uint8Array.of(1))).toBe(true);
    expect(h.link.stats.sendsDropped).toBe(3);
  });

  it('NotePreferred is sent when connected and again after every reconnect', () => {
    const h = start();
    h.link.notePreferred(true); // before the handshake: remembered
    let ws = connect(h);
    const np = (s: FakeWebSocket) => s.frames().filter((f) => f.type === FrameType.NotePreferred).map((f) => decodeNotePreferred(f.payload));
    expect(np(ws)).toEqual([true]);
    ws.drop();
    h.clock.advance(5000);
    ws = connect(h);
    expect(np(ws)).toEqual([true]);
  });
});

describe('DerpWsClient: frames split across and packed into WebSocket messages', () => {
  /** The whole server stream: greeting, packets, a keepalive and a ping, cut at `cuts`. */
  function stream(packets: Uint8Array[]): Uint8Array {
    const parts = [greeting()];
    packets.forEach((p, i) => {
      parts.push(encodeRecvPacket(peer, p));
      if (i % 3 === 1) parts.push(encodeKeepAlive());
      if (i % 4 === 2) parts.push(encodePing(Uint8Array.of(i, 0, 0, 0, 0, 0, 0, 9)));
    });
    return concatBytes(...parts);
  }

  function feed(ws: FakeWebSocket, bytes: Uint8Array, cuts: number[], asView: boolean): void {
    const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
    let prev = 0;
    for (const c of [...points, bytes.length]) {
      if (c <= prev && c !== bytes.length) continue;
      const piece = bytes.subarray(prev, c);
      prev = c;
      if (asView) {
        // A view at an offset inside a larger buffer (e.g. a Node Buffer from a pool).
        const big = new Uint8Array(piece.length + 13);
        big.set(piece, 7);
        ws.deliver(big.subarray(7, 7 + piece.length));
      } else ws.deliver(ab(piece));
    }
  }

  it('delivers every packet in order whatever the message boundaries (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 0, maxLength: 300 }), { minLength: 0, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        fc.boolean(),
        (packets, cuts, asView) => {
          const h = start();
          const ws = last();
          ws.open();
          feed(ws, stream(packets), cuts, asView);
          expect(h.link.connected).toBe(true);
          expect(h.log.errors).toEqual([]);
          expect(h.log.packets.map(([k]) => k).every((k) => k === peer.toString())).toBe(true);
          expect(h.log.packets.map(([, d]) => [...d])).toEqual(packets.map((p) => [...p]));
          const pongs = ws.frames().filter((f) => f.type === FrameType.Pong);
          expect(pongs).toHaveLength(packets.filter((_, i) => i % 4 === 2).length);
          h.link.close();
        },
      ),
      { numRuns: 150 },
    );
  });

  it('one byte per message, and everything in one message', () => {
    const packets = [Uint8Array.of(1), new Uint8Array(1200).fill(7), new Uint8Array(0), Uint8Array.of(9, 9)];
    const bytes = stream(packets);
    for (const cuts of [Array.from({ length: bytes.length }, (_, i) => i), []]) {
      const h = start();
      const ws = last();
      ws.open();
      feed(ws, bytes, cuts, false);
      expect(h.log.packets.map(([, d]) => d.length)).toEqual([1, 1200, 0, 2]);
    }
  });
});

describe('DerpWsClient: reconnect with exponential backoff (250 ms → 5 s)', () => {
  /** Jitter factor exactly 1: the first 4 bytes read as u = 0.5. */
  const noJitter: RandomSource = (n) => {
    const b = new Uint8Array(n);
    b[0] = 0x80;
    return b;
  };

  it('doubles from 250 ms to a 5 s cap while the relay is down, and resets after a successful handshake', () => {
    const h = start({ random: noJitter });
    const expected = [250, 500, 1000, 2000, 4000, 5000, 5000];
    for (const d of expected) {
      const before = FakeWebSocket.all.length;
      last().drop(); // refused before opening
      h.clock.advance(d - 1);
      expect(FakeWebSocket.all.length).toBe(before);
      h.clock.advance(1);
      expect(FakeWebSocket.all.length).toBe(before + 1);
    }
    expect(h.log.delays).toEqual(expected);
    expect(h.log.errors.every((e) => e instanceof DerpError && e.code === 'DERP_CLOSED')).toBe(true);
    connect(h);
    expect(h.log.states).toEqual([true]);
    last().drop();
    expect(h.log.states).toEqual([true, false]);
    expect(h.link.connected).toBe(false);
    expect(h.log.delays.at(-1)).toBe(250);
    h.clock.advance(250);
    connect(h);
    expect(h.link.stats.connects).toBe(2);
  });

  it('jittered delays stay within [d/2, min(1.5 d, 5 s)]', () => {
    const h = start({ random: seededRandom(5) });
    for (let i = 0; i < 12; i++) {
      last().drop();
      h.clock.advance(10_000);
    }
    h.log.delays.forEach((d, i) => {
      const base = Math.min(5000, 250 * 2 ** i);
      expect(d).toBeGreaterThanOrEqual(Math.floor(base / 2));
      expect(d).toBeLessThanOrEqual(Math.min(5000, Math.ceil(base * 1.5)));
    });
  });

  it('gives up on a socket that never opens after 10 s, and on a silent relay after the handshake timeout', () => {
    const h = start({ random: noJitter });
    h.clock.advance(9_999);
    expect(h.log.errors).toEqual([]);
    h.clock.advance(1);
    expect(h.log.errors.map((e) => e.code)).toEqual(['DERP_HANDSHAKE_TIMEOUT']);
    expect(FakeWebSocket.all[0]!.closedByClient).toBe(true);
    h.clock.advance(250);
    last().open(); // but says nothing
    h.clock.advance(10_000);
    expect(h.log.errors.map((e) => e.code)).toEqual(['DERP_HANDSHAKE_TIMEOUT', 'DERP_HANDSHAKE_TIMEOUT']);
    expect(FakeWebSocket.all).toHaveLength(2);
    h.clock.advance(500);
    expect(FakeWebSocket.all).toHaveLength(3);
  });

  it('drops a connection silent for 120 s (the server keeps it alive every 60 s)', () => {
    const h = start();
    const ws = connect(h);
    h.clock.advance(100_000);
    ws.deliver(ab(encodeKeepAlive()));
    h.clock.advance(100_000);
    expect(h.link.connected).toBe(true);
    h.clock.advance(20_000);
    expect(h.link.connected).toBe(false);
    expect(h.log.errors.map((e) => e.code)).toEqual(['DERP_TIMEOUT']);
    expect(ws.closedByClient).toBe(true);
  });

  it('close() stops everything: no timers, no redial, no events', () => {
    const h = start();
    connect(h);
    h.link.close();
    expect(h.log.states).toEqual([true, false]);
    expect(h.clock.timers.size).toBe(0);
    expect(last().closedByClient).toBe(true);
    last().drop();
    h.clock.advance(60_000);
    expect(FakeWebSocket.all).toHaveLength(1);
    expect(h.log.errors).toEqual([]);
  });
});

describe('DerpWsClient: bad input gives typed errors, never a throw', () => {
  function codeAfter(deliver: (ws: FakeWebSocket) => void, handshake = true): { h: Harness; ws: FakeWebSocket } {
    const h = start();
    const ws = handshake ? connect(h) : (last().open(), last());
    expect(() => deliver(ws)).not.toThrow();
    return { h, ws };
  }

  it.each([
    ['a frame announcing 2 MiB', (ws: FakeWebSocket) => ws.deliver(ab(Uint8Array.of(FrameType.RecvPacket, 0, 0x20, 0, 0))), true, 'DERP_FRAME_TOO_LARGE'],
    ['a text message', (ws: FakeWebSocket) => ws.deliver('hello'), true, 'DERP_BAD_FRAME'],
    ['a packet before the ServerKey', (ws: FakeWebSocket) => ws.deliver(ab(encodeRecvPacket(peer, Uint8Array.of(1)))), false, 'DERP_UNEXPECTED_FRAME'],
    ['a ServerKey without the magic', (ws: FakeWebSocket) => ws.deliver(ab(encodeFrame(FrameType.ServerKey, new Uint8Array(40)))), false, 'DERP_BAD_MAGIC'],
    ['a ServerInfo sealed by another key', (ws: FakeWebSocket) => ws.deliver(ab(greeting(seededRandom(1), NodePrivate.generate(seededRandom(77))))), false, 'DERP_BAD_BOX'],
    ['the stream ending inside a frame', (ws: FakeWebSocket) => (ws.deliver(ab(encodeRecvPacket(peer, new Uint8Array(50)).subarray(0, 20))), ws.drop()), true, 'DERP_CLOSED'],
  ] as const)('%s: error %s, socket closed, redial scheduled', (_name, deliver, handshake, code) => {
    const { h, ws } = codeAfter(deliver, handshake);
    expect(h.log.errors.map((e) => e.code)).toEqual([code]);
    expect(h.log.errors[0]).toBeInstanceOf(DerpError);
    expect(h.link.connected).toBe(false);
    expect(ws.closedByClient || ws.readyState === 3).toBe(true);
    expect(h.log.delays).toHaveLength(1);
    // …and the link recovers.
    h.clock.advance(5000);
    connect(h);
    expect(h.link.sendPacket(peer, Uint8Array.of(1))).toBe(true);
  });

  it('a malformed frame after the handshake is dropped; the connection stays', () => {
    const { h, ws } = codeAfter((ws) => ws.deliver(ab(concatBytes(encodeFrame(FrameType.RecvPacket, new Uint8Array(10)), encodeRecvPacket(peer, Uint8Array.of(5))))));
    expect(h.log.malformed).toEqual([['DERP_BAD_FRAME', FrameType.RecvPacket]]);
    expect(h.log.errors).toEqual([]);
    expect(h.log.packets.map(([, d]) => [...d])).toEqual([[5]]);
    expect(h.link.connected).toBe(true);
    void ws;
  });

  it('random bytes after the handshake never throw and only yield DerpErrors (fast-check)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (msgs) => {
        const h = start();
        const ws = connect(h);
        for (const m of msgs) expect(() => ws.deliver(ab(m))).not.toThrow();
        for (const e of h.log.errors) expect(e).toBeInstanceOf(DerpError);
        h.link.close();
      }),
      { numRuns: 150 },
    );
  });
});

describe('relay URLs', () => {
  it('maps http(s) relay URLs to ws(s)://host/derp', () => {
    expect(relayWsUrl({ url: 'http://127.0.0.1:8443' })).toBe('ws://127.0.0.1:8443/derp');
    expect(relayWsUrl({ url: 'https://relay.example.com' })).toBe('wss://relay.example.com/derp');
    expect(derpWsUrl('wss://r.example/derp')).toBe('wss://r.example/derp');
    expect(derpWsUrl('https://r.example')).toBe('wss://r.example/derp');
    expect(() => derpWsUrl('ftp://r.example')).toThrow(DerpError);
  });
});

void NodePublic;
