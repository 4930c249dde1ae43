/**
 * Session channels (RFC 4254 §5–6) with window / maximum-packet flow control.
 *
 * Incoming data is delivered to the onData / onStderr listener; until one is attached it is
 * buffered and the window is not re-opened, so a slow consumer pushes back on the server.
 * `closed` always resolves (never rejects) with the exit status / signal and, if the channel
 * ended abnormally, the error.
 */
import { SshReader, SshWriter, utf8 } from './codec.ts';
import {
  EXTENDED_DATA_STDERR,
  MSG_CHANNEL_CLOSE,
  MSG_CHANNEL_DATA,
  MSG_CHANNEL_EOF,
  MSG_CHANNEL_EXTENDED_DATA,
  MSG_CHANNEL_FAILURE,
  MSG_CHANNEL_REQUEST,
  MSG_CHANNEL_SUCCESS,
  MSG_CHANNEL_WINDOW_ADJUST,
} from './constants.ts';
import { SshError } from './errors.ts';

/** Our receive window and largest packet we accept (OpenSSH uses 2 MiB / 32 KiB for sessions). */
export const LOCAL_WINDOW = 2 * 1024 * 1024;
export const LOCAL_MAX_PACKET = 32 * 1024;

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
export interface ChannelHost {
  send(payload: Uint8Array): void;
  release(localId: number): void;
  requestTimeoutMs: number;
}

type Waiter = { resolve: () => void; reject: (e: SshError) => void; timer: ReturnType<typeof setTimeout> };

export class SshChannel {
  remoteId = 0;
  private remoteWindow = 0;
  private remoteMaxPacket = 0;
  private localWindow = LOCAL_WINDOW;
  private consumed = 0;
  private outQueue: Uint8Array[] = [];
  private eofQueued = false;
  private closeQueued = false;
  private eofSent = false;
  private closeSent = false;
  private finished = false;
  eofReceived = false;
  readonly exit: ExitInfo = {};
  private dataCb: ((b: Uint8Array) => void) | undefined;
  private stderrCb: ((b: Uint8Array) => void) | undefined;
  private eofCb: (() => void) | undefined;
  private bufData: Uint8Array[] = [];
  private bufStderr: Uint8Array[] = [];
  private paused = false;
  private requests: Waiter[] = [];
  readonly closed: Promise<ExitInfo>;
  private resolveClosed!: (e: ExitInfo) => void;

  constructor(
    private readonly host: ChannelHost,
    readonly localId: number,
  ) {
    this.closed = new Promise((res) => (this.resolveClosed = res));
  }

  /** Called by the connection on OPEN_CONFIRMATION. */
  confirm(remoteId: number, window: number, maxPacket: number): void {
    this.remoteId = remoteId;
    this.remoteWindow = window;
    this.remoteMaxPacket = Math.max(1, Math.min(maxPacket, LOCAL_MAX_PACKET * 8));
  }

  onData(cb: (b: Uint8Array) => void): void {
    this.dataCb = cb;
    while (!this.paused && this.bufData.length) this.deliver(this.bufData.shift()!, cb);
  }
  onStderr(cb: (b: Uint8Array) => void): void {
    this.stderrCb = cb;
    while (!this.paused && this.bufStderr.length) this.deliver(this.bufStderr.shift()!, cb);
  }
  /**
   * Stops delivering data: it is buffered and the receive window is not re-opened, so the
   * server stops after at most one window (a slow consumer, e.g. a terminal still drawing).
   */
  pause(): void {
    this.paused = true;
  }

