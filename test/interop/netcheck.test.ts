/**
 * netcheck against STUN servers on loopback: Pierce's own (on 127.0.0.1, 127.0.0.2 and ::1;
 * the STUN client it uses is tested against coturn in stun.test.ts); a relay's /derp/probe; and a stand-in for an endpoint-dependent
 * NAT (a responder that reports a different mapped port per server address), which must show
 * as "mapping varies by destination". The NAT lab (network namespaces and nftables) comes with
 * NAT traversal.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import { startStunServer, type StunServer } from '../../gateway/src/stun/server.ts';
import { startRelay, type RelayServer } from '../../gateway/src/relay/server.ts';
import { netcheck } from '../../gateway/src/netcheck/netcheck.ts';
import { buildBindingSuccess, parseStun } from '../../src/stun/message.ts';
import { parseIP } from '../../src/netstack/addr.ts';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const PIERCE = fileURLToPath(new URL('../../gateway/bin/pierce.mjs', import.meta.url));

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function ourStun(host: string): Promise<StunServer> {
  const s = await startStunServer({ host, port: 0, rateLimit: false, globalRateLimit: false });
  closers.push(() => s.close());
  return s;
}

/** Answers Binding requests with the source address but port `fakePort` (what a NAT per destination would show). */
async function fakeNatStun(host: string, fakePort: number): Promise<number> {
  const s: Socket = createSocket('udp4');
  s.on('message', (m, from) => {
    const req = parseStun(new Uint8Array(m));
    s.send(buildBindingSuccess(req.transactionId, parseIP(from.address), fakePort), from.port, from.address);
  });
  await new Promise<void>((r) => s.bind(0, host, () => r()));
  closers.push(() => void s.close());
  return s.address().port;
}

describe('pierce netcheck core', () => {
  it('sees UDP over IPv4 and IPv6, the public addresses, no NAT64, relay latency and the preferred relay; mapping does not vary without a NAT', async () => {
    const a = await ourStun('127.0.0.1');
    const b = await ourStun('127.0.0.2');
    const c = await ourStun('::1');
    const relay: RelayServer = await startRelay({ host: '127.0.0.1', port: 0 });
    closers.push(() => relay.close());
    const r = await netcheck({
      stun: [{ host: '127.0.0.1', port: a.port }, { host: '127.0.0.2', port: b.port }, { host: '::1', port: c.port }],
      relays: new Map([[1, { url: `http://127.0.0.1:${relay.port}` }], [2, { url: 'http://127.0.0.1:9' }]]),
      dns: ['127.0.0.1:9'],
      timeoutMs: 1000,
    });
    expect(r.udp && r.ipv4 && r.ipv6).toBe(true);
    expect(r.globalV4).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(r.globalV6).toMatch(/^\[::1\]:\d+$/);
    expect(r.mappingVariesByDestIP).toBe(false);
    expect(r.nat64Prefix).toBeNull();
    expect(r.relayLatencyMs['1']).toBeGreaterThan(0);
    expect(r.relayLatencyMs['2']).toBeNull();
    expect(r.preferredRelay).toBe(1);
    // One socket for every server of a family: the same mapped port everywhere.
    const ports = new Set(r.stun.filter((x) => x.family === 4).map((x) => x.mapped!.split(':')[1]));
    expect(ports.size).toBe(1);
  });

  it('shows an endpoint-dependent mapping when two servers see different ports', async () => {
    const p1 = await fakeNatStun('127.0.0.1', 40001);
    const p2 = await fakeNatStun('127.0.0.2', 40002);
    const r = await netcheck({ stun: [{ host: '127.0.0.1', port: p1 }, { host: '127.0.0.2', port: p2 }], dns: ['127.0.0.1:9'], timeoutMs: 1000 });
    expect(r.mappingVariesByDestIP).toBe(true);
    expect(r.stun.map((x) => x.mapped).sort()).toEqual(['127.0.0.1:40001', '127.0.0.1:40002']);
  });

  it('reports no UDP when nothing answers', async () => {
    const r = await netcheck({ stun: [{ host: '127.0.0.1', port: 9 }], dns: ['127.0.0.1:9'], timeoutMs: 400 });
    expect(r).toMatchObject({ udp: false, ipv4: false, globalV4: null, mappingVariesByDestIP: null, preferredRelay: 0 });
  });

  it('pierce netcheck --json from the command line, with a relay and its STUN address', async () => {
    const stun = await ourStun('127.0.0.1');
    const relay: RelayServer = await startRelay({ host: '127.0.0.1', port: 0 });
    closers.push(() => relay.close());
    const out = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, [PIERCE, 'netcheck', '--relay', `http://127.0.0.1:${relay.port},stun=127.0.0.1:${stun.port}`, '--dns', '127.0.0.1:9', '--timeout', '1000', '--json'], { timeout: 20_000 }, (err, stdout) =>
        resolve({ code: err ? 1 : 0, stdout }),
      );
    });
    expect(out.code).toBe(0);
    const r = JSON.parse(out.stdout) as { ipv4: boolean; preferredRelay: number; globalV4: string };
    expect(r).toMatchObject({ ipv4: true, preferredRelay: 1 });
    expect(r.globalV4).toMatch(/^127\.0\.0\.1:/);
  });
});
