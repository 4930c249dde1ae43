/**
 * pierce relay over real sockets on loopback: two clients exchange packets over each transport
 * (WebSocket subprotocol `derp`, and Upgrade: DERP), the HTTP endpoints, PeerGone, replacement of
 * a duplicate key, and misbehaving clients that cost only their own connection.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { WebSocket } from 'ws';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NodePrivate, NodePublic } from '../../src/key/keys.ts';
import { equalBytes } from '../../src/crypto/bytes.ts';
import { startRelay, type RelayServer } from '../../gateway/src/relay/server.ts';
import { dialDerp, type DerpConnection, type DerpTransport } from '../../gateway/src/relay/dial.ts';
import { FrameReader, FrameType, PeerGoneReason, encodeFrame, encodeSendPacket, decodeRecvPacket } from '../../src/derp/frames.ts';
import { sealClientInfo } from '../../src/derp/handshake.ts';
import { cryptoRandom } from '../../src/crypto/backend.ts';
import { DerpLink } from '../../gateway/src/relay/link.ts';

const relays: RelayServer[] = [];
const conns: DerpConnection[] = [];
afterEach(async () => {
  for (const c of conns.splice(0)) c.close();
  for (const r of relays.splice(0)) await r.close();
});

async function relay(opts: Parameters<typeof startRelay>[0] extends infer O ? Partial<O> : never = {}) {
  const r = await startRelay({ host: '127.0.0.1', port: 0, ...opts });
  relays.push(r);
  return r;
}

interface Peer {
  key: NodePrivate;
  conn: DerpConnection;
  got: { src: NodePublic; packet: Uint8Array }[];
  gone: { key: NodePublic; reason: number }[];
}

async function peer(r: RelayServer, transport: DerpTransport, key = NodePrivate.generate(), ca?: Buffer): Promise<Peer> {
  const got: Peer['got'] = [];
  const gone: Peer['gone'] = [];
  const conn = dialDerp({
    url: r.url,
    transport,
    privateKey: key,
    serverPublicKey: r.publicKey,
    ...(ca ? { ca } : {}),
    events: { packet: (src, p) => got.push({ src, packet: Uint8Array.from(p) }), peerGone: (k, reason) => gone.push({ key: k, reason }) },
  });
  conns.push(conn);
  await conn.ready;
  return { key, conn, got, gone };
}

async function until(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('pierce relay (DERP v2)', () => {
  for (const [ta, tb] of [
    ['websocket', 'websocket'],
    ['derp', 'derp'],
    ['websocket', 'derp'],
  ] as const) {
    it(`two clients exchange packets (${ta} ↔ ${tb})`, async () => {
      const r = await relay();
      const a = await peer(r, ta);
      const b = await peer(r, tb);
      for (let i = 0; i < 50; i++) a.conn.client.sendPacket(b.key.public(), new Uint8Array(1400).fill(i), performance.now());
      b.conn.client.sendPacket(a.key.public(), Uint8Array.of(9, 9, 9), performance.now());
      await until(() => b.got.length === 50 && a.got.length === 1);
      expect(b.got.every((g, i) => g.src.equals(a.key.public()) && g.packet.length === 1400 && g.packet[0] === i)).toBe(true);
      expect(equalBytes(a.got[0]!.packet, Uint8Array.of(9, 9, 9))).toBe(true);
    });
  }

  it('serves the probe, latency-check and generate_204 endpoints, and 426 without an upgrade', async () => {
    const r = await relay();
    const base = r.url.replace(/\/derp$/, '');
    for (const p of ['/derp/probe', '/derp/latency-check']) {
      const res = await fetch(base + p, { method: 'HEAD' });
      expect(res.status).toBe(200);
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
    }
    const ok = await fetch(base + '/generate_204', { headers: { 'X-Tailscale-Challenge': 'abc.DEF:1-2' } });
    expect(ok.status).toBe(204);
    expect(ok.headers.get('x-tailscale-response')).toBe('response abc.DEF:1-2');
    const bad = await fetch(base + '/generate_204', { headers: { 'X-Tailscale-Challenge': 'no spaces allowed' } });
    expect(bad.headers.get('x-tailscale-response')).toBeNull();
    expect((await fetch(base + '/derp')).status).toBe(426);
  });

  it('tells senders when their peer leaves (PeerGone disconnected), and unknown disco targets are "not here"', async () => {
    const r = await relay();
    const a = await peer(r, 'websocket');
    const b = await peer(r, 'derp');
    a.conn.client.sendPacket(b.key.public(), Uint8Array.of(1), performance.now());
    await until(() => b.got.length === 1);
    b.conn.close();
    await until(() => a.gone.length === 1);
    expect(a.gone[0]!.key.equals(b.key.public())).toBe(true);
    expect(a.gone[0]!.reason).toBe(PeerGoneReason.Disconnected);
    const disco = new Uint8Array(80);
    disco.set([0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac]);
    const nobody = NodePrivate.generate().public();
    for (let i = 0; i < 10; i++) a.conn.client.sendPacket(nobody, disco, performance.now());
    await until(() => a.gone.length >= 4);
    await new Promise((res) => setTimeout(res, 200));
    // Rate limited: a burst of 3 (and maybe one more token refilled), not 10.
    const notHere = a.gone.filter((g) => g.reason === PeerGoneReason.NotHere);
    expect(notHere.length).toBeGreaterThanOrEqual(3);
    expect(notHere.length).toBeLessThanOrEqual(4);
  });

  it('a second connection with the same key replaces the first', async () => {
    const r = await relay();
    const key = NodePrivate.generate();
    const first = await peer(r, 'websocket', key);
    let firstClosed = false;
    first.conn.ready.catch(() => {});
    const c2 = await peer(r, 'derp', key);
    const other = await peer(r, 'websocket');
    await until(() => first.conn.client.state === 'closed' || firstClosed, 5000).catch(() => {});
    other.conn.client.sendPacket(key.public(), Uint8Array.of(7), performance.now());
    await until(() => c2.got.length === 1);
    expect(first.got).toHaveLength(0);
    expect(r.clientKeys()).toHaveLength(2);
  });

  it('garbage, oversize frames and handshake stalls cost only the offending connection', async () => {
    const r = await relay({ limits: { handshakeTimeoutMs: 300 } });
    const a = await peer(r, 'websocket');
    const b = await peer(r, 'derp');
    const u = new URL(r.url);
    const raw = async (bytes: Buffer | null): Promise<boolean> =>
      new Promise((resolve) => {
        const s = connect(Number(u.port), u.hostname, () => {
          s.write('GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n');
          if (bytes) s.write(bytes);
        });
        s.on('data', () => {});
        s.on('close', () => resolve(true));
        s.on('error', () => resolve(true));
        setTimeout(() => {
          s.destroy();
          resolve(false);
        }, 4000);
      });
    const oversize = Buffer.from([0x04, 0x7f, 0xff, 0xff, 0xff]);
    const results = await Promise.all([
      raw(Buffer.from('this is not DERP at all, just some garbage bytes')),
      raw(oversize),
      raw(null), // says nothing: closed after the handshake timeout
      raw(Buffer.concat([Buffer.from([0x02, 0, 0, 0, 60]), Buffer.alloc(60, 1)])), // a ClientInfo that does not open
    ]);
    expect(results).toEqual([true, true, true, true]);
    a.conn.client.sendPacket(b.key.public(), Uint8Array.of(5), performance.now());
    await until(() => b.got.length === 1);
    expect(r.clientKeys()).toHaveLength(2);
  });

  it('exports Prometheus metrics with --metrics', async () => {
    const r = await relay({ metrics: true });
    const a = await peer(r, 'websocket');
    const b = await peer(r, 'websocket');
    a.conn.client.sendPacket(b.key.public(), new Uint8Array(100), performance.now());
    await until(() => b.got.length === 1);
    const text = await (await fetch(r.url.replace(/\/derp$/, '/metrics'))).text();
    expect(text).toMatch(/pierce_relay_clients 2/);
    expect(text).toMatch(/pierce_relay_packets_forwarded_total 1/);
  });

  it('`pierce relay` runs from the command line and relays between both transports', async () => {
    const bin = fileURLToPath(new URL('../../gateway/bin/pierce.mjs', import.meta.url));
    const p = spawn(process.execPath, [bin, 'relay', '--listen', '127.0.0.1:0', '--metrics'], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      let err = '';
      const url = await new Promise<string>((resolve, reject) => {
        p.stderr!.on('data', (d: Buffer) => {
          err += d.toString();
          const m = /relay listening on (\S+) \(public key (nodekey:[0-9a-f]{64})\)/.exec(err);
          if (m) resolve(m[1]!);
        });
        p.on('exit', () => reject(new Error(`pierce relay exited: ${err}`)));
        setTimeout(() => reject(new Error(`no listening line: ${err}`)), 15_000);
      });
      const fake = { url, publicKey: NodePublic.parse(/public key (nodekey:[0-9a-f]{64})/.exec(err)![1]!) } as unknown as RelayServer;
      const a = await peer(fake, 'websocket');
      const b = await peer(fake, 'derp');
      a.conn.client.sendPacket(b.key.public(), Uint8Array.of(4, 2), performance.now());
      await until(() => b.got.length === 1);
      expect(Array.from(b.got[0]!.packet)).toEqual([4, 2]);
    } finally {
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    }
    expect(p.exitCode).toBe(0);
  }, 30_000);

  it('relays sharing a mesh key forward between their clients (mesh), both ways', async () => {
    const meshKey = new Uint8Array(32).fill(0x42);
    const r1 = await relay({ meshKey });
    const r2 = await relay({ meshKey });
    r1.addMeshPeer(r2.url);
    r2.addMeshPeer(r1.url);
    r1.addMeshPeer(r1.url); // a relay listed in its own mesh is recognised and ignored
    const a = await peer(r1, 'websocket');
    const b = await peer(r2, 'derp');
    // Presence travels by WatchConns; retry until each relay has learned where the other's client is.
    await until(() => {
      b.conn.client.sendPacket(a.key.public(), Uint8Array.of(1), performance.now());
      a.conn.client.sendPacket(b.key.public(), Uint8Array.of(2), performance.now());
      return a.got.length > 0 && b.got.length > 0;
    }, 5000);
    expect(a.got[0]!.src.equals(b.key.public())).toBe(true);
    expect(b.got[0]!.src.equals(a.key.public())).toBe(true);
    // A relay that presents a wrong mesh key is refused.
    const wrong = dialDerp({ url: r1.url, transport: 'derp', privateKey: NodePrivate.generate(), meshKey: new Uint8Array(32).fill(1) });
    conns.push(wrong);
    await expect(wrong.ready).rejects.toThrow();
  });

  it('a relay restart costs clients a reconnect, not their session', async () => {
    const key = NodePrivate.generate();
    let r = await relay({ privateKey: key });
    const port = r.port;
    const got: number[] = [];
    const ka = NodePrivate.generate();
    const kb = NodePrivate.generate();
    const mk = (k: NodePrivate) =>
      new DerpLink({ url: r.url, transport: 'websocket', privateKey: k, serverPublicKey: key.public(), backoff: { baseMs: 50, maxMs: 500 }, events: { packet: (_s, p) => got.push(p[0]!) } });
    const la = mk(ka);
    const lb = mk(kb);
    try {
      await until(() => la.client !== null && lb.client !== null);
      la.sendPacket(kb.public(), Uint8Array.of(1));
      await until(() => got.includes(1));
      await r.close();
      relays.splice(relays.indexOf(r), 1);
      r = await relay({ privateKey: key, port });
      await until(() => la.connects === 2 && lb.connects === 2, 10_000);
      la.sendPacket(kb.public(), Uint8Array.of(2));
      await until(() => got.includes(2));
    } finally {
      la.close();
      lb.close();
    }
  });

  it('a client that stops reading loses its oldest packets, then is disconnected; others carry on', async () => {
    const r = await relay({ metrics: true, limits: { writeTimeoutMs: 500, writeBufferHigh: 64 << 10 } });
    const a = await peer(r, 'websocket');
    const c = await peer(r, 'websocket');
    // The slow reader: a raw Upgrade: DERP connection that sends its ClientInfo, then never reads.
    const slowKey = NodePrivate.generate();
    const u = new URL(r.url);
    const sock = connect(Number(u.port), u.hostname);
    sock.on('error', () => {});
    await new Promise<void>((res) => sock.once('connect', () => res()));
    sock.write('GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n');
    sock.write(encodeFrame(FrameType.ClientInfo, sealClientInfo(slowKey, r.publicKey, { version: 2 }, cryptoRandom)));
    await until(() => r.clientKeys().length === 3);
    sock.pause();
    const big = new Uint8Array(60_000);
    for (let i = 0; i < 200; i++) a.conn.client.sendPacket(slowKey.public(), big, performance.now());
    await until(() => r.clientKeys().length === 2, 10_000);
    a.conn.client.sendPacket(c.key.public(), Uint8Array.of(3), performance.now());
    await until(() => c.got.length === 1);
    const text = await (await fetch(r.url.replace(/\/derp$/, '/metrics'))).text();
    expect(text).toMatch(/pierce_relay_drops_total\{reason="queue_full"\} [1-9]/);
    expect(text).toMatch(/pierce_relay_drops_total\{reason="conn_derp_write_timeout"\} 1/);
    sock.destroy();
  });

  it('honours a token bucket: the server announces it and the client keeps to it', async () => {
    const r = await relay({ limits: { rateBytesPerSec: 50_000, burstBytes: 70_000 } });
    const a = await peer(r, 'websocket');
    const b = await peer(r, 'websocket');
    expect(a.conn.client.serverInfo?.tokenBucketBytesPerSecond).toBe(50_000);
    let accepted = 0;
    for (let i = 0; i < 200; i++) if (a.conn.client.sendPacket(b.key.public(), new Uint8Array(1000), performance.now())) accepted++;
    await new Promise((res) => setTimeout(res, 300));
    expect(accepted).toBeLessThan(100); // burst 70 kB of 1037-byte frames, plus a little refill
    expect(a.conn.client.stats.droppedRateLimited).toBe(200 - accepted);
    // The server keeps its own bucket too (it started filling earlier, the client's refills while
    // it sends): at most what the client let through arrives.
    expect(b.got.length).toBeLessThanOrEqual(accepted);
    expect(b.got.length).toBeGreaterThan(50);
  });

  it('a flood of silent connections is shed by the handshake timeout; real clients still connect', async () => {
    const r = await relay({ limits: { handshakeTimeoutMs: 500 } });
    const u = new URL(r.url);
    const socks = Array.from({ length: 200 }, () => connect(Number(u.port), u.hostname));
    for (const s of socks) s.on('error', () => {});
    const a = await peer(r, 'derp');
    const b = await peer(r, 'websocket');
    a.conn.client.sendPacket(b.key.public(), Uint8Array.of(8), performance.now());
    await until(() => b.got.length === 1);
    for (const s of socks) s.destroy();
  });

  it('parses frames by length across WebSocket messages: split and shared messages both work', async () => {
    const r = await relay();
    const b = await peer(r, 'websocket');
    const key = NodePrivate.generate();
    const ws = new WebSocket(r.url.replace(/^http/, 'ws'), ['derp'], { perMessageDeflate: false });
    const reader = new FrameReader();
    const frames: { type: number; payload: Uint8Array }[] = [];
    ws.on('message', (d: Buffer) => frames.push(...reader.push(Uint8Array.from(d))));
    await new Promise<void>((res, rej) => {
      ws.once('open', () => res());
      ws.once('error', rej);
    });
    try {
      const info = encodeFrame(FrameType.ClientInfo, sealClientInfo(key, r.publicKey, { version: 2 }, cryptoRandom));
      // The ClientInfo frame in three messages, cut inside the header and inside the payload.
      ws.send(info.subarray(0, 3));
      ws.send(info.subarray(3, 40));
      ws.send(info.subarray(40));
      await until(() => r.clientKeys().length === 2);
      // Two SendPacket frames and half of a third in one message, the rest in the next.
      const f1 = encodeSendPacket(b.key.public(), Uint8Array.of(1));
      const f2 = encodeSendPacket(b.key.public(), Uint8Array.of(2));
      const f3 = encodeSendPacket(b.key.public(), new Uint8Array(500).fill(3));
      const all = new Uint8Array(f1.length + f2.length + f3.length);
      all.set(f1, 0);
      all.set(f2, f1.length);
      all.set(f3, f1.length + f2.length);
      const cut = f1.length + f2.length + 100;
      ws.send(all.subarray(0, cut));
      ws.send(all.subarray(cut));
      await until(() => b.got.length === 3);
      expect(b.got.map((g) => [g.packet[0], g.packet.length])).toEqual([[1, 1], [2, 1], [3, 500]]);
      expect(b.got.every((g) => g.src.equals(key.public()))).toBe(true);
      // The relay's own frames arrive and parse too (ServerKey, ServerInfo; a packet back).
      b.conn.client.sendPacket(key.public(), Uint8Array.of(9), performance.now());
      await until(() => frames.some((f) => f.type === FrameType.RecvPacket));
      const rp = decodeRecvPacket(frames.find((f) => f.type === FrameType.RecvPacket)!.payload);
      expect(rp.key.equals(b.key.public()) && rp.packet[0] === 9).toBe(true);
      expect(frames[0]!.type).toBe(FrameType.ServerKey);
    } finally {
      ws.close();
    }
  });

  it('serves DERP over TLS (wss:// and https:// with Upgrade: DERP)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pierce-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
      const cert = readFileSync(join(dir, 'cert.pem'));
      const r = await relay({ tls: { cert, key: readFileSync(join(dir, 'key.pem')) } });
      expect(r.url.startsWith('https://')).toBe(true);
      const a = await peer(r, 'websocket', NodePrivate.generate(), cert);
      const b = await peer(r, 'derp', NodePrivate.generate(), cert);
      a.conn.client.sendPacket(b.key.public(), Uint8Array.of(6), performance.now());
      await until(() => b.got.length === 1);
      // Without trusting the certificate the connection is refused.
      const untrusted = dialDerp({ url: r.url, transport: 'websocket', privateKey: NodePrivate.generate() });
      conns.push(untrusted);
      await expect(untrusted.ready).rejects.toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
