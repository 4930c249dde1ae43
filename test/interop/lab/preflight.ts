/**
 * Preflight: whether the lab can run here (root, tools, /dev/net/tun), and what to install.
 */
import { existsSync } from 'node:fs';
import { findInPath } from './env.ts';

const INSTALL_HINT =
  'apt-get install -y --no-install-recommends wireguard-go wireguard-tools iproute2 iputils-ping';

/** What stops the lab from running here (not root, tools missing); empty when it can run. */
export function labProblems(): string[] {
  const problems: string[] = [];
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    problems.push('must run as root (network namespaces, TUN devices)');
  }
  const tools: Array<[string, string]> = [
    ['ip', 'iproute2'],
    ['wg', 'wireguard-tools'],
    ['wireguard-go', 'wireguard-go'],
    ['ping', 'iputils-ping'],
  ];
  for (const [cmd, pkg] of tools) {
    if (!findInPath(cmd)) problems.push(`\`${cmd}\` not found (Debian package ${pkg})`);
  }
  if (!existsSync('/dev/net/tun')) problems.push('/dev/net/tun missing (TUN support needed by wireguard-go)');
  return problems;
}

/**
 * Throws (never skips) when the lab cannot run here, saying what to install. Use it as
 * `beforeEach(requireLab)` so that every test of the file FAILS with this message, and guard
 * the lab setup in beforeAll with `labProblems().length === 0`.
 */
export function requireLab(): void {
  const problems = labProblems();
  if (problems.length > 0) {
    throw new Error(
      `interop lab unavailable:\n  - ${problems.join('\n  - ')}\n` +
        `Install with: ${INSTALL_HINT}\nand run the tests as root (see .ci/run).`,
    );
  }
}
