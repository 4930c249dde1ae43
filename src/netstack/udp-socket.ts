/** A UDP socket of the userspace stack. */
import { formatIP } from './addr.ts';
import { Emitter } from './emitter.ts';
import { SocketError } from './errors.ts';

export interface UdpSocketHost {
  send(data: Uint8Array, src: Uint8Array, dst: Uint8Array, dstPort: number): void;
  sourceFor(dst: Uint8Array): Uint8Array | undefined;
  close(): void;
}

export type UdpEvents = {
  message: [data: Uint8Array, from: { address: Uint8Array; port: number }];
  /** An ICMP error about a datagram this socket sent (e.g. ECONNREFUSED for port unreachable). */
  error: [SocketError];
  close: [];
};

export class UdpSocket extends Emitter<UdpEvents> {
  private closed = false;

  constructor(
    readonly port: number,
    readonly address: Uint8Array | null,
    private readonly host: UdpSocketHost,
  ) {
    super();
  }

  send(data: Uint8Array, address: Uint8Array, port: number): void {
    if (this.closed) throw new SocketError('EBADF', 'socket is closed');
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new SocketError('EINVAL', `bad port ${port}`);
    if (data.length > 65507) throw new SocketError('EMSGSIZE', `datagram of ${data.length} bytes is too large`);
    const src = this.address ?? this.host.sourceFor(address);
    if (!src || src.length !== address.length) throw new SocketError('ENETUNREACH', `no source address to reach ${formatIP(address)}`);
    this.host.send(data, src, address, port);
  }

  /** @internal */
  deliver(data: Uint8Array, from: Uint8Array, port: number): void {
    if (!this.closed) this.emit('message', data, { address: from, port });
  }

  /** @internal */
  icmpError(dst: Uint8Array, port: number, portUnreachable: boolean): void {
    if (this.closed) return;
    const what = `${formatIP(dst)}:${port}`;
    this.emit('error', portUnreachable ? new SocketError('ECONNREFUSED', `port unreachable: ${what}`) : new SocketError('EHOSTUNREACH', `host unreachable: ${what}`));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.host.close();
    this.emit('close');
  }
}
