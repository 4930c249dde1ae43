/**
 * The userspace IP stack: our addresses, IPv4/IPv6 input and output, ICMP echo and errors, UDP
 * sockets and TCP (listeners and connections). Pure: packets come in through `input()` and go
 * out through the injected `output`; time comes from the injected `now`; the embedder calls
 * `tick()` at `nextDeadline()` (and is told by `wake()` when that moved earlier).
 *
 *   input(packet) ─ parsePacket ─┬─ ICMP echo → reply; ICMP error → the socket it concerns
 *                                ├─ UDP → socket by port, or ICMP port unreachable
 *                                └─ TCP → connection by 4-tuple, listener (SYN), or RST (§3.10.7.1)
 *
 * Bad packets are counted by error code and dropped; they never throw and never touch another
 * connection.
 */
import { cryptoRandom, type RandomSource } from '../crypto/backend.ts';
import { mac } from '../crypto/blake2s.ts';
import { equalBytes, toHex } from '../crypto/bytes.ts';
import { isPierceError } from '../errors.ts';
import { formatIP } from './addr.ts';
import { SocketError } from './errors.ts';
import { answerEcho } from './icmp.ts';
import { buildPortUnreachable, parseIcmpError } from './icmp-error.ts';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, parsePacket } from './ip.ts';
import { DEFAULT_TCP_CONFIG, TcpConnection, type TcpConfig, type TcpHost } from './tcp/connection.ts';
import { ACK, RST, SYN, FIN, buildTcpPacket, parseTcp, type TcpSegment } from './tcp/segment.ts';
import { seqAdd } from './tcp/seq.ts';
import { UdpSocket } from './udp-socket.ts';
import { buildUdpPacket, parseUdp } from './udp.ts';

export interface StackLimits {
  maxConnections: number;
  maxUdpSockets: number;
  /** Default listen backlog: half-open plus not-yet-accepted connections per listener. */
  backlog: number;
}

export const DEFAULT_STACK_LIMITS: StackLimits = { maxConnections: 4096, maxUdpSockets: 1024, backlog: 128 };

export interface StackOptions {
  /** Our addresses (4 or 16 bytes each). */
  addresses: Uint8Array[];
  /** Sends an IP packet (into the tunnel). */
  output: (packet: Uint8Array) => void;
  /** Monotonic time in ms. */
  now: () => number;
  /** Link MTU: MSS = MTU - 40 (IPv4) or - 60 (IPv6). Default 1420, WireGuard's. */
  mtu?: number;
  random?: RandomSource;
  /** Called when the next deadline may have moved earlier. */
  wake?: () => void;
  tcp?: Partial<TcpConfig>;
  limits?: Partial<StackLimits>;
}

export interface TcpListener {
  readonly port: number;
  close(): void;
}

interface ListenerState {
  port: number;
  address: Uint8Array | null;
  backlog: number;
  pending: number;
  onConnection: (c: TcpConnection) => void;
  closed: boolean;
}

function addrKey(a: Uint8Array): string {
  return a.length === 4 ? `${a[0]}.${a[1]}.${a[2]}.${a[3]}` : toHex(a);
}

function tupleKey(local: Uint8Array, lport: number, remote: Uint8Array, rport: number): string {
  return `${lport}|${rport}|${addrKey(remote)}|${addrKey(local)}`;
}

export class Stack {
  readonly addresses: Uint8Array[];
  readonly mtu: number;
  readonly tcpConfig: TcpConfig;
  readonly limits: StackLimits;
  readonly counters = { packetsIn: 0, packetsOut: 0, dropped: {} as Record<string, number>, rstSent: 0, icmpUnreachableSent: 0, echoReplies: 0 };
  private readonly conns = new Map<string, TcpConnection>();
  private readonly listeners = new Map<number, ListenerState[]>();
  private readonly udp = new Map<number, UdpSocket[]>();
  private readonly pendingOf = new Map<TcpConnection, ListenerState>();
  private readonly random: RandomSource;
  private readonly isnSecret: Uint8Array;
  private readonly tcpHost: TcpHost;
  private closed = false;

  constructor(private readonly opts: StackOptions) {
    this.addresses = opts.addresses.map((a) => Uint8Array.from(a));
    this.mtu = opts.mtu ?? 1420;
    this.tcpConfig = { ...DEFAULT_TCP_CONFIG, ...opts.tcp };
    this.limits = { ...DEFAULT_STACK_LIMITS, ...opts.limits };
    this.random = opts.random ?? cryptoRandom;
    this.isnSecret = this.random(32);
    this.tcpHost = {
      now: opts.now,
      transmit: (c, seg) => this.transmitTcp(c, seg),
      release: (c) => this.release(c),
      established: (c) => this.onEstablished(c),
      wake: () => opts.wake?.(),
    };
  }

