/**
 * The control plane at scale: `pierce control` (gateway/src/control) with 1,000 and 10,000
 * simulated nodes and a realistic policy (test/bench/control-tailnet.ts), with baselines from the
 * same run.
 *
 *   npx tsx test/bench/control.ts [--nodes 1000,10000] [--json] [--clients 2] [--joins N]
 *                                 [--concurrency 64] [--view auto|full|lean] [--no-verify]
 *                                 [--bootstrap auto|register|restore] [--naive-ms 5000] [--cpu-prof DIR]
 *
 * The control server (SQLite store in a temp dir) runs in this process; the nodes run in
 * --clients child processes (test/bench/control-clients.ts, forked with tsx), each node a real
 * protocol client (WebSocket + Noise IK + framing + JSON) with its own connection. Timestamps
 * are performance.timeOrigin + performance.now() in every process (same machine).
 *
 * Per tailnet size:
 *   join        every node connects, registers with a reusable pre-tagged auth key (one per user
 *               and one per tag set, made with state.createAuthKey) and opens its map stream,
 *               --concurrency at a time per client process, under a deny-all bootstrap policy
 *               (same groups and tagOwners, no rules), so the realistic policy is then pushed
 *               to everyone at once ("initial" below). --bootstrap register: the nodes are new
 *               (default up to 2,000 nodes); restore: the nodes are written into the store
 *               before the server starts, as after a restart, and register again with their
 *               auth keys (default above 2,000 nodes: registering 10,000 new nodes costs
 *               minutes of server CPU in state.ts's per-registration scans of all nodes).
 *   policy      setPolicy(text) → every affected node has received and applied its delta (its
 *               last map message timestamped in the client process); affected = nodes whose
 *               peer set or packet filter changed (server netmap digests before/after), checked
 *               against the nodes that got a message. Phases:
 *                 initial      deny-all → realistic (every node gets all its peers and a filter)
 *                 +eng→prod    adds "group:eng → tag:prod:443"
 *                 all filters  widens "tag:monitoring → *:9100" to "*:9100-9101" (every filter)
 *                 revert       back to the realistic policy (peers removed, filters changed)
 *               Columns: nodes that got a message, affected nodes, wire bytes (Noise
 *               ciphertext as received), server time in the rebuild (netmap.setPolicy), in the
 *               flush (build + encrypt + send of every delta), from the call to the end of the
 *               flush, and end to end (call → last node applied its delta).
 *   baseline    "send only": the deltas of the phase recorded as the server sent them and
 *               parsed (outside the timing), then for each of the same sessions JSON.stringify
 *               + Noise-encrypt + send the same message, computing nothing; same end-to-end
 *               measurement ("e2e ×" = netmap e2e / send-only e2e). Skipped when the deltas
 *               exceed 3 GB. And "naive recompute": every node's peers (all pairs × all rules,
 *               srcMatches / dstMatches as policy `evaluate` does) plus its filter
 *               (compileFilter, the reference compiler), for --naive-ms then extrapolated to
 *               all nodes, against the netmap's rebuild of the same policy.
 *   joins       --joins nodes (default 100, 30 above 2,000 nodes) join one at a time: devices
 *               of existing users, servers of existing tag sets, first devices of new users and
 *               servers with a new tag set (new netmap classes); latency from the node's map
 *               request (and from its register request) until every peer that should see it
 *               (server netmap.peersOf) has it online in its view; MB = map JSON the server sent
 *               meanwhile (mostly packet filters re-sent to the nodes whose sources changed).
 *   memory      this process's RSS and heap growth with all nodes joined under the realistic
 *               policy (after GC, minus the same before the store was opened), per node.
 *   verify      at the end every node's view (peer ids, filter) equals the server's netmap.
 *
 * Run time on 2 vCPUs: ~30 s for 1,000 nodes, ~5.5 min for 10,000 (3.4 GB initial push,
 * 1.6 GB "+eng→prod" push and its baseline, 10,000 handshakes). Views are NetmapView up to
 * 2,000 nodes, lean above (control-clients.ts). The clients share the machine's cores with
 * the server, so end-to-end times include their parsing.
 * The bench re-runs itself once under bash with `ulimit -n` raised, --expose-gc and a larger
 * heap. The server's keepalive is set to 10 minutes so pings do not land inside measurements.
 */
