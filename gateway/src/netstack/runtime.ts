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
import type { TcpConnection } from '../../../src/netstack/tcp/connection.ts';
import type { LogLevel } from '../../../src/wg/types.ts';

/** One debug line per finished connection: what the transfer cost. */
function connectionSummary(c: TcpConnection): string {
  const s = c.stats;
  const srtt = c.rtoEst.srtt === null ? '?' : c.rtoEst.srtt.toFixed(1);
  return `tcp ${formatIP(c.localAddress)}:${c.localPort} <-> ${formatIP(c.remoteAddress)}:${c.remotePort} closed: ${s.bytesOut} B out, ${s.bytesIn} B in, ${s.segmentsOut}/${s.segmentsIn} segments out/in, ${s.retransmits} retransmits (${s.fastRetransmits} recoveries, ${s.timeouts} timeouts, ${c.rec.spuriousRetransmits} spurious), srtt ${srtt} ms, dupthresh ${c.rec.dupThresh}`;
}

export class StackRuntime implements TunnelNet {
  readonly stack: Stack;
  private timer: NodeJS.Timeout | NodeJS.Immediate | null = null;
  private timerIsImmediate = false;
  private timerAt = Infinity;
  private stopped = false;

  private readonly log: (level: LogLevel, message: string) => void;

  constructor(opts: Omit<StackOptions, 'now' | 'wake'> & { log?: (level: LogLevel, message: string) => void }) {
    const { log, ...rest } = opts;
    this.log = log ?? (() => {});
    this.stack = new Stack({ ...rest, now: () => performance.now(), wake: () => this.reschedule() });
  }

  private watch(c: TcpConnection): void {
    c.once('close', () => this.log('debug', connectionSummary(c)));
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
    this.cancel();
    this.timerAt = at;
    if (at === Infinity) return;
    const delay = Math.ceil(at - performance.now());
    const fire = () => {
      this.timer = null;
      this.timerAt = Infinity;
      this.stack.tick();
      this.reschedule();
    };
    // Due now (e.g. an ACK owed for a burst): run after this batch of I/O, not 1 ms later.
    this.timerIsImmediate = delay <= 0;
    this.timer = this.timerIsImmediate ? setImmediate(fire) : setTimeout(fire, delay);
  }

  private cancel(): void {
    if (this.timer === null) return;
    if (this.timerIsImmediate) clearImmediate(this.timer as NodeJS.Immediate);
    else clearTimeout(this.timer as NodeJS.Timeout);
    this.timer = null;
  }

  connect(address: Uint8Array, port: number, opts: { signal?: AbortSignal } = {}): Promise<Duplex> {
    return stackConnect(this.stack, address, port, opts, (c) => this.watch(c), () => this.reschedule());
  }

  listen(port: number, onConnection: (socket: Duplex, info: { remoteAddress: string; remotePort: number }) => void): { close(): void } {
    return stackListen(this.stack, port, onConnection, (c) => this.watch(c));
  }

  stop(): void {
    this.stopped = true;
    this.cancel();
    this.stack.close();
  }
}

/** Opens a TCP connection on a stack as a Node Duplex (TunnelNet.connect for any driver). */
export function stackConnect(
  stack: Stack,
  address: Uint8Array,
  port: number,
  opts: { signal?: AbortSignal },
  watch: (c: TcpConnection) => void,
  kick: () => void,
): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    let c;
    try {
      c = stack.connect({ address, port });
    } catch (e) {
      reject(e);
      return;
    }
    const conn = c;
    watch(conn);
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
    kick();
  });
}

/** Accepts TCP connections on a stack port as Node Duplex streams (TunnelNet.listen). */
export function stackListen(
  stack: Stack,
  port: number,
  onConnection: (socket: Duplex, info: { remoteAddress: string; remotePort: number }) => void,
  watch: (c: TcpConnection) => void,
): { close(): void } {
  const l = stack.listen({ port }, (c) => {
    watch(c);
    onConnection(tcpDuplex(c), { remoteAddress: formatIP(c.remoteAddress), remotePort: c.remotePort });
  });
  return { close: () => l.close() };
}