  /** Delivers what was buffered while paused, and re-opens the window as it is taken. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    while (!this.paused && this.dataCb && this.bufData.length) this.deliver(this.bufData.shift()!, this.dataCb);
    while (!this.paused && this.stderrCb && this.bufStderr.length) this.deliver(this.bufStderr.shift()!, this.stderrCb);
  }

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
    this.outQueue.push(b);
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
    this.outQueue = [];
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
    this.consumed += b.length;
    if (this.consumed >= LOCAL_WINDOW / 2 && !this.finished && !this.closeSent) {
      this.host.send(new SshWriter(16).byte(MSG_CHANNEL_WINDOW_ADJUST).uint32(this.remoteId).uint32(this.consumed).bytes());
      this.localWindow += this.consumed;
      this.consumed = 0;
    }
    try {
      cb(b);
    } catch {
      /* a listener's exception must not break the connection */
    }
  }

  private flush(): void {
    if (this.finished || this.closeSent) return;
    while (this.outQueue.length > 0 && this.remoteWindow > 0) {
      const head = this.outQueue[0]!;
      const n = Math.min(head.length, this.remoteWindow, this.remoteMaxPacket);
      this.host.send(new SshWriter(n + 16).byte(MSG_CHANNEL_DATA).uint32(this.remoteId).string(head.subarray(0, n)).bytes());
      this.remoteWindow -= n;
      if (n === head.length) this.outQueue.shift();
      else this.outQueue[0] = head.subarray(n);
    }
    if (this.outQueue.length > 0) return;
    if (this.eofQueued && !this.eofSent) {
      this.eofSent = true;
      this.host.send(new SshWriter(8).byte(MSG_CHANNEL_EOF).uint32(this.remoteId).bytes());
    }
    if (this.closeQueued && !this.closeSent) {
      this.closeSent = true;
      this.host.send(new SshWriter(8).byte(MSG_CHANNEL_CLOSE).uint32(this.remoteId).bytes());
    }
  }

  /** Handles a channel message addressed to us (type 93–100); throws SSH_PROTOCOL on bad input. */
  handle(p: Uint8Array): void {
    const r = new SshReader(p, 'channel message');
    const type = r.byte();
    r.uint32(); // recipient, already matched
    switch (type) {
      case MSG_CHANNEL_WINDOW_ADJUST: {
        const add = r.uint32();
        if (this.remoteWindow + add > 0xffffffff) throw new SshError('SSH_PROTOCOL', 'channel window above 2^32-1');
        this.remoteWindow += add;
        this.flush();
        return;
      }
      case MSG_CHANNEL_DATA:
      case MSG_CHANNEL_EXTENDED_DATA: {
        const code = type === MSG_CHANNEL_EXTENDED_DATA ? r.uint32() : -1;
        const data = Uint8Array.from(r.string());
        r.end();
        if (this.eofReceived || this.finished) throw new SshError('SSH_PROTOCOL', 'channel data after EOF or CLOSE');
        if (data.length > this.localWindow) throw new SshError('SSH_PROTOCOL', `channel data (${data.length} bytes) exceeds the window (${this.localWindow})`);
        if (data.length > LOCAL_MAX_PACKET) throw new SshError('SSH_PROTOCOL', `channel data of ${data.length} bytes exceeds the maximum packet size`);
        this.localWindow -= data.length;
        if (code === -1) {
          if (this.dataCb && !this.paused) this.deliver(data, this.dataCb);
          else this.bufData.push(data);
        } else if (code === EXTENDED_DATA_STDERR) {
          if (this.stderrCb && !this.paused) this.deliver(data, this.stderrCb);
          else this.bufStderr.push(data);
        } else {
          this.deliver(data, () => {}); // unknown stream: consume and drop
        }
        return;
      }
      case MSG_CHANNEL_EOF:
        this.eofReceived = true;
        try {
          this.eofCb?.();
        } catch {
          /* ignore */
        }
        return;
      case MSG_CHANNEL_CLOSE:
        if (!this.closeSent) {
          this.closeSent = true;
          this.host.send(new SshWriter(8).byte(MSG_CHANNEL_CLOSE).uint32(this.remoteId).bytes());
        }
        this.finish();
        return;
      case MSG_CHANNEL_REQUEST:
        return this.onRequest(r);
      case MSG_CHANNEL_SUCCESS:
      case MSG_CHANNEL_FAILURE: {
        const w = this.requests.shift();
        if (!w) throw new SshError('SSH_PROTOCOL', 'channel request reply without a request');
        clearTimeout(w.timer);
        if (type === MSG_CHANNEL_SUCCESS) w.resolve();
        else w.reject(new SshError('SSH_CHANNEL', 'the server refused the request'));
        return;
      }
      default:
        throw new SshError('SSH_PROTOCOL', `unexpected channel message ${type}`);
    }
  }

  private onRequest(r: SshReader): void {
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
  finish(error?: SshError): void {
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
