/**
 * serveSsh (src/ssh/server.ts) against our own SshClient over an in-memory duplex pair: auth
 * (none accepted / refused with a banner message / publickey / attempt limit), exec with an exit
 * status, a shell with an echo handler, pty-req / window-change / env / signal delivery, 8 MiB
 * both ways under flow control, re-keys from either side, refused channel types and global
 * requests, a client that goes away mid-session; then fuzzed input: every failure a typed
 * SshError on that connection, nothing thrown out of the duplex callbacks. The real-peer test is
 * test/interop/ssh-server.test.ts (OpenSSH's ssh).
 */
import { sha256 } from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SshReader, SshWriter, utf8 } from '../../src/ssh/codec.ts';
import {
  SshClient,
  SshEd25519Key,
  SshError,
  SshTransport,
  fingerprintSha256,
  generateHostKeySeed,
  hostKeyPublicBlob,
  knownHostsLine,
  parsePublicKeyLine,
  publicKeyLine,
  serveSsh,
  type AuthRequest,
  type ConnectOptions,
  type ServerSession,
  type SshServerOptions,
} from '../../src/ssh/index.ts';
import { HIGH_WATER } from '../../src/ssh/server-session.ts';
import { duplexPair, rawEnd } from '../support/ssh-duplex-pair.ts';
import { codeOf, pattern, produce, producedSha256 } from '../support/ssh-helpers.ts';
import { waitUntil } from '../support/wait.ts';

const HOST_SEED = new Uint8Array(32).fill(7);
const HOST_BLOB = hostKeyPublicBlob(HOST_SEED);
const dec = new TextDecoder();
const TYPED = ['SSH_PROTOCOL', 'SSH_MAC', 'SSH_KEX', 'SSH_CLOSED', 'SSH_DISCONNECTED', 'SSH_AUTH_FAILED', 'SSH_TIMEOUT'];

function clientOpts(o: Partial<ConnectOptions> = {}): ConnectOptions {
  return { username: 'alice', verifyHostKey: (_b, fp) => fp === fingerprintSha256(HOST_BLOB), timeoutMs: 5000, requestTimeoutMs: 5000, ...o };
}

/** Tiny built-in commands: "echo X", "exit N", "cat", "bytes N" (N bytes of a pattern, obeying write()/onDrain), "stderr X". */
function builtinExec(s: ServerSession): void {
  s.onExec((cmd) => {
    const [name, ...rest] = cmd.split(' ');
    const arg = rest.join(' ');
    queueMicrotask(() => {
      if (name === 'echo') {
        s.write(utf8(arg + '\n'));
        s.exit(0);
      } else if (name === 'exit') {
        s.exit(Number(arg));
      } else if (name === 'stderr') {
        s.writeStderr(utf8(arg));
        s.exit(1);
      } else if (name === 'cat') {
        s.onData((b) => s.write(b));
        s.onEof(() => s.exit(0));
      } else if (name === 'sha') {
        const h = sha256.create();
        let n = 0;
        s.onData((b) => {
          h.update(b);
          n += b.length;
        });
        s.onEof(() => {
          s.write(utf8(`${n} ${Buffer.from(h.digest()).toString('hex')}`));
          s.exit(0);
        });
      } else if (name === 'bytes') {
        produce(s, Number(arg), () => s.exit(0));
      } else {
        s.writeStderr(utf8(`unknown command ${name}\n`));
        s.exit(127);
      }
    });
    return true;
  });
}

function setup(o: Partial<SshServerOptions> = {}, c: Partial<ConnectOptions> = {}) {
  const [cd, sd] = duplexPair();
  const auths: AuthRequest[] = [];
  const sessions: ServerSession[] = [];
  const server = serveSsh(sd, {
    hostKey: HOST_SEED,
    authorize: (req) => {
      auths.push(req);
      return { ok: true };
    },
    onSession: (s) => {
      sessions.push(s);
      builtinExec(s);
    },
    ...o,
  });
  const client = SshClient.connect(cd, clientOpts(c));
  return { server, client, auths, sessions, cd, sd };
}

