/**
 * The built-in SSH server (`pierce up --ssh`) against OpenSSH's sshd on the same node, over the
 * same mesh path, with the same client (Debian's `ssh` through `pierce nc`). Control, relay and
 * two nodes run in this process on loopback; the host node answers tailnet port 22 itself and
 * forwards tailnet port 2222 to an sshd on 127.0.0.1 (public key login as root).
 *
 *   connect   `ssh host true`: process start, key exchange, authentication, exec, exit (median)
 *   exec bulk `ssh host 'head -c MB /dev/zero'` into a pipe (no PTY), MB/s
 *   pty bulk  `ssh -tt host 'head -c MB/2 /dev/zero | base64 -w 0'`, MB/s of terminal output
 *
 * Ratios are built-in / sshd. Needs root and openssh-server.
 *
 *   npx tsx test/bench/ssh-server.ts [--runs N] [--mb N] [--json]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startControl } from '../../gateway/src/control/server.ts';
import { SqliteStore } from '../../gateway/src/store/sqlite.ts';
import { startRelay } from '../../gateway/src/relay/server.ts';
import { startNode } from '../../gateway/src/node/daemon.ts';
import { benchArgs } from './args.ts';

const args = benchArgs('npx tsx test/bench/ssh-server.ts [--runs N] [--mb N] [--json]');
const RUNS = args.num('--runs', 5);
const MB = args.num('--mb', 64);
const PIERCE = fileURLToPath(new URL('../../gateway/bin/pierce.mjs', import.meta.url));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const progress = (m: string): void => void process.stderr.write(`ssh-server bench: ${m}\n`);

if (process.getuid?.() !== 0) {
  console.error('ssh-server bench: needs root (sshd, sessions as root)');
  process.exit(1);
}

function run(cmd: string, argv: string[]): Promise<{ code: number | null; bytes: number; ms: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let bytes = 0;
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (bytes += d.length));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, bytes, ms: performance.now() - t0, stderr }));
  });
}

const dir = mkdtempSync(join(tmpdir(), 'pierce-bench-sshd-'));
const cleanup: (() => Promise<void> | void)[] = [];
try {
  // sshd on loopback, public key login as root.
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'id.pub')));
  mkdirSync('/run/sshd', { recursive: true });
  const sshdPort = 20000 + (process.pid % 20000);
  writeFileSync(
    join(dir, 'sshd_config'),
    [`ListenAddress 127.0.0.1:${sshdPort}`, `HostKey ${join(dir, 'host_key')}`, `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`, 'PermitRootLogin prohibit-password', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no', 'PidFile none', 'UseDNS no', 'PrintMotd no', ''].join('\n'),
  );
  const sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  cleanup.push(() => void sshd.kill());
  await new Promise<void>((resolve, reject) => {
    let log = '';
    sshd.stderr.on('data', (d) => {
      log += d;
      if (log.includes('Server listening')) resolve();
    });
    sshd.on('exit', () => reject(new Error(`sshd exited: ${log}`)));
  });

  const relay = await startRelay({ host: '127.0.0.1', port: 0 });
  cleanup.push(() => relay.close());
  const policy = JSON.stringify({
    tagOwners: { 'tag:server': ['u@x'] },
    acls: [{ action: 'accept', src: ['u@x'], dst: ['tag:server:22,2222'] }],
    ssh: [{ action: 'accept', src: ['u@x'], dst: ['tag:server'], users: ['root'] }],
  });
  const control = await startControl({ store: new SqliteStore(join(dir, 'c.db')), policyText: policy, relays: { regions: [{ id: 1, code: 'r1', name: 'r1', nodes: [{ url: `http://127.0.0.1:${relay.port}` }] }] } });
  cleanup.push(() => control.close());
  await control.state.createUser('u@x');
  const quiet = () => {};
  const host = await startNode({ controlUrl: control.url, stateDir: join(dir, 'host'), socketPath: join(dir, 'host.sock'), hostname: 'srv', authKey: (await control.state.createAuthKey({ user: 'u@x', tags: ['tag:server'] })).key, ssh: true, forwards: [`2222=127.0.0.1:${sshdPort}`], direct: { port: 0 }, log: quiet });
  cleanup.push(() => host.stop());
  const client = await startNode({ controlUrl: control.url, stateDir: join(dir, 'client'), socketPath: join(dir, 'client.sock'), hostname: 'laptop', authKey: (await control.state.createAuthKey({ user: 'u@x' })).key, direct: { port: 0 }, log: quiet });
  cleanup.push(() => client.stop());
  await host.engine.whenRunning();
  await client.engine.whenRunning();
  for (let i = 0; i < 200 && !(client.engine.status().peers.some((p) => p.name === 'srv') && host.engine.control.view.ssh.length > 0); i++) await new Promise((r) => setTimeout(r, 50));

  const base = ['-F', '/dev/null', '-o', `ProxyCommand=${process.execPath} ${PIERCE} nc --socket ${join(dir, 'client.sock')} %h %p`, '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=${join(dir, 'known_hosts')}`, '-o', 'BatchMode=yes'];
  const servers = {
    builtin: [...base, '-p', '22', 'root@srv'],
    sshd: [...base, '-i', join(dir, 'id'), '-p', '2222', 'root@srv'],
  };
  const results: Record<string, { connectMs: number; execMBps: number; ptyMBps: number }> = {};
  for (const [name, argv] of Object.entries(servers)) {
    progress(`${name}: warm-up`);
    const warm = await run('ssh', [...argv, 'true']);
    if (warm.code !== 0) throw new Error(`${name}: ssh failed: ${warm.stderr}`);
    const connect: number[] = [];
    const exec: number[] = [];
    const pty: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      connect.push((await run('ssh', [...argv, 'true'])).ms);
      const e = await run('ssh', [...argv, `head -c ${MB * 1_000_000} /dev/zero`]);
      if (e.bytes !== MB * 1_000_000) throw new Error(`${name}: exec bulk got ${e.bytes} bytes: ${e.stderr}`);
      exec.push(e.bytes / 1e6 / (e.ms / 1000));
      const p = await run('ssh', ['-tt', ...argv, `head -c ${(MB / 2) * 1_000_000} /dev/zero | base64 -w 0`]);
      if (p.bytes < (MB / 2) * 1_000_000) throw new Error(`${name}: pty bulk got ${p.bytes} bytes: ${p.stderr}`);
      pty.push(p.bytes / 1e6 / (p.ms / 1000));
      progress(`${name} run ${i + 1}/${RUNS}: connect ${connect.at(-1)!.toFixed(0)} ms, exec ${exec.at(-1)!.toFixed(1)} MB/s, pty ${pty.at(-1)!.toFixed(1)} MB/s`);
    }
    results[name] = { connectMs: median(connect), execMBps: median(exec), ptyMBps: median(pty) };
  }
  const b = results['builtin']!;
  const s = results['sshd']!;
  const ratios = { connect: b.connectMs / s.connectMs, exec: b.execMBps / s.execMBps, pty: b.ptyMBps / s.ptyMBps };
  if (args.json) console.log(JSON.stringify({ runs: RUNS, mb: MB, builtin: b, sshd: s, ratios }));
  else {
    console.log(`\nbuilt-in SSH server vs OpenSSH sshd, same node and mesh path (median of ${RUNS}; client: ssh via pierce nc)`);
    console.log(`  connect (ssh host true)   built-in ${b.connectMs.toFixed(0)} ms   sshd ${s.connectMs.toFixed(0)} ms   ratio ${ratios.connect.toFixed(2)}×`);
    console.log(`  exec bulk (${MB} MB)        built-in ${b.execMBps.toFixed(1)} MB/s   sshd ${s.execMBps.toFixed(1)} MB/s   ratio ${ratios.exec.toFixed(2)}×`);
    console.log(`  pty bulk (${MB / 2} MB→base64)  built-in ${b.ptyMBps.toFixed(1)} MB/s   sshd ${s.ptyMBps.toFixed(1)} MB/s   ratio ${ratios.pty.toFixed(2)}×`);
  }
} finally {
  for (const c of cleanup.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
}
