/**
 * `pierce wg genkey | pubkey | genpsk` against the real `wg` (wireguard-tools): each reads what
 * the other writes, byte for byte.
 */
import { describe, expect, it, beforeAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const PIERCE = fileURLToPath(new URL('../../gateway/bin/pierce.mjs', import.meta.url));

function pierce(args: string[], input?: string) {
  return spawnSync(process.execPath, [PIERCE, ...args], { input: input ?? '', encoding: 'utf8', timeout: 20_000 });
}

function wg(args: string[], input?: string): string {
  return execFileSync('wg', args, { input: input ?? '', encoding: 'utf8', timeout: 10_000 });
}

describe('pierce wg keys vs wireguard-tools', () => {
  beforeAll(() => {
    const r = spawnSync('wg', ['--version'], { encoding: 'utf8' });
    if (r.error || r.status !== 0) throw new Error('`wg` not found: apt-get install -y --no-install-recommends wireguard-tools');
  });

  it('wg pubkey reads pierce genkey, and pierce pubkey matches it', () => {
    for (let i = 0; i < 3; i++) {
      const g = pierce(['wg', 'genkey']);
      expect(g.status).toBe(0);
      expect(g.stdout).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
      const ours = pierce(['wg', 'pubkey'], g.stdout);
      expect(ours.status).toBe(0);
      expect(ours.stdout).toBe(wg(['pubkey'], g.stdout));
    }
  });

  it('pierce pubkey reads wg genkey output', () => {
    const k = wg(['genkey']);
    expect(pierce(['wg', 'pubkey'], k).stdout).toBe(wg(['pubkey'], k));
  });

  it('genpsk prints 32 random bytes in base64 that wg accepts as a preshared key', () => {
    const a = pierce(['wg', 'genpsk']).stdout;
    const b = pierce(['wg', 'genpsk']).stdout;
    expect(a).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    expect(a).not.toBe(b);
    // wg pubkey accepts any 32-byte base64 key; it rejects anything else.
    expect(() => wg(['pubkey'], a)).not.toThrow();
  });

  it('rejects a bad private key with a clear error and exit 1', () => {
    const r = pierce(['wg', 'pubkey'], 'not-a-key\n');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/not a valid private key/);
  });

  it('prints usage and exits 2 on a usage error', () => {
    const r = pierce(['wg', 'frobnicate']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown wg command/);
    const h = pierce(['wg', 'up', '--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/--config FILE/);
    const missing = pierce(['wg', 'ping', '10.0.0.1']);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/needs --config/);
  });

  it('names the file, line and key of a bad config', () => {
    const dir = execFileSync('mktemp', ['-d'], { encoding: 'utf8' }).trim();
    const file = `${dir}/bad.conf`;
    execFileSync('sh', ['-c', `printf '[Interface]\\nPrivateKey = %s\\n\\n[Peer]\\nPublicKey = nope\\nAllowedIPs = 10.0.0.2/32\\n' "$(wg genkey)" > ${file}`]);
    const r = pierce(['wg', 'up', '--config', file]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${file}:5: PublicKey:`);
    execFileSync('rm', ['-rf', dir]);
  });
});
