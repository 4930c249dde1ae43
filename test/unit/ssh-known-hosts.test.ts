/**
 * KnownHosts (src/ssh/known-hosts.ts): trust on first use of SSH host keys, keyed like OpenSSH's
 * known_hosts; corrupt records are a typed SSH_KNOWN_HOSTS_CORRUPT error (never "absent"); the
 * verifier's SSH_HOSTKEY_MISMATCH is what SshClient.connect rejects with (against the in-memory
 * server of test/support/ssh-fake-server.ts). The real-sshd version is in
 * test/interop/ssh-client.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { SshWriter } from '../../src/ssh/codec.ts';
import { ed25519PublicBlob, fingerprintSha256 } from '../../src/ssh/keys.ts';
import {
  KnownHosts,
  SshClient,
  SshError,
  knownHostsName,
  memoryStore,
  type ConnectOptions,
  type KeyValueStore,
} from '../../src/ssh/index.ts';
import { FakeServer, acceptingServer, user } from '../support/ssh-fake-server.ts';

const blobA = ed25519PublicBlob(new Uint8Array(32).fill(1));
const blobB = ed25519PublicBlob(new Uint8Array(32).fill(2));
const fpA = fingerprintSha256(blobA);
const fpB = fingerprintSha256(blobB);

async function rejection(p: Promise<unknown>): Promise<SshError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(SshError);
  return e as SshError;
}

describe('KnownHosts', () => {
  it('new → remember → match; a different key is a mismatch naming both fingerprints', async () => {
    const kh = new KnownHosts(memoryStore(), { now: () => 1234 });
    expect(await kh.check('example.org', 22, blobA)).toEqual({ status: 'new', fingerprint: fpA });
    await kh.remember('example.org', 22, blobA);
    expect(await kh.check('example.org', 22, blobA)).toEqual({ status: 'match', fingerprint: fpA });
    expect(await kh.check('example.org', 22, blobB)).toEqual({ status: 'mismatch', fingerprint: fpB, known: fpA });
    // remember() replaces (the user accepted the new key).
    await kh.remember('example.org', 22, blobB);
    expect((await kh.check('example.org', 22, blobB)).status).toBe('match');
  });

  it('records are keyed like known_hosts: host for 22, [host]:port otherwise; hosts are case-insensitive', async () => {
    const store = memoryStore();
    const kh = new KnownHosts(store, { now: () => 42 });
    await kh.remember('Example.ORG', 22, blobA);
    await kh.remember('example.org', 2222, blobB);
    await kh.remember('fd00::1', 22, blobA);
    await kh.remember('[fd00::1]', 2200, blobB);
    expect((await store.keys()).sort()).toEqual(['[example.org]:2222', '[fd00::1]:2200', 'example.org', 'fd00::1']);
    expect(JSON.parse((await store.get('example.org'))!)).toEqual({ keyType: 'ssh-ed25519', key: Buffer.from(blobA).toString('base64'), addedAt: 42 });
    // Same host, different port: separate records.
    expect((await kh.check('example.org', 22, blobA)).status).toBe('match');
    expect((await kh.check('example.org', 2222, blobA)).status).toBe('mismatch');
    expect((await kh.check('example.org', 2223, blobA)).status).toBe('new');
    expect((await kh.check('EXAMPLE.org', 22, blobA)).status).toBe('match');
    expect(knownHostsName('h', 22)).toBe('h');
    expect(knownHostsName('h', 80)).toBe('[h]:80');
    expect(() => knownHostsName('h', 0)).toThrow(RangeError);
    expect(() => knownHostsName('h', 65536)).toThrow(RangeError);
    expect(() => knownHostsName('', 22)).toThrow(RangeError);
    expect(() => knownHostsName('a b', 22)).toThrow(RangeError);
  });

  it('list() gives host, port, key type, fingerprint and addedAt; forget() removes one record', async () => {
    let t = 100;
    const kh = new KnownHosts(memoryStore(), { now: () => t++ });
    await kh.remember('b.example', 22, blobA);
    await kh.remember('a.example', 2222, blobB);
    await kh.remember('a.example', 22, blobA);
    expect(await kh.list()).toEqual([
      { host: 'a.example', port: 22, keyType: 'ssh-ed25519', fingerprint: fpA, addedAt: 102 },
      { host: 'a.example', port: 2222, keyType: 'ssh-ed25519', fingerprint: fpB, addedAt: 101 },
      { host: 'b.example', port: 22, keyType: 'ssh-ed25519', fingerprint: fpA, addedAt: 100 },
    ]);
    await kh.forget('a.example', 2222);
    await kh.forget('nowhere.example', 22); // no-op
    expect((await kh.list()).map((e) => `${e.host}:${e.port}`)).toEqual(['a.example:22', 'b.example:22']);
    expect((await kh.check('a.example', 2222, blobB)).status).toBe('new');
  });

  it('remember() refuses a blob that is not a public key blob', async () => {
    const kh = new KnownHosts(memoryStore());
    expect((await rejection(kh.remember('h', 22, Uint8Array.of(0, 0, 0, 9, 1)))).code).toBe('SSH_PROTOCOL');
  });

  it('corrupt records: check() and the verifier throw SSH_KNOWN_HOSTS_CORRUPT (never "new"); list() skips them; forget() clears them', async () => {
    const store = memoryStore();
    const kh = new KnownHosts(store);
    await kh.remember('good.example', 22, blobA);
    const blobC = new SshWriter().string('ssh-rsa').string(Uint8Array.of(1, 2, 3)).bytes();
    const bad: Array<[string, string]> = [
      ['not json', '{'],
      ['null', 'null'],
      ['missing addedAt', JSON.stringify({ keyType: 'ssh-ed25519', key: Buffer.from(blobA).toString('base64') })],
      ['bad base64', JSON.stringify({ keyType: 'ssh-ed25519', key: '!!!', addedAt: 1 })],
      ['not a key blob', JSON.stringify({ keyType: 'ssh-ed25519', key: 'AAAA', addedAt: 1 })],
      ['type disagrees', JSON.stringify({ keyType: 'ssh-ed25519', key: Buffer.from(blobC).toString('base64'), addedAt: 1 })],
      ['addedAt NaN', '{"keyType":"ssh-ed25519","key":"' + Buffer.from(blobA).toString('base64') + '","addedAt":"x"}'],
    ];
    for (const [what, value] of bad) {
      await store.set('[bad.example]:2022', value);
      const e = await rejection(kh.check('bad.example', 2022, blobA));
      expect(e.code, what).toBe('SSH_KNOWN_HOSTS_CORRUPT');
      expect(e.message, what).toContain('[bad.example]:2022');
      const e2 = await rejection(Promise.resolve(kh.verifier('bad.example', 2022)(blobA, fpA)));
      expect(e2.code, what).toBe('SSH_KNOWN_HOSTS_CORRUPT');
      // Not overwritten by the verifier.
      expect(await store.get('[bad.example]:2022'), what).toBe(value);
      expect((await kh.list()).map((l) => l.host), what).toEqual(['good.example']);
    }
    // Keys that are not known_hosts names are skipped by list() too.
    await store.set('[x]:99999', 'junk');
    expect((await kh.list()).map((l) => l.host)).toEqual(['good.example']);
    await kh.forget('bad.example', 2022);
    expect((await kh.check('bad.example', 2022, blobA)).status).toBe('new');
  });

  it('verifier: new → remembered and reported; match → true; mismatch → SSH_HOSTKEY_MISMATCH naming host and both fingerprints', async () => {
    const kh = new KnownHosts(memoryStore());
    const seen: string[] = [];
    const v = kh.verifier('h.example', 2222, (fp) => seen.push(fp));
    expect(await v(blobA, fpA)).toBe(true);
    expect(seen).toEqual([fpA]);
    expect((await kh.check('h.example', 2222, blobA)).status).toBe('match');
    expect(await v(blobA, fpA)).toBe(true);
    expect(seen).toEqual([fpA]); // reported once
    const e = await rejection(Promise.resolve(v(blobB, fpB)));
    expect(e.code).toBe('SSH_HOSTKEY_MISMATCH');
    expect(e.message).toContain('[h.example]:2222');
    expect(e.message).toContain(fpA);
    expect(e.message).toContain(fpB);
    // The record is unchanged.
    expect((await kh.check('h.example', 2222, blobA)).status).toBe('match');
    // A throwing onNew does not refuse the key.
    const v2 = kh.verifier('other.example', 22, () => {
      throw new Error('ui gone');
    });
    expect(await v2(blobB, fpB)).toBe(true);
  });

  it('works over any KeyValueStore (here: one that is asynchronous for real)', async () => {
    const m = new Map<string, string>();
    const tick = () => new Promise((r) => setTimeout(r, 1));
    const store: KeyValueStore = {
      get: async (k) => (await tick(), m.get(k)),
      set: async (k, v) => void (await tick(), m.set(k, v)),
      delete: async (k) => void (await tick(), m.delete(k)),
      keys: async () => (await tick(), [...m.keys()]),
    };
    const kh = new KnownHosts(store);
    await kh.remember('h', 22, blobA);
    expect((await new KnownHosts(store).check('h', 22, blobA)).status).toBe('match');
    expect(m.size).toBe(1);
  });
});

describe('KnownHosts with SshClient.connect (in-memory server)', () => {
  function opts(kh: KnownHosts, o: Partial<ConnectOptions> = {}, onNew?: (fp: string) => void): ConnectOptions {
    return { username: 'root', privateKey: user, verifyHostKey: kh.verifier('fake.example', 2222, onNew), timeoutMs: 2000, requestTimeoutMs: 2000, ...o };
  }

  it('first connect remembers the key, second matches, a changed host key is refused with SSH_HOSTKEY_MISMATCH', async () => {
    const kh = new KnownHosts(memoryStore());
    const news: string[] = [];
    const s1 = new FakeServer(acceptingServer());
    const c1 = await SshClient.connect(s1.duplex, opts(kh, {}, (fp) => news.push(fp)));
    c1.close();
    expect(news).toEqual([fingerprintSha256(s1.hostBlob)]);
    expect(await kh.list()).toMatchObject([{ host: 'fake.example', port: 2222, keyType: 'ssh-ed25519', fingerprint: fingerprintSha256(s1.hostBlob) }]);

    const s2 = new FakeServer(acceptingServer());
    const c2 = await SshClient.connect(s2.duplex, opts(kh, {}, (fp) => news.push(fp)));
    expect(c2.method).toBe('publickey');
    c2.close();
    expect(news).toHaveLength(1);

    // Same address, new host key (re-installed host, or someone in the middle).
    const s3 = new FakeServer({ ...acceptingServer(), hostSeed: new Uint8Array(32).fill(77) });
    const err = await rejection(SshClient.connect(s3.duplex, opts(kh)));
    expect(err.code).toBe('SSH_HOSTKEY_MISMATCH');
    expect(err.message).toContain('[fake.example]:2222');
    expect(err.message).toContain(fingerprintSha256(s1.hostBlob));
    expect(err.message).toContain(fingerprintSha256(s3.hostBlob));
    expect(s3.closed).toBe(true);
    // Nothing was remembered over the old key.
    expect((await kh.check('fake.example', 2222, s1.hostBlob)).status).toBe('match');

    // After forget(), the new key is trusted on first use again.
    await kh.forget('fake.example', 2222);
    const s4 = new FakeServer({ ...acceptingServer(), hostSeed: new Uint8Array(32).fill(77) });
    const c4 = await SshClient.connect(s4.duplex, opts(kh));
    c4.close();
    expect((await kh.check('fake.example', 2222, s4.hostBlob)).status).toBe('match');
  });

  it('a corrupt record refuses the connection with SSH_KNOWN_HOSTS_CORRUPT; a plain Error from a verifier is still SSH_HOSTKEY_REJECTED', async () => {
    const store = memoryStore();
    await store.set('[fake.example]:2222', 'garbage');
    const err = await rejection(SshClient.connect(new FakeServer(acceptingServer()).duplex, opts(new KnownHosts(store))));
    expect(err.code).toBe('SSH_KNOWN_HOSTS_CORRUPT');
    const err2 = await rejection(
      SshClient.connect(new FakeServer(acceptingServer()).duplex, {
        ...opts(new KnownHosts(memoryStore())),
        verifyHostKey: async () => {
          throw new Error('boom');
        },
      }),
    );
    expect(err2.code).toBe('SSH_HOSTKEY_REJECTED');
  });
});
