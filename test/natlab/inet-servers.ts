/**
 * Test servers for the NAT lab's internet namespace, in one process:
 *   node --import tsx test/natlab/inet-servers.ts <ip>[,<ip>…] <stun-port> <echo-port>
 * - Pierce's STUN server (gateway/src/stun/server.ts) on every ip at <stun-port> (no rate limits);
 * - a UDP echo and a TCP echo (each connection gets its bytes back) on every ip at <echo-port>.
 * Prints "inet-servers ready" once everything listens; SIGTERM ends it.
 */
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { startStunServer } from '../../gateway/src/stun/server.ts';

const [ipsText, stunPortText, echoPortText] = process.argv.slice(2);
if (!ipsText || !stunPortText || !echoPortText) {
  console.error('usage: inet-servers.ts <ip>[,<ip>…] <stun-port> <echo-port>');
  process.exit(2);
}
const ips = ipsText.split(',');
const echoPort = Number(echoPortText);

await startStunServer({ host: ips, port: Number(stunPortText), rateLimit: false, globalRateLimit: false });
for (const ip of ips) {
  const udp = createSocket(ip.includes(':') ? 'udp6' : 'udp4');
  udp.on('message', (m, from) => udp.send(m, from.port, from.address));
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(echoPort, ip, () => resolve());
  });
  const tcp = createServer((c) => {
    c.on('error', () => undefined);
    c.pipe(c);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(echoPort, ip, () => resolve());
  });
}
console.log('inet-servers ready');
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
