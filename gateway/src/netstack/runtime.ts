/**
 * Runs the pure userspace `Stack` in Node: one timer armed at its next deadline, and the
 * `TunnelNet` interface (tunnel TCP as Node Duplex streams) for the proxies.
 */
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { Stack, type StackOptions } from '../../../src/netstack/stack.ts';
import { formatIP } from '../../../src/netstack/addr.ts';
import { SocketError } from '../../../src/netstack/errors.ts';
import type { TunnelNet } from '../proxy/tunnel-net.ts';
import { tcpDuplex } from './duplex.ts';

export class StackRuntime implements TunnelNet {
  readonly stack: Stack;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private stopped = false;

  constructor(opts: Omit<StackOptions, 'now' | 'wake'>) {
    this.stack = new Stack({ ...opts, now: () => performance.now(), wake: () => this.reschedule() });
  }

  /** Feeds an inbound IP packet (from the tunnel). */
  input(packet: Uint8Array): void {
    this.stack.input(packet);
    this.reschedule();
  }

  reschedule(): void {
    if (this.stopped) return;
    const at = this.stack.nextDeadline() ?? Infinity;
    if (at >= this.timerAt && this.timer) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = at;
    if (at === Infinity) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.stack.tick();
      this.reschedule();
    }, Math.max(0, Math.ceil(at - performance.now())));
  }

  connect(address: Uint8Array, port: number, opts: { signal?: AbortSignal } = {}): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      let c;
      try {
        c = this.stack.connect({ address, port });
      } catch (e) {
        reject(e);
        return;
      }
      const conn = c;
      const onAbort = () => {
        conn.abort();
        reject(new SocketError('ECONNABORTED', `connection to ${formatIP(address)}:${port} aborted`));
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      conn.once('connect', () => {
        opts.signal?.removeEventListener('abort', onAbort);
        resolve(tcpDuplex(conn));
      });
      conn.once('error', (e) => {
        opts.signal?.removeEventListener('abort', onAbort);
        reject(e);
      });
      this.reschedule();
    });
  }

  listen(port: number, onConnection: (socket: Duplex, info: { remoteAddress: string; remotePort: number }) => void): { close(): void } {
    const l = this.stack.listen({ port }, (c) => {
      onConnection(tcpDuplex(c), { remoteAddress: formatIP(c.remoteAddress), remotePort: c.remotePort });
    });
    return { close: () => l.close() };
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.stack.close();
  }
}
