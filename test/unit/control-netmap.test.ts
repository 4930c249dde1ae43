/**
 * The class-based netmap against a direct evaluation of the policy: for random policies and
 * random sequences of joins, leaves, tag changes and policy changes, what every connected node
 * holds after applying the full map and each delta (NetmapView) must equal
 *   peers  = every other node it may talk to or that may talk to it (rule by rule, node by node)
 *   filter = what `evaluate` says for every source node, protocol and port.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Netmap, type MapSink } from '../../gateway/src/control/netmap.ts';
import { NetmapView } from '../../src/control/client.ts';
import type { MapResponse } from '../../src/control/messages.ts';
import { dstMatches, evaluate, filterAllows, parsePolicy, srcMatches, type Identity, type Policy } from '../../src/policy/index.ts';
import type { NodeRecord } from '../../gateway/src/store/types.ts';
import { nodeRecord } from '../support/node-record.ts';

const USERS = ['u0@x', 'u1@x', 'u2@x', 'u3@x'];
const TAGS = ['tag:t0', 'tag:t1', 'tag:t2'];
const GROUPS = { 'group:g0': ['u0@x', 'u1@x'], 'group:g1': ['u2@x'], 'group:g2': ['u1@x', 'u3@x'] };

const srcSel = fc.constantFrom('*', 'u0@x', 'u1@x', 'u3@x', 'group:g0', 'group:g1', 'group:g2', 'tag:t0', 'tag:t1', 'tag:t2', 'autogroup:member', 'autogroup:tagged', '100.64.0.3', '100.64.0.4/31', '10.0.0.0/8');
const dstHost = fc.constantFrom('*', 'u0@x', 'u2@x', 'group:g0', 'group:g2', 'tag:t0', 'tag:t1', 'tag:t2', 'autogroup:member', 'autogroup:tagged', 'autogroup:self', '100.64.0.2', '100.64.0.0/30');
const ports = fc.constantFrom('*', '22', '80,443', '1000-2000', '22,8000-8100');
const rule = fc.record({
  src: fc.array(srcSel, { minLength: 1, maxLength: 3 }),
  dst: fc.array(fc.tuple(dstHost, ports), { minLength: 1, maxLength: 3 }),
  proto: fc.option(fc.constantFrom('tcp', 'udp'), { nil: undefined }),
});
const policyText = fc.array(rule, { minLength: 0, maxLength: 6 }).map((rules) =>
  JSON.stringify({
    groups: GROUPS,
    tagOwners: Object.fromEntries(TAGS.map((t) => [t, ['u0@x']])),
    acls: rules.map((r) => ({ action: 'accept', src: r.src, dst: r.dst.map(([h, p]) => `${h}:${p}`), ...(r.proto ? { proto: r.proto } : {}) })),
  }),
);
const nodeSpec = fc.record({ user: fc.integer({ min: 0, max: USERS.length - 1 }), tags: fc.subarray(TAGS, { maxLength: 2 }) });
const op = fc.oneof(
  fc.record({ k: fc.constant('join' as const), spec: nodeSpec }),
  fc.record({ k: fc.constant('leave' as const), i: fc.nat() }),
  fc.record({ k: fc.constant('retag' as const), i: fc.nat(), tags: fc.subarray(TAGS, { maxLength: 2 }) }),
  fc.record({ k: fc.constant('policy' as const), text: policyText }),
  fc.record({ k: fc.constant('offline' as const), i: fc.nat() }),
);

interface Sim {
  rec: NodeRecord;
  view: NetmapView;
  sink: MapSink | undefined;
}

/** Here the IPv6 address embeds the IPv4 one (100.64 = 0x6440, then the node's id in hex). */
const record = (id: number, user: number, tags: string[]): NodeRecord => nodeRecord(id, user, tags, { ipv6: `fd7a:115c:a1e0::6440:${id.toString(16)}` });

const identity = (r: NodeRecord): Identity => ({ user: USERS[r.userId]!, tags: r.tags, addrs: [r.ipv4, r.ipv6] });

/** Direct, rule-by-rule visibility: A may reach B or B may reach A on some port. */
function mayReach(p: Policy, a: Identity, b: Identity): boolean {
  return p.acls.some((r) => r.src.some((s) => srcMatches(p, s, a)) && r.dst.some((d) => dstMatches(p, d.sel, a, b)));
}

