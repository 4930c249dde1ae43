/**
 * STUN against programs nobody here wrote, on loopback (127.0.0.1 and ::1):
 * - Debian's `stun-client` (Vovida stund 0.97 client, binary `stun`): an RFC 3489 client (no
 *   magic cookie, 128-bit transaction ID, CHANGE-REQUEST); IPv4 only.
 * - coturn's `turnutils_stunclient`: an RFC 5389/5780 client, IPv4 and IPv6.
 * - coturn's `turnserver --stun-only` (RFC 5780: RESPONSE-ORIGIN, OTHER-ADDRESS on port+1) as
 *   the server for our client; turnutils_stunclient against it is the control.
 * Each client's reported mapping must be its real source: for `stun` the port we told it to use
 * (-p), for turnutils the source our server's socket saw, for our client its own socket.
 *
 * Needs: stun-client coturn (`apt-get install -y --no-install-recommends stun-client coturn`);
 * the tests fail, never skip, when they are missing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStunServer, type StunServer } from '../../gateway/src/stun/server.ts';
import { stunBinding } from '../../gateway/src/stun/client.ts';
import { findInPath, labEnv } from './lab/env.ts';
import { run } from './lab/proc.ts';

const INSTALL = 'apt-get install -y --no-install-recommends stun-client coturn';
const TOOLS: [cmd: string, pkg: string][] = [
  ['stun', 'stun-client'],
  ['turnutils_stunclient', 'coturn'],
  ['turnserver', 'coturn'],
];

function requireStunTools(): void {
  const missing = TOOLS.filter(([cmd]) => !findInPath(cmd)).map(([cmd, pkg]) => `\`${cmd}\` (Debian package ${pkg})`);
  if (missing.length > 0) throw new Error(`STUN interop tools missing: ${missing.join(', ')}\nInstall with: ${INSTALL}\n(see .ci/run)`);
}

/** Resolves when `port` can be bound now (UDP and TCP, on 127.0.0.1 and ::1). */
async function portFree(port: number): Promise<boolean> {
  const tryUdp = (type: 'udp4' | 'udp6', host: string) =>
    new Promise<boolean>((resolve) => {
      const s = createSocket(type);
      s.once('error', () => resolve(false));
      s.bind(port, host, () => s.close(() => resolve(true)));
    });
  const tryTcp = (host: string) =>
    new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, host, () => s.close(() => resolve(true)));
    });
  return (await tryUdp('udp4', '127.0.0.1')) && (await tryUdp('udp6', '::1')) && (await tryTcp('127.0.0.1')) && (await tryTcp('::1'));
}

/** A free port p (with p+1 free too when `pair`), from the range 20000-59999. */
async function freePort(pair = false): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const p = 20000 + Math.floor(Math.random() * 40000);
    if ((await portFree(p)) && (!pair || (await portFree(p + 1)))) return p;
  }
  throw new Error('no free port found');
}

/** "ip:port" with the port after the last colon (turnutils prints "::1:38704"). */
function splitHostPort(s: string): { address: string; port: number } {
  const i = s.lastIndexOf(':');
  return { address: s.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(s.slice(i + 1)) };
}

/** turnutils_stunclient's reflexive addresses (it prints each line twice: log and stdout). */
async function turnutilsStunclient(host: string, port: number): Promise<{ address: string; port: number }[]> {
  const r = await run('turnutils_stunclient', ['-p', String(port), host], { timeoutMs: 10_000, check: false });
  const out = r.stdout + r.stderr;
  const found = [...out.matchAll(/UDP reflexive addr: (\S+)/g)].map((m) => splitHostPort(m[1]!));
  if (found.length === 0) throw new Error(`turnutils_stunclient printed no reflexive address (exit ${r.code}):\n${out}`);
  return found;
}

