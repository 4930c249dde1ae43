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

export function frameBatcher(send: (message: Uint8Array) => void, schedule: (fn: () => void) => void, maxBatch = MAX_BATCH): FrameBatcher {
  const maxBytes = Math.min(maxBatch, MAX_BATCH);
  let busy = false;
  let held: Uint8Array[] = [];
  let size = 1; // the Batch type byte
  const flush = (): void => {
    if (held.length === 0) return;
    const out = held.length === 1 ? held[0]! : encodeBatch(held);
    held = [];
    size = 1;
    send(out);
  };
  const endTurn = (): void => {
    busy = false;
    flush();
  };
  return {
    write(frame) {
      if (!busy) {
        busy = true;
        send(frame);
        schedule(endTurn);
        return;
      }
      const entry = BATCH_ENTRY_OVERHEAD + frame.length;
      if (1 + entry > maxBytes || !canBatch(frame)) {
        // Too big to share a Batch, or a frame no Batch may carry: alone, after what is held.
        flush();
        send(frame);
        return;
      }
      if (size + entry > maxBytes) flush();
      held.push(frame);
      size += entry;
    },
    flush,
    pendingBytes: () => (held.length === 0 ? 0 : size),
  };
}
