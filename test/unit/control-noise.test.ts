import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { nobleBackend } from '../../src/crypto/noble.ts';
import { nodeBackend } from '../../gateway/src/crypto/node-backend.ts';
import type { CryptoBackend, RandomSource } from '../../src/crypto/backend.ts';
import { fromHex, toHex } from '../../src/crypto/bytes.ts';
import { PierceError } from '../../src/errors.ts';
import { MachinePrivate } from '../../src/key/keys.ts';
import {
  CipherState,
  finishInitiator,
  initiate,
  keyPair,
  MAX_INITIATION_PAYLOAD,
  MAX_MESSAGE_LEN,
  MAX_PLAINTEXT_LEN,
  MAX_RESPONSE_PAYLOAD,
  NoiseError,
  respond,
  type NoiseConfig,
} from '../../src/control/noise.ts';
import { decodeJson, encodeJson, FrameError, MAX_CHUNK_DATA, Reassembler, sealMessage } from '../../src/control/framing.ts';
import { seededRandom } from '../support/wg-net.ts';
import { thrownCode } from '../support/errors.ts';

const h = (s: string) => fromHex(s)!;
const te = new TextEncoder();

const seeded = (seed: number): RandomSource => seededRandom(seed);

/** Runs fn and returns the code of the error it throws, which must be a NoiseError/PierceError. */
const code = (fn: () => unknown): string => thrownCode(fn);

/** Only typed errors may escape. */
function typedOnly(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof PierceError)) throw e;
  }
}

interface Vector {
  source: string;
  prologue: string;
  initStatic: string;
  initEphemeral: string;
  initRemoteStatic: string;
  respStatic: string;
  respEphemeral: string;
  handshakeHash?: string;
  messages: { payload: string; ciphertext: string }[];
}

/**
 * Noise_IK_25519_ChaChaPoly_BLAKE2s test vectors, copied verbatim (field names shortened):
 *  1. cacophony: github.com/haskell-cryptography/cacophony vectors/cacophony.txt at 8ee9d41e34a1
 *     (the same file ships as mcginty/snow tests/vectors/cacophony.txt), the entry with
 *     protocol_name "Noise_IK_25519_ChaChaPoly_BLAKE2s". It carries the handshake hash.
 *  2. snow: github.com/mcginty/snow tests/vectors/snow.txt at 8ac60f51cfe3, the entry with the
 *     same protocol_name (init_psks/resp_psks empty; no handshake hash given).
 * Messages alternate initiator → responder, responder → initiator; the first two are the
 * handshake, the rest transport messages.
 */
