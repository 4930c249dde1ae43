/**
 * The boundary between the Node-side proxies (port forwards, SOCKS5) and the userspace TCP stack
 * that runs inside the WireGuard tunnel. The proxies only ever see this interface; the stack
 * implements it. Tests implement it over the kernel's loopback.
 *
 * Notes for implementers (what `relay.ts` relies on):
 * - sockets are Duplex streams with half-close: `end()` sends FIN and keeps reading; the proxies
 *   assume `allowHalfOpen: true` semantics and call `end()` when the other side has ended;
 * - a socket that has an optional `resetAndDestroy()` method (as `net.Socket` has) is reset with
 *   it when the other side of a relay fails; otherwise it is `destroy()`ed;
 * - `connect` must honour `opts.signal` (abort the attempt; the rejection is then ignored).
 */
import type { Duplex } from 'node:stream';

/** The codes `TunnelNet.connect` rejects with (as `PierceError.code`). */
export type TunnelDialErrorCode = 'EACCES' | 'ECONNREFUSED' | 'ETIMEDOUT' | 'ECONNRESET' | 'EHOSTUNREACH' | 'ENETUNREACH' | 'EMFILE';

export interface TunnelNet {
  /** Opens a TCP connection through the tunnel. Rejects with a PierceError whose code is one of
   *  'EACCES' (the peer's policy refused it) | 'ECONNREFUSED' | 'ETIMEDOUT' | 'ECONNRESET' | 'EHOSTUNREACH' | 'ENETUNREACH' | 'EMFILE'. */
  connect(address: Uint8Array, port: number, opts?: { signal?: AbortSignal }): Promise<Duplex>;
  /** Accepts tunnel-side TCP connections to our own tunnel address on `port`. */
  listen(port: number, onConnection: (socket: Duplex, info: { remoteAddress: string; remotePort: number }) => void): { close(): void };
}
