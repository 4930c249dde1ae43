/**
 * Pierce's SSH server: transport (server role) + user authentication (RFC 4252) + session
 * channels (RFC 4254) over any byte duplex. Browser-safe and process-free: who may log in is
 * decided by `authorize`, and what a session runs by the `onSession` handler (a PTY in gateway/).
 * Made for `pierce up --ssh`, where the identity is the tailnet peer of the TCP connection, so
 * the normal method is `none`.
 *
 *   const conn = serveSsh(duplex, {
 *     hostKey: seed,                                        // 32-byte ed25519 seed
 *     authorize: async ({ user, method }) => method === 'none' && allowed(peer, user) ? { ok: true } : { ok: false, message: 'denied by policy' },
 *     onSession: (s) => { s.onExec((cmd) => { run(cmd, s); return true; }); },
 *   });
 *   const why = await conn.closed;                          // an SshError, never a rejection
 *
 * Authentication flow (what OpenSSH sees):
 *   SERVICE_REQUEST "ssh-userauth" → SERVICE_ACCEPT (any other service: DISCONNECT 7)
 *   [USERAUTH_BANNER opts.banner, once, before the first answer]
 *   USERAUTH_REQUEST none | publickey | password | keyboard-interactive
 *     → authorize({ user, method, … }) → { ok: true }  → USERAUTH_SUCCESS
 *                                       → { ok: false, message } → USERAUTH_BANNER message (once per
 *                                         distinct text), USERAUTH_FAILURE(authMethods, false)
 *   publickey: a query (no signature) that authorize accepts gets PK_OK; a signed request must
 *     carry a valid ssh-ed25519 signature over the session id before authorize is asked.
 *   keyboard-interactive asks no questions: authorize decides at once.
 *   The failure lists `authMethods`, default ["publickey"]: OpenSSH then tries the keys it has
 *   (each asked of authorize, refused the same way) and ends with "Permission denied
 *   (publickey)", exit 255 — no password prompt, nothing to hang on in BatchMode. Failures
 *   (all but a first `none`) count toward `maxAuthAttempts` (10); then DISCONNECT 14 and
 *   SSH_AUTH_FAILED. `loginTimeoutMs` (120 s) bounds version + key exchange + authentication.
 *
 * Connection protocol: only "session" channels (direct-tcpip, forwarded-tcpip, x11,
 * auth-agent@openssh.com, direct-streamlocal: OPEN_FAILURE administratively prohibited; unknown
 * types: unknown channel type; more than `maxSessions` at once: resource shortage). Global
 * requests (keepalive@openssh.com, no-more-sessions@openssh.com, tcpip-forward, …) are refused
 * with REQUEST_FAILURE when a reply is wanted. Unknown messages get UNIMPLEMENTED.
 *
 * Any bad input closes this connection only, with a typed SshError; handler exceptions are
 * caught (a throwing authorize is a refusal, a throwing onSession closes that channel).
 */
import type { RandomSource } from '../crypto/backend.ts';
import { SshReader, SshWriter } from './codec.ts';
import {
  DISCONNECT_NO_MORE_AUTH_METHODS,
  DISCONNECT_SERVICE_NOT_AVAILABLE,
  HOSTKEY_ED25519,
  MSG_CHANNEL_FAILURE,
  MSG_CHANNEL_OPEN,
  MSG_CHANNEL_OPEN_CONFIRMATION,
  MSG_CHANNEL_OPEN_FAILURE,
  MSG_CHANNEL_WINDOW_ADJUST,
  MSG_GLOBAL_REQUEST,
  MSG_REQUEST_FAILURE,
  MSG_REQUEST_SUCCESS,
  MSG_SERVICE_ACCEPT,
  MSG_SERVICE_REQUEST,
  MSG_UNIMPLEMENTED,
  MSG_USERAUTH_BANNER,
  MSG_USERAUTH_FAILURE,
  MSG_USERAUTH_PK_OK,
  MSG_USERAUTH_REQUEST,
  MSG_USERAUTH_SUCCESS,
  OPEN_ADMINISTRATIVELY_PROHIBITED,
  OPEN_RESOURCE_SHORTAGE,
  OPEN_UNKNOWN_CHANNEL_TYPE,
} from './constants.ts';
import { publickeySignedData } from './auth.ts';
import { SshError, toSshError } from './errors.ts';
import { SshEd25519Key, keyBlobType, verifyEd25519 } from './keys.ts';
import { SERVER_MAX_PACKET, SERVER_WINDOW, ServerSession } from './server-session.ts';
import { SshTransport, type SshDuplex } from './transport.ts';

export { ServerSession, type PtyRequest, type RequestAnswer } from './server-session.ts';