  isLocal(addr: Uint8Array): boolean {
    for (const a of this.addresses) if (equalBytes(a, addr)) return true;
    return false;
  }

  private drop(code: string): void {
    this.counters.dropped[code] = (this.counters.dropped[code] ?? 0) + 1;
  }

  private send(packet: Uint8Array): void {
    this.counters.packetsOut++;
    this.opts.output(packet);
  }

  /** The source address to use toward `dst`: the first of ours of the same family. */
  sourceFor(dst: Uint8Array): Uint8Array | undefined {
    return this.addresses.find((a) => a.length === dst.length);
  }

  mssFor(addr: Uint8Array): number {
    return this.mtu - (addr.length === 4 ? 40 : 60);
  }

  // ------------------------------------------------------------------ input

  /** Handles one inbound IP packet. Never throws on bad input. */
  input(packet: Uint8Array): void {
    if (this.closed) return;
    this.counters.packetsIn++;
    try {
      const ip = parsePacket(packet);
      if (!this.isLocal(ip.dst)) {
        this.drop('NOT_LOCAL');
        return;
      }
      switch (ip.protocol) {
        case IPPROTO_TCP:
          this.inputTcp(packet, ip.src, ip.dst, ip.payload);
          return;
        case IPPROTO_UDP:
          this.inputUdp(packet, ip.src, ip.dst, ip.payload);
          return;
        case IPPROTO_ICMP:
        case IPPROTO_ICMPV6:
          this.inputIcmp(packet);
          return;
        default:
          this.drop('PROTOCOL');
      }
    } catch (e) {
      if (isPierceError(e)) this.drop(e.code);
      else {
        this.drop('INTERNAL');
        throw e;
      }
    }
  }

  private inputIcmp(packet: Uint8Array): void {
    const reply = answerEcho(packet, (d) => this.isLocal(d));
    if (reply) {
      this.counters.echoReplies++;
      this.send(reply);
      return;
    }
    const err = parseIcmpError(packet);
    if (!err) {
      this.drop('ICMP_IGNORED');
      return;
    }
    const q = err.quoted;
    if (q.protocol === IPPROTO_TCP) {
      const c = this.conns.get(tupleKey(q.src, q.srcPort, q.dst, q.dstPort));
      if (err.adminProhibited) c?.icmpError('EACCES', `${formatIP(q.dst)} port ${q.dstPort}: administratively prohibited (a packet filter refused the connection)`);
      else c?.icmpError(err.portUnreachable ? 'ECONNREFUSED' : 'EHOSTUNREACH', `ICMP ${err.portUnreachable ? 'port' : 'destination'} unreachable from ${formatIP(q.dst)}`);
    } else if (q.protocol === IPPROTO_UDP) {
      for (const s of this.udp.get(q.srcPort) ?? []) s.icmpError(q.dst, q.dstPort, err.portUnreachable);
    }
  }

  private inputUdp(packet: Uint8Array, src: Uint8Array, dst: Uint8Array, payload: Uint8Array): void {
    const d = parseUdp(payload, src, dst);
    const socks = this.udp.get(d.dstPort);
    const s = socks?.find((x) => x.address === null || equalBytes(x.address, dst));
    if (!s) {
      this.drop('UDP_NO_SOCKET');
      const icmp = buildPortUnreachable(packet);
      if (icmp) {
        this.counters.icmpUnreachableSent++;
        this.send(icmp);
      }
      return;
    }
    s.deliver(d.payload, src, d.srcPort);
  }

  private inputTcp(packet: Uint8Array, src: Uint8Array, dst: Uint8Array, payload: Uint8Array): void {
    void packet;
    const seg = parseTcp(payload, src, dst);
    const c = this.conns.get(tupleKey(dst, seg.dstPort, src, seg.srcPort));
    if (c) {
      c.input(seg);
      return;
    }
    if ((seg.flags & (SYN | ACK | RST)) === SYN) {
      const l = this.findListener(seg.dstPort, dst);
      if (l) {
        this.acceptSyn(l, seg, src, dst);
        return;
      }
    }
    this.drop('TCP_NO_SOCKET');
    this.resetFor(seg, src, dst);
  }

