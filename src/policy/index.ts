/**
 * The ACL policy engine: Tailscale's policy syntax (HuJSON) → validated rules → per-node packet
 * filters, plus the policy's own tests with explanations. See docs/policy.md.
 */
export { PolicyError } from './types.ts';
export type { FilterRule, Identity, PacketFilter, Policy, PolicyTest, PortRange, Rule, RuleDst, Selector, SelectorKind, SshRule, TestDst, TestFailure } from './types.ts';
export { parsePolicy, IGNORED_SECTIONS } from './parse.ts';
export { srcMatches, dstMatches, selectorPrefixes } from './selectors.ts';
export { evaluate, classKey, canOwnTag } from './evaluate.ts';
export { compileFilter, mergeFilter, filterAllows, compileMatcher, aggregatePrefixes, type Matcher } from './filter.ts';
export { runPolicyTests, checkPolicy, describeRule } from './tests.ts';
export { DEFAULT_PROTOS, PROTO, parseProto, parsePorts, formatPorts } from './ports.ts';
export { MAX_DEPTH } from './hujson.ts';
export { sshAccess, envAccepted, isLoginName, type SshAccess, type SshAccessRequest } from './ssh-access.ts';
