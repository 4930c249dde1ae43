/**
 * `pierce wg ping --config FILE DEST_IP`: handshake, then ICMP echo through the tunnel, printing
 * a line per reply as ping(8) does. Exit 0 when every echo was answered, 1 otherwise.
 */
import { formatIP, tryParseIP } from '../../../src/netstack/addr.ts';
import { buildEchoRequest, parseEchoReply } from '../../../src/netstack/icmp.ts';
import { cryptoRandom } from '../../../src/crypto/backend.ts';
import { equalBytes } from '../../../src/crypto/bytes.ts';
import { PierceError } from '../../../src/errors.ts';
import { UdpTunnel } from '../wg/udp-tunnel.ts';
import { UsageError, type Io } from './main.ts';
import { parseArgs } from 'node:util';
import { intOption, loadConfig, TUNNEL_OPTIONS } from './wg.ts';
import { makeLogger } from './wg-up.ts';

interface PingResult {
  destination: string;
  transmitted: number;
  received: number;
  handshakeMs: number | null;
  rttMs: number[];
  error?: string;
}

export async function wgPing(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      ...TUNNEL_OPTIONS,
      count: { type: 'string', short: 'n' },
      interval: { type: 'string', short: 'i' },
      timeout: { type: 'string', short: 'W' },
      json: { type: 'boolean' },
    },
    allowPositionals: true,
    strict: true,
  });
  if (!values.config) throw new UsageError('wg ping needs --config FILE');
  if (positionals.length !== 1) throw new UsageError('wg ping needs exactly one DEST_IP');
  const dest = tryParseIP(positionals[0]!);
  if (!dest) throw new UsageError(`"${positionals[0]}" is not an IPv4 or IPv6 address`);
  const count = intOption('count', values.count, 3, 1, 65535);
  const interval = intOption('interval', values.interval, 1000, 1, 3_600_000);
  const timeoutS = intOption('timeout', values.timeout, 10, 1, 3600);
  const json = values.json === true;

  const cfg = await loadConfig(values.config, io);
  const src = cfg.interface.addresses.find((p) => p.addr.length === dest.length)?.addr;
  if (!src) throw new PierceError('NO_SOURCE', `${values.config}: no IPv${dest.length === 4 ? 4 : 6} Address in [Interface] to ping ${positionals[0]} from`);
  const log = makeLogger(io, values.verbose === true);
  const listenPort = intOption('listen-port', values['listen-port'], cfg.interface.listenPort ?? 0, 0, 65535);

  const id = (cryptoRandom(2)[0]! << 8) | cryptoRandom(1)[0]!;
  const sentAt = new Map<number, number>();
  const result: PingResult = { destination: formatIP(dest), transmitted: 0, received: 0, handshakeMs: null, rttMs: [] };
  let onHandshake: () => void = () => {};
  let onAllAnswered: () => void = () => {};
  const started = UdpTunnel.now();

  const tunnel = new UdpTunnel({
    config: cfg,
    listenPort,
    log,
    onEvent: (e) => {
      if (e.type === 'handshake-complete' && result.handshakeMs === null) {
        result.handshakeMs = UdpTunnel.now() - started;
        onHandshake();
      }
    },
    onPacket: (packet) => {
      const r = parseEchoReply(packet);
      if (!r || r.id !== id || !equalBytes(r.src, dest)) return;
      const t0 = sentAt.get(r.seq);
      if (t0 === undefined) return;
      sentAt.delete(r.seq);
      const rtt = UdpTunnel.now() - t0;
      result.received++;
      result.rttMs.push(rtt);
      if (!json) io.stdout(`${packet.length - (dest.length === 4 ? 20 : 40)} bytes from ${result.destination}: icmp_seq=${r.seq} time=${rtt.toFixed(2)} ms\n`);
      if (result.received === count) onAllAnswered();
    },
  });
  await tunnel.start();
  const payload = new Uint8Array(56).map((_, i) => i);
  const sendEcho = (seq: number) => {
    const pkt = buildEchoRequest({ src, dst: dest, id, seq, payload });
    sentAt.set(seq, UdpTunnel.now());
    result.transmitted++;
    const err = tunnel.send(pkt);
    if (err) throw new PierceError('NO_ROUTE', `${result.destination} is not in any peer's AllowedIPs in ${values.config}`);
  };

  try {
    if (!json) io.stdout(`PING ${result.destination} from ${formatIP(src)} through ${cfg.peers.length} peer(s)\n`);
    // The first echo starts the handshake and waits staged until it completes.
    sendEcho(1);
    const ok = await waitFor((r) => (onHandshake = r), timeoutS * 1000);
    if (!ok) {
      const peer = tunnel.device.routes.lookup(dest);
      const where = peer?.endpoint ? `at ${peer.endpoint.key}` : '(no endpoint configured)';
      result.error = `handshake with peer ${peer?.publicKey.toBase64() ?? '?'} ${where} did not complete within ${timeoutS} s (timed out)`;
      if (json) io.stdout(JSON.stringify(result) + '\n');
      else io.stderr(`pierce: ${result.error}\n`);
      return 1;
    }
    for (let seq = 2; seq <= count; seq++) {
      await sleep(interval);
      sendEcho(seq);
    }
    if (result.received < count) await waitFor((r) => (onAllAnswered = r), timeoutS * 1000);
  } finally {
    tunnel.stop();
  }

  if (json) {
    io.stdout(JSON.stringify(result) + '\n');
  } else {
    const loss = Math.round((100 * (result.transmitted - result.received)) / result.transmitted);
    io.stdout(`--- ${result.destination} ping statistics ---\n${result.transmitted} packets transmitted, ${result.received} received, ${loss}% packet loss\n`);
    if (result.rttMs.length) {
      const r = result.rttMs;
      const avg = r.reduce((a, b) => a + b, 0) / r.length;
      io.stdout(`rtt min/avg/max = ${Math.min(...r).toFixed(2)}/${avg.toFixed(2)}/${Math.max(...r).toFixed(2)} ms, handshake ${result.handshakeMs?.toFixed(1)} ms\n`);
    }
  }
  return result.received === count ? 0 : 1;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves true when the registered callback fires, false after `ms`. */
function waitFor(register: (resolve: () => void) => void, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    register(() => {
      clearTimeout(t);
      resolve(true);
    });
  });
}
