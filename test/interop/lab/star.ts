/**
 * A star topology: one "hub" namespace holding a Linux bridge, and N host namespaces each
 * joined to the bridge by a veth. The hub itself has an address on the bridge, so servers
 * (control, relay) can run in it; every host reaches the hub and every other host.
 *
 *                      hub (<base>-hub)
 *                ┌──────────────────────────────┐
 *                │ br0  10.201.X.1/24           │
 *                │      fd00:201:0:X::1/64      │
 *                │  ├─ h0 ─┐  ├─ h1 ─┐  …        │
 *                └─────────┼─────────┼──────────┘
 *                  veth0   │ veth0   │
 *          host 0 (<base>-h0)   host 1 (<base>-h1)   …
 *          10.201.X.2/24        10.201.X.3/24
 *          fd00:201:0:X::2/64   fd00:201:0:X::3/64
 *
 * Namespaces are registered like the pair's, so `cleanupAll()` (and the exit handlers) remove
 * them; names are unique per process (`plab-<pid>-<run>-<n>-hub`, `…-h<i>`). The bridge and the
 * hub-side veth ends live inside the hub namespace, so nothing is added to the root namespace.
 */
import { newNamespaceBase } from './env.ts';
import { deleteNamespace, ping, type Namespace } from './netns.ts';
import { requireLab } from './preflight.ts';
import { execIn, run, spawnIn, waitFor, type ChildHandle, type ExecResult, type RunOptions, type SpawnOptions } from './proc.ts';
import { installExitHandlers, namespaces } from './registry.ts';

export interface StarHost extends Namespace {
  /** Index in `hosts`. */
  index: number;
}

export interface Star {
  /** The hub namespace; `hub.veth` is the bridge ('br0'), with the .1 / ::1 addresses. */
  hub: Namespace;
  hosts: StarHost[];
  exec(ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<ExecResult>;
  spawn(ns: string, cmd: string, args: readonly string[], opts?: SpawnOptions): ChildHandle;
  /** Kills processes inside every namespace of the star and deletes them. */
  destroy(): Promise<void>;
}

export interface StarOptions {
  /** Number of host namespaces (1–250). */
  hosts: number;
  /** The X of 10.201.X.0/24 and fd00:201:0:X::/64 (0–255); default 0. */
  subnet?: number;
  /** Also give every namespace an IPv6 address; default true. */
  ipv6?: boolean;
}

/** Builds the hub, its bridge and `hosts` host namespaces; resolves once every host reaches the hub. */
export async function createStar(o: StarOptions): Promise<Star> {
  requireLab();
  installExitHandlers();
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > 250) throw new Error(`createStar: hosts must be 1..250, got ${o.hosts}`);
  const x = o.subnet ?? 0;
  if (!Number.isInteger(x) || x < 0 || x > 255) throw new Error(`createStar: subnet must be 0..255, got ${x}`);
  const withV6 = o.ipv6 ?? true;
  const base = newNamespaceBase();
  const v4 = (n: number): string => `10.201.${x}.${n}`;
  const v6 = (n: number): string => `fd00:201:0:${x.toString(16)}::${n.toString(16)}`;
  const hub: Namespace = { name: `${base}-hub`, veth: 'br0', ipv4: v4(1), ipv6: v6(1) };
  const hosts: StarHost[] = Array.from({ length: o.hosts }, (_, i) => ({ index: i, name: `${base}-h${i}`, veth: 'veth0', ipv4: v4(i + 2), ipv6: v6(i + 2) }));
  const all = [hub, ...hosts];
  const star: Star = {
    hub,
    hosts,
    exec: execIn,
    spawn: spawnIn,
    destroy: async () => {
      for (const ns of all) await deleteNamespace(ns.name);
    },
  };
  try {
    for (const ns of all) {
      namespaces.add(ns.name);
      await run('ip', ['netns', 'add', ns.name]);
      await run('ip', ['-n', ns.name, 'link', 'set', 'lo', 'up']);
    }
    const hubIp = (...args: string[]): Promise<ExecResult> => run('ip', ['-n', hub.name, ...args]);
    await hubIp('link', 'add', 'br0', 'type', 'bridge');
    await hubIp('addr', 'add', `${hub.ipv4}/24`, 'dev', 'br0');
    if (withV6) await hubIp('-6', 'addr', 'add', `${hub.ipv6}/64`, 'dev', 'br0', 'nodad');
    await hubIp('link', 'set', 'br0', 'up');
    for (const h of hosts) {
      const port = `h${h.index}`;
      // The hub end is made in the hub, the host end directly in the host: no root-namespace names.
      await hubIp('link', 'add', port, 'type', 'veth', 'peer', 'name', h.veth, 'netns', h.name);
      await hubIp('link', 'set', port, 'master', 'br0');
      await hubIp('link', 'set', port, 'up');
      const ip = (...args: string[]): Promise<ExecResult> => run('ip', ['-n', h.name, ...args]);
      await ip('addr', 'add', `${h.ipv4}/24`, 'dev', h.veth);
      if (withV6) await ip('-6', 'addr', 'add', `${h.ipv6}/64`, 'dev', h.veth, 'nodad');
      await ip('link', 'set', h.veth, 'up');
    }
    // The bridge forwards once its ports leave the listening state (no STP: at once, or after
    // the forward delay on older kernels); wait until every host reaches the hub.
    for (const h of hosts) {
      for (const to of withV6 ? [hub.ipv4, hub.ipv6] : [hub.ipv4]) {
        await waitFor(`star underlay ${h.name} -> ${to}`, 20_000, async () => ((await ping(h.name, to, { count: 1, timeoutS: 1 })).ok ? true : undefined));
      }
    }
  } catch (e) {
    await star.destroy().catch(() => undefined);
    throw e;
  }
  return star;
}
