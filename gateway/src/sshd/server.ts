/**
 * `pierce up --ssh`: the node answers SSH on its tailnet port 22 itself (Tailscale SSH is the
 * model). Nobody types a password or holds a key: the client is the tailnet node its TCP
 * connection comes from, and the policy's `ssh` rules, compiled by control for this node
 * (MapResponse.ssh), say which local users it may log in as (`sshAccess`). The engine's packet
 * filter still decides first whether port 22 is reachable at all.
 *
 * Every decision and every session end is logged as one line and reported to control's audit
 * log: who (node, user, address), as which local user, which rule, when, and how it ended.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { AuditEvent, PeerInfo } from '../../../src/control/messages.ts';
import type { Engine } from '../../../src/engine/engine.ts';
import type { LogFn } from '../../../src/engine/types.ts';
import { sshAccess } from '../../../src/policy/index.ts';
import { serveSsh } from '../../../src/ssh/server.ts';
import type { TunnelNet } from '../proxy/tunnel-net.ts';
import { sshDuplex } from './duplex.ts';
import { runSession } from './process.ts';
import { canRunAs, lookupUser, type LocalUser } from './users.ts';

export interface SshdOptions {
  engine: Engine;
  net: TunnelNet;
  /** ed25519 host key seed (32 bytes), kept in the node's state directory. */
  hostKey: Uint8Array;
  port?: number;
  log: LogFn;
  audit?: (e: AuditEvent) => void;
}

export interface Sshd {
  close(): void;
  readonly sessions: number;
}

function peerByAddr(engine: Engine, addr: string): PeerInfo | undefined {
  for (const p of engine.control.view.peers.values()) if (p.addrs.some((a) => a.split('/')[0] === addr)) return p;
  return undefined;
}

export function startSshd(o: SshdOptions): Sshd {
  let live = 0;
  const conns = new Set<{ close(): void }>();
  const listener = o.net.listen(o.port ?? 22, (socket: Duplex, info) => {
    const id = 's-' + randomBytes(4).toString('hex');
    const src = info.remoteAddress;
    const peer = peerByAddr(o.engine, src);
    const who = peer ? `${peer.name}${peer.user ? ` (${peer.user})` : peer.tags.length ? ` (${peer.tags.join(',')})` : ''} at ${src}` : src;
    const event = (e: Omit<AuditEvent, 'kind' | 'at' | 'session' | 'srcAddr' | 'srcNode'>) => {
      const full: AuditEvent = { kind: 'ssh', at: Date.now(), session: id, srcAddr: src, ...(peer ? { srcNode: peer.name } : {}), ...e };
      o.audit?.(full);
    };
    let user: LocalUser | undefined;
    let acceptEnv: string[] = [];
    let decided: { user: string; ok: boolean } | undefined;
    const conn = serveSsh(sshDuplex(socket), {
      hostKey: o.hostKey,
      authorize: async ({ user: sshUser }) => {
        // One decision per login name; OpenSSH retries methods with the same name.
        if (decided && decided.user === sshUser && !decided.ok) return { ok: false, message: 'denied' };
        const a = sshAccess(o.engine.control.view.ssh, { srcAddr: src, sshUser, ...(peer?.user ? { srcUser: peer.user } : {}) });
        let reason = a.ok ? undefined : a.reason;
        if (a.ok) {
          user = await lookupUser(a.localUser);
          if (!user) reason = `there is no local user ${a.localUser} on this node`;
          else {
            const can = canRunAs(user);
            if (!can.ok) reason = can.reason;
            acceptEnv = a.acceptEnv;
          }
        }
        decided = { user: sshUser, ok: reason === undefined };
        if (reason !== undefined) {
          o.log('info', `ssh ${id}: refused ${who} as ${sshUser}: ${reason}`);
          event({ action: 'reject', sshUser, reason });
          return { ok: false, message: `pierce: ${reason}\r\n` };
        }
        o.log('info', `ssh ${id}: accepted ${who} as local user ${user!.name} (policy ssh[${a.ok ? a.rule : '?'}])`);
        event({ action: 'accept', sshUser, localUser: user!.name });
        return { ok: true };
      },
      onSession: (session) => {
        const u = user;
        if (!u) return session.close();
        live++;
        const t0 = Date.now();
        const sshEnv = { SSH_CONNECTION: `${src} ${info.remotePort} ${o.engine.status().self?.addrs[0]?.split('/')[0] ?? ''} ${o.port ?? 22}`, SSH_CLIENT: `${src} ${info.remotePort} ${o.port ?? 22}` };
        runSession(session, u, acceptEnv, sshEnv, (r) => {
          live--;
          const how = r.exitSignal !== undefined ? `signal ${r.exitSignal}` : `exit ${r.exitStatus}`;
          o.log('info', `ssh ${id}: session of ${who} as ${u.name} ended: ${how} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
          event({ action: 'end', sshUser: u.name, localUser: u.name, ...(r.exitStatus !== undefined ? { exitStatus: r.exitStatus } : { reason: `signal ${r.exitSignal}` }), durationMs: Date.now() - t0 });
        });
      },
    });
    conns.add(conn);
    void conn.closed.finally(() => conns.delete(conn));
  });
  return {
    close: () => {
      listener.close();
      for (const c of conns) c.close();
    },
    get sessions() {
      return live;
    },
  };
}
