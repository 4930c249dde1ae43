/**
 * `pierce up`: the engine with Node's platform, the forwards to local services, and the local
 * API. Runs in the foreground until SIGINT/SIGTERM or `pierce down`.
 */
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { cryptoRandom } from '../../../src/crypto/backend.ts';
import { Engine } from '../../../src/engine/engine.ts';
import type { LogFn } from '../../../src/engine/types.ts';
import { nodeBackend } from '../crypto/node-backend.ts';
import { stackConnect, stackListen } from '../netstack/runtime.ts';
import type { TunnelNet } from '../proxy/tunnel-net.ts';
import { startListen, type ListenHandle } from '../proxy/forward.ts';
import { startApi } from './api.ts';
import { nodeClock, nodeTransports, type NodeTransportOptions } from './platform.ts';
import { loadState, saveControl } from './state.ts';
import { formatIP } from '../../../src/netstack/addr.ts';
import { hasIPv4, nat64Url, nodeUdp } from './udp.ts';
import { detectNat64 } from '../nat64/detect.ts';
import type { DirectOptions, PortMapping as EnginePortMapping } from '../../../src/engine/types.ts';
import { PortMapper } from '../portmap/mapper.ts';
import { startSshd, type Sshd } from '../sshd/server.ts';

export interface NodeOptions {
  controlUrl: string;
  stateDir: string;
  socketPath: string;
  hostname: string;
  authKey?: string;
  tags?: string[];
  ephemeral?: boolean;
  /** "PORT" or "PORT=HOST:PORT": tailnet TCP PORT on this node reaches HOST:PORT (default 127.0.0.1). */
  forwards?: string[];
  /** Run the built-in SSH server on tailnet port 22 (gateway/src/sshd). */
  ssh?: boolean;
  transport?: NodeTransportOptions;
  /** NAT traversal options; `disable` makes the node relay-only. */
  direct?: DirectOptions;
  /** DNS servers for NAT64 discovery (default: the system's). */
  dns?: string[];
  log: LogFn;
  /** Printed once for interactive registration. */
  onLogin?: (url: string) => void;
  onRunning?: (engine: Engine) => void;
}

/** The engine's netstack as the proxies' TunnelNet. */
export function engineNet(engine: Engine): TunnelNet {
  const stack = () => {
    if (!engine.stack) throw new Error('the node is not running yet');
    return engine.stack;
  };
  return {
    connect: (address, port, opts = {}) => stackConnect(stack(), address, port, opts, () => {}, () => engine.reschedule()),
    listen: (port, onConnection: (socket: Duplex, info: { remoteAddress: string; remotePort: number }) => void) => stackListen(stack(), port, onConnection, () => {}),
  };
}

/** Turns `--forward 22` into the listen spec `22=127.0.0.1:22`. */
export function forwardSpec(f: string): string {
  if (/^\d+$/.test(f)) return `${f}=127.0.0.1:${f}`;
  return f;
}

export interface RunningNode {
  engine: Engine;
  stop(): Promise<void>;
  stopped: Promise<void>;
}

export async function startNode(o: NodeOptions): Promise<RunningNode> {
  const state = await loadState(o.stateDir);
  const pinned = state.controlUrl === o.controlUrl ? state.serverKey : undefined;
  // An IPv6-only host behind NAT64 reaches IPv4 literals (control, relays, STUN, peers) through
  // the DNS64 prefix.
  const nat64 = hasIPv4() ? undefined : await detectNat64({ ...(o.dns ? { servers: o.dns } : {}) });
  if (nat64) o.log('info', `NAT64: no IPv4 here; reaching IPv4 through ${formatIP(nat64.prefix)}/${nat64.length}`);
  const rewriteUrl = (u: string): string => nat64Url(u, nat64);
  // Port mapping (NAT-PMP, PCP, UPnP IGD) for the engine's UDP port; released at stop.
  const mappers = new Set<PortMapper>();
  const portMap = (localPort: number, onChange: (m: EnginePortMapping | null) => void) => {
    const pm = new PortMapper({
      localPort,
      // A busy gateway answers late: wait up to 1 s for NAT-PMP/PCP, and retry a failed
      // attempt after 20 s rather than a minute.
      probe: { timeoutMs: 1000 },
      retryMs: 20_000,
      onChange: (m) => onChange(m ? { ip: m.externalAddress, port: m.externalPort, protocol: m.protocol } : null),
      log: (line) => o.log('debug', `portmap: ${line}`),
    });
    mappers.add(pm);
    void pm.start().catch((e: Error) => o.log('debug', `portmap: ${e.message}`));
    return { close: () => void pm.close() };
  };
  const udp = o.direct?.disable ? undefined : nodeUdp({ ...(nat64 ? { nat64 } : {}), portMap });
  const engine = new Engine({
    controlUrl: rewriteUrl(o.controlUrl),
    hostname: o.hostname,
    ...(o.authKey ? { authKey: o.authKey } : {}),
    ...(o.tags?.length ? { tags: o.tags } : {}),
    ...(o.ephemeral ? { ephemeral: true } : {}),
    ...(o.ssh ? { sshServer: true } : {}),
    keys: state.keys,
    ...(pinned ? { serverKey: pinned } : {}),
    backend: nodeBackend,
    random: cryptoRandom,
    clock: nodeClock,
    transports: nodeTransports({ ...o.transport, rewriteUrl, ...(udp ? { udp } : {}) }),
    ...(o.direct ? { direct: o.direct } : {}),
    log: o.log,
    events: {
      login: (url) => o.onLogin?.(url),
      serverKey: (k) => void saveControl(o.stateDir, o.controlUrl, k).catch((e) => o.log('warn', `cannot save control key: ${(e as Error).message}`)),
      state: (s) => o.log('info', `state: ${s}`),
    },
  });
  const net = engineNet(engine);
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  const listens: ListenHandle[] = [];
  let sshd: Sshd | undefined;
  let api: Server | undefined;
  let stopping = false;
  const stop = async () => {
    if (stopping) return stopped;
    stopping = true;
    for (const l of listens) await l.close().catch(() => {});
    sshd?.close();
    engine.stop();
    // Release port mappings (bounded: a gateway that stopped answering must not hold us up).
    await Promise.race([Promise.all([...mappers].map((m) => m.close())), new Promise((r) => setTimeout(r, 2000))]);
    api?.close();
    resolveStopped();
    return stopped;
  };
  api = await startApi(o.socketPath, { engine, net, stop: () => void stop(), log: (m) => o.log('info', m) });
  engine.start();
  void engine.whenRunning().then(async () => {
    if (stopping) return;
    for (const f of o.forwards ?? []) {
      try {
        listens.push(await startListen(forwardSpec(f), net, o.log));
      } catch (e) {
        o.log('warn', `--forward ${f}: ${(e as Error).message}`);
      }
    }
    if (o.ssh) {
      sshd = startSshd({ engine, net, hostKey: state.sshHostKey, log: o.log, audit: (e) => engine.control.audit(e) });
      o.log('info', `ssh: built-in server on tailnet port 22`);
    }
    o.onRunning?.(engine);
  });
  return { engine, stop, stopped };
}
