import type { ApiError } from '../../worker/api.ts';

/** An error banner: `data-testid="error"` with the stable code in `data-code`. */
export function ErrorBanner({ error, onClose }: { error: ApiError; onClose?: () => void }) {
  return (
    <div class="error" role="alert" data-testid="error" data-code={error.code}>
      <span class="code">{error.code}</span> {error.message}
      {error.expected && (
        <div class="fp">
          remembered <code>{error.expected}</code>
          <br />
          offered now <code>{error.got}</code>
        </div>
      )}
      {onClose && (
        <button type="button" class="close" aria-label="dismiss" onClick={onClose}>
          ×
        </button>
      )}
    </div>
  );
}
