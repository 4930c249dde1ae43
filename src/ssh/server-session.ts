/**
 * The server end of one "session" channel (RFC 4254 §6), handed to `SshServerOptions.onSession`.
 * Process-free: the handler (e.g. node-pty in gateway/) answers the client's requests and moves
 * the bytes.
 *
 * Requests from the client (RFC 4254 §6.2–6.10) become callbacks; each callback slot holds one
 * listener (a later `onX` replaces it). A request with no listener is refused.
 *
 *   pty-req        onPty(p) → boolean | Promise<boolean>     reply SUCCESS / FAILURE
 *   env            onEnv(name, value) → …                    "
 *   shell | exec | subsystem  onShell / onExec / onSubsystem   at most one per channel
 *   window-change  onWindowChange(cols, rows, wpx, hpx)      no reply
 *   signal         onSignal(name)  (e.g. "INT", no "SIG")    no reply
 *   x11-req, auth-agent-req@openssh.com, eow@openssh.com, keepalive@openssh.com, break, others:
 *                  refused (FAILURE when the client wants a reply)
 *
 * Replies go out in request order even when answers are promises; our data, EOF, exit status and
 * CLOSE wait until the replies before them are out (so `exit(7)` inside onExec is well ordered).
 *
 * Flow control. Outbound: `write` / `writeStderr` queue bytes and send them as the client's
 * window and maximum packet allow; they return false once `writableLength` exceeds
 * `HIGH_WATER` (a PTY should pause then) and `onDrain` listeners (one-shot) run when the queue
 * empties again.
 * Inbound: we open LOCAL_WINDOW (2 MiB) and re-open it as stdin is delivered; `pause()` stops
 * delivery (bytes are buffered and the window is not re-opened, so the client stops sending).
 *
 * Ending: `exit(status)` / `exitSignal(…)` send exit-status / exit-signal, EOF and CLOSE after the
 * queued output; `end()` only EOF; `close()` drops queued output and sends CLOSE now. `onClose`
 * fires once, when both CLOSEs have crossed or the connection is gone.
 */
import { SshReader, SshWriter } from './codec.ts';
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

/** Our receive window and largest data packet we accept (OpenSSH's session defaults). */
export const SERVER_WINDOW = 2 * 1024 * 1024;
export const SERVER_MAX_PACKET = 32 * 1024;
/** Largest data packet we send, whatever the client allows. */
const SEND_MAX_PACKET = 32 * 1024;
/** Queued output above which `write` returns false. */
export const HIGH_WATER = 256 * 1024;

export interface PtyRequest {
  term: string;
  cols: number;
  rows: number;
  widthPx: number;
  heightPx: number;
  /** Encoded terminal modes (RFC 4254 §8), as sent. */
  modes: Uint8Array;
}

/** A request handler's answer: accept (true) or refuse (false), now or later. */
export type RequestAnswer = boolean | Promise<boolean>;

/** What a session needs from its connection. */
export interface SessionHost {
  /** Sends a payload; a no-op once the connection is closed. */
  send(payload: Uint8Array): void;
  release(localId: number): void;
}

type Slot = { wantReply: boolean; done: boolean; ok: boolean };
type Out = { data: Uint8Array; stderr: boolean };

export class ServerSession {
  private remoteWindow: number;
  private readonly remoteMaxPacket: number;
  private localWindow = SERVER_WINDOW;
  private consumed = 0;
  private out: Out[] = [];
  private queued = 0;
  private needDrain = false;
  private exitMsg: Uint8Array | undefined;
  private exitSent = false;
  private eofQueued = false;
  private eofSent = false;
  private closeQueued = false;
  private closeSent = false;
  private finished = false;
  private flushing = false;
  private flushAgain = false;
  private started = false;
  private replies: Slot[] = [];
  private paused = false;
  private inbox: Uint8Array[] = [];
  /** The client sent EOF (no more stdin). */
  eofReceived = false;
  /** The client's requested command ("exec"), subsystem name, or "" for a shell, once accepted. */
  command: string | undefined;
  /** The accepted pty-req, if any. */
  pty: PtyRequest | undefined;

  private ptyCb?: (p: PtyRequest) => RequestAnswer;
  private envCb?: (name: string, value: string) => RequestAnswer;
  private shellCb?: () => RequestAnswer;
  private execCb?: (command: string) => RequestAnswer;
  private subsystemCb?: (name: string) => RequestAnswer;
  private winCb?: (cols: number, rows: number, widthPx: number, heightPx: number) => void;
  private signalCb?: (name: string) => void;
  private dataCb?: (b: Uint8Array) => void;
  private eofCb?: () => void;
  private drainCbs: Array<() => void> = [];
  private readonly closeCbs: Array<() => void> = [];

