/** The SSH connect form for one peer: user, port, authentication method. */
import { useEffect, useState } from 'preact/hooks';
import type { SshAuth } from '../../worker/api.ts';
import type { Api } from './app.tsx';

type Method = SshAuth['kind'];

export function SshForm({
  api,
  host,
  onCancel,
  onConnect,
}: {
  api: Api;
  host: string;
  onCancel: () => void;
  onConnect: (t: { host: string; user: string; port: number; auth: SshAuth }) => void;
}) {
  const [user, setUser] = useState(() => localStorage.getItem('pierce.sshUser') ?? 'root');
  const [port, setPort] = useState('22');
  const [method, setMethod] = useState<Method>('password');
  const [password, setPassword] = useState('');
  const [pubkey, setPubkey] = useState('');
  const [copied, setCopied] = useState(false);

  useEffect(() => {
    if (method === 'publickey' && !pubkey) void api.publicKeyLine().then(setPubkey, () => setPubkey('(join first)'));
  }, [method, api, pubkey]);

  const submit = (e: Event) => {
    e.preventDefault();
    try {
      localStorage.setItem('pierce.sshUser', user);
    } catch {
      /* private mode */
    }
    const auth: SshAuth = method === 'password' ? { kind: 'password', password } : method === 'publickey' ? { kind: 'publickey' } : { kind: 'keyboard-interactive' };
    onConnect({ host, user: user.trim(), port: Number(port) || 22, auth });
  };
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(pubkey);
      setCopied(true);
    } catch {
      const el = document.querySelector<HTMLTextAreaElement>('[data-testid="pubkey-line"]');
      el?.select();
    }
  };

  return (
    <form class="card ssh-form" onSubmit={submit}>
      <h2>SSH to {host}</h2>
      <div class="row">
        <label>
          User
          <input type="text" required value={user} autocapitalize="off" onInput={(e) => setUser(e.currentTarget.value)} data-testid="ssh-user" />
        </label>
        <label class="narrow">
          Port
          <input type="number" min="1" max="65535" value={port} onInput={(e) => setPort(e.currentTarget.value)} data-testid="ssh-port" />
        </label>
      </div>
      <label>
        Authentication
        <select value={method} onChange={(e) => setMethod(e.currentTarget.value as Method)} data-testid="ssh-auth">
          <option value="password">password</option>
          <option value="publickey">browser key</option>
          <option value="keyboard-interactive">keyboard-interactive</option>
        </select>
      </label>
      {method === 'password' && (
        <label>
          Password
          <input type="password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} data-testid="ssh-password" />
        </label>
      )}
      {method === 'publickey' && (
        <div class="pubkey">
          <p class="muted">Add this line to ~/.ssh/authorized_keys on {host}:</p>
          <textarea readonly rows={3} value={pubkey} data-testid="pubkey-line" onFocus={(e) => e.currentTarget.select()} />
          <button type="button" class="secondary" onClick={copy} data-testid="pubkey-copy">
            {copied ? 'Copied' : 'Copy'}
          </button>
        </div>
      )}
      {method === 'keyboard-interactive' && <p class="muted">The server's prompts will be asked in the terminal tab.</p>}
      <div class="buttons">
        <button type="submit" data-testid="ssh-connect">
          Connect
        </button>
        <button type="button" class="secondary" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
