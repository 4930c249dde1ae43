/**
 * Network-namespace interop lab: two Linux network namespaces joined by a veth pair, real
 * wireguard-go peers, the kernel's own ICMP stack, and helpers to run programs inside.
 *
 *   ns A (<prefix>-a)                      ns B (<prefix>-b)
 *   ┌──────────────────────┐    veth      ┌──────────────────────┐
 *   │ lo                   │◄────────────►│ lo                   │
 *   │ veth0 10.200.0.1/24  │              │ veth0 10.200.0.2/24  │
 *   │       fd00:200::1/64 │              │       fd00:200::2/64 │
 *   │ (tunnel, e.g. pierce │              │ (tunnel, e.g. wg-go  │
 *   │  or wireguard-go)    │              │  10.99.0.2/24)       │
 *   └──────────────────────┘              └──────────────────────┘
 *
 * Rules the lab keeps:
 * - Traffic stays on loopback or inside namespaces made here (10.0.0.0/8, fd00::/8 only).
 * - Names are unique per process: namespaces `plab-<pid>-<run>-<n>-{a,b}`, wireguard-go
 *   interfaces `pw<pid36>-<run2><n36>` (≤ 15 chars). wireguard-go's control socket lives in
 *   /var/run/wireguard/<ifname>.sock, shared by every namespace, hence unique interface names.
 * - Everything made is tracked and removed by `cleanupAll()` (call it from afterAll); a
 *   process 'exit' handler and SIGINT/SIGTERM handlers do the same synchronously, and
 *   `cleanupStale()` removes what a crashed earlier run (whose pid is gone) left behind.
 * - Processes are ended by pid only: our children, and processes inside our namespaces.
 *
 * Needs root and: iproute2 (`ip`), wireguard-tools (`wg`), wireguard-go, iputils-ping.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// ---------------------------------------------------------------------------------------------
// Naming

const NS_PREFIX = 'plab';
const IF_PREFIX = 'pw';
const RUN_ID = randomBytes(2).toString('hex'); // 4 hex chars; distinguishes module instances
const PID36 = process.pid.toString(36);
const WG_SOCKET_DIR = '/var/run/wireguard';
let counter = 0;

/** A fresh, unique interface name for a wireguard-go tunnel (≤ 15 chars). */
export function newIfname(): string {
  const name = `${IF_PREFIX}${PID36}-${RUN_ID.slice(0, 2)}${(counter++).toString(36)}`;
  if (name.length > 15) throw new Error(`interface name too long: ${name}`);
  return name;
}

function newNamespaceBase(): string {
  return `${NS_PREFIX}-${process.pid}-${RUN_ID}-${counter++}`;
}

// ---------------------------------------------------------------------------------------------
// Preflight

const INSTALL_HINT =
  'apt-get install -y --no-install-recommends wireguard-go wireguard-tools iproute2 iputils-ping';

/** PATH for every command the lab runs: the caller's, plus the sbin dirs where `ip` lives. */
const LAB_PATH = [...new Set([...(process.env.PATH ?? '').split(':'), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'])]
  .filter((d) => d !== '')
  .join(':');

function labEnv(extra?: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...process.env, ...extra, PATH: LAB_PATH };
}

function findInPath(cmd: string): string | undefined {
  for (const d of LAB_PATH.split(':')) {
    const p = join(d, cmd);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      /* keep looking */
    }
  }
  return undefined;
}

/** What stops the lab from running here (not root, tools missing); empty when it can run. */
export function labProblems(): string[] {
  const problems: string[] = [];
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    problems.push('must run as root (network namespaces, TUN devices)');
  }
  const tools: Array<[string, string]> = [
    ['ip', 'iproute2'],
    ['wg', 'wireguard-tools'],
    ['wireguard-go', 'wireguard-go'],
    ['ping', 'iputils-ping'],
  ];
  for (const [cmd, pkg] of tools) {
    if (!findInPath(cmd)) problems.push(`\`${cmd}\` not found (Debian package ${pkg})`);
  }
  if (!existsSync('/dev/net/tun')) problems.push('/dev/net/tun missing (TUN support needed by wireguard-go)');
  return problems;
}

/**
 * Throws (never skips) when the lab cannot run here, saying what to install. Use it as
 * `beforeEach(requireLab)` so that every test of the file FAILS with this message, and guard
 * the lab setup in beforeAll with `labProblems().length === 0`.
 */
