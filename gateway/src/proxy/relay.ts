/**
 * What the port forwards and the SOCKS5 server share: the bidirectional relay between an accepted
 * connection and the one dialed for it, connection accounting, and dialing through the tunnel
 * with a deadline.
 *
 *   accepted ──data──▶ relay ──write──▶ dialed        (bytesUp)
 *   accepted ◀─write── relay ◀──data─── dialed        (bytesDown)
 *
 * Relay semantics (both directions are independent until something fails):
 * - backpressure: `pipe` pauses a source while its destination's buffer is over its high-water
 *   mark, so a slow reader on one side slows the writer on the other instead of filling memory;
 * - half-close: when one side ends its write side (FIN), the other side's write side is ended
 *   and reading from it goes on, both ways; this needs `allowHalfOpen: true` on net sockets;
 * - failure: an error (e.g. ECONNRESET) or a close before both directions have ended on one side
 *   resets the other side (`resetAndDestroy()` when the stream has it, else `destroy()`).
 */
import { finished, type Duplex } from 'node:stream';
import { PierceError } from '../../../src/errors.ts';
import { hostPort } from '../../../src/netstack/addr.ts';
import type { LogLevel } from '../../../src/wg/types.ts';
import type { TunnelNet } from './tunnel-net.ts';

/**
 * Errors of the proxies that are not spec parse errors. Codes: the dial codes of `TunnelNet`
 * ('ECONNREFUSED', 'ETIMEDOUT', …) when dialing failed, 'DIAL_FAILED' when a dial failed with
 * something else, 'ABORTED' when a dial was given up because the proxy closed, 'BIND_FAILED'
 * when a local server could not listen.
 */
export class ProxyError extends PierceError {}

/** The logger shape of the CLI (`makeLogger` in gateway/src/cli/wg-up.ts). */
export type ProxyLog = (level: LogLevel, message: string) => void;

/** Counters of one proxy server; `bytesUp` flows from accepted to dialed connections. */
export interface ProxyStats {
  /** Connections accepted and not yet closed (including those still dialing). */
  active: number;
  /** Connections accepted since start. */
  total: number;
  /** Connections whose dial (or SOCKS5 handshake) failed. */
  failed: number;
  bytesUp: number;
  bytesDown: number;
}

export interface RelayResult {
  bytesUp: number;
  bytesDown: number;
  /** The first error either side reported, if any (a reset, a write after the peer closed, …). */
  error: Error | null;
}

type Resettable = Duplex & { resetAndDestroy?: () => unknown };

/** Resets a stream when it supports it (net.Socket sends RST), else destroys it. Never throws. */
export function resetStream(s: Duplex): void {
  const r = (s as Resettable).resetAndDestroy;
  if (!s.destroyed && typeof r === 'function') {
    try {
      r.call(s);
      return;
    } catch {
      // not a TCP handle (e.g. a pipe): fall back to destroy
    }
  }
  s.destroy();
}

function ignore(): void {}

/**
 * Relays `accepted` and `dialed` both ways until both are done (see the file header). Resolves
 * (never rejects) when both streams have finished or been destroyed. `onBytes` sees each chunk's
 * length as it is read.
 */
export function relay(accepted: Duplex, dialed: Duplex, onBytes?: (dir: 'up' | 'down', n: number) => void): Promise<RelayResult> {
  return new Promise((resolve) => {
    const result: RelayResult = { bytesUp: 0, bytesDown: 0, error: null };
    let pending = 2;
    // Both streams keep an 'error' listener for their whole life: a late error (a write racing a
    // reset) must never become an uncaught exception.
    accepted.on('error', ignore);
    dialed.on('error', ignore);
    const done = (self: Duplex, other: Duplex) => (err?: Error | null) => {
      if (err) {
        // Keep the first real error; a premature close is usually our own reset of this side.
        if (!result.error || (isPrematureClose(result.error) && !isPrematureClose(err))) result.error = err;
        if (!other.destroyed) resetStream(other);
        if (!self.destroyed) self.destroy();
      }
      if (--pending === 0) resolve(result);
    };
    accepted.on('data', (c: Uint8Array) => {
      result.bytesUp += c.length;
      onBytes?.('up', c.length);
    });
    dialed.on('data', (c: Uint8Array) => {
      result.bytesDown += c.length;
      onBytes?.('down', c.length);
    });
    finished(accepted, done(accepted, dialed));
    finished(dialed, done(dialed, accepted));
    accepted.pipe(dialed);
    dialed.pipe(accepted);
  });
}

