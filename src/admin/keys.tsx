/**
 * Auth keys (list, create — the key text is shown once, with copy —, revoke), users (add), and
 * below them the share links (shares.tsx).
 */
import { useState } from 'preact/hooks';
import { api, type AuthKeyView, type UserView } from './api.ts';
import { SharesSection } from './shares.tsx';
import { ErrorLine, ShowOnce, ago, byNewest, parseDuration, splitTags, until, useAction, useListActions, type Failure } from './util.tsx';
import { Field, IdCell, Listing, RevokeButton, Tags, UserSelect } from './widgets.tsx';

function keyState(k: AuthKeyView, now: number): string {
  if (k.revokedAt) return 'revoked';
  if (k.expiresAt && k.expiresAt <= now) return 'expired';
  if (k.valid === false) return k.reusable ? 'invalid' : 'used';
  return 'valid';
}

function CreateKey({ users, onCreated }: { users: UserView[]; onCreated: (key: string) => void }) {
  const [user, setUser] = useState('');
  const [reusable, setReusable] = useState(false);
  const [ephemeral, setEphemeral] = useState(false);
  const [tags, setTags] = useState('');
  const [expiry, setExpiry] = useState('90d');
  const [description, setDescription] = useState('');
  const [error, setError] = useState<Failure | null>(null);
  const [busy, run] = useAction(setError);
  const chosen = user || users[0]?.name || '';
  const submit = async (e: Event) => {
    e.preventDefault();
    const secs = parseDuration(expiry);
    if (Number.isNaN(secs)) return setError({ code: 'BAD_EXPIRY', message: `"${expiry}" is not a duration (e.g. 90d, 12h, 30m)` });
    await run(async () => {
      const r = await api.createAuthKey({
        user: chosen,
        reusable,
        ephemeral,
        ...(tags.trim() ? { tags: splitTags(tags) } : {}),
        ...(secs !== undefined ? { expirySeconds: secs } : {}),
        ...(description.trim() ? { description: description.trim() } : {}),
      });
      setTags('');
      setDescription('');
      onCreated(r.key);
    });
  };
  return (
    <form class="create" onSubmit={submit} data-testid="authkey-form">
      <h3>New auth key</h3>
      <div class="fields">
        <label>
          User
          <UserSelect users={users} value={chosen} set={setUser} testid="authkey-user" required />
        </label>
        <Field label="Tags" placeholder="tag:server" value={tags} set={setTags} testid="authkey-tags" />
        <Field label="Expires after" narrow placeholder="90d" value={expiry} set={setExpiry} testid="authkey-expiry" />
        <Field label="Description" value={description} set={setDescription} testid="authkey-description" />
      </div>
      <div class="buttons">
        <label class="check">
          <input type="checkbox" checked={reusable} onChange={(e) => setReusable(e.currentTarget.checked)} data-testid="authkey-reusable" /> reusable
        </label>
        <label class="check">
          <input type="checkbox" checked={ephemeral} onChange={(e) => setEphemeral(e.currentTarget.checked)} data-testid="authkey-ephemeral" /> ephemeral
        </label>
        <button type="submit" disabled={busy || !chosen} data-testid="authkey-create">
          Create key
        </button>
      </div>
      {users.length === 0 && <p class="muted">Add a user first.</p>}
      <ErrorLine error={error} testid="authkey-error" />
    </form>
  );
}

function AddUser({ onAdded }: { onAdded: () => void }) {
  const [name, setName] = useState('');
  const [error, setError] = useState<Failure | null>(null);
  const [, run] = useAction(setError);
  const submit = async (e: Event) => {
    e.preventDefault();
    await run(async () => {
      await api.createUser(name.trim());
      setName('');
      onAdded();
    });
  };
  return (
    <form class="inline" onSubmit={submit}>
      <input aria-label="new user" placeholder="alice@example.com" required value={name} onInput={(e) => setName(e.currentTarget.value)} data-testid="user-name" />
      <button type="submit" class="secondary small" data-testid="user-add">
        Add user
      </button>
      <ErrorLine error={error} testid="user-error" />
    </form>
  );
}

export function KeysPage() {
  const [keys, setKeys] = useState<AuthKeyView[] | null>(null);
  const [users, setUsers] = useState<UserView[]>([]);
  const [error, setError] = useState<Failure | null>(null);
  const [now, setNow] = useState(Date.now());
  const { load, created, done, onCreated, revoke } = useListActions(async () => {
    const [k, u] = await Promise.all([api.authKeys(), api.users()]);
    setKeys(k.sort(byNewest));
    setUsers(u);
    setNow(Date.now());
  }, setError);
  return (
    <>
      <section class="card" aria-labelledby="keys-h">
        <h2 id="keys-h">Auth keys</h2>
        {created && <ShowOnce label="The new auth key" value={created} testid="authkey-new" onDone={done} />}
        <CreateKey users={users} onCreated={onCreated} />
        <div class="users">
          <span class="muted">Users: {users.map((u) => u.name).join(', ') || 'none'}</span>
          <AddUser onAdded={() => void load()} />
        </div>
        <ErrorLine error={error} testid="authkeys-error" />
        <Listing
          items={keys}
          empty="No auth keys."
          testid="authkeys-table"
          head={['Key', 'User', 'Kind / tags', 'Created', 'Expires', 'Used', 'State']}
          actions
          row={(k) => {
            const state = keyState(k, now);
            return (
              <tr key={k.id} data-testid="authkey-row" data-id={k.id} data-state={state}>
                <IdCell id={k.id} description={k.description} />
                <td>{k.user ?? ''}</td>
                <td>
                  {k.reusable ? 'reusable' : 'one-off'}
                  {k.ephemeral ? ', ephemeral' : ''}
                  <Tags tags={k.tags} />
                </td>
                <td>{ago(k.createdAt, now)}</td>
                <td>{until(k.expiresAt, now)}</td>
                <td>{k.usedCount ?? 0}</td>
                <td class={state === 'valid' ? 'ok' : 'muted'}>{state}</td>
                <td>{!k.revokedAt && <RevokeButton onClick={() => void revoke(() => api.revokeAuthKey(k.id))} testid="authkey-revoke" />}</td>
              </tr>
            );
          }}
        />
      </section>
      <SharesSection />
    </>
  );
}
