/**
 * wg-quick style configuration files (wg(8) "CONFIGURATION FILE FORMAT", wg-quick(8)). Pure: the
 * caller reads the file and passes its text and name.
 *
 *   # comment (from '#' to the end of the line)
 *   [Interface]
 *   PrivateKey = <base64>                  required, once
 *   Address = 10.0.0.1/24, fd00::1/64      comma list, repeatable; /32 or /128 when no "/bits"
 *   ListenPort = 51820                     0..65535, once
 *   DNS = … MTU = … Table = … PreUp = …    wg-quick settings: ignored with a warning
 *
 *   [Peer]                                 repeatable
 *   PublicKey = <base64>                   required, once; unique across peers
 *   PresharedKey = <base64>                once
 *   Endpoint = host:port | [v6]:port       port 1..65535, once
 *   AllowedIPs = 0.0.0.0/0, ::/0           comma list, repeatable; host bits are cleared
 *   PersistentKeepalive = off | 0..65535   seconds, once; 0 and "off" mean none
 *
 * Section names and keys are case-insensitive, as in wg-quick; whitespace around keys, values
 * and list items is ignored; "\r\n" line ends and a leading byte-order mark are accepted.
 * Unknown keys are ignored with a warning "file:line: Key: …" in `warnings`.
 *
 * Errors throw `ConfigError` whose message reads "file:line: Key: what is wrong" and which
 * carries `file`, `line` (1-based; 0 for "the whole file") and `key`. Codes:
 *   CONFIG_PARSE      a line that is not a section header or "Key = Value", a key outside a section
 *   CONFIG_VALUE      a value that does not parse (key, address, port, endpoint, keepalive)
 *   CONFIG_MISSING    no [Interface], no PrivateKey, a peer without PublicKey
 *   CONFIG_DUPLICATE  a second [Interface], a key given twice in a section, two peers with one key
 */
import { PierceError } from '../errors.ts';
import { NodePrivate, NodePublic, PresharedKey } from '../key/keys.ts';
import { formatIP, formatPrefix, maskPrefix, parsePrefix, tryParseIP, type Prefix } from '../netstack/addr.ts';

/** A configuration file that cannot be used; the message names file, line and key. */
export class ConfigError extends PierceError {
  readonly file: string;
  readonly line: number;
  readonly key: string;
  constructor(code: string, file: string, line: number, key: string, detail: string, options?: { cause?: unknown }) {
    super(code, `${file}${line > 0 ? `:${line}` : ''}: ${key}: ${detail}`, options);
    this.file = file;
    this.line = line;
    this.key = key;
  }
}

export interface WgEndpoint {
  /** A hostname as written, or an IP literal in canonical form (no brackets). */
  host: string;
  port: number;
}

export interface WgInterface {
  privateKey: NodePrivate;
  /** Interface addresses, host bits kept (10.0.0.1/24). */
  addresses: Prefix[];
  listenPort?: number;
}

export interface WgPeer {
  publicKey: NodePublic;
  presharedKey?: PresharedKey;
  endpoint?: WgEndpoint;
  /** Routed prefixes, host bits cleared. */
  allowedIPs: Prefix[];
  /** Seconds; absent when off. */
  persistentKeepalive?: number;
}

export interface WgConfig {
  interface: WgInterface;
  peers: WgPeer[];
  warnings: string[];
}

/** wg-quick(8) settings that only configure the host (or wg's fwmark); Pierce ignores them. */
const IGNORED_INTERFACE_KEYS = new Map(
  ['DNS', 'MTU', 'Table', 'PreUp', 'PostUp', 'PreDown', 'PostDown', 'SaveConfig', 'FwMark'].map((k) => [k.toLowerCase(), k]),
);
const INTERFACE_KEYS = new Map(['PrivateKey', 'Address', 'ListenPort'].map((k) => [k.toLowerCase(), k]));
const PEER_KEYS = new Map(
  ['PublicKey', 'PresharedKey', 'Endpoint', 'AllowedIPs', 'PersistentKeepalive'].map((k) => [k.toLowerCase(), k]),
);

interface Ctx {
  file: string;
  line: number;
  key: string;
}

function valueError(c: Ctx, detail: string, cause?: unknown): ConfigError {
  return new ConfigError('CONFIG_VALUE', c.file, c.line, c.key, detail, cause === undefined ? undefined : { cause });
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function parseKey<K>(c: Ctx, value: string, parse: (t: string) => K): K {
  try {
    return parse(value);
  } catch (e) {
    if (e instanceof PierceError) throw valueError(c, message(e), e);
    throw e;
  }
}

/** Decimal 0..max without sign or spaces. */
function parseUint(c: Ctx, value: string, min: number, max: number, what: string): number {
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) < min || Number(value) > max) {
    throw valueError(c, `${JSON.stringify(short(value))} is not a ${what} (${min}..${max})`);
  }
  return Number(value);
}

