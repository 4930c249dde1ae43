/**
 * The forwards and the SOCKS5 server against real clients (curl, raw sockets) and real servers,
 * with a TunnelNet backed by the kernel's loopback: `connect` is node:net to the target, errno
 * codes mapped to PierceErrors; `listen` binds a free kernel port on 127.0.0.1 that stands for
 * our tunnel address. Needs `curl` (apt-get install -y --no-install-recommends curl).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { startForward, startListen, type ListenHandle, type ProxyServer } from '../../gateway/src/proxy/forward.ts';
import { startSocks5 } from '../../gateway/src/proxy/socks5.ts';
import type { TunnelNet } from '../../gateway/src/proxy/tunnel-net.ts';
import { PierceError } from '../../src/errors.ts';
import { formatIP } from '../../src/netstack/addr.ts';

const DIAL_CODES = new Set(['ECONNREFUSED', 'ETIMEDOUT', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EMFILE']);

/** A TunnelNet over the kernel: what the userspace stack will do inside the tunnel. */
class KernelNet implements TunnelNet {
  readonly listeners = new Map<number, Server>();
  connect(address: Uint8Array, port: number, opts?: { signal?: AbortSignal }): Promise<Duplex> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: formatIP(address), port, allowHalfOpen: true });
      const onAbort = () => {
        s.destroy();
        reject(new PierceError('ETIMEDOUT', 'aborted'));
      };
      opts?.signal?.addEventListener('abort', onAbort, { once: true });
      s.once('connect', () => {
        opts?.signal?.removeEventListener('abort', onAbort);
        resolve(s);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        opts?.signal?.removeEventListener('abort', onAbort);
        const code = e.code && DIAL_CODES.has(e.code) ? e.code : 'ENETUNREACH';
        reject(new PierceError(code, `${formatIP(address)}:${port}: ${e.message}`, { cause: e }));
      });
    });
  }
  listen(port: number, onConnection: (socket: Duplex, info: { remoteAddress: string; remotePort: number }) => void): { close(): void } {
    const srv = createServer({ allowHalfOpen: true }, (sock) => onConnection(sock, { remoteAddress: sock.remoteAddress ?? '?', remotePort: sock.remotePort ?? 0 }));
    srv.listen(0, '127.0.0.1');
    this.listeners.set(port, srv);
    return { close: () => srv.close() };
  }
  /** The kernel port that stands for tunnel port `port`. */
  async kernelPort(port: number): Promise<number> {
    const srv = this.listeners.get(port)!;
    if (!srv.listening) await once(srv, 'listening');
    return (srv.address() as AddressInfo).port;
  }
}

// ---------------------------------------------------------------------------------------------
// Bookkeeping: everything opened in a test is closed in afterEach.

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const logs: string[] = [];
const log = (_level: string, m: string) => void logs.push(m);

function track<T extends ProxyServer | ListenHandle>(s: T): T {
  cleanups.push(() => s.close());
  return s;
}

async function listenOn<T extends Server | HttpServer>(srv: T, host = '127.0.0.1'): Promise<number> {
  srv.listen(0, host);
  await once(srv, 'listening');
  const sockets = new Set<Socket>();
  srv.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  );
  return (srv.address() as AddressInfo).port;
}

/** An HTTP server: GET /size/N answers N bytes of a fixed pattern, anything else "hello <path>". */
async function httpServer(host = '127.0.0.1'): Promise<number> {
  return listenOn(
    createHttpServer((req, res) => {
      const m = /^\/size\/(\d+)$/.exec(req.url ?? '');
      if (m) {
        res.writeHead(200, { 'content-length': m[1] });
        res.end(pattern(Number(m[1])));
      } else {
        res.end(`hello ${req.url} via ${host}`);
      }
    }),
    host,
  );
}

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 8)) & 0xff;
  return b;
}

