/**
 * Port forwards between local TCP and the tunnel, both ways:
 *
 *   forward  "[BIND:]LPORT=IP:PORT"   local client ──▶ node:net server BIND:LPORT
 *                                      ──▶ TunnelNet.connect(IP, PORT) ──▶ tunnel peer
 *   listen   "PORT=HOST:PORT"          tunnel peer ──▶ TunnelNet.listen(PORT)
 *                                      ──▶ node:net connect HOST:PORT ──▶ local service
 *
 * Spec grammar (ports are decimal without leading zeros; IPv6 addresses always in brackets):
 *
 *   forward   = [ bind ":" ] lport "=" ip ":" port
 *   bind      = ipv4 | "[" ipv6 "]" | "localhost"       default 127.0.0.1; localhost = 127.0.0.1
 *   lport     = 0..65535                                 0 picks a free port
 *   ip        = ipv4 | "[" ipv6 "]"                      no names: there is no DNS in the tunnel yet
 *   listen    = tport "=" host ":" port
 *   tport     = 1..65535
 *   host      = ipv4 | "[" ipv6 "]" | hostname (RFC 1123), resolved by Node
 *   port      = 1..65535
 *
 * Each accepted connection is dialed and then relayed (relay.ts: backpressure, half-close both
 * ways, a reset on one side resets the other). A failed dial resets the accepted connection.
 */
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { PierceError } from '../../../src/errors.ts';
import { formatIP, tryParseIP } from '../../../src/netstack/addr.ts';
import { ConnectionSet, dialTunnel, hostPort, ProxyError, relay, resetStream, type ProxyLog, type ProxyStats } from './relay.ts';
import type { TunnelNet } from './tunnel-net.ts';

/** Which part of a spec is wrong; each has its own error code (`SPEC_CODES`). */
export type SpecPart = 'syntax' | 'bind' | 'port' | 'host' | 'target-port';

export const SPEC_CODES: Readonly<Record<SpecPart, string>> = {
  syntax: 'SPEC_SYNTAX',
  bind: 'SPEC_BIND',
  port: 'SPEC_PORT',
  host: 'SPEC_HOST',
  'target-port': 'SPEC_TARGET_PORT',
};

/** A malformed forward, listen or SOCKS5 spec; `part` (and `code`) say which part is wrong. */
export class ProxySpecError extends PierceError {
  readonly part: SpecPart;
  constructor(kind: string, spec: unknown, part: SpecPart, why: string) {
    const text = typeof spec === 'string' ? spec : String(spec);
    const shown = text.length > 80 ? text.slice(0, 80) + '…' : text;
    super(SPEC_CODES[part], `${kind} ${JSON.stringify(shown)}: ${why}`);
    this.part = part;
  }
}

export interface ForwardSpec {
  /** The local address to listen on, as text ("127.0.0.1", "::1", "0.0.0.0"). */
  bindAddress: string;
  /** The local port; 0 picks a free one. */
  bindPort: number;
  /** The tunnel address to connect to (4 or 16 bytes). */
  targetAddress: Uint8Array;
  targetPort: number;
}

export interface ListenSpec {
  /** The port on our own tunnel address. */
  tunnelPort: number;
  /** The local service: an IP address as text or a host name. */
  targetHost: string;
  targetPort: number;
}

export interface BindSpec {
  bindAddress: string;
  bindPort: number;
}

export const DEFAULT_BIND = '127.0.0.1';

const PORT_RE = /^(0|[1-9][0-9]{0,4})$/;
const LABEL_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

function parsePort(kind: string, spec: string, part: SpecPart, s: string, min: number): number {
  if (!PORT_RE.test(s) || Number(s) > 65535) {
    throw new ProxySpecError(kind, spec, part, `${describe(part)} ${JSON.stringify(s)} is not a port number (${min}..65535)`);
  }
  const n = Number(s);
  if (n < min) throw new ProxySpecError(kind, spec, part, `${describe(part)} must be ${min}..65535, got ${n}`);
  return n;
}

function describe(part: SpecPart): string {
  switch (part) {
    case 'bind':
      return 'bind address';
    case 'port':
      return 'port';
    case 'host':
      return 'host';
    case 'target-port':
      return 'target port';
    default:
      return 'spec';
  }
}

interface HostPort {
  host: string | null;
  bracketed: boolean;
  port: string;
}

