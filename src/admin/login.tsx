/** The login form: name and password → POST /login, which sets the session cookie. */
import { useState } from 'preact/hooks';
import { api, type Admin } from './api.ts';
import { ErrorLine, useAction, type Failure } from './util.tsx';

export function Login({ onLogin, notice }: { onLogin: (a: Admin) => void; notice?: string | undefined }) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<Failure | null>(null);
  const [busy, run] = useAction((f) => setError(f?.code === 'BAD_LOGIN' ? { ...f, message: 'wrong name or password' } : f));
  const submit = async (e: Event) => {
    e.preventDefault();
    await run(async () => {
      const r = await api.login(name.trim(), password);
      setPassword('');
      onLogin(r.admin ?? { name: name.trim() });
    });
  };
  return (
    <form class="card login" onSubmit={submit} data-testid="login-form">
      <h2>Log in to the admin console</h2>
      {notice && <p class="muted">{notice}</p>}
      <label>
        Name
        <input name="name" autoComplete="username" required value={name} onInput={(e) => setName(e.currentTarget.value)} data-testid="login-name" />
      </label>
      <label>
        Password
        <input name="password" type="password" autoComplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} data-testid="login-password" />
      </label>
      <ErrorLine error={error} testid="login-error" />
      <button type="submit" disabled={busy} data-testid="login-submit">
        {busy ? 'Logging in…' : 'Log in'}
      </button>
    </form>
  );
}