function short(s: string): string {
  return s.length > 60 ? s.slice(0, 60) + '…' : s;
}

function parseList(c: Ctx, value: string, mask: boolean): Prefix[] {
  if (value === '') return [];
  return value.split(',').map((item) => {
    const t = item.trim();
    if (t === '') throw valueError(c, 'empty item in comma-separated list');
    try {
      const p = parsePrefix(t);
      return mask ? maskPrefix(p) : p;
    } catch (e) {
      if (e instanceof PierceError) throw valueError(c, `not an IP prefix: ${message(e)}`, e);
      throw e;
    }
  });
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** "host:port" or "[v6]:port" (wg(8) Endpoint). */
export function parseEndpoint(text: string): WgEndpoint | null {
  let host: string;
  let port: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return null;
    const ip = tryParseIP(text.slice(1, close));
    if (!ip || ip.length !== 16) return null;
    host = formatIP(ip);
    port = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return null;
    host = text.slice(0, colon);
    port = text.slice(colon + 1);
    if (host.includes(':')) return null; // IPv6 needs brackets
    if (/^[0-9.]+$/.test(host)) {
      const ip = tryParseIP(host);
      if (!ip) return null;
      host = formatIP(ip);
    } else if (!HOSTNAME.test(host)) {
      return null;
    }
  }
  if (!/^[0-9]{1,5}$/.test(port)) return null;
  const n = Number(port);
  if (n < 1 || n > 65535) return null;
  return { host, port: n };
}

interface Section<T> {
  line: number;
  seen: Set<string>;
  fields: Partial<T>;
}

