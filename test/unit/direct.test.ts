/**
 * Direct-path discovery (src/engine/direct.ts, birthday.ts, disco.ts, paths.ts) in a fake
 * internet on a manual clock (test/support/fake-net.ts, direct-world.ts): STUN through fake
 * NATs, hole punching with CallMeMaybe, birthday probing through an endpoint-dependent NAT,
 * fallback to the relay and back, and what the UDP socket lets through.
 */
import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { PING_TIMEOUT_MS, TRUST_MS } from '../../src/paths/paths.ts';
import { BIRTHDAY_RATE, BIRTHDAY_SECONDS, BIRTHDAY_SOCKETS } from '../../src/engine/birthday.ts';
import { DISCO_MAGIC, sealDisco, type DiscoKeyCache } from '../../src/disco/message.ts';
import { buildBindingSuccess, encodeStun, ATTR, BINDING } from '../../src/stun/message.ts';
import { DiscoPrivate } from '../../src/key/keys.ts';
import { parseIP } from '../../src/netstack/addr.ts';
import { seededRandom } from '../support/wg-net.ts';
import { FakeWorld, advanceUntil, seedMathRandom, worldPerTest, type DirectNode, type NodeSpec } from '../support/direct-world.ts';
import type { FakeHost } from '../support/fake-net.ts';

const PUBLIC_A: NodeSpec = { nat: 'none', publicIp: '198.18.0.10' };
const PUBLIC_B: NodeSpec = { nat: 'none', publicIp: '198.18.0.20' };
const EASY_A: NodeSpec = { nat: 'easy', publicIp: '198.18.1.1', privateIp: '192.168.1.10' };
const EASY_B: NodeSpec = { nat: 'easy', publicIp: '198.18.2.1', privateIp: '192.168.2.10' };
const HARD_A: NodeSpec = { nat: 'hard', publicIp: '198.18.3.1', privateIp: '10.3.0.10' };
const HARD_B: NodeSpec = { nat: 'hard', publicIp: '198.18.4.1', privateIp: '10.4.0.10' };

/** A WireGuard transport-data-looking datagram (type 4, zero reserved bytes). */
function wgDatagram(fill = 0xab, n = 64): Uint8Array {
  const d = new Uint8Array(n).fill(fill);
  d.set([4, 0, 0, 0], 0);
  return d;
}

let world: FakeWorld;
worldPerTest((w) => (world = w));

const now = (): number => world.clock.now();
const direct = (n: DirectNode): boolean => n.peer.paths.isDirect(now());

const waitFor = (cond: () => boolean, maxMs: number, step = 100, each?: () => void): Promise<number> => advanceUntil(world, cond, maxMs, step, each);

/** Runs `ms` of fake time in `step`s, calling `each` before every step. */
async function run(ms: number, step: number, each?: () => void): Promise<void> {
  for (const end = now() + ms; now() < end; ) {
    each?.();
    await world.clock.advance(Math.min(step, end - now()));
  }
}

async function connected(a: NodeSpec, b: NodeSpec): Promise<[DirectNode, DirectNode]> {
  const [x, y] = world.pair(a, b);
  await world.start();
  x.direct.noteSend(x.peer, now());
  await waitFor(() => direct(x) && direct(y), 3_000);
  return [x, y];
}

/** Sends a datagram from a raw socket on `host` to ip:port. */
async function sendFrom(host: FakeHost, ip: string, port: number, packets: Uint8Array[]): Promise<void> {
  const s = await host.bind(0, () => {});
  for (const p of packets) s.send(ip, port, p);
  await world.clock.advance(50);
  s.close();
}

describe('endpoints from STUN', () => {
  it.each([
    ['public', PUBLIC_A, false],
    ['easy NAT', EASY_A, false],
    ['hard NAT', HARD_A, true],
  ] as const)('%s: two STUN servers at different IPs tell the NAT kind', async (_name, spec, hard) => {
    const [a] = world.pair(spec, PUBLIC_B);
    await world.start();
    expect(a.direct.hardNat).toBe(hard);
    expect(a.direct.publicV4).toBe(spec.publicIp);
    // Reflexive address(es) first, then the interface address; the peer got them via control.
    expect(a.direct.endpoints.length).toBe(hard ? 3 : spec.nat === 'none' ? 1 : 2);
    expect(a.direct.endpoints.every((e) => e.startsWith(`${spec.publicIp}:`) || e.startsWith(`${spec.privateIp}:`))).toBe(true);
    expect(a.other.peer.info.endpoints).toEqual(a.direct.endpoints);
    expect(a.other.peer.paths.size).toBe(a.direct.endpoints.length);
  });
});

