#!/usr/bin/env node
// The kernel's stand-in for Pierce's TCP features, for checking the lab itself: with a
// wireguard-go tunnel in the same namespace, the kernel's TCP does what Pierce's userspace stack
// does, and this process provides the same options and prints the same lines as
// `pierce wg up`:
//
//   --forward [BIND:]LPORT=IP:PORT   listen on BIND:LPORT (default 127.0.0.1), connect each
//                                    connection to IP:PORT      → `forwarding tcp B:L -> IP:PORT`
//   --socks5 [BIND:]PORT             SOCKS5 CONNECT proxy (RFC 1928, no auth)
//                                                               → `socks5 proxy on B:P`
//   --listen PORT=HOST:PORT          listen on --tunnel-ip:PORT, connect to HOST:PORT
//                                                               → `tunnel tcp port P -> HOST:PORT`
//   --tunnel-ip ADDR                 the tunnel address (for --listen)
//
// Standalone (node:net only). Runs until SIGTERM/SIGINT.
import net from 'node:net';

const fmt = (host, port) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

function hostPort(s, defaultHost) {
  let m = s.match(/^\[([^\]]+)\]:(\d+)$/) ?? s.match(/^([^:\]]+):(\d+)$/);
  if (m) return { host: m[1], port: Number(m[2]) };
  m = s.match(/^(\d+)$/);
  if (m && defaultHost !== undefined) return { host: defaultHost, port: Number(m[1]) };
  throw new Error(`bad address: ${s}`);
}

const forwards = [];
const socks = [];
const listens = [];
let tunnelIp;
const argv = process.argv.slice(2);
try {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (v === undefined) throw new Error(`${a} needs a value`);
    const eq = v.indexOf('=');
    switch (a) {
      case '--forward':
        if (eq < 0) throw new Error(`--forward ${v}: expected [BIND:]LPORT=IP:PORT`);
        forwards.push({ bind: hostPort(v.slice(0, eq), '127.0.0.1'), to: hostPort(v.slice(eq + 1)) });
        break;
      case '--socks5':
        socks.push(hostPort(v, '127.0.0.1'));
        break;
      case '--listen':
        if (eq < 0) throw new Error(`--listen ${v}: expected PORT=HOST:PORT`);
        listens.push({ port: Number(v.slice(0, eq)), to: hostPort(v.slice(eq + 1)) });
        break;
      case '--tunnel-ip':
        tunnelIp = v;
        break;
      default:
        throw new Error(`unknown option ${a}`);
    }
  }
  if (listens.length > 0 && !tunnelIp) throw new Error('--listen needs --tunnel-ip');
} catch (e) {
  process.stderr.write(`tcp-gateway: ${e.message}\n`);
  process.exit(2);
}

const log = (s) => process.stderr.write(`${s}\n`);

/** Pipes `client` to a new connection to `to`; either side closing or failing closes both. */
function pipeTo(client, to, onConnect) {
  const upstream = net.connect({ host: to.host, port: to.port });
  client.on('error', () => upstream.destroy());
  upstream.on('error', (e) => {
    if (onConnect && !upstream.connectedOnce) return onConnect(e);
    // A refused or reset upstream resets the client too, as a forwarder with a stack would.
    client.resetAndDestroy();
  });
  upstream.on('connect', () => {
    upstream.connectedOnce = true;
    onConnect?.(undefined, upstream);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return upstream;
}

function listen(server, addr, line) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: addr.host, port: addr.port }, () => {
      const a = server.address();
      log(line(fmt(a.address, a.port)));
      resolve();
    });
  });
}

// SOCKS5 reply codes (RFC 1928 §6).
const REP = { ok: 0, fail: 1, netUnreach: 3, hostUnreach: 4, refused: 5, ttl: 6, cmd: 7, atyp: 8 };
function repFor(err) {
  switch (err?.code) {
    case 'ECONNREFUSED': return REP.refused;
    case 'ENETUNREACH': return REP.netUnreach;
    case 'EHOSTUNREACH': return REP.hostUnreach;
    case 'ETIMEDOUT': return REP.ttl;
    default: return REP.fail;
  }
}

