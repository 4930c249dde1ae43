/** The page's top level: join, the self line, peers, the SSH form, terminals, error banners. */
import * as Comlink from 'comlink';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import type { ApiError, PierceApi, SshAuth, WorkerStatus } from '../../worker/api.ts';
import type { PageOptions } from './fragment.ts';
import { JoinForm } from './join.tsx';
import { PeerList, SelfLine } from './peers.tsx';
import { SshForm } from './ssh-form.tsx';
import { Terminals, type TermSpec } from './terminals.tsx';
import { ErrorBanner } from './banner.tsx';

export type Api = Comlink.Remote<PierceApi>;

let nextTermId = 1;

export function App({ api, options }: { api: Api; options: PageOptions }) {
  const [status, setStatus] = useState<WorkerStatus | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [sshFor, setSshFor] = useState<string | null>(null);
  const [terms, setTerms] = useState<TermSpec[]>([]);
  const [active, setActive] = useState<number | null>(null);
  const autoSshDone = useRef(false);
  const started = useRef(false);

  useEffect(() => {
    void api.subscribe(Comlink.proxy((s: WorkerStatus) => setStatus(s)));
  }, [api]);

  const join = useCallback(
    async (o: { controlUrl: string; authKey?: string; ephemeral?: boolean; hostname?: string } | 'rejoin') => {
      setBusy(true);
      setError(null);
      try {
        const r = o === 'rejoin' ? await api.rejoin() : await api.join({ ...o, leases: options.leases });
        if (!r.ok) setError(r.error);
        else setStatus(r.value);
      } catch (e) {
        setError({ code: 'JOIN_FAILED', message: (e as Error).message });
      } finally {
        setBusy(false);
      }
    },
    [api, options.leases],
  );

  // Automatic join: #authkey=… in the fragment, or a saved (non-ephemeral) session.
  useEffect(() => {
    if (started.current || !status) return;
    started.current = true;
    if (status.joined) return;
    if (options.authKey) {
      void join({ controlUrl: options.control, authKey: options.authKey, ephemeral: options.ephemeral, ...(options.hostname ? { hostname: options.hostname } : {}) });
    } else if (status.saved) void join('rejoin');
  }, [status, options, join]);

  const openTerminal = useCallback((t: { host: string; user: string; port: number; auth: SshAuth }) => {
    const id = nextTermId++;
    setTerms((ts) => [...ts, { id, ...t }]);
    setActive(id);
    setSshFor(null);
  }, []);

  // Automatic SSH: #ssh=user@peer once the peer is in the netmap and online.
  useEffect(() => {
    const a = options.ssh;
    const host = a?.host ?? options.sshFormFor;
    if (!host || autoSshDone.current || status?.state !== 'running') return;
    const p = status.peers.find((x) => x.name === host || x.addrs.some((ad) => ad.split('/')[0] === host));
    if (!p || !p.online) return;
    autoSshDone.current = true;
    if (a) openTerminal({ host: a.host, user: a.user, port: a.port, auth: a.auth });
    else setSshFor(host);
  }, [status, options.ssh, options.sshFormFor, openTerminal]);

  // Control deleted this node (a revoked or expired share link, an admin): the session is over.
  const ended = status?.state === 'stopped' && status.lastError?.code === 'NODE_DELETED';
  useEffect(() => {
    if (ended) setTerms([]);
  }, [ended]);

  const leave = async () => {
    setBusy(true);
    try {
      await api.leave();
    } finally {
      setBusy(false);
      setTerms([]);
      setStatus(await api.status());
    }
  };

  const joined = !!status?.joined;
  const loginUrl = status?.loginUrl;
  const controlError = status?.lastError && status.state !== 'running' ? status.lastError : null;

  return (
    <div class="page">
      <header>
        <h1>Pierce</h1>
        {joined && (
          <button type="button" class="secondary" onClick={leave} disabled={busy} data-testid="leave">
            Leave
          </button>
        )}
      </header>
      {error && <ErrorBanner error={error} onClose={() => setError(null)} />}
      {!error && controlError && (
        <ErrorBanner error={{ code: controlError.code, message: ended ? `This session has ended: ${controlError.message}` : controlError.message }} />
      )}
      {!joined && status && <JoinForm options={options} busy={busy} saved={status.saved} onJoin={join} />}
      {loginUrl && status?.state === 'needs-login' && (
        <p class="notice">
          Log in to add this browser to the mesh:{' '}
          <a href={loginUrl} target="_blank" rel="noopener" data-testid="login-url">
            {loginUrl}
          </a>
        </p>
      )}
      {joined && status && <SelfLine status={status} />}
      {joined && status && status.self && !ended && (
        <PeerList
          api={api}
          status={status}
          onSsh={(name) => setSshFor(name)}
          {...(options.quickUser ? { quickUser: options.quickUser, onQuickSsh: (name: string) => openTerminal({ host: name, user: options.quickUser!, port: 22, auth: { kind: 'publickey' } }) } : {})}
        />
      )}
      {sshFor && <SshForm api={api} host={sshFor} onCancel={() => setSshFor(null)} onConnect={openTerminal} />}
      {terms.length > 0 && (
        <Terminals
          api={api}
          terms={terms}
          active={active}
          onActivate={setActive}
          onClose={(id) => {
            setTerms((ts) => ts.filter((t) => t.id !== id));
            setActive((a) => (a === id ? (terms.find((t) => t.id !== id)?.id ?? null) : a));
          }}
        />
      )}
    </div>
  );
}
