/**
 * Connects the pure DERP client (src/derp/client.ts) to a relay from Node, over either
 * transport: WebSocket with subprotocol `derp` (what browsers use) or `GET /derp` with
 * `Upgrade: DERP` (Tailscale's native one).
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { cryptoRandom } from '../../../src/crypto/backend.ts';
import { DerpClient, type DerpClientOptions } from '../../../src/derp/client.ts';
import { PierceError } from '../../../src/errors.ts';
import { batchedWriter } from './transport.ts';

export type DerpTransport = 'websocket' | 'derp';

export interface DialOptions extends Omit<DerpClientOptions, 'send' | 'random'> {
  /** The relay's DERP URL, e.g. http://127.0.0.1:8443/derp. */
  url: string;
  transport?: DerpTransport;
  random?: DerpClientOptions['random'];
  timeoutMs?: number;
  /** Extra CA certificate(s) to trust for https/wss relays (e.g. a self-signed one). */
  ca?: string | Buffer;
}

export interface DerpConnection {
  readonly client: DerpClient;
  readonly transport: DerpTransport;
  /** Resolves when the handshake completes (ServerInfo received). */
  readonly ready: Promise<void>;
  close(): void;
}

/** Opens a DERP connection; `ready` settles when the handshake is done or failed. */
export function dialDerp(opts: DialOptions): DerpConnection {
  const transport = opts.transport ?? 'websocket';
  let writer: (b: Uint8Array) => void = () => {};
  let closer: () => void = () => {};
  let timer: NodeJS.Timeout | null = null;
  let onReady!: () => void;
  let onFail!: (e: Error) => void;
  const ready = new Promise<void>((res, rej) => {
    onReady = res;
    onFail = rej;
  });
  ready.catch(() => {});
  const events = { ...opts.events };
  const client = new DerpClient({
    ...opts,
    random: opts.random ?? cryptoRandom,
    send: (b) => writer(b),
    events: {
      ...events,
      ready: (info) => {
        onReady();
        events.ready?.(info);
      },
      closed: (err) => {
        if (timer) clearTimeout(timer);
        onFail(err ?? new PierceError('DERP_CLOSED', 'DERP connection closed'));
        closer();
        events.closed?.(err);
      },
    },
  });
  const schedule = () => {
    if (timer) clearTimeout(timer);
    const d = client.nextDeadline();
    if (d === null) return;
    timer = setTimeout(() => {
      client.tick(performance.now());
      schedule();
    }, Math.max(0, d - performance.now()));
    timer.unref();
  };
  const feed = (b: Uint8Array) => {
    client.onBytes(b, performance.now());
    schedule();
  };
  const lost = (why: string) => {
    onFail(new PierceError('DERP_CLOSED', why));
    client.onTransportClosed();
  };

  if (transport === 'websocket') {
    const ws = new WebSocket(opts.url.replace(/^http/, 'ws'), ['derp'], { perMessageDeflate: false, handshakeTimeout: opts.timeoutMs ?? 10_000, ...(opts.ca ? { ca: opts.ca } : {}) });
    ws.binaryType = 'nodebuffer';
    writer = (b) => ws.readyState === WebSocket.OPEN && ws.send(b);
    closer = () => ws.close();
    ws.on('open', () => {
      client.start(performance.now());
      schedule();
    });
    ws.on('message', (d: Buffer) => feed(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
    ws.on('close', () => lost('WebSocket closed'));
    ws.on('error', (e) => lost(`WebSocket error: ${e.message}`));
  } else {
    const u = new URL(opts.url);
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, {
      method: 'GET',
      headers: { Upgrade: 'DERP', Connection: 'Upgrade' },
      timeout: opts.timeoutMs ?? 10_000,
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
    req.on('upgrade', (res, socket: Socket, head: Buffer) => {
      if (res.headers['derp-version'] !== '2') {
        socket.destroy();
        lost(`relay answered Derp-Version ${res.headers['derp-version'] ?? 'none'}`);
        return;
      }
      socket.setNoDelay(true);
      writer = batchedWriter(socket);
      closer = () => socket.destroy();
      socket.on('data', (d: Buffer) => feed(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
      socket.on('close', () => lost('connection closed'));
      socket.on('error', () => socket.destroy());
      client.start(performance.now());
      if (head.length) feed(new Uint8Array(head));
      schedule();
    });
    req.on('response', (res) => {
      lost(`relay answered HTTP ${res.statusCode} instead of upgrading`);
      res.resume();
    });
    req.on('error', (e) => lost(`cannot reach ${opts.url}: ${e.message}`));
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end();
    closer = () => req.destroy();
  }
  return {
    client,
    transport,
    ready,
    close: () => {
      client.close();
      closer();
    },
  };
}
