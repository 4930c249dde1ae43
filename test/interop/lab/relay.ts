/**
 * The impairing UDP relay (lossy-relay.mjs) as a lab child: start it in a namespace in front of
 * an upstream (e.g. wireguard-go's port) and read its per-direction counters.
 */
import { fileURLToPath } from 'node:url';
import { spawnIn, type ChildHandle } from './proc.ts';

export const LOSSY_RELAY_MJS = fileURLToPath(new URL('./lossy-relay.mjs', import.meta.url));

export interface Impairment {
  /** % of packets dropped, each direction. */
  dropPct?: number;
  /** % of packets sent twice. */
  dupPct?: number;
  /** % of packets held back by a random delay in [delayMinMs, delayMaxMs] (reordering). */
  delayPct?: number;
  delayMinMs?: number;
  delayMaxMs?: number;
  /** PRNG seed; random (and printed) when absent. */
  seed?: number;
}

export interface RelayDirectionStats {
  in: number;
  dropped: number;
  duplicated: number;
  delayed: number;
  out: number;
}

export interface RelayStats {
  toUpstream: RelayDirectionStats;
  toClient: RelayDirectionStats;
  pending: number;
  client: string | null;
}

export interface LossyRelay {
  ns: string;
  /** Where clients send: host:port (IPv6 in brackets). */
  endpoint: string;
  port: number;
  seed: number;
  process: ChildHandle;
  stats(): Promise<RelayStats>;
  stop(): Promise<void>;
}

export interface LossyRelayOptions extends Impairment {
  ns: string;
  /** host:port to listen on; port 0 picks one. */
  listen: string;
  /** host:port to relay to. */
  upstream: string;
}

/** Starts the relay with node (this process's binary) inside `ns`; waits until it listens. */
export async function startLossyRelay(o: LossyRelayOptions): Promise<LossyRelay> {
  const args = [LOSSY_RELAY_MJS, '--listen', o.listen, '--upstream', o.upstream];
  const num = (flag: string, v: number | undefined): void => {
    if (v !== undefined) args.push(flag, String(v));
  };
  num('--drop', o.dropPct);
  num('--dup', o.dupPct);
  num('--delay-pct', o.delayPct);
  num('--delay-min', o.delayMinMs);
  num('--delay-max', o.delayMaxMs);
  num('--seed', o.seed);
  const proc = spawnIn(o.ns, process.execPath, args, { name: `lossy-relay@${o.ns}` });
  const m = await proc.waitForLine(/lossy-relay listening on udp (\S+):(\d+) -> \S+ seed (\d+)/, 10_000);
  const port = Number(m[2]);
  return {
    ns: o.ns,
    endpoint: `${m[1]}:${port}`,
    port,
    seed: Number(m[3]),
    process: proc,
    async stats() {
      const from = proc.lineCount();
      proc.signal('SIGUSR1');
      const line = await proc.waitForLine(/^stats (\{.*\})$/, 5_000, { from, stream: 'stdout' });
      return JSON.parse(line[1]!) as RelayStats;
    },
    async stop() {
      await proc.kill();
    },
  };
}
