/**
 * The engine on the browser platform (src/browser: DERP over WebSocket, fetch probes, the
 * browser clock) with the noble crypto backend (no node:crypto in a browser), in process
 * against a real `pierce control`, a real `pierce relay` and a `pierce up` node: it registers,
 * gets its netmap, disco-pings the node through the relay, opens a TCP connection through the
 * mesh to a service the node forwards, and comes back after the relay restarts — the same TCP
 * connection included (DESIGN invariant 3: a relay restart costs a reconnect, not a session).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startControl, type ControlServer } from '../../gateway/src/control/server.ts';
import { SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { startRelay, type RelayServer } from '../../gateway/src/relay/server.ts';
import { startNode, type RunningNode } from '../../gateway/src/node/daemon.ts';
import { Engine } from '../../src/engine/engine.ts';
import { nobleBackend } from '../../src/crypto/noble.ts';
import { cryptoRandom } from '../../src/crypto/backend.ts';
import { DiscoPrivate, MachinePrivate, NodePrivate } from '../../src/key/keys.ts';
import { parseIP } from '../../src/netstack/addr.ts';
import type { TcpConnection } from '../../src/netstack/tcp/connection.ts';
import type { WebSocketCtor } from '../../src/control/client.ts';
import { browserClock, browserTransports } from '../../src/browser/platform.ts';
import { waitUntil } from '../support/wait.ts';

let dir: string;
let relay: RelayServer;
let relayPort: number;
let control: ControlServer;
let echo: Server;
let echoPort: number;
let node: RunningNode | undefined;
let web: Engine | undefined;
const quiet = () => {};


beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pierce-browser-'));
  relay = await startRelay({ host: '127.0.0.1', port: 0 });
  relayPort = relay.port;
  control = await startControl({
    store: new SqliteStore(join(dir, 'c.db')),
    relays: { regions: [{ id: 1, code: 'r1', name: 'r1', nodes: [{ url: `http://127.0.0.1:${relayPort}` }] }] },
  });
  await control.state.createUser('u@x');
  echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoPort = (echo.address() as { port: number }).port;
});

afterEach(async () => {
  web?.stop();
  web = undefined;
  await node?.stop();
  node = undefined;
  await control.close();
  await relay.close();
  await new Promise((r) => echo.close(r));
  rmSync(dir, { recursive: true, force: true });
});

/** Opens a mesh TCP connection from the browser engine's own netstack. */
function tcpConnect(engine: Engine, ip: string, port: number): Promise<TcpConnection> {
  return new Promise((resolve, reject) => {
    const c = engine.stack!.connect({ address: parseIP(ip), port });
    c.once('connect', () => resolve(c));
    c.once('error', reject);
    engine.reschedule();
  });
}

/** Writes `text` and resolves with the echo. */
function roundTrip(engine: Engine, c: TcpConnection, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (d: Uint8Array) => {
      got += new TextDecoder().decode(d);
      if (got.length >= text.length) {
        c.off('data', onData);
        resolve(got);
      }
    };
    c.on('data', onData);
    c.once('error', reject);
    c.write(new TextEncoder().encode(text));
    engine.reschedule();
  });
}

describe('the engine on the browser platform', () => {
  it('registers, gets its netmap, pings a pierce node through the relay, reaches its forwarded TCP service, and survives a relay restart', async () => {
    const { key } = await control.state.createAuthKey({ user: 'u@x', reusable: true });
    node = await startNode({
      controlUrl: control.url,
      stateDir: join(dir, 'b'),
      socketPath: join(dir, 'b.sock'),
      hostname: 'b',
      authKey: key,
      forwards: [`8080=127.0.0.1:${echoPort}`],
      log: quiet,
    });
    const relayStates: boolean[] = [];
    const relayErrors: string[] = [];
    web = new Engine({
      controlUrl: control.url,
      hostname: 'web',
      authKey: key,
      keys: { machine: MachinePrivate.generate(), node: NodePrivate.generate(), disco: DiscoPrivate.generate() },
      backend: nobleBackend,
      random: cryptoRandom,
      clock: browserClock,
      transports: browserTransports({
        WebSocket: WebSocket as unknown as WebSocketCtor,
        fetch: globalThis.fetch,
        relayEvents: () => ({ state: (up) => relayStates.push(up), error: (e) => relayErrors.push(e.code) }),
      }),
      log: quiet,
    });
    web.start();
    await web.whenRunning();
    await node.engine.whenRunning();

    // Registered, with an address and the netmap: b is a peer, the relay is up and home.
    const st = web.status();
    expect(st.state).toBe('running');
    expect(st.self!.addrs[0]).toMatch(/^100\.64\./);
    expect(st.direct).toBeUndefined(); // relay only: no UDP in a browser (yet)
    await waitUntil('b in the netmap', () => web!.status().peers.some((p) => p.name === 'b'));
    await waitUntil('the relay connection', () => web!.status().relays.some((r) => r.connected));
    expect(web.status().homeRelay).toBe(1);
    // The probe (HEAD /derp/probe with fetch) measured the relay.
    await waitUntil('a relay latency', () => web!.status().relays[0]!.latencyMs !== null);

    // Disco ping through the relay.
    const ping = await web.ping('b', 10_000);
    expect(ping).toMatchObject({ peer: 'b', path: 'relay(r1)', direct: false });

    // TCP through the mesh (WireGuard over DERP over WebSocket) to b's forward of the echo service.
    const bAddr = web.status().peers.find((p) => p.name === 'b')!.addrs[0]!.split('/')[0]!;
    const conn = await tcpConnect(web, bAddr, 8080);
    expect(await roundTrip(web, conn, 'hello through the mesh')).toBe('hello through the mesh');

    // Relay restart on the same port: the link reconnects (backoff ≤ 5 s) and traffic resumes.
    await relay.close();
    await waitUntil('the relay loss', () => relayStates.includes(false));
    relay = await startRelay({ host: '127.0.0.1', port: relayPort });
    await waitUntil('the relay reconnect', () => relayStates.filter((s) => s).length >= 2 && web!.status().relays[0]!.connected, 20_000);
    await waitUntil('b back on the relay', () => node!.engine.status().relays.some((r) => r.connected), 20_000);
    expect(relayErrors).toContain('DERP_CLOSED');
    const again = await web.ping('b', 10_000);
    expect(again).toMatchObject({ peer: 'b', path: 'relay(r1)' });
    // The TCP connection opened before the restart still works.
    expect(await roundTrip(web, conn, 'and after the restart')).toBe('and after the restart');
    conn.end();
  }, 60_000);
});
