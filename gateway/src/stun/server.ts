/**
 * A STUN server on UDP (RFC 8489 §6.3): answers Binding requests with the source transport
 * address the request came from. Node only (node:dgram); the codec is src/stun/message.ts.
 *
 * What it answers:
 * - Binding requests with the magic cookie: a success response with XOR-MAPPED-ADDRESS, then,
 *   as the size budget allows (below), FINGERPRINT first if the request carried one, then
 *   MAPPED-ADDRESS, SOFTWARE ("pierce") and FINGERPRINT.
 * - RFC 3489 Binding requests (no cookie; RFC 8489 §12): the cookie bytes echoed, MAPPED-ADDRESS
 *   (an RFC 3489 client drops a response with an attribute ≤ 0x7FFF it does not know, so no
 *   XOR-MAPPED-ADDRESS), then SOFTWARE as the budget allows.
 * - A CHANGE-REQUEST (RFC 5780 §7.2) asking for another IP or port cannot be honoured (one
 *   address): a 420 error for RFC 5389+ clients; RFC 3489 clients get no answer, which is what
 *   their NAT-type tests expect from a server that did not change address. An all-zero
 *   CHANGE-REQUEST is answered normally.
 * - Other unknown comprehension-required attributes: 420 with UNKNOWN-ATTRIBUTES (§6.3.1).
 * - Everything else (not STUN, indications, responses, other methods) is dropped and counted.
 *
 * Amplification: one datagram out per request in, and never more than the request's size
 * except for the one attribute without which the response is useless: XOR-MAPPED-ADDRESS (or
 * MAPPED-ADDRESS for RFC 3489). A bare 20-byte request gets 32 bytes back (IPv4) or 44 (IPv6),
 * so the byte ratio is at most 2.2:1; optional attributes (and the 420 reason phrase) are added
 * only while the response stays no larger than the request (`fitToRequest`, default true); a
 * 420 answer without its phrase is at most 1.5 times the request (36 bytes for 24). On top, a token bucket per source IP (`rateLimit`) and a
 * global one (`globalRateLimit`) cap the packets sent towards any (possibly spoofed) address
 * and in total; over-limit requests are dropped silently. The per-source table holds at most
 * `maxSources` entries (least recently used evicted).
 */
import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { isIPv4Mapped, parseIP } from '../../../src/netstack/addr.ts';
import {
  ATTR,
  BINDING,
  HEADER_LENGTH,
  MAGIC_COOKIE,
  attributeSize,
  buildBindingError,
  buildBindingSuccess,
  encodeText,
  parseStun,
  readChangeRequest,
  unknownRequiredAttributes,
  type StunMessage,
} from '../../../src/stun/message.ts';

export type StunLogLevel = 'debug' | 'info' | 'warn';

export interface RateLimit {
  /** Tokens (responses) added per second. */
  perSecond: number;
  /** Bucket size: responses allowed back to back. */
  burst: number;
}

export interface StunServerOptions {
  /** Listen address(es). Default ['0.0.0.0', '::'] (the IPv6 one skipped if IPv6 is unavailable). */
  host?: string | readonly string[];
  /** UDP port, default 3478 (RFC 8489 §18.4); 0 picks a free one, shared by all hosts. */
  port?: number;
  log?: (level: StunLogLevel, message: string) => void;
  /** SOFTWARE text; null leaves it out. Default "pierce". */
  software?: string | null;
  /** Per source IP. Default 20/s, burst 40; false turns it off. */
  rateLimit?: RateLimit | false;
  /** Over all sources. Default 20000/s, burst 40000; false turns it off. */
  globalRateLimit?: RateLimit | false;
  /** Per-source buckets kept (LRU). Default 65536. */
  maxSources?: number;
  /** Add optional attributes only while the response is no larger than the request. Default true. */
  fitToRequest?: boolean;
  /** Called for each request answered, with its source as dgram reported it (for logs and tests). */
  onBinding?: (from: { address: string; port: number }) => void;
  /** Milliseconds, monotonic (tests inject a fake). Default performance.now. */
  now?: () => number;
}

export interface StunServerStats {
  /** Well-formed Binding requests received (including rate-limited ones). */
  requests: number;
  /** Success responses sent. */
  responses: number;
  /** Error responses sent (420). */
  errorResponses: number;
  /** Datagrams that passed the quick STUN check but failed to parse. */
  malformed: number;
  /** Requests dropped by a rate limit. */
  rateLimited: number;
  /** Datagrams dropped as not for us: not STUN, not a Binding request, unanswerable. */
  ignored: number;
  /** Responses the socket failed to send. */
  sendErrors: number;
}

export interface StunListenAddress {
  address: string;
  family: 4 | 6;
  port: number;
}

