/**
 * Local accounts for the built-in SSH server: `getent passwd NAME` (so NSS sources such as LDAP
 * count, not only /etc/passwd), and how to start a process as that account. As root, processes
 * start through util-linux's `setpriv --reuid --regid --init-groups`, which also sets the
 * account's supplementary groups (Node's spawn can set uid and gid but not groups). As any
 * other user, only that user's own account can be used.
 */
import { execFile } from 'node:child_process';
import { userInfo } from 'node:os';

export interface LocalUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export function lookupUser(name: string): Promise<LocalUser | undefined> {
  return new Promise((resolve) => {
    execFile('getent', ['passwd', name], { timeout: 3000 }, (err, stdout) => {
      if (err) return resolve(undefined);
      const f = stdout.trim().split('\n')[0]?.split(':');
      if (!f || f.length < 7 || f[0] !== name) return resolve(undefined);
      const uid = Number(f[2]);
      const gid = Number(f[3]);
      if (!Number.isInteger(uid) || !Number.isInteger(gid)) return resolve(undefined);
      resolve({ name, uid, gid, home: f[5] || '/', shell: f[6] || '/bin/sh' });
    });
  });
}

/** Whether this process may start sessions as `u`. */
export function canRunAs(u: LocalUser): { ok: true } | { ok: false; reason: string } {
  const me = userInfo();
  if (me.uid === 0 || me.uid === u.uid) return { ok: true };
  return { ok: false, reason: `this node runs as ${me.username}, so it can only start sessions as ${me.username}, not ${u.name}` };
}

/** argv that runs `file args…` as `u`: wrapped in setpriv when we are root and `u` is not. */
export function asUser(u: LocalUser, file: string, args: string[]): { file: string; args: string[] } {
  if (userInfo().uid !== 0 || u.uid === 0) return { file, args };
  return { file: '/usr/bin/setpriv', args: [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--init-groups', '--', file, ...args] };
}

/** The environment a session starts with (before the client's accepted variables). */
export function baseEnv(u: LocalUser, extra: Record<string, string>): Record<string, string> {
  return {
    HOME: u.home,
    USER: u.name,
    LOGNAME: u.name,
    SHELL: u.shell,
    PATH: u.uid === 0 ? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' : '/usr/local/bin:/usr/bin:/bin:/usr/games',
    ...extra,
  };
}
