/**
 * Path selection per peer (src/paths/paths.ts) and the birthday arithmetic: relay until a pong
 * proves a UDP path, trust for 6.5 s, UDP + relay once trust lapses, back to relay when the
 * heartbeat goes unanswered, no flapping between similar paths, and learned candidates expiring.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { PeerPaths, TRUST_MS, LEARNED_TTL_MS, UPGRADE_INTERVAL_MS, addrPoints, betterPath, formatAddr, parseAddr, pathName, type Candidate } from '../../src/paths/paths.ts';
import { birthdaySuccess } from '../../src/engine/birthday.ts';

const cand = (ip: string, rttMs: number | null): Candidate => ({ path: { kind: 'udp', ip, port: 1, sock: 0 }, source: 'netmap', rttMs, trustedUntil: 0, lastPing: 0, lastHeard: 0 });

describe('peer paths', () => {
  it('use the relay until a pong proves a UDP path, then UDP alone while trusted', () => {
    const p = new PeerPaths();
    p.relayRegion = 3;
    expect(p.sendTargets(0)).toEqual({ udp: null, relay: true });
    expect(p.current(0)).toEqual({ kind: 'relay', region: 3 });
    p.setNetmapEndpoints([{ ip: '192.0.2.1', port: 41641 }, { ip: '2001:db8::1', port: 41641 }], 0);
    expect(p.current(0).kind).toBe('relay');
    expect(p.confirm(p.get('192.0.2.1', 41641)!, 20, 0)).toBe(true);
    expect(p.sendTargets(1)).toEqual({ udp: { kind: 'udp', ip: '192.0.2.1', port: 41641, sock: 0 }, relay: false });
    expect(pathName(p.current(1), String)).toBe('192.0.2.1:41641');
    expect(p.isDirect(TRUST_MS - 1)).toBe(true);
  });

  it('send on both UDP and the relay once trust lapses; an unanswered ping then drops UDP', () => {
    const p = new PeerPaths();
    p.setNetmapEndpoints([{ ip: '192.0.2.1', port: 9 }], 0);
    const c = p.get('192.0.2.1', 9)!;
    p.confirm(c, 10, 0);
    p.timedOut(c, 100); // still trusted: kept
    expect(p.best).toBe(c);
    expect(p.sendTargets(TRUST_MS + 1)).toEqual({ udp: c.path, relay: true });
    expect(pathName(p.current(TRUST_MS + 1), (id) => `r${id}`)).toBe('relay(r0)');
    p.timedOut(c, TRUST_MS + 1);
    expect(p.sendTargets(TRUST_MS + 2)).toEqual({ udp: null, relay: true });
    // A later pong brings it back.
    p.confirm(c, 10, TRUST_MS + 3);
    expect(p.isDirect(TRUST_MS + 4)).toBe(true);
  });

  it('switch only for a clear gain, and prefer private addresses at similar latency', () => {
    const p = new PeerPaths();
    const a = p.add('198.51.100.1', 1, 'netmap', 0).c;
    const b = p.add('198.51.100.2', 1, 'netmap', 0).c;
    p.confirm(a, 10, 0);
    expect(p.confirm(b, 9.95, 1)).toBe(false); // 0.5 % faster: no switch
    expect(p.best).toBe(a);
    expect(p.confirm(b, 2, 2)).toBe(true);
    expect(p.best).toBe(b);
    expect(betterPath(cand('192.168.1.2', 10), cand('198.51.100.2', 10))).toBe(true);
    expect(betterPath(cand('198.51.100.2', 10), cand('192.168.1.2', 10))).toBe(false);
    expect(addrPoints('::1')).toBe(50);
    expect(addrPoints('fe80::1')).toBe(30);
    expect(addrPoints('fd7a::1')).toBe(20);
    expect(addrPoints('2001:db8::1')).toBe(10);
  });

  it('betterPath is never true both ways (no flapping)', () => {
    const ip = fc.constantFrom('192.168.0.1', '10.0.0.1', '203.0.113.9', '2001:db8::1', 'fd00::1', '127.0.0.1');
    fc.assert(
      fc.property(ip, ip, fc.option(fc.double({ min: 0.01, max: 1000, noNaN: true })), fc.option(fc.double({ min: 0.01, max: 1000, noNaN: true })), (ia, ib, ra, rb) => {
        const a = cand(ia, ra);
        const b = cand(ib, rb);
        expect(betterPath(a, b) && betterPath(b, a)).toBe(false);
      }),
    );
  });

  it('forget learned candidates after 45 s unheard, never netmap ones or the best path', () => {
    const p = new PeerPaths();
    p.setNetmapEndpoints([{ ip: '192.0.2.1', port: 1 }], 0);
    const learned = p.add('192.0.2.2', 2, 'learned', 0).c;
    const best = p.add('192.0.2.3', 3, 'learned', 0).c;
    p.confirm(best, 5, 0);
    expect(p.expire(LEARNED_TTL_MS + 1).map((x) => x.port)).toEqual([2]);
    expect(p.list().map((c) => c.path.port).sort()).toEqual([1, 3]);
    expect(learned.path.port).toBe(2);
    // A netmap endpoint that disappears from the netmap becomes learned and ages out.
    p.setNetmapEndpoints([], LEARNED_TTL_MS + 2);
    expect(p.expire(2 * LEARNED_TTL_MS + 10).map((x) => x.port)).toEqual([1]);
  });

  it('want a full round of pings without a trusted path, or for a slow one each minute', () => {
    const p = new PeerPaths();
    expect(p.wantsFullPing(0)).toBe(true);
    const c = p.add('203.0.113.1', 1, 'netmap', 0).c;
    p.confirm(c, 50, 0);
    p.lastFullPing = 0;
    expect(p.wantsFullPing(1000)).toBe(false);
    expect(p.wantsFullPing(UPGRADE_INTERVAL_MS)).toBe(true); // trust lapsed at 6.5 s
    p.confirm(c, 50, UPGRADE_INTERVAL_MS);
    expect(p.wantsFullPing(UPGRADE_INTERVAL_MS + 1)).toBe(true);
    const fast = new PeerPaths();
    fast.confirm(fast.add('203.0.113.1', 1, 'netmap', 0).c, 1, 0);
    fast.lastFullPing = 0;
    fast.confirm(fast.best!, 1, UPGRADE_INTERVAL_MS);
    expect(fast.wantsFullPing(UPGRADE_INTERVAL_MS + 1)).toBe(false);
  });

  it('parse and format endpoints; junk gives undefined', () => {
    expect(parseAddr('1.2.3.4:5')).toEqual({ ip: '1.2.3.4', port: 5 });
    expect(parseAddr('[2001:DB8::1]:443')).toEqual({ ip: '2001:db8::1', port: 443 });
    for (const bad of ['', '1.2.3.4', '1.2.3.4:0', '1.2.3.4:70000', 'host:80', '[::1]', '::1:80']) expect(parseAddr(bad)).toBeUndefined();
    fc.assert(fc.property(fc.string(), (s) => void parseAddr(s)));
    expect(formatAddr('::1', 2)).toBe('[::1]:2');
  });
});

describe('birthday arithmetic', () => {
  it('matches the expected success rates for 256 open ports', () => {
    expect(birthdaySuccess(174)).toBeCloseTo(0.5, 1);
    expect(birthdaySuccess(256)).toBeCloseTo(0.64, 1);
    expect(birthdaySuccess(1024)).toBeGreaterThan(0.98);
    expect(birthdaySuccess(2048)).toBeGreaterThan(0.999);
  });
});
