/**
 * The built-in SSH server (`pierce up --ssh`) against Debian's real OpenSSH client, through
 * `pierce nc` as ProxyCommand, on loopback: control, relay and two nodes in this process.
 *
 *   ssh ── ProxyCommand pierce nc ── client node ══ WireGuard ══ host node :22 ── PTY / process
 *
 * The policy's `ssh` section lets alice's node log in to tag:server as any non-root user;
 * root is refused with the policy's reason. Proven: exec with stdout, stderr and exit status;
 * stdin and EOF; a real PTY (the size from pty-req, window-change, job control, Ctrl-C reaching
 * the foreground process group, a full-screen program's cursor addressing); the audit line and
 * control's audit log. Needs root (a local user is made for the run) and openssh-client.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pty from 'node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControl, type ControlServer } from '../../gateway/src/control/server.ts';
import { SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { startRelay, type RelayServer } from '../../gateway/src/relay/server.ts';
import { startNode, type RunningNode } from '../../gateway/src/node/daemon.ts';
import { createUser, removeAllUsers } from './lab/users.ts';

const PIERCE = fileURLToPath(new URL('../../gateway/bin/pierce.mjs', import.meta.url));

const POLICY = JSON.stringify({
  tagOwners: { 'tag:server': ['alice@x'] },
  acls: [{ action: 'accept', src: ['alice@x'], dst: ['tag:server:22'] }],
  ssh: [{ action: 'accept', src: ['alice@x'], dst: ['tag:server'], users: ['autogroup:nonroot'], acceptEnv: ['PIERCE_TEST_*'] }],
});

let dir: string;
let relay: RelayServer;
let control: ControlServer;
let host: RunningNode;
let client: RunningNode;
let user: string;
const hostLog: string[] = [];

/** Polls `cond` (sync or async) every 50 ms until it holds; rejects after `ms` naming `what`. */
async function waitUntil(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the built-in SSH server test needs root (it makes a local user and starts sessions as that user)');
  if (!existsSync('/usr/bin/ssh')) throw new Error('/usr/bin/ssh missing: apt-get install openssh-client');
  dir = mkdtempSync(join(tmpdir(), 'pierce-sshd-'));
  user = await createUser('unused-password');
  execFileSync('usermod', ['-s', '/bin/bash', user]);
  relay = await startRelay({ host: '127.0.0.1', port: 0 });
  control = await startControl({ store: new SqliteStore(join(dir, 'c.db')), policyText: POLICY, relays: { regions: [{ id: 1, code: 'r1', name: 'r1', nodes: [{ url: `http://127.0.0.1:${relay.port}` }] }] } });
  await control.state.createUser('alice@x');
  const hostKey = (await control.state.createAuthKey({ user: 'alice@x', tags: ['tag:server'] })).key;
  const clientKey = (await control.state.createAuthKey({ user: 'alice@x' })).key;
  host = await startNode({ controlUrl: control.url, stateDir: join(dir, 'host'), socketPath: join(dir, 'host.sock'), hostname: 'srv', authKey: hostKey, ssh: true, direct: { port: 0 }, log: (_l, m) => hostLog.push(m) });
  client = await startNode({ controlUrl: control.url, stateDir: join(dir, 'client'), socketPath: join(dir, 'client.sock'), hostname: 'laptop', authKey: clientKey, direct: { port: 0 }, log: () => {} });
  await host.engine.whenRunning();
  await client.engine.whenRunning();
  await waitUntil(() => client.engine.status().peers.some((p) => p.name === 'srv') && host.engine.control.view.ssh.length > 0 && hostLog.some((l) => l.includes('built-in server')), 15_000, 'mesh up with ssh rules');
}, 60_000);

