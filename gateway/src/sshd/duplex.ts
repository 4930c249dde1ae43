/** A Node stream (a tunnel TCP connection, a net.Socket) as the SSH layer's SshDuplex. */
import type { Duplex } from 'node:stream';
import type { SshDuplex } from '../../../src/ssh/transport.ts';

export function sshDuplex(s: Duplex): SshDuplex {
  let closed = false;
  const closers: ((err?: unknown) => void)[] = [];
  const done = (err?: unknown) => {
    if (closed) return;
    closed = true;
    for (const c of closers) c(err);
  };
  s.on('error', (e) => done(e));
  s.on('close', () => done());
  s.on('end', () => s.end());
  return {
    write: (b) => {
      if (!closed && !s.destroyed) s.write(b);
    },
    onData: (cb) => s.on('data', (d: Buffer) => cb(new Uint8Array(d.buffer, d.byteOffset, d.byteLength))),
    onClose: (cb) => closers.push(cb),
    close: () => s.destroy(),
  };
}
