/**
 * A SOCKS5 server (RFC 1928) whose CONNECTs go through the tunnel. NO AUTHENTICATION only, CONNECT
 * only; host names only when they are IP literals (there is no DNS in the tunnel yet).
 *
 *   greeting (client → server), RFC 1928 §3        method selection (server → client)
 *     ┌─────┬──────────┬──────────────┐            ┌─────┬────────┐
 *     │ VER │ NMETHODS │ METHODS      │            │ VER │ METHOD │   METHOD 0x00 = NO AUTH,
 *     │ 1   │ 1        │ 1..255 bytes │            │ 1   │ 1      │   0xFF = none acceptable
 *     └─────┴──────────┴──────────────┘            └─────┴────────┘
 *
 *   request (client → server), §4                   reply (server → client), §6
 *     ┌─────┬─────┬──────┬──────┬──────────┬──────────┐   ┌─────┬─────┬──────┬──────┬──────────┬──────────┐
 *     │ VER │ CMD │ 0x00 │ ATYP │ DST.ADDR │ DST.PORT │   │ VER │ REP │ 0x00 │ ATYP │ BND.ADDR │ BND.PORT │
 *     │ 1   │ 1   │ 1    │ 1    │ variable │ 2 (BE)   │   │ 1   │ 1   │ 1    │ 1    │ variable │ 2 (BE)   │
 *     └─────┴─────┴──────┴──────┴──────────┴──────────┘   └─────┴─────┴──────┴──────┴──────────┴──────────┘
 *     ATYP 0x01: 4-byte IPv4; 0x03: 1-byte length + name (§5); 0x04: 16-byte IPv6
 *
 * The handshake is a pure state machine over bytes (`Socks5Handshake`): it holds at most one
 * undecided message (≤ 262 bytes), never throws, and says what to send and whether to dial or
 * close. The server adds a handshake deadline, the dial, the reply and the relay (relay.ts).
 * Bytes a client sends after its request without waiting for the reply are kept and forwarded.
 */
import { createServer, type Socket } from 'node:net';
import { PierceError } from '../../../src/errors.ts';
import { formatIP, tryParseIP } from '../../../src/netstack/addr.ts';
import { closeServerOnce, listenServer, parseBindSpec, DEFAULT_MAX_CONNECTIONS, DEFAULT_TUNNEL_CONNECT_TIMEOUT_MS, type BindSpec, type ProxyServer } from './forward.ts';
import { ConnectionSet, dialTunnel, hostPort, relay, type ProxyLog } from './relay.ts';
import type { TunnelNet } from './tunnel-net.ts';

// RFC 1928 constants, named as in the RFC.
export const SOCKS_VERSION = 0x05; // §3 VER
export const METHOD_NO_AUTHENTICATION_REQUIRED = 0x00; // §3
export const METHOD_NO_ACCEPTABLE_METHODS = 0xff; // §3
export const CMD_CONNECT = 0x01; // §4
export const CMD_BIND = 0x02; // §4
export const CMD_UDP_ASSOCIATE = 0x03; // §4
export const ATYP_IPV4 = 0x01; // §4
export const ATYP_DOMAINNAME = 0x03; // §4
export const ATYP_IPV6 = 0x04; // §4
export const REP_SUCCEEDED = 0x00; // §6
export const REP_GENERAL_FAILURE = 0x01; // §6 general SOCKS server failure
export const REP_NOT_ALLOWED = 0x02; // §6 connection not allowed by ruleset
export const REP_NETWORK_UNREACHABLE = 0x03; // §6
export const REP_HOST_UNREACHABLE = 0x04; // §6
export const REP_CONNECTION_REFUSED = 0x05; // §6
export const REP_TTL_EXPIRED = 0x06; // §6
export const REP_COMMAND_NOT_SUPPORTED = 0x07; // §6
export const REP_ADDRESS_TYPE_NOT_SUPPORTED = 0x08; // §6

/** The longest greeting (2 + 255) and request (4 + 1 + 255 + 2); nothing longer is buffered. */
export const MAX_GREETING_BYTES = 257;
export const MAX_REQUEST_BYTES = 262;

