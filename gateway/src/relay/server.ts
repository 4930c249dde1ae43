/**
 * `pierce relay`: a DERP server wire-compatible with Tailscale's DERP v2 (derp/derpserver).
 *
 *   GET /derp  Upgrade: DERP        → 101 (Derp-Version: 2, Derp-Public-Key), then DERP frames
 *              Upgrade: websocket   → WebSocket, subprotocol `derp`, binary, no compression
 *              neither              → 426 Upgrade Required
 *   HEAD|GET /derp/probe, /derp/latency-check → 200, Access-Control-Allow-Origin: *
 *   GET /generate_204 → 204, echoing a valid X-Tailscale-Challenge as X-Tailscale-Response
 *   GET /metrics (with --metrics) → Prometheus text
 *   GET /lease  Upgrade: websocket, subprotocol `pierce-lease` (with --udp-leases; else 404)
 *              → UDP leases for browser nodes (leases.ts, docs/udp-leases.md)
 *
 * Routing: a packet for a connected key goes to that client's queue; for an unknown key it is
 * dropped, and a disco packet is answered with PeerGone(NotHere), at most 1/s (burst 3) per
 * sender. When a client leaves, everyone that sent to it gets PeerGone(Disconnected). A second
 * connection with the same key replaces the first. Mesh peers (same mesh key) may watch
 * connections (PeerPresent / PeerGone) and forward packets (ForwardPacket).
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { cryptoRandom, type RandomSource } from '../../../src/crypto/backend.ts';
import { toHex } from '../../../src/crypto/bytes.ts';
import { NodePrivate, NodePublic } from '../../../src/key/keys.ts';
import { FrameType, PeerGoneReason, PeerPresentFlags, encodePeerGone, encodePeerPresent, encodeRecvPacket, encodeForwardPacket } from '../../../src/derp/frames.ts';
import { RelayMetrics } from './metrics.ts';
import { LeaseGateway, type LeaseOptions } from './leases.ts';
import { LEASE_PATH, LEASE_SUBPROTOCOL, MAX_FRAME as LEASE_MAX_FRAME } from '../../../src/lease/codec.ts';
import { DerpLink } from './link.ts';
import { DEFAULT_RELAY_LIMITS, Session, isDisco, keyId, type RelayCore, type RelayLimits } from './session.ts';
import { socketConn, websocketConn } from './transport.ts';

export interface RelayOptions {
  host: string;
  port: number;
  privateKey?: NodePrivate;
  meshKey?: Uint8Array;
  /** DERP URLs of the other relays of this region (they must share the mesh key). */
  meshWith?: string[];
  limits?: Partial<RelayLimits>;
  tls?: { cert: string | Buffer; key: string | Buffer };
  metrics?: boolean;
  /** Lend UDP sockets to browser nodes on /lease (checked with control by `authority`). */
  leases?: Omit<LeaseOptions, 'privateKey' | 'random' | 'log'>;
  random?: RandomSource;
  log?: (level: 'debug' | 'info' | 'warn', message: string) => void;
}

const CHALLENGE = /^[A-Za-z0-9._:-]{1,64}$/;

export class RelayServer implements RelayCore {
  readonly privateKey: NodePrivate;
  readonly publicKey: NodePublic;
  readonly meshKey: Uint8Array | null;
  readonly limits: RelayLimits;
  readonly random: RandomSource;
  readonly metrics = new RelayMetrics();
  private readonly clients = new Map<string, Session>();
  /** For each destination key: the sessions that sent to it (for PeerGone on disconnect). */
  private readonly senders = new Map<string, Set<Session>>();
  private readonly watchers = new Set<Session>();
  private readonly notHere = new Map<Session, { tokens: number; at: number }>();
  private readonly sessions = new Set<Session>();
  /** Keys connected to other relays of the mesh, and the link that reaches each. */
  private readonly remote = new Map<string, DerpLink>();
  private readonly links: DerpLink[] = [];
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private readonly leaseWss: WebSocketServer | null = null;
  /** The UDP lease gateway, when enabled. */
  readonly leases: LeaseGateway | null = null;
  private readonly logFn: (level: 'debug' | 'info' | 'warn', message: string) => void;
  address = '';
  port = 0;