const VECTORS: Vector[] = [
  {
    source: 'cacophony vectors/cacophony.txt',
    prologue: '4a6f686e2047616c74',
    initStatic: 'e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1',
    initEphemeral: '893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a',
    initRemoteStatic: '31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62',
    respStatic: '4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893',
    respEphemeral: 'bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b',
    handshakeHash: '48f3cb8bc9319da4ba1e9933991b1c4ed4034f1f126a76d3a1fbcfd7f94248d4',
    messages: [
      {
        payload: '4c756477696720766f6e204d69736573',
        ciphertext:
          'ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79440b03ddc7aac5123d06a1b23b71670e32e76c28239a7ca4ac8f784de7e44c1adbfc6e83fef7352a58d9d56157400c0a737b1d171ce368229c7b752ac25b8faf4eca690f6d896f543be02c996ab2b86b76',
      },
      {
        payload: '4d757272617920526f746862617264',
        ciphertext: '95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843d9b5a8927f0ac9655ef76833bc7e5561f42e691ac8404efd6fbd6308b6a27c',
      },
      { payload: '462e20412e20486179656b', ciphertext: '2c256ed08fcd08c2980f954ee4beaccb61c9581340f5dd2fd1cf3b' },
      { payload: '4361726c204d656e676572', ciphertext: 'd6033f70eee20945c7c9dba304e397ee3b284ff5e00fd9efb095d3' },
      { payload: '4a65616e2d426170746973746520536179', ciphertext: 'a9c068ca5d8babf72560652d8e851adbfac35c8a66e810d560863173e96adf4cfe' },
      { payload: '457567656e2042f6686d20766f6e2042617765726b', ciphertext: '2a09d8f459e5927e40fdd2eddc99bdafb04e13a26f145cb5cfe9e6ba34c94331ebc17d5156' },
    ],
  },
  {
    source: 'snow tests/vectors/snow.txt',
    prologue: '5468657265206973206e6f20726967687420616e642077726f6e672e2054686572652773206f6e6c792066756e20616e6420626f72696e672e',
    initStatic: 'b7e117ce8ede06ceb89500799a3778d097fc54a3f90bea744493dfc24ec21f32',
    initEphemeral: 'cc95b4ccc4912c5a52c8d2f6b808e13712392c4468f4e3f02a7d2d1590cb9178',
    initRemoteStatic: 'ea82fd2e81d1285f1b2029e46ca7bcaeeeafed15396d002bd434624a4d580655',
    respStatic: 'e3187f5c10734e934be3a73c398c7fae07ba3e0cde2fcd9ab03a1c93dcae10f8',
    respEphemeral: '587f83fe736432043d2665fbd47b0506b2cd103b6ba8577f72e117c7ffeb5105',
    messages: [
      {
        payload: '910ef4a7c04090f66403fcd8ffaed066e70ed38b576792c4a554cc5016fe5120',
        ciphertext:
          'df44a475167152d3e4767b9ad5b28468fb8bd6aaa0b0e7181afd87ede7a8c971e818de301c97393bfa71ac250becfc8acef64a969e039f407fe44c5ffc3d66d94ff57627ad4cc53882a1b2993babac3940edd1eaff34a3d3f08c53570166b3d29d06bd5de3cfb9b85b66001a60a5bb98d72b80da9485655f86db72b46f745c4e',
      },
      {
        payload: '3ce1e4d6e5f02bfeea1d6620cbf1473b5f55372d6954e98d3e12b6ffd04879d5',
        ciphertext:
          '2818be348d38de5f9e3ef545c62e8e276c12e2a64410801a0284e02dfb0d450a848d1001977ef31dfe04b5c824acc04c7bda8490eab6cb6aaa844c4ddf0fda83ec84ed26cd6bee22fab17360b73de5b8',
      },
      {
        payload: '31e7554ebce419a76bf5cd464e00594ccf55bdc09c234c450850d26ab164238c',
        ciphertext: '89545eb9b2477d482156692214def7d5aecc00b9244b4435bdb768173841d2a2a2e52bcee32d64fe938c87594b17ee69',
      },
      {
        payload: '794f643ba08cc7ee7aa39bc055560a0850dbc77bf34d8ab22019bf160ab2c573',
        ciphertext: 'fe35983c049b535cf9ca61cfad5b48e461da90c7c51cb5b873be10e58ae34a384aaebba7f96958b0ef0ac043c5e9c622',
      },
    ],
  },
];

const PROLOGUE = te.encode('pierce control v1');

/** A completed handshake between fresh keys. */
function pair(backend: CryptoBackend, seed = 1, backendR: CryptoBackend = backend) {
  const rnd = seeded(seed);
  const node = MachinePrivate.generate(rnd).raw();
  const server = MachinePrivate.generate(rnd).raw();
  const serverPub = backend.x25519Public(server);
  const cfgI: NoiseConfig = { backend, random: rnd, prologue: PROLOGUE };
  const cfgR: NoiseConfig = { backend: backendR, random: rnd, prologue: PROLOGUE };
  const { message, pending } = initiate(cfgI, node, serverPub, te.encode('hello'));
  const r = respond(cfgR, server, message);
  const accepted = r.accept(te.encode('welcome'));
  const finished = finishInitiator(pending, accepted.message);
  return { node: finished.session, server: accepted.session, nodeKey: node, serverKey: server, serverPub, cfgI, cfgR };
}

