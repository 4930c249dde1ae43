/**
 * Two Pierce nodes on the fake internet (fake-net.ts), each a DiscoAgent and a DirectPaths wired
 * as the engine wires them (src/engine/engine.ts), with one peer record for the other node; a
 * relay carries disco between their agents, and a "control" hands each node's reported
 * endpoints to the other (setPeerEndpoints). Maintained test code for test/unit/direct.test.ts.
 */
import type { DirectOptions, EngineOptions, EngineTransports } from '../../src/engine/types.ts';
import type { PeerInfo, RelayMap } from '../../src/control/messages.ts';
import { DiscoAgent } from '../../src/engine/disco.ts';
import { DirectPaths, type DirectPeer } from '../../src/engine/direct.ts';
import { PeerPaths } from '../../src/paths/paths.ts';
import { DiscoPrivate, MachinePrivate, NodePrivate, type NodePublic } from '../../src/key/keys.ts';
import { nobleBackend } from '../../src/crypto/noble.ts';
import { FakeClock, FakeInternet, type FakeHost, type NatKind } from './fake-net.ts';
import { seededRandom } from './wg-net.ts';
import { afterEach, beforeEach, vi } from 'vitest';

/**
 * Math.random from a seeded source (spray ports and the re-STUN jitter use it), so every run
 * is the same; `vi.restoreAllMocks()` undoes it.
 */
