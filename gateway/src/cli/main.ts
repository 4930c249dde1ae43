/**
 * `pierce`: the command line. Subcommands live beside this file; each exports a handler taking
 * its arguments and returning an exit code. Usage errors exit 2, runtime failures 1.
 */
import { PierceError } from '../../../src/errors.ts';
import { wgCommand } from './wg.ts';
import { relayCommand } from './relay.ts';
import { policyCommand } from './policy.ts';
import { controlCommand } from './control.ts';
import { adminCommand } from './admin.ts';
import { shareCommand } from './share.ts';
import { nodeCommand, upCommand } from './up.ts';
import { netcheckCommand } from './netcheck.ts';
import { demoCommand } from './demo.ts';

const VERSION = '0.1.0';

export const USAGE = `pierce ${VERSION}: a mesh VPN in pure TypeScript

Usage: pierce <command> [options]

Commands:
  wg genkey                     print a new private key (base64, like \`wg genkey\`)
  wg pubkey                     read a private key on stdin, print its public key
  wg genpsk                     print a new preshared key
  wg up --config FILE           run a userspace WireGuard tunnel in the foreground
  wg ping --config FILE DEST    handshake and ping DEST through the tunnel
  relay --listen ADDR:PORT      run a DERP relay (WebSocket and Upgrade: DERP) with optional STUN
  policy check FILE [--json]    validate an ACL policy (HuJSON) and run its tests, offline
  up --control URL              run this machine as a mesh node (forwards, local API)
  status | ping PEER | nc PEER PORT | ip | down | logout
                                talk to the running node
  netcheck --relay URL …        UDP, NAT mapping behaviour, NAT64, relay latency
  control --listen A:P --db F   run the coordination server (registration, policy, netmaps)
  control apikey --db FILE      print a new admin API key
  admin <what> <action>         manage users, auth keys, nodes, policy through the admin API
  share create|list|revoke      links that let a browser join for a while (shareable sessions)
  demo [--data DIR]             a whole mesh on this machine: control, page, relay, an SSH host

Every command takes --help (e.g. \`pierce up --help\`, \`pierce admin --help\`).
`;

/** A usage error: printed with a hint, exit code 2. */
export class UsageError extends PierceError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

export interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  readStdin: () => Promise<string>;
}

export const processIo: Io = {
  stdout: (s) => void process.stdout.write(s),
  stderr: (s) => void process.stderr.write(s),
  readStdin: async () => {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  },
};

export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        io.stdout(USAGE);
        return cmd === undefined ? 2 : 0;
      case '--version':
      case 'version':
        io.stdout(`pierce ${VERSION}\n`);
        return 0;
      case 'wg':
        return await wgCommand(rest, io);
      case 'relay':
        return await relayCommand(rest, io);
      case 'policy':
        return await policyCommand(rest, io);
      case 'control':
        return await controlCommand(rest, io);
      case 'admin':
        return await adminCommand(rest, io);
      case 'share':
        return await shareCommand(rest, io);
      case 'up':
        return await upCommand(rest, io);
      case 'netcheck':
        return await netcheckCommand(rest, io);
      case 'demo':
        return await demoCommand(rest, io);
      case 'status':
      case 'ping':
      case 'nc':
      case 'ip':
      case 'down':
      case 'logout':
        return await nodeCommand(cmd, rest, io);
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`pierce: ${e.message}\nRun \`pierce --help\` for usage.\n`);
      return 2;
    }
    if (e instanceof PierceError) {
      io.stderr(`pierce: ${e.message}\n`);
      return 1;
    }
    if (e instanceof Error && 'code' in e && typeof (e as { code: unknown }).code === 'string' && (e as { code: string }).code.startsWith('ERR_PARSE_ARGS')) {
      io.stderr(`pierce: ${e.message}\nRun \`pierce --help\` for usage.\n`);
      return 2;
    }
    throw e;
  }
}
