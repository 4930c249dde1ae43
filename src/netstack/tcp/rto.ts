/**
 * The retransmission timer's estimator (RFC 6298 §2) with Karn's rule (§3: no samples from
 * retransmitted segments; the caller ensures that) and exponential backoff (§5.5).
 *
 *   first sample R:  SRTT = R, RTTVAR = R/2
 *   later samples:   RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|;  SRTT = 7/8 SRTT + 1/8 R
 *   RTO = SRTT + max(G, 4 RTTVAR), clamped to [minRto, maxRto]; 1 s before any sample (§2.1)
 */
export const INITIAL_RTO = 1000; // RFC 6298 §2.1
export const DEFAULT_MIN_RTO = 200; // Linux's TCP_RTO_MIN; RFC 6298 §2.4 suggests 1 s, allows less
export const DEFAULT_MAX_RTO = 60_000; // RFC 6298 §2.5: at least 60 s
const CLOCK_GRANULARITY = 1; // ms

export class RtoEstimator {
  srtt: number | null = null;
  rttvar = 0;
  private base = INITIAL_RTO;
  private backoffShift = 0;

  constructor(
    private readonly minRto = DEFAULT_MIN_RTO,
    private readonly maxRto = DEFAULT_MAX_RTO,
  ) {}

  /** Feeds one round-trip sample in ms. */
  sample(r: number): void {
    if (this.srtt === null) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.base = this.srtt + Math.max(CLOCK_GRANULARITY, 4 * this.rttvar);
    this.backoffShift = 0;
  }

  /** The current RTO including backoff. */
  get rto(): number {
    const v = Math.max(this.minRto, this.base) * 2 ** this.backoffShift;
    return Math.min(this.maxRto, v);
  }

  /** Doubles the RTO after a timeout (§5.5). */
  backoff(): void {
    if (Math.max(this.minRto, this.base) * 2 ** this.backoffShift < this.maxRto) this.backoffShift++;
  }

  resetBackoff(): void {
    this.backoffShift = 0;
  }
}
