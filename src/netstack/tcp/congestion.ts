/**
 * NewReno congestion control (RFC 5681 with RFC 6582's fast recovery), in bytes.
 *   initial window: RFC 6928, min(10 MSS, max(2 MSS, 14600))
 *   slow start: cwnd += acked per ACK, up to ssthresh, the rest counted as congestion avoidance
 *     (appropriate byte counting, RFC 3465, without its L = 2 cap: a receiver that ACKs a burst
 *     at once — a browser worker handed a batch of WebSocket messages, Linux with GRO — sends
 *     "stretch" ACKs of tens of segments, and capping them at 2 MSS keeps the window far below
 *     the path's. Linux does the same since 3.18, "tcp: fix stretch ACK bugs in slow start".)
 *   congestion avoidance: cwnd += MSS per cwnd of acknowledged bytes, several for a stretch ACK
 *   three duplicate ACKs: ssthresh = max(flight / 2, 2 MSS), cwnd = ssthresh + 3 MSS
 *   timeout: ssthresh = max(flight / 2, 2 MSS), cwnd = 1 MSS (RFC 5681 §3.1 loss window)
 */
export class NewReno {
  cwnd: number;
  ssthresh = 0x3fffffff;
  private caBytes = 0;

  constructor(private mss: number) {
    this.cwnd = Math.min(10 * mss, Math.max(2 * mss, 14600));
  }

  setMss(mss: number): void {
    this.mss = mss;
    this.cwnd = Math.min(10 * mss, Math.max(2 * mss, 14600));
  }

  /** New data acknowledged outside fast recovery. */
  onAck(acked: number): void {
    if (this.cwnd < this.ssthresh) {
      const room = this.ssthresh - this.cwnd;
      if (acked <= room) {
        this.cwnd += acked;
        return;
      }
      this.cwnd = this.ssthresh;
      acked -= room;
    }
    this.caBytes += acked;
    while (this.caBytes >= this.cwnd) {
      this.caBytes -= this.cwnd;
      this.cwnd += this.mss;
    }
  }

  enterRecovery(flight: number): void {
    this.ssthresh = Math.max(Math.floor(flight / 2), 2 * this.mss);
    this.cwnd = this.ssthresh + 3 * this.mss;
  }

  /** Entering SACK-based recovery (RFC 6675 §5): no inflation, pipe does the accounting. */
  enterRecoveryPipe(flight: number): void {
    this.ssthresh = Math.max(Math.floor(flight / 2), 2 * this.mss);
    this.cwnd = this.ssthresh;
  }

  exitRecoveryPipe(): void {
    this.cwnd = this.ssthresh;
    this.caBytes = 0;
  }

  /** A further duplicate ACK in recovery inflates the window by one segment. */
  onDupAckInRecovery(): void {
    this.cwnd += this.mss;
  }

  /** RFC 6582 §3.2 step 3: partial ACK deflates by the newly acked bytes, then adds one MSS. */
  onPartialAck(acked: number): void {
    this.cwnd = Math.max(this.mss, this.cwnd - acked + (acked >= this.mss ? this.mss : 0));
  }

  /** RFC 6582 §3.2 step 3: full ACK ends recovery. */
  exitRecovery(flight: number): void {
    this.cwnd = Math.min(this.ssthresh, Math.max(flight, this.mss) + this.mss);
    this.caBytes = 0;
  }

  onTimeout(flight: number): void {
    this.ssthresh = Math.max(Math.floor(flight / 2), 2 * this.mss);
    this.cwnd = this.mss;
    this.caBytes = 0;
  }
}
