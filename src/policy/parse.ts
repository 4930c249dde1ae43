/**
 * `parsePolicy`: HuJSON text → a validated, normalized `Policy`.
 *
 * Sections, in the order they are checked (later ones refer to earlier ones):
 *   groups     {"group:eng": ["alice@example.com", …]}   users only, no nesting
 *   tagOwners  {"tag:server": ["alice@…", "group:eng", "tag:ci", "autogroup:admin"]}
 *   hosts      {"db": "100.64.0.5", "lan": "10.0.0.0/8"}
 *   acls       [{"action": "accept", "src": [...], "proto"?: "tcp", "dst": ["host:ports", …]}]
 *   tests      [{"src": "…", "proto"?: "…", "accept": ["host:port", …], "deny": [...]}]
 *   ssh        [{"action": "accept"|"check", "src": [...], "dst": [...], "users": [...]}]
 * Field names are case-insensitive (as Go's encoding/json reads them for Tailscale), and the legacy
 * spellings `users`/`ports` (acls) and `user`/`allow` (tests) are read as src/dst and src/accept.
 * Sections Pierce does not implement yet are accepted and ignored (IGNORED_SECTIONS).
 *
 * Errors are PolicyError POLICY_INVALID with Tailscale's wording where it has one.
 */
import { formatPath, parseHuJSON, type Document, type Json, type JsonObject, type JsonPath } from './hujson.ts';
import { formatNet, parseNet } from './net.ts';
import { DEFAULT_PROTOS, hasPorts, parsePorts, parseProto, PROTO } from './ports.ts';
import { HOST_RE, isUser, parseSelector, TAG_RE, type SelectorContext, type Side } from './selectors.ts';
import { PolicyError, type Identity, type Policy, type PolicyTest, type Rule, type RuleDst, type Selector, type SshRule, type TestDst } from './types.ts';

/** Top-level sections accepted and ignored (with their spelling for messages). */
export const IGNORED_SECTIONS = ['grants', 'postures', 'nodeAttrs', 'autoApprovers', 'derpMap', 'randomizeClientPort', 'disableIPv4', 'OneCGNATRoute', 'sshTests'] as const;
const SECTIONS = ['acls', 'groups', 'hosts', 'tagOwners', 'tests', 'ssh'] as const;

const q = (s: string) => JSON.stringify(s);

function typeName(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Map) return 'an object';
  return `a ${typeof v}`;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

class Parser {
  constructor(private readonly doc: Document) {}

  fail(path: JsonPath, message: string): never {
    throw new PolicyError('POLICY_INVALID', message, { path: formatPath(path), ...this.doc.locate(path) });
  }

  /**
   * The fields of an object, by canonical name (case-insensitive match; aliases map to their
   * canonical field). Unknown fields are an error. Returns canonical name → [value, actual key].
   */
  fields(obj: Json, path: JsonPath, what: string, known: Record<string, string>): Map<string, [Json, string]> {
    if (!(obj instanceof Map)) this.fail(path, `${what} must be an object, got ${typeName(obj)}`);
    const out = new Map<string, [Json, string]>();
    for (const [key, value] of obj) {
      const lower = key.toLowerCase();
      const canon = Object.hasOwn(known, lower) ? known[lower] : undefined;
      if (canon === undefined) {
        const names = [...new Set(Object.values(known))];
        const near = names.find((n) => editDistance(n.toLowerCase(), key.toLowerCase()) <= 2);
        this.fail([...path, key], `unknown field ${q(key)}${near ? ` (did you mean ${q(near)}?)` : ''}${path.length ? ` in ${what}` : ''}`);
      }
      const prev = out.get(canon);
      if (prev) this.fail([...path, key], `fields ${q(prev[1])} and ${q(key)} both given; use one ${q(canon)}`);
      if (value !== null) out.set(canon, [value, key]);
    }
    return out;
  }

  string(v: Json, path: JsonPath, what: string): string {
    if (typeof v !== 'string') this.fail(path, `${what} must be a string, got ${typeName(v)}`);
    return v;
  }

  strings(v: Json, path: JsonPath, what: string): string[] {
    if (!Array.isArray(v)) this.fail(path, `${what} must be an array of strings, got ${typeName(v)}`);
    return v.map((e, i) => this.string(e, [...path, i], `${what}[${i}]`));
  }

  object(v: Json, path: JsonPath, what: string): JsonObject {
    if (!(v instanceof Map)) this.fail(path, `${what} must be an object, got ${typeName(v)}`);
    return v;
  }

  array(v: Json, path: JsonPath, what: string): Json[] {
    if (!Array.isArray(v)) this.fail(path, `${what} must be an array, got ${typeName(v)}`);
    return v;
  }

  // ---- sections ----

