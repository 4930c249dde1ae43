/**
 * TCP byte buffers: the send buffer (everything from SND.UNA on: sent-but-unacknowledged, then
 * unsent) and the receive side's out-of-order reassembly queue with its SACK blocks (RFC 2018).
 */
import { seqAdd, seqSub } from './seq.ts';

/** A byte queue of chunks; data is referenced, not copied, until it is read out. */
export class SendBuffer {
  private chunks: Uint8Array[] = [];
  /** Bytes already consumed from chunks[0]. */
  private head = 0;
  length = 0;

  push(data: Uint8Array): void {
    if (data.length === 0) return;
    this.chunks.push(data);
    this.length += data.length;
  }

  /** Drops `n` bytes from the front (they were acknowledged). */
  consume(n: number): void {
    if (n > this.length) n = this.length;
    this.length -= n;
    while (n > 0) {
      const c = this.chunks[0]!;
      const left = c.length - this.head;
      if (n < left) {
        this.head += n;
        return;
      }
      n -= left;
      this.chunks.shift();
      this.head = 0;
    }
  }

  /** `len` bytes from offset `off`: a view when contiguous, a copy when spanning chunks. */
  read(off: number, len: number): Uint8Array {
    if (off + len > this.length) len = this.length - off;
    if (len <= 0) return new Uint8Array(0);
    let i = 0;
    let pos = off + this.head;
    while (pos >= this.chunks[i]!.length) {
      pos -= this.chunks[i]!.length;
      i++;
    }
    const first = this.chunks[i]!;
    if (pos + len <= first.length) return first.subarray(pos, pos + len);
    const out = new Uint8Array(len);
    let o = 0;
    while (o < len) {
      const c = this.chunks[i++]!;
      const n = Math.min(c.length - pos, len - o);
      out.set(c.subarray(pos, pos + n), o);
      o += n;
      pos = 0;
    }
    return out;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.length = 0;
  }
}

interface OooSegment {
  seq: number;
  data: Uint8Array;
}

/**
 * Out-of-order segments, kept sorted and non-overlapping. Offsets are computed relative to
 * RCV.NXT, so wraparound is handled by seqSub (everything held is inside the receive window).
 */
export class Reassembly {
  private segs: OooSegment[] = [];
  bytes = 0;
  /** Sequence number of the most recently received out-of-order segment (for SACK order). */
  private lastSeq: number | null = null;
  /** A FIN seen beyond RCV.NXT: its sequence number. */
  finSeq: number | null = null;

  get empty(): boolean {
    return this.segs.length === 0;
  }

  /** Stores `data` at `seq` (> rcvNxt), trimming whatever is already held. */
  insert(seq: number, data: Uint8Array, rcvNxt: number): void {
    this.lastSeq = seq;
    const start = seqSub(seq, rcvNxt);
    const end = start + data.length;
    const piece = (a: number, b: number): OooSegment => ({ seq: seqAdd(rcvNxt, a), data: data.subarray(a - start, b - start) });
    const out: OooSegment[] = [];
    let cur = start;
    for (const s of this.segs) {
      const sStart = seqSub(s.seq, rcvNxt);
      const sEnd = sStart + s.data.length;
      if (cur < end && cur < sStart) {
        const e = Math.min(end, sStart);
        out.push(piece(cur, e));
        cur = e;
      }
      if (cur < end && cur >= sStart && cur < sEnd) cur = Math.min(end, sEnd);
      out.push(s);
    }
    if (cur < end) out.push(piece(cur, end));
    this.segs = out;
    let n = 0;
    for (const s of out) n += s.data.length;
    this.bytes = n;
  }

  /** Removes and returns the data now contiguous with `rcvNxt` (segments at or before it). */
  take(rcvNxt: number): Uint8Array[] {
    const got: Uint8Array[] = [];
    let nxt = rcvNxt;
    while (this.segs.length > 0) {
      const s = this.segs[0]!;
      const off = seqSub(s.seq, nxt);
      if (off > 0) break;
      this.segs.shift();
      this.bytes -= s.data.length;
      const skip = -off;
      if (skip < s.data.length) {
        const part = s.data.subarray(skip);
        got.push(part);
        nxt = seqAdd(nxt, part.length);
      }
    }
    return got;
  }

