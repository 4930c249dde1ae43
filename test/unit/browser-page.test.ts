/**
 * Pure pieces of the page and the worker: the URL options (query and fragment) and the mapping
 * of socket and SSH errors to the codes and sentences the page shows (docs/browser.md).
 */
import { describe, expect, it, vi } from 'vitest';
import { parseSshTarget, readPageOptions } from '../../src/ui/fragment.ts';
import { socketError, sshError } from '../../worker/errors.ts';
import { SocketError } from '../../src/netstack/errors.ts';
import { SshError } from '../../src/ssh/errors.ts';

function loc(href: string): Location {
  const u = new URL(href);
  return { search: u.search, hash: u.hash, origin: u.origin, pathname: u.pathname } as Location;
}

describe('page URL options', () => {
  it('parses USER@PEER[:PORT]', () => {
    expect(parseSshTarget('root@host')).toEqual({ user: 'root', host: 'host', port: 22 });
    expect(parseSshTarget('me@100.64.0.1:2222')).toEqual({ user: 'me', host: '100.64.0.1', port: 2222 });
    expect(parseSshTarget('me@[fd7a:115c:a1e0::1]:22')).toEqual({ user: 'me', host: 'fd7a:115c:a1e0::1', port: 22 });
    expect(parseSshTarget('host')).toBeUndefined();
  });

  it('reads control from the query, the rest from the fragment, and strips secrets from the address bar', () => {
    const replace = vi.fn();
    vi.stubGlobal('history', { replaceState: replace });
    try {
      const o = readPageOptions(loc('https://page.example/app/?control=https%3A%2F%2Fc.example#authkey=pak_1&ephemeral=1&ssh=root@db1:2222&password=pw&leases=0'));
      expect(o).toEqual({
        control: 'https://c.example',
        authKey: 'pak_1',
        ephemeral: true,
        leases: false,
        ssh: { user: 'root', host: 'db1', port: 2222, auth: { kind: 'password', password: 'pw' } },
      });
      expect(replace).toHaveBeenCalledWith(null, '', '/app/?control=https%3A%2F%2Fc.example#ephemeral=1&ssh=root%40db1%3A2222&leases=0');
      expect(readPageOptions(loc('https://page.example/#ssh=me@h'))).toMatchObject({ control: 'https://page.example', ephemeral: false, leases: true, ssh: { auth: { kind: 'publickey' } } });
      expect(readPageOptions(loc('https://p.example/#ssh=me@h&auth=keyboard-interactive&password=x')).ssh!.auth).toEqual({ kind: 'keyboard-interactive', responses: ['x'] });
    } finally {
      vi.unstubAllGlobals();
    }
  });
});

describe('errors as the page shows them', () => {
  it('socket errors: refused, policy (ICMP administratively prohibited), timeout', () => {
    expect(socketError(new SocketError('ECONNREFUSED', 'connection refused'), 'db1', 22)).toEqual({ code: 'CONNECTION_REFUSED', message: 'db1 refused the connection on port 22: nothing listens there' });
    expect(socketError(new SocketError('EHOSTUNREACH', 'ICMP destination unreachable (administratively prohibited) from 100.64.0.1'), 'db1', 23)).toEqual({
      code: 'POLICY_DENIED',
      message: 'the policy does not allow you to reach db1 port 23',
    });
    expect(socketError(new SocketError('EACCES', 'x'), 'db1', 22).code).toBe('POLICY_DENIED');
    expect(socketError(new SocketError('ETIMEDOUT', 'x'), 'db1', 22).code).toBe('CONNECT_TIMEOUT');
  });

  it('SSH errors: auth, closed by a socket error, others keep their code', () => {
    const ctx = { user: 'root', host: 'db1', port: 22 };
    expect(sshError(new SshError('SSH_AUTH_FAILED', 'no'), ctx).code).toBe('AUTH_FAILED');
    expect(sshError(new SshError('SSH_CLOSED', 'closed'), { ...ctx, transportError: new SocketError('ECONNRESET', 'reset') }).code).toBe('CONNECTION_LOST');
    expect(sshError(new SshError('SSH_KEX', 'no common cipher'), ctx)).toEqual({ code: 'SSH_ERROR', message: 'root@db1: SSH_KEX: no common cipher' });
  });
});
