/** A Node TCP socket as an SshDuplex (tests only: src/ssh is browser-safe and never sees node:net). */
import type { Socket } from 'node:net';
import type { SshDuplex } from '../../src/ssh/index.ts';

export function socketDuplex(sock: Socket): SshDuplex {
  let closed = false;
  const closeCbs: Array<(err?: unknown) => void> = [];
  let lastErr: unknown;
  sock.on('error', (e) => (lastErr = e));
  sock.on('close', () => {
    if (closed) return;
    closed = true;
    for (const cb of closeCbs.splice(0)) cb(lastErr);
  });
  return {
    write: (b) => {
      if (!sock.destroyed) sock.write(b);
    },
    onData: (cb) => sock.on('data', (d: Buffer) => cb(new Uint8Array(d.buffer, d.byteOffset, d.byteLength))),
    onClose: (cb) => void (closed ? cb(lastErr) : closeCbs.push(cb)),
    close: () => {
      sock.end();
      setTimeout(() => sock.destroy(), 1000).unref();
    },
  };
}
