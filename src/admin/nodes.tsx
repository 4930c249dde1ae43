/**
 * Nodes: the table (name, addresses, user/tags, online or last seen, path, key expiry) with
 * expire, delete (confirmed inline) and tag editing; pending interactive registrations with
 * approve. Refreshes every 5 s.
 */
import { useState } from 'preact/hooks';
import { api, type NodeView, type Registration, type UserView } from './api.ts';
import { ErrorLine, ago, splitTags, toFailure, until, useAction, usePoll, type Failure } from './util.tsx';
import { Table, Tags, UserSelect } from './widgets.tsx';

const REFRESH_MS = 5000;

/**
 * "direct-capable (2 endpoints) · relay r1" with endpoints, "relay r1" without; the relay is
 * the region's code when control gives it (`homeRelayCode`), else its number.
 */
export function pathText(n: NodeView): string {
  const eps = n.endpoints?.length ?? 0;
  const h = n.homeRelayCode ?? n.homeRelay;
  const relay = h === undefined || h === null || h === 0 || h === '' ? '' : `relay ${h}`;
  const parts = [eps > 0 ? `direct-capable (${eps} endpoint${eps === 1 ? '' : 's'})` : '', relay].filter(Boolean);
  return parts.length ? parts.join(' · ') : 'no path';
}

function NodeRow({ n, now, onChange, onError }: { n: NodeView; now: number; onChange: () => void; onError: (f: Failure | null) => void }) {
  const [mode, setMode] = useState<'view' | 'tags' | 'delete'>('view');
  const [tags, setTags] = useState('');
  const [busy, run] = useAction(onError);
  const act = (f: () => Promise<unknown>) =>
    run(async () => {
      await f();
      setMode('view');
      onChange();
    });
  const online = !!n.online;
  const expiry = n.expired ? 'expired' : n.loggedOut ? 'logged out' : until(n.keyExpiry, now);
  return (
    <tr data-testid="node-row" data-name={n.name} data-online={String(online)}>
      <td>
        <strong>{n.name}</strong>
        {n.hostname && n.hostname !== n.name && <div class="muted">{n.hostname}</div>}
        {n.ephemeral && <span class="tag">ephemeral</span>}
      </td>
      <td class="addr">
        {(n.addresses ?? []).map((a) => (
          <div key={a}>{a.split('/')[0]}</div>
        ))}
      </td>
      <td>
        {n.user && <div>{n.user}</div>}
        <Tags tags={n.tags} testid="node-tag" />
      </td>
      <td data-testid="node-status">
        <span class={`dot${online ? ' on' : ''}`} aria-hidden="true" />
        {online ? 'online' : `seen ${ago(n.lastSeen, now)}`}
      </td>
      <td data-testid="node-path">{online ? pathText(n) : '—'}</td>
      <td class={n.expired ? 'bad' : ''}>{expiry}</td>
      <td class="actions">
        {mode === 'view' && (
          <div class="buttons">
            <button type="button" class="secondary small" disabled={busy || n.expired} onClick={() => void act(() => api.expireNode(n.id))} data-testid="node-expire">
              Expire
            </button>
            <button
              type="button"
              class="secondary small"
              disabled={busy}
              onClick={() => {
                setTags((n.tags ?? []).join(', '));
                setMode('tags');
              }}
              data-testid="node-edit-tags"
            >
              Tags
            </button>
            <button type="button" class="danger small" disabled={busy} onClick={() => setMode('delete')} data-testid="node-delete">
              Delete
            </button>
          </div>
        )}
        {mode === 'tags' && (
          <form
            class="inline"
            onSubmit={(e) => {
              e.preventDefault();
              void act(() => api.setTags(n.id, splitTags(tags)));
            }}
          >
            <input aria-label={`tags of ${n.name}`} placeholder="tag:server, tag:web" value={tags} onInput={(e) => setTags(e.currentTarget.value)} data-testid="node-tags-input" />
            <button type="submit" class="small" disabled={busy} data-testid="node-tags-save">
              Save
            </button>
            <button type="button" class="secondary small" onClick={() => setMode('view')}>
              Cancel
            </button>
          </form>
        )}
        {mode === 'delete' && (
          <div class="buttons">
            <span>Delete {n.name}?</span>
            <button type="button" class="danger small" disabled={busy} onClick={() => void act(() => api.deleteNode(n.id))} data-testid="node-delete-confirm">
              Delete
            </button>
            <button type="button" class="secondary small" onClick={() => setMode('view')} data-testid="node-delete-cancel">
              Keep
            </button>
          </div>
        )}
      </td>
    </tr>
  );
}

