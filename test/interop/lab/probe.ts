/**
 * Socket probes run by python3 inside a namespace, reporting what the kernel's socket API saw
 * and how long it took: a TCP connect (refused by a RST?), a TCP connect-then-read (closed by the
 * far end?), a UDP datagram on a connected socket (ICMP port unreachable → ECONNREFUSED?).
 */
import { execIn } from './proc.ts';

export type ConnectResult = 'connected' | 'refused' | 'timeout' | `error: ${string}`;
export type ReadResult = 'eof' | 'reset' | 'data' | 'timeout' | `error: ${string}`;
export type UdpResult = 'reply' | 'refused' | 'timeout' | `error: ${string}`;

export interface TcpProbe {
  connect: ConnectResult;
  /** What reading after a successful connect saw; absent when it did not connect. */
  read?: ReadResult;
  /** Bytes received before `read` ended. */
  bytes: number;
  /** From the start of connect to the end of the probe. */
  ms: number;
}

export interface UdpProbe {
  result: UdpResult;
  ms: number;
}

const PY_PRELUDE = `
import json, socket, sys, time
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
def err(e):
    return 'error: ' + type(e).__name__ + ' ' + str(e)
`;

const PY_TCP = `${PY_PRELUDE}
read = sys.argv[4] == '1'
out = {'bytes': 0}
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(timeout)
t0 = time.monotonic()
try:
    s.connect((host, port))
    out['connect'] = 'connected'
except ConnectionRefusedError:
    out['connect'] = 'refused'
except socket.timeout:
    out['connect'] = 'timeout'
except OSError as e:
    out['connect'] = err(e)
if read and out['connect'] == 'connected':
    try:
        while True:
            d = s.recv(65536)
            if not d:
                out['read'] = 'eof'
                break
            out['bytes'] += len(d)
            out['read'] = 'data'
    except ConnectionResetError:
        out['read'] = 'reset'
    except socket.timeout:
        out['read'] = 'timeout'
    except OSError as e:
        out['read'] = err(e)
out['ms'] = (time.monotonic() - t0) * 1000
print(json.dumps(out))
`;

const PY_UDP = `${PY_PRELUDE}
s = socket.socket(fam, socket.SOCK_DGRAM)
s.settimeout(timeout)
t0 = time.monotonic()
out = {}
try:
    s.connect((host, port))
    s.send(b'plab udp probe')
    s.recv(2048)
    out['result'] = 'reply'
except ConnectionRefusedError:
    out['result'] = 'refused'
except socket.timeout:
    out['result'] = 'timeout'
except OSError as e:
    out['result'] = err(e)
out['ms'] = (time.monotonic() - t0) * 1000
print(json.dumps(out))
`;

async function python<T>(ns: string, script: string, args: string[], timeoutS: number): Promise<T> {
  const res = await execIn(ns, 'python3', ['-c', script, ...args], { timeoutMs: (timeoutS + 10) * 1000, check: false });
  const line = res.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`python3 probe in ${ns} failed (exit ${res.code}):\n${res.stdout}${res.stderr}`);
  }
}

/** TCP connect from `ns` to host:port (timeout in seconds); with `read`, then reads until the peer closes. */
export function tcpProbe(ns: string, host: string, port: number, opts: { timeoutS?: number; read?: boolean } = {}): Promise<TcpProbe> {
  const t = opts.timeoutS ?? 10;
  return python<TcpProbe>(ns, PY_TCP, [host, String(port), String(t), opts.read ? '1' : '0'], t * 2);
}

/** One UDP datagram from `ns` to host:port on a connected socket, then waits for a reply or an error. */
export function udpProbe(ns: string, host: string, port: number, opts: { timeoutS?: number } = {}): Promise<UdpProbe> {
  const t = opts.timeoutS ?? 5;
  return python<UdpProbe>(ns, PY_UDP, [host, String(port), String(t)], t);
}
