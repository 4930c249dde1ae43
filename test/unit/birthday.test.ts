/**
 * Birthday probing (src/engine/birthday.ts, direct.ts `punch()`, `canBirthday`) in the fake
 * internet of direct.test.ts (test/support/fake-net.ts, direct-world.ts): both NATs hard with the
 * opt-in, the spray's rate, a Punch that arrives over UDP, and a port mapping on the hard side.
 */
import { describe, expect, it, vi } from 'vitest';
import { PING_TIMEOUT_MS } from '../../src/paths/paths.ts';
import { BIRTHDAY_RATE, BIRTHDAY_SOCKETS } from '../../src/engine/birthday.ts';
import { sealDisco, type DiscoPunch } from '../../src/disco/message.ts';
import { FakeWorld, advanceUntil, worldPerTest, type DirectNode, type NodeSpec } from '../support/direct-world.ts';

const PUBLIC_A: NodeSpec = { nat: 'none', publicIp: '198.18.0.10' };
const EASY_A: NodeSpec = { nat: 'easy', publicIp: '198.18.1.1', privateIp: '192.168.1.10' };
const HARD_A: NodeSpec = { nat: 'hard', publicIp: '198.18.3.1', privateIp: '10.3.0.10' };
const HARD_B: NodeSpec = { nat: 'hard', publicIp: '198.18.4.1', privateIp: '10.4.0.10' };

let world: FakeWorld;
worldPerTest((w) => (world = w));

const now = (): number => world.clock.now();
const direct = (n: DirectNode): boolean => n.peer.paths.isDirect(now());
const active = (n: DirectNode) => (): void => n.direct.noteSend(n.peer, now());

const waitFor = async (cond: () => boolean, maxMs: number, step = 100, each?: () => void): Promise<void> => void (await advanceUntil(world, cond, maxMs, step, each));

/** Runs fake time until `end` in `step`s, calling `each` before every step. */
async function runUntil(end: number, step: number, each?: () => void): Promise<void> {
  while (now() < end) {
    each?.();
    await world.clock.advance(Math.min(step, end - now()));
  }
}

/** The fake time of the first log line of `n` containing `text` (-1: none). */
const loggedAt = (n: DirectNode, text: string): number => {
  const l = n.logs.find((x) => x.includes(text));
  return l ? Number(l.split(' ')[0]) : -1;
};

const SPRAY_STARTED = 'probing up to';

describe('both NATs hard, birthdayHardHard on both', () => {
  it('both sides open sockets and spray, then stop in time, close every extra socket and stay on the relay', async () => {
    const seconds = 5;
    const sockets = 64;
    const opts = { birthdayHardHard: true, birthdaySeconds: seconds, birthdaySockets: sockets };
    const [a, b] = world.pair({ ...HARD_A, direct: opts }, { ...HARD_B, direct: opts });
    await world.start();
    expect(a.direct.hardNat && b.direct.hardNat).toBe(true);
    const t0 = now();
    let wasDirect = false;
    const keepActive = (): void => {
      active(a)();
      wasDirect ||= direct(a) || direct(b);
    };
    // a's discovery opens its sockets and sends Punch; b's Punch handler opens b's and sprays;
    // b's Punch (sprays=true) makes a spray too.
    await runUntil(t0 + 1_000, 100, keepActive);
    for (const n of [a, b]) {
      expect(n.host.bound).toBe(1 + sockets);
      expect(n.host.sockets.size).toBe(1 + sockets);
      expect(n.direct.birthday.stats.probesSent).toBeGreaterThan(0);
      expect(n.direct.birthday.stats.attempts).toBe(2); // its hard session and its spray
    }
    // The hard sessions end at `seconds` (next 1 s tick); the sprays after `seconds` of probing
    // plus one ping timeout for the last pongs, counted from the Punch's arrival (one relay hop,
    // or two for a: b's Punch answers a's).
    const bound = t0 + seconds * 1_000 + PING_TIMEOUT_MS + 2 * world.relayLatency + 1_000;
    await runUntil(bound, 100, keepActive);
    const probes = [a.direct.birthday.stats.probesSent, b.direct.birthday.stats.probesSent];
    for (const n of [a, b]) {
      const ended = loggedAt(n, 'spray ended after');
      expect(ended).toBeGreaterThan(t0);
      expect(ended).toBeLessThanOrEqual(t0 + seconds * 1_000 + PING_TIMEOUT_MS + 2 * world.relayLatency);
      // Nothing answered, so each spray used its whole budget: rate × seconds.
      expect(n.logs.some((l) => l.includes(`spray ended after ${BIRTHDAY_RATE * seconds} probes (no port answered)`))).toBe(true);
      expect(n.logs.some((l) => l.includes('no probe got through in time; the relay stays'))).toBe(true);
      expect(n.host.sockets.size).toBe(1);
    }
    expect(probes).toEqual([BIRTHDAY_RATE * seconds, BIRTHDAY_RATE * seconds]);
    // A further 20 s of an active session: no probe, no socket (a new attempt waits 60 s).
    await runUntil(bound + 20_000, 500, keepActive);
    expect([a.direct.birthday.stats.probesSent, b.direct.birthday.stats.probesSent]).toEqual(probes);
    expect([a.host.bound, b.host.bound]).toEqual([1 + sockets, 1 + sockets]);
    expect([a.host.sockets.size, b.host.sockets.size]).toEqual([1, 1]);
    // Outcome in the fake: never direct, and not by bad luck. Every probe leaves the prober's
    // main socket for a new destination, so its own NAT gives it a fresh random source port;
    // the other side's sockets were opened toward the prober's STUN-mapped ports, and its NAT
    // filters by address and port, so even a probe that hits an open port is dropped. (Only a
    // NAT that filters by address alone would let such a hit through.)
    expect(wasDirect).toBe(false);
    expect(a.direct.birthday.stats.successes + b.direct.birthday.stats.successes).toBe(0);
    expect(a.peer.paths.sendTargets(now())).toEqual({ udp: null, relay: true });
    expect(b.peer.paths.sendTargets(now())).toEqual({ udp: null, relay: true });
  });
});

