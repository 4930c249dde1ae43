/**
 * Two `pierce up` nodes talking over a relay, each figure beside a baseline measured in the same
 * run through the same relay process:
 *
 *   bulk TCP   N MB (default 64) written into `pierce nc b 5201` on node a; node b forwards
 *              port 5201 to a TCP sink in this process, which counts bytes. Mbit/s from the
 *              sink's accept to its last byte. That is the whole product path: nc → local API
 *              → a's netstack TCP → WireGuard → DERP (Upgrade: DERP, TCP) → relay → b → b's
 *              netstack → the forward → the sink.
 *      baseline  the relay's raw forwarding for one pair: a DERP client (Upgrade: DERP, the
 *              transport the nodes use) sends N MB as 1400-byte SendPackets to another through
 *              the same relay; flow-controlled (at most WINDOW packets in flight, and no writes
 *              while the socket holds over 1 MiB), so nothing is dropped. Both clients are
 *              minimal ones in this process (frames by hand, headers-only parsing on receive).
 *   ping       disco ping through node a's local API (POST /ping?peer=b, the `ms` field: the
 *              engine's own send→pong time), p50/p90 over --pings samples.
 *      baseline  a WebSocket echo through the same relay: two DERP-over-WebSocket clients in
 *              this process, A sends a 64-byte packet to B, B sends it straight back, A times
 *              the round trip. Also shown (not the baseline): the same echo over DERP-over-TCP,
 *              the nodes' transport. Samples of the three interleave.
 *
 * Processes: the relay (`pierce relay --listen`) and both nodes (`pierce up`) each run in a
 * process of their own; control (startControl, SQLite in a temp dir), the sink, the baseline
 * clients and this driver share this one; each transfer spawns `pierce nc`. Bulk rounds
 * alternate baseline/nc (AB BA AB…); the median round of each is reported, with the CPU time
 * each process spent during the median nc round (from /proc, 100% = one core).
 *
 *   npx tsx test/bench/mesh.ts [--json] [--mb N] [--pings N] [--rounds N]
 *
 * About 30 s. A transfer that gets nothing to the sink for 15 s fails as a stall; the whole run
 * gives up after 150 s. Temp dirs are removed and every child is killed on exit, error and Ctrl-C.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect as connectTcp, type Server, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openRawWs, wsFrame, type RawWs } from './raw-ws.ts';
import { cryptoRandom } from '../../src/crypto/backend.ts';
import { NodePrivate, NodePublic } from '../../src/key/keys.ts';
import { FrameReader, FrameType, FRAME_HEADER_LEN, KEY_LEN, decodeServerKey, encodeFrame, encodeSendPacket } from '../../src/derp/frames.ts';
import { openServerInfo, sealClientInfo } from '../../src/derp/handshake.ts';
import { startControl, type ControlServer } from '../../gateway/src/control/server.ts';
import { SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { apiRequest } from '../../gateway/src/node/api.ts';

// ------------------------------------------------------------------------------------ options

const args = process.argv.slice(2);
const json = args.includes('--json');
function numArg(name: string, def: number, min: number): number {
  const i = args.indexOf(name);
  if (i < 0) return def;
  const v = Number(args[i + 1]);
  if (!Number.isFinite(v) || v < min) {
    console.error(`usage: npx tsx test/bench/mesh.ts [--json] [--mb N≥1] [--pings N≥10] [--rounds N≥1]  (bad ${name})`);
    process.exit(2);
  }
  return v;
}
const MB = numArg('--mb', 64, 1);
const BYTES = Math.round(MB * 1e6);
const PINGS = Math.floor(numArg('--pings', 200, 10));
const ROUNDS = Math.floor(numArg('--rounds', 3, 1));
const SIZE = 1400;
/** Baseline: packets in flight (sent, not yet received). */
const WINDOW = 256;
const BATCH = 16;
const BUFFER_HIGH = 1 << 20;
const ECHO_SIZE = 64;
/** The whole run gives up after this. */
const DEADLINE_MS = 150_000;
/** An nc transfer gives up when the sink has received nothing new for this long (a stall). */
const STALL_MS = 15_000;

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PIERCE = join(ROOT, 'gateway', 'bin', 'pierce.mjs');

