/**
 * `pierce demo` (what `npm start` runs): a whole mesh on this machine in one process, kept in a
 * data folder so a second start resumes it.
 *
 *   control   SQLite in DATA/control.sqlite, the page and the admin console on the same origin
 *   relay     DERP over WebSocket, STUN, UDP leases for browsers
 *   demo-host a node with the built-in SSH server (tag:demo-host)
 *
 * It prints a URL whose fragment carries a reusable, ephemeral auth key for tag:demo-browser:
 * opening it joins the mesh, the demo host is listed, and one click opens a shell on it as the
 * user running the demo (the policy's `ssh` rule). It also prints the admin console's login.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { NodePrivate, type NodePublic } from '../../../src/key/keys.ts';
import { startControl, type ControlServer } from '../control/server.ts';
import { createApiKey } from '../control/state.ts';
import { startNode, type RunningNode } from '../node/daemon.ts';
import { controlAuthority, DEFAULT_LEASE_BYTES_PER_SECOND, DEFAULT_LEASE_PACKETS_PER_SECOND, DEFAULT_LEASE_SOCKETS, type LeaseAuthority } from '../relay/leases.ts';
import { startRelay } from '../relay/server.ts';
import { openStore } from '../store/sqlite.ts';
import { startStunServer } from '../stun/server.ts';
import { UsageError, type Io } from './main.ts';
import { splitHostPort } from './relay.ts';

export const DEMO_USAGE = `Usage: pierce demo [options]      (what \`npm start\` runs)

Runs a whole mesh on this machine: control (with the web page and the admin console), a relay
with STUN and UDP leases, and a demo host node with the built-in SSH server. Prints the URL to
open. Ctrl-C stops everything; starting again with the same --data resumes the same mesh.

  --data DIR        where the mesh lives (default ./.pierce-demo)
  --listen A:P      control, page and admin console (default 127.0.0.1:8080; port 0: any).
                    Keep it on loopback: the demo link logs browsers in as you.
  --relay-listen A:P  the relay (DERP over WebSocket) and its STUN port (default 127.0.0.1:0)
  --web DIR         the built page (default ./dist; \`npm start\` builds it first)
  --ssh-user NAME   the login the demo's policy allows on the demo host (default: you, $USER)
  --json            print the URLs as one JSON line instead of text
`;

const DEMO_USER = 'demo@pierce.local';

export function demoPolicy(sshUser: string): string {
  return `// The demo's policy. Edit it in the admin console (/admin): it stays across restarts.
{
  "tagOwners": {
    "tag:demo-host": ["${DEMO_USER}"],
    "tag:demo-browser": ["${DEMO_USER}"],
  },
  "acls": [
    // Browsers that joined through the demo link reach the demo host's SSH port, nothing else.
    {"action": "accept", "src": ["tag:demo-browser", "autogroup:member"], "dst": ["tag:demo-host:22"]},
  ],
  "ssh": [
    // …and the built-in SSH server lets them in as ${sshUser}, by tailnet identity.
    {"action": "accept", "src": ["tag:demo-browser", "autogroup:member"], "dst": ["tag:demo-host"], "users": ["${sshUser}", "autogroup:nonroot"]},
  ],
  "tests": [
    {"src": "tag:demo-browser", "accept": ["tag:demo-host:22"], "deny": ["tag:demo-host:80"]},
  ],
}
`;
}

interface DemoSecrets {
  relayKey: string;
  apiKey: string;
  browserKey?: string;
  browserKeyId?: string;
  hostKey?: string;
  adminPassword: string;
}

async function loadSecrets(file: string): Promise<DemoSecrets> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as DemoSecrets;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new UsageError(`${file}: ${(e as Error).message} (delete the data folder to start over)`);
  }
  return { relayKey: NodePrivate.generate().toString(), apiKey: '', adminPassword: randomBytes(12).toString('base64url') };
}

export interface Demo {
  url: string;
  adminUrl: string;
  adminPassword: string;
  control: ControlServer;
  host: RunningNode;
  stop(): Promise<void>;
}

export interface DemoOptions {
  data: string;
  listen: string;
  relayListen: string;
  web: string;
  sshUser: string;
  /** How long a closed tab's ephemeral node stays (default 1 min: the demo is for trying out). */
  ephemeralTimeoutMs?: number;
  log: (m: string) => void;
}

