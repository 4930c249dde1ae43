/**
 * A STUN Binding client over node:dgram (RFC 8489 §6.2.1): sends a Binding request and returns
 * the server-reflexive address from the response. Used by tests and by endpoint discovery.
 *
 * Retransmission (RFC 8489 §6.2.1): the request is sent at 0, RTO, 3·RTO, 7·RTO, … (the
 * interval doubles each time), `maxTransmits` (Rc, default 7) times in all, then the client
 * waits `lastWait` (Rm·RTO, Rm = 16) for an answer; `timeoutMs` caps the whole exchange. With
 * the defaults (RTO 500 ms) that is 39.5 s, as in the RFC.
 *
 * Only a response from the server's address and port with our transaction ID counts; other
 * datagrams on the socket are left to its other listeners. An error response rejects with
 * StunError STUN_ERROR_RESPONSE (message "<code> <reason>"); no answer rejects with STUN_TIMEOUT.
 */
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { formatIP } from '../../../src/netstack/addr.ts';
import {
  ATTR,
  BINDING,
  StunError,
  TRANSACTION_ID_LENGTH,
  buildBindingRequest,
  parseStun,
  readErrorCode,
  readOtherAddress,
  readReflexiveAddress,
  readResponseOrigin,
  readSoftware,
  type StunMessage,
} from '../../../src/stun/message.ts';
import { equalBytes } from '../../../src/crypto/bytes.ts';
import { sourceAddress } from './server.ts';

/** RFC 8489 §6.2.1 defaults. */
export const DEFAULT_RTO_MS = 500;
export const DEFAULT_RC = 7;
export const DEFAULT_RM = 16;

export interface StunBindingOptions {
  /** Cap on the whole exchange, ms. Default: the RFC schedule (39.5 s with the defaults). */
  timeoutMs?: number;
  /** Initial retransmission timeout, ms. Default 500. */
  rto?: number;
  /** Transmissions in all (Rc). Default 7. */
  maxTransmits?: number;
  /** SOFTWARE to send; default none. */
  software?: string;
  /** Append FINGERPRINT to the request. Default true. */
  fingerprint?: boolean;
  /** Transaction ID (12 bytes); default random. */
  transactionId?: Uint8Array;
  signal?: AbortSignal;
}

export interface StunBindingResult {
  /** The reflexive address as text ("203.0.113.7", "2001:db8::1"). */
  address: string;
  family: 4 | 6;
  port: number;
  /** Whether it came from XOR-MAPPED-ADDRESS (false: MAPPED-ADDRESS only, an RFC 3489 server). */
  xor: boolean;
  /** First transmission to answer, ms. */
  rtt: number;
  transmits: number;
  software: string | null;
  otherAddress: { address: string; port: number } | null;
  responseOrigin: { address: string; port: number } | null;
  /** The local address and port the request was sent from. */
  local: { address: string; port: number };
}

export interface StunServerAddress {
  host: string;
  port: number;
}

/**
 * Runs one Binding transaction. `from` is a bound dgram socket to use (left open), or
 * `{ host?, port? }` to bind a fresh one (closed afterwards; default any address, any port, of
 * the server's family). The third argument may be a number: `timeoutMs`.
 */