describe('hole punching', () => {
  it.each([
    ['public ↔ public', PUBLIC_A, PUBLIC_B],
    ['easy ↔ easy', EASY_A, EASY_B],
    ['public ↔ easy', PUBLIC_A, EASY_B],
  ] as const)('%s: a trusted direct path on both sides within a few fake seconds', async (_name, sa, sb) => {
    const [a, b] = world.pair(sa, sb);
    await world.start();
    expect(direct(a) || direct(b)).toBe(false);
    a.direct.noteSend(a.peer, now());
    await waitFor(() => direct(a) && direct(b), 2_000, 10);
    const ta = a.peer.paths.sendTargets(now());
    expect(ta.relay).toBe(false);
    expect(ta.udp).toMatchObject({ kind: 'udp', ip: sb.publicIp, sock: 0 });
    expect(b.peer.paths.sendTargets(now())).toMatchObject({ udp: { ip: sa.publicIp, sock: 0 }, relay: false });
    // The session stays direct on the heartbeat alone.
    await run(20_000, 1_000, () => a.direct.noteSend(a.peer, now()));
    expect(a.peer.paths.sendTargets(now()).relay).toBe(false);
    expect(direct(b)).toBe(true);
  });

  it('the relay link still opening: CallMeMaybe goes out once it is up, and the punch follows', async () => {
    const [a, b] = world.pair(EASY_A, EASY_B);
    await world.start();
    a.relayUp = false;
    a.direct.noteSend(a.peer, now());
    await run(1_500, 100, () => a.direct.noteSend(a.peer, now()));
    expect(direct(a) || direct(b)).toBe(false);
    a.relayUp = true;
    await waitFor(() => direct(a) && direct(b), 2_500, 100, () => a.direct.noteSend(a.peer, now()));
  });

  // A ping from the peer on a candidate we pinged a moment ago is pinged back at once: our ping
  // was lost at the peer's still-closed NAT (the usual hole-punching order), and without a pong
  // of our own the side that started would stay on the relay until its next round (~3.5 s).
  it('low RTT, easy ↔ easy: the side that started is direct as soon as the peer’s ping gets through', async () => {
    world.net.latency = 2;
    const [a, b] = world.pair(EASY_A, EASY_B);
    await world.start();
    a.direct.noteSend(a.peer, now());
    await waitFor(() => direct(a) && direct(b), 1_000, 10);
  });
});

describe('birthday probing', () => {
  it('easy ↔ hard: the spray finds one of the hard side’s sockets and stops; only that socket stays', async () => {
    // A typical draw: with 256 of 64,512 ports open, the first hit comes after ~250 probes.
    vi.restoreAllMocks();
    seedMathRandom(93_324);
    const [a, b] = world.pair(EASY_A, HARD_B);
    await world.start();
    expect(a.direct.hardNat).toBe(false);
    expect(b.direct.hardNat).toBe(true);
    expect(b.direct.canBirthday).toBe(true);
    a.direct.noteSend(a.peer, now());
    await waitFor(() => direct(a) && direct(b), 30_000);
    const budget = BIRTHDAY_RATE * BIRTHDAY_SECONDS;
    const probes = a.direct.birthday.stats.probesSent;
    expect(probes).toBeGreaterThan(0);
    expect(probes).toBeLessThan(budget / 4);
    expect(a.logs.some((l) => l.includes(`spray ended after ${probes} probes (port `))).toBe(true);
    expect(a.direct.birthday.stats.successes).toBe(1);
    expect(b.direct.birthday.stats.successes).toBe(1);
    expect(b.direct.birthday.stats.probesSent).toBe(0);
    // The hard side opened its sockets and kept the one the path runs on.
    expect(b.host.bound).toBe(1 + BIRTHDAY_SOCKETS);
    expect(b.host.sockets.size).toBe(2);
    const bp = b.peer.paths.sendTargets(now());
    expect(bp.relay).toBe(false);
    expect(bp.udp?.sock).not.toBe(0);
    expect(a.peer.paths.sendTargets(now())).toMatchObject({ udp: { ip: HARD_B.publicIp, sock: 0 }, relay: false });
    // The spray stopped at the first pong, and the path works both ways through the kept socket.
    await run(10_000, 500, () => a.direct.noteSend(a.peer, now()));
    expect(a.direct.birthday.stats.probesSent).toBe(probes);
    expect(direct(a) && direct(b)).toBe(true);
    b.direct.send(b.peer.paths.best!.path, wgDatagram(1));
    a.direct.send(a.peer.paths.best!.path, wgDatagram(2));
    await world.clock.advance(50);
    expect(a.received).toEqual([wgDatagram(1)]);
    expect(b.received).toEqual([wgDatagram(2)]);
  });

  it('hard ↔ hard without birthdayHardHard: no spray, the relay stays, the sockets close', async () => {
    const [a, b] = world.pair(HARD_A, HARD_B);
    await world.start();
    expect(a.direct.hardNat && b.direct.hardNat).toBe(true);
    a.direct.noteSend(a.peer, now());
    let wasDirect = false;
    await run(40_000, 500, () => {
      a.direct.noteSend(a.peer, now());
      wasDirect ||= direct(a) || direct(b);
    });
    expect(wasDirect).toBe(false);
    expect(a.peer.paths.sendTargets(now())).toEqual({ udp: null, relay: true });
    expect(b.peer.paths.sendTargets(now())).toEqual({ udp: null, relay: true });
    expect(a.direct.birthday.stats.probesSent + b.direct.birthday.stats.probesSent).toBe(0);
    expect([...a.logs, ...b.logs].some((l) => l.includes('both behind hard NATs; staying on the relay'))).toBe(true);
    // Whatever sockets a hard side opened are closed once its attempt times out.
    expect(a.host.sockets.size).toBe(1);
    expect(b.host.sockets.size).toBe(1);
  });
});

