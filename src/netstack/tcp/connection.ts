/**
 * One TCP connection: the RFC 9293 state machine (§3.10 event processing), with
 *   - MSS (§3.7.1) and window scaling (RFC 7323 §2), SACK-permitted / SACK (RFC 2018)
 *   - retransmission timer per RFC 6298 with Karn's rule and backoff
 *   - fast retransmit; SACK-based recovery (RFC 6675) or NewReno (RFC 6582): see recovery.ts
 *   - tail loss probes (RFC 8985 §7), DSACK for duplicates (RFC 2883)
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
import { SocketError } from '../errors.ts';
import { seqAdd, seqGt, seqLt, seqSub } from './seq.ts';
import { ACK, FIN, PSH, RST, SYN, type TcpSegment } from './segment.ts';
import { TcpBase, type Timer } from './tcb.ts';

/**
 * In a burst, ACK at least every this many full segments (~20 KB at the tailnet MSS) rather than
 * once at its end: Linux's GRO caps its stretch at 64 KB for the same reason — the sender's next
 * data is already in flight while we work through the rest of the burst.
 */
const STRETCH_ACK_SEGMENTS = 16;

export { DEFAULT_TCP_CONFIG, type TcpConfig, type TcpEvents, type TcpHost, type TcpState } from './tcb.ts';

