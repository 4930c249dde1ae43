/**
 * SOCKS5 (RFC 1928) handshake codec and state machine, and the server against garbage and slow
 * clients, with an in-memory TunnelNet (each dial returns an echo stream). Real clients (curl)
 * and a kernel-backed TunnelNet are in test/interop/proxy-kernel.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import {
  encodeReply,
  parseGreeting,
  parseRequest,
  replyForDialError,
  Socks5Error,
  Socks5Handshake,
  startSocks5,
  MAX_REQUEST_BYTES,
  type Socks5Step,
} from '../../gateway/src/proxy/socks5.ts';
import type { ProxyServer } from '../../gateway/src/proxy/forward.ts';
import type { TunnelNet } from '../../gateway/src/proxy/tunnel-net.ts';
import { PierceError } from '../../src/errors.ts';
import { formatIP } from '../../src/netstack/addr.ts';

const hex = (b: Uint8Array | null) => (b ? Buffer.from(b).toString('hex') : null);
const bytes = (...a: number[]) => Uint8Array.from(a);
const GREETING = bytes(5, 1, 0);
const port = (p: number) => [p >> 8, p & 0xff];
const connectV4 = (ip: number[], p: number) => bytes(5, 1, 0, 1, ...ip, ...port(p));
const connectName = (name: string, p: number) => bytes(5, 1, 0, 3, name.length, ...Buffer.from(name, 'latin1'), ...port(p));

const KNOWN_CODES = new Set([
  'SOCKS5_VERSION',
  'SOCKS5_NO_METHOD',
  'SOCKS5_RESERVED',
  'SOCKS5_COMMAND',
  'SOCKS5_ADDRESS_TYPE',
  'SOCKS5_DOMAIN',
  'SOCKS5_PORT',
  'SOCKS5_STATE',
]);

describe('SOCKS5 codec', () => {
  it('parses greetings, waiting for all methods', () => {
    expect(parseGreeting(bytes())).toBeNull();
    expect(parseGreeting(bytes(5))).toBeNull();
    expect(parseGreeting(bytes(5, 2, 0))).toBeNull();
    const g = parseGreeting(bytes(5, 2, 0, 2, 0xaa));
    expect(g && { m: hex(g.methods), n: g.length }).toEqual({ m: '0002', n: 4 });
    expect(parseGreeting(bytes(5, 0))).toEqual({ methods: bytes(), length: 2 });
    expect(() => parseGreeting(bytes(4, 1, 0))).toThrow(/SOCKS4/);
    expect(() => parseGreeting(Buffer.from('GET / HTTP/1.1\r\n'))).toThrow(/HTTP/);
  });

  it('parses the three address types', () => {
    expect(parseRequest(connectV4([127, 0, 0, 1], 80))).toMatchObject({ command: 1, addressType: 1, host: '127.0.0.1', port: 80, length: 10 });
    const v6 = bytes(5, 1, 0, 4, ...new Array(15).fill(0), 1, 0x1f, 0x90);
    expect(parseRequest(v6)).toMatchObject({ addressType: 4, host: '::1', port: 8080, length: 22 });
    const name = parseRequest(connectName('example.com', 443))!;
    expect(name).toMatchObject({ addressType: 3, host: 'example.com', address: null, port: 443, length: 18 });
    expect(formatIP(parseRequest(connectName('10.1.2.3', 1))!.address!)).toBe('10.1.2.3');
    expect(formatIP(parseRequest(connectName('fd7a:115c:a1e0::1', 1))!.address!)).toBe('fd7a:115c:a1e0::1');
    expect(formatIP(parseRequest(connectName('[::1]', 1))!.address!)).toBe('::1');
    expect(parseRequest(connectName('010.1.2.3', 1))!.address).toBeNull();
    expect(parseRequest(connectName('fe80::1%eth0', 1))!.address).toBeNull();
  });

  it('waits for every byte of a request', () => {
    for (const req of [connectV4([1, 2, 3, 4], 5), connectName('a.b', 7), bytes(5, 1, 0, 4, ...new Array(16).fill(9), 0, 1)]) {
      for (let n = 0; n < req.length; n++) expect(parseRequest(req.subarray(0, n))).toBeNull();
      expect(parseRequest(req)!.length).toBe(req.length);
    }
  });

  it('rejects bad requests with typed errors and reply codes', () => {
    const err = (b: Uint8Array) => {
      try {
        parseRequest(b);
      } catch (e) {
        expect(e).toBeInstanceOf(Socks5Error);
        return [(e as Socks5Error).code, (e as Socks5Error).reply];
      }
      return null;
    };
    expect(err(bytes(4, 1, 0, 1))).toEqual(['SOCKS5_VERSION', null]);
    expect(err(bytes(5, 1, 1, 1))).toEqual(['SOCKS5_RESERVED', 1]);
    expect(err(bytes(5, 1, 0, 2))).toEqual(['SOCKS5_ADDRESS_TYPE', 8]);
    expect(err(bytes(5, 1, 0, 3, 0, 0, 80))).toEqual(['SOCKS5_DOMAIN', 1]);
  });

  it('encodes replies and maps dial errors (RFC 1928 §6)', () => {
    expect(hex(encodeReply(0))).toBe('05000001000000000000');
    expect(hex(encodeReply(5, bytes(10, 0, 0, 1), 0x1234))).toBe('050500010a0000011234');
    expect(hex(encodeReply(0, new Uint8Array(16), 1))).toBe('05000004' + '00'.repeat(16) + '0001');
    expect(replyForDialError('ECONNREFUSED')).toBe(0x05);
    expect(replyForDialError('ETIMEDOUT')).toBe(0x04);
    expect(replyForDialError('EHOSTUNREACH')).toBe(0x04);
    expect(replyForDialError('ENETUNREACH')).toBe(0x03);
    expect(replyForDialError('ECONNRESET')).toBe(0x01);
    expect(replyForDialError('EMFILE')).toBe(0x01);
    expect(replyForDialError('DIAL_FAILED')).toBe(0x01);
  });
});

describe('Socks5Handshake', () => {
  function run(...chunks: Uint8Array[]): { steps: Socks5Step[]; sent: string } {
    const hs = new Socks5Handshake();
    const steps = chunks.map((c) => hs.push(c));
    return { steps, sent: steps.map((s) => hex(s.send) ?? '').join('') };
  }

  it('answers NO AUTH, then yields the CONNECT with the bytes sent after it', () => {
    const { steps, sent } = run(GREETING, Uint8Array.from([...connectV4([100, 64, 0, 2], 22), 0x53, 0x53, 0x48]));
    expect(steps[0]!.kind).toBe('more');
    const last = steps[1]!;
    expect(last.kind).toBe('connect');
    if (last.kind !== 'connect') return;
    expect(last.request.host).toBe('100.64.0.2');
    expect(Buffer.from(last.rest).toString()).toBe('SSH');
    expect(sent).toBe('0500');
  });

  it('handles everything in one chunk and one byte at a time alike', () => {
    const all = Uint8Array.from([...bytes(5, 3, 2, 1, 0), ...connectName('10.0.0.1', 80), 1, 2, 3]);
    const whole = run(all);
    const dripped = run(...Array.from(all, (b) => bytes(b)));
    expect(whole.sent).toBe('0500');
    expect(dripped.sent).toBe('0500');
    const a = whole.steps.at(-1)!;
    expect(a.kind === 'connect' && [a.request.host, hex(a.rest)]).toEqual(['10.0.0.1', '010203']);
    // Dripped, the request completes 3 bytes before the end; what follows is not handshake.
    const at = dripped.steps.findIndex((s) => s.kind !== 'more');
    expect(at).toBe(all.length - 4);
    const b = dripped.steps[at]!;
    expect(b.kind === 'connect' && [b.request.host, hex(b.rest)]).toEqual(['10.0.0.1', '']);
    expect(dripped.steps.slice(at + 1).map((s) => s.kind === 'fail' && s.error.code)).toEqual(['SOCKS5_STATE', 'SOCKS5_STATE', 'SOCKS5_STATE']);
  });

  it('replies 0xFF when NO AUTH is not offered (and for an empty method list)', () => {
    for (const g of [bytes(5, 1, 2), bytes(5, 0), bytes(5, 2, 1, 2)]) {
      const { steps, sent } = run(g);
      expect(sent).toBe('05ff');
      expect(steps[0]!.kind === 'fail' && steps[0]!.error.code).toBe('SOCKS5_NO_METHOD');
    }
  });

  it('replies 0x07 to BIND and UDP ASSOCIATE, 0x08 to an unknown address type', () => {
    const bind = run(GREETING, bytes(5, 2, 0, 1, 1, 2, 3, 4, 0, 80));
    expect(bind.sent).toBe('0500' + '05070001000000000000');
    const udp = run(GREETING, bytes(5, 3, 0, 1, 0, 0, 0, 0, 0, 0));
    expect(udp.sent).toBe('0500' + '05070001000000000000');
    const atyp = run(Uint8Array.from([...GREETING, 5, 1, 0, 9]));
    expect(atyp.sent).toBe('0500' + '05080001000000000000');
  });

  it('sends no reply to a non-SOCKS5 client and refuses bytes after the end', () => {
    const hs = new Socks5Handshake();
    const s = hs.push(Buffer.from('CONNECT example.com:443 HTTP/1.1\r\n\r\n'));
    expect(s.kind === 'fail' && [s.error.code, s.send]).toEqual(['SOCKS5_VERSION', null]);
    const again = hs.push(bytes(5, 1, 0));
    expect(again.kind === 'fail' && again.error.code).toBe('SOCKS5_STATE');
  });

  it('never throws, keeps at most one message, and fails only with known codes (fuzz)', () => {
    const chunk = fc.oneof(
      fc.uint8Array({ maxLength: 40 }),
      fc.constantFrom(GREETING, bytes(5), bytes(5, 1), bytes(5, 1, 0, 1), bytes(5, 1, 0, 3), bytes(5, 1, 0, 4), bytes(5, 255)),
    );
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 12 }), (chunks) => {
        const hs = new Socks5Handshake();
        let ended = false;
        for (const c of chunks) {
          const s = hs.push(c);
          expect(hs.buffered).toBeLessThan(MAX_REQUEST_BYTES);
          if (ended) expect(s.kind === 'fail' && s.error.code).toBe('SOCKS5_STATE');
          if (s.kind === 'fail') {
            expect(s.error).toBeInstanceOf(Socks5Error);
            expect(KNOWN_CODES.has(s.error.code), s.error.code).toBe(true);
          }
          if (s.kind !== 'more') ended = true;
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('parses any valid CONNECT however it is split (property)', () => {
    const target = fc.oneof(
      fc.uint8Array({ minLength: 4, maxLength: 4 }).map((a) => ({ atyp: 1, body: [...a], host: formatIP(a) })),
      fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => ({ atyp: 4, body: [...a], host: formatIP(a) })),
      fc.string({ minLength: 1, maxLength: 255, unit: 'binary-ascii' }).map((s) => ({ atyp: 3, body: [s.length, ...Buffer.from(s, 'latin1')], host: s })),
    );
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 20 }),
        target,
        fc.integer({ min: 1, max: 65535 }),
        fc.uint8Array({ maxLength: 50 }),
        fc.array(fc.nat(400), { maxLength: 6 }),
        (otherMethods, t, p, payload, cuts) => {
          const methods = [...otherMethods, 0];
          const all = Uint8Array.from([5, methods.length, ...methods, 5, 1, 0, t.atyp, ...t.body, ...port(p), ...payload]);
          const points = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b);
          const pieces: Uint8Array[] = [];
          let at = 0;
          for (const c of [...points, all.length]) {
            pieces.push(all.slice(at, c));
            at = c;
          }
          const hs = new Socks5Handshake();
          let rest: number[] = [];
          let req: Socks5Step | null = null;
          let sent = '';
          for (const piece of pieces) {
            if (req) {
              rest.push(...piece);
              continue;
            }
            const s = hs.push(piece);
            sent += hex(s.send) ?? '';
            expect(s.kind).not.toBe('fail');
            if (s.kind === 'connect') {
              req = s;
              rest = [...s.rest];
            }
          }
          expect(sent).toBe('0500');
          expect(req?.kind).toBe('connect');
          if (req?.kind !== 'connect') return;
          expect(req.request.host).toBe(t.host);
          expect(req.request.port).toBe(p);
          expect(hex(Uint8Array.from(rest))).toBe(hex(payload));
        },
      ),
      { numRuns: 2000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The server, over loopback, with an in-memory tunnel.

/** A stream that sends back what it is sent, and ends when its input ends. */
function echoStream(): Duplex {
  return new Duplex({
    allowHalfOpen: true,
    read() {},
    write(chunk, _enc, cb) {
      this.push(chunk);
      cb();
    },
    final(cb) {
      this.push(null);
      cb();
    },
  });
}

