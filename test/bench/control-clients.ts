/**
 * Simulated nodes for the control benchmark (test/bench/control.ts), run in a child process
 * (child_process.fork with tsx) so their work does not share the control server's event loop.
 *
 * Every node speaks the real protocol through src/control/client.ts (WebSocket, Noise IK,
 * framing, JSON): connect, register with its auth key, open its map stream and apply the full
 * map and every delta to its view. The view is NetmapView ("full") or, for large tailnets, a
 * lean one ("lean") with the same apply semantics (seq check, full / peersChanged /
 * peersRemoved / peersPatch / filter) that keeps only each peer's online flag instead of the
 * whole PeerInfo (10,000 nodes × ~1,000 peers of PeerInfo would not fit in memory).
 *
 * Timestamps are `performance.timeOrigin + performance.now()` (ms since the epoch, comparable
 * across processes on one machine), taken right after a message was applied.
 *
 * Commands from the parent (process.send), each answered with {reply: id, ...}:
 *   init {view}                                  view kind
 *   prepare {nodes}                              make these nodes (keys), answer their public keys
 *   join-all {url, serverKey, authKeys, concurrency}  join the prepared nodes, `concurrency` at a time
 *   phase-start                                  reset the per-phase counters
 *   phase-status                                 map messages received so far in the phase
 *   phase-report                                 per-phase results (ids that got a message, …)
 *   watch {from}                                 report when a node id ≥ from is online in a view
 *   join-one {node}                              join one node, with its timestamps
 *   digests                                      per node: peer count / id sum / id hash, filter hash
 *   memory                                       process.memoryUsage()
 * Unsolicited: {observed: [[peerId, observerId, at], …]} for watched ids.
 */
import { FilterState } from '../../src/control/filter-sets.ts';
import WebSocket from 'ws';
import { cryptoRandom } from '../../src/crypto/backend.ts';
import { DiscoPrivate, MachinePrivate, MachinePublic, NodePrivate } from '../../src/key/keys.ts';
import { ControlConnection, NetmapView, type WebSocketCtor } from '../../src/control/client.ts';
import type { MapResponse, ServerMessage } from '../../src/control/messages.ts';
import type { PacketFilter } from '../../src/policy/types.ts';
import { nodeBackend } from '../../gateway/src/crypto/node-backend.ts';
import { idsDigest, textHash } from './control-tailnet.ts';

/** argv marker of the child process (so importing this file elsewhere starts nothing). */
export const CHILD_FLAG = '--control-bench-child';

export interface ClientNode {
  idx: number;
  hostname: string;
  /** Given when the node joins (join-all carries the keys of prepared nodes). */
  authKey?: string;
}

export type ViewKind = 'full' | 'lean';

/** What the benchmark needs of a view: apply, and whether a peer is present and online. */
interface View {
  seq: number;
  apply(m: MapResponse): void;
  online(id: number): boolean | undefined;
  peerIds(): Iterable<number>;
  readonly peerCount: number;
  readonly filter: PacketFilter;
  readonly hasSelf: boolean;
}

class FullView implements View {
  readonly v = new NetmapView();
  get seq(): number {
    return this.v.seq;
  }
  apply(m: MapResponse): void {
    this.v.apply(m);
  }
  online(id: number): boolean | undefined {
    return this.v.peers.get(id)?.online;
  }
  peerIds(): Iterable<number> {
    return this.v.peers.keys();
  }
  get peerCount(): number {
    return this.v.peers.size;
  }
  get filter(): PacketFilter {
    return this.v.filter;
  }
  get hasSelf(): boolean {
    return this.v.self !== undefined;
  }
}

/** NetmapView's apply, keeping each peer's online flag only. */
class LeanView implements View {
  seq = 0;
  readonly peers = new Map<number, boolean>();
  readonly filterState = new FilterState();
  hasSelf = false;
  get filter(): PacketFilter {
    return this.filterState.filter;
  }
  apply(m: MapResponse): void {
    if (!m.full && m.seq !== this.seq + 1) throw new Error(`CONTROL_MAP_SEQ: map delta ${m.seq} after ${this.seq}`);
    this.seq = m.seq;
    if (m.full) {
      this.peers.clear();
      for (const p of m.peers ?? []) this.peers.set(p.id, p.online);
    }
    if (m.self) this.hasSelf = true;
    this.filterState.apply(m);
    for (const p of m.peersChanged ?? []) this.peers.set(p.id, p.online);
    for (const id of m.peersRemoved ?? []) this.peers.delete(id);
    for (const patch of m.peersPatch ?? []) {
      if (this.peers.has(patch.id) && patch.online !== undefined) this.peers.set(patch.id, patch.online);
    }
  }
  online(id: number): boolean | undefined {
    return this.peers.get(id);
  }
  peerIds(): Iterable<number> {
    return this.peers.keys();
  }
  get peerCount(): number {
    return this.peers.size;
  }
}

