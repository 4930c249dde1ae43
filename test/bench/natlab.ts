/**
 * NAT traversal bench in the NAT lab (test/natlab: nftables NATs, miniupnpd, tayga in network
 * namespaces; needs root). Real processes: control, two relays with STUN, one `pierce up` per
 * lab host.
 *
 *   matrix       every pair of test/natlab/matrix.ts, --runs times (default 3); between runs
 *                every node restarts on a fresh random UDP port (`--port 0`), so NAT mappings
 *                are new. Per pair: the path it ends on and the median time from the first
 *                ping to the direct path. Goals: easy–easy under 1 s, easy–hard (birthday, 100
 *                probes/s) under 10 s.
 *   throughput   --mb MB (default 32) from e1 to e2 through `pierce nc` (TCP over the node's
 *                netstack and WireGuard), measured first while the lab is idle: three rounds on
 *                the direct path alternating with three on the relay path of the same pair
 *                (UDP cut in e1's namespace); medians. Also disco ping round trips on each path.
 *
 *   npx tsx test/bench/natlab.ts [--runs N] [--mb N] [--json]
 */
import { PIERCE_MJS, cleanupAll, execIn, spawnIn, waitFor } from '../interop/lab.ts';
import { createNatLab, natlabTools } from '../natlab/lab.ts';
import { requireNatlab } from '../natlab/tools.ts';
import { startNatMesh, timeToDirect, type NatMesh } from '../natlab/mesh.ts';
import { MATRIX_PAIRS, MATRIX_SITES, runPair, type PairResult } from '../natlab/matrix.ts';
import { benchArgs } from './args.ts';

const args = benchArgs('npx tsx test/bench/natlab.ts [--runs N] [--mb N] [--json]');
const json = args.json;
const RUNS = args.num('--runs', 3);
const MB = args.num('--mb', 32);
const progress = (m: string): void => void process.stderr.write(`natlab bench: ${m}\n`);

const median = (xs: number[]): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

const CUT_UDP = `table inet bench_cut {
  chain input { type filter hook input priority -10; policy accept; meta l4proto udp drop; }
  chain output { type filter hook output priority -10; policy accept; meta l4proto udp drop; }
}
`;

/** A sink on 127.0.0.1:9000 in `ns` that prints "got BYTES in SECONDS" per connection. */
const SINK_PY = `
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 9000)); s.listen(4); print("listening", flush=True)
while True:
    c, _ = s.accept(); n = 0; t0 = None
    while True:
        b = c.recv(262144)
        if not b: break
        if t0 is None: t0 = time.monotonic()
        n += len(b)
    print("got %d in %.6f" % (n, time.monotonic() - (t0 or time.monotonic())), flush=True)
    c.close()
`;

