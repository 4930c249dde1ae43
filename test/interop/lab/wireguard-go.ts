/**
 * WireGuard with the real tools: keys from `wg`, wg-quick / `wg setconf` files, `wg show dump`
 * parsing, and wireguard-go peers running inside a namespace.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WG_SOCKET_DIR, newIfname, nextSerial } from './env.ts';
import { execIn, run, spawnIn, waitFor, type ChildHandle, type ExecResult } from './proc.ts';
import { labTempDir } from './registry.ts';

// ---------------------------------------------------------------------------------------------
// Keys (made by the real `wg` tool)

export interface KeyPair {
  privateKey: string;
  publicKey: string;
}

export async function genKey(): Promise<string> {
  return (await run('wg', ['genkey'])).stdout.trim();
}

export async function pubKey(privateKey: string): Promise<string> {
  return (await run('wg', ['pubkey'], { input: `${privateKey}\n` })).stdout.trim();
}

export async function genKeyPair(): Promise<KeyPair> {
  const privateKey = await genKey();
  return { privateKey, publicKey: await pubKey(privateKey) };
}

export async function genPsk(): Promise<string> {
  return (await run('wg', ['genpsk'])).stdout.trim();
}

// ---------------------------------------------------------------------------------------------
// Temp files and wg-quick config

/** Writes `content` to a file (mode 0600) in the lab's temp dir; returns its path. */
export function writeTempFile(name: string, content: string): string {
  const path = join(labTempDir(), `${nextSerial()}-${name}`);
  writeFileSync(path, content, { mode: 0o600 });
  return path;
}

export interface WgPeer {
  publicKey: string;
  presharedKey?: string;
  /** host:port, IPv6 in brackets. */
  endpoint?: string;
  allowedIPs: string[];
  persistentKeepalive?: number;
}

export interface WgQuickConfig {
  privateKey: string;
  /** Tunnel addresses with prefix length, e.g. ['10.99.0.1/24', 'fd99::1/64']. */
  addresses?: string[];
  listenPort?: number;
  peers: WgPeer[];
}

