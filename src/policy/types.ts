/**
 * The ACL policy's shapes: what `parsePolicy` returns, the identities it evaluates, and the packet
 * filter it compiles to. Tailscale's policy file syntax (HuJSON: JSON with comments and trailing
 * commas); see docs/policy.md for the language and where Pierce differs from Tailscale.
 *
 *   policy text ──parsePolicy──▶ Policy ──compileFilter(self, nodes)──▶ PacketFilter ──▶ node
 *                                  │                                        │
 *                                  └─evaluate(src, dst, proto, port)        └─filterAllows / compileMatcher
 *
 * Pure data; no Node or DOM APIs, so the engine runs it in the browser too.
 */
import { PierceError } from '../errors.ts';

/**
 * A bad policy. `code` is `POLICY_SYNTAX` (not HuJSON; the message carries line:column) or
 * `POLICY_INVALID` (well-formed but wrong; the message uses Tailscale's wording where it has one).
 * `path` says where ("acls[2].dst[0]"), `line`/`column` (1-based) when the place is known.
 */
export class PolicyError extends PierceError {
  readonly path: string;
  readonly line: number | undefined;
  readonly column: number | undefined;
  constructor(code: 'POLICY_SYNTAX' | 'POLICY_INVALID', message: string, where?: { path?: string; line?: number; column?: number }) {
    super(code, message);
    this.path = where?.path ?? '';
    this.line = where?.line;
    this.column = where?.column;
  }
}

/** A node as the policy sees it. A tagged node (tags.length > 0) has no user identity for the
 * policy (as in Tailscale, tagged devices lose their user's identity) though `user` may be set.
 * `addrs` are the node's tailnet IPs as text ("100.64.0.1", "fd7a:115c:a1e0::1"). */
export interface Identity {
  user?: string;
  tags: readonly string[];
  addrs: readonly string[];
}

/** Inclusive port range; `*` is {first: 0, last: 65535}. */
export interface PortRange {
  first: number;
  last: number;
}

/** One compiled packet-filter rule, as control sends it to a node and the node enforces on
 * inbound packets: a packet is allowed when its source is in `src`, its destination in one of
 * `dst` (and, for TCP, UDP and SCTP, its destination port in that entry's range), and its IP
 * protocol in `protos`. Prefixes are canonical text ("100.64.0.1/32", "0.0.0.0/0"). */
export interface FilterRule {
  src: string[];
  dst: { prefix: string; ports: PortRange }[];
  protos: number[];
}
export type PacketFilter = FilterRule[];

/**
 * A source or destination of a rule, resolved at parse time. `text` is what the policy said
 * (for messages). Host aliases keep their name and carry the prefix they stand for.
 */
export type Selector =
  | { kind: 'any'; text: string }
  | { kind: 'user'; text: string; user: string }
  | { kind: 'group'; text: string; group: string }
  | { kind: 'tag'; text: string; tag: string }
  | { kind: 'host'; text: string; host: string; prefix: string }
  | { kind: 'prefix'; text: string; prefix: string }
  | { kind: 'member'; text: string }
  | { kind: 'tagged'; text: string }
  | { kind: 'self'; text: string }
  | { kind: 'internet'; text: string }
  | { kind: 'danger-all'; text: string };

export type SelectorKind = Selector['kind'];

/** One destination of a rule: who, and which ports ("tag:server:80,443" → tag:server, [80, 443]). */
export interface RuleDst {
  sel: Selector;
  ports: PortRange[];
  /** The entry as written, e.g. "tag:server:80,443". */
  text: string;
}

/** One `acls` entry, normalized. `protos` is already defaulted (no proto: TCP, UDP, ICMP, ICMPv6). */
export interface Rule {
  /** Position in `acls` (0-based), as in messages: "acls[2]". */
  index: number;
  src: Selector[];
  dst: RuleDst[];
  protos: number[];
  /** The proto as written, when one was given. */
  proto?: string;
}

/** One destination of a policy test: one host and one port. */
export interface TestDst {
  /** As written, e.g. "tag:server:22". */
  text: string;
  /** The host part, e.g. "tag:server". */
  host: string;
  id: Identity;
  port: number;
}

/** One `tests` entry: `src` must be allowed to every `accept` and denied every `deny`. */
export interface PolicyTest {
  index: number;
  src: string;
  srcId: Identity;
  /** The IP protocol the test checks; TCP unless the test names one. */
  proto: number;
  protoText?: string;
  accept: TestDst[];
  deny: TestDst[];
}

/** One `ssh` entry, validated (Tailscale SSH; enforced by a later part of Pierce). */
export interface SshRule {
  index: number;
  action: 'accept' | 'check';
  src: Selector[];
  dst: Selector[];
  /** Local users: "root", "autogroup:nonroot", "localpart:*@example.com", or plain names. */
  users: string[];
  checkPeriod?: string;
  acceptEnv?: string[];
}

export interface Policy {
  acls: Rule[];
  /** group name ("group:eng") → users. */
  groups: ReadonlyMap<string, readonly string[]>;
  /** host alias → canonical prefix ("100.64.0.5/32"). */
  hosts: ReadonlyMap<string, string>;
  /** tag → owners (users, groups, tags, autogroup:admin, autogroup:member). */
  tagOwners: ReadonlyMap<string, readonly string[]>;
  tests: PolicyTest[];
  ssh: SshRule[];
  /** Top-level sections that were present and are accepted but ignored (e.g. "grants"). */
  ignored: string[];
}

/** One failed assertion of a policy test. */
export interface TestFailure {
  /** Index in `tests` (0-based). */
  test: number;
  src: string;
  kind: 'accept' | 'deny';
  dst: string;
  /** The whole explanation, e.g. `tests[1] (src "tag:server"): deny "tag:trusted:22" failed: allowed by acls[2] (…)`. */
  message: string;
  /** For a failed deny: the rule that allowed it. */
  ruleIndex?: number;
}
