/**
 * Typed errors with stable codes. Every parser and state machine in Pierce throws (or returns)
 * one of these for bad input; `code` is stable and meant for programs, `message` for people.
 */
export class PierceError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Malformed key material or text forms of keys. */
export class KeyError extends PierceError {}

/** Cryptographic failure: authentication failed, low-order point, bad lengths. */
export class CryptoError extends PierceError {}

/** Returns true when `e` is a PierceError with the given code (or any code when omitted). */
export function isPierceError(e: unknown, code?: string): e is PierceError {
  return e instanceof PierceError && (code === undefined || e.code === code);
}
