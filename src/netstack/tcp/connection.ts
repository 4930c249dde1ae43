/**
 * One TCP connection: the RFC 9293 state machine (§3.10 event processing), with
 *   - MSS (§3.7.1) and window scaling (RFC 7323 §2), SACK-permitted / SACK (RFC 2018)
 *   - retransmission timer per RFC 6298 with Karn's rule and backoff
 *   - fast retransmit and NewReno fast recovery (RFC 5681, RFC 6582), SACK-guided retransmission
 *   - out-of-order reassembly, delayed ACKs (RFC 1122 §4.2.3.2: ≤ 2 full segments, 40 ms)
 *   - Nagle (RFC 896, on by default), sender and receiver silly-window avoidance (RFC 1122 §4.2.3.3-4)
 *   - zero-window probes (persist timer), keepalive (RFC 1122 §4.2.3.6), TIME-WAIT (2 MSL)
 *   - challenge ACKs for RST and SYN in window (RFC 5961 §3-4)
 *
 *      CLOSED ─connect→ SYN-SENT ─SYN,ACK→ ESTABLISHED ─end()→ FIN-WAIT-1 ─ACK→ FIN-WAIT-2
 *      LISTEN ─SYN→ SYN-RECEIVED ─ACK→ ESTABLISHED ─FIN→ CLOSE-WAIT ─end()→ LAST-ACK ─ACK→ CLOSED
 *      FIN-WAIT-1 ─FIN→ CLOSING ─ACK→ TIME-WAIT;  FIN-WAIT-2 ─FIN→ TIME-WAIT ─2 MSL→ CLOSED
 *
 * Time comes from the host (`now()`); deadlines are read with `nextDeadline()` and fired with
 * `onTimer()`. Events are queued while the state machine runs and emitted when it is consistent,
 * so handlers may call back into the connection.
 */
import { Emitter } from '../emitter.ts';
import { SocketError } from '../errors.ts';
import { NewReno } from './congestion.ts';
import { Reassembly, Scoreboard, SendBuffer } from './buffers.ts';
import { RtoEstimator } from './rto.ts';
import { seqAdd, seqGt, seqLt, seqSub } from './seq.ts';
import { ACK, FIN, PSH, RST, SYN, type TcpOptions, type TcpSegment } from './segment.ts';

export type TcpState =
  | 'SYN-SENT'
  | 'SYN-RECEIVED'
  | 'ESTABLISHED'
  | 'FIN-WAIT-1'
  | 'FIN-WAIT-2'
  | 'CLOSE-WAIT'
  | 'CLOSING'
  | 'LAST-ACK'
  | 'TIME-WAIT'
  | 'CLOSED';

/** Tunables, all documented options of the stack. Times in ms, sizes in bytes. */
export interface TcpConfig {
  /** Receive buffer; sets the advertised window and the window-scale shift. */
  receiveBuffer: number;
  /** write() returns false once this many bytes wait to be acknowledged. */
  sendBuffer: number;
  minRto: number;
  maxRto: number;
  /** SYN (or SYN-ACK) retransmissions before ETIMEDOUT. */
  synRetries: number;
  /** Data retransmissions (consecutive RTOs) before ETIMEDOUT. */
  dataRetries: number;
  delayedAck: number;
  /** Maximum segment lifetime; TIME-WAIT lasts 2 MSL. */
  msl: number;
  keepaliveIdle: number;
  keepaliveInterval: number;
  keepaliveProbes: number;
  /** How long FIN-WAIT-2 waits for the peer's FIN after close(). */
  finWait2Timeout: number;
}

export const DEFAULT_TCP_CONFIG: TcpConfig = {
  receiveBuffer: 4 << 20,
  sendBuffer: 1 << 20,
  minRto: 200,
  maxRto: 60_000,
  synRetries: 6,
  dataRetries: 15,
  delayedAck: 40,
  msl: 30_000,
  keepaliveIdle: 7_200_000,
  keepaliveInterval: 75_000,
  keepaliveProbes: 9,
  finWait2Timeout: 60_000,
};

/** What a connection needs from its stack. */
export interface TcpHost {
  now(): number;
  /** Sends a segment from this connection (the stack adds addresses and the IP header). */
  transmit(conn: TcpConnection, seg: Omit<TcpSegment, 'srcPort' | 'dstPort' | 'urgent'>): void;
  /** The connection reached CLOSED: forget it. */
  release(conn: TcpConnection): void;
  /** A passively opened connection became ESTABLISHED. */
  established(conn: TcpConnection): void;
  /** Deadlines may have moved earlier. */
  wake(): void;
}

export type TcpEvents = {
  connect: [];
  data: [Uint8Array];
  end: [];
  drain: [];
  error: [SocketError];
  close: [hadError: boolean];
};

