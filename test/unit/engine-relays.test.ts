/** The engine's relay set: packets sent while the home relay connection opens wait for it. */
import { describe, expect, it } from 'vitest';
import { RelaySet, RELAY_PENDING_MAX, RELAY_PENDING_MS } from '../../src/engine/relays.ts';
import { NodePrivate } from '../../src/key/keys.ts';
import type { Clock, EngineTransports, RelayHandlers } from '../../src/engine/types.ts';

function setup() {
  let now = 0;
  const clock: Clock = { now: () => now, wall: () => now, setTimer: () => 0, clearTimer: () => {} };
  const sent: number[] = [];
  let handlers: RelayHandlers | undefined;
  let connected = false;
  const transports = {
    relay: (_n: unknown, _k: unknown, h: RelayHandlers) => {
      handlers = h;
      return {
        get connected() {
          return connected;
        },
        send: (_dst: unknown, p: Uint8Array) => (connected ? (sent.push(p[0]!), true) : false),
        notePreferred: () => {},
        close: () => {},
      };
    },
    probe: () => new Promise<number>(() => {}),
  } as unknown as EngineTransports;
  const relays = new RelaySet(NodePrivate.generate(), transports, clock, () => {}, () => {}, () => {});
  relays.setMap({ regions: [{ id: 1, code: 'r1', name: 'r1', nodes: [{ url: 'http://127.0.0.1:1' }] }] });
  const dst = NodePrivate.generate().public();
  return {
    relays,
    dst,
    sent,
    advance: (ms: number) => (now += ms),
    up: () => {
      connected = true;
      handlers!.state(true);
    },
  };
}

describe('relay set', () => {
  it('holds packets sent while the connection opens and sends them, in order, once it is up', () => {
    const t = setup();
    expect(t.relays.send(0, t.dst, Uint8Array.of(1))).toBe(true);
    expect(t.relays.send(1, t.dst, Uint8Array.of(2))).toBe(true);
    expect(t.sent).toEqual([]);
    t.up();
    expect(t.sent).toEqual([1, 2]);
    t.relays.send(0, t.dst, Uint8Array.of(3));
    expect(t.sent).toEqual([1, 2, 3]);
  });

  it(`keeps at most ${RELAY_PENDING_MAX} (the newest) and drops what waited longer than ${RELAY_PENDING_MS} ms`, () => {
    const t = setup();
    t.relays.send(0, t.dst, Uint8Array.of(255));
    t.advance(RELAY_PENDING_MS + 1);
    for (let i = 0; i < RELAY_PENDING_MAX + 10; i++) t.relays.send(0, t.dst, Uint8Array.of(i));
    t.up();
    expect(t.sent).toEqual(Array.from({ length: RELAY_PENDING_MAX }, (_, i) => i + 10));
  });
});
