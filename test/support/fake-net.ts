/**
 * A small in-memory internet on a manual clock, for fast, deterministic tests of direct paths
 * (src/engine/direct.ts): hosts behind fake NATs, two STUN servers, a relay between two nodes'
 * disco agents, and the nodes themselves (DiscoAgent + DirectPaths, wired as the engine does).
 *
 *   NAT 'none'   public host: its sockets are reachable at publicIp:port
 *   NAT 'easy'   endpoint-independent mapping, address-and-port-dependent filtering (Linux
 *                masquerade): one external port per socket; inbound only from an ip:port the
 *                socket already sent to
 *   NAT 'hard'   endpoint-dependent mapping: a new random external port per destination, same
 *                filtering
 *
 * Every datagram is delivered `latency` ms later through the clock (no re-entrancy); `dropUdp`
 * loses every datagram in flight (the relay still works).
 *
 * A host's NAT can also grant port mappings (NAT-PMP/PCP/UPnP, `enablePortMapping`): the mapped
 * external port reaches the socket from anywhere, and the socket's outbound datagrams leave from
 * it whatever the destination (a PCP MAP mapping serves outbound traffic too, RFC 6887 §11).
 */
import type { Clock, PortMapping, TimerHandle, UdpSocket, UdpTransport } from '../../src/engine/types.ts';
import { BINDING, buildBindingSuccess, parseStun } from '../../src/stun/message.ts';
import { parseIP } from '../../src/netstack/addr.ts';
import { seededRandom } from './wg-net.ts';

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  live: boolean;
}

const before = (a: Timer, b: Timer): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq);
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A manual clock: `advance(ms)` runs due timers in (time, creation) order, settling promises between instants. */
export class FakeClock implements Clock {
  private t = 0;
  private seq = 0;
  private readonly heap: Timer[] = [];

  now(): number {
    return this.t;
  }

  wall(): number {
    return 1_700_000_000_000 + this.t;
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const tm: Timer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, live: true };
    const h = this.heap;
    h.push(tm);
    for (let i = h.length - 1; i > 0; ) {
      const up = (i - 1) >> 1;
      if (!before(h[i]!, h[up]!)) break;
      [h[i], h[up]] = [h[up]!, h[i]!];
      i = up;
    }
    return tm;
  }

  clearTimer(h: TimerHandle): void {
    if (h && typeof h === 'object') (h as Timer).live = false;
  }

  /** Timers still armed. */
  get pending(): number {
    return this.heap.filter((t) => t.live).length;
  }

  private peek(): Timer | undefined {
    while (this.heap.length && !this.heap[0]!.live) this.pop();
    return this.heap[0];
  }

  private pop(): Timer {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length) {
      h[0] = last;
      for (let i = 0; ; ) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }

  /** Moves time forward by `ms`, running every timer that falls due (and any they arm). */
  async advance(ms: number): Promise<void> {
    const until = this.t + ms;
    await settle();
    for (;;) {
      let top = this.peek();
      // Leaving this instant: let pending promise chains (socket binds) finish first.
      if (top && top.at > this.t) {
        await settle();
        top = this.peek();
      }
      if (!top || top.at > until) break;
      this.pop();
      top.live = false;
      this.t = Math.max(this.t, top.at);
      top.fn();
    }
    this.t = until;
    await settle();
  }
}

export type NatKind = 'none' | 'easy' | 'hard';

interface FakeSock {
  port: number;
  onPacket: (data: Uint8Array, ip: string, port: number) => void;
}

/** One host (and its NAT, if any) on the fake internet; its UdpTransport for DirectPaths. */
export class FakeHost implements UdpTransport {
  readonly sockets = new Map<number, FakeSock>();
  /** Sockets ever bound. */
  bound = 0;
  private nextPort = 40_000;
  /** NAT: mapping key (socket, or socket + destination) → external port, and back. */
  private readonly maps = new Map<string, number>();
  private readonly byExt = new Map<number, number>();
  /** NAT filter: "extPort|remoteIp|remotePort" the inside sent to. */
  private readonly allowed = new Set<string>();
  /** Port mappings the NAT granted: local port → external port (no filtering either way). */
  private readonly mapped = new Map<number, number>();
  /** Set by `enablePortMapping` (absent: the NAT grants no mappings, as DirectPaths sees it). */
  portMap?: (localPort: number, onChange: (m: PortMapping | null) => void) => { close(): void };

  constructor(
    private readonly net: FakeInternet,
    readonly name: string,
    readonly nat: NatKind,
    readonly publicIp: string,
    readonly privateIp: string,
  ) {}

  bind(port: number, onPacket: (data: Uint8Array, ip: string, port: number) => void): Promise<UdpSocket> {
    if (port === 0) while (this.sockets.has(this.nextPort)) this.nextPort++;
    const p = port || this.nextPort++;
    if (this.sockets.has(p)) return Promise.reject(new Error(`port ${p} in use`));
    this.sockets.set(p, { port: p, onPacket });
    this.bound++;
    return Promise.resolve({
      port: p,
      send: (ip, dport, data) => {
        if (this.sockets.has(p)) this.net.send(this, p, ip, dport, data);
      },
      close: () => void this.sockets.delete(p),
    });
  }

