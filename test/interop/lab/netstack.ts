/**
 * The setup every TCP/IP-stack interop test shares: Pierce (`pierce wg up` with `--forward`,
 * `--socks5`, `--listen`) in ns A, wireguard-go and the kernel's TCP/IP stack in ns B.
 *
 *   ns A                                         ns B
 *   pierce wg up  10.99.0.1 (userspace stack)    wireguard-go 10.99.0.2 + kernel TCP/UDP/ICMP
 *     UDP 51820 ───────── veth (or a relay) ──── UDP 51821
 *     127.0.0.1:LPORT ─forward─► 10.99.0.2:PORT  (sshd, iperf3 -s, http server …)
 *     10.99.0.1:PORT ◄─listen── kernel clients in B
 *
 * With PIERCE_NETSTACK_CONTROL=kernel, side A is instead wireguard-go (kernel TCP/IP) plus
 * lab/tcp-gateway.mjs, which takes the same options and prints the same lines: the whole suite
 * then runs without Pierce, proving the lab, the tools and the test logic. Test names say which.
 *
 * The pierce command is `node gateway/bin/pierce.mjs`, or $PIERCE_CLI (split on spaces) if set.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { NamespacePair } from './netns.ts';
import { spawnIn, waitFor, type ChildHandle } from './proc.ts';
import { formatWgQuick, genKeyPair, startWireguardGo, writeTempFile, type KeyPair, type WireguardGo } from './wireguard-go.ts';

export const PIERCE_MJS = fileURLToPath(new URL('../../../gateway/bin/pierce.mjs', import.meta.url));
export const TCP_GATEWAY_MJS = fileURLToPath(new URL('./tcp-gateway.mjs', import.meta.url));

/** Tunnel addresses: A (Pierce) and B (wireguard-go). */
export const TUN = { a4: '10.99.0.1', a6: 'fd99::1', b4: '10.99.0.2', b6: 'fd99::2' } as const;
export const A_UDP_PORT = 51820;
export const B_UDP_PORT = 51821;

export type SideAKind = 'pierce' | 'kernel';
export const SIDE_A_ENV = 'PIERCE_NETSTACK_CONTROL';

/** 'kernel' when $PIERCE_NETSTACK_CONTROL=kernel, else 'pierce'. */
export function sideAKind(): SideAKind {
  return process.env[SIDE_A_ENV]?.trim() === 'kernel' ? 'kernel' : 'pierce';
}

/** A label for describe() names: which implementation side A is. */
export function sideALabel(kind: SideAKind = sideAKind()): string {
  return kind === 'pierce' ? 'pierce' : 'KERNEL STAND-IN (wireguard-go + tcp-gateway.mjs, no pierce)';
}

/** Starts the pierce CLI in `ns` (`node gateway/bin/pierce.mjs …` or $PIERCE_CLI …). */
export function spawnPierce(ns: string, args: readonly string[], name = `pierce ${args.slice(0, 2).join(' ')}`): ChildHandle {
  const override = process.env.PIERCE_CLI?.trim();
  if (override) {
    const [cmd, ...pre] = override.split(/\s+/);
    return spawnIn(ns, cmd!, [...pre, ...args], { name });
  }
  if (!existsSync(PIERCE_MJS)) {
    throw new Error(`${PIERCE_MJS} does not exist: the pierce CLI is needed for these tests (or set PIERCE_CLI)`);
  }
  return spawnIn(ns, process.execPath, [PIERCE_MJS, ...args], { name });
}

export interface TcpOptions {
  /** `--forward [BIND:]LPORT=IP:PORT`, repeatable. */
  forward?: string[];
  /** `--socks5 [BIND:]PORT`, repeatable. */
  socks5?: string[];
  /** `--listen PORT=HOST:PORT`, repeatable. */
  listen?: string[];
}

export interface TunnelOptions extends TcpOptions {
  pair: NamespacePair;
  kind?: SideAKind;
  /** Where side A sends its WireGuard packets; default wireguard-go B's underlay IPv4 endpoint. */
  endpointForA?: string;
  /** Configure wireguard-go B with A's endpoint (so B can initiate too); default true. */
  bKnowsA?: boolean;
  /** Extra arguments for `pierce wg up`. */
  extraArgs?: string[];
  /** Time for side A to print all its ready lines; default 30 s. */
  readyTimeoutMs?: number;
}

export interface Tunnel {
  kind: SideAKind;
  /** `pierce wg up`, or (kernel) tcp-gateway.mjs. */
  sideA: ChildHandle;
  /** Kernel stand-in only: wireguard-go in A. */
  wgA?: WireguardGo;
  wgB: WireguardGo;
  aKeys: KeyPair;
  /** A's WireGuard UDP port. */
  udpPort: number;
  /** Local ports, in the order of the options. */
  forwardPorts: number[];
  socksPorts: number[];
  /** Ports on A's tunnel address. */
  listenPorts: number[];
  /** Side A's and wireguard-go B's output, for assertion messages. */
  output(): string;
  stop(): Promise<void>;
}

const LINE = {
  udp: /listening on udp port (\d+)/,
  forward: /forwarding tcp \S+:(\d+) -> /,
  socks: /socks5 proxy on \S+:(\d+)/,
  listen: /tunnel tcp port (\d+) -> /,
} as const;

