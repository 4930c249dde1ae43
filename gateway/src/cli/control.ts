/** `pierce control`: the coordination server; `pierce control apikey`: an admin key, offline. */
import { readFile, stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import type { RelayMap, RelayRegion } from '../../../src/control/messages.ts';
import { openStore } from '../store/sqlite.ts';
import { startControl } from '../control/server.ts';
import { createApiKey } from '../control/state.ts';
import { checkPassword } from '../control/admins.ts';
import { UsageError, type Io } from './main.ts';
import { parseDuration } from './duration.ts';
import { splitHostPort } from './relay.ts';

export const CONTROL_USAGE = `Usage: pierce control --listen ADDR:PORT --db FILE [options]
       pierce control apikey --db FILE [--description TEXT] [--expiry DURATION] [--json]

Runs the coordination server: registration, node keys, addresses, the ACL policy and the
netmap stream. It never carries traffic.

  --listen ADDR:PORT        HTTP(S) listen address (default 127.0.0.1:8080)
  --db FILE                 SQLite database (created if missing); postgres://… is reserved
  --policy FILE             HuJSON ACL policy applied at start (re-read on SIGHUP); without it
                            the stored policy, or "everyone reaches everything"
  --server-url URL          the URL nodes use (login links are built from it)
  --relay URL[,stun=H:P]    a relay region (repeat: region 1, 2, …), e.g.
                            --relay http://127.0.0.1:8443,stun=127.0.0.1:3478
  --tls-cert F --tls-key F  serve HTTPS/WSS
  --key-expiry DURATION     node key lifetime (default 180d; 0 = never); tagged nodes never expire
  --ephemeral-timeout DUR   delete ephemeral nodes this long after they disconnect (default 10m)
  --web DIR                 serve the built web page from DIR (\`npm run build\` → dist/):
                            / the page, /admin the admin console
  --web-url URL             the page share links point to (default: --server-url + "/")
  --admin-password-file F   make an admin account for the console at start, with the password
                            in F (first line), unless an admin account exists already
  --admin-name NAME         that account's name (default admin)
  --verbose                 log registrations and errors

\`pierce control apikey\` prints a new admin API key for \`pierce admin\` (works while the
server runs: both open the same database).
`;

export function parseRelayFlag(v: string, id: number): RelayRegion {
  const [url, ...opts] = v.split(',');
  let u: URL;
  try {
    u = new URL(url!);
  } catch {
    throw new UsageError(`--relay: "${url}" is not a URL`);
  }
  const node: RelayRegion['nodes'][number] = { url: u.origin };
  for (const o of opts) {
    const m = /^stun=(.+:\d+)$/.exec(o);
    if (!m) throw new UsageError(`--relay: unknown option "${o}" (expected stun=HOST:PORT)`);
    node.stun = m[1]!;
  }
  return { id, code: `r${id}`, name: u.host, nodes: [node] };
}

export async function controlCommand(argv: string[], io: Io): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout(CONTROL_USAGE);
    return 0;
  }
  if (argv[0] === 'apikey') {
    const { values } = parseArgs({ args: argv.slice(1), options: { db: { type: 'string' }, description: { type: 'string' }, expiry: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
    if (!values.db) throw new UsageError('control apikey needs --db FILE');
    const store = openStore(values.db);
    try {
      const k = await createApiKey(store, Date.now(), values.description ?? '', values.expiry ? parseDuration(values.expiry, '--expiry') : undefined);
      io.stdout(values.json ? JSON.stringify(k) + '\n' : `${k.key}\n`);
    } finally {
      await store.close();
    }
    return 0;
  }
  const { values } = parseArgs({
    args: argv,
    options: {
      listen: { type: 'string', default: '127.0.0.1:8080' },
      db: { type: 'string' },
      policy: { type: 'string' },
      'server-url': { type: 'string' },
      relay: { type: 'string', multiple: true },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'key-expiry': { type: 'string' },
      'ephemeral-timeout': { type: 'string' },
      web: { type: 'string' },
      'web-url': { type: 'string' },
      'admin-password-file': { type: 'string' },
      'admin-name': { type: 'string' },
      verbose: { type: 'boolean' },
    },
    strict: true,
  });
  if (!values.db) throw new UsageError('control needs --db FILE');
  if (values['admin-name'] !== undefined && values['admin-password-file'] === undefined) throw new UsageError('--admin-name goes with --admin-password-file');
  if (values['web-url'] !== undefined) {
    try {
      new URL(values['web-url']);
    } catch {
      throw new UsageError(`--web-url: "${values['web-url']}" is not a URL`);
    }
  }
  if (values.web !== undefined) {
    const st = await stat(values.web).catch(() => undefined);
    if (!st?.isDirectory()) throw new UsageError(`--web: "${values.web}" is not a directory (build the page with \`npm run build\`, then --web dist)`);
  }
  let initialAdmin: { name: string; password: string } | undefined;
  if (values['admin-password-file'] !== undefined) {
    let text: string;
    try {
      text = await readFile(values['admin-password-file'], 'utf8');
    } catch (e) {
      throw new UsageError(`--admin-password-file: cannot read ${values['admin-password-file']}: ${(e as Error).message}`);
    }
    const password = text.split(/\r?\n/)[0]!;
    try {
      checkPassword(password);
    } catch (e) {
      throw new UsageError(`--admin-password-file: ${(e as Error).message} (the first line is the password)`);
    }
    initialAdmin = { name: values['admin-name'] ?? 'admin', password };
  }
  if (!!values['tls-cert'] !== !!values['tls-key']) throw new UsageError('--tls-cert and --tls-key go together');
  const { host, port } = splitHostPort(values.listen, '--listen');
  const relays: RelayMap = { regions: (values.relay ?? []).map((r, i) => parseRelayFlag(r, i + 1)) };
  const readPolicy = async () => (values.policy ? await readFile(values.policy, 'utf8') : undefined);
  const log = (m: string) => io.stderr(`${new Date().toISOString()} ${m}\n`);
  const server = await startControl({
    store: openStore(values.db),
    host,
    port,
    relays,
    ...(values['server-url'] ? { serverUrl: values['server-url'] } : {}),
    ...(values['tls-cert'] ? { tls: { cert: await readFile(values['tls-cert']), key: await readFile(values['tls-key']!) } } : {}),
    ...(values['key-expiry'] ? { keyExpiryMs: parseDuration(values['key-expiry'], '--key-expiry') } : {}),
    ...(values['ephemeral-timeout'] ? { ephemeralTimeoutMs: parseDuration(values['ephemeral-timeout'], '--ephemeral-timeout') } : {}),
    ...(values.policy ? { policyText: await readPolicy() } : {}),
    ...(values.web !== undefined ? { webRoot: values.web } : {}),
    ...(values['web-url'] !== undefined ? { webUrl: values['web-url'] } : {}),
    ...(initialAdmin ? { initialAdmin } : {}),
    log: values.verbose ? log : (m) => (m.includes('waits for approval') ? log(m) : undefined),
  });
  io.stderr(`pierce control: listening on ${server.url} (key ${server.publicKey}), ${server.state.nodes.size} nodes, ${server.state.policy.acls.length} rules\n`);
  const onHup = () => {
    void (async () => {
      try {
        const text = await readPolicy();
        if (text === undefined) return;
        const r = await server.state.setPolicy(text);
        log(`policy reloaded from ${values.policy}: ${r.rules} rules, ${r.tests} tests passed`);
      } catch (e) {
        log(`policy reload refused, the running policy stays: ${(e as Error).message}`);
      }
    })();
  };
  process.on('SIGHUP', onHup);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  process.off('SIGHUP', onHup);
  await server.close();
  return 0;
}
