/**
 * Hairpinning check for netcheck: does the NAT deliver a packet sent from inside to its own
 * public address back inside? (Tailscale's netcheck used to send STUN to its GlobalV4 from a
 * second socket and wait 100 ms; it dropped the check in 2024 because some firewalls log such
 * packets as LAND attacks. Pierce keeps it in `pierce netcheck` only, where a person asked.)
 *
 * Socket B sends a STUN-looking Binding request (random transaction ID) to socket A's public
 * ip:port as STUN saw it; if A receives exactly those bytes within the wait, the NAT hairpins.
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { buildBindingRequest, TRANSACTION_ID_LENGTH } from '../../../src/stun/message.ts';

/** True when `ip` is an address of one of this host's interfaces. */
export function isLocalAddress(ip: string): boolean {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.address === ip) return true;
  }
  return false;
}

/**
 * Whether a packet to `publicV4` ("ip:port", socket A's STUN-mapped address) from another socket
 * reaches `sock` (A) within `timeoutMs`. null when the address is unusable or local (no NAT);
 * `isLocal` decides the latter (tests replace it).
 */
export async function checkHairpinning(sock: Socket, publicV4: string, timeoutMs = 300, isLocal: (ip: string) => boolean = isLocalAddress): Promise<boolean | null> {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(publicV4);
  if (!m) return null;
  const ip = m[1]!;
  const port = Number(m[2]);
  if (port < 1 || port > 65535 || isLocal(ip)) return null;
  const probe = Buffer.from(buildBindingRequest(new Uint8Array(randomBytes(TRANSACTION_ID_LENGTH))));
  const b = createSocket('udp4');
  return new Promise<boolean | null>((resolve) => {
    let resend: ReturnType<typeof setTimeout> | undefined;
    let done = false;
    const finish = (v: boolean | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(resend);
      sock.off('message', onMessage);
      b.close();
      resolve(v);
    };
    const onMessage = (msg: Buffer): void => {
      if (msg.equals(probe)) finish(true);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on('message', onMessage);
    b.on('error', () => finish(null));
    b.bind(0, () => {
      const send = (): void => b.send(probe, port, ip, () => {});
      send();
      resend = setTimeout(send, Math.min(100, timeoutMs / 3)); // one retransmission against loss
    });
  });
}