function isPrematureClose(e: Error): boolean {
  return (e as { code?: unknown }).code === 'ERR_STREAM_PREMATURE_CLOSE';
}

/** Connections of one proxy server: counters, and destroying them all on close. */
export class ConnectionSet {
  readonly stats: ProxyStats = { active: 0, total: 0, failed: 0, bytesUp: 0, bytesDown: 0 };
  private readonly live = new Set<Duplex>();
  private readonly dials = new Set<AbortController>();
  private closed = false;
  private readonly idleWaiters: (() => void)[] = [];

  get isClosed(): boolean {
    return this.closed;
  }

  /** Counts a new accepted connection; returns a function to call once when it is gone. */
  open(): () => void {
    this.stats.active++;
    this.stats.total++;
    let once = false;
    return () => {
      if (once) return;
      once = true;
      this.stats.active--;
      if (this.stats.active === 0) for (const w of this.idleWaiters.splice(0)) w();
    };
  }

  /** Resolves when no connection is active. */
  idle(): Promise<void> {
    if (this.stats.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Tracks a stream so that `closeAll` destroys it; untracks it on 'close'. */
  track(s: Duplex): void {
    if (this.closed) {
      s.on('error', ignore);
      s.destroy();
      return;
    }
    this.live.add(s);
    s.once('close', () => this.live.delete(s));
  }

  /** An AbortController for one dial, aborted by `closeAll`. */
  dialController(): { signal: AbortSignal; release(): void } {
    const ac = new AbortController();
    if (this.closed) ac.abort();
    else this.dials.add(ac);
    return { signal: ac.signal, release: () => this.dials.delete(ac) };
  }

  /** Counts the bytes of a relay as they flow. */
  countBytes = (dir: 'up' | 'down', n: number): void => {
    if (dir === 'up') this.stats.bytesUp += n;
    else this.stats.bytesDown += n;
  };

  /** Aborts pending dials and destroys every tracked stream. */
  closeAll(): void {
    this.closed = true;
    for (const ac of this.dials) ac.abort();
    this.dials.clear();
    for (const s of this.live) {
      s.on('error', ignore);
      s.destroy();
    }
    this.live.clear();
  }

  snapshot(): ProxyStats {
    return { ...this.stats };
  }
}

export { hostPort };

/** Dial error codes that `TunnelNet.connect` documents. */
const DIAL_CODES = new Set(['EACCES', 'ECONNREFUSED', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EMFILE']);

function asDialError(e: unknown, where: string): PierceError {
  if (e instanceof PierceError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  const msg = e instanceof Error ? e.message : String(e);
  if (typeof code === 'string' && DIAL_CODES.has(code)) return new ProxyError(code, `connect to ${where}: ${msg}`, { cause: e });
  return new ProxyError('DIAL_FAILED', `connect to ${where}: ${msg}`, { cause: e });
}

/**
 * `net.connect` with a deadline: rejects with ProxyError 'ETIMEDOUT' after `timeoutMs`, with
 * 'ABORTED' when `signal` aborts, else with the PierceError of `net.connect`. A socket that
 * arrives after the dial was given up is destroyed.
 */
export function dialTunnel(
  net: TunnelNet,
  address: Uint8Array,
  port: number,
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<Duplex> {
  const where = hostPort(address, port);
  return new Promise((resolve, reject) => {
    const ac = new AbortController();
    let settled = false;
    const finish = (err: Error | null, sock?: Duplex) => {
      if (settled) {
        if (sock) {
          sock.on('error', ignore);
          sock.destroy();
        }
        return;
      }
      settled = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (err || !sock) {
        ac.abort();
        reject(err ?? new ProxyError('DIAL_FAILED', `connect to ${where}: no socket`));
      } else {
        resolve(sock);
      }
    };
    const onAbort = () => finish(new ProxyError('ABORTED', `connect to ${where}: aborted`));
    const timer = setTimeout(
      () => finish(new ProxyError('ETIMEDOUT', `connect to ${where}: timed out after ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    let p: Promise<Duplex>;
    try {
      p = net.connect(address, port, { signal: ac.signal });
    } catch (e) {
      return finish(asDialError(e, where));
    }
    p.then(
      (s) => finish(null, s),
      (e: unknown) => finish(asDialError(e, where)),
    );
  });
}
