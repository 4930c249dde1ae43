/**
 * The DERP relay (gateway/src/relay/server.ts) against a bare `ws` forwarder, measured in one run:
 *
 *   throughput  N sender→receiver pairs (default 4) blast 1400-byte packets through the server
 *               over WebSocket; packets/s and MB/s delivered at the receivers over a fixed window
 *               after a warm-up. The relay's clients speak raw DERP frames (ServerKey →
 *               ClientInfo sealed with sealClientInfo → ServerInfo opened with openServerInfo,
 *               then prebuilt SendPacket frames); the baseline's clients send dst key(32) | packet.
 *               Flow control: each pair keeps at most WINDOW packets in flight and stops writing
 *               while its socket holds over 1 MiB unsent (the `bufferedAmount` of ws), so this
 *               measures forwarding capacity rather than queue overflow; the servers' drop
 *               counters are reported (the relay's from GET /metrics, pierce_relay_drops_total).
 *               Both servers stay up and take turns (rounds AB BA AB); each one's median round
 *               is printed, with the server's CPU and its CPU time per packet.
 *   memory      10,000 idle clients (WebSocket, DERP handshake done / key registered) connected
 *               to a fresh server process: RSS and heap growth per client (process.memoryUsage()
 *               after gc, minus the same with 100 clients connected).
 *
 * Each server runs in a process of its own (test/bench/relay-server.ts, started through bash
 * with `ulimit -n` raised); this process is the load generator. To keep it cheaper per packet
 * than the servers, its WebSocket client is a minimal one on a bare TCP socket (RawWs below):
 * client frames are built once and written BATCH at a time, server frames are split by header.
 * Client frames are masked with an all-zero key unless --mask (random keys, as browsers use):
 * ws skips the unmask pass for a zero key, so --mask adds that per-packet cost to both servers.
 *
 *   npx tsx test/bench/relay.ts [--json] [--seconds N] [--pairs N] [--clients N] [--window N] [--rounds N] [--mask]
 *
 * Defaults: 3 rounds of 3 s per server (after 2 s of warm-up, 1 s before later rounds), 4 pairs,
 * 256 packets in flight per pair, 10,000 idle clients; about 100 s in all, most of it the
 * relay's 10,000 handshakes (noble X25519, two per client). Children are killed on exit, error
 * and Ctrl-C. Loopback throughput on a 2-vCPU machine varies ±15% from run to run; most of the
 * generator's CPU is kernel time (TCP send and the receive processing it triggers).
 */
