/**
 * The server side of `test/bench/relay.ts`, run in a process of its own so that its CPU is not
 * shared with the load generator:
 *
 *   node --expose-gc --import tsx test/bench/relay-server.ts relay|bare
 *
 *   relay  Pierce's DERP relay (gateway/src/relay/server.ts) on 127.0.0.1, port 0, metrics on
 *   bare   the baseline: a bare `ws` server that forwards binary messages by a 32-byte
 *          destination key prefix. A client's first message is its own 32-byte key; every later
 *          message is dst key(32) | packet and goes, unchanged, to the client that registered
 *          that key (dropped when it is unknown or its socket holds over 4 MiB unsent)
 *
 * Talks to the parent over the IPC channel (child_process `ipc` stdio):
 *   → { type: 'ready', port, url }
 *   ← { type: 'stats', gc }  → { type: 'stats', memory: process.memoryUsage(), cpu: process.cpuUsage(), drops, clients }
 *                              (gc: run gc() twice first; needs --expose-gc)
 * Exits when the parent goes away (IPC disconnect) or on SIGTERM.
 */
import { WebSocketServer, type WebSocket } from 'ws';
import { startRelay } from '../../gateway/src/relay/server.ts';

const kind = process.argv[2];
if ((kind !== 'relay' && kind !== 'bare') || !process.send) {
  console.error('usage (from test/bench/relay.ts): node --import tsx test/bench/relay-server.ts relay|bare, with an IPC channel');
  process.exit(2);
}
const send = (m: unknown): void => void process.send!(m);
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));

const gc = (globalThis as { gc?: () => void }).gc;
let drops = 0;
let clients = 0;

if (kind === 'relay') {
  const relay = await startRelay({ host: '127.0.0.1', port: 0, metrics: true });
  // The relay counts its own clients and drops (GET /metrics); `drops`/`clients` stay 0 here.
  send({ type: 'ready', port: relay.port, url: relay.url });
} else {
  const BUFFER_LIMIT = 4 << 20;
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 1 << 20, backlog: 4096 });
  const byKey = new Map<string, WebSocket>();
  wss.on('connection', (ws) => {
    let key: string | null = null;
    clients++;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary || data.length < 32) return;
      if (key === null) {
        key = data.toString('hex', 0, 32);
        byKey.set(key, ws);
        return;
      }
      const to = byKey.get(data.toString('hex', 0, 32));
      if (!to || to.bufferedAmount > BUFFER_LIMIT) {
        drops++;
        return;
      }
      to.send(data);
    });
    ws.on('close', () => {
      clients--;
      if (key !== null && byKey.get(key) === ws) byKey.delete(key);
    });
    ws.on('error', () => ws.terminate());
  });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  const a = wss.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  send({ type: 'ready', port, url: `ws://127.0.0.1:${port}/` });
}

process.on('message', (m: { type?: string; gc?: boolean }) => {
  if (m?.type !== 'stats') return;
  if (m.gc && gc) {
    gc();
    gc();
  }
  send({ type: 'stats', memory: process.memoryUsage(), cpu: process.cpuUsage(), drops, clients });
});
