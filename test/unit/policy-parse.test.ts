/**
 * Policy parsing: HuJSON, sections, selectors, ports and protocols, and the error messages (the
 * Tailscale ones verbatim).
 */
import { describe, expect, it } from 'vitest';
import { parsePolicy, PolicyError, type Policy } from '../../src/policy/index.ts';

const OWNERS = `"tagOwners": {"tag:server": ["alice@example.com"], "tag:trusted": ["alice@example.com"]}`;

function acl(src: string[], dst: string[], extra = ''): string {
  return `{${OWNERS}, "hosts": {"db": "100.64.0.5", "lan": "10.0.0.0/8", "v6host": "fd7a:115c:a1e0::5"},
    "groups": {"group:eng": ["alice@example.com", "bob@github"]},
    "acls": [{"action": "accept", "src": ${JSON.stringify(src)}, "dst": ${JSON.stringify(dst)}${extra}}]}`;
}

function error(text: string): PolicyError {
  try {
    parsePolicy(text);
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    return e as PolicyError;
  }
  throw new Error(`expected ${text} to be rejected`);
}

function rule0(p: Policy) {
  return p.acls[0]!;
}

describe('Tailscale error messages, verbatim', () => {
  it('deny actions are rejected', () => {
    const e = error(`{"acls": [{"action": "deny", "src": ["*"], "dst": ["*:*"]}]}`);
    expect(e.message).toBe('action="deny" is not supported');
    expect(e.code).toBe('POLICY_INVALID');
    expect(e.path).toBe('acls[0].action');
  });

  it('named ports are rejected', () => {
    expect(error(acl(['*'], ['tag:server:ssh'])).message).toBe('dst="tag:server:ssh": port range "ssh": invalid first integer');
  });

  it('autogroup:self on the src side is rejected', () => {
    expect(error(acl(['autogroup:self'], ['*:*'])).message).toBe('"autogroup:self" not valid on the src side of a rule');
  });

  it('a tag missing from tagOwners is rejected, in acls and in tests', () => {
    expect(error(acl(['tag:nonexistent'], ['*:*'])).message).toBe('src=tag not found: "tag:nonexistent"');
    expect(error(acl(['*'], ['tag:nonexistent:22'])).message).toBe('dst=tag not found: "tag:nonexistent"');
    const t = `{${OWNERS}, "tests": [{"src": "tag:nonexistent", "accept": ["tag:server:22"]}]}`;
    expect(error(t).message).toBe('src=tag not found: "tag:nonexistent"');
  });

  it('port 0 is rejected', () => {
    expect(error(acl(['*'], ['100.64.0.1:0'])).message).toBe(`dst="100.64.0.1:0": port range "0": first port must be >0, or use '*' for wildcard`);
    expect(error(acl(['*'], ['*:0'])).message).toContain(`port range "0": first port must be >0, or use '*' for wildcard`);
  });

  it('groups cannot contain groups', () => {
    const e = error(`{"groups": {"group:a": ["alice@example.com"], "group:b": ["group:a"]}}`);
    expect(e.message).toBe('groups["group:b"]: "group:a": group members cannot be recursive');
  });

  it('a destination without a colon is rejected', () => {
    expect(error(acl(['*'], ['100.64.0.1'])).message).toBe('dst="100.64.0.1": hostport must contain a colon (":")');
  });
});

