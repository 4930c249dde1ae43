/**
 * A node's state directory (`pierce up --state DIR`): its machine and node keys (mode 0600) and
 * the control server's pinned key. A restart with the same directory is the same node, with the
 * same addresses. The disco key is made fresh at every start, as Tailscale does.
 */
import { mkdir, readFile, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { DiscoPrivate, MachinePrivate, MachinePublic, NodePrivate } from '../../../src/key/keys.ts';
import { PierceError } from '../../../src/errors.ts';
import type { EngineKeys } from '../../../src/engine/types.ts';
import { generateHostKeySeed } from '../../../src/ssh/keys.ts';

export interface NodeState {
  dir: string;
  keys: EngineKeys;
  serverKey: MachinePublic | undefined;
  controlUrl: string | undefined;
  /** The built-in SSH server's ed25519 host key seed (ssh_host_ed25519.key, made on first use). */
  sshHostKey: Uint8Array;
}

async function loadKey<T>(file: string, parse: (s: string) => T, make: () => { toBase64(): string } & T): Promise<T> {
  try {
    return parse((await readFile(file, 'utf8')).trim());
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new PierceError('STATE_CORRUPT', `${file}: ${(e as Error).message}`);
  }
  const k = make();
  await writeFile(file, k.toBase64() + '\n', { mode: 0o600 });
  return k;
}

export async function loadState(dir: string): Promise<NodeState> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const machine = await loadKey(join(dir, 'machine.key'), (s) => MachinePrivate.parse(s), () => MachinePrivate.generate());
  const node = await loadKey(join(dir, 'node.key'), (s) => NodePrivate.parse(s), () => NodePrivate.generate());
  let serverKey: MachinePublic | undefined;
  let controlUrl: string | undefined;
  try {
    const c = JSON.parse(await readFile(join(dir, 'control.json'), 'utf8')) as { serverKey?: string; controlUrl?: string };
    if (c.serverKey) serverKey = MachinePublic.parse(c.serverKey);
    controlUrl = c.controlUrl;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new PierceError('STATE_CORRUPT', `${join(dir, 'control.json')}: ${(e as Error).message}`);
  }
  const host = await loadKey(
    join(dir, 'ssh_host_ed25519.key'),
    (s) => {
      const b = Buffer.from(s, 'base64');
      if (b.length !== 32) throw new Error('not a 32-byte ed25519 seed');
      return { seed: new Uint8Array(b) as Uint8Array };
    },
    () => {
      const seed = generateHostKeySeed();
      return { seed, toBase64: () => Buffer.from(seed).toString('base64') };
    },
  );
  return { dir, keys: { machine, node, disco: DiscoPrivate.generate() }, serverKey, controlUrl, sshHostKey: host.seed };
}

/** Pins the control server's key for this control URL. */
export async function saveControl(dir: string, controlUrl: string, serverKey: MachinePublic): Promise<void> {
  await writeFile(join(dir, 'control.json'), JSON.stringify({ controlUrl, serverKey: serverKey.toString() }, null, 2) + '\n', { mode: 0o600 });
}
