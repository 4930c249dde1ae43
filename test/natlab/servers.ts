/**
 * Starting the test servers (inet-servers.ts) in a lab's internet namespace: Pierce's STUN
 * server and UDP/TCP echo on both internet addresses.
 */
import { fileURLToPath } from 'node:url';
import { spawnIn, type ChildHandle } from '../interop/lab/proc.ts';
import { tsxArgv } from './agent.ts';
import type { NatLab } from './lab.ts';

export const INET_SERVERS_TS = fileURLToPath(new URL('./inet-servers.ts', import.meta.url));

export interface InternetServers {
  child: ChildHandle;
  stunPort: number;
  echoPort: number;
  /** "ip:stunPort" for both internet addresses. */
  stun: [string, string];
}

export async function startInternetServers(lab: NatLab, o: { stunPort?: number; echoPort?: number } = {}): Promise<InternetServers> {
  const stunPort = o.stunPort ?? 3478;
  const echoPort = o.echoPort ?? 7;
  const [cmd, args] = tsxArgv(INET_SERVERS_TS, [lab.internet.ips.join(','), String(stunPort), String(echoPort)]);
  const child = spawnIn(lab.internet.ns, cmd, args, { name: `inet-servers@${lab.internet.ns}` });
  await child.waitForLine(/^inet-servers ready/, 20_000);
  const [a, b] = lab.internet.ips;
  return { child, stunPort, echoPort, stun: [`${a}:${stunPort}`, `${b}:${stunPort}`] };
}