/** A TCP server that reads until the client half-closes, then answers and half-closes itself. */
async function halfCloseServer(host = '127.0.0.1'): Promise<{ port: number; sawEnd: Promise<string> }> {
  let sawEndResolve!: (s: string) => void;
  const sawEnd = new Promise<string>((r) => (sawEndResolve = r));
  const port = await listenOn(
    createServer({ allowHalfOpen: true }, (s) => {
      const got: Buffer[] = [];
      s.on('data', (d: Buffer) => got.push(d));
      s.on('end', () => {
        const text = Buffer.concat(got).toString();
        sawEndResolve(text);
        // Our read side is closed; the write side still works.
        s.write(`got ${text.length} bytes: `);
        setTimeout(() => s.end(text.toUpperCase()), 50);
      });
    }),
    host,
  );
  return { port, sawEnd };
}

/** A port with nothing listening on it. */
async function refusedPort(host = '127.0.0.1'): Promise<number> {
  const srv = createServer();
  srv.listen(0, host);
  await once(srv, 'listening');
  const p = (srv.address() as AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return p;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: no result in ${ms} ms`)), ms))).finally(() => clearTimeout(t))]);
}

/** Opens a client socket and tracks it for cleanup. */
async function dial(port: number, host = '127.0.0.1'): Promise<Socket> {
  const c = connect({ host, port, allowHalfOpen: true });
  cleanups.push(() => c.destroy());
  await withTimeout(once(c, 'connect'), 5000, 'connect');
  return c;
}

/** Reads everything until the peer ends (or resets); bounded in time. */
function readAll(s: Socket, ms = 10_000): Promise<{ data: Buffer; error: string | null }> {
  const got: Buffer[] = [];
  let error: string | null = null;
  s.on('data', (d: Buffer) => got.push(d));
  s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  s.resume();
  return withTimeout(
    new Promise((resolve) => {
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        resolve({ data: Buffer.concat(got), error });
      };
      if (s.readableEnded || s.destroyed) return finish();
      s.once('end', finish);
      s.once('close', finish);
    }),
    ms,
    'readAll',
  );
}

function readExactly(s: Socket, n: number): Promise<Buffer> {
  return withTimeout(
    new Promise((resolve, reject) => {
      let buf = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= n) {
          s.off('data', onData);
          s.off('close', onClose);
          s.pause();
          if (buf.length > n) s.unshift(buf.subarray(n));
          resolve(buf.subarray(0, n));
        }
      };
      const onClose = () => reject(new Error(`closed after ${buf.length} of ${n} bytes: ${buf.toString('hex')}`));
      s.on('data', onData);
      s.once('close', onClose);
      s.resume();
    }),
    5000,
    'readExactly',
  );
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface CurlResult {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

function curl(args: string[]): Promise<CurlResult> {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/_proxy$/i.test(k)) delete env[k];
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--noproxy', '', '--max-time', '10', ...args], { encoding: 'buffer', maxBuffer: 64 << 20, env, timeout: 15_000 }, (err, stdout, stderr) => {
      const status = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ status, stdout, stderr: stderr.toString() });
    });
  });
}

// SOCKS5 raw client pieces (RFC 1928).
const GREETING = [5, 1, 0];
const be16 = (p: number) => [p >> 8, p & 0xff];
const reqV4 = (p: number) => Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, ...be16(p)]);
const reqV6 = (p: number) => Buffer.from([5, 1, 0, 4, ...new Array(15).fill(0), 1, ...be16(p)]);
const reqName = (name: string, p: number) => Buffer.from([5, 1, 0, 3, name.length, ...Buffer.from(name), ...be16(p)]);

/** Greets, sends `req`, returns the socket and the 10-byte reply. */
async function socksConnect(proxyPort: number, req: Buffer): Promise<{ s: Socket; reply: Buffer }> {
  const s = await dial(proxyPort);
  s.write(Buffer.concat([Buffer.from(GREETING), req]));
  const method = await readExactly(s, 2);
  expect(method.toString('hex')).toBe('0500');
  const reply = await readExactly(s, 10);
  return { s, reply };
}

beforeAll(() => {
  const r = spawnSync('curl', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error('`curl` not found: apt-get install -y --no-install-recommends curl');
});

// ---------------------------------------------------------------------------------------------

describe('SOCKS5 through a kernel-backed TunnelNet', () => {
  async function socks() {
    return track(await startSocks5('127.0.0.1:0', new KernelNet(), log));
  }

  it('curl --socks5 fetches from an IPv4 target', async () => {
    const http = await httpServer();
    const s = await socks();
    const r = await curl(['--socks5', `127.0.0.1:${s.port}`, `http://127.0.0.1:${http}/a`]);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('hello /a via 127.0.0.1');
    expect(s.stats().total).toBe(1);
  });

  it('curl --socks5 fetches from an IPv6 target [::1]', async () => {
    const http = await httpServer('::1');
    const s = await socks();
    const r = await curl(['--socks5', `127.0.0.1:${s.port}`, `http://[::1]:${http}/six`]);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toBe('hello /six via ::1');
  });

  it('curl --socks5-hostname works with IP literals', async () => {
    const http4 = await httpServer();
    const http6 = await httpServer('::1');
    const s = await socks();
    const a = await curl(['--socks5-hostname', `127.0.0.1:${s.port}`, `http://127.0.0.1:${http4}/h4`]);
    expect(a.stdout.toString()).toBe('hello /h4 via 127.0.0.1');
    const b = await curl(['--socks5-hostname', `127.0.0.1:${s.port}`, `http://[::1]:${http6}/h6`]);
    expect(b.stdout.toString()).toBe('hello /h6 via ::1');
    expect(s.stats().total).toBe(2);
  });

  it('curl --socks5-hostname with a name fails with host unreachable (no DNS in the tunnel)', async () => {
    const http = await httpServer();
    const s = await socks();
    const r = await curl(['--socks5-hostname', `127.0.0.1:${s.port}`, `http://localhost:${http}/`]);
    expect(r.status).not.toBe(0);
    // curl 7.x prints the reply code ("(4)"), newer ones its name.
    expect(r.stderr).toMatch(/\(4\)|host unreachable/i);
    expect(r.stdout.length).toBe(0);
    expect(s.stats().failed).toBe(1);
    expect(logs.some((m) => m.includes('"localhost"') && m.includes('no DNS'))).toBe(true);
  });

  it('curl downloads 20 MB intact', async () => {
    const http = await httpServer();
    const s = await socks();
    const n = 20 << 20;
    const r = await curl(['--socks5', `127.0.0.1:${s.port}`, `http://127.0.0.1:${http}/size/${n}`]);
    expect(r.stdout.length).toBe(n);
    expect(sha256(r.stdout)).toBe(sha256(pattern(n)));
    await withTimeout(
      (async () => {
        while (s.stats().active > 0) await new Promise((res) => setTimeout(res, 10));
      })(),
      5000,
      'connection close',
    );
    expect(s.stats().bytesDown).toBeGreaterThan(n);
  });

  it('replies 0x05 for a refused port (IPv4 and IPv6)', async () => {
    const s = await socks();
    const a = await socksConnect(s.port, reqV4(await refusedPort()));
    expect(a.reply.toString('hex')).toBe('05050001000000000000');
    const b = await socksConnect(s.port, reqV6(await refusedPort('::1')));
    expect(b.reply.toString('hex')).toBe('05050001000000000000');
    const closed = await readAll(a.s);
    expect(closed.data.length).toBe(0);
    expect(s.stats().failed).toBe(2);
  });

  it('accepts IP literals as DOMAINNAME, including [::1]', async () => {
    const t4 = await halfCloseServer();
    const t6 = await halfCloseServer('::1');
    const s = await socks();
    for (const [name, port, sawEnd] of [
      ['127.0.0.1', t4.port, t4.sawEnd],
      ['[::1]', t6.port, t6.sawEnd],
    ] as const) {
      const c = await socksConnect(s.port, reqName(name, port));
      expect(c.reply.toString('hex')).toBe('05000001000000000000');
      c.s.resume();
      c.s.end(name);
      expect(await withTimeout(sawEnd, 5000, 'server end')).toBe(name);
      const r = await readAll(c.s);
      expect(r.data.toString()).toBe(`got ${name.length} bytes: ${name.toUpperCase()}`);
    }
  });

  it('propagates half-close: client shutdown → server sees end → server replies → client reads it', async () => {
    const t = await halfCloseServer();
    const s = await socks();
    const c = await socksConnect(s.port, reqV4(t.port));
    expect(c.reply[1]).toBe(0);
    const reading = readAll(c.s);
    c.s.write('half');
    c.s.end('-closed');
    expect(await withTimeout(t.sawEnd, 5000, 'server end')).toBe('half-closed');
    const r = await reading;
    expect(r.error).toBeNull();
    expect(r.data.toString()).toBe('got 11 bytes: HALF-CLOSED');
  });

  it('a reset by the target resets the client', async () => {
    const port = await listenOn(
      createServer((sock) => {
        sock.once('data', () => sock.resetAndDestroy());
      }),
    );
    const s = await socks();
    const c = await socksConnect(s.port, reqV4(port));
    expect(c.reply[1]).toBe(0);
    const reading = readAll(c.s);
    c.s.write('x');
    const r = await reading;
    expect(r.error).toBe('ECONNRESET');
  });
});

