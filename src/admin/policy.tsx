/**
 * The policy editor: a monospace textarea with a line-number gutter (no editor library: the
 * console stays small). It loads GET /policy; 300 ms after the last keystroke it asks control
 * to check the text (POST /policy/check: parse, validate, run the `tests`) and shows
 * "valid · N rules · M tests passed", or the error at "line L, column C" (that line marked in
 * the gutter), or the failing tests. Save (PUT /policy) is enabled only for a changed text
 * whose check passed; a refusal from PUT (422) is shown too.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type PolicyCheck } from './api.ts';
import { ErrorLine, toFailure, type Failure } from './util.tsx';

const CHECK_DELAY_MS = 300;

/** The error's line and column: from the check's fields, else from "… at 12:5 …" in its message. */
export function errorPlace(c: PolicyCheck): { line: number; column: number | undefined } | undefined {
  if (typeof c.line === 'number' && c.line > 0) return { line: c.line, column: typeof c.column === 'number' ? c.column : undefined };
  const m = /\b(?:at |line )(\d+)(?::(\d+)|, column (\d+))?/.exec(c.error ?? '');
  if (!m) return undefined;
  const col = m[2] ?? m[3];
  return { line: Number(m[1]), column: col ? Number(col) : undefined };
}

/** Character offset of the start of 1-based `line`. */
function lineOffset(text: string, line: number): number {
  let at = 0;
  for (let l = 1; l < line; l++) {
    const nl = text.indexOf('\n', at);
    if (nl < 0) return text.length;
    at = nl + 1;
  }
  return at;
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

export function PolicyPage() {
  const [saved, setSaved] = useState<string | null>(null);
  const [text, setText] = useState('');
  const [check, setCheck] = useState<{ text: string; result: PolicyCheck } | null>(null);
  // The check itself failed (control unreachable, an old control without /policy/check).
  const [checkError, setCheckError] = useState<{ text: string; error: Failure } | null>(null);
  const [loadError, setLoadError] = useState<Failure | null>(null);
  const [saveError, setSaveError] = useState<Failure | null>(null);
  const [savedNote, setSavedNote] = useState('');
  const [saving, setSaving] = useState(false);
  const seq = useRef(0);
  const area = useRef<HTMLTextAreaElement>(null);
  const gutter = useRef<HTMLDivElement>(null);

  const load = async () => {
    setLoadError(null);
    try {
      const p = await api.policy();
      setSaved(p.text ?? '');
      setText(p.text ?? '');
    } catch (e) {
      setLoadError(toFailure(e));
    }
  };
  useEffect(() => void load(), []);

  // The debounced check of the current text; an older answer never overwrites a newer one.
  useEffect(() => {
    if (saved === null) return;
    const my = ++seq.current;
    const t = setTimeout(() => {
      api.checkPolicy(text).then(
        (result) => {
          if (my !== seq.current) return;
          setCheck({ text, result });
          setCheckError(null);
        },
        (e) => {
          if (my === seq.current) setCheckError({ text, error: toFailure(e) });
        },
      );
    }, CHECK_DELAY_MS);
    return () => clearTimeout(t);
  }, [text, saved]);

  const dirty = saved !== null && text !== saved;
  useEffect(() => {
    if (!dirty) return;
    const warn = (e: BeforeUnloadEvent) => e.preventDefault();
    addEventListener('beforeunload', warn);
    return () => removeEventListener('beforeunload', warn);
  }, [dirty]);

  const current = check && check.text === text ? check.result : null;
  const failures = current?.failures ?? [];
  const place = current && !current.valid ? errorPlace(current) : undefined;
  const unchecked = !current && checkError?.text === text ? checkError.error : null;
  const state = unchecked ? 'unchecked' : !current ? 'checking' : !current.valid ? 'invalid' : failures.length > 0 ? 'failing' : 'valid';
  // Unchecked: Save stays possible, control validates the policy (and runs its tests) on PUT anyway.
  const canSave = dirty && (state === 'valid' || state === 'unchecked') && !saving;

  const save = async () => {
    if (!canSave) return;
    setSaving(true);
    setSaveError(null);
    setSavedNote('');
    const t = text;
    try {
      const r = await api.setPolicy(t);
      setSaved(t);
      setSavedNote(`saved${typeof r.rules === 'number' ? ` · ${plural(r.rules, 'rule')}` : ''}: nodes get the new filters now`);
    } catch (e) {
      setSaveError(toFailure(e));
    } finally {
      setSaving(false);
    }
  };

  const goTo = (line: number) => {
    const ta = area.current;
    if (!ta) return;
    const start = lineOffset(text, line);
    const end = text.indexOf('\n', start);
    ta.focus();
    ta.setSelectionRange(start, end < 0 ? text.length : end);
  };

  const lines = text.split('\n').length;
  return (
    <section class="card policy" aria-labelledby="policy-h">
      <div class="head">
        <h2 id="policy-h">
          Policy{' '}
          {dirty && (
            <span class="dirty" data-testid="policy-dirty">
              · unsaved changes
            </span>
          )}
        </h2>
        <div class="buttons">
          <button type="button" class="secondary" disabled={!dirty || saving} onClick={() => setText(saved ?? '')} data-testid="policy-revert">
            Revert
          </button>
          <button type="button" disabled={!canSave} onClick={() => void save()} data-testid="policy-save">
            {saving ? 'Saving…' : 'Save'}
          </button>
        </div>
      </div>
      <ErrorLine error={loadError} testid="policy-load-error" />
      <p class={`policy-status ${state}`} role="status" aria-live="polite" data-testid="policy-status" data-state={state}>
        {state === 'checking' && 'checking…'}
        {state === 'unchecked' && `could not check the policy (${unchecked?.code}: ${unchecked?.message}); control checks it again on Save`}
        {state === 'valid' && `valid · ${plural(current?.rules ?? 0, 'rule')} · ${plural(current?.tests ?? 0, 'test')} passed`}
        {state === 'failing' && `valid · ${plural(current?.rules ?? 0, 'rule')} · ${failures.length} of ${plural(current?.tests ?? 0, 'test')} failed`}
        {state === 'invalid' && (
          <span data-testid="policy-error" data-code={current?.code ?? ''} data-line={place?.line ?? ''}>
            {place && (
              <button type="button" class="link" onClick={() => goTo(place.line)} data-testid="policy-error-place">
                line {place.line}
                {place.column !== undefined ? `, column ${place.column}` : ''}
              </button>
            )}
            {place ? ': ' : ''}
            {current?.error ?? 'invalid'}
          </span>
        )}
      </p>
      {failures.length > 0 && (
        <ul class="failures" data-testid="policy-failures">
          {failures.map((f, i) => (
            <li key={i} data-testid="policy-failure">
              {f.message}
            </li>
          ))}
        </ul>
      )}
      <div class="editor">
        <div class="gutter" ref={gutter} aria-hidden="true" data-testid="policy-gutter">
          {Array.from({ length: lines }, (_, i) => (
            <div key={i} class={place?.line === i + 1 ? 'err' : undefined} data-testid={place?.line === i + 1 ? 'gutter-error' : undefined}>
              {i + 1}
            </div>
          ))}
        </div>
        <textarea
          ref={area}
          aria-label="policy (HuJSON)"
          spellcheck={false}
          wrap="off"
          autoComplete="off"
          value={text}
          disabled={saved === null}
          onInput={(e) => {
            setText(e.currentTarget.value);
            setSavedNote('');
            setSaveError(null);
          }}
          onScroll={(e) => {
            if (gutter.current) gutter.current.scrollTop = e.currentTarget.scrollTop;
          }}
          onKeyDown={(e) => {
            if ((e.ctrlKey || e.metaKey) && e.key === 's') {
              e.preventDefault();
              void save();
            }
          }}
          data-testid="policy-text"
        />
      </div>
      <ErrorLine error={saveError} testid="policy-save-error" />
      {savedNote && (
        <p class="ok" role="status" data-testid="policy-saved">
          {savedNote}
        </p>
      )}
    </section>
  );
}
