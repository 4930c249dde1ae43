/**
 * The SSH client against an in-memory scripted server built from the same codecs (the real-peer
 * test is test/interop/ssh-client.test.ts): the handshake, strict-KEX rules, host key checks,
 * auth, a channel, and fuzzed server messages — every failure a typed SshError on that
 * connection only, nothing thrown out of the duplex callbacks.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SshReader, SshWriter } from '../../src/ssh/codec.ts';
import { fingerprintSha256, SshEd25519Key } from '../../src/ssh/keys.ts';
import { SshClient, SshError, type ConnectOptions, type SshDuplex } from '../../src/ssh/index.ts';
import { FakeServer, HOST_BLOB, acceptingServer, user, type Script } from '../support/ssh-fake-server.ts';
import { codeOf } from '../support/ssh-helpers.ts';

const enc = new TextEncoder();

function opts(o: Partial<ConnectOptions> = {}): ConnectOptions {
  return { username: 'root', privateKey: user, verifyHostKey: (_b, fp) => fp === fingerprintSha256(HOST_BLOB), timeoutMs: 2000, requestTimeoutMs: 2000, ...o };
}

/** Channel side of the fake server: open → confirm(window), exec → success, data, exit-status 7, close. */
function execChannel(window: number, data: Uint8Array[]): (p: Uint8Array, s: FakeServer) => void {
  return (p, s) => {
    const r = new SshReader(p);
    const type = r.byte();
    if (type === 90) {
      r.text();
      const id = r.uint32();
      s.send(new SshWriter().byte(91).uint32(id).uint32(500).uint32(window).uint32(1024).bytes());
    } else if (type === 98) {
      r.uint32();
      const req = r.text();
      if (r.bool()) s.send(new SshWriter().byte(req === 'exec' ? 99 : 100).uint32(0).bytes());
      if (req === 'exec') {
        for (const d of data) s.send(new SshWriter().byte(94).uint32(0).string(d).bytes());
        s.send(new SshWriter().byte(95).uint32(0).uint32(1).string('oops').bytes());
        s.send(new SshWriter().byte(98).uint32(0).string('exit-status').bool(false).uint32(7).bytes());
        s.send(new SshWriter().byte(96).uint32(0).bytes());
        s.send(new SshWriter().byte(97).uint32(0).bytes());
      }
    }
  };
}

