/**
 * `npx tsx test/bench/control-noise.ts`: the control channel's Noise_IK against its baselines,
 * measured in the same run on each backend.
 *
 *   x25519 raw           one X25519 (backend.x25519); a handshake side's baseline is 4 of them
 *   handshake initiator  initiate + finishInitiator (the reply precomputed: fixed ephemerals)
 *   handshake responder  respond + accept (a fresh responder ephemeral each time)
 *   handshake both       a complete exchange, both sides; baseline x25519 / 8
 *   aead raw N           the backend's bare ChaCha20-Poly1305 seal+open of N bytes
 *   noise transport N    NoiseSession.encrypt + decrypt (N ≤ 65519, the largest Noise plaintext)
 *   framed message N     sealMessage + Reassembler.push of an N-byte logical message
 *
 * Each side of a handshake does 5 scalar multiplications (4 DH and the ephemeral public key),
 * so ~0.8 of the "x25519 ×4" baseline is the ceiling. Each test runs in rounds alternating with
 * its baseline. Flags: --json, --time MS (per round).
 */
import type { CryptoBackend } from '../../src/crypto/backend.ts';
import { cryptoRandom } from '../../src/crypto/backend.ts';
import { nobleBackend } from '../../src/crypto/noble.ts';
import { nodeBackend } from '../../gateway/src/crypto/node-backend.ts';
import { MachinePrivate } from '../../src/key/keys.ts';
import { finishInitiator, initiate, keyPair, MAX_PLAINTEXT_LEN, respond, type NoiseConfig, type NoiseSession } from '../../src/control/noise.ts';
import { Reassembler, sealMessage } from '../../src/control/framing.ts';

const args = process.argv.slice(2);
const json = args.includes('--json');
const timeIdx = args.indexOf('--time');
/** Milliseconds per round and function; a pair runs 2 × ROUNDS rounds. */
const TIME = timeIdx >= 0 ? Number(args[timeIdx + 1]) : 120;
const ROUNDS = 5;
const PROLOGUE = new TextEncoder().encode('pierce control bench');

/** Calls `fn` in batches for `ms` milliseconds; returns ops/s. */
function run(fn: () => void, batch: number, ms: number): number {
  let k = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < batch; i++) fn();
    k += batch;
    now = performance.now();
  }
  return (k * 1000) / (now - start);
}

/**
 * Measures `test` and its `base`line in alternating rounds (so both see the same machine load)
 * after a warm-up that sizes batches to ~2 ms; returns the median rates and the median of the
 * per-round ratios.
 */
function measurePair(base: () => void, test: () => void): { base: number; test: number; ratio: number } {
  const batchOf = (fn: () => void) => Math.max(1, Math.round((run(fn, 1, TIME / 2) * 2) / 1000));
  const bb = batchOf(base);
  const tb = batchOf(test);
  const bs: number[] = [];
  const ts: number[] = [];
  const rs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const b = run(base, bb, TIME);
    const t = run(test, tb, TIME);
    bs.push(b);
    ts.push(t);
    rs.push(t / b);
  }
  const med = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  return { base: med(bs), test: med(ts), ratio: med(rs) };
}

function setup(b: CryptoBackend) {
  const node = keyPair(b, MachinePrivate.generate().raw());
  const server = keyPair(b, MachinePrivate.generate().raw());
  const cfg: NoiseConfig = { backend: b, random: cryptoRandom, prologue: PROLOGUE };
  return { node, server, cfg };
}

function rawX25519(b: CryptoBackend): () => void {
  const k = MachinePrivate.generate().raw();
  const p = b.x25519Public(MachinePrivate.generate().raw());
  return () => void b.x25519(k, p);
}

function handshakeInitiator(b: CryptoBackend): () => void {
  const { node, server, cfg } = setup(b);
  const cfgI = { ...cfg, ephemeral: cryptoRandom(32) };
  const cfgR = { ...cfg, ephemeral: cryptoRandom(32) };
  const payload = new Uint8Array(64);
  const { message } = initiate(cfgI, node, server.pub, payload);
  const reply = respond(cfgR, server, message).accept(payload).message;
  return () => {
    const { pending } = initiate(cfgI, node, server.pub, payload);
    finishInitiator(pending, reply);
  };
}

function handshakeResponder(b: CryptoBackend): () => void {
  const { node, server, cfg } = setup(b);
  const payload = new Uint8Array(64);
  const { message } = initiate(cfg, node, server.pub, payload);
  return () => void respond(cfg, server, message).accept(payload);
}

function handshakeBoth(b: CryptoBackend): () => void {
  const { node, server, cfg } = setup(b);
  const payload = new Uint8Array(64);
  return () => {
    const { message, pending } = initiate(cfg, node, server.pub, payload);
    const reply = respond(cfg, server, message).accept(payload).message;
    finishInitiator(pending, reply);
  };
}

