/**
 * Pierce's SSH server (src/ssh/server.ts) against the real OpenSSH client (/usr/bin/ssh, Debian
 * package openssh-client), over TCP on 127.0.0.1:
 *
 *   /usr/bin/ssh ── TCP 127.0.0.1:PORT ── node:net server (this process) ── socketDuplex ── serveSsh
 *
 * The session handler is a fake with tiny built-in commands (echo, exit N, cat, sha, bytes N,
 * ptyinfo, waitwinch). Proves: exec with the command and exit status, stdin and EOF, a refused
 * user (exit 255, the banner and our message on stderr), a -tt PTY (TERM and size, under
 * script(1)) and a window-change, aes256-gcm@openssh.com, 8 MiB each way with RekeyLimit=1M and
 * with server-initiated re-keys, an OpenSSH ed25519 key through PK_OK + signature, a changed host
 * key caught by ssh. No root needed; never skipped: without /usr/bin/ssh every test fails saying
 * what to install.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  hostKeyPublicBlob,
  knownHostsLine,
  parsePublicKeyLine,
  serveSsh,
  type AuthRequest,
  type AuthVerdict,
  type ServerSession,
  type SshServerConnection,
} from '../../src/ssh/index.ts';
import { pattern, produce, producedSha256 } from '../support/ssh-helpers.ts';
import { socketDuplex } from '../support/ssh-socket.ts';

const SSH = '/usr/bin/ssh';
const HOST_SEED = new Uint8Array(32).fill(0x42);
const OTHER_SEED = new Uint8Array(32).fill(0x43);
const enc = new TextEncoder();

function requireSsh(): void {
  if (!existsSync(SSH)) throw new Error(`${SSH} is missing: install the Debian package openssh-client (apt-get install openssh-client)`);
}

/** The fake session handler: exec runs tiny built-ins; a shell (with or without PTY) says hello and exits 0. */
function fakeHandler(log: string[]) {
  return (s: ServerSession): void => {
    let pty = '';
    s.onPty((p) => {
      pty = `${p.term} ${p.cols}x${p.rows}`;
      log.push(`pty ${pty}`);
      return true;
    });
    s.onEnv((n, v) => (log.push(`env ${n}=${v}`), true));
    s.onWindowChange((c, r) => log.push(`winch ${c}x${r}`));
    s.onSignal((n) => log.push(`signal ${n}`));
    s.onEof(() => log.push('eof'));
    s.onShell(() => {
      queueMicrotask(() => {
        s.write(enc.encode(`hello from the shell of ${s.user}\r\n`));
        s.exit(0);
      });
      return true;
    });
    s.onExec((cmd) => {
      log.push(`exec ${cmd}`);
      const [name, ...rest] = cmd.split(' ');
      const arg = rest.join(' ');
      queueMicrotask(() => {
        switch (name) {
          case 'echo':
            s.write(enc.encode(arg + '\n'));
            return s.exit(0);
          case 'exit':
            return s.exit(Number(arg));
          case 'ptyinfo':
            s.write(enc.encode(`pty=${pty}\r\n`));
            return s.exit(0);
          case 'waitwinch':
            s.write(enc.encode('ready\r\n'));
            if (rest[0]) writeFileSync(rest[0], 'ready'); // tells the test's shell script to resize now
            s.onWindowChange((c, r) => {
              log.push(`winch ${c}x${r}`);
              s.write(enc.encode(`winch=${c}x${r}\r\n`));
              s.exit(0);
            });
            return;
          case 'cat': {
            s.onData((b) => s.write(b));
            s.onEof(() => {
              log.push('eof');
              s.exit(0);
            });
            return;
          }
          case 'sha': {
            const h = createHash('sha256');
            let n = 0;
            s.onData((b) => {
              h.update(b);
              n += b.length;
            });
            s.onEof(() => {
              s.write(enc.encode(`${n} ${h.digest('hex')}\n`));
              s.exit(0);
            });
            return;
          }
          case 'bytes':
            return produce(s, Number(arg), () => s.exit(0));
          default:
            s.writeStderr(enc.encode(`unknown command ${name}\n`));
            return s.exit(127);
        }
      });
      return true;
    });
  };
}

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