describe('STUN interop: real clients against our server', () => {
  let srv: StunServer;
  const seen: { address: string; port: number }[] = [];

  beforeAll(async () => {
    requireStunTools();
    srv = await startStunServer({ host: ['127.0.0.1', '::1'], port: 0, onBinding: (f) => seen.push(f) });
  });
  afterAll(async () => {
    await srv?.close();
  });

  it('stun-client (RFC 3489, IPv4) reports 127.0.0.1 and the source port it was given', async () => {
    const src = await freePort();
    const r = await run('stun', [`127.0.0.1:${srv.port}`, '1', '-v', '-p', String(src)], { timeoutMs: 10_000, check: false });
    const out = r.stdout + r.stderr;
    expect(out, out).toMatch(new RegExp(`Opened port ${src} `));
    const m = out.match(/MappedAddress = (\S+)/);
    expect(m, `no MappedAddress in stun output:\n${out}`).not.toBeNull();
    expect(splitHostPort(m![1]!)).toEqual({ address: '127.0.0.1', port: src });
    expect(seen).toContainEqual({ address: '127.0.0.1', port: src });
  });

  for (const host of ['127.0.0.1', '::1']) {
    it(`turnutils_stunclient over ${host} reports its real source`, async () => {
      const before = seen.length;
      const found = await turnutilsStunclient(host, srv.port);
      const sources = seen.slice(before);
      expect(sources.length).toBeGreaterThan(0);
      for (const f of found) {
        expect(f.address).toBe(host);
        expect(sources).toContainEqual(f);
      }
    });
  }

  it('counted every request and never saw malformed input', () => {
    const st = srv.stats();
    expect(st.responses).toBe(seen.length);
    expect(st.malformed).toBe(0);
  });
});

describe('STUN interop: our client against coturn (turnserver --stun-only)', () => {
  let dir: string;
  let child: ChildProcess | undefined;
  let output = '';
  let port: number;

  beforeAll(async () => {
    requireStunTools();
    dir = mkdtempSync(join(tmpdir(), 'pierce-coturn-'));
    port = await freePort(true);
    const conf = join(dir, 'turnserver.conf');
    writeFileSync(
      conf,
      [
        'listening-ip=127.0.0.1',
        'listening-ip=::1',
        `listening-port=${port}`,
        `alt-listening-port=${port + 1}`,
        'stun-only',
        'no-cli',
        'no-tls',
        'no-dtls',
        'log-file=stdout',
        'simple-log',
        `pidfile=${join(dir, 'turnserver.pid')}`,
        `userdb=${join(dir, 'turndb')}`,
        '',
      ].join('\n'),
    );
    child = spawn('turnserver', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'], env: labEnv() });
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
    const p = child;
    setTimeout(() => p.kill('SIGKILL'), 120_000).unref(); // bounded even if afterAll never runs
    // Ready when it answers.
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`turnserver exited (${child.exitCode ?? child.signalCode}):\n${output}`);
      try {
        await stunBinding({ host: '127.0.0.1' }, { host: '127.0.0.1', port }, { rto: 100, maxTransmits: 2 });
        break;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`turnserver did not answer STUN on 127.0.0.1:${port}: ${(e as Error).message}\n${output}`);
      }
    }
  });

  afterAll(async () => {
    const p = child;
    if (p && p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((resolve) => p.once('exit', resolve));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(t);
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('control: turnutils_stunclient gets its mapping from coturn', async () => {
    const found = await turnutilsStunclient('127.0.0.1', port);
    expect(found[0]!.address).toBe('127.0.0.1');
  });

  for (const host of ['127.0.0.1', '::1']) {
    it(`stunBinding over ${host}: XOR-MAPPED-ADDRESS is our socket, RFC 5780 attributes read`, async () => {
      const r = await stunBinding({ host }, { host, port }, 5000);
      expect([r.address, r.port, r.xor]).toEqual([host, r.local.port, true]);
      expect(r.responseOrigin).toEqual({ address: host, port });
      expect(r.otherAddress?.port).toBe(port + 1);
      expect(r.software ?? '').toMatch(/coturn/i);
    });
  }

  it('stunBinding on a caller-owned socket that other code also reads', async () => {
    const s = createSocket('udp4');
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    const others: Buffer[] = [];
    s.on('message', (m) => others.push(m)); // e.g. WireGuard on the same socket
    try {
      const r = await stunBinding(s, { host: '127.0.0.1', port }, { timeoutMs: 5000, software: 'pierce-test' });
      expect([r.address, r.port]).toEqual(['127.0.0.1', s.address().port]);
      const again = await stunBinding(s, { host: '127.0.0.1', port }, 5000);
      expect(again.port).toBe(r.port);
      expect(s.listenerCount('message')).toBe(1); // ours were removed
    } finally {
      s.close();
    }
  });
});