export async function stunBinding(
  from: Socket | { host?: string; port?: number },
  server: StunServerAddress,
  options: number | StunBindingOptions = {},
): Promise<StunBindingResult> {
  const opts: StunBindingOptions = typeof options === 'number' ? { timeoutMs: options } : options;
  const rto = opts.rto ?? DEFAULT_RTO_MS;
  const rc = Math.max(1, opts.maxTransmits ?? DEFAULT_RC);
  // Send times 0, rto, 3rto, …, (2^(rc-1) - 1)·rto, then wait Rm·rto after the last.
  const schedule = (2 ** (rc - 1) - 1) * rto + DEFAULT_RM * rto;
  const timeoutMs = Math.min(opts.timeoutMs ?? schedule, schedule);
  const txid = opts.transactionId ?? new Uint8Array(randomBytes(TRANSACTION_ID_LENGTH));
  if (txid.length !== TRANSACTION_ID_LENGTH) throw new StunError('STUN_ENCODE', 'transaction ID must be 12 bytes');

  const own = !isSocket(from);
  let sock: Socket;
  let serverIP: string;
  if (own) {
    const fam = from.host ? isIP(from.host) : isIP(server.host) || 4;
    serverIP = await resolve(server.host, fam === 6 ? 6 : 4);
    sock = createSocket(fam === 6 ? 'udp6' : 'udp4');
    const s = sock;
    await new Promise<void>((res, rej) => {
      const fail = (e: Error) => {
        s.close();
        rej(e);
      };
      s.once('error', fail);
      s.bind({ port: from.port ?? 0, address: from.host ?? (fam === 6 ? '::' : '0.0.0.0') }, () => {
        s.off('error', fail);
        res();
      });
    });
  } else {
    sock = from;
    const fam = sock.address().family === 'IPv6' ? 6 : 4;
    serverIP = await resolve(server.host, isIP(server.host) === 4 ? 4 : fam);
    if (fam === 6 && isIP(serverIP) === 4) serverIP = `::ffff:${serverIP}`; // dual-stack socket
  }
  const want = sourceAddress(serverIP);
  const request = buildBindingRequest(txid, { software: opts.software, fingerprint: opts.fingerprint !== false });

  try {
    return await new Promise<StunBindingResult>((resolvePromise, reject) => {
      const t0 = performance.now();
      let transmits = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = setTimeout(
        () => done(new StunError('STUN_TIMEOUT', `no STUN response from ${server.host}:${server.port} after ${transmits} tries`)),
        timeoutMs,
      );
      const onAbort = () => done(new StunError('STUN_TIMEOUT', 'STUN binding aborted'));
      const onError = (e: Error) => done(e);
      let finished = false;
      const done = (r: StunBindingResult | Error) => {
        if (finished) return;
        finished = true;
        clearTimeout(deadline);
        clearTimeout(timer);
        sock.off('message', onMessage);
        sock.off('error', onError);
        opts.signal?.removeEventListener('abort', onAbort);
        if (r instanceof Error) reject(r);
        else resolvePromise(r);
      };
      const send = () => {
        transmits++;
        sock.send(request, server.port, serverIP, (err) => {
          if (err) done(err);
        });
        if (transmits < rc) timer = setTimeout(send, rto * 2 ** (transmits - 1));
      };
      const onMessage = (msg: Buffer, rinfo: { address: string; port: number }) => {
        if (rinfo.port !== server.port) return;
        const src = sourceAddress(rinfo.address);
        if (!src || !want || !equalBytes(src, want)) return;
        let m: StunMessage;
        try {
          m = parseStun(msg);
        } catch {
          return; // not a valid STUN message: not ours
        }
        if (m.method !== BINDING || !equalBytes(m.transactionId, txid)) return;
        if (m.class === 'error') {
          const ec = safe(() => readErrorCode(m));
          done(new StunError('STUN_ERROR_RESPONSE', ec ? `${ec.code} ${ec.reason}` : 'error response without ERROR-CODE'));
          return;
        }
        if (m.class !== 'success') return;
        const mapped = safe(() => readReflexiveAddress(m));
        if (!mapped) return; // useless (or malformed) success response; keep waiting
        const other = safe(() => readOtherAddress(m));
        const origin = safe(() => readResponseOrigin(m));
        const local = sock.address();
        done({
          address: formatIP(mapped.address),
          family: mapped.family,
          port: mapped.port,
          xor: m.attributes.some((a) => a.type === ATTR.XOR_MAPPED_ADDRESS),
          rtt: performance.now() - t0,
          transmits,
          software: readSoftware(m),
          otherAddress: other && { address: formatIP(other.address), port: other.port },
          responseOrigin: origin && { address: formatIP(origin.address), port: origin.port },
          local: { address: local.address, port: local.port },
        });
      };
      sock.on('message', onMessage);
      sock.on('error', onError);
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort);
      send();
    });
  } finally {
    if (own) sock.close();
  }
}

function safe<T>(f: () => T): T | null {
  try {
    return f();
  } catch {
    return null;
  }
}

function isSocket(x: unknown): x is Socket {
  return typeof x === 'object' && x !== null && typeof (x as Socket).send === 'function' && typeof (x as Socket).address === 'function';
}

async function resolve(host: string, family: 4 | 6): Promise<string> {
  if (isIP(host)) return host;
  return (await lookup(host, { family })).address;
}