const MAX_WSCALE = 14; // RFC 7323 §2.3
const MAX_SACK_BLOCKS = 4;

type Timer = 'rto' | 'delack' | 'persist' | 'keepalive' | 'close';

export class TcpConnection extends Emitter<TcpEvents> {
  state: TcpState;
  readonly passive: boolean;

  // Send sequence space (RFC 9293 §3.3.1).
  iss: number;
  sndUna: number;
  sndNxt: number;
  /** Highest sequence number sent + 1 (SND.NXT moves back on a timeout; this does not). */
  sndMax: number;
  sndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  private sndWScale = 0;
  private maxSndWnd = 0;
  /** The effective send MSS. */
  mss: number;
  private readonly sendBuf = new SendBuffer();
  /** Sequence number of sendBuf's first byte. */
  private bufSeq: number;
  private finQueued = false;
  private finSeq: number | null = null;

  // Receive sequence space.
  irs = 0;
  rcvNxt = 0;
  private rcvWScale = 0;
  private rcvAdvRight = 0;
  private readonly reasm = new Reassembly();
  private readonly recvQueue: Uint8Array[] = [];
  private recvBuffered = 0;
  private paused = false;
  private finReceived = false;
  private endEmitted = false;
  private bytesUnacked = 0;

  // Options.
  private sackOk = false;
  private wsOk = false;
  private readonly localMss: number;

  // Retransmission, congestion.
  readonly rtoEst: RtoEstimator;
  private rttSeq: number | null = null;
  private rttTime = 0;
  private retries = 0;
  readonly cc: NewReno;
  private dupAcks = 0;
  private inRecovery = false;
  private recover = 0;
  private highRxt = 0;
  private readonly board = new Scoreboard();
  private persistBackoff = 0;
  private keepaliveOn = false;
  private keepaliveSent = 0;
  private lastRecv = 0;
  private appClosed = false;

  readonly timers: Record<Timer, number | null> = { rto: null, delack: null, persist: null, keepalive: null, close: null };
  noDelay = false;

  readonly stats = { segmentsIn: 0, segmentsOut: 0, retransmits: 0, bytesIn: 0, bytesOut: 0, fastRetransmits: 0, timeouts: 0 };

  private depth = 0;
  private readonly pending: (() => void)[] = [];
  private error: SocketError | null = null;

  constructor(
    private readonly host: TcpHost,
    readonly config: TcpConfig,
    readonly localAddress: Uint8Array,
    readonly localPort: number,
    readonly remoteAddress: Uint8Array,
    readonly remotePort: number,
    iss: number,
    /** Our MSS: the tunnel MTU minus IP and TCP headers. */
    localMss: number,
    passive: boolean,
  ) {
    super();
    this.passive = passive;
    this.state = passive ? 'SYN-RECEIVED' : 'SYN-SENT';
    this.iss = iss;
    this.sndUna = iss;
    this.sndNxt = iss;
    this.sndMax = iss;
    this.bufSeq = seqAdd(iss, 1);
    this.localMss = localMss;
    this.mss = Math.min(localMss, 536); // RFC 9293 §3.7.1 default until the peer's SYN says more
    this.rtoEst = new RtoEstimator(config.minRto, config.maxRto);
    this.cc = new NewReno(this.mss);
    while (this.rcvWScale < MAX_WSCALE && config.receiveBuffer >> this.rcvWScale > 0xffff) this.rcvWScale++;
    this.lastRecv = host.now();
  }

  override toString(): string {
    return `tcp(${this.localPort}→${this.remotePort})`;
  }

  // ---------------------------------------------------------------- event plumbing

  private queue(fn: () => void): void {
    this.pending.push(fn);
  }

  /** Runs `fn` as one step of the state machine, then emits the events it queued. */
  private step(fn: () => void): void {
    this.depth++;
    try {
      fn();
    } finally {
      this.depth--;
    }
    if (this.depth === 0) {
      while (this.pending.length > 0) this.pending.shift()!();
      this.host.wake();
    }
  }

  // ---------------------------------------------------------------- opening

  /** Active open (§3.10.1): send SYN. */
  openActive(): void {
    this.step(() => {
      this.sendSyn(false);
      this.armRto();
    });
  }

  /** Passive open from a SYN received by a listener (§3.10.7.2). */
  openPassive(syn: TcpSegment): void {
    this.step(() => {
      this.irs = syn.seq;
      this.rcvNxt = seqAdd(syn.seq, 1);
      this.takeSynOptions(syn);
      this.sndWnd = syn.window; // never scaled in a SYN
      this.sndWl1 = syn.seq;
      this.sndWl2 = syn.ack;
      this.sendSyn(true);
      this.armRto();
    });
  }