const log = (s: string): void => {
  if (!json) console.error(s);
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const u8 = (b: Buffer): Uint8Array => new Uint8Array(b.buffer, b.byteOffset, b.byteLength);

// ------------------------------------------------------------------------------------ children, cleanup

const children = new Set<ChildProcess>();
const dirs: string[] = [];
function cleanup(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    cleanup();
    process.exit(130);
  });
}
const watchdog = setTimeout(() => {
  console.error(`mesh bench: gave up after ${DEADLINE_MS / 1000} s`);
  cleanup();
  process.exit(1);
}, DEADLINE_MS);
watchdog.unref();

interface Child {
  proc: ChildProcess;
  name: string;
  /** stderr so far (last 64 KiB), for error messages. */
  stderr(): string;
  /** Resolves when stderr has a line matching re. */
  waitFor(re: RegExp, ms: number): Promise<void>;
}

function pierce(name: string, argv: string[], stdin: 'pipe' | 'ignore' = 'ignore'): Child {
  const proc = spawn(process.execPath, [PIERCE, ...argv], { cwd: ROOT, stdio: [stdin, 'ignore', 'pipe'] });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  let err = '';
  const waiters: { re: RegExp; resolve: () => void }[] = [];
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (d: string) => {
    err = (err + d).slice(-65536);
    for (const w of [...waiters]) if (w.re.test(err)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  });
  return {
    proc,
    name,
    stderr: () => err,
    waitFor: (re, ms) =>
      new Promise<void>((resolve, reject) => {
        if (re.test(err)) return resolve();
        const t = setTimeout(() => reject(new Error(`${name}: no ${re} within ${ms} ms; stderr:\n${err}`)), ms);
        const onExit = (code: number | null, sig: string | null) => reject(new Error(`${name} exited (${code ?? sig}); stderr:\n${err}`));
        proc.once('exit', onExit);
        waiters.push({
          re,
          resolve: () => {
            clearTimeout(t);
            proc.off('exit', onExit);
            resolve();
          },
        });
      }),
  };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** utime + stime of a process in seconds (/proc/PID/stat), or null. */
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();
function procCpu(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}
const median = (xs: number[]) => percentile(xs, 0.5);

// ------------------------------------------------------------------------------------ raw DERP clients

/** A byte pipe to the relay: DERP over TCP (Upgrade: DERP) or over WebSocket (subprotocol derp). */
interface Pipe {
  sock: Socket;
  write(frames: Uint8Array): void;
  /** Bytes accepted by write() not yet handed to the kernel. */
  readonly buffered: number;
  onData: (chunk: Buffer) => void;
}

function tcpDerpPipe(port: number): Promise<Pipe> {
  return new Promise((resolve, reject) => {
    const sock = connectTcp({ host: '127.0.0.1', port });
    sock.setNoDelay(true);
    let head = Buffer.alloc(0);
    let pipe: Pipe | null = null;
    sock.on('error', reject);
    sock.on('data', (d: Buffer) => {
      if (pipe) return pipe.onData(d);
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const text = head.subarray(0, end).toString('latin1');
      if (!/^HTTP\/1\.1 101 /.test(text)) {
        sock.destroy();
        return reject(new Error(`DERP upgrade refused: ${text.split('\r\n')[0]}`));
      }
      const p = pipeOf(sock, (b) => void sock.write(b), () => sock.writableLength);
      pipe = p;
      const rest = head.subarray(end + 4);
      if (rest.length) p.onData(rest); // kept until the caller sets its handler
      resolve(p);
    });
    sock.write(`GET /derp HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n`);
  });
}

async function wsDerpPipe(port: number): Promise<Pipe> {
  const ws: RawWs = await openRawWs(port, '/derp', 'derp');
  const p = pipeOf(ws.sock, (b) => ws.sendFrames(wsFrame(b)), () => ws.bufferedAmount);
  ws.onMessage = (d) => p.onData(d);
  return p;
}

/** A Pipe whose data handler, until the caller sets one, keeps what arrives (e.g. the ServerKey). */
function pipeOf(sock: Socket, write: (b: Uint8Array) => void, buffered: () => number): Pipe {
  const early: Buffer[] = [];
  let h: (c: Buffer) => void = (c) => early.push(c);
  return {
    sock,
    write,
    get buffered() {
      return buffered();
    },
    get onData() {
      return h;
    },
    set onData(fn) {
      h = fn;
      for (const c of early.splice(0)) fn(c);
    },
  };
}

/** A DERP client by hand over a pipe: ServerKey → ClientInfo (sealed) → ServerInfo (opened). */
async function derpHandshake(pipe: Pipe): Promise<{ pipe: Pipe; key: NodePublic }> {
  const priv = NodePrivate.generate();
  const reader = new FrameReader();
  return new Promise((resolve, reject) => {
    let serverKey: NodePublic | null = null;
    const t = setTimeout(() => reject(new Error('DERP handshake timed out')), 10_000);
    pipe.onData = (d) => {
      try {
        for (const f of reader.push(u8(d))) {
          if (f.type === FrameType.ServerKey) {
            serverKey = decodeServerKey(f.payload).key;
            pipe.write(encodeFrame(FrameType.ClientInfo, sealClientInfo(priv, serverKey, { version: 2, canAckPings: true }, cryptoRandom)));
          } else if (f.type === FrameType.ServerInfo && serverKey) {
            openServerInfo(priv, serverKey, f.payload);
            clearTimeout(t);
            pipe.onData = () => {};
            resolve({ pipe, key: priv.public() });
          }
        }
      } catch (e) {
        clearTimeout(t);
        reject(e as Error);
      }
    };
  });
}

/**
 * Counts RecvPacket frames in a DERP byte stream by their headers only (type, length), without
 * copying bodies: the receiver must cost less than the relay.
 */
function recvCounter(onPacket: (n: number) => void): (chunk: Buffer) => void {
  const hdr = Buffer.alloc(FRAME_HEADER_LEN);
  let hdrFill = 0;
  let left = 0;
  let type = 0;
  return (c) => {
    let off = 0;
    let n = 0;
    while (off < c.length) {
      if (left > 0) {
        const k = Math.min(left, c.length - off);
        left -= k;
        off += k;
        if (left === 0 && type === FrameType.RecvPacket) n++;
        continue;
      }
      if (hdrFill === 0 && c.length - off >= FRAME_HEADER_LEN) {
        type = c[off]!;
        left = c.readUInt32BE(off + 1);
        off += FRAME_HEADER_LEN;
      } else {
        const k = Math.min(FRAME_HEADER_LEN - hdrFill, c.length - off);
        c.copy(hdr, hdrFill, off, off + k);
        hdrFill += k;
        off += k;
        if (hdrFill < FRAME_HEADER_LEN) break;
        hdrFill = 0;
        type = hdr[0]!;
        left = hdr.readUInt32BE(1);
      }
      if (left === 0 && type === FrameType.RecvPacket) n++;
    }
    if (n) onPacket(n);
  };
}

// ------------------------------------------------------------------------------------ the setup

interface Mesh {
  relayPort: number;
  relay: Child;
  control: ControlServer;
  a: Child;
  b: Child;
  sockA: string;
  sink: Sink;
}

/** The TCP sink behind b's forward: counts the bytes of one connection at a time. */
class Sink {
  readonly server: Server;
  port = 0;
  private current: { total: number; got: number; accepted: number; first: number; resolve: (r: { accepted: number; first: number; last: number }) => void } | null = null;

  constructor() {
    this.server = createServer((s) => {
      const cur = this.current;
      if (!cur) return s.destroy();
      cur.accepted = performance.now();
      s.on('data', (d: Buffer) => {
        if (cur.got === 0) cur.first = performance.now();
        cur.got += d.length;
        if (cur.got >= cur.total) {
          cur.resolve({ accepted: cur.accepted, first: cur.first, last: performance.now() });
          s.destroy();
        }
      });
      s.on('error', () => {});
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  expect(total: number): { done: Promise<{ accepted: number; first: number; last: number }>; got: () => number } {
    let resolve!: (r: { accepted: number; first: number; last: number }) => void;
    const done = new Promise<{ accepted: number; first: number; last: number }>((r) => (resolve = r));
    const cur = { total, got: 0, accepted: 0, first: 0, resolve };
    this.current = cur;
    return { done, got: () => cur.got };
  }
}

async function setUp(dir: string): Promise<Mesh> {
  const relayPort = await freePort();
  const relay = pierce('relay', ['relay', '--listen', `127.0.0.1:${relayPort}`, '--metrics']);
  await relay.waitFor(/relay listening on/, 30_000);
  const control = await startControl({
    store: new SqliteStore(join(dir, 'control.db')),
    relays: { regions: [{ id: 1, code: 'r1', name: 'r1', nodes: [{ url: `http://127.0.0.1:${relayPort}` }] }] },
  });
  await control.state.createUser('bench@example.com');
  const { key } = await control.state.createAuthKey({ user: 'bench@example.com', reusable: true });
  const sink = new Sink();
  await sink.listen();
  const sockA = join(dir, 'a.sock');
  const up = (name: string, extra: string[]) =>
    pierce(`node ${name}`, ['up', '--control', control.url, '--authkey', key, '--hostname', name, '--state', join(dir, name), '--socket', join(dir, `${name}.sock`), ...extra]);
  const a = up('a', []);
  const b = up('b', ['--forward', `5201=127.0.0.1:${sink.port}`]);
  await Promise.all([a.waitFor(/pierce up: a .*running/, 60_000), b.waitFor(/pierce up: b .*running/, 60_000)]);
  // Wait until a sees b online, then until a disco ping gets through.
  const t0 = performance.now();
  for (;;) {
    const s = (await apiRequest(sockA, 'GET', '/status')).body as { peers?: { name: string; online: boolean }[] };
    if (s.peers?.some((p) => p.name.split('.')[0] === 'b' && p.online)) break;
    if (performance.now() - t0 > 30_000) throw new Error(`node a never saw b online: ${JSON.stringify(s)}`);
    await sleep(100);
  }
  for (;;) {
    const r = await apiRequest(sockA, 'POST', '/ping?peer=b&timeout=2000', 10_000);
    if (r.status === 200) break;
    if (performance.now() - t0 > 30_000) throw new Error(`ping a→b keeps failing: ${JSON.stringify(r.body)}`);
    await sleep(200);
  }
  return { relayPort, relay, control, a, b, sockA, sink };
}

async function relayDrops(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let drops = 0;
  for (const m of text.matchAll(/^pierce_relay_drops_total(?:\{[^}]*\})?\s+(\S+)$/gm)) drops += Number(m[1]);
  return drops;
}

// ------------------------------------------------------------------------------------ bulk

interface BulkRound {
  mbitPerSec: number;
  seconds: number;
  /** CPU time / wall time over the transfer, 100% = one core. */
  cpu: Record<string, number | null>;
}

/** The relay's raw forwarding for one pair of DERP-over-TCP clients. */
class BaselinePair {
  private constructor(
    readonly tx: Pipe,
    readonly rx: Pipe,
    readonly batch: Buffer,
  ) {}

  static async open(port: number): Promise<BaselinePair> {
    const tx = await derpHandshake(await tcpDerpPipe(port));
    const rx = await derpHandshake(await tcpDerpPipe(port));
    const frame = encodeSendPacket(rx.key, new Uint8Array(SIZE).fill(0x45));
    const batch = Buffer.concat(Array.from({ length: BATCH }, () => frame));
    return new BaselinePair(tx.pipe, rx.pipe, batch);
  }

  /** Sends `bytes` worth of SIZE-byte packets; resolves with the round's figures. */
  run(bytes: number, pids: Record<string, number | undefined>): Promise<BulkRound> {
    const total = Math.ceil(bytes / SIZE / BATCH) * BATCH;
    let sent = 0;
    let recv = 0;
    const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, procCpu(p)]));
    const self0 = process.cpuUsage();
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      const pump = () => {
        while (sent < total && sent - recv + BATCH <= WINDOW && this.tx.buffered < BUFFER_HIGH) {
          this.tx.write(this.batch);
          sent += BATCH;
        }
      };
      let lastRecv = 0;
      const stall = setInterval(() => {
        if (recv === lastRecv) {
          clearInterval(stall);
          reject(new Error(`baseline stalled at ${recv}/${total} packets (sent ${sent})`));
        }
        lastRecv = recv;
        pump();
      }, 2000);
      this.rx.onData = recvCounter((n) => {
        recv += n;
        if (recv >= total) {
          clearInterval(stall);
          const secs = (performance.now() - t0) / 1000;
          const self = process.cpuUsage(self0);
          const cpu: Record<string, number | null> = { bench: (self.user + self.system) / 1e6 / secs };
          for (const [k, p] of Object.entries(pids)) {
            const c1 = procCpu(p);
            cpu[k] = c1 !== null && cpu0[k] !== null ? (c1 - cpu0[k]!) / secs : null;
          }
          resolve({ mbitPerSec: (total * SIZE * 8) / 1e6 / secs, seconds: secs, cpu });
        } else pump();
      });
      pump();
    });
  }

  close(): void {
    this.tx.sock.destroy();
    this.rx.sock.destroy();
  }
}

