/**
 * Network namespaces: a pair joined by a veth (IPv4 + IPv6 underlay), their deletion, and
 * kernel ping from inside one.
 */
import { alive, newNamespaceBase, parsePids, safeKill } from './env.ts';
import { requireLab } from './preflight.ts';
import { execIn, run, sleep, spawnIn, waitFor, type ChildHandle, type ExecResult, type RunOptions, type SpawnOptions } from './proc.ts';
import { installExitHandlers, namespaces } from './registry.ts';

// ---------------------------------------------------------------------------------------------
// Namespaces

export interface Namespace {
  name: string;
  /** The veth end inside this namespace. */
  veth: string;
  /** Underlay addresses on the veth (no prefix length). */
  ipv4: string;
  ipv6: string;
}

export interface NamespacePair {
  a: Namespace;
  b: Namespace;
  exec(ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<ExecResult>;
  spawn(ns: string, cmd: string, args: readonly string[], opts?: SpawnOptions): ChildHandle;
  /** Kills processes inside both namespaces and deletes them. */
  destroy(): Promise<void>;
}

export interface NamespacePairOptions {
  /** Underlay IPv4 /24 prefix, e.g. '10.200.0' (A gets .1, B gets .2). */
  ipv4Prefix24?: string;
  /** Underlay IPv6 /64 prefix, e.g. 'fd00:200::' (A gets ::1, B gets ::2). */
  ipv6Prefix64?: string;
}

/** Two fresh namespaces joined by a veth pair, lo up, IPv4 + IPv6 underlay reachable. */
export async function createNamespacePair(opts: NamespacePairOptions = {}): Promise<NamespacePair> {
  requireLab();
  installExitHandlers();
  const base = newNamespaceBase();
  const v4 = opts.ipv4Prefix24 ?? '10.200.0';
  const v6 = opts.ipv6Prefix64 ?? 'fd00:200::';
  const a: Namespace = { name: `${base}-a`, veth: 'veth0', ipv4: `${v4}.1`, ipv6: `${v6}1` };
  const b: Namespace = { name: `${base}-b`, veth: 'veth0', ipv4: `${v4}.2`, ipv6: `${v6}2` };
  const pair: NamespacePair = {
    a,
    b,
    exec: execIn,
    spawn: spawnIn,
    destroy: async () => {
      await deleteNamespace(a.name);
      await deleteNamespace(b.name);
    },
  };
  try {
    for (const ns of [a, b]) {
      namespaces.add(ns.name);
      await run('ip', ['netns', 'add', ns.name]);
    }
    // Both ends are created directly inside their namespaces: no name clash in the root one.
    await run('ip', ['link', 'add', a.veth, 'netns', a.name, 'type', 'veth', 'peer', 'name', b.veth, 'netns', b.name]);
    for (const ns of [a, b]) {
      const ip = (...args: string[]): Promise<ExecResult> => run('ip', ['-n', ns.name, ...args]);
      await ip('link', 'set', 'lo', 'up');
      await ip('addr', 'add', `${ns.ipv4}/24`, 'dev', ns.veth);
      await ip('-6', 'addr', 'add', `${ns.ipv6}/64`, 'dev', ns.veth, 'nodad');
      await ip('link', 'set', ns.veth, 'up');
    }
    // Wait until the veth carries traffic both ways and for both families.
    for (const [from, to] of [[a, b.ipv4], [a, b.ipv6], [b, a.ipv4], [b, a.ipv6]] as const) {
      await waitFor(`underlay ${from.name} -> ${to}`, 10_000, async () => ((await ping(from.name, to, { count: 1, timeoutS: 1 })).ok ? true : undefined));
    }
  } catch (e) {
    await pair.destroy().catch(() => undefined);
    throw e;
  }
  return pair;
}

export async function deleteNamespace(name: string): Promise<void> {
  await killNamespacePids(name);
  await run('ip', ['netns', 'del', name], { check: false });
  namespaces.delete(name);
}

async function killNamespacePids(name: string): Promise<void> {
  const res = await run('ip', ['netns', 'pids', name], { check: false });
  const pids = parsePids(res.stdout);
  if (pids.length === 0) return;
  for (const p of pids) safeKill(p, 'SIGTERM');
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && pids.some(alive)) await sleep(50);
  for (const p of pids) if (alive(p)) safeKill(p, 'SIGKILL');
}

// ---------------------------------------------------------------------------------------------
// ping (iputils)

export interface PingResult {
  ok: boolean;
  transmitted: number;
  received: number;
  /** Round-trip times of the replies, in ms. */
  rtts: number[];
  output: string;
}

export interface PingOptions {
  count?: number;
  /** Per-reply wait (`-W`), seconds; default 2. */
  timeoutS?: number;
  /** Seconds between echoes (`-i`); default 1 (iputils default). */
  intervalS?: number;
}

/** Kernel ping from inside `ns`; IPv6 when `addr` contains ':'. Never throws for lost echoes. */
export async function ping(ns: string, addr: string, opts: PingOptions = {}): Promise<PingResult> {
  const count = opts.count ?? 3;
  const timeoutS = opts.timeoutS ?? 2;
  const intervalS = opts.intervalS ?? 1;
  const deadline = Math.ceil(count * intervalS + timeoutS);
  const args = [addr.includes(':') ? '-6' : '-4', '-n', '-c', String(count), '-i', String(intervalS), '-W', String(timeoutS), '-w', String(deadline), addr];
  const res = await execIn(ns, 'ping', args, { check: false, timeoutMs: (deadline + 5) * 1000 });
  const text = res.stdout + res.stderr;
  return { ...parsePingOutput(text), ok: res.code === 0, output: text };
}

/** Parses iputils ping output (reply lines and the statistics line). */
export function parsePingOutput(text: string): Omit<PingResult, 'ok' | 'output'> {
  const rtts = [...text.matchAll(/bytes from .*time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  const stats = text.match(/(\d+) packets transmitted, (\d+) received/);
  return {
    transmitted: stats ? Number(stats[1]) : 0,
    received: stats ? Number(stats[2]) : rtts.length,
    rtts,
  };
}
