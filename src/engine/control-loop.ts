/**
 * The engine's link to control: connect (Noise IK over WebSocket), register, open the map
 * stream, apply every map message, and when the connection drops, reconnect with backoff while
 * the data plane carries on with the netmap it has (invariant 3).
 */
import { Backoff } from '../derp/backoff.ts';
import type { MachinePublic } from '../key/keys.ts';
import { AuditSender, ControlConnection, NetmapView } from '../control/client.ts';
import type { AuditEvent, MapResponse, RegisterRequest, ServerMessage, UpdateRequest } from '../control/messages.ts';
import { PierceError } from '../errors.ts';
import type { EngineOptions, EngineState } from './types.ts';

/** Errors after which registering again cannot help without a person or a new key. */
const FATAL = new Set(['AUTH_KEY_INVALID', 'AUTH_KEY_USED', 'AUTH_KEY_REVOKED', 'AUTH_KEY_EXPIRED', 'TAG_NOT_OWNED', 'NODE_KEY_IN_USE', 'NODE_DELETED']);

export class ControlLoop {
  view = new NetmapView();
  connected = false;
  state: EngineState = 'starting';
  loginUrl: string | undefined;
  lastError: { code: string; message: string } | undefined;
  private conn: ControlConnection | undefined;
  private stopped = false;
  private serverKey: MachinePublic | undefined;
  private readonly backoff: Backoff;
  private report: Omit<UpdateRequest, 't'> = {};
  private registered = false;
  private waitRegister: { resolve: () => void; reject: (e: Error) => void } | undefined;
  private sleepTimer: unknown;
  private wake: (() => void) | undefined;
  private readonly auditSender = new AuditSender();

  constructor(
    private readonly opts: EngineOptions,
    private readonly onMap: (m: MapResponse) => void,
  ) {
    this.serverKey = opts.serverKey;
    this.backoff = new Backoff({ baseMs: 500, maxMs: 15_000, random: opts.random });
  }

  private log(level: 'debug' | 'info' | 'warn', m: string): void {
    this.opts.log?.(level, m);
  }

  private setState(s: EngineState): void {
    if (this.state === s) return;
    this.state = s;
    this.opts.events?.state?.(s);
  }

  /** Runs until `stop()`. */
  async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.session();
      } catch (e) {
        const code = e instanceof PierceError ? e.code : 'ERROR';
        this.lastError = { code, message: (e as Error).message };
        this.log(FATAL.has(code) ? 'warn' : 'info', `control: ${(e as Error).message}`);
        if (FATAL.has(code)) this.setState(code === 'NODE_DELETED' ? 'stopped' : 'needs-login');
      }
      this.connected = false;
      this.conn = undefined;
      this.auditSender.setConnection(undefined);
      if (this.stopped) break;
      await this.sleep(this.backoff.next());
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.sleepTimer = this.opts.clock.setTimer(resolve, ms);
    });
  }

  private async session(): Promise<void> {
    const o = this.opts;
    if (!this.serverKey) {
      this.serverKey = await o.transports.fetchServerKey(o.controlUrl);
      o.events?.serverKey?.(this.serverKey);
    }
    let closed!: () => void;
    const done = new Promise<void>((r) => (closed = r));
    this.conn = await ControlConnection.connect({
      url: o.controlUrl,
      machineKey: o.keys.machine,
      serverKey: this.serverKey,
      backend: o.backend,
      random: o.random,
      WebSocket: o.transports.WebSocket,
      onMessage: (m) => this.onMessage(m),
      onClose: (code, reason) => {
        this.log('info', `control: connection closed (${code} ${reason})`);
        this.waitRegister?.reject(new PierceError('CONTROL_CLOSED', `control closed the connection (${code} ${reason})`));
        closed();
      },
    });
    this.connected = true;
    const req: RegisterRequest = { t: 'register', nodeKey: o.keys.node.public().toString(), hostname: o.hostname };
    // The auth key gets the node in once; after that, an expired or logged-out node needs a
    // person (or a restart with a key) again, so an admin's "expire" sticks.
    if (o.authKey && !this.registered) req.authKey = o.authKey;
    if (o.tags?.length) req.tags = o.tags;
    if (o.ephemeral) req.ephemeral = true;
    await new Promise<void>((resolve, reject) => {
      this.waitRegister = { resolve, reject };
      this.conn!.send(req);
    });
    this.waitRegister = undefined;
    this.registered = true;
    this.auditSender.setConnection(this.conn);
    this.loginUrl = undefined;
    this.view = new NetmapView();
    this.conn.send({ t: 'map', discoKey: o.keys.disco.public().toString(), endpoints: this.report.endpoints ?? [], homeRelay: this.report.homeRelay ?? 0, stream: true, ...(o.sshServer ? { sshServer: true } : {}) });
    this.backoff.reset();
    await done;
  }

  /** Reports an event (an SSH session) to control's audit log; queued while disconnected. */
  audit(e: AuditEvent): void {
    this.auditSender.audit([e]);
  }

  private onMessage(m: ServerMessage): void {
    switch (m.t) {
      case 'register':
        if (m.status === 'needs-login') {
          this.loginUrl = m.loginUrl;
          this.setState('needs-login');
          this.opts.events?.login?.(m.loginUrl);
        } else this.waitRegister?.resolve();
        return;
      case 'map':
        try {
          this.view.apply(m);
        } catch (e) {
          this.log('warn', `control: ${(e as Error).message}; reconnecting`);
          this.conn?.close();
          return;
        }
        this.setState('running');
        this.onMap(m);
        return;
      case 'error':
        this.lastError = { code: m.code, message: m.message };
        if (this.waitRegister) this.waitRegister.reject(new PierceError(m.code, m.message));
        else {
          this.log('warn', `control: ${m.code}: ${m.message}`);
          if (m.code === 'NODE_KEY_EXPIRED') this.setState('expired');
          // Deleted by an admin, a revoked share link or its expiry: this node no longer exists
          // at control, and registering again would only ask for a login. The session is over.
          if (m.code === 'NODE_DELETED') {
            this.stopped = true;
            this.setState('stopped');
            this.wake?.();
          }
        }
        return;
      case 'keepalive':
        return;
    }
  }

  /** Reports endpoints / home relay; remembered for the next map request too. */
  update(u: Omit<UpdateRequest, 't'>): void {
    this.report = { ...this.report, ...u };
    if (this.connected && this.state === 'running') {
      try {
        this.conn?.send({ t: 'update', ...u });
      } catch {
        // Sent again with the next map request.
      }
    }
  }

  /** Logs out at control (the node key is expired there) and stops. */
  async logout(): Promise<void> {
    if (!this.conn || !this.connected) throw new PierceError('CONTROL_UNREACHABLE', 'not connected to control');
    this.conn.send({ t: 'logout' });
    await new Promise((r) => this.opts.clock.setTimer(() => r(undefined), 200));
    this.stop();
  }

  stop(): void {
    this.stopped = true;
    this.setState('stopped');
    this.opts.clock.clearTimer(this.sleepTimer);
    this.wake?.();
    this.conn?.close();
  }
}
