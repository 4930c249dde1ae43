/**
 * Two userspace stacks joined by a virtual link on a virtual clock, with optional loss,
 * reordering and duplication: maintained test code for the TCP state machine (the same stack is
 * proven against the Linux kernel in test/interop).
 */
import { Stack, type StackOptions } from '../../src/netstack/stack.ts';
import { parseIP } from '../../src/netstack/addr.ts';
import { seededRandom } from './wg-net.ts';

export interface LinkOptions {
  latency?: number;
  /** Probability a packet is dropped (each direction). */
  loss?: number;
  /** Probability a packet is delayed by an extra `reorderDelay`. */
  reorder?: number;
  reorderDelay?: number;
  /** Probability a packet is duplicated. */
  dup?: number;
  seed?: number;
  /** Bytes per ms the link carries (0 = unlimited); packets queue behind each other. */
  bandwidth?: number;
}

interface InFlight {
  at: number;
  to: 'a' | 'b';
  packet: Uint8Array;
}

export class StackPair {
  now = 0;
  readonly a: Stack;
  readonly b: Stack;
  readonly addrA: Uint8Array;
  readonly addrB: Uint8Array;
  private inflight: InFlight[] = [];
  private readonly rand: () => number;
  /** Drop filter applied after the random loss (from, packet). */
  filter: (from: 'a' | 'b', packet: Uint8Array) => boolean = () => true;
  readonly sent = { a: 0, b: 0 };
  /** Every packet put on the wire, for inspection. */
  readonly wire: { t: number; from: 'a' | 'b'; packet: Uint8Array }[] = [];
  keepWire = false;
  private busyUntil = { a: 0, b: 0 };

  constructor(
    readonly link: LinkOptions = {},
    opts: { v6?: boolean; a?: Partial<StackOptions>; b?: Partial<StackOptions> } = {},
  ) {
    const r = seededRandom(link.seed ?? 42);
    this.rand = () => {
      const b = r(4);
      return (((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0) / 2 ** 32;
    };
    this.addrA = parseIP(opts.v6 ? 'fd00::1' : '10.0.0.1');
    this.addrB = parseIP(opts.v6 ? 'fd00::2' : '10.0.0.2');
    const mk = (self: 'a' | 'b', addr: Uint8Array, extra: Partial<StackOptions> = {}) =>
      new Stack({
        addresses: [addr],
        now: () => this.now,
        random: seededRandom((link.seed ?? 42) + (self === 'a' ? 1 : 2)),
        output: (p) => this.transmit(self, p),
        ...extra,
      });
    this.a = mk('a', this.addrA, opts.a);
    this.b = mk('b', this.addrB, opts.b);
  }

  private transmit(from: 'a' | 'b', packet: Uint8Array): void {
    this.sent[from]++;
    const copy = Uint8Array.from(packet);
    if (this.keepWire) this.wire.push({ t: this.now, from, packet: copy });
    const to = from === 'a' ? 'b' : 'a';
    const l = this.link;
    if (l.loss && this.rand() < l.loss) return;
    if (!this.filter(from, copy)) return;
    let at = this.now + (l.latency ?? 5);
    if (l.bandwidth) {
      const start = Math.max(this.now, this.busyUntil[from]);
      this.busyUntil[from] = start + packet.length / l.bandwidth;
      at = this.busyUntil[from] + (l.latency ?? 5);
    }
    if (l.reorder && this.rand() < l.reorder) at += l.reorderDelay ?? 20;
    this.inflight.push({ at, to, packet: copy });
    if (l.dup && this.rand() < l.dup) this.inflight.push({ at: at + 1, to, packet: Uint8Array.from(copy) });
  }

  /** Injects a raw packet into a stack now. */
  inject(to: 'a' | 'b', packet: Uint8Array): void {
    (to === 'a' ? this.a : this.b).input(packet);
  }

  /** Advances virtual time to `until`, delivering packets and firing timers in order. */
  run(until: number): void {
    for (;;) {
      let next = Infinity;
      for (const f of this.inflight) if (f.at < next) next = f.at;
      for (const s of [this.a, this.b]) {
        const d = s.nextDeadline();
        if (d !== null && d < next) next = d;
      }
      if (next > until) break;
      this.now = Math.max(this.now, next);
      const due = this.inflight.filter((f) => f.at <= this.now).sort((x, y) => x.at - y.at);
      this.inflight = this.inflight.filter((f) => f.at > this.now);
      for (const f of due) (f.to === 'a' ? this.a : this.b).input(f.packet);
      this.a.tick();
      this.b.tick();
    }
    this.now = Math.max(this.now, until);
  }

  /** Runs until `pred()` holds (checked after each step) or `max` ms pass; returns whether it held. */
  runUntil(pred: () => boolean, max = 60_000, step = 1): boolean {
    const end = this.now + max;
    while (this.now < end) {
      if (pred()) return true;
      this.run(this.now + step);
    }
    return pred();
  }
}

/** Deterministic pseudo-random bytes for payloads. */
export function payload(n: number, seed = 7): Uint8Array {
  const r = seededRandom(seed);
  return r(n);
}

export function concat(chunks: Uint8Array[]): Uint8Array {
  const n = chunks.reduce((s, c) => s + c.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
