/**
 * Pierce's SSH client (src/ssh/) against Debian's OpenSSH sshd.
 *
 *   test process ── stdio ── `ip netns exec A node -e <relay>` ── TCP 127.0.0.1:PORT ── sshd (A)
 *
 * The client runs here, in the test process; its byte duplex is a child's stdin/stdout, and the
 * child (a few lines of node) connects to sshd on A's loopback. Two sshd configs: the lab's
 * stock one (OpenSSH default algorithms), and a hardened one with only curve25519-sha256,
 * ssh-ed25519 and chacha20-poly1305@openssh.com. Then password and keyboard-interactive logins
 * of a local user made for the run (sshd with UsePAM yes), and KnownHosts (trust on first use)
 * against an sshd whose host key changes. Never skipped: without root every test fails saying
 * what to install.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  KnownHosts,
  SshClient,
  SshEd25519Key,
  SshError,
  fingerprintSha256,
  memoryStore,
  parsePublicKeyLine,
  type ConnectOptions,
  type Prompt,
  type SshDuplex,
} from '../../src/ssh/index.ts';
import {
  cleanupAll,
  createNamespacePair,
  createUser,
  labProblems,
  makeSshKeys,
  requireLab,
  run,
  startSshd,
  tempPath,
  type NamespacePair,
  type Sshd,
  type SshKeys,
} from './lab.ts';

const RELAY = `
const s = require('net').connect(+process.argv[1], '127.0.0.1');
process.stdin.on('data', (d) => s.write(d));
process.stdin.on('end', () => s.end());
s.on('data', (d) => process.stdout.write(d));
s.on('error', (e) => { process.stderr.write(e.message + '\\n'); process.exit(1); });
s.on('close', () => process.exit(0));
`;

const relays = new Set<ChildProcessWithoutNullStreams>();

/** A byte duplex to 127.0.0.1:port inside `ns`, through a relay child's stdio. */
function nsDuplex(ns: string, port: number): SshDuplex {
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', RELAY, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
  relays.add(proc);
  proc.stdin.on('error', () => {});
  let closed = false;
  const closeCbs: Array<(err?: unknown) => void> = [];
  proc.on('exit', () => {
    relays.delete(proc);
    if (closed) return;
    closed = true;
    for (const cb of closeCbs) cb();
  });
  return {
    write: (b) => void proc.stdin.write(b),
    onData: (cb) => proc.stdout.on('data', (d: Buffer) => cb(new Uint8Array(d.buffer, d.byteOffset, d.length))),
    onClose: (cb) => void closeCbs.push(cb),
    close: () => {
      proc.stdin.end();
      setTimeout(() => proc.kill('SIGKILL'), 2000).unref();
    },
  };
}

// RekeyLimit makes sshd re-key every 4 MiB, so the 10 MiB transfer runs through server-initiated re-keys.
const HARDENED = ['KexAlgorithms curve25519-sha256', 'HostKeyAlgorithms ssh-ed25519', 'Ciphers chacha20-poly1305@openssh.com', 'RekeyLimit 4M'];

