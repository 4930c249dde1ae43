/**
 * Running programs: to completion (`run`, `execIn`) or as long-running children (`spawnIn`)
 * whose output lines can be awaited; `sleep` and `waitFor` for polling.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { labEnv } from './env.ts';
import { children, installExitHandlers } from './registry.ts';

// ---------------------------------------------------------------------------------------------
// Running commands

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to stdin, then stdin is closed. */
  input?: string;
  /** Killed with SIGKILL after this long (default 15 s). */
  timeoutMs?: number;
  /** Throw when the exit code is not 0 (default true). */
  check?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** Runs a command to completion on the host (root namespace). */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: labEnv(opts.env),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const res: ExecResult = { code, signal, stdout, stderr };
      if (timedOut) {
        reject(new Error(`${cmd} ${args.join(' ')}: timed out after ${timeoutMs} ms\n${stdout}${stderr}`));
      } else if ((opts.check ?? true) && code !== 0) {
        reject(new Error(`${cmd} ${args.join(' ')}: exit ${code ?? signal}\n${stdout}${stderr}`));
      } else {
        resolve(res);
      }
    });
    child.stdin.on('error', () => {
      /* EPIPE when the command does not read stdin */
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command to completion inside namespace `ns`. */
export function execIn(ns: string, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<ExecResult> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

// ---------------------------------------------------------------------------------------------
// Long-running children

export interface OutputLine {
  stream: 'stdout' | 'stderr';
  text: string;
  /** Date.now() when the line arrived. */
  at: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WaitForLineOptions {
  /** Only consider lines with index ≥ this (see `lineCount()`); default 0 (all lines). */
  from?: number;
  stream?: 'stdout' | 'stderr';
}

export interface ChildHandle {
  readonly name: string;
  readonly pid: number;
  /** Every complete output line so far, both streams, in arrival order. */
  readonly lines: readonly OutputLine[];
  stdoutLines(): string[];
  stderrLines(): string[];
  /** All output as text, each line prefixed with its stream; for assertion messages. */
  output(): string;
  lineCount(): number;
  /** Resolves with the match of the first line matching `re`; rejects on timeout or exit. */
  waitForLine(re: RegExp, timeoutMs: number, opts?: WaitForLineOptions): Promise<RegExpMatchArray>;
  /** Settles when the process has exited (never rejects). */
  readonly exit: Promise<ExitInfo>;
  readonly exited: boolean;
  /** Waits for exit; on timeout kills the process and rejects with its output. */
  waitForExit(timeoutMs: number): Promise<ExitInfo>;
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs` (default 3000); resolves once it has exited. */
  kill(graceMs?: number): Promise<ExitInfo>;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  /** Label for messages; defaults to the command's base name. */
  name?: string;
}

/** Starts `cmd args` inside namespace `ns` (via `ip netns exec`, which execs the command). */
export function spawnIn(ns: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildHandle {
  return spawnChild('ip', ['netns', 'exec', ns, cmd, ...args], opts.name ?? `${cmd.split('/').pop()}@${ns}`, opts.env);
}

function spawnChild(cmd: string, args: readonly string[], name: string, env?: NodeJS.ProcessEnv): ChildHandle {
  installExitHandlers();
  const proc = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: labEnv(env),
  });
  const lines: OutputLine[] = [];
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };
  const attach = (stream: 'stdout' | 'stderr', r: NodeJS.ReadableStream | null): void => {
    if (!r) return;
    let partial = '';
    r.setEncoding('utf8');
    r.on('data', (d: string) => {
      partial += d;
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const text of parts) lines.push({ stream, text: text.replace(/\r$/, ''), at: Date.now() });
      if (parts.length > 0) notify();
    });
    r.on('end', () => {
      if (partial) lines.push({ stream, text: partial, at: Date.now() });
      partial = '';
      notify();
    });
  };
  attach('stdout', proc.stdout);
  attach('stderr', proc.stderr);

  let exited = false;
  let exitInfo: ExitInfo | undefined;
  const exit = new Promise<ExitInfo>((resolve) => {
    proc.on('error', (err) => {
      lines.push({ stream: 'stderr', text: `[lab] spawn error: ${err.message}`, at: Date.now() });
      exited = true;
      exitInfo = { code: null, signal: null };
      resolve(exitInfo);
    });
    // 'close' fires after the stdio streams ended, so all output is in `lines`.
    proc.on('close', (code, signal) => {
      exited = true;
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  }).finally(() => {
    children.delete(handle);
    notify();
  });

  const output = (): string => lines.map((l) => `[${name} ${l.stream}] ${l.text}`).join('\n');

  const handle: ChildHandle & { proc: ChildProcess } = {
    name,
    proc,
    get pid() {
      return proc.pid ?? -1;
    },
    lines,
    stdoutLines: () => lines.filter((l) => l.stream === 'stdout').map((l) => l.text),
    stderrLines: () => lines.filter((l) => l.stream === 'stderr').map((l) => l.text),
    output,
    lineCount: () => lines.length,
    get exited() {
      return exited;
    },
    exit,
    waitForLine(re, timeoutMs, o = {}) {
      return new Promise((resolve, reject) => {
        let next = o.from ?? 0;
        const check = (): boolean => {
          for (; next < lines.length; next++) {
            const l = lines[next]!;
            if (o.stream && l.stream !== o.stream) continue;
            const m = l.text.match(re);
            if (m) {
              done();
              resolve(m);
              return true;
            }
          }
          if (exited) {
            done();
            reject(new Error(`${name} exited (${JSON.stringify(exitInfo)}) before printing a line matching ${re}:\n${output()}`));
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${name}: no line matching ${re} within ${timeoutMs} ms:\n${output()}`));
        }, timeoutMs);
        const waiter = (): void => void check();
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(waiter);
        };
        waiters.add(waiter);
        check();
      });
    },
    async waitForExit(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
      const res = await Promise.race([exit, timeout]);
      clearTimeout(timer);
      if (res === 'timeout') {
        await handle.kill(500);
        throw new Error(`${name} did not exit within ${timeoutMs} ms (killed):\n${output()}`);
      }
      return res;
    },
    signal(sig) {
      if (!exited && proc.pid !== undefined) {
        try {
          process.kill(proc.pid, sig);
        } catch {
          /* already gone */
        }
      }
    },
    async kill(graceMs = 3000) {
      if (exited) return exit;
      handle.signal('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<'grace'>((r) => (timer = setTimeout(() => r('grace'), graceMs)));
      const res = await Promise.race([exit, grace]);
      clearTimeout(timer);
      if (res === 'grace') {
        handle.signal('SIGKILL');
        return exit;
      }
      return res;
    },
  };
  children.add(handle);
  return handle;
}

// ---------------------------------------------------------------------------------------------
// Polling

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined> | T | undefined, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    }
    await sleep(intervalMs);
  }
}
