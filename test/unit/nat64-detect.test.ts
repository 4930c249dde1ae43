/**
 * DNS64 detection through Node's real resolver (c-ares) against a minimal DNS server in this
 * process that plays a DNS64: AAAA for ipv4only.arpa answered under a chosen prefix.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import { detectNat64 } from '../../gateway/src/nat64/detect.ts';
import { synthesize, type Nat64Prefix } from '../../src/paths/nat64.ts';
import { formatIP, parseIP, parsePrefix } from '../../src/netstack/addr.ts';

let sock: Socket | undefined;
afterEach(() => {
  sock?.close();
  sock = undefined;
});

/** Answers every AAAA query with `answers` (or NXDOMAIN when empty). */
async function dns64(answers: Uint8Array[]): Promise<string> {
  sock = createSocket('udp4');
  sock.on('message', (q, from) => {
    // Header(12) + question (name, type, class); we copy the question back.
    let o = 12;
    while (q[o]! !== 0) o += q[o]! + 1;
    const qend = o + 5;
    const question = q.subarray(12, qend);
    const hdr = Buffer.alloc(12);
    q.copy(hdr, 0, 0, 2); // id
    hdr.writeUInt16BE(answers.length ? 0x8180 : 0x8183, 2); // response, RD, RA; rcode 0 or 3
    hdr.writeUInt16BE(1, 4);
    hdr.writeUInt16BE(answers.length, 6);
    const rrs = answers.map((a) => {
      const rr = Buffer.alloc(12 + 16);
      rr.writeUInt16BE(0xc00c, 0); // name: pointer to the question
      rr.writeUInt16BE(28, 2); // AAAA
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(60, 6);
      rr.writeUInt16BE(16, 10);
      Buffer.from(a).copy(rr, 12);
      return rr;
    });
    sock!.send(Buffer.concat([hdr, question, ...rrs]), from.port, from.address);
  });
  await new Promise<void>((r) => sock!.bind(0, '127.0.0.1', () => r()));
  return `127.0.0.1:${sock.address().port}`;
}

describe('NAT64 detection (RFC 7050) through the system resolver', () => {
  it('learns the Well-Known Prefix and a network-specific /64 from a DNS64', async () => {
    for (const [text, len] of [['64:ff9b::', 96], ['2001:db8:122:344::', 64]] as const) {
      const p: Nat64Prefix = { prefix: parsePrefix(`${text}/${len}`).addr, length: len };
      const server = await dns64([synthesize(p, parseIP('192.0.0.170')), synthesize(p, parseIP('192.0.0.171'))]);
      const found = await detectNat64({ servers: [server], timeoutMs: 1000 });
      expect(found && formatIP(found.prefix)).toBe(formatIP(p.prefix));
      expect(found?.length).toBe(len);
      sock!.close();
      sock = undefined;
    }
  });

  it('reports no NAT64 for NXDOMAIN, for answers without the well-known addresses, and for no DNS at all', async () => {
    let server = await dns64([]);
    expect(await detectNat64({ servers: [server], timeoutMs: 1000 })).toBeUndefined();
    sock!.close();
    server = await dns64([parseIP('2001:db8::1')]);
    expect(await detectNat64({ servers: [server], timeoutMs: 1000 })).toBeUndefined();
    sock!.close();
    sock = undefined;
    expect(await detectNat64({ servers: ['127.0.0.1:9'], timeoutMs: 300 })).toBeUndefined();
  });
});
