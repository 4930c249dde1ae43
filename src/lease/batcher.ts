/**
 * Joins the lease frames of one turn into Batch frames (src/lease/codec.ts), for both ends of a
 * lease: a browser pays per WebSocket message (an IPC hop from its network process and a task on
 * the worker), and bulk traffic over a leased path is ~10k datagrams/s.
 *
 * The first frame of a turn is sent at once (a lone datagram waits for nothing); later frames of
 * the same turn are held and leave as one Batch (at most `maxBytes`) when the turn ends, or as
 * soon as the next frame would not fit. A turn ends when `schedule`'s callback runs:
 *   - gateway (Node): `setImmediate`. Not `process.nextTick`: Node drains the tick queue after
 *     every dgram 'message' callback, so each inbound datagram would be a turn of its own;
 *     setImmediate runs after the poll phase, i.e. after every datagram read in this iteration.
 *   - browser: the clock's `setTimer(fn, 0)` (a MessageChannel task right after the current
 *     one), so sends made across the awaits of one task still share a Batch.
 * A held run of one frame is sent as that frame, not as a Batch of one. Order is kept: frames
 * leave in the order they were written, whether alone or batched; a frame no Batch may carry
 * (a hello, Ready) is sent alone after what is held.
 *
 * `turnBatcher` is the general form; the relay's WebSocket writer (gateway/src/relay/transport.ts)
 * uses it to join DERP frames, which need no framing of their own (DERP is a byte stream).
 *
 * Browser-safe: no Node APIs.
 */
import { BATCH_ENTRY_OVERHEAD, MAX_BATCH, canBatch, encodeBatch } from './codec.ts';

export interface FrameBatcher {
  /** Sends `frame` now (first of the turn) or holds it for this turn's Batch. */
  write(frame: Uint8Array): void;
  /** Sends what is held now (before a close, or before a frame that may not be batched). */
  flush(): void;
  /** Bytes held for the end of the turn. */
  pendingBytes(): number;
}

export interface TurnBatchOptions {
  send(message: Uint8Array): void;
  /** Runs `fn` when the current turn ends. */
  schedule(fn: () => void): void;
  /** Joins two or more held frames into one message of `size` bytes. */
  join(frames: Uint8Array[], size: number): Uint8Array;
  /** What a frame adds to a joined message, or -1 for a frame that must go alone. */
  entrySize(frame: Uint8Array): number;
  /** Size of an empty joined message. */
  baseSize: number;
  maxBytes: number;
}

/**
 * The turn batching both the lease channel and the relay's WebSocket writes use: the first
 * frame of a turn is sent at once, later ones are held and joined into one message when the turn
 * ends or the next would not fit; a frame that cannot be joined goes alone after what is held.
 */
export function turnBatcher(o: TurnBatchOptions): FrameBatcher {
  let busy = false;
  let held: Uint8Array[] = [];
  let size = o.baseSize;
  const flush = (): void => {
    if (held.length === 0) return;
    const out = held.length === 1 ? held[0]! : o.join(held, size);
    held = [];
    size = o.baseSize;
    o.send(out);
  };
  const endTurn = (): void => {
    busy = false;
    flush();
  };
  return {
    write(frame) {
      if (!busy) {
        busy = true;
        o.send(frame);
        o.schedule(endTurn);
        return;
      }
      const entry = o.entrySize(frame);
      if (entry < 0 || o.baseSize + entry > o.maxBytes) {
        // Too big to share a message, or a frame no batch may carry: alone, after what is held.
        flush();
        o.send(frame);
        return;
      }
      if (size + entry > o.maxBytes) flush();
      held.push(frame);
      size += entry;
    },
    flush,
    pendingBytes: () => (held.length === 0 ? 0 : size),
  };
}

/** Lease frames joined into Batch frames (`len(2) | frame` entries after the type byte). */
export function frameBatcher(send: (message: Uint8Array) => void, schedule: (fn: () => void) => void, maxBatch = MAX_BATCH): FrameBatcher {
  return turnBatcher({
    send,
    schedule,
    join: (frames) => encodeBatch(frames),
    entrySize: (f) => (canBatch(f) ? BATCH_ENTRY_OVERHEAD + f.length : -1),
    baseSize: 1, // the Batch type byte
    maxBytes: Math.min(maxBatch, MAX_BATCH),
  });
}
