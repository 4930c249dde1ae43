/** WHATWG streams over the userspace TCP: backpressure, half-close and reset, on the in-memory pair. */
import { describe, expect, it } from 'vitest';
import { StackPair, concat, payload } from '../support/stack-pair.ts';
import { tcpStreams } from '../../src/netstack/streams.ts';
import type { TcpConnection } from '../../src/netstack/tcp/connection.ts';
import { toHex } from '../../src/crypto/bytes.ts';

/** Runs the virtual network while the promise is pending (it needs simulated time to progress). */
async function drive<T>(p: StackPair, promise: Promise<T>, maxMs = 60_000): Promise<T> {
  let done = false;
  let value!: T;
  let error: unknown = null;
  promise.then(
    (v) => {
      done = true;
      value = v;
    },
    (e) => {
      done = true;
      error = e ?? new Error('rejected');
    },
  );
  const end = p.now + maxMs;
  while (!done && p.now < end) {
    p.run(p.now + 5);
    await new Promise((r) => setImmediate(r));
  }
  if (!done) throw new Error('timed out');
  if (error) throw error;
  return value;
}

async function readAll(r: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const reader = r.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return concat(chunks);
    chunks.push(value);
  }
}

function pair() {
  const p = new StackPair({ latency: 5 }, { b: { tcp: { receiveBuffer: 64 * 1024 } } });
  let server: TcpConnection | null = null;
  p.b.listen({ port: 80 }, (c) => (server = c));
  const client = p.a.connect({ address: p.addrB, port: 80 });
  p.run(100);
  return { p, client, server: server! as TcpConnection };
}

describe('TCP as WHATWG streams', () => {
  it('carries 1 MB through a small receive window with backpressure, then half-closes', async () => {
    const { p, client, server } = pair();
    const cs = tcpStreams(client);
    const ss = tcpStreams(server, { highWaterMark: 16 * 1024 });
    const data = payload(1 << 20, 21);
    const writing = (async () => {
      const w = cs.writable.getWriter();
      for (let o = 0; o < data.length; o += 32 * 1024) await w.write(data.subarray(o, o + 32 * 1024));
      await w.close();
    })();
    const got = await drive(p, Promise.all([readAll(ss.readable), writing]).then(([d]) => d));
    expect(toHex(got)).toBe(toHex(data));
    // Half-close: the server can still answer after the client's FIN.
    const w = ss.writable.getWriter();
    await w.write(Uint8Array.of(1, 2, 3));
    await w.close();
    const back = await drive(p, readAll(cs.readable));
    expect(Array.from(back)).toEqual([1, 2, 3]);
  });

  it('cancelling the readable resets the connection; the peer sees ECONNRESET', async () => {
    const { p, client, server } = pair();
    const cs = tcpStreams(client);
    const ss = tcpStreams(server);
    await cs.readable.cancel();
    const err = await drive(p, readAll(ss.readable).then(() => null, (e: { code?: string }) => e.code));
    expect(err).toBe('ECONNRESET');
  });
});
