/**
 * A DERP connection that stays up: it redials with exponential backoff and jitter whenever the
 * relay goes away (a relay restart costs a reconnect, not a session: DESIGN invariant 3), and
 * hands every connection's client to the caller so it can resubscribe (e.g. WatchConns).
 */
import { cryptoRandom } from '../../../src/crypto/backend.ts';
import { Backoff } from '../../../src/derp/backoff.ts';
import type { DerpClient, DerpClientEvents } from '../../../src/derp/client.ts';
import type { NodePublic } from '../../../src/key/keys.ts';
import { dialDerp, type DerpConnection, type DialOptions } from './dial.ts';

export interface DerpLinkOptions extends Omit<DialOptions, 'events'> {
  events?: Partial<DerpClientEvents>;
  /** Called after each successful (re)connection, with the live client. */
  onConnected?: (client: DerpClient) => void;
  /** Called when a connection is lost (before the redial is scheduled). */
  onDisconnected?: (why: string) => void;
  backoff?: { baseMs?: number; maxMs?: number };
}

export class DerpLink {
  private conn: DerpConnection | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly backoff: Backoff;
  connects = 0;

  constructor(private readonly opts: DerpLinkOptions) {
    this.backoff = new Backoff({ ...opts.backoff, random: opts.random ?? cryptoRandom });
    this.dial();
  }

  /** The client of the live connection, or null while (re)connecting. */
  get client(): DerpClient | null {
    return this.conn && this.conn.client.state === 'ready' ? this.conn.client : null;
  }

  sendPacket(dst: NodePublic, packet: Uint8Array): boolean {
    const c = this.client;
    return c ? c.sendPacket(dst, packet, performance.now()) : false;
  }

  private dial(): void {
    if (this.stopped) return;
    const conn = dialDerp({
      ...this.opts,
      events: {
        ...this.opts.events,
        closed: (err) => {
          this.opts.events?.closed?.(err);
          if (this.conn === conn) this.lost(err?.message ?? 'closed');
        },
      },
    });
    this.conn = conn;
    conn.ready.then(
      () => {
        if (this.conn !== conn || this.stopped) return;
        this.backoff.reset();
        this.connects++;
        this.opts.onConnected?.(conn.client);
      },
      (e: Error) => {
        if (this.conn === conn) this.lost(e.message);
      },
    );
  }

  private lost(why: string): void {
    if (this.stopped || this.timer) return;
    this.conn?.close();
    this.conn = null;
    this.opts.onDisconnected?.(why);
    const delay = this.backoff.next();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.dial();
    }, delay);
    this.timer.unref();
  }

  close(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.conn?.close();
    this.conn = null;
  }
}
