#!/usr/bin/env node
/**
 * A tiny DNS64 for the NAT lab's 'nat64' routers (RFC 6147 just enough for RFC 7050 discovery):
 *   node dns64.mjs <listen-address> <port> <prefix /96, e.g. 64:ff9b::>
 * Answers, over UDP:
 * - `ipv4only.arpa` AAAA: <prefix>192.0.0.170 and <prefix>192.0.0.171 (RFC 7050 §2.2);
 *   A: 192.0.0.170 and 192.0.0.171;
 * - `<a>-<b>-<c>-<d>.ipv4.lab` (a dotted IPv4 address with dashes): AAAA synthesised from it,
 *   A the address itself (lets a host name any lab IPv4 address through the NAT64);
 * - anything else: NXDOMAIN. Prints "dns64 listening on <addr>:<port>" once bound.
 */
import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';

const [addr, portText, prefixText] = process.argv.slice(2);
if (!addr || !portText || !prefixText) {
  console.error('usage: dns64.mjs <listen-address> <port> <prefix>');
  process.exit(2);
}

/** The first 12 bytes of an IPv6 /96 prefix given as text ("64:ff9b::"). */
function prefixBytes(text) {
  const t = text.replace(/\/96$/, '');
  const [head, tail = ''] = t.split('::');
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - tl.length).fill('0'), ...tl];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out.subarray(0, 12);
}
const PREFIX = prefixBytes(prefixText);

function readName(msg, off) {
  const labels = [];
  for (;;) {
    const len = msg[off];
    if (len === undefined) throw new Error('truncated name');
    if (len === 0) return { name: labels.join('.').toLowerCase(), end: off + 1 };
    if (len >= 0xc0) throw new Error('compressed name in question');
    labels.push(msg.subarray(off + 1, off + 1 + len).toString('latin1'));
    off += 1 + len;
  }
}

function v4Bytes(text) {
  return Buffer.from(text.split('.').map(Number));
}

/** The IPv4 addresses a name stands for, or null (NXDOMAIN). */
function lookup(name) {
  if (name === 'ipv4only.arpa') return ['192.0.0.170', '192.0.0.171'];
  const m = name.match(/^(\d{1,3})-(\d{1,3})-(\d{1,3})-(\d{1,3})\.ipv4\.lab$/);
  if (m) {
    const a = `${m[1]}.${m[2]}.${m[3]}.${m[4]}`;
    if (isIP(a) === 4) return [a];
  }
  return null;
}

const A = 1;
const AAAA = 28;

function answer(query) {
  if (query.length < 12) return null;
  const qd = query.readUInt16BE(4);
  if (qd !== 1 || query[2] & 0x80) return null; // one question, and a query
  let q;
  try {
    q = readName(query, 12);
  } catch {
    return null;
  }
  if (q.end + 4 > query.length) return null;
  const qtype = query.readUInt16BE(q.end);
  const question = query.subarray(12, q.end + 4);
  const addrs = lookup(q.name);
  const records = [];
  if (addrs && (qtype === A || qtype === AAAA)) {
    for (const a of addrs) {
      const rdata = qtype === A ? v4Bytes(a) : Buffer.concat([PREFIX, v4Bytes(a)]);
      const rr = Buffer.alloc(12);
      rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
      rr.writeUInt16BE(qtype, 2);
      rr.writeUInt16BE(1, 4); // IN
      rr.writeUInt32BE(60, 6);
      rr.writeUInt16BE(rdata.length, 10);
      records.push(rr, rdata);
    }
  }
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2); // id
  header[2] = 0x84 | (query[2] & 0x01); // QR, AA, RD copied
  header[3] = 0x80 | (addrs ? 0 : 3); // RA; NOERROR or NXDOMAIN
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(records.length / 2, 6);
  return Buffer.concat([header, question, ...records]);
}

const sock = createSocket(isIP(addr) === 6 ? 'udp6' : 'udp4');
sock.on('message', (msg, from) => {
  const res = answer(msg);
  if (res) sock.send(res, from.port, from.address);
});
sock.on('error', (e) => {
  console.error(`dns64: ${e.message}`);
  process.exit(1);
});
sock.bind(Number(portText), addr, () => console.log(`dns64 listening on ${addr}:${portText}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