export function seedMathRandom(seed: number): void {
  const r = seededRandom(seed);
  vi.spyOn(Math, 'random').mockImplementation(() => {
    const b = r(4);
    return (((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0) / 2 ** 32;
  });
}

/** A fresh world (seeded, Math.random too) for every test of the file, stopped after it. */
export function worldPerTest(set: (w: FakeWorld) => void, seed = 0xb1d): void {
  let w: FakeWorld | undefined;
  beforeEach(() => {
    seedMathRandom(seed);
    w = new FakeWorld(7);
    set(w);
  });
  afterEach(() => {
    w?.stop();
    vi.restoreAllMocks();
  });
}

/** Advances `world`'s fake time in `step`s until `cond` holds; the fake time it took. Fails after `maxMs`. */
export async function advanceUntil(world: FakeWorld, cond: () => boolean, maxMs: number, step = 100, each?: () => void): Promise<number> {
  const start = world.clock.now();
  while (!cond()) {
    if (world.clock.now() - start >= maxMs) throw new Error(`not within ${maxMs} ms of fake time`);
    each?.();
    await world.clock.advance(step);
  }
  return world.clock.now() - start;
}

export type TestPeer = DirectPeer;

export interface NodeSpec {
  nat: NatKind;
  publicIp: string;
  privateIp?: string;
  direct?: DirectOptions;
}

/** The two STUN servers (at different public IPs) every node is told about. */
export const STUN_1 = '203.0.113.1:3478';
export const STUN_2 = '198.51.100.1:3478';

export class DirectNode {
  readonly host: FakeHost;
  readonly opts: EngineOptions;
  readonly disco: DiscoAgent<TestPeer>;
  readonly direct: DirectPaths<TestPeer>;
  /** The record of the other node (as the engine keeps one per peer). */
  peer!: TestPeer;
  other!: DirectNode;
  /** WireGuard datagrams the `receive` hook got. */
  readonly received: Uint8Array[] = [];
  readonly reports: string[][] = [];
  readonly logs: string[] = [];
  relayUp = true;
  readonly nodeKey: NodePublic;

  constructor(
    readonly world: FakeWorld,
    readonly name: string,
    readonly home: number,
    spec: NodeSpec,
    seed: number,
  ) {
    this.host = world.net.addHost(name, spec.nat, spec.publicIp, spec.privateIp);
    const random = seededRandom(seed);
    const node = NodePrivate.generate(random);
    this.nodeKey = node.public();
    this.opts = {
      controlUrl: 'http://control.invalid',
      hostname: name,
      keys: { machine: MachinePrivate.generate(random), node, disco: DiscoPrivate.generate(random) },
      backend: nobleBackend,
      random,
      clock: world.clock,
      // DiscoAgent and DirectPaths never open relays or control connections themselves.
      transports: {} as EngineTransports,
      log: (level, m) => void this.logs.push(`${world.clock.now()} ${level} ${m}`),
      ...(spec.direct ? { direct: spec.direct } : {}),
    };
    this.disco = new DiscoAgent<TestPeer>(this.opts, {
      sendRelay: (node, region, packet) => world.relay(this, node, region, packet),
      sendUdp: (path, packet) => this.direct.send(path, packet),
      peerByDisco: (d) => (this.peer && this.peer.info.discoKey === d ? this.peer : undefined),
      pinged: (peer, path) => this.direct.pinged(peer, path),
      callMeMaybe: (peer, eps) => this.direct.callMeMaybe(peer, eps),
      punch: (peer, m) => this.direct.punch(peer, m),
    });
    this.direct = new DirectPaths<TestPeer>(this.opts, this.host, {
      disco: this.disco,
      peers: () => (this.peer ? [this.peer] : []),
      relayMap: () => world.relayMap,
      homeRelay: () => this.home,
      report: (eps) => {
        this.reports.push(eps);
        // What control does: the peer hears our endpoints a little later.
        world.clock.setTimer(() => {
          this.other.peer.info = { ...this.other.peer.info, endpoints: eps };
          this.other.direct.setPeerEndpoints(this.other.peer, eps);
        }, world.controlLatency);
      },
      receive: (_peer, data) => void this.received.push(Uint8Array.from(data)),
    });
  }


  /** Our record as the other node sees it. */
  info(id: number): PeerInfo {
    return {
      id,
      name: this.name,
      tags: [],
      nodeKey: this.nodeKey.toString(),
      discoKey: this.opts.keys.disco.public().toString(),
      addrs: [`100.64.0.${id}/32`],
      endpoints: [],
      homeRelay: this.home,
      online: true,
      lastSeen: null,
      keyExpiry: null,
    };
  }
}

export class FakeWorld {
  readonly clock = new FakeClock();
  readonly net: FakeInternet;
  relayLatency = 20;
  controlLatency = 50;
  readonly relayMap: RelayMap = {
    regions: [
      { id: 1, code: 'r1', name: 'Relay 1', nodes: [{ url: 'http://r1.invalid', stun: STUN_1 }] },
      { id: 2, code: 'r2', name: 'Relay 2', nodes: [{ url: 'http://r2.invalid', stun: STUN_2 }] },
    ],
  };
  readonly stats = { relayed: 0 };
  private readonly nodes: DirectNode[] = [];

  constructor(seed = 1) {
    this.net = new FakeInternet(this.clock, seed);
    this.net.addStun(STUN_1.split(':')[0]!);
    this.net.addStun(STUN_2.split(':')[0]!);
  }

  /** Two nodes that know each other (no endpoints yet: their STUN results reach the peer via "control"). */
  pair(a: NodeSpec, b: NodeSpec): [DirectNode, DirectNode] {
    const x = new DirectNode(this, 'a', 1, a, 1001);
    const y = new DirectNode(this, 'b', 2, b, 2002);
    x.other = y;
    y.other = x;
    x.peer = { info: y.info(2), node: y.nodeKey, paths: new PeerPaths() };
    y.peer = { info: x.info(1), node: x.nodeKey, paths: new PeerPaths() };
    x.peer.paths.relayRegion = 2;
    y.peer.paths.relayRegion = 1;
    this.nodes.push(x, y);
    return [x, y];
  }

  /** The relay: delivers a disco packet to the node with key `to`, tagged with the sender's key. */
  relay(from: DirectNode, to: NodePublic, region: number, packet: Uint8Array): boolean {
    if (!from.relayUp) return false;
    const dst = this.nodes.find((n) => n.nodeKey.equals(to));
    if (!dst) return false;
    this.stats.relayed++;
    const copy = Uint8Array.from(packet);
    this.clock.setTimer(() => dst.disco.onPacket(copy, { relay: from.nodeKey, region }), this.relayLatency);
    return true;
  }

  /** Starts both nodes' UDP and lets STUN and the endpoint reports settle. */
  async start(ms = 1_500): Promise<void> {
    for (const n of this.nodes) await n.direct.start();
    await this.clock.advance(ms);
  }

  stop(): void {
    for (const n of this.nodes) {
      n.direct.stop();
      n.disco.close();
    }
  }
}
