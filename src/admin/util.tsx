/** Small pieces the console's pages share: times, durations, tags, an error line, copy, actions, polling. */
import { useEffect, useRef, useState } from 'preact/hooks';
import { AdminError } from './api.ts';

const UNITS: [number, string][] = [
  [86_400_000, 'd'],
  [3_600_000, 'h'],
  [60_000, 'min'],
  [1000, 's'],
];

/** "3 min", "2 h", "12 d" for a span in ms (largest unit, rounded down). */
export function span(ms: number): string {
  const a = Math.abs(ms);
  for (const [u, name] of UNITS) if (a >= u) return `${Math.floor(a / u)} ${name}`;
  return '0 s';
}

export function ago(t: number | null | undefined, now = Date.now()): string {
  if (!t) return 'never';
  return now - t < 5000 ? 'just now' : `${span(now - t)} ago`;
}

/** "in 3 d", "expired 2 h ago", "never" for an expiry time. */
export function until(t: number | null | undefined, now = Date.now()): string {
  if (!t) return 'never';
  return t > now ? `in ${span(t - now)}` : `expired ${span(now - t)} ago`;
}

export function dateTime(t: number | null | undefined): string {
  if (!t) return '';
  const d = new Date(t);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** "90d", "1h", "30m", "45s", "1h30m" or a bare number of seconds → seconds; undefined for "" ; NaN when bad. */
export function parseDuration(text: string): number | undefined {
  const t = text.trim().toLowerCase();
  if (t === '') return undefined;
  if (/^\d+$/.test(t)) return Number(t);
  const re = /(\d+(?:\.\d+)?)\s*(min|d|h|m|s)/gy;
  let total = 0;
  let at = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * ({ d: 86_400, h: 3600, m: 60, min: 60, s: 1 } as Record<string, number>)[m[2]!]!;
    at = re.lastIndex;
  }
  return at === t.length && total > 0 ? Math.round(total) : NaN;
}

/** "tag:a, tag:b tag:c" → ["tag:a", "tag:b", "tag:c"]; a bare "a" becomes "tag:a". */
export function splitTags(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((t) => (t.startsWith('tag:') ? t : `tag:${t}`));
}

export interface Failure {
  code: string;
  message: string;
}

export function toFailure(e: unknown): Failure {
  if (e instanceof AdminError) return { code: e.code, message: e.message };
  return { code: 'ERROR', message: (e as Error)?.message ?? String(e) };
}

/** An inline error: `data-testid={testid}` with the code in `data-code`. */
export function ErrorLine({ error, testid = 'error' }: { error: Failure | null; testid?: string }) {
  if (!error) return null;
  return (
    <p class="error" role="alert" data-testid={testid} data-code={error.code}>
      <span class="code">{error.code}</span> {error.message}
    </p>
  );
}

/** A secret shown once (a new auth key, a share URL) with a copy button. */
export function ShowOnce({ label, value, testid, onDone }: { label: string; value: string; testid: string; onDone: () => void }) {
  const [copied, setCopied] = useState(false);
  const ref = useRef<HTMLInputElement>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setCopied(true);
    } catch {
      // No clipboard permission (plain http, an old browser): select it for Ctrl+C.
      ref.current?.select();
    }
  };
  return (
    <div class="notice once" role="status">
      <p>{label} — shown only now, copy it:</p>
      <div class="row">
        <input ref={ref} readOnly value={value} data-testid={testid} aria-label={label} onFocus={(e) => (e.target as HTMLInputElement).select()} />
        <button type="button" onClick={copy} data-testid={`${testid}-copy`}>
          {copied ? 'Copied' : 'Copy'}
        </button>
        <button type="button" class="secondary" onClick={onDone} data-testid={`${testid}-done`}>
          Done
        </button>
      </div>
    </div>
  );
}

/**
 * `[busy, run]`: `run(f)` clears the error (`onError(null)`), sets `busy` while `f` runs and
 * reports its failure to `onError`.
 */
export function useAction(onError: (f: Failure | null) => void): [boolean, (f: () => Promise<unknown>) => Promise<void>] {
  const [busy, setBusy] = useState(false);
  const run = async (f: () => Promise<unknown>) => {
    setBusy(true);
    onError(null);
    try {
      await f();
    } catch (e) {
      onError(toFailure(e));
    } finally {
      setBusy(false);
    }
  };
  return [busy, run];
}

/** Sorts newest first by `createdAt`. */
export const byNewest = (a: { createdAt?: number | null }, b: { createdAt?: number | null }): number => (b.createdAt ?? 0) - (a.createdAt ?? 0);

/**
 * A list that its page creates into and revokes from: `load` runs `fetch` (its failure goes to
 * `onError`), once now and after each change; `created` is the new secret to show once
 * (`onCreated` shows it and reloads, `done` hides it); `revoke(f)` runs f (its failure goes to
 * `onError`) and reloads.
 */
export function useListActions(fetch: () => Promise<void>, onError: (f: Failure | null) => void) {
  const load = async () => {
    try {
      await fetch();
    } catch (e) {
      onError(toFailure(e));
    }
  };
  usePoll(load, null);
  const [, run] = useAction(onError);
  const [created, setCreated] = useState<string | null>(null);
  return {
    load,
    created,
    done: () => setCreated(null),
    onCreated: (secret: string) => {
      setCreated(secret);
      void load();
    },
    revoke: (f: () => Promise<unknown>) => run(f).then(load),
  };
}

/** Calls `load` now, every `ms`, and whenever `deps` change; a failed load is reported, not retried faster. */
export function usePoll(load: () => Promise<void>, ms: number | null, deps: unknown[] = []): void {
  const latest = useRef(load);
  latest.current = load;
  useEffect(() => {
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      await latest.current().catch(() => {});
      if (!stop && ms !== null) timer = setTimeout(() => void tick(), ms);
    };
    void tick();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
}
