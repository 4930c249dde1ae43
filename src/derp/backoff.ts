/**
 * Reconnect policy for DERP (and other) connections. Pure: randomness is injected, and the
 * caller arms its own timer with the delay.
 */
import type { RandomSource } from '../crypto/backend.ts';

export interface BackoffOptions {
  /** First delay before jitter; default 100 ms. */
  baseMs?: number;
  /** Hard cap, after jitter; default 30 s. */
  maxMs?: number;
  /** Growth per failure; default 2. */
  factor?: number;
  random: RandomSource;
}

/**
 * Reconnect delays: base·factor^n, capped, times a random factor in [0.5, 1.5) (as Tailscale's
 * util/backoff jitters, to avoid thundering herds), then capped again. `reset()` after a
 * successful connection (e.g. on `ready`).
 */
export class Backoff {
  private n = 0;
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly random: RandomSource;

  constructor(opts: BackoffOptions) {
    this.baseMs = opts.baseMs ?? 100;
    this.maxMs = opts.maxMs ?? 30_000;
    this.factor = opts.factor ?? 2;
    this.random = opts.random;
  }

  /** Consecutive failures so far. */
  get attempts(): number {
    return this.n;
  }

  /** The delay before the next attempt, in ms; counts one more failure. */
  next(): number {
    const d = Math.min(this.maxMs, this.baseMs * this.factor ** Math.min(this.n, 64));
    this.n++;
    const r = this.random(4);
    const u = (((r[0]! << 24) >>> 0) + (r[1]! << 16) + (r[2]! << 8) + r[3]!) / 2 ** 32;
    return Math.min(this.maxMs, Math.round(d * (0.5 + u)));
  }

  reset(): void {
    this.n = 0;
  }
}
