/**
 * UPnP IGD codecs, from the specs (UPnP Device Architecture 1.1, IGD v1/v2): SSDP M-SEARCH
 * requests and answers (§1.3), device descriptions (§2), SOAP control requests, answers and
 * faults (§3). Pure functions, no sockets; the client is upnp.ts.
 *
 * The XML is read with a small lenient element extractor (the five named entities and numeric
 * ones, no DTDs): descriptions and SOAP answers are simple, and a strict parser would reject the
 * sloppy XML some routers serve. Everything throws only `UpnpError`.
 */
import { PierceError } from '../../../src/errors.ts';
import { formatIP, tryParseIP } from '../../../src/netstack/addr.ts';

/** UPnP failure. Codes: see `UPNP_ERROR`; `upnpCode` is the SOAP fault's UPnP errorCode, if any. */
export class UpnpError extends PierceError {
  readonly upnpCode: number | undefined;
  constructor(code: string, message: string, options?: { cause?: unknown; upnpCode?: number }) {
    super(code, message, options);
    this.upnpCode = options?.upnpCode;
  }
}

/** Stable `UpnpError` codes. */
export const UPNP_ERROR = {
  /** No IGD answered SSDP, or its description has no usable WAN*Connection service. */
  NO_IGD: 'UPNP_NO_IGD',
  /** A SOAP fault (the UPnP errorCode is in `upnpCode` and the message). */
  SOAP_FAULT: 'UPNP_SOAP_FAULT',
  /** An SSDP answer that is not a usable HTTP 200 with a LOCATION. */
  BAD_SSDP: 'UPNP_BAD_SSDP',
  /** XML that cannot be read, or lacks what the answer must carry. */
  BAD_XML: 'UPNP_BAD_XML',
  /** A well-formed answer with an unusable value (an external address of 0.0.0.0, a bad port). */
  BAD_RESPONSE: 'UPNP_BAD_RESPONSE',
  /** HTTP failed: connection, status, size. */
  HTTP: 'UPNP_HTTP',
  /** No answer within the bound. */
  TIMEOUT: 'UPNP_TIMEOUT',
  /** Cancelled through `signal`. */
  ABORTED: 'UPNP_ABORTED',
  /** A bad argument from the caller. */
  ARGUMENT: 'UPNP_ARGUMENT',
} as const;

export const SSDP_MULTICAST = '239.255.255.250';
export const SSDP_PORT = 1900;
export const ST_ALL = 'ssdp:all';
export const ST_IGD1 = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1';
export const WANIP2 = 'urn:schemas-upnp-org:service:WANIPConnection:2';
export const WANIP1 = 'urn:schemas-upnp-org:service:WANIPConnection:1';
export const WANPPP1 = 'urn:schemas-upnp-org:service:WANPPPConnection:1';
/** Service preference, best first. */
export const SERVICE_PREFERENCE: readonly string[] = [WANIP2, WANIP1, WANPPP1];

const MAX_SSDP_BYTES = 8192;
/** Longest XML (and HTTP body) read, characters. */
export const MAX_XML_CHARS = 256 * 1024;
const MAX_XML_DEPTH = 64;

export function upnpFail(code: string, message: string, upnpCode?: number): never {
  throw new UpnpError(code, message, upnpCode === undefined ? undefined : { upnpCode });
}

// ---------------------------------------------------------------------------------------------
// SSDP

/** An M-SEARCH request (UDA 1.1 §1.3.2). */
export function buildSsdpSearch(st: string, mx = 1): Uint8Array {
  if (!/^[\x21-\x7e]{1,200}$/.test(st)) upnpFail(UPNP_ERROR.ARGUMENT, `SSDP search target ${JSON.stringify(st)} is not printable ASCII`);
  const text = `M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_MULTICAST}:${SSDP_PORT}\r\nST: ${st}\r\nMAN: "ssdp:discover"\r\nMX: ${mx}\r\n\r\n`;
  return new TextEncoder().encode(text);
}