function check(policy: Policy, sims: Map<number, Sim>): void {
  const all = [...sims.values()];
  for (const me of all) {
    if (!me.sink) continue;
    const mine = identity(me.rec);
    const want = all.filter((o) => o !== me && (mayReach(policy, mine, identity(o.rec)) || mayReach(policy, identity(o.rec), mine))).map((o) => o.rec.id);
    expect([...me.view.peers.keys()].sort((x, y) => x - y), `peers of n${me.rec.id}`).toEqual(want.sort((x, y) => x - y));
    for (const p of me.view.peers.values()) expect(p.tags).toEqual(sims.get(p.id)!.rec.tags);
    for (const o of all) {
      if (o === me) continue;
      for (const [proto, port] of [[6, 22], [6, 443], [17, 1500], [6, 8050], [1, 0]] as const) {
        const direct = evaluate(policy, identity(o.rec), mine, proto, port).allowed;
        expect(filterAllows(me.view.filter, o.rec.ipv4, me.rec.ipv4, proto, port), `n${o.rec.id}→n${me.rec.id} ${proto}/${port}`).toBe(direct);
        expect(filterAllows(me.view.filter, o.rec.ipv6, me.rec.ipv6, proto, port)).toBe(direct);
      }
    }
    // Sources outside the tailnet come only from literal prefixes.
    const ext = evaluate(policy, { tags: [], addrs: ['10.1.2.3'] }, mine, 6, 22).allowed;
    expect(filterAllows(me.view.filter, '10.1.2.3', me.rec.ipv4, 6, 22)).toBe(ext);
  }
}

describe('netmap: deltas and filters agree with direct evaluation of the policy', () => {
  it('random policies and random joins, leaves, retags, disconnects and policy changes', () => {
    fc.assert(
      fc.property(policyText, fc.array(op, { minLength: 1, maxLength: 25 }), (first, ops) => {
        let policy = parsePolicy(first);
        const nm = new Netmap({ relays: { regions: [] } });
        nm.setPolicy(policy);
        const sims = new Map<number, Sim>();
        let nextId = 1;
        const attach = (s: Sim) => {
          s.view = new NetmapView();
          let seq = 0;
          s.sink = { send: (body) => s.view.apply(JSON.parse(`{"t":"map","seq":${++seq},${body}}`) as MapResponse) };
          nm.attach(s.rec.id, s.sink, { discoKey: s.rec.discoKey, endpoints: [], homeRelay: 1 });
        };
        const pick = (i: number) => [...sims.values()][i % Math.max(1, sims.size)];
        for (const o of ops) {
          if (o.k === 'join' && nextId < 60) {
            const s: Sim = { rec: record(nextId++, o.spec.user, o.spec.tags), view: new NetmapView(), sink: undefined };
            sims.set(s.rec.id, s);
            nm.upsert(s.rec, USERS[s.rec.userId]);
            attach(s);
          } else if (o.k === 'leave' && sims.size) {
            const s = pick(o.i)!;
            sims.delete(s.rec.id);
            nm.remove(s.rec.id);
          } else if (o.k === 'retag' && sims.size) {
            const s = pick(o.i)!;
            s.rec = { ...s.rec, tags: o.tags };
            nm.upsert(s.rec, USERS[s.rec.userId]);
          } else if (o.k === 'offline' && sims.size) {
            const s = pick(o.i)!;
            if (s.sink) {
              nm.detach(s.rec.id, s.sink, 1);
              s.sink = undefined;
            } else attach(s);
          } else if (o.k === 'policy') {
            policy = parsePolicy(o.text);
            nm.setPolicy(policy);
          }
          nm.flush();
          check(policy, sims);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('online state and endpoint reports reach exactly the nodes that see the reporter', () => {
    const policy = parsePolicy(JSON.stringify({ acls: [{ action: 'accept', src: ['u0@x'], dst: ['u1@x:22'] }] }));
    const nm = new Netmap({ relays: { regions: [] } });
    nm.setPolicy(policy);
    const got = new Map<number, MapResponse[]>();
    for (const [id, user] of [[1, 0], [2, 1], [3, 2]] as const) {
      nm.upsert(record(id, user, []), USERS[user]);
      got.set(id, []);
      let seq = 0;
      nm.attach(id, { send: (b) => got.get(id)!.push(JSON.parse(`{"t":"map","seq":${++seq},${b}}`) as MapResponse) }, { discoKey: `discokey:${id}`, endpoints: [], homeRelay: 0 });
    }
    nm.flush();
    const before = got.get(3)!.length;
    nm.report(1, { endpoints: ['192.0.2.1:1'], homeRelay: 2 });
    nm.flush();
    const toTwo = got.get(2)!.at(-1)!;
    expect(toTwo.peersPatch).toEqual([{ id: 1, endpoints: ['192.0.2.1:1'], homeRelay: 2 }]);
    expect(got.get(3)!.length).toBe(before); // node 3 sees nobody and hears nothing
  });
});
