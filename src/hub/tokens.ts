import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

// Per-cluster credentials are 32 random bytes, stored only as a hash. The
// bootstrap token's shape and parser live in src/tunnel (the agent reads them too).
export { bootstrapTokenPattern, parseBootstrapTokens } from '../tunnel/index.js';

const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';

function randomString(length: number): string {
  const bytes = randomBytes(length);
  let out = '';
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

/** A new bootstrap token, of the shape bootstrapTokenPattern accepts. */
export function generateBootstrapToken(): string {
  return `${randomString(6)}.${randomString(16)}`;
}

export function generateCredential(): string {
  return `hwc_${randomBytes(32).toString('base64url')}`;
}

/** A secret as compared: its sha256, so every comparison is of equal length. */
export function secretDigest(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** A secret as stored (credentials): only its hash is kept. */
export function hashSecret(secret: string): string {
  return secretDigest(secret).toString('hex');
}

/**
 * The value of the entry whose secret is `candidate`. Every entry is compared
 * in constant time, so the time taken says nothing about which one (if any)
 * matched. The empty string is never a secret, whatever the entries hold.
 */
export function findBySecret<T>(candidate: string, entries: ReadonlyArray<{ digest: Buffer; value: T }>): T | undefined {
  if (candidate === '') return undefined;
  const c = secretDigest(candidate);
  let found: T | undefined;
  for (const entry of entries) if (timingSafeEqual(c, entry.digest)) found = entry.value;
  return found;
}

/** Constant-time membership test, so a wrong token learns nothing from timing. */
export function tokenMatches(candidate: string, accepted: readonly string[]): boolean {
  return findBySecret(candidate, accepted.map((token) => ({ digest: secretDigest(token), value: true }))) === true;
}
