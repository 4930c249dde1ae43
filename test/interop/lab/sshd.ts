/**
 * OpenSSH in the lab: keys made by ssh-keygen, an `sshd -D -e` with its own config inside a
 * namespace, and the OpenSSH client (`ssh`, `scp`) run from a namespace with options that never
 * touch ~/.ssh or prompt.
 *
 * The sshd config allows root with a public key only (PermitRootLogin prohibit-password), no
 * PAM unless `usePam` (needed for keyboard-interactive; Debian's /etc/pam.d/sshd), StrictModes off (keys live in the lab's temp dir), sftp served in-process (scp of
 * OpenSSH ≥ 9 speaks sftp).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nextSerial } from './env.ts';
import { execIn, run, spawnIn, waitFor, type ChildHandle, type ExecResult } from './proc.ts';
import { labTempDir } from './registry.ts';
import { writeTempFile } from './wireguard-go.ts';

export interface SshKeys {
  dir: string;
  /** sshd host key (ed25519). */
  hostKey: string;
  /** The client's private key (ed25519); its public half is in `authorizedKeys`. */
  userKey: string;
  authorizedKeys: string;
}

/** Host and user key pairs made by ssh-keygen in a new directory of the lab's temp dir. */
export async function makeSshKeys(): Promise<SshKeys> {
  const dir = join(labTempDir(), `${nextSerial()}-ssh`);
  mkdirSync(dir, { mode: 0o700 });
  const hostKey = join(dir, 'host_ed25519');
  const userKey = join(dir, 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'plab-host', '-f', hostKey]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'plab-user', '-f', userKey]);
  const authorizedKeys = writeTempFile('authorized_keys', readFileSync(`${userKey}.pub`, 'utf8'));
  return { dir, hostKey, userKey, authorizedKeys };
}

export interface SshdOptions {
  ns: string;
  /** Address to listen on (IPv4 or IPv6, no brackets). */
  address: string;
  /** Default 22. */
  port?: number;
  keys: SshKeys;
  /** Extra sshd_config lines (for most keywords sshd keeps the first value: override in a Match block). */
  extraConfig?: string[];
  /** `UsePAM yes` (password and keyboard-interactive through PAM); default no. */
  usePam?: boolean;
  /** How long to wait for "Server listening"; default 10 s. */
  timeoutMs?: number;
}

export interface Sshd {
  ns: string;
  address: string;
  port: number;
  config: string;
  /** sshd's log (stderr, -e), a file: see startSshd. */
  logFile: string;
  /** `sh -c exec sshd …`; its output is in the log file, not here. */
  process: ChildHandle;
  /** The log so far, with a header line; for assertion messages. */
  log(): string;
  /** Lines of sshd's log saying a public key login was accepted. */
  acceptedLogins(): string[];
  /** Lines of sshd's log `Accepted <method> for <user> …` (any method, any user). */
  accepted(): string[];
  stop(): Promise<void>;
}

const SSHD = '/usr/sbin/sshd';

/** The root account must not be locked ("!" in /etc/shadow): without PAM sshd refuses it. */
function rootLockedProblem(): string | undefined {
  try {
    const line = readFileSync('/etc/shadow', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('root:'));
    const pw = line?.split(':')[1] ?? '';
    if (pw.startsWith('!')) {
      return "root's password field in /etc/shadow starts with '!' (account locked): sshd without PAM refuses key logins for it; unlock with `usermod -p '*' root`";
    }
  } catch {
    /* unreadable: let sshd tell */
  }
  return undefined;
}