  private takeSynOptions(syn: TcpSegment): void {
    const o = syn.options;
    this.mss = Math.max(64, Math.min(this.localMss, o.mss ?? 536));
    this.cc.setMss(this.mss);
    if (o.windowScale !== undefined) {
      this.wsOk = true;
      this.sndWScale = Math.min(MAX_WSCALE, o.windowScale);
    } else {
      this.rcvWScale = 0;
    }
    this.sackOk = o.sackPermitted === true;
  }

  private sendSyn(ack: boolean): void {
    const options: TcpOptions = { mss: this.localMss, sackPermitted: true, windowScale: this.rcvWScale };
    if (ack) {
      // Only echo options the peer offered (RFC 7323 §2.2, RFC 2018 §2).
      if (!this.wsOk) delete options.windowScale;
      if (!this.sackOk) delete options.sackPermitted;
    }
    const wnd = Math.min(0xffff, this.receiveSpace());
    this.rcvAdvRight = seqAdd(this.rcvNxt, wnd);
    this.emitSegment(this.iss, SYN | (ack ? ACK : 0), wnd, options, undefined);
    if (seqGt(seqAdd(this.iss, 1), this.sndNxt)) this.sndNxt = seqAdd(this.iss, 1);
    if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
  }

  // ---------------------------------------------------------------- application API

  /** Queues data; false when the send buffer is over its limit (wait for 'drain'). */
  write(data: Uint8Array): boolean {
    if (this.finQueued || this.state === 'CLOSED' || this.state === 'TIME-WAIT') {
      throw new SocketError('EPIPE', 'write after end');
    }
    if (data.length > 0) {
      this.step(() => {
        this.sendBuf.push(data);
        if (this.isSynchronized()) this.output();
      });
    }
    return this.sendBuf.length < this.config.sendBuffer;
  }

  /** Bytes written but not yet acknowledged. */
  get bufferedAmount(): number {
    return this.sendBuf.length;
  }

  /** Half-close: send FIN after the buffered data. */
  end(): void {
    if (this.finQueued || this.state === 'CLOSED') return;
    this.step(() => {
      this.finQueued = true;
      if (this.state === 'ESTABLISHED' || this.state === 'SYN-RECEIVED') this.setState('FIN-WAIT-1');
      else if (this.state === 'CLOSE-WAIT') this.setState('LAST-ACK');
      else if (this.state === 'SYN-SENT') {
        this.terminate(null);
        return;
      }
      this.output();
    });
  }

  /** end(), and the application will not read any more. */
  close(): void {
    this.appClosed = true;
    this.paused = false;
    this.recvQueue.length = 0;
    this.recvBuffered = 0;
    this.end();
  }

  /** Abort with a RST (§3.10.5 ABORT). */
  abort(): void {
    if (this.state === 'CLOSED') return;
    this.step(() => {
      if (this.isSynchronized() || this.state === 'SYN-RECEIVED') this.emitSegment(this.sndNxt, RST | ACK, 0, undefined, undefined);
      this.terminate(null);
    });
  }

  /** Stops 'data' events; received data is buffered and the window closes as it fills. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.step(() => this.deliver());
  }

  setNoDelay(on = true): void {
    this.noDelay = on;
    if (on && this.isSynchronized()) this.step(() => this.output());
  }

  setKeepAlive(on: boolean): void {
    this.keepaliveOn = on;
    this.keepaliveSent = 0;
    this.timers.keepalive = on && this.state === 'ESTABLISHED' ? this.host.now() + this.config.keepaliveIdle : null;
    this.host.wake();
  }

  // ---------------------------------------------------------------- helpers

  private isSynchronized(): boolean {
    return this.state !== 'SYN-SENT' && this.state !== 'SYN-RECEIVED' && this.state !== 'CLOSED';
  }

  private setState(s: TcpState): void {
    this.state = s;
  }

  private receiveSpace(): number {
    return Math.max(0, this.config.receiveBuffer - this.recvBuffered - this.reasm.bytes);
  }

  /** The window field to advertise now, never shrinking the right edge (RFC 9293 §3.8.6.2.2). */
  private windowField(): number {
    let wnd = this.receiveSpace();
    // Receiver SWS avoidance: don't open the window by less than min(MSS, buffer/2).
    const cur = Math.max(0, seqSub(this.rcvAdvRight, this.rcvNxt));
    if (wnd > cur && wnd - cur < Math.min(this.mss, this.config.receiveBuffer >> 1)) wnd = cur;
    if (wnd < cur) wnd = cur;
    const field = Math.min(0xffff, wnd >>> this.rcvWScale);
    const right = seqAdd(this.rcvNxt, field << this.rcvWScale);
    if (seqGt(right, this.rcvAdvRight)) this.rcvAdvRight = right;
    return field;
  }