/** N MB through `pierce nc b 5201` on node a, into the sink behind b's forward. */
async function ncTransfer(m: Mesh, bytes: number): Promise<BulkRound> {
  const expect = m.sink.expect(bytes);
  const nc = pierce('pierce nc', ['nc', '--socket', m.sockA, 'b', '5201'], 'pipe');
  const chunk = Buffer.alloc(1 << 16);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 2654435761) >>> 24;
  const stdin = nc.proc.stdin!;
  stdin.on('error', () => {});
  let written = 0;
  let aborted = false;
  const writer = (async () => {
    while (written < bytes && !aborted) {
      const n = Math.min(chunk.length, bytes - written);
      written += n;
      if (!stdin.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
        await new Promise<void>((r) => {
          const done = () => {
            stdin.off('drain', done);
            stdin.off('close', done);
            r();
          };
          stdin.on('drain', done);
          stdin.on('close', done);
        });
      }
    }
  })();
  // CPU samples start at the sink's accept: nc's startup (loading tsx) is not the transfer's.
  const pids: Record<string, number | undefined> = { 'node a': m.a.proc.pid, 'node b': m.b.proc.pid, relay: m.relay.proc.pid, 'pierce nc': nc.proc.pid };
  let cpu0: Record<string, number | null> = {};
  let self0 = process.cpuUsage();
  const accepted = new Promise<void>((resolve) => {
    m.sink.server.once('connection', () => {
      cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, procCpu(p)]));
      self0 = process.cpuUsage();
      resolve();
    });
  });
  const exited = new Promise<never>((_, reject) =>
    nc.proc.once('exit', (code, sig) => reject(new Error(`pierce nc exited (${code ?? sig}) after ${expect.got()} of ${bytes} bytes reached the sink; stderr:\n${nc.stderr()}`))),
  );
  exited.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const t0 = performance.now();
  const timeout = new Promise<never>((_, reject) => {
    let last = -1;
    let lastAt = performance.now();
    timer = setInterval(() => {
      const got = expect.got();
      if (got !== last) {
        last = got;
        lastAt = performance.now();
      } else if (performance.now() - lastAt > STALL_MS) {
        reject(new Error(`nc transfer stalled: ${got} of ${bytes} bytes reached the sink, nothing new for ${STALL_MS / 1000} s (${((performance.now() - t0) / 1000).toFixed(0)} s in)`));
      }
    }, 500);
  });
  try {
    await Promise.race([accepted, exited, timeout]);
    const r = await Promise.race([expect.done, exited, timeout]);
    const secs = (r.last - r.accepted) / 1000;
    const self = process.cpuUsage(self0);
    const cpu: Record<string, number | null> = { bench: (self.user + self.system) / 1e6 / secs };
    for (const [k, p] of Object.entries(pids)) {
      const c1 = procCpu(p);
      cpu[k] = c1 !== null && cpu0[k] !== null && cpu0[k] !== undefined ? (c1 - cpu0[k]!) / secs : null;
    }
    return { mbitPerSec: (bytes * 8) / 1e6 / secs, seconds: secs, cpu };
  } finally {
    clearInterval(timer);
    aborted = true;
    stdin.destroy();
    await writer.catch(() => {});
    const gone = new Promise<void>((r) => (nc.proc.exitCode !== null || nc.proc.signalCode !== null ? r() : nc.proc.once('exit', () => r())));
    await Promise.race([gone, sleep(3000)]);
    if (nc.proc.exitCode === null && nc.proc.signalCode === null && nc.proc.pid) process.kill(nc.proc.pid, 'SIGKILL');
  }
}