const children = new Set<ChildProcess>();

/** Runs a command with a hard time bound; the child is killed on timeout and in afterEach. */
function runCmd(file: string, args: string[], o: { input?: Uint8Array | string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: o.env ?? process.env });
    children.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    child.stdin!.on('error', () => {});
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${file} ${args.slice(-2).join(' ')}: timed out after ${o.timeoutMs ?? 20_000} ms; stderr: ${Buffer.concat(err).toString()}`));
    }, o.timeoutMs ?? 20_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() });
    });
    if (o.input !== undefined) child.stdin!.end(o.input);
    else child.stdin!.end();
  });
}

describe('SSH server vs OpenSSH ssh (client)', () => {
  let dir: string;
  let server: Server;
  let port = 0;
  let knownHosts: string;
  let wrongKnownHosts: string;
  let authorize: (r: AuthRequest) => AuthVerdict | Promise<AuthVerdict>;
  /** Per-test server settings, read when a connection arrives. */
  let serverRekeyBytes: number | undefined;
  let banner: string | undefined;
  const auths: AuthRequest[] = [];
  const log: string[] = [];
  const conns: SshServerConnection[] = [];

  beforeAll(async () => {
    requireSsh();
    dir = mkdtempSync(join(tmpdir(), 'pierce-sshd-'));
    server = createServer((sock) => {
      const conn = serveSsh(socketDuplex(sock), {
        hostKey: HOST_SEED,
        loginTimeoutMs: 15_000,
        rekeyAfterBytes: serverRekeyBytes,
        banner,
        authorize: (r) => {
          auths.push(r);
          return authorize(r);
        },
        onSession: fakeHandler(log),
      });
      conns.push(conn);
    });
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(0, '127.0.0.1', () => res());
    });
    port = (server.address() as { port: number }).port;
    knownHosts = join(dir, 'known_hosts');
    writeFileSync(knownHosts, knownHostsLine('127.0.0.1', port, hostKeyPublicBlob(HOST_SEED)) + '\n');
    wrongKnownHosts = join(dir, 'known_hosts_wrong');
    writeFileSync(wrongKnownHosts, knownHostsLine('127.0.0.1', port, hostKeyPublicBlob(OTHER_SEED)) + '\n');
  });

  afterEach(() => {
    for (const c of children) c.kill('SIGKILL');
    children.clear();
    auths.length = 0;
    log.length = 0;
    authorize = () => ({ ok: true });
    serverRekeyBytes = undefined;
    banner = undefined;
  });

  afterAll(async () => {
    for (const c of conns) c.close();
    await new Promise<void>((res) => (server ? server.close(() => res()) : res()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  authorize = () => ({ ok: true });

  function sshArgs(user: string, extra: string[] = [], kh = knownHosts): string[] {
    return [
      '-F', '/dev/null',
      '-o', `UserKnownHostsFile=${kh}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'BatchMode=yes',
      '-o', 'PreferredAuthentications=none,publickey',
      '-o', 'IdentitiesOnly=yes',
      '-o', `IdentityFile=${join(dir, 'no-such-key')}`,
      '-o', 'IdentityAgent=none',
      '-o', 'ConnectTimeout=10',
      ...extra,
      '-p', String(port),
      `${user}@127.0.0.1`,
    ];
  }

  const ssh = (user: string, command: string | undefined, o: { extra?: string[]; input?: Uint8Array | string; kh?: string; timeoutMs?: number } = {}): Promise<Ran> =>
    runCmd(SSH, [...sshArgs(user, o.extra, o.kh), ...(command !== undefined ? [command] : [])], { input: o.input, timeoutMs: o.timeoutMs });

  it('exec: the command arrives, output comes back, the exit status is ssh’s (0, then 7)', async () => {
    const a = await ssh('alice', 'echo hello world');
    expect(a.stderr).toBe('');
    expect(a.stdout.toString()).toBe('hello world\n');
    expect(a.code).toBe(0);
    expect(auths).toEqual([{ user: 'alice', method: 'none' }]);
    const b = await ssh('alice', 'exit 7');
    expect(b.code).toBe(7);
    expect(log).toContain('exec exit 7');
    const c = await ssh('alice', 'nope');
    expect(c.code).toBe(127);
    expect(c.stderr).toContain('unknown command nope');
    const conn = conns.at(-1)!;
    expect(conn.clientVersion).toMatch(/^SSH-2\.0-OpenSSH_/);
    expect(conn.transport.strictKex).toBe(true);
    expect(conn.transport.algorithms!.encC2S).toBe('chacha20-poly1305@openssh.com');
  });

  it('stdin is piped through and EOF is delivered (cat, and a 1 MiB hash)', async () => {
    const a = await ssh('alice', 'cat', { input: 'line one\nline two\n' });
    expect(a.stdout.toString()).toBe('line one\nline two\n');
    expect(a.code).toBe(0);
    expect(log).toContain('eof');
    const big = pattern(5, 1 << 20);
    const b = await ssh('alice', 'sha', { input: big });
    expect(b.stdout.toString()).toBe(`${big.length} ${createHash('sha256').update(big).digest('hex')}\n`);
    expect(b.code).toBe(0);
  });

  it('a refused user: ssh exits 255 and prints our message (after the banner)', async () => {
    banner = 'Pierce test node\n';
    authorize = (r) => (r.user === 'mallory' ? { ok: false, message: 'pierce: mallory may not log in to this node' } : { ok: true });
    const r = await ssh('mallory', 'echo should not run');
    expect(r.code).toBe(255);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toContain('pierce: mallory may not log in to this node');
    expect(r.stderr).toContain('Permission denied (publickey)');
    expect(r.stderr.indexOf('Pierce test node')).toBeGreaterThanOrEqual(0);
    expect(r.stderr.indexOf('Pierce test node')).toBeLessThan(r.stderr.indexOf('pierce: mallory'));
    expect(auths.map((a) => `${a.user}/${a.method}`)).toEqual(['mallory/none']);
    expect(log).not.toContain('exec echo should not run');
  });

  it('-tt: pty-req carries TERM and the terminal size (ssh under script(1) on a 111x33 pty)', async () => {
    const cmd = ['stty', 'cols', '111', 'rows', '33;', 'exec', SSH, '-tt', ...sshArgs('alice'), 'ptyinfo'].map((a) => (a.endsWith(';') ? a : `'${a}'`)).join(' ');
    const r = await runCmd('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, TERM: 'xterm-pierce' }, timeoutMs: 20_000 });
    expect(r.stdout.toString()).toContain('pty=xterm-pierce 111x33');
    expect(r.code).toBe(0);
    expect(log).toContain('pty xterm-pierce 111x33');
    // Without a terminal on stdin, -tt still asks for a PTY (size 0x0: ssh has none to copy).
    const plain = await runCmd(SSH, ['-tt', ...sshArgs('alice'), 'ptyinfo'], { env: { ...process.env, TERM: 'vt220' } });
    expect(plain.stdout.toString()).toContain('pty=vt220 ');
    expect(plain.code).toBe(0);
  });

  it('window-change: ssh sends the new size after SIGWINCH', async () => {
    const q = (a: string) => `'${a}'`;
    const ready = join(dir, 'winch-ready');
    const sshCmd = [SSH, '-tt', ...sshArgs('alice'), `waitwinch ${ready}`].map(q).join(' ');
    // No job control in sh -c: the background ssh shares the tty's (foreground) process group, so
    // the kernel's SIGWINCH on `stty cols` reaches it, and no SIGTTOU; stdin is the tty explicitly.
    const script = `stty cols 100 rows 30; ${sshCmd} < /dev/tty & while [ ! -e ${ready} ]; do sleep 0.05; done; stty cols 90; wait $!`;
    const r = await runCmd('script', ['-qec', `sh -c ${q(script.replace(/'/g, `'\\''`))}`, '/dev/null'], { env: { ...process.env, TERM: 'xterm' }, timeoutMs: 20_000 });
    expect(r.stdout.toString()).toContain('winch=90x30');
    expect(log).toContain('pty xterm 100x30');
    expect(log).toContain('winch 90x30');
    expect(r.code).toBe(0);
  });

  it('a shell without a command', async () => {
    const r = await ssh('bob', undefined, { extra: ['-T'] });
    expect(r.stdout.toString()).toBe('hello from the shell of bob\r\n');
    expect(r.code).toBe(0);
  });

  it('-o Ciphers=aes256-gcm@openssh.com works too', async () => {
    const r = await ssh('alice', 'sha', { extra: ['-o', 'Ciphers=aes256-gcm@openssh.com'], input: pattern(1, 300_000) });
    expect(r.stdout.toString()).toBe(`300000 ${createHash('sha256').update(pattern(1, 300_000)).digest('hex')}\n`);
    expect(r.code).toBe(0);
    const conn = conns.at(-1)!;
    expect(conn.transport.algorithms!.encC2S).toBe('aes256-gcm@openssh.com');
    expect(conn.transport.algorithms!.encS2C).toBe('aes256-gcm@openssh.com');
  });

  it('-o RekeyLimit=1M: 8 MiB of output through client-initiated re-keys, both ciphers', async () => {
    for (const cipher of ['chacha20-poly1305@openssh.com', 'aes256-gcm@openssh.com']) {
      const total = 8 << 20;
      const r = await ssh('alice', `bytes ${total}`, { extra: ['-o', 'RekeyLimit=1M', '-o', `Ciphers=${cipher}`], timeoutMs: 60_000 });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.length).toBe(total);
      expect(createHash('sha256').update(r.stdout).digest('hex')).toBe(producedSha256(total));
      const conn = conns.at(-1)!;
      expect(conn.transport.keyExchanges).toBeGreaterThanOrEqual(4); // OpenSSH re-keys once per ~1-2 MiB read
    }
  }, 120_000);

  it('8 MiB of stdin with RekeyLimit=1M, and 8 MiB of output through server-initiated re-keys', async () => {
    const big = pattern(9, 8 << 20);
    const up = await ssh('alice', 'sha', { extra: ['-o', 'RekeyLimit=1M'], input: big, timeoutMs: 60_000 });
    expect(up.stdout.toString()).toBe(`${big.length} ${createHash('sha256').update(big).digest('hex')}\n`);
    expect(up.code).toBe(0);
    expect(conns.at(-1)!.transport.keyExchanges).toBeGreaterThanOrEqual(4);
    serverRekeyBytes = 1 << 20;
    const total = 8 << 20;
    const down = await ssh('alice', `bytes ${total}`, { timeoutMs: 60_000 });
    expect(down.code).toBe(0);
    expect(down.stdout.length).toBe(total);
    expect(createHash('sha256').update(down.stdout).digest('hex')).toBe(producedSha256(total));
    expect(conns.at(-1)!.transport.keyExchanges).toBeGreaterThanOrEqual(4);
  }, 120_000);

  it('publickey with an OpenSSH ed25519 key: PK_OK, then a signed request the server verifies', async () => {
    const key = join(dir, 'id_ed25519');
    const kg = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'pierce-test', '-f', key], { timeout: 10_000 });
    expect(kg.status).toBe(0);
    const blob = parsePublicKeyLine(readFileSync(`${key}.pub`, 'utf8')).blob;
    authorize = (r) => (r.method === 'publickey' && Buffer.from(r.publicKey!).equals(Buffer.from(blob)) ? { ok: true } : { ok: false });
    const args = sshArgs('carol').map((a) => (a.startsWith('IdentityFile=') ? `IdentityFile=${key}` : a));
    const r = await runCmd(SSH, [...args, 'echo key ok']);
    expect(r.stdout.toString()).toBe('key ok\n');
    expect(r.code).toBe(0);
    // none (refused), the query (accepted → PK_OK), the signed request (verified, accepted).
    expect(auths.map((a) => a.method)).toEqual(['none', 'publickey', 'publickey']);
    expect(conns.at(-1)!.method).toBe('publickey');
  });

  it('a host key that does not match known_hosts: ssh refuses (exit 255) before authenticating', async () => {
    const r = await ssh('alice', 'echo should not run', { kh: wrongKnownHosts });
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    expect(auths).toEqual([]);
    const conn = conns.at(-1)!;
    const why = await conn.closed;
    expect(['SSH_CLOSED', 'SSH_DISCONNECTED']).toContain(why.code);
  });
});