export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_LINGER_MS = 2_000;

/**
 * A SOCKS5 protocol error. `reply` is the REP code the client is sent before the connection is
 * closed, or null when it gets no reply (wrong version, timeout). Codes:
 *   SOCKS5_VERSION        VER is not 5 (in the greeting or the request)
 *   SOCKS5_NO_METHOD      NO AUTHENTICATION REQUIRED not offered (method reply 0xFF)
 *   SOCKS5_RESERVED       RSV is not 0                             (reply 0x01)
 *   SOCKS5_COMMAND        BIND, UDP ASSOCIATE or unknown command   (reply 0x07)
 *   SOCKS5_ADDRESS_TYPE   ATYP is not 1, 3 or 4                    (reply 0x08)
 *   SOCKS5_DOMAIN         empty DOMAINNAME                         (reply 0x01)
 *   SOCKS5_PORT           DST.PORT 0                               (reply 0x01)
 *   SOCKS5_STATE          bytes pushed after the handshake ended
 *   SOCKS5_TIMEOUT        handshake deadline passed (server)
 *   SOCKS5_EOF            client closed during the handshake (server)
 *   SOCKS5_INTERNAL       a bug: an unexpected exception in the parser (reply 0x01)
 */
export class Socks5Error extends PierceError {
  readonly reply: number | null;
  constructor(code: string, message: string, reply: number | null, options?: { cause?: unknown }) {
    super(code, message, options);
    this.reply = reply;
  }
}

export interface Socks5Greeting {
  methods: Uint8Array;
  /** Bytes the greeting took. */
  length: number;
}

export interface Socks5Request {
  command: number;
  addressType: typeof ATYP_IPV4 | typeof ATYP_DOMAINNAME | typeof ATYP_IPV6;
  /** The destination as text: the IP address, or the name as sent (bytes as Latin-1). */
  host: string;
  /** The destination address; for a DOMAINNAME only when it is an IP literal, else null. */
  address: Uint8Array | null;
  port: number;
  /** Bytes the request took. */
  length: number;
}

function versionError(b: number, where: string): Socks5Error {
  let hint = '';
  if (b === 0x04) hint = ' (a SOCKS4 client; only SOCKS5 is supported)';
  else if (b >= 0x41 && b <= 0x5a) hint = ' (looks like HTTP; this is a SOCKS5 proxy, not an HTTP proxy)';
  else if (b === 0x16) hint = ' (looks like TLS)';
  return new Socks5Error('SOCKS5_VERSION', `${where}: version 0x${b.toString(16).padStart(2, '0')} is not SOCKS5${hint}`, null);
}

/** Parses a greeting at the start of `buf`; null when more bytes are needed. Throws Socks5Error. */
export function parseGreeting(buf: Uint8Array): Socks5Greeting | null {
  if (buf.length < 1) return null;
  if (buf[0] !== SOCKS_VERSION) throw versionError(buf[0]!, 'greeting');
  if (buf.length < 2) return null;
  const n = buf[1]!;
  if (buf.length < 2 + n) return null;
  return { methods: buf.slice(2, 2 + n), length: 2 + n };
}

/** Parses a request at the start of `buf`; null when more bytes are needed. Throws Socks5Error. */
export function parseRequest(buf: Uint8Array): Socks5Request | null {
  if (buf.length < 1) return null;
  if (buf[0] !== SOCKS_VERSION) throw versionError(buf[0]!, 'request');
  if (buf.length < 4) return null;
  const command = buf[1]!;
  if (buf[2] !== 0x00) throw new Socks5Error('SOCKS5_RESERVED', `request: reserved byte is 0x${buf[2]!.toString(16)}, not 0`, REP_GENERAL_FAILURE);
  const atyp = buf[3]!;
  let at = 4;
  let host: string;
  let address: Uint8Array | null;
  switch (atyp) {
    case ATYP_IPV4:
    case ATYP_IPV6: {
      const n = atyp === ATYP_IPV4 ? 4 : 16;
      if (buf.length < at + n + 2) return null;
      address = buf.slice(at, at + n);
      host = formatIP(address);
      at += n;
      break;
    }
    case ATYP_DOMAINNAME: {
      if (buf.length < 5) return null;
      const n = buf[4]!;
      if (n === 0) throw new Socks5Error('SOCKS5_DOMAIN', 'request: empty DOMAINNAME', REP_GENERAL_FAILURE);
      if (buf.length < 5 + n + 2) return null;
      host = String.fromCharCode(...buf.subarray(5, 5 + n));
      address = ipLiteral(host);
      at = 5 + n;
      break;
    }
    default:
      throw new Socks5Error('SOCKS5_ADDRESS_TYPE', `request: address type 0x${atyp.toString(16)} is not supported`, REP_ADDRESS_TYPE_NOT_SUPPORTED);
  }
  const port = (buf[at]! << 8) | buf[at + 1]!;
  return { command, addressType: atyp, host, address, port, length: at + 2 };
}

