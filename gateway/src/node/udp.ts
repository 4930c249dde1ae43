/**
 * Native UDP for the engine (src/engine/types.ts UdpTransport): one `node:dgram` socket per
 * family on the same port, interface addresses as candidates, port mapping, and NAT64.
 *
 * NAT64 (RFC 6052, RFC 7050): on a host with no IPv4 address of its own but a DNS64 prefix,
 * every IPv4 destination (peers' endpoints, relays' STUN servers) is sent to its synthesized
 * IPv6 address, and replies from such addresses are handed to the engine as the IPv4 address
 * they embed. The engine never sees NAT64: it STUNs the IPv4 servers, so what it advertises is
 * the NAT64's public IPv4 mapping, and peers reach it through that.
 */
import { createSocket, type Socket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { formatIP, parseIP, tryParseIP } from '../../../src/netstack/addr.ts';
import { extract, synthesize, type Nat64Prefix } from '../../../src/paths/nat64.ts';
import type { UdpSocket, UdpTransport } from '../../../src/engine/types.ts';

/** Socket buffers asked for (Tailscale asks for 7 MiB). */
export const UDP_BUFFER_BYTES = 4 << 20;

export interface NodeUdpOptions {
  /** NAT64 prefix for IPv4 destinations: give it only on a host without IPv4 (`hasIPv4`). */
  nat64?: Nat64Prefix;
  /** Port mapping for a local port (gateway/src/portmap); absent: none. */
  portMap?: UdpTransport['portMap'];
}

/** Interface addresses worth advertising: not loopback, not link-local. */
export function interfaceAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv6' && /^fe[89ab]/i.test(a.address)) continue;
      if (a.family === 'IPv4' && a.address.startsWith('169.254.')) continue;
      out.push(a.address.toLowerCase());
    }
  }
  return out;
}

export function hasIPv4(): boolean {
  return interfaceAddresses().some((a) => !a.includes(':'));
}

/** Binds a UDP socket of `type` (IPv6 only for udp6) on `port`; rejects with the bind error. */
export function bindSocket(type: 'udp4' | 'udp6', port: number): Promise<Socket> {
  const s = createSocket(type === 'udp6' ? { type, ipv6Only: true } : { type });
  return new Promise((resolve, reject) => {
    s.once('error', (e) => {
      s.close();
      reject(e);
    });
    s.bind(port, () => {
      s.removeAllListeners('error');
      resolve(s);
    });
  });
}

export function nodeUdp(o: NodeUdpOptions = {}): UdpTransport {
  const nat64 = o.nat64;
  const toWire = (ip: string): string => {
    if (!nat64 || ip.includes(':')) return ip;
    return formatIP(synthesize(nat64, parseIP(ip)));
  };
  const fromWire = (ip: string): string => {
    if (ip.startsWith('::ffff:')) return ip.slice(7);
    if (!nat64 || !ip.includes(':')) return ip;
    const raw = tryParseIP(ip);
    if (!raw || raw.length !== 16) return ip;
    const prefixBytes = nat64.length / 8;
    for (let i = 0; i < prefixBytes; i++) if (raw[i] !== nat64.prefix[i]) return ip;
    return formatIP(extract(raw, nat64.length));
  };
  return {
    async bind(port, onPacket): Promise<UdpSocket> {
      const s4 = await bindSocket('udp4', port);
      const actual = s4.address().port;
      const s6 = await bindSocket('udp6', actual).catch(() => undefined);
      for (const s of [s4, s6]) {
        if (!s) continue;
        // Bulk TCP over the direct path bursts faster than one event-loop turn drains: the
        // default 208 KiB buffer drops packets (the kernel clamps to net.core.rmem_max).
        for (const set of [() => s.setRecvBufferSize(UDP_BUFFER_BYTES), () => s.setSendBufferSize(UDP_BUFFER_BYTES)]) {
          try {
            set();
          } catch {
            // not allowed here: the default stays
          }
        }
        s?.on('message', (msg, rinfo) => onPacket(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), fromWire(rinfo.address), rinfo.port));
        // Unreachable destinations and the like: a candidate that doesn't work, nothing more.
        s?.on('error', () => {});
      }
      return {
        port: actual,
        send(ip, p, data) {
          const wire = toWire(ip);
          const s = wire.includes(':') ? s6 : s4;
          s?.send(data, p, wire, () => {});
        },
        close() {
          for (const s of [s4, s6]) {
            try {
              s?.close();
            } catch {
              // already closed
            }
          }
        },
      };
    },
    localAddresses: () => interfaceAddresses(),
    ...(o.portMap ? { portMap: o.portMap } : {}),
  };
}

/** Rewrites an http(s) URL whose host is an IPv4 literal to its NAT64 address. */
export function nat64Url(url: string, nat64: Nat64Prefix | undefined): string {
  if (!nat64) return url;
  const u = new URL(url);
  const raw = tryParseIP(u.hostname);
  if (!raw || raw.length !== 4) return url;
  u.hostname = `[${formatIP(synthesize(nat64, raw))}]`;
  return u.toString().replace(/\/$/, url.endsWith('/') ? '/' : '');
}
