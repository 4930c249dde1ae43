/**
 * Session channels (RFC 4254 §5–6) with window / maximum-packet flow control.
 *
 * Incoming data is delivered to the onData / onStderr listener; until one is attached it is
 * buffered and the window is not re-opened, so a slow consumer pushes back on the server.
 * `closed` always resolves (never rejects) with the exit status / signal and, if the channel
 * ended abnormally, the error.
 */
import { ChannelCore, LOCAL_MAX_PACKET, safe, type ChannelCoreHost } from './channel-core.ts';
import { SshReader, SshWriter, utf8 } from './codec.ts';
import { EXTENDED_DATA_STDERR, MSG_CHANNEL_FAILURE, MSG_CHANNEL_REQUEST } from './constants.ts';
import { SshError } from './errors.ts';

export { LOCAL_MAX_PACKET, LOCAL_WINDOW } from './channel-core.ts';

export interface ExitInfo {
  exitStatus?: number;
  exitSignal?: { name: string; coreDumped: boolean; message: string };
  /** Set when the channel ended because the connection failed or the channel was refused. */
  error?: SshError;
}

export interface PtyOptions {
  term?: string;
  cols?: number;
  rows?: number;
  widthPx?: number;
  heightPx?: number;
  /** Encoded terminal modes (RFC 4254 §8); default none (just TTY_OP_END). */
  modes?: Uint8Array;
}

/** What a channel needs from its connection. */
export interface ChannelHost extends ChannelCoreHost {
  requestTimeoutMs: number;
}

type Waiter = { resolve: () => void; reject: (e: SshError) => void; timer: ReturnType<typeof setTimeout> };

export class SshChannel extends ChannelCore {
  readonly exit: ExitInfo = {};
  private dataCb: ((b: Uint8Array) => void) | undefined;
  private stderrCb: ((b: Uint8Array) => void) | undefined;
  private eofCb: (() => void) | undefined;
  private bufData: Uint8Array[] = [];
  private bufStderr: Uint8Array[] = [];
  private requests: Waiter[] = [];
  readonly closed: Promise<ExitInfo>;
  private resolveClosed!: (e: ExitInfo) => void;

  constructor(
    protected override readonly host: ChannelHost,
    localId: number,
  ) {
    super(host, localId);
    this.closed = new Promise((res) => (this.resolveClosed = res));
  }

  /** Called by the connection on OPEN_CONFIRMATION. */
  confirm(remoteId: number, window: number, maxPacket: number): void {
    this.setRemote(remoteId, window, maxPacket, LOCAL_MAX_PACKET * 8);
  }

  onData(cb: (b: Uint8Array) => void): void {
    this.dataCb = cb;
    while (!this.paused && this.bufData.length) this.deliver(this.bufData.shift()!, cb);
  }
  onStderr(cb: (b: Uint8Array) => void): void {
    this.stderrCb = cb;
    while (!this.paused && this.bufStderr.length) this.deliver(this.bufStderr.shift()!, cb);
  }
  // pause() / resume(): ChannelCore; a paused channel makes the server stop after at most one
  // window (a slow consumer, e.g. a terminal still drawing).

  get isPaused(): boolean {
    return this.paused;
  }

  onEof(cb: () => void): void {
    this.eofCb = cb;
    if (this.eofReceived) cb();
  }

  /** Sends data (a string is UTF-8), split to the peer's window and packet size. */
  write(data: Uint8Array | string): void {
    if (this.eofQueued || this.finished) throw new SshError('SSH_CHANNEL', 'write after end or close');
    const b = typeof data === 'string' ? utf8(data) : data;
    if (b.length === 0) return;
    this.enqueue(b, false);
    this.flush();
  }

  /** Sends EOF once all queued data is out. */
  end(): void {
    if (this.eofQueued || this.finished) return;
    this.eofQueued = true;
    this.flush();
  }

  /** Sends CLOSE (after queued data); `closed` resolves when the server answers. */
  close(): void {
    if (this.closeQueued || this.finished) return;
    this.closeQueued = true;
    this.dropQueued();
    this.flush();
  }

