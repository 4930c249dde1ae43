/** `pierce wg up --config FILE`: the tunnel in the foreground, answering ICMP echo. */
import { formatPrefix } from '../../../src/netstack/addr.ts';
import type { LogLevel } from '../../../src/wg/types.ts';
import { UdpTunnel } from '../wg/udp-tunnel.ts';
import { StackRuntime } from '../netstack/runtime.ts';
import { startForward, startListen } from '../proxy/forward.ts';
import { startSocks5 } from '../proxy/socks5.ts';
import { UsageError, type Io } from './main.ts';
import { parseArgs } from 'node:util';
import { intOption, loadConfig, TUNNEL_OPTIONS } from './wg.ts';

export function makeLogger(io: Io, verbose: boolean): (level: LogLevel, message: string) => void {
  // PIERCE_VERBOSE=1 turns on debug logs without changing the command line.
  if (process.env['PIERCE_VERBOSE'] === '1') verbose = true;
  return (level, message) => {
    if (level === 'debug' && !verbose) return;
    io.stderr(`pierce: ${message}\n`);
  };
}

export async function wgUp(argv: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...TUNNEL_OPTIONS,
      forward: { type: 'string', multiple: true },
      socks5: { type: 'string' },
      listen: { type: 'string', multiple: true },
      'under-load': { type: 'boolean' },
    },
    strict: true,
  });
  if (!values.config) throw new UsageError('wg up needs --config FILE');
  const cfg = await loadConfig(values.config, io);
  const log = makeLogger(io, values.verbose === true);
  const listenPort = intOption('listen-port', values['listen-port'], cfg.interface.listenPort ?? 0, 0, 65535);

  // The userspace TCP/IP stack on the interface addresses: ICMP echo, UDP, TCP.
  const net: StackRuntime = new StackRuntime({
    log,
    addresses: cfg.interface.addresses.map((p) => p.addr),
    output: (packet) => {
      const err = tunnel.send(packet);
      if (err) log('debug', `stack: cannot send a packet: ${err.message}`);
    },
  });
  const tunnel: UdpTunnel = new UdpTunnel({
    config: cfg,
    listenPort,
    log,
    onPacket: (packet) => net.input(packet),
    onEvent: (e) => {
      if (e.type === 'handshake-complete') log('info', `handshake complete with ${e.peer} at ${e.peer.endpoint?.key ?? '?'}`);
      else log('warn', `handshake with ${e.peer} did not complete; giving up until there is traffic`);
    },
  });
  // Demand cookies (mac2) from every handshake, as WireGuard does when flooded (paper §5.3).
  if (values['under-load']) tunnel.device.forceUnderLoad = true;
  await tunnel.start();
  const addrs = cfg.interface.addresses.map(formatPrefix).join(', ') || 'none';
  log('info', `interface up: public key ${tunnel.device.publicKey.toBase64()}, addresses ${addrs}, ${cfg.peers.length} peer(s), listening on udp port ${tunnel.port}`);
  const closers: (() => Promise<void>)[] = [];
  try {
    for (const spec of (values.forward as string[] | undefined) ?? []) {
      const f = await startForward(spec, net, log);
      closers.push(() => f.close());
    }
    if (values.socks5 !== undefined) {
      const sx = await startSocks5(values.socks5 as string, net, log);
      closers.push(() => sx.close());
    }
    for (const spec of (values.listen as string[] | undefined) ?? []) {
      const l = await startListen(spec, net, log);
      closers.push(() => l.close());
    }
  } catch (e) {
    await Promise.all(closers.map((c) => c()));
    net.stop();
    tunnel.stop();
    throw e;
  }

  return new Promise<number>((resolve) => {
    const stop = (sig: string) => {
      log('info', `${sig}: shutting down`);
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      process.off('SIGUSR1', onUsr1);
      void Promise.all(closers.map((c) => c())).finally(() => {
        net.stop();
        tunnel.stop();
        resolve(0);
      });
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