  private emitSegment(seq: number, flags: number, window: number, options: TcpOptions | undefined, payload: Uint8Array | undefined): void {
    const ack = flags & ACK ? this.rcvNxt : 0;
    this.stats.segmentsOut++;
    this.host.transmit(this, { seq, ack, flags, window, options: options ?? {}, payload: payload ?? EMPTY });
    if (flags & ACK) {
      this.timers.delack = null;
      this.bytesUnacked = 0;
    }
  }

  /** An ACK now, with SACK blocks when out-of-order data is held. */
  private sendAck(): void {
    const options: TcpOptions = {};
    if (this.sackOk && !this.reasm.empty) options.sack = this.reasm.sackBlocks(MAX_SACK_BLOCKS);
    this.emitSegment(this.sndNxt, ACK, this.windowField(), options, undefined);
  }

  private armRto(): void {
    if (this.timers.rto === null) this.timers.rto = this.host.now() + this.rtoEst.rto;
  }

  private restartRto(): void {
    this.timers.rto = this.host.now() + this.rtoEst.rto;
  }

  /** Moves to CLOSED, reporting `err` (if any) to the application. */
  private terminate(err: SocketError | null): void {
    if (this.state === 'CLOSED') return;
    this.setState('CLOSED');
    for (const t of Object.keys(this.timers) as Timer[]) this.timers[t] = null;
    this.sendBuf.clear();
    this.reasm.clear();
    this.host.release(this);
    if (err) {
      this.error = err;
      this.queue(() => this.emit('error', err));
    }
    this.queue(() => this.emit('close', err !== null));
  }

  // ---------------------------------------------------------------- segment arrival (§3.10.7)

  input(seg: TcpSegment): void {
    if (this.state === 'CLOSED') return;
    this.stats.segmentsIn++;
    this.step(() => {
      this.lastRecv = this.host.now();
      if (this.keepaliveOn && this.timers.keepalive !== null) {
        this.keepaliveSent = 0;
        this.timers.keepalive = this.lastRecv + this.config.keepaliveIdle;
      }
      if (this.state === 'SYN-SENT') this.inputSynSent(seg);
      else this.inputSynchronized(seg);
    });
  }

  private inputSynSent(seg: TcpSegment): void {
    const f = seg.flags;
    const ackOk = (f & ACK) !== 0 && seqGt(seg.ack, this.iss) && !seqGt(seg.ack, this.sndNxt);
    if (f & ACK && !ackOk) {
      if (!(f & RST)) this.emitSegment(seg.ack, RST, 0, undefined, undefined);
      return;
    }
    if (f & RST) {
      if (ackOk) this.terminate(new SocketError('ECONNREFUSED', 'connection refused'));
      return;
    }
    if (!(f & SYN)) return;
    this.irs = seg.seq;
    this.rcvNxt = seqAdd(seg.seq, 1);
    this.takeSynOptions(seg);
    if (ackOk) {
      this.sndUna = seg.ack;
      this.board.clear();
      this.timers.rto = null;
      this.sampleRtt(seg.ack);
      this.retries = 0;
      this.setState('ESTABLISHED');
      this.updateWindow(seg, true);
      this.onEstablished();
      if (seg.payload.length > 0 || f & FIN) this.processData(seg, seqAdd(seg.seq, 1));
      else this.sendAck();
      this.output();
    } else {
      // Simultaneous open (§3.5, figure 8).
      this.setState('SYN-RECEIVED');
      this.sndWnd = seg.window;
      this.sndWl1 = seg.seq;
      this.sendSyn(true);
    }
  }

  private onEstablished(): void {
    if (this.keepaliveOn) this.timers.keepalive = this.host.now() + this.config.keepaliveIdle;
    if (this.passive) this.host.established(this);
    else this.queue(() => this.emit('connect'));
  }