describe('HuJSON', () => {
  it('accepts comments and trailing commas', () => {
    const p = parsePolicy(`// a policy
      {
        /* block */ "acls": [
          {"action": "accept", "src": ["*"], "dst": ["*:*"],}, // trailing
        ],
      }`);
    expect(p.acls).toHaveLength(1);
  });

  it('reports syntax errors with line:column', () => {
    const e = error('{\n  "acls": [\n    {"action" "accept"}\n  ]\n}');
    expect(e.code).toBe('POLICY_SYNTAX');
    expect(e.message).toBe('HuJSON syntax error at 3:15: expected ":"');
    expect([e.line, e.column]).toEqual([3, 15]);
  });

  it('reports where a semantic error is', () => {
    const e = error('{\n  "acls": [\n    {"action": "accept", "src": ["*"],\n     "dst": ["tag:server:ssh"]}\n  ]\n}');
    expect(e.path).toBe('acls[0].dst[0]');
    expect([e.line, e.column]).toEqual([4, 14]);
  });

  it('rejects an empty document, a non-object, duplicate keys and deep nesting', () => {
    expect(error('').code).toBe('POLICY_SYNTAX');
    expect(error('  // nothing\n').code).toBe('POLICY_SYNTAX');
    expect(error('[]').message).toBe('the policy must be an object, got an array');
    expect(error('{"acls": [], "acls": []}').message).toBe('duplicate key "acls"');
    expect(error('['.repeat(100_000)).message).toMatch(/nested deeper than 64 levels/);
  });

  it('treats "__proto__" as an ordinary (unknown) key', () => {
    expect(error('{"__proto__": {"acls": 1}}').message).toBe('unknown field "__proto__"');
    expect(error('{"hosts": {"__proto__": "100.64.0.1"}}').message).toMatch(/^hosts\["__proto__"\]: invalid host name/);
    const p = parsePolicy('{"groups": {"group:__proto__": ["a@b"]}, "acls": [{"action": "accept", "src": ["group:__proto__"], "dst": ["*:*"]}]}');
    expect(p.groups.get('group:__proto__')).toEqual(['a@b']);
    expect(rule0(p).src[0]).toEqual({ kind: 'group', text: 'group:__proto__', group: 'group:__proto__' });
  });
});