/** Splits "host:port", "[v6]:port" or "port" (host null); `part` is the host's part for errors. */
function splitHostPort(kind: string, spec: string, s: string, hostPart: SpecPart, portPart: SpecPart): HostPort {
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw new ProxySpecError(kind, spec, hostPart, `${describe(hostPart)} ${JSON.stringify(s)} has "[" without "]"`);
    const after = s.slice(close + 1);
    if (!after.startsWith(':')) {
      throw new ProxySpecError(kind, spec, portPart, `expected ":PORT" after ${JSON.stringify(s.slice(0, close + 1))}`);
    }
    return { host: s.slice(1, close), bracketed: true, port: after.slice(1) };
  }
  const colon = s.lastIndexOf(':');
  if (colon < 0) return { host: null, bracketed: false, port: s };
  const host = s.slice(0, colon);
  if (host.includes(':')) {
    throw new ProxySpecError(kind, spec, hostPart, `${describe(hostPart)} ${JSON.stringify(host)}: write IPv6 addresses in brackets, e.g. "[::1]:${s.slice(colon + 1)}"`);
  }
  return { host, bracketed: false, port: s.slice(colon + 1) };
}

/** An IPv4 literal, or an IPv6 literal when bracketed; null otherwise. */
function ipLiteral(hp: HostPort): Uint8Array | null {
  if (hp.host === null) return null;
  const ip = tryParseIP(hp.host);
  if (!ip) return null;
  if (hp.bracketed !== (ip.length === 16)) return null;
  return ip;
}

function checkText(kind: string, spec: unknown): string {
  if (typeof spec !== 'string') throw new ProxySpecError(kind, spec, 'syntax', 'not a string');
  if (spec.length === 0) throw new ProxySpecError(kind, spec, 'syntax', 'empty');
  if (spec.length > 300) throw new ProxySpecError(kind, spec, 'syntax', 'too long');
  if (/[\s\x00-\x1f\x7f]/.test(spec)) throw new ProxySpecError(kind, spec, 'syntax', 'contains whitespace or control characters');
  return spec;
}

function parseBindPart(kind: string, spec: string, s: string): BindSpec {
  const hp = splitHostPort(kind, spec, s, 'bind', 'port');
  const bindPort = parsePort(kind, spec, 'port', hp.port, 0);
  if (hp.host === null) return { bindAddress: DEFAULT_BIND, bindPort };
  if (!hp.bracketed && hp.host.toLowerCase() === 'localhost') return { bindAddress: DEFAULT_BIND, bindPort };
  const ip = ipLiteral(hp);
  if (!ip) {
    throw new ProxySpecError(kind, spec, 'bind', `bind address ${JSON.stringify(hp.host)} is not an IPv4 address, [IPv6 address] or localhost`);
  }
  return { bindAddress: formatIP(ip), bindPort };
}

/** Parses "[BIND:]PORT" (the SOCKS5 listen spec; also the left side of a forward spec). */
export function parseBindSpec(spec: string, kind = 'socks5'): BindSpec {
  return parseBindPart(kind, checkText(kind, spec), spec);
}

function splitOnEquals(kind: string, spec: string, shape: string): [string, string] {
  const eq = spec.indexOf('=');
  if (eq < 0 || spec.indexOf('=', eq + 1) >= 0) {
    throw new ProxySpecError(kind, spec, 'syntax', `expected ${shape} with exactly one "="`);
  }
  return [spec.slice(0, eq), spec.slice(eq + 1)];
}

/** Parses "[BIND:]LPORT=IP:PORT"; throws ProxySpecError naming the bad part. */
export function parseForwardSpec(spec: string): ForwardSpec {
  const kind = 'forward';
  const text = checkText(kind, spec);
  const [left, right] = splitOnEquals(kind, text, '"[BIND:]LPORT=IP:PORT"');
  const bind = parseBindPart(kind, text, left);
  const hp = splitHostPort(kind, text, right, 'host', 'target-port');
  if (hp.host === null || hp.host === '') throw new ProxySpecError(kind, text, 'host', `expected IP:PORT after "=", got ${JSON.stringify(right)}`);
  const ip = ipLiteral(hp);
  if (!ip) {
    const why = hp.bracketed
      ? `${JSON.stringify(hp.host)} in brackets is not an IPv6 address`
      : tryParseIP(hp.host) === null
        ? `${JSON.stringify(hp.host)} is not an IP address (there is no DNS in the tunnel yet)`
        : `${JSON.stringify(hp.host)} is not an IPv4 address`;
    throw new ProxySpecError(kind, text, 'host', `host ${why}`);
  }
  const targetPort = parsePort(kind, text, 'target-port', hp.port, 1);
  return { ...bind, targetAddress: ip, targetPort };
}