/** An IP literal as a SOCKS5 DOMAINNAME ("10.0.0.1", "fd00::1", "[fd00::1]"); null otherwise. */
export function ipLiteral(name: string): Uint8Array | null {
  const bare = name.length > 2 && name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
  return tryParseIP(bare);
}

/** The method selection message (§3). */
export function encodeMethodSelection(method: number): Uint8Array {
  return Uint8Array.of(SOCKS_VERSION, method);
}

/** A reply (§6) with BND.ADDR / BND.PORT (default 0.0.0.0:0). */
export function encodeReply(rep: number, bound: Uint8Array = new Uint8Array(4), port = 0): Uint8Array {
  const out = new Uint8Array(4 + bound.length + 2);
  out[0] = SOCKS_VERSION;
  out[1] = rep;
  out[2] = 0;
  out[3] = bound.length === 16 ? ATYP_IPV6 : ATYP_IPV4;
  out.set(bound, 4);
  out[4 + bound.length] = port >> 8;
  out[5 + bound.length] = port & 0xff;
  return out;
}

/** The REP code for a `TunnelNet.connect` error code. */
export function replyForDialError(code: string): number {
  switch (code) {
    case 'ECONNREFUSED':
      return REP_CONNECTION_REFUSED;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
      return REP_HOST_UNREACHABLE;
    case 'ENETUNREACH':
      return REP_NETWORK_UNREACHABLE;
    case 'EACCES':
      return REP_NOT_ALLOWED;
    default:
      return REP_GENERAL_FAILURE;
  }
}

export type Socks5Step =
  /** Need more bytes; send `send` (the method selection) if not null. */
  | { kind: 'more'; send: Uint8Array | null }
  /** A CONNECT request: dial, then send a reply. `rest` is what the client sent after it. */
  | { kind: 'connect'; send: Uint8Array | null; request: Socks5Request; rest: Uint8Array }
  /** Send `send` if not null, then close. */
  | { kind: 'fail'; send: Uint8Array | null; error: Socks5Error };