describe('sections', () => {
  it('an unknown top-level key is an error, with a suggestion', () => {
    expect(error('{"acl": []}').message).toBe('unknown field "acl" (did you mean "acls"?)');
    expect(error('{"frobnicate": []}').message).toBe('unknown field "frobnicate"');
  });

  it('accepts and ignores sections Pierce does not implement', () => {
    const p = parsePolicy(`{"grants": [{"src": ["*"], "dst": ["*"], "ip": ["*"]}], "postures": {}, "nodeAttrs": [], "autoApprovers": {},
      "derpMap": {}, "randomizeClientPort": true, "disableIPv4": false, "OneCGNATRoute": "", "sshTests": []}`);
    expect(p.ignored).toEqual(['grants', 'postures', 'nodeAttrs', 'autoApprovers', 'derpMap', 'randomizeClientPort', 'disableIPv4', 'OneCGNATRoute', 'sshTests']);
    expect(p.acls).toEqual([]);
  });

  it('field names are case-insensitive and legacy users/ports mean src/dst', () => {
    const p = parsePolicy(`{"ACLs": [{"Action": "accept", "Users": ["*"], "Ports": ["*:22"]}], "TagOwners": {}}`);
    expect(rule0(p).src[0]!.kind).toBe('any');
    expect(rule0(p).dst[0]!.ports).toEqual([{ first: 22, last: 22 }]);
    expect(error(`{"acls": [{"action": "accept", "src": ["*"], "users": ["*"], "dst": ["*:*"]}]}`).message).toBe('fields "src" and "users" both given; use one "src"');
  });

  it('an unknown field in a rule is an error', () => {
    expect(error(`{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"], "sorc": []}]}`).message).toBe('unknown field "sorc" (did you mean "src"?) in acls[0]');
  });

  it('rules need an action, src and dst of the right types', () => {
    expect(error(`{"acls": [{"src": ["*"], "dst": ["*:*"]}]}`).message).toBe('action is missing (only "accept" is supported)');
    expect(error(`{"acls": [{"action": "accept", "dst": ["*:*"]}]}`).message).toBe('src is missing');
    expect(error(`{"acls": [{"action": "accept", "src": "*", "dst": ["*:*"]}]}`).message).toBe('src must be an array of strings, got a string');
    expect(error(`{"acls": [{"action": "accept", "src": [1], "dst": ["*:*"]}]}`).message).toBe('src[0] must be a string, got a number');
    expect(error(`{"acls": {}}`).message).toBe('acls must be an array, got an object');
  });

  it('groups hold users only', () => {
    expect(error(`{"groups": {"eng": []}}`).message).toMatch(/^groups\["eng"\]: group names start with "group:"/);
    expect(error(`{"groups": {"group:a": ["alice"]}}`).message).toMatch(/^groups\["group:a"\]: "alice": invalid user/);
    expect(error(`{"groups": {"group:a": ["tag:x"]}}`).message).toBe('groups["group:a"]: "tag:x": tags cannot be group members');
    expect(error(acl(['group:nope'], ['*:*'])).message).toBe('src=group not found: "group:nope"');
  });

  it('tagOwners: valid names, known owners', () => {
    const p = parsePolicy(`{"groups": {"group:ops": ["o@x"]}, "tagOwners": {"tag:a": ["u@x", "group:ops", "tag:b", "autogroup:admin"], "tag:b": ["autogroup:member"], "tag:c": []}}`);
    expect(p.tagOwners.get('tag:a')).toEqual(['u@x', 'group:ops', 'tag:b', 'autogroup:admin']);
    expect(error(`{"tagOwners": {"tag:1x": []}}`).message).toMatch(/^tagOwners\["tag:1x"\]: invalid tag name/);
    expect(error(`{"tagOwners": {"tag:a": ["group:nope"]}}`).message).toBe('tagOwners["tag:a"]: group not found: "group:nope"');
    expect(error(`{"tagOwners": {"tag:a": ["tag:nope"]}}`).message).toBe('tagOwners["tag:a"]: tag not found: "tag:nope"');
    expect(error(`{"tagOwners": {"tag:a": ["bob"]}}`).message).toMatch(/"bob": invalid owner/);
  });

  it('hosts: names and canonical prefixes', () => {
    const p = parsePolicy(`{"hosts": {"db": "100.64.0.5", "lan": "10.0.0.0/8", "six": "FD7A:115C:A1E0::0001"}}`);
    expect([...p.hosts]).toEqual([['db', '100.64.0.5/32'], ['lan', '10.0.0.0/8'], ['six', 'fd7a:115c:a1e0::1/128']]);
    expect(error(`{"hosts": {"lan": "10.0.0.1/8"}}`).message).toBe('hosts["lan"]: "10.0.0.1/8" has host bits set (did you mean "10.0.0.0/8"?)');
    expect(error(`{"hosts": {"db": "db.example.com"}}`).message).toBe('hosts["db"]: "db.example.com" is not an IP address or CIDR prefix');
    expect(error(`{"hosts": {"1.2.3.4": "1.2.3.4"}}`).message).toMatch(/invalid host name/);
    expect(error(`{"hosts": {"a:b": "1.2.3.4"}}`).message).toMatch(/invalid host name/);
  });
});