  constructor(private readonly opts: RelayOptions) {
    this.privateKey = opts.privateKey ?? NodePrivate.generate();
    this.publicKey = this.privateKey.public();
    this.meshKey = opts.meshKey ?? null;
    this.limits = { ...DEFAULT_RELAY_LIMITS, ...opts.limits };
    this.random = opts.random ?? cryptoRandom;
    this.logFn = opts.log ?? (() => {});
    const handler = (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res);
    this.http = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createHttpServer(handler);
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, handleProtocols: (p) => (p.has('derp') ? 'derp' : false), maxPayload: 1 << 20 });
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.http.on('clientError', (_e, socket) => socket.destroy());
    this.metrics.clients.set(0);
    if (opts.leases) {
      this.leases = new LeaseGateway({ ...opts.leases, privateKey: this.privateKey, random: this.random, log: this.logFn });
      this.leaseWss = new WebSocketServer({
        noServer: true,
        perMessageDeflate: false,
        handleProtocols: (p) => (p.has(LEASE_SUBPROTOCOL) ? LEASE_SUBPROTOCOL : false),
        maxPayload: LEASE_MAX_FRAME,
      });
      const leases = this.leases;
      this.metrics.attachLeases(() => leases.stats());
    }
  }

  log(level: 'debug' | 'info' | 'warn', message: string): void {
    this.logFn(level, message);
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.opts.port, this.opts.host, () => {
        this.http.off('error', reject);
        resolve();
      });
    });
    const a = this.http.address();
    if (a && typeof a === 'object') {
      this.address = a.address;
      this.port = a.port;
    }
    for (const url of this.opts.meshWith ?? []) this.addMeshPeer(url);
  }

  /** Keeps a mesh link to another relay: watch its clients, forward packets for them. */
  addMeshPeer(url: string): void {
    if (!this.meshKey) throw new Error('meshing needs a mesh key');
    const ownKey = keyId(this.publicKey.rawView());
    const forget = (link: DerpLink) => {
      for (const [k, l] of this.remote) if (l === link) this.remote.delete(k);
    };
    const link: DerpLink = new DerpLink({
      url,
      transport: 'derp',
      privateKey: this.privateKey,
      meshKey: this.meshKey,
      random: this.random,
      onConnected: (client) => {
        if (client.serverPublicKey && keyId(client.serverPublicKey.rawView()) === ownKey) {
          this.log('info', `relay: mesh peer ${url} is this relay itself; ignoring it`);
          link.close();
          return;
        }
        this.log('info', `relay: meshed with ${url} (${client.serverPublicKey?.short() ?? '?'})`);
        client.watchConns();
      },
      onDisconnected: (why) => {
        forget(link);
        this.log('info', `relay: mesh link to ${url} lost (${why}); reconnecting`);
      },
      events: {
        peerPresent: (p) => {
          const k = keyId(p.key.rawView());
          if (k !== ownKey && !this.clients.has(k)) this.remote.set(k, link);
        },
        peerGone: (key) => {
          const k = keyId(key.rawView());
          if (this.remote.get(k) === link) this.remote.delete(k);
        },
      },
    });
    this.links.push(link);
  }

  /** The relay's URL for clients (ws:// or wss:// for browsers use the same host and path). */
  get url(): string {
    const host = this.address.includes(':') ? `[${this.address}]` : this.address;
    return `${this.opts.tls ? 'https' : 'http'}://${host}:${this.port}/derp`;
  }

  async close(): Promise<void> {
    for (const l of this.links) l.close();
    for (const s of [...this.sessions]) s.close();
    this.leases?.close();
    this.leaseWss?.close();
    this.wss.close();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections?.();
    });
  }

  // ------------------------------------------------------------------ HTTP

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/derp/probe' || path === '/derp/latency-check') {
      res.writeHead(200, { 'Access-Control-Allow-Origin': '*', 'Cache-Control': 'no-cache' });
      res.end();
      return;
    }
    if (path === '/generate_204') {
      const headers: Record<string, string> = { 'Cache-Control': 'no-cache, no-store, must-revalidate' };
      const ch = req.headers['x-tailscale-challenge'];
      if (typeof ch === 'string' && CHALLENGE.test(ch)) headers['X-Tailscale-Response'] = `response ${ch}`;
      res.writeHead(204, headers);
      res.end();
      return;
    }
    if (path === '/derp') {
      res.writeHead(426, { 'Content-Type': 'text/plain' });
      res.end('DERP requires connection upgrade\n');
      return;
    }
    if (path === LEASE_PATH && this.leases) {
      res.writeHead(426, { 'Content-Type': 'text/plain' });
      res.end(`UDP leases need a WebSocket with subprotocol "${LEASE_SUBPROTOCOL}"\n`);
      return;
    }
    if (path === '/metrics' && this.opts.metrics) {
      void this.metrics.registry.metrics().then((text) => {
        res.writeHead(200, { 'Content-Type': this.metrics.registry.contentType });
        res.end(text);
      });
      return;
    }
    if (path === '/') {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(`pierce relay\npublic key ${this.publicKey.toString()}\n`);
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '/').split('?')[0];
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    if (path === LEASE_PATH && this.leases && this.leaseWss && upgrade === 'websocket') {
      const protos = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
      if (!protos.includes(LEASE_SUBPROTOCOL)) {
        socket.end(`HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nWebSocket subprotocol "${LEASE_SUBPROTOCOL}" required\n`);
        return;
      }
      const leases = this.leases;
      this.leaseWss.handleUpgrade(req, socket, head, (ws) => leases.accept(ws, remote));
      return;
    }
    if (path !== '/derp') {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
      return;
    }
    if (upgrade === 'websocket') {
      const protos = String(req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
      if (!protos.includes('derp')) {
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nWebSocket subprotocol "derp" required\n');
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(websocketConn(ws, remote)));
      return;
    }
    if (upgrade === 'derp') {
      if (req.headers['derp-fast-start'] !== '1') {
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n' +
            `Derp-Version: 2\r\nDerp-Public-Key: ${toHex(this.publicKey.rawView())}\r\n\r\n`,
        );
      }
      this.accept(socketConn(socket as import('node:net').Socket, new Uint8Array(head)));
      return;
    }
    socket.end('HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\n\r\n');
  }

  private accept(conn: ReturnType<typeof socketConn>): void {
    this.metrics.connections.inc({ transport: conn.kind });
    const s = new Session(this, conn);
    this.sessions.add(s);
    conn.onClose(() => this.sessions.delete(s));
  }

  // ------------------------------------------------------------------ RelayCore

  register(s: Session): void {
    const old = this.clients.get(s.keyId);
    if (old && old !== s) {
      this.log('debug', `relay: ${s.key!.short()} connected again from ${s.conn.remote}; closing the older connection`);
      this.metrics.drops.inc({ reason: 'replaced' });
      this.clients.delete(s.keyId);
      old.close();
    }
    this.clients.set(s.keyId, s);
    this.metrics.clients.set(this.clients.size);
    const present = encodePeerPresent({ key: s.key!, flags: PeerPresentFlags.Regular });
    for (const w of this.watchers) if (w !== s) w.sendControl(present);
    this.log('debug', `relay: ${s.describe()} ready (${s.conn.kind}${s.isMesh ? ', mesh' : ''})`);
  }

  unregister(s: Session): void {
    this.watchers.delete(s);
    this.notHere.delete(s);
    if (this.clients.get(s.keyId) !== s) return; // replaced: the newer connection stays
    this.clients.delete(s.keyId);
    this.metrics.clients.set(this.clients.size);
    const gone = encodePeerGone(s.key!, PeerGoneReason.Disconnected);
    for (const sender of this.senders.get(s.keyId) ?? []) if (sender.state === 'ready') sender.sendControl(gone);
    this.senders.delete(s.keyId);
    for (const w of this.watchers) w.sendControl(gone);
    this.log('debug', `relay: ${s.describe()} left`);
  }

  route(from: Session, dst: Uint8Array, packet: Uint8Array, frame: Uint8Array | null = null): void {
    const id = keyId(dst);
    const to = this.clients.get(id);
    const disco = isDisco(packet);
    if (!to) {
      const link = this.remote.get(id)?.client;
      if (link && !from.isMesh) {
        // On another relay of the mesh: one hop of ForwardPacket (never forwarded again).
        link.forwardPacket(from.key!, NodePublic.fromRaw(dst), packet);
        this.metrics.count(packet.length);
        return;
      }
      this.metrics.drops.inc({ reason: 'unknown_dest' });
      if (disco && this.allowNotHere(from)) from.sendControl(encodePeerGone(NodePublic.fromRaw(dst), PeerGoneReason.NotHere));
      return;
    }
    let set = this.senders.get(id);
    if (!set) this.senders.set(id, (set = new Set()));
    set.add(from);
    this.metrics.count(packet.length);
    if (frame) {
      // Rewrite the SendPacket frame into the RecvPacket frame in place: no copy of the packet.
      frame[0] = FrameType.RecvPacket;
      frame.set(from.key!.rawView(), 5);
      to.enqueue(frame, disco);
    } else to.enqueue(encodeRecvPacket(from.key!, packet), disco);
  }

  forward(_from: Session, src: NodePublic, dst: NodePublic, packet: Uint8Array): void {
    const to = this.clients.get(keyId(dst.rawView()));
    if (!to) {
      this.metrics.drops.inc({ reason: 'unknown_dest_fwd' });
      return;
    }
    this.metrics.count(packet.length);
    to.enqueue(encodeRecvPacket(src, packet), isDisco(packet));
  }

  /** Sends a packet to a mesh peer as ForwardPacket (used by the mesh client side). */
  static forwardFrame(src: NodePublic, dst: NodePublic, packet: Uint8Array): Uint8Array {
    return encodeForwardPacket(src, dst, packet);
  }

  watch(s: Session): void {
    this.watchers.add(s);
    this.metrics.meshPeers.set(this.watchers.size);
    for (const c of this.clients.values()) if (c !== s) s.sendControl(encodePeerPresent({ key: c.key!, flags: PeerPresentFlags.Regular }));
  }

  closePeer(key: NodePublic): void {
    this.clients.get(keyId(key.rawView()))?.close();
  }

  drop(reason: string): void {
    this.metrics.drops.inc({ reason });
  }

  /** PeerGone(NotHere) is rate-limited per sender: 1/s, burst 3 (Tailscale's server). */
  private allowNotHere(s: Session): boolean {
    const now = Date.now();
    let b = this.notHere.get(s);
    if (!b) this.notHere.set(s, (b = { tokens: 3, at: now }));
    b.tokens = Math.min(3, b.tokens + (now - b.at) / 1000);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Connected client keys (for status and tests). */
  clientKeys(): string[] {
    return [...this.clients.keys()];
  }
}

export async function startRelay(opts: RelayOptions): Promise<RelayServer> {
  const r = new RelayServer(opts);
  await r.listen();
  return r;
}
