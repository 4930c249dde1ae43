/**
 * Names, PATH and pid primitives shared by every lab module. Imports nothing from the lab.
 */
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants } from 'node:fs';
import { join } from 'node:path';

// ---------------------------------------------------------------------------------------------
// Naming

export const NS_PREFIX = 'plab';
export const IF_PREFIX = 'pw';
export const RUN_ID = randomBytes(2).toString('hex'); // 4 hex chars; distinguishes module instances
export const PID36 = process.pid.toString(36);
export const WG_SOCKET_DIR = '/var/run/wireguard';
let counter = 0;

/** The next number of the per-process serial that makes interface, namespace and file names unique. */
export function nextSerial(): number {
  return counter++;
}

/** A fresh, unique interface name for a wireguard-go tunnel (≤ 15 chars). */
export function newIfname(): string {
  const name = `${IF_PREFIX}${PID36}-${RUN_ID.slice(0, 2)}${nextSerial().toString(36)}`;
  if (name.length > 15) throw new Error(`interface name too long: ${name}`);
  return name;
}

export function newNamespaceBase(): string {
  return `${NS_PREFIX}-${process.pid}-${RUN_ID}-${nextSerial()}`;
}

// ---------------------------------------------------------------------------------------------
// PATH

/** PATH for every command the lab runs: the caller's, plus the sbin dirs where `ip` lives. */
export const LAB_PATH = [...new Set([...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'])]
  .filter((d) => d !== '')
  .join(':');

export function labEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...process.env, ...extra, PATH: LAB_PATH };
}

export function findInPath(cmd: string): string | undefined {
  for (const d of LAB_PATH.split(':')) {
    const p = join(d, cmd);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      /* keep looking */
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Pids

export function parsePids(text: string): number[] {
  return text
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number)
    .filter((p) => p !== process.pid);
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function safeKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}