describe('fallback to the relay', () => {
  it('UDP lost: relay joins once trust runs out, then relay only; UDP back: direct again', async () => {
    const [a, b] = await connected(EASY_A, EASY_B);
    const keepActive = (): void => a.direct.noteSend(a.peer, now());
    await run(2_000, 250, keepActive);
    world.net.dropUdp = true;
    const t0 = now();
    let both = -1;
    await waitFor(
      () => a.peer.paths.sendTargets(now()).udp === null,
      TRUST_MS + PING_TIMEOUT_MS + 3_000,
      100,
      () => {
        keepActive();
        const t = a.peer.paths.sendTargets(now());
        if (both < 0 && t.udp && t.relay) both = now() - t0;
      },
    );
    const relayOnly = now() - t0;
    expect(both).toBeGreaterThan(0);
    expect(both).toBeLessThanOrEqual(TRUST_MS);
    expect(relayOnly).toBeGreaterThan(both);
    expect(a.peer.paths.sendTargets(now())).toEqual({ udp: null, relay: true });
    world.net.dropUdp = false;
    await waitFor(() => direct(a) && direct(b), 7_000, 100, keepActive);
    expect(a.peer.paths.sendTargets(now())).toMatchObject({ udp: { ip: EASY_B.publicIp }, relay: false });
  });
});