describe('sources and destinations', () => {
  it('parses every kind of selector', () => {
    const p = parsePolicy(
      acl(
        ['*', 'alice@example.com', 'name@github', 'group:eng', 'tag:server', 'db', '100.64.0.1', '10.1.0.0/16', 'fd7a:115c:a1e0::/48', 'autogroup:member', 'autogroup:tagged', 'autogroup:danger-all'],
        ['*:*', 'autogroup:self:*', 'autogroup:internet:*', 'lan:22', 'v6host:22', 'autogroup:member:22', 'autogroup:tagged:22', 'alice@example.com:22', 'group:eng:22'],
      ),
    );
    expect(rule0(p).src.map((s) => s.kind)).toEqual(['any', 'user', 'user', 'group', 'tag', 'host', 'prefix', 'prefix', 'prefix', 'member', 'tagged', 'danger-all']);
    expect(rule0(p).src[6]).toEqual({ kind: 'prefix', text: '100.64.0.1', prefix: '100.64.0.1/32' });
    expect(rule0(p).dst.map((d) => d.sel.kind)).toEqual(['any', 'self', 'internet', 'host', 'host', 'member', 'tagged', 'user', 'group']);
    expect(rule0(p).dst[3]!.sel).toEqual({ kind: 'host', text: 'lan', host: 'lan', prefix: '10.0.0.0/8' });
  });

  it('splits a destination at the last colon (IPv6 bare, bracketed, or as a CIDR)', () => {
    const p = parsePolicy(acl(['*'], ['fd7a:115c:a1e0::/48:22', '[fd7a:115c:a1e0::1]:80', 'fd7a:115c:a1e0::2:443', 'tag:server:1-2']));
    expect(rule0(p).dst.map((d) => [d.sel.kind === 'prefix' ? d.sel.prefix : d.sel.text, d.ports])).toEqual([
      ['fd7a:115c:a1e0::/48', [{ first: 22, last: 22 }]],
      ['fd7a:115c:a1e0::1/128', [{ first: 80, last: 80 }]],
      ['fd7a:115c:a1e0::2/128', [{ first: 443, last: 443 }]],
      ['tag:server', [{ first: 1, last: 2 }]],
    ]);
  });

  it('parses port lists and ranges', () => {
    const p = parsePolicy(acl(['*'], ['*:22,80,443', '*:1024-65535', '*:*', '*:65535']));
    expect(rule0(p).dst.map((d) => d.ports)).toEqual([
      [{ first: 22, last: 22 }, { first: 80, last: 80 }, { first: 443, last: 443 }],
      [{ first: 1024, last: 65535 }],
      [{ first: 0, last: 65535 }],
      [{ first: 65535, last: 65535 }],
    ]);
  });

  it('rejects bad ports', () => {
    expect(error(acl(['*'], ['*:22-x'])).message).toBe('dst="*:22-x": port range "22-x": invalid last integer');
    expect(error(acl(['*'], ['*:80-22'])).message).toBe('dst="*:80-22": port range "80-22": last port must be >= first port');
    expect(error(acl(['*'], ['*:65536'])).message).toBe('dst="*:65536": port range "65536": first port must be <=65535');
    expect(error(acl(['*'], ['*:22,'])).message).toBe('dst="*:22,": port range "": invalid first integer');
    expect(error(acl(['*'], ['tag:server'])).message).toBe('dst="tag:server": missing ports (write "tag:server:*" or "tag:server:22")');
  });

  it('autogroups belong to their side', () => {
    expect(error(acl(['autogroup:internet'], ['*:*'])).message).toBe('"autogroup:internet" not valid on the src side of a rule');
    expect(error(acl(['*'], ['autogroup:danger-all:*'])).message).toBe('"autogroup:danger-all" not valid on the dst side of a rule');
    expect(error(acl(['autogroup:admin'], ['*:*'])).message).toMatch(/^src="autogroup:admin": unknown autogroup/);
  });

  it('rejects unknown hosts, bad addresses and prefixes with host bits', () => {
    expect(error(acl(['alice'], ['*:*'])).message).toMatch(/^src=host not found: "alice" \(.*users contain "@"\)$/);
    expect(error(acl(['*'], ['nohost:22'])).message).toMatch(/^dst=host not found: "nohost"/);
    expect(error(acl(['100.64.0.256'], ['*:*'])).message).toBe('src="100.64.0.256": "100.64.0.256" is not a valid IP address or CIDR prefix');
    expect(error(acl(['10.0.0.1/8'], ['*:*'])).message).toBe('src="10.0.0.1/8": "10.0.0.1/8" has host bits set (did you mean "10.0.0.0/8"?)');
    expect(error(acl(['*'], ['[100.64.0.1]:22'])).message).toBe('dst="[100.64.0.1]:22": brackets are for IPv6 addresses only');
  });
});