import { spawn, spawnSync, execFileSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { RawWs, openRawWs, useRandomMasks, wsFrame } from './raw-ws.ts';
import { cryptoRandom } from '../../src/crypto/backend.ts';
import { boxSealAfternm, hsalsa20 } from '../../src/crypto/box.ts';
import { concatBytes } from '../../src/crypto/bytes.ts';
import { NodePrivate, NodePublic } from '../../src/key/keys.ts';
import { FrameReader, FrameType, FRAME_HEADER_LEN, KEY_LEN, NONCE_LEN, decodeServerKey, encodeFrame, encodeSendPacket } from '../../src/derp/frames.ts';
import { clientInfoJSON, openServerInfo, sealClientInfo } from '../../src/derp/handshake.ts';
import { nodeBackend } from '../../gateway/src/crypto/node-backend.ts';

// ------------------------------------------------------------------------------------ options

const args = process.argv.slice(2);
const json = args.includes('--json');
const MASK = args.includes('--mask');
useRandomMasks(MASK);
function numArg(name: string, def: number, min: number): number {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  if (!Number.isFinite(v) || v < min) {
    console.error(`usage: npx tsx test/bench/relay.ts [--json] [--seconds N≥1] [--pairs N≥1] [--clients N≥100] [--window N≥8] [--rounds N≥1] [--mask]  (bad ${name})`);
    process.exit(2);
  }
  return v;
}
const SECONDS = Math.round(numArg('--seconds', 3, 1));
const PAIRS = Math.floor(numArg('--pairs', 4, 1));
let IDLE = Math.floor(numArg('--clients', 10_000, 100));
const ROUNDS = Math.floor(numArg('--rounds', 3, 1));
/** Warm-up before the first round of each server, and before later rounds. */
const WARMUP_S = 2;
const WARMUP_NEXT_S = 1;
const SIZE = 1400;
/** Packets in flight per pair (sent, not yet received). */
const WINDOW = Math.floor(numArg('--window', 256, 8));
/** Packets per socket write (each its own WebSocket message). */
const BATCH = 8;
/** A sender stops writing while its socket holds more than this. */
const BUFFER_HIGH = 1 << 20;
/** Clients connected before the "before" memory sample, so one-time costs are not counted. */
const WARM_CLIENTS = 100;
/** Concurrent connects while filling the server with idle clients. */
const CONNECT_CONCURRENCY = 128;
/** Source addresses for the idle clients (all of 127.0.0.0/8 is local on Linux). */
const LOCAL_ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SERVER_SCRIPT = join(ROOT, 'test', 'bench', 'relay-server.ts');
const RAISE_NOFILE = 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"';

const log = (s: string): void => {
  if (!json) console.error(s);
};

// The generator holds IDLE sockets itself: make sure this process may, re-running it under a
// raised `ulimit -n` once if not.
const nofile = (): number => {
  const s = execFileSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim();
  return s === 'unlimited' ? Infinity : Number(s);
};
if (nofile() < IDLE + WARM_CLIENTS + 500) {
  if (!process.env.PIERCE_RELAY_BENCH_REEXEC) {
    const r = spawnSync('bash', ['-c', RAISE_NOFILE, 'bash', process.execPath, ...process.execArgv, process.argv[1]!, ...args], {
      stdio: 'inherit',
      env: { ...process.env, PIERCE_RELAY_BENCH_REEXEC: '1' },
    });
    process.exit(r.status ?? 1);
  }
  const limit = nofile();
  IDLE = Math.max(100, Math.floor(limit - WARM_CLIENTS - 500));
  log(`note: open-file limit is ${limit}; using ${IDLE} idle clients`);
}

// ------------------------------------------------------------------------------------ server processes

type Kind = 'relay' | 'bare';

interface ServerStats {
  memory: NodeJS.MemoryUsage;
  cpu: NodeJS.CpuUsage;
  drops: number;
  clients: number;
}

interface Server {
  kind: Kind;
  port: number;
  /** DERP URL (relay) or ws:// URL (bare). */
  url: string;
  /** `gc` runs the child's gc() twice first (only for memory samples). */
  stats(gc: boolean): Promise<ServerStats>;
  kill(): void;
}

const children = new Set<ChildProcess>();
function killChildren(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
}
process.on('exit', killChildren);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    killChildren();
    process.exit(130);
  });
}
const watchdog = setTimeout(() => {
  console.error('relay bench: gave up after 240 s');
  killChildren();
  process.exit(1);
}, 240_000);
watchdog.unref();

