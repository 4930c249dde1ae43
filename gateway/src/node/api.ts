/**
 * The node's local API: HTTP over a unix socket (mode 0600, so only the node's user reaches
 * it), used by `pierce status | ping | nc | ip | down | logout`.
 *
 *   GET  /status                  EngineStatus
 *   POST /ping?peer=P&timeout=MS  PingResult            (disco ping over the peer's path)
 *   GET  /ip                      {"addrs": [...]}
 *   POST /down                    stops the node
 *   POST /logout                  logs out at control, then stops
 *   GET  /nc?peer=P&port=N        Upgrade: pierce-nc → the socket becomes a mesh TCP stream
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { chmod, rm } from 'node:fs/promises';
import { parseIP } from '../../../src/netstack/addr.ts';
import { PierceError } from '../../../src/errors.ts';
import type { Engine } from '../../../src/engine/engine.ts';
import type { TunnelNet } from '../proxy/tunnel-net.ts';

export class ApiError extends PierceError {}

export interface ApiHost {
  engine: Engine;
  net: TunnelNet;
  stop(): void;
  log(msg: string): void;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body) + '\n');
}

function fail(res: ServerResponse, e: unknown): void {
  const code = e instanceof PierceError ? e.code : 'INTERNAL';
  send(res, code === 'PEER_NOT_FOUND' ? 404 : code === 'INTERNAL' ? 500 : 400, { code, error: (e as Error).message });
}

/** Resolves a peer name or tailnet IP to its first address. */
function peerAddress(engine: Engine, target: string): Uint8Array {
  const p = engine.findPeer(target);
  if (!p) throw new ApiError('PEER_NOT_FOUND', `no peer "${target}" in the netmap (see \`pierce status\`)`);
  return parseIP(p.addrs[0]!.split('/')[0]!);
}

export async function startApi(path: string, host: ApiHost): Promise<Server> {
  await rm(path, { force: true });
  const server = createServer((req, res) => void handle(host, req, res));
  server.on('upgrade', (req: IncomingMessage, socket: Duplex) => void upgrade(host, req, socket as Socket));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return server;
}

async function handle(host: ApiHost, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://local');
  const engine = host.engine;
  try {
    switch (`${req.method} ${url.pathname}`) {
      case 'GET /status':
        return send(res, 200, engine.status());
      case 'GET /ip':
        return send(res, 200, { addrs: engine.status().self?.addrs.map((a) => a.split('/')[0]) ?? [] });
      case 'POST /ping': {
        const peer = url.searchParams.get('peer') ?? '';
        const timeout = Number(url.searchParams.get('timeout') ?? 5000);
        return send(res, 200, await engine.ping(peer, Number.isFinite(timeout) && timeout > 0 ? timeout : 5000));
      }
      case 'POST /down':
        send(res, 200, { ok: true });
        return host.stop();
      case 'POST /logout':
        await engine.logout();
        send(res, 200, { ok: true });
        return host.stop();
      default:
        return send(res, 404, { code: 'NOT_FOUND', error: `no such endpoint ${req.method} ${url.pathname}` });
    }
  } catch (e) {
    fail(res, e);
  }
}

async function upgrade(host: ApiHost, req: IncomingMessage, socket: Socket): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://local');
  const reply = (status: string, body = ''): void => void socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  if (url.pathname !== '/nc' || req.headers.upgrade !== 'pierce-nc') return reply('404 Not Found');
  const port = Number(url.searchParams.get('port'));
  if (!Number.isInteger(port) || port < 1 || port > 65535) return reply('400 Bad Request', 'port must be 1..65535');
  let remote: Duplex;
  try {
    const addr = peerAddress(host.engine, url.searchParams.get('peer') ?? '');
    remote = await host.net.connect(addr, port, { signal: AbortSignal.timeout(30_000) });
  } catch (e) {
    const code = e instanceof PierceError ? e.code : 'ERROR';
    return reply('502 Bad Gateway', `${code}: ${(e as Error).message}`);
  }
  socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: pierce-nc\r\n\r\n');
  socket.setNoDelay(true);
  // Half-close both ways: ssh and scp rely on it.
  socket.pipe(remote);
  remote.pipe(socket);
  const done = () => {
    socket.destroy();
    remote.destroy();
  };
  socket.on('error', done);
  remote.on('error', done);
  socket.on('close', () => remote.end());
  remote.on('close', () => socket.end());
}

// ---- client side (the CLI) ----

/** A failed local API call as a typed error; no socket means no node. */
function apiFailure(e: Error, socketPath: string): PierceError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ECONNREFUSED') return new ApiError('NODE_NOT_RUNNING', `no node is running at ${socketPath} (start one with \`pierce up\`)`);
  return e instanceof PierceError ? e : new ApiError('API_ERROR', e.message);
}

export function apiRequest(socketPath: string, method: string, path: string, timeoutMs = 30_000): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, timeout: timeoutMs }, (res) => {
      let b = '';
      res.on('data', (d: Buffer) => (b += d.toString()));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(b) as Record<string, unknown> });
        } catch {
          reject(new ApiError('API_BAD_RESPONSE', `bad answer from the node: ${b.slice(0, 200)}`));
        }
      });
    });
    req.on('timeout', () => req.destroy(new ApiError('API_TIMEOUT', 'the node did not answer in time')));
    req.on('error', (e) => reject(apiFailure(e, socketPath)));
    req.end();
  });
}

/** Opens a mesh TCP stream through the node (`pierce nc`). */
export function apiConnect(socketPath: string, peer: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const req = request({
      socketPath,
      path: `/nc?peer=${encodeURIComponent(peer)}&port=${port}`,
      headers: { Connection: 'Upgrade', Upgrade: 'pierce-nc' },
    });
    req.on('upgrade', (_res, socket, head) => {
      // Bytes the peer sent right after the 101 arrive in `head` (a server that speaks first,
      // e.g. an SSH server writing its version line at once): put them back in the stream.
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.on('response', (res) => {
      let b = '';
      res.on('data', (d: Buffer) => (b += d.toString()));
      res.on('end', () => reject(new ApiError('NC_FAILED', b || `HTTP ${res.statusCode}`)));
    });
    req.on('error', (e) => reject(apiFailure(e, socketPath)));
    req.end();
  });
}
