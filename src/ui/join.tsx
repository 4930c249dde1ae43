/** The join form: control URL, auth key, ephemeral; or "Log in" (interactive, shows the login URL). */
import { useState } from 'preact/hooks';
import type { PageOptions } from './fragment.ts';

export interface JoinRequest {
  controlUrl: string;
  authKey?: string;
  ephemeral?: boolean;
  hostname?: string;
}

export function JoinForm({
  options,
  busy,
  saved,
  onJoin,
}: {
  options: PageOptions;
  busy: boolean;
  saved: { controlUrl: string; hostname: string } | undefined;
  onJoin: (r: JoinRequest | 'rejoin') => void;
}) {
  const [control, setControl] = useState(options.control);
  const [authKey, setAuthKey] = useState(options.authKey ?? '');
  const [hostname, setHostname] = useState(options.hostname ?? '');
  const [ephemeral, setEphemeral] = useState(options.ephemeral);
  const req = (withKey: boolean): JoinRequest => ({
    controlUrl: control.trim(),
    ...(withKey && authKey.trim() ? { authKey: authKey.trim() } : {}),
    ...(hostname.trim() ? { hostname: hostname.trim() } : {}),
    ephemeral,
  });
  return (
    <form
      class="card join"
      onSubmit={(e) => {
        e.preventDefault();
        onJoin(req(true));
      }}
    >
      <h2>Join a mesh</h2>
      <label>
        Control server
        <input type="url" required value={control} onInput={(e) => setControl(e.currentTarget.value)} data-testid="join-control" />
      </label>
      <label>
        Auth key
        <input type="password" autocomplete="off" placeholder="pak_… (or log in instead)" value={authKey} onInput={(e) => setAuthKey(e.currentTarget.value)} data-testid="join-authkey" />
      </label>
      <label>
        Name (optional)
        <input type="text" value={hostname} placeholder="browser-…" onInput={(e) => setHostname(e.currentTarget.value)} data-testid="join-hostname" />
      </label>
      <label class="check">
        <input type="checkbox" checked={ephemeral} onChange={(e) => setEphemeral(e.currentTarget.checked)} data-testid="join-ephemeral" />
        Ephemeral: keep keys in memory only; the node goes away with this tab
      </label>
      <div class="buttons">
        <button type="submit" disabled={busy || !authKey.trim()} data-testid="join-submit">
          {busy ? 'Joining…' : 'Join'}
        </button>
        <button type="button" class="secondary" disabled={busy} onClick={() => onJoin(req(false))} data-testid="join-login">
          Log in
        </button>
        {saved && (
          <button type="button" class="secondary" disabled={busy} onClick={() => onJoin('rejoin')} data-testid="join-rejoin">
            Rejoin as {saved.hostname}
          </button>
        )}
      </div>
    </form>
  );
}