  private inputSynchronized(seg: TcpSegment): void {
    const f = seg.flags;
    let seq = seg.seq;
    let payload = seg.payload;
    let syn = (f & SYN) !== 0;
    let fin = (f & FIN) !== 0;
    const segLen = payload.length + (syn ? 1 : 0) + (fin ? 1 : 0);
    const wnd = Math.max(0, seqSub(this.rcvAdvRight, this.rcvNxt));

    // 1. Sequence number check (§3.10.7.4, the four cases).
    let acceptable: boolean;
    const off = seqSub(seq, this.rcvNxt);
    if (segLen === 0) acceptable = wnd === 0 ? off === 0 : off >= 0 && off < wnd;
    else acceptable = wnd > 0 && ((off >= 0 && off < wnd) || (off + segLen - 1 >= 0 && off + segLen - 1 < wnd));
    if (!acceptable) {
      // A zero window still takes valid ACKs (§3.10.7.4); everything else gets an ACK.
      if (f & RST) return;
      if (wnd === 0 && off === 0 && f & ACK) this.processAck(seg);
      if (this.state === 'CLOSED') return;
      this.sendAck();
      return;
    }
    // Trim to the window: drop what we already have, then what is beyond the right edge.
    if (off < 0) {
      let cut = -off;
      if (syn) {
        syn = false;
        cut--;
      }
      payload = payload.subarray(Math.min(cut, payload.length));
      seq = this.rcvNxt;
    }
    const room = wnd - Math.max(0, seqSub(seq, this.rcvNxt));
    if (payload.length > room) {
      payload = payload.subarray(0, Math.max(0, room));
      fin = false;
    }

    // 2. RST (RFC 5961 §3.2): exact match resets, otherwise a challenge ACK.
    if (f & RST) {
      if (seg.seq !== this.rcvNxt) {
        this.sendAck();
        return;
      }
      if (this.state === 'SYN-RECEIVED' && this.passive) {
        this.terminate(null);
        return;
      }
      const refused = this.state === 'SYN-RECEIVED';
      const quiet = this.state === 'CLOSING' || this.state === 'LAST-ACK' || this.state === 'TIME-WAIT';
      this.terminate(quiet ? null : new SocketError(refused ? 'ECONNREFUSED' : 'ECONNRESET', refused ? 'connection refused' : 'connection reset by peer'));
      return;
    }

    // 4. SYN in the window of a synchronized connection (RFC 5961 §4): challenge ACK.
    if (syn) {
      this.sendAck();
      return;
    }

    // 5. ACK.
    if (!(f & ACK)) return;
    if (this.state === 'SYN-RECEIVED') {
      if (seqGt(seg.ack, this.sndUna) && !seqGt(seg.ack, this.sndNxt)) {
        this.setState(this.finQueued ? 'FIN-WAIT-1' : 'ESTABLISHED');
        this.sndWnd = seg.window << this.sndWScale;
        this.maxSndWnd = Math.max(this.maxSndWnd, this.sndWnd);
        this.sndWl1 = seg.seq;
        this.sndWl2 = seg.ack;
        this.onEstablished();
      } else {
        this.emitSegment(seg.ack, RST, 0, undefined, undefined);
        return;
      }
    }
    this.processAck(seg);
    if (this.state === 'CLOSED') return;

    // 7-8. Data and FIN.
    if (payload.length > 0 || fin) {
      this.processData({ ...seg, seq, payload, flags: fin ? f : f & ~FIN }, seq);
    }
    this.output();
  }

  private sampleRtt(ack: number): void {
    if (this.rttSeq !== null && !seqLt(ack, this.rttSeq)) {
      this.rtoEst.sample(this.host.now() - this.rttTime);
      this.rttSeq = null;
    }
  }

  private updateWindow(seg: TcpSegment, force: boolean): boolean {
    if (force || seqLt(this.sndWl1, seg.seq) || (this.sndWl1 === seg.seq && !seqLt(seg.ack, this.sndWl2))) {
      const changed = this.sndWnd !== seg.window << this.sndWScale;
      this.sndWnd = (seg.window << this.sndWScale) >>> 0;
      this.maxSndWnd = Math.max(this.maxSndWnd, this.sndWnd);
      this.sndWl1 = seg.seq;
      this.sndWl2 = seg.ack;
      if (this.sndWnd > 0) {
        this.timers.persist = null;
        this.persistBackoff = 0;
      }
      return changed;
    }
    return false;
  }

  private processAck(seg: TcpSegment): void {
    const ack = seg.ack;
    if (seqGt(ack, this.sndMax)) {
      // Acknowledges something not yet sent (§3.10.7.4 fifth check): ACK and drop.
      this.sendAck();
      return;
    }
    if (this.sackOk && seg.options.sack) {
      for (const b of seg.options.sack) this.board.add(b.left, b.right, ack, this.sndMax);
    }
    const flight = seqSub(this.sndMax, this.sndUna);
    if (seqGt(ack, this.sndUna)) {
      const acked = seqSub(ack, this.sndUna);
      this.sndUna = ack;
      if (seqLt(this.sndNxt, ack)) this.sndNxt = ack;
      const dataEnd = seqAdd(this.bufSeq, this.sendBuf.length);
      const upTo = seqLt(ack, dataEnd) ? ack : dataEnd;
      const dataAcked = Math.max(0, seqSub(upTo, this.bufSeq));
      if (dataAcked > 0) {
        this.sendBuf.consume(dataAcked);
        this.bufSeq = seqAdd(this.bufSeq, dataAcked);
        this.stats.bytesOut += dataAcked;
      }
      this.board.advance(ack);
      this.sampleRtt(ack);
      this.retries = 0;
      this.rtoEst.resetBackoff();
      this.dupAcks = 0;
      if (this.inRecovery) {
        if (!seqLt(ack, this.recover)) {
          this.inRecovery = false;
          this.cc.exitRecovery(seqSub(this.sndMax, ack));
        } else {
          // Partial ACK (RFC 6582 §3.2 step 3): retransmit the next hole at once.
          this.cc.onPartialAck(acked);
          this.retransmitNext();
        }
      } else {
        this.cc.onAck(acked);
      }
      if (this.sndUna === this.sndMax) this.timers.rto = null;
      else this.restartRto();
      this.updateWindow(seg, false);
      if (this.sendBuf.length < this.config.sendBuffer && this.sendBuf.length + dataAcked >= this.config.sendBuffer) {
        this.queue(() => this.emit('drain'));
      }
      this.onFinAcked();
    } else {
      const windowChanged = this.updateWindow(seg, false);
      // Duplicate ACK (RFC 5681 §2): no data, no window change, data outstanding.
      if (ack === this.sndUna && seg.payload.length === 0 && !(seg.flags & (SYN | FIN)) && !windowChanged && flight > 0) {
        this.onDupAck(flight);
      }
    }
  }

