/**
 * `pierce control`'s server: HTTP(S) with
 *   GET  /key              the server's static Noise key (nodes pin it)
 *   GET  /control          WebSocket, subprotocol "pierce-control": the Noise channel
 *   GET  /register/ID      the page behind an interactive login URL
 *   /api/v1/…              the admin API (Bearer API key or admin session), see admin-api.ts
 *   GET  /health           200 "ok"
 *   GET  anything else     the web page's static files, with `webRoot` (see static.ts)
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { cryptoRandom } from '../../../src/crypto/backend.ts';
import { MachinePrivate } from '../../../src/key/keys.ts';
import { keyPair, type KeyPair, type NoiseConfig } from '../../../src/control/noise.ts';
import { CONTROL_PROLOGUE, CONTROL_PROTOCOL_VERSION, CONTROL_SUBPROTOCOL, KEEPALIVE_INTERVAL_MS, type RelayMap } from '../../../src/control/messages.ts';
import { nodeBackend } from '../crypto/node-backend.ts';
import type { Store } from '../store/types.ts';
import { handleAdmin } from './admin-api.ts';
import { ControlSession, type SessionHost } from './session.ts';
import { ControlState } from './state.ts';
import { serveStatic } from './static.ts';

export interface ControlServerOptions {
  store: Store;
  host?: string;
  port?: number;
  /** The URL nodes and admins use to reach this server (login URLs are built from it). */
  serverUrl?: string;
  relays?: RelayMap;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Policy text that replaces the stored one at start (`--policy FILE`). */
  policyText?: string;
  keyExpiryMs?: number;
  ephemeralTimeoutMs?: number;
  keepaliveMs?: number;
  log?: (msg: string) => void;
  /** The web page share links point to (default `<serverUrl>/`, the page served from `webRoot`). */
  webUrl?: string;
  /** Directory of the built web page (`vite build` output) to serve (`--web DIR`). */
  webRoot?: string;
  /** An admin account made at start when there is none (`--admin-password-file`). */
  initialAdmin?: { name: string; password: string };
  /** The clock (tests). */
  now?: () => number;
}

const SERVER_KEY_META = 'server_private_key';

export class ControlServer implements SessionHost {
  state!: ControlState;
  serverKey!: KeyPair;
  /** The server's static key in text form (mkey:…), as /key serves it. */
  publicKey = '';
  readonly noise: NoiseConfig = { backend: nodeBackend, random: cryptoRandom, prologue: new TextEncoder().encode(CONTROL_PROLOGUE) };
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private readonly sessions = new Set<ControlSession>();
  private readonly byNode = new Map<number, ControlSession>();
  private keepalive: NodeJS.Timeout | undefined;
  url = '';
  port = 0;