describe('protocols', () => {
  it('no proto means TCP, UDP, ICMP and ICMPv6', () => {
    expect(rule0(parsePolicy(acl(['*'], ['*:*']))).protos).toEqual([6, 17, 1, 58]);
  });

  it('takes names and numbers', () => {
    const cases: [string | number, number][] = [['tcp', 6], ['udp', 17], ['icmp', 1], ['ipv6-icmp', 58], ['sctp', 132], ['gre', 47], ['esp', 50], ['ah', 51], ['igmp', 2], ['ipv4', 4], ['ip-in-ip', 4], ['egp', 8], ['igp', 9], ['dccp', 33], ['TCP', 6], ['99', 99], [0, 0], ['255', 255]];
    for (const [name, n] of cases) {
      const p = parsePolicy(acl(['*'], ['*:*'], `, "proto": ${JSON.stringify(name)}`));
      expect(rule0(p).protos, String(name)).toEqual([n]);
      expect(rule0(p).proto).toBe(String(name));
    }
    expect(rule0(parsePolicy(acl(['*'], ['*:*'], ', "proto": ""'))).protos).toEqual([6, 17, 1, 58]);
  });

  it('rejects unknown protocols and numbers out of range', () => {
    expect(error(acl(['*'], ['*:*'], ', "proto": "quic"')).message).toMatch(/^proto="quic": unknown protocol "quic"/);
    expect(error(acl(['*'], ['*:*'], ', "proto": "256"')).message).toBe('proto="256": protocol number 256 is out of range (0-255)');
    expect(error(acl(['*'], ['*:*'], ', "proto": "06"')).message).toBe('proto="06": protocol number "06" has a leading 0');
  });

  it('protocols without ports need "*"', () => {
    expect(error(acl(['*'], ['tag:server:22'], ', "proto": "icmp"')).message).toBe('dst="tag:server:22": protocol "icmp" does not support specific ports; use "*"');
    expect(error(acl(['*'], ['tag:server:22'], ', "proto": "47"')).message).toBe('dst="tag:server:22": protocol "47" does not support specific ports; use "*"');
    expect(rule0(parsePolicy(acl(['*'], ['tag:server:22'], ', "proto": "sctp"'))).protos).toEqual([132]);
    expect(rule0(parsePolicy(acl(['*'], ['tag:server:*'], ', "proto": "icmp"'))).protos).toEqual([1]);
  });
});

describe('tests section', () => {
  const base = `${OWNERS}, "hosts": {"db": "100.64.0.5", "lan": "10.0.0.0/8"}, "groups": {"group:eng": ["alice@example.com"]}`;

  it('parses sources and destinations as identities', () => {
    const p = parsePolicy(`{${base}, "tests": [
      {"src": "alice@example.com", "accept": ["tag:server:22", "db:5432", "100.64.0.9:80", "bob@example.com:22"], "deny": ["[fd7a:115c:a1e0::1]:22"]},
      {"user": "tag:server", "proto": "udp", "allow": ["db:53"]},
      {"src": "db", "accept": []},
    ]}`);
    const [a, b, c] = p.tests;
    expect(a!.srcId).toEqual({ user: 'alice@example.com', tags: [], addrs: [] });
    expect(a!.proto).toBe(6);
    expect(a!.accept.map((d) => [d.id, d.port])).toEqual([
      [{ tags: ['tag:server'], addrs: [] }, 22],
      [{ tags: [], addrs: ['100.64.0.5'] }, 5432],
      [{ tags: [], addrs: ['100.64.0.9'] }, 80],
      [{ user: 'bob@example.com', tags: [], addrs: [] }, 22],
    ]);
    expect(a!.deny[0]!.id).toEqual({ tags: [], addrs: ['fd7a:115c:a1e0::1'] });
    expect(b!.srcId).toEqual({ tags: ['tag:server'], addrs: [] });
    expect([b!.proto, b!.protoText, b!.accept[0]!.port]).toEqual([17, 'udp', 53]);
    expect(c!.srcId.addrs).toEqual(['100.64.0.5']);
  });

  it('rejects groups, wildcards, ranges and port lists', () => {
    expect(error(`{${base}, "tests": [{"src": "group:eng", "accept": []}]}`).message).toBe('src="group:eng": a test source cannot be a group; test one of its users');
    expect(error(`{${base}, "tests": [{"src": "*", "accept": []}]}`).message).toBe('src="*": a test source must be one user, tag, host or IP');
    expect(error(`{${base}, "tests": [{"src": "lan", "accept": []}]}`).message).toBe('src="lan": a test source must be a single IP, not a CIDR range');
    expect(error(`{${base}, "tests": [{"src": "autogroup:member", "accept": []}]}`).message).toBe('src="autogroup:member": a test source must be one user, tag, host or IP');
    expect(error(`{${base}, "tests": [{"src": "db", "accept": ["tag:server:22,80"]}]}`).message).toBe('dst="tag:server:22,80": a test destination needs exactly one port');
    expect(error(`{${base}, "tests": [{"src": "db", "deny": ["tag:server:*"]}]}`).message).toBe('dst="tag:server:*": a test destination needs exactly one port');
    expect(error(`{${base}, "tests": [{"src": "db", "deny": ["group:eng:22"]}]}`).message).toBe('dst="group:eng:22": a test destination cannot be a group; test one of its users');
    expect(error(`{${base}, "tests": [{"accept": []}]}`).message).toBe('src is missing');
  });
});

