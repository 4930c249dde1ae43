/**
 * UPnP IGD client (gateway/src/portmap/upnp.ts, upnp-codec.ts) and the PortMapper
 * (gateway/src/portmap/mapper.ts): SSDP, device-description and SOAP codecs on text captured from
 * miniupnpd 2.3.1 (IGD v2 and, with force_igd_desc_v1, v1), the client against an in-process fake
 * IGD (SSDP on UDP + HTTP on 127.0.0.1, ephemeral ports) and a fake NAT-PMP/PCP gateway, and
 * fast-check fuzzing of every parser: only UpnpError escapes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createSocket, type Socket } from 'node:dgram';
import {
  ST_ALL,
  ST_IGD1,
  UPNP_ERROR,
  UpnpError,
  WANIP1,
  WANIP2,
  WANPPP1,
  buildSoapRequest,
  buildSsdpSearch,
  discoverIgd,
  fetchIgd,
  httpExchange,
  isIgdAnswer,
  parseDeviceDescription,
  parseSoapResponse,
  parseSsdpResponse,
  parseXml,
  repointUrl,
  soapCall,
  ssdpSearch,
  upnpDeletePortMapping,
  upnpExternalAddress,
  upnpMap,
  xmlChildText,
  xmlFindAll,
  type UpnpIgd,
} from '../../gateway/src/portmap/upnp.ts';
import { PortMapper, probeGateway, probePortMapping, type PortMapping } from '../../gateway/src/portmap/mapper.ts';
import { decodeNatPmpRequest, encodeNatPmpExternalAddressResponse, encodeNatPmpMappingResponse } from '../../gateway/src/portmap/natpmp.ts';
import { PCP_OP, decodePcpRequest, encodePcpAnnounceResponse, encodePcpMapResponse, toPcpAddress } from '../../gateway/src/portmap/pcp.ts';
import { checkHairpinning, isLocalAddress } from '../../gateway/src/netcheck/hairpin.ts';
import { thrownCode } from '../support/errors.ts';

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

// ---------------------------------------------------------------------------------------------
// Fixtures: what miniupnpd 2.3.1 (Debian miniupnpd-nftables) sends

/** An SSDP answer exactly as miniupnpd sends it. */
const MINIUPNPD_SSDP =
  'HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\n' +
  'USN: uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b::urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\nEXT:\r\n' +
  'SERVER: Debian/6.1 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: http://192.168.77.1:5000/rootDesc.xml\r\n' +
  'OPT: "http://schemas.upnp.org/upnp/1/0/"; ns=01\r\n01-NLS: 1795694893\r\nBOOTID.UPNP.ORG: 1795694893\r\nCONFIGID.UPNP.ORG: 1337\r\n\r\n';

function svc(type: string, id: string, name: string): string {
  return `<service><serviceType>urn:schemas-upnp-org:service:${type}</serviceType><serviceId>urn:upnp-org:serviceId:${id}</serviceId><SCPDURL>/${name}.xml</SCPDURL><controlURL>/ctl/${name}</controlURL><eventSubURL>/evt/${name}</eventSubURL></service>`;
}
function dev(type: string, uuidTail: string, inner: string): string {
  return `<device><deviceType>urn:schemas-upnp-org:device:${type}</deviceType><friendlyName>${type.split(':')[0]}</friendlyName><manufacturer>MiniUPnP</manufacturer><manufacturerURL>http://miniupnp.free.fr/</manufacturerURL><modelName>MiniUPnPd</modelName><modelNumber>20221221</modelNumber><serialNumber>00000000</serialNumber><UDN>uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d07${uuidTail}</UDN><UPC>000000000000</UPC>${inner}</device>`;
}

/** miniupnpd's rootDesc.xml (v2 by default; v1 with force_igd_desc_v1=yes), control URL path /ctl/IPConn. */
function miniupnpdDescription(v: 1 | 2, o: { urlBase?: string; wan?: string } = {}): string {
  const wan = o.wan ?? svc(`WANIPConnection:${v}`, 'WANIPConn1', 'IPConn');
  const v6fc = v === 2 ? svc('WANIPv6FirewallControl:1', 'WANIPv6Firewall1', 'IP6FCtl') : '';
  const dp = v === 2 ? svc('DeviceProtection:1', 'DeviceProtection1', 'DP') : '';
  const wcd = dev(`WANConnectionDevice:${v}`, 'd', `<serviceList>${wan}${v6fc}</serviceList>`);
  const wd = dev(`WANDevice:${v}`, 'c', `<serviceList>${svc('WANCommonInterfaceConfig:1', 'WANCommonIFC1', 'CmnIfCfg')}</serviceList><deviceList>${wcd}</deviceList>`);
  const root = dev(`InternetGatewayDevice:${v}`, 'b', `<serviceList>${svc('Layer3Forwarding:1', 'L3Forwarding1', 'L3F')}${dp}</serviceList><deviceList>${wd}</deviceList><presentationURL>http://192.168.77.1/</presentationURL>`);
  return `<?xml version="1.0"?>\n<root xmlns="urn:schemas-upnp-org:device-1-0" configId="1337"><specVersion><major>1</major><minor>1</minor></specVersion>${o.urlBase ? `<URLBase>${o.urlBase}</URLBase>` : ''}${root}</root>`;
}

function soapOk(action: string, serviceType: string, out: Record<string, string | number> = {}): string {
  const inner = Object.entries(out).map(([k, v]) => `<${k}>${v}</${k}>`).join('');
  return `<?xml version="1.0"?>\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action}Response xmlns:u="${serviceType}">${inner}</u:${action}Response></s:Body></s:Envelope>\r\n`;
}
function soapFault(code: number, desc: string): string {
  return `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode><errorDescription>${desc}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`;
}