async function transfer(mesh: NatMesh, sink: ReturnType<typeof spawnIn>): Promise<number> {
  const from = sink.lineCount();
  const e1 = mesh.node('e1');
  const r = await execIn(e1.host.ns, 'sh', ['-c', `head -c ${MB}M /dev/zero | ${process.execPath} ${PIERCE_MJS} nc --socket ${e1.sock} e2 9000 >/dev/null`], { check: false, timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`pierce nc: exit ${r.code}: ${r.stderr}`);
  const m = await sink.waitForLine(/^got (\d+) in ([\d.]+)/, 30_000, { from });
  const bytes = Number(m[1]);
  if (bytes !== MB << 20) throw new Error(`sink got ${bytes} bytes, sent ${MB << 20}`);
  return (bytes * 8) / Number(m[2]) / 1e6;
}

async function main(): Promise<void> {
  requireNatlab(natlabTools(MATRIX_SITES));
  const t0 = performance.now();
  const lab = await createNatLab(MATRIX_SITES);
  progress(`lab built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const specs = Object.entries(lab.hosts).flatMap(([site, hosts]) => hosts.map((host, i) => ({ name: hosts.length > 1 ? `${site}${i + 1}` : site, host, args: ['--port', '0'] })));
  for (const s of specs) if (s.name === 'e2') s.args.push('--forward', '9000');
  const mesh = await startNatMesh(lab, specs);
  progress(`mesh of ${specs.length} nodes up after ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // Throughput first, while nothing else runs: direct and relay rounds of the same pair
  // alternate (the relay round cuts UDP in e1's namespace).
  const sink = spawnIn(mesh.node('e2').host.ns, 'python3', ['-u', '-c', SINK_PY], { name: 'sink@e2' });
  await sink.waitForLine(/listening/, 10_000);
  const directMbps: number[] = [];
  const relayMbps: number[] = [];
  const directRtt: number[] = [];
  const relayRtt: number[] = [];
  const pings = async (into: number[], direct: boolean): Promise<void> => {
    for (let i = 0; i < 20; i++) {
      const r = await mesh.ping('e1', 'e2', 2000);
      if (r && r.direct === direct) into.push(r.ms);
    }
  };
  const e1ns = mesh.node('e1').host.ns;
  for (let i = 0; i < 3; i++) {
    if (!(await timeToDirect(mesh, 'e1', 'e2', 30_000))) throw new Error('e1 → e2 never went direct');
    directMbps.push(await transfer(mesh, sink));
    await pings(directRtt, true);
    await execIn(e1ns, 'nft', ['-f', '-'], { input: CUT_UDP });
    await waitFor('e1 → e2 on the relay', 30_000, async () => ((await mesh.status('e1')).peers.find((p) => p.name === 'e2')?.direct === false ? true : undefined), 200);
    relayMbps.push(await transfer(mesh, sink));
    await pings(relayRtt, false);
    await execIn(e1ns, 'nft', ['delete', 'table', 'inet', 'bench_cut']);
  }
  progress(`throughput: direct ${directMbps.map((x) => x.toFixed(0)).join(', ')} Mbit/s; relay ${relayMbps.map((x) => x.toFixed(0)).join(', ')} Mbit/s`);

  const runs: PairResult[][] = [];
  for (let run = 0; run < RUNS; run++) {
    // Fresh nodes (and new NAT mappings) for every run; the throughput rounds made e1–e2 direct.
    {
      await Promise.all(specs.map((s) => mesh.stopNode(s.name)));
      await Promise.all(specs.map((s) => mesh.startNode(s)));
      await Promise.all(specs.map((s) => mesh.ready(s.name)));
    }
    const direct = MATRIX_PAIRS.filter((p) => p.want === 'direct');
    const res: PairResult[] = [];
    for (const p of direct) res.push(await runPair(mesh, p));
    // Pairs that stay on the relay are watched side by side.
    res.push(...(await Promise.all(MATRIX_PAIRS.filter((p) => p.want === 'relay').map((p) => runPair(mesh, p)))));
    runs.push(res);
    progress(`run ${run + 1}/${RUNS}: ${res.map((r) => `${r.pair.a}-${r.pair.b} ${r.direct ? (r.ms! / 1000).toFixed(2) + ' s' : 'relay'}`).join(', ')}`);
  }

  const rows = MATRIX_PAIRS.map((pair) => {
    const rs = runs.map((r) => r.find((x) => x.pair === pair)!);
    const times = rs.filter((r) => r.direct).map((r) => r.ms!);
    return {
      pair: pair.label,
      nodes: `${pair.a}–${pair.b}`,
      expected: pair.want,
      direct: `${times.length}/${rs.length}`,
      medianMs: median(times),
      timesMs: times.map((t) => Math.round(t)),
      path: rs[rs.length - 1]!.pathAtoB,
      birthdayProbes: median(rs.filter((r) => r.birthdayProbes > 0).map((r) => r.birthdayProbes)),
    };
  });
  const out = {
    runs: RUNS,
    matrix: rows,
    throughputMbps: { direct: median(directMbps), relay: median(relayMbps), directAll: directMbps, relayAll: relayMbps },
    pingMs: { direct: median(directRtt), relay: median(relayRtt), samples: [directRtt.length, relayRtt.length] },
  };
  if (json) console.log(JSON.stringify(out, null, 2));
  else {
    console.log(`\nNAT traversal matrix (${RUNS} runs; time from the first ping to the direct path)\n`);
    console.log('| pair | nodes | expected | direct in | median time to direct | all runs (ms) | birthday probes (median) | path |');
    console.log('|---|---|---|---|---|---|---|---|');
    for (const r of rows) {
      console.log(`| ${r.pair} | ${r.nodes} | ${r.expected} | ${r.direct} | ${r.medianMs === null ? '–' : `${(r.medianMs / 1000).toFixed(2)} s`} | ${r.timesMs.join(', ') || '–'} | ${r.birthdayProbes ?? ''} | ${r.path} |`);
    }
    const d = out.throughputMbps;
    console.log(`\nthroughput e1 → e2, ${MB} MB via pierce nc (median of 3): direct ${d.direct!.toFixed(0)} Mbit/s, relay ${d.relay!.toFixed(0)} Mbit/s (direct/relay ${(d.direct! / d.relay!).toFixed(2)}×)`);
    const p = out.pingMs;
    console.log(`disco ping e1 → e2, p50 of ${p.samples.join(' / ')}: direct ${p.direct?.toFixed(2)} ms, relay ${p.relay?.toFixed(2)} ms`);
  }
  sink.signal('SIGTERM');
  await lab.destroy();
}

main()
  .catch((e: Error) => {
    console.error(`natlab bench failed: ${e.stack ?? e.message}`);
    process.exitCode = 1;
  })
  .finally(async () => {
    await cleanupAll();
    process.exit();
  });
