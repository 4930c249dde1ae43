/**
 * An in-memory network of WireGuard devices on a virtual clock: maintained test code for fast,
 * deterministic unit tests of the handshake, timers and data path. (The same code is tested
 * against wireguard-go in test/interop.)
 */
import { nobleBackend } from '../../src/crypto/noble.ts';
import type { CryptoBackend } from '../../src/crypto/backend.ts';
import { NodePrivate, PresharedKey } from '../../src/key/keys.ts';
import { Device, type PeerConfig } from '../../src/wg/device.ts';
import type { WgLimits } from '../../src/wg/constants.ts';
import type { Endpoint } from '../../src/wg/types.ts';
import type { WgError } from '../../src/wg/errors.ts';

export interface Ep extends Endpoint {
  key: string;
}

export interface Node {
  name: string;
  ep: Ep;
  dev: Device<Ep>;
  delivered: Uint8Array[];
  errors: WgError[];
}

/** A deterministic random source (xorshift), so runs repeat exactly. */
export function seededRandom(seed: number): (n: number) => Uint8Array {
  let s = seed >>> 0 || 1;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      out[i] = s & 255;
    }
    return out;
  };
}

export class VirtualNet {
  now = 0;
  latency = 10;
  /** Drop predicate for datagrams in flight (from, to, data). */
  drop: (from: string, to: string, data: Uint8Array) => boolean = () => false;
  /** Every datagram sent, for inspection. */
  readonly wire: { t: number; from: string; to: string; data: Uint8Array }[] = [];
  private readonly inflight: { at: number; from: Node; to: string; data: Uint8Array }[] = [];
  readonly nodes = new Map<string, Node>();
  private seq = 1;

  constructor(
    private readonly backend: CryptoBackend = nobleBackend,
    private readonly limits: Partial<WgLimits> = {},
  ) {}

  wallClock = () => 1_700_000_000_000 + this.now;

  addNode(name: string, key = NodePrivate.generate(seededRandom(this.seq * 7919))): Node {
    const ep: Ep = { key: name };
    const node: Node = { name, ep, delivered: [], errors: [], dev: null as unknown as Device<Ep> };
    node.dev = new Device<Ep>({
      privateKey: key,
      backend: this.backend,
      random: seededRandom(this.seq++ * 104729),
      wallClock: this.wallClock,
      limits: this.limits,
      sink: {
        send: (to, data) => {
          const copy = Uint8Array.from(data);
          this.wire.push({ t: this.now, from: name, to: to.key, data: copy });
          // A separate copy in flight: the receiver decrypts in place.
          this.inflight.push({ at: this.now + this.latency, from: node, to: to.key, data: Uint8Array.from(data) });
        },
        deliver: (packet) => node.delivered.push(Uint8Array.from(packet)),
      },
    });
    this.nodes.set(name, node);
    return node;
  }

  /** Makes a and b peers of each other; `aKnowsB` gives a b's endpoint (a can initiate). */
  connect(a: Node, b: Node, opts: { psk?: PresharedKey; aKnowsB?: boolean; bKnowsA?: boolean; keepalive?: number; aIP: string; bIP: string }): void {
    const ipA = ipv4(opts.aIP);
    const ipB = ipv4(opts.bIP);
    const ca: PeerConfig<Ep> = { publicKey: b.dev.publicKey, allowedIPs: [{ addr: ipB, bits: 32 }], persistentKeepalive: opts.keepalive ?? 0 };
    if (opts.psk) ca.presharedKey = opts.psk;
    if (opts.aKnowsB ?? true) ca.endpoint = b.ep;
    const cb: PeerConfig<Ep> = { publicKey: a.dev.publicKey, allowedIPs: [{ addr: ipA, bits: 32 }] };
    if (opts.psk) cb.presharedKey = opts.psk;
    if (opts.bKnowsA) cb.endpoint = a.ep;
    a.dev.addPeer(ca);
    b.dev.addPeer(cb);
  }

  /** Injects a datagram as if it arrived at `to` from `from` now. */
  inject(to: Node, data: Uint8Array, from: Ep): WgError | undefined {
    const err = to.dev.receive(data, from, this.now);
    if (err) to.errors.push(err);
    return err;
  }

  /** Advances virtual time to `until`, delivering datagrams and firing timers in order. */
  run(until: number): void {
    for (;;) {
      let next = Infinity;
      for (const f of this.inflight) next = Math.min(next, f.at);
      for (const n of this.nodes.values()) {
        const d = n.dev.nextDeadline();
        if (d !== null) next = Math.min(next, d);
      }
      if (next > until) break;
      this.now = Math.max(this.now, next);
      const due = this.inflight.filter((f) => f.at <= this.now);
      for (const f of due) this.inflight.splice(this.inflight.indexOf(f), 1);
      for (const f of due) {
        const to = this.nodes.get(f.to);
        if (!to || this.drop(f.from.name, f.to, f.data)) continue;
        this.inject(to, f.data, f.from.ep);
      }
      for (const n of this.nodes.values()) n.dev.tick(this.now);
    }
    this.now = until;
  }

  /** Datagrams of message type `type` sent by `from` (optionally since time `since`). */
  sent(from: string, type: number, since = 0): number {
    return this.wire.filter((w) => w.from === from && w.data[0] === type && w.t >= since).length;
  }
}

export function ipv4(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number));
}

/** A minimal IPv4 packet (no valid checksum; WireGuard does not look) with `n` payload bytes. */
export function ipPacket(src: string, dst: string, n = 100, fill = 0xab): Uint8Array {
  const p = new Uint8Array(20 + n);
  p[0] = 0x45;
  p[2] = (p.length >> 8) & 255;
  p[3] = p.length & 255;
  p[8] = 64;
  p[9] = 17;
  p.set(ipv4(src), 12);
  p.set(ipv4(dst), 16);
  p.fill(fill, 20);
  return p;
}
