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
  // Operators' HTTP API and the hub's start-up.
  Unauthenticated: 'HAWSER_UNAUTHENTICATED',
  Forbidden: 'HAWSER_FORBIDDEN',
  InvalidBootstrapToken: 'HAWSER_INVALID_BOOTSTRAP_TOKEN',
  InvalidOperatorTokens: 'HAWSER_INVALID_OPERATOR_TOKENS',
  DataDirInUse: 'HAWSER_DATA_DIR_IN_USE',
  DataDirNotDirectory: 'HAWSER_DATA_DIR_NOT_DIRECTORY',
  DataDirUnwritable: 'HAWSER_DATA_DIR_UNWRITABLE',
  // The hawser CLI's own config (~/.hawser/config).
  CliConfigInvalid: 'HAWSER_CLI_CONFIG_INVALID',
  HubUnreachable: 'HAWSER_HUB_UNREACHABLE',
  HubUntrusted: 'HAWSER_HUB_UNTRUSTED',
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
    code === ErrorCode.AlreadyRegistered
  );
}

export function toHawserError(err: unknown, fallback: ErrorCode = ErrorCode.Internal): HawserError {
  if (err instanceof HawserError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new HawserError(fallback, message, { cause: err });
}
