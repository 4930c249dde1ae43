/** The audit log: newest first, filter by kind, "Older" pages back with `before`. */
import { useState } from 'preact/hooks';
import { api, type AuditEvent } from './api.ts';
import { ErrorLine, dateTime, useAction, usePoll, type Failure } from './util.tsx';
import { Listing } from './widgets.tsx';

const PAGE = 50;

function detailText(d: unknown): string {
  if (d === null || d === undefined || d === '') return '';
  if (typeof d === 'string') return d;
  if (typeof d === 'object' && !Array.isArray(d)) {
    return Object.entries(d as Record<string, unknown>)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
  }
  return JSON.stringify(d);
}

export function AuditPage() {
  const [kind, setKind] = useState('');
  const [events, setEvents] = useState<AuditEvent[] | null>(null);
  const [more, setMore] = useState(false);
  const [error, setError] = useState<Failure | null>(null);
  // A failure is shown until a fetch succeeds (not hidden while the next one runs).
  const [busy, run] = useAction((f) => f && setError(f));

  const fetchPage = (before?: AuditEvent['id']) =>
    run(async () => {
      const page = await api.audit({ limit: PAGE, ...(before !== undefined ? { before } : {}), ...(kind ? { kind } : {}) });
      setEvents((old) => (before === undefined ? page : [...(old ?? []), ...page]));
      setMore(page.length >= PAGE);
      setError(null);
    });
  usePoll(() => fetchPage(), null, [kind]);

  const last = events?.[events.length - 1];
  return (
    <section class="card" aria-labelledby="audit-h">
      <div class="head">
        <h2 id="audit-h">Audit log</h2>
        <div class="buttons">
          <label class="inline-label">
            Kind
            <select value={kind} onChange={(e) => setKind(e.currentTarget.value)} data-testid="audit-kind">
              <option value="">all</option>
              <option value="admin">admin</option>
              <option value="ssh">ssh</option>
            </select>
          </label>
          <button type="button" class="secondary small" disabled={busy} onClick={() => void fetchPage()} data-testid="audit-refresh">
            Refresh
          </button>
        </div>
      </div>
      <ErrorLine error={error} testid="audit-error" />
      <Listing
        items={events}
        empty="No events."
        testid="audit-table"
        head={['Time', 'Kind', 'Actor', 'Action', 'Target', 'Detail']}
        row={(e) => (
          <tr key={e.id} data-testid="audit-row" data-action={e.action ?? ''} data-actor={e.actor ?? ''} data-kind={e.kind ?? ''}>
            <td class="nowrap">{dateTime(e.at)}</td>
            <td>{e.kind ?? ''}</td>
            <td>{e.actor ?? ''}</td>
            <td class="addr">{e.action ?? ''}</td>
            <td>{e.target ?? ''}</td>
            <td class="detail">{detailText(e.detail)}</td>
          </tr>
        )}
      />
      {more && last && (
        <button type="button" class="secondary" disabled={busy} onClick={() => void fetchPage(last.id)} data-testid="audit-older">
          Older
        </button>
      )}
    </section>
  );
}