export interface StunServer {
  /** The first socket's address and port. */
  address: string;
  port: number;
  addresses: StunListenAddress[];
  close(): Promise<void>;
  stats(): StunServerStats;
}

/** Comprehension-required attributes a Binding request may carry that we accept (and ignore). */
const KNOWN = new Set<number>([
  ATTR.CHANGE_REQUEST,
  ATTR.USERNAME,
  ATTR.MESSAGE_INTEGRITY,
  ATTR.MESSAGE_INTEGRITY_SHA256,
  ATTR.USERHASH,
  ATTR.REALM,
  ATTR.NONCE,
  ATTR.PRIORITY,
  ATTR.USE_CANDIDATE,
  ATTR.PADDING,
]);
const MAX_UNKNOWN_LISTED = 4;
const REASON_420 = 'Unknown Attribute';

class TokenBucket {
  private tokens: number;
  constructor(
    private readonly limit: RateLimit,
    private t: number,
  ) {
    this.tokens = limit.burst;
  }
  take(now: number): boolean {
    this.tokens = Math.min(this.limit.burst, this.tokens + (Math.max(0, now - this.t) * this.limit.perSecond) / 1000);
    this.t = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

function bindSocket(s: Socket, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    s.once('error', onError);
    s.bind({ port, address: host, exclusive: true }, () => {
      s.off('error', onError);
      resolve();
    });
  });
}

/** A source address from dgram as bytes: zone dropped, IPv4-mapped IPv6 reported as IPv4. */
export function sourceAddress(ip: string): Uint8Array | null {
  const pct = ip.indexOf('%');
  const bare = pct >= 0 ? ip.slice(0, pct) : ip;
  let a: Uint8Array;
  try {
    a = parseIP(bare);
  } catch {
    return null;
  }
  return isIPv4Mapped(a) ? a.slice(12) : a;
}

