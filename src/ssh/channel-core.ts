/**
 * What both ends of a session channel share (RFC 4254 §5): the client's SshChannel (channel.ts)
 * and the server's ServerSession (server-session.ts) extend ChannelCore.
 *
 * - Inbound: `handle` parses the channel messages (93–100), applies WINDOW_ADJUST, checks DATA /
 *   EXTENDED_DATA against our window and maximum packet, notes EOF and answers CLOSE; the rest
 *   goes to the subclass (onPeerData, onPeerEof, onRequest, onReply, finish).
 * - Our receive window: `consume` re-opens it (WINDOW_ADJUST) once half of it has been taken.
 * - Outbound: `enqueue` queues data; `flush` sends it as the peer's window and maximum packet
 *   allow, then the queued EOF and CLOSE, each at most once.
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

/** Our receive window and largest data packet we accept (OpenSSH's session defaults: 2 MiB / 32 KiB). */
export const LOCAL_WINDOW = 2 * 1024 * 1024;
export const LOCAL_MAX_PACKET = 32 * 1024;

/** What a channel needs from its connection. */
export interface ChannelCoreHost {
  send(payload: Uint8Array): void;
  release(localId: number): void;
}

type Out = { data: Uint8Array; stderr: boolean };

export abstract class ChannelCore {
  /** The peer sent EOF. */
  eofReceived = false;
  private remote = 0;
  private remoteWindow = 0;
  private remoteMaxPacket = 0;
  private localWindow = LOCAL_WINDOW;
  private consumed = 0;
  private out: Out[] = [];
  /** Bytes queued for the peer, not yet sent. */
  protected queued = 0;
  protected eofQueued = false;
  protected closeQueued = false;
  protected eofSent = false;
  protected closeSent = false;
  protected finished = false;
  protected paused = false;

  protected constructor(
    protected readonly host: ChannelCoreHost,
    readonly localId: number,
  ) {}

  /** The peer's channel number. */
  get remoteId(): number {
    return this.remote;
  }

  /** Stops delivering incoming data: it is buffered and our window is not re-opened, so the peer stops after one window. */
  pause(): void {
    this.paused = true;
  }

  /** Delivers what was buffered while paused, and re-opens the window as it is taken. */
  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.pump();
  }

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
        this.checkDataAllowed();
        if (data.length > this.localWindow) throw new SshError('SSH_PROTOCOL', `channel data (${data.length} bytes) exceeds the window (${this.localWindow})`);
        if (data.length > LOCAL_MAX_PACKET) throw new SshError('SSH_PROTOCOL', `channel data of ${data.length} bytes exceeds the maximum packet size`);
        this.localWindow -= data.length;
        this.onPeerData(data, ext);
        return;
      }
      case MSG_CHANNEL_EOF:
        this.eofReceived = true;
        this.onPeerEof();
        return;
      case MSG_CHANNEL_CLOSE:
        this.sendClose();
        this.finish();
        return;
      case MSG_CHANNEL_REQUEST:
        return this.onRequest(r);
      case MSG_CHANNEL_SUCCESS:
      case MSG_CHANNEL_FAILURE:
        return this.onReply(type === MSG_CHANNEL_SUCCESS);
      default:
        throw new SshError('SSH_PROTOCOL', `unexpected channel message ${type}`);
    }
  }

  /** Ends the channel (the peer's CLOSE, or the connection's end); releases the channel number. */
  abstract finish(): void;

  // ---- for the subclasses ---------------------------------------------------------------------

  /** DATA (ext -1) or EXTENDED_DATA (ext = its data type code), already counted against our window. */
  protected abstract onPeerData(data: Uint8Array, ext: number): void;
  /** The peer's EOF (eofReceived is already set). */
  protected abstract onPeerEof(): void;
  /** A CHANNEL_REQUEST; `r` is at the request type. */
  protected abstract onRequest(r: SshReader): void;
  /** CHANNEL_SUCCESS (true) or CHANNEL_FAILURE (false). */
  protected abstract onReply(ok: boolean): void;
  /** Delivers buffered incoming data (on resume). */
  protected abstract pump(): void;

  /** Throws SSH_PROTOCOL when the peer may send no more data: after its EOF. */
  protected checkDataAllowed(): void {
    if (this.eofReceived) throw new SshError('SSH_PROTOCOL', 'channel data after EOF');
  }

  /** Whether taken bytes may re-open our window (not once the channel is closing). */
  protected windowWanted(): boolean {
    return !this.finished && !this.closeSent;
  }

  /** The peer's side of the channel, from its OPEN or OPEN_CONFIRMATION; we send packets of at most `sendMaxPacket`. */
  protected setRemote(remoteId: number, window: number, maxPacket: number, sendMaxPacket: number): void {
    this.remote = remoteId;
    this.remoteWindow = window;
    this.remoteMaxPacket = Math.max(1, Math.min(maxPacket, sendMaxPacket));
  }

  /** Counts `n` incoming bytes as taken; sends WINDOW_ADJUST once half the window is. */
  protected consume(n: number): void {
    this.consumed += n;
    if (this.consumed >= LOCAL_WINDOW / 2 && this.windowWanted()) {
      this.host.send(new SshWriter(16).byte(MSG_CHANNEL_WINDOW_ADJUST).uint32(this.remote).uint32(this.consumed).bytes());
      this.localWindow += this.consumed;
      this.consumed = 0;
    }
  }

  /** Queues data for the peer (stderr: extended data type 1); the caller flushes. */
  protected enqueue(data: Uint8Array, stderr: boolean): void {
    this.out.push({ data, stderr });
    this.queued += data.length;
  }

  protected dropQueued(): void {
    this.out = [];
    this.queued = 0;
  }

  /** Sends the queued data the peer's window allows, then the queued EOF and CLOSE. */
  protected flush(): void {
    if (this.sendQueued()) this.sendQueuedEnds();
  }

  /** Sends queued data as the peer's window and maximum packet allow; true when all of it is out (and the channel is still open). */
  protected sendQueued(): boolean {
    if (this.finished || this.closeSent) return false;
    while (this.out.length > 0 && this.remoteWindow > 0) {
      const head = this.out[0]!;
      const n = Math.min(head.data.length, this.remoteWindow, this.remoteMaxPacket);
      const w = new SshWriter(n + 20).byte(head.stderr ? MSG_CHANNEL_EXTENDED_DATA : MSG_CHANNEL_DATA).uint32(this.remote);
      if (head.stderr) w.uint32(EXTENDED_DATA_STDERR);
      this.host.send(w.string(head.data.subarray(0, n)).bytes());
      this.remoteWindow -= n;
      this.queued -= n;
      if (n === head.data.length) this.out.shift();
      else head.data = head.data.subarray(n);
    }
    return this.out.length === 0;
  }

  /** Sends EOF and CLOSE if they are queued and not yet sent. */
  protected sendQueuedEnds(): void {
    if (this.eofQueued && !this.eofSent) {
      this.eofSent = true;
      this.host.send(new SshWriter(8).byte(MSG_CHANNEL_EOF).uint32(this.remote).bytes());
    }
    if (this.closeQueued) this.sendClose();
  }

  /** Sends CLOSE now, once. */
  protected sendClose(): void {
    if (this.closeSent) return;
    this.closeSent = true;
    this.host.send(new SshWriter(8).byte(MSG_CHANNEL_CLOSE).uint32(this.remote).bytes());
  }
}

/** Runs a listener; its exception must not break the connection. */
export function safe(f: () => void): void {
  try {
    f();
  } catch {
    /* a listener's exception must not break the connection */
  }
}
