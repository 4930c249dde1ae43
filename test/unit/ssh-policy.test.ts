/**
 * The policy's `ssh` section end to end without sockets: control's netmap compiles it for nodes
 * that run the built-in server (MapRequest.sshServer), keeps it current through joins, leaves
 * and policy changes, and the node's `sshAccess` decides each login from what it holds.
 */
import { describe, expect, it } from 'vitest';
import { Netmap } from '../../gateway/src/control/netmap.ts';
import { NetmapView } from '../../src/control/client.ts';
import type { MapResponse } from '../../src/control/messages.ts';
import { envAccepted, parsePolicy, sshAccess } from '../../src/policy/index.ts';
import { nodeRecord } from '../support/node-record.ts';

const USERS = ['alice@corp.com', 'bob@corp.com'];

const POLICY = {
  tagOwners: { 'tag:server': ['alice@corp.com'], 'tag:untrusted': ['alice@corp.com'] },
  acls: [{ action: 'accept', src: ['*'], dst: ['*:*'] }],
  ssh: [
    { action: 'accept', src: ['autogroup:member'], dst: ['tag:server'], users: ['autogroup:nonroot'] },
    { action: 'accept', src: ['alice@corp.com'], dst: ['tag:server'], users: ['root'] },
    { action: 'accept', src: ['tag:untrusted'], dst: ['tag:server'], users: ['guest'], acceptEnv: ['LC_*', 'LANG'] },
    { action: 'check', src: ['bob@corp.com'], dst: ['tag:server'], users: ['root'] },
  ],
};

function setup(policy: object) {
  const nm = new Netmap({ relays: { regions: [] } });
  nm.setPolicy(parsePolicy(JSON.stringify(policy)));
  const recs = [nodeRecord(1, 0, ['tag:server']), nodeRecord(2, 0, []), nodeRecord(3, 1, []), nodeRecord(4, 0, ['tag:untrusted'])];
  for (const r of recs) nm.upsert(r, USERS[r.userId]);
  const view = new NetmapView();
  let seq = 0;
  const sent: MapResponse[] = [];
  nm.attach(1, { send: (b) => { const m = JSON.parse(`{"t":"map","seq":${++seq},${b}}`) as MapResponse; sent.push(m); view.apply(m); } }, { discoKey: 'discokey:1', endpoints: [], homeRelay: 0, sshServer: true });
  return { nm, view, sent };
}

describe('ssh rules in the netmap', () => {
  it('sends a server node the rules that reach it, with source addresses as principals', () => {
    const { view } = setup(POLICY);
    expect(view.ssh.map((r) => r.rule)).toEqual([0, 1, 2, 3]);
    expect(view.ssh[0]!.principals).toEqual(['100.64.0.2', '100.64.0.3', 'fd7a:115c:a1e0::2', 'fd7a:115c:a1e0::3']);
    expect(view.ssh[1]!.principals).toEqual(['100.64.0.2', 'fd7a:115c:a1e0::2']);
    expect(view.ssh[2]).toMatchObject({ principals: ['100.64.0.4', 'fd7a:115c:a1e0::4'], users: ['guest'], acceptEnv: ['LC_*', 'LANG'] });
  });

  it('does not send rules to nodes that do not run the server', () => {
    const nm = new Netmap({ relays: { regions: [] } });
    nm.setPolicy(parsePolicy(JSON.stringify(POLICY)));
    nm.upsert(nodeRecord(1, 0, ['tag:server']), USERS[0]);
    const got: MapResponse[] = [];
    nm.attach(1, { send: (b) => got.push(JSON.parse(`{"t":"map","seq":1,${b}}`) as MapResponse) }, { discoKey: 'd', endpoints: [], homeRelay: 0 });
    expect(got[0]!.ssh).toBeUndefined();
  });

  it('follows joins, leaves and policy changes with deltas', () => {
    const { nm, view, sent } = setup(POLICY);
    nm.upsert(nodeRecord(5, 1, []), USERS[1]);
    nm.flush();
    expect(view.ssh[0]!.principals).toContain('100.64.0.5');
    nm.remove(2);
    nm.flush();
    expect(view.ssh[0]!.principals).not.toContain('100.64.0.2');
    expect(view.ssh.find((r) => r.rule === 1)).toBeUndefined(); // alice has no other untagged node
    const before = sent.length;
    nm.flush();
    expect(sent.length).toBe(before); // nothing changed, nothing sent
    nm.setPolicy(parsePolicy(JSON.stringify({ ...POLICY, ssh: [] })));
    nm.flush();
    expect(view.ssh).toEqual([]);
  });
});

describe('sshAccess', () => {
  const { view } = setup(POLICY);
  const rules = view.ssh;
  it('admits by source address and login', () => {
    expect(sshAccess(rules, { srcAddr: '100.64.0.3', sshUser: 'bob' })).toMatchObject({ ok: true, localUser: 'bob', rule: 0 });
    expect(sshAccess(rules, { srcAddr: '100.64.0.2', sshUser: 'root' })).toMatchObject({ ok: true, rule: 1 });
    expect(sshAccess(rules, { srcAddr: '100.64.0.4', sshUser: 'guest' })).toMatchObject({ ok: true, rule: 2, acceptEnv: ['LC_*', 'LANG'] });
  });
  it('refuses what no rule admits, with a reason', () => {
    expect(sshAccess(rules, { srcAddr: '100.64.0.4', sshUser: 'root' })).toMatchObject({ ok: false, code: 'SSH_POLICY_DENIED' });
    expect(sshAccess(rules, { srcAddr: '100.64.0.9', sshUser: 'bob' })).toMatchObject({ ok: false, code: 'SSH_POLICY_DENIED' });
    expect(sshAccess(rules, { srcAddr: '100.64.0.3', sshUser: 'root' })).toMatchObject({ ok: false, code: 'SSH_CHECK_UNSUPPORTED' });
    expect(sshAccess(rules, { srcAddr: '100.64.0.3', sshUser: '../etc' })).toMatchObject({ ok: false, code: 'SSH_USER_INVALID' });
    expect(sshAccess(rules, { srcAddr: '100.64.0.3', sshUser: '' })).toMatchObject({ ok: false, code: 'SSH_USER_INVALID' });
  });
  it('maps localpart:*@domain to the source user', () => {
    const r = [{ action: 'accept' as const, principals: ['100.64.0.2'], users: ['localpart:*@corp.com'], rule: 0 }];
    expect(sshAccess(r, { srcAddr: '100.64.0.2', sshUser: 'alice', srcUser: 'alice@corp.com' }).ok).toBe(true);
    expect(sshAccess(r, { srcAddr: '100.64.0.2', sshUser: 'bob', srcUser: 'alice@corp.com' }).ok).toBe(false);
    expect(sshAccess(r, { srcAddr: '100.64.0.2', sshUser: 'alice', srcUser: 'alice@other.com' }).ok).toBe(false);
  });
  it('matches acceptEnv patterns', () => {
    expect(envAccepted(['LC_*', 'LANG'], 'LC_ALL')).toBe(true);
    expect(envAccepted(['LC_*', 'LANG'], 'LANGUAGE')).toBe(false);
    expect(envAccepted(['LC_*'], 'LD_PRELOAD')).toBe(false);
  });
});
