/**
 * Loss recovery policy for the TCP sender: when to enter fast recovery, which bytes to resend,
 * how much is in flight, and how reordering raises the duplicate-ACK threshold. The connection
 * owns the mechanism (sending); this decides.
 *
 *   With SACK (RFC 6675, simplified):
 *     - enter recovery after DupThresh duplicate ACKs or DupThresh segments SACKed above SND.UNA
 *     - pipe = outstanding − SACKed − holes not yet retransmitted (those are presumed lost)
 *     - while pipe < cwnd: resend the next hole (NextSeg rule 1), else send new data (rule 2)
 *     - a resent hole still open after 1.25 SRTT + 10 ms while newer data is SACKed was lost
 *       again: resend it (the lost-retransmission rule of RACK, RFC 8985 §6.2, in its simplest form)
 *   Without SACK: NewReno (RFC 6582): one segment per partial ACK, window inflation.
 *   DSACK (RFC 2883) reporting a duplicate of something we resent means the resend was spurious:
 *   the reordering was deeper than DupThresh, which grows (as Linux's tp->reordering does).
 */
import { NewReno } from './congestion.ts';
import { Scoreboard } from './buffers.ts';
import { seqAdd, seqGt, seqLt, seqSub } from './seq.ts';
import type { SackBlock } from './segment.ts';

const INITIAL_DUPTHRESH = 3; // RFC 5681 §3.2
const MAX_DUPTHRESH = 64;

export class LossRecovery {
  readonly board = new Scoreboard();
  inRecovery = false;
  /** RFC 6582's "recover": SND.MAX when recovery began. */
  recover = 0;
  /** Everything below this was resent in this recovery (RFC 6675 HighRxt). */
  highRxt = 0;
  dupAcks = 0;
  dupThresh = INITIAL_DUPTHRESH;
  private lastRxt = -Infinity;
  private highestAtRxt = 0;
  /** Starts of recently resent ranges, to tell our spurious resends from network duplicates. */
  private readonly recentRxt: number[] = [];
  spuriousRetransmits = 0;

  constructor(
    private readonly cc: NewReno,
    private readonly sackOk: () => boolean,
  ) {}

  /** Takes the SACK blocks of an ACK; a block below the cumulative ACK is a DSACK. */
  onSack(blocks: SackBlock[], ack: number, sndMax: number): void {
    for (let i = 0; i < blocks.length; i++) {
      const b = blocks[i]!;
      const next = blocks[1];
      const dsack = i === 0 && (!seqGt(b.right, ack) || (next !== undefined && !seqLt(b.left, next.left) && !seqGt(b.right, next.right)));
      if (dsack) {
        if (this.recentRxt.includes(b.left)) {
          this.spuriousRetransmits++;
          this.dupThresh = Math.min(MAX_DUPTHRESH, this.dupThresh + Math.max(1, this.dupThresh >> 1));
        }
        continue;
      }
      this.board.add(b.left, b.right, ack, sndMax);
    }
  }

  /** Bytes presumed in the network (RFC 6675 §4 "pipe", simplified). */
  pipe(sndUna: number, sndNxt: number): number {
    const flight = seqSub(sndNxt, sndUna);
    if (!this.sackOk() || this.board.ranges.length === 0) return flight;
    const highest = this.board.highest!;
    const from = seqLt(this.highRxt, sndUna) || !this.inRecovery ? sndUna : this.highRxt;
    // Holes between `from` and the highest SACKed byte have not been resent: presumed lost.
    const span = Math.max(0, seqSub(highest, from));
    const lost = this.inRecovery ? Math.max(0, span - this.board.sackedBetween(from, highest)) : 0;
    return Math.max(0, flight - this.board.sacked - lost);
  }

  /**
   * A duplicate ACK. Returns true when fast recovery starts now. `stalledFor` is how long SND.UNA
   * has not moved: with data SACKed above it for more than a round trip and a quarter, the hole is
   * lost even if reordering raised DupThresh (RACK's time-based rule, RFC 8985 §6.2, simplified).
   */
  onDupAck(flight: number, sndUna: number, sndMax: number, mss: number, stalledFor: number, srtt: number | null): boolean {
    this.dupAcks++;
    if (this.inRecovery) {
      if (!this.sackOk()) this.cc.onDupAckInRecovery();
      return false;
    }
    // Early retransmit (RFC 5827): with few segments outstanding, fewer duplicate ACKs can come.
    const outstanding = Math.ceil(flight / mss);
    const thresh = outstanding < 4 + 1 ? Math.max(1, Math.min(this.dupThresh, outstanding - 1)) : this.dupThresh;
    const sackLoss = this.sackOk() && this.board.sacked >= thresh * mss;
    const timeLoss = this.timeLoss(stalledFor, srtt);
    if (this.dupAcks < thresh && !sackLoss && !timeLoss) return false;
    // RFC 6582 §3.2 step 1: a loss in data sent before the last recovery is not a new event.
    if (this.recover !== 0 && seqLt(sndUna, this.recover) && !timeLoss) return false;
    this.enter(flight, sndUna, sndMax);
    return true;
  }