  constructor(readonly opts: ControlServerOptions) {
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.onRequest(req, res);
    this.http = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createHttpServer(handler);
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: 1 << 17,
      handleProtocols: (p) => (p.has(CONTROL_SUBPROTOCOL) ? CONTROL_SUBPROTOCOL : false),
    });
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.http.on('clientError', (_e, socket) => socket.destroy());
  }

  log(msg: string): void {
    this.opts.log?.(msg);
  }

  /** Loads the state, then listens. */
  async start(): Promise<void> {
    const store = this.opts.store;
    let priv = await store.getMeta(SERVER_KEY_META);
    if (!priv) {
      priv = MachinePrivate.generate().toBase64();
      await store.setMeta(SERVER_KEY_META, priv);
    }
    const k = MachinePrivate.parse(priv);
    this.serverKey = keyPair(nodeBackend, k.rawView());
    this.publicKey = k.public().toString();
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    const a = this.http.address();
    if (a && typeof a === 'object') this.port = a.port;
    const hostPart = (this.opts.host ?? '127.0.0.1').includes(':') ? `[${this.opts.host}]` : (this.opts.host ?? '127.0.0.1');
    this.url = this.opts.serverUrl ?? `${this.opts.tls ? 'https' : 'http'}://${hostPart === '0.0.0.0' ? '127.0.0.1' : hostPart}:${this.port}`;
    this.state = new ControlState({
      store,
      relays: this.opts.relays ?? { regions: [] },
      serverUrl: this.url,
      ...(this.opts.webUrl !== undefined ? { webUrl: this.opts.webUrl } : {}),
      ...(this.opts.now !== undefined ? { now: this.opts.now } : {}),
      ...(this.opts.keyExpiryMs !== undefined ? { keyExpiryMs: this.opts.keyExpiryMs } : {}),
      ...(this.opts.ephemeralTimeoutMs !== undefined ? { ephemeralTimeoutMs: this.opts.ephemeralTimeoutMs } : {}),
      log: (m) => this.log(m),
    });
    this.state.onNodeGone = (id, code, message) => this.byNode.get(id)?.kick(code, message);
    await this.state.load(this.opts.policyText);
    if (this.opts.initialAdmin && (await this.state.ensureAdmin(this.opts.initialAdmin.name, this.opts.initialAdmin.password))) {
      this.log(`created admin account "${this.opts.initialAdmin.name}"`);
    }
    this.keepalive = setInterval(() => {
      for (const s of this.sessions) s.ping();
    }, this.opts.keepaliveMs ?? KEEPALIVE_INTERVAL_MS);
    this.keepalive.unref();
  }

  claim(nodeId: number, s: ControlSession): void {
    const old = this.byNode.get(nodeId);
    this.byNode.set(nodeId, s);
    if (old && old !== s) old.close(1000, 'replaced by a newer connection');
  }

  release(nodeId: number, s: ControlSession): void {
    if (this.byNode.get(nodeId) === s) this.byNode.delete(nodeId);
    this.sessions.delete(s);
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  async close(): Promise<void> {
    clearInterval(this.keepalive);
    for (const s of [...this.sessions]) s.close(1001, 'control shutting down');
    this.state?.close();
    this.wss.close();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections?.();
    });
    await this.opts.store.close();
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    try {
      if (path === '/key' && req.method === 'GET') {
        return json(res, 200, { publicKey: this.publicKey, protocolVersion: CONTROL_PROTOCOL_VERSION }, { 'Access-Control-Allow-Origin': '*' });
      }
      if (path === '/health') return text(res, 200, 'ok\n');
      const reg = /^\/register\/([0-9a-f]{24})$/.exec(path);
      if (reg && req.method === 'GET') {
        const p = this.state.pending.get(reg[1]!);
        if (!p) return text(res, 404, 'This login link is unknown or was already used.\n');
        return text(
          res,
          200,
          `Node "${p.req.hostname}" asks to join this tailnet.\n\nAn administrator approves it with:\n\n  pierce admin nodes approve ${p.id} --user USER\n`,
        );
      }
      if (path.startsWith('/api/v1/')) {
        return await handleAdmin(this.state, req, res, path.slice('/api/v1'.length), { secure: !!this.opts.tls || this.url.startsWith('https:') });
      }
      if (this.opts.webRoot && path !== '/control' && (await serveStatic(this.opts.webRoot, req, res))) return;
      return text(res, 404, 'not found\n');
    } catch (e) {
      this.log(`control: ${req.method} ${path}: ${(e as Error).stack ?? String(e)}`);
      if (!res.headersSent) json(res, 500, { error: 'internal error' });
    }
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/control' || !this.state) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      if (ws.protocol !== CONTROL_SUBPROTOCOL) return ws.close(1002, `subprotocol ${CONTROL_SUBPROTOCOL} required`);
      const s = new ControlSession(ws, this, `${req.socket.remoteAddress}:${req.socket.remotePort}`);
      this.sessions.add(s);
      ws.on('close', () => {
        this.sessions.delete(s);
      });
    });
  }
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
  res.end(JSON.stringify(body) + '\n');
}

export function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
  res.end(body);
}

/** Starts a control server (what `pierce control` runs). */
export async function startControl(opts: ControlServerOptions): Promise<ControlServer> {
  const s = new ControlServer(opts);
  await s.start();
  return s;
}
