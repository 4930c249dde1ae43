/**
 * A UPnP IGD port-mapping client, from the specs: SSDP discovery (UPnP Device Architecture 1.1
 * §1.3), the device description (§2), and SOAP control (§3) of the WANIPConnection:1/:2 and
 * WANPPPConnection:1 services (UPnP IGD v1/v2). The codecs are in upnp-codec.ts (re-exported).
 *
 *   discovery     M-SEARCH with ST ssdp:all / InternetGatewayDevice:1 to gateway:1900 and
 *                 239.255.255.250:1900; each 200 answer's LOCATION names a description
 *   description   fetched over HTTP (1 s) from LOCATION with its host re-pointed at the gateway's
 *                 IP (routers advertise odd hosts); controlURL of the best WAN*Connection service:
 *                 WANIPConnection:2 > WANIPConnection:1 > WANPPPConnection:1
 *   control       SOAP POSTs: AddAnyPortMapping (WANIPConnection:2) or AddPortMapping, then
 *                 GetExternalIPAddress; DeletePortMapping releases. A fault carries a UPnP error
 *                 code (402 Invalid Args, 718 ConflictInMappingEntry, 725 OnlyPermanentLeases…).
 *
 * Everything is bounded in time and throws only `UpnpError`; nothing read from the network can
 * crash the caller.
 */
import { randomInt } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { request as httpRequest } from 'node:http';
import { formatIP, tryParseIP } from '../../../src/netstack/addr.ts';
import {
  MAX_XML_CHARS,
  SSDP_MULTICAST,
  SSDP_PORT,
  ST_ALL,
  ST_IGD1,
  UPNP_ERROR,
  UpnpError,
  WANIP2,
  buildSoapRequest,
  buildSsdpSearch,
  isIgdAnswer,
  parseDeviceDescription,
  parseSoapResponse,
  parseSsdpResponse,
  repointUrl,
  upnpFail as fail,
  type SoapArgs,
  type SsdpResponse,
} from './upnp-codec.ts';

export * from './upnp-codec.ts';

export const DEFAULT_DESCRIPTION = 'pierce';
export const DEFAULT_LEASE_SECONDS = 7200;
const DEFAULT_HTTP_TIMEOUT_MS = 1000;

// ---------------------------------------------------------------------------------------------
// HTTP and the IGD

