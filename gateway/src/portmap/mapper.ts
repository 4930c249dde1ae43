/**
 * Port mapping for one local UDP port: probe the gateway, map, renew, release.
 *
 * Probe (Tailscale's portmapper order): from one socket, send
 *   1. a NAT-PMP external-address request to gateway:5351,
 *   2. a PCP ANNOUNCE to gateway:5351,
 *   3. SSDP M-SEARCH ssdp:all to gateway:1900, 4. the same to 239.255.255.250:1900,
 *   5. an InternetGatewayDevice:1 M-SEARCH (unicast and multicast),
 * and note what answers from the gateway's address (NAT-PMP success, PCP ANNOUNCE success, an
 * IGD's SSDP answer with its LOCATION). NAT-PMP and PCP get 250 ms. SSDP gets up to 1 s, because
 * devices delay M-SEARCH answers by a random time up to MX (miniupnpd: 100–400 ms); the mapper
 * stops waiting for it once NAT-PMP or PCP answered. A gateway that answers nothing costs 1 s.
 *
 * Mapping tries NAT-PMP, then PCP, then UPnP (the ones the probe saw, in that order, or the
 * `protocols` given; only those are probed), each bounded (PMP/PCP: 2 s with retransmission from
 * 250 ms; UPnP: 1 s per HTTP exchange). The granted mapping is renewed at half its lifetime with the same protocol and
 * external port (the PCP nonce is kept, §11.2 of RFC 6887); if that fails the gateway is probed
 * again. Failure leaves the current mapping in place until it expires, and retries later.
 * `close()` releases the mapping: NAT-PMP/PCP with lifetime 0, UPnP with DeletePortMapping.
 */
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { defaultGateway, natPmpExternalAddress, natPmpMap, pcpMap, type PortmapOptions } from './client.ts';
import { NATPMP_SERVER_PORT, decodeNatPmpResponse, encodeNatPmpExternalAddressRequest } from './natpmp.ts';
import { PCP_NONCE_LENGTH, PCP_OP, PCP_RESULT, decodePcpResponse, encodePcpAnnounceRequest } from './pcp.ts';
import { parseIP } from '../../../src/netstack/addr.ts';
import {
  SSDP_MULTICAST,
  SSDP_PORT,
  ST_ALL,
  ST_IGD1,
  buildSsdpSearch,
  igdFromLocations,
  isIgdAnswer,
  parseSsdpResponse,
  ssdpSearch,
  upnpDeletePortMapping,
  upnpMap,
  type UpnpIgd,
} from './upnp.ts';

export type PortMapProtocol = 'pmp' | 'pcp' | 'upnp';

/** Which port-mapping services a gateway answered for. */
export interface PortMapAvailability {
  pmp: boolean;
  pcp: boolean;
  upnp: boolean;
}

export interface GatewayProbe extends PortMapAvailability {
  gateway: string;
  /** LOCATIONs of the IGD's SSDP answers. */
  upnpLocations: string[];
  /** False when the probe stopped before the SSDP window ended (`waitForUpnp`), so `upnp: false` is not conclusive. */
  upnpConclusive: boolean;
}

export interface ProbeOptions {
  /** How long to wait for NAT-PMP and PCP answers, ms (default 250). */
  timeoutMs?: number;
  /**
   * How long to wait for an IGD's SSDP answer, ms (default 1000): devices delay answers to an
   * M-SEARCH by a random time up to its MX (1 s here; miniupnpd takes 100–400 ms).
   */
  upnpTimeoutMs?: number;
  /**
   * Asked once the NAT-PMP/PCP window is over (or both answered) while UPnP has not answered yet:
   * keep waiting for SSDP? Default: yes.
   */
  waitForUpnp?: (seen: PortMapAvailability) => boolean;
  /** What to probe (default all three); e.g. without 'upnp' no M-SEARCH is sent. */
  protocols?: readonly PortMapProtocol[];
  /** NAT-PMP/PCP server port (default 5351). */
  pmpPort?: number;
  /** SSDP port at the gateway (default 1900). */
  ssdpPort?: number;
  /** Also send the SSDP searches to 239.255.255.250:1900 (default true). */
  multicast?: boolean;
  /** This host's address toward the gateway (default: found with a connected UDP socket). */
  clientIp?: string;
}

