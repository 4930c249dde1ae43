/**
 * Bulk TCP throughput of Pierce's userspace TCP/IP stack against its baselines, measured in one
 * run on the same kind of veth pair (needs root and the interop lab's tools + iperf3):
 *
 *   (a) pierce      iperf3 -c 127.0.0.1:LPORT in ns A → `pierce wg up --forward LPORT=10.99.0.2:5201`
 *                   → WireGuard → wireguard-go in ns B → kernel iperf3 -s
 *   (b) wg-go       the same with wireguard-go + the kernel's TCP in ns A too (iperf3 -c 10.99.0.2):
 *                   the baseline
 *   (c) veth        kernel TCP over the bare veth (iperf3 -c 10.200.0.2), for context
 *
 * and (a) and (b) again with -R (ns B sends, ns A receives). Prints Mbit/s (receiver side) and
 * the ratio (a)/(b).
 *
 *   npx tsx test/bench/tcp-throughput.ts [--json] [--time SECONDS]   (default 5 s per run)
 *
 * Namespaces and processes are removed at the end, also on failure or Ctrl-C. Exits 1 when a
 * measurement failed (the others are still printed).
 */
import {
  TOOLS,
  TUN,
  cleanupAll,
  createNamespacePair,
  execIn,
  requireLab,
  requireTools,
  spawnIn,
  startTunnel,
  type NamespacePair,
} from '../interop/lab.ts';

const args = process.argv.slice(2);
const json = args.includes('--json');
const timeIdx = args.indexOf('--time');
const TIME_S = timeIdx >= 0 ? Number(args[timeIdx + 1]) : 5;
if (!Number.isFinite(TIME_S) || TIME_S < 1) {
  console.error('usage: npx tsx test/bench/tcp-throughput.ts [--json] [--time SECONDS ≥ 1]');
  process.exit(2);
}
const IPERF_PORT = 5201;
const FWD_PORT = 15201;

interface Row {
  id: string;
  name: string;
  direction: 'A→B' | 'B→A';
  mbitPerSec: number | null;
  retransmits: number | null;
  error?: string;
}

interface IperfJson {
  error?: string;
  end?: {
    sum_received?: { bits_per_second?: number };
    sum_sent?: { retransmits?: number };
  };
}

const log = (s: string): void => {
  if (!json) console.log(s);
};

/** iperf3 client in `ns`; receiver-side Mbit/s. */
async function iperf(ns: string, host: string, port: number, reverse: boolean): Promise<{ mbit: number; retransmits: number | null }> {
  const a = ['-c', host, '-p', String(port), '-t', String(TIME_S), '-J', ...(reverse ? ['-R'] : [])];
  const res = await execIn(ns, 'iperf3', a, { check: false, timeoutMs: (TIME_S + 40) * 1000 });
  let r: IperfJson;
  try {
    r = JSON.parse(res.stdout) as IperfJson;
  } catch {
    throw new Error(`iperf3 ${a.join(' ')}: exit ${res.code}, no JSON: ${res.stdout}${res.stderr}`.trim());
  }
  if (r.error || res.code !== 0) throw new Error(`iperf3 ${a.join(' ')}: ${r.error ?? `exit ${res.code}`}`);
  const bps = r.end?.sum_received?.bits_per_second;
  if (!bps) throw new Error(`iperf3 ${a.join(' ')}: no end.sum_received.bits_per_second`);
  return { mbit: bps / 1e6, retransmits: r.end?.sum_sent?.retransmits ?? null };
}