/** Parses a wg-quick configuration; `file` names it in errors and warnings. Throws ConfigError. */
export function parseWgConfig(text: string, file: string): WgConfig {
  if (typeof text !== 'string') throw new ConfigError('CONFIG_PARSE', file, 0, '[file]', 'not text');
  const warnings: string[] = [];
  let iface: Section<WgInterface> | null = null;
  const peers: Section<WgPeer>[] = [];
  let current: Section<WgInterface> | Section<WgPeer> | null = null;
  let kind: 'interface' | 'peer' | null = null;
  const peerKeyLines = new Map<string, number>();

  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    let raw = lines[i]!;
    if (i === 0 && raw.charCodeAt(0) === 0xfeff) raw = raw.slice(1);
    const hash = raw.indexOf('#');
    const line = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (line === '') continue;

    if (line.startsWith('[')) {
      const m = /^\[\s*([A-Za-z]+)\s*\]$/.exec(line);
      const name = m?.[1]!.toLowerCase();
      if (name === 'interface') {
        if (iface) {
          throw new ConfigError('CONFIG_DUPLICATE', file, lineNo, '[Interface]', `second [Interface] section (the first is on line ${iface.line})`);
        }
        iface = { line: lineNo, seen: new Set(), fields: { addresses: [] } };
        current = iface;
        kind = 'interface';
      } else if (name === 'peer') {
        const p: Section<WgPeer> = { line: lineNo, seen: new Set(), fields: { allowedIPs: [] } };
        peers.push(p);
        current = p;
        kind = 'peer';
      } else {
        throw new ConfigError('CONFIG_PARSE', file, lineNo, short(line), 'unknown section; expected [Interface] or [Peer]');
      }
      continue;
    }

    const eq = line.indexOf('=');
    const rawKey = (eq < 0 ? line : line.slice(0, eq)).trim();
    if (eq < 0 || rawKey === '') {
      throw new ConfigError('CONFIG_PARSE', file, lineNo, short(rawKey || line), 'expected "Key = Value" or a [Section] header');
    }
    const value = line.slice(eq + 1).trim();
    const lower = rawKey.toLowerCase();
    if (current === null || kind === null) {
      throw new ConfigError('CONFIG_PARSE', file, lineNo, short(rawKey), 'key outside of an [Interface] or [Peer] section');
    }
    const known = (kind === 'interface' ? INTERFACE_KEYS : PEER_KEYS).get(lower);
    if (known === undefined) {
      const ignored = kind === 'interface' ? IGNORED_INTERFACE_KEYS.get(lower) : undefined;
      warnings.push(
        ignored !== undefined
          ? `${file}:${lineNo}: ${ignored}: wg-quick setting ignored by Pierce`
          : `${file}:${lineNo}: ${short(rawKey)}: unknown key in [${kind === 'interface' ? 'Interface' : 'Peer'}], ignored`,
      );
      continue;
    }
    const c: Ctx = { file, line: lineNo, key: known };
    const repeatable = known === 'Address' || known === 'AllowedIPs';
    if (!repeatable && current.seen.has(known)) {
      throw new ConfigError('CONFIG_DUPLICATE', file, lineNo, known, `given twice in the same [${kind === 'interface' ? 'Interface' : 'Peer'}] section`);
    }
    current.seen.add(known);

    if (kind === 'interface') {
      const f = (current as Section<WgInterface>).fields;
      switch (known) {
        case 'PrivateKey':
          f.privateKey = parseKey(c, value, NodePrivate.parse);
          break;
        case 'Address':
          f.addresses!.push(...parseList(c, value, false));
          break;
        case 'ListenPort':
          f.listenPort = parseUint(c, value, 0, 65535, 'port');
          break;
      }
    } else {
      const f = (current as Section<WgPeer>).fields;
      switch (known) {
        case 'PublicKey': {
          const k = parseKey(c, value, NodePublic.parse);
          const prev = peerKeyLines.get(k.toBase64());
          if (prev !== undefined) {
            throw new ConfigError('CONFIG_DUPLICATE', file, lineNo, known, `peer ${k.short()} is already defined on line ${prev}`);
          }
          peerKeyLines.set(k.toBase64(), lineNo);
          f.publicKey = k;
          break;
        }
        case 'PresharedKey':
          f.presharedKey = parseKey(c, value, PresharedKey.parse);
          break;
        case 'Endpoint': {
          const ep = parseEndpoint(value);
          if (!ep) throw valueError(c, `${JSON.stringify(short(value))} is not host:port or [IPv6]:port with a port in 1..65535`);
          f.endpoint = ep;
          break;
        }
        case 'AllowedIPs':
          f.allowedIPs!.push(...parseList(c, value, true));
          break;
        case 'PersistentKeepalive': {
          const n = value.toLowerCase() === 'off' ? 0 : parseUint(c, value, 0, 65535, 'number of seconds or "off"');
          if (n > 0) f.persistentKeepalive = n;
          break;
        }
      }
    }
  }

  if (!iface) throw new ConfigError('CONFIG_MISSING', file, 0, '[Interface]', 'no [Interface] section');
  const privateKey = iface.fields.privateKey;
  if (!privateKey) throw new ConfigError('CONFIG_MISSING', file, iface.line, 'PrivateKey', 'the [Interface] section has no PrivateKey');
  const out: WgConfig = {
    interface: { privateKey, addresses: iface.fields.addresses ?? [] },
    peers: [],
    warnings,
  };
  if (iface.fields.listenPort !== undefined) out.interface.listenPort = iface.fields.listenPort;
  for (const p of peers) {
    const f = p.fields;
    if (!f.publicKey) throw new ConfigError('CONFIG_MISSING', file, p.line, 'PublicKey', 'this [Peer] section has no PublicKey');
    const peer: WgPeer = { publicKey: f.publicKey, allowedIPs: f.allowedIPs ?? [] };
    if (f.presharedKey) peer.presharedKey = f.presharedKey;
    if (f.endpoint) peer.endpoint = f.endpoint;
    if (f.persistentKeepalive !== undefined) peer.persistentKeepalive = f.persistentKeepalive;
    out.peers.push(peer);
  }
  return out;
}

/** Writes a configuration back in wg-quick form (keys in base64; warnings are not written). */
export function formatWgConfig(cfg: Omit<WgConfig, 'warnings'>): string {
  const lines = ['[Interface]', `PrivateKey = ${cfg.interface.privateKey.toBase64()}`];
  if (cfg.interface.addresses.length > 0) lines.push(`Address = ${cfg.interface.addresses.map(formatPrefix).join(', ')}`);
  if (cfg.interface.listenPort !== undefined) lines.push(`ListenPort = ${cfg.interface.listenPort}`);
  for (const p of cfg.peers) {
    lines.push('', '[Peer]', `PublicKey = ${p.publicKey.toBase64()}`);
    if (p.presharedKey) lines.push(`PresharedKey = ${p.presharedKey.toBase64()}`);
    if (p.endpoint) {
      const h = p.endpoint.host.includes(':') ? `[${p.endpoint.host}]` : p.endpoint.host;
      lines.push(`Endpoint = ${h}:${p.endpoint.port}`);
    }
    if (p.allowedIPs.length > 0) lines.push(`AllowedIPs = ${p.allowedIPs.map(formatPrefix).join(', ')}`);
    if (p.persistentKeepalive !== undefined) lines.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  }
  return lines.join('\n') + '\n';
}
