/**
 * Preflight for the extra programs some interop tests drive (OpenSSH, iperf3, curl, nftables,
 * python3): what is missing and the exact command that installs it. Like `requireLab`, it
 * throws — tests never skip for a missing tool.
 */
import { findInPath } from './env.ts';

/** [command, Debian package]. */
export type Tool = readonly [cmd: string, pkg: string];

export const TOOLS = {
  sshd: ['sshd', 'openssh-server'],
  ssh: ['ssh', 'openssh-client'],
  scp: ['scp', 'openssh-client'],
  sshKeygen: ['ssh-keygen', 'openssh-client'],
  iperf3: ['iperf3', 'iperf3'],
  nft: ['nft', 'nftables'],
  python3: ['python3', 'python3'],
  curl: ['curl', 'curl'],
} as const satisfies Record<string, Tool>;

/** Everything the TCP/IP-stack interop tests (test/interop/netstack-*.test.ts) use. */
export const NETSTACK_TOOLS: readonly Tool[] = Object.values(TOOLS);

const BASE_PACKAGES = ['wireguard-go', 'wireguard-tools', 'iproute2', 'iputils-ping'];

/** One line per missing tool; empty when all are there. */
export function toolProblems(tools: readonly Tool[]): string[] {
  return tools.filter(([cmd]) => !findInPath(cmd)).map(([cmd, pkg]) => `\`${cmd}\` not found (Debian package ${pkg})`);
}

/** The apt-get line that installs the lab and `tools`. */
export function installCommand(tools: readonly Tool[]): string {
  const pkgs = [...new Set([...BASE_PACKAGES, ...tools.map(([, pkg]) => pkg)])];
  return `apt-get install -y --no-install-recommends ${pkgs.join(' ')}`;
}

/** Throws, naming what is missing and how to install it, when any of `tools` is not in PATH. */
export function requireTools(tools: readonly Tool[]): void {
  const problems = toolProblems(tools);
  if (problems.length > 0) {
    throw new Error(`interop tools missing:\n  - ${problems.join('\n  - ')}\nInstall with: ${installCommand(tools)}\n(see .ci/run)`);
  }
}