/** The local address a datagram to `gateway` would leave from (no packet is sent). */
export function localAddressToward(gateway: string, port = NATPMP_SERVER_PORT): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket(gateway.includes(':') ? 'udp6' : 'udp4');
    s.once('error', (e) => {
      s.close();
      reject(e);
    });
    s.connect(port, gateway, () => {
      const a = s.address().address;
      s.close();
      resolve(a);
    });
  });
}

/**
 * Sends the five probe messages from one socket and collects the gateway's answers: NAT-PMP and
 * PCP for up to `timeoutMs` (250 ms), SSDP for up to `upnpTimeoutMs` (1 s) unless `waitForUpnp`
 * says otherwise; returns as soon as all three have answered. Never rejects.
 */
export async function probeGateway(gateway: string, o: ProbeOptions = {}): Promise<GatewayProbe> {
  const pmpPort = o.pmpPort ?? NATPMP_SERVER_PORT;
  const ssdpPort = o.ssdpPort ?? SSDP_PORT;
  const res: GatewayProbe = { gateway, pmp: false, pcp: false, upnp: false, upnpLocations: [], upnpConclusive: true };
  const clientIp = o.clientIp ?? (await localAddressToward(gateway).catch(() => '0.0.0.0'));
  let announce: Uint8Array;
  try {
    announce = encodePcpAnnounceRequest({ clientAddress: parseIP(clientIp) });
  } catch {
    announce = encodePcpAnnounceRequest({ clientAddress: new Uint8Array(4) });
  }
  const pxpWindow = o.timeoutMs ?? 250;
  return new Promise((resolve) => {
    const sock = createSocket('udp4');
    let done = false;
    let pxpOver = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(pxpTimer);
      clearTimeout(deadline);
      sock.close();
      resolve(res);
    };
    const which = o.protocols ?? ['pmp', 'pcp', 'upnp'];
    const check = (): void => {
      if (which.every((p) => res[p])) return finish();
      const pxpDone = pxpOver || which.every((p) => p === 'upnp' || res[p]);
      if (!pxpDone || res.upnp) return;
      const { pmp, pcp, upnp } = res;
      if (!which.includes('upnp') || (o.waitForUpnp && !o.waitForUpnp({ pmp, pcp, upnp }))) {
        res.upnpConclusive = false;
        finish();
      }
    };
    const pxpTimer = setTimeout(() => {
      pxpOver = true;
      if (res.upnp) finish();
      else check();
    }, pxpWindow);
    const deadline = setTimeout(finish, which.includes('upnp') ? Math.max(pxpWindow, o.upnpTimeoutMs ?? 1000) : pxpWindow);
    sock.on('error', () => {}); // e.g. no route for multicast: the other probes still count
    sock.on('message', (msg, rinfo) => {
      if (rinfo.address !== gateway) return;
      const b = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
      try {
        if (rinfo.port === pmpPort && b[0] === 0) {
          const r = decodeNatPmpResponse(b);
          if (r.kind === 'external-address' && r.result === 0) res.pmp = true;
        } else if (rinfo.port === pmpPort && b[0] === 2) {
          const r = decodePcpResponse(b);
          if (r.opcode === PCP_OP.ANNOUNCE && r.result === PCP_RESULT.SUCCESS) res.pcp = true;
        } else {
          const r = parseSsdpResponse(b);
          if (!isIgdAnswer(r)) return;
          res.upnp = true;
          if (!res.upnpLocations.includes(r.location)) res.upnpLocations.push(r.location);
          if (pxpOver) return finish();
        }
      } catch {
        return; // not an answer we can read
      }
      check();
    });
    sock.bind(0, () => {
      if (done) return;
      const send = (m: Uint8Array, port: number, host: string): void => sock.send(m, port, host, () => {});
      if (which.includes('pmp')) send(encodeNatPmpExternalAddressRequest(), pmpPort, gateway);
      if (which.includes('pcp')) send(announce, pmpPort, gateway);
      if (!which.includes('upnp')) return;
      const all = buildSsdpSearch(ST_ALL);
      const igd = buildSsdpSearch(ST_IGD1);
      send(all, ssdpPort, gateway);
      if (o.multicast ?? true) send(all, SSDP_PORT, SSDP_MULTICAST);
      send(igd, ssdpPort, gateway);
      if (o.multicast ?? true) send(igd, SSDP_PORT, SSDP_MULTICAST);
    });
  });
}