import { fork, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startControl, type ControlServer } from '../../gateway/src/control/server.ts';
import { ControlSession } from '../../gateway/src/control/session.ts';
import { SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { AddressAllocator } from '../../gateway/src/control/addresses.ts';
import { DiscoPublic } from '../../src/key/keys.ts';
import { checkPolicy, type Policy } from '../../src/policy/index.ts';
import { CHILD_FLAG, type ClientNode, type ViewKind } from './control-clients.ts';
import { TAGS, TAG_SETS, idsDigest, makeTailnet, policyText, textHash, type Spec, type Tailnet } from './control-tailnet.ts';
import { naiveRecompute } from './control-naive.ts';
import { f0, print, type BaselineResult, type JoinKind, type JoinResult, type PhaseResult, type SizeResult } from './control-report.ts';

// ------------------------------------------------------------------------------------ options

const args = process.argv.slice(2);
const json = args.includes('--json');
const verify = !args.includes('--no-verify');
function opt(name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}
function usage(msg: string): never {
  console.error(`${msg}\nusage: npx tsx test/bench/control.ts [--nodes 1000,10000] [--json] [--clients 2] [--joins N] [--concurrency 64] [--view auto|full|lean] [--bootstrap auto|register|restore] [--no-verify] [--naive-ms MS] [--cpu-prof DIR]`);
  process.exit(2);
}
const SIZES = (opt('--nodes') ?? '1000,10000').split(',').map(Number);
if (SIZES.some((n) => !Number.isInteger(n) || n < 10)) usage('bad --nodes');
const CLIENTS = Number(opt('--clients') ?? 2);
if (!Number.isInteger(CLIENTS) || CLIENTS < 1 || CLIENTS > 8) usage('bad --clients');
const JOINS = opt('--joins') === undefined ? undefined : Number(opt('--joins'));
if (JOINS !== undefined && (!Number.isInteger(JOINS) || JOINS < 0)) usage('bad --joins');
const CONCURRENCY = Number(opt('--concurrency') ?? 64);
const VIEW = opt('--view') ?? 'auto';
const BOOTSTRAP = opt('--bootstrap') ?? 'auto';
if (!['auto', 'register', 'restore'].includes(BOOTSTRAP)) usage('bad --bootstrap');
/** Time spent on the naive recompute (then extrapolated to all nodes). */
const NAIVE_BUDGET_MS = Number(opt('--naive-ms') ?? 5000);
if (!['auto', 'full', 'lean'].includes(VIEW)) usage('bad --view');

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLIENT_SCRIPT = join(ROOT, 'test', 'bench', 'control-clients.ts');
const REEXEC_ENV = 'PIERCE_CONTROL_BENCH_REEXEC';
const RAISE_NOFILE = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"';

const log = (s: string): void => {
  if (!json) console.error(s);
};

const nofile = (): number => {
  const s = execFileSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  return s === 'unlimited' ? Infinity : Number(s);
};

// Re-run once with a raised open-file limit, an exposed gc() and a larger heap.
if (!process.env[REEXEC_ENV]) {
  const prof = opt('--cpu-prof');
  const profArgs = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [];
  const r = spawnSync('bash', ['-c', RAISE_NOFILE, 'bash', process.execPath, '--expose-gc', '--max-old-space-size=12288', ...profArgs, ...process.execArgv, process.argv[1]!, ...args], {
    stdio: 'inherit',
    env: { ...process.env, [REEXEC_ENV]: '1' },
  });
  process.exit(r.status ?? 1);
}

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------ server instrumentation

/** Every map message the server sends goes through ControlSession.send: count (and record) them. */
const counters = { sent: 0, sentChars: 0 };
let recorder: { items: [ControlSession, string][]; bytes: number; cap: number; overflow: boolean } | undefined;
const origSend = ControlSession.prototype.send;
ControlSession.prototype.send = function (this: ControlSession, body: string): void {
  counters.sent++;
  counters.sentChars += body.length;
  if (recorder) {
    if (recorder.bytes + body.length > recorder.cap) recorder.overflow = true;
    else {
      recorder.items.push([this, body]);
      recorder.bytes += body.length;
    }
  }
  origSend.call(this, body);
};

interface NetmapTimes {
  flushes: number;
  flushStart: number;
  flushEnd: number;
  flushCount: number;
  rebuildStart: number;
  rebuildEnd: number;
}

function instrument(server: ControlServer): NetmapTimes {
  const t: NetmapTimes = { flushes: 0, flushStart: 0, flushEnd: 0, flushCount: 0, rebuildStart: 0, rebuildEnd: 0 };
  const nm = server.state.netmap;
  const flush = nm.flush.bind(nm);
  nm.flush = () => {
    const s = now();
    const before = nm.stats.messages;
    flush();
    t.flushStart = s;
    t.flushEnd = now();
    t.flushCount = nm.stats.messages - before;
    t.flushes++;
  };
  const setPolicy = nm.setPolicy.bind(nm);
  nm.setPolicy = (p: Policy) => {
    t.rebuildStart = now();
    setPolicy(p);
    t.rebuildEnd = now();
  };
  return t;
}

// ------------------------------------------------------------------------------------ client processes

interface Child {
  proc: ChildProcess;
  call<T = Record<string, unknown>>(msg: Record<string, unknown>): Promise<T>;
}

/** Observations of watched node ids: peer id → observer id → time it saw the peer online. */
const observed = new Map<number, Map<number, number>>();
const children: Child[] = [];

function startChild(): Child {
  const proc = fork(CLIENT_SCRIPT, [CHILD_FLAG], {
    cwd: ROOT,
    execArgv: ['--import', 'tsx', '--max-old-space-size=8192'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let next = 1;
  const waiting = new Map<number, { resolve: (v: never) => void; reject: (e: Error) => void }>();
  proc.on('message', (m: { reply?: number; error?: string; observed?: [number, number, number][] }) => {
    if (m.observed) {
      for (const [peer, observer, at] of m.observed) {
        let o = observed.get(peer);
        if (!o) observed.set(peer, (o = new Map()));
        if (!o.has(observer)) o.set(observer, at);
      }
      return;
    }
    const w = m.reply === undefined ? undefined : waiting.get(m.reply);
    if (!w) return;
    waiting.delete(m.reply!);
    if (m.error) w.reject(new Error(`client process: ${m.error}`));
    else w.resolve(m as never);
  });
  proc.on('exit', (code) => {
    for (const w of waiting.values()) w.reject(new Error(`client process exited (${code})`));
    waiting.clear();
  });
  return {
    proc,
    call<T>(msg: Record<string, unknown>): Promise<T> {
      const id = next++;
      return new Promise<T>((resolve, reject) => {
        waiting.set(id, { resolve: resolve as (v: never) => void, reject });
        proc.send({ ...msg, id });
      });
    },
  };
}

function killChildren(): void {
  for (const c of children) if (c.proc.exitCode === null) c.proc.kill();
}
process.on('exit', killChildren);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

async function childrenStatus(): Promise<{ total: number; msgs: number; lastAt: number; closed: number }> {
  const r = await Promise.all(children.map((c) => c.call<{ total: number; msgs: number; lastAt: number; closed: number }>({ cmd: 'phase-status' })));
  return r.reduce((a, b) => ({ total: a.total + b.total, msgs: a.msgs + b.msgs, lastAt: Math.max(a.lastAt, b.lastAt), closed: a.closed + b.closed }));
}

/** Waits until the nodes have received every map message the server sent (and no flush is pending). */
async function quiesce(times: NetmapTimes, timeoutMs = 300_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    await sleep(10);
    const s = await childrenStatus();
    if (s.total === counters.sent) {
      // A flush scheduled but not run yet would send more: give it one turn.
      await new Promise<void>((r) => setImmediate(r));
      if ((await childrenStatus()).total === counters.sent) return;
    }
    if (s.closed > 0) throw new Error(`${s.closed} node connections closed`);
    if (Date.now() > end) throw new Error(`timed out: nodes received ${s.total} of ${counters.sent} map messages (flushes ${times.flushes})`);
  }
}

// ------------------------------------------------------------------------------------ server-side digests

interface Digest {
  peers: string;
  filter: string;
}

function serverDigests(server: ControlServer): Map<number, Digest> {
  const nm = server.state.netmap;
  const out = new Map<number, Digest>();
  for (const id of server.state.nodes.keys()) {
    if (!nm.node(id)) continue;
    out.set(id, { peers: idsDigest(nm.peersOf(id)), filter: textHash(nm.filterJsonOf(id)) });
  }
  return out;
}

// ------------------------------------------------------------------------------------ phases



async function phaseReport(): Promise<{ got: number[]; bytes: number; msgs: number; lastAt: number; multi: number }> {
  const r = await Promise.all(children.map((c) => c.call<{ got: number[]; bytes: number; msgs: number; lastAt: number; multi: number }>({ cmd: 'phase-report' })));
  return r.reduce((a, b) => ({ got: a.got.concat(b.got), bytes: a.bytes + b.bytes, msgs: a.msgs + b.msgs, lastAt: Math.max(a.lastAt, b.lastAt), multi: a.multi + b.multi }));
}

async function policyPhase(server: ControlServer, times: NetmapTimes, name: string, text: string, withBaseline: boolean, recordCap: number): Promise<PhaseResult> {
  await quiesce(times);
  const before = verify ? serverDigests(server) : undefined;
  await Promise.all(children.map((c) => c.call({ cmd: 'phase-start' })));
  const flushes0 = times.flushes;
  if (withBaseline) recorder = { items: [], bytes: 0, cap: recordCap, overflow: false };
  gc();
  const t0 = now();
  await server.state.setPolicy(text);
  for (let i = 0; times.flushes === flushes0 && i < 1000; i++) await new Promise<void>((r) => setImmediate(r));
  const rec = recorder;
  recorder = undefined;
  await quiesce(times);
  const rep = await phaseReport();
  const res: PhaseResult = {
    name,
    nodes: rep.got.length,
    msgs: rep.msgs,
    multi: rep.multi,
    bytes: rep.bytes,
    parseMs: times.rebuildStart - t0,
    rebuildMs: times.rebuildEnd - times.rebuildStart,
    flushMs: times.flushEnd - times.flushStart,
    serverMs: times.flushEnd - t0,
    e2eMs: rep.lastAt - t0,
  };
  if (before) {
    const after = serverDigests(server);
    const got = new Set(rep.got);
    let affected = 0;
    let missing = 0;
    for (const [id, d] of after) {
      const b = before.get(id);
      const changed = !b || b.peers !== d.peers || b.filter !== d.filter;
      if (changed) affected++;
      if (changed && !got.has(id)) missing++;
      if (!changed && got.has(id)) res.extra = (res.extra ?? 0) + 1;
    }
    res.affected = affected;
    res.missing = missing;
    res.extra ??= 0;
  }
  if (rec) res.baseline = await sendOnlyBaseline(times, rec);
  return res;
}

/** Sends the recorded deltas again to the same sessions: stringify + encrypt + send, nothing else. */
async function sendOnlyBaseline(times: NetmapTimes, rec: NonNullable<typeof recorder>): Promise<BaselineResult> {
  if (rec.overflow) return { sessions: 0, distinct: 0, bytes: 0, serverMs: 0, e2eMs: 0, skipped: `deltas over ${(rec.cap / 1e6).toFixed(0)} MB` };
  // Outside the timing: parse each distinct body once.
  // (Keyed by a hash: V8 hashes long strings by their length only.)
  const parsed = new Map<string, unknown>();
  const work: [ControlSession, unknown][] = [];
  for (const [s, body] of rec.items) {
    const h = `${body.length}:${textHash(body)}`;
    let o = parsed.get(h);
    if (o === undefined) parsed.set(h, (o = JSON.parse(`{${body}}`)));
    work.push([s, o]);
  }
  const distinct = parsed.size;
  parsed.clear();
  rec.items.length = 0;
  await quiesce(times);
  await Promise.all(children.map((c) => c.call({ cmd: 'phase-start' })));
  gc();
  const t0 = now();
  for (const [s, o] of work) s.send(JSON.stringify(o).slice(1, -1));
  const t1 = now();
  await quiesce(times);
  const rep = await phaseReport();
  return { sessions: work.length, distinct, bytes: rep.bytes, serverMs: t1 - t0, e2eMs: rep.lastAt - t0 };
}

// ------------------------------------------------------------------------------------ joins



async function joinSeries(server: ControlServer, times: NetmapTimes, tn: Tailnet, count: number, keys: Map<string, string>): Promise<JoinResult[]> {
  const st = server.state;
  // Kinds: 40% devices of existing users, 30% servers of existing tag sets, 20% first devices of
  // new users, 10% servers with a tag set no node has yet.
  const kinds: JoinKind[] = [];
  for (let i = 0; i < count; i++) {
    const m = i % 10;
    kinds.push(m < 4 ? 'user device' : m < 7 ? 'server' : m < 9 ? 'new user' : 'new tag set');
  }
  const existing = new Set(TAG_SETS.map(([t]) => [...t].sort().join(',')));
  const newSets: string[][] = [];
  for (const a of TAGS) for (const b of TAGS) if (a < b && !existing.has(`${a},${b}`)) newSets.push([a, b]);
  const deviceUsers = tn.users.filter((u) => u.name !== tn.admin);
  const nodes: { kind: JoinKind; node: ClientNode }[] = [];
  for (let i = 0; i < kinds.length; i++) {
    const kind = kinds[i]!;
    let authKey: string;
    if (kind === 'user device') authKey = keys.get(deviceUsers[(i * 7919) % deviceUsers.length]!.name)!;
    else if (kind === 'server') authKey = keys.get(TAG_SETS[i % TAG_SETS.length]![0].join(','))!;
    else if (kind === 'new user') {
      const name = `newuser${i}@example.com`;
      await st.createUser(name);
      authKey = (await st.createAuthKey({ user: name, reusable: true })).key;
    } else {
      const tags = newSets[i % newSets.length]!;
      newSets.splice(i % newSets.length, 1);
      authKey = (await st.createAuthKey({ user: tn.admin, tags, reusable: true })).key;
    }
    nodes.push({ kind, node: { idx: tn.specs.length + i, hostname: `join${i}`, authKey } });
  }
  let maxId = 0;
  for (const id of st.nodes.keys()) maxId = Math.max(maxId, id);
  await Promise.all(children.map((c) => c.call({ cmd: 'watch', from: maxId + 1 })));
  const out: JoinResult[] = [];
  for (let i = 0; i < nodes.length; i++) {
    await quiesce(times);
    const { kind, node } = nodes[i]!;
    const rebuilds0 = st.netmap.stats.rebuilds;
    const chars0 = counters.sentChars;
    const child = children[i % children.length]!;
    const r = await child.call<{ id: number; tConnect: number; tReg: number; tMap: number; tFull: number }>({ cmd: 'join-one', node });
    const expected = new Set(st.netmap.peersOf(r.id));
    const deadline = Date.now() + 30_000;
    let timedOut = false;
    let seen = 0;
    let last = 0;
    for (;;) {
      const o = observed.get(r.id);
      seen = 0;
      last = 0;
      if (o) {
        for (const [obs, at] of o) {
          if (!expected.has(obs)) continue;
          seen++;
          last = Math.max(last, at);
        }
      }
      if (seen >= expected.size) break;
      if (Date.now() > deadline) {
        timedOut = true;
        break;
      }
      await sleep(2);
    }
    if (expected.size === 0) last = r.tFull;
    out.push({
      kind,
      id: r.id,
      observers: observed.get(r.id)?.size ?? 0,
      expected: expected.size,
      fromMap: last - r.tMap,
      fromRegister: last - r.tReg,
      handshakeMs: r.tReg - r.tConnect,
      rebuilds: st.netmap.stats.rebuilds - rebuilds0,
      sentMB: (counters.sentChars - chars0) / 1e6,
      timedOut,
    });
  }
  await quiesce(times);
  return out;
}

// ------------------------------------------------------------------------------------ one size


function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}

async function runSize(n: number): Promise<SizeResult> {
  const need = n + 2000;
  const limit = nofile();
  if (limit < need) {
    throw new Error(
      `open-file limit is ${limit} but ${n} nodes need about ${need} descriptors in this process (one socket per node on the server side). ` +
        `Raise it (e.g. "ulimit -n 65536" as root, or LimitNOFILE / /etc/security/limits.conf) or run fewer nodes (--nodes).`,
    );
  }
  const tn = makeTailnet(n);
  counters.sent = 0;
  counters.sentChars = 0;
  const view: ViewKind = VIEW === 'auto' ? (n <= 2000 ? 'full' : 'lean') : (VIEW as ViewKind);
  const realistic = tn.policy;
  const engProd = policyText(tn.users, { engProd: true });
  const engProdWide = policyText(tn.users, { engProd: true, monitoringWide: true });
  const rules = checkPolicy(realistic).policy.acls.length;
  log(`\n== ${n} nodes: ${tn.users.length} users, ${tn.specs.filter((s) => s.kind === 'server').length} servers, ${rules} rules, policy ${(realistic.length / 1024).toFixed(0)} KiB, ${CLIENTS} client processes, ${view} views`);

  const bootstrap: 'register' | 'restore' = BOOTSTRAP === 'auto' ? (n <= 2000 ? 'register' : 'restore') : (BOOTSTRAP as 'register' | 'restore');

  // The nodes make their keys in the client processes.
  while (children.length < CLIENTS) children.push(startChild());
  await Promise.all(children.map((c) => c.call({ cmd: 'init', view })));
  const parts: ClientNode[][] = children.map(() => []);
  tn.specs.forEach((s: Spec) => parts[s.idx % children.length]!.push({ idx: s.idx, hostname: s.hostname }));
  const prepared = await Promise.all(children.map((c, i) => c.call<{ keys: [number, string, string][] }>({ cmd: 'prepare', nodes: parts[i] })));
  const nodeKeys = new Map<number, [string, string]>();
  for (const p of prepared) for (const [idx, mk, nk] of p.keys) nodeKeys.set(idx, [mk, nk]);

  gc();
  gc();
  const mem0 = process.memoryUsage();
  const dir = mkdtempSync(join(tmpdir(), 'pierce-control-bench-'));
  const store = new SqliteStore(join(dir, 'control.db'));
  let restoreMs = 0;
  if (bootstrap === 'restore') {
    // The nodes are in the store before the server starts, as after a restart; they join by
    // reconnecting and registering again with their auth keys.
    const t = now();
    const userIds = new Map<string, number>();
    for (const u of tn.users) userIds.set(u.name, (await store.createUser(u.name, Date.now())).id);
    const addrs = new AddressAllocator();
    const created = Date.now();
    for (const sp of tn.specs) {
      const a = addrs.allocate();
      const [machineKey, nodeKey] = nodeKeys.get(sp.idx)!;
      await store.insertNode({
        machineKey,
        nodeKey,
        discoKey: DiscoPublic.fromRaw(new Uint8Array(32)).toString(),
        name: sp.hostname,
        hostname: sp.hostname,
        userId: userIds.get(sp.user)!,
        tags: sp.tags,
        ipv4: a.ipv4,
        ipv6: a.ipv6,
        ephemeral: false,
        authKeyId: null,
        createdAt: created,
        keyExpiry: sp.tags.length ? null : created + 180 * 86_400_000,
        lastSeen: null,
        loggedOut: false,
      });
    }
    restoreMs = now() - t;
  }
  const errors: string[] = [];
  const tStart = now();
  const server = await startControl({
    store,
    policyText: policyText(tn.users, { denyAll: true }),
    keepaliveMs: 600_000,
    relays: { regions: [{ id: 1, code: 'bench', name: 'Bench', nodes: [{ url: 'http://127.0.0.1:9' }] }] },
    log: (m) => {
      if (/internal error|error/i.test(m)) errors.push(m);
    },
  });
  const startMs = now() - tStart;
  const times = instrument(server);
  try {
    const st = server.state;
    // Users and keys: one reusable key per user, one per tag set (owned by an admin).
    const keys = new Map<string, string>();
    for (const u of tn.users) {
      if (bootstrap === 'register') await st.createUser(u.name);
      keys.set(u.name, (await st.createAuthKey({ user: u.name, reusable: true })).key);
    }
    for (const [tags] of TAG_SETS) keys.set(tags.join(','), (await st.createAuthKey({ user: tn.admin, tags, reusable: true })).key);

    // ---- join everyone
    log(bootstrap === 'restore' ? `${n} nodes preloaded into the store (${(restoreMs / 1000).toFixed(1)} s), server loaded them in ${(startMs / 1000).toFixed(1)} s; reconnecting…` : `joining ${n} nodes…`);
    const rebuilds0 = st.netmap.stats.rebuilds;
    const tj = now();
    const joined = await Promise.all(
      children.map((c, i) =>
        c.call<{ ms: number; failures: number; firstError: string; avgMs: { connect: number; register: number; map: number } }>({
          cmd: 'join-all',
          url: server.url,
          serverKey: server.publicKey,
          authKeys: parts[i]!.map((x) => [x.idx, keys.get(tn.specs[x.idx]!.keyName)!]),
          concurrency: CONCURRENCY,
        }),
      ),
    );
    const joinMs = now() - tj;
    const failures = joined.reduce((a, b) => a + b.failures, 0);
    if (failures) throw new Error(`${failures} nodes failed to join: ${joined.find((j) => j.failures)?.firstError}`);
    const join = { bootstrap, ms: joinMs, perSec: (n * 1000) / joinMs, failures, rebuilds: st.netmap.stats.rebuilds - rebuilds0, startMs, restoreMs };
    const avg = joined[0]!.avgMs;
    log(`joined in ${(joinMs / 1000).toFixed(1)} s (${join.perSec.toFixed(0)}/s, ${join.rebuilds} netmap rebuilds; per node with ${CONCURRENCY} in flight per client process: connect ${f0(avg.connect)} ms, register ${f0(avg.register)} ms, map ${f0(avg.map)} ms)`);
    await quiesce(times);

    // ---- policy phases
    const recordCap = 3e9;
    const phases: PhaseResult[] = [];
    const phase = async (name: string, text: string, base: boolean) => {
      const p = await policyPhase(server, times, name, text, base, recordCap);
      phases.push(p);
      log(
        `${name}: ${p.nodes} nodes, ${(p.bytes / 1e6).toFixed(1)} MB, rebuild ${p.rebuildMs.toFixed(0)} ms, flush ${p.flushMs.toFixed(0)} ms, e2e ${p.e2eMs.toFixed(0)} ms` +
          (p.baseline && !p.baseline.skipped ? `; send-only baseline server ${p.baseline.serverMs.toFixed(0)} ms, e2e ${p.baseline.e2eMs.toFixed(0)} ms` : ''),
      );
    };
    await phase('initial (deny-all → realistic)', realistic, true);

    // ---- memory with everyone joined under the realistic policy
    await quiesce(times);
    gc();
    gc();
    const mem1 = process.memoryUsage();
    const clientMem = await Promise.all(children.map((c) => c.call<{ memory: NodeJS.MemoryUsage }>({ cmd: 'memory' })));
    const memory = {
      rssMB: (mem1.rss - mem0.rss) / 1048576,
      heapMB: (mem1.heapUsed - mem0.heapUsed) / 1048576,
      rssPerNodeKB: (mem1.rss - mem0.rss) / 1024 / n,
      heapPerNodeKB: (mem1.heapUsed - mem0.heapUsed) / 1024 / n,
      clientRssMB: clientMem.map((m) => m.memory.rss / 1048576),
    };
    let peers = 0;
    let maxPeers = 0;
    let filterBytes = 0;
    for (const id of st.nodes.keys()) {
      const p = st.netmap.peersOf(id).length;
      peers += p;
      maxPeers = Math.max(maxPeers, p);
      filterBytes += st.netmap.filterJsonOf(id).length;
    }
    const classes = st.netmap.classCount;

    await phase('+ group:eng → tag:prod:443', engProd, true);
    await phase('all filters (tag:monitoring → *:9100-9101)', engProdWide, true);
    await phase('revert to realistic', realistic, false);

    // ---- naive recompute
    log('naive recompute…');
    const naive = naiveRecompute(server, st.policy, NAIVE_BUDGET_MS);
    log(`naive: ${naive.ms.toFixed(0)} ms${naive.sampled < naive.nodes ? ` (extrapolated from ${naive.sampled} nodes)` : ''}, ${naive.mismatches} mismatches vs netmap`);

    // ---- joins
    const joinCount = JOINS ?? (n <= 2000 ? 100 : 30);
    log(`${joinCount} joins…`);
    const joins = await joinSeries(server, times, tn, joinCount, keys);
    const joinStats: SizeResult['joinStats'] = {};
    const groups = new Map<string, JoinResult[]>([['all', joins]]);
    for (const j of joins) groups.set(j.kind, [...(groups.get(j.kind) ?? []), j]);
    for (const [k, js] of groups) {
      if (!js.length) continue;
      const fm = js.map((j) => j.fromMap);
      const fr = js.map((j) => j.fromRegister);
      joinStats[k] = {
        count: js.length,
        p50: quantile(fm, 0.5),
        p99: quantile(fm, 0.99),
        max: Math.max(...fm),
        p50Reg: quantile(fr, 0.5),
        p99Reg: quantile(fr, 0.99),
        avgPeers: js.reduce((a, j) => a + j.expected, 0) / js.length,
        avgSentMB: js.reduce((a, j) => a + j.sentMB, 0) / js.length,
        rebuilds: js.reduce((a, j) => a + j.rebuilds, 0),
        timedOut: js.filter((j) => j.timedOut).length,
      };
    }
    if (joins.length) {
      log(`joins: p50 ${joinStats['all']!.p50.toFixed(1)} ms, p99 ${joinStats['all']!.p99.toFixed(1)} ms from the map request; slowest:`);
      for (const j of [...joins].sort((a, b) => b.fromMap - a.fromMap).slice(0, 3)) {
        log(`  #${joins.indexOf(j)} ${j.kind}: ${j.fromMap.toFixed(1)} ms, ${j.expected} peers, ${j.sentMB.toFixed(2)} MB sent by the server meanwhile`);
      }
    }

    // ---- verify every view against the server
    let ver: SizeResult['verify'];
    if (verify) {
      await quiesce(times);
      const server_ = serverDigests(server);
      const views = await Promise.all(children.map((c) => c.call<{ digests: [number, string, string, number][] }>({ cmd: 'digests' })));
      ver = { nodes: 0, peerMismatches: 0, filterMismatches: 0 };
      for (const v of views) {
        for (const [id, peersD, filterD] of v.digests) {
          const s = server_.get(id);
          ver.nodes++;
          if (!s || s.peers !== peersD) ver.peerMismatches++;
          if (!s || s.filter !== filterD) ver.filterMismatches++;
        }
      }
      log(`verify: ${ver.nodes} views, ${ver.peerMismatches} peer-set and ${ver.filterMismatches} filter mismatches`);
    }
    if (errors.length) log(`server logged ${errors.length} errors, first: ${errors[0]}`);

    return {
      nodes: n,
      users: tn.users.length,
      servers: tn.specs.filter((s) => s.kind === 'server').length,
      classes,
      rules,
      policyBytes: realistic.length,
      avgPeers: peers / n,
      maxPeers,
      avgFilterBytes: filterBytes / n,
      view,
      join,
      memory,
      phases,
      naive,
      joins,
      joinStats,
      ...(ver ? { verify: ver } : {}),
    };
  } finally {
    await Promise.all(children.map((c) => c.call({ cmd: 'exit' }).catch(() => {})));
    await Promise.all(children.map((c) => (c.proc.exitCode === null ? new Promise((r) => c.proc.once('exit', r)) : undefined)));
    children.length = 0;
    observed.clear();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results: SizeResult[] = [];
const tAll = now();
for (const n of SIZES) {
  let r: SizeResult;
  try {
    r = await runSize(n);
  } catch (e) {
    const m = (e as Error).message;
    console.error(`control bench (${n} nodes): ${m.startsWith('open-file limit') ? m : ((e as Error).stack ?? m)}`);
    process.exit(1);
  }
  results.push(r);
  if (!json) print(r);
}
log(`\ntotal ${((now() - tAll) / 1000).toFixed(0)} s`);
if (json) console.log(JSON.stringify({ bench: 'control', clients: CLIENTS, results }, null, 1));
process.exit(0);