export interface SsdpResponse {
  /** The description URL. */
  location: string;
  /** Search target the answer is for (ST). */
  st: string;
  usn: string;
  server: string;
}

/** Parses an M-SEARCH answer: `HTTP/1.x 200`, headers, a http:// LOCATION. */
export function parseSsdpResponse(msg: Uint8Array | string): SsdpResponse {
  if (msg.length > MAX_SSDP_BYTES) upnpFail(UPNP_ERROR.BAD_SSDP, `SSDP answer of ${msg.length} bytes is too long`);
  const text = typeof msg === 'string' ? msg : new TextDecoder('utf-8', { fatal: false }).decode(msg);
  const lines = text.split(/\r?\n/);
  const status = lines[0] ?? '';
  const m = /^HTTP\/1\.[01]\s+(\d{3})\b/i.exec(status);
  if (!m) upnpFail(UPNP_ERROR.BAD_SSDP, `SSDP answer does not start with an HTTP status line: ${JSON.stringify(status.slice(0, 60))}`);
  if (m[1] !== '200') upnpFail(UPNP_ERROR.BAD_SSDP, `SSDP answer has status ${m[1]}`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
  }
  const location = headers.get('location') ?? '';
  if (!location) upnpFail(UPNP_ERROR.BAD_SSDP, 'SSDP answer has no LOCATION');
  const url = parseUrl(location);
  if (!url || url.protocol !== 'http:') upnpFail(UPNP_ERROR.BAD_SSDP, `SSDP LOCATION ${JSON.stringify(location.slice(0, 100))} is not an http:// URL`);
  return { location: url.href, st: headers.get('st') ?? '', usn: headers.get('usn') ?? '', server: headers.get('server') ?? '' };
}

/** True when an SSDP answer is for an IGD or one of its WAN connection services. */
export function isIgdAnswer(r: SsdpResponse): boolean {
  return /:(InternetGatewayDevice|WANIPConnection|WANPPPConnection|WANDevice|WANConnectionDevice):/i.test(`${r.st} ${r.usn}`);
}

export function parseUrl(s: string, base?: string): URL | null {
  try {
    return new URL(s, base);
  } catch {
    return null;
  }
}

/** `url` with its host replaced by `gateway` (port and path kept). */
export function repointUrl(url: string, gateway: string): string {
  const u = parseUrl(url);
  if (!u || u.protocol !== 'http:') upnpFail(UPNP_ERROR.ARGUMENT, `${JSON.stringify(url.slice(0, 100))} is not an http:// URL`);
  const ip = tryParseIP(gateway);
  if (!ip) upnpFail(UPNP_ERROR.ARGUMENT, `gateway ${JSON.stringify(gateway)} is not an IP address`);
  u.hostname = ip.length === 16 ? `[${formatIP(ip)}]` : formatIP(ip);
  return u.href;
}

// ---------------------------------------------------------------------------------------------
// XML: a lenient element tree (local names, text content)

export interface XmlElement {
  /** Local name (namespace prefix removed). */
  name: string;
  children: XmlElement[];
  /** Concatenated, entity-decoded character data directly inside this element. */
  text: string;
}

function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|lt|gt|amp|quot|apos);/g, (all, e: string) => {
    if (e[0] === '#') {
      const n = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return n > 0 && n <= 0x10ffff && !(n >= 0xd800 && n <= 0xdfff) ? String.fromCodePoint(n) : all;
    }
    return ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" } as Record<string, string>)[e] ?? all;
  });
}

/** Index of the '>' ending the tag opened at `lt`, skipping quoted attribute values; -1 if none. */
function tagEnd(xml: string, lt: number): number {
  let quote = '';
  for (let i = lt + 1; i < xml.length; i++) {
    const c = xml[i]!;
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '>') return i;
    else if (c === '<') return -1;
  }
  return -1;
}

function localName(qname: string): string {
  const colon = qname.lastIndexOf(':');
  return colon >= 0 ? qname.slice(colon + 1) : qname;
}

