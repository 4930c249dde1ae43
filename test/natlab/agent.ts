/**
 * Driving udp-agent.ts inside a lab namespace from a test:
 * - `stunProbe(ns, servers)`: one socket, every server asked, the JSON answer (one-shot);
 * - `startUdpAgent(ns, …)`: a long-running agent with its socket kept open, to STUN again, send
 *   datagrams and wait for the ones that arrive (hole punching, port mappings, hairpinning).
 * Agents are registered with the interop lab's child registry, so cleanup kills them.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { labEnv } from '../interop/lab/env.ts';
import { execIn } from '../interop/lab/proc.ts';
import { children, installExitHandlers, type TrackedChild } from '../interop/lab/registry.ts';
import type { StunAnswer } from './udp-agent.ts';

export type { StunAnswer } from './udp-agent.ts';
export const UDP_AGENT_TS = fileURLToPath(new URL('./udp-agent.ts', import.meta.url));
/** tsx's ESM loader, by absolute path (the agent runs from any working directory). */
export const TSX_LOADER = createRequire(import.meta.url).resolve('tsx');

/** `node --import tsx <script> …args` as argv for execIn/spawnIn. */
export function tsxArgv(script: string, args: readonly string[]): [string, string[]] {
  return [process.execPath, ['--import', TSX_LOADER, script, ...args]];
}

export interface ProbeResult {
  local: { address: string; port: number };
  stun: StunAnswer[];
}

export interface AgentOptions {
  /** Local port (default any) and address (default any, of the servers' family). */
  port?: number;
  bind?: string;
  /** Per-server STUN wait, ms (default 2000). */
  timeoutMs?: number;
  /** Send every received datagram back (serve mode only). */
  echo?: boolean;
}

function agentArgs(servers: readonly string[], o: AgentOptions): string[] {
  return [
    ...servers.flatMap((s) => ['--stun', s]),
    ...(o.port !== undefined ? ['--port', String(o.port)] : []),
    ...(o.bind !== undefined ? ['--bind', o.bind] : []),
    ...(o.timeoutMs !== undefined ? ['--timeout', String(o.timeoutMs)] : []),
  ];
}

/** One UDP socket in `ns` asks every server (at once) for its mapping. */
export async function stunProbe(ns: string, servers: readonly string[], o: AgentOptions = {}): Promise<ProbeResult> {
  const [cmd, args] = tsxArgv(UDP_AGENT_TS, agentArgs(servers, o));
  const res = await execIn(ns, cmd, args, { timeoutMs: (o.timeoutMs ?? 2000) + 15_000, check: false });
  const line = res.stdout.split('\n').find((l) => l.startsWith('{"type":"ready"'));
  if (!line) throw new Error(`udp-agent in ${ns} failed (exit ${res.code}):\n${res.stdout}${res.stderr}`);
  const r = JSON.parse(line) as ProbeResult & { type: string };
  return { local: r.local, stun: r.stun };
}

export interface Received {
  from: string;
  data: string;
  at: number;
}

export interface UdpAgent {
  ns: string;
  local: { address: string; port: number };
  /** The answers to the servers given at start. */
  stun: StunAnswer[];
  received: Received[];
  stunAgain(servers: readonly string[], timeoutMs?: number): Promise<StunAnswer[]>;
  send(to: string, data: string, count?: number): Promise<void>;
  /** Resolves with the first datagram (already received or arriving) matching `pred`. */
  waitRecv(pred: (r: Received) => boolean, timeoutMs: number): Promise<Received>;
  close(): Promise<void>;
}

/** Starts udp-agent.ts --serve in `ns`; resolves once its socket is bound and the first STUN round is done. */
export async function startUdpAgent(ns: string, servers: readonly string[], o: AgentOptions = {}): Promise<UdpAgent> {
  installExitHandlers();
  const [cmd, args] = tsxArgv(UDP_AGENT_TS, [...agentArgs(servers, o), '--serve', ...(o.echo ? ['--echo'] : [])]);
  const proc = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: labEnv() });
  const name = `udp-agent@${ns}`;
  let stderr = '';
  let exited = false;
  const exit = new Promise<void>((resolve) => proc.once('close', () => resolve()));
  const tracked: TrackedChild = {
    name,
    proc,
    kill: async () => {
      if (exited) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 2000);
      await exit;
      clearTimeout(t);
    },
  };
  children.add(tracked);
  void exit.then(() => {
    exited = true;
    children.delete(tracked);
    wake();
  });
  proc.stdin.on('error', () => undefined);
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));

  const received: Received[] = [];
  const results = new Map<number, (r: Record<string, unknown>) => void>();
  let ready: ((r: ProbeResult) => void) | undefined;
  let failed: ((e: Error) => void) | undefined;
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  let partial = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue;
      }
      if (m.type === 'ready') ready?.(m as unknown as ProbeResult);
      else if (m.type === 'fatal') failed?.(new Error(`${name}: ${String(m.error)}`));
      else if (m.type === 'recv') received.push({ from: String(m.from), data: String(m.data), at: Date.now() });
      else if (m.type === 'result' && typeof m.id === 'number') results.get(m.id)?.(m);
    }
    wake();
  });

  const first = await new Promise<ProbeResult>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name}: not ready within 20 s\n${stderr}`)), 20_000);
    ready = (r) => {
      clearTimeout(t);
      resolve(r);
    };
    failed = (e) => {
      clearTimeout(t);
      reject(e);
    };
    void exit.then(() => {
      clearTimeout(t);
      reject(new Error(`${name} exited at start:\n${stderr}`));
    });
  }).catch(async (e: unknown) => {
    await tracked.kill();
    throw e;
  });

  let nextId = 1;
  const request = (cmdObj: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown>> => {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      if (exited) return reject(new Error(`${name} has exited:\n${stderr}`));
      const t = setTimeout(() => {
        results.delete(id);
        reject(new Error(`${name}: no answer to ${JSON.stringify(cmdObj)} within ${timeoutMs} ms`));
      }, timeoutMs);
      results.set(id, (r) => {
        clearTimeout(t);
        results.delete(id);
        if (typeof r.error === 'string') reject(new Error(`${name}: ${r.error}`));
        else resolve(r);
      });
      proc.stdin.write(`${JSON.stringify({ id, ...cmdObj })}\n`);
    });
  };

  return {
    ns,
    local: first.local,
    stun: first.stun,
    received,
    async stunAgain(list, timeoutMs = o.timeoutMs ?? 2000) {
      return (await request({ op: 'stun', servers: list, timeoutMs }, timeoutMs + 5000)).stun as StunAnswer[];
    },
    async send(to, data, count = 1) {
      await request({ op: 'send', to, data, count }, 5000);
    },
    waitRecv(pred, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const r = received.find(pred);
          if (r) {
            done();
            resolve(r);
          } else if (exited) {
            done();
            reject(new Error(`${name} exited:\n${stderr}`));
          }
        };
        const t = setTimeout(() => {
          done();
          reject(new Error(`${name}: nothing matching arrived within ${timeoutMs} ms (received: ${JSON.stringify(received)})`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(t);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    async close() {
      if (!exited) proc.stdin.end(`${JSON.stringify({ op: 'close' })}\n`);
      const t = setTimeout(() => void tracked.kill(), 2000);
      await exit;
      clearTimeout(t);
    },
  };
}
