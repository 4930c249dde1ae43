/** `pierce relay`: the DERP relay (WebSocket and Upgrade: DERP), STUN, UDP leases, metrics. */
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { fromHex } from '../../../src/crypto/bytes.ts';
import { NodePrivate } from '../../../src/key/keys.ts';
import { PierceError } from '../../../src/errors.ts';
import { startRelay } from '../relay/server.ts';
import { controlAuthority, DEFAULT_LEASE_BYTES_PER_SECOND, DEFAULT_LEASE_PACKETS_PER_SECOND, DEFAULT_LEASE_SOCKETS } from '../relay/leases.ts';
import { tryParseIP, parsePrefix } from '../../../src/netstack/addr.ts';
import { startStunServer } from '../stun/server.ts';
import { UsageError, type Io } from './main.ts';
import { intOption } from './wg.ts';
import { makeLogger } from './wg-up.ts';

export const RELAY_USAGE = `Usage: pierce relay --listen ADDR:PORT [options]

Runs a DERP relay (Tailscale DERP v2 framing) for browsers (WebSocket, subprotocol "derp") and
nodes (GET /derp with Upgrade: DERP). It forwards ciphertext by public key and never sees keys.

  --listen ADDR:PORT        HTTP(S) listen address (e.g. 127.0.0.1:8443, [::]:443)
  --key FILE                the relay's private key; created (mode 0600) if missing.
                            Without it a new key is made at every start.
  --stun ADDR:PORT          also answer STUN binding requests on this UDP address; repeat for
                            more addresses on the same port (e.g. 0.0.0.0:3478 and [::]:3478)
  --tls-cert F --tls-key F  serve HTTPS/WSS
  --mesh-key FILE           a 64-hex-digit key shared by relays of one region (peers that show
                            it may watch connections and forward packets)
  --mesh-with URL,…         the other relays of the region (their /derp URLs); clients on
                            different relays then reach each other. Needs --mesh-key.
  --rate BYTES/S --burst BYTES
                            per-client token bucket on received bytes (0: unlimited)
  --metrics                 serve Prometheus metrics on /metrics
  --verbose                 log every connection

UDP leases (browser nodes get UDP sockets of their own on this host; docs/udp-leases.md):
  --udp-leases              serve /lease (WebSocket, subprotocol "pierce-lease"); needs --control
  --control URL             the control server that vouches for node keys (its admin API)
  --control-api-key KEY     an API key from \`pierce control apikey\` (default $PIERCE_API_KEY)
  --lease-sockets N         sockets one node may hold (default ${DEFAULT_LEASE_SOCKETS})
  --lease-rate PKTS/S       datagrams per second per lease (default ${DEFAULT_LEASE_PACKETS_PER_SECOND})
  --lease-bytes BYTES/S     payload bytes per second per lease (default ${DEFAULT_LEASE_BYTES_PER_SECOND})
  --lease-bind ADDR         bind leased sockets on this address only (default 0.0.0.0 and ::)
  --lease-advertise IP,…    addresses nodes advertise with a leased port (default: this host's
                            interface addresses, or --lease-bind)
  --lease-deny CIDR,…       never send to these networks (e.g. the relay's own LAN); unspecified,
                            multicast and broadcast are always refused
  --lease-allow-loopback    allow sends to 127.0.0.0/8 and ::1 (single-host testing only)
  Nodes may send only to the relay map's STUN servers and to any port on an endpoint IP of
  one of their peers, as control reports them.
`;

export function splitHostPort(s: string, what: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  if (!m) throw new UsageError(`${what} must be ADDR:PORT or [IPv6]:PORT, got "${s}"`);
  const port = Number(m[2]);
  if (port > 65535) throw new UsageError(`${what}: port ${port} is out of range`);
  return { host: m[1]!, port };
}

async function loadOrCreateKey(file: string, io: Io): Promise<NodePrivate> {
  try {
    return NodePrivate.parse((await readFile(file, 'utf8')).trim());
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new PierceError('KEY_FILE', `${file}: not a valid private key (${(e as Error).message})`);
    }
  }
  const k = NodePrivate.generate();
  await writeFile(file, k.toBase64() + '\n', { mode: 0o600, flag: 'wx' });
  io.stderr(`pierce: created relay key ${file}\n`);
  return k;
}

type RelayValues = Record<string, string | boolean | string[] | undefined>;

function list(v: string | boolean | string[] | undefined): string[] {
  return typeof v === 'string' ? v.split(',').map((x) => x.trim()).filter(Boolean) : [];
}

