/** Small helpers shared by the SSH client / server tests (unit and interop). */
import { createHash } from 'node:crypto';
import { SshError, type ServerSession } from '../../src/ssh/index.ts';

/** The SshError code `p` rejects with, 'ok' when it resolves, or 'untyped: …' for any other rejection. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof SshError ? e.code : `untyped: ${String(e)}`;
  }
}

/** `n` bytes of a pattern that starts at offset `i` of the stream (so chunks of it concatenate to one stream). */
export function pattern(i: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let k = 0; k < n; k++) b[k] = (i + k * 31) & 0xff;
  return b;
}

const CHUNK = 16384;

/** Writes `total` bytes of the pattern in 16 KiB chunks, pausing whenever write() says so; tracks the largest queue. */
export function produce(s: ServerSession, total: number, done: () => void, stats?: { maxQueued: number; pauses: number }): void {
  let sent = 0;
  const step = (): void => {
    while (sent < total) {
      const n = Math.min(CHUNK, total - sent);
      const ok = s.write(pattern(sent, n));
      sent += n;
      if (stats) stats.maxQueued = Math.max(stats.maxQueued, s.writableLength);
      if (!ok) {
        if (stats) stats.pauses++;
        s.onDrain(step);
        return;
      }
    }
    done();
  };
  step();
}

/** The hex SHA-256 of the `total` bytes `produce` writes. */
export function producedSha256(total: number): string {
  const h = createHash('sha256');
  for (let sent = 0; sent < total; sent += CHUNK) h.update(pattern(sent, Math.min(CHUNK, total - sent)));
  return h.digest('hex');
}