export class TcpConnection extends TcpBase {
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
      this.rec.board.clear();
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
      // Old data again: report it as a duplicate (DSACK, RFC 2883) so the sender learns of reordering.
      const dup = payload.length > 0 && off < 0 && off + payload.length <= 0;
      this.sendAck(dup ? { left: seq, right: seqAdd(seq, payload.length) } : undefined);
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
    if (this.sackOk && seg.options.sack) this.rec.onSack(seg.options.sack, ack, this.sndMax);
    const flight = seqSub(this.sndMax, this.sndUna);
    if (seqGt(ack, this.sndUna)) {
      const acked = seqSub(ack, this.sndUna);
      this.sndUna = ack;
      this.lastProgress = this.host.now();
      if (seqLt(this.sndNxt, ack)) this.sndNxt = ack;
      const dataEnd = seqAdd(this.bufSeq, this.sendBuf.length);
      const upTo = seqLt(ack, dataEnd) ? ack : dataEnd;
      const dataAcked = Math.max(0, seqSub(upTo, this.bufSeq));
      if (dataAcked > 0) {
        this.sendBuf.consume(dataAcked);
        this.bufSeq = seqAdd(this.bufSeq, dataAcked);
        this.stats.bytesOut += dataAcked;
      }
      this.sampleRtt(ack);
      this.retries = 0;
      this.rtoEst.resetBackoff();
      if (this.rec.onNewAck(ack, acked, this.sndMax) === 'partial') this.retransmitNext();
      if (this.sndUna === this.sndMax) {
        this.timers.rto = null;
        this.timers.tlp = null;
      } else {
        this.restartRto();
        this.tlpSent = false;
        this.armTlp(true);
      }
      this.updateWindow(seg, false);
      if (this.sendBuf.length < this.config.sendBuffer && this.sendBuf.length + dataAcked >= this.config.sendBuffer) {
        this.queue(() => this.emit('drain'));
      }
      this.onFinAcked();
    } else {
      const windowChanged = this.updateWindow(seg, false);
      // Duplicate ACK (RFC 5681 §2): no data, no window change, data outstanding.
      if (ack === this.sndUna && seg.payload.length === 0 && !(seg.flags & (SYN | FIN)) && !windowChanged && flight > 0) {
        const stalled = this.host.now() - this.lastProgress;
        if (this.rec.onDupAck(flight, this.sndUna, this.sndMax, this.mss, stalled, this.rtoEst.srtt)) {
          this.stats.fastRetransmits++;
          this.timers.tlp = null;
          this.retransmitNext(); // fast retransmit (RFC 5681 §3.2 step 2), whatever the window
        } else if (!this.rec.inRecovery && this.rec.board.sacked > 0) {
          // Not enough duplicates yet: RACK's reorder timer decides by time instead.
          const w = this.rec.reorderWindow(this.rtoEst.srtt);
          if (w !== null) {
            const at = this.lastProgress + w + 1;
            if (this.timers.tlp === null || at < this.timers.tlp) this.timers.tlp = at;
          }
        }
      }
    }
  }

  /** Resends the next hole recovery picks (RFC 6675 NextSeg rule 1), if any. */
  private retransmitNext(): boolean {
    const now = this.host.now();
    const h = this.rec.nextHole(this.sndUna, this.sndMax, this.mss, now, this.rtoEst.srtt);
    if (!h) return false;
    this.retransmit(h.seq, h.len);
    this.rec.resent(h.seq, h.len, now);
    // In recovery the probe timer doubles as RACK's reorder timer for lost retransmissions.
    const d = this.rec.lostRetransmitDeadline(this.rtoEst.srtt);
    if (d !== null && (this.timers.rto === null || d < this.timers.rto)) this.timers.tlp = d;
    return true;
  }

  /** Arms the tail loss probe (RFC 8985 §7.2): PTO = 2 SRTT (at least 10 ms), before the RTO. */
  private armTlp(restart: boolean): void {
    if (this.rec.inRecovery || this.tlpSent || this.rtoEst.srtt === null) return;
    if (this.timers.tlp !== null && !restart) return;
    const pto = Math.max(2 * this.rtoEst.srtt, 10);
    const at = this.host.now() + pto;
    if (this.timers.rto !== null && at >= this.timers.rto) return;
    this.timers.tlp = at;
  }

  /** The probe: new data if the windows allow, else the last segment again (RFC 8985 §7.3). */
  private onTlp(): void {
    if (this.sndUna === this.sndMax || !this.isSynchronized()) return;
    if (this.rec.inRecovery) {
      // Reorder timeout in recovery: what was resent and is still missing was lost again.
      this.rec.rescan(this.sndUna);
      this.retransmitNext();
      this.output();
      return;
    }
    if (this.rec.timeLoss(this.host.now() - this.lastProgress, this.rtoEst.srtt)) {
      // The reorder timer: the hole at SND.UNA is lost. Enter recovery and resend it.
      this.rec.enter(seqSub(this.sndMax, this.sndUna), this.sndUna, this.sndMax);
      this.stats.fastRetransmits++;
      this.retransmitNext();
      this.output();
      return;
    }
    this.tlpSent = true;
    const before = this.sndNxt;
    this.output(1);
    if (this.sndNxt === before) {
      const len = Math.min(this.mss, seqSub(this.sndMax, this.sndUna));
      const seq = seqAdd(this.sndMax, -len);
      if (this.finSeq !== null && this.sndMax === seqAdd(this.finSeq, 1)) this.retransmit(this.finSeq, 0);
      else this.retransmit(seq, len);
    }
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
      if (this.finReceived || hadHoles) this.sendAck();
      else if (this.bytesUnacked >= STRETCH_ACK_SEGMENTS * this.mss) this.sendAck();
      else if (this.bytesUnacked >= 2 * this.mss) {
        // Due now, but sent once the segments that arrived together are all in: a burst gets one
        // (stretch) ACK, as with Linux's GRO, instead of one per two segments — up to
        // STRETCH_ACK_SEGMENTS, so the sender keeps sending while we work through a long burst.
        this.timers.delack = this.host.now();
      } else if (this.timers.delack === null) this.timers.delack = this.host.now() + this.config.delayedAck;
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

  /**
   * Sends what the windows, Nagle and the state allow: in recovery, holes first (RFC 6675 §5
   * step 4), then new data. `limit` bounds the number of new segments (the tail loss probe sends one).
   */
  protected output(limit = Infinity): void {
    const s = this.state;
    if (s !== 'ESTABLISHED' && s !== 'CLOSE-WAIT' && s !== 'FIN-WAIT-1' && s !== 'CLOSING' && s !== 'LAST-ACK') return;
    const now = this.host.now();
    const rec = this.rec;
    for (let sent = 0; sent < limit; ) {
      const inFlight = rec.inRecovery && this.sackOk ? rec.pipe(this.sndUna, this.sndNxt) : seqSub(this.sndNxt, this.sndUna);
      const canCwnd = this.cc.cwnd - inFlight;
      if (rec.inRecovery && canCwnd >= this.mss && this.retransmitNext()) continue;
      if (this.sackOk && seqLt(this.sndNxt, this.sndMax)) {
        const skip = rec.skipSacked(this.sndNxt);
        if (skip !== null) {
          this.sndNxt = skip;
          continue;
        }
      }
      const off = seqSub(this.sndNxt, this.bufSeq);
      const unsent = this.sendBuf.length - Math.max(0, off);
      if (unsent > 0 && off >= 0) {
        const canRwnd = this.sndWnd - seqSub(this.sndNxt, this.sndUna);
        const can = Math.min(canCwnd, canRwnd);
        let len = Math.min(unsent, this.mss, can);
        if (len <= 0) {
          if (this.sndWnd === 0 && seqSub(this.sndNxt, this.sndUna) === 0) this.armPersist(now);
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
        if (this.sndUna === this.sndMax) this.lastProgress = now;
        this.emitSegment(this.sndNxt, flags, this.windowField(), undefined, payload);
        this.sndNxt = flags & FIN ? seqAdd(end, 1) : end;
        if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
        this.armRto();
        this.armTlp(false);
        sent++;
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
        this.terminate(null); // TIME-WAIT over, or FIN-WAIT-2 gave up on the peer's FIN after close()
        return;
      }
      if (t.delack !== null && t.delack <= now) {
        t.delack = null;
        if (this.isSynchronized()) this.sendAck();
      }
      if (t.rto !== null && t.rto <= now) {
        t.rto = null;
        t.tlp = null;
        this.onRto();
      } else if (t.tlp !== null && t.tlp <= now) {
        t.tlp = null;
        this.onTlp();
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
    this.rec.onTimeout(seqSub(this.sndMax, this.sndUna), this.sndMax);
    this.tlpSent = false;
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
  icmpError(code: 'EHOSTUNREACH' | 'ECONNREFUSED' | 'EACCES', message: string): void {
    if (this.state === 'SYN-SENT' || this.state === 'SYN-RECEIVED') {
      this.step(() => this.terminate(new SocketError(code, message)));
    }
  }

  /** The error the connection ended with, if any. */
  get lastError(): SocketError | null {
    return this.error;
  }
}

