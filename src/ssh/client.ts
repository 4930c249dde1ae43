/**
 * The SSH client: transport + user authentication + connection protocol (RFC 4254) over a byte
 * duplex. Browser-safe: no Node APIs; time only through setTimeout for bounded waits.
 *
 *   const ssh = await SshClient.connect(duplex, { username, verifyHostKey, privateKey });
 *   const { stdout, stderr, exitStatus } = await ssh.run('uname -a');
 *   const sh = await ssh.shell({ cols: 80, rows: 24 });
 */
import { SshReader, SshWriter } from './codec.ts';
import { concatBytes } from '../crypto/bytes.ts';
import { authenticate, type AuthOptions } from './auth.ts';
import { LOCAL_MAX_PACKET, LOCAL_WINDOW, SshChannel, type ExitInfo, type PtyOptions } from './channel.ts';
import {
  MSG_CHANNEL_OPEN,
  MSG_CHANNEL_OPEN_CONFIRMATION,
  MSG_CHANNEL_OPEN_FAILURE,
  MSG_GLOBAL_REQUEST,
  MSG_REQUEST_FAILURE,
  MSG_REQUEST_SUCCESS,
  MSG_UNIMPLEMENTED,
  MSG_USERAUTH_BANNER,
  OPEN_ADMINISTRATIVELY_PROHIBITED,
  MSG_CHANNEL_FAILURE,
} from './constants.ts';
import { SshError, toSshError } from './errors.ts';
import { SshTransport, type SshDuplex, type TransportOptions } from './transport.ts';

export interface ConnectOptions extends AuthOptions, TransportOptions {
  /** Bound on version exchange + key exchange + authentication; default 30 s. */
  timeoutMs?: number;
  /** Bound on channel opens and channel requests; default 30 s. */
  requestTimeoutMs?: number;
}

export interface RunResult extends ExitInfo {
  stdout: Uint8Array;
  stderr: Uint8Array;
}

const MAX_CHANNELS = 1024;

export class SshClient {
  private readonly channels = new Map<number, SshChannel>();
  private readonly opening = new Map<number, { resolve: () => void; reject: (e: SshError) => void }>();
  private nextId = 0;
  private authInbox: Uint8Array[] = [];
  private authWaiter: { resolve: (p: Uint8Array) => void; reject: (e: SshError) => void } | undefined;
  private authenticated = false;
  /** The authentication method that succeeded. */
  method = '';
  readonly requestTimeoutMs: number;

  private constructor(
    readonly transport: SshTransport,
    opts: ConnectOptions,
  ) {
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000;
    transport.onMessage = (p) => this.onMessage(p);
    transport.onClose((err) => {
      this.authWaiter?.reject(err);
      this.authWaiter = undefined;
      for (const o of this.opening.values()) o.reject(err);
      this.opening.clear();
      for (const ch of [...this.channels.values()]) ch.finish(err);
    });
  }