  private onDupAck(flight: number): void {
    this.dupAcks++;
    if (this.inRecovery) {
      this.cc.onDupAckInRecovery();
      if (this.sackOk) this.retransmitNext();
      return;
    }
    const sackLoss = this.sackOk && this.board.sacked >= 3 * this.mss;
    if (this.dupAcks === 3 || (sackLoss && this.dupAcks < 3)) {
      // Fast retransmit (RFC 5681 §3.2), unless this loss was already handled (RFC 6582 §3.2 step 1).
      if (!seqGt(this.sndUna, this.recover) && this.recover !== 0 && seqLt(this.sndUna, this.recover)) return;
      this.inRecovery = true;
      this.recover = this.sndMax;
      this.highRxt = this.sndUna;
      this.cc.enterRecovery(flight);
      this.stats.fastRetransmits++;
      this.retransmitNext();
    }
  }

  /** Retransmits one segment: the next un-SACKed hole from SND.UNA (or past the last one resent). */
  private retransmitNext(): void {
    let from = seqLt(this.highRxt, this.sndUna) ? this.sndUna : this.highRxt;
    let len = this.mss;
    if (this.sackOk && this.board.ranges.length > 0) {
      const hole = this.board.nextHole(from, this.mss);
      if (!hole) {
        if (from !== this.sndUna) return;
      } else {
        from = hole.seq;
        len = hole.len;
      }
    }
    if (!seqLt(from, this.sndMax)) return;
    this.retransmit(from, len);
    this.highRxt = seqAdd(from, Math.max(1, Math.min(len, seqSub(this.sndMax, from))));
  }

  /** Resends up to `len` bytes (or the FIN) at `seq`. */
  private retransmit(seq: number, len: number): void {
    this.stats.retransmits++;
    this.rttSeq = null; // Karn's rule
    const off = seqSub(seq, this.bufSeq);
    const avail = this.sendBuf.length - off;
    const n = Math.max(0, Math.min(len, avail));
    let flags = ACK;
    if (n > 0 && n === avail) flags |= PSH;
    if (this.finSeq !== null && seqAdd(seq, n) === this.finSeq && seqGt(this.sndMax, this.finSeq)) flags |= FIN;
    if (n === 0 && !(flags & FIN)) return;
    this.emitSegment(seq, flags, this.windowField(), undefined, n > 0 ? this.sendBuf.read(off, n) : undefined);
  }

  private onFinAcked(): void {
    if (this.finSeq === null || !seqGt(this.sndUna, this.finSeq)) return;
    switch (this.state) {
      case 'FIN-WAIT-1':
        this.setState('FIN-WAIT-2');
        if (this.appClosed) this.timers.close = this.host.now() + this.config.finWait2Timeout;
        break;
      case 'CLOSING':
        this.enterTimeWait();
        break;
      case 'LAST-ACK':
        this.terminate(null);
        break;
    }
  }

  private enterTimeWait(): void {
    this.setState('TIME-WAIT');
    for (const t of Object.keys(this.timers) as Timer[]) this.timers[t] = null;
    this.timers.close = this.host.now() + 2 * this.config.msl;
  }