/** wg-quick syntax ([Interface] with Address); `wg setconf` syntax when `addresses` is absent. */
export function formatWgQuick(c: WgQuickConfig): string {
  const out = ['[Interface]', `PrivateKey = ${c.privateKey}`];
  if (c.addresses && c.addresses.length > 0) out.push(`Address = ${c.addresses.join(', ')}`);
  if (c.listenPort !== undefined) out.push(`ListenPort = ${c.listenPort}`);
  for (const p of c.peers) {
    out.push('', '[Peer]', `PublicKey = ${p.publicKey}`);
    if (p.presharedKey) out.push(`PresharedKey = ${p.presharedKey}`);
    if (p.endpoint) out.push(`Endpoint = ${p.endpoint}`);
    out.push(`AllowedIPs = ${p.allowedIPs.join(', ')}`);
    if (p.persistentKeepalive) out.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  }
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------------
// wireguard-go

export interface WgPeerStatus {
  publicKey: string;
  presharedKey: string | null;
  endpoint: string | null;
  allowedIPs: string[];
  /** Unix seconds of the latest handshake; 0 = never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepalive: number | null;
}

export interface WgStatus {
  privateKey: string;
  publicKey: string;
  listenPort: number;
  fwmark: string;
  peers: WgPeerStatus[];
}

/** Parses `wg show IF dump` (tab separated; first line the interface, then one per peer). */
export function parseWgDump(text: string): WgStatus {
  const rows = text
    .trim()
    .split('\n')
    .map((l) => l.split('\t'));
  const iface = rows[0];
  if (!iface || iface.length < 4) throw new Error(`unexpected wg dump: ${JSON.stringify(text)}`);
  const none = (s: string | undefined): string | null => (s === undefined || s === '(none)' || s === 'off' ? null : s);
  return {
    privateKey: iface[0]!,
    publicKey: iface[1]!,
    listenPort: Number(iface[2]),
    fwmark: iface[3]!,
    peers: rows.slice(1).map((r) => {
      if (r.length < 8) throw new Error(`unexpected wg dump peer line: ${JSON.stringify(r.join('\t'))}`);
      return {
        publicKey: r[0]!,
        presharedKey: none(r[1]),
        endpoint: none(r[2]),
        allowedIPs: r[3] === '(none)' ? [] : r[3]!.split(','),
        latestHandshake: Number(r[4]),
        rxBytes: Number(r[5]),
        txBytes: Number(r[6]),
        persistentKeepalive: none(r[7]) === null ? null : Number(r[7]),
      };
    }),
  };
}

export interface WireguardGoOptions {
  ns: string;
  /** Defaults to `newIfname()`. */
  ifname?: string;
  /** Defaults to a fresh `wg genkey`. */
  privateKey?: string;
  /** 0 or absent: wireguard-go picks one (read back into `listenPort`). */
  listenPort?: number;
  peers?: WgPeer[];
  /** Tunnel addresses with prefix, e.g. ['10.99.0.2/24', 'fd99::2/64']. */
  addresses?: string[];
}

export interface WireguardGo {
  ns: string;
  ifname: string;
  privateKey: string;
  publicKey: string;
  /** The UDP port wireguard-go actually listens on. */
  listenPort: number;
  process: ChildHandle;
  /** Adds or updates a peer (`wg set IF peer …`). */
  setPeer(peer: WgPeer): Promise<void>;
  removePeer(publicKey: string): Promise<void>;
  show(): Promise<WgStatus>;
  peer(publicKey: string): Promise<WgPeerStatus | undefined>;
  /** Waits until the peer's latest handshake is > `newerThan` (default 0); returns it. */
  waitForHandshake(publicKey: string, opts?: { newerThan?: number; timeoutMs?: number }): Promise<number>;
  stop(): Promise<void>;
}

/** Starts wireguard-go in `ns` (foreground child), configures it with `wg setconf`, brings it up. */
export async function startWireguardGo(opts: WireguardGoOptions): Promise<WireguardGo> {
  const ns = opts.ns;
  const ifname = opts.ifname ?? newIfname();
  if (ifname.length > 15) throw new Error(`interface name too long (max 15): ${ifname}`);
  const privateKey = opts.privateKey ?? (await genKey());
  const publicKey = await pubKey(privateKey);
  const sock = join(WG_SOCKET_DIR, `${ifname}.sock`);
  const proc = spawnIn(ns, 'wireguard-go', [ifname], {
    name: `wireguard-go ${ifname}@${ns}`,
    env: { WG_PROCESS_FOREGROUND: '1', LOG_LEVEL: 'verbose' },
  });
  const wg = (...args: string[]): Promise<ExecResult> => execIn(ns, 'wg', args);
  try {
    await waitFor(`${sock}`, 10_000, () => {
      if (proc.exited) throw new Error(`wireguard-go exited:\n${proc.output()}`);
      return existsSync(sock) ? true : undefined;
    }, 25);
    const conf = writeTempFile(`${ifname}.conf`, formatWgQuick({ privateKey, listenPort: opts.listenPort || undefined, peers: opts.peers ?? [] }));
    await wg('setconf', ifname, conf);
    for (const addr of opts.addresses ?? []) {
      await execIn(ns, 'ip', addr.includes(':') ? ['-6', 'addr', 'add', addr, 'dev', ifname, 'nodad'] : ['addr', 'add', addr, 'dev', ifname]);
    }
    await execIn(ns, 'ip', ['link', 'set', ifname, 'up']);
  } catch (e) {
    await proc.kill();
    throw new Error(`starting wireguard-go ${ifname} in ${ns}: ${(e as Error).message}\n${proc.output()}`);
  }

  const show = async (): Promise<WgStatus> => parseWgDump((await wg('show', ifname, 'dump')).stdout);
  const handle: WireguardGo = {
    ns,
    ifname,
    privateKey,
    publicKey,
    listenPort: (await show()).listenPort,
    process: proc,
    async setPeer(p) {
      const args = ['set', ifname, 'peer', p.publicKey];
      if (p.presharedKey) args.push('preshared-key', writeTempFile('psk', `${p.presharedKey}\n`));
      if (p.endpoint) args.push('endpoint', p.endpoint);
      args.push('allowed-ips', p.allowedIPs.join(','));
      if (p.persistentKeepalive !== undefined) args.push('persistent-keepalive', p.persistentKeepalive ? String(p.persistentKeepalive) : 'off');
      await wg(...args);
    },
    async removePeer(pub) {
      await wg('set', ifname, 'peer', pub, 'remove');
    },
    show,
    async peer(pub) {
      return (await show()).peers.find((p) => p.publicKey === pub);
    },
    async waitForHandshake(pub, o = {}) {
      const newerThan = o.newerThan ?? 0;
      return waitFor(`handshake with ${pub} on ${ifname} newer than ${newerThan}`, o.timeoutMs ?? 10_000, async () => {
        const t = (await handle.peer(pub))?.latestHandshake ?? 0;
        return t > newerThan ? t : undefined;
      });
    },
    async stop() {
      await proc.kill();
      removeWgSocket(ifname);
    },
  };
  return handle;
}

function removeWgSocket(ifname: string): void {
  rmSync(join(WG_SOCKET_DIR, `${ifname}.sock`), { force: true });
}
