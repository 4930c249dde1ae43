/**
 * What the NAT lab needs on the machine, and the exact command that installs it. Like the interop
 * lab's `requireLab`, it throws: tests fail, never skip, when something is missing.
 */
import { existsSync } from 'node:fs';
import { findInPath } from '../interop/lab/env.ts';
import type { Tool } from '../interop/lab/tools.ts';

/** Always needed: namespaces, veths, bridges, nftables NAT, sysctls, ping. */
export const NATLAB_BASE_TOOLS: readonly Tool[] = [
  ['ip', 'iproute2'],
  ['nft', 'nftables'],
  ['sysctl', 'procps'],
  ['ping', 'iputils-ping'],
];

/** Per site kind (and the STUN server miniupnpd's external-address check talks to). */
export const NATLAB_KIND_TOOLS = {
  'hard-upnp': [
    ['miniupnpd', 'miniupnpd-nftables'],
    ['turnserver', 'coturn'],
  ],
  nat64: [['tayga', 'tayga']],
} as const satisfies Record<string, readonly Tool[]>;

/** What lab.test.ts drives on top: the clients of the router's services and probes. */
export const NATLAB_TEST_TOOLS: readonly Tool[] = [
  ['natpmpc', 'natpmpc'],
  ['upnpc', 'miniupnpc'],
  ['dig', 'dnsutils'],
  ['python3', 'python3'],
];

/** Every Debian package the lab and its test use (the .ci/run install line has them all). */
export function natlabInstallCommand(tools: readonly Tool[]): string {
  const pkgs = [...new Set(tools.map(([, pkg]) => pkg))];
  return `apt-get install -y --no-install-recommends ${pkgs.join(' ')}`;
}

/** What stops the lab (with `tools`) from running here; empty when it can run. */
export function natlabProblems(tools: readonly Tool[]): string[] {
  const problems: string[] = [];
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) problems.push('must run as root (network namespaces, nftables, TUN)');
  for (const [cmd, pkg] of tools) if (!findInPath(cmd)) problems.push(`\`${cmd}\` not found (Debian package ${pkg})`);
  if (tools.some(([cmd]) => cmd === 'tayga') && !existsSync('/dev/net/tun')) problems.push('/dev/net/tun missing (tayga needs TUN)');
  return problems;
}

/** Throws, naming what is missing and the install command, when the lab cannot run with `tools`. */
export function requireNatlab(tools: readonly Tool[]): void {
  const problems = natlabProblems(tools);
  if (problems.length > 0) {
    throw new Error(
      `NAT lab unavailable:\n  - ${problems.join('\n  - ')}\nInstall with: ${natlabInstallCommand(tools)}\nand run as root (see .ci/run).`,
    );
  }
}
