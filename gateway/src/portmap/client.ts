/**
 * A small port-mapping client over node:dgram: NAT-PMP (RFC 6886) external address and mapping
 * requests, and PCP (RFC 6887) MAP requests.
 *
 * Each call binds its own ephemeral UDP socket, sends the request to gateway:port (default 5351)
 * and retransmits per RFC 6886 §3.1 (250 ms, doubling), but gives up after `timeoutMs` in total
 * (default 2000 ms) with `PORTMAP_TIMEOUT`. Datagrams from any other address or port, ones that
 * do not decode, and ones that do not answer this request (opcode; nonce for PCP) are ignored.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { PierceError } from '../../../src/errors.ts';
import { formatIP, parseIP } from '../../../src/netstack/addr.ts';
import {
  NATPMP_OP,
  NATPMP_RESPONSE_BIT,
  NATPMP_RESULT,
  NATPMP_RETRANSMIT_MS,
  NATPMP_SERVER_PORT,
  decodeNatPmpResponse,
  encodeNatPmpExternalAddressRequest,
  encodeNatPmpMappingRequest,
  natPmpResultName,
  type NatPmpResponse,
} from './natpmp.ts';
import {
  PCP_NONCE_LENGTH,
  PCP_OP,
  PCP_PROTOCOL,
  PCP_RESULT,
  classifyPcpReply,
  decodePcpResponse,
  encodePcpMapRequest,
  fromPcpAddress,
  pcpResultName,
} from './pcp.ts';

/** Port-mapping client failure. Codes: see `PORTMAP_ERROR`. */
export class PortmapError extends PierceError {}

/** Stable `PortmapError` codes. */
export const PORTMAP_ERROR = {
  /** No matching answer within `timeoutMs`. */
  TIMEOUT: 'PORTMAP_TIMEOUT',
  /** The gateway answered with a non-zero result code (its name is in the message). */
  REFUSED: 'PORTMAP_REFUSED',
  /** A PCP request was answered with NAT-PMP's Unsupported Version reply (RFC 6887 §9). */
  NATPMP_ONLY: 'PORTMAP_NATPMP_ONLY',
  /** Cancelled through `signal`. */
  ABORTED: 'PORTMAP_ABORTED',
  /** The socket failed (bind or send). */
  SOCKET: 'PORTMAP_SOCKET',
} as const;

export interface PortmapOptions {
  /** Overall bound, ms (default 2000). */
  timeoutMs?: number;
  /** Wait after each transmission, ms (default RFC 6886 §3.1: 250, 500, 1000, ...). */
  retransmitMs?: readonly number[];
  /** Gateway UDP port (default 5351). */
  port?: number;
  signal?: AbortSignal;
}

const DEFAULT_TIMEOUT_MS = 2000;

/**
 * Sends `request` and resolves with the first reply `accept` maps to a value. `accept` returns
 * undefined to ignore a reply, and may throw (a PortmapError) to end the exchange.
 */