async function startServer(kind: Kind): Promise<Server> {
  // bash raises the open-file limit, then execs node (same pid, IPC channel fd inherited).
  const child = spawn('bash', ['-c', RAISE_NOFILE, 'bash', process.execPath, '--expose-gc', '--import', 'tsx', SERVER_SCRIPT, kind], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  const pending: ((s: ServerStats) => void)[] = [];
  const ready = new Promise<{ port: number; url: string }>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${kind} server did not start within 30 s`)), 30_000);
    child.on('message', (m: { type: string } & Record<string, unknown>) => {
      if (m.type === 'ready') {
        clearTimeout(t);
        resolve({ port: m.port as number, url: m.url as string });
      } else if (m.type === 'stats') pending.shift()?.(m as unknown as ServerStats);
    });
    child.on('exit', (code, sig) => {
      clearTimeout(t);
      children.delete(child);
      reject(new Error(`${kind} server exited (${code ?? sig})`));
    });
  });
  const { port, url } = await ready;
  return {
    kind,
    port,
    url,
    stats: (gc) =>
      new Promise<ServerStats>((resolve, reject) => {
        if (!child.connected) return reject(new Error(`${kind} server is gone`));
        pending.push(resolve);
        child.send({ type: 'stats', gc });
      }),
    kill: () => {
      if (child.pid && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
      children.delete(child);
    },
  };
}

/** From the relay's GET /metrics: pierce_relay_drops_total (summed, and by reason), pierce_relay_clients. */
async function relayMetrics(port: number): Promise<{ drops: number; dropsByReason: Record<string, number>; clients: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = { drops: 0, dropsByReason: {} as Record<string, number>, clients: 0 };
  for (const line of text.split('\n')) {
    const m = /^(\w+)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (m[1] === 'pierce_relay_drops_total') {
      out.drops += v;
      const reason = /reason="([^"]*)"/.exec(m[2] ?? '')?.[1] ?? '?';
      out.dropsByReason[reason] = (out.dropsByReason[reason] ?? 0) + v;
    } else if (m[1] === 'pierce_relay_clients') out.clients = v;
  }
  return out;
}

// ------------------------------------------------------------------------------------ clients

const u8 = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

/** A connected generator client. */
interface GenClient {
  ws: RawWs;
  /** The 32 bytes other clients address this one by (DERP node key / baseline key). */
  key: Uint8Array;
}

/**
 * The ClientInfo payload as sealClientInfo builds it (key | nonce | box(JSON)), with the X25519
 * done by node:crypto instead of noble (~30x faster), for the 10,000 idle clients: the client
 * side of 10,000 noble handshakes alone would take ~25 s of this process's CPU.
 */
function fastClientInfo(priv: Uint8Array, pub: Uint8Array, serverKey: NodePublic): Uint8Array {
  const shared = hsalsa20(nodeBackend.x25519(priv, serverKey.rawView()), new Uint8Array(16));
  const nonce = cryptoRandom(NONCE_LEN);
  const msg = new TextEncoder().encode(clientInfoJSON({ version: 2, canAckPings: true }));
  return concatBytes(pub, nonce, boxSealAfternm(shared, nonce, msg));
}

/**
 * A DERP client over WebSocket, by hand: ServerKey → ClientInfo → ServerInfo. `fast` seals the
 * ClientInfo with node:crypto X25519 and skips opening the ServerInfo (the relay sends one only
 * after it opened our box, which proves the handshake); otherwise sealClientInfo/openServerInfo.
 */
async function derpClient(port: number, fast: boolean, localAddress?: string): Promise<GenClient> {
  let priv: NodePrivate | null = null;
  let rawPriv: Uint8Array;
  let pub: Uint8Array;
  if (fast) {
    rawPriv = new Uint8Array(randomBytes(32));
    rawPriv[0] = rawPriv[0]! & 248;
    rawPriv[31] = (rawPriv[31]! & 127) | 64;
    pub = nodeBackend.x25519Public(rawPriv);
  } else {
    priv = NodePrivate.generate();
    rawPriv = priv.raw();
    pub = priv.public().raw();
  }
  const ws = await openRawWs(port, '/derp', 'derp', localAddress);
  return new Promise((resolve, reject) => {
    const reader = new FrameReader();
    let serverKey: NodePublic | null = null;
    let done = false;
    const fail = (e: Error) => {
      if (done) return;
      done = true;
      ws.sock.destroy();
      reject(e);
    };
    ws.onMessage = (d) => {
      try {
        for (const f of reader.push(u8(d))) {
          if (f.type === FrameType.ServerKey) {
            serverKey = decodeServerKey(f.payload).key;
            const info = fast ? fastClientInfo(rawPriv, pub, serverKey) : sealClientInfo(priv!, serverKey, { version: 2, canAckPings: true }, cryptoRandom);
            ws.send(encodeFrame(FrameType.ClientInfo, info));
          } else if (f.type === FrameType.ServerInfo && serverKey && !done) {
            if (!fast) openServerInfo(priv!, serverKey, f.payload);
            done = true;
            ws.onMessage = () => {};
            resolve({ ws, key: pub });
          }
        }
      } catch (e) {
        fail(e as Error);
      }
    };
    ws.sock.on('close', () => fail(new Error('closed during the DERP handshake')));
    setTimeout(() => fail(new Error('DERP handshake timed out')), 30_000).unref();
  });
}

/** A baseline client: connects and registers a random 32-byte key. */
async function bareClient(port: number, localAddress?: string): Promise<GenClient> {
  const key = new Uint8Array(randomBytes(32));
  const ws = await openRawWs(port, '/', null, localAddress);
  ws.send(key);
  return { ws, key };
}

function connect(server: Server, fast: boolean, localAddress?: string): Promise<GenClient> {
  return server.kind === 'relay' ? derpClient(server.port, fast, localAddress) : bareClient(server.port, localAddress);
}

/** Opens n clients, at most CONNECT_CONCURRENCY at a time, spread over the source addresses. */
async function connectMany(server: Server, n: number, into: GenClient[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      into.push(await connect(server, true, LOCAL_ADDRESSES[i % LOCAL_ADDRESSES.length]));
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, n) }, worker));
}

function closeAll(clients: GenClient[]): void {
  for (const c of clients) c.ws.sock.destroy();
  clients.length = 0;
}

/** Busy and total jiffies of the whole machine (/proc/stat), or null off Linux. */
function machineCpu(): { busy: number; total: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const total = f.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------ throughput

interface Round {
  seconds: number;
  packetsPerSec: number;
  /** Packets/s in each second of the round's window. */
  perSecond: number[];
  /** CPU time over wall time during the window; 1.0 = one core busy. */
  serverCpu: number;
  generatorCpu: number;
  /** All CPUs of the machine (kernel, softirq and other processes included), same scale. */
  machineCpu: number | null;
}

interface ThroughputResult {
  server: Kind;
  pairs: number;
  /** Median round (by packets/s); its figures are the ones printed. */
  packetsPerSec: number;
  /** Packet payload bytes delivered (1400 per packet), in MB/s and Mbit/s. */
  mbytesPerSec: number;
  mbitPerSec: number;
  serverCpu: number;
  generatorCpu: number;
  machineCpu: number | null;
  /** Server CPU microseconds per forwarded packet (median round). */
  serverUsPerPacket: number;
  rounds: Round[];
  /** Packets the server dropped over the whole run (warm-ups, windows and drains). */
  drops: number;
  dropsByReason?: Record<string, number>;
  /** Packets sent but never delivered (a cross-check of the drop counters). */
  lost: number;
}

/** Sender→receiver pairs on one server; `start`/`stop` turn the blast on and off. */
class Load {
  private readonly pairs: { tx: GenClient; batch: Buffer; sent: number; recv: number; writtenOff: number; lastRecv: number; stalledAt: number }[] = [];
  readonly clients: GenClient[] = [];
  private running = false;
  private kick: NodeJS.Timeout | null = null;

  constructor(readonly server: Server) {}

  async connect(): Promise<void> {
    const kind = this.server.kind;
    const recvLen = kind === 'relay' ? FRAME_HEADER_LEN + KEY_LEN + SIZE : KEY_LEN + SIZE;
    for (let i = 0; i < PAIRS; i++) {
      const tx = await connect(this.server, false);
      const rx = await connect(this.server, false);
      this.clients.push(tx, rx);
      const packet = new Uint8Array(SIZE).fill(0x45);
      const message = kind === 'relay' ? encodeSendPacket(NodePublic.fromRaw(rx.key), packet) : concatBytes(rx.key, packet);
      // BATCH packets, each its own WebSocket message (masked separately), written at once.
      const batch = Buffer.concat(Array.from({ length: BATCH }, () => wsFrame(message)));
      const pair = { tx, batch, sent: 0, recv: 0, writtenOff: 0, lastRecv: 0, stalledAt: 0 };
      this.pairs.push(pair);
      if (kind === 'relay') {
        // Each relay frame is one WebSocket message; parse only what is not a RecvPacket.
        const reader = new FrameReader();
        rx.ws.onMessage = (d) => {
          if (reader.buffered === 0 && d.length === recvLen && d[0] === FrameType.RecvPacket && d.readUInt32BE(1) === recvLen - FRAME_HEADER_LEN) pair.recv++;
          else for (const f of reader.push(u8(d))) if (f.type === FrameType.RecvPacket) pair.recv++;
          this.pump(pair);
        };
      } else {
        rx.ws.onMessage = (d) => {
          if (d.length === recvLen) pair.recv++;
          this.pump(pair);
        };
      }
    }
  }

  private pump(p: Load['pairs'][number]): void {
    while (this.running && p.sent - p.recv - p.writtenOff + BATCH <= WINDOW && p.tx.ws.bufferedAmount < BUFFER_HIGH) {
      p.tx.ws.sendFrames(p.batch);
      p.sent += BATCH;
    }
  }

  start(): void {
    this.running = true;
    // Senders resume from receptions. The interval restarts a pair whose window was full while
    // its buffer was too, and writes off packets that have not arrived for 200 ms (dropped), so
    // that a drop does not shrink the window for good.
    this.kick = setInterval(() => {
      const now = performance.now();
      for (const p of this.pairs) {
        if (p.recv !== p.lastRecv) {
          p.lastRecv = p.recv;
          p.stalledAt = now;
        } else if (now - p.stalledAt > 200 && p.tx.ws.bufferedAmount === 0) {
          p.writtenOff = p.sent - p.recv;
          p.stalledAt = now;
        }
        this.pump(p);
      }
    }, 5);
    for (const p of this.pairs) {
      p.stalledAt = performance.now();
      this.pump(p);
    }
  }

  stop(): void {
    this.running = false;
    if (this.kick) clearInterval(this.kick);
    this.kick = null;
  }

  get delivered(): number {
    return this.pairs.reduce((a, p) => a + p.recv, 0);
  }

  get lost(): number {
    return this.pairs.reduce((a, p) => a + p.sent - p.recv, 0);
  }

  /** Warm-up, then a window of SECONDS sampled every second; the load is stopped after. */
  async round(warmupS: number): Promise<Round> {
    this.start();
    await sleep(warmupS * 1000);
    const s0 = await this.server.stats(false);
    const g0 = process.cpuUsage();
    const m0 = machineCpu();
    const n0 = this.delivered;
    const t0 = performance.now();
    const perSecond: number[] = [];
    let nPrev = n0;
    let tPrev = t0;
    for (let i = 0; i < SECONDS; i++) {
      await sleep(t0 + (i + 1) * 1000 - performance.now());
      const n = this.delivered;
      const t = performance.now();
      perSecond.push(Math.round(((n - nPrev) * 1000) / (t - tPrev)));
      nPrev = n;
      tPrev = t;
    }
    const wall = (tPrev - t0) / 1000;
    const g1 = process.cpuUsage(g0);
    const m1 = machineCpu();
    const s1 = await this.server.stats(false);
    this.stop();
    await sleep(300); // let what is in flight arrive before the other server's turn
    return {
      seconds: wall,
      packetsPerSec: (nPrev - n0) / wall,
      perSecond,
      serverCpu: (s1.cpu.user - s0.cpu.user + s1.cpu.system - s0.cpu.system) / 1e6 / wall,
      generatorCpu: (g1.user + g1.system) / 1e6 / wall,
      machineCpu: m0 && m1 ? ((m1.busy - m0.busy) / (m1.total - m0.total)) * cpus().length : null,
    };
  }
}

/**
 * Both servers run side by side (each in its own process; only one is loaded at a time) and
 * take turns, ROUNDS rounds in the order AB BA AB…, so that drift in the machine's speed falls
 * on both; each one's figures are from its median round.
 */
async function throughput(): Promise<{ bare: ThroughputResult; relay: ThroughputResult }> {
  const servers = await Promise.all([startServer('bare'), startServer('relay')]);
  const loads = servers.map((s) => new Load(s));
  try {
    for (const l of loads) await l.connect();
    const rounds: Round[][] = [[], []];
    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 === 0 ? [0, 1] : [1, 0];
      for (const i of order) {
        log(`  round ${r + 1}/${ROUNDS}: ${servers[i]!.kind} …`);
        rounds[i]!.push(await loads[i]!.round(r === 0 ? WARMUP_S : WARMUP_NEXT_S));
      }
    }
    const result = async (i: number): Promise<ThroughputResult> => {
      const server = servers[i]!;
      const rs = rounds[i]!;
      const med = [...rs].sort((a, b) => a.packetsPerSec - b.packetsPerSec)[Math.floor(rs.length / 2)]!;
      let drops = (await server.stats(false)).drops;
      let dropsByReason: Record<string, number> | undefined;
      if (server.kind === 'relay') {
        const m = await relayMetrics(server.port);
        drops = m.drops;
        dropsByReason = m.dropsByReason;
      }
      return {
        server: server.kind,
        pairs: PAIRS,
        packetsPerSec: med.packetsPerSec,
        mbytesPerSec: (med.packetsPerSec * SIZE) / 1e6,
        mbitPerSec: (med.packetsPerSec * SIZE * 8) / 1e6,
        serverCpu: med.serverCpu,
        generatorCpu: med.generatorCpu,
        machineCpu: med.machineCpu,
        serverUsPerPacket: (med.serverCpu * 1e6) / med.packetsPerSec,
        rounds: rs,
        drops,
        ...(dropsByReason ? { dropsByReason } : {}),
        lost: loads[i]!.lost,
      };
    };
    return { bare: await result(0), relay: await result(1) };
  } finally {
    for (const l of loads) {
      l.stop();
      closeAll(l.clients);
    }
    for (const s of servers) s.kill();
  }
}

// ------------------------------------------------------------------------------------ memory

interface MemoryResult {
  server: Kind;
  clients: number;
  /** Clients the server itself counted after connecting. */
  serverClients: number;
  connectSeconds: number;
  connectsPerSec: number;
  rssBefore: number;
  rssAfter: number;
  rssPerClient: number;
  heapPerClient: number;
  /** external + arrayBuffers (Buffers outside the V8 heap). */
  externalPerClient: number;
}

async function memory(kind: Kind): Promise<MemoryResult> {
  const server = await startServer(kind);
  const clients: GenClient[] = [];
  try {
    await connectMany(server, WARM_CLIENTS, clients);
    await sleep(300);
    const before = (await server.stats(true)).memory;
    const t0 = performance.now();
    await connectMany(server, IDLE, clients);
    const connectSeconds = (performance.now() - t0) / 1000;
    await sleep(1000);
    const st = await server.stats(true);
    const after = st.memory;
    const serverClients = kind === 'relay' ? (await relayMetrics(server.port)).clients : st.clients;
    const per = (f: (m: NodeJS.MemoryUsage) => number) => (f(after) - f(before)) / IDLE;
    return {
      server: kind,
      clients: IDLE,
      serverClients: serverClients - WARM_CLIENTS,
      connectSeconds,
      connectsPerSec: IDLE / connectSeconds,
      rssBefore: before.rss,
      rssAfter: after.rss,
      rssPerClient: per((m) => m.rss),
      heapPerClient: per((m) => m.heapUsed),
      externalPerClient: per((m) => m.external + m.arrayBuffers),
    };
  } finally {
    closeAll(clients);
    server.kill();
  }
}

// ------------------------------------------------------------------------------------ run

const started = performance.now();
log(`throughput: ${PAIRS} pairs, ${ROUNDS} rounds each of ${SECONDS} s after warm-up …`);
const { bare: tBare, relay: tRelay } = await throughput();
log(`memory: bare ws baseline, ${IDLE} idle clients …`);
const mBare = await memory('bare');
log(`memory: pierce relay, ${IDLE} idle DERP clients …`);
const mRelay = await memory('relay');
const totalSeconds = (performance.now() - started) / 1000;
killChildren();

const ratio = {
  throughput: tRelay.packetsPerSec / tBare.packetsPerSec,
  rssPerClient: mRelay.rssPerClient / mBare.rssPerClient,
  heapPerClient: mRelay.heapPerClient / mBare.heapPerClient,
};

if (json) {
  console.log(
    JSON.stringify(
      {
        node: process.version,
        size: SIZE,
        pairs: PAIRS,
        window: WINDOW,
        warmupSeconds: [WARMUP_S, WARMUP_NEXT_S],
        mask: MASK ? 'random' : 'zero',
        rounds: ROUNDS,
        secondsPerRound: SECONDS,
        throughput: { baseline: tBare, relay: tRelay, ratio: ratio.throughput },
        memory: { baseline: mBare, relay: mRelay, ratioRss: ratio.rssPerClient, ratioHeap: ratio.heapPerClient },
        totalSeconds,
      },
      null,
      2,
    ),
  );
} else {
  const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  console.log(
    `Pierce relay benchmarks (Node ${process.version}, ${SIZE}-byte packets, ${PAIRS} pairs over WebSocket, ${WINDOW} in flight per pair, ` +
      `median of ${ROUNDS} × ${SECONDS} s, ${MASK ? 'random' : 'zero'} WebSocket masks)\n`,
  );
  const tRows = [
    { name: 'bare ws forwarder (baseline)', r: tBare, ratio: '' },
    { name: 'pierce relay, DERP over WebSocket', r: tRelay, ratio: `${ratio.throughput.toFixed(3)} of baseline` },
  ];
  const w = Math.max(...tRows.map((r) => r.name.length), 'forwarding'.length);
  console.log(
    `${'forwarding'.padEnd(w)} ${'pkts/s'.padStart(8)} ${'MB/s'.padStart(6)} ${'Mbit/s'.padStart(6)} ${'srv CPU'.padStart(7)} ${'µs/pkt'.padStart(6)} ` +
      `${'gen CPU'.padStart(7)} ${'box CPU'.padStart(7)} ${'drops'.padStart(6)}  ratio`,
  );
  for (const { name, r, ratio: rt } of tRows) {
    console.log(
      `${name.padEnd(w)} ${Math.round(r.packetsPerSec).toString().padStart(8)} ${r.mbytesPerSec.toFixed(1).padStart(6)} ${r.mbitPerSec.toFixed(0).padStart(6)} ` +
        `${pct(r.serverCpu).padStart(7)} ${r.serverUsPerPacket.toFixed(1).padStart(6)} ${pct(r.generatorCpu).padStart(7)} ` +
        `${(r.machineCpu === null ? '-' : pct(r.machineCpu)).padStart(7)} ${r.drops.toString().padStart(6)}  ${rt}`,
    );
  }
  console.log(`  rounds (pkts/s): baseline ${tBare.rounds.map((x) => Math.round(x.packetsPerSec)).join(', ')}; relay ${tRelay.rounds.map((x) => Math.round(x.packetsPerSec)).join(', ')}`);
  if (tRelay.dropsByReason && tRelay.drops > 0) {
    console.log(`  relay drops by reason: ${Object.entries(tRelay.dropsByReason).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  }
  console.log(`  packets sent but not delivered: baseline ${tBare.lost}, relay ${tRelay.lost}`);
  console.log('');
  const mRows = [
    { name: 'bare ws forwarder (baseline)', r: mBare, ratio: '' },
    { name: 'pierce relay, DERP over WebSocket', r: mRelay, ratio: `${ratio.rssPerClient.toFixed(2)}× baseline RSS` },
  ];
  const w2 = Math.max(...mRows.map((r) => r.name.length), 'idle clients'.length);
  console.log(`${'idle clients'.padEnd(w2)} ${'clients'.padStart(7)} ${'RSS/client'.padStart(11)} ${'heap/client'.padStart(12)} ${'ext/client'.padStart(11)} ${'RSS total'.padStart(10)} ${'connects/s'.padStart(11)}  ratio`);
  for (const { name, r, ratio: rt } of mRows) {
    console.log(
      `${name.padEnd(w2)} ${r.serverClients.toString().padStart(7)} ${kb(r.rssPerClient).padStart(11)} ${kb(r.heapPerClient).padStart(12)} ${kb(r.externalPerClient).padStart(11)} ` +
        `${`${(r.rssAfter / 1048576).toFixed(0)} MiB`.padStart(10)} ${Math.round(r.connectsPerSec).toString().padStart(11)}  ${rt}`,
    );
  }
  console.log(`\nMemory is the server process's growth from ${WARM_CLIENTS} to ${WARM_CLIENTS + IDLE} clients, after gc; connects/s includes the DERP handshake`);
  console.log(`(the relay's side of it: two X25519 per client). CPU is CPU time / wall time, 100% = one core; "box" is the`);
  console.log(`whole machine (${cpus().length} CPUs, loopback TCP in the kernel included). Total ${totalSeconds.toFixed(0)} s.`);
}