  /** Segment text and FIN (§3.10.7.4 seventh and eighth steps); `seq` is the trimmed start. */
  private processData(seg: TcpSegment, seq: number): void {
    if (this.state === 'TIME-WAIT') {
      // A retransmitted FIN: ACK it and restart the 2 MSL timer.
      if (seg.flags & FIN) {
        this.timers.close = this.host.now() + 2 * this.config.msl;
        this.sendAck();
      }
      return;
    }
    const canReceive = this.state === 'ESTABLISHED' || this.state === 'FIN-WAIT-1' || this.state === 'FIN-WAIT-2';
    const payload = seg.payload;
    if (payload.length > 0 && !canReceive) return;
    if (payload.length > 0 && this.appClosed) {
      // Data for a socket the application closed: reset (as kernels do on close with unread data).
      this.emitSegment(this.sndNxt, RST | ACK, 0, undefined, undefined);
      this.terminate(null);
      return;
    }
    const fin = (seg.flags & FIN) !== 0;
    if (seq === this.rcvNxt) {
      const hadHoles = !this.reasm.empty;
      if (payload.length > 0) this.accept(payload);
      for (const chunk of this.reasm.take(this.rcvNxt)) this.accept(chunk);
      if (fin) this.reasm.finSeq = seqAdd(seq, payload.length);
      const finAt = this.reasm.finSeq;
      if (finAt !== null && finAt === this.rcvNxt) this.receiveFin();
      this.bytesUnacked += payload.length;
      this.deliver();
      // ACK at once for a FIN, a filled hole, or two full segments (RFC 1122 §4.2.3.2; RFC 5681 §4.2).
      if (this.finReceived || hadHoles || this.bytesUnacked >= 2 * this.mss) this.sendAck();
      else if (this.timers.delack === null) this.timers.delack = this.host.now() + this.config.delayedAck;
    } else {
      // Out of order: keep it and send a duplicate ACK with SACK at once (RFC 5681 §4.2).
      if (payload.length > 0) this.reasm.insert(seq, payload, this.rcvNxt);
      if (fin) this.reasm.finSeq = seqAdd(seq, payload.length);
      this.sendAck();
    }
  }

  private accept(data: Uint8Array): void {
    this.rcvNxt = seqAdd(this.rcvNxt, data.length);
    this.stats.bytesIn += data.length;
    if (this.appClosed) return;
    this.recvQueue.push(data);
    this.recvBuffered += data.length;
  }

  private receiveFin(): void {
    if (this.finReceived) return;
    this.finReceived = true;
    this.rcvNxt = seqAdd(this.rcvNxt, 1);
    this.reasm.finSeq = null;
    switch (this.state) {
      case 'ESTABLISHED':
        this.setState('CLOSE-WAIT');
        break;
      case 'FIN-WAIT-1':
        this.setState('CLOSING');
        break;
      case 'FIN-WAIT-2':
        this.enterTimeWait();
        break;
    }
  }

  /** Hands buffered data to the application unless paused; reports the end once. */
  private deliver(): void {
    if (this.paused) return;
    const before = this.recvBuffered;
    while (this.recvQueue.length > 0 && !this.paused) {
      const chunk = this.recvQueue.shift()!;
      this.recvBuffered -= chunk.length;
      this.queue(() => this.emit('data', chunk));
    }
    if (this.finReceived && this.recvQueue.length === 0 && !this.endEmitted) {
      this.endEmitted = true;
      this.queue(() => this.emit('end'));
    }
    // Reading opened the window a lot after it was nearly shut: tell the peer (window update).
    const cur = Math.max(0, seqSub(this.rcvAdvRight, this.rcvNxt));
    if (before > 0 && this.isSynchronized() && cur < 2 * this.mss && this.receiveSpace() - cur >= 2 * this.mss) this.sendAck();
  }

  // ---------------------------------------------------------------- output

  /** Sends what the windows, Nagle and the state allow. */
  private output(): void {
    const s = this.state;
    if (s !== 'ESTABLISHED' && s !== 'CLOSE-WAIT' && s !== 'FIN-WAIT-1' && s !== 'CLOSING' && s !== 'LAST-ACK') return;
    const now = this.host.now();
    for (;;) {
      const inFlight = seqSub(this.sndNxt, this.sndUna);
      const wnd = Math.min(this.cc.cwnd, this.sndWnd);
      const off = seqSub(this.sndNxt, this.bufSeq);
      const unsent = this.sendBuf.length - Math.max(0, off);
      if (unsent > 0 && off >= 0) {
        const can = wnd - inFlight;
        let len = Math.min(unsent, this.mss, can);
        if (len <= 0) {
          if (this.sndWnd === 0 && inFlight === 0) this.armPersist(now);
          break;
        }
        if (len < this.mss && len < unsent) {
          // Sender SWS avoidance (RFC 1122 §4.2.3.4): wait for a usable window.
          if (len < (this.maxSndWnd >> 1) && inFlight > 0) break;
        }
        if (len < this.mss && !this.noDelay && inFlight > 0 && !this.finQueued) break; // Nagle
        len = Math.max(1, len);
        const payload = this.sendBuf.read(off, len);
        let flags = ACK;
        if (len === unsent) flags |= PSH;
        const end = seqAdd(this.sndNxt, len);
        // Piggyback our FIN on the last segment when the window allows.
        if (len === unsent && this.finQueued && can > len) {
          flags |= FIN;
          this.finSeq = end;
        }
        const resend = seqLt(this.sndNxt, this.sndMax);
        if (resend) {
          this.stats.retransmits++;
          this.rttSeq = null;
        } else if (this.rttSeq === null) {
          this.rttSeq = end;
          this.rttTime = now;
        }
        this.emitSegment(this.sndNxt, flags, this.windowField(), undefined, payload);
        this.sndNxt = flags & FIN ? seqAdd(end, 1) : end;
        if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
        this.armRto();
        continue;
      }
      // All data sent: the FIN, if queued and not yet sent at this position.
      if (this.finQueued && off === this.sendBuf.length && (this.finSeq === null || !seqGt(this.sndNxt, this.finSeq))) {
        this.finSeq = this.sndNxt;
        if (seqLt(this.sndNxt, this.sndMax)) this.stats.retransmits++;
        this.emitSegment(this.sndNxt, FIN | ACK, this.windowField(), undefined, undefined);
        this.sndNxt = seqAdd(this.sndNxt, 1);
        if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
        this.armRto();
      }
      break;
    }
  }

