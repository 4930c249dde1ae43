/**
 * `npm run bench`: Pierce's WireGuard against its baselines, measured in the same run.
 *
 *   aead raw        seal+open of a 1420-byte packet with the backend's bare ChaCha20-Poly1305
 *   wg transport    the same through WireGuard's data path (header, counter, padding, parse,
 *                   replay window): Keypair.seal + parseMessage + Keypair.open + validate
 *   wg device       the whole Device: route lookup → seal → sink → receive → allowed-IPs check
 *   handshakes      full Noise_IKpsk2 exchanges (initiation, response, keys), and X25519 alone
 *
 * Ratios compare each to the raw AEAD (or X25519) of the same backend. Flags: --json, --time MS.
 */
import { nobleBackend } from '../../src/crypto/noble.ts';
import type { CryptoBackend } from '../../src/crypto/backend.ts';
import { nodeBackend } from '../../gateway/src/crypto/node-backend.ts';
import { Keypair } from '../../src/wg/keypair.ts';
import { parseMessage, type TransportHeader, type Initiation, type Response } from '../../src/wg/messages.ts';
import { Handshake, createInitiation, openInitiation, acceptInitiation, createResponse, consumeResponse, deriveTransportKeys } from '../../src/wg/noise.ts';
import { NodePrivate } from '../../src/key/keys.ts';
import { cryptoRandom } from '../../src/crypto/backend.ts';
import { Device } from '../../src/wg/device.ts';
import type { Endpoint } from '../../src/wg/types.ts';
import { REJECT_AFTER_MESSAGES } from '../../src/wg/constants.ts';
import { runTcpInprocess } from './tcp-inprocess.ts';

const args = process.argv.slice(2);
const json = args.includes('--json');
const timeIdx = args.indexOf('--time');
const TIME = timeIdx >= 0 ? Number(args[timeIdx + 1]) : 1000;
const ROUNDS = 3;
const SIZE = 1420;

/** Ops per second of `fn` (called in batches), median of ROUNDS rounds of TIME ms after warm-up. */
function measure(fn: () => void): number {
  const t0 = performance.now();
  while (performance.now() - t0 < 200) fn();
  const rates: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let n = 0;
    const start = performance.now();
    let now = start;
    while (now - start < TIME) {
      for (let i = 0; i < 64; i++) fn();
      n += 64;
      now = performance.now();
    }
    rates.push((n * 1000) / (now - start));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(ROUNDS / 2)]!;
}

function rawAead(b: CryptoBackend): () => void {
  const key = cryptoRandom(32);
  const nonce = new Uint8Array(12);
  const pt = cryptoRandom(SIZE);
  return () => {
    const ct = b.seal(key, nonce, pt);
    if (!b.open(key, nonce, ct)) throw new Error('open failed');
  };
}

function wgTransport(b: CryptoBackend): () => void {
  const k1 = cryptoRandom(32);
  const k2 = cryptoRandom(32);
  const tx = new Keypair(k1, k2, true, 1, 2, 0);
  const rx = new Keypair(k2, k1, false, 2, 1, 0);
  const pkt = cryptoRandom(SIZE);
  pkt[0] = 0x45;
  return () => {
    const counter = tx.sendCounter++;
    const d = tx.seal(b, pkt, counter, 1420);
    const m = parseMessage(d) as TransportHeader;
    if (!rx.open(b, m) || !rx.replay.validate(m.counter, REJECT_AFTER_MESSAGES)) throw new Error('open failed');
  };
}

function wgDevice(b: CryptoBackend): () => void {
  type Ep = Endpoint & { dev?: Device<Ep> };
  const epA: Ep = { key: 'a' };
  const epB: Ep = { key: 'b' };
  let delivered = 0;
  const mk = (key: NodePrivate, self: Ep) =>
    new Device<Ep>({
      privateKey: key,
      backend: b,
      sink: { send: (to, d) => to.dev!.receive(d, self, now), deliver: () => void delivered++ },
    });
  let now = 0;
  const ka = NodePrivate.generate();
  const kb = NodePrivate.generate();
  const a = mk(ka, epA);
  const bd = mk(kb, epB);
  epA.dev = a;
  epB.dev = bd;
  a.addPeer({ publicKey: kb.public(), endpoint: epB, allowedIPs: [{ addr: Uint8Array.of(10, 0, 0, 2), bits: 32 }] });
  bd.addPeer({ publicKey: ka.public(), endpoint: epA, allowedIPs: [{ addr: Uint8Array.of(10, 0, 0, 1), bits: 32 }] });
  const pkt = new Uint8Array(SIZE);
  pkt[0] = 0x45;
  pkt[2] = SIZE >> 8;
  pkt[3] = SIZE & 255;
  pkt.set([10, 0, 0, 1], 12);
  pkt.set([10, 0, 0, 2], 16);
  a.send(pkt, now); // handshake happens synchronously through the sinks
  return () => {
    now += 0.001;
    a.send(pkt, now);
  };
}

