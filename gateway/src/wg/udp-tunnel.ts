/**
 * A WireGuard tunnel over native UDP sockets (Node only): the pure `Device` from src/wg driven
 * by dgram sockets, the monotonic clock and one timer armed at the device's next deadline.
 */
import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { performance } from 'node:perf_hooks';
import type { CryptoBackend } from '../../../src/crypto/backend.ts';
import { Device } from '../../../src/wg/device.ts';
import type { WgConfig, WgEndpoint } from '../../../src/wg/config.ts';
import type { Peer } from '../../../src/wg/peer.ts';
import type { DeviceEvent, Endpoint, LogLevel } from '../../../src/wg/types.ts';
import type { WgError } from '../../../src/wg/errors.ts';
import { PierceError } from '../../../src/errors.ts';
import { nodeBackend } from '../crypto/node-backend.ts';

const UDP_SOCKET_BUFFER = 4 << 20;

export interface UdpEndpoint extends Endpoint {
  readonly key: string;
  readonly ip: string;
  readonly port: number;
  readonly family: 4 | 6;
}

export function udpEndpoint(ip: string, port: number): UdpEndpoint {
  const family = ip.includes(':') ? 6 : 4;
  return { key: family === 6 ? `[${ip}]:${port}` : `${ip}:${port}`, ip, port, family };
}

export interface UdpTunnelOptions {
  config: WgConfig;
  /** Overrides the config's ListenPort (0 = any free port). */
  listenPort?: number;
  backend?: CryptoBackend;
  log?: (level: LogLevel, message: string) => void;
  onPacket?: (packet: Uint8Array, peer: Peer<UdpEndpoint>) => void;
  onEvent?: (e: DeviceEvent<UdpEndpoint>) => void;
}

export class UdpTunnel {
  readonly device: Device<UdpEndpoint>;
  private sock4: Socket | null = null;
  private sock6: Socket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private stopped = false;
  private readonly endpoints = new Map<string, UdpEndpoint>();
  port = 0;

  constructor(private readonly opts: UdpTunnelOptions) {
    const log = opts.log ?? (() => {});
    this.device = new Device<UdpEndpoint>({
      privateKey: opts.config.interface.privateKey,
      backend: opts.backend ?? nodeBackend,
      log,
      onEvent: (e) => opts.onEvent?.(e),
      sink: {
        send: (to, data) => this.transmit(to, data),
        deliver: (packet, peer) => opts.onPacket?.(packet, peer),
      },
    });
  }

  static now(): number {
    return performance.now();
  }

  /** Binds the sockets, resolves peer endpoints and adds the peers. */
  async start(): Promise<void> {
    const cfg = this.opts.config;
    const peers = await Promise.all(
      cfg.peers.map(async (p) => ({ p, ep: p.endpoint ? await resolveEndpoint(p.endpoint) : undefined })),
    );
    await this.bind(this.opts.listenPort ?? cfg.interface.listenPort ?? 0);
    for (const { p, ep } of peers) {
      this.device.addPeer({
        publicKey: p.publicKey,
        ...(p.presharedKey ? { presharedKey: p.presharedKey } : {}),
        ...(ep ? { endpoint: ep } : {}),
        allowedIPs: p.allowedIPs,
        persistentKeepalive: p.persistentKeepalive ?? 0,
      });
    }
    // Persistent keepalive starts at once when configured (wg does the same on `up`).
    const now = UdpTunnel.now();
    for (const peer of this.device.peers()) if (peer.persistentKeepalive > 0 && peer.endpoint) peer.sendKeepalive(now);
    this.reschedule();
  }

  private async bind(port: number): Promise<void> {
    // Large socket buffers absorb the bursts a fast sender makes (the kernel caps them at
    // net.core.rmem_max / wmem_max).
    const bufs = { recvBufferSize: UDP_SOCKET_BUFFER, sendBufferSize: UDP_SOCKET_BUFFER };
    const s4 = createSocket({ type: 'udp4', ...bufs });
    await bindSocket(s4, port, '0.0.0.0');
    this.sock4 = s4;
    this.port = s4.address().port;
    const s6 = createSocket({ type: 'udp6', ipv6Only: true, ...bufs });
    try {
      await bindSocket(s6, this.port, '::');
      this.sock6 = s6;
    } catch (e) {
      s6.close();
      this.opts.log?.('info', `IPv6 UDP unavailable on port ${this.port} (${(e as Error).message}); IPv4 only`);
    }
    for (const s of [this.sock4, this.sock6]) {
      s?.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo.address, rinfo.port));
      s?.on('error', (err) => this.opts.log?.('warn', `UDP socket error: ${err.message}`));
    }
  }

  private onDatagram(msg: Buffer, ip: string, port: number): void {
    if (this.stopped) return;
    const key = `${ip}|${port}`;
    let ep = this.endpoints.get(key);
    if (!ep) {
      if (this.endpoints.size > 4096) this.endpoints.clear();
      ep = udpEndpoint(ip, port);
      this.endpoints.set(key, ep);
    }
    const data = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
    const err: WgError | undefined = this.device.receive(data, ep, UdpTunnel.now());
    void err;
    this.reschedule();
  }

  private transmit(to: UdpEndpoint, data: Uint8Array): void {
    const s = to.family === 6 ? this.sock6 : this.sock4;
    if (!s) {
      this.opts.log?.('warn', `no IPv${to.family} socket to send to ${to.key}`);
      return;
    }
    s.send(data, to.port, to.ip, (err) => {
      if (err) this.opts.log?.('debug', `send to ${to.key} failed: ${err.message}`);
    });
  }

  /** Sends an IP packet into the tunnel. Returns the routing error, if any. */
  send(packet: Uint8Array): WgError | undefined {
    const err = this.device.send(packet, UdpTunnel.now());
    this.reschedule();
    return err;
  }

  /** Starts a new handshake with every peer now (`wg up` does this on SIGUSR1). */
  forceHandshakes(): void {
    const now = UdpTunnel.now();
    for (const p of this.device.peers()) p.forceHandshake(now);
    this.reschedule();
  }

  private reschedule(): void {
    if (this.stopped) return;
    const d = this.device.nextDeadline();
    const at = d ?? Infinity;
    if (at === this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = at;
    if (at === Infinity) return;
    const delay = Math.max(0, Math.ceil(at - UdpTunnel.now()));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      this.device.tick(UdpTunnel.now());
      this.reschedule();
    }, delay);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.sock4?.close();
    this.sock6?.close();
    this.sock4 = this.sock6 = null;
  }
}

function bindSocket(s: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    s.once('error', onError);
    s.bind({ port, address, exclusive: true }, () => {
      s.off('error', onError);
      resolve();
    });
  });
}

/** Resolves a config endpoint (hostname or literal) to an IP endpoint. */
export async function resolveEndpoint(ep: WgEndpoint): Promise<UdpEndpoint> {
  try {
    const r = await lookup(ep.host);
    return udpEndpoint(r.address, ep.port);
  } catch (e) {
    throw new PierceError('ENDPOINT_RESOLVE', `cannot resolve endpoint host "${ep.host}": ${(e as Error).message}`, { cause: e });
  }
}
