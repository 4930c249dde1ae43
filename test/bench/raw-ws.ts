/**
 * The relay bench's load-generator side of WebSocket (RFC 6455) on a bare TCP socket: cheaper per
 * packet than a full client library, so the generator is not what limits the measurement.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect as connectTcp, type Socket } from 'node:net';

let randomMasks = false;

/** Mask client frames with random keys, as browsers do (default: all-zero keys, cheaper to unmask). */
export function useRandomMasks(on: boolean): void {
  randomMasks = on;
}

/**
 * A minimal WebSocket client on a bare TCP socket (RFC 6455), so that the generator costs less
 * per packet than the servers it drives: client frames are built once (masked, with a random or
 * an all-zero key) and written in batches; server frames are split by their headers only.
 */
export class RawWs {
  private carry: Buffer | null = null;
  private handler: ((payload: Buffer) => void) | null = null;
  /** Messages that arrived before a handler was set (e.g. with the 101 response). */
  private early: Buffer[] = [];

  constructor(readonly sock: Socket) {}

  /** Sets the handler for binary messages, replaying those that arrived before. */
  set onMessage(cb: (payload: Buffer) => void) {
    this.handler = cb;
    const early = this.early;
    this.early = [];
    for (const p of early) cb(p);
  }

  /** Bytes accepted by write() not yet handed to the kernel (ws's bufferedAmount). */
  get bufferedAmount(): number {
    return this.sock.writableLength;
  }

  send(payload: Uint8Array): void {
    this.sock.write(wsFrame(payload));
  }

  /** Writes bytes that are already WebSocket frames. */
  sendFrames(frames: Buffer): void {
    this.sock.write(frames);
  }

  push(chunk: Buffer): void {
    let b = chunk;
    if (this.carry) {
      b = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    }
    let off = 0;
    for (;;) {
      const left = b.length - off;
      if (left < 2) break;
      const b1 = b[off + 1]!;
      let len = b1 & 0x7f;
      let hdr = 2;
      if (len === 126) {
        if (left < 4) break;
        len = b.readUInt16BE(off + 2);
        hdr = 4;
      } else if (len === 127) {
        if (left < 10) break;
        len = Number(b.readBigUInt64BE(off + 2));
        hdr = 10;
      }
      if (b1 & 0x80) throw new Error('server sent a masked frame');
      if (left < hdr + len) break;
      const opcode = b[off]! & 0x0f;
      const payload = b.subarray(off + hdr, off + hdr + len);
      off += hdr + len;
      if (opcode === 0x2) {
        if (this.handler) this.handler(payload);
        else this.early.push(payload);
      }
      else if (opcode === 0x8) this.sock.destroy();
      // text, ping and pong frames are not expected from these servers and are skipped
    }
    if (off < b.length) this.carry = b.subarray(off);
  }
}

/** One masked binary frame (FIN set). The mask is all-zero unless --mask. */
export function wsFrame(payload: Uint8Array, random = randomMasks): Buffer {
  const n = payload.length;
  const hdr = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(hdr + 4 + n);
  out[0] = 0x82;
  if (hdr === 2) out[1] = 0x80 | n;
  else if (hdr === 4) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(n), 2);
  }
  const mask = random ? randomBytes(4) : Buffer.alloc(4);
  mask.copy(out, hdr);
  for (let i = 0; i < n; i++) out[hdr + 4 + i] = payload[i]! ^ mask[i & 3]!;
  return out;
}

/** Opens a WebSocket (GET `path`, optional subprotocol) and checks the 101 answer. */
export function openRawWs(port: number, path: string, protocol: string | null, localAddress?: string): Promise<RawWs> {
  return new Promise((resolve, reject) => {
    const sock = connectTcp({ host: '127.0.0.1', port, ...(localAddress ? { localAddress } : {}) });
    sock.setNoDelay(true);
    const key = randomBytes(16).toString('base64');
    const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    let head = Buffer.alloc(0);
    let ws: RawWs | null = null;
    const timer = setTimeout(() => sock.destroy(new Error('WebSocket upgrade timed out')), 30_000);
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => clearTimeout(timer));
    sock.on('data', (d: Buffer) => {
      if (ws) return ws.push(d);
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      const text = head.subarray(0, end).toString('latin1');
      if (!/^HTTP\/1\.1 101 /.test(text) || !text.toLowerCase().includes(`sec-websocket-accept: ${accept.toLowerCase()}`)) {
        sock.destroy();
        return reject(new Error(`WebSocket upgrade refused: ${text.split('\r\n')[0]}`));
      }
      ws = new RawWs(sock);
      const rest = head.subarray(end + 4);
      if (rest.length) ws.push(rest); // kept until the caller sets onMessage
      resolve(ws);
    });
    sock.write(
      `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : ''}\r\n`,
    );
  });
}