function exchange<T>(gateway: string, request: Uint8Array, accept: (msg: Uint8Array) => T | undefined, opts: PortmapOptions = {}): Promise<T> {
  const port = opts.port ?? NATPMP_SERVER_PORT;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const schedule = opts.retransmitMs ?? NATPMP_RETRANSMIT_MS;
  const signal = opts.signal;
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new PortmapError(PORTMAP_ERROR.ABORTED, 'port-mapping request aborted'));
      return;
    }
    const sock: Socket = createSocket(gateway.includes(':') ? 'udp6' : 'udp4');
    let retransmitTimer: ReturnType<typeof setTimeout> | undefined;
    let done = false;
    const finish = (err: unknown, value?: T): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearTimeout(retransmitTimer);
      signal?.removeEventListener('abort', onAbort);
      sock.close();
      if (err !== undefined) reject(err);
      else resolve(value as T);
    };
    const onAbort = (): void => finish(new PortmapError(PORTMAP_ERROR.ABORTED, 'port-mapping request aborted'));
    signal?.addEventListener('abort', onAbort);
    const deadline = setTimeout(
      () => finish(new PortmapError(PORTMAP_ERROR.TIMEOUT, `no answer from ${gateway}:${port} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    let attempt = 0;
    const send = (): void => {
      if (done) return;
      sock.send(request, port, gateway, (err) => {
        if (err) finish(new PortmapError(PORTMAP_ERROR.SOCKET, `send to ${gateway}:${port} failed: ${err.message}`, { cause: err }));
      });
      const wait = schedule[attempt++];
      if (wait !== undefined) retransmitTimer = setTimeout(send, wait);
    };
    sock.on('error', (err) => finish(new PortmapError(PORTMAP_ERROR.SOCKET, `port-mapping socket failed: ${err.message}`, { cause: err })));
    sock.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      if (done || rinfo.address !== gateway || rinfo.port !== port) return;
      let value: T | undefined;
      try {
        value = accept(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
      } catch (e) {
        if (e instanceof PortmapError) finish(e);
        return; // a decode error: ignore the datagram
      }
      if (value !== undefined) finish(undefined, value);
    });
    sock.bind(0, send);
  });
}

function refused(proto: string, result: string): PortmapError {
  return new PortmapError(PORTMAP_ERROR.REFUSED, `${proto} gateway refused the request: ${result}`);
}

/** NAT-PMP reply matcher: the response to request opcode `op`, or undefined. */
function natPmpAccept(op: number, res: NatPmpResponse): NatPmpResponse | undefined {
  const resOp = res.kind === 'error' ? res.opcode : NATPMP_RESPONSE_BIT | (res.kind === 'external-address' ? NATPMP_OP.EXTERNAL_ADDRESS : res.protocol === 'udp' ? NATPMP_OP.MAP_UDP : NATPMP_OP.MAP_TCP);
  if (resOp !== (NATPMP_RESPONSE_BIT | op)) return undefined;
  if (res.result !== NATPMP_RESULT.SUCCESS) throw refused('NAT-PMP', natPmpResultName(res.result));
  return res;
}

/** NAT-PMP external address request (RFC 6886 §3.2). */
export async function natPmpExternalAddress(gateway: string, opts?: PortmapOptions): Promise<{ address: string; epoch: number }> {
  return exchange(
    gateway,
    encodeNatPmpExternalAddressRequest(),
    (msg) => {
      const res = natPmpAccept(NATPMP_OP.EXTERNAL_ADDRESS, decodeNatPmpResponse(msg));
      if (res?.kind !== 'external-address') return undefined;
      return { address: formatIP(res.externalAddress), epoch: res.epoch };
    },
    opts,
  );
}

/** NAT-PMP mapping request (RFC 6886 §3.3); lifetime defaults to 7200 s, 0 deletes. */
export async function natPmpMap(
  gateway: string,
  req: { protocol: 'udp' | 'tcp'; internalPort: number; suggestedExternalPort?: number; lifetime?: number },
  opts?: PortmapOptions,
): Promise<{ externalPort: number; lifetime: number; epoch: number }> {
  const op = req.protocol === 'udp' ? NATPMP_OP.MAP_UDP : NATPMP_OP.MAP_TCP;
  return exchange(
    gateway,
    encodeNatPmpMappingRequest(req),
    (msg) => {
      const res = natPmpAccept(op, decodeNatPmpResponse(msg));
      if (res?.kind !== 'mapping' || res.internalPort !== req.internalPort) return undefined;
      return { externalPort: res.externalPort, lifetime: res.lifetime, epoch: res.epoch };
    },
    opts,
  );
}

/** PCP MAP request for UDP (RFC 6887 §11). `clientIp` is this host's address toward the gateway. */
export async function pcpMap(
  gateway: string,
  clientIp: string,
  req: { internalPort: number; suggestedExternalPort?: number; lifetime?: number; nonce?: Uint8Array },
  opts?: PortmapOptions,
): Promise<{ externalAddress: string; externalPort: number; lifetime: number; epoch: number }> {
  const nonce = req.nonce ?? new Uint8Array(randomBytes(PCP_NONCE_LENGTH));
  const request = encodePcpMapRequest({
    clientAddress: parseIP(clientIp),
    lifetime: req.lifetime ?? 7200,
    nonce,
    protocol: PCP_PROTOCOL.UDP,
    internalPort: req.internalPort,
    suggestedExternalPort: req.suggestedExternalPort ?? 0,
  });
  return exchange(
    gateway,
    request,
    (msg) => {
      const kind = classifyPcpReply(msg);
      if (kind === 'natpmp') throw new PortmapError(PORTMAP_ERROR.NATPMP_ONLY, `${gateway} answered PCP with NAT-PMP Unsupported Version: it speaks NAT-PMP only`);
      if (kind !== 'pcp') return undefined;
      const res = decodePcpResponse(msg);
      if (res.opcode !== PCP_OP.MAP) return undefined;
      // A header-only error response cannot carry the nonce (§8.3); accept it as the refusal.
      if (res.map === null) throw refused('PCP', pcpResultName(res.result));
      if (!equalBytes(res.map.nonce, nonce) || res.map.internalPort !== req.internalPort) return undefined;
      if (res.result !== PCP_RESULT.SUCCESS) throw refused('PCP', pcpResultName(res.result));
      return {
        externalAddress: formatIP(fromPcpAddress(res.map.externalAddress)),
        externalPort: res.map.externalPort,
        lifetime: res.lifetime,
        epoch: res.epoch,
      };
    },
    opts,
  );
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * The IPv4 default route's gateway from /proc/net/route text: the up (RTF_UP) gateway
 * (RTF_GATEWAY) route with destination and mask 0 and the lowest metric. Addresses are
 * little-endian hex ("0101A8C0" is 192.168.1.1).
 */
export function parseProcNetRoute(text: string): string | undefined {
  let best: { gw: string; metric: number } | undefined;
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [, dest, gw, flags, , , metric, mask] = f;
    if (dest !== '00000000' || mask !== '00000000' || !gw || !/^[0-9A-Fa-f]{8}$/.test(gw)) continue;
    const fl = parseInt(flags ?? '', 16);
    if (!(fl & 0x1) || !(fl & 0x2)) continue;
    const n = parseInt(gw, 16);
    const addr = [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].join('.');
    const m = Number(metric);
    if (!best || m < best.metric) best = { gw: addr, metric: m };
  }
  return best?.gw;
}

/** The IPv4 default gateway on Linux (from /proc/net/route), or undefined. */
export async function defaultGateway(): Promise<string | undefined> {
  try {
    return parseProcNetRoute(await readFile('/proc/net/route', 'utf8'));
  } catch {
    return undefined;
  }
}
