/**
 * Auth keys (list, create — the key text is shown once, with copy —, revoke), users (add), and
 * below them the share links (shares.tsx).
 */
import { useState } from 'preact/hooks';
import { api, type AuthKeyView, type UserView } from './api.ts';
import { SharesSection } from './shares.tsx';
import { ErrorLine, ShowOnce, ago, parseDuration, splitTags, toFailure, until, usePoll, type Failure } from './util.tsx';

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
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Failure | null>(null);
  const chosen = user || users[0]?.name || '';
  const submit = async (e: Event) => {
    e.preventDefault();
    const secs = parseDuration(expiry);
    if (Number.isNaN(secs)) return setError({ code: 'BAD_EXPIRY', message: `"${expiry}" is not a duration (e.g. 90d, 12h, 30m)` });
    setBusy(true);
    setError(null);
    try {
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
    } catch (err) {
      setError(toFailure(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="create" onSubmit={submit} data-testid="authkey-form">
      <h3>New auth key</h3>
      <div class="fields">
        <label>
          User
          <select value={chosen} onChange={(e) => setUser(e.currentTarget.value)} data-testid="authkey-user" required>
            {users.map((u) => (
              <option key={u.id} value={u.name}>
                {u.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Tags
          <input placeholder="tag:server" value={tags} onInput={(e) => setTags(e.currentTarget.value)} data-testid="authkey-tags" />
        </label>
        <label class="narrow">
          Expires after
          <input placeholder="90d" value={expiry} onInput={(e) => setExpiry(e.currentTarget.value)} data-testid="authkey-expiry" />
        </label>
        <label>
          Description
          <input value={description} onInput={(e) => setDescription(e.currentTarget.value)} data-testid="authkey-description" />
        </label>
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
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    try {
      await api.createUser(name.trim());
      setName('');
      onAdded();
    } catch (err) {
      setError(toFailure(err));
    }
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
  const [created, setCreated] = useState<string | null>(null);
  const [error, setError] = useState<Failure | null>(null);
  const [now, setNow] = useState(Date.now());
  const load = async () => {
    try {
      const [k, u] = await Promise.all([api.authKeys(), api.users()]);
      setKeys(k.sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0)));
      setUsers(u);
      setNow(Date.now());
    } catch (e) {
      setError(toFailure(e));
    }
  };
  usePoll(load, null);
  const revoke = async (id: string) => {
    setError(null);
    try {
      await api.revokeAuthKey(id);
    } catch (e) {
      setError(toFailure(e));
    }
    await load();
  };
  return (
    <>
      <section class="card" aria-labelledby="keys-h">
        <h2 id="keys-h">Auth keys</h2>
        {created && <ShowOnce label="The new auth key" value={created} testid="authkey-new" onDone={() => setCreated(null)} />}
        <CreateKey
          users={users}
          onCreated={(k) => {
            setCreated(k);
            void load();
          }}
        />
        <div class="users">
          <span class="muted">Users: {users.map((u) => u.name).join(', ') || 'none'}</span>
          <AddUser onAdded={() => void load()} />
        </div>
        <ErrorLine error={error} testid="authkeys-error" />
        {keys && keys.length === 0 && <p class="muted">No auth keys.</p>}
        {keys && keys.length > 0 && (
          <div class="table-wrap">
            <table data-testid="authkeys-table">
              <thead>
                <tr>
                  <th>Key</th>
                  <th>User</th>
                  <th>Kind / tags</th>
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
                {keys.map((k) => {
                  const state = keyState(k, now);
                  return (
                    <tr key={k.id} data-testid="authkey-row" data-id={k.id} data-state={state}>
                      <td class="addr">
                        {k.id}
                        {k.description && <div class="muted">{k.description}</div>}
                      </td>
                      <td>{k.user ?? ''}</td>
                      <td>
                        {k.reusable ? 'reusable' : 'one-off'}
                        {k.ephemeral ? ', ephemeral' : ''}
                        {(k.tags ?? []).map((t) => (
                          <span key={t} class="tag">
                            {t}
                          </span>
                        ))}
                      </td>
                      <td>{ago(k.createdAt, now)}</td>
                      <td>{until(k.expiresAt, now)}</td>
                      <td>{k.usedCount ?? 0}</td>
                      <td class={state === 'valid' ? 'ok' : 'muted'}>{state}</td>
                      <td>
                        {!k.revokedAt && (
                          <button type="button" class="danger small" onClick={() => void revoke(k.id)} data-testid="authkey-revoke">
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
      <SharesSection />
    </>
  );
}