  groups(v: Json | undefined, path: JsonPath): Map<string, string[]> {
    const out = new Map<string, string[]>();
    if (v === undefined) return out;
    const obj = this.object(v, path, 'groups');
    for (const [name, members] of obj) {
      const p = [...path, name];
      const where = formatPath(p);
      if (!/^group:[^\s:@,]+$/.test(name)) this.fail(p, `${where}: group names start with "group:" (e.g. "group:eng"), got ${q(name)}`);
      const list = members === null ? [] : this.strings(members, p, where);
      list.forEach((m, i) => {
        const at = (why: string) => this.fail([...p, i], `${where}: ${q(m)}: ${why}`);
        if (m.startsWith('group:')) at('group members cannot be recursive');
        if (m.startsWith('tag:')) at('tags cannot be group members');
        if (m.startsWith('autogroup:')) at('autogroups cannot be group members');
        if (!isUser(m)) at('invalid user (users contain "@", e.g. "alice@example.com" or "alice@github")');
      });
      out.set(name, list);
    }
    return out;
  }

  tagOwners(v: Json | undefined, path: JsonPath, groups: ReadonlyMap<string, readonly string[]>): Map<string, string[]> {
    const out = new Map<string, string[]>();
    if (v === undefined) return out;
    const obj = this.object(v, path, 'tagOwners');
    for (const name of obj.keys()) {
      if (!TAG_RE.test(name)) {
        this.fail([...path, name], `${formatPath([...path, name])}: invalid tag name (a tag is "tag:", a letter, then letters, digits or dashes)`);
      }
    }
    for (const [name, owners] of obj) {
      const p = [...path, name];
      const where = formatPath(p);
      const list = owners === null ? [] : this.strings(owners, p, where);
      list.forEach((o, i) => {
        const at = (why: string) => this.fail([...p, i], `${where}: ${why}`);
        if (o.startsWith('group:')) {
          if (!groups.has(o)) at(`group not found: ${q(o)}`);
        } else if (o.startsWith('tag:')) {
          if (!obj.has(o)) at(`tag not found: ${q(o)}`);
        } else if (o.startsWith('autogroup:')) {
          if (o !== 'autogroup:admin' && o !== 'autogroup:member') at(`${q(o)}: only autogroup:admin and autogroup:member can own tags`);
        } else if (!isUser(o)) {
          at(`${q(o)}: invalid owner (owners are users, groups, tags, autogroup:admin or autogroup:member)`);
        }
      });
      out.set(name, list);
    }
    return out;
  }

  hosts(v: Json | undefined, path: JsonPath): Map<string, string> {
    const out = new Map<string, string>();
    if (v === undefined) return out;
    const obj = this.object(v, path, 'hosts');
    for (const [name, value] of obj) {
      const p = [...path, name];
      const where = formatPath(p);
      if (!HOST_RE.test(name) || parseNet(name)) {
        this.fail(p, `${where}: invalid host name (letters, digits, ".", "_" and "-"; not an IP address)`);
      }
      const text = this.string(value, p, where);
      const net = parseNet(text);
      if (!net) this.fail(p, `${where}: ${q(text)} is not an IP address or CIDR prefix`);
      if (net.hostBits) this.fail(p, `${where}: ${q(text)} has host bits set (did you mean ${q(formatNet(net.net))}?)`);
      out.set(name, formatNet(net.net));
    }
    return out;
  }

  proto(v: Json, path: JsonPath): number | undefined {
    if (typeof v !== 'string' && typeof v !== 'number') this.fail(path, `proto must be a string, got ${typeName(v)}`);
    if (v === '') return undefined;
    const r = parseProto(v);
    if (typeof r === 'string') this.fail(path, `proto=${q(String(v))}: ${r}`);
    return r;
  }

  selector(text: string, side: Side, entry: string, ctx: SelectorContext, path: JsonPath): Selector {
    const r = parseSelector(text, side, entry, ctx);
    if ('error' in r) this.fail(path, r.error);
    return r;
  }