describe('forward through a kernel-backed TunnelNet', () => {
  it('curl reaches the target through the forward (default bind 127.0.0.1)', async () => {
    const http = await httpServer();
    const f = track(await startForward(`0=127.0.0.1:${http}`, new KernelNet(), log));
    expect(f.address).toBe('127.0.0.1');
    const r = await curl([`http://127.0.0.1:${f.port}/fwd`]);
    expect(r.stdout.toString()).toBe('hello /fwd via 127.0.0.1');
    expect(f.stats().total).toBe(1);
  });

  it('binds [::1] and forwards to an IPv6 target', async () => {
    const http = await httpServer('::1');
    const f = track(await startForward(`[::1]:0=[::1]:${http}`, new KernelNet(), log));
    expect(f.address).toBe('::1');
    const r = await curl([`http://[::1]:${f.port}/v6`]);
    expect(r.stdout.toString()).toBe('hello /v6 via ::1');
  });

  it('propagates half-close both ways', async () => {
    const t = await halfCloseServer();
    const f = track(await startForward(`0=127.0.0.1:${t.port}`, new KernelNet(), log));
    const c = await dial(f.port);
    const reading = readAll(c);
    c.end('ping');
    expect(await withTimeout(t.sawEnd, 5000, 'server end')).toBe('ping');
    expect((await reading).data.toString()).toBe('got 4 bytes: PING');

    // The other way: the server ends first, the client keeps sending, then ends.
    let serverGot!: Promise<string>;
    const port = await listenOn(
      createServer({ allowHalfOpen: true }, (sock) => {
        sock.end('bye first');
        const got: Buffer[] = [];
        sock.on('data', (d: Buffer) => got.push(d));
        serverGot = new Promise((r) => sock.once('end', () => r(Buffer.concat(got).toString())));
      }),
    );
    const f2 = track(await startForward(`0=127.0.0.1:${port}`, new KernelNet(), log));
    const c2 = await dial(f2.port);
    const r2 = await readAll(c2);
    expect(r2.data.toString()).toBe('bye first');
    c2.end('still talking');
    expect(await withTimeout(serverGot, 5000, 'server end')).toBe('still talking');
  });

  it('moves 50 MB each way intact, with backpressure', async () => {
    const n = 50 << 20;
    const up = randomBytes(n);
    const down = randomBytes(n);
    let resumeServer!: () => void;
    const port = await listenOn(
      createServer({ allowHalfOpen: true }, (sock) => {
        // A slow reader: the proxy must stop reading from the client rather than buffer 50 MB.
        sock.pause();
        resumeServer = () => sock.resume();
        const h = createHash('sha256');
        let got = 0;
        sock.on('data', (d: Buffer) => {
          h.update(d);
          got += d.length;
        });
        sock.on('end', () => {
          sock.write(`${got} ${h.digest('hex')}\n`);
          sock.end(down);
        });
      }),
    );
    const f = track(await startForward(`0=127.0.0.1:${port}`, new KernelNet(), log));
    const c = await dial(f.port);
    const reading = readAll(c, 30_000);
    c.end(up);
    await new Promise((r) => setTimeout(r, 800));
    const buffered = f.stats().bytesUp;
    expect(buffered).toBeLessThan(n / 2);
    resumeServer();
    const r = await reading;
    const nl = r.data.indexOf(0x0a);
    expect(r.data.subarray(0, nl).toString()).toBe(`${n} ${sha256(up)}`);
    const rest = r.data.subarray(nl + 1);
    expect(rest.length).toBe(n);
    expect(sha256(rest)).toBe(sha256(down));
    await withTimeout(
      (async () => {
        while (f.stats().active > 0) await new Promise((res) => setTimeout(res, 10));
      })(),
      5000,
      'connection close',
    );
    expect(f.stats()).toMatchObject({ active: 0, total: 1, failed: 0, bytesUp: n });
    expect(f.stats().bytesDown).toBe(nl + 1 + n);
  }, 60_000);

  it('resets the client when the target refuses', async () => {
    const f = track(await startForward(`0=127.0.0.1:${await refusedPort()}`, new KernelNet(), log));
    const c = await dial(f.port);
    const r = await readAll(c);
    expect(r.data.length).toBe(0);
    expect(r.error).toBe('ECONNRESET');
    expect(f.stats()).toMatchObject({ failed: 1, active: 0 });
    expect(logs.some((m) => m.includes('forward:') && m.includes('ECONNREFUSED'))).toBe(true);
  });

  it('close() ends active connections and frees the port', async () => {
    const t = await halfCloseServer();
    const f = await startForward(`0=127.0.0.1:${t.port}`, new KernelNet(), log);
    const c = await dial(f.port);
    c.write('x');
    const reading = readAll(c);
    await new Promise((r) => setTimeout(r, 100));
    expect(f.stats().active).toBe(1);
    await withTimeout(f.close(), 5000, 'close');
    expect(f.stats().active).toBe(0);
    await reading;
    expect(c.destroyed || c.readableEnded).toBe(true);
    // The port is free again.
    const again = track(await startForward(`${f.port}=127.0.0.1:${t.port}`, new KernelNet(), log));
    expect(again.port).toBe(f.port);
  });

  it('reports a port in use as BIND_FAILED', async () => {
    const port = await listenOn(createServer());
    await expect(startForward(`${port}=127.0.0.1:1`, new KernelNet(), log)).rejects.toMatchObject({ code: 'BIND_FAILED' });
  });
});

