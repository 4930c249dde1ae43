/**
 * SSH terminals as tabs. Each pane owns an xterm (DOM renderer: its text is readable from
 * `.xterm-rows`) and the MessagePort of its session in the worker: keystrokes go out and
 * output comes in as transferred ArrayBuffers; output is acknowledged once xterm has parsed it
 * (the worker pauses the SSH channel when too much is unacknowledged).
 */
import * as Comlink from 'comlink';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ApiError, HostKeyNotice, SshAuth, SshPageMessage, SshPortMessage } from '../../worker/api.ts';
import type { Api } from './app.tsx';
import { ErrorBanner } from './banner.tsx';
import '@xterm/xterm/css/xterm.css';

export interface TermSpec {
  id: number;
  host: string;
  user: string;
  port: number;
  auth: SshAuth;
}

type TermState = 'connecting' | 'open' | 'closed';

interface Kbd {
  name: string;
  instruction: string;
  prompts: { prompt: string; echo: boolean }[];
}

function TerminalPane({ api, spec, visible, onState }: { api: Api; spec: TermSpec; visible: boolean; onState: (s: TermState) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<TermState>('connecting');
  const [wasOpen, setWasOpen] = useState(false);
  const [hostKey, setHostKey] = useState<HostKeyNotice | null>(null);
  const [exit, setExit] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [kbd, setKbd] = useState<Kbd | null>(null);
  const portRef = useRef<MessagePort | null>(null);
  const fitRef = useRef<(() => void) | null>(null);

  useEffect(() => {
    let disposed = false;
    let cleanup = () => {};
    void (async () => {
      const [{ Terminal }, { FitAddon }] = await Promise.all([import('@xterm/xterm'), import('@xterm/addon-fit')]);
      if (disposed || !box.current) return;
      const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 5000, fontFamily: 'ui-monospace, Menlo, Consolas, monospace' });
      const fit = new FitAddon();
      term.loadAddon(fit);
      term.open(box.current);
      // xterm stops drawing while it is out of view; the user just asked for this terminal.
      box.current.scrollIntoView({ block: 'nearest' });
      const doFit = () => {
        if (box.current?.offsetParent) {
          try {
            fit.fit();
          } catch {
            /* not laid out */
          }
        }
      };
      doFit();
      fitRef.current = doFit;
      const ch = new MessageChannel();
      const port = ch.port1;
      portRef.current = port;
      const send = (m: SshPageMessage, transfer: Transferable[] = []) => port.postMessage(m, transfer);
      const enc = new TextEncoder();
      const sendText = (s: string) => {
        const b = enc.encode(s);
        send({ t: 'data', buf: b.buffer }, [b.buffer]);
      };
      term.onData(sendText);
      term.onBinary((s) => {
        const b = Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
        send({ t: 'data', buf: b.buffer }, [b.buffer]);
      });
      term.onResize(({ cols, rows }) => send({ t: 'resize', cols, rows }));
      // Ctrl+Shift+C / Ctrl+Shift+V copy and paste (plain Ctrl+C stays an interrupt).
      term.attachCustomKeyEventHandler((e) => {
        if (e.type !== 'keydown' || !e.ctrlKey || !e.shiftKey) return true;
        if (e.code === 'KeyC') {
          const sel = term.getSelection();
          if (sel) void navigator.clipboard?.writeText(sel).catch(() => {});
          return false;
        }
        if (e.code === 'KeyV') {
          void navigator.clipboard
            ?.readText()
            .then((t) => term.paste(t))
            .catch(() => {});
          return false;
        }
        return true;
      });
      port.onmessage = (ev: MessageEvent<SshPortMessage>) => {
        const m = ev.data;
        switch (m.t) {
          case 'state':
            setState(m.state);
            onState(m.state);
            if (m.state === 'open') {
              setWasOpen(true);
              box.current?.scrollIntoView({ block: 'nearest' });
              term.focus();
            }
            return;
          case 'hostkey':
            setHostKey(m.notice);
            return;
          case 'banner':
            term.write(m.text.replace(/\r?\n/g, '\r\n'));
            return;
          case 'kbd':
            setKbd({ name: m.name, instruction: m.instruction, prompts: m.prompts });
            return;
          case 'data': {
            const n = m.buf.byteLength;
            term.write(new Uint8Array(m.buf), () => send({ t: 'ack', bytes: n }));
            return;
          }
          case 'exit':
            setExit(m.exitStatus !== undefined ? `exited with status ${m.exitStatus}` : m.exitSignal ? `killed by signal ${m.exitSignal}` : 'session closed');
            if (m.error) setError(m.error);
            return;
          case 'error':
            setError(m.error);
            return;
        }
      };
      const ro = new ResizeObserver(() => doFit());
      ro.observe(box.current);
      cleanup = () => {
        ro.disconnect();
        try {
          send({ t: 'close' });
        } catch {
          /* closed */
        }
        port.close();
        term.dispose();
      };
      const r = await api.sshConnect(
        { host: spec.host, port: spec.port, username: spec.user, auth: spec.auth, cols: term.cols, rows: term.rows, term: 'xterm-256color' },
        Comlink.transfer(ch.port2, [ch.port2]),
      );
      if (!r.ok) setError(r.error);
    })();
    return () => {
      disposed = true;
      cleanup();
    };
  }, []);

  useEffect(() => {
    if (visible) fitRef.current?.();
  }, [visible]);

  const answer = (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const responses = [...form.querySelectorAll('input')].map((i) => i.value);
    portRef.current?.postMessage({ t: 'kbd', responses } satisfies SshPageMessage);
    setKbd(null);
  };

  return (
    <div class="pane" style={{ display: visible ? 'flex' : 'none' }}>
      {hostKey && (
        <p class={`hostkey ${hostKey.status}`} data-testid="hostkey" data-status={hostKey.status} data-fingerprint={hostKey.fingerprint}>
          {hostKey.status === 'new' ? 'new host key' : 'host key'} {hostKey.fingerprint}
          {hostKey.status === 'new' ? ', remembered' : ', as remembered'} ({hostKey.host})
        </p>
      )}
      {error && <ErrorBanner error={error} />}
      {kbd && (
        <form class="kbd" onSubmit={answer} data-testid="kbd-form">
          {kbd.instruction && <p>{kbd.instruction}</p>}
          {kbd.prompts.map((p, i) => (
            <label key={i}>
              {p.prompt}
              {p.echo ? <input type="text" autoFocus={i === 0} data-testid="kbd-input" /> : <input type="password" autoFocus={i === 0} data-testid="kbd-input" />}
            </label>
          ))}
          <button type="submit" data-testid="kbd-submit">
            Send
          </button>
        </form>
      )}
      <div class={`term-box ${state === 'closed' && !wasOpen ? 'failed' : ''}`} ref={box} data-testid="terminal" data-state={state} data-host={spec.host} />
      {exit && (
        <p class="exit" data-testid="exit-status">
          {exit}
        </p>
      )}
    </div>
  );
}