/**
 * Which of NAT-PMP, PCP and UPnP the gateway (default: the IPv4 default route's) offers.
 * All false when there is no gateway. Bounded by the probe's 250 ms.
 */
export async function probePortMapping(gateway?: string, o: ProbeOptions = {}): Promise<PortMapAvailability> {
  const gw = gateway ?? (await defaultGateway());
  if (!gw) return { pmp: false, pcp: false, upnp: false };
  const { pmp, pcp, upnp } = await probeGateway(gw, o);
  return { pmp, pcp, upnp };
}

export interface PortMapping {
  protocol: PortMapProtocol;
  gateway: string;
  externalAddress: string;
  externalPort: number;
  /** "ip:port". */
  external: string;
  internalPort: number;
  /** Granted lifetime, s (UPnP: 0 for a permanent lease, renewed all the same). */
  lifetimeSec: number;
  /** Date.now() of the last grant (first mapping or renewal). */
  grantedAt: number;
}

export interface PortMapperOptions {
  /** The local UDP port to map. */
  localPort: number;
  /** Default: the IPv4 default route's gateway (`defaultGateway()`). */
  gateway?: string;
  /** Protocols to try, in order (default ['pmp', 'pcp', 'upnp']). */
  protocols?: readonly PortMapProtocol[];
  /** Requested lifetime, s (default 7200). */
  lifetimeSec?: number;
  /** Called when the mapping's external ip:port (or protocol) changes, and with null when it is lost or released. */
  onChange?: (m: PortMapping | null) => void;
  /** Called after every successful renewal. */
  onRenew?: (m: PortMapping) => void;
  /** Retry after a failed attempt, ms (default 60 000; sooner if a mapping is about to expire). */
  retryMs?: number;
  /**
   * Per NAT-PMP/PCP request, ms (default 2000, retransmitting at 250, 500, 1000 ms): the probe has
   * shown the service is there, and miniupnpd answers late (100–350 ms) while it works off the
   * delayed SSDP answers to a probe.
   */
  requestTimeoutMs?: number;
  /** Per UPnP HTTP exchange, ms (default 1000). */
  httpTimeoutMs?: number;
  /** Probe bound, ms (default 250), and the probe's ports (for tests). */
  probe?: Omit<ProbeOptions, 'clientIp'>;
  log?: (line: string) => void;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/** Keeps one local UDP port mapped on the gateway (see the file comment). */
export class PortMapper {
  private readonly o: PortMapperOptions;
  private readonly protocols: readonly PortMapProtocol[];
  private readonly lifetime: number;
  private readonly nonce = new Uint8Array(randomBytes(PCP_NONCE_LENGTH));
  private current: PortMapping | null = null;
  private expiresAt = 0;
  private igd: UpnpIgd | null = null;
  private clientIp: string | null = null;
  private gw: string | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(o: PortMapperOptions) {
    if (!Number.isInteger(o.localPort) || o.localPort < 1 || o.localPort > 65535) throw new RangeError(`local port ${o.localPort} is not a port`);
    this.o = o;
    this.protocols = o.protocols ?? ['pmp', 'pcp', 'upnp'];
    this.lifetime = o.lifetimeSec ?? 7200;
  }