// ---------------------------------------------------------------------------------------------
// Fake IGD: SSDP (UDP) and HTTP on 127.0.0.1

interface SoapRequest {
  action: string;
  serviceType: string;
  args: Record<string, string>;
}
interface FakeIgd {
  ssdpPort: number;
  httpPort: number;
  location: string;
  soap: SoapRequest[];
  searches: string[];
  /** externalPort → mapping, as AddPortMapping/AddAnyPortMapping left them. */
  mappings: Map<number, { internalPort: number; client: string; lease: number; description: string }>;
}
interface FakeIgdOptions {
  version?: 1 | 2;
  description?: string;
  externalIp?: string;
  /** A UPnP error code to answer `action` with (called per request). */
  fault?: (r: SoapRequest) => number | undefined;
  /** Host put in LOCATION (default 127.0.0.1): anything else must be re-pointed by the client. */
  locationHost?: string;
  /** Raw HTTP handler override. */
  http?: (req: IncomingMessage, res: ServerResponse, body: string) => boolean;
  /** SSDP answers to send instead of the default. */
  ssdpAnswers?: (location: string) => string[];
}

async function fakeIgd(o: FakeIgdOptions = {}): Promise<FakeIgd> {
  const v = o.version ?? 2;
  const serviceType = v === 2 ? WANIP2 : WANIP1;
  const state: FakeIgd = { ssdpPort: 0, httpPort: 0, location: '', soap: [], searches: [], mappings: new Map() };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      if (o.http?.(req, res, body)) return;
      if (req.method === 'GET' && req.url === '/rootDesc.xml') {
        res.writeHead(200, { 'Content-Type': 'text/xml; charset="utf-8"' }).end(o.description ?? miniupnpdDescription(v));
        return;
      }
      if (req.method !== 'POST' || req.url !== '/ctl/IPConn') return void res.writeHead(404).end();
      const m = /^"?([^#"]+)#(\w+)"?$/.exec(String(req.headers.soapaction ?? ''));
      if (!m) return void res.writeHead(400).end();
      const args: Record<string, string> = {};
      for (const a of body.matchAll(/<(New\w+)>([^<]*)<\/\1>/g)) args[a[1]!] = a[2]!;
      const r: SoapRequest = { serviceType: m[1]!, action: m[2]!, args };
      state.soap.push(r);
      const send = (status: number, xml: string): void => void res.writeHead(status, { 'Content-Type': 'text/xml; charset="utf-8"' }).end(xml);
      const code = o.fault?.(r);
      if (code !== undefined) return send(500, soapFault(code, 'fake fault'));
      if (r.action === 'GetExternalIPAddress') return send(200, soapOk(r.action, r.serviceType, { NewExternalIPAddress: o.externalIp ?? '198.51.100.7' }));
      if (r.action === 'AddPortMapping' || r.action === 'AddAnyPortMapping') {
        let port = Number(args.NewExternalPort);
        if (r.action === 'AddAnyPortMapping') while (state.mappings.has(port) && state.mappings.get(port)!.internalPort !== Number(args.NewInternalPort)) port++;
        else if (state.mappings.has(port) && state.mappings.get(port)!.client !== args.NewInternalClient) return send(500, soapFault(718, 'ConflictInMappingEntry'));
        state.mappings.set(port, { internalPort: Number(args.NewInternalPort), client: args.NewInternalClient ?? '', lease: Number(args.NewLeaseDuration), description: args.NewPortMappingDescription ?? '' });
        return send(200, soapOk(r.action, r.serviceType, r.action === 'AddAnyPortMapping' ? { NewReservedPort: port } : {}));
      }
      if (r.action === 'DeletePortMapping') {
        if (!state.mappings.delete(Number(args.NewExternalPort))) return send(500, soapFault(714, 'NoSuchEntryInArray'));
        return send(200, soapOk(r.action, r.serviceType));
      }
      return send(500, soapFault(401, 'Invalid Action'));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => server.close(() => r())));
  state.httpPort = (server.address() as { port: number }).port;
  state.location = `http://${o.locationHost ?? '127.0.0.1'}:${state.httpPort}/rootDesc.xml`;
  const ssdp = createSocket('udp4');
  ssdp.on('message', (msg, rinfo) => {
    const st = /\r\nST:\s*(.*)\r\n/i.exec(msg.toString())?.[1] ?? '';
    state.searches.push(st);
    const answers = o.ssdpAnswers?.(state.location) ?? [MINIUPNPD_SSDP.replace('http://192.168.77.1:5000/rootDesc.xml', state.location)];
    for (const a of answers) ssdp.send(a, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => ssdp.bind(0, '127.0.0.1', r));
  closers.push(() => void ssdp.close());
  state.ssdpPort = ssdp.address().port;
  void serviceType;
  return state;
}

const igdAt = (f: FakeIgd, serviceType = WANIP2): UpnpIgd => ({ gateway: '127.0.0.1', serviceType, controlUrl: `http://127.0.0.1:${f.httpPort}/ctl/IPConn` });

async function rejection(p: Promise<unknown>): Promise<UpnpError> {
  const e = await p.then(
    () => new Error('expected a rejection'),
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(UpnpError);
  return e as UpnpError;
}

// ---------------------------------------------------------------------------------------------

describe('SSDP codec', () => {
  it('builds an M-SEARCH', () => {
    const text = new TextDecoder().decode(buildSsdpSearch(ST_IGD1));
    expect(text).toBe(`M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ${ST_IGD1}\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n\r\n`);
    expect(thrownCode(() => buildSsdpSearch('a b'), UpnpError)).toBe(UPNP_ERROR.ARGUMENT);
  });

  it('parses miniupnpd\'s answer', () => {
    const r = parseSsdpResponse(new TextEncoder().encode(MINIUPNPD_SSDP));
    expect(r).toEqual({
      location: 'http://192.168.77.1:5000/rootDesc.xml',
      st: 'urn:schemas-upnp-org:device:InternetGatewayDevice:2',
      usn: 'uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b::urn:schemas-upnp-org:device:InternetGatewayDevice:2',
      server: 'Debian/6.1 UPnP/1.1 MiniUPnPd/2.3.1',
    });
    expect(isIgdAnswer(r)).toBe(true);
  });

  it('headers are case-insensitive, LF-only lines are accepted, the first LOCATION wins', () => {
    const r = parseSsdpResponse('http/1.0 200 OK\nst: upnp:rootdevice\nlocation: http://10.0.0.1:80/d.xml\nLocation: http://10.0.0.2/x\n\n');
    expect(r.location).toBe('http://10.0.0.1/d.xml');
    expect(isIgdAnswer(r)).toBe(false);
    expect(isIgdAnswer({ ...r, st: WANPPP1 })).toBe(true);
  });

  it('rejects what is not a usable 200 with an http LOCATION', () => {
    for (const bad of [
      '',
      'NOTIFY * HTTP/1.1\r\nLOCATION: http://1.2.3.4/\r\n\r\n',
      'HTTP/1.1 404 Not Found\r\nLOCATION: http://1.2.3.4/\r\n\r\n',
      'HTTP/1.1 200 OK\r\nST: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nLOCATION: https://1.2.3.4/\r\n\r\n',
      'HTTP/1.1 200 OK\r\nLOCATION: not a url\r\n\r\n',
      'HTTP/1.1 200 OK\r\n' + 'X: y\r\n'.repeat(2000),
    ]) {
      expect(thrownCode(() => parseSsdpResponse(bad), UpnpError)).toBe(UPNP_ERROR.BAD_SSDP);
    }
  });

  it('re-points a URL at the gateway, keeping port and path', () => {
    expect(repointUrl('http://192.0.2.99:5000/rootDesc.xml?a=1', '192.168.1.1')).toBe('http://192.168.1.1:5000/rootDesc.xml?a=1');
    expect(repointUrl('http://router.local/x', '10.0.0.1')).toBe('http://10.0.0.1/x');
    expect(repointUrl('http://1.2.3.4/x', 'fe80::1')).toBe('http://[fe80::1]/x');
    expect(thrownCode(() => repointUrl('ftp://1.2.3.4/', '10.0.0.1'), UpnpError)).toBe(UPNP_ERROR.ARGUMENT);
    expect(thrownCode(() => repointUrl('http://1.2.3.4/', 'gw'), UpnpError)).toBe(UPNP_ERROR.ARGUMENT);
  });
});

describe('XML extractor', () => {
  it('reads elements by local name, text with entities and CDATA, skipping comments, PIs and DOCTYPE', () => {
    const doc = parseXml('<?xml version="1.0"?><!DOCTYPE r><!-- c <x> --><a:r xmlns:a="u"><b k="1>2" j=\'<\'>x &amp; y &#60;&#x3e;<![CDATA[<raw>]]></b><c/><b>2</b></a:r>');
    const r = xmlFindAll(doc, 'r')[0]!;
    expect(r.children.map((c) => c.name)).toEqual(['b', 'c', 'b']);
    expect(xmlChildText(r, 'B')).toBe('x & y <><raw>');
    expect(xmlFindAll(doc, 'b').map((b) => b.text)).toEqual(['x & y <><raw>', '2']);
    expect(xmlChildText(r, 'missing')).toBe('');
  });

  it('is lenient with mismatched and missing end tags', () => {
    const doc = parseXml('<a><b>1</c></b><d>2');
    expect(xmlFindAll(doc, 'b')[0]!.text).toBe('1');
    expect(xmlFindAll(doc, 'd')[0]!.text).toBe('2');
  });

  it('keeps unknown and out-of-range character references as they are', () => {
    expect(parseXml('<a>&nbsp;&#x110000;&#xD800;&#0;</a>').children[0]!.text).toBe('&nbsp;&#x110000;&#xD800;&#0;');
  });

  it('rejects unterminated markup, no element, bad names and deep nesting with UPNP_BAD_XML', () => {
    for (const bad of ['', 'text only', '<a', '<!-- x', '<![CDATA[x', '<?pi', '<1a/>', '< a>', '<a>'.repeat(100)]) {
      expect(thrownCode(() => parseXml(bad), UpnpError)).toBe(UPNP_ERROR.BAD_XML);
    }
    expect(thrownCode(() => parseXml(`<a>${'x'.repeat(300_000)}</a>`), UpnpError)).toBe(UPNP_ERROR.BAD_XML);
  });
});

describe('device description', () => {
  const loc = 'http://192.168.77.1:5000/rootDesc.xml';

  it('miniupnpd IGD v2: WANIPConnection:2 and its control URL', () => {
    expect(parseDeviceDescription(miniupnpdDescription(2), loc)).toEqual([{ serviceType: WANIP2, controlUrl: 'http://192.168.77.1:5000/ctl/IPConn' }]);
  });

  it('miniupnpd IGD v1 (force_igd_desc_v1): WANIPConnection:1', () => {
    expect(parseDeviceDescription(miniupnpdDescription(1), loc)).toEqual([{ serviceType: WANIP1, controlUrl: 'http://192.168.77.1:5000/ctl/IPConn' }]);
  });

  it('ranks WANIPConnection:2 > :1 > WANPPPConnection:1, whatever the order in the document', () => {
    const wan = svc('WANPPPConnection:1', 'WANPPPConn1', 'PPP') + svc('WANIPConnection:1', 'WANIPConn1', 'IP1') + svc('WANIPConnection:2', 'WANIPConn2', 'IP2');
    const s = parseDeviceDescription(miniupnpdDescription(1, { wan }), loc);
    expect(s.map((x) => x.serviceType)).toEqual([WANIP2, WANIP1, WANPPP1]);
    expect(s.map((x) => x.controlUrl)).toEqual(['/ctl/IP2', '/ctl/IP1', '/ctl/PPP'].map((p) => `http://192.168.77.1:5000${p}`));
  });

  it('resolves control URLs against URLBase, and takes absolute ones as they are', () => {
    const base = parseDeviceDescription(miniupnpdDescription(1, { urlBase: 'http://10.1.1.1:49000/igd/' }), loc);
    expect(base[0]!.controlUrl).toBe('http://10.1.1.1:49000/ctl/IPConn');
    const wan = '<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>upnp/control/WANIPConn1</controlURL></service>';
    expect(parseDeviceDescription(miniupnpdDescription(1, { wan, urlBase: 'http://10.1.1.1:49000/igd/' }), loc)[0]!.controlUrl).toBe('http://10.1.1.1:49000/igd/upnp/control/WANIPConn1');
    const abs = '<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>http://10.9.9.9:1234/c</controlURL></service>';
    expect(parseDeviceDescription(miniupnpdDescription(1, { wan: abs }), loc)[0]!.controlUrl).toBe('http://10.9.9.9:1234/c');
  });

  it('no WAN connection service (or no control URL) is UPNP_NO_IGD; broken XML is UPNP_BAD_XML', () => {
    expect(thrownCode(() => parseDeviceDescription(miniupnpdDescription(1, { wan: '' }), loc), UpnpError)).toBe(UPNP_ERROR.NO_IGD);
    const noCtl = '<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL> </controlURL></service>';
    expect(thrownCode(() => parseDeviceDescription(miniupnpdDescription(1, { wan: noCtl }), loc), UpnpError)).toBe(UPNP_ERROR.NO_IGD);
    const https = '<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>https://1.2.3.4/c</controlURL></service>';
    expect(thrownCode(() => parseDeviceDescription(miniupnpdDescription(1, { wan: https }), loc), UpnpError)).toBe(UPNP_ERROR.NO_IGD);
    expect(thrownCode(() => parseDeviceDescription('<root><device', loc), UpnpError)).toBe(UPNP_ERROR.BAD_XML);
  });
});

describe('SOAP codec', () => {
  it('builds a request with escaped arguments in order', () => {
    const { body, headers } = buildSoapRequest(WANIP1, 'AddPortMapping', [
      ['NewRemoteHost', ''],
      ['NewExternalPort', 41641],
      ['NewPortMappingDescription', 'a<b>&"c\''],
    ]);
    expect(headers).toMatchObject({ SOAPAction: `"${WANIP1}#AddPortMapping"`, 'Content-Type': 'text/xml; charset="utf-8"' });
    expect(body).toContain(`<s:Body><u:AddPortMapping xmlns:u="${WANIP1}"><NewRemoteHost></NewRemoteHost><NewExternalPort>41641</NewExternalPort><NewPortMappingDescription>a&lt;b&gt;&amp;&quot;c&apos;</NewPortMappingDescription></u:AddPortMapping></s:Body>`);
    // Our own parser reads it back.
    expect(xmlFindAll(parseXml(body), 'NewPortMappingDescription')[0]!.text).toBe('a<b>&"c\'');
    expect(thrownCode(() => buildSoapRequest(WANIP1, 'Add Port', []), UpnpError)).toBe(UPNP_ERROR.ARGUMENT);
    expect(thrownCode(() => buildSoapRequest(WANIP1, 'X', [['<a>', 1]]), UpnpError)).toBe(UPNP_ERROR.ARGUMENT);
    expect(thrownCode(() => buildSoapRequest('urn:"x', 'X', []), UpnpError)).toBe(UPNP_ERROR.ARGUMENT);
  });

  it('parses a response\'s output arguments', () => {
    expect(parseSoapResponse(soapOk('GetExternalIPAddress', WANIP1, { NewExternalIPAddress: '11.0.0.1' }), 'GetExternalIPAddress')).toEqual({ NewExternalIPAddress: '11.0.0.1' });
    expect(parseSoapResponse(soapOk('DeletePortMapping', WANIP1), 'DeletePortMapping')).toEqual({});
  });

  it('a fault is UPNP_SOAP_FAULT with the UPnP error code', () => {
    let e: unknown;
    try {
      parseSoapResponse(soapFault(606, 'Action not authorized'), 'AddPortMapping');
    } catch (x) {
      e = x;
    }
    expect(e).toBeInstanceOf(UpnpError);
    expect((e as UpnpError).code).toBe(UPNP_ERROR.SOAP_FAULT);
    expect((e as UpnpError).upnpCode).toBe(606);
    expect((e as UpnpError).message).toContain('Action not authorized');
    try {
      parseSoapResponse('<Envelope><Body><Fault><faultstring>bad</faultstring></Fault></Body></Envelope>', 'X');
    } catch (x) {
      e = x;
    }
    expect((e as UpnpError).upnpCode).toBeUndefined();
    expect((e as UpnpError).code).toBe(UPNP_ERROR.SOAP_FAULT);
  });

  it('an answer to another action is UPNP_BAD_XML', () => {
    expect(thrownCode(() => parseSoapResponse(soapOk('GetStatusInfo', WANIP1), 'GetExternalIPAddress'), UpnpError)).toBe(UPNP_ERROR.BAD_XML);
  });
});

describe('UPnP client against a fake IGD', () => {
  it('discovers the IGD by SSDP, fetches the description from the re-pointed LOCATION', async () => {
    const f = await fakeIgd({ locationHost: '192.0.2.99' });
    const locs = await ssdpSearch('127.0.0.1', { port: f.ssdpPort, multicast: false, timeoutMs: 500 });
    expect(locs).toEqual([f.location]);
    expect(f.searches.sort()).toEqual([ST_IGD1, ST_ALL].sort());
    const igd = await discoverIgd('127.0.0.1', { port: f.ssdpPort, multicast: false, timeoutMs: 500 });
    expect(igd).toEqual({ gateway: '127.0.0.1', serviceType: WANIP2, controlUrl: `http://127.0.0.1:${f.httpPort}/ctl/IPConn` });
  });

  it('SSDP search ignores garbage and non-IGD answers and resolves [] within its bound', async () => {
    const f = await fakeIgd({ ssdpAnswers: () => ['garbage', 'HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\nLOCATION: http://127.0.0.1:1/x\r\n\r\n'] });
    const t0 = Date.now();
    await expect(ssdpSearch('127.0.0.1', { port: f.ssdpPort, multicast: false, timeoutMs: 300 })).resolves.toEqual([]);
    expect(Date.now() - t0).toBeLessThan(800);
    await expect(rejection(discoverIgd('127.0.0.1', { port: f.ssdpPort, multicast: false, timeoutMs: 200 }))).resolves.toMatchObject({ code: UPNP_ERROR.NO_IGD });
  });

  it('IGD v2: AddAnyPortMapping with description "pierce", lease 7200, UDP; then GetExternalIPAddress; DeletePortMapping', async () => {
    const f = await fakeIgd();
    const igd = await fetchIgd(f.location, '127.0.0.1');
    const r = await upnpMap(igd, { internalClient: '192.168.1.2', internalPort: 41641 });
    expect(r).toEqual({ externalAddress: '198.51.100.7', externalPort: 41641, leaseSeconds: 7200 });
    expect(f.soap.map((s) => s.action)).toEqual(['AddAnyPortMapping', 'GetExternalIPAddress']);
    expect(f.soap[0]).toEqual({
      action: 'AddAnyPortMapping',
      serviceType: WANIP2,
      args: { NewRemoteHost: '', NewExternalPort: '41641', NewProtocol: 'UDP', NewInternalPort: '41641', NewInternalClient: '192.168.1.2', NewEnabled: '1', NewPortMappingDescription: 'pierce', NewLeaseDuration: '7200' },
    });
    await upnpDeletePortMapping(igd, 41641);
    expect(f.soap.at(-1)).toMatchObject({ action: 'DeletePortMapping', args: { NewExternalPort: '41641', NewProtocol: 'UDP' } });
    expect(f.mappings.size).toBe(0);
  });

  it('AddAnyPortMapping returns the port the IGD reserved', async () => {
    const f = await fakeIgd();
    f.mappings.set(41641, { internalPort: 1, client: 'other', lease: 0, description: '' });
    const r = await upnpMap(igdAt(f), { internalClient: '192.168.1.2', internalPort: 41641 });
    expect(r.externalPort).toBe(41642);
  });

  it('IGD v1: AddPortMapping', async () => {
    const f = await fakeIgd({ version: 1 });
    const igd = await fetchIgd(f.location, '127.0.0.1');
    expect(igd.serviceType).toBe(WANIP1);
    await upnpMap(igd, { internalClient: '10.0.0.2', internalPort: 5000, suggestedExternalPort: 6000, leaseSeconds: 60, description: 'x' });
    expect(f.soap[0]).toMatchObject({ action: 'AddPortMapping', serviceType: WANIP1, args: { NewExternalPort: '6000', NewInternalPort: '5000', NewLeaseDuration: '60', NewPortMappingDescription: 'x' } });
  });

  it('external ports below 1024 are replaced with a random one', async () => {
    const f = await fakeIgd({ version: 1 });
    const r = await upnpMap(igdAt(f, WANIP1), { internalClient: '10.0.0.2', internalPort: 80 });
    expect(r.externalPort).toBeGreaterThanOrEqual(1024);
    expect(Number(f.soap[0]!.args.NewExternalPort)).toBe(r.externalPort);
    expect(f.soap[0]!.args.NewInternalPort).toBe('80');
  });

  it.each([402, 725])('fault %i: retried with lease 0', async (code) => {
    const f = await fakeIgd({ version: 1, fault: (r) => (r.action === 'AddPortMapping' && r.args.NewLeaseDuration !== '0' ? code : undefined) });
    const r = await upnpMap(igdAt(f, WANIP1), { internalClient: '10.0.0.2', internalPort: 5000 });
    expect(r.leaseSeconds).toBe(0);
    expect(f.soap.map((s) => `${s.action}:${s.args.NewLeaseDuration ?? ''}`)).toEqual(['AddPortMapping:7200', 'AddPortMapping:0', 'GetExternalIPAddress:']);
  });

  it('fault 718 (conflict): another random port; AddAnyPortMapping missing (401): AddPortMapping', async () => {
    const f = await fakeIgd({ version: 1 });
    f.mappings.set(5000, { internalPort: 5000, client: 'someone else', lease: 0, description: '' });
    const r = await upnpMap(igdAt(f, WANIP1), { internalClient: '10.0.0.2', internalPort: 5000 });
    expect(r.externalPort).not.toBe(5000);
    const g = await fakeIgd({ fault: (x) => (x.action === 'AddAnyPortMapping' ? 401 : undefined) });
    await upnpMap(igdAt(g), { internalClient: '10.0.0.2', internalPort: 5000 });
    expect(g.soap.map((s) => s.action)).toEqual(['AddAnyPortMapping', 'AddPortMapping', 'GetExternalIPAddress']);
  });

  it('other faults are UPNP_SOAP_FAULT with the code', async () => {
    const f = await fakeIgd({ fault: () => 606 });
    const e = await rejection(upnpMap(igdAt(f), { internalClient: '10.0.0.2', internalPort: 5000 }));
    expect(e.code).toBe(UPNP_ERROR.SOAP_FAULT);
    expect(e.upnpCode).toBe(606);
  });

  it.each(['0.0.0.0', '127.0.0.1', '', 'garbage', '2001:db8::1'])('external address %j is UPNP_BAD_RESPONSE, and the mapping is removed again', async (ip) => {
    const f = await fakeIgd({ externalIp: ip });
    const e = await rejection(upnpMap(igdAt(f), { internalClient: '10.0.0.2', internalPort: 5000 }));
    expect(e.code).toBe(UPNP_ERROR.BAD_RESPONSE);
    expect(f.soap.at(-1)!.action).toBe('DeletePortMapping');
    expect(f.mappings.size).toBe(0);
  });

  it('HTTP failures are typed: refused, 404, no answer (bounded), oversized', async () => {
    const f = await fakeIgd({
      http: (req, res) => {
        if (req.url === '/hang') return true; // never answers
        if (req.url === '/big') {
          res.writeHead(200).end('x'.repeat(300 * 1024));
          return true;
        }
        return false;
      },
    });
    expect((await rejection(httpExchange('http://127.0.0.1:1/'))).code).toBe(UPNP_ERROR.HTTP);
    expect((await rejection(fetchIgd(`http://127.0.0.1:${f.httpPort}/nope`, '127.0.0.1'))).code).toBe(UPNP_ERROR.HTTP);
    const t0 = Date.now();
    expect((await rejection(httpExchange(`http://127.0.0.1:${f.httpPort}/hang`, { timeoutMs: 200 }))).code).toBe(UPNP_ERROR.TIMEOUT);
    expect(Date.now() - t0).toBeLessThan(700);
    expect((await rejection(httpExchange(`http://127.0.0.1:${f.httpPort}/big`))).code).toBe(UPNP_ERROR.HTTP);
    const ac = new AbortController();
    const p = httpExchange(`http://127.0.0.1:${f.httpPort}/hang`, { signal: ac.signal });
    ac.abort();
    expect((await rejection(p)).code).toBe(UPNP_ERROR.ABORTED);
  });

  it('GetExternalIPAddress', async () => {
    const f = await fakeIgd({ externalIp: ' 203.0.113.9 ' });
    await expect(upnpExternalAddress(igdAt(f))).resolves.toBe('203.0.113.9');
  });
});

// ---------------------------------------------------------------------------------------------
// Fake NAT-PMP/PCP gateway for the PortMapper

interface FakePxp {
  port: number;
  requests: { proto: 'pmp' | 'pcp'; op: string; lifetime?: number; internalPort?: number; externalPort?: number; nonce?: string }[];
  pmp: boolean;
  pcp: boolean;
  lifetime: number;
}

async function fakePxp(o: { pmp?: boolean; pcp?: boolean; lifetime?: number; externalPort?: (internal: number) => number } = {}): Promise<FakePxp> {
  const st: FakePxp = { port: 0, requests: [], pmp: o.pmp ?? true, pcp: o.pcp ?? true, lifetime: o.lifetime ?? 7200 };
  const sock: Socket = createSocket('udp4');
  const ext = Uint8Array.of(198, 51, 100, 9);
  sock.on('message', (msg, rinfo) => {
    const b = new Uint8Array(msg);
    const reply = (out: Uint8Array): void => void sock.send(out, rinfo.port, rinfo.address);
    if (b[0] === 0 && st.pmp) {
      const req = decodeNatPmpRequest(b);
      if (req.kind === 'external-address') {
        st.requests.push({ proto: 'pmp', op: 'address' });
        return reply(encodeNatPmpExternalAddressResponse({ result: 0, epoch: 1, externalAddress: ext }));
      }
      st.requests.push({ proto: 'pmp', op: 'map', lifetime: req.lifetime, internalPort: req.internalPort, externalPort: req.suggestedExternalPort });
      const lifetime = req.lifetime === 0 ? 0 : Math.min(req.lifetime, st.lifetime);
      const externalPort = req.lifetime === 0 ? 0 : (o.externalPort?.(req.internalPort) ?? req.internalPort);
      return reply(encodeNatPmpMappingResponse({ protocol: req.protocol, result: 0, epoch: 1, internalPort: req.internalPort, externalPort, lifetime }));
    }
    if (b[0] === 2 && st.pcp) {
      const req = decodePcpRequest(b);
      if (req.opcode === PCP_OP.ANNOUNCE) {
        st.requests.push({ proto: 'pcp', op: 'announce' });
        return reply(encodePcpAnnounceResponse({ result: 0, lifetime: 0, epoch: 1 }));
      }
      const nonce = Buffer.from(req.map.nonce).toString('hex');
      st.requests.push({ proto: 'pcp', op: 'map', lifetime: req.lifetime, internalPort: req.map.internalPort, externalPort: req.map.externalPort, nonce });
      const lifetime = req.lifetime === 0 ? 0 : Math.min(req.lifetime, st.lifetime);
      return reply(encodePcpMapResponse({ result: 0, lifetime, epoch: 1, ...req.map, externalPort: o.externalPort?.(req.map.internalPort) ?? req.map.internalPort, externalAddress: toPcpAddress(ext) }));
    }
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  closers.push(() => void sock.close());
  st.port = sock.address().port;
  return st;
}

/** A port nobody listens on (bound, read, closed). */
async function deadPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const p = s.address().port;
  s.close();
  return p;
}

describe('PortMapper and the gateway probe', () => {
  async function gateway(o: { pmp?: boolean; pcp?: boolean; upnp?: boolean; lifetime?: number; igd?: FakeIgdOptions } = {}) {
    const pxp = await fakePxp(o);
    const igd = o.upnp === false ? null : await fakeIgd(o.igd);
    const probe = { pmpPort: pxp.port, ssdpPort: igd?.ssdpPort ?? (await deadPort()), multicast: false };
    return { pxp, igd, probe };
  }

  function mapper(probe: object, extra: Partial<ConstructorParameters<typeof PortMapper>[0]> = {}) {
    const changes: (PortMapping | null)[] = [];
    const renewals: PortMapping[] = [];
    const m = new PortMapper({ localPort: 41641, gateway: '127.0.0.1', probe, onChange: (x) => changes.push(x), onRenew: (x) => renewals.push(x), ...extra });
    closers.push(() => m.close());
    return { m, changes, renewals };
  }

  it('the probe sees NAT-PMP, PCP and UPnP, and returns as soon as all three answered', async () => {
    const { igd, probe } = await gateway();
    const t0 = Date.now();
    const r = await probeGateway('127.0.0.1', probe);
    expect(r).toMatchObject({ pmp: true, pcp: true, upnp: true, upnpLocations: [igd!.location] });
    expect(Date.now() - t0).toBeLessThan(200);
    await expect(probePortMapping('127.0.0.1', probe)).resolves.toEqual({ pmp: true, pcp: true, upnp: true });
  });

  it('a gateway that answers nothing: all false within the bounds (250 ms PMP/PCP, SSDP window)', async () => {
    const probe = { pmpPort: await deadPort(), ssdpPort: await deadPort(), multicast: false, upnpTimeoutMs: 400 };
    const t0 = Date.now();
    await expect(probePortMapping('127.0.0.1', probe)).resolves.toEqual({ pmp: false, pcp: false, upnp: false });
    const dt = Date.now() - t0;
    expect(dt).toBeGreaterThanOrEqual(390);
    expect(dt).toBeLessThan(900);
  });

  it('maps with NAT-PMP first, reports it, and releases it with lifetime 0 on close', async () => {
    const { pxp, igd, probe } = await gateway();
    const { m, changes } = mapper(probe);
    const got = await m.start();
    expect(got).toMatchObject({ protocol: 'pmp', externalAddress: '198.51.100.9', externalPort: 41641, external: '198.51.100.9:41641', internalPort: 41641, lifetimeSec: 7200 });
    expect(changes).toEqual([got]);
    expect(igd!.soap).toEqual([]);
    await m.close();
    expect(changes.at(-1)).toBeNull();
    expect(pxp.requests.filter((r) => r.proto === 'pmp' && r.op === 'map').map((r) => r.lifetime)).toEqual([7200, 0]);
    expect(m.mapping).toBeNull();
  });

  it('without NAT-PMP: PCP, renewed and released with the same nonce', async () => {
    const { pxp, probe } = await gateway({ pmp: false });
    const { m, changes } = mapper(probe);
    expect(await m.start()).toMatchObject({ protocol: 'pcp', external: '198.51.100.9:41641' });
    await m.refresh();
    await m.close();
    const maps = pxp.requests.filter((r) => r.op === 'map');
    expect(maps.map((r) => r.lifetime)).toEqual([7200, 7200, 0]);
    expect(new Set(maps.map((r) => r.nonce)).size).toBe(1);
    expect(changes.map((c) => c?.protocol ?? null)).toEqual(['pcp', null]);
  });

  it('with UPnP only: AddAnyPortMapping, then DeletePortMapping on close', async () => {
    const { igd, probe } = await gateway({ pmp: false, pcp: false });
    const { m } = mapper(probe);
    expect(await m.start()).toMatchObject({ protocol: 'upnp', external: '198.51.100.7:41641', lifetimeSec: 7200 });
    expect(igd!.mappings.get(41641)).toMatchObject({ internalPort: 41641, client: '127.0.0.1', description: 'pierce', lease: 7200 });
    await m.close();
    expect(igd!.soap.map((s) => s.action)).toEqual(['AddAnyPortMapping', 'GetExternalIPAddress', 'DeletePortMapping']);
    expect(igd!.mappings.size).toBe(0);
  });

  it('protocols forces the choice (UPnP although NAT-PMP answers)', async () => {
    const { pxp, igd, probe } = await gateway();
    const { m } = mapper(probe, { protocols: ['upnp'] });
    expect((await m.start())?.protocol).toBe('upnp');
    expect(pxp.requests.filter((r) => r.op === 'map')).toEqual([]);
    expect(igd!.mappings.size).toBe(1);
  });

  it('renews at half the granted lifetime, with the same external port', async () => {
    const { pxp, probe } = await gateway({ lifetime: 1 });
    const { m, changes, renewals } = mapper(probe);
    const t0 = Date.now();
    await m.start();
    await waitUntil(() => renewals.length >= 2, 3000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    const maps = pxp.requests.filter((r) => r.op === 'map');
    expect(maps.slice(1).every((r) => r.externalPort === 41641)).toBe(true);
    expect(changes).toHaveLength(1); // same ip:port: no change reported
  });

  it('when renewal fails it probes again and falls back to another protocol', async () => {
    const { pxp, probe } = await gateway({ upnp: false });
    const { m, changes } = mapper(probe, { requestTimeoutMs: 300 });
    expect((await m.start())?.protocol).toBe('pmp');
    pxp.pmp = false;
    expect((await m.refresh())?.protocol).toBe('pcp');
    expect(changes.map((c) => c?.protocol)).toEqual(['pmp', 'pcp']);
  });

  it('a gateway without any service: null quickly, no change reported, nothing to release', async () => {
    const probe = { pmpPort: await deadPort(), ssdpPort: await deadPort(), multicast: false };
    const { m, changes } = mapper(probe);
    const t0 = Date.now();
    expect(await m.start()).toBeNull();
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(changes).toEqual([]);
    await m.close();
    expect(changes).toEqual([]);
  });

  it('a broken IGD (garbage description) yields no mapping, not an exception', async () => {
    const { probe } = await gateway({ pmp: false, pcp: false, igd: { description: '<root><device>' } });
    const lines: string[] = [];
    const { m } = mapper(probe, { log: (l) => lines.push(l) });
    expect(await m.start()).toBeNull();
    expect(lines.some((l) => /upnp .*failed/.test(l))).toBe(true);
  });
});

describe('netcheck hairpinning check (loopback stands in for the public address)', () => {
  async function socketA(): Promise<Socket> {
    const a = createSocket('udp4');
    await new Promise<void>((r) => a.bind(0, '127.0.0.1', r));
    closers.push(() => void a.close());
    return a;
  }

  it('true when the packet comes back to socket A, false when it does not (within the wait)', async () => {
    const a = await socketA();
    const notLocal = (): boolean => false;
    await expect(checkHairpinning(a, `127.0.0.1:${a.address().port}`, 300, notLocal)).resolves.toBe(true);
    const t0 = Date.now();
    await expect(checkHairpinning(a, `127.0.0.1:${await deadPort()}`, 300, notLocal)).resolves.toBe(false);
    expect(Date.now() - t0).toBeLessThan(700);
    expect(a.listenerCount('message')).toBe(0);
  });

  it('null for a local address (no NAT) or something that is not IPv4 ip:port', async () => {
    const a = await socketA();
    expect(isLocalAddress('127.0.0.1')).toBe(true);
    await expect(checkHairpinning(a, `127.0.0.1:${a.address().port}`)).resolves.toBeNull();
    await expect(checkHairpinning(a, '[2001:db8::1]:5')).resolves.toBeNull();
    await expect(checkHairpinning(a, '1.2.3.4:0')).resolves.toBeNull();
  });
});

async function waitUntil(f: () => boolean, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!f()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---------------------------------------------------------------------------------------------

describe('fuzzing: only UpnpError escapes', () => {
  const onlyUpnp = (f: () => unknown): void => {
    try {
      f();
    } catch (e) {
      if (!(e instanceof UpnpError)) throw e;
    }
  };
  const XMLISH = ['<', '>', '</', '/>', '<!--', '-->', '<![CDATA[', ']]>', '<?', '?>', '<!', '&', '&amp;', '&#', '&#x', ';', '"', "'", '=', ' ', 'a', 'x:', 'root', 'service', 'serviceType', 'controlURL', 'URLBase', WANIP1, WANIP2, 'http://', '1.2.3.4', '/ctl', 'Fault', 'UPnPError', 'errorCode', '402', 'Response', '\n'];
  const xmlish = fc.string({ unit: fc.constantFrom(...XMLISH), maxLength: 60 });
  /** A document with a random splice: delete a range, insert a random string. */
  const mutated = (docs: string[]) =>
    fc.tuple(fc.constantFrom(...docs), fc.nat(), fc.nat(40), fc.oneof(fc.string({ maxLength: 20 }), xmlish)).map(([d, at, del, ins]) => {
      const i = at % (d.length + 1);
      return d.slice(0, i) + ins + d.slice(i + del);
    });
  const descs = [miniupnpdDescription(1), miniupnpdDescription(2), miniupnpdDescription(1, { urlBase: 'http://10.0.0.1:1/' })];
  const soaps = [soapOk('GetExternalIPAddress', WANIP1, { NewExternalIPAddress: '1.2.3.4' }), soapFault(718, 'Conflict')];

  it('SSDP answers', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), mutated([MINIUPNPD_SSDP])), (s) => onlyUpnp(() => parseSsdpResponse(s))),
      { numRuns: 1500 },
    );
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (b) => onlyUpnp(() => parseSsdpResponse(b))), { numRuns: 500 });
  });

  it('XML, device descriptions and SOAP answers', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), xmlish, mutated(descs)), (s) => {
        onlyUpnp(() => parseXml(s));
        onlyUpnp(() => parseDeviceDescription(s, 'http://192.168.1.1:5000/rootDesc.xml'));
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.oneof(fc.string(), xmlish, mutated(soaps)), (s) => {
        onlyUpnp(() => parseSoapResponse(s, 'GetExternalIPAddress'));
      }),
      { numRuns: 1500 },
    );
  });

  it('whatever the IGD serves over HTTP, the client rejects with UpnpError only', async () => {
    let body = '';
    let status = 200;
    const f = await fakeIgd({
      http: (_req, res) => {
        res.writeHead(status, { 'Content-Type': 'text/xml' }).end(body);
        return true;
      },
    });
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(200, 500, 404), fc.oneof(fc.string(), xmlish, mutated([...descs, ...soaps])), async (st, b) => {
        status = st;
        body = b;
        for (const p of [fetchIgd(f.location, '127.0.0.1'), soapCall(igdAt(f), 'GetExternalIPAddress', []), upnpMap(igdAt(f), { internalClient: '10.0.0.2', internalPort: 4000 })]) {
          await p.catch((e: unknown) => {
            if (!(e instanceof UpnpError)) throw e;
          });
        }
      }),
      { numRuns: 60 },
    );
  });
});
