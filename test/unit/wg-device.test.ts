import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { VirtualNet, ipPacket, seededRandom } from '../support/wg-net.ts';
import { PresharedKey } from '../../src/key/keys.ts';
import { nodeBackend } from '../../gateway/src/crypto/node-backend.ts';
import { nobleBackend } from '../../src/crypto/noble.ts';
import { MSG_COOKIE_REPLY, MSG_INITIATION, MSG_RESPONSE, MSG_TRANSPORT } from '../../src/wg/constants.ts';
import { isPierceError } from '../../src/errors.ts';

function pair(opts: { psk?: boolean; backend?: typeof nobleBackend; limits?: object; keepalive?: number } = {}) {
  const net = new VirtualNet(opts.backend ?? nobleBackend, opts.limits ?? {});
  const a = net.addNode('A');
  const b = net.addNode('B');
  const psk = opts.psk ? PresharedKey.generate(seededRandom(5)) : undefined;
  net.connect(a, b, { aIP: '10.0.0.1', bIP: '10.0.0.2', ...(psk ? { psk } : {}), ...(opts.keepalive ? { keepalive: opts.keepalive } : {}) });
  return { net, a, b };
}

describe('WireGuard device: handshake and data', () => {
  for (const backend of [nobleBackend, nodeBackend]) {
    for (const psk of [false, true]) {
      it(`handshakes and carries data both ways (${backend.name}, psk=${psk})`, () => {
        const { net, a, b } = pair({ psk, backend });
        expect(a.dev.send(ipPacket('10.0.0.1', '10.0.0.2', 200), net.now)).toBeUndefined();
        net.run(100);
        expect(b.delivered).toHaveLength(1);
        expect(b.delivered[0]!.length).toBe(220); // padding removed
        b.dev.send(ipPacket('10.0.0.2', '10.0.0.1', 33), net.now);
        net.run(200);
        expect(a.delivered).toHaveLength(1);
        expect(a.delivered[0]!.length).toBe(53);
        expect(net.sent('A', MSG_INITIATION)).toBe(1);
        expect(net.sent('B', MSG_RESPONSE)).toBe(1);
        expect(a.errors).toEqual([]);
        expect(b.errors).toEqual([]);
      });
    }
  }

  it('a preshared key mismatch never completes the handshake', () => {
    const net = new VirtualNet();
    const a = net.addNode('A');
    const b = net.addNode('B');
    net.connect(a, b, { aIP: '10.0.0.1', bIP: '10.0.0.2', psk: PresharedKey.generate(seededRandom(1)) });
    b.dev.peers()[0]!.setPresharedKey(PresharedKey.generate(seededRandom(2)));
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(1000);
    expect(b.delivered).toHaveLength(0);
    expect(a.errors.map((e) => e.code)).toContain('WG_DECRYPT');
  });

  it('pads to 16 bytes on the wire', () => {
    const { net, a } = pair();
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2', 1), 0);
    net.run(100);
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2', 1), net.now);
    const data = net.wire.filter((w) => w.from === 'A' && w.data[0] === MSG_TRANSPORT && w.data.length > 32);
    expect(data.length).toBeGreaterThan(0);
    for (const d of data) expect((d.data.length - 32) % 16).toBe(0);
  });

  it('drops packets whose source is outside the peer\'s allowed IPs', () => {
    const { net, a, b } = pair();
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(100);
    // A's routing accepts 10.0.0.2 as destination; the source 10.9.9.9 is not A's allowed IP at B.
    a.dev.send(ipPacket('10.9.9.9', '10.0.0.2'), net.now);
    net.run(200);
    expect(b.delivered).toHaveLength(1);
    expect(b.errors.map((e) => e.code)).toEqual(['WG_ALLOWED_IPS']);
  });

  it('reports no route for destinations outside every peer', () => {
    const { a } = pair();
    expect(a.dev.send(ipPacket('10.0.0.1', '10.0.0.3'), 0)?.code).toBe('WG_NO_ROUTE');
    expect(a.dev.send(new Uint8Array([0x10]), 0)?.code).toBe('WG_PACKET');
  });
});

