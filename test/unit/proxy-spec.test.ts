/** Forward, listen and SOCKS5 spec parsers (gateway/src/proxy/forward.ts). */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseBindSpec, parseForwardSpec, parseListenSpec, ProxySpecError, type SpecPart } from '../../gateway/src/proxy/forward.ts';
import { formatIP, parseIP } from '../../src/netstack/addr.ts';

function partOf(f: () => unknown): SpecPart | 'no error' {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(ProxySpecError);
    const err = e as ProxySpecError;
    expect(err.code).toBe(`SPEC_${err.part.toUpperCase().replace('-', '_')}`);
    return err.part;
  }
  return 'no error';
}

describe('parseForwardSpec', () => {
  it('parses the forms of "[BIND:]LPORT=IP:PORT"', () => {
    const cases: [string, string, number, string, number][] = [
      ['8080=100.64.0.2:80', '127.0.0.1', 8080, '100.64.0.2', 80],
      ['0=10.0.0.1:22', '127.0.0.1', 0, '10.0.0.1', 22],
      ['0.0.0.0:2222=100.64.0.2:22', '0.0.0.0', 2222, '100.64.0.2', 22],
      ['localhost:65535=1.2.3.4:65535', '127.0.0.1', 65535, '1.2.3.4', 65535],
      ['LocalHost:1=1.2.3.4:1', '127.0.0.1', 1, '1.2.3.4', 1],
      ['[::1]:8080=[fd7a:115c:a1e0::1]:22', '::1', 8080, 'fd7a:115c:a1e0::1', 22],
      ['[::]:8080=10.0.0.1:443', '::', 8080, '10.0.0.1', 443],
      ['127.0.0.2:9=[FD7A:115C:A1E0:0:0:0:0:1]:22', '127.0.0.2', 9, 'fd7a:115c:a1e0::1', 22],
    ];
    for (const [spec, bind, lport, ip, port] of cases) {
      const s = parseForwardSpec(spec);
      expect({ bind: s.bindAddress, lport: s.bindPort, ip: formatIP(s.targetAddress), port: s.targetPort }, spec).toEqual({ bind, lport, ip, port });
    }
  });

  it('names the bad part', () => {
    const cases: [string, SpecPart][] = [
      ['', 'syntax'],
      ['8080', 'syntax'],
      ['8080=1.2.3.4:80=x', 'syntax'],
      [' 8080=1.2.3.4:80', 'syntax'],
      ['8080=1.2.3.4:80\n', 'syntax'],
      ['x'.repeat(400), 'syntax'],
      ['=1.2.3.4:80', 'port'],
      ['65536=1.2.3.4:80', 'port'],
      ['080=1.2.3.4:80', 'port'],
      ['-1=1.2.3.4:80', 'port'],
      ['+80=1.2.3.4:80', 'port'],
      ['1.2.3.4:=1.2.3.4:80', 'port'],
      ['[::1]=1.2.3.4:80', 'port'],
      ['[::1]x:80=1.2.3.4:80', 'port'],
      ['example.com:80=1.2.3.4:80', 'bind'],
      ['1.2.3:80=1.2.3.4:80', 'bind'],
      ['::1:80=1.2.3.4:80', 'bind'],
      ['[1.2.3.4]:80=1.2.3.4:80', 'bind'],
      ['[::1:80=1.2.3.4:80', 'bind'],
      ['[fe80::1%eth0]:80=1.2.3.4:80', 'bind'],
      [':80=1.2.3.4:80', 'bind'],
      ['80=', 'host'],
      ['80=:22', 'host'],
      ['80=22', 'host'],
      ['80=example.com:22', 'host'],
      ['80=fd00::1:22', 'host'],
      ['80=[1.2.3.4]:22', 'host'],
      ['80=[fd00::1:22', 'host'],
      ['80=01.2.3.4:22', 'host'],
      ['80=1.2.3.4:', 'target-port'],
      ['80=1.2.3.4:0', 'target-port'],
      ['80=1.2.3.4:65536', 'target-port'],
      ['80=1.2.3.4:22x', 'target-port'],
      ['80=[fd00::1]', 'target-port'],
      ['80=[fd00::1]22', 'target-port'],
    ];
    for (const [spec, part] of cases) expect(partOf(() => parseForwardSpec(spec)), JSON.stringify(spec)).toBe(part);
  });

  it('says why a name is not accepted as the target', () => {
    expect(() => parseForwardSpec('80=example.com:22')).toThrow(/no DNS in the tunnel/);
    expect(() => parseForwardSpec('::1:80=1.2.3.4:80')).toThrow(/brackets/);
  });

  it('round-trips generated specs', () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((a) => Uint8Array.from(a));
    const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 });
    const ip = fc.oneof(v4, v6);
    const text = (b: Uint8Array) => (b.length === 16 ? `[${formatIP(b)}]` : formatIP(b));
    fc.assert(
      fc.property(fc.option(ip), fc.integer({ min: 0, max: 65535 }), ip, fc.integer({ min: 1, max: 65535 }), (bind, lport, target, port) => {
        const spec = `${bind ? text(bind) + ':' : ''}${lport}=${text(target)}:${port}`;
        const s = parseForwardSpec(spec);
        expect(s.bindAddress).toBe(bind ? formatIP(bind) : '127.0.0.1');
        expect(s.bindPort).toBe(lport);
        expect(s.targetAddress).toEqual(target);
        expect(s.targetPort).toBe(port);
      }),
    );
  });
});

