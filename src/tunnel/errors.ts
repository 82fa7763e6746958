// Every refusal hawser makes carries one of these codes. Tests and callers
// match on the code; the message names the thing that was wrong.
export const ErrorCode = {
  BadBootstrapToken: 'HAWSER_BAD_BOOTSTRAP_TOKEN',
  BadCredential: 'HAWSER_BAD_CREDENTIAL',
  CredentialClusterMismatch: 'HAWSER_CREDENTIAL_CLUSTER_MISMATCH',
  MalformedFrame: 'HAWSER_MALFORMED_FRAME',
  OversizedFrame: 'HAWSER_OVERSIZED_FRAME',
  UnexpectedFrame: 'HAWSER_UNEXPECTED_FRAME',
  InvalidRegistration: 'HAWSER_INVALID_REGISTRATION',
  RegistrationDenied: 'HAWSER_REGISTRATION_DENIED',
  ClusterNameTaken: 'HAWSER_CLUSTER_NAME_TAKEN',
  AlreadyRegistered: 'HAWSER_ALREADY_REGISTERED',
  RegistrationTimeout: 'HAWSER_REGISTRATION_TIMEOUT',
  Superseded: 'HAWSER_SESSION_SUPERSEDED',
  HubShuttingDown: 'HAWSER_HUB_SHUTTING_DOWN',
  Unavailable: 'HAWSER_UNAVAILABLE',
  HeartbeatTimeout: 'HAWSER_HEARTBEAT_TIMEOUT',
  Cancelled: 'HAWSER_CANCELLED',
  InvalidOption: 'HAWSER_INVALID_OPTION',
  NotFound: 'HAWSER_NOT_FOUND',
  Internal: 'HAWSER_INTERNAL',
  /** A hello without a valid proof of possession of its key (bad signature, stale time). */
  BadSignature: 'HAWSER_BAD_SIGNATURE',
  /** A hello's signed nonce was seen before: a replay. */
  SignatureReplayed: 'HAWSER_SIGNATURE_REPLAYED',
  /** The cluster id is bound to another key: only its original agent may act as it. */
  KeyMismatch: 'HAWSER_KEY_MISMATCH',
  /** Pending registrations are at their cap (per bootstrap token or in total). */
  TooManyPendingRegistrations: 'HAWSER_TOO_MANY_PENDING_REGISTRATIONS',
  /** A pending registration request outlived its TTL without a decision. */
  RegistrationExpired: 'HAWSER_REGISTRATION_EXPIRED',
  /** An operator deleted the cluster (`hawser delete cluster`). */
  ClusterDeleted: 'HAWSER_CLUSTER_DELETED',
  /** The offline cache (LevelDB) is damaged; the agent quarantines it. */
  CacheCorrupt: 'HAWSER_CACHE_CORRUPT',
  /** The agent's identity file is damaged and no copy holds the identity. */
  IdentityCorrupt: 'HAWSER_IDENTITY_CORRUPT',
  /** A durable write to the agent's cache failed (e.g. a full disk). */
  CacheWriteFailed: 'HAWSER_CACHE_WRITE_FAILED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const knownCodes = new Set<string>(Object.values(ErrorCode));

export class HawserError extends Error {
  override readonly name = 'HawserError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.retryAfterMs = options?.retryAfterMs ?? 0;
  }
  readonly retryAfterMs: number;

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isErrorCode(value: string): value is ErrorCode {
  return knownCodes.has(value);
}

/** Codes that say retrying with the same input cannot help. */
export function isPermanent(code: ErrorCode): boolean {
  return (
    code === ErrorCode.BadBootstrapToken ||
    code === ErrorCode.BadCredential ||
    code === ErrorCode.CredentialClusterMismatch ||
    code === ErrorCode.InvalidRegistration ||
    code === ErrorCode.RegistrationDenied ||
    code === ErrorCode.ClusterNameTaken ||
    code === ErrorCode.AlreadyRegistered ||
    code === ErrorCode.KeyMismatch ||
    code === ErrorCode.ClusterDeleted
  );
}

export function toHawserError(err: unknown, fallback: ErrorCode = ErrorCode.Internal): HawserError {
  if (err instanceof HawserError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new HawserError(fallback, message, { cause: err });
}