function isHostname(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  const labels = s.toLowerCase().split('.');
  // An all-numeric last label would make "1.2.3.999" a name; RFC 1123 §2.1 rules it out.
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return false;
  return labels.every((l) => LABEL_RE.test(l));
}

/** Parses "PORT=HOST:PORT"; throws ProxySpecError naming the bad part. */
export function parseListenSpec(spec: string): ListenSpec {
  const kind = 'listen';
  const text = checkText(kind, spec);
  const [left, right] = splitOnEquals(kind, text, '"PORT=HOST:PORT"');
  const tunnelPort = parsePort(kind, text, 'port', left, 1);
  const hp = splitHostPort(kind, text, right, 'host', 'target-port');
  if (hp.host === null || hp.host === '') throw new ProxySpecError(kind, text, 'host', `expected HOST:PORT after "=", got ${JSON.stringify(right)}`);
  let targetHost: string;
  const ip = ipLiteral(hp);
  if (ip) targetHost = formatIP(ip);
  else if (!hp.bracketed && tryParseIP(hp.host) === null && isHostname(hp.host)) targetHost = hp.host.toLowerCase();
  else throw new ProxySpecError(kind, text, 'host', `host ${JSON.stringify(hp.host)} is not an IPv4 address, [IPv6 address] or host name`);
  const targetPort = parsePort(kind, text, 'target-port', hp.port, 1);
  return { tunnelPort, targetHost, targetPort };
}

// ---------------------------------------------------------------------------------------------

export interface ForwardOptions {
  /** Give up dialing through the tunnel after this long (ms); default 30 000. */
  connectTimeoutMs?: number;
  /** Refuse local connections beyond this many at once; default 1024. */
  maxConnections?: number;
}

export interface ListenOptions {
  /** Give up connecting to the local service after this long (ms); default 10 000. */
  connectTimeoutMs?: number;
}

export interface ProxyServer {
  /** The local address and port the server listens on (the port is the real one when 0 was asked). */
  readonly address: string;
  readonly port: number;
  stats(): ProxyStats;
  /** Stops accepting, aborts dials, destroys every connection; resolves when the server is closed. */
  close(): Promise<void>;
}

export interface ListenHandle {
  /** The tunnel port. */
  readonly port: number;
  stats(): ProxyStats;
  close(): Promise<void>;
}

export const DEFAULT_TUNNEL_CONNECT_TIMEOUT_MS = 30_000;
export const DEFAULT_LOCAL_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_CONNECTIONS = 1024;

function errMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function ignore(): void {}

/** Listens a net.Server on host:port; rejects with ProxyError 'BIND_FAILED'. */
export function listenServer(server: Server, host: string, port: number, log: ProxyLog, what: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => {
      reject(new ProxyError('BIND_FAILED', `${what}: cannot listen on ${hostPort(host, port)}: ${errMessage(e)}`, { cause: e }));
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      // Accept errors (EMFILE, …) are reported on the server; they must not crash the process.
      server.on('error', (e) => log('warn', `${what}: ${errMessage(e)}`));
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Closes a server after destroying its connections; idempotent. */
export function closeServerOnce(server: Server, conns: ConnectionSet): () => Promise<void> {
  let closing: Promise<void> | null = null;
  return () => {
    closing ??= (async () => {
      conns.closeAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await conns.idle();
    })();
    return closing;
  };
}

function peerOf(s: Socket): string {
  return s.remoteAddress ? hostPort(s.remoteAddress, s.remotePort ?? 0) : '?';
}

/**
 * Starts a forward: a node:net server on BIND:LPORT whose connections are relayed to IP:PORT
 * through the tunnel.
 */
export async function startForward(spec: string | ForwardSpec, net: TunnelNet, log: ProxyLog, opts: ForwardOptions = {}): Promise<ProxyServer> {
  const s = typeof spec === 'string' ? parseForwardSpec(spec) : spec;
  const timeoutMs = opts.connectTimeoutMs ?? DEFAULT_TUNNEL_CONNECT_TIMEOUT_MS;
  const target = hostPort(s.targetAddress, s.targetPort);
  const conns = new ConnectionSet();

  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    client.on('error', ignore);
    const gone = conns.open();
    conns.track(client);
    const from = peerOf(client);
    const dial = conns.dialController();
    dialTunnel(net, s.targetAddress, s.targetPort, { timeoutMs, signal: dial.signal }).then(
      (tunnel) => {
        dial.release();
        tunnel.on('error', ignore);
        if (client.destroyed || conns.isClosed) {
          tunnel.destroy();
          gone();
          return;
        }
        conns.track(tunnel);
        log('debug', `forward: ${from} → ${target} connected`);
        void relay(client, tunnel, conns.countBytes).then((r) => {
          gone();
          log('debug', `forward: ${from} → ${target} closed (${r.bytesUp} up, ${r.bytesDown} down${r.error ? `; ${r.error.message}` : ''})`);
        });
      },
      (e: unknown) => {
        dial.release();
        gone();
        if ((e as PierceError).code === 'ABORTED') {
          client.destroy();
          return;
        }
        conns.stats.failed++;
        log('info', `forward: ${from} → ${target}: ${errMessage(e)}`);
        resetStream(client);
      },
    );
  });
  server.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const addr = await listenServer(server, s.bindAddress, s.bindPort, log, 'forward');
  log('info', `forwarding tcp ${hostPort(addr.address, addr.port)} -> ${target} through the tunnel`);
  return { address: addr.address, port: addr.port, stats: () => conns.snapshot(), close: closeServerOnce(server, conns) };
}