  constructor(
    private readonly host: SessionHost,
    /** The authenticated user name. */
    readonly user: string,
    readonly localId: number,
    readonly remoteId: number,
    remoteWindow: number,
    remoteMaxPacket: number,
  ) {
    this.remoteWindow = remoteWindow;
    this.remoteMaxPacket = Math.max(1, Math.min(remoteMaxPacket, SEND_MAX_PACKET));
  }

  // ---- handler API ----------------------------------------------------------------------------

  onPty(cb: (p: PtyRequest) => RequestAnswer): void {
    this.ptyCb = cb;
  }
  onEnv(cb: (name: string, value: string) => RequestAnswer): void {
    this.envCb = cb;
  }
  onShell(cb: () => RequestAnswer): void {
    this.shellCb = cb;
  }
  onExec(cb: (command: string) => RequestAnswer): void {
    this.execCb = cb;
  }
  /** Without a listener every subsystem (e.g. sftp) is refused. */
  onSubsystem(cb: (name: string) => RequestAnswer): void {
    this.subsystemCb = cb;
  }
  onWindowChange(cb: (cols: number, rows: number, widthPx: number, heightPx: number) => void): void {
    this.winCb = cb;
  }
  onSignal(cb: (name: string) => void): void {
    this.signalCb = cb;
  }
  /** stdin. Bytes that arrive before a listener is attached (or while paused) are buffered. */
  onData(cb: (bytes: Uint8Array) => void): void {
    this.dataCb = cb;
    this.pump();
  }
  /** The client sent EOF; fires after the buffered stdin is delivered. */
  onEof(cb: () => void): void {
    this.eofCb = cb;
    this.pump();
  }
  /**
   * One-shot: `cb` runs once, the next time the output queue empties after a `write` returned
   * false (at once if nothing is queued). Register again after each `false`.
   */
  onDrain(cb: () => void): void {
    if (this.queued === 0 && !this.needDrain) safe(cb);
    else this.drainCbs.push(cb);
  }
  /** The channel is gone (both CLOSEs crossed, or the connection ended). Fires once; late listeners are called at once. */
  onClose(cb: () => void): void {
    if (this.finished) safe(cb);
    else this.closeCbs.push(cb);
  }