function socksSession(client) {
  let buf = Buffer.alloc(0);
  let stage = 'greeting';
  const reply = (rep, addr = '0.0.0.0', port = 0) => {
    const v6 = net.isIPv6(addr);
    const a = v6 ? Buffer.alloc(16) : Buffer.from(addr.split('.').map(Number));
    if (v6) {
      // Expand to 8 groups.
      const [h, t = ''] = addr.split('::');
      const hs = h ? h.split(':') : [];
      const ts = t ? t.split(':') : [];
      const groups = [...hs, ...Array(8 - hs.length - ts.length).fill('0'), ...ts];
      groups.forEach((g, i) => a.writeUInt16BE(parseInt(g, 16), i * 2));
    }
    const p = Buffer.alloc(2);
    p.writeUInt16BE(port);
    client.write(Buffer.concat([Buffer.from([5, rep, 0, v6 ? 4 : 1]), a, p]));
  };
  const onData = (d) => {
    buf = Buffer.concat([buf, d]);
    if (stage === 'greeting') {
      if (buf.length < 2) return;
      const n = buf[1];
      if (buf.length < 2 + n) return;
      if (buf[0] !== 5) return client.destroy();
      const methods = [...buf.subarray(2, 2 + n)];
      buf = buf.subarray(2 + n);
      if (!methods.includes(0)) {
        client.end(Buffer.from([5, 0xff]));
        return;
      }
      client.write(Buffer.from([5, 0]));
      stage = 'request';
    }
    if (stage === 'request') {
      if (buf.length < 5) return;
      const [ver, cmd, , atyp] = buf;
      let host;
      let off;
      if (atyp === 1) {
        if (buf.length < 10) return;
        host = [...buf.subarray(4, 8)].join('.');
        off = 8;
      } else if (atyp === 3) {
        const len = buf[4];
        if (buf.length < 5 + len + 2) return;
        host = buf.subarray(5, 5 + len).toString('utf8');
        off = 5 + len;
      } else if (atyp === 4) {
        if (buf.length < 22) return;
        const g = [];
        for (let i = 0; i < 8; i++) g.push(buf.readUInt16BE(4 + i * 2).toString(16));
        host = g.join(':');
        off = 20;
      } else {
        reply(REP.atyp);
        return client.end();
      }
      const port = buf.readUInt16BE(off);
      const rest = buf.subarray(off + 2);
      if (ver !== 5 || cmd !== 1) {
        reply(REP.cmd);
        return client.end();
      }
      stage = 'connecting';
      client.off('data', onData);
      client.pause();
      pipeTo(client, { host, port }, (err, upstream) => {
        if (err) {
          reply(repFor(err));
          client.end();
          return;
        }
        const la = upstream.localAddress ?? '0.0.0.0';
        reply(REP.ok, la.replace(/^::ffff:/, ''), upstream.localPort ?? 0);
        if (rest.length > 0) upstream.write(rest);
        client.resume();
      });
    }
  };
  client.on('data', onData);
  client.on('error', () => {});
}

const servers = [];
for (const f of forwards) {
  const s = net.createServer((c) => pipeTo(c, f.to));
  servers.push(listen(s, f.bind, (b) => `forwarding tcp ${b} -> ${fmt(f.to.host, f.to.port)}`));
}
for (const addr of socks) {
  const s = net.createServer(socksSession);
  servers.push(listen(s, addr, (b) => `socks5 proxy on ${b}`));
}
for (const l of listens) {
  const s = net.createServer((c) => pipeTo(c, l.to));
  servers.push(listen(s, { host: tunnelIp, port: l.port }, () => `tunnel tcp port ${l.port} -> ${fmt(l.to.host, l.to.port)}`));
}
try {
  await Promise.all(servers);
} catch (e) {
  log(`tcp-gateway: ${e.message}`);
  process.exit(1);
}
log('tcp-gateway ready');
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