  /** The reorder window after which a hole with data SACKed above it is lost (RFC 8985 §6.2). */
  reorderWindow(srtt: number | null): number | null {
    return srtt === null ? null : srtt * 1.25 + 2;
  }

  /** True when SND.UNA stood still past the reorder window while data above it was SACKed. */
  timeLoss(stalledFor: number, srtt: number | null): boolean {
    const w = this.reorderWindow(srtt);
    return this.sackOk() && !this.inRecovery && this.board.sacked > 0 && w !== null && stalledFor > w;
  }

  /** Starts fast recovery. */
  enter(flight: number, sndUna: number, sndMax: number): void {
    this.inRecovery = true;
    this.recover = sndMax;
    this.highRxt = sndUna;
    this.lastRxt = -Infinity;
    if (this.sackOk()) this.cc.enterRecoveryPipe(flight);
    else this.cc.enterRecovery(flight);
  }

  /** New data acknowledged. Returns 'partial' when NewReno must resend the next segment now. */
  onNewAck(ack: number, acked: number, sndMax: number): 'partial' | 'none' {
    this.dupAcks = 0;
    this.board.advance(ack);
    if (!this.inRecovery) {
      this.cc.onAck(acked);
      return 'none';
    }
    if (!seqLt(ack, this.recover)) {
      this.inRecovery = false;
      if (this.sackOk()) this.cc.exitRecoveryPipe();
      else this.cc.exitRecovery(seqSub(sndMax, ack));
      return 'none';
    }
    if (this.sackOk()) return 'none';
    this.cc.onPartialAck(acked);
    return 'partial';
  }

  /**
   * The next range to resend in recovery (RFC 6675 NextSeg rule 1), or null. Without SACK, the
   * segment at SND.UNA once per partial ACK.
   */
  nextHole(sndUna: number, sndMax: number, mss: number, now: number, srtt: number | null): { seq: number; len: number } | null {
    if (!this.inRecovery) return null;
    if (seqLt(this.highRxt, sndUna)) this.highRxt = sndUna;
    if (!this.sackOk() || this.board.ranges.length === 0) {
      if (this.highRxt !== sndUna) return null;
      return { seq: sndUna, len: Math.min(mss, seqSub(sndMax, sndUna)) };
    }
    let hole = this.board.nextHole(this.highRxt, mss);
    if (!hole) {
      // Everything resent once. A hole still open while data sent after it was SACKed, and older
      // than a round trip, was lost again.
      const highest = this.board.highest!;
      const rtt = (srtt ?? 100) * 1.25 + 10;
      if (seqGt(highest, this.highestAtRxt) && now - this.lastRxt > rtt) {
        this.highRxt = sndUna;
        hole = this.board.nextHole(sndUna, mss);
      }
    }
    if (!hole || !seqLt(hole.seq, sndMax)) return null;
    return hole;
  }

  /** When a hole resent in this recovery counts as lost again if still open (RACK's reorder timer). */
  lostRetransmitDeadline(srtt: number | null): number | null {
    if (!this.inRecovery || this.lastRxt === -Infinity) return null;
    return this.lastRxt + (srtt ?? 100) * 1.25 + 10;
  }

  /** The reorder timer fired: holes resent before now are presumed lost; start over at SND.UNA. */
  rescan(sndUna: number): void {
    this.highRxt = sndUna;
    this.lastRxt = -Infinity;
  }

  /** Notes that [seq, seq + len) was resent. */
  resent(seq: number, len: number, now: number): void {
    this.noteResent(seq);
    this.highRxt = seqAdd(seq, Math.max(1, len));
    this.lastRxt = now;
    const h = this.board.highest;
    if (h !== null) this.highestAtRxt = h;
  }

  /** Remembers a range start resent in recovery (DSACKs for it mean it was spurious). */
  private noteResent(seq: number): void {
    this.recentRxt.push(seq);
    if (this.recentRxt.length > 128) this.recentRxt.shift();
  }

  /** A retransmission timeout: leave recovery; SACK information is no longer trusted. */
  onTimeout(flight: number, sndMax: number): void {
    this.cc.onTimeout(flight);
    this.inRecovery = false;
    this.recover = sndMax;
    this.dupAcks = 0;
    // The scoreboard is kept: going back to SND.UNA skips what the receiver holds (as Linux does;
    // a receiver that reneges still gets everything through the cumulative ACK).
  }

  /** During go-back-N after a timeout: the end of the SACKed range holding `seq`, or null. */
  skipSacked(seq: number): number | null {
    for (const r of this.board.ranges) if (!seqLt(seq, r.left) && seqLt(seq, r.right)) return r.right;
    return null;
  }
}
