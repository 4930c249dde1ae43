/** `pierce wg …`: key tools compatible with `wg`, and the userspace tunnel (`up`, `ping`). */
import { readFile } from 'node:fs/promises';
import { NodePrivate, PresharedKey } from '../../../src/key/keys.ts';
import { PierceError } from '../../../src/errors.ts';
import { parseWgConfig, type WgConfig } from '../../../src/wg/config.ts';
import { UsageError, type Io } from './main.ts';
import { wgUp } from './wg-up.ts';
import { wgPing } from './wg-ping.ts';

export const WG_USAGE = `Usage: pierce wg <command>

  genkey                        print a new private key (base64)
  pubkey                        read a private key on stdin, print its public key
  genpsk                        print a new preshared key
  up --config FILE [--listen-port N] [--verbose] [--under-load]
     [--forward [BIND:]LPORT=IP:PORT]... [--socks5 [BIND:]PORT] [--listen PORT=HOST:PORT]...
                                run the tunnel in the foreground with Pierce's own TCP/IP stack
                                on its addresses (ICMP echo, TCP, UDP). --forward: a local TCP
                                listener (default bind 127.0.0.1) carried through the tunnel to
                                IP:PORT; --socks5: a SOCKS5 CONNECT proxy into the tunnel;
                                --listen: tunnel TCP port PORT on our address carried to the
                                local HOST:PORT. --under-load answers every handshake without a
                                valid cookie with a cookie reply (WireGuard's DoS defence, always
                                on). SIGUSR1 forces a new handshake; SIGINT/SIGTERM stop
  ping --config FILE [--count N] [--interval MS] [--timeout S] [--listen-port N] [--json] DEST_IP
                                handshake, then send N ICMP echo requests to DEST_IP through the
                                tunnel; exit 0 when every echo was answered, 1 otherwise

The config is a wg-quick file: [Interface] PrivateKey, Address, ListenPort; [Peer] PublicKey,
PresharedKey, Endpoint, AllowedIPs, PersistentKeepalive. Other keys are ignored with a warning.
`;

export async function wgCommand(argv: string[], io: Io): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout(WG_USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(WG_USAGE);
    return 0;
  }
  switch (sub) {
    case 'genkey':
      noArgs(sub, rest);
      io.stdout(NodePrivate.generate().toBase64() + '\n');
      return 0;
    case 'genpsk':
      noArgs(sub, rest);
      io.stdout(PresharedKey.generate().toBase64() + '\n');
      return 0;
    case 'pubkey': {
      noArgs(sub, rest);
      const text = (await io.readStdin()).trim();
      let key: NodePrivate;
      try {
        key = NodePrivate.parse(text);
      } catch {
        throw new PierceError('KEY_PARSE', 'stdin: not a valid private key (expected 44 base64 characters, as `wg genkey` prints)');
      }
      io.stdout(key.public().toBase64() + '\n');
      return 0;
    }
    case 'up':
      return wgUp(rest, io);
    case 'ping':
      return wgPing(rest, io);
    default:
      throw new UsageError(`unknown wg command "${sub}"`);
  }
}

function noArgs(sub: string, rest: string[]): void {
  if (rest.length > 0) throw new UsageError(`wg ${sub} takes no arguments`);
}

/** Reads and parses a config file; warnings go to stderr. */
export async function loadConfig(file: string, io: Io): Promise<WgConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new PierceError('CONFIG_READ', `cannot read config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const cfg = parseWgConfig(text, file);
  for (const w of cfg.warnings) io.stderr(`pierce: warning: ${w}\n`);
  return cfg;
}

/** The options every tunnel command shares (for node:util parseArgs). */
export const TUNNEL_OPTIONS = {
  config: { type: 'string', short: 'c' },
  'listen-port': { type: 'string' },
  verbose: { type: 'boolean', short: 'v' },
} as const;

export function intOption(name: string, v: string | undefined, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got "${v}"`);
  return n;
}
