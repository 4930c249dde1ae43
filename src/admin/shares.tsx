/** Share links: list with state, create (tags, TTL, uses, to) — the URL is shown once —, revoke. */
import { useState } from 'preact/hooks';
import { api, type ShareView } from './api.ts';
import { ErrorLine, ShowOnce, ago, byNewest, parseDuration, splitTags, until, useAction, useListActions, type Failure } from './util.tsx';
import { Field, IdCell, Listing, RevokeButton, Tags } from './widgets.tsx';

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
  const [error, setError] = useState<Failure | null>(null);
  const [busy, run] = useAction(setError);
  const submit = async (e: Event) => {
    e.preventDefault();
    const secs = parseDuration(ttl);
    if (Number.isNaN(secs)) return setError({ code: 'BAD_TTL', message: `"${ttl}" is not a duration (e.g. 1h, 30m, 7d)` });
    const n = uses.trim() === '' ? undefined : Number(uses);
    if (n !== undefined && !(Number.isInteger(n) && n > 0)) return setError({ code: 'BAD_USES', message: 'uses must be a whole number above 0 (empty: unlimited)' });
    await run(async () => {
      const r = await api.createShare({
        ...(tags.trim() ? { tags: splitTags(tags) } : {}),
        ...(secs !== undefined ? { ttlSeconds: secs } : {}),
        ...(n !== undefined ? { uses: n } : {}),
        ...(to.trim() ? { to: to.trim() } : {}),
        ...(description.trim() ? { description: description.trim() } : {}),
      });
      setDescription('');
      onCreated(r.url ?? r.key ?? '');
    });
  };
  return (
    <form class="create" onSubmit={submit} data-testid="share-form">
      <h3>New share link</h3>
      <div class="fields">
        <Field label="Tags (what it reaches)" placeholder="tag:demo" value={tags} set={setTags} testid="share-tags" />
        <Field label="Valid for" narrow placeholder="1h" value={ttl} set={setTtl} testid="share-ttl" />
        <Field label="Uses" narrow inputMode="numeric" placeholder="unlimited" value={uses} set={setUses} testid="share-uses" />
        <Field label="To (SSH target, optional)" placeholder="demo@web1" value={to} set={setTo} testid="share-to" />
        <Field label="Description" value={description} set={setDescription} testid="share-description" />
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
  const [error, setError] = useState<Failure | null>(null);
  const [now, setNow] = useState(Date.now());
  const { created, done, onCreated, revoke } = useListActions(async () => {
    setShares((await api.shares()).sort(byNewest));
    setNow(Date.now());
    setError(null);
  }, setError);
  return (
    <section class="card" aria-labelledby="shares-h">
      <h2 id="shares-h">Share links</h2>
      {created && <ShowOnce label="The share link" value={created} testid="share-new" onDone={done} />}
      <CreateShare onCreated={onCreated} />
      <ErrorLine error={error} testid="shares-error" />
      <Listing
        items={shares}
        empty="No share links."
        testid="shares-table"
        head={['Link', 'Tags / to', 'Created', 'Expires', 'Used', 'State']}
        actions
        row={(s) => {
          const state = shareState(s, now);
          const nodes = Array.isArray(s.nodes) ? s.nodes.map((n) => n.name).join(', ') : s.nodes ? `${s.nodes} node${s.nodes === 1 ? '' : 's'}` : '';
          return (
            <tr key={s.id} data-testid="share-row" data-id={s.id} data-state={state}>
              <IdCell id={s.id} description={s.description} />
              <td>
                <Tags tags={s.tags} />
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
              <td>{!s.revokedAt && state !== 'revoked' && <RevokeButton onClick={() => void revoke(() => api.revokeShare(s.id))} testid="share-revoke" />}</td>
            </tr>
          );
        }}
      />
    </section>
  );
}
