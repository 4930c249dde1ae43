/**
 * Local user accounts for password / keyboard-interactive logins against sshd: `plabu-<pid>-<n>`
 * with a home directory, /bin/sh and a given password (useradd -m, chpasswd). Removed (userdel
 * -r -f) by removeUser / removeAllUsers (cleanupAll calls it), on process exit, and by the next
 * run when the owning pid is gone (removeStaleUsers, on first createUser).
 *
 * Needs root and the passwd package's useradd / userdel / chpasswd (Debian base).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { alive, labEnv, nextSerial } from './env.ts';
import { run } from './proc.ts';

const USER_PREFIX = 'plabu';
const users = new Set<string>();
let installed = false;

function userdelSync(name: string): void {
  try {
    execFileSync('userdel', ['-r', '-f', name], { stdio: 'ignore', env: labEnv() });
  } catch {
    /* best effort */
  }
}

/** Removes users of earlier runs whose pid is gone (a crashed run); live runs' users stay. */
export function removeStaleUsers(): void {
  let passwd = '';
  try {
    passwd = readFileSync('/etc/passwd', 'utf8');
  } catch {
    return;
  }
  for (const line of passwd.split('\n')) {
    const m = line.match(new RegExp(`^(${USER_PREFIX}-(\\d+)-\\d+):`));
    if (m && Number(m[2]) !== process.pid && !alive(Number(m[2]))) userdelSync(m[1]!);
  }
}

/** Creates a user with `password`; returns its name. */
export async function createUser(password: string): Promise<string> {
  if (!installed) {
    installed = true;
    removeStaleUsers();
    process.once('exit', () => {
      for (const u of users) userdelSync(u);
    });
  }
  if (/[:\n]/.test(password)) throw new Error('password must not contain ":" or a newline (chpasswd)');
  const name = `${USER_PREFIX}-${process.pid}-${nextSerial()}`;
  await run('useradd', ['-m', '-s', '/bin/sh', name]);
  users.add(name);
  await run('chpasswd', [], { input: `${name}:${password}\n` });
  return name;
}

/** Removes a user made by createUser (home directory included), even while it has processes. */
export async function removeUser(name: string): Promise<void> {
  if (!users.has(name)) return;
  await run('userdel', ['-r', '-f', name], { check: false });
  const still = await run('id', ['-u', name], { check: false });
  if (still.code === 0) throw new Error(`userdel -r -f ${name} left the user in place`);
  users.delete(name);
}

export async function removeAllUsers(): Promise<void> {
  for (const u of [...users]) await removeUser(u);
}