  requestPty(o: PtyOptions = {}): Promise<void> {
    const w = this.req('pty-req', true)
      .string(o.term ?? 'xterm-256color')
      .uint32(o.cols ?? 80)
      .uint32(o.rows ?? 24)
      .uint32(o.widthPx ?? 0)
      .uint32(o.heightPx ?? 0)
      .string(o.modes ?? Uint8Array.of(0));
    return this.sendRequest('pty-req', w.bytes());
  }
  shell(): Promise<void> {
    return this.sendRequest('shell', this.req('shell', true).bytes());
  }
  exec(command: string): Promise<void> {
    return this.sendRequest('exec', this.req('exec', true).string(command).bytes());
  }
  env(name: string, value: string): Promise<void> {
    return this.sendRequest('env', this.req('env', true).string(name).string(value).bytes());
  }
  /** window-change (no reply, RFC 4254 §6.7). */
  resize(cols: number, rows: number, widthPx = 0, heightPx = 0): void {
    if (this.finished || this.closeSent) return;
    this.host.send(this.req('window-change', false).uint32(cols).uint32(rows).uint32(widthPx).uint32(heightPx).bytes());
  }
  /** signal (RFC 4254 §6.9), e.g. "INT"; OpenSSH honours it since 7.9 (exec and shell). */
  signal(name: string): void {
    if (this.finished || this.closeSent) return;
    this.host.send(this.req('signal', false).string(name).bytes());
  }

  private req(type: string, wantReply: boolean): SshWriter {
    return new SshWriter(64).byte(MSG_CHANNEL_REQUEST).uint32(this.remoteId).string(type).bool(wantReply);
  }

  private sendRequest(type: string, payload: Uint8Array): Promise<void> {
    if (this.finished || this.closeSent) return Promise.reject(new SshError('SSH_CHANNEL', `${type}: channel closed`));
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject: (e) => reject(new SshError(e.code, `${type}: ${e.message}`, { cause: e })),
        timer: setTimeout(() => {
          const i = this.requests.indexOf(w);
          if (i >= 0) this.requests.splice(i, 1);
          reject(new SshError('SSH_TIMEOUT', `${type}: no reply in ${this.host.requestTimeoutMs} ms`));
        }, this.host.requestTimeoutMs),
      };
      this.requests.push(w);
      this.host.send(payload);
    });
  }

  private deliver(b: Uint8Array, cb: (b: Uint8Array) => void): void {
    this.consume(b.length);
    safe(() => cb(b));
  }

  // ---- ChannelCore hooks (handle() parses and checks the messages) -----------------------------

  /** Data after the server's EOF, or after our channel finished, is a protocol error. */
  protected override checkDataAllowed(): void {
    if (this.eofReceived || this.finished) throw new SshError('SSH_PROTOCOL', 'channel data after EOF or CLOSE');
  }

  protected override onPeerData(data: Uint8Array, ext: number): void {
    if (ext === -1) {
      if (this.dataCb && !this.paused) this.deliver(data, this.dataCb);
      else this.bufData.push(data);
    } else if (ext === EXTENDED_DATA_STDERR) {
      if (this.stderrCb && !this.paused) this.deliver(data, this.stderrCb);
      else this.bufStderr.push(data);
    } else {
      this.consume(data.length); // unknown stream: consume and drop
    }
  }

  protected override pump(): void {
    while (!this.paused && this.dataCb && this.bufData.length) this.deliver(this.bufData.shift()!, this.dataCb);
    while (!this.paused && this.stderrCb && this.bufStderr.length) this.deliver(this.bufStderr.shift()!, this.stderrCb);
  }

  protected override onPeerEof(): void {
    const cb = this.eofCb;
    if (cb) safe(cb);
  }

  protected override onReply(ok: boolean): void {
    const w = this.requests.shift();
    if (!w) throw new SshError('SSH_PROTOCOL', 'channel request reply without a request');
    clearTimeout(w.timer);
    if (ok) w.resolve();
    else w.reject(new SshError('SSH_CHANNEL', 'the server refused the request'));
  }

  protected override onRequest(r: SshReader): void {
    const type = r.text();
    const wantReply = r.bool();
    if (type === 'exit-status') {
      this.exit.exitStatus = r.uint32();
    } else if (type === 'exit-signal') {
      const name = r.text();
      const coreDumped = r.bool();
      const message = r.text();
      this.exit.exitSignal = { name, coreDumped, message };
    }
    if (wantReply && !this.closeSent) {
      this.host.send(new SshWriter(8).byte(MSG_CHANNEL_FAILURE).uint32(this.remoteId).bytes());
    }
  }

  /** Ends the channel: on CLOSE from the server, a refused open, or a failed connection. */
  override finish(error?: SshError): void {
    if (this.finished) return;
    this.finished = true;
    if (error) this.exit.error = error;
    for (const w of this.requests.splice(0)) {
      clearTimeout(w.timer);
      w.reject(error ?? new SshError('SSH_CHANNEL', 'channel closed'));
    }
    this.host.release(this.localId);
    this.resolveClosed(this.exit);
  }
}