/**
 * Parses XML into an element tree under a nameless document node. Lenient: mismatched end tags
 * close up to the matching open element (or are ignored), unclosed elements are closed at the
 * end. Throws `UPNP_BAD_XML` for unterminated markup, no element at all, or too deep nesting.
 */
export function parseXml(xml: string): XmlElement {
  if (typeof xml !== 'string') upnpFail(UPNP_ERROR.BAD_XML, 'XML is not text');
  if (xml.length > MAX_XML_CHARS) upnpFail(UPNP_ERROR.BAD_XML, `XML of ${xml.length} characters is too long`);
  const doc: XmlElement = { name: '', children: [], text: '' };
  const stack: XmlElement[] = [doc];
  let i = 0;
  const skipTo = (from: number, end: string, what: string): number => {
    const at = xml.indexOf(end, from);
    if (at < 0) upnpFail(UPNP_ERROR.BAD_XML, `unterminated ${what} at ${from}`);
    return at;
  };
  while (i < xml.length) {
    const top = stack[stack.length - 1]!;
    const lt = xml.indexOf('<', i);
    if (lt < 0) {
      top.text += decodeEntities(xml.slice(i));
      break;
    }
    if (lt > i) top.text += decodeEntities(xml.slice(i, lt));
    if (xml.startsWith('<!--', lt)) {
      i = skipTo(lt + 4, '-->', 'comment') + 3;
    } else if (xml.startsWith('<![CDATA[', lt)) {
      const end = skipTo(lt + 9, ']]>', 'CDATA section');
      top.text += xml.slice(lt + 9, end);
      i = end + 3;
    } else if (xml.startsWith('<?', lt)) {
      i = skipTo(lt + 2, '?>', 'processing instruction') + 2;
    } else if (xml.startsWith('<!', lt)) {
      i = skipTo(lt + 2, '>', 'declaration') + 1;
    } else {
      const gt = tagEnd(xml, lt);
      if (gt < 0) upnpFail(UPNP_ERROR.BAD_XML, `unterminated tag at ${lt}`);
      const body = xml.slice(lt + 1, gt);
      const closing = body.startsWith('/');
      const qname = /^\/?([^\s/>]+)/.exec(body)?.[1];
      if (!qname || !/^[A-Za-z_][\w.:-]*$/.test(qname)) upnpFail(UPNP_ERROR.BAD_XML, `bad tag name at ${lt}`);
      const name = localName(qname);
      if (closing) {
        let k = stack.length - 1;
        while (k > 0 && stack[k]!.name !== name) k--;
        if (k > 0) stack.length = k;
      } else {
        const el: XmlElement = { name, children: [], text: '' };
        top.children.push(el);
        if (!body.endsWith('/')) {
          if (stack.length > MAX_XML_DEPTH) upnpFail(UPNP_ERROR.BAD_XML, `XML nested deeper than ${MAX_XML_DEPTH}`);
          stack.push(el);
        }
      }
      i = gt + 1;
    }
  }
  if (doc.children.length === 0) upnpFail(UPNP_ERROR.BAD_XML, 'no XML element');
  return doc;
}

const same = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

/** Every descendant of `el` named `name` (case-insensitive local name), document order. */
export function xmlFindAll(el: XmlElement, name: string, out: XmlElement[] = []): XmlElement[] {
  for (const c of el.children) {
    if (same(c.name, name)) out.push(c);
    xmlFindAll(c, name, out);
  }
  return out;
}

/** Trimmed text of the first direct child named `name`, or ''. */
export function xmlChildText(el: XmlElement, name: string): string {
  return el.children.find((c) => same(c.name, name))?.text.trim() ?? '';
}

// ---------------------------------------------------------------------------------------------
// Device description

export interface IgdService {
  serviceType: string;
  /** Absolute http:// control URL. */
  controlUrl: string;
}

/**
 * The WAN connection services of a device description, best first (`SERVICE_PREFERENCE`).
 * Relative control URLs are resolved against URLBase or `location`. Throws `UPNP_BAD_XML`
 * for unreadable XML and `UPNP_NO_IGD` when no usable service is listed.
 */