function concat(parts: Uint8Array[]): Uint8Array | null {
  if (parts.length === 0) return null;
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The server side of the handshake as a pure state machine; `push` never throws. */
export class Socks5Handshake {
  private buf: Uint8Array = new Uint8Array(0);
  private phase: 'greeting' | 'request' | 'done' = 'greeting';

  /** Bytes held while waiting for the rest of a message (never more than MAX_REQUEST_BYTES). */
  get buffered(): number {
    return this.buf.length;
  }

  push(chunk: Uint8Array): Socks5Step {
    const send: Uint8Array[] = [];
    try {
      return this.step(chunk, send);
    } catch (e) {
      const error = e instanceof Socks5Error ? e : new Socks5Error('SOCKS5_INTERNAL', `handshake: ${String(e)}`, REP_GENERAL_FAILURE, { cause: e });
      this.phase = 'done';
      this.buf = new Uint8Array(0);
      // A reply only makes sense once the method is agreed (i.e. in the request phase).
      if (error.reply !== null) send.push(error.code === 'SOCKS5_NO_METHOD' ? encodeMethodSelection(METHOD_NO_ACCEPTABLE_METHODS) : encodeReply(error.reply));
      return { kind: 'fail', send: concat(send), error };
    }
  }

  private step(chunk: Uint8Array, send: Uint8Array[]): Socks5Step {
    if (this.phase === 'done') throw new Socks5Error('SOCKS5_STATE', 'handshake: bytes after the handshake ended', null);
    if (this.buf.length === 0) this.buf = chunk;
    else {
      const b = new Uint8Array(this.buf.length + chunk.length);
      b.set(this.buf);
      b.set(chunk, this.buf.length);
      this.buf = b;
    }
    if (this.phase === 'greeting') {
      const g = parseGreeting(this.buf);
      if (!g) return this.more(send);
      if (!g.methods.includes(METHOD_NO_AUTHENTICATION_REQUIRED)) {
        const offered = Array.from(g.methods, (m) => '0x' + m.toString(16).padStart(2, '0')).join(', ') || 'none';
        throw new Socks5Error('SOCKS5_NO_METHOD', `greeting: no acceptable method (offered ${offered}; only NO AUTHENTICATION REQUIRED is supported)`, METHOD_NO_ACCEPTABLE_METHODS);
      }
      send.push(encodeMethodSelection(METHOD_NO_AUTHENTICATION_REQUIRED));
      this.buf = this.buf.subarray(g.length);
      this.phase = 'request';
    }
    const r = parseRequest(this.buf);
    if (!r) return this.more(send);
    if (r.command !== CMD_CONNECT) {
      const name = r.command === CMD_BIND ? 'BIND' : r.command === CMD_UDP_ASSOCIATE ? 'UDP ASSOCIATE' : `0x${r.command.toString(16)}`;
      throw new Socks5Error('SOCKS5_COMMAND', `request: command ${name} is not supported (CONNECT only)`, REP_COMMAND_NOT_SUPPORTED);
    }
    if (r.port === 0) throw new Socks5Error('SOCKS5_PORT', `request: destination port 0`, REP_GENERAL_FAILURE);
    const rest = this.buf.slice(r.length);
    this.buf = new Uint8Array(0);
    this.phase = 'done';
    return { kind: 'connect', send: concat(send), request: r, rest };
  }

  private more(send: Uint8Array[]): Socks5Step {
    // Keep our own copy of what is held: a chunk's buffer may be reused by its producer.
    this.buf = this.buf.slice();
    const max = this.phase === 'greeting' ? MAX_GREETING_BYTES : MAX_REQUEST_BYTES;
    if (this.buf.length >= max) throw new Socks5Error('SOCKS5_INTERNAL', 'handshake: message longer than possible', REP_GENERAL_FAILURE);
    return { kind: 'more', send: concat(send) };
  }
}

// ---------------------------------------------------------------------------------------------

export interface Socks5Options {
  /** Close clients that have not completed greeting and request within this long (ms); default 10 000. */
  handshakeTimeoutMs?: number;
  /** Give up dialing through the tunnel after this long (ms; reply 0x04); default 30 000. */
  connectTimeoutMs?: number;
  /** Refuse clients beyond this many at once; default 1024. */
  maxConnections?: number;
  /** After a failure reply, wait this long (ms) for the client to close before destroying; default 2 000. */
  lingerMs?: number;
}

function ignore(): void {}

/** Sends `data` (if any), ends our side, and discards input until the client closes or `lingerMs` passes. */
function closeAfter(s: Socket, data: Uint8Array | null, lingerMs: number): void {
  if (s.destroyed) return;
  // Keep reading: closing a socket with unread input makes the kernel send RST, which can
  // destroy the reply before the client reads it.
  s.on('data', ignore);
  s.resume();
  if (data) s.end(data);
  else s.end();
  const t = setTimeout(() => s.destroy(), lingerMs);
  s.once('close', () => clearTimeout(t));
}

/** Starts a SOCKS5 server on "[BIND:]PORT" (default bind 127.0.0.1; port 0 picks a free one). */
export async function startSocks5(spec: string | BindSpec, net: TunnelNet, log: ProxyLog, opts: Socks5Options = {}): Promise<ProxyServer> {
  const s = typeof spec === 'string' ? parseBindSpec(spec, 'socks5') : spec;
  const handshakeTimeoutMs = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_TUNNEL_CONNECT_TIMEOUT_MS;
  const lingerMs = opts.lingerMs ?? DEFAULT_LINGER_MS;
  const conns = new ConnectionSet();

  const server = createServer({ allowHalfOpen: true }, (client) => {
    client.on('error', ignore);
    const gone = conns.open();
    conns.track(client);
    let relaying = false;
    client.once('close', () => {
      if (!relaying) gone();
    });
    const from = client.remoteAddress ? hostPort(client.remoteAddress, client.remotePort ?? 0) : '?';
    const hs = new Socks5Handshake();

    const fail = (level: 'debug' | 'info', why: string, reply: Uint8Array | null) => {
      conns.stats.failed++;
      log(level, `socks5: ${from}: ${why}`);
      closeAfter(client, reply, lingerMs);
    };
    const stopHandshake = () => {
      clearTimeout(timer);
      client.off('data', onData);
      client.off('end', onEnd);
    };
    const onData = (chunk: Uint8Array) => {
      const step = hs.push(chunk);
      if (step.kind === 'more') {
        if (step.send) client.write(step.send);
        return;
      }
      stopHandshake();
      if (step.kind === 'fail') return fail('info', `${step.error.message} [${step.error.code}]`, step.send);
      client.pause();
      if (step.send) client.write(step.send);
      if (step.rest.length > 0) client.unshift(step.rest);
      dial(step.request);
    };
    const onEnd = () => {
      stopHandshake();
      conns.stats.failed++;
      log('debug', `socks5: ${from}: closed during the handshake [SOCKS5_EOF]`);
      client.destroy();
    };
    const timer = setTimeout(() => {
      stopHandshake();
      conns.stats.failed++;
      log('debug', `socks5: ${from}: no complete request within ${handshakeTimeoutMs} ms [SOCKS5_TIMEOUT]`);
      client.destroy();
    }, handshakeTimeoutMs);
    client.on('data', onData);
    client.once('end', onEnd);
    client.once('close', () => clearTimeout(timer));

    const dial = (req: Socks5Request) => {
      const target = req.address ? hostPort(req.address, req.port) : `${JSON.stringify(req.host)}:${req.port}`;
      if (!req.address) {
        return fail(
          'info',
          `cannot connect to ${target}: it is a host name and there is no DNS in the tunnel yet; use an IP address (e.g. curl --socks5, not --socks5-hostname, with a name)`,
          encodeReply(REP_HOST_UNREACHABLE),
        );
      }
      const d = conns.dialController();
      dialTunnel(net, req.address, req.port, { timeoutMs: connectTimeoutMs, signal: d.signal }).then(
        (tunnel) => {
          d.release();
          tunnel.on('error', ignore);
          if (client.destroyed || conns.isClosed) {
            tunnel.destroy();
            return;
          }
          conns.track(tunnel);
          log('debug', `socks5: ${from} → ${target} connected`);
          client.write(encodeReply(REP_SUCCEEDED));
          relaying = true;
          void relay(client, tunnel, conns.countBytes).then((r) => {
            gone();
            log('debug', `socks5: ${from} → ${target} closed (${r.bytesUp} up, ${r.bytesDown} down${r.error ? `; ${r.error.message}` : ''})`);
          });
        },
        (e: unknown) => {
          d.release();
          const code = e instanceof PierceError ? e.code : 'DIAL_FAILED';
          if (code === 'ABORTED') {
            client.destroy();
            return;
          }
          const rep = replyForDialError(code);
          fail('info', `${e instanceof Error ? e.message : String(e)} (reply 0x${rep.toString(16).padStart(2, '0')})`, encodeReply(rep));
        },
      );
    };
  });
  server.maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const addr = await listenServer(server, s.bindAddress, s.bindPort, log, 'socks5');
  log('info', `socks5 proxy on ${hostPort(addr.address, addr.port)}; CONNECT goes through the tunnel (IP addresses only: no DNS in the tunnel yet)`);
  return { address: addr.address, port: addr.port, stats: () => conns.snapshot(), close: closeServerOnce(server, conns) };
}
