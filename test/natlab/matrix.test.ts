/**
 * NAT traversal end to end, with real processes only: the NAT lab (lab.ts: nftables NATs,
 * miniupnpd, tayga + DNS64 in network namespaces), `pierce control` and two relays with STUN
 * in its internet, and one `pierce up` per host. For every pair of the matrix (matrix.ts) the
 * test asserts the path the pair ends on (direct or relay) and records the time to the direct
 * path; then it cuts UDP under a live TCP stream and checks that the stream survives on the
 * relay and returns to the direct path.
 *
 * Nothing asserts on timing: waits are bounded polls (a pair that should be direct gets 35 s).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { PIERCE_MJS, cleanupAll, execIn, labProblems, spawnIn, tempPath, waitFor, type ChildHandle } from '../interop/lab.ts';
import { createNatLab, natlabTools, type NatLab } from './lab.ts';
import { requireNatlab } from './tools.ts';
import { startNatMesh, timeToDirect, type MeshNodeSpec, type NatMesh } from './mesh.ts';
import { MATRIX_PAIRS, MATRIX_SITES, formatMatrix, runPair, type PairResult } from './matrix.ts';

let lab: NatLab | undefined;
let mesh: NatMesh | undefined;
const results: PairResult[] = [];

function m(): NatMesh {
  if (!mesh) throw new Error('the NAT lab mesh was not set up (see the beforeAll error)');
  return mesh;
}

/** One node per lab host: the site's name, or name1/name2 on two-host sites. */
export function meshSpecs(l: NatLab): MeshNodeSpec[] {
  return Object.entries(l.hosts).flatMap(([site, hosts]) => hosts.map((host, i) => ({ name: hosts.length > 1 ? `${site}${i + 1}` : site, host })));
}

beforeAll(async () => {
  if (labProblems().length > 0) return;
  requireNatlab(natlabTools(MATRIX_SITES));
  lab = await createNatLab(MATRIX_SITES);
  mesh = await startNatMesh(lab, meshSpecs(lab));
}, 240_000);

afterAll(async () => {
  if (results.length) {
    const table = formatMatrix(results);
    console.log(`\nNAT traversal matrix\n${table}\n`);
    writeFileSync(tempPath('natlab-matrix.txt'), table);
  }
  await lab?.destroy().catch(() => undefined);
  await cleanupAll();
}, 120_000);

describe('NAT lab: every pair ends on the path its NATs allow', () => {
  it('nodes know their NAT: easy and public are not hard, hard NATs map per destination, the UPnP router maps a port, NAT64 reaches IPv4 STUN', async () => {
    expect(labProblems()).toEqual([]);
    const s = async (n: string) => (await m().status(n)).direct!;
    await waitFor('NAT kinds from STUN', 30_000, async () => ((await s('h1')).hardNat === true && (await s('e1')).hardNat === false ? true : undefined), 250);
    expect((await s('pub')).hardNat).toBe(false);
    expect((await s('h2')).hardNat).toBe(true);
    await waitFor('a port mapping on the UPnP router', 30_000, async () => ((await s('up')).portMapping ? true : undefined), 250);
    expect((await s('up')).portMapping).toMatch(/^203\.0\.113\.\d+:\d+ \((pmp|pcp|upnp)\)$/);
    // The IPv6-only node learned its IPv4 face through NAT64 + STUN.
    expect((await s('n64')).endpoints.some((e) => /^203\.0\.113\.\d+:\d+$/.test(e))).toBe(true);
  }, 90_000);

  for (const pair of MATRIX_PAIRS) {
    it(`${pair.label}: ${pair.a} ↔ ${pair.b} → ${pair.want}`, async () => {
      const r = await runPair(m(), pair);
      results.push(r);
      const why = `${pair.a}→${pair.b} via ${r.pathAtoB}, back via ${r.pathBtoA}\n${m().pathLog(pair.a)}\n${m().pathLog(pair.b)}`;
      if (pair.want === 'direct') {
        expect(r.direct, why).toBe(true);
        expect(r.pathAtoB, why).not.toMatch(/^relay/);
        expect(r.pathBtoA, why).not.toMatch(/^relay/);
        if (pair.pathIp) expect(r.pathAtoB.replace(/^\[|\]?:\d+$/g, ''), why).toMatch(pair.pathIp);
        if (pair.birthday) expect(r.birthdayProbes, why).toBeGreaterThan(0);
      } else {
        expect(r.direct, why).toBe(false);
        expect(r.pathAtoB, why).toMatch(/^relay\(r\d\)$/);
        // The relay carries the pair: a ping still answers.
        expect((await m().ping(pair.a, pair.b, 3000))?.path, why).toMatch(/^relay/);
      }
    }, 90_000);
  }
});

