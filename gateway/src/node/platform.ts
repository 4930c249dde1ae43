/**
 * The engine's platform in Node: the clock, `ws` for control, DERP over TCP (Upgrade: DERP)
 * for relays, and `fetch` for relay latency probes.
 */
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import type { Clock, EngineTransports, RelayConn } from '../../../src/engine/types.ts';
import { fetchServerKey, type WebSocketCtor } from '../../../src/control/client.ts';
import type { RelayNode } from '../../../src/control/messages.ts';
import { DerpLink } from '../relay/link.ts';

type NodeTimer = { t?: NodeJS.Timeout; i?: NodeJS.Immediate };

export const nodeClock: Clock = {
  now: () => performance.now(),
  wall: () => Date.now(),
  setTimer(fn, ms) {
    const h: NodeTimer = {};
    // Due now: run after the current batch of I/O, not a millisecond later.
    if (ms <= 0) h.i = setImmediate(fn);
    else {
      h.t = setTimeout(fn, Math.ceil(ms));
      h.t.unref?.();
    }
    return h;
  },
  clearTimer(h) {
    const x = h as NodeTimer | undefined;
    if (x?.t) clearTimeout(x.t);
    if (x?.i) clearImmediate(x.i);
  },
};

/** The relay's DERP URL for a base URL from the relay map. */
export function derpUrl(node: RelayNode): string {
  return new URL('/derp', node.url).toString();
}

export interface NodeTransportOptions {
  /** DERP over TCP (default, Node's native) or WebSocket (what browsers use). */
  relayTransport?: 'derp' | 'websocket';
  ca?: string | Buffer;
  /** Native UDP for direct paths (gateway/src/node/udp.ts); absent: relay only. */
  udp?: EngineTransports['udp'];
  /** Rewrites relay URLs before use (NAT64 on an IPv6-only host). */
  rewriteUrl?: (url: string) => string;
}

export function nodeTransports(o: NodeTransportOptions = {}): EngineTransports {
  const rw = (n: RelayNode): RelayNode => (o.rewriteUrl ? { ...n, url: o.rewriteUrl(n.url) } : n);
  return {
    ...(o.udp ? { udp: o.udp } : {}),
    WebSocket: WebSocket as unknown as WebSocketCtor,
    fetchServerKey,
    relay(node, key, h): RelayConn {
      let up = false;
      const link = new DerpLink({
        url: derpUrl(rw(node)),
        transport: o.relayTransport ?? 'derp',
        privateKey: key,
        ...(o.ca ? { ca: o.ca } : {}),
        backoff: { baseMs: 250, maxMs: 5000 },
        events: { packet: (src, data) => h.packet(src, data) },
        onConnected: () => {
          up = true;
          h.state(true);
        },
        onDisconnected: () => {
          up = false;
          h.state(false);
        },
      });
      return {
        get connected() {
          return up;
        },
        send: (dst, packet) => link.sendPacket(dst, packet),
        notePreferred: (home) => link.client?.notePreferred(home),
        close: () => link.close(),
      };
    },
    probe: (node) => probeRelay(rw(node)),
  };
}

/** Round trip of `HEAD {url}/derp/probe`: the first request opens the connection, the second is timed. */
export async function probeRelay(node: RelayNode, timeoutMs = 3000): Promise<number> {
  const url = new URL('/derp/probe', node.url);
  await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(timeoutMs) });
  const t0 = performance.now();
  const r = await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(timeoutMs) });
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  return performance.now() - t0;
}