describe('listen through a kernel-backed TunnelNet', () => {
  it('relays tunnel connections to the local service (curl as the tunnel peer)', async () => {
    const http = await httpServer();
    const net = new KernelNet();
    const l = track(await startListen(`8080=127.0.0.1:${http}`, net, log));
    expect(l.port).toBe(8080);
    const r = await curl([`http://127.0.0.1:${await net.kernelPort(8080)}/in`]);
    expect(r.stdout.toString()).toBe('hello /in via 127.0.0.1');
    expect(l.stats().total).toBe(1);
  });

  it('reaches a local service by host name (localhost)', async () => {
    const http = await httpServer();
    const net = new KernelNet();
    track(await startListen(`80=localhost:${http}`, net, log));
    const r = await curl([`http://127.0.0.1:${await net.kernelPort(80)}/name`]);
    expect(r.stdout.toString()).toBe('hello /name via 127.0.0.1');
  });

  it('destroys the tunnel socket when the local service refuses', async () => {
    const net = new KernelNet();
    const l = track(await startListen(`22=127.0.0.1:${await refusedPort()}`, net, log));
    const c = await dial(await net.kernelPort(22));
    const r = await readAll(c);
    expect(r.data.length).toBe(0);
    expect(r.error).toBe('ECONNRESET');
    expect(l.stats()).toMatchObject({ failed: 1, active: 0 });
  });

  it('propagates half-close', async () => {
    const t = await halfCloseServer();
    const net = new KernelNet();
    track(await startListen(`7=127.0.0.1:${t.port}`, net, log));
    const c = await dial(await net.kernelPort(7));
    const reading = readAll(c);
    c.end('from the tunnel');
    expect(await withTimeout(t.sawEnd, 5000, 'server end')).toBe('from the tunnel');
    expect((await reading).data.toString()).toBe('got 15 bytes: FROM THE TUNNEL');
  });
});
