/**
 * A lightweight mesh node for control tests and benchmarks: it speaks the real protocol
 * (WebSocket, Noise IK, framing, JSON) through src/control/client.ts and keeps a NetmapView,
 * but runs no data plane.
 */
import WebSocket from 'ws';
import { cryptoRandom } from '../../src/crypto/backend.ts';
import { DiscoPrivate, MachinePrivate, NodePrivate, type MachinePublic } from '../../src/key/keys.ts';
import { ControlConnection, NetmapView, fetchServerKey, type WebSocketCtor } from '../../src/control/client.ts';
import type { MapResponse, RegisterRequest, ServerMessage } from '../../src/control/messages.ts';
import { nodeBackend } from '../../gateway/src/crypto/node-backend.ts';

export interface TestNodeOptions {
  url: string;
  hostname: string;
  authKey?: string;
  tags?: string[];
  ephemeral?: boolean;
  serverKey?: MachinePublic;
  /** Keep the same identity across instances (restart tests). */
  machineKey?: MachinePrivate;
  nodeKey?: NodePrivate;
  /** Another WebSocket constructor (e.g. one trusting a test CA). */
  WebSocket?: WebSocketCtor;
}

export class TestNode {
  readonly machineKey: MachinePrivate;
  nodeKey: NodePrivate;
  readonly discoKey = DiscoPrivate.generate();
  view = new NetmapView();
  conn: ControlConnection | undefined;
  readonly messages: ServerMessage[] = [];
  errors: { code: string; message: string }[] = [];
  closed: { code: number; reason: string } | undefined;
  loginUrl: string | undefined;
  registrationId: string | undefined;
  /** Called after each map message is applied. */
  onMap: ((m: MapResponse, at: number) => void) | undefined;
  private waiters: (() => void)[] = [];

  constructor(readonly opts: TestNodeOptions) {
    this.machineKey = opts.machineKey ?? MachinePrivate.generate();
    this.nodeKey = opts.nodeKey ?? NodePrivate.generate();
  }

  async connect(): Promise<void> {
    const serverKey = this.opts.serverKey ?? (await fetchServerKey(this.opts.url));
    this.closed = undefined;
    this.conn = await ControlConnection.connect({
      url: this.opts.url,
      machineKey: this.machineKey,
      serverKey,
      backend: nodeBackend,
      random: cryptoRandom,
      WebSocket: this.opts.WebSocket ?? (WebSocket as unknown as WebSocketCtor),
      onMessage: (m) => this.onMessage(m),
      onClose: (code, reason) => {
        this.closed = { code, reason };
        this.notify();
      },
    });
  }

  private onMessage(m: ServerMessage): void {
    this.messages.push(m);
    if (m.t === 'map') {
      this.view.apply(m);
      this.onMap?.(m, performance.now());
    } else if (m.t === 'error') this.errors.push({ code: m.code, message: m.message });
    else if (m.t === 'register' && m.status === 'needs-login') {
      this.loginUrl = m.loginUrl;
      this.registrationId = m.id;
    }
    this.notify();
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves when `pred` holds (checked after every message), rejects after `ms`. */
  waitFor<T>(pred: () => T | undefined | false, ms = 5000, what = 'condition'): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.opts.hostname}: timed out waiting for ${what}`)), ms);
      const check = () => {
        let v: T | undefined | false;
        try {
          v = pred();
        } catch (e) {
          clearTimeout(timer);
          reject(e as Error);
          return;
        }
        if (v) {
          clearTimeout(timer);
          resolve(v);
        } else this.waiters.push(check);
      };
      check();
    });
  }

  /** Sends register and waits for ok (or an error, which rejects). */
  async register(extra: Partial<RegisterRequest> = {}): Promise<void> {
    const before = this.messages.length;
    const req: RegisterRequest = { t: 'register', nodeKey: this.nodeKey.public().toString(), hostname: this.opts.hostname, ...extra };
    if (this.opts.authKey && extra.authKey === undefined) req.authKey = this.opts.authKey;
    if (this.opts.tags) req.tags = this.opts.tags;
    if (this.opts.ephemeral) req.ephemeral = true;
    this.conn!.send(req);
    await this.waitFor(() => {
      const fresh = this.messages.slice(before);
      const err = fresh.find((m) => m.t === 'error');
      if (err && err.t === 'error') throw Object.assign(new Error(`${err.code}: ${err.message}`), { code: err.code });
      return fresh.some((m) => m.t === 'register' && m.status === 'ok');
    }, 10_000, 'registration');
  }

  /** Sends a map request and waits for the full map. */
  async map(endpoints: string[] = [], homeRelay = 1): Promise<void> {
    this.view = new NetmapView();
    this.conn!.send({ t: 'map', discoKey: this.discoKey.public().toString(), endpoints, homeRelay, stream: true });
    await this.waitFor(() => this.view.self !== undefined, 10_000, 'full map');
  }

  /** connect + register + map. */
  async join(endpoints: string[] = []): Promise<this> {
    await this.connect();
    await this.register();
    await this.map(endpoints);
    return this;
  }

  get id(): number {
    return this.view.self!.id;
  }

  peerNames(): string[] {
    return [...this.view.peers.values()].map((p) => p.name).sort();
  }

  close(): void {
    this.conn?.close();
  }
}
