/**
 * A host-side UDP helper for the NAT lab: binds ONE UDP socket and asks STUN servers (Pierce's
 * client, gateway/src/stun/client.ts) what that socket is mapped to, printing JSON lines.
 *
 *   node --import tsx test/natlab/udp-agent.ts [--bind ADDR] [--port N] [--stun HOST:PORT]...
 *        [--timeout MS] [--serve] [--echo]
 *
 * First line (always): {"type":"ready","local":{"address","port"},"stun":[{"server","mapped"|null,"error"?}]}
 * (all servers asked at once from the same socket; "mapped" is "ip:port", "[ip6]:port" for IPv6).
 * Without --serve it exits then. With --serve it keeps the socket and:
 * - prints {"type":"recv","from":"ip:port","data":"<utf8>"} for every datagram that is not a
 *   STUN message (with --echo it also sends each one back to its sender);
 * - reads JSON commands on stdin, one a line, answering {"type":"result","id":…, …}:
 *     {"id":1,"op":"stun","servers":["203.0.113.1:3478"],"timeoutMs":2000} → "stun":[…]
 *     {"id":2,"op":"send","to":"203.0.113.10:41000","data":"hello","count":1} → "ok":true
 *     {"op":"close"} → exits.
 * Exits when stdin closes. The socket family: --bind's, else IPv6 ('::') when any server is
 * IPv6, else IPv4.
 */
import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { stunBinding } from '../../gateway/src/stun/client.ts';

export interface StunAnswer {
  server: string;
  mapped: string | null;
  error?: string;
}

export function parseHostPort(s: string): { host: string; port: number } {
  const m = s.match(/^\[([^\]]+)\]:(\d+)$/) ?? s.match(/^([^:]+):(\d+)$/) ?? s.match(/^(.*):(\d+)$/);
  if (!m || !isIP(m[1]!)) throw new Error(`not an address:port: ${s}`);
  return { host: m[1]!, port: Number(m[2]) };
}

export function formatHostPort(host: string, port: number): string {
  const h = host.startsWith('::ffff:') && isIP(host.slice(7)) === 4 ? host.slice(7) : host;
  return isIP(h) === 6 ? `[${h}]:${port}` : `${h}:${port}`;
}

function isStun(m: Buffer): boolean {
  return m.length >= 20 && (m[0]! & 0xc0) === 0 && m.readUInt32BE(4) === 0x2112a442;
}

async function stunAll(sock: Socket, servers: readonly string[], timeoutMs: number): Promise<StunAnswer[]> {
  return Promise.all(
    servers.map(async (server): Promise<StunAnswer> => {
      try {
        const r = await stunBinding(sock, parseHostPort(server), { rto: 250, maxTransmits: 5, timeoutMs });
        return { server, mapped: formatHostPort(r.address, r.port) };
      } catch (e) {
        return { server, mapped: null, error: (e as Error).message };
      }
    }),
  );
}

function print(o: unknown): void {
  process.stdout.write(`${JSON.stringify(o)}\n`);
}

async function main(argv: string[]): Promise<void> {
  const stun: string[] = [];
  let bind: string | undefined;
  let port = 0;
  let timeoutMs = 2000;
  let serve = false;
  let echo = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--bind') bind = val();
    else if (a === '--port') port = Number(val());
    else if (a === '--stun') stun.push(val());
    else if (a === '--timeout') timeoutMs = Number(val());
    else if (a === '--serve') serve = true;
    else if (a === '--echo') echo = true;
    else throw new Error(`unknown argument ${a}`);
  }
  const v6 = bind ? isIP(bind) === 6 : stun.some((s) => isIP(parseHostPort(s).host) === 6);
  const sock = createSocket({ type: v6 ? 'udp6' : 'udp4' });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ port, address: bind ?? (v6 ? '::' : '0.0.0.0') }, () => {
      sock.off('error', reject);
      resolve();
    });
  });
  const local = sock.address();
  const first = await stunAll(sock, stun, timeoutMs);
  print({ type: 'ready', local: { address: local.address, port: local.port }, stun: first });
  if (!serve) {
    sock.close();
    return;
  }
  sock.on('message', (m, from) => {
    if (isStun(m)) return;
    print({ type: 'recv', from: formatHostPort(from.address, from.port), data: m.toString('utf8') });
    if (echo) sock.send(m, from.port, from.address);
  });
  sock.on('error', (e) => print({ type: 'error', error: e.message }));
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    if (!line.trim()) return;
    void (async () => {
      let cmd: { id?: number; op?: string; servers?: string[]; timeoutMs?: number; to?: string; data?: string; count?: number };
      try {
        cmd = JSON.parse(line) as typeof cmd;
      } catch {
        print({ type: 'error', error: `bad command: ${line}` });
        return;
      }
      try {
        if (cmd.op === 'close') {
          sock.close();
          process.exit(0);
        } else if (cmd.op === 'stun') {
          print({ type: 'result', id: cmd.id, stun: await stunAll(sock, cmd.servers ?? [], cmd.timeoutMs ?? timeoutMs) });
        } else if (cmd.op === 'send') {
          let { host, port: p } = parseHostPort(cmd.to ?? '');
          if (v6 && isIP(host) === 4) host = `::ffff:${host}`;
          for (let i = 0; i < (cmd.count ?? 1); i++) {
            await new Promise<void>((resolve, reject) => sock.send(Buffer.from(cmd.data ?? ''), p, host, (e) => (e ? reject(e) : resolve())));
          }
          print({ type: 'result', id: cmd.id, ok: true });
        } else {
          throw new Error(`unknown op ${String(cmd.op)}`);
        }
      } catch (e) {
        print({ type: 'result', id: cmd.id, error: (e as Error).message });
      }
    })();
  });
  rl.on('close', () => {
    sock.close();
    process.exit(0);
  });
}

// Run as a script (not when imported for its helpers).
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    print({ type: 'fatal', error: (e as Error).message });
    process.exit(1);
  });
}