  /** The RST a CLOSED port answers with (RFC 9293 §3.10.7.1). */
  private resetFor(seg: TcpSegment, src: Uint8Array, dst: Uint8Array): void {
    if (seg.flags & RST) return;
    let fields: { seq: number; ack: number; flags: number };
    if (seg.flags & ACK) fields = { seq: seg.ack, ack: 0, flags: RST };
    else {
      const len = seg.payload.length + (seg.flags & SYN ? 1 : 0) + (seg.flags & FIN ? 1 : 0);
      fields = { seq: 0, ack: seqAdd(seg.seq, len), flags: RST | ACK };
    }
    this.counters.rstSent++;
    this.send(buildTcpPacket({ srcPort: seg.dstPort, dstPort: seg.srcPort, window: 0, urgent: 0, ...fields }, dst, src));
  }

  private findListener(port: number, dst: Uint8Array): ListenerState | undefined {
    return this.listeners.get(port)?.find((l) => !l.closed && (l.address === null || equalBytes(l.address, dst)));
  }

  private acceptSyn(l: ListenerState, syn: TcpSegment, src: Uint8Array, dst: Uint8Array): void {
    if (l.pending >= l.backlog || this.conns.size >= this.limits.maxConnections) {
      this.drop('TCP_BACKLOG'); // like a full accept queue: the peer's SYN retransmission retries
      return;
    }
    const c = new TcpConnection(this.tcpHost, this.tcpConfig, dst, syn.dstPort, src, syn.srcPort, this.isn(dst, syn.dstPort, src, syn.srcPort), this.mssFor(src), true);
    this.conns.set(tupleKey(dst, syn.dstPort, src, syn.srcPort), c);
    l.pending++;
    this.pendingOf.set(c, l);
    c.openPassive(syn);
  }

  private onEstablished(c: TcpConnection): void {
    const l = this.pendingOf.get(c);
    if (!l) return;
    this.pendingOf.delete(c);
    l.pending--;
    if (l.closed) {
      c.abort();
      return;
    }
    l.onConnection(c);
  }

  private release(c: TcpConnection): void {
    this.conns.delete(tupleKey(c.localAddress, c.localPort, c.remoteAddress, c.remotePort));
    const l = this.pendingOf.get(c);
    if (l) {
      l.pending--;
      this.pendingOf.delete(c);
    }
  }

  private transmitTcp(c: TcpConnection, seg: Omit<TcpSegment, 'srcPort' | 'dstPort' | 'urgent'>): void {
    const fields = seg as TcpSegment;
    fields.srcPort = c.localPort;
    fields.dstPort = c.remotePort;
    fields.urgent = 0;
    this.send(buildTcpPacket(fields, c.localAddress, c.remoteAddress));
  }

  /** RFC 6528: ISN = M + F(4-tuple, secret), M a 4 µs clock, F a keyed hash. */
  private isn(local: Uint8Array, lport: number, remote: Uint8Array, rport: number): number {
    const t = new Uint8Array(local.length + remote.length + 4);
    t.set(local, 0);
    t.set(remote, local.length);
    t[t.length - 4] = lport >> 8;
    t[t.length - 3] = lport & 255;
    t[t.length - 2] = rport >> 8;
    t[t.length - 1] = rport & 255;
    const h = mac(this.isnSecret, t);
    const f = ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
    return (Math.floor(this.opts.now() * 250) + f) >>> 0;
  }

  // ------------------------------------------------------------------ TCP API