describe('the spray rate', () => {
  it('birthdayRate 50: at most 50 × t + 1 probes after t seconds of spraying', async () => {
    const rate = 50;
    // Few sockets on the hard side, so that no probe is likely to hit in 2 s and the rate is
    // seen over the whole window (with 256, this seed's 13th probe hits).
    const [a, b] = world.pair({ ...EASY_A, direct: { birthdayRate: rate } }, { ...HARD_B, direct: { birthdaySockets: 4 } });
    await world.start();
    expect(b.direct.canBirthday).toBe(true);
    active(a)();
    await waitFor(() => a.direct.birthday.stats.probesSent > 0, 2_000, 10);
    const start = loggedAt(a, SPRAY_STARTED);
    expect(start).toBeGreaterThan(0);
    expect(a.logs.some((l) => l.includes(`probing up to ${rate * 30} random ports at ${rate}/s`))).toBe(true);
    // Checked every 10 ms (the spray's own step) over the first 2 s.
    while (now() < start + 2_000) {
      await world.clock.advance(10);
      expect(a.direct.birthday.stats.probesSent).toBeLessThanOrEqual(Math.floor((rate * (now() - start)) / 1_000) + 1);
    }
    const probes = a.direct.birthday.stats.probesSent;
    expect(probes).toBeGreaterThan(0);
    expect(probes).toBeLessThanOrEqual(rate * 2 + 1);
    // Nothing answered in those 2 s, so the spray ran at the full rate.
    expect(direct(a)).toBe(false);
    expect(b.host.sockets.size).toBe(1 + 4);
    expect(probes).toBe(rate * 2 + 1);
  });
});

describe('Punch over UDP', () => {
  /** A Punch from `from` to `to`, sealed with their disco keys. */
  const punchFrom = (from: DirectNode, to: DirectNode, nonce: number): Uint8Array => {
    const m: DiscoPunch = { type: 'punch', ip: from.host.publicIp, sockets: BIRTHDAY_SOCKETS, durationS: 30, sprays: false };
    return sealDisco(m, from.opts.keys.disco, from.opts.keys.disco.public(), to.opts.keys.disco.public(), new Uint8Array(24).fill(nonce));
  };

  it('is ignored (no spray); the same Punch over the relay starts one', async () => {
    const [a, b] = world.pair(PUBLIC_A, HARD_B);
    await world.start();
    expect(direct(a)).toBe(false);
    const before = { udpIn: a.direct.stats.udpIn, bad: a.disco.stats.bad };
    // From b's own socket (through b's NAT) to a's UDP port.
    b.direct.send({ kind: 'udp', ip: PUBLIC_A.publicIp, port: a.direct.port, sock: 0 }, punchFrom(b, a, 1));
    await world.clock.advance(1_000);
    expect(a.direct.stats.udpIn - before.udpIn).toBe(1);
    expect(a.disco.stats.bad).toBe(before.bad); // opened fine, then ignored
    expect(a.direct.birthday.stats).toEqual({ attempts: 0, successes: 0, probesSent: 0 });
    expect(loggedAt(a, SPRAY_STARTED)).toBe(-1);
    // The control: a Punch sealed the same way, over the relay.
    expect(world.relay(b, a.nodeKey, 1, punchFrom(b, a, 2))).toBe(true);
    await world.clock.advance(100);
    expect(a.direct.birthday.stats.probesSent).toBeGreaterThan(0);
    expect(loggedAt(a, SPRAY_STARTED)).toBeGreaterThan(0);
  });
});