// ------------------------------------------------------------------------------------ ping

/** Two DERP clients (over WebSocket, or TCP): B echoes whatever A sends; rtt() times one round trip. */
class Echo {
  private pending: ((t: number) => void) | null = null;

  private constructor(
    readonly a: Pipe,
    readonly b: Pipe,
    readonly frame: Uint8Array,
  ) {}

  static async open(port: number, transport: 'websocket' | 'tcp'): Promise<Echo> {
    const dial = transport === 'websocket' ? wsDerpPipe : tcpDerpPipe;
    const a = await derpHandshake(await dial(port));
    const b = await derpHandshake(await dial(port));
    const e = new Echo(a.pipe, b.pipe, encodeSendPacket(b.key, new Uint8Array(ECHO_SIZE).fill(0x11)));
    const rb = new FrameReader();
    b.pipe.onData = (d) => {
      for (const f of rb.push(u8(d))) {
        if (f.type !== FrameType.RecvPacket) continue;
        const src = NodePublic.fromRaw(f.payload.subarray(0, KEY_LEN));
        b.pipe.write(encodeSendPacket(src, f.payload.subarray(KEY_LEN)));
      }
    };
    const ra = new FrameReader();
    a.pipe.onData = (d) => {
      const now = performance.now();
      for (const f of ra.push(u8(d))) if (f.type === FrameType.RecvPacket) e.pending?.(now);
    };
    return e;
  }