export function Terminals({
  api,
  terms,
  active,
  onActivate,
  onClose,
}: {
  api: Api;
  terms: TermSpec[];
  active: number | null;
  onActivate: (id: number) => void;
  onClose: (id: number) => void;
}) {
  const [states, setStates] = useState<Record<number, TermState>>({});
  const shown = active ?? terms[terms.length - 1]?.id;
  return (
    <section class="card terminals">
      <div class="tabs" role="tablist">
        {terms.map((t) => (
          <div key={t.id} class={`tab ${t.id === shown ? 'active' : ''} ${states[t.id] ?? 'connecting'}`} role="tab" aria-selected={t.id === shown}>
            <button type="button" class="tab-title" onClick={() => onActivate(t.id)} data-testid="terminal-tab">
              {t.user}@{t.host}
              {t.port !== 22 ? `:${t.port}` : ''}
            </button>
            <button type="button" class="close" aria-label="close terminal" onClick={() => onClose(t.id)} data-testid="terminal-close">
              ×
            </button>
          </div>
        ))}
      </div>
      {terms.map((t) => (
        <TerminalPane key={t.id} api={api} spec={t} visible={t.id === shown} onState={(s) => setStates((x) => ({ ...x, [t.id]: s }))} />
      ))}
    </section>
  );
}