const dec = new TextDecoder();

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout>;
  return Promise.race([p, new Promise<T>((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: timed out after ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(t),
  );
}

describe.each([
  ['stock sshd config', [] as string[]],
  ['hardened sshd config (curve25519-sha256, ssh-ed25519, chacha20-poly1305 only)', HARDENED],
  ['sshd with only aes256-gcm@openssh.com', ['Ciphers aes256-gcm@openssh.com', 'RekeyLimit 4M']],
])('SSH client vs OpenSSH sshd: %s', (_label, extra) => {
  let pair: NamespacePair;
  let ns: string;
  let keys: SshKeys;
  let sshd: Sshd;
  let hostFingerprint: string;
  const user = SshEd25519Key.generate();
  let port = 0;

  beforeAll(async () => {
    if (labProblems().length > 0) return;
    pair = await createNamespacePair();
    ns = pair.a.name;
    const made = await makeSshKeys();
    // The client-generated key, installed for root.
    const authorizedKeys = tempPath('authorized_keys');
    writeFileSync(authorizedKeys, `${user.authorizedKeysLine('pierce-test')}\n`, { mode: 0o600 });
    keys = { ...made, authorizedKeys };
    port = 2222 + (extra.length > 0 ? 1 : 0) + (extra.some((l) => l.includes('aes256')) ? 1 : 0);
    sshd = await startSshd({
      ns,
      address: '127.0.0.1',
      port,
      keys,
      // Password is offered (a Match block overrides the lab's global "no") so that a wrong
      // password is parsed and refused by sshd; root has no usable password, so it cannot succeed.
      extraConfig: [...extra, 'Match User root', '  PasswordAuthentication yes', '  PermitRootLogin yes'],
    });
    hostFingerprint = fingerprintSha256(parsePublicKeyLine(readFileSync(`${keys.hostKey}.pub`, 'utf8')).blob);
    // Independent check of the fingerprint helper against ssh-keygen.
    const kg = await run('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${keys.hostKey}.pub`]);
    expect(kg.stdout).toContain(hostFingerprint);
  }, 60_000);
  beforeEach(requireLab);
  afterEach(async () => {
    // Only the relays: sshd (a lab child) serves the whole describe block.
    for (const p of relays) p.kill('SIGKILL');
  });
  afterAll(async () => {
    if (sshd) await sshd.stop();
    await cleanupAll();
  }, 60_000);

  function options(o: Partial<ConnectOptions> = {}): ConnectOptions {
    return {
      username: 'root',
      privateKey: user,
      verifyHostKey: (_blob, fp) => fp === hostFingerprint,
      timeoutMs: 15_000,
      requestTimeoutMs: 15_000,
      ...o,
    };
  }

  async function connect(o: Partial<ConnectOptions> = {}): Promise<SshClient> {
    return SshClient.connect(nsDuplex(ns, port), options(o));
  }

  it('publickey auth with a client-generated ed25519 key; exec gives stdout, stderr and exit status 3', async () => {
    const ssh = await connect();
    try {
      expect(ssh.method).toBe('publickey');
      expect(ssh.serverVersion).toMatch(/^SSH-2\.0-OpenSSH/);
      expect(ssh.transport.algorithms?.kex).toMatch(/^curve25519-sha256/);
      // Debian's OpenSSH 9.2 carries the Terrapin fix (strict KEX).
      expect(ssh.transport.strictKex).toBe(true);
      const cipher = extra.includes('Ciphers aes256-gcm@openssh.com') ? 'aes256-gcm@openssh.com' : 'chacha20-poly1305@openssh.com';
      expect(ssh.transport.algorithms?.encC2S).toBe(cipher);
      expect(ssh.transport.algorithms?.encS2C).toBe(cipher);
      const res = await withTimeout(ssh.run('echo hi; echo err >&2; exit 3'), 15_000, 'exec');
      expect(dec.decode(res.stdout)).toBe('hi\n');
      expect(dec.decode(res.stderr)).toBe('err\n');
      expect(res.exitStatus).toBe(3);
      // A second channel on the same connection.
      const again = await withTimeout(ssh.run('printf %s "$SSH_CONNECTION" | wc -w'), 15_000, 'exec 2');
      expect(dec.decode(again.stdout).trim()).toBe('4');
      // sshd logged our key by its fingerprint.
      expect(sshd.acceptedLogins().join('\n'), sshd.log()).toContain(user.fingerprint());
    } finally {
      ssh.close();
    }
  }, 40_000);

  it('PTY shell: a typed command comes back; window-change is applied', async () => {
    const ssh = await connect();
    try {
      const sh = await ssh.shell({ term: 'xterm', cols: 80, rows: 24 });
      let out = '';
      sh.onData((b) => (out += dec.decode(b)));
      const waitOut = (re: RegExp, what: string): Promise<void> =>
        withTimeout(
          new Promise<void>((res) => {
            const t = setInterval(() => {
              if (re.test(out)) {
                clearInterval(t);
                res();
              }
            }, 20);
          }),
          10_000,
          `${what}; output so far: ${JSON.stringify(out.slice(-500))}`,
        );
      sh.write('echo pierce-$((6*7))\n');
      await waitOut(/pierce-42/, 'echo');
      sh.resize(132, 50);
      sh.write('stty size\n');
      await waitOut(/50 132/, 'stty size after window-change');
      sh.write('exit 0\n');
      const exit = await withTimeout(sh.closed, 10_000, 'shell exit');
      expect(exit.exitStatus).toBe(0);
    } finally {
      ssh.close();
    }
  }, 40_000);

  it('10 MiB from `head -c 10M /dev/zero` arrive counted exactly (window flow control)', async () => {
    const ssh = await connect();
    try {
      const ch = await ssh.exec('head -c 10M /dev/zero');
      let n = 0;
      let nonZero = 0;
      ch.onData((b) => {
        n += b.length;
        for (const x of b) nonZero |= x;
      });
      const t0 = Date.now();
      const exit = await withTimeout(ch.closed, 60_000, `10 MiB (got ${n})`);
      console.log(`[ssh] 10 MiB received in ${Date.now() - t0} ms`);
      expect(exit.exitStatus).toBe(0);
      expect(n).toBe(10 * 1024 * 1024);
      expect(nonZero).toBe(0);
      // With RekeyLimit 4M sshd re-keyed at least twice on the way.
      if (extra.includes('RekeyLimit 4M')) expect(ssh.transport.keyExchanges).toBeGreaterThanOrEqual(3);
      else expect(ssh.transport.keyExchanges).toBe(1);
      // And 1 MiB upstream, through the server's window.
      const up = new Uint8Array(1 << 20).fill(7);
      const res = await withTimeout(ssh.run('wc -c', { stdin: up }), 30_000, 'upload');
      expect(dec.decode(res.stdout).trim()).toBe(String(1 << 20));
    } finally {
      ssh.close();
    }
  }, 90_000);

  it('a changed host key (another sshd, new key) is refused by the pinning callback with SSH_HOSTKEY_REJECTED', async () => {
    const other = await makeSshKeys();
    const port2 = port + 100;
    const sshd2 = await startSshd({ ns, address: '127.0.0.1', port: port2, keys: { ...other, authorizedKeys: keys.authorizedKeys }, extraConfig: extra });
    try {
      let seen = '';
      const err = await SshClient.connect(
        nsDuplex(ns, port2),
        options({
          verifyHostKey: (_b, fp) => {
            seen = fp;
            return fp === hostFingerprint; // pinned: the first server's key
          },
        }),
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SshError);
      expect((err as SshError).code, String(err)).toBe('SSH_HOSTKEY_REJECTED');
      expect(seen).toBe(fingerprintSha256(parsePublicKeyLine(readFileSync(`${other.hostKey}.pub`, 'utf8')).blob));
      expect(seen).not.toBe(hostFingerprint);
      expect(sshd2.acceptedLogins()).toHaveLength(0);
    } finally {
      await sshd2.stop();
    }
  }, 30_000);

  it('a key not in authorized_keys, and a wrong password, fail with SSH_AUTH_FAILED', async () => {
    const err = await connect({ privateKey: SshEd25519Key.generate() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SshError);
    expect((err as SshError).code, String(err)).toBe('SSH_AUTH_FAILED');
    const err2 = await connect({ privateKey: undefined, password: 'not-the-password' }).catch((e: unknown) => e);
    expect((err2 as SshError).code, String(err2)).toBe('SSH_AUTH_FAILED');
    expect(String((err2 as Error).message)).toContain('password');
  }, 30_000);
});

describe('SSH client vs OpenSSH sshd: password and keyboard-interactive through PAM; known hosts', () => {
  let ns: string;
  let keys: SshKeys;
  let sshd: Sshd;
  let username = '';
  // No ':' (chpasswd) and nothing a shell would mangle; fresh per run.
  const password = `Pw-${randomBytes(12).toString('base64url')}`;
  const rootKey = SshEd25519Key.generate();
  const port = 2230;
  let hostFingerprint = '';

  beforeAll(async () => {
    if (labProblems().length > 0) return;
    const pair = await createNamespacePair();
    ns = pair.a.name;
    const made = await makeSshKeys();
    const authorizedKeys = tempPath('authorized_keys');
    writeFileSync(authorizedKeys, `${rootKey.authorizedKeysLine('pierce-test')}\n`, { mode: 0o600 });
    keys = { ...made, authorizedKeys };
    username = await createUser(password);
    sshd = await startSshd({
      ns,
      address: '127.0.0.1',
      port,
      keys,
      usePam: true,
      // The lab's globals say no to both (first value wins); the test user gets them back.
      extraConfig: [`Match User ${username}`, '  PasswordAuthentication yes', '  KbdInteractiveAuthentication yes'],
    });
    hostFingerprint = fingerprintSha256(parsePublicKeyLine(readFileSync(`${keys.hostKey}.pub`, 'utf8')).blob);
  }, 60_000);
  beforeEach(requireLab);
  afterEach(async () => {
    for (const p of relays) p.kill('SIGKILL');
  });
  afterAll(async () => {
    if (sshd) await sshd.stop();
    await cleanupAll(); // namespaces, temp files and the user
  }, 60_000);

  function options(o: Partial<ConnectOptions>): ConnectOptions {
    return { username, verifyHostKey: (_b, fp) => fp === hostFingerprint, timeoutMs: 20_000, requestTimeoutMs: 15_000, ...o };
  }

  it('password auth of a local user succeeds; the session runs as that user', async () => {
    const ssh = await SshClient.connect(nsDuplex(ns, port), options({ password }));
    try {
      expect(ssh.method).toBe('password');
      const res = await withTimeout(ssh.run('id -un; echo "$HOME"'), 15_000, 'exec');
      expect(dec.decode(res.stdout)).toBe(`${username}\n/home/${username}\n`);
      expect(res.exitStatus).toBe(0);
      expect(sshd.accepted().join('\n'), sshd.log()).toMatch(new RegExp(`Accepted password for ${username} `));
    } finally {
      ssh.close();
    }
  }, 40_000);

  it('keyboard-interactive auth (PAM asks for the password, the handler answers) succeeds', async () => {
    const rounds: Array<{ name: string; instruction: string; prompts: Prompt[] }> = [];
    const ssh = await SshClient.connect(
      nsDuplex(ns, port),
      options({
        onKeyboardInteractive: (name, instruction, prompts) => {
          rounds.push({ name, instruction, prompts });
          return prompts.map(() => password);
        },
      }),
    );
    try {
      expect(ssh.method).toBe('keyboard-interactive');
      // PAM's pam_unix: one round, one hidden "Password: " prompt.
      expect(rounds.length).toBeGreaterThanOrEqual(1);
      const prompts = rounds.flatMap((r) => r.prompts);
      expect(prompts.length).toBeGreaterThanOrEqual(1);
      expect(prompts[0]!.prompt).toMatch(/password/i);
      expect(prompts[0]!.echo).toBe(false);
      const res = await withTimeout(ssh.run('id -un'), 15_000, 'exec');
      expect(dec.decode(res.stdout)).toBe(`${username}\n`);
      expect(sshd.accepted().join('\n'), sshd.log()).toMatch(new RegExp(`Accepted keyboard-interactive/pam for ${username} `));
    } finally {
      ssh.close();
    }
  }, 40_000);

  it('a wrong password (password, then keyboard-interactive with it) and a wrong keyboard-interactive answer fail with SSH_AUTH_FAILED', async () => {
    const err = await SshClient.connect(nsDuplex(ns, port), options({ password: `${password}x` })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SshError);
    expect((err as SshError).code, String(err)).toBe('SSH_AUTH_FAILED');
    expect((err as Error).message).toContain('password, keyboard-interactive');
    let asked = 0;
    const err2 = await SshClient.connect(
      nsDuplex(ns, port),
      options({
        onKeyboardInteractive: (_n, _i, prompts) => {
          asked++;
          return prompts.map(() => 'not-the-password');
        },
      }),
    ).catch((e: unknown) => e);
    expect((err2 as SshError).code, String(err2)).toBe('SSH_AUTH_FAILED');
    expect(asked).toBeGreaterThanOrEqual(1);
    expect(sshd.accepted()).toHaveLength(2); // the two successful logins above only
    expect(sshd.log()).toMatch(new RegExp(`Failed password for ${username} `));
  }, 60_000);

  it('KnownHosts: first connect remembers the host key, the second matches, a restarted sshd with a new host key is refused with SSH_HOSTKEY_MISMATCH', async () => {
    const port2 = port + 1;
    const kh = new KnownHosts(memoryStore());
    const news: string[] = [];
    const connectRoot = (): Promise<SshClient> =>
      SshClient.connect(nsDuplex(ns, port2), {
        username: 'root',
        privateKey: rootKey,
        verifyHostKey: kh.verifier('127.0.0.1', port2, (fp) => news.push(fp)),
        timeoutMs: 20_000,
        requestTimeoutMs: 15_000,
      });
    const first = await makeSshKeys();
    let server: Sshd | undefined = await startSshd({ ns, address: '127.0.0.1', port: port2, keys: { ...first, authorizedKeys: keys.authorizedKeys } });
    try {
      const fp1 = fingerprintSha256(parsePublicKeyLine(readFileSync(`${first.hostKey}.pub`, 'utf8')).blob);
      const c1 = await connectRoot();
      expect(dec.decode((await withTimeout(c1.run('echo one'), 15_000, 'exec 1')).stdout)).toBe('one\n');
      c1.close();
      expect(news).toEqual([fp1]);
      expect(await kh.list()).toMatchObject([{ host: '127.0.0.1', port: port2, keyType: 'ssh-ed25519', fingerprint: fp1 }]);

      const c2 = await connectRoot();
      expect(dec.decode((await withTimeout(c2.run('echo two'), 15_000, 'exec 2')).stdout)).toBe('two\n');
      c2.close();
      expect(news).toEqual([fp1]); // a match is not new

      // Same address and port, a re-installed host: new host key.
      await server.stop();
      server = undefined;
      const second = await makeSshKeys();
      server = await startSshd({ ns, address: '127.0.0.1', port: port2, keys: { ...second, authorizedKeys: keys.authorizedKeys } });
      const fp2 = fingerprintSha256(parsePublicKeyLine(readFileSync(`${second.hostKey}.pub`, 'utf8')).blob);
      const err = await connectRoot().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SshError);
      expect((err as SshError).code, String(err)).toBe('SSH_HOSTKEY_MISMATCH');
      expect((err as Error).message).toContain('[127.0.0.1]:2231');
      expect((err as Error).message).toContain(fp1);
      expect((err as Error).message).toContain(fp2);
      expect(server.accepted(), server.log()).toHaveLength(0);
      expect((await kh.list())[0]?.fingerprint).toBe(fp1); // the record is unchanged

      // Forgetting the old key trusts the new one on first use again.
      await kh.forget('127.0.0.1', port2);
      const c3 = await connectRoot();
      c3.close();
      expect(news).toEqual([fp1, fp2]);
      expect(server.accepted()).toHaveLength(1);
    } finally {
      await server?.stop();
    }
  }, 60_000);
});