  /** Stops delivering stdin (buffered; the window stays shut, so the client stops after one window). */
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.pump();
  }

  /** Bytes queued for the client, not yet sent. */
  get writableLength(): number {
    return this.queued;
  }
  /** Whether the channel has ended (see onClose). */
  get isClosed(): boolean {
    return this.finished;
  }

  /** Sends stdout bytes. Returns false when the caller should wait for onDrain. Dropped after exit/end/close. */
  write(bytes: Uint8Array): boolean {
    return this.queue(bytes, false);
  }
  /** Sends stderr bytes (extended data type 1). */
  writeStderr(bytes: Uint8Array): boolean {
    return this.queue(bytes, true);
  }

  /** exit-status, EOF, CLOSE (after queued output). */
  exit(status: number): void {
    this.finishWith(new SshWriter(32).byte(MSG_CHANNEL_REQUEST).uint32(this.remoteId).string('exit-status').bool(false).uint32(status >>> 0).bytes());
  }
  /** exit-signal (signal name without "SIG", e.g. "KILL"), EOF, CLOSE (after queued output). */
  exitSignal(signal: string, coreDumped = false, message = ''): void {
    this.finishWith(
      new SshWriter(64).byte(MSG_CHANNEL_REQUEST).uint32(this.remoteId).string('exit-signal').bool(false).string(signal.replace(/^SIG/, '')).bool(coreDumped).string(message).string('').bytes(),
    );
  }
  /** EOF after queued output (no more stdout/stderr); the channel stays open for exit / close. */
  end(): void {
    if (this.closeQueued || this.finished) return;
    this.eofQueued = true;
    this.flush();
  }
  /** Drops queued output and sends CLOSE now. */
  close(): void {
    if (this.finished) return;
    this.out = [];
    this.queued = 0;
    this.closeQueued = this.eofQueued = true;
    if (!this.closeSent) {
      this.closeSent = true;
      this.host.send(new SshWriter(8).byte(MSG_CHANNEL_CLOSE).uint32(this.remoteId).bytes());
    }
  }

  // ---- connection side ------------------------------------------------------------------------

  /** Handles a channel message (93–100) addressed to this channel; throws SSH_PROTOCOL on bad input. */
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
        const ext = type === MSG_CHANNEL_EXTENDED_DATA ? r.uint32() : -1;
        const data = Uint8Array.from(r.string());
        r.end();
        if (this.eofReceived) throw new SshError('SSH_PROTOCOL', 'channel data after EOF');
        if (data.length > this.localWindow) throw new SshError('SSH_PROTOCOL', `channel data (${data.length} bytes) exceeds the window (${this.localWindow})`);
        if (data.length > SERVER_MAX_PACKET) throw new SshError('SSH_PROTOCOL', `channel data of ${data.length} bytes exceeds the maximum packet size`);
        this.localWindow -= data.length;
        if (ext !== -1) {
          this.consume(data.length); // a client has no extended streams for us: consume and drop
          return;
        }
        if (this.finished || this.closeSent) return;
        this.inbox.push(data);
        this.pump();
        return;
      }
      case MSG_CHANNEL_EOF:
        this.eofReceived = true;
        this.pump();
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
      case MSG_CHANNEL_FAILURE:
        return; // we never ask for replies
      default:
        throw new SshError('SSH_PROTOCOL', `unexpected channel message ${type}`);
    }
  }

  /** Ends the session (peer CLOSE or a lost connection); fires onClose once. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.out = [];
    this.queued = 0;
    this.inbox = [];
    this.host.release(this.localId);
    for (const cb of this.closeCbs.splice(0)) safe(cb);
  }

  // ---- internals ------------------------------------------------------------------------------

  private onRequest(r: SshReader): void {
    const type = r.text();
    const wantReply = r.bool();
    let answer: RequestAnswer = false;
    switch (type) {
      case 'pty-req': {
        const p: PtyRequest = { term: r.text(), cols: r.uint32(), rows: r.uint32(), widthPx: r.uint32(), heightPx: r.uint32(), modes: Uint8Array.from(r.string()) };
        if (this.ptyCb && !this.started) {
          answer = then(call(() => this.ptyCb!(p)), (ok) => {
            if (ok) this.pty = p;
            return ok;
          });
        }
        break;
      }
      case 'env': {
        const name = r.text();
        const value = r.text();
        if (this.envCb) answer = call(() => this.envCb!(name, value));
        break;
      }
      case 'shell':
      case 'exec':
      case 'subsystem': {
        const arg = type === 'shell' ? '' : r.text();
        const cb = type === 'shell' ? this.shellCb && (() => this.shellCb!()) : type === 'exec' ? this.execCb && (() => this.execCb!(arg)) : this.subsystemCb && (() => this.subsystemCb!(arg));
        if (cb && !this.started) {
          this.started = true; // RFC 4254 §6.5: one program per channel; a second request is refused
          this.command = arg;
          answer = then(call(cb), (ok) => {
            if (!ok) {
              this.started = false;
              this.command = undefined;
            }
            return ok;
          });
        }
        break;
      }
      case 'window-change': {
        const cols = r.uint32();
        const rows = r.uint32();
        const wpx = r.uint32();
        const hpx = r.uint32();
        if (this.winCb) {
          safe(() => this.winCb!(cols, rows, wpx, hpx));
          answer = true;
        }
        break;
      }
      case 'signal': {
        const name = r.text();
        if (this.signalCb) {
          safe(() => this.signalCb!(name));
          answer = true;
        }
        break;
      }
      default:
        // x11-req, auth-agent-req@openssh.com, eow@openssh.com, keepalive@openssh.com, break, …
        answer = false;
    }
    this.reply(wantReply, answer);
  }

  private reply(wantReply: boolean, answer: RequestAnswer): void {
    if (!wantReply && typeof answer === 'boolean') return;
    const slot: Slot = { wantReply, done: false, ok: false };
    this.replies.push(slot);
    if (typeof answer === 'boolean') {
      slot.done = true;
      slot.ok = answer;
    } else {
      answer.then(
        (ok) => {
          slot.done = true;
          slot.ok = ok === true;
          this.drainReplies();
        },
        () => {
          slot.done = true;
          this.drainReplies();
        },
      );
    }
    this.drainReplies();
  }

  private drainReplies(): void {
    while (this.replies.length > 0 && this.replies[0]!.done) {
      const s = this.replies.shift()!;
      if (s.wantReply && !this.closeSent && !this.finished) {
        this.host.send(new SshWriter(8).byte(s.ok ? MSG_CHANNEL_SUCCESS : MSG_CHANNEL_FAILURE).uint32(this.remoteId).bytes());
      }
    }
    this.flush();
  }

  private queue(bytes: Uint8Array, stderr: boolean): boolean {
    if (this.eofQueued || this.closeQueued || this.finished || this.exitMsg) return false;
    if (bytes.length > 0) {
      this.out.push({ data: Uint8Array.from(bytes), stderr });
      this.queued += bytes.length;
      this.flush();
    }
    if (this.queued > HIGH_WATER) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  private finishWith(exitMsg: Uint8Array): void {
    if (this.closeQueued || this.finished || this.exitMsg) return;
    this.exitMsg = exitMsg;
    this.eofQueued = true;
    this.closeQueued = true;
    this.flush();
  }

  /** Sends what the window allows; re-entrant calls (from onDrain listeners that write or exit) loop here instead of nesting. */
  private flush(): void {
    if (this.flushing) {
      this.flushAgain = true;
      return;
    }
    this.flushing = true;
    try {
      do {
        this.flushAgain = false;
        this.flushOnce();
      } while (this.flushAgain);
    } finally {
      this.flushing = false;
    }
  }

  private flushOnce(): void {
    if (this.finished || this.closeSent || this.replies.length > 0) return;
    while (this.out.length > 0 && this.remoteWindow > 0) {
      const head = this.out[0]!;
      const n = Math.min(head.data.length, this.remoteWindow, this.remoteMaxPacket);
      const w = new SshWriter(n + 20).byte(head.stderr ? MSG_CHANNEL_EXTENDED_DATA : MSG_CHANNEL_DATA).uint32(this.remoteId);
      if (head.stderr) w.uint32(EXTENDED_DATA_STDERR);
      this.host.send(w.string(head.data.subarray(0, n)).bytes());
      this.remoteWindow -= n;
      this.queued -= n;
      if (n === head.data.length) this.out.shift();
      else head.data = head.data.subarray(n);
    }
    if (this.out.length > 0) return;
    if (this.exitMsg && !this.exitSent) {
      this.exitSent = true;
      this.host.send(this.exitMsg);
    }
    if (this.eofQueued && !this.eofSent) {
      this.eofSent = true;
      this.host.send(new SshWriter(8).byte(MSG_CHANNEL_EOF).uint32(this.remoteId).bytes());
    }
    if (this.closeQueued && !this.closeSent) {
      this.closeSent = true;
      this.host.send(new SshWriter(8).byte(MSG_CHANNEL_CLOSE).uint32(this.remoteId).bytes());
    }
    if (this.needDrain || this.drainCbs.length > 0) {
      // Listeners may write (and exit) again: their flush calls set flushAgain.
      this.needDrain = false;
      for (const cb of this.drainCbs.splice(0)) safe(cb);
    }
  }

  private pump(): void {
    while (!this.paused && this.dataCb && this.inbox.length > 0 && !this.finished) {
      const b = this.inbox.shift()!;
      this.consume(b.length);
      const cb = this.dataCb;
      safe(() => cb(b));
    }
    if (this.eofReceived && this.inbox.length === 0 && this.eofCb && !this.finished) {
      const cb = this.eofCb;
      this.eofCb = undefined; // once
      safe(cb);
    }
  }

  private consume(n: number): void {
    this.consumed += n;
    if (this.consumed >= SERVER_WINDOW / 2 && !this.finished && !this.closeSent && !this.eofReceived) {
      this.host.send(new SshWriter(16).byte(MSG_CHANNEL_WINDOW_ADJUST).uint32(this.remoteId).uint32(this.consumed).bytes());
      this.localWindow += this.consumed;
      this.consumed = 0;
    }
  }
}

function safe(f: () => void): void {
  try {
    f();
  } catch {
    /* a handler's exception must not break the connection */
  }
}

/** Runs a handler; a throw or rejection counts as a refusal. */
function call(f: () => RequestAnswer): RequestAnswer {
  try {
    const a = f();
    if (typeof a === 'boolean') return a;
    if (a && typeof (a as Promise<boolean>).then === 'function') return Promise.resolve(a).then((x) => x === true, () => false);
    return false;
  } catch {
    return false;
  }
}

function then(a: RequestAnswer, f: (ok: boolean) => boolean): RequestAnswer {
  return typeof a === 'boolean' ? f(a) : a.then(f);
}
