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

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Constant-time membership test, so a wrong token learns nothing from timing. */
export function tokenMatches(candidate: string, accepted: readonly string[]): boolean {
  // The empty string is never a token, whatever the list holds.
  if (candidate === '') return false;
  const c = createHash('sha256').update(candidate).digest();
  let match = false;
  for (const token of accepted) {
    const t = createHash('sha256').update(token).digest();
    if (timingSafeEqual(c, t)) match = true;
  }
  return match;
}