describe('the UDP socket', () => {
  it('WireGuard from an address that never proved itself is dropped; from a proven one it is received', async () => {
    const [a, b] = await connected(PUBLIC_A, EASY_B);
    const mallory = world.net.addHost('mallory', 'none', '198.18.9.9');
    await sendFrom(mallory, PUBLIC_A.publicIp, a.direct.port, [wgDatagram(0x66)]);
    expect(a.direct.stats.unknownSource).toBe(1);
    expect(a.received).toEqual([]);
    // A disco ping under a disco key the netmap doesn't know proves nothing either.
    const stranger = DiscoPrivate.generate(seededRandom(99));
    const ping = sealDisco({ type: 'ping', txid: new Uint8Array(12), nodeKey: b.nodeKey }, stranger, stranger.public(), a.opts.keys.disco.public(), new Uint8Array(24));
    await sendFrom(mallory, PUBLIC_A.publicIp, a.direct.port, [ping, wgDatagram(0x67)]);
    expect(a.direct.stats.unknownSource).toBe(2);
    expect(a.received).toEqual([]);
    // b proved its address with disco: its datagram gets through.
    b.direct.send(b.peer.paths.best!.path, wgDatagram(0x77));
    await world.clock.advance(50);
    expect(a.received).toEqual([wgDatagram(0x77)]);
    expect(a.direct.stats.unknownSource).toBe(2);
  });

  it('garbage, truncated disco and STUN packets cost nothing', async () => {
    const [a, b] = await connected(PUBLIC_A, PUBLIC_B);
    const mallory = world.net.addHost('mallory', 'none', '198.18.9.9');
    const disco = (n: number): Uint8Array => {
      const p = new Uint8Array(n).fill(0x5a);
      p.set(DISCO_MAGIC, 0);
      return p;
    };
    // A real ping from b, cut short or with a flipped bit.
    const real = sealDisco({ type: 'ping', txid: new Uint8Array(12).fill(1), nodeKey: b.nodeKey }, b.opts.keys.disco, b.opts.keys.disco.public(), a.opts.keys.disco.public(), new Uint8Array(24).fill(2));
    const flipped = Uint8Array.from(real);
    flipped[flipped.length - 1]! ^= 1;
    const txid = new Uint8Array(12).fill(9);
    const badAttr = encodeStun({ method: BINDING, class: 'success', transactionId: txid, attributes: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: new Uint8Array(8) }] });
    badAttr[23] = 200; // attribute length runs past the end
    const shortAttr = encodeStun({ method: BINDING, class: 'success', transactionId: txid, attributes: [{ type: ATTR.XOR_MAPPED_ADDRESS, value: new Uint8Array(3) }] });
    const stunish = [
      buildBindingSuccess(txid, parseIP('6.6.6.6'), 666), // a transaction we never started
      badAttr,
      shortAttr,
      encodeStun({ method: BINDING, class: 'request', transactionId: txid, attributes: [] }),
    ];
    const discoish = [disco(38), disco(77), disco(78), disco(200), real.subarray(0, real.length - 1), flipped];
    const other = [new Uint8Array(0), new Uint8Array([0x54]), disco(37), new Uint8Array(1500).fill(0xff), wgDatagram(0, 16)];
    const before = { ...a.direct.stats, bad: a.disco.stats.bad, endpoints: [...a.direct.endpoints] };
    await sendFrom(mallory, PUBLIC_A.publicIp, a.direct.port, [...stunish, ...discoish, ...other]);
    expect(a.direct.stats.udpIn - before.udpIn).toBe(stunish.length + discoish.length + other.length);
    expect(a.disco.stats.bad - before.bad).toBe(discoish.length);
    expect(a.direct.stats.unknownSource - before.unknownSource).toBe(other.length);
    expect(a.direct.endpoints).toEqual(before.endpoints);
    expect(a.direct.hardNat).toBe(false);
    expect(a.received).toEqual([]);
    // Random bytes, some dressed as disco or STUN: never a throw, never a datagram delivered.
    const packets = fc.sample(
      fc.tuple(fc.constantFrom('raw', 'disco', 'stun'), fc.uint8Array({ maxLength: 120 })).map(([kind, body]) => {
        if (kind === 'raw') return body;
        if (kind === 'disco') return Uint8Array.from([...DISCO_MAGIC, ...body]);
        const s = new Uint8Array(20 + (body.length & ~3));
        s.set([0x01, 0x01, (s.length - 20) >> 8, (s.length - 20) & 255, 0x21, 0x12, 0xa4, 0x42], 0);
        s.set(body.subarray(0, s.length - 8), 8);
        return s;
      }),
      { numRuns: 300, seed: 42 },
    );
    await sendFrom(mallory, PUBLIC_A.publicIp, a.direct.port, packets);
    expect(a.received).toEqual([]);
    expect(a.direct.endpoints).toEqual(before.endpoints);
    expect(direct(a)).toBe(true);
  });
});

describe('cost', () => {
  // The node public key (an X25519, ~1 ms) is derived once, not per ping: 256 sockets ×
  // targets per re-ping on a hard NAT, 100 probes/s while spraying.
  it('a disco ping does not derive the node public key again', async () => {
    const [a] = world.pair(PUBLIC_A, PUBLIC_B);
    const spy = vi.spyOn(a.opts.keys.node, 'public');
    for (let i = 0; i < 10; i++) a.disco.ping(a.peer, { kind: 'relay', region: 2 }, 1_000, { pong: () => {}, timeout: () => {} });
    expect(spy).not.toHaveBeenCalled();
  });

  // The sender is looked up in the netmap before the packet is opened: disco-looking junk under
  // fresh random keys costs no X25519 and evicts no peer's cached key (as in magicsock).
  it('disco packets under disco keys the netmap doesn’t know cost no key agreement', async () => {
    const [a] = await connected(PUBLIC_A, PUBLIC_B);
    const mallory = world.net.addHost('mallory', 'none', '198.18.9.9');
    const r = seededRandom(5);
    const junk = Array.from({ length: 50 }, () => Uint8Array.from([...DISCO_MAGIC, ...r(32), ...r(24), ...r(40)]));
    const cache = (a.disco as unknown as { cache: DiscoKeyCache }).cache;
    const before = { keys: cache.size, udpIn: a.direct.stats.udpIn };
    await sendFrom(mallory, PUBLIC_A.publicIp, a.direct.port, junk);
    expect(a.direct.stats.udpIn - before.udpIn).toBe(junk.length);
    expect(cache.size).toBe(before.keys);
  });
});