describe('port mapping in pierce up', () => {
  it('the mapping pierce up holds is in miniupnpd\'s list while it runs and gone after it stops', async () => {
    const mm = m();
    const up = mm.node('up');
    const mapped = Number((await mm.status('up')).direct!.portMapping!.match(/:(\d+) /)![1]);
    const list = async (): Promise<number[]> => {
      const r = await execIn(up.host.ns, 'upnpc', ['-u', lab!.routers['up']!.descUrl, '-i', '-l'], { check: false, timeoutMs: 15_000 });
      return [...r.stdout.matchAll(/^\s*\d+\s+UDP\s+(\d+)->/gm)].map((x) => Number(x[1]));
    };
    expect(await list()).toContain(mapped);
    await mm.stopNode('up');
    expect(await list()).not.toContain(mapped);
  }, 60_000);
});

describe('fallback: a direct path that dies moves to the relay without losing TCP, then comes back', () => {
  it('a TCP stream e1 → e2 keeps flowing while UDP is cut, and the path returns to direct', async () => {
    const mm = m();
    const e2 = mm.node('e2');
    // A counter service on e2 (127.0.0.1:7000), reached through `pierce nc` from e1.
    const server = spawnIn(e2.host.ns, 'python3', ['-u', '-c', COUNTER_PY], { name: 'counter@e2' });
    await server.waitForLine(/listening/, 10_000);
    await mm.stopNode('e2');
    await mm.startNode({ name: 'e2', host: e2.host, args: ['--forward', '7000'] });
    expect(await timeToDirect(mm, 'e1', 'e2', 30_000)).not.toBeNull();
    const e1 = mm.node('e1');
    const nc: ChildHandle = spawnIn(e1.host.ns, process.execPath, [PIERCE_MJS, 'nc', '--socket', e1.sock, 'e2', '7000'], { name: 'pierce nc e2 7000' });
    const seq = async (after: number): Promise<number> => Number((await nc.waitForLine(/^(\d+)$/, 20_000, { from: after }))[1]);
    const lines = () => nc.lineCount();
    const first = await seq(0);
    // Cut every UDP packet in and out of e1's namespace: the direct path stops answering.
    await execIn(e1.host.ns, 'nft', ['-f', '-'], { input: CUT_UDP });
    await waitFor('e1 → e2 back on the relay', 30_000, async () => {
      const p = (await mm.status('e1')).peers.find((x) => x.name === 'e2');
      return p && !p.direct && p.path.startsWith('relay') ? true : undefined;
    }, 200);
    const during = await seq(lines());
    expect(during).toBeGreaterThan(first);
    expect((await execIn(e1.host.ns, 'nft', ['list', 'table', 'inet', 'plab_cut'])).stdout).toMatch(/counter packets [1-9]/);
    await execIn(e1.host.ns, 'nft', ['delete', 'table', 'inet', 'plab_cut']);
    expect(await timeToDirect(mm, 'e1', 'e2', 30_000)).not.toBeNull();
    const after = await seq(lines());
    expect(after).toBeGreaterThan(during);
    // One connection all along: the numbers never restarted and nc is still running.
    expect(nc.exited).toBe(false);
    const all = nc.stdoutLines().map(Number).filter(Number.isFinite);
    for (let i = 1; i < all.length; i++) expect(all[i]).toBe(all[i - 1]! + 1);
    nc.signal('SIGTERM');
    server.signal('SIGTERM');
  }, 180_000);
});

/** Every UDP packet in and out of a namespace dropped (and counted). */
const CUT_UDP = `table inet plab_cut {
  chain input { type filter hook input priority -10; policy accept; meta l4proto udp counter drop; }
  chain output { type filter hook output priority -10; policy accept; meta l4proto udp counter drop; }
}
`;

/** Sends 0, 1, 2, … one line every 50 ms to each connection on 127.0.0.1:7000. */
const COUNTER_PY = `
import socket, threading, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 7000)); s.listen(8); print("listening", flush=True)
def serve(c):
    i = 0
    try:
        while True:
            c.sendall(b"%d\\n" % i); i += 1; time.sleep(0.05)
    except OSError:
        pass
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
`;
