/**
 * One SSH terminal session in the worker: a TCP connection from the engine's netstack to
 * host:port, the SSH client over it (host key trust on first use, password / publickey /
 * keyboard-interactive), a PTY shell, and the page's MessagePort for the terminal.
 *
 *   page ──{data|ack|resize|kbd|close}──▶ port ──▶ SshChannel.write / resize / …
 *   page ◀──{state|hostkey|kbd|data|exit|error}── port ◀── batched channel output
 *
 * Output flow control: output is gathered per task and sent as one transferred ArrayBuffer;
 * the page acknowledges bytes once xterm has parsed them. With more than OUT_HIGH bytes
 * unacknowledged the channel is paused: its SSH window stays shut and sshd stops sending, so a
 * `cat /dev/zero` cannot flood the tab's memory. Below OUT_LOW it resumes.
 */
import type { Engine } from '../src/engine/engine.ts';
import { parseIP } from '../src/netstack/addr.ts';
import type { TcpConnection } from '../src/netstack/tcp/connection.ts';
import { SshClient } from '../src/ssh/client.ts';
import type { SshChannel } from '../src/ssh/channel.ts';
import type { SshEd25519Key } from '../src/ssh/keys.ts';
import { knownHostsName, type KnownHosts } from '../src/ssh/known-hosts.ts';
import type { ConnectOptions } from '../src/ssh/client.ts';
import type { ApiError, HostKeyNotice, Result, SshConnectOptions, SshPageMessage, SshPortMessage } from './api.ts';
import { apiError, socketError, sshError, WorkerError } from './errors.ts';
import { tcpDuplex } from './tcp-duplex.ts';

/** TCP connect bound (SYN retries alone would take over a minute). */
export const CONNECT_TIMEOUT_MS = 15_000;
/** Handshake + authentication bound (keyboard-interactive waits for a person: longer). */
export const SSH_HANDSHAKE_TIMEOUT_MS = 30_000;
export const SSH_INTERACTIVE_TIMEOUT_MS = 300_000;
/** Unacknowledged output above which the channel pauses, and below which it resumes. */
export const OUT_HIGH = 4 << 20;
export const OUT_LOW = 1 << 20;
/** Output is posted at once when this much is gathered, else at the end of the task. */
export const OUT_BATCH = 256 << 10;

export interface SessionDeps {
  engine: Engine;
  knownHosts: KnownHosts;
  sshKey: SshEd25519Key;
}

/** Opens a TCP connection through the mesh, with a bound and typed errors. */
export function tcpOpen(engine: Engine, host: string, ip: string, port: number, timeoutMs = CONNECT_TIMEOUT_MS): Promise<TcpConnection> {
  return new Promise((resolve, reject) => {
    let c: TcpConnection;
    try {
      c = engine.stack!.connect({ address: parseIP(ip), port });
    } catch (e) {
      reject(new WorkerError(socketError(e, host, port)));
      return;
    }
    const timer = setTimeout(() => {
      c.abort();
      engine.reschedule();
      reject(new WorkerError(apiError('CONNECT_TIMEOUT', `no answer from ${host} port ${port} within ${Math.round(timeoutMs / 1000)} s (the host may be offline, or packets are dropped)`)));
    }, timeoutMs);
    c.once('connect', () => {
      clearTimeout(timer);
      resolve(c);
    });
    c.once('error', (e) => {
      clearTimeout(timer);
      reject(new WorkerError(socketError(e, host, port)));
    });
    engine.reschedule();
  });
}

/** The peer's first IPv4 tailnet address (else its first address). */
export function peerAddress(addrs: string[]): string | undefined {
  const bare = addrs.map((a) => a.split('/')[0]!);
  return bare.find((a) => a.includes('.')) ?? bare[0];
}