for (const backend of [nobleBackend, nodeBackend]) {
  describe(`Noise_IK_25519_ChaChaPoly_BLAKE2s on ${backend.name}`, () => {
    for (const v of VECTORS) {
      it(`matches the ${v.source} vector byte for byte`, () => {
        const m = v.messages;
        expect(toHex(backend.x25519Public(h(v.respStatic)))).toBe(v.initRemoteStatic);
        const cfgI: NoiseConfig = { backend, random: seeded(1), prologue: h(v.prologue), ephemeral: h(v.initEphemeral) };
        const cfgR: NoiseConfig = { backend, random: seeded(2), prologue: h(v.prologue), ephemeral: h(v.respEphemeral) };

        const { message, pending } = initiate(cfgI, h(v.initStatic), h(v.initRemoteStatic), h(m[0]!.payload));
        expect(toHex(message)).toBe(m[0]!.ciphertext);
        const r = respond(cfgR, h(v.respStatic), h(m[0]!.ciphertext));
        expect(toHex(r.payload)).toBe(m[0]!.payload);
        expect(toHex(r.remoteStatic)).toBe(toHex(backend.x25519Public(h(v.initStatic))));
        const acc = r.accept(h(m[1]!.payload));
        expect(toHex(acc.message)).toBe(m[1]!.ciphertext);
        const fin = finishInitiator(pending, h(m[1]!.ciphertext));
        expect(toHex(fin.payload)).toBe(m[1]!.payload);

        const init = fin.session;
        const resp = acc.session;
        expect(toHex(init.handshakeHash)).toBe(toHex(resp.handshakeHash));
        if (v.handshakeHash) expect(toHex(init.handshakeHash)).toBe(v.handshakeHash);
        expect(toHex(init.remoteStatic)).toBe(v.initRemoteStatic);

        for (let i = 2; i < m.length; i++) {
          const [tx, rx] = i % 2 === 0 ? [init, resp] : [resp, init];
          const ct = tx.encrypt(h(m[i]!.payload));
          expect(toHex(ct), `message ${i}`).toBe(m[i]!.ciphertext);
          expect(toHex(rx.decrypt(ct))).toBe(m[i]!.payload);
        }
      });
    }

    it('round trips in both directions, many messages, and a KeyPair static', () => {
      const { node, server } = pair(backend, 3);
      for (let i = 0; i < 50; i++) {
        const a = te.encode(`node ${i}`.repeat(i));
        expect(server.decrypt(node.encrypt(a))).toEqual(a);
        const b = te.encode(`server ${i}`);
        expect(node.decrypt(server.encrypt(b))).toEqual(b);
      }
      expect(node.sendCount).toBe(50n);
      expect(node.recvCount).toBe(50n);
      expect(node.isInitiator).toBe(true);
      expect(server.isInitiator).toBe(false);

      const rnd = seeded(9);
      const s = keyPair(backend, MachinePrivate.generate(rnd).raw());
      const c = keyPair(backend, MachinePrivate.generate(rnd).raw());
      const cfg = { backend, random: rnd, prologue: PROLOGUE };
      const { message, pending } = initiate(cfg, c, s.pub, new Uint8Array(0));
      const r = respond(cfg, s, message);
      expect(r.remoteStatic).toEqual(c.pub);
      expect(r.payload.length).toBe(0);
      const acc = r.accept(new Uint8Array(0));
      const fin = finishInitiator(pending, acc.message);
      expect(fin.payload.length).toBe(0);
      expect(acc.session.decrypt(fin.session.encrypt(Uint8Array.of(1, 2, 3)))).toEqual(Uint8Array.of(1, 2, 3));
      expect(toHex(acc.session.remoteStatic)).toBe(toHex(c.pub));
    });

    it('interoperates with the other backend', () => {
      const other = backend === nobleBackend ? nodeBackend : nobleBackend;
      const { node, server } = pair(backend, 4, other);
      expect(node.decrypt(server.encrypt(te.encode('x')))).toEqual(te.encode('x'));
      expect(server.decrypt(node.encrypt(te.encode('y')))).toEqual(te.encode('y'));
      expect(toHex(node.handshakeHash)).toBe(toHex(server.handshakeHash));
    });

    it('wrong server key or prologue: the responder refuses with NOISE_DECRYPT', () => {
      const rnd = seeded(5);
      const node = MachinePrivate.generate(rnd).raw();
      const server = MachinePrivate.generate(rnd).raw();
      const impostor = MachinePrivate.generate(rnd).raw();
      const cfg = { backend, random: rnd, prologue: PROLOGUE };
      const { message } = initiate(cfg, node, backend.x25519Public(impostor), new Uint8Array(3));
      expect(code(() => respond(cfg, server, message))).toBe('NOISE_DECRYPT');
      const ok = initiate(cfg, node, backend.x25519Public(server), new Uint8Array(3));
      expect(code(() => respond({ ...cfg, prologue: te.encode('other') }, server, ok.message))).toBe('NOISE_DECRYPT');
      // An impostor answering an initiation it cannot read: it has no valid response, and a
      // response from another handshake does not complete this one.
      const other = initiate(cfg, node, backend.x25519Public(server), new Uint8Array(0));
      const otherReply = respond(cfg, server, other.message).accept(new Uint8Array(0)).message;
      expect(code(() => finishInitiator(ok.pending, otherReply))).toBe('NOISE_DECRYPT');
      expect(() => respond(cfg, server, ok.message).accept(new Uint8Array(0))).not.toThrow();
    });

    it('low-order points give NOISE_LOW_ORDER, and the pending handshake survives', () => {
      const { nodeKey, serverKey, serverPub, cfgI, cfgR } = pair(backend, 6);
      const zero = new Uint8Array(32);
      expect(code(() => initiate(cfgI, nodeKey, zero, new Uint8Array(0)))).toBe('NOISE_LOW_ORDER');
      const { message, pending } = initiate(cfgI, nodeKey, serverPub, new Uint8Array(0));
      const badE = Uint8Array.from(message);
      badE.fill(0, 0, 32);
      expect(code(() => respond(cfgR, serverKey, badE))).toBe('NOISE_LOW_ORDER');
      // A malicious initiator whose static "public key" is a low-order point.
      const evil = initiate(cfgI, { priv: nodeKey, pub: zero }, serverPub, new Uint8Array(0));
      expect(code(() => respond(cfgR, serverKey, evil.message))).toBe('NOISE_LOW_ORDER');
      const reply = respond(cfgR, serverKey, message).accept(new Uint8Array(0)).message;
      const badReply = Uint8Array.from(reply);
      badReply.fill(0, 0, 32);
      expect(code(() => finishInitiator(pending, badReply))).toBe('NOISE_LOW_ORDER');
      expect(() => finishInitiator(pending, reply)).not.toThrow();
    });

    it('a flipped bit anywhere in the initiation fails typed; the genuine one then succeeds', () => {
      const { nodeKey, serverKey, serverPub, cfgI, cfgR } = pair(backend, 7);
      const { message, pending } = initiate(cfgI, nodeKey, serverPub, te.encode('payload bytes'));
      for (let i = 0; i < message.length; i++) {
        for (const bit of [0x01, 0x80]) {
          const bad = Uint8Array.from(message);
          bad[i]! ^= bit;
          expect(['NOISE_DECRYPT', 'NOISE_LOW_ORDER'], `byte ${i} bit ${bit}`).toContain(code(() => respond(cfgR, serverKey, bad)));
        }
      }
      expect(code(() => respond(cfgR, serverKey, message.subarray(0, 95)))).toBe('NOISE_SHORT');
      expect(code(() => respond(cfgR, serverKey, message.subarray(0, message.length - 1)))).toBe('NOISE_DECRYPT');
      const longer = new Uint8Array(message.length + 1);
      longer.set(message);
      expect(code(() => respond(cfgR, serverKey, longer))).toBe('NOISE_DECRYPT');
      const r = respond(cfgR, serverKey, message);
      expect(r.payload).toEqual(te.encode('payload bytes'));
      const { message: reply } = r.accept(te.encode('ok'));
      expect(finishInitiator(pending, reply).payload).toEqual(te.encode('ok'));
    });

    it('a flipped bit anywhere in the response fails typed; the genuine one then completes', () => {
      const { nodeKey, serverKey, serverPub, cfgI, cfgR } = pair(backend, 8);
      const { message, pending } = initiate(cfgI, nodeKey, serverPub, new Uint8Array(0));
      const acc = respond(cfgR, serverKey, message).accept(te.encode('reply payload'));
      const reply = acc.message;
      for (let i = 0; i < reply.length; i++) {
        const bad = Uint8Array.from(reply);
        bad[i]! ^= 1 << i % 8;
        expect(['NOISE_DECRYPT', 'NOISE_LOW_ORDER'], `byte ${i}`).toContain(code(() => finishInitiator(pending, bad)));
      }
      expect(code(() => finishInitiator(pending, reply.subarray(0, 47)))).toBe('NOISE_SHORT');
      const fin = finishInitiator(pending, reply);
      expect(fin.payload).toEqual(te.encode('reply payload'));
      expect(code(() => finishInitiator(pending, reply))).toBe('NOISE_STATE');
      expect(acc.session.decrypt(fin.session.encrypt(te.encode('z')))).toEqual(te.encode('z'));
    });

    it('accept is single-use', () => {
      const { nodeKey, serverKey, serverPub, cfgI, cfgR } = pair(backend, 9);
      const r = respond(cfgR, serverKey, initiate(cfgI, nodeKey, serverPub, new Uint8Array(0)).message);
      r.accept(new Uint8Array(0));
      expect(code(() => r.accept(new Uint8Array(0)))).toBe('NOISE_STATE');
    });

    it('a flipped, truncated or extended transport message fails typed; the next genuine one works', () => {
      const { node, server } = pair(backend, 10);
      const msgs = [te.encode('first message'), te.encode('second'), new Uint8Array(0)];
      for (const m of msgs) {
        const ct = node.encrypt(m);
        for (let i = 0; i < ct.length; i++) {
          const bad = Uint8Array.from(ct);
          bad[i]! ^= 0x40;
          expect(code(() => server.decrypt(bad))).toBe('NOISE_DECRYPT');
        }
        expect(code(() => server.decrypt(ct.subarray(0, 15)))).toBe('NOISE_SHORT');
        if (ct.length > 16) expect(code(() => server.decrypt(ct.subarray(0, ct.length - 1)))).toBe('NOISE_DECRYPT');
        const longer = new Uint8Array(ct.length + 1);
        longer.set(ct);
        expect(code(() => server.decrypt(longer))).toBe('NOISE_DECRYPT');
        expect(server.decrypt(ct)).toEqual(m);
      }
      expect(server.recvCount).toBe(3n);
    });

    it('out-of-order and replayed transport messages are rejected without losing the stream', () => {
      const { node, server } = pair(backend, 11);
      const c1 = node.encrypt(te.encode('1'));
      const c2 = node.encrypt(te.encode('2'));
      const c3 = node.encrypt(te.encode('3'));
      expect(code(() => server.decrypt(c2))).toBe('NOISE_DECRYPT');
      expect(code(() => server.decrypt(c3))).toBe('NOISE_DECRYPT');
      expect(server.decrypt(c1)).toEqual(te.encode('1'));
      expect(code(() => server.decrypt(c1))).toBe('NOISE_DECRYPT');
      expect(server.decrypt(c2)).toEqual(te.encode('2'));
      expect(server.decrypt(c3)).toEqual(te.encode('3'));
      // A message in the wrong direction (reflected back to its sender) does not open either.
      const r = server.encrypt(te.encode('r'));
      expect(code(() => server.decrypt(r))).toBe('NOISE_DECRYPT');
      expect(node.decrypt(r)).toEqual(te.encode('r'));
    });

    it('enforces the 65535-byte message limit', () => {
      const { node, server, nodeKey, serverKey, serverPub, cfgI, cfgR } = pair(backend, 12);
      const max = new Uint8Array(MAX_PLAINTEXT_LEN).fill(7);
      const ct = node.encrypt(max);
      expect(ct.length).toBe(MAX_MESSAGE_LEN);
      expect(server.decrypt(ct)).toEqual(max);
      expect(code(() => node.encrypt(new Uint8Array(MAX_PLAINTEXT_LEN + 1)))).toBe('NOISE_TOO_LONG');
      expect(code(() => server.decrypt(new Uint8Array(MAX_MESSAGE_LEN + 1)))).toBe('NOISE_TOO_LONG');

      const big = initiate(cfgI, nodeKey, serverPub, new Uint8Array(MAX_INITIATION_PAYLOAD));
      expect(big.message.length).toBe(MAX_MESSAGE_LEN);
      expect(code(() => initiate(cfgI, nodeKey, serverPub, new Uint8Array(MAX_INITIATION_PAYLOAD + 1)))).toBe('NOISE_TOO_LONG');
      expect(code(() => respond(cfgR, serverKey, new Uint8Array(MAX_MESSAGE_LEN + 1)))).toBe('NOISE_TOO_LONG');
      const r = respond(cfgR, serverKey, big.message);
      expect(code(() => r.accept(new Uint8Array(MAX_RESPONSE_PAYLOAD + 1)))).toBe('NOISE_TOO_LONG');
      const acc = r.accept(new Uint8Array(MAX_RESPONSE_PAYLOAD));
      expect(acc.message.length).toBe(MAX_MESSAGE_LEN);
      expect(finishInitiator(big.pending, acc.message).payload.length).toBe(MAX_RESPONSE_PAYLOAD);
      expect(code(() => initiate(cfgI, nodeKey, new Uint8Array(31), new Uint8Array(0)))).toBe('NOISE_KEY');
    });

    it('CipherState: nonce layout (4 zero bytes, LE64), carry, and exhaustion at 2^64-1', () => {
      const key = seeded(13)(32);
      const pt = te.encode('nonce test');
      const cs = new CipherState(backend, key);
      cs.setNonce(0x0102030405060708n);
      expect(toHex(cs.encryptWithAd(new Uint8Array(0), pt))).toBe(toHex(backend.seal(key, h('000000000807060504030201'), pt)));
      cs.setNonce(0xffffffffn);
      cs.encryptWithAd(new Uint8Array(0), pt);
      expect(cs.n).toBe(0x100000000n);
      expect(toHex(cs.encryptWithAd(pt, pt))).toBe(toHex(backend.seal(key, h('000000000000000001000000'), pt, pt)));

      const tx = new CipherState(backend, key);
      const rx = new CipherState(backend, key);
      tx.setNonce(2n ** 64n - 2n);
      rx.setNonce(2n ** 64n - 2n);
      const last = tx.encryptWithAd(new Uint8Array(0), pt);
      expect(code(() => tx.encryptWithAd(new Uint8Array(0), pt))).toBe('NOISE_NONCE_EXHAUSTED');
      expect(rx.decryptWithAd(new Uint8Array(0), last)).toEqual(pt);
      expect(code(() => rx.decryptWithAd(new Uint8Array(0), last))).toBe('NOISE_NONCE_EXHAUSTED');
    });

    it('fuzz: respond, finishInitiator, decrypt and Reassembler.push throw only typed errors', () => {
      const { nodeKey, serverKey, serverPub, cfgI, cfgR, node, server } = pair(backend, 14);
      const { message, pending } = initiate(cfgI, nodeKey, serverPub, te.encode('fuzz'));
      const reply = respond(cfgR, serverKey, message).accept(te.encode('fuzz reply')).message;
      const reasm = new Reassembler(server, 1 << 20);
      const chunk = sealMessage(node, new Uint8Array(10))[0]!;
      const transport = node.encrypt(te.encode('transport'));
      const mutation = fc.array(fc.record({ pos: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 4 });
      const mutate = (m: Uint8Array, muts: { pos: number; xor: number }[]) => {
        const out = Uint8Array.from(m);
        for (const { pos, xor } of muts) out[pos % out.length]! ^= xor;
        return out;
      };
      const distinct = (a: Uint8Array, b: Uint8Array) => toHex(a) !== toHex(b);
      const runs = backend === nobleBackend ? 150 : 400;

      fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => typedOnly(() => respond(cfgR, serverKey, b))), { numRuns: runs });
      fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => typedOnly(() => finishInitiator(pending, b))), { numRuns: runs });
      fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => typedOnly(() => server.decrypt(b))), { numRuns: 1000 });
      fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => typedOnly(() => reasm.push(b))), { numRuns: 1000 });

      // Mutated genuine messages: always refused (every byte is authenticated), always typed.
      fc.assert(
        fc.property(mutation, (muts) => {
          const bad = mutate(message, muts);
          if (distinct(bad, message)) expect(code(() => respond(cfgR, serverKey, bad))).toMatch(/^NOISE_(DECRYPT|LOW_ORDER)$/);
        }),
        { numRuns: runs },
      );
      fc.assert(
        fc.property(mutation, fc.nat({ max: 80 }), (muts, cut) => {
          const bad = mutate(reply, muts).subarray(0, reply.length - (cut % 3 === 0 ? cut : 0));
          if (distinct(bad, reply)) expect(code(() => finishInitiator(pending, bad))).toMatch(/^NOISE_/);
        }),
        { numRuns: runs },
      );
      fc.assert(
        fc.property(mutation, (muts) => {
          const bad = mutate(transport, muts);
          if (distinct(bad, transport)) expect(code(() => server.decrypt(bad))).toBe('NOISE_DECRYPT');
          const badChunk = mutate(chunk, muts);
          if (distinct(badChunk, chunk)) expect(code(() => reasm.push(badChunk))).toBe('NOISE_DECRYPT');
        }),
        { numRuns: 1000 },
      );
      // Nothing above changed any state: the genuine messages still go through.
      expect(finishInitiator(pending, reply).payload).toEqual(te.encode('fuzz reply'));
      // (the reassembler reads the same session, so the chunk sealed first opens first)
      expect(reasm.push(chunk)).toEqual(new Uint8Array(10));
      expect(server.decrypt(transport)).toEqual(te.encode('transport'));
      expect(toHex(respond(cfgR, serverKey, message).payload)).toBe(toHex(te.encode('fuzz')));
    });
  });
}