describe('SSH server against our SSH client (in memory)', () => {
  it('host key helpers: seed, blob, fingerprint, public key and known_hosts lines', () => {
    const seed = generateHostKeySeed();
    expect(seed.length).toBe(32);
    const blob = hostKeyPublicBlob(seed);
    expect(blob).toEqual(SshEd25519Key.fromSeed(seed).publicBlob());
    const line = publicKeyLine(blob, 'host');
    expect(line).toMatch(/^ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI[A-Za-z0-9+/]+=* host$/);
    expect(parsePublicKeyLine(line).blob).toEqual(blob);
    expect(knownHostsLine('127.0.0.1', 2222, blob)).toBe(`[127.0.0.1]:2222 ${publicKeyLine(blob)}`);
    expect(knownHostsLine('h', 22, blob)).toBe(`h ${publicKeyLine(blob)}`);
    expect(fingerprintSha256(blob)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });

  it('auth none accepted: strict KEX, the user is known on both sides, exec echoes and exits', async () => {
    const { server, client, auths } = setup();
    const ssh = await client;
    expect(ssh.method).toBe('none');
    expect(ssh.transport.strictKex).toBe(true);
    expect(ssh.serverVersion).toBe('SSH-2.0-Pierce_1.0');
    expect(server.clientVersion).toBe('SSH-2.0-Pierce_0.1');
    expect(server.user).toBe('alice');
    expect(server.transport.strictKex).toBe(true);
    expect(auths).toEqual([{ user: 'alice', method: 'none' }]);
    const r = await ssh.run('echo hi there');
    expect(dec.decode(r.stdout)).toBe('hi there\n');
    expect(r.exitStatus).toBe(0);
    const e = await ssh.run('stderr oops');
    expect(dec.decode(e.stderr)).toBe('oops');
    expect(e.exitStatus).toBe(1);
    ssh.close();
    expect((await server.closed).code).toBe('SSH_DISCONNECTED');
  });

  it('exec: the handler’s exit status reaches the client (exit 7); unknown commands get stderr and 127', async () => {
    const { server, client } = setup();
    const ssh = await client;
    expect((await ssh.run('exit 7')).exitStatus).toBe(7);
    const r = await ssh.run('frobnicate');
    expect(r.exitStatus).toBe(127);
    expect(dec.decode(r.stderr)).toBe('unknown command frobnicate\n');
    ssh.close();
    await server.closed;
  });

  it('auth refused with a message: the client gets the banner, FAILURE lists publickey, SSH_AUTH_FAILED', async () => {
    const banners: string[] = [];
    const { server, client, auths } = setup({ authorize: (r) => (auths.push(r), { ok: false, message: 'pierce: alice may not log in here' }), banner: 'welcome' }, { onBanner: (m) => banners.push(m) });
    expect(await codeOf(client)).toBe('SSH_AUTH_FAILED');
    expect(banners).toEqual(['welcome', 'pierce: alice may not log in here\r\n']);
    expect(auths.map((a) => a.method)).toEqual(['none']);
    await server.closed;
    expect(server.user).toBeUndefined();
    try {
      await client;
    } catch (e) {
      expect((e as Error).message).toContain('the server allows publickey');
    }
  });

  it('publickey: a key the authorizer accepts is verified (signature over the session id) and logged in', async () => {
    const key = SshEd25519Key.fromSeed(new Uint8Array(32).fill(5));
    const { server, client, auths } = setup({ authorize: (r) => (auths.push(r), r.method === 'publickey' ? { ok: true } : { ok: false }) }, { privateKey: key });
    const ssh = await client;
    expect(ssh.method).toBe('publickey');
    expect(auths.map((a) => a.method)).toEqual(['none', 'publickey']);
    expect(auths[1]!.publicKey).toEqual(key.publicBlob());
    expect(server.method).toBe('publickey');
    ssh.close();
  });

  it('too many failed attempts: DISCONNECT (no more auth methods), SSH_AUTH_FAILED on the server', async () => {
    const [cd, sd] = duplexPair();
    let asked = 0;
    const server = serveSsh(sd, { hostKey: HOST_SEED, maxAuthAttempts: 3, authorize: () => (asked++, { ok: false }), onSession: () => {} });
    const t = new SshTransport(cd, { verifyHostKey: () => true });
    await t.ready;
    const replies: number[] = [];
    t.onMessage = (p) => replies.push(p[0]!);
    t.send(new SshWriter().byte(5).string('ssh-userauth').bytes());
    for (let i = 0; i < 6; i++) t.send(new SshWriter().byte(50).string('bob').string('ssh-connection').string('password').bool(false).string(`pw${i}`).bytes());
    const why = await server.closed;
    expect(why.code).toBe('SSH_AUTH_FAILED');
    expect(asked).toBe(3);
    expect(replies).toEqual([6, 51, 51, 51]);
    await waitUntil('client sees the disconnect', () => t.closedWith !== undefined);
    expect(t.closedWith!.code).toBe('SSH_DISCONNECTED');
    expect(t.closedWith!.message).toContain('reason 14');
  });

  it('shell with a PTY: pty-req, env, window-change and signal reach the handler; an echo handler round-trips', async () => {
    const seen: string[] = [];
    const { server, client } = setup({
      onSession: (s) => {
        s.onPty((p) => {
          seen.push(`pty ${p.term} ${p.cols}x${p.rows} ${p.widthPx}x${p.heightPx} modes=${Array.from(p.modes).join(',')}`);
          return true;
        });
        s.onEnv((n, v) => (seen.push(`env ${n}=${v}`), n === 'LANG'));
        s.onWindowChange((c, r, w, h) => seen.push(`winch ${c}x${r} ${w}x${h}`));
        s.onSignal((n) => seen.push(`signal ${n}`));
        s.onShell(() => {
          seen.push(`shell as ${s.user}`);
          s.onData((b) => s.write(utf8(`> ${dec.decode(b)}`)));
          s.onEof(() => s.exit(3));
          return true;
        });
        s.onExec(() => true);
      },
    });
    const ssh = await client;
    const modes = Uint8Array.of(53, 0, 0, 0, 1, 0);
    const sh = await ssh.shell({ term: 'xterm-test', cols: 100, rows: 30, widthPx: 800, heightPx: 600, modes }, { LANG: 'C.UTF-8', SECRET: 'x' });
    let out = '';
    sh.onData((b) => (out += dec.decode(b)));
    sh.write('hello');
    await waitUntil('echo', () => out === '> hello');
    sh.resize(120, 40, 960, 800);
    sh.signal('INT');
    await waitUntil('signal', () => seen.includes('signal INT'));
    // A second program on the same channel is refused (RFC 4254 §6.5).
    expect(await codeOf(sh.exec('ls'))).toBe('SSH_CHANNEL');
    sh.end();
    const exit = await sh.closed;
    expect(exit.exitStatus).toBe(3);
    expect(seen).toEqual([
      'env LANG=C.UTF-8',
      'env SECRET=x',
      'pty xterm-test 100x30 800x600 modes=53,0,0,0,1,0',
      'shell as alice',
      'winch 120x40 960x800',
      'signal INT',
    ]);
    await waitUntil('session released', () => server.sessionCount === 0);
    ssh.close();
  });

  it('refuses requests without a handler, other channel types and global requests', async () => {
    const { client } = setup({ onSession: (s) => s.onShell(() => true) });
    const ssh = await client;
    const captured: Uint8Array[] = [];
    const orig = ssh.transport.onMessage;
    ssh.transport.onMessage = (p) => (p[0] === 92 || p[0] === 82 || p[0] === 81 || p[0] === 3 ? captured.push(p) : orig(p));
    const sh = await ssh.openSession();
    expect(await codeOf(sh.exec('ls'))).toBe('SSH_CHANNEL'); // no onExec
    expect(await codeOf(sh.requestPty())).toBe('SSH_CHANNEL'); // no onPty
    await sh.shell();
    for (const [kind, id] of [['direct-tcpip', 900], ['x11', 901], ['auth-agent@openssh.com', 902], ['weird', 903]] as const) {
      ssh.transport.send(new SshWriter().byte(90).string(kind).uint32(id).uint32(1 << 20).uint32(32768).bytes());
    }
    ssh.transport.send(new SshWriter().byte(80).string('keepalive@openssh.com').bool(true).bytes());
    ssh.transport.send(new SshWriter().byte(80).string('no-more-sessions@openssh.com').bool(false).bytes());
    ssh.transport.send(Uint8Array.of(200)); // → UNIMPLEMENTED (which our client's transport drops)
    await waitUntil('replies', () => captured.length >= 5);
    const opens = captured.filter((p) => p[0] === 92).map((p) => {
      const r = new SshReader(p);
      r.byte();
      return [r.uint32(), r.uint32()];
    });
    expect(opens).toEqual([[900, 1], [901, 1], [902, 1], [903, 3]]);
    expect(captured.filter((p) => p[0] === 82)).toHaveLength(1);
    expect(captured.filter((p) => p[0] === 81)).toHaveLength(0);
    const r = await ssh.run('anything').catch((e: SshError) => e.code);
    expect(r).toBe('SSH_CHANNEL'); // still connected: a new session, no onExec → refused
    expect(ssh.closedWith).toBeUndefined();
    ssh.close();
  });

  it('8 MiB each way under flow control: stdin hashed on the server, output paced by write()/onDrain', async () => {
    const stats = { maxQueued: 0, pauses: 0 };
    const { server, client } = setup({
      onSession: (s) => {
        builtinExec(s);
        s.onShell(() => {
          queueMicrotask(() => produce(s, 8 << 20, () => s.exit(0), stats));
          return true;
        });
      },
    });
    const ssh = await client;
    const big = new Uint8Array(8 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const up = await ssh.run('sha', { stdin: big });
    expect(dec.decode(up.stdout)).toBe(`${big.length} ${Buffer.from(sha256(big)).toString('hex')}`);
    const sh = await ssh.shell(false);
    const h = sha256.create();
    let n = 0;
    sh.onData((b) => {
      h.update(b);
      n += b.length;
    });
    const exit = await sh.closed;
    expect(exit.exitStatus).toBe(0);
    expect(n).toBe(8 << 20);
    expect(Buffer.from(h.digest()).toString('hex')).toBe(producedSha256(8 << 20));
    expect(stats.pauses).toBeGreaterThan(0);
    expect(stats.maxQueued).toBeLessThanOrEqual(HIGH_WATER + 16384);
    ssh.close();
    await server.closed;
  });

  it('a paused client gets no more than its window; resuming delivers the rest', async () => {
    const sessions: ServerSession[] = [];
    const [cd, sd] = duplexPair();
    const server = serveSsh(sd, {
      hostKey: HOST_SEED,
      authorize: () => ({ ok: true }),
      onSession: (s) => {
        sessions.push(s);
        s.onShell(() => {
          // Ignores write()'s answer: the session must still hold the bytes back.
          queueMicrotask(() => {
            for (let i = 0; i < 64; i++) s.write(pattern(i * 65536, 65536));
            s.exit(0);
          });
          return true;
        });
      },
    });
    const ssh = await SshClient.connect(cd, clientOpts());
    const sh = await ssh.openSession();
    sh.pause();
    let n = 0;
    sh.onData((b) => (n += b.length));
    const before = sd.written;
    await sh.shell();
    await waitUntil('first window sent', () => sessions[0]!.writableLength === (4 << 20) - (2 << 20));
    await new Promise((r) => setTimeout(r, 50));
    expect(sd.written - before).toBeLessThan((2 << 20) + 200 * 1024);
    expect(sessions[0]!.writableLength).toBe(2 << 20);
    sh.resume();
    const exit = await sh.closed;
    expect(n).toBe(4 << 20);
    expect(exit.exitStatus).toBe(0);
    ssh.close();
    await server.closed;
  });

  it('exit() from an onDrain listener waits for the window: data, then exit-status, EOF, CLOSE (raw client)', async () => {
    const [cd, sd] = duplexPair();
    const server = serveSsh(sd, {
      hostKey: HOST_SEED,
      authorize: () => ({ ok: true }),
      onSession: (s) =>
        s.onShell(() => {
          queueMicrotask(() => {
            expect(s.write(new Uint8Array(300_000))).toBe(false); // window 0: all queued
            s.onDrain(() => {
              s.write(new Uint8Array(50_000));
              s.exit(4);
            });
          });
          return true;
        }),
    });
    const t = new SshTransport(cd, { verifyHostKey: () => true });
    await t.ready;
    const got: Array<[number, number]> = []; // [type, data bytes or request name length]
    let data = 0;
    t.onMessage = (p) => {
      const r = new SshReader(p);
      const type = r.byte();
      if (type === 94) {
        r.uint32();
        data += r.string().length;
      } else got.push([type, type === 98 ? (r.uint32(), r.text(), r.bool(), r.uint32()) : 0]);
    };
    t.send(new SshWriter().byte(5).string('ssh-userauth').bytes());
    t.send(new SshWriter().byte(50).string('dan').string('ssh-connection').string('none').bytes());
    await waitUntil('auth', () => got.some(([ty]) => ty === 52));
    t.send(new SshWriter().byte(90).string('session').uint32(0).uint32(0).uint32(32768).bytes());
    t.send(new SshWriter().byte(98).uint32(0).string('shell').bool(true).bytes());
    await waitUntil('shell accepted', () => got.some(([ty]) => ty === 99));
    t.send(new SshWriter().byte(93).uint32(0).uint32(300_000).bytes());
    await waitUntil('first window', () => data === 300_000);
    await new Promise((r) => setTimeout(r, 20));
    expect(data).toBe(300_000);
    expect(got.map(([ty]) => ty)).toEqual([6, 52, 91, 99]); // nothing after the data: the window is shut
    t.send(new SshWriter().byte(93).uint32(0).uint32(1 << 20).bytes());
    await waitUntil('close', () => got.some(([ty]) => ty === 97));
    expect(data).toBe(350_000);
    expect(got.slice(4)).toEqual([[98, 4], [96, 0], [97, 0]]);
    t.close();
    await server.closed;
  });

  it('re-keys started by the client, by the server, and by the server’s byte limit keep the stream intact', async () => {
    const { server, client } = setup({ rekeyAfterBytes: 1 << 20 });
    const ssh = await client;
    expect(ssh.transport.keyExchanges).toBe(1);
    ssh.transport.rekey();
    await waitUntil('client re-key', () => ssh.transport.keyExchanges === 2 && server.transport.keyExchanges === 2);
    server.transport.rekey();
    await waitUntil('server re-key', () => ssh.transport.keyExchanges === 3 && server.transport.keyExchanges === 3);
    const r = await ssh.run('bytes 6291456');
    expect(r.stdout.length).toBe(6 << 20);
    expect(Buffer.from(sha256(r.stdout)).toString('hex')).toBe(producedSha256(6 << 20));
    expect(server.transport.keyExchanges).toBeGreaterThanOrEqual(5); // 3 + at least one per ~2 MiB (a window is held during each)
    expect(ssh.transport.keyExchanges).toBe(server.transport.keyExchanges);
    expect(Buffer.from(ssh.transport.sessionId!).equals(Buffer.from(server.transport.sessionId!))).toBe(true);
    ssh.close();
  });

  it('a client that disconnects mid-session: sessions get onClose, the connection closes', async () => {
    let closedSessions = 0;
    for (const how of ['disconnect', 'hangup'] as const) {
      const { server, client, cd } = setup({
        onSession: (s) => {
          s.onShell(() => true);
          s.onClose(() => closedSessions++);
        },
      });
      const ssh = await client;
      const a = await ssh.shell(false);
      await ssh.shell(false);
      a.write('typing…');
      await waitUntil('two sessions', () => server.sessionCount === 2);
      if (how === 'disconnect') ssh.close();
      else cd.close();
      const why = await server.closed;
      expect(why.code).toBe(how === 'disconnect' ? 'SSH_DISCONNECTED' : 'SSH_CLOSED');
      expect(server.sessionCount).toBe(0);
    }
    expect(closedSessions).toBe(4);
  });

  it('a throwing or rejecting handler is a refusal, not a crash', async () => {
    const { server, client } = setup({
      authorize: async (r) => {
        if (r.user === 'alice') throw new Error('boom');
        return { ok: true };
      },
    });
    expect(await codeOf(client)).toBe('SSH_AUTH_FAILED');
    await server.closed;
    const s2 = setup({
      onSession: (s) => {
        s.onExec(() => {
          throw new Error('boom');
        });
        s.onShell(() => Promise.reject(new Error('later boom')));
      },
    });
    const ssh = await s2.client;
    expect(await codeOf(ssh.exec('x'))).toBe('SSH_CHANNEL');
    expect(await codeOf(ssh.shell(false))).toBe('SSH_CHANNEL');
    expect(s2.server.closedWith).toBeUndefined();
    ssh.close();
  });

  it('a bad host key seed and a timed-out login close with typed errors', async () => {
    const a = rawEnd();
    const bad = serveSsh(a.duplex, { hostKey: new Uint8Array(5), authorize: () => ({ ok: true }), onSession: () => {} });
    expect((await bad.closed).code).toBe('SSH_KEX');
    const b = rawEnd();
    const slow = serveSsh(b.duplex, { hostKey: HOST_SEED, loginTimeoutMs: 50, authorize: () => ({ ok: true }), onSession: () => {} });
    expect((await slow.closed).code).toBe('SSH_TIMEOUT');
  });
});

describe('SSH server fuzz: bad input ends that connection with a typed error', () => {
  const server = (duplex: ReturnType<typeof rawEnd>['duplex']) => serveSsh(duplex, { hostKey: HOST_SEED, authorize: () => ({ ok: true }), onSession: builtinExec });

  it('random bytes instead of an identification line', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 0, maxLength: 600 }), { maxLength: 6 }), async (chunks) => {
        const end = rawEnd();
        const conn = server(end.duplex);
        for (const c of chunks) end.feed(c); // must not throw
        end.hangUp();
        const why = await conn.closed;
        expect(why).toBeInstanceOf(SshError);
        expect(TYPED).toContain(why.code);
      }),
      { numRuns: 200 },
    );
  });

  it('random bytes after a valid identification line (and after a valid KEXINIT)', async () => {
    const kexinit = (() => {
      const w = new SshWriter().byte(20).raw(new Uint8Array(16));
      for (const l of [['curve25519-sha256', 'kex-strict-c-v00@openssh.com'], ['ssh-ed25519'], ['aes256-gcm@openssh.com'], ['aes256-gcm@openssh.com'], ['hmac-sha2-256'], ['hmac-sha2-256'], ['none'], ['none'], [], []]) w.nameList(l);
      const payload = w.bool(false).uint32(0).bytes();
      const pad = 8 - ((5 + payload.length) % 8) + 8;
      return new SshWriter().uint32(1 + payload.length + pad).byte(pad).raw(payload).raw(new Uint8Array(pad)).bytes();
    })();
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(fc.uint8Array({ minLength: 1, maxLength: 400 }), { minLength: 1, maxLength: 5 }), async (withKex, chunks) => {
        const end = rawEnd();
        const conn = server(end.duplex);
        end.feed(utf8('SSH-2.0-Fuzz_1.0\r\n'));
        if (withKex) end.feed(kexinit);
        for (const c of chunks) end.feed(c);
        end.hangUp();
        const why = await conn.closed;
        expect(why).toBeInstanceOf(SshError);
        expect(TYPED).toContain(why.code);
        expect(conn.user).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });

  it('a flipped bit in an encrypted packet is SSH_MAC', async () => {
    let flip = false;
    const [cd, sd] = duplexPair({
      aToB: (b) => {
        if (flip && b.length > 20) {
          b[10]! ^= 0x40;
          flip = false;
        }
        return b;
      },
    });
    const conn = serveSsh(sd, { hostKey: HOST_SEED, authorize: () => ({ ok: true }), onSession: builtinExec });
    const ssh = await SshClient.connect(cd, clientOpts());
    flip = true;
    void ssh.run('echo x').catch(() => {});
    expect((await conn.closed).code).toBe('SSH_MAC');
  });

  it('random payloads from an authenticated client end in typed errors or are answered', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 1, max: 255 }), fc.uint8Array({ maxLength: 64 })), { minLength: 1, maxLength: 8 }), async (msgs) => {
        const { server: conn, client } = setup();
        const ssh = await client;
        const sh = await ssh.shell(false).catch(() => undefined);
        for (const [type, body] of msgs) {
          if (ssh.transport.closedWith) break;
          ssh.transport.send(Uint8Array.of(type, ...body));
        }
        await new Promise((r) => setTimeout(r, 5));
        if (!conn.closedWith) ssh.close();
        const why = await conn.closed;
        expect(why).toBeInstanceOf(SshError);
        expect(TYPED).toContain(why.code);
        void sh;
      }),
      { numRuns: 60 },
    );
  });
});
