/**
 * The sliding replay window for transport counters (WireGuard paper §5.4.6, RFC 6479's ring of
 * bitmap blocks, as wireguard-go's replay.Filter). A counter is accepted once; counters more than
 * WINDOW_SIZE behind the highest seen are rejected. Validate only after the packet authenticated.
 *
 * Counters are numbers (exact below 2^53; see constants.ts).
 */
const BLOCK_BITS = 32;
const RING_BLOCKS = 64; // power of two
export const WINDOW_SIZE = (RING_BLOCKS - 1) * BLOCK_BITS; // 2016

export class ReplayWindow {
  private readonly ring = new Uint32Array(RING_BLOCKS);
  private last = 0;

  reset(): void {
    this.ring.fill(0);
    this.last = 0;
  }

  /**
   * Accepts `counter` (and records it) when it is below `limit`, inside the window and not seen
   * before; returns false otherwise, leaving the window unchanged.
   */
  validate(counter: number, limit: number): boolean {
    if (!Number.isSafeInteger(counter) || counter < 0 || counter >= limit) return false;
    let index = Math.floor(counter / BLOCK_BITS);
    if (counter > this.last) {
      const current = Math.floor(this.last / BLOCK_BITS);
      const diff = Math.min(index - current, RING_BLOCKS);
      for (let i = 1; i <= diff; i++) this.ring[(current + i) % RING_BLOCKS] = 0;
      this.last = counter;
    } else if (this.last - counter > WINDOW_SIZE) {
      return false;
    }
    index %= RING_BLOCKS;
    const bit = (1 << (counter % BLOCK_BITS)) >>> 0;
    const old = this.ring[index]!;
    if ((old & bit) !== 0) return false;
    this.ring[index] = (old | bit) >>> 0;
    return true;
  }
}