async function measure(rows: Row[], id: string, name: string, reverse: boolean, fn: () => Promise<{ mbit: number; retransmits: number | null }>): Promise<void> {
  const direction = reverse ? 'B→A' : 'A→B';
  try {
    const { mbit, retransmits } = await fn();
    rows.push({ id, name, direction, mbitPerSec: mbit, retransmits });
    log(`  ${id.padEnd(4)} ${name.padEnd(44)} ${direction}  ${mbit.toFixed(1).padStart(9)} Mbit/s${retransmits !== null ? `  (${retransmits} retransmits)` : ''}`);
  } catch (e) {
    const error = (e as Error).message;
    rows.push({ id, name, direction, mbitPerSec: null, retransmits: null, error });
    log(`  ${id.padEnd(4)} ${name.padEnd(44)} ${direction}  FAILED: ${error.split('\n').slice(0, 12).join('\n        ')}`);
  }
}

async function main(): Promise<number> {
  requireLab();
  requireTools([TOOLS.iperf3]);
  const rows: Row[] = [];
  let pair: NamespacePair | undefined;
  try {
    log(`TCP throughput, iperf3 ${TIME_S} s per run, receiver side (Node ${process.version})\n`);
    pair = await createNamespacePair();
    const A = pair.a.name;
    const B = pair.b.name;
    // One server on all of B's addresses (veth and, once up, the tunnel); runs are sequential.
    const server = spawnIn(B, 'iperf3', ['-s', '-p', String(IPERF_PORT), '--forceflush']);
    await server.waitForLine(/Server listening on/, 10_000);

    await measure(rows, '(c)', 'kernel TCP over bare veth', false, () => iperf(A, pair!.b.ipv4, IPERF_PORT, false));

    for (const reverse of [false, true]) {
      const wg = await startTunnel({ pair, kind: 'kernel' });
      try {
        await measure(rows, '(b)', 'kernel TCP, wireguard-go <-> wireguard-go', reverse, () => iperf(A, TUN.b4, IPERF_PORT, reverse));
      } finally {
        await wg.stop();
      }
    }

    for (const reverse of [false, true]) {
      await measure(rows, '(a)', 'pierce --forward -> wireguard-go -> kernel', reverse, async () => {
        const p = await startTunnel({ pair: pair!, kind: 'pierce', forward: [`${FWD_PORT}=${TUN.b4}:${IPERF_PORT}`] });
        try {
          return await iperf(A, '127.0.0.1', FWD_PORT, reverse);
        } catch (e) {
          throw new Error(`${(e as Error).message}\n${p.output()}`);
        } finally {
          await p.stop();
        }
      });
    }
    await server.kill();
  } finally {
    await cleanupAll();
  }

  const get = (id: string, dir: Row['direction']): number | null => rows.find((r) => r.id === id && r.direction === dir)?.mbitPerSec ?? null;
  const ratio = (x: number | null, y: number | null): number | null => (x !== null && y !== null && y > 0 ? x / y : null);
  const ratios = {
    pierceOverWgGo: ratio(get('(a)', 'A→B'), get('(b)', 'A→B')),
    pierceOverWgGoReverse: ratio(get('(a)', 'B→A'), get('(b)', 'B→A')),
    pierceOverVeth: ratio(get('(a)', 'A→B'), get('(c)', 'A→B')),
  };
  if (json) {
    console.log(JSON.stringify({ node: process.version, timeS: TIME_S, rows, ratios }, null, 2));
  } else {
    const f = (r: number | null): string => (r === null ? 'n/a' : r.toFixed(3));
    console.log(`\n  (a)/(b) pierce over wireguard-go baseline: ${f(ratios.pierceOverWgGo)} (A→B), ${f(ratios.pierceOverWgGoReverse)} (B→A)`);
    console.log(`  (a)/(c) pierce over bare veth:             ${f(ratios.pierceOverVeth)}`);
    console.log('\nA→B: ns A sends (pierce is the TCP sender in (a)); B→A: iperf3 -R, ns A receives.');
    console.log('Figures on shared machines vary by ±5–20%; compare ratios from the same run.');
  }
  return rows.some((r) => r.mbitPerSec === null) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    await cleanupAll().catch(() => undefined);
    process.exit(1);
  },
);