function sessions(b: CryptoBackend): { tx: NoiseSession; rx: NoiseSession } {
  const { node, server, cfg } = setup(b);
  const { message, pending } = initiate(cfg, node, server.pub, new Uint8Array(0));
  const acc = respond(cfg, server, message).accept(new Uint8Array(0));
  return { tx: finishInitiator(pending, acc.message).session, rx: acc.session };
}

function rawAead(b: CryptoBackend, size: number): () => void {
  const key = cryptoRandom(32);
  const nonce = new Uint8Array(12);
  const pt = cryptoRandom(size);
  return () => {
    const ct = b.seal(key, nonce, pt);
    if (!b.open(key, nonce, ct)) throw new Error('open failed');
  };
}

function noiseTransport(b: CryptoBackend, size: number): () => void {
  const { tx, rx } = sessions(b);
  const pt = cryptoRandom(size);
  return () => void rx.decrypt(tx.encrypt(pt));
}

function framed(b: CryptoBackend, size: number): () => void {
  const { tx, rx } = sessions(b);
  const r = new Reassembler(rx);
  const data = cryptoRandom(size);
  return () => {
    let out: Uint8Array | null = null;
    for (const c of sealMessage(tx, data)) out = r.push(c);
    if (!out || out.length !== size) throw new Error('reassembly failed');
  };
}

interface Row {
  backend: string;
  test: string;
  opsPerSec: number;
  mbPerSec?: number;
  baseline: string;
  baselineOpsPerSec: number;
  baselineMbPerSec?: number;
  /** test ÷ baseline, where a handshake's baseline is x25519 ops/s ÷ 4 (÷ 8 for both sides). */
  ratio: number;
}

const rows: Row[] = [];
const started = performance.now();
for (const b of [nodeBackend, nobleBackend]) {
  for (const [name, fn, per] of [
    ['handshake initiator', handshakeInitiator(b), 4],
    ['handshake responder', handshakeResponder(b), 4],
    ['handshake both sides', handshakeBoth(b), 8],
  ] as const) {
    const m = measurePair(rawX25519(b), fn);
    rows.push({ backend: b.name, test: name, opsPerSec: m.test, baseline: `x25519 ×${per}`, baselineOpsPerSec: m.base / per, ratio: m.ratio * per });
  }
  const mb = (ops: number, size: number) => (ops * size) / 1e6;
  for (const [kind, fn, sizes] of [
    ['noise transport', noiseTransport, [64, 1024, MAX_PLAINTEXT_LEN]],
    ['framed message', framed, [64, 1024, 65536]],
  ] as const) {
    for (const size of sizes) {
      const m = measurePair(rawAead(b, size), fn(b, size));
      rows.push({
        backend: b.name,
        test: `${kind} ${size} B`,
        opsPerSec: m.test,
        mbPerSec: mb(m.test, size),
        baseline: `aead ${size} B`,
        baselineOpsPerSec: m.base,
        baselineMbPerSec: mb(m.base, size),
        ratio: m.ratio,
      });
    }
  }
}
const seconds = (performance.now() - started) / 1000;

if (json) {
  console.log(JSON.stringify({ node: process.version, seconds, rows }, null, 2));
} else {
  console.log(`Control channel Noise_IK_25519_ChaChaPoly_BLAKE2s (Node ${process.version}; test and baseline in alternating rounds, median of ${ROUNDS} × ${TIME} ms each; ${seconds.toFixed(1)} s)\n`);
  const w = Math.max(...rows.map((r) => r.test.length));
  const bw = Math.max(...rows.map((r) => r.baseline.length));
  const mbs = (x?: number) => (x === undefined ? '' : x.toFixed(1)).padStart(8);
  const ops = (x: number) => Math.round(x).toString().padStart(9);
  console.log(`${'backend'.padEnd(12)} ${'test'.padEnd(w)} ${'ops/s'.padStart(9)} ${'MB/s'.padStart(8)}   ${'baseline'.padEnd(bw)} ${'ops/s'.padStart(9)} ${'MB/s'.padStart(8)}   ratio`);
  for (const r of rows) {
    console.log(
      `${r.backend.padEnd(12)} ${r.test.padEnd(w)} ${ops(r.opsPerSec)} ${mbs(r.mbPerSec)}   ${r.baseline.padEnd(bw)} ${ops(r.baselineOpsPerSec)} ${mbs(r.baselineMbPerSec)}   ${r.ratio.toFixed(3)}`,
    );
  }
  console.log('\nMB/s counts payload bytes per seal+open. A handshake side does 5 scalar multiplications (4 DH + its');
  console.log('ephemeral public key) plus ~12 BLAKE2s/HMAC calls, so ≈0.8 of "x25519 ×4" is the ceiling; on node:crypto');
  console.log('the ephemeral costs more than a DH (the backend imports a fresh private key as PKCS#8). A 65536-byte');
  console.log('framed message is two Noise messages (65518 + 18 data bytes).');
}
