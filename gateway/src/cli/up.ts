/** `pierce up` and the commands that talk to a running node over its local API. */
import { homedir, hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PierceError } from '../../../src/errors.ts';
import type { DirectOptions, EngineStatus } from '../../../src/engine/types.ts';
import { parseAddr } from '../../../src/paths/paths.ts';
import { apiConnect, apiRequest } from '../node/api.ts';
import { startNode } from '../node/daemon.ts';
import { UsageError, type Io } from './main.ts';

export const UP_USAGE = `Usage: pierce up --control URL [options]

Runs this machine as a mesh node in the foreground.

  --control URL             the control server (e.g. http://127.0.0.1:8080)
  --authkey KEY             register with an auth key; without one, a login URL is printed and
                            the node waits until an admin approves it
  --hostname NAME           the node's name (default: this machine's hostname)
  --state DIR               keys and pinned control key (default $PIERCE_STATE, /var/lib/pierce
                            as root, else ~/.local/state/pierce); a restart keeps the identity
  --socket PATH             the local API socket (default DIR/pierce.sock)
  --advertise-tags T,T      ask for tags (the user must own them in the policy's tagOwners)
  --ephemeral               delete this node soon after it goes offline
  --forward PORT[=HOST:PORT]
                            let the tailnet reach TCP PORT on this node, forwarded to HOST:PORT
                            (default 127.0.0.1:PORT); repeatable. Nothing else is reachable.
  --ssh                     answer SSH on tailnet port 22 with the built-in server: logins are
                            decided by the policy's "ssh" rules and the caller's tailnet
                            identity (no keys, no passwords); PTYs, exec, exit status, an
                            audit line per session (docs/ssh-server.md)
  --relay-transport derp|websocket
                            how to reach relays (default derp: TCP with Upgrade: DERP)

NAT traversal (direct UDP paths; the relay carries traffic until one is proven):
  --port N                  local UDP port (default 41641; 0: any free port)
  --endpoint IP:PORT        also advertise this endpoint (e.g. a static port forward); repeatable
  --relay-only              no direct paths: every packet goes through a relay
  --birthday-rate N         birthday probes per second toward a peer behind a hard NAT (default 100)
  --birthday-sockets N      sockets opened when this node is the hard side (default 256)
  --birthday-seconds N      how long one attempt lasts (default 30)
  --birthday-hard-hard      also try when both NATs map per destination (rarely works; default:
                            such pairs stay on the relay)
  --dns IP[,IP]             DNS servers for NAT64 (DNS64) discovery (default: the system's)
  --verbose                 debug logging

Then: pierce status | ping PEER | nc PEER PORT | ip | down | logout
`;

export const NODE_CMDS_USAGE = `Usage:
  pierce status [--json]              this node, its peers, the path to each, home relay, bytes
  pierce ping PEER [--count N] [--timeout MS] [--until-direct] [--json]
                                      disco pings over the current path; --until-direct stops
                                      at the first pong over a direct path (exit 1 if none)
  pierce nc PEER PORT                 stdin/stdout over a mesh TCP connection
                                      (ssh -o ProxyCommand="pierce nc %h %p" user@PEER)
  pierce ip [--json]                  this node's tailnet addresses
  pierce down                         stop the node
  pierce logout                       log out at control and stop

PEER is a node name or tailnet IP. All take --socket PATH or --state DIR (default $PIERCE_SOCKET,
else the state directory's pierce.sock).
`;

export function defaultStateDir(): string {
  return process.env['PIERCE_STATE'] ?? (process.getuid?.() === 0 ? '/var/lib/pierce' : join(homedir(), '.local', 'state', 'pierce'));
}

function socketFor(values: { socket?: string | undefined; state?: string | undefined }): string {
  return values.socket ?? (values.state ? join(values.state, 'pierce.sock') : (process.env['PIERCE_SOCKET'] ?? join(defaultStateDir(), 'pierce.sock')));
}

