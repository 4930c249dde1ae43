/**
 * A userspace TCP connection as a Node Duplex stream: backpressure both ways (a full readable
 * side pauses the connection, which closes its receive window; write callbacks wait for 'drain'),
 * half-close (`end()` sends FIN and keeps reading), and `resetAndDestroy()` like net.Socket.
 */
import { Duplex } from 'node:stream';
import type { TcpConnection } from '../../../src/netstack/tcp/connection.ts';

export interface TcpDuplex extends Duplex {
  readonly connection: TcpConnection;
  /** Aborts with a RST, as net.Socket#resetAndDestroy does. */
  resetAndDestroy(): this;
}

export function tcpDuplex(c: TcpConnection): TcpDuplex {
  let reset = false;
  const d = new Duplex({
    allowHalfOpen: true,
    read() {
      c.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      let ok: boolean;
      try {
        ok = c.write(chunk);
      } catch (e) {
        cb(e as Error);
        return;
      }
      if (ok) cb();
      else {
        // Wait until the send buffer drains (or the connection dies).
        const onDrain = () => {
          c.off('close', onClose);
          cb();
        };
        const onClose = () => {
          c.off('drain', onDrain);
          cb(c.lastError ?? undefined);
        };
        c.once('drain', onDrain);
        c.once('close', onClose);
      }
    },
    final(cb) {
      c.end();
      cb();
    },
    destroy(err, cb) {
      if (c.state !== 'CLOSED') {
        if (err || reset) c.abort();
        else c.close();
      }
      cb(err);
    },
  }) as TcpDuplex;
  Object.defineProperty(d, 'connection', { value: c });
  d.resetAndDestroy = function () {
    reset = true;
    this.destroy();
    return this;
  };
  c.on('data', (b) => {
    if (!d.push(Buffer.from(b.buffer, b.byteOffset, b.byteLength))) c.pause();
  });
  c.on('end', () => d.push(null));
  c.on('error', (e) => d.destroy(e));
  c.on('close', (hadError) => {
    if (!hadError && !d.destroyed && d.writableFinished && d.readableEnded) d.destroy();
  });
  return d;
}
