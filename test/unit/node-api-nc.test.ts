/**
 * `pierce nc` through the node's local API when the far side speaks first: bytes that arrive
 * together with the 101 Switching Protocols answer (Node hands them over as the upgrade's
 * `head`) must reach the stream. An SSH server that writes its version line at once (the
 * built-in one) lost it about one time in ten before this was fixed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Duplex } from 'node:stream';
import { afterEach, expect, it } from 'vitest';
import { apiConnect, startApi } from '../../gateway/src/node/api.ts';
import type { Engine } from '../../src/engine/engine.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

it('keeps the bytes a server sends right after the upgrade', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pierce-api-'));
  dirs.push(dir);
  const sock = join(dir, 'api.sock');
  const engine = { findPeer: () => ({ addrs: ['100.64.0.9/32'] }) } as unknown as Engine;
  const server = await startApi(sock, {
    engine,
    net: {
      // A "mesh connection" whose far end speaks first, at once.
      connect: async () => {
        const toPeer = new PassThrough();
        const fromPeer = new PassThrough();
        fromPeer.write('SSH-2.0-First\r\n');
        return Duplex.from({ writable: toPeer, readable: fromPeer });
      },
      listen: () => ({ close() {} }),
    },
    stop: () => {},
    log: () => {},
  });
  try {
    for (let i = 0; i < 20; i++) {
      const s = await apiConnect(sock, 'peer', 22);
      const first = await new Promise<string>((resolve, reject) => {
        let got = '';
        s.on('data', (d: Buffer) => {
          got += d.toString();
          if (got.includes('\n')) resolve(got);
        });
        s.on('error', reject);
        setTimeout(() => resolve(got), 2000);
      });
      s.destroy();
      expect(first).toBe('SSH-2.0-First\r\n');
    }
  } finally {
    server.close();
  }
});