/** The port an option asks for (0 = any): `[BIND:]PORT[=…]` → PORT. */
function requestedPort(spec: string): number {
  const left = spec.split('=')[0]!;
  const m = left.match(/(\d+)$/);
  if (!m) throw new Error(`cannot find a port in option value ${JSON.stringify(spec)}`);
  return Number(m[1]);
}

/** Waits until `proc` printed one line matching `re` per spec; returns the ports in spec order. */
async function portsFromLines(proc: ChildHandle, re: RegExp, specs: readonly string[], timeoutMs: number, what: string): Promise<number[]> {
  if (specs.length === 0) return [];
  const requested = specs.map(requestedPort);
  return waitFor(`${proc.name} to print ${specs.length} ${what} line(s) for ${specs.join(', ')}`, timeoutMs, () => {
    if (proc.exited) throw new Error(`${proc.name} exited:\n${proc.output()}`);
    const printed = proc
      .stderrLines()
      .map((l) => l.match(re))
      .filter((m): m is RegExpMatchArray => m !== null)
      .map((m) => Number(m[1]));
    if (printed.length < specs.length) return undefined;
    const left = [...printed];
    const ports: number[] = [];
    for (const r of requested) {
      const i = r === 0 ? 0 : left.indexOf(r);
      if (i < 0 || i >= left.length) return undefined;
      ports.push(left.splice(i, 1)[0]!);
    }
    return ports;
  }, 50);
}

function tail(text: string, lines: number): string {
  const all = text.split('\n');
  return all.length <= lines ? text : [`… (${all.length - lines} earlier lines)`, ...all.slice(-lines)].join('\n');
}

function optionArgs(o: TcpOptions): string[] {
  return [
    ...(o.forward ?? []).flatMap((f) => ['--forward', f]),
    ...(o.socks5 ?? []).flatMap((s) => ['--socks5', s]),
    ...(o.listen ?? []).flatMap((l) => ['--listen', l]),
  ];
}

/**
 * wireguard-go in B (UDP 51821, 10.99.0.2/24 fd99::2/64), then side A (UDP 51820,
 * 10.99.0.1/24 fd99::1/64) with the TCP options; resolves once side A printed every ready line.
 */
export async function startTunnel(o: TunnelOptions): Promise<Tunnel> {
  const kind = o.kind ?? sideAKind();
  const { pair } = o;
  const A = pair.a.name;
  const aKeys = await genKeyPair();
  const wgB = await startWireguardGo({
    ns: pair.b.name,
    listenPort: B_UDP_PORT,
    addresses: [`${TUN.b4}/24`, `${TUN.b6}/64`],
    peers: [
      {
        publicKey: aKeys.publicKey,
        endpoint: (o.bKnowsA ?? true) ? `${pair.a.ipv4}:${A_UDP_PORT}` : undefined,
        allowedIPs: [`${TUN.a4}/32`, `${TUN.a6}/128`],
      },
    ],
  });
  const peerB = {
    publicKey: wgB.publicKey,
    endpoint: o.endpointForA ?? `${pair.b.ipv4}:${wgB.listenPort}`,
    allowedIPs: ['10.99.0.0/24', 'fd99::/64'],
  };
  const timeoutMs = o.readyTimeoutMs ?? 30_000;
  let sideA: ChildHandle;
  let wgA: WireguardGo | undefined;
  let udpPort: number;
  if (kind === 'pierce') {
    const conf = writeTempFile(
      'pierce.conf',
      formatWgQuick({ privateKey: aKeys.privateKey, addresses: [`${TUN.a4}/24`, `${TUN.a6}/64`], listenPort: A_UDP_PORT, peers: [peerB] }),
    );
    sideA = spawnPierce(A, ['wg', 'up', '--config', conf, ...optionArgs(o), ...(o.extraArgs ?? [])]);
    udpPort = Number((await sideA.waitForLine(LINE.udp, timeoutMs))[1]);
  } else {
    wgA = await startWireguardGo({
      ns: A,
      privateKey: aKeys.privateKey,
      listenPort: A_UDP_PORT,
      addresses: [`${TUN.a4}/24`, `${TUN.a6}/64`],
      peers: [peerB],
    });
    udpPort = wgA.listenPort;
    sideA = spawnIn(A, process.execPath, [TCP_GATEWAY_MJS, '--tunnel-ip', TUN.a4, ...optionArgs(o)], { name: `tcp-gateway@${A}` });
    await sideA.waitForLine(/tcp-gateway ready/, timeoutMs);
  }
  const forwardPorts = await portsFromLines(sideA, LINE.forward, o.forward ?? [], timeoutMs, 'forwarding tcp');
  const socksPorts = await portsFromLines(sideA, LINE.socks, o.socks5 ?? [], timeoutMs, 'socks5 proxy');
  const listenPorts = await portsFromLines(sideA, LINE.listen, o.listen ?? [], timeoutMs, 'tunnel tcp port');
  const wgAProc = wgA?.process;
  return {
    kind,
    sideA,
    wgA,
    wgB,
    aKeys,
    udpPort,
    forwardPorts,
    socksPorts,
    listenPorts,
    output: () => [sideA, wgAProc, wgB.process].map((c) => (c ? tail(c.output(), 60) : '')).filter((s) => s !== '').join('\n'),
    async stop() {
      await sideA.kill();
      await wgA?.stop();
      await wgB.stop();
    },
  };
}
