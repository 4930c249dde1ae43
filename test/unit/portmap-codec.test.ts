/**
 * Port-mapping wire codecs (gateway/src/portmap): NAT-PMP (RFC 6886) and PCP (RFC 6887).
 * Expected bytes are written out by hand from the RFC field diagrams, field by field.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromHex, toHex } from '../../src/crypto/bytes.ts';
import { parseIP } from '../../src/netstack/addr.ts';
import { isPierceError } from '../../src/errors.ts';
import {
  NATPMP_CLIENT_PORT,
  NATPMP_ERROR,
  NATPMP_LEN,
  NATPMP_OP,
  NATPMP_RESULT,
  NATPMP_RESULT_NAMES,
  NATPMP_RETRANSMIT_MS,
  NATPMP_SERVER_PORT,
  NatPmpError,
  decodeNatPmpRequest,
  decodeNatPmpResponse,
  encodeNatPmpErrorResponse,
  encodeNatPmpExternalAddressRequest,
  encodeNatPmpExternalAddressResponse,
  encodeNatPmpMappingRequest,
  encodeNatPmpMappingResponse,
  natPmpResultName,
  type NatPmpProtocol,
} from '../../gateway/src/portmap/natpmp.ts';
import {
  PCP_ERROR,
  PCP_MAX_LENGTH,
  PCP_OP,
  PCP_OPTION,
  PCP_PROTOCOL,
  PCP_RESULT,
  PCP_RESULT_NAMES,
  PCP_SERVER_PORT,
  PCP_VERSION,
  PcpError,
  classifyPcpReply,
  decodePcpRequest,
  decodePcpResponse,
  encodePcpAnnounceRequest,
  encodePcpAnnounceResponse,
  encodePcpMapRequest,
  encodePcpMapResponse,
  fromPcpAddress,
  isNatPmpUnsupportedVersion,
  isPcpResponse,
  pcpResultName,
  toPcpAddress,
} from '../../gateway/src/portmap/pcp.ts';
import { expectCode } from '../support/errors.ts';

const hex = (s: string) => fromHex(s.replace(/\s+/g, ''))!;


describe('NAT-PMP constants', () => {
  it('ports, opcodes and lengths match RFC 6886 §3', () => {
    expect([NATPMP_SERVER_PORT, NATPMP_CLIENT_PORT]).toEqual([5351, 5350]);
    expect(NATPMP_OP).toEqual({ EXTERNAL_ADDRESS: 0, MAP_UDP: 1, MAP_TCP: 2 });
    expect(NATPMP_LEN).toEqual({ EXTERNAL_ADDRESS_REQUEST: 2, EXTERNAL_ADDRESS_RESPONSE: 12, MAPPING_REQUEST: 12, MAPPING_RESPONSE: 16, ERROR_RESPONSE: 8 });
  });

  it('retransmission schedule: 250 ms doubling, 9 tries, last wait 64 s (§3.1)', () => {
    expect(NATPMP_RETRANSMIT_MS).toEqual([250, 500, 1000, 2000, 4000, 8000, 16000, 32000, 64000]);
    expect(Object.isFrozen(NATPMP_RETRANSMIT_MS)).toBe(true);
  });

  it('names every result code 0–5 (§3.5)', () => {
    const names = [0, 1, 2, 3, 4, 5].map(natPmpResultName);
    expect(names).toEqual(['Success', 'Unsupported Version', 'Not Authorized/Refused', 'Network Failure', 'Out of resources', 'Unsupported opcode']);
    expect(Object.keys(NATPMP_RESULT_NAMES)).toHaveLength(6);
    expect(Object.values(NATPMP_RESULT)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(natPmpResultName(6)).toBe('Unknown (6)');
    expect(natPmpResultName(65535)).toBe('Unknown (65535)');
  });
});

describe('NAT-PMP byte layouts', () => {
  it('external address request is 00 00 (§3.2)', () => {
    expect(toHex(encodeNatPmpExternalAddressRequest())).toBe('0000');
    expect(decodeNatPmpRequest(hex('0000'))).toEqual({ kind: 'external-address' });
  });

  it('external address response (§3.2)', () => {
    // vers 0 | op 128 | result 0 (16) | epoch 123456 = 0x0001e240 | 203.0.113.7
    const wire = hex('00 80 0000 0001e240 cb007107');
    const res = { result: 0, epoch: 123456, externalAddress: parseIP('203.0.113.7') };
    expect(toHex(encodeNatPmpExternalAddressResponse(res))).toBe(toHex(wire));
    expect(decodeNatPmpResponse(wire)).toEqual({ kind: 'external-address', ...res });
  });

  it('UDP mapping request (§3.3): reserved zero, ports at 4/6, lifetime at 8', () => {
    // vers 0 | op 1 | reserved | internal 41641 | suggested 0 | lifetime 7200
    const wire = hex('00 01 0000 a2a9 0000 00001c20');
    expect(toHex(encodeNatPmpMappingRequest({ protocol: 'udp', internalPort: 41641 }))).toBe(toHex(wire)); // lifetime defaults to 7200
    expect(decodeNatPmpRequest(wire)).toEqual({ kind: 'mapping', protocol: 'udp', internalPort: 41641, suggestedExternalPort: 0, lifetime: 7200 });
  });

  it('TCP mapping request and delete-all (§3.3, §3.4)', () => {
    expect(toHex(encodeNatPmpMappingRequest({ protocol: 'tcp', internalPort: 22, suggestedExternalPort: 2222, lifetime: 3600 }))).toBe('000200000016' + '08ae' + '00000e10');
    expect(toHex(encodeNatPmpMappingRequest({ protocol: 'tcp', internalPort: 0, suggestedExternalPort: 0, lifetime: 0 }))).toBe('000200000000000000000000');
  });

  it('mapping responses, op 129 / 130 (§3.3)', () => {
    // vers 0 | op 130 | result 0 | epoch 16 | internal 8080 | mapped 50000 | lifetime 3600
    const tcp = hex('00 82 0000 00000010 1f90 c350 00000e10');
    const res = { protocol: 'tcp' as const, result: 0, epoch: 16, internalPort: 8080, externalPort: 50000, lifetime: 3600 };
    expect(toHex(encodeNatPmpMappingResponse(res))).toBe(toHex(tcp));
    expect(decodeNatPmpResponse(tcp)).toEqual({ kind: 'mapping', ...res });
    const udp = hex('00 81 0004 ffffffff 0001 0000 00000000');
    expect(decodeNatPmpResponse(udp)).toEqual({ kind: 'mapping', protocol: 'udp', result: NATPMP_RESULT.OUT_OF_RESOURCES, epoch: 0xffffffff, internalPort: 1, externalPort: 0, lifetime: 0 });
  });

  it('short error forms (§3.5)', () => {
    // Unsupported Version to a version-1 mapping request: 8 bytes.
    const wire = hex('00 81 0001 00000064');
    expect(toHex(encodeNatPmpErrorResponse({ requestOpcode: 1, result: 1, epoch: 100 }))).toBe(toHex(wire));
    expect(decodeNatPmpResponse(wire)).toEqual({ kind: 'error', opcode: 0x81, result: 1, epoch: 100 });
    // Unsupported opcode: the request echoed with the top bit set, result 5.
    expect(decodeNatPmpResponse(hex('00 85 0005 a2a9 0000 00001c20'))).toEqual({ kind: 'error', opcode: 0x85, result: 5, epoch: 0xa2a90000 });
    expect(decodeNatPmpResponse(hex('00 87 0005'))).toEqual({ kind: 'error', opcode: 0x87, result: 5, epoch: null });
  });

  it('trailing bytes after a response are ignored; requests must be exact', () => {
    expect(decodeNatPmpResponse(hex('00 80 0000 00000001 0a000001 dead'))).toMatchObject({ kind: 'external-address', epoch: 1 });
    expectCode(() => decodeNatPmpRequest(hex('0000 00')), NatPmpError, NATPMP_ERROR.LENGTH);
  });
});

describe('NAT-PMP errors', () => {
  it('truncations, version, direction, unknown opcodes', () => {
    expectCode(() => decodeNatPmpRequest(new Uint8Array(0)), NatPmpError, NATPMP_ERROR.LENGTH);
    expectCode(() => decodeNatPmpRequest(hex('00')), NatPmpError, NATPMP_ERROR.LENGTH);
    expectCode(() => decodeNatPmpRequest(hex('00 01 0000 a2a9 0000 0000')), NatPmpError, NATPMP_ERROR.LENGTH);
    expectCode(() => decodeNatPmpRequest(hex('01 00')), NatPmpError, NATPMP_ERROR.VERSION);
    expectCode(() => decodeNatPmpRequest(hex('00 03')), NatPmpError, NATPMP_ERROR.OPCODE);
    expectCode(() => decodeNatPmpRequest(hex('00 80 0000 00000000 00000000')), NatPmpError, NATPMP_ERROR.OPCODE);
    expectCode(() => decodeNatPmpResponse(hex('00 00')), NatPmpError, NATPMP_ERROR.OPCODE);
    expectCode(() => decodeNatPmpResponse(hex('02 81 0001 00000000')), NatPmpError, NATPMP_ERROR.VERSION);
    expectCode(() => decodeNatPmpResponse(hex('00 80 0000 00000001 0a00')), NatPmpError, NATPMP_ERROR.LENGTH); // success needs 12
    expectCode(() => decodeNatPmpResponse(hex('00 81 0000 00000001 1f90 c350')), NatPmpError, NATPMP_ERROR.LENGTH); // success needs 16
    expectCode(() => decodeNatPmpResponse(hex('00 81 0002 0000')), NatPmpError, NATPMP_ERROR.LENGTH); // error needs 8
    expectCode(() => decodeNatPmpResponse(hex('00 83 0000 00000000')), NatPmpError, NATPMP_ERROR.OPCODE);
    expectCode(() => decodeNatPmpResponse(hex('00 80')), NatPmpError, NATPMP_ERROR.LENGTH);
  });

  it('encoders reject out-of-range arguments', () => {
    const bad: (() => unknown)[] = [
      () => encodeNatPmpMappingRequest({ protocol: 'udp', internalPort: 65536 }),
      () => encodeNatPmpMappingRequest({ protocol: 'udp', internalPort: -1 }),
      () => encodeNatPmpMappingRequest({ protocol: 'udp', internalPort: 1.5 }),
      () => encodeNatPmpMappingRequest({ protocol: 'tcp', internalPort: 1, lifetime: 2 ** 32 }),
      () => encodeNatPmpMappingRequest({ protocol: 'sctp' as NatPmpProtocol, internalPort: 1 }),
      () => encodeNatPmpExternalAddressResponse({ result: 0, epoch: 0, externalAddress: new Uint8Array(16) }),
      () => encodeNatPmpExternalAddressResponse({ result: 65536, epoch: 0, externalAddress: new Uint8Array(4) }),
      () => encodeNatPmpMappingResponse({ protocol: 'udp', result: 0, epoch: -1, internalPort: 1, externalPort: 1, lifetime: 1 }),
      () => encodeNatPmpErrorResponse({ requestOpcode: 0x81, result: 1, epoch: 0 }),
    ];
    for (const f of bad) expectCode(f, NatPmpError, NATPMP_ERROR.ARGUMENT);
  });
});

describe('NAT-PMP round trips and fuzz', () => {
  const port = fc.integer({ min: 0, max: 0xffff });
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  const u16 = fc.integer({ min: 0, max: 0xffff });
  const proto = fc.constantFrom<NatPmpProtocol>('udp', 'tcp');

  it('mapping request / response and external address response round-trip', () => {
    fc.assert(
      fc.property(proto, port, port, u32, u16, u32, (protocol, a, b, lifetime, result, epoch) => {
        const req = { protocol, internalPort: a, suggestedExternalPort: b, lifetime };
        expect(decodeNatPmpRequest(encodeNatPmpMappingRequest(req))).toEqual({ kind: 'mapping', ...req });
        const res = { protocol, result, epoch, internalPort: a, externalPort: b, lifetime };
        expect(decodeNatPmpResponse(encodeNatPmpMappingResponse(res))).toEqual({ kind: 'mapping', ...res });
      }),
    );
    fc.assert(
      fc.property(u16, u32, fc.uint8Array({ minLength: 4, maxLength: 4 }), (result, epoch, externalAddress) => {
        expect(decodeNatPmpResponse(encodeNatPmpExternalAddressResponse({ result, epoch, externalAddress }))).toEqual({ kind: 'external-address', result, epoch, externalAddress });
      }),
    );
  });

  const decoders = [decodeNatPmpRequest, decodeNatPmpResponse];
  function onlyTyped(b: Uint8Array): void {
    for (const d of decoders) {
      try {
        d(b);
      } catch (e) {
        if (!(e instanceof NatPmpError) || !Object.values(NATPMP_ERROR).includes(e.code as never)) throw e;
      }
    }
  }

  it('random bytes → a value or a NatPmpError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), (b) => onlyTyped(b)), { numRuns: 3000 });
    // Version 0 prefix so the decoders get past the version check.
    fc.assert(fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 20 }), (op, rest) => onlyTyped(Uint8Array.of(0, op, ...rest))), { numRuns: 3000 });
  });

  it('truncated and mutated valid messages → a value or a NatPmpError; decoded requests re-encode exactly', () => {
    const valid = fc.oneof(
      fc.constant(encodeNatPmpExternalAddressRequest()),
      fc.record({ protocol: proto, internalPort: port, suggestedExternalPort: port, lifetime: u32 }).map(encodeNatPmpMappingRequest),
      fc.record({ result: u16, epoch: u32, externalAddress: fc.uint8Array({ minLength: 4, maxLength: 4 }) }).map(encodeNatPmpExternalAddressResponse),
      fc.record({ protocol: proto, result: u16, epoch: u32, internalPort: port, externalPort: port, lifetime: u32 }).map(encodeNatPmpMappingResponse),
      fc.record({ requestOpcode: fc.integer({ min: 0, max: 127 }), result: u16, epoch: u32 }).map(encodeNatPmpErrorResponse),
    );
    fc.assert(
      fc.property(valid, fc.nat(), fc.integer({ min: 1, max: 255 }), (b, at, x) => {
        onlyTyped(b.subarray(0, at % (b.length + 1)));
        const c = b.slice();
        c[at % c.length]! ^= x;
        onlyTyped(c);
        for (const m of [b, c]) {
          let r;
          try {
            r = decodeNatPmpRequest(m);
          } catch {
            continue;
          }
          const again = r.kind === 'external-address' ? encodeNatPmpExternalAddressRequest() : encodeNatPmpMappingRequest(r);
          if (m[2] === 0 && m[3] === 0) expect(toHex(again)).toBe(toHex(m)); // reserved bytes aside
        }
      }),
      { numRuns: 3000 },
    );
  });
});

// ───────────────────────────── PCP ─────────────────────────────

const client4 = parseIP('192.168.1.10');
const nonce = hex('0102030405060708090a0b0c');
// ::ffff:192.168.1.10
const client4Wire = '00000000000000000000ffff' + 'c0a8010a';

describe('PCP constants', () => {
  it('version, port, opcodes, options', () => {
    expect([PCP_VERSION, PCP_SERVER_PORT, PCP_MAX_LENGTH]).toEqual([2, 5351, 1100]);
    expect(PCP_OP).toEqual({ ANNOUNCE: 0, MAP: 1, PEER: 2 });
    expect(PCP_OPTION).toEqual({ THIRD_PARTY: 1, PREFER_FAILURE: 2, FILTER: 3 });
  });

  it('names every result code 0–13 (§7.4)', () => {
    const names = Array.from({ length: 14 }, (_, i) => pcpResultName(i));
    expect(names).toEqual([
      'SUCCESS',
      'UNSUPP_VERSION',
      'NOT_AUTHORIZED',
      'MALFORMED_REQUEST',
      'UNSUPP_OPCODE',
      'UNSUPP_OPTION',
      'MALFORMED_OPTION',
      'NETWORK_FAILURE',
      'NO_RESOURCES',
      'UNSUPP_PROTOCOL',
      'USER_EX_QUOTA',
      'CANNOT_PROVIDE_EXTERNAL',
      'ADDRESS_MISMATCH',
      'EXCESSIVE_REMOTE_PEERS',
    ]);
    expect(Object.keys(PCP_RESULT_NAMES)).toHaveLength(14);
    for (const [name, code] of Object.entries(PCP_RESULT)) expect(pcpResultName(code)).toBe(name);
    expect(pcpResultName(14)).toBe('UNKNOWN(14)');
  });

  it('v4-mapped addresses (§5)', () => {
    expect(toHex(toPcpAddress(client4))).toBe(client4Wire);
    expect(toHex(fromPcpAddress(hex(client4Wire)))).toBe('c0a8010a');
    const v6 = parseIP('2001:db8::1');
    expect(toHex(toPcpAddress(v6))).toBe(toHex(v6));
    expect(toHex(fromPcpAddress(v6))).toBe(toHex(v6));
    expectCode(() => toPcpAddress(new Uint8Array(5)), PcpError, PCP_ERROR.ARGUMENT);
    expectCode(() => fromPcpAddress(new Uint8Array(4)), PcpError, PCP_ERROR.ARGUMENT);
  });
});

describe('PCP byte layouts', () => {
  it('ANNOUNCE request: 24-byte header, version 2, R=0, op 0, lifetime 0 (§7.1, §14.1)', () => {
    const wire = hex('02 00 0000 00000000' + client4Wire);
    const b = encodePcpAnnounceRequest({ clientAddress: client4 });
    expect(b.length).toBe(24);
    expect(toHex(b)).toBe(toHex(wire));
    expect(decodePcpRequest(wire)).toEqual({ opcode: 0, lifetime: 0, clientAddress: hex(client4Wire), options: [] });
  });

  it('MAP request: 60 bytes, nonce @24, protocol @36, ports @40/@42, address @44 (§11.1)', () => {
    const wire = hex(
      '02 01 0000 00001c20' + client4Wire + // header: version 2, R=0 op 1, reserved, lifetime 7200, client IP
        '0102030405060708090a0b0c' + // mapping nonce
        '11 000000' + // protocol 17 (UDP), reserved
        'a2a9 0000' + // internal port 41641, suggested external port 0
        '00000000000000000000ffff00000000', // suggested external IP ::ffff:0.0.0.0
    );
    const b = encodePcpMapRequest({ clientAddress: client4, lifetime: 7200, nonce, protocol: PCP_PROTOCOL.UDP, internalPort: 41641 });
    expect(b.length).toBe(60);
    expect(toHex(b)).toBe(toHex(wire));
    expect(decodePcpRequest(wire)).toEqual({
      opcode: 1,
      lifetime: 7200,
      clientAddress: hex(client4Wire),
      map: { nonce, protocol: 17, internalPort: 41641, externalPort: 0, externalAddress: hex('00000000000000000000ffff00000000') },
      options: [],
    });
  });

  it('MAP request from an IPv6 client suggests :: and keeps 16-byte addresses', () => {
    const v6 = parseIP('2001:db8::5');
    const b = encodePcpMapRequest({ clientAddress: v6, lifetime: 0, nonce, protocol: PCP_PROTOCOL.TCP, internalPort: 22, suggestedExternalPort: 2222 });
    expect(toHex(b)).toBe('02010000' + '00000000' + toHex(v6) + toHex(nonce) + '06000000' + '001608ae' + '00'.repeat(16));
  });

  it('MAP request with options: code, reserved, length, padded data (§7.3)', () => {
    const b = encodePcpMapRequest({
      clientAddress: client4,
      lifetime: 60,
      nonce,
      protocol: 17,
      internalPort: 1,
      suggestedExternalAddress: parseIP('198.51.100.9'),
      options: [{ code: PCP_OPTION.PREFER_FAILURE, data: new Uint8Array(0) }, { code: PCP_OPTION.THIRD_PARTY, data: toPcpAddress(parseIP('10.0.0.2')) }, { code: 0x80, data: hex('aabbcc') }],
    });
    expect(toHex(b.subarray(44, 60))).toBe('00000000000000000000ffffc6336409');
    expect(toHex(b.subarray(60))).toBe('02000000' + '01000010' + '00000000000000000000ffff0a000002' + '80000003' + 'aabbcc00');
    const r = decodePcpRequest(b);
    expect(r.options.map((o) => [o.code, toHex(o.data)])).toEqual([
      [2, ''],
      [1, '00000000000000000000ffff0a000002'],
      [0x80, 'aabbcc'],
    ]);
  });

  it('MAP response: R=1, result @3, lifetime @4, epoch @8, reserved 12..23, assigned port @42 / IP @44 (§7.2, §11.1)', () => {
    const ext = '00000000000000000000ffff' + 'cb007107'; // ::ffff:203.0.113.7
    const wire = hex(
      '02 81 00 00 00001c20 0001e240' + '00'.repeat(12) + // header
        '0102030405060708090a0b0c' + '11 000000' + 'a2a9 c350' + ext,
    );
    const res = { result: 0, lifetime: 7200, epoch: 123456, nonce, protocol: 17, internalPort: 41641, externalPort: 50000, externalAddress: parseIP('203.0.113.7') };
    expect(toHex(encodePcpMapResponse(res))).toBe(toHex(wire));
    const d = decodePcpResponse(wire);
    expect(d).toEqual({ opcode: 1, result: 0, lifetime: 7200, epoch: 123456, map: { nonce, protocol: 17, internalPort: 41641, externalPort: 50000, externalAddress: hex(ext) }, options: [] });
    expect(d.opcode === PCP_OP.MAP && d.map && toHex(fromPcpAddress(d.map.externalAddress))).toBe('cb007107');
  });

  it('ANNOUNCE response, and a header-only MAP error response (§7.2, §8.3)', () => {
    const announce = hex('02 80 00 00 00000000 00000005' + '00'.repeat(12));
    expect(toHex(encodePcpAnnounceResponse({ result: 0, lifetime: 0, epoch: 5 }))).toBe(toHex(announce));
    expect(decodePcpResponse(announce)).toEqual({ opcode: 0, result: 0, lifetime: 0, epoch: 5, options: [] });
    const err = hex('02 81 00 02 0000001e 00000005' + '00'.repeat(12)); // NOT_AUTHORIZED, 30 s
    expect(decodePcpResponse(err)).toEqual({ opcode: 1, result: PCP_RESULT.NOT_AUTHORIZED, lifetime: 30, epoch: 5, map: null, options: [] });
  });
});

describe('PCP version negotiation (§9)', () => {
  // A NAT-PMP-only gateway answering a PCP MAP request (op 1) and an ANNOUNCE (op 0):
  // vers 0 | op = request op + 128 | 16-bit result 1 (Unsupported Version) | epoch.
  const pmpToMap = hex('00 81 0001 00000e10');
  const pmpToAnnounce = hex('00 80 0001 00000e10');

  it('recognises a NAT-PMP answer to a PCP request', () => {
    for (const b of [pmpToMap, pmpToAnnounce]) {
      expect(isPcpResponse(b)).toBe(false);
      expect(isNatPmpUnsupportedVersion(b)).toBe(true);
      expect(classifyPcpReply(b)).toBe('natpmp');
      expectCode(() => decodePcpResponse(b), PcpError, PCP_ERROR.NATPMP_ONLY);
      // Byte 3 is PCP's result field too, and it reads UNSUPP_VERSION.
      expect(pcpResultName(b[3]!)).toBe('UNSUPP_VERSION');
    }
    // The NAT-PMP codec reads it as the short error form.
    expect(decodeNatPmpResponse(pmpToMap)).toEqual({ kind: 'error', opcode: 0x81, result: NATPMP_RESULT.UNSUPPORTED_VERSION, epoch: 3600 });
    // And matches what the NAT-PMP encoder produces for a request it could not parse.
    expect(toHex(encodeNatPmpErrorResponse({ requestOpcode: PCP_OP.MAP, result: 1, epoch: 3600 }))).toBe(toHex(pmpToMap));
  });

  it('classifies real PCP replies and rejects everything else', () => {
    const pcp = encodePcpAnnounceResponse({ result: 0, lifetime: 0, epoch: 1 });
    expect([isPcpResponse(pcp), classifyPcpReply(pcp)]).toEqual([true, 'pcp']);
    const req = encodePcpAnnounceRequest({ clientAddress: client4 });
    expect(classifyPcpReply(req)).toBe('other'); // R bit clear
    expect(classifyPcpReply(hex('00 80 0000 00000001 0a000001'))).toBe('other'); // NAT-PMP success, not a version error
    expect(classifyPcpReply(hex('00 81 0001'))).toBe('other'); // too short
    expect(classifyPcpReply(hex('01 80 00 00' + '00'.repeat(20)))).toBe('other'); // version 1
    expect(classifyPcpReply(new Uint8Array(0))).toBe('other');
    expectCode(() => decodePcpResponse(hex('01 80 00 01' + '00'.repeat(20))), PcpError, PCP_ERROR.VERSION);
  });
});

describe('PCP errors', () => {
  const mapReq = encodePcpMapRequest({ clientAddress: client4, lifetime: 1, nonce, protocol: 17, internalPort: 1 });
  const mapRes = encodePcpMapResponse({ result: 0, lifetime: 1, epoch: 1, nonce, protocol: 17, internalPort: 1, externalPort: 2, externalAddress: client4 });

  it('length, direction, opcode and option errors', () => {
    expectCode(() => decodePcpRequest(new Uint8Array(0)), PcpError, PCP_ERROR.LENGTH);
    expectCode(() => decodePcpRequest(mapReq.subarray(0, 58)), PcpError, PCP_ERROR.LENGTH); // not 4-aligned
    expectCode(() => decodePcpRequest(mapReq.subarray(0, 56)), PcpError, PCP_ERROR.LENGTH); // MAP data truncated
    expectCode(() => decodePcpRequest(mapReq.subarray(0, 20)), PcpError, PCP_ERROR.LENGTH); // header truncated
    expectCode(() => decodePcpRequest(new Uint8Array(1104).fill(2, 0, 1)), PcpError, PCP_ERROR.LENGTH); // over 1100
    expectCode(() => decodePcpResponse(mapRes.subarray(0, 56)), PcpError, PCP_ERROR.LENGTH); // SUCCESS needs the MAP data
    expectCode(() => decodePcpRequest(mapRes), PcpError, PCP_ERROR.DIRECTION);
    expectCode(() => decodePcpResponse(mapReq), PcpError, PCP_ERROR.DIRECTION);
    expectCode(() => decodePcpRequest(hex('02 02 0000 00000000' + client4Wire)), PcpError, PCP_ERROR.OPCODE); // PEER not supported
    expectCode(() => decodePcpResponse(hex('02 85 00 00' + '00'.repeat(20))), PcpError, PCP_ERROR.OPCODE);
    expectCode(() => decodePcpRequest(hex('03 00 0000 00000000' + client4Wire)), PcpError, PCP_ERROR.VERSION);
    expectCode(() => decodePcpRequest(hex('02 00 0000 00000000' + client4Wire + '01 00 0010 00000000')), PcpError, PCP_ERROR.OPTION); // length 16, 4 present
    expectCode(() => decodePcpResponse(hex('02 80 00 00' + '00'.repeat(20) + '01 00 0001')), PcpError, PCP_ERROR.OPTION); // needs padding
  });

  it('encoders reject out-of-range arguments', () => {
    const base = { clientAddress: client4, lifetime: 1, nonce, protocol: 17, internalPort: 1 };
    const bad: (() => unknown)[] = [
      () => encodePcpMapRequest({ ...base, nonce: new Uint8Array(11) }),
      () => encodePcpMapRequest({ ...base, protocol: 256 }),
      () => encodePcpMapRequest({ ...base, internalPort: 70000 }),
      () => encodePcpMapRequest({ ...base, lifetime: -1 }),
      () => encodePcpMapRequest({ ...base, clientAddress: new Uint8Array(8) }),
      () => encodePcpMapRequest({ ...base, options: [{ code: 1, data: new Uint8Array(1100) }] }),
      () => encodePcpMapRequest({ ...base, options: [{ code: 300, data: new Uint8Array(0) }] }),
      () => encodePcpAnnounceResponse({ result: 256, lifetime: 0, epoch: 0 }),
    ];
    for (const f of bad) expectCode(f, PcpError, PCP_ERROR.ARGUMENT);
  });
});

describe('PCP round trips and fuzz', () => {
  const u32 = fc.integer({ min: 0, max: 0xffffffff });
  const port = fc.integer({ min: 0, max: 0xffff });
  const addr = fc.oneof(fc.uint8Array({ minLength: 4, maxLength: 4 }), fc.uint8Array({ minLength: 16, maxLength: 16 }));
  const opt = fc.record({ code: fc.integer({ min: 0, max: 255 }), data: fc.uint8Array({ maxLength: 21 }) });
  const opts = fc.array(opt, { maxLength: 4 });
  const map = fc.record({ nonce: fc.uint8Array({ minLength: 12, maxLength: 12 }), protocol: fc.integer({ min: 0, max: 255 }), internalPort: port, externalPort: port, externalAddress: addr });
  const header = fc.record({ result: fc.integer({ min: 0, max: 255 }), lifetime: u32, epoch: u32 });

  it('requests and responses round-trip', () => {
    fc.assert(
      fc.property(addr, u32, map, opts, (clientAddress, lifetime, m, options) => {
        const r = decodePcpRequest(encodePcpMapRequest({ clientAddress, lifetime, nonce: m.nonce, protocol: m.protocol, internalPort: m.internalPort, suggestedExternalPort: m.externalPort, suggestedExternalAddress: m.externalAddress, options }));
        expect(r).toEqual({ opcode: PCP_OP.MAP, lifetime, clientAddress: toPcpAddress(clientAddress), map: { ...m, externalAddress: toPcpAddress(m.externalAddress) }, options });
        expect(decodePcpRequest(encodePcpAnnounceRequest({ clientAddress, lifetime, options }))).toEqual({ opcode: PCP_OP.ANNOUNCE, lifetime, clientAddress: toPcpAddress(clientAddress), options });
      }),
    );
    fc.assert(
      fc.property(header, map, opts, (h, m, options) => {
        const b = encodePcpMapResponse({ ...h, ...m, options });
        expect(b.length % 4).toBe(0);
        expect(isPcpResponse(b)).toBe(true);
        expect(decodePcpResponse(b)).toEqual({ opcode: PCP_OP.MAP, ...h, map: { ...m, externalAddress: toPcpAddress(m.externalAddress) }, options });
        expect(decodePcpResponse(encodePcpAnnounceResponse({ ...h, options }))).toEqual({ opcode: PCP_OP.ANNOUNCE, ...h, options });
      }),
    );
  });

  function onlyTyped(b: Uint8Array): void {
    for (const d of [decodePcpRequest, decodePcpResponse]) {
      try {
        d(b);
      } catch (e) {
        if (!(e instanceof PcpError) || !Object.values(PCP_ERROR).includes(e.code as never)) throw e;
      }
    }
    expect(typeof isPcpResponse(b)).toBe('boolean');
    expect(['pcp', 'natpmp', 'other']).toContain(classifyPcpReply(b));
  }

  it('random bytes → a value or a PcpError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 120 }), (b) => onlyTyped(b)), { numRuns: 3000 });
    // Plausible header bytes so the decoders get past version and direction.
    fc.assert(
      fc.property(fc.constantFrom(0, 2), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 30 }).map((a) => a.subarray(0, a.length - (a.length % 4))), fc.nat({ max: 27 }), (v, op, rest, pad) => {
        const b = new Uint8Array(4 + pad * 4 + rest.length);
        b[0] = v;
        b[1] = op;
        b.set(rest, b.length - rest.length);
        onlyTyped(b);
      }),
      { numRuns: 3000 },
    );
  });

  it('truncated and mutated valid messages → a value or a PcpError', () => {
    const valid = fc.oneof(
      fc.record({ clientAddress: addr, lifetime: u32, options: opts }).map(encodePcpAnnounceRequest),
      fc.tuple(addr, u32, map, opts).map(([clientAddress, lifetime, m, options]) =>
        encodePcpMapRequest({ clientAddress, lifetime, nonce: m.nonce, protocol: m.protocol, internalPort: m.internalPort, suggestedExternalPort: m.externalPort, suggestedExternalAddress: m.externalAddress, options }),
      ),
      fc.tuple(header, opts).map(([h, options]) => encodePcpAnnounceResponse({ ...h, options })),
      fc.tuple(header, map, opts).map(([h, m, options]) => encodePcpMapResponse({ ...h, ...m, options })),
    );
    fc.assert(
      fc.property(valid, fc.nat(), fc.integer({ min: 1, max: 255 }), (b, at, x) => {
        onlyTyped(b.subarray(0, at % (b.length + 1)));
        const c = b.slice();
        c[at % c.length]! ^= x;
        onlyTyped(c);
        // Lengths in options may now overrun: still typed. Truncating by 4 keeps alignment.
        onlyTyped(b.subarray(0, Math.max(0, b.length - 4 * (1 + (at % 4)))));
      }),
      { numRuns: 3000 },
    );
  });

  it('errors are PierceErrors with stable codes', () => {
    const caught: unknown[] = [];
    for (const f of [() => decodePcpResponse(hex('00 81 0001 00000000')), () => decodeNatPmpResponse(hex('05 80'))]) {
      try {
        f();
      } catch (e) {
        caught.push(e);
      }
    }
    expect(caught.map((e) => isPierceError(e) && e.code)).toEqual(['PCP_NATPMP_ONLY', 'NATPMP_VERSION']);
    expect(caught.every((e) => isPierceError(e, (e as PcpError).code))).toBe(true);
  });
});
