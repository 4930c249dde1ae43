/**
 * One SSH session channel of the built-in server, run as a local process: a login shell or a
 * command, in a real PTY (node-pty) when the client asked for one, with plain pipes otherwise.
 * The PTY follows window-change; signals from the client reach the process; the exit status or
 * signal goes back to the client; closing the channel hangs the process up.
 *
 * Flow control: when the client's window is full, PTY or pipe output pauses until it drains,
 * so a fast producer cannot grow our buffers.
 */
import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import pty from 'node-pty';
import type { ServerSession } from '../../../src/ssh/server.ts';
import { envAccepted } from '../../../src/policy/index.ts';
import { asUser, baseEnv, type LocalUser } from './users.ts';

export interface SessionResult {
  exitStatus?: number;
  exitSignal?: string;
}

interface PtyRequest {
  term: string;
  cols: number;
  rows: number;
}

const SIGNALS = new Set(['ABRT', 'ALRM', 'FPE', 'HUP', 'ILL', 'INT', 'KILL', 'PIPE', 'QUIT', 'SEGV', 'TERM', 'USR1', 'USR2']);

function signalName(n: number): string {
  for (const [k, v] of Object.entries(osConstants.signals)) if (v === n) return k.replace(/^SIG/, '');
  return 'KILL';
}

/**
 * Wires a session channel to a process for `user`; `done` gets the exit once the process ends
 * or the channel closes first.
 */
export function runSession(session: ServerSession, user: LocalUser, acceptEnv: readonly string[], sshEnv: Record<string, string>, done: (r: SessionResult) => void): void {
  let ptyReq: PtyRequest | undefined;
  const env: Record<string, string> = {};
  let started = false;
  let ended = false;
  let term: pty.IPty | undefined;
  let child: ChildProcess | undefined;
  const pending: Uint8Array[] = [];
  let stdinEof = false;

  const finish = (r: SessionResult) => {
    if (ended) return;
    ended = true;
    if (r.exitSignal !== undefined) session.exitSignal(r.exitSignal);
    else session.exit(r.exitStatus ?? 255);
    done(r);
  };

  session.onPty((p) => {
    if (started) return false;
    ptyReq = { term: p.term || 'xterm', cols: Math.max(1, Math.min(p.cols || 80, 1000)), rows: Math.max(1, Math.min(p.rows || 24, 1000)) };
    return true;
  });
  session.onEnv((name, value) => {
    if (started || !envAccepted(acceptEnv, name)) return false;
    env[name] = value;
    return true;
  });
  session.onWindowChange((cols, rows) => {
    if (term && cols > 0 && rows > 0) term.resize(Math.min(cols, 1000), Math.min(rows, 1000));
  });
  session.onSignal((name) => {
    if (!SIGNALS.has(name)) return;
    try {
      if (term) process.kill(term.pid, `SIG${name}` as NodeJS.Signals);
      else child?.kill(`SIG${name}` as NodeJS.Signals);
    } catch {
      // already gone
    }
  });
  session.onData((b) => {
    if (term) term.write(Buffer.from(b));
    else if (child?.stdin) child.stdin.write(b);
    else pending.push(b);
  });
  session.onEof(() => {
    stdinEof = true;
    if (child?.stdin) child.stdin.end();
    // A PTY has no EOF of its own: the terminal's EOF character is what the client sends.
  });
  session.onClose(() => {
    if (term) {
      try {
        process.kill(term.pid, 'SIGHUP');
      } catch {
        // gone
      }
    }
    child?.kill('SIGHUP');
    if (!ended) {
      ended = true;
      done({ exitSignal: 'HUP' });
    }
  });

  const start = (command: string | undefined): boolean => {
    if (started) return false;
    started = true;
    const fullEnv = baseEnv(user, { ...sshEnv, ...env, ...(ptyReq ? { TERM: ptyReq.term } : {}) });
    // A login shell for an interactive session; `shell -c command` for exec.
    const argv = command === undefined ? asUser(user, user.shell, ['-l']) : asUser(user, user.shell, ['-c', command]);
    try {
      if (ptyReq) startPty(argv, fullEnv, ptyReq);
      else startPipes(argv, fullEnv);
    } catch (e) {
      session.writeStderr(new TextEncoder().encode(`pierce: cannot start ${user.shell}: ${(e as Error).message}\r\n`));
      setImmediate(() => finish({ exitStatus: 127 }));
    }
    return true;
  };

  const startPty = (argv: { file: string; args: string[] }, fullEnv: Record<string, string>, p: PtyRequest) => {
    const t = pty.spawn(argv.file, argv.args, { name: p.term, cols: p.cols, rows: p.rows, cwd: user.home, env: fullEnv, encoding: null } as pty.IPtyForkOptions);
    term = t;
    t.onData((d: string | Buffer) => {
      const b = typeof d === 'string' ? Buffer.from(d, 'utf8') : d;
      if (!session.write(new Uint8Array(b.buffer, b.byteOffset, b.byteLength))) {
        t.pause();
        session.onDrain(() => t.resume());
      }
    });
    t.onExit(({ exitCode, signal }) => finish(signal ? { exitSignal: signalName(signal) } : { exitStatus: exitCode }));
    for (const b of pending.splice(0)) t.write(Buffer.from(b));
  };

  const startPipes = (argv: { file: string; args: string[] }, fullEnv: Record<string, string>) => {
    const c = spawnChild(argv.file, argv.args, { cwd: user.home, env: fullEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    child = c;
    let open = 2;
    let exit: SessionResult | undefined;
    const maybeDone = () => {
      if (open === 0 && exit) finish(exit);
    };
    const pipe = (s: NodeJS.ReadableStream & { pause(): void; resume(): void }, write: (b: Uint8Array) => boolean) => {
      s.on('data', (d: Buffer) => {
        if (!write(new Uint8Array(d.buffer, d.byteOffset, d.byteLength))) {
          s.pause();
          session.onDrain(() => s.resume());
        }
      });
      s.on('end', () => {
        open--;
        maybeDone();
      });
    };
    pipe(c.stdout!, (b) => session.write(b));
    pipe(c.stderr!, (b) => session.writeStderr(b));
    c.stdin!.on('error', () => {});
    c.on('error', (e) => {
      session.writeStderr(new TextEncoder().encode(`pierce: ${e.message}\n`));
      finish({ exitStatus: 127 });
    });
    c.on('exit', (code, sig) => {
      exit = sig ? { exitSignal: sig.replace(/^SIG/, '') } : { exitStatus: code ?? 255 };
      maybeDone();
    });
    for (const b of pending.splice(0)) c.stdin!.write(b);
    if (stdinEof) c.stdin!.end();
  };

  session.onShell(() => start(undefined));
  session.onExec((command) => start(command));
}
