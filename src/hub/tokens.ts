import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

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

export function generateCredential(): string {
  return `hwc_${randomBytes(32).toString('base64url')}`;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Constant-time membership test, so a wrong token learns nothing from timing. */
export function tokenMatches(candidate: string, accepted: readonly string[]): boolean {
  const c = createHash('sha256').update(candidate).digest();
  let match = false;
  for (const token of accepted) {
    const t = createHash('sha256').update(token).digest();
    if (timingSafeEqual(c, t)) match = true;
  }
  return match;
}