  rtt(timeoutMs = 5000): Promise<number> {
    return new Promise((resolve, reject) => {
      const t0 = performance.now();
      const t = setTimeout(() => {
        this.pending = null;
        reject(new Error('echo timed out'));
      }, timeoutMs);
      this.pending = (now) => {
        clearTimeout(t);
        this.pending = null;
        resolve(now - t0);
      };
      this.a.write(this.frame);
    });
  }

  close(): void {
    this.a.sock.destroy();
    this.b.sock.destroy();
  }
}

interface PingStats {
  samples: number;
  p50: number;
  p90: number;
  mean: number;
  failures: number;
}

function pingStats(xs: number[], failures: number): PingStats {
  return { samples: xs.length, p50: median(xs), p90: percentile(xs, 0.9), mean: xs.reduce((a, b) => a + b, 0) / xs.length, failures };
}

// ------------------------------------------------------------------------------------ run

const started = performance.now();
const dir = mkdtempSync(join(tmpdir(), 'pierce-mesh-bench-'));
dirs.push(dir);
let mesh: Mesh | undefined;
try {
  log(`starting relay, control and two nodes …`);
  mesh = await setUp(dir);
  const m = mesh;
  log(`up in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const drops0 = await relayDrops(m.relayPort);

  // ---- bulk
  const pair = await BaselinePair.open(m.relayPort);
  const basePids = { relay: m.relay.proc.pid };
  // Warm-up: the relay's and our JIT, and the nodes' (a short nc transfer).
  await pair.run(Math.min(BYTES, 8e6), basePids);
  await ncTransfer(m, Math.min(BYTES, 2e6));
  const base: BulkRound[] = [];
  const nc: BulkRound[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? ['base', 'nc'] : ['nc', 'base'];
    for (const which of order) {
      if (which === 'base') {
        base.push(await pair.run(BYTES, basePids));
        log(`  round ${r + 1}/${ROUNDS}: relay baseline ${base.at(-1)!.mbitPerSec.toFixed(0)} Mbit/s`);
      } else {
        nc.push(await ncTransfer(m, BYTES));
        log(`  round ${r + 1}/${ROUNDS}: pierce nc ${nc.at(-1)!.mbitPerSec.toFixed(1)} Mbit/s (${nc.at(-1)!.seconds.toFixed(2)} s)`);
      }
    }
  }
  pair.close();
  const medRound = (rs: BulkRound[]) => [...rs].sort((x, y) => x.mbitPerSec - y.mbitPerSec)[Math.floor(rs.length / 2)]!;
  const baseMed = medRound(base);
  const ncMed = medRound(nc);

  // ---- ping
  log(`ping: ${PINGS} each of disco pings, WebSocket echoes and TCP echoes, interleaved …`);
  const echo = await Echo.open(m.relayPort, 'websocket');
  const tcpEcho = await Echo.open(m.relayPort, 'tcp');
  for (let i = 0; i < 20; i++) {
    await echo.rtt();
    await tcpEcho.rtt();
    await apiRequest(m.sockA, 'POST', '/ping?peer=b&timeout=2000', 10_000);
  }
  const disco: number[] = [];
  const ws: number[] = [];
  const tcp: number[] = [];
  let discoFail = 0;
  let wsFail = 0;
  let tcpFail = 0;
  for (let i = 0; i < PINGS; i++) {
    const r = await apiRequest(m.sockA, 'POST', '/ping?peer=b&timeout=2000', 10_000);
    if (r.status === 200 && typeof r.body['ms'] === 'number') disco.push(r.body['ms']);
    else discoFail++;
    try {
      ws.push(await echo.rtt(2000));
    } catch {
      wsFail++;
    }
    try {
      tcp.push(await tcpEcho.rtt(2000));
    } catch {
      tcpFail++;
    }
  }
  echo.close();
  tcpEcho.close();
  const discoStats = pingStats(disco, discoFail);
  const wsStats = pingStats(ws, wsFail);
  const tcpStats = pingStats(tcp, tcpFail);
  const drops = (await relayDrops(m.relayPort)) - drops0;
  const totalSeconds = (performance.now() - started) / 1000;

  const result = {
    node: process.version,
    cpus: cpus().length,
    mb: MB,
    rounds: ROUNDS,
    bulk: {
      baseline: { what: `relay raw forwarding, 1 pair of DERP-over-TCP clients, ${SIZE}-byte packets, ${WINDOW} in flight`, mbitPerSec: baseMed.mbitPerSec, rounds: base.map((r) => r.mbitPerSec), cpu: baseMed.cpu },
      nc: {
        what: 'pierce nc a→b over the relay into a TCP sink',
        mbitPerSec: ncMed.mbitPerSec,
        seconds: ncMed.seconds,
        rounds: nc.map((r) => r.mbitPerSec),
        cpu: ncMed.cpu,
        cpuSeconds: Object.fromEntries(Object.entries(ncMed.cpu).map(([k, v]) => [k, v === null ? null : v * ncMed.seconds])),
      },
      ratio: ncMed.mbitPerSec / baseMed.mbitPerSec,
    },
    ping: {
      baseline: { what: `WebSocket echo through the relay (DERP over WebSocket, ${ECHO_SIZE}-byte packets)`, ...wsStats },
      tcpEcho: { what: `the same echo over DERP-over-TCP (Upgrade: DERP, the nodes' transport)`, ...tcpStats },
      disco: { what: 'disco ping a→b via the local API (engine-measured ms)', ...discoStats },
      ratioP50: discoStats.p50 / wsStats.p50,
      ratioP50Tcp: discoStats.p50 / tcpStats.p50,
    },
    relayDrops: drops,
    totalSeconds,
  };

  if (json) console.log(JSON.stringify(result, null, 2));
  else {
    const pct = (x: number | null | undefined) => (x === null || x === undefined ? '-' : `${Math.round(x * 100)}%`);
    console.log(`Pierce mesh benchmarks (Node ${process.version}, ${cpus().length} CPUs, ${MB} MB per transfer, median of ${ROUNDS} rounds, ${PINGS} ping samples)\n`);
    const rows: [string, string, string][] = [
      ['bulk: relay raw forwarding, 1 DERP pair (baseline)', `${baseMed.mbitPerSec.toFixed(0)} Mbit/s`, ''],
      ['bulk: pierce nc a→b over the relay', `${ncMed.mbitPerSec.toFixed(1)} Mbit/s`, `${result.bulk.ratio.toFixed(3)} of baseline`],
      ['ping: WebSocket echo via relay p50 / p90 (baseline)', `${wsStats.p50.toFixed(2)} / ${wsStats.p90.toFixed(2)} ms`, ''],
      ['ping: (info) same echo over DERP-over-TCP p50 / p90', `${tcpStats.p50.toFixed(2)} / ${tcpStats.p90.toFixed(2)} ms`, ''],
      ['ping: disco ping a→b p50 / p90', `${discoStats.p50.toFixed(2)} / ${discoStats.p90.toFixed(2)} ms`, `${result.ping.ratioP50.toFixed(2)}× baseline p50 (${result.ping.ratioP50Tcp.toFixed(2)}× TCP echo)`],
    ];
    const w0 = Math.max(...rows.map((r) => r[0].length));
    const w1 = Math.max(...rows.map((r) => r[1].length));
    for (const [a, b, c] of rows) console.log(`${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`);
    console.log(`  rounds (Mbit/s): baseline ${base.map((r) => r.mbitPerSec.toFixed(0)).join(', ')}; nc ${nc.map((r) => r.mbitPerSec.toFixed(1)).join(', ')}`);
    const cpuS = (x: number | null | undefined, secs: number) => (x === null || x === undefined ? '' : ` (${(x * secs).toFixed(2)} s)`);
    console.log(`  CPU during the median nc round (100% = one core; CPU seconds): ${Object.entries(ncMed.cpu).map(([k, v]) => `${k} ${pct(v)}${cpuS(v, ncMed.seconds)}`).join(', ')}`);
    console.log(`  CPU during the median baseline round: ${Object.entries(baseMed.cpu).map(([k, v]) => `${k} ${pct(v)}`).join(', ')}`);
    console.log(`  relay drops over the run: ${drops}; ping failures: disco ${discoFail}, WebSocket echo ${wsFail}, TCP echo ${tcpFail}. Total ${totalSeconds.toFixed(0)} s.`);
  }
} catch (e) {
  console.error(`mesh bench failed: ${(e as Error).stack ?? e}`);
  process.exitCode = 1;
} finally {
  await mesh?.control.close().catch(() => {});
  mesh?.sink.server.close();
  cleanup();
  // Lingering sockets (e.g. the control's) must not keep the process up.
  setTimeout(() => process.exit(), 200).unref();
}