  acls(v: Json | undefined, path: JsonPath, ctx: SelectorContext): Rule[] {
    if (v === undefined) return [];
    return this.array(v, path, 'acls').map((entry, index) => {
      const p = [...path, index];
      const f = this.fields(entry, p, `acls[${index}]`, {
        action: 'action',
        src: 'src',
        users: 'src',
        dst: 'dst',
        ports: 'dst',
        proto: 'proto',
        srcposture: 'srcPosture',
      });
      const action = f.get('action');
      if (!action) this.fail(p, 'action is missing (only "accept" is supported)');
      const act = this.string(action[0], [...p, action[1]], 'action');
      if (act !== 'accept') this.fail([...p, action[1]], `action=${q(act)} is not supported`);
      const posture = f.get('srcPosture');
      if (posture) this.fail([...p, posture[1]], 'srcPosture is not supported (Pierce has no device postures yet)');
      const src = f.get('src');
      if (!src) this.fail(p, 'src is missing');
      const dst = f.get('dst');
      if (!dst) this.fail(p, 'dst is missing');
      const protoField = f.get('proto');
      const proto = protoField ? this.proto(protoField[0], [...p, protoField[1]]) : undefined;
      const protos = proto === undefined ? [...DEFAULT_PROTOS] : [proto];
      const rule: Rule = {
        index,
        src: this.strings(src[0], [...p, src[1]], 'src').map((s, i) => this.selector(s, 'src', s, ctx, [...p, src[1], i])),
        dst: this.strings(dst[0], [...p, dst[1]], 'dst').map((d, i) => this.ruleDst(d, proto, String(protoField?.[0]), ctx, [...p, dst[1], i])),
        protos,
      };
      if (protoField && proto !== undefined) rule.proto = String(protoField[0]);
      return rule;
    });
  }

  /** Splits "host:ports" at the last colon. */
  splitHostPort(entry: string, path: JsonPath, side: string): [string, string] {
    const colon = entry.lastIndexOf(':');
    if (colon < 0) this.fail(path, `${side}=${q(entry)}: hostport must contain a colon (":")`);
    const host = entry.slice(0, colon);
    if (host === 'tag' || host === 'group' || host === 'autogroup') {
      this.fail(path, `${side}=${q(entry)}: missing ports (write ${q(entry + ':*')} or ${q(entry + ':22')})`);
    }
    return [host, entry.slice(colon + 1)];
  }

  ruleDst(entry: string, proto: number | undefined, protoText: string, ctx: SelectorContext, path: JsonPath): RuleDst {
    const [host, portText] = this.splitHostPort(entry, path, 'dst');
    const ports = parsePorts(portText);
    if (typeof ports === 'string') this.fail(path, `dst=${q(entry)}: ${ports}`);
    const sel = this.selector(host, 'dst', entry, ctx, path);
    if (proto !== undefined && !hasPorts(proto) && portText !== '*') {
      this.fail(path, `dst=${q(entry)}: protocol ${q(protoText)} does not support specific ports; use "*"`);
    }
    return { sel, ports, text: entry };
  }

  /** One host of a test (source or destination) as the identity it stands for. */
  testHost(text: string, side: Side, entry: string, ctx: SelectorContext, path: JsonPath): Identity {
    const sel = this.selector(text, side, entry, ctx, path);
    const what = side === 'src' ? 'a test source' : 'a test destination';
    switch (sel.kind) {
      case 'user':
        return { user: sel.user, tags: [], addrs: [] };
      case 'tag':
        return { tags: [sel.tag], addrs: [] };
      case 'host':
      case 'prefix': {
        const net = parseNet(sel.prefix)!.net;
        if (net.bits !== (net.v6 ? 128 : 32)) this.fail(path, `${side}=${q(entry)}: ${what} must be a single IP, not a CIDR range`);
        return { tags: [], addrs: [sel.prefix.slice(0, sel.prefix.indexOf('/'))] };
      }
      case 'group':
        return this.fail(path, `${side}=${q(entry)}: ${what} cannot be a group; test one of its users`);
      default:
        return this.fail(path, `${side}=${q(entry)}: ${what} must be one user, tag, host or IP`);
    }
  }

  testDst(entry: string, proto: number, ctx: SelectorContext, path: JsonPath): TestDst {
    const [host, portText] = this.splitHostPort(entry, path, 'dst');
    let port = 0;
    if (!(portText === '*' && !hasPorts(proto))) {
      const ports = parsePorts(portText);
      if (typeof ports === 'string') this.fail(path, `dst=${q(entry)}: ${ports}`);
      const r = ports[0]!;
      if (ports.length !== 1 || r.first !== r.last) this.fail(path, `dst=${q(entry)}: a test destination needs exactly one port`);
      port = r.first;
    }
    return { text: entry, host, id: this.testHost(host, 'dst', entry, ctx, path), port };
  }

  tests(v: Json | undefined, path: JsonPath, ctx: SelectorContext): PolicyTest[] {
    if (v === undefined) return [];
    return this.array(v, path, 'tests').map((entry, index) => {
      const p = [...path, index];
      const f = this.fields(entry, p, `tests[${index}]`, { src: 'src', user: 'src', proto: 'proto', accept: 'accept', allow: 'accept', deny: 'deny' });
      const src = f.get('src');
      if (!src) this.fail(p, 'src is missing');
      const srcText = this.string(src[0], [...p, src[1]], 'src');
      const srcId = this.testHost(srcText, 'src', srcText, ctx, [...p, src[1]]);
      const protoField = f.get('proto');
      const proto = (protoField ? this.proto(protoField[0], [...p, protoField[1]]) : undefined) ?? PROTO.TCP;
      const list = (name: 'accept' | 'deny') => {
        const e = f.get(name);
        if (!e) return [];
        return this.strings(e[0], [...p, e[1]], name).map((d, i) => this.testDst(d, proto, ctx, [...p, e[1], i]));
      };
      const t: PolicyTest = { index, src: srcText, srcId, proto, accept: list('accept'), deny: list('deny') };
      if (protoField && protoField[0] !== '') t.protoText = String(protoField[0]);
      return t;
    });
  }

