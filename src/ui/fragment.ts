/**
 * Options from the page URL. The fragment (#…) never reaches a server, so secrets for the
 * automatic flows go there:
 *   ?control=URL                      the control server (default: this page's origin)
 *   #authkey=KEY                      join at once with this auth key
 *   &ephemeral=1                      … as an ephemeral node (nothing stored)
 *   &hostname=NAME                    … with this name
 *   &leases=0                         … without UDP leases (relay only)
 *   &ssh=USER@PEER[:PORT]             open a terminal to PEER once it is in the netmap
 *   &ssh=PEER[:PORT]                  … as the `user` below, or open the SSH form for PEER
 *   &user=NAME                        peers get a one-click "SSH as NAME" button (for hosts
 *                                     with the built-in SSH server, where the tailnet identity
 *                                     is the login; `npm start`'s demo link sets it)
 *   &password=PW                      … logging in with this password (tests and demos only!)
 *   &auth=publickey|keyboard-interactive|password   … with this method (default: password when
 *                                     one is given, else the browser key)
 * `authkey` and `password` are removed from the address bar once read.
 */
import type { SshAuth } from '../../worker/api.ts';

export interface AutoSsh {
  user: string;
  host: string;
  port: number;
  auth: SshAuth;
}

export interface PageOptions {
  control: string;
  authKey?: string;
  ephemeral: boolean;
  hostname?: string;
  leases: boolean;
  ssh?: AutoSsh;
  /** A host to open the SSH form for (`#ssh=PEER` without a user and no `user`). */
  sshFormFor?: string;
  /** The login of the one-click SSH button. */
  quickUser?: string;
}

export function parseSshTarget(s: string): { user: string; host: string; port: number } | undefined {
  const m = /^([^@\s]+)@(\[[^\]]+\]|[^:\s]+)(?::(\d{1,5}))?$/.exec(s.trim());
  if (!m) return undefined;
  return { user: m[1]!, host: m[2]!.replace(/^\[|\]$/g, ''), port: m[3] ? Number(m[3]) : 22 };
}

export function readPageOptions(loc: Location = location): PageOptions {
  const q = new URLSearchParams(loc.search);
  const f = new URLSearchParams(loc.hash.replace(/^#/, ''));
  const control = f.get('control') || q.get('control') || loc.origin;
  const o: PageOptions = {
    control,
    ephemeral: ['1', 'true', 'yes'].includes(f.get('ephemeral') ?? ''),
    leases: !['0', 'false', 'no'].includes(f.get('leases') ?? q.get('leases') ?? ''),
  };
  const authKey = f.get('authkey');
  if (authKey) o.authKey = authKey;
  const hostname = f.get('hostname');
  if (hostname) o.hostname = hostname;
  const quickUser = f.get('user')?.trim();
  if (quickUser && /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/.test(quickUser)) o.quickUser = quickUser;
  const sshText = f.get('ssh')?.trim() ?? '';
  let target = sshText ? parseSshTarget(sshText) : undefined;
  if (!target && sshText && !sshText.includes('@')) {
    const bareTarget = parseSshTarget(`${o.quickUser ?? '_'}@${sshText}`);
    if (bareTarget && o.quickUser) target = bareTarget;
    else if (bareTarget) o.sshFormFor = bareTarget.host;
  }
  if (target) {
    const password = f.get('password');
    const method = f.get('auth');
    let auth: SshAuth;
    if (method === 'keyboard-interactive') auth = { kind: 'keyboard-interactive', ...(password !== null ? { responses: [password] } : {}) };
    else if (method === 'publickey' || (method !== 'password' && password === null)) auth = { kind: 'publickey' };
    else auth = { kind: 'password', password: password ?? '' };
    o.ssh = { ...target, auth };
  }
  if (f.has('authkey') || f.has('password')) {
    f.delete('authkey');
    f.delete('password');
    const rest = f.toString();
    history.replaceState(null, '', loc.pathname + loc.search + (rest ? `#${rest}` : ''));
  }
  return o;
}