describe('WireGuard device: replay and bad input', () => {
  it('rejects a replayed transport message and keeps the session', () => {
    const { net, a, b } = pair();
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(100);
    const last = net.wire.filter((w) => w.from === 'A' && w.data[0] === MSG_TRANSPORT && w.data.length > 32).at(-1)!;
    expect(net.inject(b, Uint8Array.from(last.data), a.ep)?.code).toBe('WG_REPLAY');
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), net.now);
    net.run(200);
    expect(b.delivered).toHaveLength(2);
  });

  it('rejects a replayed initiation (TAI64N) without touching the session', () => {
    const { net, a, b } = pair();
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(100);
    const init = net.wire.find((w) => w.from === 'A' && w.data[0] === MSG_INITIATION)!;
    net.run(1000);
    expect(net.inject(b, Uint8Array.from(init.data), a.ep)?.code).toBe('WG_REPLAY');
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), net.now);
    net.run(1200);
    expect(b.delivered).toHaveLength(2);
    expect(net.sent('B', MSG_RESPONSE)).toBe(1);
  });

  it('rejects initiations that arrive faster than the flood limit', () => {
    const { net, a, b } = pair();
    const peer = a.dev.peers()[0]!;
    // 990 ms and 1005 ms fall in different TAI64N buckets (new second) but 15 ms apart.
    net.run(990);
    peer.forceHandshake(net.now);
    net.run(1005);
    peer.forceHandshake(net.now);
    net.run(1100);
    expect(b.errors.map((e) => e.code)).toContain('WG_FLOOD');
  });

  it('answers truncated, mutated and random datagrams with typed errors only (fuzz)', () => {
    const { net, a, b } = pair();
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(100);
    const samples = net.wire.map((w) => w.data);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc.tuple(fc.constantFrom(...samples), fc.nat(), fc.integer({ min: 1, max: 255 })).map(([s, i, x]) => {
            const c = Uint8Array.from(s);
            c[i % c.length]! ^= x;
            return c;
          }),
          fc.tuple(fc.constantFrom(...samples), fc.nat()).map(([s, n]) => s.slice(0, n % s.length)),
          fc.tuple(fc.constantFrom(1, 2, 3, 4), fc.uint8Array({ minLength: 28, maxLength: 160 })).map(([t, rest]) => {
            const c = Uint8Array.from(rest);
            c[0] = t;
            c[1] = c[2] = c[3] = 0;
            return c;
          }),
        ),
        (d) => {
          const err = b.dev.receive(d, a.ep, net.now);
          expect(err === undefined || isPierceError(err)).toBe(true);
          if (err) expect(err.code).not.toBe('WG_INTERNAL');
        },
      ),
      { numRuns: 400 },
    );
    // The session still works.
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), net.now);
    net.run(net.now + 100);
    expect(b.delivered).toHaveLength(2);
  });
});