  /** Opens a connection; listen for 'connect' or 'error' on the result. */
  connect(opts: { address: Uint8Array; port: number; localPort?: number }): TcpConnection {
    if (this.closed) throw new SocketError('ECONNABORTED', 'the stack is closed');
    const local = this.sourceFor(opts.address);
    if (!local) throw new SocketError('ENETUNREACH', `no IPv${opts.address.length === 4 ? 4 : 6} address to connect to ${formatIP(opts.address)} from`);
    if (this.conns.size >= this.limits.maxConnections) throw new SocketError('EMFILE', `connection limit (${this.limits.maxConnections}) reached`);
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) throw new SocketError('EINVAL', `bad port ${opts.port}`);
    let lport = opts.localPort ?? this.ephemeralPort(local, opts.address, opts.port);
    const key = tupleKey(local, lport, opts.address, opts.port);
    if (this.conns.has(key)) throw new SocketError('EADDRINUSE', `local port ${lport} is already connected to that peer`);
    const c = new TcpConnection(this.tcpHost, this.tcpConfig, local, lport, Uint8Array.from(opts.address), opts.port, this.isn(local, lport, opts.address, opts.port), this.mssFor(opts.address), false);
    this.conns.set(key, c);
    c.openActive();
    return c;
  }

  private ephemeralPort(local: Uint8Array, remote: Uint8Array, rport: number): number {
    for (let i = 0; i < 64; i++) {
      const r = this.random(2);
      const p = 49152 + (((r[0]! << 8) | r[1]!) % 16384);
      if (!this.conns.has(tupleKey(local, p, remote, rport)) && !this.listeners.has(p)) return p;
    }
    for (let p = 49152; p <= 65535; p++) if (!this.conns.has(tupleKey(local, p, remote, rport)) && !this.listeners.has(p)) return p;
    throw new SocketError('EADDRINUSE', 'no free local port');
  }

  /** Listens on `port` (on all our addresses, or one). */
  listen(opts: { port: number; address?: Uint8Array; backlog?: number }, onConnection: (c: TcpConnection) => void): TcpListener {
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) throw new SocketError('EINVAL', `bad port ${opts.port}`);
    if (opts.address && !this.isLocal(opts.address)) throw new SocketError('EADDRNOTAVAIL', `${formatIP(opts.address)} is not one of this stack's addresses`);
    const list = this.listeners.get(opts.port) ?? [];
    const clash = list.some((l) => l.address === null || !opts.address || equalBytes(l.address, opts.address));
    if (clash) throw new SocketError('EADDRINUSE', `TCP port ${opts.port} is already listening`);
    const l: ListenerState = { port: opts.port, address: opts.address ? Uint8Array.from(opts.address) : null, backlog: opts.backlog ?? this.limits.backlog, pending: 0, onConnection, closed: false };
    list.push(l);
    this.listeners.set(opts.port, list);
    return {
      port: opts.port,
      close: () => {
        l.closed = true;
        const rest = (this.listeners.get(opts.port) ?? []).filter((x) => x !== l);
        if (rest.length) this.listeners.set(opts.port, rest);
        else this.listeners.delete(opts.port);
      },
    };
  }

  // ------------------------------------------------------------------ UDP API

  /** Binds a UDP socket (port 0 picks a free one). */
  bindUdp(opts: { port?: number; address?: Uint8Array } = {}): UdpSocket {
    let count = 0;
    for (const l of this.udp.values()) count += l.length;
    if (count >= this.limits.maxUdpSockets) throw new SocketError('EMFILE', `UDP socket limit (${this.limits.maxUdpSockets}) reached`);
    if (opts.address && !this.isLocal(opts.address)) throw new SocketError('EADDRNOTAVAIL', `${formatIP(opts.address)} is not one of this stack's addresses`);
    let port = opts.port ?? 0;
    if (port === 0) {
      do port = 49152 + (((this.random(2)[0]! << 8) | this.random(1)[0]!) % 16384);
      while (this.udp.has(port));
    }
    if (this.udp.has(port)) throw new SocketError('EADDRINUSE', `UDP port ${port} is in use`);
    const s = new UdpSocket(port, opts.address ?? null, {
      send: (data, src, dst, dport) => this.send(buildUdpPacket({ srcPort: port, dstPort: dport, payload: data }, src, dst)),
      sourceFor: (dst) => this.sourceFor(dst),
      close: () => this.udp.delete(port),
    });
    this.udp.set(port, [s]);
    return s;
  }

  // ------------------------------------------------------------------ time

  nextDeadline(): number | null {
    let min: number | null = null;
    for (const c of this.conns.values()) {
      const d = c.nextDeadline();
      if (d !== null && (min === null || d < min)) min = d;
    }
    return min;
  }

  /** Fires every due timer. */
  tick(): void {
    const now = this.opts.now();
    for (const c of [...this.conns.values()]) {
      const d = c.nextDeadline();
      if (d !== null && d <= now) c.onTimer(now);
    }
  }

  /** Live connections (for status and tests). */
  connections(): TcpConnection[] {
    return [...this.conns.values()];
  }

  /** Aborts every connection and closes every socket. */
  close(): void {
    for (const c of [...this.conns.values()]) c.abort();
    for (const l of this.listeners.values()) for (const x of l) x.closed = true;
    this.listeners.clear();
    for (const s of [...this.udp.values()].flat()) s.close();
    this.closed = true;
  }
}
