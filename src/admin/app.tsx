/**
 * The console's top level: the session (GET /me at start; any 401 returns to the login form),
 * the header with logout, and the four pages behind tabs (#nodes, #keys, #policy, #audit).
 */
import { useEffect, useState } from 'preact/hooks';
import { api, setUnauthorizedHandler, type Admin } from './api.ts';
import { AuditPage } from './audit.tsx';
import { KeysPage } from './keys.tsx';
import { Login } from './login.tsx';
import { NodesPage } from './nodes.tsx';
import { PolicyPage } from './policy.tsx';

const TABS = [
  ['nodes', 'Nodes'],
  ['keys', 'Keys & shares'],
  ['policy', 'Policy'],
  ['audit', 'Audit log'],
] as const;
type Tab = (typeof TABS)[number][0];

function tabOfHash(): Tab {
  const h = location.hash.slice(1);
  return (TABS.find(([t]) => t === h)?.[0] ?? 'nodes') as Tab;
}

export function App() {
  // undefined: not known yet (GET /me in flight); null: logged out.
  const [admin, setAdmin] = useState<Admin | null | undefined>(undefined);
  const [notice, setNotice] = useState<string | undefined>();
  const [tab, setTab] = useState<Tab>(tabOfHash);
  // The policy editor stays mounted (hidden) once opened, so that unsaved edits survive a tab switch.
  const [policyOpened, setPolicyOpened] = useState(false);
  useEffect(() => {
    if (tab === 'policy') setPolicyOpened(true);
  }, [tab]);

  useEffect(() => {
    setUnauthorizedHandler(() => {
      setAdmin((a) => {
        if (a) setNotice('Your session ended: log in again.');
        return null;
      });
    });
    api.me().then(
      (r) => setAdmin(r.admin ?? null),
      () => setAdmin(null),
    );
    const onHash = () => setTab(tabOfHash());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  const logout = async () => {
    await api.logout().catch(() => {});
    setNotice(undefined);
    setAdmin(null);
  };

  if (admin === undefined) return <p class="muted">Loading…</p>;
  if (admin === null)
    return (
      <div class="page">
        <header>
          <h1>Pierce admin</h1>
        </header>
        <Login
          notice={notice}
          onLogin={(a) => {
            setNotice(undefined);
            setAdmin(a);
          }}
        />
      </div>
    );
  return (
    <div class="page" data-testid="console">
      <header>
        <h1>Pierce admin</h1>
        <span class="who">
          <span class="muted" data-testid="admin-name">
            {admin.name}
          </span>
          <button type="button" class="secondary" onClick={logout} data-testid="logout">
            Log out
          </button>
        </span>
      </header>
      <nav class="tabs admin-tabs" aria-label="sections">
        {TABS.map(([t, label]) => (
          <a key={t} href={`#${t}`} class={`tab-link${t === tab ? ' active' : ''}`} aria-current={t === tab ? 'page' : undefined} data-testid={`tab-${t}`}>
            {label}
          </a>
        ))}
      </nav>
      {tab === 'nodes' && <NodesPage />}
      {tab === 'keys' && <KeysPage />}
      {(tab === 'policy' || policyOpened) && (
        <div hidden={tab !== 'policy'}>
          <PolicyPage />
        </div>
      )}
      {tab === 'audit' && <AuditPage />}
    </div>
  );
}
