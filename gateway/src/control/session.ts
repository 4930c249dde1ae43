/**
 * One node's control connection: a WebSocket whose first binary message is the Noise IK
 * initiation (the node's machine key is its static key), answered by the server's response;
 * after that every WebSocket message is one Noise transport message carrying a chunk of a JSON
 * message (src/control/framing.ts). See docs/protocol.md.
 *
 * A bad handshake, a forged or malformed message closes this connection only.
 */
import type { WebSocket } from 'ws';
import { MachinePublic } from '../../../src/key/keys.ts';
import { respond, type KeyPair, type NoiseConfig, type NoiseSession } from '../../../src/control/noise.ts';
import { Reassembler, decodeJson, encodeJson, sealMessage } from '../../../src/control/framing.ts';
import { CONTROL_PROTOCOL_VERSION, ControlError, parseClientMessage, type ClientMessage, type ServerMessage } from '../../../src/control/messages.ts';
import { isPierceError } from '../../../src/errors.ts';
import type { ControlState } from './state.ts';
import type { MapSink } from './netmap.ts';

const HANDSHAKE_TIMEOUT_MS = 10_000;
/** A node that does not read its stream is cut off once this much is queued (it reconnects). */
const MAX_BUFFERED_BYTES = 64 * 1024 * 1024;

const utf8 = new TextEncoder();
/** Audit events a session may report per minute; more are dropped silently. */
export const AUDIT_EVENTS_PER_MINUTE = 100;
/** A node's `at` further than this from control's clock is replaced by control's time. */
const AUDIT_MAX_SKEW_MS = 10 * 60_000;

export interface SessionHost {
  state: ControlState;
  noise: NoiseConfig;
  serverKey: KeyPair;
  /** Called when a session starts streaming for a node (the previous one is closed). */
  claim(nodeId: number, s: ControlSession): void;
  release(nodeId: number, s: ControlSession): void;
  log(msg: string): void;
}

export class ControlSession implements MapSink {
  private noiseSession: NoiseSession | undefined;
  private reasm: Reassembler | undefined;
  private machineKey = '';
  nodeId: number | undefined;
  private streaming = false;
  private seq = 0;
  private closed = false;
  private queue: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  alive = true;

