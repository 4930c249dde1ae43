/**
 * The control benchmark's results (types) and its printed report (test/bench/control.ts runs it).
 */
import type { ViewKind } from './control-clients.ts';
import type { NaiveResult } from './control-naive.ts';

export interface PhaseResult {
  name: string;
  nodes: number;
  msgs: number;
  multi: number;
  bytes: number;
  /** Parse + tests + store of the policy, before the netmap. */
  parseMs: number;
  rebuildMs: number;
  flushMs: number;
  serverMs: number;
  e2eMs: number;
  affected?: number;
  missing?: number;
  extra?: number;
  baseline?: BaselineResult;
}

export interface BaselineResult {
  sessions: number;
  /** Distinct message bodies (parsed once, outside the timing). */
  distinct: number;
  bytes: number;
  serverMs: number;
  e2eMs: number;
  skipped?: string;
}

export type JoinKind = 'user device' | 'server' | 'new user' | 'new tag set';

export interface JoinResult {
  kind: JoinKind;
  id: number;
  observers: number;
  expected: number;
  /** From the map request / the register request to the last peer having it online. */
  fromMap: number;
  fromRegister: number;
  handshakeMs: number;
  rebuilds: number;
  /** Map-message JSON the server sent from the register request until the join completed. */
  sentMB: number;
  timedOut: boolean;
}

export interface SizeResult {
  nodes: number;
  users: number;
  servers: number;
  classes: number;
  rules: number;
  policyBytes: number;
  avgPeers: number;
  maxPeers: number;
  avgFilterBytes: number;
  view: ViewKind;
  join: { bootstrap: 'register' | 'restore'; ms: number; perSec: number; failures: number; rebuilds: number; startMs: number; restoreMs: number };
  memory: { rssMB: number; heapMB: number; rssPerNodeKB: number; heapPerNodeKB: number; clientRssMB: number[] };
  phases: PhaseResult[];
  naive: NaiveResult;
  joins: JoinResult[];
  joinStats: Record<string, { count: number; p50: number; p99: number; max: number; p50Reg: number; p99Reg: number; avgPeers: number; avgSentMB: number; rebuilds: number; timedOut: number }>;
  verify?: { nodes: number; peerMismatches: number; filterMismatches: number };
}

// ------------------------------------------------------------------------------------ report

export const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : '-');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
const pad = (s: string, w: number) => (s.length >= w ? s : s + ' '.repeat(w - s.length));
const lpad = (s: string, w: number) => (s.length >= w ? s : ' '.repeat(w - s.length) + s);

function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? pad(c, w[i]!) : lpad(c, w[i]!))).join('  ')).join('\n');
}

export function print(r: SizeResult): void {
  const out: string[] = [];
  out.push(
    `\n## ${r.nodes} nodes — ${r.users} users, ${r.servers} tagged servers, ${r.classes} netmap classes, ${r.rules} rules (policy ${(r.policyBytes / 1024).toFixed(0)} KiB); ` +
      `peers per node avg ${f0(r.avgPeers)} (max ${r.maxPeers}), filter avg ${(r.avgFilterBytes / 1024).toFixed(1)} KiB; ${r.view} views`,
  );
  out.push(
    r.join.bootstrap === 'register'
      ? `join (new nodes: connect + register with auth key + map, deny-all bootstrap policy): ${(r.join.ms / 1000).toFixed(1)} s, ${f0(r.join.perSec)} nodes/s, ${r.join.rebuilds} netmap rebuilds`
      : `join (restore: nodes preloaded in the store, server start/load ${(r.join.startMs / 1000).toFixed(1)} s; then connect + register with auth key + map, deny-all bootstrap policy): ` +
          `${(r.join.ms / 1000).toFixed(1)} s, ${f0(r.join.perSec)} nodes/s, ${r.join.rebuilds} netmap rebuilds`,
  );
  out.push(
    `memory (control server process, after GC, all nodes joined): RSS +${f0(r.memory.rssMB)} MiB (${f1(r.memory.rssPerNodeKB)} KiB/node), heap +${f0(r.memory.heapMB)} MiB (${f1(r.memory.heapPerNodeKB)} KiB/node); client processes RSS ${r.memory.clientRssMB.map(f0).join(' + ')} MiB`,
  );
  out.push('');
  const rows: string[][] = [['policy change', 'nodes', 'affected', 'MB', 'rebuild ms', 'flush ms', 'server ms', 'e2e ms', 'send-only server ms', 'send-only e2e ms', 'e2e ×']];
  for (const p of r.phases) {
    const b = p.baseline;
    const ok = b && !b.skipped;
    rows.push([
      p.name,
      String(p.nodes),
      p.affected === undefined ? '-' : `${p.affected}${p.missing || p.extra ? ` (!${p.missing}/${p.extra})` : ''}`,
      f1(p.bytes / 1e6),
      f0(p.rebuildMs),
      f0(p.flushMs),
      f0(p.serverMs),
      f0(p.e2eMs),
      ok ? f0(b.serverMs) : b?.skipped ? 'skipped' : '-',
      ok ? f0(b.e2eMs) : '-',
      ok ? (p.e2eMs / b.e2eMs).toFixed(2) : '-',
    ]);
  }
  out.push(table(rows));
  out.push(
    `naive recompute of the realistic policy (all pairs × rules + compileFilter per node, no classes): ${f0(r.naive.ms)} ms` +
      `${r.naive.sampled < r.naive.nodes ? ` (extrapolated from ${r.naive.sampled} nodes)` : ''} vs the netmap's rebuild for it ("revert") ${f0(r.phases[3]!.rebuildMs)} ms → ${(r.naive.ms / r.phases[3]!.rebuildMs).toFixed(1)}×; ` +
      `peer sets ${r.naive.mismatches === 0 ? 'identical' : `DIFFER on ${r.naive.mismatches} nodes`}`,
  );
  if (r.joins.length) {
    out.push('');
    const jr: string[][] = [['join (one at a time)', 'count', 'peers', 'p50 ms', 'p99 ms', 'max ms', 'p50 from register', 'p99 from register', 'MB sent/join', 'rebuilds', 'timed out']];
    for (const [k, s] of Object.entries(r.joinStats)) {
      jr.push([k, String(s.count), f0(s.avgPeers), f1(s.p50), f1(s.p99), f1(s.max), f1(s.p50Reg), f1(s.p99Reg), f1(s.avgSentMB), String(s.rebuilds), String(s.timedOut)]);
    }
    out.push(table(jr));
  }
  if (r.verify) out.push(`verify: ${r.verify.nodes} node views vs server netmap: ${r.verify.peerMismatches} peer-set, ${r.verify.filterMismatches} filter mismatches`);
  console.log(out.join('\n'));
}

