/**
 * A netstack TCP connection (src/netstack) as the byte duplex the SSH client runs over
 * (src/ssh/transport.ts `SshDuplex`).
 *
 * The engine runs on one timer armed at its earliest deadline, so every write is followed by
 * `reschedule()`: the segments go out now instead of at the next unrelated deadline. Sending
 * never blocks: the SSH client writes synchronously, TCP queues beyond its send buffer (SSH
 * channel windows bound how much that can be). Receiving is paced by the SSH channel windows
 * (the terminal's consumer acknowledges what it has drawn; see engine-worker.ts).
 */
import type { TcpConnection } from '../src/netstack/tcp/connection.ts';
import type { SocketError } from '../src/netstack/errors.ts';
import type { SshDuplex } from '../src/ssh/transport.ts';

export function tcpDuplex(conn: TcpConnection, reschedule: () => void): SshDuplex & { readonly conn: TcpConnection } {
  let closeCb: ((err?: unknown) => void) | undefined;
  let closed = false;
  let closedWith: SocketError | undefined;
  const finish = (err?: SocketError) => {
    if (closed) return;
    closed = true;
    closedWith = err;
    closeCb?.(err);
  };
  conn.on('error', (e) => finish(e));
  conn.on('end', () => {
    // The server half-closed: SSH has nothing more to read; finish our side too.
    conn.end();
    reschedule();
    finish();
  });
  conn.on('close', () => finish(conn.lastError ?? undefined));
  return {
    conn,
    write(bytes) {
      if (closed || conn.state === 'CLOSED') return;
      try {
        conn.write(bytes);
      } catch (e) {
        finish(e as SocketError);
        return;
      }
      reschedule();
    },
    onData(cb) {
      conn.on('data', cb);
    },
    onClose(cb) {
      closeCb = cb;
      if (closed) cb(closedWith);
    },
    close() {
      if (conn.state !== 'CLOSED') conn.end();
      reschedule();
      finish();
    },
  };
}