class FakeNet implements TunnelNet {
  dials: string[] = [];
  refuse = new Map<string, string>();
  hang = false;
  connect(address: Uint8Array, port: number, opts?: { signal?: AbortSignal }): Promise<Duplex> {
    const where = `${formatIP(address)}:${port}`;
    this.dials.push(where);
    const code = this.refuse.get(where);
    if (code) return Promise.reject(new PierceError(code, `${where}: ${code}`));
    if (this.hang) {
      return new Promise((_, reject) => opts?.signal?.addEventListener('abort', () => reject(new PierceError('ETIMEDOUT', 'aborted'))));
    }
    return Promise.resolve(echoStream());
  }
  listen(): { close(): void } {
    throw new Error('not used');
  }
}

const servers: ProxyServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const logs: string[] = [];
const log = (_level: string, m: string) => void logs.push(m);

async function socks(net: TunnelNet, opts = {}): Promise<ProxyServer> {
  const s = await startSocks5('127.0.0.1:0', net, log, { lingerMs: 200, ...opts });
  servers.push(s);
  return s;
}

/** Connects, sends `chunks` (with `gapMs` between them), and collects everything until close. */
function exchange(p: number, chunks: Uint8Array[], opts: { gapMs?: number; end?: boolean; until?: (got: Buffer) => boolean } = {}): Promise<{ data: Buffer; error: string | null; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const c = connect({ host: '127.0.0.1', port: p, allowHalfOpen: true });
    sockets.push(c);
    const got: Buffer[] = [];
    let error: string | null = null;
    const timer = setTimeout(() => reject(new Error(`exchange did not finish; got ${hex(Buffer.concat(got))}`)), 8000);
    c.on('data', (d: Buffer) => {
      got.push(d);
      if (opts.until?.(Buffer.concat(got))) c.destroy();
    });
    c.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    // Like most clients: when the server is done, so are we.
    c.on('end', () => c.end());
    c.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(got), error, ms: Date.now() - started });
    });
    c.on('connect', async () => {
      for (const ch of chunks) {
        if (c.destroyed) return;
        c.write(ch);
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
      if (opts.end && !c.destroyed) c.end();
    });
  });
}

