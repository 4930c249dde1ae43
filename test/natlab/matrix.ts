/**
 * The NAT traversal matrix: which pairs of lab sites must end up on a direct path and which on
 * the relay, and a runner that measures each pair's time to the direct path. The matrix test
 * asserts it; `npm run bench` (test/bench/natlab.ts) repeats it for medians.
 */
import { ONE_OF_EACH, type SiteSpec } from './lab.ts';
import { timeToDirect, type NatMesh } from './mesh.ts';

/** One site of each kind (two of easy and hard, for easy–easy and hard–hard). */
export const MATRIX_SITES: SiteSpec[] = ONE_OF_EACH;

export interface MatrixPair {
  label: string;
  a: string;
  b: string;
  want: 'direct' | 'relay';
  /** What the direct path's address must look like (e.g. a private LAN address). */
  pathIp?: RegExp;
  /** The direct path needs birthday probing. */
  birthday?: boolean;
}

/** Node names: the site name, with 1 and 2 for two-host sites. */
export const MATRIX_PAIRS: MatrixPair[] = [
  { label: 'public – easy', a: 'pub', b: 'e1', want: 'direct' },
  { label: 'easy – easy', a: 'e1', b: 'e2', want: 'direct', pathIp: /^203\.0\.113\./ },
  { label: 'easy – hard (birthday)', a: 'e1', b: 'h1', want: 'direct', pathIp: /^203\.0\.113\./, birthday: true },
  { label: 'public – hard', a: 'pub', b: 'h2', want: 'direct' },
  { label: 'hard+port mapping – hard', a: 'up', b: 'h2', want: 'direct' },
  { label: 'same LAN', a: 'lan1', b: 'lan2', want: 'direct', pathIp: /^192\.168\./ },
  { label: 'carrier NAT with hairpinning', a: 'cgh1', b: 'cgh2', want: 'direct', pathIp: /^203\.0\.113\./ },
  { label: 'NAT64 (IPv6-only) – easy', a: 'n64', b: 'e2', want: 'direct' },
  { label: 'UDP blocked – easy', a: 'blk', b: 'e2', want: 'relay' },
  { label: 'hard – hard (no opt-in)', a: 'h1', b: 'h2', want: 'relay' },
  { label: 'carrier NAT without hairpinning', a: 'cg1', b: 'cg2', want: 'relay' },
];

export interface PairResult {
  pair: MatrixPair;
  direct: boolean;
  /** Time from the first ping to the direct path (ms). */
  ms: number | null;
  pathAtoB: string;
  pathBtoA: string;
  birthdayProbes: number;
}

/** How long a pair that should stay on the relay is watched. */
export const RELAY_WATCH_MS = 15_000;
/** Bound for the direct path: birthday probing at 100/s may need ~20 s in the worst 0.1%. */
export const DIRECT_TIMEOUT_MS = 35_000;

/** Pings a → b until direct (or the bound), then reads both sides' paths. */
export async function runPair(mesh: NatMesh, pair: MatrixPair): Promise<PairResult> {
  const before = (await mesh.status(pair.a)).direct?.birthday.probesSent ?? 0;
  const beforeB = (await mesh.status(pair.b)).direct?.birthday.probesSent ?? 0;
  const r = await timeToDirect(mesh, pair.a, pair.b, pair.want === 'direct' ? DIRECT_TIMEOUT_MS : RELAY_WATCH_MS);
  // The other side sees the same path once its own pong came back.
  let back = await mesh.ping(pair.b, pair.a, 3000);
  for (let i = 0; r && i < 20 && !back?.direct; i++) back = await mesh.ping(pair.b, pair.a, 3000);
  const sa = await mesh.status(pair.a);
  const sb = await mesh.status(pair.b);
  return {
    pair,
    direct: r !== null,
    ms: r?.ms ?? null,
    pathAtoB: sa.peers.find((p) => p.name === pair.b)?.path ?? '?',
    pathBtoA: back?.path ?? sb.peers.find((p) => p.name === pair.a)?.path ?? '?',
    birthdayProbes: (sa.direct?.birthday.probesSent ?? 0) - before + (sb.direct?.birthday.probesSent ?? 0) - beforeB,
  };
}

export function formatMatrix(results: PairResult[]): string {
  const rows = results.map((r) => [
    r.pair.label,
    `${r.pair.a} → ${r.pair.b}`,
    r.pair.want,
    r.direct ? 'direct' : 'relay',
    r.ms === null ? '–' : `${(r.ms / 1000).toFixed(2)} s`,
    r.pathAtoB,
    r.birthdayProbes ? String(r.birthdayProbes) : '',
  ]);
  const head = ['pair', 'nodes', 'expected', 'got', 'time to direct', 'path a→b', 'birthday probes'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(w[i]!)).join('  ');
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}