export type AuthMethod = 'none' | 'publickey' | 'password' | 'keyboard-interactive';

export interface AuthRequest {
  user: string;
  method: AuthMethod;
  /** publickey: the key blob offered (for a signed request, the signature has been verified). */
  publicKey?: Uint8Array;
  /** password: what the client typed. */
  password?: string;
}

export type AuthVerdict = { ok: true } | { ok: false; message?: string };

export interface SshServerOptions {
  /** The host key: a 32-byte ed25519 seed (private); the server signs exchange hashes with it. */
  hostKey: Uint8Array;
  /** Our identification line, default `SSH-2.0-Pierce_1.0`. */
  serverVersion?: string;
  random?: RandomSource;
  /** Re-key after sending this many bytes (the client may re-key any time too); default 1 GiB. */
  rekeyAfterBytes?: number;
  /** Decides each authentication attempt (see the file header). */
  authorize(req: AuthRequest): AuthVerdict | Promise<AuthVerdict>;
  /** Called once per accepted "session" channel, before any of its requests. */
  onSession(session: ServerSession): void;
  /** Sent as USERAUTH_BANNER before the first authentication answer. */
  banner?: string;
  /** Methods listed in USERAUTH_FAILURE; default ["publickey"]. */
  authMethods?: AuthMethod[];
  /** Failed attempts before DISCONNECT (a first `none` is free); default 10. */
  maxAuthAttempts?: number;
  /** Session channels open at once; default 10 (OpenSSH's MaxSessions). */
  maxSessions?: number;
  /** Bound on version exchange + key exchange + authentication; default 120 s (sshd's LoginGraceTime). */
  loginTimeoutMs?: number;
}

const MAX_QUEUED_AUTH = 64;
const PROHIBITED_CHANNELS = new Set(['direct-tcpip', 'forwarded-tcpip', 'x11', 'auth-agent@openssh.com', 'direct-streamlocal@openssh.com', 'forwarded-streamlocal@openssh.com']);

/** Serves one SSH connection on `duplex`. Never throws; every failure ends up in `closed`. */
export function serveSsh(duplex: SshDuplex, opts: SshServerOptions): SshServerConnection {
  return new SshServerConnection(duplex, opts);
}

