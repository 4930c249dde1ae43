/**
 * The byte stream a DERP connection runs over, whichever way the client came in: a raw socket
 * after `GET /derp` with `Upgrade: DERP` (Tailscale's native transport), or a WebSocket with
 * subprotocol `derp` (browsers). DERP frames are parsed from the stream by length, never by
 * message: a WebSocket message may hold part of a frame, several frames, or both.
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import { turnBatcher } from '../../../src/lease/batcher.ts';

export interface ByteConn {
  readonly kind: 'derp' | 'websocket';
  /** Remote address for logs and rate limits. */
  readonly remote: string;
  write(bytes: Uint8Array): void;
  /** Bytes accepted by write() but not yet handed to the kernel. */
  bufferedAmount(): number;
  onData(cb: (chunk: Uint8Array) => void): void;
  /** Called once, when the connection is gone for any reason. */
  onClose(cb: () => void): void;
  /** Called when the write buffer has drained. */
  onDrain(cb: () => void): void;
  close(): void;
}

export function socketConn(sock: Socket, head: Uint8Array): ByteConn {
  sock.setNoDelay(true);
  const remote = `${sock.remoteAddress}:${sock.remotePort}`;
  let closed = false;
  const closers: (() => void)[] = [];
  const fireClose = () => {
    if (closed) return;
    closed = true;
    for (const c of closers) c();
  };
  sock.on('close', fireClose);
  sock.on('error', () => sock.destroy());
  // The HTTP server's sockets allow half-open: a client's FIN ends the DERP connection.
  sock.on('end', () => sock.destroy());
  const write = batchedWriter(sock);
  let pendingHead: Uint8Array | null = head.length > 0 ? head : null;
  return {
    kind: 'derp',
    remote,
    write: (b) => {
      if (!closed) write(b);
    },
    bufferedAmount: () => sock.writableLength,
    onData: (cb) => {
      if (pendingHead) {
        const h = pendingHead;
        pendingHead = null;
        queueMicrotask(() => cb(h));
      }
      sock.on('data', (d: Buffer) => cb(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)));
    },
    onClose: (cb) => void closers.push(cb),
    onDrain: (cb) => void sock.on('drain', cb),
    close: () => {
      sock.end();
      setTimeout(() => sock.destroy(), 1000).unref();
    },
  };
}

/** Above this many buffered bytes a WebSocket write asks to be told when it is flushed. */
const DRAIN_WATCH = 64 << 10;

export function websocketConn(ws: WebSocket, remote: string): ByteConn {
  let closed = false;
  const closers: (() => void)[] = [];
  const drainers: (() => void)[] = [];
  const fireClose = () => {
    if (closed) return;
    closed = true;
    for (const c of closers) c();
  };
  ws.on('close', fireClose);
  ws.on('error', () => ws.terminate());
  ws.binaryType = 'nodebuffer';
  const send = (b: Uint8Array): void => {
    // Completion callbacks cost an allocation per message: only ask while backed up.
    if (ws.bufferedAmount < DRAIN_WATCH) ws.send(b, { binary: true });
    else
      ws.send(b, { binary: true }, () => {
        if (ws.bufferedAmount < DRAIN_WATCH) for (const d of drainers) d();
      });
  };
  const { write, pendingBytes } = coalescingWriter(send);
  return {
    kind: 'websocket',
    remote,
    write: (b) => {
      if (!closed) write(b);
    },
    bufferedAmount: () => ws.bufferedAmount + pendingBytes(),
    onData: (cb) =>
      void ws.on('message', (data: Buffer | Buffer[], isBinary: boolean) => {
        if (!isBinary) {
          // DERP over WebSocket is binary only.
          ws.close(1003, 'binary messages only');
          return;
        }
        const parts = Array.isArray(data) ? data : [data];
        for (const d of parts) cb(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      }),
    onClose: (cb) => void closers.push(cb),
    onDrain: (cb) => void drainers.push(cb),
    close: () => {
      ws.close(1000);
      setTimeout(() => ws.terminate(), 1000).unref();
    },
  };
}

/** The largest WebSocket message `coalescingWriter` builds. */
export const COALESCE_MAX = 64 << 10;

/**
 * A WebSocket writer that batches like `batchedWriter`: the first frame of an event-loop turn is
 * sent at once, later frames of the same turn are joined into one binary message (up to
 * COALESCE_MAX) sent when the turn ends. DERP over WebSocket is a byte stream to its readers
 * (Tailscale's and ours), so frame boundaries need not match message boundaries; a browser pays
 * per message (an IPC hop from its network process and a task on the worker), and bulk traffic
 * through the relay arrives in runs of dozens of frames.
 */
export function coalescingWriter(send: (b: Uint8Array) => void): { write(b: Uint8Array): void; pendingBytes(): number } {
  return turnBatcher({
    send,
    schedule: (fn) => process.nextTick(fn),
    join: (frames, size) => Buffer.concat(frames, size),
    entrySize: (f) => f.length,
    baseSize: 0,
    maxBytes: COALESCE_MAX,
  });
}

/**
 * A socket writer that batches: the first frame of an event-loop turn goes out at once (no
 * added latency for a lone packet), later frames of the same turn are corked and leave in one
 * system call when the turn ends. One write per frame cost the relay and the nodes up to half
 * their CPU under bulk traffic.
 */
export function batchedWriter(sock: Socket): (b: Uint8Array) => void {
  let busy = false;
  let corked = false;
  const endTurn = () => {
    busy = false;
    if (corked) {
      corked = false;
      sock.uncork();
    }
  };
  return (b) => {
    if (!busy) {
      busy = true;
      sock.write(b);
      process.nextTick(endTurn);
      return;
    }
    if (!corked) {
      corked = true;
      sock.cork();
    }
    sock.write(b);
  };
}