describe('SSH client against a scripted in-memory server', () => {
  it('handshake (strict KEX), publickey auth, exec with stdout, stderr, exit status', async () => {
    const server = new FakeServer(acceptingServer(execChannel(1 << 20, [enc.encode('hello '), enc.encode('world')])));
    const ssh = await SshClient.connect(server.duplex, opts());
    expect(ssh.transport.strictKex).toBe(true);
    expect(ssh.method).toBe('publickey');
    const res = await ssh.run('anything');
    expect(new TextDecoder().decode(res.stdout)).toBe('hello world');
    expect(new TextDecoder().decode(res.stderr)).toBe('oops');
    expect(res.exitStatus).toBe(7);
    ssh.close();
    expect(ssh.closedWith?.code).toBe('SSH_CLOSED');
  });

  it('non-strict server: IGNORE before KEXINIT is fine', async () => {
    const server = new FakeServer({ ...acceptingServer(), strict: false, beforeKexInit: [Uint8Array.of(2, 0, 0, 0, 0)] });
    const ssh = await SshClient.connect(server.duplex, opts());
    expect(ssh.transport.strictKex).toBe(false);
    ssh.close();
  });

  it('strict KEX: a message before KEXINIT is SSH_PROTOCOL', async () => {
    const server = new FakeServer({ ...acceptingServer(), beforeKexInit: [Uint8Array.of(2, 0, 0, 0, 0)] });
    expect(await codeOf(SshClient.connect(server.duplex, opts()))).toBe('SSH_PROTOCOL');
  });

  it('a bad host key signature is SSH_KEX; a refused key SSH_HOSTKEY_REJECTED; a throwing callback too', async () => {
    expect(await codeOf(SshClient.connect(new FakeServer({ ...acceptingServer(), corruptSignature: true }).duplex, opts()))).toBe('SSH_KEX');
    expect(await codeOf(SshClient.connect(new FakeServer(acceptingServer()).duplex, opts({ verifyHostKey: async () => false })))).toBe('SSH_HOSTKEY_REJECTED');
    const s3 = new FakeServer(acceptingServer());
    const c3 = SshClient.connect(s3.duplex, opts({ verifyHostKey: () => { throw new Error('boom'); } }));
    expect(await codeOf(c3)).toBe('SSH_HOSTKEY_REJECTED');
    expect(s3.closed).toBe(true);
  });

  it('a wrong key is SSH_AUTH_FAILED; a server hang-up is SSH_CLOSED; silence is SSH_TIMEOUT', async () => {
    expect(await codeOf(SshClient.connect(new FakeServer(acceptingServer()).duplex, opts({ privateKey: SshEd25519Key.generate() })))).toBe('SSH_AUTH_FAILED');
    const s = new FakeServer({ onPayload: (_p, srv) => srv.hangUp() });
    expect(await codeOf(SshClient.connect(s.duplex, opts()))).toBe('SSH_CLOSED');
    const quiet: SshDuplex = { write: () => {}, onData: () => {}, onClose: () => {}, close: () => {} };
    expect(await codeOf(SshClient.connect(quiet, opts({ timeoutMs: 50 })))).toBe('SSH_TIMEOUT');
  });

  it('password, keyboard-interactive (prompts answered by the callback) and the banner', async () => {
    const kbdServer = (accept: (method: string, answers: string[]) => boolean): Script => ({
      onPayload: (p, s) => {
        const r = new SshReader(p);
        const type = r.byte();
        if (type === 5) return s.send(new SshWriter().byte(6).string('ssh-userauth').bytes());
        const fail = (): void => s.send(new SshWriter().byte(51).nameList(['password', 'keyboard-interactive']).bool(false).bytes());
        if (type === 50) {
          r.text();
          r.text();
          const method = r.text();
          if (method === 'password') {
            r.bool();
            return accept('password', [r.text()]) ? s.send(Uint8Array.of(52)) : fail();
          }
          if (method === 'keyboard-interactive') {
            s.send(new SshWriter().byte(53).string('welcome to fake\n').string('').bytes());
            return s.send(
              new SshWriter().byte(60).string('fake').string('answer both').string('').uint32(2).string('Password: ').bool(false).string('Code: ').bool(true).bytes(),
            );
          }
          return fail();
        }
        if (type === 61) {
          const n = r.uint32();
          const answers: string[] = [];
          for (let i = 0; i < n; i++) answers.push(r.text());
          return accept('keyboard-interactive', answers) ? s.send(Uint8Array.of(52)) : fail();
        }
      },
    });
    const pw = await SshClient.connect(new FakeServer(kbdServer((m, a) => m === 'password' && a[0] === 's3cret')).duplex, opts({ privateKey: undefined, password: 's3cret' }));
    expect(pw.method).toBe('password');
    pw.close();
    const banners: string[] = [];
    const seen: string[] = [];
    const kb = await SshClient.connect(
      new FakeServer(kbdServer((m, a) => m === 'keyboard-interactive' && a.join('|') === 'pw|123456')).duplex,
      opts({
        privateKey: undefined,
        onBanner: (b) => banners.push(b),
        onKeyboardInteractive: (name, instruction, prompts) => {
          seen.push(name, instruction, ...prompts.map((q) => `${q.prompt}${q.echo}`));
          return ['pw', '123456'];
        },
      }),
    );
    expect(kb.method).toBe('keyboard-interactive');
    expect(seen).toEqual(['fake', 'answer both', 'Password: false', 'Code: true']);
    expect(banners).toEqual(['welcome to fake\n']);
    kb.close();
    const bad = SshClient.connect(new FakeServer(kbdServer(() => false)).duplex, opts({ privateKey: undefined, password: 'nope' }));
    const err = await bad.catch((e: unknown) => e);
    expect((err as SshError).code).toBe('SSH_AUTH_FAILED');
    expect((err as SshError).message).toMatch(/tried password, keyboard-interactive/);
  });

  it('flow control: writes wait for WINDOW_ADJUST and respect the max packet size', async () => {
    const seen: number[] = [];
    let srv!: FakeServer;
    const server = new FakeServer(
      acceptingServer((p, s) => {
        srv = s;
        const r = new SshReader(p);
        const type = r.byte();
        if (type === 90) {
          r.text();
          s.send(new SshWriter().byte(91).uint32(r.uint32()).uint32(0).uint32(1000).uint32(300).bytes());
        } else if (type === 98) {
          r.uint32();
          r.text();
          if (r.bool()) s.send(new SshWriter().byte(99).uint32(0).bytes());
        } else if (type === 94) {
          r.uint32();
          seen.push(r.string().length);
        }
      }),
    );
    const ssh = await SshClient.connect(server.duplex, opts());
    const ch = await ssh.exec('cat');
    ch.write(new Uint8Array(2500));
    await new Promise((r) => setTimeout(r, 10));
    expect(seen.reduce((a, b) => a + b, 0)).toBe(1000);
    expect(Math.max(...seen)).toBeLessThanOrEqual(300);
    srv.send(new SshWriter().byte(93).uint32(0).uint32(5000).bytes());
    await new Promise((r) => setTimeout(r, 10));
    expect(seen.reduce((a, b) => a + b, 0)).toBe(2500);
    ssh.close();
  });

  it('pause(): data is held and the window stays shut until resume() (a slow terminal pushes back on sshd)', async () => {
    const adjusts: number[] = [];
    const CHUNK = 32 * 1024;
    const server = new FakeServer(
      acceptingServer((p, s) => {
        const r = new SshReader(p);
        const type = r.byte();
        if (type === 90) {
          r.text();
          s.send(new SshWriter().byte(91).uint32(r.uint32()).uint32(500).uint32(1 << 20).uint32(CHUNK).bytes());
        } else if (type === 98) {
          r.uint32();
          r.text();
          if (r.bool()) s.send(new SshWriter().byte(99).uint32(0).bytes());
          for (let i = 0; i < 48; i++) s.send(new SshWriter().byte(94).uint32(0).string(new Uint8Array(CHUNK).fill(i)).bytes());
        } else if (type === 93) {
          r.uint32();
          adjusts.push(r.uint32());
        }
      }),
    );
    const ssh = await SshClient.connect(server.duplex, opts());
    const ch = await ssh.exec('yes');
    ch.pause();
    let got = 0;
    ch.onData((b) => {
      got += b.length;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(ch.isPaused).toBe(true);
    expect(got).toBe(0);
    expect(adjusts).toEqual([]);
    ch.resume();
    expect(got).toBe(48 * CHUNK);
    await new Promise((r) => setTimeout(r, 10));
    expect(adjusts.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1 << 20);
    ssh.close();
  });

  it('fuzz: random payloads from an authenticated server end only in typed errors', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 5 }), fc.integer({ min: 1, max: 100 }), async (junk, type) => {
        const server = new FakeServer(acceptingServer(execChannel(1 << 20, [])));
        const ssh = await SshClient.connect(server.duplex, opts());
        const ch = await ssh.openSession();
        for (const j of junk) {
          const p = Uint8Array.from([type, ...j]);
          server.send(p);
        }
        server.sendRaw(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24));
        await new Promise((r) => setTimeout(r, 0));
        const err = ssh.closedWith;
        expect(err, 'garbage bytes must close the connection').toBeInstanceOf(SshError);
        const exit = await ch.closed;
        expect(exit.error).toBeInstanceOf(SshError);
      }),
      { numRuns: 60 },
    );
  });
});
