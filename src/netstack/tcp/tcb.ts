/**
 * The transmission control block (RFC 9293 §3.3.1) of a TCP connection: its variables, its
 * options and the helpers every part of the state machine uses (segments out, windows, ACKs,
 * timers, termination). `TcpConnection` (connection.ts) adds event processing on top.
 */
import { Emitter } from '../emitter.ts';
import { SocketError } from '../errors.ts';
import { NewReno } from './congestion.ts';
import { Reassembly, SendBuffer } from './buffers.ts';
import { LossRecovery } from './recovery.ts';
import { RtoEstimator } from './rto.ts';
import { seqAdd, seqGt, seqSub } from './seq.ts';
import { ACK, SYN, type TcpOptions, type TcpSegment } from './segment.ts';
import type { TcpConnection } from './connection.ts';

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

export const MAX_WSCALE = 14; // RFC 7323 §2.3
export const MAX_SACK_BLOCKS = 4;

export type Timer = 'rto' | 'tlp' | 'delack' | 'persist' | 'keepalive' | 'close';

export const EMPTY = new Uint8Array(0);

export abstract class TcpBase extends Emitter<TcpEvents> {
  state: TcpState;
  readonly passive: boolean;

  // Send sequence space (RFC 9293 §3.3.1).
  iss: number;
  sndUna: number;
  sndNxt: number;
  /** Highest sequence number sent + 1 (SND.NXT moves back on a timeout; this does not). */
  sndMax: number;
  sndWnd = 0;
  protected sndWl1 = 0;
  protected sndWl2 = 0;
  protected sndWScale = 0;
  protected maxSndWnd = 0;
  /** The effective send MSS. */
  mss: number;
  protected readonly sendBuf = new SendBuffer();
  /** Sequence number of sendBuf's first byte. */
  protected bufSeq: number;
  protected finQueued = false;
  protected finSeq: number | null = null;

  // Receive sequence space.
  irs = 0;
  rcvNxt = 0;
  protected rcvWScale = 0;
  protected rcvAdvRight = 0;
  protected readonly reasm = new Reassembly();
  protected readonly recvQueue: Uint8Array[] = [];
  protected recvBuffered = 0;
  protected paused = false;
  protected finReceived = false;
  protected endEmitted = false;
  protected bytesUnacked = 0;

  // Options.
  protected sackOk = false;
  protected wsOk = false;
  protected readonly localMss: number;

  // Retransmission, congestion.
  readonly rtoEst: RtoEstimator;
  protected rttSeq: number | null = null;
  protected rttTime = 0;
  protected retries = 0;
  readonly cc: NewReno;
  readonly rec: LossRecovery;
  protected tlpSent = false;
  /** When SND.UNA last moved (or data was first sent after it stood still). */
  protected lastProgress = 0;
  protected persistBackoff = 0;
  protected keepaliveOn = false;
  protected keepaliveSent = 0;
  protected lastRecv = 0;
  protected appClosed = false;

  readonly timers: Record<Timer, number | null> = { rto: null, tlp: null, delack: null, persist: null, keepalive: null, close: null };
  noDelay = false;

  readonly stats = { segmentsIn: 0, segmentsOut: 0, retransmits: 0, bytesIn: 0, bytesOut: 0, fastRetransmits: 0, timeouts: 0 };

  protected depth = 0;
  protected readonly pending: (() => void)[] = [];
  protected error: SocketError | null = null;

  constructor(
    protected readonly host: TcpHost,
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
    this.rec = new LossRecovery(this.cc, () => this.sackOk);
    while (this.rcvWScale < MAX_WSCALE && config.receiveBuffer >> this.rcvWScale > 0xffff) this.rcvWScale++;
    this.lastRecv = host.now();
  }

  override toString(): string {
    return `tcp(${this.localPort}→${this.remotePort})`;
  }

  // ---------------------------------------------------------------- event plumbing

  protected queue(fn: () => void): void {
    this.pending.push(fn);
  }

  /** Runs `fn` as one step of the state machine, then emits the events it queued. */
  protected step(fn: () => void): void {
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

  protected takeSynOptions(syn: TcpSegment): void {
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

  protected sendSyn(ack: boolean): void {
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

  // ---------------------------------------------------------------- helpers

  protected isSynchronized(): boolean {
    return this.state !== 'SYN-SENT' && this.state !== 'SYN-RECEIVED' && this.state !== 'CLOSED';
  }

  protected setState(s: TcpState): void {
    this.state = s;
  }

  protected receiveSpace(): number {
    return Math.max(0, this.config.receiveBuffer - this.recvBuffered - this.reasm.bytes);
  }

  /** The window field to advertise now, never shrinking the right edge (RFC 9293 §3.8.6.2.2). */
  protected windowField(): number {
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

  protected emitSegment(seq: number, flags: number, window: number, options: TcpOptions | undefined, payload: Uint8Array | undefined): void {
    const ack = flags & ACK ? this.rcvNxt : 0;
    this.stats.segmentsOut++;
    this.host.transmit(this as unknown as TcpConnection, { seq, ack, flags, window, options: options ?? {}, payload: payload ?? EMPTY });
    if (flags & ACK) {
      this.timers.delack = null;
      this.bytesUnacked = 0;
    }
  }

  /** An ACK now, with SACK blocks when out-of-order data is held (and a DSACK block first). */
  protected sendAck(dsack?: { left: number; right: number }): void {
    const options: TcpOptions = {};
    if (this.sackOk && (dsack || !this.reasm.empty)) {
      const blocks = this.reasm.sackBlocks(MAX_SACK_BLOCKS);
      if (dsack) blocks.unshift(dsack);
      options.sack = blocks.slice(0, MAX_SACK_BLOCKS);
    }
    this.emitSegment(this.sndNxt, ACK, this.windowField(), options, undefined);
  }

  protected armRto(): void {
    if (this.timers.rto === null) this.timers.rto = this.host.now() + this.rtoEst.rto;
  }

  protected restartRto(): void {
    this.timers.rto = this.host.now() + this.rtoEst.rto;
  }

  /** Moves to CLOSED, reporting `err` (if any) to the application. */
  protected terminate(err: SocketError | null): void {
    if (this.state === 'CLOSED') return;
    this.setState('CLOSED');
    for (const t of Object.keys(this.timers) as Timer[]) this.timers[t] = null;
    this.sendBuf.clear();
    this.reasm.clear();
    this.host.release(this as unknown as TcpConnection);
    if (err) {
      this.error = err;
      this.queue(() => this.emit('error', err));
    }
    this.queue(() => this.emit('close', err !== null));
  }

  /** Sends what the windows allow (connection.ts). */
  protected abstract output(limit?: number): void;
}