  /** Connects, verifies the host key, authenticates. Rejects with an SshError; the duplex is closed then. */
  static async connect(duplex: SshDuplex, opts: ConnectOptions): Promise<SshClient> {
    const transport = new SshTransport(duplex, opts);
    const client = new SshClient(transport, opts);
    const ms = opts.timeoutMs ?? 30_000;
    const timer = setTimeout(() => transport.fail(new SshError('SSH_TIMEOUT', `handshake and authentication took longer than ${ms} ms`)), ms);
    try {
      await transport.ready;
      client.method = await authenticate(
        {
          send: (p) => transport.send(p),
          next: () => client.nextAuth(),
          sessionId: transport.sessionId!,
        },
        opts,
      );
      client.authenticated = true;
      return client;
    } catch (e) {
      const err = transport.closedWith ?? toSshError(e);
      transport.fail(err);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The server's host key blob (accepted by verifyHostKey). */
  get hostKey(): Uint8Array {
    return this.transport.hostKey!;
  }
  get serverVersion(): string {
    return this.transport.serverVersion ?? '';
  }
  /** Set once the connection is closed; why. */
  get closedWith(): SshError | undefined {
    return this.transport.closedWith;
  }
  onClose(cb: (err: SshError) => void): void {
    this.transport.onClose(cb);
  }
  close(): void {
    this.transport.close();
  }

  private nextAuth(): Promise<Uint8Array> {
    if (this.transport.closedWith) return Promise.reject(this.transport.closedWith);
    const p = this.authInbox.shift();
    if (p) return Promise.resolve(p);
    return new Promise((resolve, reject) => (this.authWaiter = { resolve, reject }));
  }

  private onMessage(p: Uint8Array): void {
    const type = p[0]!;
    if (type >= 5 && type <= 79) {
      if (this.authenticated) {
        if (type === MSG_USERAUTH_BANNER) return;
        throw new SshError('SSH_PROTOCOL', `authentication message ${type} after authentication`);
      }
      const w = this.authWaiter;
      if (w) {
        this.authWaiter = undefined;
        w.resolve(p);
      } else {
        if (this.authInbox.length > 64) throw new SshError('SSH_PROTOCOL', 'too many unanswered authentication messages');
        this.authInbox.push(p);
      }
      return;
    }
    if (!this.authenticated) throw new SshError('SSH_PROTOCOL', `connection message ${type} before authentication`);
    const r = new SshReader(p, `message ${type}`);
    r.byte();
    switch (type) {
      case MSG_GLOBAL_REQUEST: {
        r.text();
        if (r.bool()) this.transport.send(Uint8Array.of(MSG_REQUEST_FAILURE));
        return;
      }
      case MSG_REQUEST_SUCCESS:
      case MSG_REQUEST_FAILURE:
        return; // we send no global requests
      case MSG_CHANNEL_OPEN: {
        r.text();
        const sender = r.uint32();
        this.transport.send(
          new SshWriter(64).byte(MSG_CHANNEL_OPEN_FAILURE).uint32(sender).uint32(OPEN_ADMINISTRATIVELY_PROHIBITED).string('not accepted by this client').string('').bytes(),
        );
        return;
      }
    }
    if (type >= MSG_CHANNEL_OPEN_CONFIRMATION && type <= MSG_CHANNEL_FAILURE) {
      const id = r.uint32();
      const ch = this.channels.get(id);
      if (!ch) throw new SshError('SSH_PROTOCOL', `message ${type} for unknown channel ${id}`);
      const opening = this.opening.get(id);
      if (type === MSG_CHANNEL_OPEN_CONFIRMATION || type === MSG_CHANNEL_OPEN_FAILURE) {
        if (!opening) throw new SshError('SSH_PROTOCOL', `open reply for channel ${id}, which is not opening`);
        this.opening.delete(id);
        if (type === MSG_CHANNEL_OPEN_CONFIRMATION) {
          const remote = r.uint32();
          const window = r.uint32();
          const maxPacket = r.uint32();
          ch.confirm(remote, window, maxPacket);
          opening.resolve();
        } else {
          const code = r.uint32();
          const desc = r.text();
          const err = new SshError('SSH_CHANNEL', `channel open refused (${code}): ${desc}`);
          ch.finish(err);
          opening.reject(err);
        }
        return;
      }
      if (opening) throw new SshError('SSH_PROTOCOL', `message ${type} for channel ${id} before its open was confirmed`);
      ch.handle(p);
      return;
    }
    // RFC 4253 §11.4: unknown message → UNIMPLEMENTED with its sequence number.
    this.transport.send(new SshWriter(8).byte(MSG_UNIMPLEMENTED).uint32(this.transport.currentSeq).bytes());
  }

  /** Opens a "session" channel. */
  openSession(): Promise<SshChannel> {
    if (this.transport.closedWith) return Promise.reject(this.transport.closedWith);
    if (this.channels.size >= MAX_CHANNELS) return Promise.reject(new SshError('SSH_CHANNEL', 'too many channels'));
    while (this.channels.has(this.nextId)) this.nextId = (this.nextId + 1) >>> 0;
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0;
    const ch = new SshChannel(
      {
        send: (p) => {
          if (!this.transport.closedWith) this.transport.send(p);
        },
        release: (localId) => this.channels.delete(localId),
        requestTimeoutMs: this.requestTimeoutMs,
      },
      id,
    );
    this.channels.set(id, ch);
    return new Promise<SshChannel>((resolve, reject) => {
      let timedOut = false;
      const timer = setTimeout(() => {
        // The channel id stays reserved: a late confirmation must still find it (and closes it).
        timedOut = true;
        reject(new SshError('SSH_TIMEOUT', `channel open: no reply in ${this.requestTimeoutMs} ms`));
      }, this.requestTimeoutMs);
      this.opening.set(id, {
        resolve: () => {
          clearTimeout(timer);
          if (timedOut) ch.close();
          else resolve(ch);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.transport.send(new SshWriter(32).byte(MSG_CHANNEL_OPEN).string('session').uint32(id).uint32(LOCAL_WINDOW).uint32(LOCAL_MAX_PACKET).bytes());
    });
  }

  /** A session running `command` (optionally with a PTY). */
  async exec(command: string, o: { pty?: PtyOptions; env?: Record<string, string> } = {}): Promise<SshChannel> {
    const ch = await this.openSession();
    try {
      await this.setup(ch, o);
      await ch.exec(command);
    } catch (e) {
      ch.close();
      throw e;
    }
    return ch;
  }

  /** An interactive shell with a PTY (pass `pty: false` for none). */
  async shell(pty: PtyOptions | false = {}, env?: Record<string, string>): Promise<SshChannel> {
    const ch = await this.openSession();
    try {
      await this.setup(ch, { pty: pty === false ? undefined : pty, env });
      await ch.shell();
    } catch (e) {
      ch.close();
      throw e;
    }
    return ch;
  }

  private async setup(ch: SshChannel, o: { pty?: PtyOptions; env?: Record<string, string> }): Promise<void> {
    for (const [k, v] of Object.entries(o.env ?? {})) {
      // sshd refuses variables not in AcceptEnv; that is not fatal.
      await ch.env(k, v).catch((e: unknown) => {
        if (!(e instanceof SshError) || e.code !== 'SSH_CHANNEL') throw e;
      });
    }
    if (o.pty) await ch.requestPty(o.pty);
  }

  /** Runs a command to completion, collecting stdout and stderr (bounded by `maxBytes`, default 64 MiB). */
  async run(command: string, o: { stdin?: Uint8Array | string; maxBytes?: number } = {}): Promise<RunResult> {
    const ch = await this.exec(command);
    const out: Uint8Array[] = [];
    const err: Uint8Array[] = [];
    let total = 0;
    const max = o.maxBytes ?? 64 * 1024 * 1024;
    const take = (into: Uint8Array[]) => (b: Uint8Array) => {
      total += b.length;
      if (total > max) ch.close();
      else into.push(b);
    };
    ch.onData(take(out));
    ch.onStderr(take(err));
    if (o.stdin !== undefined) ch.write(o.stdin);
    ch.end();
    const exit = await ch.closed;
    if (exit.error) throw exit.error;
    return { ...exit, stdout: concatBytes(...out), stderr: concatBytes(...err) };
  }
}