export class SshServerConnection {
  readonly transport: SshTransport;
  /** The authenticated user name; undefined until USERAUTH_SUCCESS. */
  user: string | undefined;
  /** The method that succeeded. */
  method: AuthMethod | undefined;
  /** Resolves (never rejects) with the reason once the connection is closed. */
  readonly closed: Promise<SshError>;
  private readonly sessions = new Map<number, ServerSession>();
  private nextId = 0;
  private serviceAccepted = false;
  private bannerSent = false;
  private lastMessage: string | undefined;
  private failures = 0;
  private attempts = 0;
  private authQueue: Uint8Array[] = [];
  private authBusy = false;
  private readonly loginTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    duplex: SshDuplex,
    private readonly opts: SshServerOptions,
  ) {
    let hostKey: SshEd25519Key | undefined;
    let early: SshError | undefined;
    try {
      hostKey = SshEd25519Key.fromSeed(opts.hostKey);
    } catch (e) {
      early = new SshError('SSH_KEX', 'hostKey must be a 32-byte ed25519 seed', { cause: e });
      hostKey = SshEd25519Key.fromSeed(new Uint8Array(32)); // never used for a handshake: we fail at once
    }
    this.transport = new SshTransport(duplex, {
      role: 'server',
      hostKey,
      serverVersion: opts.serverVersion,
      random: opts.random,
      rekeyAfterBytes: opts.rekeyAfterBytes,
    });
    this.closed = new Promise((res) => this.transport.onClose(res));
    this.transport.onMessage = (p) => this.onMessage(p);
    const ms = opts.loginTimeoutMs ?? 120_000;
    this.loginTimer = setTimeout(() => this.transport.fail(new SshError('SSH_TIMEOUT', `no successful login in ${ms} ms`)), ms);
    this.transport.onClose(() => {
      clearTimeout(this.loginTimer);
      this.authQueue = [];
      for (const s of [...this.sessions.values()]) s.finish();
    });
    if (early) this.transport.fail(early);
  }

  /** The client's identification line, once received. */
  get clientVersion(): string | undefined {
    return this.transport.clientVersion;
  }
  /** Set once closed: why. */
  get closedWith(): SshError | undefined {
    return this.transport.closedWith;
  }
  /** Session channels currently open. */
  get sessionCount(): number {
    return this.sessions.size;
  }
  onClose(cb: (err: SshError) => void): void {
    this.transport.onClose(cb);
  }
  /** Closes the connection (DISCONNECT by application); sessions get onClose. */
  close(description = 'closed by the server'): void {
    this.transport.close(description);
  }

  private send(p: Uint8Array): void {
    if (!this.transport.closedWith) this.transport.send(p);
  }

  private onMessage(p: Uint8Array): void {
    const type = p[0]!;
    if (type === MSG_SERVICE_REQUEST) {
      const r = new SshReader(p, 'SERVICE_REQUEST');
      r.byte();
      const name = r.text();
      if (this.serviceAccepted) throw new SshError('SSH_PROTOCOL', 'second SERVICE_REQUEST');
      if (name !== 'ssh-userauth') {
        this.transport.fail(new SshError('SSH_PROTOCOL', `service ${JSON.stringify(name.slice(0, 64))} not available`), true, DISCONNECT_SERVICE_NOT_AVAILABLE);
        return;
      }
      this.serviceAccepted = true;
      this.send(new SshWriter(32).byte(MSG_SERVICE_ACCEPT).string(name).bytes());
      return;
    }
    if (type === MSG_USERAUTH_REQUEST) {
      if (!this.serviceAccepted) throw new SshError('SSH_PROTOCOL', 'USERAUTH_REQUEST before SERVICE_ACCEPT');
      if (this.user !== undefined) return; // RFC 4252 §5.1: ignored after success
      if (this.authQueue.length >= MAX_QUEUED_AUTH) throw new SshError('SSH_PROTOCOL', 'too many queued authentication requests');
      this.authQueue.push(p);
      this.runAuthQueue();
      return;
    }
    if (type >= 50 && type <= 79) throw new SshError('SSH_PROTOCOL', `unexpected authentication message ${type}`);
    if (type >= 80 && type <= 127 && this.user === undefined) throw new SshError('SSH_PROTOCOL', `connection message ${type} before authentication`);
    const r = new SshReader(p, `message ${type}`);
    r.byte();
    switch (type) {
      case MSG_GLOBAL_REQUEST: {
        r.text();
        if (r.bool()) this.send(Uint8Array.of(MSG_REQUEST_FAILURE));
        return;
      }
      case MSG_REQUEST_SUCCESS:
      case MSG_REQUEST_FAILURE:
        return; // we send no global requests
      case MSG_CHANNEL_OPEN:
        return this.onChannelOpen(r);
    }
    if (type >= MSG_CHANNEL_OPEN_CONFIRMATION && type <= MSG_CHANNEL_FAILURE) {
      const id = r.uint32();
      const s = this.sessions.get(id);
      if (!s) throw new SshError('SSH_PROTOCOL', `message ${type} for unknown channel ${id}`);
      if (type < MSG_CHANNEL_WINDOW_ADJUST) throw new SshError('SSH_PROTOCOL', `open reply ${type} from the client for channel ${id}`);
      s.handle(p);
      return;
    }
    // RFC 4253 §11.4: unknown message → UNIMPLEMENTED with its sequence number.
    this.send(new SshWriter(8).byte(MSG_UNIMPLEMENTED).uint32(this.transport.currentSeq).bytes());
  }

  private onChannelOpen(r: SshReader): void {
    const kind = r.text();
    const sender = r.uint32();
    const window = r.uint32();
    const maxPacket = r.uint32();
    const refuse = (code: number, why: string): void =>
      this.send(new SshWriter(64).byte(MSG_CHANNEL_OPEN_FAILURE).uint32(sender).uint32(code).string(why).string('').bytes());
    if (kind !== 'session') {
      if (PROHIBITED_CHANNELS.has(kind)) refuse(OPEN_ADMINISTRATIVELY_PROHIBITED, `${kind} channels are not allowed`);
      else refuse(OPEN_UNKNOWN_CHANNEL_TYPE, 'unknown channel type');
      return;
    }
    if (this.sessions.size >= (this.opts.maxSessions ?? 10)) {
      refuse(OPEN_RESOURCE_SHORTAGE, 'too many sessions');
      return;
    }
    while (this.sessions.has(this.nextId)) this.nextId = (this.nextId + 1) >>> 0;
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0;
    const s = new ServerSession(
      { send: (p) => this.send(p), release: (localId) => this.sessions.delete(localId) },
      this.user!,
      id,
      sender,
      window,
      maxPacket,
    );
    this.sessions.set(id, s);
    this.send(new SshWriter(32).byte(MSG_CHANNEL_OPEN_CONFIRMATION).uint32(sender).uint32(id).uint32(SERVER_WINDOW).uint32(SERVER_MAX_PACKET).bytes());
    try {
      this.opts.onSession(s);
    } catch {
      s.close();
    }
  }

  // ---- authentication -------------------------------------------------------------------------

  private runAuthQueue(): void {
    if (this.authBusy) return;
    const p = this.authQueue.shift();
    if (!p) return;
    this.authBusy = true;
    this.authenticate(p)
      .catch((e: unknown) => this.transport.fail(toSshError(e)))
      .finally(() => {
        this.authBusy = false;
        if (!this.transport.closedWith && this.user === undefined) this.runAuthQueue();
      });
  }

  private async authenticate(p: Uint8Array): Promise<void> {
    const r = new SshReader(p, 'USERAUTH_REQUEST');
    r.byte();
    const user = r.text();
    const service = r.text();
    const method = r.text();
    if (service !== 'ssh-connection') {
      this.transport.fail(new SshError('SSH_PROTOCOL', `service ${JSON.stringify(service.slice(0, 64))} not available`), true, DISCONNECT_SERVICE_NOT_AVAILABLE);
      return;
    }
    this.attempts++;
    let verdict: AuthVerdict = { ok: false };
    let query: { alg: string; blob: Uint8Array } | undefined;
    switch (method) {
      case 'none':
        verdict = await this.ask({ user, method });
        break;
      case 'publickey': {
        const hasSig = r.bool();
        const alg = r.text();
        const blob = Uint8Array.from(r.string());
        if (!hasSig) {
          r.end();
          if (alg === HOSTKEY_ED25519 && safeType(blob) === alg) {
            verdict = await this.ask({ user, method, publicKey: blob });
            if (verdict.ok) query = { alg, blob };
          }
          break;
        }
        const sig = r.string();
        r.end();
        const sid = this.transport.sessionId!;
        const signed = publickeySignedData(sid, user, service, alg, blob);
        let good = false;
        try {
          good = alg === HOSTKEY_ED25519 && verifyEd25519(blob, sig, signed);
        } catch {
          good = false; // not an ed25519 key / malformed signature: a failed attempt, not a protocol error
        }
        if (good) verdict = await this.ask({ user, method, publicKey: blob });
        break;
      }
      case 'password': {
        r.bool(); // change request: not supported, treated like a plain attempt
        const password = r.text();
        verdict = await this.ask({ user, method, password });
        break;
      }
      case 'keyboard-interactive':
        verdict = await this.ask({ user, method });
        break;
      default:
        break; // hostbased, gssapi-*, …: not offered
    }
    if (this.transport.closedWith) return;
    this.sendBanner();
    if (query) {
      // RFC 4252 §7: the key would be accepted; the client now signs. Not a failure.
      this.send(new SshWriter(128).byte(MSG_USERAUTH_PK_OK).string(query.alg).string(query.blob).bytes());
      return;
    }
    if (verdict.ok) {
      this.user = user;
      this.method = method as AuthMethod;
      this.authQueue = [];
      clearTimeout(this.loginTimer);
      this.send(Uint8Array.of(MSG_USERAUTH_SUCCESS));
      return;
    }
    const message = verdict.message;
    if (message && message !== this.lastMessage) {
      this.lastMessage = message;
      this.send(new SshWriter(message.length + 16).byte(MSG_USERAUTH_BANNER).string(message.endsWith('\n') ? message : `${message}\r\n`).string('').bytes());
    }
    this.send(new SshWriter(64).byte(MSG_USERAUTH_FAILURE).nameList(this.opts.authMethods ?? ['publickey']).bool(false).bytes());
    if (!(method === 'none' && this.attempts === 1)) this.failures++;
    if (this.failures >= (this.opts.maxAuthAttempts ?? 10)) {
      this.transport.fail(new SshError('SSH_AUTH_FAILED', `too many authentication failures for ${JSON.stringify(user.slice(0, 64))}`), true, DISCONNECT_NO_MORE_AUTH_METHODS);
    }
  }

  /** authorize, with a throw or rejection counted as a refusal. */
  private async ask(req: AuthRequest): Promise<AuthVerdict> {
    try {
      const v = await this.opts.authorize(req);
      return v && v.ok === true ? { ok: true } : { ok: false, message: typeof v?.message === 'string' ? v.message : undefined };
    } catch {
      return { ok: false };
    }
  }

  private sendBanner(): void {
    if (this.bannerSent) return;
    this.bannerSent = true;
    const b = this.opts.banner;
    if (b) this.send(new SshWriter(b.length + 16).byte(MSG_USERAUTH_BANNER).string(b).string('').bytes());
  }
}

function safeType(blob: Uint8Array): string | undefined {
  try {
    return keyBlobType(blob);
  } catch {
    return undefined;
  }
}