  private armPersist(now: number): void {
    if (this.timers.persist !== null) return;
    const d = Math.min(this.config.maxRto, Math.max(this.rtoEst.rto, 200) * 2 ** this.persistBackoff);
    this.timers.persist = now + d;
  }

  // ---------------------------------------------------------------- timers

  nextDeadline(): number | null {
    let min: number | null = null;
    for (const t of Object.values(this.timers)) if (t !== null && (min === null || t < min)) min = t;
    return min;
  }

  onTimer(now: number): void {
    this.step(() => {
      const t = this.timers;
      if (t.close !== null && t.close <= now) {
        t.close = null;
        this.terminate(this.state === 'FIN-WAIT-2' ? null : null);
        return;
      }
      if (t.delack !== null && t.delack <= now) {
        t.delack = null;
        if (this.isSynchronized()) this.sendAck();
      }
      if (t.rto !== null && t.rto <= now) {
        t.rto = null;
        this.onRto();
      }
      if (this.state === 'CLOSED') return;
      if (t.persist !== null && t.persist <= now) {
        t.persist = null;
        this.persistBackoff = Math.min(this.persistBackoff + 1, 10);
        // A zero-window probe: an old sequence number makes the receiver answer with its window.
        this.emitSegment(seqAdd(this.sndUna, -1), ACK, this.windowField(), undefined, undefined);
        this.armPersist(now);
      }
      if (t.keepalive !== null && t.keepalive <= now) {
        if (this.keepaliveSent >= this.config.keepaliveProbes) {
          this.terminate(new SocketError('ETIMEDOUT', 'connection timed out (keepalive probes unanswered)'));
          return;
        }
        this.keepaliveSent++;
        this.emitSegment(seqAdd(this.sndUna, -1), ACK, this.windowField(), undefined, undefined);
        t.keepalive = now + this.config.keepaliveInterval;
      }
    });
  }

  private onRto(): void {
    this.stats.timeouts++;
    this.retries++;
    this.rttSeq = null;
    if (this.state === 'SYN-SENT' || this.state === 'SYN-RECEIVED') {
      if (this.retries > this.config.synRetries) {
        this.terminate(this.passive ? null : new SocketError('ETIMEDOUT', 'connection timed out (no answer to SYN)'));
        return;
      }
      this.rtoEst.backoff();
      this.sendSyn(this.state === 'SYN-RECEIVED');
      this.armRto();
      return;
    }
    if (this.sndUna === this.sndMax) return;
    if (this.retries > this.config.dataRetries) {
      this.emitSegment(this.sndNxt, RST | ACK, 0, undefined, undefined);
      this.terminate(new SocketError('ETIMEDOUT', 'connection timed out (data not acknowledged)'));
      return;
    }
    // RFC 6298 §5.4-5.7 and RFC 5681 §3.1: back off, shrink to one segment, go back to SND.UNA.
    this.cc.onTimeout(seqSub(this.sndMax, this.sndUna));
    this.inRecovery = false;
    this.recover = this.sndMax;
    this.dupAcks = 0;
    this.board.clear();
    this.rtoEst.backoff();
    this.sndNxt = this.sndUna;
    if (this.finSeq !== null && !seqGt(this.sndUna, this.finSeq) && this.sendBuf.length === 0) {
      this.retransmit(this.sndUna, 0);
      this.sndNxt = seqAdd(this.finSeq, 1);
    } else {
      this.output();
    }
    this.armRto();
  }

  /** An ICMP error about this connection (RFC 1122 §4.2.3.9): fatal only before it is up. */
  icmpError(code: 'EHOSTUNREACH' | 'ECONNREFUSED', message: string): void {
    if (this.state === 'SYN-SENT' || this.state === 'SYN-RECEIVED') {
      this.step(() => this.terminate(new SocketError(code, message)));
    }
  }

  /** The error the connection ended with, if any. */
  get lastError(): SocketError | null {
    return this.error;
  }
}

const EMPTY = new Uint8Array(0);
