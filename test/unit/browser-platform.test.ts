/**
 * The browser platform's pieces that need no network: the clock, the relay probe and the
 * control key fetch through the injected `fetch`, and relay() wiring (URL, subprotocol).
 */
import { describe, expect, it } from 'vitest';
import { MachinePrivate, NodePrivate } from '../../src/key/keys.ts';
import type { WebSocketCtor } from '../../src/control/client.ts';
import type { Clock } from '../../src/engine/types.ts';
import { browserClock, browserTransports, probeRelay } from '../../src/browser/platform.ts';
import { isPierceError } from '../../src/errors.ts';

describe('browserClock', () => {
  it('runs due-now timers soon, in order, and cancels them', async () => {
    const order: string[] = [];
    browserClock.setTimer(() => order.push('a'), 0);
    const b = browserClock.setTimer(() => order.push('b'), -5);
    browserClock.setTimer(() => order.push('c'), 0);
    browserClock.clearTimer(b);
    // A due-now timer set from inside one also runs.
    browserClock.setTimer(() => browserClock.setTimer(() => order.push('d'), 0), 0);
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual(['a', 'c', 'd']);
  });

  it('runs delayed timers after their delay and cancels them', async () => {
    const t0 = browserClock.now();
    let at = -1;
    browserClock.setTimer(() => (at = browserClock.now()), 15);
    const x = browserClock.setTimer(() => (at = -2), 5);
    browserClock.clearTimer(x);
    await new Promise((r) => setTimeout(r, 40));
    expect(at - t0).toBeGreaterThanOrEqual(14);
    expect(Math.abs(browserClock.wall() - Date.now())).toBeLessThan(5);
  });

  it('a chain of due-now timers is not clamped to 4 ms steps', async () => {
    const t0 = browserClock.now();
    await new Promise<void>((done) => {
      let n = 0;
      const step = () => (++n === 50 ? done() : browserClock.setTimer(step, 0));
      browserClock.setTimer(step, 0);
    });
    expect(browserClock.now() - t0).toBeLessThan(100);
  });
});

/** A virtual clock that advances 7 ms per `now()` after the first call. */
function steppingClock(): Clock {
  let t = 0;
  return { now: () => (t += 7), wall: () => 0, setTimer: () => 0, clearTimer: () => {} };
}

describe('probeRelay', () => {
  it('sends HEAD {url}/derp/probe twice and times the second', async () => {
    const calls: [string, string | undefined][] = [];
    const fetchFn = (async (url: string, init?: RequestInit) => {
      calls.push([String(url), init?.method]);
      return new Response(null, { status: 200 });
    }) as typeof fetch;
    const ms = await probeRelay({ url: 'https://relay.example:8443' }, { fetch: fetchFn, clock: steppingClock(), timeoutMs: 1000 });
    expect(calls).toEqual([
      ['https://relay.example:8443/derp/probe', 'HEAD'],
      ['https://relay.example:8443/derp/probe', 'HEAD'],
    ]);
    expect(ms).toBe(7);
  });

  it('rejects on an HTTP error and on a network error', async () => {
    const bad = (async () => new Response(null, { status: 503 })) as typeof fetch;
    await expect(probeRelay({ url: 'http://r' }, { fetch: bad, clock: browserClock, timeoutMs: 100 })).rejects.toSatisfy((e) => isPierceError(e, 'RELAY_PROBE_FAILED'));
    const down = (async () => {
      throw new TypeError('Failed to fetch');
    }) as typeof fetch;
    await expect(probeRelay({ url: 'http://r' }, { fetch: down, clock: browserClock, timeoutMs: 100 })).rejects.toThrow('Failed to fetch');
  });
});

describe('browserTransports', () => {
  it('fetches the control key through the injected fetch', async () => {
    const key = MachinePrivate.generate().public();
    const seen: string[] = [];
    const fetchFn = (async (url: URL | string) => {
      seen.push(String(url));
      return Response.json({ publicKey: key.toString() });
    }) as typeof fetch;
    const t = browserTransports({ WebSocket: class {} as unknown as WebSocketCtor, fetch: fetchFn });
    expect(t.udp).toBeUndefined();
    expect((await t.fetchServerKey('https://control.example')).equals(key)).toBe(true);
    expect(seen).toEqual(['https://control.example/key']);
  });

  it('relay() dials ws(s)://host/derp with subprotocol derp and closes cleanly', () => {
    const dials: [string, unknown][] = [];
    let closed = 0;
    class WS {
      binaryType = '';
      protocol = 'derp';
      onopen = null;
      onmessage = null;
      onclose = null;
      onerror = null;
      constructor(url: string, protocols: unknown) {
        dials.push([url, protocols]);
      }
      send() {}
      close() {
        closed++;
      }
    }
    const t = browserTransports({ WebSocket: WS as unknown as WebSocketCtor, fetch: globalThis.fetch });
    const states: boolean[] = [];
    const conn = t.relay({ url: 'https://relay.example' }, NodePrivate.generate(), { packet: () => {}, state: (s) => states.push(s) });
    expect(dials).toEqual([['wss://relay.example/derp', ['derp']]]);
    expect(conn.connected).toBe(false);
    expect(conn.send(NodePrivate.generate().public(), Uint8Array.of(1))).toBe(false);
    conn.close();
    expect(closed).toBe(1);
    expect(states).toEqual([]);
  });
});