function handshake(b: CryptoBackend): () => void {
  const ctx = { backend: b, random: cryptoRandom };
  const ki = NodePrivate.generate().raw();
  const kr = NodePrivate.generate().raw();
  const li = { priv: ki, pub: b.x25519Public(ki) };
  const lr = { priv: kr, pub: b.x25519Public(kr) };
  const psk = new Uint8Array(32);
  let wall = 1_700_000_000_000;
  let now = 0;
  // Per-peer state is made once (its static-static DH is precomputed), as in a device.
  const hi = new Handshake(lr.pub, psk, li, b);
  const hr = new Handshake(li.pub, psk, lr, b);
  return () => {
    wall += 1000;
    now += 1000;
    const init = parseMessage(createInitiation(ctx, li, hi, 1, wall)) as Initiation;
    const opened = openInitiation(ctx, lr, init, () => hr.precomputedStaticStatic);
    acceptInitiation(hr, opened, init, now);
    const resp = parseMessage(createResponse(ctx, hr, 2)) as Response;
    consumeResponse(ctx, li, hi, resp);
    deriveTransportKeys(hi);
    deriveTransportKeys(hr);
  };
}

function x25519(b: CryptoBackend): () => void {
  const k = NodePrivate.generate().raw();
  const p = b.x25519Public(NodePrivate.generate().raw());
  return () => void b.x25519(k, p);
}

const rows: { backend: string; test: string; opsPerSec: number; baseline: string; ratio: number; mbitPerSec?: number }[] = [];
for (const b of [nobleBackend, nodeBackend]) {
  const raw = measure(rawAead(b));
  const tr = measure(wgTransport(b));
  const dev = measure(wgDevice(b));
  const dh = measure(x25519(b));
  const hs = measure(handshake(b));
  const mbit = (ops: number) => (ops * SIZE * 8) / 1e6;
  rows.push({ backend: b.name, test: 'aead raw seal+open 1420 B (baseline)', opsPerSec: raw, baseline: '-', ratio: 1, mbitPerSec: mbit(raw) });
  rows.push({ backend: b.name, test: 'wg transport seal+open 1420 B', opsPerSec: tr, baseline: 'aead raw', ratio: tr / raw, mbitPerSec: mbit(tr) });
  rows.push({ backend: b.name, test: 'wg device send→receive 1420 B', opsPerSec: dev, baseline: 'aead raw', ratio: dev / raw, mbitPerSec: mbit(dev) });
  rows.push({ backend: b.name, test: 'x25519 (baseline)', opsPerSec: dh, baseline: '-', ratio: 1 });
  rows.push({ backend: b.name, test: 'handshake (init+resp+keys)', opsPerSec: hs, baseline: 'x25519', ratio: hs / dh });
}

const tcp = runTcpInprocess();

if (json) {
  console.log(JSON.stringify({ node: process.version, size: SIZE, rows, tcpInprocess: tcp }, null, 2));
} else {
  console.log(`Pierce WireGuard benchmarks (Node ${process.version}, ${SIZE}-byte packets, median of ${ROUNDS} × ${TIME} ms)\n`);
  const w = Math.max(...rows.map((r) => r.test.length));
  console.log(`${'backend'.padEnd(12)} ${'test'.padEnd(w)} ${'ops/s'.padStart(10)} ${'Mbit/s'.padStart(8)}  ratio`);
  for (const r of rows) {
    const ratio = r.baseline === '-' ? '' : `${r.ratio.toFixed(3)} of ${r.baseline}`;
    console.log(`${r.backend.padEnd(12)} ${r.test.padEnd(w)} ${Math.round(r.opsPerSec).toString().padStart(10)} ${(r.mbitPerSec ? r.mbitPerSec.toFixed(0) : '').padStart(8)}  ${ratio}`);
  }
  console.log('\nA handshake does 4 X25519 on the initiator side (one precomputed) and 4 on the responder;');
  console.log('"wg transport" over "aead raw" is the cost of WireGuard framing (goal: ≥ 0.90).');
  console.log(`\nUserspace TCP, two stacks back to back in one process, no crypto (${(tcp.bytes / 1e6).toFixed(0)} MB one way):`);
  console.log(`  ${tcp.mbytesPerSec.toFixed(1)} MB/s (${((tcp.mbytesPerSec * 8) / 1000).toFixed(2)} Gbit/s), ${tcp.segments} data segments, ${tcp.usPerSegment.toFixed(1)} µs CPU per segment (both ends)`);
  console.log(`  baseline: copying the same bytes through a Buffer queue: ${tcp.baselineMbytesPerSec.toFixed(0)} MB/s (ratio ${(tcp.mbytesPerSec / tcp.baselineMbytesPerSec).toFixed(3)})`);
  console.log('\nThroughput through the tunnel against wireguard-go (root, network namespaces): npx tsx test/bench/tcp-throughput.ts');
}
