/**
 * Random UDP loss with nftables inside a namespace (this kernel has no netem):
 *   udp dport PORT numgen random mod 100 < PCT counter drop   (input)
 *   udp sport PORT numgen random mod 100 < PCT counter drop   (output)
 * in a table of its own, which goes away with the namespace.
 */
import { execIn } from './proc.ts';

export interface UdpLoss {
  ns: string;
  table: string;
  /** Packets dropped so far by the input and output rules. */
  counters(): Promise<{ input: number; output: number }>;
  remove(): Promise<void>;
}

export interface UdpLossOptions {
  /** % of matching packets dropped in each direction (0–100). */
  percent: number;
  /** Only this local UDP port (dport on input, sport on output); all UDP when absent. */
  port?: number;
  /** Table name (family inet); default 'plab_loss'. */
  table?: string;
}

/** Adds the drop rules in `ns`; returns a handle that reads their counters. */
export async function addUdpLoss(ns: string, o: UdpLossOptions): Promise<UdpLoss> {
  const table = o.table ?? 'plab_loss';
  const pct = Math.round(o.percent);
  if (!(pct >= 0 && pct <= 100)) throw new Error(`bad percent ${o.percent}`);
  const match = (dir: 'dport' | 'sport'): string => (o.port === undefined ? 'meta l4proto udp' : `udp ${dir} ${o.port}`);
  const ruleset = [
    `table inet ${table} {`,
    '  chain input {',
    '    type filter hook input priority 0; policy accept;',
    `    ${match('dport')} numgen random mod 100 < ${pct} counter drop`,
    '  }',
    '  chain output {',
    '    type filter hook output priority 0; policy accept;',
    `    ${match('sport')} numgen random mod 100 < ${pct} counter drop`,
    '  }',
    '}',
    '',
  ].join('\n');
  await execIn(ns, 'nft', ['-f', '-'], { input: ruleset });
  return {
    ns,
    table,
    async counters() {
      const res = await execIn(ns, 'nft', ['-j', 'list', 'table', 'inet', table]);
      const out = { input: 0, output: 0 };
      const items = (JSON.parse(res.stdout) as { nftables: Array<Record<string, unknown>> }).nftables;
      for (const item of items) {
        const rule = item.rule as { chain: string; expr: Array<Record<string, unknown>> } | undefined;
        if (!rule) continue;
        for (const e of rule.expr) {
          const c = e.counter as { packets: number } | undefined;
          if (c && (rule.chain === 'input' || rule.chain === 'output')) out[rule.chain] += c.packets;
        }
      }
      return out;
    },
    async remove() {
      await execIn(ns, 'nft', ['delete', 'table', 'inet', table], { check: false });
    },
  };
}