export interface UpnpOptions {
  /** Per HTTP exchange, ms (default 1000). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** One HTTP exchange (no keep-alive, body capped at 256 KiB). */
export function httpExchange(
  url: string,
  o: UpnpOptions & { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: string }> {
  const timeoutMs = o.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(new UpnpError(UPNP_ERROR.ABORTED, 'UPnP request aborted'));
    let done = false;
    const finish = (err: UpnpError | null, v?: { status: number; body: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
      req.destroy();
      if (err) reject(err);
      else resolve(v!);
    };
    const onAbort = (): void => finish(new UpnpError(UPNP_ERROR.ABORTED, 'UPnP request aborted'));
    const body = o.body === undefined ? undefined : Buffer.from(o.body, 'utf8');
    const headers = { ...(o.headers ?? {}), ...(body ? { 'Content-Length': String(body.length) } : {}) };
    let req: ReturnType<typeof httpRequest>;
    try {
      req = httpRequest(url, { method: o.method ?? 'GET', headers, agent: false });
    } catch (e) {
      return reject(new UpnpError(UPNP_ERROR.HTTP, `HTTP ${url}: ${(e as Error).message}`, { cause: e }));
    }
    const timer = setTimeout(() => finish(new UpnpError(UPNP_ERROR.TIMEOUT, `HTTP ${url}: no answer within ${timeoutMs} ms`)), timeoutMs);
    o.signal?.addEventListener('abort', onAbort);
    req.on('error', (e) => finish(new UpnpError(UPNP_ERROR.HTTP, `HTTP ${url}: ${e.message}`, { cause: e })));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (d: Buffer) => {
        size += d.length;
        if (size > MAX_XML_CHARS) finish(new UpnpError(UPNP_ERROR.HTTP, `HTTP ${url}: answer over ${MAX_XML_CHARS} bytes`));
        else chunks.push(d);
      });
      res.on('error', (e) => finish(new UpnpError(UPNP_ERROR.HTTP, `HTTP ${url}: ${e.message}`, { cause: e })));
      res.on('end', () => finish(null, { status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.end(body);
  });
}

export interface SsdpSearchOptions {
  /** Overall bound, ms (default 1000). */
  timeoutMs?: number;
  /** After the first IGD answer, wait this long for more (default 50). */
  settleMs?: number;
  /** The gateway's SSDP port (default 1900). */
  port?: number;
  /** Also search 239.255.255.250 (default true). */
  multicast?: boolean;
  signal?: AbortSignal;
}

/**
 * M-SEARCH for ssdp:all and InternetGatewayDevice:1, unicast to gateway:port and (by default)
 * multicast; the distinct LOCATIONs of IGD answers from the gateway's address. Resolves with []
 * when none came; never rejects for what arrives (garbage is ignored).
 */
export function ssdpSearch(gateway: string, o: SsdpSearchOptions = {}): Promise<string[]> {
  const port = o.port ?? SSDP_PORT;
  return new Promise((resolve) => {
    const sock = createSocket('udp4');
    const found: string[] = [];
    let settle: ReturnType<typeof setTimeout> | undefined;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearTimeout(settle);
      o.signal?.removeEventListener('abort', finish);
      sock.close();
      resolve(found);
    };
    const deadline = setTimeout(finish, o.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS);
    if (o.signal?.aborted) return finish();
    o.signal?.addEventListener('abort', finish);
    sock.on('error', () => {}); // a failed send (no multicast route) is not fatal
    sock.on('message', (msg, rinfo) => {
      if (rinfo.address !== gateway) return;
      let r: SsdpResponse;
      try {
        r = parseSsdpResponse(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
      } catch {
        return;
      }
      if (!isIgdAnswer(r) || found.includes(r.location)) return;
      found.push(r.location);
      settle ??= setTimeout(finish, o.settleMs ?? 50);
    });
    sock.bind(0, () => {
      for (const st of [ST_ALL, ST_IGD1]) {
        const m = buildSsdpSearch(st);
        sock.send(m, port, gateway, () => {});
        if (o.multicast ?? true) sock.send(m, SSDP_PORT, SSDP_MULTICAST, () => {});
      }
    });
  });
}

/** SSDP search, then the first usable description: the IGD at `gateway` (`UPNP_NO_IGD` if none). */
export async function discoverIgd(gateway: string, o: SsdpSearchOptions & UpnpOptions = {}): Promise<UpnpIgd> {
  const locations = await ssdpSearch(gateway, o);
  return igdFromLocations(locations, gateway, o);
}

/** An IGD's chosen WAN connection service. */
export interface UpnpIgd {
  gateway: string;
  serviceType: string;
  controlUrl: string;
}

/** Fetches a description (LOCATION re-pointed at `gateway`) and picks its best service. */
export async function fetchIgd(location: string, gateway: string, opts: UpnpOptions = {}): Promise<UpnpIgd> {
  const url = repointUrl(location, gateway);
  const res = await httpExchange(url, opts);
  if (res.status !== 200) fail(UPNP_ERROR.HTTP, `HTTP ${url}: status ${res.status}`);
  const best = parseDeviceDescription(res.body, url)[0]!;
  return { gateway, serviceType: best.serviceType, controlUrl: repointUrl(best.controlUrl, gateway) };
}

/** Tries each LOCATION in turn; the first usable IGD, else the last error (or `UPNP_NO_IGD`). */
export async function igdFromLocations(locations: readonly string[], gateway: string, opts: UpnpOptions = {}): Promise<UpnpIgd> {
  let last: unknown = new UpnpError(UPNP_ERROR.NO_IGD, `no UPnP IGD answered at ${gateway}`);
  for (const loc of locations) {
    try {
      return await fetchIgd(loc, gateway, opts);
    } catch (e) {
      if (e instanceof UpnpError && e.code === UPNP_ERROR.ABORTED) throw e;
      last = e;
    }
  }
  throw last;
}

/** One SOAP action against the IGD; its output arguments. */
export async function soapCall(igd: UpnpIgd, action: string, args: SoapArgs, opts: UpnpOptions = {}): Promise<Record<string, string>> {
  const { body, headers } = buildSoapRequest(igd.serviceType, action, args);
  const res = await httpExchange(igd.controlUrl, { ...opts, method: 'POST', headers, body });
  if (res.status !== 200 && !/Fault/.test(res.body)) fail(UPNP_ERROR.HTTP, `${action}: HTTP status ${res.status}`);
  return parseSoapResponse(res.body, action);
}

/** GetExternalIPAddress; rejects unspecified, loopback and non-IPv4 answers (`UPNP_BAD_RESPONSE`). */
export async function upnpExternalAddress(igd: UpnpIgd, opts: UpnpOptions = {}): Promise<string> {
  const out = await soapCall(igd, 'GetExternalIPAddress', [], opts);
  const text = out['NewExternalIPAddress'] ?? '';
  const ip = tryParseIP(text);
  if (!ip || ip.length !== 4 || ip[0] === 0 || ip[0] === 127) fail(UPNP_ERROR.BAD_RESPONSE, `unusable external address ${JSON.stringify(text.slice(0, 50))}`);
  return formatIP(ip);
}

export interface UpnpMapRequest {
  /** This host's address toward the gateway. */
  internalClient: string;
  internalPort: number;
  /** Default: the internal port; ports below 1024 are replaced with a random one. */
  suggestedExternalPort?: number;
  /** Default 7200; 0 asks for a permanent mapping. */
  leaseSeconds?: number;
  description?: string;
}

function checkPort(p: number, what: string): void {
  if (!Number.isInteger(p) || p < 1 || p > 65535) fail(UPNP_ERROR.ARGUMENT, `${what} ${p} is not a port`);
}

const randomHighPort = (): number => randomInt(1024, 65536);

/**
 * Adds (or renews) a UDP mapping and reads the external address. AddAnyPortMapping on
 * WANIPConnection:2 (falling back to AddPortMapping if the action is missing); on fault 402 or
 * 725 the request is repeated with lease 0; on 718 (conflict) with another random port, twice.
 */
export async function upnpMap(
  igd: UpnpIgd,
  req: UpnpMapRequest,
  opts: UpnpOptions = {},
): Promise<{ externalAddress: string; externalPort: number; leaseSeconds: number }> {
  checkPort(req.internalPort, 'internal port');
  let port = req.suggestedExternalPort ?? req.internalPort;
  if (!Number.isInteger(port) || port < 1024 || port > 65535) port = randomHighPort();
  let lease = req.leaseSeconds ?? DEFAULT_LEASE_SECONDS;
  let useAny = igd.serviceType === WANIP2;
  let conflicts = 0;
  for (let attempt = 0; attempt < 6; attempt++) {
    const action = useAny ? 'AddAnyPortMapping' : 'AddPortMapping';
    const args: SoapArgs = [
      ['NewRemoteHost', ''],
      ['NewExternalPort', port],
      ['NewProtocol', 'UDP'],
      ['NewInternalPort', req.internalPort],
      ['NewInternalClient', req.internalClient],
      ['NewEnabled', 1],
      ['NewPortMappingDescription', req.description ?? DEFAULT_DESCRIPTION],
      ['NewLeaseDuration', lease],
    ];
    let out: Record<string, string>;
    try {
      out = await soapCall(igd, action, args, opts);
    } catch (e) {
      const code = e instanceof UpnpError ? e.upnpCode : undefined;
      if (useAny && (code === 401 || code === 602)) useAny = false;
      else if (lease !== 0 && (code === 402 || code === 725)) lease = 0;
      else if (code === 718 && conflicts++ < 2) port = randomHighPort();
      else throw e;
      continue;
    }
    if (useAny) {
      const reserved = Number(out['NewReservedPort']);
      if (!Number.isInteger(reserved) || reserved < 1 || reserved > 65535) fail(UPNP_ERROR.BAD_RESPONSE, `AddAnyPortMapping reserved port ${JSON.stringify(out['NewReservedPort'])}`);
      port = reserved;
    }
    try {
      return { externalAddress: await upnpExternalAddress(igd, opts), externalPort: port, leaseSeconds: lease };
    } catch (e) {
      await upnpDeletePortMapping(igd, port, opts).catch(() => {});
      throw e;
    }
  }
  return fail(UPNP_ERROR.SOAP_FAULT, 'AddPortMapping kept failing');
}

/** DeletePortMapping for a UDP external port. */
export async function upnpDeletePortMapping(igd: UpnpIgd, externalPort: number, opts: UpnpOptions = {}): Promise<void> {
  checkPort(externalPort, 'external port');
  await soapCall(igd, 'DeletePortMapping', [['NewRemoteHost', ''], ['NewExternalPort', externalPort], ['NewProtocol', 'UDP']], opts);
}
