/**
 * UDP leases end to end, in process: a real `pierce control`, a `pierce relay --udp-leases`
 * that checks node keys with control's admin API (an API key made as `pierce control apikey`
 * does), a STUN server in the relay map, a `pierce up` node, and the engine on the browser
 * platform (DERP over WebSocket, no native UDP) whose `transports.udp` is a lease from the relay
 * (worker/udp-lease.ts over `ws`). The browser engine STUNs, pings and upgrades to a **direct**
 * UDP path to the node through its leased socket; the gateway refuses a destination that is
 * neither a STUN server nor a peer's endpoint IP, refuses an unknown node key, frees the
 * sockets when the lease closes, and control's lease endpoint answers 404 / 403 as documented.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { createSocket, type Socket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startControl, type ControlServer } from '../../gateway/src/control/server.ts';
import { createApiKey } from '../../gateway/src/control/state.ts';
import { SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { startRelay, type RelayServer } from '../../gateway/src/relay/server.ts';
import { controlAuthority } from '../../gateway/src/relay/leases.ts';
import { startStunServer, type StunServer } from '../../gateway/src/stun/server.ts';
import { startNode, type RunningNode } from '../../gateway/src/node/daemon.ts';
import { Engine } from '../../src/engine/engine.ts';
import { nobleBackend } from '../../src/crypto/noble.ts';
import { cryptoRandom } from '../../src/crypto/backend.ts';
import { DiscoPrivate, MachinePrivate, NodePrivate } from '../../src/key/keys.ts';
import type { WebSocketCtor } from '../../src/control/client.ts';
import { browserClock, browserTransports } from '../../src/browser/platform.ts';
import { leaseTransport, leaseUrlFor, type LeaseTransport } from '../../worker/udp-lease.ts';
import { waitUntil } from '../support/wait.ts';

let dir: string;
let relay: RelayServer;
let stun: StunServer;
let control: ControlServer;
let apiKey: string;
let node: RunningNode | undefined;
let web: Engine | undefined;
const closers: (() => void)[] = [];
const quiet = () => {};


beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pierce-lease-'));
  stun = await startStunServer({ host: '127.0.0.1', port: 0 });
  // Control's relay map names the relay, so the relay starts first and reads control's URL lazily.
  let controlUrl = '';
  relay = await startRelay({
    host: '127.0.0.1',
    port: 0,
    leases: {
      // Everything is on loopback here; a real gateway refuses loopback destinations.
      allowLoopback: true,
      authority: (k) => controlAuthority({ controlUrl, apiKey })(k),
    },
  });
  control = await startControl({
    store: new SqliteStore(join(dir, 'c.db')),
    relays: { regions: [{ id: 1, code: 'r1', name: 'r1', nodes: [{ url: `http://127.0.0.1:${relay.port}`, stun: `127.0.0.1:${stun.port}` }] }] },
  });
  controlUrl = control.url;
  apiKey = (await createApiKey(control.state.store, control.state.now(), 'lease gateway')).key;
  await control.state.createUser('u@x');
});

afterEach(async () => {
  web?.stop();
  web = undefined;
  for (const c of closers.splice(0)) c();
  await node?.stop();
  node = undefined;
  await control.close();
  await relay.close();
  await stun.close();
  rmSync(dir, { recursive: true, force: true });
});

function lease(key: NodePrivate, url: string | (() => Promise<string>) = leaseUrlFor(relay.url)): LeaseTransport {
  const t = leaseTransport({ url, nodeKey: key, WebSocket: WebSocket as unknown as WebSocketCtor, clock: browserClock, log: quiet });
  closers.push(() => t.close());
  return t;
}

async function udpSink(host: string): Promise<{ sock: Socket; port: number; got: number }> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, host, r));
  const o = { sock, port: sock.address().port, got: 0 };
  sock.on('message', () => o.got++);
  closers.push(() => sock.close());
  return o;
}

describe('UDP leases for the browser engine', () => {
  it('gives the browser engine a direct path to a pierce node through a leased socket, and nothing more', async () => {
    const { key } = await control.state.createAuthKey({ user: 'u@x', reusable: true });
    node = await startNode({ controlUrl: control.url, stateDir: join(dir, 'b'), socketPath: join(dir, 'b.sock'), hostname: 'b', authKey: key, log: quiet });
    const keys = { machine: MachinePrivate.generate(), node: NodePrivate.generate(), disco: DiscoPrivate.generate() };
    // Control vouches only for registered keys: the lease URL resolves once the engine runs.
    let engine: Engine | undefined;
    const udp = lease(keys.node, async () => {
      await engine!.whenRunning();
      return leaseUrlFor(relay.url);
    });
    const logs: string[] = [];
    web = engine = new Engine({
      controlUrl: control.url,
      hostname: 'web',
      authKey: key,
      keys,
      backend: nobleBackend,
      random: cryptoRandom,
      clock: browserClock,
      transports: { ...browserTransports({ WebSocket: WebSocket as unknown as WebSocketCtor, fetch: globalThis.fetch }), udp },
      log: (_l, m) => logs.push(m),
    });
    web.start();
    await web.whenRunning();
    await node.engine.whenRunning();
    await waitUntil('the lease', () => udp.connected && relay.leases!.stats().sockets === 1);
    expect(udp.info!.node.name).toBe('web');
    await waitUntil('b in the netmap', () => web!.status().peers.some((p) => p.name === 'b'));
    // The browser engine learned its leased endpoint by STUN through the lease.
    await waitUntil('a STUN endpoint', () => (web!.status().direct?.endpoints ?? []).some((e) => e.startsWith('127.0.0.1:')));
    expect(web.status().direct!.port).toBeGreaterThan(0);

    // Control's lease endpoint: the node, the STUN server, b's endpoints.
    const webKey = keys.node.public().toString();
    const grant = (await (await fetch(`${control.url}/api/v1/leases/${webKey}`, { headers: { Authorization: `Bearer ${apiKey}` } })).json()) as { node: { name: string }; stun: string[]; peers: string[] };
    expect(grant.node.name).toBe('web');
    expect(grant.stun).toEqual([`127.0.0.1:${stun.port}`]);
    await waitUntil('b endpoints at control', () => (control.state.netmap.node(node!.engine.status().self!.id)?.endpoints.length ?? 0) > 0);

    // Pings upgrade to a direct path through the leased socket.
    let direct = false;
    for (let i = 0; i < 40 && !direct; i++) {
      const r = await web.ping('b', 5000);
      direct = r.direct;
      if (!direct) await new Promise((res) => setTimeout(res, 250));
    }
    expect(direct, logs.filter((l) => l.includes('direct') || l.includes('lease')).join('\n')).toBe(true);
    expect(web.status().peers.find((p) => p.name === 'b')!.direct).toBe(true);
    expect(relay.leases!.stats().sent).toBeGreaterThan(0);
    expect(relay.leases!.stats().received).toBeGreaterThan(0);

    // A destination that is neither a STUN server nor a peer endpoint IP is refused and never
    // reaches it (127.0.0.9 is loopback, but no peer's endpoint).
    const target = await udpSink('127.0.0.9');
    const extra = await udp.bind(0, () => {});
    const deniedBefore = udp.stats.denied;
    for (let i = 0; i < 3; i++) extra.send('127.0.0.9', target.port, new TextEncoder().encode('let me out'));
    await waitUntil('the refusals', () => udp.stats.denied >= deniedBefore + 3);
    await new Promise((r) => setTimeout(r, 100));
    expect(target.got).toBe(0);
    expect(relay.leases!.stats().denied.notAllowed).toBeGreaterThanOrEqual(3);

    // Closing the lease frees every socket on the gateway; the leased port answers no more.
    const leasedPort = web.status().direct!.port;
    web.stop();
    web = undefined;
    udp.close();
    await waitUntil('the lease freed', () => relay.leases!.stats().leases === 0 && relay.leases!.stats().sockets === 0);
    const probe = createSocket('udp4');
    closers.push(() => probe.close());
    const before = relay.leases!.stats().received;
    probe.send('anyone?', leasedPort, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 150));
    expect(relay.leases!.stats().received).toBe(before);
  }, 60_000);

  it('refuses an unknown node key with a clear error, and control answers 404 / 403 for unknown / expired nodes', async () => {
    const stranger = NodePrivate.generate();
    const t = lease(stranger);
    const err = await t.bind(0, () => {}).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'LEASE_UNKNOWN_NODE' });
    expect((err as Error).message).toMatch(/not a node of this tailnet/);
    expect(relay.leases!.stats()).toMatchObject({ leases: 0, sockets: 0 });

    const ask = (k: string, auth = apiKey) => fetch(`${control.url}/api/v1/leases/${k}`, { headers: { Authorization: `Bearer ${auth}` } });
    expect((await ask(stranger.public().toString())).status).toBe(404);
    expect((await ask(stranger.public().toString(), 'papi_wrong')).status).toBe(401);
    expect((await ask('not-a-key')).status).toBe(400);

    // A registered node whose key expired gets 403 and no lease.
    const { key } = await control.state.createAuthKey({ user: 'u@x' });
    node = await startNode({ controlUrl: control.url, stateDir: join(dir, 'b'), socketPath: join(dir, 'b.sock'), hostname: 'b', authKey: key, direct: { disable: true }, log: quiet });
    await node.engine.whenRunning();
    const id = node.engine.status().self!.id;
    const bKey = control.state.nodes.get(id)!.nodeKey;
    expect((await ask(bKey)).status).toBe(200);
    await control.state.expireNode(id);
    const r = await ask(bKey);
    expect(r.status).toBe(403);
    expect(((await r.json()) as { code: string }).code).toBe('NODE_EXPIRED');
  }, 30_000);
});
