import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ErrorCode, HawserError } from '../tunnel/index.js';

// Bootstrap tokens follow kubeadm's shape (6.16 lower-case alphanumerics);
// per-cluster credentials are 32 random bytes, stored only as a hash.

const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
export const bootstrapTokenPattern = /^[a-z0-9]{6}\.[a-z0-9]{16}$/;

function randomString(length: number): string {
  const bytes = randomBytes(length);
  let out = '';
  for (const b of bytes) out += alphabet[b % alphabet.length];
  return out;
}

export function generateBootstrapToken(): string {
  return `${randomString(6)}.${randomString(16)}`;
}

/**
 * Bootstrap tokens from one source (a file, an environment variable): one per
 * line, blank lines and # comments ignored. None at all, or one of the wrong
 * shape, is refused: an empty file must never become the empty token.
 * Errors name the source and the line, never the token.
 */
export function parseBootstrapTokens(text: string, source: string): string[] {
  const tokens: string[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (!bootstrapTokenPattern.test(line)) {
      throw new HawserError(
        ErrorCode.InvalidBootstrapToken,
        `bootstrap token in ${source} (line ${i + 1}) must look like abcdef.0123456789abcdef ([a-z0-9]{6}.[a-z0-9]{16})`,
      );
    }
    tokens.push(line);
  }
  if (tokens.length === 0) throw new HawserError(ErrorCode.InvalidBootstrapToken, `${source} holds no bootstrap token`);
  return tokens;
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