describe('parseListenSpec', () => {
  it('parses "PORT=HOST:PORT"', () => {
    expect(parseListenSpec('22=127.0.0.1:22')).toEqual({ tunnelPort: 22, targetHost: '127.0.0.1', targetPort: 22 });
    expect(parseListenSpec('80=[::1]:8080')).toEqual({ tunnelPort: 80, targetHost: '::1', targetPort: 8080 });
    expect(parseListenSpec('80=LocalHost:8080')).toEqual({ tunnelPort: 80, targetHost: 'localhost', targetPort: 8080 });
    expect(parseListenSpec('443=web-1.internal.example:8443')).toEqual({ tunnelPort: 443, targetHost: 'web-1.internal.example', targetPort: 8443 });
  });

  it('names the bad part', () => {
    const cases: [string, SpecPart][] = [
      ['22', 'syntax'],
      ['22=a:1=b', 'syntax'],
      ['0=127.0.0.1:22', 'port'],
      ['x=127.0.0.1:22', 'port'],
      ['127.0.0.1:22=127.0.0.1:22', 'port'],
      ['22=127.0.0.1', 'host'],
      ['22=:22', 'host'],
      ['22=-bad-:22', 'host'],
      ['22=a..b:22', 'host'],
      ['22=1.2.3.999:22', 'host'],
      ['22=under_score:22', 'host'],
      ['22=::1:22', 'host'],
      ['22=[localhost]:22', 'host'],
      ['22=127.0.0.1:0', 'target-port'],
      ['22=localhost:ssh', 'target-port'],
    ];
    for (const [spec, part] of cases) expect(partOf(() => parseListenSpec(spec)), JSON.stringify(spec)).toBe(part);
  });
});

describe('parseBindSpec', () => {
  it('parses "[BIND:]PORT"', () => {
    expect(parseBindSpec('1080')).toEqual({ bindAddress: '127.0.0.1', bindPort: 1080 });
    expect(parseBindSpec('0.0.0.0:1080')).toEqual({ bindAddress: '0.0.0.0', bindPort: 1080 });
    expect(parseBindSpec('[::1]:0')).toEqual({ bindAddress: '::1', bindPort: 0 });
    expect(parseBindSpec('localhost:1080')).toEqual({ bindAddress: '127.0.0.1', bindPort: 1080 });
    expect(partOf(() => parseBindSpec('host:1080'))).toBe('bind');
    expect(partOf(() => parseBindSpec('1080='))).toBe('port');
    expect(partOf(() => parseBindSpec('99999'))).toBe('port');
    expect(() => parseBindSpec('x:1')).toThrow(/^socks5 "x:1": bind address/);
  });
});

describe('spec parsers on arbitrary input', () => {
  const parsers = [parseForwardSpec, parseListenSpec, (s: string) => parseBindSpec(s)];
  const alphabet = fc.constantFrom(...'0123456789abcdef.:[]=-x%lochast '.split(''));
  const specish = fc.array(alphabet, { maxLength: 40 }).map((a) => a.join(''));

  it('throw nothing but ProxySpecError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), specish, fc.string({ unit: 'binary' })), (s) => {
        for (const p of parsers) {
          try {
            p(s);
          } catch (e) {
            if (!(e instanceof ProxySpecError)) throw e;
          }
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('reject non-strings with SPEC_SYNTAX', () => {
    for (const v of [undefined, null, 8080, {}]) {
      expect(partOf(() => parseForwardSpec(v as unknown as string))).toBe('syntax');
    }
  });

  it('accept only addresses that parseIP accepts', () => {
    fc.assert(
      fc.property(specish, (host) => {
        let s;
        try {
          s = parseForwardSpec(`80=${host}:22`);
        } catch {
          return;
        }
        const bare = host.startsWith('[') ? host.slice(1, -1) : host;
        expect(s.targetAddress).toEqual(parseIP(bare));
      }),
      { numRuns: 3000 },
    );
  });
});