function PendingRow({ r, users, onChange, onError }: { r: Registration; users: UserView[]; onChange: () => void; onError: (f: Failure | null) => void }) {
  const [user, setUser] = useState('');
  const [busy, run] = useAction(onError);
  const chosen = user || users[0]?.name || '';
  const approve = async (e: Event) => {
    e.preventDefault();
    await run(async () => {
      await api.approve(r.id, chosen);
      onChange();
    });
  };
  return (
    <li data-testid="registration" data-hostname={r.hostname ?? ''}>
      <form class="inline" onSubmit={approve}>
        <span>
          <strong>{r.hostname ?? r.id}</strong> <span class="muted">asked {ago(r.createdAt)}</span>
          <Tags tags={r.tags} />
        </span>
        <UserSelect label={`user for ${r.hostname ?? r.id}`} users={users} value={chosen} set={setUser} testid="registration-user" />
        <button type="submit" class="small" disabled={busy || !chosen} data-testid="registration-approve">
          Approve
        </button>
      </form>
    </li>
  );
}

export function NodesPage() {
  const [nodes, setNodes] = useState<NodeView[] | null>(null);
  const [pending, setPending] = useState<Registration[]>([]);
  const [users, setUsers] = useState<UserView[]>([]);
  const [loadError, setLoadError] = useState<Failure | null>(null);
  const [error, setError] = useState<Failure | null>(null);
  const [now, setNow] = useState(Date.now());
  const load = async () => {
    try {
      const [n, p, u] = await Promise.all([api.nodes(), api.registrations(), api.users()]);
      setNodes(n.sort((a, b) => a.name.localeCompare(b.name)));
      setPending(p);
      setUsers(u);
      setNow(Date.now());
      setLoadError(null);
    } catch (e) {
      setLoadError(toFailure(e));
    }
  };
  usePoll(load, REFRESH_MS);
  return (
    <section class="card" aria-labelledby="nodes-h">
      <div class="head">
        <h2 id="nodes-h">Nodes {nodes && <span class="muted">({nodes.length})</span>}</h2>
        <button type="button" class="secondary small" onClick={() => void load()} data-testid="nodes-refresh">
          Refresh
        </button>
      </div>
      <ErrorLine error={loadError} testid="nodes-load-error" />
      <ErrorLine error={error} testid="nodes-error" />
      {pending.length > 0 && (
        <div class="pending">
          <h3>Waiting for approval</h3>
          <ul class="plain">
            {pending.map((r) => (
              <PendingRow key={r.id} r={r} users={users} onChange={() => void load()} onError={setError} />
            ))}
          </ul>
        </div>
      )}
      {nodes === null ? (
        <p class="muted">Loading…</p>
      ) : nodes.length === 0 ? (
        <p class="muted" data-testid="nodes-empty">
          No nodes yet: create an auth key and run <code>pierce up --authkey …</code>.
        </p>
      ) : (
        <Table testid="nodes-table" head={['Name', 'Addresses', 'User / tags', 'Status', 'Path', 'Key expiry']} actions>
          {nodes.map((n) => (
            <NodeRow key={n.id} n={n} now={now} onChange={() => void load()} onError={setError} />
          ))}
        </Table>
      )}
    </section>
  );
}