export function requireLab(): void {
  const problems = labProblems();
  if (problems.length > 0) {
    throw new Error(
      `interop lab unavailable:\n  - ${problems.join('\n  - ')}\n` +
        `Install with: ${INSTALL_HINT}\nand run the tests as root (see .ci/run).`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Running commands

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to stdin, then stdin is closed. */
  input?: string;
  /** Killed with SIGKILL after this long (default 15 s). */
  timeoutMs?: number;
  /** Throw when the exit code is not 0 (default true). */
  check?: boolean;
  env?: NodeJS.ProcessEnv;
}

/** Runs a command to completion on the host (root namespace). */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: labEnv(opts.env),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const res: ExecResult = { code, signal, stdout, stderr };
      if (timedOut) {
        reject(new Error(`${cmd} ${args.join(' ')}: timed out after ${timeoutMs} ms\n${stdout}${stderr}`));
      } else if ((opts.check ?? true) && code !== 0) {
        reject(new Error(`${cmd} ${args.join(' ')}: exit ${code ?? signal}\n${stdout}${stderr}`));
      } else {
        resolve(res);
      }
    });
    child.stdin.on('error', () => {
      /* EPIPE when the command does not read stdin */
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command to completion inside namespace `ns`. */
export function execIn(ns: string, cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<ExecResult> {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], opts);
}

// ---------------------------------------------------------------------------------------------
// Long-running children

export interface OutputLine {
  stream: 'stdout' | 'stderr';
  text: string;
  /** Date.now() when the line arrived. */
  at: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WaitForLineOptions {
  /** Only consider lines with index ≥ this (see `lineCount()`); default 0 (all lines). */
  from?: number;
  stream?: 'stdout' | 'stderr';
}

export interface ChildHandle {
  readonly name: string;
  readonly pid: number;
  /** Every complete output line so far, both streams, in arrival order. */
  readonly lines: readonly OutputLine[];
  stdoutLines(): string[];
  stderrLines(): string[];
  /** All output as text, each line prefixed with its stream; for assertion messages. */
  output(): string;
  lineCount(): number;
  /** Resolves with the match of the first line matching `re`; rejects on timeout or exit. */
  waitForLine(re: RegExp, timeoutMs: number, opts?: WaitForLineOptions): Promise<RegExpMatchArray>;
  /** Settles when the process has exited (never rejects). */
  readonly exit: Promise<ExitInfo>;
  readonly exited: boolean;
  /** Waits for exit; on timeout kills the process and rejects with its output. */
  waitForExit(timeoutMs: number): Promise<ExitInfo>;
  signal(sig: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL after `graceMs` (default 3000); resolves once it has exited. */
  kill(graceMs?: number): Promise<ExitInfo>;
}

const children = new Set<ChildHandle & { proc: ChildProcess }>();

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  /** Label for messages; defaults to the command's base name. */
  name?: string;
}

/** Starts `cmd args` inside namespace `ns` (via `ip netns exec`, which execs the command). */
export function spawnIn(ns: string, cmd: string, args: readonly string[], opts: SpawnOptions = {}): ChildHandle {
  return spawnChild('ip', ['netns', 'exec', ns, cmd, ...args], opts.name ?? `${cmd.split('/').pop()}@${ns}`, opts.env);
}

function spawnChild(cmd: string, args: readonly string[], name: string, env?: NodeJS.ProcessEnv): ChildHandle {
  installExitHandlers();
  const proc = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: labEnv(env),
  });
  const lines: OutputLine[] = [];
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };
  const attach = (stream: 'stdout' | 'stderr', r: NodeJS.ReadableStream | null): void => {
    if (!r) return;
    let partial = '';
    r.setEncoding('utf8');
    r.on('data', (d: string) => {
      partial += d;
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const text of parts) lines.push({ stream, text: text.replace(/\r$/, ''), at: Date.now() });
      if (parts.length > 0) notify();
    });
    r.on('end', () => {
      if (partial) lines.push({ stream, text: partial, at: Date.now() });
      partial = '';
      notify();
    });
  };
  attach('stdout', proc.stdout);
  attach('stderr', proc.stderr);

  let exited = false;
  let exitInfo: ExitInfo | undefined;
  const exit = new Promise<ExitInfo>((resolve) => {
    proc.on('error', (err) => {
      lines.push({ stream: 'stderr', text: `[lab] spawn error: ${err.message}`, at: Date.now() });
      exited = true;
      exitInfo = { code: null, signal: null };
      resolve(exitInfo);
    });
    // 'close' fires after the stdio streams ended, so all output is in `lines`.
    proc.on('close', (code, signal) => {
      exited = true;
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  }).finally(() => {
    children.delete(handle);
    notify();
  });

  const output = (): string => lines.map((l) => `[${name} ${l.stream}] ${l.text}`).join('\n');

  const handle: ChildHandle & { proc: ChildProcess } = {
    name,
    proc,
    get pid() {
      return proc.pid ?? -1;
    },
    lines,
    stdoutLines: () => lines.filter((l) => l.stream === 'stdout').map((l) => l.text),
    stderrLines: () => lines.filter((l) => l.stream === 'stderr').map((l) => l.text),
    output,
    lineCount: () => lines.length,
    get exited() {
      return exited;
    },
    exit,
    waitForLine(re, timeoutMs, o = {}) {
      return new Promise((resolve, reject) => {
        let next = o.from ?? 0;
        const check = (): boolean => {
          for (; next < lines.length; next++) {
            const l = lines[next]!;
            if (o.stream && l.stream !== o.stream) continue;
            const m = l.text.match(re);
            if (m) {
              done();
              resolve(m);
              return true;
            }
          }
          if (exited) {
            done();
            reject(new Error(`${name} exited (${JSON.stringify(exitInfo)}) before printing a line matching ${re}:\n${output()}`));
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${name}: no line matching ${re} within ${timeoutMs} ms:\n${output()}`));
        }, timeoutMs);
        const waiter = (): void => void check();
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(waiter);
        };
        waiters.add(waiter);
        check();
      });
    },
    async waitForExit(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs)));
      const res = await Promise.race([exit, timeout]);
      clearTimeout(timer);
      if (res === 'timeout') {
        await handle.kill(500);
        throw new Error(`${name} did not exit within ${timeoutMs} ms (killed):\n${output()}`);
      }
      return res;
    },
    signal(sig) {
      if (!exited && proc.pid !== undefined) {
        try {
          process.kill(proc.pid, sig);
        } catch {
          /* already gone */
        }
      }
    },
    async kill(graceMs = 3000) {
      if (exited) return exit;
      handle.signal('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<'grace'>((r) => (timer = setTimeout(() => r('grace'), graceMs)));
      const res = await Promise.race([exit, grace]);
      clearTimeout(timer);
      if (res === 'grace') {
        handle.signal('SIGKILL');
        return exit;
      }
      return res;
    },
  };
  children.add(handle);
  return handle;
}

/** Kills every child still running (SIGTERM, then SIGKILL); namespaces stay. For afterEach. */
export async function cleanupChildren(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill()));
  removeOwnWgSockets(false);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined> | T | undefined, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Namespaces

export interface Namespace {
  name: string;
  /** The veth end inside this namespace. */
  veth: string;
  /** Underlay addresses on the veth (no prefix length). */
  ipv4: string;
  ipv6: string;
}

export interface NamespacePair {
  a: Namespace;
  b: Namespace;
  exec(ns: string, cmd: string, args: readonly string[], opts?: RunOptions): Promise<ExecResult>;
  spawn(ns: string, cmd: string, args: readonly string[], opts?: SpawnOptions): ChildHandle;
  /** Kills processes inside both namespaces and deletes them. */
  destroy(): Promise<void>;
}

export interface NamespacePairOptions {
  /** Underlay IPv4 /24 prefix, e.g. '10.200.0' (A gets .1, B gets .2). */
  ipv4Prefix24?: string;
  /** Underlay IPv6 /64 prefix, e.g. 'fd00:200::' (A gets ::1, B gets ::2). */
  ipv6Prefix64?: string;
}

const namespaces = new Set<string>();

/** Two fresh namespaces joined by a veth pair, lo up, IPv4 + IPv6 underlay reachable. */
export async function createNamespacePair(opts: NamespacePairOptions = {}): Promise<NamespacePair> {
  requireLab();
  installExitHandlers();
  const base = newNamespaceBase();
  const v4 = opts.ipv4Prefix24 ?? '10.200.0';
  const v6 = opts.ipv6Prefix64 ?? 'fd00:200::';
  const a: Namespace = { name: `${base}-a`, veth: 'veth0', ipv4: `${v4}.1`, ipv6: `${v6}1` };
  const b: Namespace = { name: `${base}-b`, veth: 'veth0', ipv4: `${v4}.2`, ipv6: `${v6}2` };
  const pair: NamespacePair = {
    a,
    b,
    exec: execIn,
    spawn: spawnIn,
    destroy: async () => {
      await deleteNamespace(a.name);
      await deleteNamespace(b.name);
    },
  };
  try {
    for (const ns of [a, b]) {
      namespaces.add(ns.name);
      await run('ip', ['netns', 'add', ns.name]);
    }
    // Both ends are created directly inside their namespaces: no name clash in the root one.
    await run('ip', ['link', 'add', a.veth, 'netns', a.name, 'type', 'veth', 'peer', 'name', b.veth, 'netns', b.name]);
    for (const ns of [a, b]) {
      const ip = (...args: string[]): Promise<ExecResult> => run('ip', ['-n', ns.name, ...args]);
      await ip('link', 'set', 'lo', 'up');
      await ip('addr', 'add', `${ns.ipv4}/24`, 'dev', ns.veth);
      await ip('-6', 'addr', 'add', `${ns.ipv6}/64`, 'dev', ns.veth, 'nodad');
      await ip('link', 'set', ns.veth, 'up');
    }
    // Wait until the veth carries traffic both ways and for both families.
    for (const [from, to] of [[a, b.ipv4], [a, b.ipv6], [b, a.ipv4], [b, a.ipv6]] as const) {
      await waitFor(`underlay ${from.name} -> ${to}`, 10_000, async () => ((await ping(from.name, to, { count: 1, timeoutS: 1 })).ok ? true : undefined));
    }
  } catch (e) {
    await pair.destroy().catch(() => undefined);
    throw e;
  }
  return pair;
}

async function deleteNamespace(name: string): Promise<void> {
  await killNamespacePids(name);
  await run('ip', ['netns', 'del', name], { check: false });
  namespaces.delete(name);
}

async function killNamespacePids(name: string): Promise<void> {
  const res = await run('ip', ['netns', 'pids', name], { check: false });
  const pids = parsePids(res.stdout);
  if (pids.length === 0) return;
  for (const p of pids) safeKill(p, 'SIGTERM');
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline && pids.some(alive)) await sleep(50);
  for (const p of pids) if (alive(p)) safeKill(p, 'SIGKILL');
}

function parsePids(text: string): number[] {
  return text
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number)
    .filter((p) => p !== process.pid);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function safeKill(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}

// ---------------------------------------------------------------------------------------------
// ping (iputils)

export interface PingResult {
  ok: boolean;
  transmitted: number;
  received: number;
  /** Round-trip times of the replies, in ms. */
  rtts: number[];
  output: string;
}

export interface PingOptions {
  count?: number;
  /** Per-reply wait (`-W`), seconds; default 2. */
  timeoutS?: number;
  /** Seconds between echoes (`-i`); default 1 (iputils default). */
  intervalS?: number;
}

/** Kernel ping from inside `ns`; IPv6 when `addr` contains ':'. Never throws for lost echoes. */
export async function ping(ns: string, addr: string, opts: PingOptions = {}): Promise<PingResult> {
  const count = opts.count ?? 3;
  const timeoutS = opts.timeoutS ?? 2;
  const intervalS = opts.intervalS ?? 1;
  const deadline = Math.ceil(count * intervalS + timeoutS);
  const args = [addr.includes(':') ? '-6' : '-4', '-n', '-c', String(count), '-i', String(intervalS), '-W', String(timeoutS), '-w', String(deadline), addr];
  const res = await execIn(ns, 'ping', args, { check: false, timeoutMs: (deadline + 5) * 1000 });
  const text = res.stdout + res.stderr;
  return { ...parsePingOutput(text), ok: res.code === 0, output: text };
}

/** Parses iputils ping output (reply lines and the statistics line). */
export function parsePingOutput(text: string): Omit<PingResult, 'ok' | 'output'> {
  const rtts = [...text.matchAll(/bytes from .*time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  const stats = text.match(/(\d+) packets transmitted, (\d+) received/);
  return {
    transmitted: stats ? Number(stats[1]) : 0,
    received: stats ? Number(stats[2]) : rtts.length,
    rtts,
  };
}

// ---------------------------------------------------------------------------------------------
// Keys (made by the real `wg` tool)

export interface KeyPair {
  privateKey: string;
  publicKey: string;
}

export async function genKey(): Promise<string> {
  return (await run('wg', ['genkey'])).stdout.trim();
}

export async function pubKey(privateKey: string): Promise<string> {
  return (await run('wg', ['pubkey'], { input: `${privateKey}\n` })).stdout.trim();
}

export async function genKeyPair(): Promise<KeyPair> {
  const privateKey = await genKey();
  return { privateKey, publicKey: await pubKey(privateKey) };
}

export async function genPsk(): Promise<string> {
  return (await run('wg', ['genpsk'])).stdout.trim();
}

// ---------------------------------------------------------------------------------------------
// Temp files and wg-quick config

let tempDir: string | undefined;

/** Writes `content` to a file (mode 0600) in the lab's temp dir; returns its path. */
export function writeTempFile(name: string, content: string): string {
  tempDir ??= mkdtempSync(join(tmpdir(), `${NS_PREFIX}-${process.pid}-`));
  const path = join(tempDir, `${counter++}-${name}`);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

export interface WgPeer {
  publicKey: string;
  presharedKey?: string;
  /** host:port, IPv6 in brackets. */
  endpoint?: string;
  allowedIPs: string[];
  persistentKeepalive?: number;
}

export interface WgQuickConfig {
  privateKey: string;
  /** Tunnel addresses with prefix length, e.g. ['10.99.0.1/24', 'fd99::1/64']. */
  addresses?: string[];
  listenPort?: number;
  peers: WgPeer[];
}

/** wg-quick syntax ([Interface] with Address); `wg setconf` syntax when `addresses` is absent. */
export function formatWgQuick(c: WgQuickConfig): string {
  const out = ['[Interface]', `PrivateKey = ${c.privateKey}`];
  if (c.addresses && c.addresses.length > 0) out.push(`Address = ${c.addresses.join(', ')}`);
  if (c.listenPort !== undefined) out.push(`ListenPort = ${c.listenPort}`);
  for (const p of c.peers) {
    out.push('', '[Peer]', `PublicKey = ${p.publicKey}`);
    if (p.presharedKey) out.push(`PresharedKey = ${p.presharedKey}`);
    if (p.endpoint) out.push(`Endpoint = ${p.endpoint}`);
    out.push(`AllowedIPs = ${p.allowedIPs.join(', ')}`);
    if (p.persistentKeepalive) out.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  }
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// wireguard-go

export interface WgPeerStatus {
  publicKey: string;
  presharedKey: string | null;
  endpoint: string | null;
  allowedIPs: string[];
  /** Unix seconds of the latest handshake; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepalive: number | null;
}

export interface WgStatus {
  privateKey: string;
  publicKey: string;
  listenPort: number;
  fwmark: string;
  peers: WgPeerStatus[];
}

/** Parses `wg show IF dump` (tab separated; first line the interface, then one per peer). */
export function parseWgDump(text: string): WgStatus {
  const rows = text
    .trim()
    .split('\n')
    .map((l) => l.split('\t'));
  const iface = rows[0];
  if (!iface || iface.length < 4) throw new Error(`unexpected wg dump: ${JSON.stringify(text)}`);
  const none = (s: string | undefined): string | null => (s === undefined || s === '(none)' || s === 'off' ? null : s);
  return {
    privateKey: iface[0]!,
    publicKey: iface[1]!,
    listenPort: Number(iface[2]),
    fwmark: iface[3]!,
    peers: rows.slice(1).map((r) => {
      if (r.length < 8) throw new Error(`unexpected wg dump peer line: ${JSON.stringify(r.join('\t'))}`);
      return {
        publicKey: r[0]!,
        presharedKey: none(r[1]),
        endpoint: none(r[2]),
        allowedIPs: r[3] === '(none)' ? [] : r[3]!.split(','),
        latestHandshake: Number(r[4]),
        rxBytes: Number(r[5]),
        txBytes: Number(r[6]),
        persistentKeepalive: none(r[7]) === null ? null : Number(r[7]),
      };
    }),
  };
}

export interface WireguardGoOptions {
  ns: string;
  /** Defaults to `newIfname()`. */
  ifname?: string;
  /** Defaults to a fresh `wg genkey`. */
  privateKey?: string;
  /** 0 or absent: wireguard-go picks one (read back into `listenPort`). */
  listenPort?: number;
  peers?: WgPeer[];
  /** Tunnel addresses with prefix, e.g. ['10.99.0.2/24', 'fd99::2/64']. */
  addresses?: string[];
}

export interface WireguardGo {
  ns: string;
  ifname: string;
  privateKey: string;
  publicKey: string;
  /** The UDP port wireguard-go actually listens on. */
  listenPort: number;
  process: ChildHandle;
  /** Adds or updates a peer (`wg set IF peer …`). */
  setPeer(peer: WgPeer): Promise<void>;
  removePeer(publicKey: string): Promise<void>;
  show(): Promise<WgStatus>;
  peer(publicKey: string): Promise<WgPeerStatus | undefined>;
  /** Waits until the peer's latest handshake is > `newerThan` (default 0); returns it. */
  waitForHandshake(publicKey: string, opts?: { newerThan?: number; timeoutMs?: number }): Promise<number>;
  stop(): Promise<void>;
}

/** Starts wireguard-go in `ns` (foreground child), configures it with `wg setconf`, brings it up. */
export async function startWireguardGo(opts: WireguardGoOptions): Promise<WireguardGo> {
  const ns = opts.ns;
  const ifname = opts.ifname ?? newIfname();
  if (ifname.length > 15) throw new Error(`interface name too long (max 15): ${ifname}`);
  const privateKey = opts.privateKey ?? (await genKey());
  const publicKey = await pubKey(privateKey);
  const sock = join(WG_SOCKET_DIR, `${ifname}.sock`);
  const proc = spawnIn(ns, 'wireguard-go', [ifname], {
    name: `wireguard-go ${ifname}@${ns}`,
    env: { WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'verbose' },
  });
  const wg = (...args: string[]): Promise<ExecResult> => execIn(ns, 'wg', args);
  try {
    await waitFor(`${sock}`, 10_000, () => {
      if (proc.exited) throw new Error(`wireguard-go exited:\n${proc.output()}`);
      return existsSync(sock) ? true : undefined;
    }, 25);
    const conf = writeTempFile(`${ifname}.conf`, formatWgQuick({ privateKey, listenPort: opts.listenPort || undefined, peers: opts.peers ?? [] }));
    await wg('setconf', ifname, conf);
    for (const addr of opts.addresses ?? []) {
      await execIn(ns, 'ip', addr.includes(':') ? ['-6', 'addr', 'add', addr, 'dev', ifname, 'nodad'] : ['addr', 'add', addr, 'dev', ifname]);
    }
    await execIn(ns, 'ip', ['link', 'set', ifname, 'up']);
  } catch (e) {
    await proc.kill();
    throw new Error(`starting wireguard-go ${ifname} in ${ns}: ${(e as Error).message}\n${proc.output()}`);
  }

  const show = async (): Promise<WgStatus> => parseWgDump((await wg('show', ifname, 'dump')).stdout);
  const handle: WireguardGo = {
    ns,
    ifname,
    privateKey,
    publicKey,
    listenPort: (await show()).listenPort,
    process: proc,
    async setPeer(p) {
      const args = ['set', ifname, 'peer', p.publicKey];
      if (p.presharedKey) args.push('preshared-key', writeTempFile('psk', `${p.presharedKey}\n`));
      if (p.endpoint) args.push('endpoint', p.endpoint);
      args.push('allowed-ips', p.allowedIPs.join(','));
      if (p.persistentKeepalive !== undefined) args.push('persistent-keepalive', p.persistentKeepalive ? String(p.persistentKeepalive) : 'off');
      await wg(...args);
    },
    async removePeer(pub) {
      await wg('set', ifname, 'peer', pub, 'remove');
    },
    show,
    async peer(pub) {
      return (await show()).peers.find((p) => p.publicKey === pub);
    },
    async waitForHandshake(pub, o = {}) {
      const newerThan = o.newerThan ?? 0;
      return waitFor(`handshake with ${pub} on ${ifname} newer than ${newerThan}`, o.timeoutMs ?? 10_000, async () => {
        const t = (await handle.peer(pub))?.latestHandshake ?? 0;
        return t > newerThan ? t : undefined;
      });
    },
    async stop() {
      await proc.kill();
      removeWgSocket(ifname);
    },
  };
  return handle;
}

function removeWgSocket(ifname: string): void {
  rmSync(join(WG_SOCKET_DIR, `${ifname}.sock`), { force: true });
}

/** Removes sockets of our interfaces; with `all` false only those no live child serves. */
function removeOwnWgSockets(all: boolean): void {
  if (!existsSync(WG_SOCKET_DIR)) return;
  const live = new Set<string>();
  if (!all) {
    for (const c of children) {
      const m = c.name.match(/^wireguard-go (\S+)@/);
      if (m) live.add(m[1]!);
    }
  }
  const own = `${IF_PREFIX}${PID36}-${RUN_ID.slice(0, 2)}`;
  for (const f of readdirSync(WG_SOCKET_DIR)) {
    if (!f.startsWith(own) || !f.endsWith('.sock')) continue;
    if (!live.has(f.slice(0, -'.sock'.length))) rmSync(join(WG_SOCKET_DIR, f), { force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Cleanup

/** Kills all children, kills processes inside our namespaces, deletes them, removes temp files. */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...children].map((c) => c.kill()));
  for (const ns of [...namespaces]) await deleteNamespace(ns);
  removeOwnWgSockets(true);
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  tempDir = undefined;
}

/** Synchronous last-resort cleanup for process exit and signals. */
function cleanupAllSync(): void {
  for (const c of children) {
    if (c.proc.pid !== undefined) safeKill(c.proc.pid, 'SIGKILL');
  }
  for (const ns of namespaces) {
    try {
      for (const p of parsePids(execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], env: labEnv() }))) safeKill(p, 'SIGKILL');
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', env: labEnv() });
    } catch {
      /* best effort */
    }
  }
  namespaces.clear();
  try {
    removeOwnWgSockets(true);
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  } catch {
    /* best effort */
  }
}

let handlersInstalled = false;
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  cleanupStale();
  process.once('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanupAllSync();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig); // re-raise with the default action
    };
    process.on(sig, onSignal);
  }
}

/**
 * Removes what an earlier run that crashed left behind: namespaces `plab-<pid>-…`, temp dirs
 * and wireguard-go sockets/processes of interfaces `pw<pid36>-…`, whose <pid> is no longer
 * alive. Things of live processes (e.g. a concurrent run) are left alone.
 */
export function cleanupStale(): void {
  const deadOwner = (pid: number): boolean => pid !== process.pid && !alive(pid);
  // Namespaces.
  let list = '';
  try {
    list = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', env: labEnv() });
  } catch {
    /* no netns dir yet */
  }
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = name.match(new RegExp(`^${NS_PREFIX}-(\\d+)-`));
    if (!m || !deadOwner(Number(m[1]))) continue;
    try {
      for (const p of parsePids(execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', env: labEnv() }))) safeKill(p, 'SIGKILL');
      execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore', env: labEnv() });
    } catch {
      /* best effort */
    }
  }
  // wireguard-go processes for our interface names (e.g. in a namespace already unmounted).
  const ifRe = new RegExp(`^${IF_PREFIX}([0-9a-z]+)-[0-9a-f]{2}[0-9a-z]+$`);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (!argv[0]?.endsWith('wireguard-go')) continue;
      const m = (argv[1] ?? '').match(ifRe);
      if (m && deadOwner(parseInt(m[1]!, 36))) safeKill(Number(entry), 'SIGKILL');
    } catch {
      /* raced with exit */
    }
  }
  // Sockets.
  if (existsSync(WG_SOCKET_DIR)) {
    for (const f of readdirSync(WG_SOCKET_DIR)) {
      const m = f.replace(/\.sock$/, '').match(ifRe);
      if (m && deadOwner(parseInt(m[1]!, 36))) rmSync(join(WG_SOCKET_DIR, f), { force: true });
    }
  }
  // Temp dirs.
  for (const f of readdirSync(tmpdir())) {
    const m = f.match(new RegExp(`^${NS_PREFIX}-(\\d+)-`));
    if (m && deadOwner(Number(m[1]))) rmSync(join(tmpdir(), f), { recursive: true, force: true });
  }
}
