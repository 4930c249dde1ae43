/** Markup the console's pages share: tables and listings, tag chips, form fields, the user picker, Revoke. */
import type { ComponentChildren } from 'preact';
import type { UserView } from './api.ts';

/** A scrolling table with a header row; `actions` adds the last, unlabelled (screen-reader "Actions") column. */
export function Table({ testid, head, actions = false, children }: { testid: string; head: string[]; actions?: boolean; children: ComponentChildren }) {
  return (
    <div class="table-wrap">
      <table data-testid={testid}>
        <thead>
          <tr>
            {head.map((h) => (
              <th key={h}>{h}</th>
            ))}
            {actions && (
              <th>
                <span class="sr-only">Actions</span>
              </th>
            )}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}

/** Nothing while `items` is loading, `empty` as a muted line when there are none, else a Table of `row(item)`. */
export function Listing<T>({ items, empty, row, ...table }: { items: T[] | null; empty: string; row: (item: T) => ComponentChildren; testid: string; head: string[]; actions?: boolean }) {
  if (!items) return null;
  if (items.length === 0) return <p class="muted">{empty}</p>;
  return <Table {...table}>{items.map(row)}</Table>;
}

/** Tag chips. */
export function Tags({ tags, testid }: { tags: string[] | null | undefined; testid?: string }) {
  return (
    <>
      {(tags ?? []).map((t) => (
        <span key={t} class="tag" data-testid={testid}>
          {t}
        </span>
      ))}
    </>
  );
}

/** An id cell with its description (if any) below it. */
export function IdCell({ id, description }: { id: string; description?: string | null | undefined }) {
  return (
    <td class="addr">
      {id}
      {description && <div class="muted">{description}</div>}
    </td>
  );
}

/** A labelled text input of a create form. */
export function Field({ label, value, set, testid, placeholder, narrow, inputMode }: { label: string; value: string; set: (v: string) => void; testid: string; placeholder?: string; narrow?: boolean; inputMode?: 'numeric' }) {
  return (
    <label class={narrow ? 'narrow' : undefined}>
      {label}
      <input inputMode={inputMode} placeholder={placeholder} value={value} onInput={(e) => set(e.currentTarget.value)} data-testid={testid} />
    </label>
  );
}

/** A <select> of the users by name. */
export function UserSelect({ users, value, set, testid, label, required }: { users: UserView[]; value: string; set: (v: string) => void; testid: string; label?: string; required?: boolean }) {
  return (
    <select aria-label={label} value={value} onChange={(e) => set(e.currentTarget.value)} data-testid={testid} required={required}>
      {users.map((u) => (
        <option key={u.id} value={u.name}>
          {u.name}
        </option>
      ))}
    </select>
  );
}

export function RevokeButton({ onClick, testid }: { onClick: () => void; testid: string }) {
  return (
    <button type="button" class="danger small" onClick={onClick} data-testid={testid}>
      Revoke
    </button>
  );
}