describe('Punch for someone else\'s address', () => {
  it('is ignored: probes only ever go to one of the peer\'s own endpoint IPs', async () => {
    const [a, b] = world.pair(PUBLIC_A, HARD_B);
    await world.start();
    const m: DiscoPunch = { type: 'punch', ip: '198.51.100.77', sockets: BIRTHDAY_SOCKETS, durationS: 30, sprays: false };
    const sealed = sealDisco(m, b.opts.keys.disco, b.opts.keys.disco.public(), a.opts.keys.disco.public(), new Uint8Array(24).fill(9));
    for (let i = 0; i < 4; i++) expect(world.relay(b, a.nodeKey, 1, sealed)).toBe(true);
    await world.clock.advance(2_000);
    expect(a.direct.birthday.stats.probesSent).toBe(0);
    expect(loggedAt(a, SPRAY_STARTED)).toBe(-1);
    expect(a.logs.some((l) => l.includes('not one of its endpoints'))).toBe(true);
  });
});

describe('a port mapping on the hard side', () => {
  // The mapping arrives after the first STUN round: STUN saw a hard NAT (hardNat stays true
  // until the next round, 20–26 s later), and the mapped port now reaches the socket from
  // anywhere (and is the socket's source port for everything it sends).
  const MAPPED_B: NodeSpec = { ...HARD_B, direct: { birthdayHardHard: true } };
  const mapLate = (n: DirectNode): void => n.host.enablePortMapping(1_200);

  it('easy ↔ hard with a mapping: no birthday at all, direct through the mapped port', async () => {
    const [a, b] = world.pair(EASY_A, MAPPED_B);
    mapLate(b);
    await world.start();
    expect(b.direct.hardNat).toBe(true);
    expect(b.direct.mapping).not.toBeNull();
    expect(b.direct.canBirthday).toBe(false);
    const mapped = b.direct.mapping!.port;
    expect(a.peer.info.endpoints[0]).toBe(`${HARD_B.publicIp}:${mapped}`);
    active(a)();
    await waitFor(() => direct(a) && direct(b), 2_000, 10);
    expect(a.peer.paths.sendTargets(now())).toEqual({ udp: { kind: 'udp', ip: HARD_B.publicIp, port: mapped, sock: 0 }, relay: false });
    await runUntil(now() + 10_000, 500, active(a));
    expect(direct(a) && direct(b)).toBe(true);
    expect(a.direct.birthday.stats).toEqual({ attempts: 0, successes: 0, probesSent: 0 });
    expect(b.direct.birthday.stats).toEqual({ attempts: 0, successes: 0, probesSent: 0 });
    expect(b.host.bound).toBe(1);
  });

  it('hard ↔ hard with a mapping on one side: its Punch handler sprays nothing and opens no sockets', async () => {
    // UDP slower than the relay, so the Punch is handled before any direct path exists.
    world.net.latency = 30;
    const sockets = 32;
    const [a, b] = world.pair({ ...HARD_A, direct: { birthdayHardHard: true, birthdaySockets: sockets } }, MAPPED_B);
    mapLate(b);
    await world.start();
    expect(a.direct.canBirthday).toBe(true);
    expect(b.direct.hardNat === true && b.direct.mapping !== null).toBe(true);
    const punches: boolean[] = [];
    const punch = b.direct.punch.bind(b.direct);
    vi.spyOn(b.direct, 'punch').mockImplementation((p, m) => {
      punches.push(direct(b));
      punch(p, m);
    });
    active(a)();
    await waitFor(() => direct(a) && direct(b), 2_000, 10);
    expect(punches[0]).toBe(false); // b handled a's Punch while still on the relay
    const mapped = b.direct.mapping!.port;
    expect(a.peer.paths.sendTargets(now()).udp).toMatchObject({ ip: HARD_B.publicIp, port: mapped });
    await runUntil(now() + 10_000, 500, active(a));
    expect(direct(a) && direct(b)).toBe(true);
    // b: no hard session, no spray, no extra socket.
    expect(b.direct.birthday.stats).toEqual({ attempts: 0, successes: 0, probesSent: 0 });
    expect(loggedAt(b, SPRAY_STARTED)).toBe(-1);
    expect(b.host.bound).toBe(1);
    // a opened its sockets (its NAT is hard, unmapped), sprayed nothing (b sent no Punch), and
    // closed every socket the path does not run on.
    expect(a.host.bound).toBe(1 + sockets);
    expect(a.direct.birthday.stats.probesSent).toBe(0);
    const sock = a.peer.paths.best!.path.sock;
    expect(a.host.sockets.size).toBe(sock === 0 ? 1 : 2);
  });
});