/** The --udp-leases options, checked. */
function leaseOptions(values: RelayValues) {
  const control = values['control'];
  if (typeof control !== 'string' || !/^https?:\/\//.test(control)) throw new UsageError('--udp-leases needs --control URL (http:// or https://)');
  const apiKey = (values['control-api-key'] as string | undefined) ?? process.env['PIERCE_API_KEY'];
  if (!apiKey) throw new UsageError('--udp-leases needs --control-api-key KEY or $PIERCE_API_KEY (from `pierce control apikey`)');
  const bind = values['lease-bind'] as string | undefined;
  if (bind !== undefined && !tryParseIP(bind)) throw new UsageError(`--lease-bind: "${bind}" is not an IP address`);
  const advertise = list(values['lease-advertise']);
  for (const a of advertise) if (!tryParseIP(a)) throw new UsageError(`--lease-advertise: "${a}" is not an IP address`);
  const deny = list(values['lease-deny']);
  for (const d of deny) {
    try {
      parsePrefix(d);
    } catch {
      throw new UsageError(`--lease-deny: "${d}" is not a CIDR prefix`);
    }
  }
  return {
    authority: controlAuthority({ controlUrl: control, apiKey }),
    sockets: intOption('lease-sockets', values['lease-sockets'] as string | undefined, DEFAULT_LEASE_SOCKETS, 1, 256),
    packetsPerSecond: intOption('lease-rate', values['lease-rate'] as string | undefined, DEFAULT_LEASE_PACKETS_PER_SECOND, 1, 10_000_000),
    bytesPerSecond: intOption('lease-bytes', values['lease-bytes'] as string | undefined, DEFAULT_LEASE_BYTES_PER_SECOND, 1500, 2 ** 40),
    ...(bind ? { bindAddress: bind } : {}),
    ...(advertise.length ? { addresses: advertise } : {}),
    ...(deny.length ? { deny } : {}),
    allowLoopback: values['lease-allow-loopback'] === true,
  };
}

export async function relayCommand(argv: string[], io: Io): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout(RELAY_USAGE);
    return 0;
  }
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string' },
      key: { type: 'string' },
      stun: { type: 'string', multiple: true },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'mesh-key': { type: 'string' },
      'mesh-with': { type: 'string' },
      rate: { type: 'string' },
      burst: { type: 'string' },
      metrics: { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v' },
      'udp-leases': { type: 'boolean' },
      control: { type: 'string' },
      'control-api-key': { type: 'string' },
      'lease-sockets': { type: 'string' },
      'lease-rate': { type: 'string' },
      'lease-bytes': { type: 'string' },
      'lease-bind': { type: 'string' },
      'lease-advertise': { type: 'string' },
      'lease-deny': { type: 'string' },
      'lease-allow-loopback': { type: 'boolean' },
    },
    strict: true,
  });
  if (!values.listen) throw new UsageError('relay needs --listen ADDR:PORT');
  const { host, port } = splitHostPort(values.listen, '--listen');
  if (!!values['tls-cert'] !== !!values['tls-key']) throw new UsageError('--tls-cert and --tls-key go together');
  const log = makeLogger(io, values.verbose === true);
  const privateKey = values.key ? await loadOrCreateKey(values.key, io) : NodePrivate.generate();
  let meshKey: Uint8Array | undefined;
  if (values['mesh-key']) {
    const text = (await readFile(values['mesh-key'], 'utf8').catch((e: Error) => {
      throw new PierceError('MESH_KEY', `cannot read --mesh-key ${values['mesh-key']}: ${e.message}`);
    })).trim();
    const k = text.length === 64 ? fromHex(text) : null;
    if (!k) throw new PierceError('MESH_KEY', `${values['mesh-key']}: a mesh key is 64 hex digits`);
    meshKey = k;
  }
  const meshWith = values['mesh-with'] ? values['mesh-with'].split(',').map((u) => u.trim()).filter(Boolean) : [];
  if (meshWith.length > 0 && !meshKey) throw new UsageError('--mesh-with needs --mesh-key');
  for (const u of meshWith) if (!/^https?:\/\/.+\/derp$/.test(u)) throw new UsageError(`--mesh-with: "${u}" is not a relay URL like http://host:port/derp`);
  const rate = intOption('rate', values.rate, 0, 0, 2 ** 40);
  const burst = intOption('burst', values.burst, rate > 0 ? Math.max(rate, 65_568) : 0, 0, 2 ** 40);
  const leases = values['udp-leases'] ? leaseOptions(values) : undefined;
  if (!values['udp-leases'] && Object.keys(values).some((k) => k.startsWith('lease-') || k === 'control' || k === 'control-api-key')) {
    throw new UsageError('--control and --lease-* options go with --udp-leases');
  }
  const tls = values['tls-cert'] ? { cert: await readFile(values['tls-cert']), key: await readFile(values['tls-key']!) } : undefined;

  const relay = await startRelay({
    host,
    port,
    privateKey,
    ...(meshKey ? { meshKey, meshWith } : {}),
    ...(tls ? { tls } : {}),
    metrics: values.metrics === true,
    limits: { rateBytesPerSec: rate, burstBytes: burst },
    ...(leases ? { leases } : {}),
    log,
  });
  log('info', `relay listening on ${relay.url} (public key ${relay.publicKey.toString()})`);
  if (leases) log('info', `UDP leases on ${relay.url.replace(/^http/, 'ws').replace(/\/derp$/, '/lease')} (checked with ${values.control})`);
  let stun: Awaited<ReturnType<typeof startStunServer>> | null = null;
  if (values.stun && values.stun.length > 0) {
    const addrs = values.stun.map((a) => splitHostPort(a, '--stun'));
    if (addrs.some((a) => a.port !== addrs[0]!.port)) throw new UsageError('every --stun address must use the same port');
    stun = await startStunServer({ host: addrs.map((a) => a.host), port: addrs[0]!.port, log });
  }
  return new Promise<number>((resolve) => {
    const stop = (sig: string) => {
      log('info', `${sig}: shutting down`);
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      void Promise.all([relay.close(), stun?.close()]).finally(() => resolve(0));
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
}