  /** The current mapping, or null. */
  get mapping(): PortMapping | null {
    return this.current;
  }

  /** Maps (or re-maps) now; resolves with the mapping, or null when none could be had. */
  start(): Promise<PortMapping | null> {
    return this.refresh();
  }

  /** Same as `start`: renews the current mapping or obtains one; serialised with other work. */
  refresh(): Promise<PortMapping | null> {
    return this.enqueue(async () => {
      if (!this.closed) await this.update();
      return this.current;
    });
  }

  /** Stops renewing and releases the mapping (bounded, errors only logged); onChange(null). */
  async close(): Promise<void> {
    if (this.closed) return this.chain.then(() => {});
    this.closed = true;
    clearTimeout(this.timer);
    await this.enqueue(async () => {
      const m = this.current;
      if (!m) return;
      await this.release(m).catch((e: unknown) => this.log(`release of ${m.protocol} mapping ${m.external} failed: ${String(e)}`));
      this.set(null);
    });
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => {});
    return p;
  }

  private log(line: string): void {
    this.o.log?.(line);
  }

  private reqOpts(): PortmapOptions {
    const port = this.o.probe?.pmpPort;
    return { timeoutMs: this.o.requestTimeoutMs ?? 2000, retransmitMs: [250, 500, 1000], ...(port ? { port } : {}) };
  }

  private ssdpOpts(): { port?: number; multicast?: boolean } {
    const port = this.o.probe?.ssdpPort;
    const multicast = this.o.probe?.multicast;
    return { ...(port ? { port } : {}), ...(multicast !== undefined ? { multicast } : {}) };
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    if (this.closed) return;
    this.timer = setTimeout(() => void this.refresh().catch(() => {}), Math.max(200, Math.min(ms, MAX_TIMER_MS)));
    this.timer.unref?.();
  }

  private set(m: PortMapping | null): void {
    const old = this.current;
    this.current = m;
    const changed = (old === null) !== (m === null) || (old && m && (old.external !== m.external || old.protocol !== m.protocol));
    if (!changed) return;
    try {
      this.o.onChange?.(m);
    } catch (e) {
      this.log(`onChange threw: ${String(e)}`);
    }
  }

  private async update(): Promise<void> {
    const retry = this.o.retryMs ?? 60_000;
    this.gw ??= this.o.gateway ?? (await defaultGateway()) ?? null;
    const gw = this.gw;
    if (!gw) {
      this.log('port mapping: no default gateway');
      this.set(null);
      return this.schedule(retry);
    }
    this.clientIp ??= await localAddressToward(gw).catch(() => null);
    const old = this.current;
    let m: PortMapping | null = null;
    if (old) m = await this.attempt(old.protocol, gw, old.externalPort, []);
    if (!m) {
      const allowed = this.protocols;
      const probe = await probeGateway(gw, {
        ...this.o.probe,
        ...(this.clientIp ? { clientIp: this.clientIp } : {}),
        protocols: allowed,
        // Once NAT-PMP or PCP (when allowed) answered, UPnP's slow SSDP answer is not needed.
        waitForUpnp: (seen) => allowed.includes('upnp') && !allowed.some((p) => p !== 'upnp' && seen[p]),
      });
      this.log(`port mapping probe ${gw}: pmp=${probe.pmp} pcp=${probe.pcp} upnp=${probe.upnp}${probe.upnpConclusive ? '' : '?'}`);
      if (probe.upnp) this.igd = null; // fetch the (possibly new) description again
      for (const p of allowed) {
        if (m) break;
        let locations = probe.upnpLocations;
        if (p === 'upnp' && !probe.upnp && !probe.upnpConclusive) {
          locations = await ssdpSearch(gw, { timeoutMs: this.o.probe?.upnpTimeoutMs ?? 1000, ...this.ssdpOpts() });
        }
        if (p === 'upnp' ? locations.length > 0 || this.igd !== null : probe[p]) {
          m = await this.attempt(p, gw, old?.externalPort ?? this.o.localPort, locations);
        }
      }
    }
    if (m) {
      const renewed = old !== null && old.external === m.external && old.protocol === m.protocol;
      this.expiresAt = m.lifetimeSec > 0 ? m.grantedAt + m.lifetimeSec * 1000 : Infinity;
      this.set(m);
      if (renewed) {
        try {
          this.o.onRenew?.(m);
        } catch (e) {
          this.log(`onRenew threw: ${String(e)}`);
        }
      }
      this.log(`port mapping ${renewed ? 'renewed' : 'obtained'}: ${m.protocol} ${m.external} → :${m.internalPort}, ${m.lifetimeSec} s`);
      return this.schedule(((m.lifetimeSec > 0 ? m.lifetimeSec : this.lifetime) * 1000) / 2);
    }
    const left = this.expiresAt - Date.now();
    if (this.current && left > 0) return this.schedule(Math.min(retry, Math.max(left / 2, 1000)));
    this.set(null);
    this.schedule(retry);
  }

