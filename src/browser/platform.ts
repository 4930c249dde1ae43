/**
 * The engine's platform in a browser (Web Worker or page): the clock, `WebSocket` for control
 * and DERP, and `fetch` for the control key and relay latency probes. No UDP yet: the engine is
 * relay-only here (leased UDP from a gateway comes later, DESIGN "Transports").
 *
 * Browser-safe: no Node imports, no Buffer. The WebSocket constructor and fetch are injected, so
 * the same code runs under Node with `ws` and the global fetch (test/interop/browser-platform).
 */
import { cryptoRandom, type RandomSource } from '../crypto/backend.ts';
import { fetchServerKey, type WebSocketCtor } from '../control/client.ts';
import type { RelayNode } from '../control/messages.ts';
import { PierceError } from '../errors.ts';
import type { Clock, EngineTransports, RelayConn } from '../engine/types.ts';
import { DerpWsClient, derpWsUrl, type DerpWsEvents } from './derp-ws.ts';

interface Soon {
  fn: () => void;
  cancelled: boolean;
}

let soonQueue: Soon[] = [];
let soonPort: MessagePort | null | undefined;

/**
 * Runs `t` as a task of its own right after the current work (and pending I/O events), like
 * Node's setImmediate. Browsers clamp chained `setTimeout(0)` to 4 ms (HTML timers, nesting
 * level > 5), which would add 4 ms to every "due now" engine deadline (e.g. an owed ACK); a
 * MessageChannel message is not clamped. Falls back to setTimeout where there is none.
 */
function runSoon(t: Soon): void {
  if (soonPort === undefined) {
    if (typeof MessageChannel === 'undefined') soonPort = null;
    else {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => {
        const batch = soonQueue;
        soonQueue = [];
        for (const x of batch) if (!x.cancelled) x.fn();
      };
      // Under Node (tests), an open port would keep the process alive.
      (ch.port1 as { unref?: () => void }).unref?.();
      (ch.port2 as { unref?: () => void }).unref?.();
      soonPort = ch.port2;
    }
  }
  if (soonPort === null) {
    setTimeout(() => t.cancelled || t.fn(), 0);
    return;
  }
  soonQueue.push(t);
  if (soonQueue.length === 1) soonPort.postMessage(null);
}

type BrowserTimer = { t?: ReturnType<typeof setTimeout>; soon?: Soon };

/** performance.now for monotonic time, Date.now for the wall clock, setTimeout for timers. */
export const browserClock: Clock = {
  now: () => performance.now(),
  wall: () => Date.now(),
  setTimer(fn, ms) {
    const h: BrowserTimer = {};
    if (ms <= 0) {
      h.soon = { fn, cancelled: false };
      runSoon(h.soon);
    } else h.t = setTimeout(fn, Math.ceil(ms));
    return h;
  },
  clearTimer(h) {
    const x = h as BrowserTimer | undefined;
    if (x?.t !== undefined) clearTimeout(x.t);
    if (x?.soon) x.soon.cancelled = true;
  },
};

export interface BrowserTransportOptions {
  /** `globalThis.WebSocket` in a browser; `ws`'s WebSocket in Node tests. */
  WebSocket: WebSocketCtor;
  /** `globalThis.fetch` (called unbound, so a bare `fetch` reference is fine). */
  fetch: typeof fetch;
  clock?: Clock;
  random?: RandomSource;
  /** Relay probe timeout per request (default 3 s). */
  probeTimeoutMs?: number;
  /** Extra DERP link events (diagnostics: errors, reconnects, PeerGone). */
  relayEvents?: (node: RelayNode) => Partial<DerpWsEvents>;
}

/** The WebSocket DERP URL (ws(s)://host/derp) for a relay base URL from the relay map. */
export function relayWsUrl(node: RelayNode): string {
  return derpWsUrl(new URL('/derp', node.url).toString());
}

/** Relay-only transports for the engine in a browser. */
export function browserTransports(o: BrowserTransportOptions): EngineTransports {
  const clock = o.clock ?? browserClock;
  const random = o.random ?? cryptoRandom;
  const fetchFn = o.fetch;
  return {
    WebSocket: o.WebSocket,
    fetchServerKey: (controlUrl) => fetchServerKey(controlUrl, fetchFn),
    relay(node, key, h): RelayConn {
      const extra = o.relayEvents?.(node) ?? {};
      const link = new DerpWsClient({
        url: relayWsUrl(node),
        privateKey: key,
        WebSocket: o.WebSocket,
        clock,
        random,
        events: {
          ...extra,
          packet: (src, data) => h.packet(src, data),
          state: (up) => {
            extra.state?.(up);
            h.state(up);
          },
        },
      });
      return {
        get connected() {
          return link.connected;
        },
        send: (dst, packet) => link.sendPacket(dst, packet),
        notePreferred: (home) => link.notePreferred(home),
        close: () => link.close(),
      };
    },
    probe: (node) => probeRelay(node, { fetch: fetchFn, clock, timeoutMs: o.probeTimeoutMs ?? 3000 }),
  };
}

/**
 * Round trip of `HEAD {url}/derp/probe` in ms: a first request opens the connection (TLS
 * included), the second is timed (as Tailscale's browser netcheck does). Rejects on a network
 * error, a timeout or a non-2xx answer.
 */
export async function probeRelay(node: RelayNode, o: { fetch: typeof fetch; clock: Clock; timeoutMs: number }): Promise<number> {
  const url = new URL('/derp/probe', node.url).toString();
  const f = o.fetch;
  const once = async (): Promise<void> => {
    const r = await f(url, { method: 'HEAD', cache: 'no-store', signal: AbortSignal.timeout(o.timeoutMs) });
    if (!r.ok) throw new PierceError('RELAY_PROBE_FAILED', `HEAD ${url}: HTTP ${r.status}`);
  };
  await once();
  const t0 = o.clock.now();
  await once();
  return o.clock.now() - t0;
}
