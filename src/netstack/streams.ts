/**
 * A TCP connection as WHATWG streams (ReadableStream / WritableStream), the native stream API of
 * browsers and workers (and of Node 18+). Backpressure both ways: when the readable side's queue
 * is full the connection is paused (its receive window closes); writes resolve once the send
 * buffer has room. `writable.close()` half-closes (FIN); `abort()` on either side resets (RST).
 */
import type { TcpConnection } from './tcp/connection.ts';

export interface TcpStreams {
  readable: ReadableStream<Uint8Array>;
  writable: WritableStream<Uint8Array>;
}

export function tcpStreams(c: TcpConnection, opts: { highWaterMark?: number } = {}): TcpStreams {
  const hwm = opts.highWaterMark ?? 256 * 1024;
  let readController!: ReadableStreamDefaultController<Uint8Array>;
  let readDone = false;
  const readable = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        readController = controller;
      },
      pull() {
        c.resume();
      },
      cancel() {
        readDone = true;
        c.abort();
      },
    },
    new ByteLengthQueuingStrategy({ highWaterMark: hwm }),
  );
  c.on('data', (chunk) => {
    if (readDone) return;
    readController.enqueue(Uint8Array.from(chunk));
    if ((readController.desiredSize ?? 1) <= 0) c.pause();
  });
  c.on('end', () => {
    if (readDone) return;
    readDone = true;
    readController.close();
  });
  c.on('error', (e) => {
    if (readDone) return;
    readDone = true;
    readController.error(e);
  });

  const writable = new WritableStream<Uint8Array>({
    write(chunk) {
      if (c.write(chunk)) return;
      return new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          c.off('close', onClose);
          resolve();
        };
        const onClose = () => {
          c.off('drain', onDrain);
          reject(c.lastError ?? new Error('connection closed'));
        };
        c.once('drain', onDrain);
        c.once('close', onClose);
      });
    },
    close() {
      c.end();
    },
    abort() {
      c.abort();
    },
  });
  return { readable, writable };
}