export async function upCommand(argv: string[], io: Io): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout(UP_USAGE);
    return 0;
  }
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      control: { type: 'string' },
      authkey: { type: 'string' },
      hostname: { type: 'string' },
      state: { type: 'string' },
      socket: { type: 'string' },
      'advertise-tags': { type: 'string' },
      ephemeral: { type: 'boolean' },
      forward: { type: 'string', multiple: true },
      ssh: { type: 'boolean' },
      'relay-transport': { type: 'string' },
      port: { type: 'string' },
      endpoint: { type: 'string', multiple: true },
      'relay-only': { type: 'boolean' },
      'birthday-rate': { type: 'string' },
      'birthday-sockets': { type: 'string' },
      'birthday-seconds': { type: 'string' },
      'birthday-hard-hard': { type: 'boolean' },
      dns: { type: 'string' },
      verbose: { type: 'boolean', short: 'v' },
    },
  });
  const int = (name: string, v: string | undefined, min: number, max: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer ${min}..${max}, got "${v}"`);
    return n;
  };
  for (const e of values.endpoint ?? []) if (!parseAddr(e)) throw new UsageError(`--endpoint "${e}": expected IP:PORT or [IPv6]:PORT`);
  const dns = values.dns?.split(',').filter(Boolean);
  for (const d of dns ?? []) if (!/^[0-9a-fA-F:.[\]]+$/.test(d)) throw new UsageError(`--dns "${d}": expected an IP address`);
  const direct: DirectOptions = {
    port: int('port', values.port, 0, 65535) ?? 41641,
    ...(values.endpoint ? { endpoints: values.endpoint } : {}),
    ...(values['relay-only'] ? { disable: true } : {}),
    ...(values['birthday-rate'] ? { birthdayRate: int('birthday-rate', values['birthday-rate'], 1, 10000)! } : {}),
    ...(values['birthday-sockets'] ? { birthdaySockets: int('birthday-sockets', values['birthday-sockets'], 1, 1024)! } : {}),
    ...(values['birthday-seconds'] ? { birthdaySeconds: int('birthday-seconds', values['birthday-seconds'], 1, 600)! } : {}),
    ...(values['birthday-hard-hard'] ? { birthdayHardHard: true } : {}),
  };
  if (!values.control) throw new UsageError('up needs --control URL');
  try {
    new URL(values.control);
  } catch {
    throw new UsageError(`--control: "${values.control}" is not a URL`);
  }
  const rt = values['relay-transport'];
  if (rt !== undefined && rt !== 'derp' && rt !== 'websocket') throw new UsageError('--relay-transport is derp or websocket');
  for (const f of values.forward ?? []) if (!/^\d{1,5}(=.+:\d{1,5})?$/.test(f)) throw new UsageError(`--forward "${f}": expected PORT or PORT=HOST:PORT`);
  if (values.ssh && (values.forward ?? []).some((f) => /^22(=|$)/.test(f))) throw new UsageError('--ssh answers tailnet port 22 itself: drop --forward 22 (or forward another port)');
  const stateDir = values.state ?? defaultStateDir();
  const verbose = values.verbose ?? false;
  const log = (level: 'debug' | 'info' | 'warn', m: string) => {
    if (level !== 'debug' || verbose) io.stderr(`${new Date().toISOString()} ${m}\n`);
  };
  const node = await startNode({
    controlUrl: values.control,
    stateDir,
    socketPath: socketFor({ socket: values.socket, state: stateDir }),
    hostname: values.hostname ?? osHostname(),
    ...(values.authkey ? { authKey: values.authkey } : {}),
    ...(values['advertise-tags'] ? { tags: values['advertise-tags'].split(',').filter(Boolean) } : {}),
    ...(values.ephemeral ? { ephemeral: true } : {}),
    forwards: values.forward ?? [],
    ...(values.ssh ? { ssh: true } : {}),
    ...(rt ? { transport: { relayTransport: rt } } : {}),
    direct,
    ...(dns ? { dns } : {}),
    log,
    onLogin: (url) => io.stderr(`\nTo join this node to the tailnet, visit:\n\n\t${url}\n\n`),
    onRunning: (engine) => {
      const s = engine.status().self;
      io.stderr(`pierce up: ${s?.name} ${s?.addrs.join(' ')} running; API at ${socketFor({ socket: values.socket, state: stateDir })}\n`);
    },
  });
  const stop = () => void node.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await node.stopped;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  return 0;
}

function fmtBytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

function printStatus(io: Io, s: EngineStatus): void {
  const home = s.relays.find((r) => r.home);
  io.stdout(`${s.self?.addrs[0]?.split('/')[0] ?? '-'}  ${s.self?.name ?? '-'}  ${s.self?.user ?? s.self?.tags.join(',') ?? ''}  state ${s.state}, control ${s.controlConnected ? 'connected' : 'unreachable'}, home relay ${home ? `${home.code} (${home.latencyMs?.toFixed(1) ?? '?'} ms)` : 'none'}\n`);
  if (s.loginUrl) io.stdout(`login: ${s.loginUrl}\n`);
  const d = s.direct;
  if (d) {
    const nat = d.hardNat === null ? 'NAT kind unknown' : d.hardNat ? 'hard NAT (mapping varies by destination)' : 'easy NAT or none';
    io.stdout(`udp ${d.port}: ${nat}${d.portMapping ? `, port mapping ${d.portMapping}` : ''}; endpoints ${d.endpoints.join(' ') || '(none)'}\n`);
  } else io.stdout('relay only (no direct paths)\n');
  for (const p of s.peers) {
    const path = p.direct ? `direct ${p.path}${p.directRttMs !== null ? ` ${p.directRttMs.toFixed(1)} ms` : ''}` : p.path;
    io.stdout(`${p.addrs[0]!.split('/')[0]!.padEnd(15)}  ${p.name.padEnd(16)}  ${(p.user ?? p.tags.join(',')).padEnd(20)}  ${p.online ? 'online ' : 'offline'}  ${path.padEnd(28)}  rx ${fmtBytes(p.rxBytes)} tx ${fmtBytes(p.txBytes)}\n`);
  }
  const dropped = Object.entries(s.dropped);
  if (dropped.length) io.stdout(`dropped inbound: ${dropped.map(([k, v]) => `${v} ${k}`).join(', ')}\n`);
}

export async function nodeCommand(cmd: string, argv: string[], io: Io): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout(NODE_CMDS_USAGE);
    return 0;
  }
  const { values, positionals } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: { socket: { type: 'string' }, state: { type: 'string' }, json: { type: 'boolean' }, count: { type: 'string' }, timeout: { type: 'string' }, 'until-direct': { type: 'boolean' } },
  });
  const sock = socketFor(values);
  const call = async (method: string, path: string, timeoutMs?: number) => {
    const r = await apiRequest(sock, method, path, timeoutMs);
    if (r.status !== 200) throw new PierceError(String(r.body['code'] ?? 'API_ERROR'), String(r.body['error'] ?? `HTTP ${r.status}`));
    return r.body;
  };
  switch (cmd) {
    case 'status': {
      const s = (await call('GET', '/status')) as unknown as EngineStatus;
      if (values.json) io.stdout(JSON.stringify(s, null, 2) + '\n');
      else printStatus(io, s);
      return 0;
    }
    case 'ip': {
      const r = await call('GET', '/ip');
      io.stdout(values.json ? JSON.stringify(r) + '\n' : (r['addrs'] as string[]).join('\n') + '\n');
      return 0;
    }
    case 'ping': {
      const peer = positionals[0];
      if (!peer) throw new UsageError('ping needs PEER');
      const untilDirect = values['until-direct'] ?? false;
      const count = Number(values.count ?? (untilDirect ? 20 : 3));
      const timeout = Number(values.timeout ?? 5000);
      if (!Number.isInteger(count) || count < 1) throw new UsageError('--count must be a positive integer');
      let ok = 0;
      for (let i = 0; i < count; i++) {
        const t0 = Date.now();
        try {
          const r = await call('POST', `/ping?peer=${encodeURIComponent(peer)}&timeout=${timeout}`, timeout + 5000);
          ok++;
          io.stdout(values.json ? JSON.stringify(r) + '\n' : `pong from ${r['peer']} (${r['ip']}) via ${r['path']} in ${Number(r['ms']).toFixed(1)} ms\n`);
          if (untilDirect && r['direct']) return 0;
        } catch (e) {
          if (e instanceof PierceError && e.code === 'PEER_NOT_FOUND') throw e;
          io.stderr(`pierce: ${(e as Error).message}\n`);
        }
        // Like tailscale ping: about one ping a second while waiting for the direct path.
        if (untilDirect && i + 1 < count) await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - t0))));
      }
      if (untilDirect) {
        io.stderr(`pierce: no direct path to ${peer} after ${count} pings; traffic goes through the relay\n`);
        return 1;
      }
      return ok > 0 ? 0 : 1;
    }
    case 'nc': {
      const [peer, portText] = positionals;
      const port = Number(portText);
      if (!peer || !Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError('nc needs PEER PORT');
      const sock2 = await apiConnect(sock, peer, port);
      await new Promise<void>((resolve) => {
        process.stdin.pipe(sock2);
        sock2.pipe(process.stdout);
        sock2.on('end', () => resolve());
        sock2.on('close', () => resolve());
        sock2.on('error', (e) => {
          io.stderr(`pierce: ${e.message}\n`);
          resolve();
        });
      });
      return 0;
    }
    case 'down':
      await call('POST', '/down');
      return 0;
    case 'logout':
      await call('POST', '/logout');
      io.stdout('logged out\n');
      return 0;
    default:
      throw new UsageError(`unknown command "${cmd}"`);
  }
}
