/** `pierce wg up --config FILE`: the tunnel in the foreground, answering ICMP echo. */
import { formatPrefix } from '../../../src/netstack/addr.ts';
import { answerEcho } from '../../../src/netstack/icmp.ts';
import { equalBytes } from '../../../src/crypto/bytes.ts';
import type { LogLevel } from '../../../src/wg/types.ts';
import { UdpTunnel } from '../wg/udp-tunnel.ts';
import { UsageError, type Io } from './main.ts';
import { parseArgs } from 'node:util';
import { intOption, loadConfig, TUNNEL_OPTIONS } from './wg.ts';

export function makeLogger(io: Io, verbose: boolean): (level: LogLevel, message: string) => void {
  return (level, message) => {
    if (level === 'debug' && !verbose) return;
    io.stderr(`pierce: ${message}\n`);
  };
}

export async function wgUp(argv: string[], io: Io): Promise<number> {
  const { values } = parseArgs({ args: argv, options: TUNNEL_OPTIONS, strict: true });
  if (!values.config) throw new UsageError('wg up needs --config FILE');
  const cfg = await loadConfig(values.config, io);
  const log = makeLogger(io, values.verbose === true);
  const local = cfg.interface.addresses.map((p) => p.addr);
  const isLocal = (dst: Uint8Array) => local.some((a) => equalBytes(a, dst));
  const listenPort = intOption('listen-port', values['listen-port'], cfg.interface.listenPort ?? 0, 0, 65535);

  const tunnel: UdpTunnel = new UdpTunnel({
    config: cfg,
    listenPort,
    log,
    onPacket: (packet) => {
      const reply = answerEcho(packet, isLocal);
      if (reply) tunnel.send(reply);
    },
    onEvent: (e) => {
      if (e.type === 'handshake-complete') log('info', `handshake complete with ${e.peer} at ${e.peer.endpoint?.key ?? '?'}`);
      else log('warn', `handshake with ${e.peer} did not complete; giving up until there is traffic`);
    },
  });
  await tunnel.start();
  const addrs = cfg.interface.addresses.map(formatPrefix).join(', ') || 'none';
  log('info', `interface up: public key ${tunnel.device.publicKey.toBase64()}, addresses ${addrs}, ${cfg.peers.length} peer(s), listening on udp port ${tunnel.port}`);

  return new Promise<number>((resolve) => {
    const stop = (sig: string) => {
      log('info', `${sig}: shutting down`);
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      process.off('SIGUSR1', onUsr1);
      tunnel.stop();
      resolve(0);
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    const onUsr1 = () => {
      log('info', `SIGUSR1: forcing a new handshake with ${tunnel.device.peers().length} peer(s)`);
      tunnel.forceHandshakes();
    };
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    process.on('SIGUSR1', onUsr1);
  });
}