  /** One protocol's mapping attempt; null (logged) on failure. */
  private async attempt(p: PortMapProtocol, gw: string, suggested: number, locations: readonly string[]): Promise<PortMapping | null> {
    const internalPort = this.o.localPort;
    const make = (externalAddress: string, externalPort: number, lifetimeSec: number): PortMapping => ({
      protocol: p,
      gateway: gw,
      externalAddress,
      externalPort,
      external: `${externalAddress}:${externalPort}`,
      internalPort,
      lifetimeSec,
      grantedAt: Date.now(),
    });
    try {
      if (p === 'pmp') {
        const ext = await natPmpExternalAddress(gw, this.reqOpts());
        const r = await natPmpMap(gw, { protocol: 'udp', internalPort, suggestedExternalPort: suggested, lifetime: this.lifetime }, this.reqOpts());
        if (r.lifetime === 0 || r.externalPort === 0) throw new Error('NAT-PMP granted no mapping');
        return make(ext.address, r.externalPort, r.lifetime);
      }
      if (!this.clientIp) throw new Error(`no local address toward ${gw}`);
      if (p === 'pcp') {
        const r = await pcpMap(gw, this.clientIp, { internalPort, suggestedExternalPort: suggested, lifetime: this.lifetime, nonce: this.nonce }, this.reqOpts());
        if (r.lifetime === 0 || r.externalPort === 0) throw new Error('PCP granted no mapping');
        return make(r.externalAddress, r.externalPort, r.lifetime);
      }
      const http = { timeoutMs: this.o.httpTimeoutMs ?? 1000 };
      if (!this.igd || this.igd.gateway !== gw) this.igd = await igdFromLocations(locations, gw, http);
      const r = await upnpMap(this.igd, { internalClient: this.clientIp, internalPort, suggestedExternalPort: suggested, leaseSeconds: this.lifetime }, http);
      return make(r.externalAddress, r.externalPort, r.leaseSeconds);
    } catch (e) {
      this.log(`port mapping via ${p} at ${gw} failed: ${e instanceof Error ? e.message : String(e)}`);
      return null;
    }
  }

  private async release(m: PortMapping): Promise<void> {
    if (m.protocol === 'pmp') {
      await natPmpMap(m.gateway, { protocol: 'udp', internalPort: m.internalPort, suggestedExternalPort: 0, lifetime: 0 }, this.reqOpts());
    } else if (m.protocol === 'pcp') {
      if (!this.clientIp) return;
      await pcpMap(m.gateway, this.clientIp, { internalPort: m.internalPort, suggestedExternalPort: m.externalPort, lifetime: 0, nonce: this.nonce }, this.reqOpts());
    } else if (this.igd) {
      await upnpDeletePortMapping(this.igd, m.externalPort, { timeoutMs: this.o.httpTimeoutMs ?? 1000 });
    }
    this.log(`port mapping released: ${m.protocol} ${m.external}`);
  }
}