export async function startDemo(o: DemoOptions): Promise<Demo> {
  await mkdir(o.data, { recursive: true, mode: 0o700 });
  const secretsFile = join(o.data, 'demo.json');
  const secrets = await loadSecrets(secretsFile);
  const save = async () => {
    await writeFile(secretsFile, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
    await chmod(secretsFile, 0o600);
  };
  if (!existsSync(join(o.web, 'index.html'))) throw new UsageError(`${o.web}/index.html is missing: build the page first (npm run build), or use npm start`);

  // The relay first (its ports go into control's relay map); it asks control about leases
  // through the admin API once control is up.
  const r = splitHostPort(o.relayListen, '--relay-listen');
  let authority: LeaseAuthority | undefined;
  const relay = await startRelay({
    host: r.host,
    port: r.port,
    privateKey: NodePrivate.parse(secrets.relayKey),
    leases: {
      authority: (key: NodePublic) => authority!(key),
      sockets: DEFAULT_LEASE_SOCKETS,
      packetsPerSecond: DEFAULT_LEASE_PACKETS_PER_SECOND,
      bytesPerSecond: DEFAULT_LEASE_BYTES_PER_SECOND,
      // Everything of the demo is on this machine.
      allowLoopback: true,
    },
    log: (level, m) => level === 'warn' && o.log(`relay: ${m}`),
  });
  const relayPort = Number(new URL(relay.url).port);
  const stun = await startStunServer({ host: r.host, port: relayPort });
  const c = splitHostPort(o.listen, '--listen');
  const store = openStore(join(o.data, 'control.sqlite'));
  const firstRun = (await store.listUsers()).length === 0;
  const control = await startControl({
    store,
    host: c.host,
    port: c.port,
    relays: { regions: [{ id: 1, code: 'demo', name: 'demo relay', nodes: [{ url: new URL(relay.url).origin, stun: `${r.host}:${stun.port}` }] }] },
    webRoot: resolve(o.web),
    initialAdmin: { name: 'admin', password: secrets.adminPassword },
    ephemeralTimeoutMs: o.ephemeralTimeoutMs ?? 60_000,
    ...(firstRun ? { policyText: demoPolicy(o.sshUser) } : {}),
    log: (m) => (m.includes('waits for approval') ? o.log(m) : undefined),
  });
  const state = control.state;
  if (!secrets.apiKey || !(await state.checkApiKey(secrets.apiKey))) {
    secrets.apiKey = (await createApiKey(store, Date.now(), 'pierce demo: the relay checks UDP leases')).key;
  }
  authority = controlAuthority({ controlUrl: control.url, apiKey: secrets.apiKey });
  if (!state.userByName(DEMO_USER)) await state.createUser(DEMO_USER);
  const valid = (id: string | undefined) => {
    const k = id ? state.authKeys.get(id) : undefined;
    return k !== undefined && k.revokedAt === null && (k.expiresAt === null || k.expiresAt > state.now());
  };
  if (!secrets.browserKey || !valid(secrets.browserKeyId)) {
    const { key, record } = await state.createAuthKey({ user: DEMO_USER, reusable: true, ephemeral: true, tags: ['tag:demo-browser'], adminTags: true, expiryMs: 10 * 365 * 86_400_000, description: 'pierce demo: browsers that open the demo link' });
    secrets.browserKey = key;
    secrets.browserKeyId = record.id;
  }
  const hostState = join(o.data, 'demo-host');
  if (!existsSync(join(hostState, 'node.key')) || !secrets.hostKey) {
    secrets.hostKey = (await state.createAuthKey({ user: DEMO_USER, tags: ['tag:demo-host'], adminTags: true, description: 'pierce demo: the demo host' })).key;
  }
  await save();

  const host = await startNode({
    controlUrl: control.url,
    stateDir: hostState,
    socketPath: join(hostState, 'pierce.sock'),
    hostname: 'demo-host',
    authKey: secrets.hostKey,
    ssh: true,
    direct: { port: 0 },
    log: (level, m) => level === 'warn' && o.log(`demo-host: ${m}`),
  });
  await Promise.race([host.engine.whenRunning(), new Promise((_, rej) => setTimeout(() => rej(new Error('the demo host did not come up within 20 s')), 20_000))]);

  const page = new URL('/', control.url);
  const url = `${page.href}#authkey=${encodeURIComponent(secrets.browserKey)}&ephemeral=1&user=${encodeURIComponent(o.sshUser)}`;
  return {
    url,
    adminUrl: new URL('/admin', control.url).href,
    adminPassword: secrets.adminPassword,
    control,
    host,
    stop: async () => {
      await host.stop();
      await control.close();
      await relay.close();
      await stun.close();
    },
  };
}

export async function demoCommand(argv: string[], io: Io): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout(DEMO_USAGE);
    return 0;
  }
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      data: { type: 'string', default: '.pierce-demo' },
      listen: { type: 'string', default: '127.0.0.1:8080' },
      'relay-listen': { type: 'string', default: '127.0.0.1:0' },
      web: { type: 'string', default: 'dist' },
      'ssh-user': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const sshUser = values['ssh-user'] ?? userInfo().username;
  const log = (m: string) => io.stderr(`${new Date().toISOString()} ${m}\n`);
  const demo = await startDemo({ data: values.data, listen: values.listen, relayListen: values['relay-listen'], web: values.web, sshUser, log });
  if (values.json) io.stdout(JSON.stringify({ url: demo.url, admin: demo.adminUrl, adminUser: 'admin', adminPassword: demo.adminPassword, data: resolve(values.data) }) + '\n');
  else {
    io.stdout(`
Pierce demo is running (data in ${resolve(values.data)}).

  Open the mesh in a browser (joins automatically; click "SSH as ${sshUser}" on demo-host):
    ${demo.url}

  Admin console: ${demo.adminUrl}   user admin, password ${demo.adminPassword}

Ctrl-C stops everything; npm start again resumes this mesh.
`);
  }
  await new Promise<void>((resolveStop) => {
    process.once('SIGINT', () => resolveStop());
    process.once('SIGTERM', () => resolveStop());
  });
  io.stderr('pierce demo: stopping…\n');
  await demo.stop();
  io.stderr('pierce demo: stopped\n');
  return 0;
}