/**
 * Starts a reverse forward: tunnel connections to our tunnel address on PORT are relayed to the
 * local service HOST:PORT. A local service that refuses (or does not answer in time) resets the
 * tunnel connection.
 */
export async function startListen(spec: string | ListenSpec, net: TunnelNet, log: ProxyLog, opts: ListenOptions = {}): Promise<ListenHandle> {
  const s = typeof spec === 'string' ? parseListenSpec(spec) : spec;
  const timeoutMs = opts.connectTimeoutMs ?? DEFAULT_LOCAL_CONNECT_TIMEOUT_MS;
  const target = hostPort(s.targetHost, s.targetPort);
  const conns = new ConnectionSet();

  const onConnection = (sock: Duplex, info: { remoteAddress: string; remotePort: number }) => {
    sock.on('error', ignore);
    if (conns.isClosed) {
      resetStream(sock);
      return;
    }
    const gone = conns.open();
    conns.track(sock);
    const from = hostPort(info.remoteAddress, info.remotePort);
    let connected = false;
    let failed = false;
    const local = createConnection({ host: s.targetHost, port: s.targetPort, allowHalfOpen: true });
    local.on('error', ignore);
    conns.track(local);
    const fail = (why: string) => {
      if (connected || failed) return;
      failed = true;
      clearTimeout(timer);
      gone();
      conns.stats.failed++;
      log('info', `listen: ${from} → ${target}: ${why}`);
      local.destroy();
      resetStream(sock);
    };
    const timer = setTimeout(() => fail(`connect timed out after ${timeoutMs} ms`), timeoutMs);
    local.once('error', (e) => fail(errMessage(e)));
    local.once('close', () => fail('closed while connecting'));
    sock.once('close', () => {
      if (connected || failed) return;
      failed = true;
      clearTimeout(timer);
      gone();
      local.destroy();
    });
    local.once('connect', () => {
      if (failed) return;
      connected = true;
      clearTimeout(timer);
      log('debug', `listen: ${from} → ${target} connected`);
      void relay(sock, local, conns.countBytes).then((r) => {
        gone();
        log('debug', `listen: ${from} → ${target} closed (${r.bytesUp} up, ${r.bytesDown} down${r.error ? `; ${r.error.message}` : ''})`);
      });
    });
  };

  let handle: { close(): void };
  try {
    handle = net.listen(s.tunnelPort, onConnection);
  } catch (e) {
    if (e instanceof PierceError) throw e;
    throw new ProxyError('BIND_FAILED', `listen: cannot listen on tunnel port ${s.tunnelPort}: ${errMessage(e)}`, { cause: e });
  }
  log('info', `tunnel tcp port ${s.tunnelPort} -> ${target}`);
  let closing: Promise<void> | null = null;
  return {
    port: s.tunnelPort,
    stats: () => conns.snapshot(),
    close: () => {
      closing ??= (async () => {
        try {
          handle.close();
        } finally {
          conns.closeAll();
        }
        await conns.idle();
      })();
      return closing;
    },
  };
}