describe('framing: logical messages as Noise transport chunks', () => {
  const { node, server } = pair(nodeBackend, 20);

  function chunksFor(n: number): number {
    return Math.max(1, Math.ceil(n / MAX_CHUNK_DATA));
  }

  for (const size of [0, 1, 65518, 65519, 200_000, 5 * 1024 * 1024]) {
    it(`round trip of ${size} bytes`, () => {
      const data = seeded(size + 1)(size);
      const cts = sealMessage(node, data);
      expect(cts.length).toBe(chunksFor(size));
      for (const c of cts) expect(c.length).toBeLessThanOrEqual(MAX_MESSAGE_LEN);
      const r = new Reassembler(server);
      for (let i = 0; i < cts.length - 1; i++) expect(r.push(cts[i]!)).toBeNull();
      const out = r.push(cts[cts.length - 1]!);
      expect(out?.length).toBe(size);
      expect(toHex(out!.subarray(0, 64))).toBe(toHex(data.subarray(0, 64)));
      expect(Buffer.compare(out!, data)).toBe(0);
      expect(r.buffered).toBe(0);
    });
  }

  it('several messages back to back in both directions, a forged chunk mid-message costs nothing', () => {
    const rn = new Reassembler(node);
    const rs = new Reassembler(server);
    const a = seeded(1)(150_000);
    const b = seeded(2)(10);
    const cts = sealMessage(node, a);
    expect(rs.push(cts[0]!)).toBeNull();
    const forged = Uint8Array.from(cts[1]!);
    forged[100]! ^= 1;
    expect(code(() => rs.push(forged))).toBe('NOISE_DECRYPT');
    expect(code(() => rs.push(cts[2]!))).toBe('NOISE_DECRYPT'); // out of order
    expect(rs.push(cts[1]!)).toBeNull();
    const got = rs.push(cts[2]!);
    expect(got && Buffer.compare(got, a)).toBe(0);
    for (const c of sealMessage(server, b)) expect(rn.push(c)).toEqual(b);
    for (const c of sealMessage(node, b)) expect(rs.push(c)).toEqual(b);
  });

  it('refuses an oversize message as soon as the limit is passed, then refuses the stream', () => {
    const { node: n2, server: s2 } = pair(nodeBackend, 21);
    const r = new Reassembler(s2, 100_000);
    const cts = sealMessage(n2, new Uint8Array(200_000));
    expect(cts.length).toBe(4);
    expect(r.push(cts[0]!)).toBeNull();
    expect(r.buffered).toBe(MAX_CHUNK_DATA);
    expect(code(() => r.push(cts[1]!))).toBe('FRAME_TOO_LARGE');
    expect(r.buffered).toBe(0);
    expect(code(() => r.push(cts[2]!))).toBe('FRAME_BROKEN');
    expect(code(() => sealMessage(n2, new Uint8Array(100_001), 100_000))).toBe('FRAME_TOO_LARGE');
    // exactly at the limit is fine
    const { node: n3, server: s3 } = pair(nodeBackend, 22);
    const ok = new Reassembler(s3, 100_000);
    let out: Uint8Array | null = null;
    for (const c of sealMessage(n3, new Uint8Array(100_000), 100_000)) out = ok.push(c);
    expect(out?.length).toBe(100_000);
  });

  it('refuses a bad flag byte and an empty chunk', () => {
    const { node: n2, server: s2 } = pair(nodeBackend, 23);
    expect(code(() => new Reassembler(s2).push(n2.encrypt(Uint8Array.of(2, 1, 2))))).toBe('FRAME_BAD_FLAG');
    const { node: n3, server: s3 } = pair(nodeBackend, 24);
    const r = new Reassembler(s3);
    expect(code(() => r.push(n3.encrypt(new Uint8Array(0))))).toBe('FRAME_EMPTY');
    expect(code(() => r.push(n3.encrypt(Uint8Array.of(1))))).toBe('FRAME_BROKEN');
    // empty non-final chunks are allowed
    const { node: n4, server: s4 } = pair(nodeBackend, 25);
    const r4 = new Reassembler(s4);
    expect(r4.push(n4.encrypt(Uint8Array.of(0)))).toBeNull();
    expect(r4.push(n4.encrypt(Uint8Array.of(1, 9)))).toEqual(Uint8Array.of(9));
  });

  it('fuzz: chunk sequences of random sizes reassemble exactly', () => {
    const { node: n2, server: s2 } = pair(nodeBackend, 26);
    const r = new Reassembler(s2);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 140_000 }), (n) => {
        const data = new Uint8Array(n).fill(n & 0xff);
        const cts = sealMessage(n2, data);
        let out: Uint8Array | null = null;
        for (const c of cts) out = r.push(c);
        expect(out?.length).toBe(n);
        if (n) expect(out![n - 1]).toBe(n & 0xff);
      }),
      { numRuns: 60 },
    );
  });
});

