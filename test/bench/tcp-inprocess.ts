/**
 * The userspace TCP stack's own cost, without crypto: two stacks back to back in one process,
 * packets handed over through a queue (no loss), bulk data one way. Reports MB/s and the CPU time
 * per data segment (both directions' processing included), beside a baseline of copying the same
 * bytes through a Node Buffer queue (the floor of any in-process byte pipe).
 */
import { Stack } from '../../src/netstack/stack.ts';
import { parseIP } from '../../src/netstack/addr.ts';

export interface TcpInprocessResult {
  bytes: number;
  ms: number;
  mbytesPerSec: number;
  segments: number;
  usPerSegment: number;
  baselineMbytesPerSec: number;
}

export function runTcpInprocess(totalBytes = 64 << 20): TcpInprocessResult {
  const queue: { to: Stack; p: Uint8Array }[] = [];
  let a!: Stack;
  let b!: Stack;
  const now = () => performance.now();
  a = new Stack({ addresses: [parseIP('10.0.0.1')], now, output: (p) => queue.push({ to: b, p }) });
  b = new Stack({ addresses: [parseIP('10.0.0.2')], now, output: (p) => queue.push({ to: a, p }) });
  const pump = () => {
    for (let i = 0; i < queue.length; i++) queue[i]!.to.input(queue[i]!.p);
    queue.length = 0;
  };
  let received = 0;
  let ended = false;
  b.listen({ port: 9 }, (c) => {
    c.on('data', (d) => (received += d.length));
    c.on('end', () => (ended = true));
  });
  const client = a.connect({ address: parseIP('10.0.0.2'), port: 9 });
  client.setNoDelay(true);
  while (queue.length) pump();
  const chunk = new Uint8Array(64 * 1024);
  let sent = 0;
  const t0 = performance.now();
  const segs0 = a.counters.packetsOut;
  while (!ended) {
    while (sent < totalBytes) {
      sent += chunk.length;
      if (!client.write(chunk)) break; // queued anyway; wait for room
    }
    if (sent >= totalBytes && client.state === 'ESTABLISHED') client.end();
    if (queue.length === 0) {
      a.tick();
      b.tick();
      if (queue.length === 0 && !ended && performance.now() - t0 > 60_000) throw new Error('tcp in-process bench stalled');
    }
    while (queue.length) pump();
  }
  const ms = performance.now() - t0;
  const segments = a.counters.packetsOut - segs0;

  // Baseline: the same bytes copied through a queue of Buffers.
  const t1 = performance.now();
  const q: Buffer[] = [];
  let moved = 0;
  const src = Buffer.alloc(1380);
  while (moved < totalBytes) {
    q.push(Buffer.from(src));
    if (q.length > 64) for (const x of q.splice(0)) moved += x.length;
  }
  const baseMs = performance.now() - t1;
  return {
    bytes: received,
    ms,
    mbytesPerSec: received / 1e6 / (ms / 1000),
    segments,
    usPerSegment: (ms * 1000) / segments,
    baselineMbytesPerSec: moved / 1e6 / (baseMs / 1000),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = runTcpInprocess();
  console.log(JSON.stringify(r, null, 2));
}
