/** Durations on the command line: "90s", "10m", "24h", "180d", "1500ms" or plain seconds. */
import { UsageError } from './main.ts';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(s: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(s.trim());
  if (!m) throw new UsageError(`${flag}: "${s}" is not a duration (e.g. 30s, 10m, 24h, 180d)`);
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']!);
}