export function parseDeviceDescription(xml: string, location: string): IgdService[] {
  const doc = parseXml(xml);
  const root = xmlFindAll(doc, 'root')[0] ?? doc;
  const base = xmlChildText(root, 'URLBase') || location;
  const found: IgdService[] = [];
  for (const svc of xmlFindAll(root, 'service')) {
    const type = xmlChildText(svc, 'serviceType');
    const rank = SERVICE_PREFERENCE.findIndex((t) => same(t, type));
    const ctl = xmlChildText(svc, 'controlURL');
    if (rank < 0 || !ctl) continue;
    const url = parseUrl(ctl, parseUrl(base)?.href ?? location) ?? parseUrl(ctl, location);
    if (!url || url.protocol !== 'http:') continue;
    if (!found.some((f) => f.controlUrl === url.href && f.serviceType === SERVICE_PREFERENCE[rank])) {
      found.push({ serviceType: SERVICE_PREFERENCE[rank]!, controlUrl: url.href });
    }
  }
  if (found.length === 0) upnpFail(UPNP_ERROR.NO_IGD, 'the device description lists no WANIPConnection or WANPPPConnection service');
  const rank = (s: IgdService) => SERVICE_PREFERENCE.indexOf(s.serviceType);
  return found.sort((a, b) => rank(a) - rank(b));
}

// ---------------------------------------------------------------------------------------------
// SOAP

export type SoapArgs = readonly (readonly [name: string, value: string | number])[];

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c);
}

/** A SOAP 1.1 request (UDA 1.1 §3.2.1): the body and the headers to POST it with. */
export function buildSoapRequest(serviceType: string, action: string, args: SoapArgs): { body: string; headers: Record<string, string> } {
  const name = /^[A-Za-z_][\w.-]*$/;
  if (!name.test(action) || args.some(([n]) => !name.test(n))) upnpFail(UPNP_ERROR.ARGUMENT, `bad SOAP action or argument name in ${action}`);
  if (!/^[\x21-\x7e]+$/.test(serviceType) || /[<>&"]/.test(serviceType)) upnpFail(UPNP_ERROR.ARGUMENT, `bad service type ${JSON.stringify(serviceType)}`);
  const inner = args.map(([n, v]) => `<${n}>${escapeXml(String(v))}</${n}>`).join('');
  const body =
    '<?xml version="1.0"?>\r\n' +
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
    `<s:Body><u:${action} xmlns:u="${serviceType}">${inner}</u:${action}></s:Body></s:Envelope>\r\n`;
  return {
    body,
    headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPAction: `"${serviceType}#${action}"`, Connection: 'close' },
  };
}

/**
 * The output arguments of `action`'s response (UDA 1.1 §3.2.2), by name. A SOAP Fault throws
 * `UPNP_SOAP_FAULT` with the UPnPError errorCode; anything else unusable throws `UPNP_BAD_XML`.
 */
export function parseSoapResponse(xml: string, action: string): Record<string, string> {
  const doc = parseXml(xml);
  const fault = xmlFindAll(doc, 'Fault')[0];
  if (fault) {
    const err = xmlFindAll(fault, 'UPnPError')[0];
    const code = err ? xmlChildText(err, 'errorCode') : '';
    const desc = (err ? xmlChildText(err, 'errorDescription') : '') || xmlChildText(fault, 'faultstring') || 'no description';
    const n = /^\d{1,4}$/.test(code) ? Number(code) : undefined;
    upnpFail(UPNP_ERROR.SOAP_FAULT, `${action}: UPnP error ${n ?? 'without a code'}: ${desc.slice(0, 200)}`, n);
  }
  const res = xmlFindAll(doc, `${action}Response`)[0];
  if (!res) upnpFail(UPNP_ERROR.BAD_XML, `SOAP answer has no ${action}Response`);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const c of res.children) out[c.name] = c.text.trim();
  return out;
}
