/**
 * The lab's shared mutable registries, and the only module that owns them: running children,
 * namespaces, the temp dir. Also what removes their contents without awaiting anything: the
 * process exit/signal handlers, wireguard-go socket removal, and cleanupStale() for what a
 * crashed earlier run left behind.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IF_PREFIX, NS_PREFIX, PID36, RUN_ID, WG_SOCKET_DIR, alive, labEnv, parsePids, safeKill } from './env.ts';

/** What the registry needs of a running child (proc.ts's handles). */
export interface TrackedChild {
  readonly name: string;
  readonly proc: ChildProcess;
  kill(): Promise<unknown>;
}

/** Children not yet exited; proc.ts adds each one and removes it when it exits. */
export const children = new Set<TrackedChild>();

/** Namespaces created and not yet deleted (netns.ts). */
export const namespaces = new Set<string>();

let tempDir: string | undefined;

/** The lab's temp dir, made on first use. */
export function labTempDir(): string {
  tempDir ??= mkdtempSync(join(tmpdir(), `${NS_PREFIX}-${process.pid}-`));
  return tempDir;
}

/** Removes the temp dir and everything in it; the next `labTempDir()` makes a new one. */
export function removeTempDir(): void {
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  tempDir = undefined;
}

/** Removes sockets of our interfaces; with `all` false only those no live child serves. */
export function removeOwnWgSockets(all: boolean): void {
  if (!existsSync(WG_SOCKET_DIR)) return;
  const live = new Set<string>();
  if (!all) {
    for (const c of children) {
      const m = c.name.match(/^wireguard-go (\S+)@/);
      if (m) live.add(m[1]!);
    }
  }
  const own = `${IF_PREFIX}${PID36}-${RUN_ID.slice(0, 2)}`;
  for (const f of readdirSync(WG_SOCKET_DIR)) {
    if (!f.startsWith(own) || !f.endsWith('.sock')) continue;
    if (!live.has(f.slice(0, -'.sock'.length))) rmSync(join(WG_SOCKET_DIR, f), { force: true });
  }
}

/** Synchronous last-resort cleanup for process exit and signals. */
function cleanupAllSync(): void {
  for (const c of children) {
    if (c.proc.pid !== undefined) safeKill(c.proc.pid, 'SIGKILL');
  }
  for (const ns of namespaces) {
    try {
      for (const p of parsePids(execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], env: labEnv() }))) safeKill(p, 'SIGKILL');
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', env: labEnv() });
    } catch {
      /* best effort */
    }
  }
  namespaces.clear();
  try {
    removeOwnWgSockets(true);
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  } catch {
    /* best effort */
  }
}

let handlersInstalled = false;
/** Once per module instance: cleanupStale(), then cleanupAllSync() on exit, SIGINT, SIGTERM, SIGHUP. */
export function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  cleanupStale();
  process.once('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanupAllSync();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig); // re-raise with the default action
    };
    process.on(sig, onSignal);
  }
}

/**
 * Removes what an earlier run that crashed left behind: namespaces `plab-<pid>-…`, temp dirs
 * and wireguard-go sockets/processes of interfaces `pw<pid36>-…`, whose <pid> is no longer
 * alive. Things of live processes (e.g. a concurrent run) are left alone.
 */
export function cleanupStale(): void {
  const deadOwner = (pid: number): boolean => pid !== process.pid && !alive(pid);
  // Namespaces.
  let list = '';
  try {
    list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', env: labEnv() });
  } catch {
    /* no netns dir yet */
  }
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = name.match(new RegExp(`^${NS_PREFIX}-(\\d+)-`));
    if (!m || !deadOwner(Number(m[1]))) continue;
    try {
      for (const p of parsePids(execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', env: labEnv() }))) safeKill(p, 'SIGKILL');
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore', env: labEnv() });
    } catch {
      /* best effort */
    }
  }
  // wireguard-go processes for our interface names (e.g. in a namespace already unmounted).
  const ifRe = new RegExp(`^${IF_PREFIX}([0-9a-z]+)-[0-9a-f]{2}[0-9a-z]+$`);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (!argv[0]?.endsWith('wireguard-go')) continue;
      const m = (argv[1] ?? '').match(ifRe);
      if (m && deadOwner(parseInt(m[1]!, 36))) safeKill(Number(entry), 'SIGKILL');
    } catch {
      /* raced with exit */
    }
  }
  // Sockets.
  if (existsSync(WG_SOCKET_DIR)) {
    for (const f of readdirSync(WG_SOCKET_DIR)) {
      const m = f.replace(/\.sock$/, '').match(ifRe);
      if (m && deadOwner(parseInt(m[1]!, 36))) rmSync(join(WG_SOCKET_DIR, f), { force: true });
    }
  }
  // Temp dirs.
  for (const f of readdirSync(tmpdir())) {
    const m = f.match(new RegExp(`^${NS_PREFIX}-(\\d+)-`));
    if (m && deadOwner(Number(m[1]))) rmSync(join(tmpdir(), f), { recursive: true, force: true });
  }
}