describe('ssh section', () => {
  it('parses and exposes ssh rules', () => {
    const p = parsePolicy(`{${OWNERS}, "groups": {"group:eng": ["a@x"]}, "ssh": [
      {"action": "accept", "src": ["group:eng"], "dst": ["autogroup:self"], "users": ["autogroup:nonroot", "root"]},
      {"action": "check", "src": ["a@x"], "dst": ["tag:server"], "users": ["ubuntu", "localpart:*@example.com"], "checkPeriod": "12h", "acceptEnv": ["GIT_*"]},
    ]}`);
    expect(p.ssh).toHaveLength(2);
    expect(p.ssh[0]).toMatchObject({ index: 0, action: 'accept', users: ['autogroup:nonroot', 'root'] });
    expect(p.ssh[0]!.src[0]).toEqual({ kind: 'group', text: 'group:eng', group: 'group:eng' });
    expect(p.ssh[0]!.dst[0]!.kind).toBe('self');
    expect(p.ssh[1]).toMatchObject({ action: 'check', checkPeriod: '12h', acceptEnv: ['GIT_*'] });
  });

  it('validates ssh rules', () => {
    const ssh = (r: string) => error(`{${OWNERS}, "ssh": [${r}]}`).message;
    expect(ssh(`{"action": "deny", "src": ["*"], "dst": ["tag:server"], "users": ["root"]}`)).toBe('action="deny" is not supported (use "accept" or "check")');
    expect(ssh(`{"action": "accept", "src": ["autogroup:self"], "dst": ["tag:server"], "users": ["root"]}`)).toBe('"autogroup:self" not valid on the src side of a rule');
    expect(ssh(`{"action": "accept", "src": ["*"], "dst": ["100.64.0.1"], "users": ["root"]}`)).toMatch(/^dst="100.64.0.1": not allowed in the dst of an ssh rule/);
    expect(ssh(`{"action": "accept", "src": ["*"], "dst": ["tag:server"]}`)).toBe('users is missing');
    expect(ssh(`{"action": "accept", "src": ["*"], "dst": ["tag:server"], "users": ["bad user"]}`)).toMatch(/is not a valid ssh user/);
    expect(ssh(`{"action": "accept", "src": ["*"], "dst": ["tag:server"], "users": ["root"], "checkPeriod": "1h"}`)).toBe('checkPeriod is only valid with action "check"');
    expect(ssh(`{"action": "check", "src": ["*"], "dst": ["tag:nope"], "users": ["root"]}`)).toBe('dst=tag not found: "tag:nope"');
  });
});