/** Starts `sshd -D -e -f <config>` in `ns`, listening on address:port; waits until it listens. */
export async function startSshd(o: SshdOptions): Promise<Sshd> {
  const locked = rootLockedProblem();
  if (locked) throw new Error(locked);
  const port = o.port ?? 22;
  const listen = o.address.includes(':') ? `[${o.address}]:${port}` : `${o.address}:${port}`;
  // Privilege-separation directory; /run is shared by all network namespaces.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const config = writeTempFile(
    'sshd_config',
    [
      `ListenAddress ${listen}`,
      `HostKey ${o.keys.hostKey}`,
      `AuthorizedKeysFile ${o.keys.authorizedKeys}`,
      'PermitRootLogin prohibit-password',
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      `UsePAM ${o.usePam ? 'yes' : 'no'}`,
      'StrictModes no',
      'PidFile none',
      'PrintMotd no',
      'PrintLastLog no',
      'UseDNS no',
      'LogLevel VERBOSE',
      'Subsystem sftp internal-sftp',
      ...(o.extraConfig ?? []),
      '',
    ].join('\n'),
  );
  const test = await run(SSHD, ['-t', '-f', config], { check: false });
  if (test.code !== 0) throw new Error(`sshd -t -f ${config} rejected the config:\n${test.stdout}${test.stderr}`);
  // sshd's per-connection children outlive the listener (by design) and would inherit the lab's
  // stdio pipes, so that the handle never sees them close: sshd logs (-e) into a file instead.
  const logFile = `${config}.log`;
  writeFileSync(logFile, '', { mode: 0o600 });
  const proc = spawnIn(o.ns, 'sh', ['-c', 'exec "$0" -D -e -f "$1" </dev/null >>"$2" 2>&1', SSHD, config, logFile], { name: `sshd ${listen}@${o.ns}` });
  const log = (): string => readFileSync(logFile, 'utf8');
  try {
    await waitFor(`sshd on ${listen} in ${o.ns}`, o.timeoutMs ?? 10_000, () => {
      if (/Server listening on/.test(log())) return true;
      if (proc.exited) throw new Error(`sshd exited: ${log()}`);
      return undefined;
    }, 25);
  } catch (e) {
    await proc.kill();
    throw new Error(`${(e as Error).message}\n${log()}`);
  }
  return {
    ns: o.ns,
    address: o.address,
    port,
    config,
    logFile,
    process: proc,
    log: () => `[sshd ${listen} log]\n${log()}`,
    acceptedLogins: () => log().split('\n').filter((l) => /Accepted publickey for root/.test(l)),
    accepted: () => log().split('\n').filter((l) => /Accepted \S+ for /.test(l)),
    stop: async () => void (await proc.kill()),
  };
}

/**
 * OpenSSH client options: this key only, no config file, no known_hosts, no prompts. `extra`
 * (`-o` values) come first: for ssh the first value of an option wins.
 */
export function sshOptions(keys: SshKeys, extra: string[] = []): string[] {
  return [
    ...extra.flatMap((e) => ['-o', e]),
    '-F', '/dev/null',
    '-i', keys.userKey,
    '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes',
    '-o', 'StrictHostKeyChecking=no',
    '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'ConnectTimeout=20',
    '-o', 'LogLevel=ERROR',
  ];
}

export interface SshRun {
  /** Where the client runs. */
  ns: string;
  host: string;
  port: number;
  keys: SshKeys;
  timeoutMs?: number;
  /** Extra `-o` options, e.g. 'ServerAliveInterval=5'. */
  options?: string[];
}

function hostForUri(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/**
 * Runs an OpenSSH client command in `ns` under coreutils `timeout`, which on expiry kills its
 * whole process group (scp's ssh child included, which would otherwise hold the output pipes
 * open): exit 124 then. Never throws for a non-zero exit.
 */
function clientExec(ns: string, cmd: string, args: string[], timeoutMs: number): Promise<ExecResult> {
  const secs = Math.max(1, Math.ceil(timeoutMs / 1000));
  return execIn(ns, 'timeout', ['-k', '5', String(secs), cmd, ...args], { check: false, timeoutMs: (secs + 15) * 1000 });
}

/** `ssh -p PORT … root@HOST COMMAND` from `ns` (default limit 30 s). */
export function sshExec(r: SshRun, command: string): Promise<ExecResult> {
  return clientExec(r.ns, 'ssh', [...sshOptions(r.keys, r.options), '-p', String(r.port), `root@${r.host}`, command], r.timeoutMs ?? 30_000);
}

/** `scp -P PORT` from `ns`: 'upload' copies local → remote path, 'download' remote → local (default limit 120 s). */
export function scp(r: SshRun, dir: 'upload' | 'download', localPath: string, remotePath: string): Promise<ExecResult> {
  const remote = `root@${hostForUri(r.host)}:${remotePath}`;
  const [from, to] = dir === 'upload' ? [localPath, remote] : [remote, localPath];
  return clientExec(r.ns, 'scp', [...sshOptions(r.keys, r.options), '-q', '-P', String(r.port), from, to], r.timeoutMs ?? 120_000);
}
