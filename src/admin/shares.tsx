/** Share links: list with state, create (tags, TTL, uses, to) — the URL is shown once —, revoke. */
import { useState } from 'preact/hooks';
import { api, type ShareView } from './api.ts';
import { ErrorLine, ShowOnce, ago, parseDuration, splitTags, toFailure, until, usePoll, type Failure } from './util.tsx';

const used = (s: ShareView): number => s.usedCount ?? s.used ?? 0;

function shareState(s: ShareView, now: number): string {
  if (s.state) return s.state;
  if (s.revokedAt) return 'revoked';
  if (s.expiresAt && s.expiresAt <= now) return 'expired';
  if (s.uses && used(s) >= s.uses) return 'used-up';
  return 'active';
}

function CreateShare({ onCreated }: { onCreated: (url: string) => void }) {
  const [tags, setTags] = useState('');
  const [ttl, setTtl] = useState('1h');
  const [uses, setUses] = useState('1');
  const [to, setTo] = useState('');
  const [description, setDescription] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Failure | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    const secs = parseDuration(ttl);
    if (Number.isNaN(secs)) return setError({ code: 'BAD_TTL', message: `"${ttl}" is not a duration (e.g. 1h, 30m, 7d)` });
    const n = uses.trim() === '' ? undefined : Number(uses);
    if (n !== undefined && !(Number.isInteger(n) && n > 0)) return setError({ code: 'BAD_USES', message: 'uses must be a whole number above 0 (empty: unlimited)' });
    setBusy(true);
    setError(null);
    try {
      const r = await api.createShare({
        ...(tags.trim() ? { tags: splitTags(tags) } : {}),
        ...(secs !== undefined ? { ttlSeconds: secs } : {}),
        ...(n !== undefined ? { uses: n } : {}),
        ...(to.trim() ? { to: to.trim() } : {}),
        ...(description.trim() ? { description: description.trim() } : {}),
      });
      setDescription('');
      onCreated(r.url ?? r.key ?? '');
    } catch (err) {
      setError(toFailure(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="create" onSubmit={submit} data-testid="share-form">
      <h3>New share link</h3>
      <div class="fields">
        <label>
          Tags (what it reaches)
          <input placeholder="tag:demo" value={tags} onInput={(e) => setTags(e.currentTarget.value)} data-testid="share-tags" />
        </label>
        <label class="narrow">
          Valid for
          <input placeholder="1h" value={ttl} onInput={(e) => setTtl(e.currentTarget.value)} data-testid="share-ttl" />
        </label>
        <label class="narrow">
          Uses
          <input inputMode="numeric" placeholder="unlimited" value={uses} onInput={(e) => setUses(e.currentTarget.value)} data-testid="share-uses" />
        </label>
        <label>
          To (SSH target, optional)
          <input placeholder="demo@web1" value={to} onInput={(e) => setTo(e.currentTarget.value)} data-testid="share-to" />
        </label>
        <label>
          Description
          <input value={description} onInput={(e) => setDescription(e.currentTarget.value)} data-testid="share-description" />
        </label>
      </div>
      <div class="buttons">
        <button type="submit" disabled={busy} data-testid="share-create">
          Create link
        </button>
      </div>
      <ErrorLine error={error} testid="share-error" />
    </form>
  );
}

export function SharesSection() {
  const [shares, setShares] = useState<ShareView[] | null>(null);
  const [created, setCreated] = useState<string | null>(null);
  const [error, setError] = useState<Failure | null>(null);
  const [now, setNow] = useState(Date.now());
  const load = async () => {
    try {
      const s = await api.shares();
      setShares(s.sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0)));
      setNow(Date.now());
      setError(null);
    } catch (e) {
      setError(toFailure(e));
    }
  };
  usePoll(load, null);
  const revoke = async (id: string) => {
    try {
      await api.revokeShare(id);
    } catch (e) {
      setError(toFailure(e));
    }
    await load();
  };
  return (
    <section class="card" aria-labelledby="shares-h">
      <h2 id="shares-h">Share links</h2>
      {created && <ShowOnce label="The share link" value={created} testid="share-new" onDone={() => setCreated(null)} />}
      <CreateShare
        onCreated={(u) => {
          setCreated(u);
          void load();
        }}
      />
      <ErrorLine error={error} testid="shares-error" />
      {shares && shares.length === 0 && <p class="muted">No share links.</p>}
      {shares && shares.length > 0 && (
        <div class="table-wrap">
          <table data-testid="shares-table">
            <thead>
              <tr>
                <th>Link</th>
                <th>Tags / to</th>
                <th>Created</th>
                <th>Expires</th>
                <th>Used</th>
                <th>State</th>
                <th>
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {shares.map((s) => {
                const state = shareState(s, now);
                const nodes = Array.isArray(s.nodes) ? s.nodes.map((n) => n.name).join(', ') : s.nodes ? `${s.nodes} node${s.nodes === 1 ? '' : 's'}` : '';
                return (
                  <tr key={s.id} data-testid="share-row" data-id={s.id} data-state={state}>
                    <td class="addr">
                      {s.id}
                      {s.description && <div class="muted">{s.description}</div>}
                    </td>
                    <td>
                      {(s.tags ?? []).map((t) => (
                        <span key={t} class="tag">
                          {t}
                        </span>
                      ))}
                      {s.to && <div class="muted">→ {s.to}</div>}
                      {s.user && <div class="muted">as {s.user}</div>}
                    </td>
                    <td>{ago(s.createdAt, now)}</td>
                    <td>{until(s.expiresAt, now)}</td>
                    <td>
                      {used(s)}
                      {s.uses ? ` / ${s.uses}` : ''}
                      {nodes && <div class="muted">{nodes}</div>}
                    </td>
                    <td class={state === 'active' ? 'ok' : 'muted'}>{state}</td>
                    <td>
                      {!s.revokedAt && state !== 'revoked' && (
                        <button type="button" class="danger small" onClick={() => void revoke(s.id)} data-testid="share-revoke">
                          Revoke
                        </button>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