describe('framing: JSON helpers', () => {
  it('round trips JSON as UTF-8', () => {
    const v = { a: 1, b: ['x', 'ü', '🙂'], c: null, d: { e: true } };
    const bytes = encodeJson(v);
    expect(new TextDecoder().decode(bytes)).toBe(JSON.stringify(v));
    expect(decodeJson(bytes)).toEqual(v);
  });

  it('typed errors for bad UTF-8, bad JSON and unencodable values', () => {
    expect(code(() => decodeJson(Uint8Array.of(0x7b, 0xff, 0x7d)))).toBe('FRAME_BAD_UTF8');
    expect(code(() => decodeJson(Uint8Array.of(0xed, 0xa0, 0x80)))).toBe('FRAME_BAD_UTF8'); // surrogate
    expect(code(() => decodeJson(te.encode('{"a":')))).toBe('FRAME_BAD_JSON');
    expect(code(() => decodeJson(new Uint8Array(0)))).toBe('FRAME_BAD_JSON');
    expect(code(() => decodeJson(Uint8Array.of(0xef, 0xbb, 0xbf, 0x31)))).toBe('FRAME_BAD_JSON'); // BOM
    expect(code(() => encodeJson(undefined))).toBe('FRAME_BAD_JSON');
    expect(code(() => encodeJson({ n: 1n }))).toBe('FRAME_BAD_JSON');
    const cyc: Record<string, unknown> = {};
    cyc.self = cyc;
    expect(code(() => encodeJson(cyc))).toBe('FRAME_BAD_JSON');
    const err = (() => {
      try {
        decodeJson(te.encode('nope'));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(FrameError);
    expect(err).not.toBeInstanceOf(NoiseError);
  });

  it('fuzz: decodeJson throws only typed errors', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => typedOnly(() => decodeJson(b))), { numRuns: 3000 });
  });
});
