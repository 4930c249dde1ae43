/**
 * Port-mapping client (gateway/src/portmap/client.ts) against an in-process fake gateway on
 * 127.0.0.1 with an ephemeral port, answering with the codecs' response encoders.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isPierceError } from '../../src/errors.ts';
import {
  PORTMAP_ERROR,
  natPmpExternalAddress,
  natPmpMap,
  parseProcNetRoute,
  pcpMap,
} from '../../gateway/src/portmap/client.ts';
import {
  NATPMP_OP,
  NATPMP_RESULT,
  decodeNatPmpRequest,
  encodeNatPmpErrorResponse,
  encodeNatPmpExternalAddressResponse,
  encodeNatPmpMappingResponse,
  type NatPmpRequest,
} from '../../gateway/src/portmap/natpmp.ts';
import { PCP_OP, decodePcpRequest, encodePcpMapResponse, toPcpAddress } from '../../gateway/src/portmap/pcp.ts';

const sockets: Socket[] = [];

afterEach(() => {
  for (const s of sockets.splice(0)) s.close();
});

type Handler = (msg: Uint8Array, reply: (b: Uint8Array) => void, rinfo: RemoteInfo) => void;

/** A fake gateway; returns its port and the requests it received. */
async function fakeGateway(handler: Handler): Promise<{ port: number; received: Uint8Array[] }> {
  const sock = createSocket('udp4');
  sockets.push(sock);
  const received: Uint8Array[] = [];
  sock.on('message', (msg, rinfo) => {
    const b = new Uint8Array(msg);
    received.push(b);
    handler(b, (out) => sock.send(out, rinfo.port, rinfo.address), rinfo);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return { port: sock.address().port, received };
}

const GW = '127.0.0.1';
const FAST = { retransmitMs: [50, 100, 200], timeoutMs: 1000 };

async function expectCode(p: Promise<unknown>, code: string): Promise<Error> {
  const e = await p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
  expect(isPierceError(e, code)).toBe(true);
  return e as Error;
}

describe('NAT-PMP client', () => {
  it('gets the external address', async () => {
    const { port } = await fakeGateway((msg, reply) => {
      expect(decodeNatPmpRequest(msg)).toEqual({ kind: 'external-address' });
      reply(encodeNatPmpExternalAddressResponse({ result: 0, epoch: 1234, externalAddress: Uint8Array.of(203, 0, 113, 7) }));
    });
    await expect(natPmpExternalAddress(GW, { port })).resolves.toEqual({ address: '203.0.113.7', epoch: 1234 });
  });

  it('maps a UDP port and sends the requested internal port and lifetime', async () => {
    const { port, received } = await fakeGateway((msg, reply) => {
      const req = decodeNatPmpRequest(msg);
      if (req.kind !== 'mapping') return;
      reply(encodeNatPmpMappingResponse({ protocol: 'udp', result: 0, epoch: 99, internalPort: req.internalPort, externalPort: 40000, lifetime: 3600 }));
    });
    const res = await natPmpMap(GW, { protocol: 'udp', internalPort: 41641, suggestedExternalPort: 41641, lifetime: 3600 }, { port });
    expect(res).toEqual({ externalPort: 40000, lifetime: 3600, epoch: 99 });
    expect(received).toHaveLength(1);
    const req = decodeNatPmpRequest(received[0]!) as Extract<NatPmpRequest, { kind: 'mapping' }>;
    expect(req).toEqual({ kind: 'mapping', protocol: 'udp', internalPort: 41641, suggestedExternalPort: 41641, lifetime: 3600 });
  });

  it('a non-zero result is PORTMAP_REFUSED with the RFC name', async () => {
    const { port } = await fakeGateway((_msg, reply) => {
      reply(encodeNatPmpErrorResponse({ requestOpcode: NATPMP_OP.MAP_UDP, result: NATPMP_RESULT.NOT_AUTHORIZED, epoch: 5 }));
    });
    const e = await expectCode(natPmpMap(GW, { protocol: 'udp', internalPort: 1000 }, { port }), PORTMAP_ERROR.REFUSED);
    expect(e.message).toContain('Not Authorized/Refused');
  });

  it('no answer is PORTMAP_TIMEOUT within the bound, after retransmitting', async () => {
    const { port, received } = await fakeGateway(() => {});
    const t0 = Date.now();
    await expectCode(natPmpExternalAddress(GW, { port, timeoutMs: 300 }), PORTMAP_ERROR.TIMEOUT);
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(280);
    expect(elapsed).toBeLessThan(800);
    expect(received.length).toBe(2); // t=0 and t=250 (RFC 6886 §3.1)
  });

  it('answers to the retransmission when the first request is dropped', async () => {
    let n = 0;
    const { port, received } = await fakeGateway((_msg, reply) => {
      if (n++ === 0) return;
      reply(encodeNatPmpExternalAddressResponse({ result: 0, epoch: 7, externalAddress: Uint8Array.of(198, 51, 100, 1) }));
    });
    await expect(natPmpExternalAddress(GW, { ...FAST, port })).resolves.toEqual({ address: '198.51.100.1', epoch: 7 });
    expect(received).toHaveLength(2);
  });

  it('ignores garbage, the wrong opcode, and datagrams from other ports', async () => {
    const stranger = createSocket('udp4');
    sockets.push(stranger);
    await new Promise<void>((r) => stranger.bind(0, '127.0.0.1', r));
    const { port } = await fakeGateway((_msg, reply, rinfo) => {
      reply(Uint8Array.of(1, 2, 3));
      reply(encodeNatPmpExternalAddressResponse({ result: 0, epoch: 1, externalAddress: Uint8Array.of(6, 6, 6, 6) }));
      stranger.send(encodeNatPmpMappingResponse({ protocol: 'udp', result: 0, epoch: 1, internalPort: 2000, externalPort: 6666, lifetime: 1 }), rinfo.port, rinfo.address);
      setTimeout(() => reply(encodeNatPmpMappingResponse({ protocol: 'udp', result: 0, epoch: 2, internalPort: 2000, externalPort: 2001, lifetime: 60 })), 20);
    });
    await expect(natPmpMap(GW, { protocol: 'udp', internalPort: 2000, lifetime: 60 }, { ...FAST, retransmitMs: [500], port })).resolves.toEqual({
      externalPort: 2001,
      lifetime: 60,
      epoch: 2,
    });
  });
});

describe('PCP client', () => {
  const nonce = Uint8Array.from({ length: 12 }, (_, i) => i + 1);

  it('MAP round trip', async () => {
    const { port, received } = await fakeGateway((msg, reply) => {
      const req = decodePcpRequest(msg);
      if (req.opcode !== PCP_OP.MAP) return;
      reply(
        encodePcpMapResponse({
          result: 0,
          lifetime: req.lifetime,
          epoch: 42,
          ...req.map,
          externalPort: 50000,
          externalAddress: toPcpAddress(Uint8Array.of(203, 0, 113, 9)),
        }),
      );
    });
    const res = await pcpMap(GW, '192.168.1.20', { internalPort: 41641, lifetime: 600, nonce }, { port });
    expect(res).toEqual({ externalAddress: '203.0.113.9', externalPort: 50000, lifetime: 600, epoch: 42 });
    const req = decodePcpRequest(received[0]!);
    expect(req.opcode).toBe(PCP_OP.MAP);
    if (req.opcode === PCP_OP.MAP) {
      expect(req.map.internalPort).toBe(41641);
      expect(req.map.protocol).toBe(17);
      expect(req.map.nonce).toEqual(nonce);
    }
  });

  it('ignores a wrong-nonce reply and garbage', async () => {
    const { port } = await fakeGateway((msg, reply) => {
      const req = decodePcpRequest(msg);
      if (req.opcode !== PCP_OP.MAP) return;
      const base = { result: 0, lifetime: 60, epoch: 1, ...req.map, externalAddress: toPcpAddress(Uint8Array.of(1, 1, 1, 1)) };
      reply(new Uint8Array(28).fill(0xee));
      reply(encodePcpMapResponse({ ...base, nonce: new Uint8Array(12), externalPort: 1111 }));
      setTimeout(() => reply(encodePcpMapResponse({ ...base, externalPort: 2222 })), 20);
    });
    const res = await pcpMap(GW, '10.0.0.2', { internalPort: 3000, nonce }, { ...FAST, retransmitMs: [500], port });
    expect(res.externalPort).toBe(2222);
  });

  it('a NAT-PMP Unsupported Version reply is PORTMAP_NATPMP_ONLY', async () => {
    const { port } = await fakeGateway((msg, reply) => {
      reply(encodeNatPmpErrorResponse({ requestOpcode: msg[1]! & 0x7f, result: NATPMP_RESULT.UNSUPPORTED_VERSION, epoch: 3 }));
    });
    await expectCode(pcpMap(GW, '10.0.0.2', { internalPort: 3000 }, { port }), PORTMAP_ERROR.NATPMP_ONLY);
  });

  it('a non-zero PCP result is PORTMAP_REFUSED with the RFC name', async () => {
    const { port } = await fakeGateway((msg, reply) => {
      const req = decodePcpRequest(msg);
      if (req.opcode !== PCP_OP.MAP) return;
      reply(encodePcpMapResponse({ result: 8, lifetime: 30, epoch: 1, ...req.map }));
    });
    const e = await expectCode(pcpMap(GW, '10.0.0.2', { internalPort: 3000 }, { port }), PORTMAP_ERROR.REFUSED);
    expect(e.message).toContain('NO_RESOURCES');
  });
});

describe('parseProcNetRoute', () => {
  const sample = [
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
    'eth0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0',
    'wlan0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0',
    'eth0\t0001A8C0\t00000000\t0001\t0\t0\t600\t00FFFFFF\t0\t0\t0',
    '',
  ].join('\n');

  it('returns the default route gateway with the lowest metric', () => {
    expect(parseProcNetRoute(sample)).toBe('10.0.0.1');
  });

  it('little-endian hex to dotted quad; no default route is undefined', () => {
    const one = sample.split('\n').filter((l, i) => i !== 2).join('\n');
    expect(parseProcNetRoute(one)).toBe('192.168.1.1');
    expect(parseProcNetRoute(sample.split('\n').filter((l, i) => i === 0 || i === 3).join('\n'))).toBeUndefined();
    expect(parseProcNetRoute('')).toBeUndefined();
  });
});