/** Starts the server; resolves once every socket is bound. */
export async function startStunServer(opts: StunServerOptions = {}): Promise<StunServer> {
  const explicit = opts.host !== undefined;
  const hosts = typeof opts.host === 'string' ? [opts.host] : [...(opts.host ?? ['0.0.0.0', '::'])];
  if (hosts.length === 0) throw new Error('startStunServer: no listen address');
  for (const h of hosts) if (!isIP(h)) throw new Error(`startStunServer: ${JSON.stringify(h)} is not an IP address`);
  const log = opts.log ?? (() => {});
  const now = opts.now ?? (() => performance.now());
  const software = opts.software === null ? undefined : (opts.software ?? 'pierce');
  const softwareSize = software === undefined ? 0 : attributeSize(encodeText(software, 'SOFTWARE').length);
  const perSource = opts.rateLimit === false ? null : (opts.rateLimit ?? { perSecond: 20, burst: 40 });
  const globalLimit = opts.globalRateLimit === false ? null : (opts.globalRateLimit ?? { perSecond: 20_000, burst: 40_000 });
  const global = globalLimit ? new TokenBucket(globalLimit, now()) : null;
  const maxSources = opts.maxSources ?? 65_536;
  const fit = opts.fitToRequest !== false;
  const buckets = new Map<string, TokenBucket>();
  const stats: StunServerStats = { requests: 0, responses: 0, errorResponses: 0, malformed: 0, rateLimited: 0, ignored: 0, sendErrors: 0 };
  // With an IPv4 address in the list, IPv6 sockets must not also take IPv4 (same port twice).
  const anyV4 = hosts.some((h) => isIP(h) === 4);

  const allowed = (ip: string): boolean => {
    const t = now();
    if (perSource) {
      let b = buckets.get(ip);
      if (b) buckets.delete(ip); // re-insert below: Map order is the LRU order
      else {
        b = new TokenBucket(perSource, t);
        if (buckets.size >= maxSources) buckets.delete(buckets.keys().next().value!);
      }
      buckets.set(ip, b);
      if (!b.take(t)) return false;
    }
    return !global || global.take(t);
  };

  /** The answer to a parsed Binding request, or null for none. */
  const answer = (req: StunMessage, reqLen: number, addr: Uint8Array, port: number): Uint8Array | null => {
    const legacy = req.cookie !== MAGIC_COOKIE;
    const change = readChangeRequest(req);
    const unknown = unknownRequiredAttributes(req, KNOWN);
    if (change && (change.changeIP || change.changePort)) {
      if (legacy) return null;
      if (!unknown.includes(ATTR.CHANGE_REQUEST)) unknown.unshift(ATTR.CHANGE_REQUEST);
    }
    const txid = req.transactionId;
    const cookie = req.cookie;
    if (unknown.length > 0) {
      if (legacy) return null; // RFC 3489 has 420 too, but its clients' requests never need it here
      const listed = unknown.slice(0, MAX_UNKNOWN_LISTED);
      // The reason phrase only when it fits.
      const full = HEADER_LENGTH + attributeSize(4 + REASON_420.length) + attributeSize(2 * listed.length);
      stats.errorResponses++;
      return buildBindingError(txid, 420, fit && full > reqLen ? '' : REASON_420, { unknownAttributes: listed });
    }
    const addrSize = attributeSize(4 + addr.length);
    let size = HEADER_LENGTH + addrSize;
    const budget = fit ? Math.max(reqLen, size) : Infinity;
    const take = (n: number): boolean => (size + n <= budget ? ((size += n), true) : false);
    stats.responses++;
    if (legacy) {
      return buildBindingSuccess(txid, addr, port, {
        cookie,
        xorMappedAddress: false,
        software: softwareSize > 0 && take(softwareSize) ? software : undefined,
      });
    }
    const fpFirst = req.fingerprint && take(8);
    const mapped = take(addrSize);
    const sw = softwareSize > 0 && take(softwareSize);
    const fp = fpFirst || take(8);
    return buildBindingSuccess(txid, addr, port, { mappedAddress: mapped, software: sw ? software : undefined, fingerprint: fp });
  };

  const onMessage = (sock: Socket, msg: Buffer, rinfo: { address: string; port: number }): void => {
    try {
      // Quick check before parsing: the RFC 3489 form has no cookie, so no looksLikeStun here.
      if (msg.length < HEADER_LENGTH || (msg[0]! & 0xc0) !== 0 || HEADER_LENGTH + msg.readUInt16BE(2) !== msg.length) {
        stats.ignored++;
        return;
      }
      let req: StunMessage;
      try {
        req = parseStun(msg, { rfc3489: true });
      } catch {
        stats.malformed++;
        return;
      }
      if (req.method !== BINDING || req.class !== 'request') {
        stats.ignored++;
        return;
      }
      stats.requests++;
      const addr = sourceAddress(rinfo.address);
      if (!addr) {
        stats.ignored++;
        return;
      }
      if (!allowed(rinfo.address)) {
        stats.rateLimited++;
        return;
      }
      let out: Uint8Array | null;
      try {
        out = answer(req, msg.length, addr, rinfo.port);
      } catch {
        stats.malformed++; // a malformed CHANGE-REQUEST
        return;
      }
      if (!out) {
        stats.ignored++;
        return;
      }
      opts.onBinding?.({ address: rinfo.address, port: rinfo.port });
      sock.send(out, rinfo.port, rinfo.address, (err) => {
        if (err) {
          stats.sendErrors++;
          log('debug', `stun: send to ${rinfo.address}:${rinfo.port} failed: ${err.message}`);
        }
      });
    } catch (e) {
      // Never let one datagram take the process down.
      log('warn', `stun: dropped a datagram from ${rinfo.address}:${rinfo.port}: ${(e as Error).message}`);
    }
  };

  const sockets: Socket[] = [];
  const addresses: StunListenAddress[] = [];
  const bindAll = async (first: number): Promise<void> => {
    let port = first;
    for (const h of hosts) {
      const v6 = isIP(h) === 6;
      const s = createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 && anyV4 });
      try {
        await bindSocket(s, port, h);
      } catch (e) {
        s.close();
        if (!explicit && v6 && (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
          log('info', `stun: IPv6 unavailable on port ${port} (${(e as Error).message}); IPv4 only`);
          continue;
        }
        throw e;
      }
      const a = s.address();
      port = a.port;
      sockets.push(s);
      addresses.push({ address: a.address, family: v6 ? 6 : 4, port: a.port });
      s.on('message', (msg, rinfo) => onMessage(s, msg, rinfo));
      s.on('error', (err) => log('warn', `stun: socket ${a.address}:${a.port}: ${err.message}`));
    }
  };
  // Port 0 with several hosts: the free port picked for the first may be taken on another.
  const tries = opts.port === 0 && hosts.length > 1 ? 8 : 1;
  for (let attempt = 1; ; attempt++) {
    try {
      await bindAll(opts.port ?? 3478);
      break;
    } catch (e) {
      for (const s of sockets.splice(0)) s.close();
      addresses.length = 0;
      if (attempt >= tries || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    }
  }
  if (addresses.length === 0) throw new Error('startStunServer: no socket could be bound');
  for (const a of addresses) log('info', `stun: listening on udp ${a.family === 6 ? `[${a.address}]` : a.address}:${a.port}`);

  let closed: Promise<void> | undefined;
  return {
    address: addresses[0]!.address,
    port: addresses[0]!.port,
    addresses,
    stats: () => ({ ...stats }),
    close: () =>
      (closed ??= Promise.all(
        sockets.map((s) => new Promise<void>((resolve) => {
          try {
            s.close(() => resolve());
          } catch {
            resolve();
          }
        })),
      ).then(() => buckets.clear())),
  };
}
