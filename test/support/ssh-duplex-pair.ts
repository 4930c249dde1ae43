/**
 * Two in-memory SshDuplex ends wired to each other (for SshClient ↔ serveSsh unit tests). Bytes
 * are delivered in order on a later microtask; bytes written before the other end attaches its
 * listener are kept. `close()` on either end closes both (each end's onClose runs once, after the
 * bytes already in flight). `tap` sees every chunk, e.g. to count or corrupt bytes.
 */
import type { SshDuplex } from '../../src/ssh/index.ts';

export interface PairEnd extends SshDuplex {
  /** Bytes written by this end so far. */
  readonly written: number;
  /** True once closed (by either end). */
  readonly isClosed: boolean;
}

export function duplexPair(tap?: { aToB?: (b: Uint8Array) => Uint8Array; bToA?: (b: Uint8Array) => Uint8Array }): [PairEnd, PairEnd] {
  const a = makeEnd();
  const b = makeEnd();
  a.peer = b;
  b.peer = a;
  a.tap = tap?.aToB;
  b.tap = tap?.bToA;
  return [a.api, b.api];
}

interface End {
  peer?: End;
  tap?: (b: Uint8Array) => Uint8Array;
  dataCb?: (b: Uint8Array) => void;
  pending: Uint8Array[];
  closeCbs: Array<(err?: unknown) => void>;
  closed: boolean;
  closeDelivered: boolean;
  written: number;
  api: PairEnd;
}

function makeEnd(): End {
  const e: End = {
    pending: [],
    closeCbs: [],
    closed: false,
    closeDelivered: false,
    written: 0,
    api: undefined as unknown as PairEnd,
  };
  const deliverClose = (x: End) => {
    if (x.closeDelivered) return;
    x.closeDelivered = true;
    for (const cb of x.closeCbs.splice(0)) cb();
  };
  const closeBoth = () => {
    if (e.closed) return;
    e.closed = true;
    e.peer!.closed = true;
    queueMicrotask(() => {
      deliverClose(e);
      deliverClose(e.peer!);
    });
  };
  e.api = {
    write(bytes) {
      if (e.closed) return;
      let copy: Uint8Array = Uint8Array.from(bytes);
      if (e.tap) copy = e.tap(copy);
      e.written += copy.length;
      const p = e.peer!;
      queueMicrotask(() => {
        if (p.closeDelivered) return;
        if (p.dataCb) p.dataCb(copy);
        else p.pending.push(copy);
      });
    },
    onData(cb) {
      e.dataCb = cb;
      for (const b of e.pending.splice(0)) cb(b);
    },
    onClose(cb) {
      if (e.closeDelivered) cb();
      else e.closeCbs.push(cb);
    },
    close: closeBoth,
    get written() {
      return e.written;
    },
    get isClosed() {
      return e.closed;
    },
  };
  return e;
}

/** One end fed by the test directly (no SSH peer): `feed` delivers bytes, `output` collects what the other side wrote. */
export function rawEnd(): { duplex: SshDuplex; feed(b: Uint8Array): void; hangUp(): void; output: Uint8Array[]; readonly closed: boolean } {
  let dataCb: ((b: Uint8Array) => void) | undefined;
  const closeCbs: Array<(err?: unknown) => void> = [];
  let closed = false;
  const output: Uint8Array[] = [];
  const fireClose = () => {
    if (closed) return;
    closed = true;
    for (const cb of closeCbs.splice(0)) cb();
  };
  return {
    duplex: {
      write: (b) => void (closed || output.push(Uint8Array.from(b))),
      onData: (cb) => (dataCb = cb),
      onClose: (cb) => void (closed ? cb() : closeCbs.push(cb)),
      close: fireClose,
    },
    feed: (b) => {
      if (!closed) dataCb?.(b);
    },
    hangUp: fireClose,
    output,
    get closed() {
      return closed;
    },
  };
}
