/** Typed-error helpers shared by the codec tests. */
import { expect } from 'vitest';
import { PierceError } from '../../src/errors.ts';

type ErrorClass = abstract new (...args: never[]) => PierceError;

/**
 * The `code` of the error `f` throws (which must be a `cls`; anything else fails the test), or
 * `none` when it throws nothing.
 */
export function thrownCode(f: () => unknown, cls: ErrorClass = PierceError, none = 'no error'): string {
  try {
    f();
  } catch (e) {
    if (e instanceof cls) return e.code;
    throw e;
  }
  return none;
}

/** Asserts that `f` throws a `cls` with `code`. */
export function expectCode(f: () => unknown, cls: ErrorClass, code: string): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(cls);
  expect((caught as PierceError).code).toBe(code);
}