  ssh(v: Json | undefined, path: JsonPath, ctx: SelectorContext): SshRule[] {
    if (v === undefined) return [];
    const SRC_OK = new Set(['any', 'user', 'group', 'tag', 'member', 'tagged', 'danger-all']);
    const DST_OK = new Set(['user', 'tag', 'self', 'member', 'tagged']);
    return this.array(v, path, 'ssh').map((entry, index) => {
      const p = [...path, index];
      const f = this.fields(entry, p, `ssh[${index}]`, {
        action: 'action',
        src: 'src',
        dst: 'dst',
        users: 'users',
        checkperiod: 'checkPeriod',
        acceptenv: 'acceptEnv',
      });
      const get = (name: string) => f.get(name) ?? this.fail(p, `${name} is missing`);
      const action = get('action');
      const act = this.string(action[0], [...p, action[1]], 'action');
      if (act !== 'accept' && act !== 'check') this.fail([...p, action[1]], `action=${q(act)} is not supported (use "accept" or "check")`);
      const sels = (name: 'src' | 'dst', ok: Set<string>): Selector[] => {
        const e = get(name);
        return this.strings(e[0], [...p, e[1]], name).map((s, i) => {
          const sel = this.selector(s, name, s, ctx, [...p, e[1], i]);
          if (!ok.has(sel.kind)) {
            this.fail([...p, e[1], i], `${name}=${q(s)}: not allowed in the ${name} of an ssh rule (use ${name === 'src' ? 'users, groups, tags, autogroup:member or autogroup:tagged' : 'users, tags, autogroup:self, autogroup:member or autogroup:tagged'})`);
          }
          return sel;
        });
      };
      const users = get('users');
      const rule: SshRule = {
        index,
        action: act,
        src: sels('src', SRC_OK),
        dst: sels('dst', DST_OK),
        users: this.strings(users[0], [...p, users[1]], 'users').map((u, i) => {
          const ok = u === 'autogroup:nonroot' || /^localpart:\*@[^\s@]+$/.test(u) || /^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$/.test(u);
          if (!ok) this.fail([...p, users[1], i], `users: ${q(u)} is not a valid ssh user (a login name, "root", "autogroup:nonroot" or "localpart:*@domain")`);
          return u;
        }),
      };
      const period = f.get('checkPeriod');
      if (period) {
        const text = this.string(period[0], [...p, period[1]], 'checkPeriod');
        if (act !== 'check') this.fail([...p, period[1]], 'checkPeriod is only valid with action "check"');
        if (!/^(always|([0-9]+(\.[0-9]+)?(h|m|s))+)$/.test(text)) this.fail([...p, period[1]], `checkPeriod=${q(text)}: not a duration like "12h" or "always"`);
        rule.checkPeriod = text;
      }
      const env = f.get('acceptEnv');
      if (env) rule.acceptEnv = this.strings(env[0], [...p, env[1]], 'acceptEnv');
      return rule;
    });
  }
}

/** Parses and validates a policy; throws PolicyError (POLICY_SYNTAX or POLICY_INVALID). */
export function parsePolicy(text: string): Policy {
  const doc = parseHuJSON(text);
  const ps = new Parser(doc);
  const known: Record<string, string> = {};
  for (const s of [...SECTIONS, ...IGNORED_SECTIONS]) known[s.toLowerCase()] = s;
  const top = ps.fields(doc.value, [], 'the policy', known);
  const section = (name: string): [Json | undefined, JsonPath] => {
    const e = top.get(name);
    return e ? [e[0], [e[1]]] : [undefined, [name]];
  };
  const groups = ps.groups(...section('groups'));
  const tagOwners = ps.tagOwners(...section('tagOwners'), groups);
  const hosts = ps.hosts(...section('hosts'));
  const ctx: SelectorContext = { groups, hosts, tagOwners };
  const acls = ps.acls(...section('acls'), ctx);
  const tests = ps.tests(...section('tests'), ctx);
  const ssh = ps.ssh(...section('ssh'), ctx);
  const ignored = IGNORED_SECTIONS.filter((s) => top.has(s));
  return { acls, groups, hosts, tagOwners, tests, ssh, ignored: [...ignored] };
}
