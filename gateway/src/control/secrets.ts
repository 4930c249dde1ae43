/**
 * Auth keys and API keys: `<prefix>_<id>_<secret>`. The id is public (listings, revocation);
 * the whole key is stored only as its SHA-256, compared in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface NewSecret {
  id: string;
  key: string;
  hash: string;
}

export function hashSecret(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export function newSecret(prefix: 'pak' | 'papi'): NewSecret {
  const id = randomBytes(6).toString('hex');
  const key = `${prefix}_${id}_${randomBytes(24).toString('base64url')}`;
  return { id, key, hash: hashSecret(key) };
}

/** The id part of a key, or undefined when the text is not shaped like one. */
export function secretId(key: string, prefix: 'pak' | 'papi'): string | undefined {
  const m = new RegExp(`^${prefix}_([0-9a-f]{12})_[A-Za-z0-9_-]{32}$`).exec(key);
  return m?.[1];
}

export function secretMatches(key: string, hash: string): boolean {
  const a = Buffer.from(hashSecret(key), 'hex');
  const b = Buffer.from(hash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