describe('WireGuard device: timers (paper §6) on a virtual clock', () => {
  it('rekeys after Rekey-After-Time under steady traffic without losing a packet', () => {
    const { net, a, b } = pair();
    let sent = 0;
    for (let t = 0; t <= 400_000; t += 500) {
      net.run(t);
      a.dev.send(ipPacket('10.0.0.1', '10.0.0.2', 64, sent & 255), net.now);
      b.dev.send(ipPacket('10.0.0.2', '10.0.0.1', 64, sent & 255), net.now);
      sent++;
    }
    net.run(401_000);
    expect(b.delivered).toHaveLength(sent);
    expect(a.delivered).toHaveLength(sent);
    // 400 s of traffic: the initiator rekeys every ~120 s.
    expect(net.sent('A', MSG_INITIATION)).toBeGreaterThanOrEqual(3);
    expect(a.dev.peers()[0]!.stats.handshakesCompleted).toBeGreaterThanOrEqual(4);
    expect([...a.errors, ...b.errors]).toEqual([]);
  });

  it('sends a keepalive Keepalive-Timeout after receiving data it did not answer', () => {
    const { net, a, b } = pair();
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(100);
    const before = net.sent('B', MSG_TRANSPORT);
    net.run(9_000);
    expect(net.sent('B', MSG_TRANSPORT)).toBe(before);
    net.run(11_000);
    const ka = net.wire.filter((w) => w.from === 'B' && w.data[0] === MSG_TRANSPORT && w.t > 9_000);
    expect(ka).toHaveLength(1);
    expect(ka[0]!.data.length).toBe(32); // empty payload + tag
  });

  it('retransmits the initiation every Rekey-Timeout and gives up after Rekey-Attempt-Time', () => {
    const { net, a } = pair();
    net.drop = () => true;
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(60_000);
    const at60 = net.sent('A', MSG_INITIATION);
    expect(at60).toBeGreaterThanOrEqual(11);
    expect(at60).toBeLessThanOrEqual(12);
    net.run(200_000);
    // 1 + MaxTimerHandshakes + 1 = 19 attempts in ~90-96 s, then silence.
    expect(net.sent('A', MSG_INITIATION)).toBe(19);
    expect(net.sent('A', MSG_INITIATION, 100_000)).toBe(0);
    expect(a.dev.peers()[0]!.staged).toHaveLength(0);
  });

  it('starts a new handshake when data gets no answer for Keepalive-Timeout + Rekey-Timeout', () => {
    const { net, a } = pair();
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(100);
    net.drop = (from) => from === 'B';
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), net.now);
    net.run(14_000);
    expect(net.sent('A', MSG_INITIATION, 1000)).toBe(0);
    net.run(16_000);
    expect(net.sent('A', MSG_INITIATION, 1000)).toBe(1);
  });

  it('sends persistent keepalives at the configured interval', () => {
    const { net, a } = pair({ keepalive: 25 });
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(100);
    net.run(110_100);
    // B's keepalive (10 s after A's data) also counts as traffic, so A's timer restarts then.
    const times = net.wire.filter((w) => w.from === 'A' && w.data[0] === MSG_TRANSPORT && w.data.length === 32).map((w) => w.t);
    expect(times).toHaveLength(4);
    expect(times.slice(1).map((t, i) => t - times[i]!)).toEqual([25_000, 25_000, 25_000]);
  });

  it('zeroes key material 3 x Reject-After-Time after the last handshake', () => {
    const { net, a, b } = pair();
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(100);
    expect(a.dev.peers()[0]!.current).not.toBeNull();
    net.run(540_200);
    expect(a.dev.peers()[0]!.current).toBeNull();
    expect(b.dev.peers()[0]!.current).toBeNull();
  });

  it('refuses a keypair past Reject-After-Time and rekeys before sending', () => {
    const { net, a, b } = pair();
    b.dev.peers()[0]!.endpoint = a.ep;
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(100);
    // Only the responder sends for 181 s: it never rekeys by time, so its keypair expires.
    net.run(181_000);
    b.dev.send(ipPacket('10.0.0.2', '10.0.0.1'), net.now);
    net.run(182_000);
    expect(net.sent('B', MSG_INITIATION)).toBe(1);
    expect(a.delivered).toHaveLength(1);
  });

  it('rekeys after Rekey-After-Messages and stops at Reject-After-Messages (small limits)', () => {
    const { net, a, b } = pair({ limits: { rekeyAfterMessages: 20, rejectAfterMessages: 30 } });
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(6_000); // initiations are rate-limited to one per Rekey-Timeout
    for (let i = 0; i < 25; i++) a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), net.now);
    // A passed 20 messages: a new initiation went out.
    expect(net.sent('A', MSG_INITIATION)).toBe(2);
    net.run(6_100);
    expect(b.delivered).toHaveLength(26);
    // Past 30 messages on the old keypair A must not send with it: the new one takes over.
    for (let i = 0; i < 25; i++) a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), net.now);
    net.run(6_200);
    expect(b.delivered).toHaveLength(51);
    expect(b.errors).toEqual([]);
  });

  it('drops with WG_EXPIRED a counter at or past Reject-After-Messages', () => {
    const { net, a, b } = pair({ limits: { rejectAfterMessages: 5, rekeyAfterMessages: 1000 } });
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(6_000);
    const kp = a.dev.peers()[0]!.current!;
    kp.sendCounter = 5; // beyond the limit: A must not use it
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), net.now);
    expect(net.sent('A', MSG_INITIATION)).toBe(2);
    const forged = kp.seal(nobleBackend, ipPacket('10.0.0.1', '10.0.0.2'), 7, 1420);
    expect(net.inject(b, forged, a.ep)?.code).toBe('WG_EXPIRED');
  });
});

describe('WireGuard device: cookies under load (paper §5.3)', () => {
  it('answers with a cookie reply, and the retried initiation with mac2 succeeds', () => {
    const { net, a, b } = pair();
    b.dev.forceUnderLoad = true;
    a.dev.send(ipPacket('10.0.0.1', '10.0.0.2'), 0);
    net.run(1_000);
    expect(net.sent('B', MSG_COOKIE_REPLY)).toBe(1);
    expect(b.errors.map((e) => e.code)).toEqual(['WG_COOKIE_REQUIRED']);
    expect(a.dev.peers()[0]!.cookies.hasFreshCookie(net.now)).toBe(true);
    net.run(7_000); // retransmit after Rekey-Timeout carries mac2
    expect(b.delivered).toHaveLength(1);
    expect(net.sent('B', MSG_RESPONSE)).toBe(1);
  });

  it('goes under load by itself past the handshake rate and rate-limits a source', () => {
    const net = new VirtualNet(nobleBackend, { underLoadHandshakesPerSecond: 3 });
    const b = net.addNode('B');
    const attackers = Array.from({ length: 6 }, (_, i) => net.addNode(`X${i}`));
    for (const x of attackers) net.connect(x, b, { aIP: `10.1.0.${attackers.indexOf(x) + 1}`, bIP: '10.0.0.2' });
    for (const x of attackers) x.dev.send(ipPacket(`10.1.0.${attackers.indexOf(x) + 1}`, '10.0.0.2'), 0);
    net.run(50);
    expect(b.dev.isUnderLoad(net.now)).toBe(true);
    expect(net.sent('B', MSG_COOKIE_REPLY)).toBe(3);
  });
});
