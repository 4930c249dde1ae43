/**
 * Who may log in to a node's built-in SSH server, and as whom: the decision a node makes for
 * each SSH authentication attempt from the `ssh` rules control compiled for it
 * (MapResponse.ssh). Tailscale SSH is the model: the client is identified by the tailnet
 * address its connection comes from, never by keys or passwords.
 *
 * A rule admits a request when the source address is one of its principals and the requested
 * login is in its `users`:
 *   "root", "alice"         exactly that login
 *   "autogroup:nonroot"     any login but root
 *   "localpart:*@corp.com"  the login equal to the local part of the source user's name, when
 *                           that name ends in @corp.com (untagged sources only)
 * `check` rules (re-authentication in a browser) are not implemented: they never admit, and the
 * refusal says so.
 */
import type { SshPolicyRule } from '../control/messages.ts';

export interface SshAccessRequest {
  /** The tailnet address the TCP connection comes from. */
  srcAddr: string;
  /** The login the client asked for. */
  sshUser: string;
  /** The source node's user (untagged nodes only), e.g. "alice@corp.com". */
  srcUser?: string;
}

export type SshAccess =
  | { ok: true; localUser: string; rule: number; acceptEnv: string[] }
  | { ok: false; code: 'SSH_USER_INVALID' | 'SSH_POLICY_DENIED' | 'SSH_CHECK_UNSUPPORTED'; reason: string };

/** POSIX-portable login names (plus the common "." and a trailing "$"), at most 32 bytes. */
const LOGIN = /^[A-Za-z_][A-Za-z0-9_.-]{0,30}\$?$/;

export function isLoginName(s: string): boolean {
  return LOGIN.test(s);
}

function userAllowed(pattern: string, req: SshAccessRequest): boolean {
  if (pattern === 'autogroup:nonroot') return req.sshUser !== 'root';
  if (pattern.startsWith('localpart:*@')) {
    const domain = pattern.slice('localpart:*@'.length).toLowerCase();
    const u = req.srcUser?.toLowerCase();
    if (!u || !u.endsWith('@' + domain)) return false;
    return u.slice(0, -domain.length - 1) === req.sshUser.toLowerCase();
  }
  return pattern === req.sshUser;
}

export function sshAccess(rules: readonly SshPolicyRule[], req: SshAccessRequest): SshAccess {
  if (!isLoginName(req.sshUser)) return { ok: false, code: 'SSH_USER_INVALID', reason: `"${req.sshUser.slice(0, 40)}" is not a valid login name` };
  let checkOnly = false;
  for (const r of rules) {
    if (!r.principals.includes(req.srcAddr)) continue;
    if (!r.users.some((u) => userAllowed(u, req))) continue;
    if (r.action === 'check') {
      checkOnly = true;
      continue;
    }
    return { ok: true, localUser: req.sshUser, rule: r.rule, acceptEnv: r.acceptEnv ?? [] };
  }
  if (checkOnly) return { ok: false, code: 'SSH_CHECK_UNSUPPORTED', reason: `the policy allows ${req.sshUser} only in "check" mode, which Pierce does not support yet` };
  return { ok: false, code: 'SSH_POLICY_DENIED', reason: `the tailnet policy does not allow ${req.srcAddr} to log in as ${req.sshUser}` };
}

/** Whether an environment variable name matches one of `acceptEnv`'s patterns (* and ? wildcards). */
export function envAccepted(patterns: readonly string[], name: string): boolean {
  return patterns.some((p) => new RegExp('^' + p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$').test(name));
}