afterAll(async () => {
  await client?.stop();
  await host?.stop();
  await control?.close();
  await relay?.close();
  await removeAllUsers();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function sshArgs(login: string, extra: string[] = []): string[] {
  return [
    '-F', '/dev/null',
    '-o', `ProxyCommand=${process.execPath} ${PIERCE} nc --socket ${join(dir, 'client.sock')} %h %p`,
    '-o', 'StrictHostKeyChecking=no',
    '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
    '-o', 'BatchMode=yes',
    '-o', 'ConnectTimeout=15',
    ...extra,
    `${login}@srv`,
  ];
}

function ssh(login: string, args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn('ssh', [...sshArgs(login), ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
    p.stdin.end(input);
  });
}

describe('pierce up --ssh with the real OpenSSH client', () => {
  it('runs a command as the policy allows: stdout, stderr, stdin with EOF, exit status, environment', async () => {
    const r = await ssh(user, ['-o', 'SetEnv=PIERCE_TEST_X=hello LD_PRELOAD=/nope', 'id -un; echo err >&2; wc -c; echo "$PIERCE_TEST_X/${LD_PRELOAD:-unset}/$SSH_CLIENT"; exit 7'], 'twelve bytes');
    expect(r.stderr).toContain('err');
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe(user);
    expect(lines[1]!.trim()).toBe('12');
    expect(lines[2]).toMatch(/^hello\/unset\/100\.64\.\d+\.\d+ \d+ 22$/);
    expect(r.code).toBe(7);
    expect(hostLog.some((l) => l.includes(`accepted laptop (alice@x)`) && l.includes(`as local user ${user}`))).toBe(true);
  }, 40_000);

  it('refuses a login the policy does not allow, saying why, and starts nothing', async () => {
    const r = await ssh('root', ['id']);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/does not allow .* to log in as root/);
    expect(r.stdout).toBe('');
    const nobody = await ssh('no-such-user-here', ['id']);
    expect(nobody.code).toBe(255);
    expect(nobody.stderr).toContain('there is no local user no-such-user-here');
  }, 40_000);

  it('gives a real PTY: size, window-change, job control, Ctrl-C to the foreground job, cursor addressing', async () => {
    const term = pty.spawn('ssh', [...sshArgs(user, ['-tt'])], { name: 'xterm-256color', cols: 91, rows: 27, env: { ...process.env, TERM: 'xterm-256color' } as Record<string, string> });
    let out = '';
    term.onData((d) => (out += d));
    let exit: { exitCode: number } | undefined;
    term.onExit((e) => (exit = e));
    try {
      const expectOut = (re: RegExp, what: string) => waitUntil(() => re.test(out), 20_000, `${what}; output so far: ${JSON.stringify(out.slice(-400))}`);
      term.write("PS1='pp> '; export PS1\r");
      await expectOut(/pp> /, 'a prompt');
      term.write('echo "T=$TERM"; stty size; tty\r');
      await expectOut(/T=xterm-256color[\s\S]*27 91[\s\S]*\/dev\/pts\/\d+/, 'TERM, size and tty');
      term.resize(120, 40);
      await new Promise((r) => setTimeout(r, 300));
      term.write('stty size\r');
      await expectOut(/40 120/, 'the new size after window-change');
      term.write('case $- in *m*) echo JOBCTL-ON;; esac; sleep 300 & jobs\r');
      await expectOut(/JOBCTL-ON[\s\S]*\[1\]\+\s+Running\s+sleep 300/, 'job control');
      term.write('kill %1; sleep 200\r');
      await new Promise((r) => setTimeout(r, 500));
      term.write('\x03');
      term.write('echo "after-ctrl-c status=$?"\r');
      await expectOut(/after-ctrl-c status=130/, 'Ctrl-C interrupting the foreground sleep');
      term.write('tput cup 5 10; echo MARK\r');
      await expectOut(/\x1b\[6;11HMARK/, "tput's cursor addressing");
      term.write('exit 5\r');
      await waitUntil(() => exit !== undefined, 15_000, 'ssh to exit');
      expect(exit!.exitCode).toBe(5);
    } finally {
      if (!exit) term.kill();
    }
    expect(hostLog.some((l) => /session of laptop .* ended: exit 5/.test(l))).toBe(true);
  }, 90_000);

  it('reports every accept, refusal and end to control\'s audit log', async () => {
    const key = await apiKey();
    let events: { action: string; actor: string; target: string; detail: unknown }[] = [];
    await waitUntil(async () => {
      const res = await fetch(`${control.url}/api/v1/audit?kind=ssh&limit=100`, { headers: { Authorization: `Bearer ${key}` } });
      events = ((await res.json()) as { events: typeof events }).events ?? [];
      return ['accept', 'reject', 'end'].every((a) => events.some((e) => e.action === a));
    }, 10_000, 'accept, reject and end events in the audit log');
    expect(events.every((e) => e.actor.includes('srv'))).toBe(true);
    expect(events.some((e) => e.action === 'reject' && JSON.stringify(e).includes('root'))).toBe(true);
  });
});

async function apiKey(): Promise<string> {
  const { createApiKey } = await import('../../gateway/src/control/state.ts');
  return (await createApiKey(control.state.store, Date.now(), 'test')).key;
}
