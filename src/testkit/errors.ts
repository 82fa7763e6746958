// Errors the testkit raises. Tests match on `code`; the message names the
// process, port or binary that was wrong and carries the log tail when one
// exists.
export const TestkitErrorCode = {
  /** A condition was not met before its deadline. */
  Timeout: 'TESTKIT_TIMEOUT',
  /** A managed process exited while something was waiting on it. */
  ProcessExited: 'TESTKIT_PROCESS_EXITED',
  /** A managed process could not be spawned at all (ENOENT, EACCES, ...). */
  SpawnFailed: 'TESTKIT_SPAWN_FAILED',
  /** A binary from scripts/build-testbed.sh is missing. */
  TestbedMissing: 'TESTKIT_TESTBED_MISSING',
  /** assertNoLeaks found a live process or an open port. */
  Leak: 'TESTKIT_LEAK',
  /** The toxiproxy REST API answered with an error. */
  ToxiproxyApi: 'TESTKIT_TOXIPROXY_API',
  /** A kube cluster (etcd + kube-apiserver) did not come up. */
  KubeStart: 'TESTKIT_KUBE_START',
  /** The testbed's kubectl exited non-zero or ran past its deadline. */
  Kubectl: 'TESTKIT_KUBECTL',
  /** An HTTP request made by the testkit failed. */
  Http: 'TESTKIT_HTTP',
  /** The caller passed something the testkit cannot use. */
  InvalidArgument: 'TESTKIT_INVALID_ARGUMENT',
} as const;
export type TestkitErrorCode = (typeof TestkitErrorCode)[keyof typeof TestkitErrorCode];

export class TestkitError extends Error {
  override readonly name = 'TestkitError';
  constructor(
    readonly code: TestkitErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
  }
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