export async function runSshSession(d: SessionDeps, o: SshConnectOptions, port: MessagePort): Promise<Result<{ hostKey: HostKeyNotice }>> {
  const post = (m: SshPortMessage, transfer: Transferable[] = []) => {
    try {
      port.postMessage(m, transfer);
    } catch {
      /* the page went away */
    }
  };
  const tcpPort = o.port ?? 22;
  let channel: SshChannel | undefined;
  let client: SshClient | undefined;
  let closedByPage = false;
  let kbdWaiter: ((r: string[]) => void) | undefined;
  const early: SshPageMessage[] = [];

  // ---- output batching and flow control
  let pending: Uint8Array[] = [];
  let pendingBytes = 0;
  let unacked = 0;
  let flushTimer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    if (flushTimer !== undefined) clearTimeout(flushTimer);
    flushTimer = undefined;
    if (pendingBytes === 0) return;
    const buf = new Uint8Array(pendingBytes);
    let off = 0;
    for (const p of pending) {
      buf.set(p, off);
      off += p.length;
    }
    pending = [];
    unacked += pendingBytes;
    pendingBytes = 0;
    post({ t: 'data', buf: buf.buffer }, [buf.buffer]);
    if (unacked > OUT_HIGH) channel?.pause();
  };
  const output = (b: Uint8Array) => {
    pending.push(b);
    pendingBytes += b.length;
    if (pendingBytes >= OUT_BATCH) flush();
    else if (flushTimer === undefined) flushTimer = setTimeout(flush, 0);
  };

  const onPage = (m: SshPageMessage) => {
    switch (m.t) {
      case 'kbd':
        kbdWaiter?.(m.responses);
        kbdWaiter = undefined;
        return;
      case 'close':
        closedByPage = true;
        kbdWaiter?.([]);
        if (client) client.close();
        return;
    }
    if (!channel) {
      if (m.t !== 'ack') early.push(m);
      return;
    }
    switch (m.t) {
      case 'data':
        try {
          channel.write(new Uint8Array(m.buf));
        } catch {
          /* after exit */
        }
        return;
      case 'ack':
        unacked = Math.max(0, unacked - m.bytes);
        if (unacked < OUT_LOW && channel.isPaused) channel.resume();
        return;
      case 'resize':
        channel.resize(m.cols, m.rows);
        return;
    }
  };
  port.onmessage = (ev: MessageEvent<SshPageMessage>) => onPage(ev.data);

  const fail = (error: ApiError): Result<{ hostKey: HostKeyNotice }> => {
    post({ t: 'error', error });
    post({ t: 'state', state: 'closed' });
    return { ok: false, error };
  };

  post({ t: 'state', state: 'connecting' });
  const { engine } = d;
  if (!engine.stack) return fail(apiError('NOT_JOINED', 'not joined to a mesh yet'));
  const peer = engine.findPeer(o.host);
  if (!peer) return fail(apiError('PEER_NOT_FOUND', `${o.host} is not in your netmap: it does not exist or the policy does not let you reach it`));
  if (!peer.online) return fail(apiError('PEER_OFFLINE', `${peer.name} is offline`));
  const ip = peerAddress(peer.addrs);
  if (!ip) return fail(apiError('PEER_NOT_FOUND', `${peer.name} has no address`));
  const hostName = peer.name;

  let conn: TcpConnection;
  try {
    conn = await tcpOpen(engine, hostName, ip, tcpPort);
  } catch (e) {
    return fail(e instanceof WorkerError ? e.error : socketError(e, hostName, tcpPort));
  }
  if (closedByPage) {
    conn.abort();
    return fail(apiError('CONNECTION_LOST', 'closed'));
  }
  conn.setNoDelay(true);
  const duplex = tcpDuplex(conn, () => engine.reschedule());

  let notice: HostKeyNotice | undefined;
  let mismatch: ApiError | undefined;
  const name = knownHostsName(hostName, tcpPort);
  const interactive = o.auth.kind === 'keyboard-interactive';
  let preset = o.auth.kind === 'keyboard-interactive' ? o.auth.responses : undefined;
  const opts: ConnectOptions = {
    username: o.username,
    timeoutMs: interactive ? SSH_INTERACTIVE_TIMEOUT_MS : SSH_HANDSHAKE_TIMEOUT_MS,
    verifyHostKey: async (blob) => {
      const c = await d.knownHosts.check(hostName, tcpPort, blob);
      if (c.status === 'mismatch') {
        mismatch = apiError(
          'HOST_KEY_MISMATCH',
          `HOST KEY CHANGED for ${name}: remembered ${c.known}, the server now presents ${c.fingerprint}. ` +
            'Refusing to connect: someone may be impersonating the host. If the host was re-keyed on purpose, forget its old key first.',
          { expected: c.known!, got: c.fingerprint },
        );
        return false;
      }
      if (c.status === 'new') await d.knownHosts.remember(hostName, tcpPort, blob);
      notice = { status: c.status, fingerprint: c.fingerprint, host: name };
      post({ t: 'hostkey', notice });
      return true;
    },
    onBanner: (text) => post({ t: 'banner', text }),
  };
  if (o.auth.kind === 'password') opts.password = o.auth.password;
  else if (o.auth.kind === 'publickey') opts.privateKey = d.sshKey;
  else {
    opts.onKeyboardInteractive = (name, instruction, prompts) => {
      if (prompts.length === 0) return [];
      if (preset && preset.length === prompts.length) {
        const r = preset;
        preset = undefined;
        return r;
      }
      return new Promise<string[]>((resolve) => {
        kbdWaiter = resolve;
        post({ t: 'kbd', name, instruction, prompts });
      });
    };
  }

  let transportError: unknown;
  duplex.onClose((err) => (transportError = err));
  try {
    client = await SshClient.connect(duplex, opts);
    channel = await client.shell({ term: o.term ?? 'xterm-256color', cols: o.cols, rows: o.rows });
  } catch (e) {
    client?.close();
    duplex.close();
    if (mismatch) return fail(mismatch);
    return fail(sshError(e, { user: o.username, host: hostName, port: tcpPort, transportError: transportError ?? conn.lastError }));
  }
  const ch = channel;
  const cl = client;
  ch.onData(output);
  ch.onStderr(output);
  post({ t: 'state', state: 'open' });
  for (const m of early.splice(0)) onPage(m);
  if (closedByPage) cl.close();

  void ch.closed.then((exit) => {
    ch.resume();
    flush();
    const error =
      exit.error && !closedByPage && exit.exitStatus === undefined && !exit.exitSignal
        ? sshError(exit.error, { user: o.username, host: hostName, port: tcpPort, transportError: transportError ?? conn.lastError })
        : undefined;
    post({
      t: 'exit',
      ...(exit.exitStatus !== undefined ? { exitStatus: exit.exitStatus } : {}),
      ...(exit.exitSignal ? { exitSignal: exit.exitSignal.name } : {}),
      ...(error ? { error } : {}),
    });
    post({ t: 'state', state: 'closed' });
    cl.close();
  });
  return { ok: true, value: { hostKey: notice! } };
}