  /** Up to `max` SACK blocks [left, right), the block with the latest segment first (RFC 2018 §4). */
  sackBlocks(max: number): { left: number; right: number }[] {
    const blocks: { left: number; right: number }[] = [];
    for (const s of this.segs) {
      const last = blocks[blocks.length - 1];
      const end = seqAdd(s.seq, s.data.length);
      if (last && last.right === s.seq) last.right = end;
      else blocks.push({ left: s.seq, right: end });
    }
    if (this.lastSeq !== null) {
      const ls = this.lastSeq;
      const i = blocks.findIndex((b) => seqSub(ls, b.left) >= 0 && seqSub(b.right, ls) > 0);
      if (i > 0) blocks.unshift(...blocks.splice(i, 1));
    }
    return blocks.slice(0, max);
  }

  clear(): void {
    this.segs = [];
    this.bytes = 0;
    this.finSeq = null;
  }
}

/** The sender's SACK scoreboard: ranges above SND.UNA the peer reports holding (RFC 2018, 6675). */
export class Scoreboard {
  /** Sorted, merged [left, right) ranges. */
  ranges: { left: number; right: number }[] = [];

  add(left: number, right: number, sndUna: number, sndMax: number): void {
    // Ignore blocks that are stale or beyond what we sent (RFC 6675 §5: valid blocks only).
    if (seqSub(right, left) <= 0 || seqSub(left, sndUna) < 0 || seqSub(right, sndMax) > 0) return;
    const rs = [...this.ranges, { left, right }].sort((a, b) => seqSub(a.left, b.left));
    const merged: { left: number; right: number }[] = [];
    for (const r of rs) {
      const last = merged[merged.length - 1];
      if (last && seqSub(r.left, last.right) <= 0) {
        if (seqSub(r.right, last.right) > 0) last.right = r.right;
      } else merged.push({ ...r });
    }
    this.ranges = merged;
  }

  /** Forgets ranges now below SND.UNA. */
  advance(sndUna: number): void {
    this.ranges = this.ranges
      .filter((r) => seqSub(r.right, sndUna) > 0)
      .map((r) => (seqSub(r.left, sndUna) < 0 ? { left: sndUna, right: r.right } : r));
  }

  /** Total SACKed bytes. */
  get sacked(): number {
    let n = 0;
    for (const r of this.ranges) n += seqSub(r.right, r.left);
    return n;
  }

  /** SACKed bytes inside [from, to). */
  sackedBetween(from: number, to: number): number {
    let n = 0;
    for (const r of this.ranges) {
      const a = seqSub(r.left, from) > 0 ? r.left : from;
      const b = seqSub(r.right, to) < 0 ? r.right : to;
      const d = seqSub(b, a);
      if (d > 0) n += d;
    }
    return n;
  }

  /** The highest SACKed sequence number, or null. */
  get highest(): number | null {
    const last = this.ranges[this.ranges.length - 1];
    return last ? last.right : null;
  }

  /** True when `seq` is inside a SACKed range. */
  isSacked(seq: number): boolean {
    for (const r of this.ranges) if (seqSub(seq, r.left) >= 0 && seqSub(r.right, seq) > 0) return true;
    return false;
  }

  /**
   * The first un-SACKed hole at or after `from` and below the highest SACKed byte: its start and
   * length (at most `max`), or null.
   */
  nextHole(from: number, max: number): { seq: number; len: number } | null {
    let seq = from;
    for (const r of this.ranges) {
      if (seqSub(r.right, seq) <= 0) continue;
      if (seqSub(r.left, seq) > 0) return { seq, len: Math.min(max, seqSub(r.left, seq)) };
      seq = r.right;
    }
    return null;
  }

  clear(): void {
    this.ranges = [];
  }
}
