/**
 * Network-namespace interop lab: two Linux network namespaces joined by a veth pair, real
 * wireguard-go peers, the kernel's own ICMP stack, and helpers to run programs inside.
 *
 *   ns A (<prefix>-a)                      ns B (<prefix>-b)
 *   ┌──────────────────────┐    veth      ┌──────────────────────┐
 *   │ lo                   │◄────────────►│ lo                   │
 *   │ veth0 10.200.0.1/24  │              │ veth0 10.200.0.2/24  │
 *   │       fd00:200::1/64 │              │       fd00:200::2/64 │
 *   │ (tunnel, e.g. pierce │              │ (tunnel, e.g. wg-go  │
 *   │  or wireguard-go)    │              │  10.99.0.2/24)       │
 *   └──────────────────────┘              └──────────────────────┘
 *
 * Rules the lab keeps:
 * - Traffic stays on loopback or inside namespaces made here (10.0.0.0/8, fd00::/8 only).
 * - Names are unique per process: namespaces `plab-<pid>-<run>-<n>-{a,b}`, wireguard-go
 *   interfaces `pw<pid36>-<run2><n36>` (≤ 15 chars). wireguard-go's control socket lives in
 *   /var/run/wireguard/<ifname>.sock, shared by every namespace, hence unique interface names.
 * - Everything made is tracked and removed by `cleanupAll()` (call it from afterAll); a
 *   process 'exit' handler and SIGINT/SIGTERM handlers do the same synchronously, and
 *   `cleanupStale()` removes what a crashed earlier run (whose pid is gone) left behind.
 * - Processes are ended by pid only: our children, and processes inside our namespaces.
 *
 * Needs root and: iproute2 (`ip`), wireguard-tools (`wg`), wireguard-go, iputils-ping.
 *
 * This file is the lab's public API; the code lives in lab/:
 *   env.ts           names (prefixes, run id, serial), PATH, pid helpers
 *   preflight.ts     labProblems, requireLab
 *   registry.ts      the shared registries (children, namespaces, temp dir), exit handlers,
 *                    wireguard-go socket removal, cleanupStale
 *   proc.ts          run, execIn, spawnIn (ChildHandle), sleep, waitFor
 *   netns.ts         createNamespacePair, ping, parsePingOutput
 *   star.ts          createStar: a hub namespace with a bridge and N host namespaces on it
 *                    (10.201.X.0/24, fd00:201:0:X::/64); test/interop/mesh.test.ts uses it
 *   wireguard-go.ts  wg keys, writeTempFile, formatWgQuick, parseWgDump, startWireguardGo
 *   cleanup.ts       cleanupChildren, cleanupAll
 *
 * For the TCP/IP-stack tests (netstack-*.test.ts) and test/bench/tcp-throughput.ts:
 *   tools.ts         requireTools / toolProblems for OpenSSH, iperf3, curl, nft, python3
 *   files.ts         writeRandomFile, sha256File, fileSize, tempPath
 *   sshd.ts          makeSshKeys, startSshd (sshd -D -e in a namespace), sshExec, scp
 *   users.ts         createUser / removeUser: local accounts with a password (plabu-<pid>-<n>)
 *   probe.ts         tcpProbe / udpProbe: python3 sockets (RST → refused, ICMP unreachable)
 *   relay.ts         startLossyRelay: lossy-relay.mjs (UDP loss, reordering, duplication)
 *   nft.ts           addUdpLoss: nftables `numgen random mod 100 < N drop` with counters
 *   netstack.ts      startTunnel: pierce wg up --forward/--socks5/--listen in A, wireguard-go
 *                    in B; or, with PIERCE_NETSTACK_CONTROL=kernel, the kernel stand-in
 *                    (wireguard-go + tcp-gateway.mjs) in A
 */

export { newIfname } from './lab/env.ts';
export { labProblems, requireLab } from './lab/preflight.ts';
export {
  execIn,
  run,
  sleep,
  spawnIn,
  waitFor,
  type ChildHandle,
  type ExecResult,
  type ExitInfo,
  type OutputLine,
  type RunOptions,
  type SpawnOptions,
  type WaitForLineOptions,
} from './lab/proc.ts';
export {
  createNamespacePair,
  parsePingOutput,
  ping,
  type Namespace,
  type NamespacePair,
  type NamespacePairOptions,
  type PingOptions,
  type PingResult,
} from './lab/netns.ts';
export { createStar, type Star, type StarHost, type StarOptions } from './lab/star.ts';
export {
  formatWgQuick,
  genKey,
  genKeyPair,
  genPsk,
  parseWgDump,
  pubKey,
  startWireguardGo,
  writeTempFile,
  type KeyPair,
  type WgPeer,
  type WgPeerStatus,
  type WgQuickConfig,
  type WgStatus,
  type WireguardGo,
  type WireguardGoOptions,
} from './lab/wireguard-go.ts';
export { cleanupAll, cleanupChildren } from './lab/cleanup.ts';
export { NETSTACK_TOOLS, TOOLS, installCommand, requireTools, toolProblems, type Tool } from './lab/tools.ts';
export { fileSize, sha256File, tempPath, writeRandomFile } from './lab/files.ts';
export {
  makeSshKeys,
  scp,
  sshExec,
  sshOptions,
  startSshd,
  type SshKeys,
  type SshRun,
  type Sshd,
  type SshdOptions,
} from './lab/sshd.ts';
export { createUser, removeAllUsers, removeUser } from './lab/users.ts';
export { tcpProbe, udpProbe, type ConnectResult, type ReadResult, type TcpProbe, type UdpProbe, type UdpResult } from './lab/probe.ts';
export {
  LOSSY_RELAY_MJS,
  startLossyRelay,
  type Impairment,
  type LossyRelay,
  type LossyRelayOptions,
  type RelayDirectionStats,
  type RelayStats,
} from './lab/relay.ts';
export { addUdpLoss, type UdpLoss, type UdpLossOptions } from './lab/nft.ts';
export {
  A_UDP_PORT,
  B_UDP_PORT,
  PIERCE_MJS,
  SIDE_A_ENV,
  TCP_GATEWAY_MJS,
  TUN,
  sideAKind,
  sideALabel,
  spawnPierce,
  startTunnel,
  type SideAKind,
  type TcpOptions,
  type Tunnel,
  type TunnelOptions,
} from './lab/netstack.ts';
export { cleanupStale } from './lab/registry.ts';