const now = (): number => performance.timeOrigin + performance.now();

class SimNode {
  id = -1;
  conn: ControlConnection | undefined;
  view: View;
  bytes = 0;
  // Per-phase counters.
  phaseMsgs = 0;
  phaseBytes = 0;
  phaseFirst = 0;
  phaseLast = 0;
  bytesAtPhase = 0;
  /** Watched peer ids already seen online by this node. */
  observed: Set<number> | undefined;
  private waiters: (() => void)[] = [];
  registered = false;
  error: string | undefined;
  readonly machineKey = MachinePrivate.generate();
  readonly nodeKey = NodePrivate.generate();
  readonly discoKey = DiscoPrivate.generate();

  constructor(
    readonly spec: ClientNode,
    kind: ViewKind,
  ) {
    this.view = kind === 'full' ? new FullView() : new LeanView();
  }

  onMessage(m: ServerMessage): void {
    if (m.t === 'map') {
      this.view.apply(m);
      const at = now();
      totalMsgs++;
      if (phaseOn) {
        if (this.phaseMsgs === 0) this.phaseFirst = at;
        this.phaseMsgs++;
        this.phaseLast = at;
        this.phaseBytes = this.bytes - this.bytesAtPhase;
        phaseMsgsTotal++;
        phaseLastAt = Math.max(phaseLastAt, at);
      }
      if (watchFrom > 0 && this.id > 0) this.observe(m, at);
    } else if (m.t === 'register') {
      if (m.status === 'ok') {
        this.id = m.node.id;
        this.registered = true;
      } else this.error = `needs-login (auth key refused?)`;
    } else if (m.t === 'error') this.error = `${m.code}: ${m.message}`;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private observe(m: MapResponse, at: number): void {
    const check = (id: number) => {
      if (id < watchFrom || id === this.id) return;
      if (this.view.online(id) !== true) return;
      const o = (this.observed ??= new Set());
      if (o.has(id)) return;
      o.add(id);
      pendingObs.push([id, this.id, at]);
      scheduleObs();
    };
    for (const p of m.peers ?? []) check(p.id);
    for (const p of m.peersChanged ?? []) check(p.id);
    for (const p of m.peersPatch ?? []) check(p.id);
  }

  waitFor(pred: () => boolean, ms: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.spec.hostname}: timed out waiting for ${what}`)), ms);
      const check = () => {
        if (this.error) {
          clearTimeout(timer);
          return reject(new Error(`${this.spec.hostname}: ${this.error}`));
        }
        if (pred()) {
          clearTimeout(timer);
          return resolve();
        }
        this.waiters.push(check);
      };
      check();
    });
  }

  async connect(): Promise<void> {
    countingTarget = this;
    this.conn = await ControlConnection.connect({
      url,
      machineKey: this.machineKey,
      serverKey,
      backend: nodeBackend,
      random: cryptoRandom,
      WebSocket: CountingWebSocket as unknown as WebSocketCtor,
      onMessage: (m) => this.onMessage(m),
      onClose: (code, reason) => {
        this.error ??= `closed ${code} ${reason}`;
        closedCount++;
      },
      timeoutMs: 60_000,
    });
  }

  async register(): Promise<void> {
    this.conn!.send({ t: 'register', nodeKey: this.nodeKey.public().toString(), hostname: this.spec.hostname, authKey: this.spec.authKey! });
    await this.waitFor(() => this.registered, 120_000, 'registration');
  }

  async map(): Promise<void> {
    this.conn!.send({ t: 'map', discoKey: this.discoKey.public().toString(), endpoints: [`192.0.2.${(this.spec.idx % 250) + 1}:41641`], homeRelay: 1, stream: true });
    await this.waitFor(() => this.view.hasSelf, 120_000, 'full map');
  }
}

// ---- module state ----

let url = '';
let serverKey!: MachinePublic;
let viewKind: ViewKind = 'full';
const nodes: SimNode[] = [];
let closedCount = 0;
let phaseOn = false;
/** Map messages received by all nodes of this process. */
let totalMsgs = 0;
let phaseMsgsTotal = 0;
let phaseLastAt = 0;
let watchFrom = 0;
let pendingObs: [number, number, number][] = [];
let obsScheduled = false;

/** The node whose WebSocket is being constructed (ControlConnection.connect constructs it synchronously). */
let countingTarget: SimNode | undefined;

/** `ws` with a byte counter per node: every received WebSocket message's payload length. */
class CountingWebSocket extends WebSocket {
  constructor(address: string, protocols: string | string[]) {
    super(address, protocols, { perMessageDeflate: false });
    const n = countingTarget!;
    this.on('message', (d: Buffer | ArrayBuffer) => {
      n.bytes += d.byteLength;
    });
  }
}

function scheduleObs(): void {
  if (obsScheduled) return;
  obsScheduled = true;
  setImmediate(() => {
    obsScheduled = false;
    const batch = pendingObs;
    pendingObs = [];
    process.send!({ observed: batch });
  });
}

function filterHash(f: PacketFilter): string {
  return textHash(JSON.stringify(f));
}

async function pool<T>(items: T[], concurrency: number, f: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  const workers = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (i < items.length) await f(items[i++]!);
  });
  await Promise.all(workers);
}

type Command =
  | { cmd: 'init'; view: ViewKind }
  | { cmd: 'prepare'; nodes: ClientNode[] }
  | { cmd: 'join-all'; url: string; serverKey: string; authKeys: [number, string][]; concurrency: number }
  | { cmd: 'phase-start' }
  | { cmd: 'phase-status' }
  | { cmd: 'phase-report' }
  | { cmd: 'watch'; from: number }
  | { cmd: 'join-one'; node: ClientNode }
  | { cmd: 'digests' }
  | { cmd: 'memory' }
  | { cmd: 'exit' };

async function handle(c: Command): Promise<Record<string, unknown>> {
  switch (c.cmd) {
    case 'init':
      viewKind = c.view;
      return {};
    case 'prepare': {
      // Keys are made here (in parallel with the other client processes); the parent may
      // preload the nodes into the store with these public keys (--bootstrap restore).
      const fresh = c.nodes.map((s) => new SimNode(s, viewKind));
      nodes.push(...fresh);
      return { keys: fresh.map((n) => [n.spec.idx, n.machineKey.public().toString(), n.nodeKey.public().toString()]) };
    }
    case 'join-all': {
      url = c.url;
      serverKey = MachinePublic.parse(c.serverKey);
      const keys = new Map(c.authKeys);
      const t0 = now();
      const todo = nodes.filter((n) => !n.conn);
      for (const n of todo) n.spec.authKey = keys.get(n.spec.idx);
      let failures = 0;
      let firstError = '';
      const stage = { connect: 0, register: 0, map: 0 };
      await pool(todo, c.concurrency, async (n) => {
        try {
          let t = now();
          await n.connect();
          stage.connect += now() - t;
          t = now();
          await n.register();
          stage.register += now() - t;
          t = now();
          await n.map();
          stage.map += now() - t;
        } catch (e) {
          failures++;
          firstError ||= (e as Error).message;
        }
      });
      const k = Math.max(1, todo.length);
      return { ms: now() - t0, ids: todo.map((n) => [n.spec.idx, n.id]), failures, firstError, avgMs: { connect: stage.connect / k, register: stage.register / k, map: stage.map / k } };
    }
    case 'phase-start':
      phaseOn = true;
      phaseMsgsTotal = 0;
      phaseLastAt = 0;
      for (const n of nodes) {
        n.phaseMsgs = 0;
        n.phaseBytes = 0;
        n.phaseFirst = 0;
        n.phaseLast = 0;
        n.bytesAtPhase = n.bytes;
      }
      return {};
    case 'phase-status':
      return { total: totalMsgs, msgs: phaseMsgsTotal, lastAt: phaseLastAt, closed: closedCount };
    case 'phase-report': {
      const got: number[] = [];
      let bytes = 0;
      let multi = 0;
      for (const n of nodes) {
        if (n.phaseMsgs === 0) continue;
        got.push(n.id);
        bytes += n.phaseBytes;
        if (n.phaseMsgs > 1) multi++;
      }
      phaseOn = false;
      return { got, bytes, msgs: phaseMsgsTotal, lastAt: phaseLastAt, multi };
    }
    case 'watch':
      watchFrom = c.from;
      return {};
    case 'join-one': {
      const n = new SimNode(c.node, viewKind);
      nodes.push(n);
      const tConnect = now();
      await n.connect();
      const tReg = now();
      await n.register();
      const tMap = now();
      await n.map();
      const tFull = now();
      return { id: n.id, tConnect, tReg, tMap, tFull, peers: n.view.peerCount };
    }
    case 'digests': {
      const out: [number, string, string, number][] = [];
      for (const n of nodes) if (n.id > 0) out.push([n.id, idsDigest(n.view.peerIds()), filterHash(n.view.filter), n.view.seq]);
      return { digests: out };
    }
    case 'memory':
      return { memory: process.memoryUsage() };
    case 'exit':
      for (const n of nodes) n.conn?.close();
      setTimeout(() => process.exit(0), 50);
      return {};
  }
}

if (process.send && process.argv.includes(CHILD_FLAG)) {
  process.on('message', (msg: { id: number } & Command) => {
    handle(msg).then(
      (r) => process.send!({ reply: msg.id, ...r }),
      (e: Error) => process.send!({ reply: msg.id, error: e.stack ?? String(e) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
}
