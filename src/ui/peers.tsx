/** The self line and the live peer list (ping and SSH per peer). */
import { useState } from 'preact/hooks';
import type { WorkerStatus, PingOutcome, ApiError } from '../../worker/api.ts';
import type { Api } from './app.tsx';

type Peer = WorkerStatus['peers'][number];

const bare = (a: string) => a.split('/')[0]!;

export function SelfLine({ status }: { status: WorkerStatus }) {
  const home = status.relays.find((r) => r.region === status.homeRelay);
  return (
    <p class="self" data-testid="self" data-state={status.state}>
      {status.self ? (
        <>
          <strong>{status.self.name}</strong> <span class="addr">{status.self.addrs.map(bare).join(' ')}</span>
        </>
      ) : (
        <em>{status.state === 'needs-login' ? 'waiting for login' : 'joining…'}</em>
      )}
      <span class="meta">
        {status.ephemeral ? ' · ephemeral' : ''}
        {home ? ` · relay ${home.code}${home.latencyMs !== null ? ` ${home.latencyMs.toFixed(0)} ms` : ''}${home.connected ? '' : ' (down)'}` : ''}
        {status.self && status.lease.enabled ? ` · UDP lease ${status.lease.connected ? 'up' : 'down'}` : ''}
        {status.self && !status.controlConnected ? ' · control unreachable' : ''}
        {status.state === 'expired' ? ' · key expired: log in again' : ''}
      </span>
    </p>
  );
}

interface QuickSsh {
  /** The login of the one-click SSH button (`#user=`), for hosts with the built-in server. */
  quickUser?: string;
  onQuickSsh?: (name: string) => void;
}

function PeerRow({ api, peer, onSsh, quickUser, onQuickSsh }: { api: Api; peer: Peer; onSsh: (name: string) => void } & QuickSsh) {
  const [ping, setPing] = useState<{ busy: boolean; result?: PingOutcome; error?: ApiError }>({ busy: false });
  const doPing = async () => {
    setPing({ busy: true });
    const r = await api.ping(peer.name);
    setPing(r.ok ? { busy: false, result: r.value } : { busy: false, error: r.error });
  };
  const path = peer.direct ? 'direct' : 'relay';
  return (
    <li class={`peer ${peer.online ? 'online' : 'offline'}`} data-testid="peer" data-name={peer.name} data-online={String(peer.online)} data-path={path}>
      <div class="who">
        <span class="dot" aria-label={peer.online ? 'online' : 'offline'} />
        <strong>{peer.name}</strong> <span class="addr">{peer.addrs.map(bare).join(' ')}</span>
        {peer.tags.map((t) => (
          <span class="tag" key={t}>
            {t}
          </span>
        ))}
      </div>
      <div class="path">
        {peer.online ? 'online' : 'offline'} · {path}
        {peer.direct && peer.directRttMs !== null ? ` ${peer.directRttMs.toFixed(1)} ms` : ''} <span class="via">({peer.path})</span>
      </div>
      <div class="actions">
        <button type="button" class="secondary" onClick={doPing} disabled={ping.busy} data-testid="peer-ping">
          {ping.busy ? 'Pinging…' : 'Ping'}
        </button>
        {quickUser && onQuickSsh && (
          <button type="button" onClick={() => onQuickSsh(peer.name)} disabled={!peer.online} data-testid="peer-ssh-quick">
            SSH as {quickUser}
          </button>
        )}
        <button type="button" class={quickUser ? 'secondary' : ''} onClick={() => onSsh(peer.name)} data-testid="peer-ssh">
          {quickUser ? 'SSH…' : 'SSH'}
        </button>
        {(ping.result || ping.error) && (
          <span class={`ping ${ping.error ? 'bad' : ''}`} data-testid="ping-result" data-code={ping.error?.code ?? 'OK'}>
            {ping.result ? `pong via ${ping.result.path} in ${ping.result.ms.toFixed(1)} ms` : ping.error!.message}
          </span>
        )}
      </div>
    </li>
  );
}

export function PeerList({ api, status, onSsh, quickUser, onQuickSsh }: { api: Api; status: WorkerStatus; onSsh: (name: string) => void } & QuickSsh) {
  const peers = [...status.peers].sort((a, b) => Number(b.online) - Number(a.online) || a.name.localeCompare(b.name));
  return (
    <section class="card">
      <h2>Peers</h2>
      {peers.length === 0 ? (
        <p class="muted">No peers visible: the policy shows you only the nodes you may reach.</p>
      ) : (
        <ul class="peers">
          {peers.map((p) => (
            <PeerRow key={p.name} api={api} peer={p} onSsh={onSsh} {...(quickUser && onQuickSsh ? { quickUser, onQuickSsh } : {})} />
          ))}
        </ul>
      )}
    </section>
  );
}
