import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatPrefix } from '../../src/netstack/addr.ts';
import { ConfigError, formatWgConfig, parseEndpoint, parseWgConfig } from '../../src/wg/config.ts';

// Keys made with wg(8): `wg genkey`, `wg pubkey`, `wg genpsk`.
const PRIV = 'aKwqMMnLlP9TLW/FdvmbCzUWjUbP5EfyKTAVdW0jo2k=';
const PUB = 'dN7tvzQOK0VIOBgSryxFre6TS3xfBcEQm2AHOVCjeHY=';
const PEER1 = 'Ba7HK5aEos+vVt9FhOPcQ7Kw5DmuGYhjV3rpB5CJ90Y=';
const PEER2 = 'wxDs6ln3mWZGDHmkNSqvaqiU2Y3bvQL5Iw2oyv4XaFc=';
const PSK = 'SxhodDPbw1z1QhE/yF1nOQx+xpum6tZ2VEHWNkFjfa0=';

function err(text: string, file = 'wg0.conf'): ConfigError {
  try {
    parseWgConfig(text, file);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

const SAMPLE = `# wg-quick(8) style
[Interface]
PrivateKey = ${PRIV}
Address = 10.200.100.8/24, fd42:42:42::8/64   # two at once
Address = 100.64.0.8
ListenPort = 51820
DNS = 10.200.100.1
MTU = 1420
PostUp = iptables -A FORWARD -i %i -j ACCEPT; echo "x=y"

[Peer]
PublicKey = ${PEER1}
PresharedKey = ${PSK}
Endpoint = demo.wireguard.com:51820
AllowedIPs = 0.0.0.0/0, ::/0
PersistentKeepalive = 25

[peer]
publickey=${PEER2}
endpoint = [2001:DB8::0001]:443
allowedips = 10.200.100.0/24
AllowedIPs = 192.168.7.77/24, fd00::1
persistentkeepalive = off
`;

describe('parseWgConfig', () => {
  it('parses a full wg-quick file', () => {
    const c = parseWgConfig(SAMPLE, 'wg0.conf');
    expect(c.interface.privateKey.toBase64()).toBe(PRIV);
    expect(c.interface.privateKey.public().toBase64()).toBe(PUB); // matches `wg pubkey`
    expect(c.interface.addresses.map(formatPrefix)).toEqual(['10.200.100.8/24', 'fd42:42:42::8/64', '100.64.0.8/32']);
    expect(c.interface.listenPort).toBe(51820);
    expect(c.peers).toHaveLength(2);
    const [a, b] = c.peers;
    expect(a!.publicKey.toBase64()).toBe(PEER1);
    expect(a!.presharedKey!.toBase64()).toBe(PSK);
    expect(a!.endpoint).toEqual({ host: 'demo.wireguard.com', port: 51820 });
    expect(a!.allowedIPs.map(formatPrefix)).toEqual(['0.0.0.0/0', '::/0']);
    expect(a!.persistentKeepalive).toBe(25);
    expect(b!.publicKey.toBase64()).toBe(PEER2);
    expect(b!.presharedKey).toBeUndefined();
    expect(b!.endpoint).toEqual({ host: '2001:db8::1', port: 443 });
    // Repeated AllowedIPs accumulate; host bits are cleared; a bare address is a host route.
    expect(b!.allowedIPs.map(formatPrefix)).toEqual(['10.200.100.0/24', '192.168.7.0/24', 'fd00::1/128']);
    expect(b!.persistentKeepalive).toBeUndefined();
    expect(c.warnings).toEqual([
      'wg0.conf:7: DNS: wg-quick setting ignored by Pierce',
      'wg0.conf:8: MTU: wg-quick setting ignored by Pierce',
      'wg0.conf:9: PostUp: wg-quick setting ignored by Pierce',
    ]);
  });

  it('accepts CRLF, a byte-order mark, odd spacing and case', () => {
    const text = `\uFEFF[INTERFACE]\r\n  privatekey=${PRIV}  \r\n\r\n[ Peer ]\r\nPUBLICKEY =${PEER1}\r\n`;
    const c = parseWgConfig(text, 'x.conf');
    expect(c.peers[0]!.publicKey.toBase64()).toBe(PEER1);
    expect(c.interface.addresses).toEqual([]);
    expect(c.interface.listenPort).toBeUndefined();
    expect(c.peers[0]!.allowedIPs).toEqual([]);
  });

  it('warns about the other wg-quick keys and unknown keys, naming file:line and key', () => {
    const text = [
      '[Interface]',
      `PrivateKey = ${PRIV}`,
      'Table = off',
      'PreUp = a',
      'PreDown = b',
      'PostDown = c',
      'SaveConfig = true',
      'FwMark = 0x1234',
      'Colour = blue',
      '[Peer]',
      `PublicKey = ${PEER1}`,
      'DNS = 1.1.1.1',
    ].join('\n');
    const c = parseWgConfig(text, 'w.conf');
    expect(c.warnings).toEqual([
      'w.conf:3: Table: wg-quick setting ignored by Pierce',
      'w.conf:4: PreUp: wg-quick setting ignored by Pierce',
      'w.conf:5: PreDown: wg-quick setting ignored by Pierce',
      'w.conf:6: PostDown: wg-quick setting ignored by Pierce',
      'w.conf:7: SaveConfig: wg-quick setting ignored by Pierce',
      'w.conf:8: FwMark: wg-quick setting ignored by Pierce',
      'w.conf:9: Colour: unknown key in [Interface], ignored',
      'w.conf:12: DNS: unknown key in [Peer], ignored',
    ]);
  });

  it('errors name the file, line and key', () => {
    const e = err(`[Interface]\nPrivateKey = ${PRIV}\n\n# peer\n[Peer]\n\nPublicKey = not-a-key\n`);
    expect(e.code).toBe('CONFIG_VALUE');
    expect(e.message).toMatch(/^wg0\.conf:7: PublicKey: not a valid node public key/);
    expect([e.file, e.line, e.key]).toEqual(['wg0.conf', 7, 'PublicKey']);
    expect(e.cause).toBeDefined();
  });

  const head = `[Interface]\nPrivateKey = ${PRIV}\n`;
  const peer = (lines: string) => `${head}[Peer]\nPublicKey = ${PEER1}\n${lines}\n`;
  const cases: [string, string, string, number, string][] = [
    // [name, text, code, line, key]
    ['missing [Interface]', `[Peer]\nPublicKey = ${PEER1}\n`, 'CONFIG_MISSING', 0, '[Interface]'],
    ['empty file', '', 'CONFIG_MISSING', 0, '[Interface]'],
    ['missing PrivateKey', `# x\n[Interface]\nListenPort = 1\n`, 'CONFIG_MISSING', 2, 'PrivateKey'],
    ['peer without PublicKey', `${head}[Peer]\nAllowedIPs = 10.0.0.0/8\n`, 'CONFIG_MISSING', 3, 'PublicKey'],
    ['duplicate peer', `${head}[Peer]\nPublicKey = ${PEER1}\n[Peer]\nPublicKey = ${PEER1}\n`, 'CONFIG_DUPLICATE', 6, 'PublicKey'],
    ['duplicate peer, other text form', `${head}[Peer]\nPublicKey = ${PEER1}\n[Peer]\nPublicKey = nodekey:05aec72b9684a2cfaf56df4584e3dc43b2b0e439ae198863577ae9079089f746\n`, 'CONFIG_DUPLICATE', 6, 'PublicKey'],
    ['second [Interface]', `${head}[Interface]\n`, 'CONFIG_DUPLICATE', 3, '[Interface]'],
    ['key twice', `${head}ListenPort = 1\nlistenport = 2\n`, 'CONFIG_DUPLICATE', 4, 'ListenPort'],
    ['bad private key', `[Interface]\nPrivateKey = ${PRIV.slice(1)}\n`, 'CONFIG_VALUE', 2, 'PrivateKey'],
    ['bad preshared key', peer('PresharedKey = abc'), 'CONFIG_VALUE', 5, 'PresharedKey'],
    ['ListenPort too big', `${head}ListenPort = 65536\n`, 'CONFIG_VALUE', 3, 'ListenPort'],
    ['ListenPort negative', `${head}ListenPort = -1\n`, 'CONFIG_VALUE', 3, 'ListenPort'],
    ['ListenPort hex', `${head}ListenPort = 0x10\n`, 'CONFIG_VALUE', 3, 'ListenPort'],
    ['ListenPort empty', `${head}ListenPort =\n`, 'CONFIG_VALUE', 3, 'ListenPort'],
    ['bad Address', `${head}Address = 10.0.0.1/33\n`, 'CONFIG_VALUE', 3, 'Address'],
    ['empty list item', `${head}Address = 10.0.0.1/32,,10.0.0.2\n`, 'CONFIG_VALUE', 3, 'Address'],
    ['bad AllowedIPs', peer('AllowedIPs = 10.0.0.0/8, fe80::1%eth0'), 'CONFIG_VALUE', 5, 'AllowedIPs'],
    ['Endpoint without port', peer('Endpoint = example.com'), 'CONFIG_VALUE', 5, 'Endpoint'],
    ['Endpoint port 0', peer('Endpoint = example.com:0'), 'CONFIG_VALUE', 5, 'Endpoint'],
    ['Endpoint port 65536', peer('Endpoint = 1.2.3.4:65536'), 'CONFIG_VALUE', 5, 'Endpoint'],
    ['Endpoint IPv6 unbracketed', peer('Endpoint = 2001:db8::1:51820'), 'CONFIG_VALUE', 5, 'Endpoint'],
    ['Endpoint bad bracket', peer('Endpoint = [2001:db8::1]51820'), 'CONFIG_VALUE', 5, 'Endpoint'],
    ['Endpoint IPv4 in brackets', peer('Endpoint = [1.2.3.4]:1'), 'CONFIG_VALUE', 5, 'Endpoint'],
    ['Endpoint bad IPv4', peer('Endpoint = 1.2.3.256:1'), 'CONFIG_VALUE', 5, 'Endpoint'],
    ['Endpoint bad hostname', peer('Endpoint = exa mple.com:1'), 'CONFIG_VALUE', 5, 'Endpoint'],
    ['keepalive too big', peer('PersistentKeepalive = 65536'), 'CONFIG_VALUE', 5, 'PersistentKeepalive'],
    ['keepalive word', peer('PersistentKeepalive = on'), 'CONFIG_VALUE', 5, 'PersistentKeepalive'],
    ['key outside a section', `PrivateKey = ${PRIV}\n`, 'CONFIG_PARSE', 1, 'PrivateKey'],
    ['unknown section', `${head}[Peers]\n`, 'CONFIG_PARSE', 3, '[Peers]'],
    ['line without =', `${head}ListenPort 51820\n`, 'CONFIG_PARSE', 3, 'ListenPort 51820'],
    ['empty key', `${head}= 3\n`, 'CONFIG_PARSE', 3, '= 3'],
  ];
  it.each(cases)('%s', (_name, text, code, line, key) => {
    const e = err(text);
    expect(e.code).toBe(code);
    expect(e.line).toBe(line);
    expect(e.key).toBe(key);
    expect(e.file).toBe('wg0.conf');
    expect(e.message.startsWith(line > 0 ? `wg0.conf:${line}: ${key}: ` : `wg0.conf: ${key}: `)).toBe(true);
  });

  it('keepalive 0 and off both mean none; ListenPort 0 is allowed', () => {
    const c = parseWgConfig(`${head}ListenPort = 0\n[Peer]\nPublicKey = ${PEER1}\nPersistentKeepalive = 0\n[Peer]\nPublicKey = ${PEER2}\nPersistentKeepalive = OFF\n`, 'k');
    expect(c.interface.listenPort).toBe(0);
    expect(c.peers.map((p) => p.persistentKeepalive)).toEqual([undefined, undefined]);
  });
});

describe('parseEndpoint', () => {
  it('accepts host:port and [v6]:port', () => {
    expect(parseEndpoint('1.2.3.4:51820')).toEqual({ host: '1.2.3.4', port: 51820 });
    expect(parseEndpoint('[::ffff:1.2.3.4]:1')).toEqual({ host: '::ffff:1.2.3.4', port: 1 });
    expect(parseEndpoint('[fe80::1]:65535')).toEqual({ host: 'fe80::1', port: 65535 });
    expect(parseEndpoint('relay-1.example.com.:3478')).toEqual({ host: 'relay-1.example.com.', port: 3478 });
    expect(parseEndpoint('localhost:9')).toEqual({ host: 'localhost', port: 9 });
  });
  it('rejects the rest', () => {
    for (const s of ['', ':1', '1.2.3.4:', '[::1]:', '[::1]', '[fe80::1%eth0]:1', 'a..b:1', '-a.com:1', 'a.com:+1', 'a.com:1:2', '[::1]:1:2', 'a.com:1 ']) {
      expect(parseEndpoint(s)).toBeNull();
    }
  });
});

describe('formatWgConfig', () => {
  it('round-trips the sample', () => {
    const c = parseWgConfig(SAMPLE, 'wg0.conf');
    const again = parseWgConfig(formatWgConfig(c), 'again.conf');
    expect(formatWgConfig(again)).toBe(formatWgConfig(c));
    expect(again.warnings).toEqual([]);
  });
});

describe('parseWgConfig fuzz: never throws anything but ConfigError', () => {
  const check = (text: string) => {
    try {
      const c = parseWgConfig(text, 'fuzz.conf');
      expect(c.interface.privateKey).toBeDefined();
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      expect(e.message.startsWith('fuzz.conf')).toBe(true);
      expect(Number.isInteger(e.line)).toBe(true);
    }
  };

  it('random text', () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), check), { numRuns: 3000 });
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 100 }), check), { numRuns: 1000 });
  });

  it('random lines made of config-like pieces', () => {
    const keys = ['PrivateKey', 'PublicKey', 'PresharedKey', 'Address', 'ListenPort', 'Endpoint', 'AllowedIPs', 'PersistentKeepalive', 'DNS', 'Foo', ''];
    const values = [PRIV, PEER1, PEER2, PSK, '10.0.0.1/24', '::/0', '1.2.3.4:5', '[::1]:2', 'off', '25', '65536', '', 'x', '1.2.3.4/33, ::1', ',', '[', ']', '#', '='];
    const line = fc.oneof(
      fc.constantFrom('[Interface]', '[Peer]', '[peer]', '[', '', '# c', '[Other]'),
      fc.tuple(fc.constantFrom(...keys), fc.constantFrom(' = ', '=', ' '), fc.constantFrom(...values)).map(([k, s, v]) => k + s + v),
      fc.string({ maxLength: 20 }),
    );
    let ok = 0;
    fc.assert(
      fc.property(fc.array(line, { maxLength: 14 }), fc.boolean(), (lines, iface) => {
        const text = (iface ? [`[Interface]`, `PrivateKey = ${PRIV}`, ...lines] : lines).join('\n');
        try {
          parseWgConfig(text, 'fuzz.conf');
          ok++;
        } catch (e) {
          if (!(e instanceof ConfigError)) throw e;
        }
      }),
      { numRuns: 5000 },
    );
    expect(ok).toBeGreaterThan(100);
  });

  it('mutated and truncated sample', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.string({ maxLength: 3 }), fc.integer({ min: 0, max: 3 })), { maxLength: 5 }), fc.nat(), (edits, cut) => {
        let s = SAMPLE;
        for (const [at, ins, del] of edits) {
          const i = at % (s.length + 1);
          s = s.slice(0, i) + ins + s.slice(i + del);
        }
        check(s);
        check(s.slice(0, cut % (s.length + 1)));
      }),
      { numRuns: 3000 },
    );
  });
});