  /**
   * Makes the NAT grant a port mapping to whoever asks (`portMap`), `delayMs` after the request,
   * at `ext` (default: a random free external port).
   */
  enablePortMapping(delayMs = 0, ext?: number): void {
    this.portMap = (localPort, onChange) => {
      let port: number | undefined;
      const timer = this.net.clock.setTimer(() => {
        port = ext ?? this.freeExternalPort();
        this.mapped.set(localPort, port);
        this.byExt.set(port, localPort);
        onChange({ ip: this.publicIp, port, protocol: 'pcp' });
      }, delayMs);
      return {
        close: () => {
          this.net.clock.clearTimer(timer);
          if (port === undefined) return;
          this.mapped.delete(localPort);
          this.byExt.delete(port);
        },
      };
    };
  }

  private freeExternalPort(): number {
    let ext;
    do ext = 1024 + Math.floor(this.net.rand() * (65536 - 1024));
    while (this.byExt.has(ext));
    return ext;
  }

  localAddresses(): string[] {
    return [this.nat === 'none' ? this.publicIp : this.privateIp];
  }

  /** Outbound through the NAT: the source port the world sees. */
  outbound(local: number, ip: string, port: number): number {
    if (this.nat === 'none') return local;
    const m = this.mapped.get(local);
    if (m !== undefined) return m;
    const k = this.nat === 'easy' ? `${local}` : `${local}|${ip}|${port}`;
    let ext = this.maps.get(k);
    if (ext === undefined) {
      ext = this.freeExternalPort();
      this.maps.set(k, ext);
      this.byExt.set(ext, local);
    }
    this.allowed.add(`${ext}|${ip}|${port}`);
    return ext;
  }

  /** Inbound to publicIp:port from ip:sport: hands it to the socket, or drops it (false). */
  input(port: number, ip: string, sport: number, data: Uint8Array): boolean {
    let local = port;
    if (this.nat !== 'none') {
      local = this.byExt.get(port) ?? -1;
      if (this.mapped.get(local) !== port && !this.allowed.has(`${port}|${ip}|${sport}`)) return false;
    }
    const s = this.sockets.get(local);
    if (!s) return false;
    s.onPacket(data, ip, sport);
    return true;
  }
}

export class FakeInternet {
  latency = 5;
  /** Lose every UDP datagram in flight. */
  dropUdp = false;
  readonly stats = { sent: 0, delivered: 0, dropped: 0, stun: 0 };
  readonly rand: () => number;
  private readonly hosts = new Map<string, FakeHost>();
  private readonly stunServers = new Set<string>();

  constructor(
    readonly clock: FakeClock,
    seed = 1,
  ) {
    const r = seededRandom(seed);
    this.rand = () => {
      const b = r(4);
      return (((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0) / 2 ** 32;
    };
  }

  addHost(name: string, nat: NatKind, publicIp: string, privateIp = publicIp): FakeHost {
    const h = new FakeHost(this, name, nat, publicIp, privateIp);
    this.hosts.set(publicIp, h);
    return h;
  }

  /** A STUN server answering Binding requests at ip:port. */
  addStun(ip: string, port = 3478): string {
    this.stunServers.add(`${ip}:${port}`);
    return `${ip}:${port}`;
  }

  send(from: FakeHost, local: number, ip: string, port: number, data: Uint8Array): void {
    this.stats.sent++;
    const sport = from.outbound(local, ip, port);
    this.post(from.publicIp, sport, ip, port, Uint8Array.from(data));
  }

  /** Puts a datagram from sip:sport (already translated) on the wire. */
  post(sip: string, sport: number, ip: string, port: number, data: Uint8Array): void {
    this.clock.setTimer(() => this.deliver(sip, sport, ip, port, data), this.latency);
  }

  private deliver(sip: string, sport: number, ip: string, port: number, data: Uint8Array): void {
    if (this.dropUdp) {
      this.stats.dropped++;
      return;
    }
    if (this.stunServers.has(`${ip}:${port}`)) return this.answerStun(sip, sport, ip, port, data);
    const h = this.hosts.get(ip);
    if (h?.input(port, sip, sport, data)) this.stats.delivered++;
    else this.stats.dropped++;
  }

  private answerStun(sip: string, sport: number, ip: string, port: number, data: Uint8Array): void {
    let m;
    try {
      m = parseStun(data);
    } catch {
      this.stats.dropped++;
      return;
    }
    if (m.class !== 'request' || m.method !== BINDING) return;
    this.stats.stun++;
    this.post(ip, port, sip, sport, buildBindingSuccess(m.transactionId, parseIP(sip), sport));
  }
}