  constructor(
    private readonly ws: WebSocket,
    private readonly host: SessionHost,
    readonly remote: string,
  ) {
    this.timer = setTimeout(() => this.close(1008, 'handshake timeout'), HANDSHAKE_TIMEOUT_MS);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return this.close(1003, 'binary messages only');
      // Messages are handled in order; each handler may wait for the store.
      this.queue = this.queue.then(() => this.onMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)));
    });
    ws.on('pong', () => (this.alive = true));
    ws.on('close', () => this.onClose());
    ws.on('error', () => this.close(1011, 'socket error'));
  }

  private async onMessage(data: Uint8Array): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.noiseSession) return this.onHandshake(data);
      const msg = this.reasm!.push(data);
      if (msg === null) return;
      await this.handle(parseClientMessage(decodeJson(msg)));
    } catch (e) {
      if (isPierceError(e)) {
        this.host.log(`control: ${this.remote} ${this.machineKey.slice(0, 13)}: ${e.code}: ${e.message}`);
        if (this.noiseSession) this.sendObj({ t: 'error', code: e.code, message: e.message });
        // A bad request on a working channel costs only that request, unless the channel broke.
        if (!this.noiseSession || e.code.startsWith('NOISE') || e.code.startsWith('FRAME') || e.code === 'CONTROL_BAD_MESSAGE') this.close(1008, e.code);
        return;
      }
      this.host.log(`control: ${this.remote}: internal error: ${(e as Error).stack ?? String(e)}`);
      this.close(1011, 'internal error');
    }
  }

  private onHandshake(data: Uint8Array): void {
    const r = respond(this.host.noise, this.host.serverKey, data);
    const hello = decodeJson(r.payload) as { v?: unknown } | null;
    if (typeof hello !== 'object' || hello === null || hello.v !== CONTROL_PROTOCOL_VERSION) {
      throw new ControlError('CONTROL_VERSION', `unsupported protocol version ${JSON.stringify(hello?.v)}; this server speaks ${CONTROL_PROTOCOL_VERSION}`);
    }
    const { message, session } = r.accept(encodeJson({ v: CONTROL_PROTOCOL_VERSION }));
    clearTimeout(this.timer);
    this.machineKey = MachinePublic.fromRaw(r.remoteStatic).toString();
    this.noiseSession = session;
    this.reasm = new Reassembler(session, 1 << 20);
    this.ws.send(message);
  }

  private async handle(m: ClientMessage): Promise<void> {
    const state = this.host.state;
    switch (m.t) {
      case 'keepalive':
        return;
      case 'register': {
        const r = await state.register(this.machineKey, m);
        if (r.status === 'needs-login') {
          this.sendObj({ t: 'register', status: 'needs-login', loginUrl: `${state.opts.serverUrl}/register/${r.pending.id}`, id: r.pending.id });
          const node = await r.pending.promise.catch(() => undefined);
          if (!node || this.closed) return;
          this.nodeId = node.id;
        } else this.nodeId = r.node.id;
        const mapNode = state.netmap.node(this.nodeId);
        this.sendRaw(`{"t":"register","status":"ok","node":${mapNode?.selfJson ?? 'null'},"user":${JSON.stringify(state.userName(state.nodes.get(this.nodeId)!.userId) ?? null)}}`);
        return;
      }
      case 'map': {
        const id = this.requireNode();
        this.host.claim(id, this);
        this.streaming = true;
        state.connected(id);
        state.netmap.attach(id, this, { discoKey: m.discoKey, endpoints: m.endpoints, homeRelay: m.homeRelay, ...(m.sshServer ? { sshServer: true } : {}) });
        if (!m.stream) this.close(1000, 'map sent');
        return;
      }
      case 'update':
        state.netmap.report(this.requireNode(), m);
        return;
      case 'logout': {
        const id = this.requireNode();
        await state.logout(id);
        this.close(1000, 'logged out');
        return;
      }
      case 'audit': {
        const id = this.requireNode();
        const name = state.nodes.get(id)!.name;
        const now = state.now();
        for (const e of m.events) {
          // Per node, not per connection: reconnecting must not buy a fresh allowance.
          if (!state.takeAuditSlot(id, AUDIT_EVENTS_PER_MINUTE)) continue;
          const { kind: _k, action, at, ...detail } = e;
          await state.audit({
            kind: 'ssh',
            actor: name,
            action,
            target: e.srcNode ?? e.srcAddr,
            at: Math.abs(at - now) <= AUDIT_MAX_SKEW_MS ? at : now,
            detail: { ...detail, nodeId: id, reportedAt: at },
          });
        }
        return;
      }
    }
  }

  private requireNode(): number {
    const id = this.nodeId;
    const n = id === undefined ? undefined : this.host.state.nodes.get(id);
    if (id === undefined || !n) throw new ControlError('NOT_REGISTERED', 'register first');
    if (!this.host.state.isActive(n)) throw new ControlError('NODE_KEY_EXPIRED', 'the node key expired or the node logged out; register again');
    return id;
  }

  /** MapSink: one map message on this stream. */
  send(body: string): void {
    this.sendRaw(`{"t":"map","seq":${++this.seq},${body}}`);
  }

  sendObj(m: ServerMessage): void {
    this.sendRaw(JSON.stringify(m));
  }

  sendRaw(json: string): void {
    if (this.closed || !this.noiseSession) return;
    if (this.ws.bufferedAmount > MAX_BUFFERED_BYTES) return this.close(1008, 'not reading its map stream');
    for (const chunk of sealMessage(this.noiseSession, utf8.encode(json))) this.ws.send(chunk);
  }

  /** Tells the node why it is being cut off, then closes. */
  kick(code: string, message: string): void {
    this.sendObj({ t: 'error', code, message });
    this.close(1000, code);
  }

  ping(): void {
    if (!this.alive) return this.close(1001, 'no pong');
    this.alive = false;
    this.ws.ping();
    if (this.streaming) this.sendRaw('{"t":"keepalive"}');
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.ws.close(code, reason.slice(0, 120));
    this.onClose();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    const id = this.nodeId;
    if (id === undefined || !this.streaming) return;
    const state = this.host.state;
    state.netmap.detach(id, this, state.now());
    this.host.release(id, this);
    void state.disconnected(id).catch((e) => this.host.log(`control: node ${id} disconnect: ${(e as Error).message}`));
  }
}
