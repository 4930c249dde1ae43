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
import { ChannelCore, LOCAL_MAX_PACKET, LOCAL_WINDOW, safe, type ChannelCoreHost } from './channel-core.ts';
import { SshReader, SshWriter } from './codec.ts';
import { MSG_CHANNEL_FAILURE, MSG_CHANNEL_REQUEST, MSG_CHANNEL_SUCCESS } from './constants.ts';

/** Our receive window and largest data packet we accept (OpenSSH's session defaults). */
export const SERVER_WINDOW = LOCAL_WINDOW;
export const SERVER_MAX_PACKET = LOCAL_MAX_PACKET;
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

/** What a session needs from its connection (`send` is a no-op once the connection is closed). */
export type SessionHost = ChannelCoreHost;

type Slot = { wantReply: boolean; done: boolean; ok: boolean };

export class ServerSession extends ChannelCore {
  // From ChannelCore: eofReceived (the client sent EOF: no more stdin), remoteId, localId, handle().
  private needDrain = false;
  private exitMsg: Uint8Array | undefined;
  private exitSent = false;
  private flushing = false;
  private flushAgain = false;
  private started = false;
  private replies: Slot[] = [];
  private inbox: Uint8Array[] = [];
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
    host: SessionHost,
    /** The authenticated user name. */
    readonly user: string,
    localId: number,
    remoteId: number,
    remoteWindow: number,
    remoteMaxPacket: number,
  ) {
    super(host, localId);
    this.setRemote(remoteId, remoteWindow, remoteMaxPacket, SEND_MAX_PACKET);
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

  // pause() / resume() (ChannelCore): stdin is buffered; the window stays shut, so the client stops after one window.

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
    this.dropQueued();
    this.closeQueued = this.eofQueued = true;
    this.sendClose();
  }

  // ---- connection side ------------------------------------------------------------------------

  // handle(p) (ChannelCore): a channel message (93–100) addressed to this channel.

  /** Ends the session (peer CLOSE or a lost connection); fires onClose once. */
  override finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.dropQueued();
    this.inbox = [];
    this.host.release(this.localId);
    for (const cb of this.closeCbs.splice(0)) safe(cb);
  }

  // ---- internals ------------------------------------------------------------------------------

  protected override onPeerData(data: Uint8Array, ext: number): void {
    if (ext !== -1) {
      this.consume(data.length); // a client has no extended streams for us: consume and drop
      return;
    }
    if (this.finished || this.closeSent) return;
    this.inbox.push(data);
    this.pump();
  }

  protected override onPeerEof(): void {
    this.pump();
  }

  protected override onReply(): void {
    // we never ask for replies
  }

  /** No WINDOW_ADJUST after the client's EOF either: it sends no more stdin. */
  protected override windowWanted(): boolean {
    return super.windowWanted() && !this.eofReceived;
  }

  protected override onRequest(r: SshReader): void {
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
      this.enqueue(Uint8Array.from(bytes), stderr);
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
  protected override flush(): void {
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
    if (this.replies.length > 0 || !this.sendQueued()) return;
    if (this.exitMsg && !this.exitSent) {
      this.exitSent = true;
      this.host.send(this.exitMsg);
    }
    this.sendQueuedEnds();
    if (this.needDrain || this.drainCbs.length > 0) {
      // Listeners may write (and exit) again: their flush calls set flushAgain.
      this.needDrain = false;
      for (const cb of this.drainCbs.splice(0)) safe(cb);
    }
  }

  protected override pump(): void {
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
