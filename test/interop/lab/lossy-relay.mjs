#!/usr/bin/env node
// A userspace UDP relay that impairs traffic: loss, reordering (random extra delay) and
// duplication, independently in each direction. Standalone (node:dgram only), so it runs
// unchanged under `ip netns exec … node lossy-relay.mjs`.
//
//   client ──► [front socket: --listen] ──impair──► [back socket] ──► --upstream
//   client ◄── [front socket]           ◄──impair── [back socket] ◄── upstream
//
// The client is whoever last sent to the front socket (like a NAT mapping). The upstream sees
// the back socket's address (an ephemeral port on the wildcard address).
//
// Usage:
//   node lossy-relay.mjs --upstream HOST:PORT [--listen HOST:PORT] [--drop PCT] [--dup PCT]
//        [--delay-pct PCT] [--delay-min MS] [--delay-max MS] [--seed N]
// Prints `lossy-relay listening on udp HOST:PORT -> HOST:PORT seed N` once ready (stdout),
// `stats {json}` on SIGUSR1, and the stats again on SIGTERM/SIGINT before exiting 0.
// Each packet: dropped with --drop %; else sent, plus a copy with --dup %; each copy sent
// now, or with --delay-pct % after a uniform random --delay-min..--delay-max ms.
import dgram from 'node:dgram';

function parseArgs(argv) {
  const o = { listen: '127.0.0.1:0', upstream: '', drop: 0, dup: 0, delayPct: 0, delayMin: 5, delayMax: 30, seed: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    switch (a) {
      case '--listen': o.listen = v; break;
      case '--upstream': o.upstream = v; break;
      case '--drop': o.drop = Number(v); break;
      case '--dup': o.dup = Number(v); break;
      case '--delay-pct': o.delayPct = Number(v); break;
      case '--delay-min': o.delayMin = Number(v); break;
      case '--delay-max': o.delayMax = Number(v); break;
      case '--seed': o.seed = Number(v) >>> 0; break;
      default: throw new Error(`unknown option ${a}`);
    }
  }
  if (!o.upstream) throw new Error('--upstream HOST:PORT is required');
  for (const k of ['drop', 'dup', 'delayPct', 'delayMin', 'delayMax']) {
    if (!Number.isFinite(o[k]) || o[k] < 0) throw new Error(`bad --${k}: ${o[k]}`);
  }
  if (o.delayMax < o.delayMin) throw new Error('--delay-max < --delay-min');
  return o;
}

function splitHostPort(s) {
  const m = s.match(/^\[([^\]]+)\]:(\d+)$/) ?? s.match(/^([^:]+):(\d+)$/);
  if (!m) throw new Error(`bad HOST:PORT: ${s}`);
  return { host: m[1], port: Number(m[2]) };
}

const fmt = (host, port) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

// mulberry32: small, seedable, good enough to pick packets.
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`lossy-relay: ${e.message}\n`);
  process.exit(2);
}
const seed = opts.seed ?? (Math.random() * 2 ** 32) >>> 0;
const rand = prng(seed);
const listen = splitHostPort(opts.listen);
const upstream = splitHostPort(opts.upstream);
const family = (h) => (h.includes(':') ? 'udp6' : 'udp4');

const newDir = () => ({ in: 0, dropped: 0, duplicated: 0, delayed: 0, out: 0 });
const stats = { toUpstream: newDir(), toClient: newDir() };

const front = dgram.createSocket(family(listen.host));
const back = dgram.createSocket(family(upstream.host));
let client; // { address, port } of the last sender to the front socket
let pending = 0;

function impair(st, data, send) {
  st.in++;
  if (rand() * 100 < opts.drop) {
    st.dropped++;
    return;
  }
  let copies = 1;
  if (rand() * 100 < opts.dup) {
    st.duplicated++;
    copies = 2;
  }
  for (let i = 0; i < copies; i++) {
    if (rand() * 100 < opts.delayPct) {
      st.delayed++;
      const ms = opts.delayMin + rand() * (opts.delayMax - opts.delayMin);
      pending++;
      setTimeout(() => {
        pending--;
        st.out++;
        send(data);
      }, ms);
    } else {
      st.out++;
      send(data);
    }
  }
}

const ignore = () => {};
front.on('message', (data, rinfo) => {
  client = { address: rinfo.address, port: rinfo.port };
  impair(stats.toUpstream, data, (d) => back.send(d, upstream.port, upstream.host, ignore));
});
back.on('message', (data, rinfo) => {
  if (!client || rinfo.port !== upstream.port) return;
  const to = client;
  impair(stats.toClient, data, (d) => front.send(d, to.port, to.address, ignore));
});
for (const s of [front, back]) s.on('error', (e) => process.stderr.write(`lossy-relay: socket error: ${e.message}\n`));

const printStats = () => process.stdout.write(`stats ${JSON.stringify({ ...stats, pending, client: client ? fmt(client.address, client.port) : null })}\n`);
process.on('SIGUSR1', printStats);
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    printStats();
    front.close();
    back.close();
    process.exit(0);
  });
}

back.bind(0, () => {
  front.bind(listen.port, listen.host, () => {
    const a = front.address();
    process.stdout.write(`lossy-relay listening on udp ${fmt(a.address, a.port)} -> ${fmt(upstream.host, upstream.port)} seed ${seed}\n`);
  });
});