describe('startSocks5 (in-memory tunnel)', () => {
  it('relays through the tunnel, including bytes sent before the reply, and half-closes', async () => {
    const net = new FakeNet();
    const s = await socks(net);
    const r = await exchange(s.port, [Uint8Array.from([...GREETING, ...connectV4([100, 64, 0, 9], 7), ...Buffer.from('early ')]), Buffer.from('late')], {
      gapMs: 20,
      end: true,
    });
    expect(r.error).toBeNull();
    expect(hex(r.data.subarray(0, 12))).toBe('0500' + '05000001000000000000');
    expect(r.data.subarray(12).toString()).toBe('early late');
    expect(net.dials).toEqual(['100.64.0.9:7']);
    await new Promise((res) => setTimeout(res, 20));
    expect(s.stats()).toMatchObject({ active: 0, total: 1, failed: 0, bytesDown: 10 });
  });

  it('maps dial errors to reply codes', async () => {
    const net = new FakeNet();
    const codes: [string, number][] = [
      ['ECONNREFUSED', 5],
      ['ETIMEDOUT', 4],
      ['EHOSTUNREACH', 4],
      ['ENETUNREACH', 3],
      ['ECONNRESET', 1],
      ['EMFILE', 1],
    ];
    codes.forEach(([code], i) => net.refuse.set(`10.9.0.${i}:80`, code));
    const s = await socks(net);
    for (const [i, [, rep]] of codes.entries()) {
      const r = await exchange(s.port, [GREETING, connectV4([10, 9, 0, i], 80)], { gapMs: 5 });
      expect(hex(r.data)).toBe('0500' + hex(encodeReply(rep)));
    }
    expect(s.stats().failed).toBe(codes.length);
  });

  it('answers a host name with 0x04 and says there is no DNS', async () => {
    const net = new FakeNet();
    const s = await socks(net);
    const r = await exchange(s.port, [GREETING, connectName('example.com', 80)], { gapMs: 5 });
    expect(hex(r.data)).toBe('0500' + '05040001000000000000');
    expect(net.dials).toEqual([]);
    expect(logs.some((m) => m.includes('"example.com":80') && m.includes('no DNS'))).toBe(true);
  });

  it('gives up a dial that hangs after connectTimeoutMs (reply 0x04)', async () => {
    const net = new FakeNet();
    net.hang = true;
    const s = await socks(net, { connectTimeoutMs: 150 });
    const r = await exchange(s.port, [GREETING, connectV4([10, 0, 0, 1], 80)], { gapMs: 5 });
    expect(hex(r.data)).toBe('0500' + '05040001000000000000');
  });

  it('closes a client that stalls in the handshake after handshakeTimeoutMs', async () => {
    const s = await socks(new FakeNet(), { handshakeTimeoutMs: 150 });
    const r = await exchange(s.port, [bytes(5, 1)]);
    expect(r.data.length).toBe(0);
    expect(r.ms).toBeGreaterThanOrEqual(100);
    expect(r.ms).toBeLessThan(3000);
    expect(s.stats()).toMatchObject({ failed: 1 });
  });

  it('serves a slow client that completes in time', async () => {
    const s = await socks(new FakeNet(), { handshakeTimeoutMs: 2000 });
    const all = Uint8Array.from([...GREETING, ...connectName('10.0.0.1', 9), ...Buffer.from('hi')]);
    const r = await exchange(s.port, Array.from(all, (b) => bytes(b)), { gapMs: 10, until: (d) => d.length >= 14 });
    expect(hex(r.data)).toBe('0500' + '05000001000000000000' + hex(Buffer.from('hi')));
  });

  it('survives garbage: random clients, then a valid one still works (fuzz)', async () => {
    const net = new FakeNet();
    const s = await socks(net, { handshakeTimeoutMs: 300 });
    const samples = fc.sample(
      fc.array(
        fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.constantFrom(GREETING, bytes(5, 1, 0, 3, 255), bytes(5, 1, 0, 4, 1, 2), bytes(5, 255, ...new Array(255).fill(1)))),
        { minLength: 1, maxLength: 4 },
      ),
      { numRuns: 60, seed: 1928 },
    );
    const results = await Promise.all(samples.map((chunks, i) => exchange(s.port, chunks, { end: i % 2 === 0 })));
    for (const r of results) expect(r.data.length).toBeLessThanOrEqual(2 + 10 + 300 * 4);
    const ok = await exchange(s.port, [GREETING, connectV4([1, 2, 3, 4], 5), Buffer.from('ping')], { gapMs: 5, until: (d) => d.length >= 16 });
    expect(ok.data.subarray(12).toString()).toBe('ping');
  });

  it('closes active relays and pending dials on close()', async () => {
    const net = new FakeNet();
    const s = await socks(net);
    const open = exchange(s.port, [GREETING, connectV4([1, 2, 3, 4], 5)], { gapMs: 5 });
    const hanging = new FakeNet();
    hanging.hang = true;
    const s2 = await socks(hanging);
    const pending = exchange(s2.port, [GREETING, connectV4([1, 2, 3, 4], 5)], { gapMs: 5 });
    await new Promise((r) => setTimeout(r, 100));
    expect(s.stats().active).toBe(1);
    expect(s2.stats().active).toBe(1);
    await Promise.all([s.close(), s2.close()]);
    const [a, b] = await Promise.all([open, pending]);
    expect(hex(a.data)).toBe('0500' + '05000001000000000000');
    expect(hex(b.data)).toBe('0500');
    expect(s.stats().active).toBe(0);
    expect(s2.stats().active).toBe(0);
  });
});
