/**
 * Admin accounts for the browser console: scrypt password hashes, in-memory login sessions
 * (a restart logs everyone out) and a per-name login throttle.
 *
 * Hash format: `scrypt$N$r$p$salt$hash` with base64 salt (16 bytes) and hash (32 bytes).
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { PierceError } from '../../../src/errors.ts';

export class AdminAuthError extends PierceError {}

const SCRYPT_N = 1 << 15;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const KEY_LEN = 32;
/** Session lifetime. */
export const SESSION_TTL_MS = 12 * 3_600_000;
/** Failures per name within THROTTLE_WINDOW_MS before logins for it are refused for that long. */
export const THROTTLE_FAILURES = 5;
export const THROTTLE_WINDOW_MS = 60_000;
export const MIN_PASSWORD_LENGTH = 8;

function scrypt(password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  const o: ScryptOptions = { N: n, r, p, maxmem: 256 * n * r + (1 << 20) };
  return new Promise((resolve, reject) => scryptCb(password.normalize('NFC'), salt, KEY_LEN, o, (e, k) => (e ? reject(e) : resolve(k))));
}

export async function hashPassword(password: string, n = SCRYPT_N): Promise<string> {
  const salt = randomBytes(16);
  const h = await scrypt(password, salt, n, SCRYPT_R, SCRYPT_P);
  return `scrypt$${n}$${SCRYPT_R}$${SCRYPT_P}$${salt.toString('base64')}$${h.toString('base64')}`;
}

/** Constant-time check of a password against a stored hash; false for a malformed hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const m = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(stored);
  if (!m) return false;
  const [n, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (n < 2 || n > 1 << 20 || (n & (n - 1)) !== 0 || r < 1 || r > 32 || p < 1 || p > 16) return false;
  const want = Buffer.from(m[5]!, 'base64');
  const got = await scrypt(password, Buffer.from(m[4]!, 'base64'), n, r, p);
  return want.length === got.length && timingSafeEqual(want, got);
}

export function checkAdminName(name: string): void {
  if (!/^[A-Za-z0-9._@+-]{1,64}$/.test(name)) throw new AdminAuthError('BAD_ADMIN', `admin name "${name.slice(0, 80)}" must be 1-64 characters of letters, digits and ._@+-`);
}

export function checkPassword(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) throw new AdminAuthError('WEAK_PASSWORD', `the password must be at least ${MIN_PASSWORD_LENGTH} characters`);
  if (password.length > 1024) throw new AdminAuthError('WEAK_PASSWORD', 'the password is longer than 1024 characters');
}

export interface AdminSession {
  name: string;
  createdAt: number;
  expiresAt: number;
}

/** Login sessions (by token) and the per-name failure throttle. */
export class AdminSessions {
  private readonly sessions = new Map<string, AdminSession>();
  private readonly failures = new Map<string, { times: number[]; lockedUntil: number }>();

  constructor(private readonly now: () => number) {}

  create(name: string): string {
    this.sweep();
    const token = randomBytes(32).toString('base64url');
    const at = this.now();
    this.sessions.set(token, { name, createdAt: at, expiresAt: at + SESSION_TTL_MS });
    return token;
  }

  get(token: string | undefined): AdminSession | undefined {
    if (!token) return undefined;
    const s = this.sessions.get(token);
    if (!s) return undefined;
    if (s.expiresAt <= this.now()) {
      this.sessions.delete(token);
      return undefined;
    }
    return s;
  }

  end(token: string): void {
    this.sessions.delete(token);
  }

  /** Ends every session of an account (deleted admin). */
  endAll(name: string): void {
    for (const [t, s] of this.sessions) if (s.name === name) this.sessions.delete(t);
  }

  /** Milliseconds until `name` may try again; 0 when not throttled. */
  lockedFor(name: string): number {
    const f = this.failures.get(name);
    return f ? Math.max(0, f.lockedUntil - this.now()) : 0;
  }

  fail(name: string): void {
    const now = this.now();
    const f = this.failures.get(name) ?? { times: [], lockedUntil: 0 };
    f.times = f.times.filter((t) => t > now - THROTTLE_WINDOW_MS);
    f.times.push(now);
    if (f.times.length >= THROTTLE_FAILURES) {
      f.lockedUntil = now + THROTTLE_WINDOW_MS;
      f.times = [];
    }
    this.failures.set(name, f);
    if (this.failures.size > 10_000) this.sweep();
  }

  succeed(name: string): void {
    this.failures.delete(name);
  }

  private sweep(): void {
    const now = this.now();
    for (const [t, s] of this.sessions) if (s.expiresAt <= now) this.sessions.delete(t);
    for (const [n, f] of this.failures) if (f.lockedUntil <= now && f.times.every((t) => t <= now - THROTTLE_WINDOW_MS)) this.failures.delete(n);
  }
}

/** A hash to compare against for unknown names, so both failures take the same time. */
let dummy: Promise<string> | undefined;
export function dummyHash(): Promise<string> {
  return (dummy ??= hashPassword('pierce-no-such-admin'));
}
