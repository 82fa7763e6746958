import { TestkitError, TestkitErrorCode, errorMessage } from './errors.js';

type Falsy = false | null | undefined | 0 | '';

export interface WaitOptions {
  /** Give up after this long. */
  timeoutMs: number;
  /** What is being waited for, e.g. "etcd /health on :2379"; it opens the error message. */
  what: string;
  /** Delay between two attempts of a polled check. Default 100 ms. */
  intervalMs?: number;
  /** Abort the wait early (the error is the signal's reason). */
  signal?: AbortSignal;
  /**
   * Settles when waiting can no longer succeed (e.g. the process exited);
   * its value (or rejection) becomes the error.
   */
  failWhen?: Promise<Error>;
  /** Extra context appended to a timeout message (e.g. a log tail). */
  context?: () => string;
}

/**
 * Calls `check` until it returns a truthy value and resolves with it. A check
 * that throws counts as "not yet"; its last error is reported on timeout. The
 * signal handed to `check` aborts when the wait ends, so a hanging request
 * inside it is cancelled at the deadline. No fixed sleeps: the wait ends as
 * soon as the condition holds, or at the deadline with TESTKIT_TIMEOUT.
 */
export function waitUntil<T>(
  check: (signal: AbortSignal) => T | Falsy | Promise<T | Falsy>,
  options: WaitOptions,
): Promise<T> {
  const { timeoutMs, what } = options;
  const intervalMs = options.intervalMs ?? 100;
  if (!(timeoutMs > 0)) {
    return Promise.reject(new TestkitError(TestkitErrorCode.InvalidArgument, `waitUntil(${what}): timeoutMs must be > 0`));
  }
  const started = Date.now();
  const ctrl = new AbortController();
  let lastError: unknown;
  let attempts = 0;

  return new Promise<T>((resolve, reject) => {
    let done = false;
    let retryTimer: NodeJS.Timeout | undefined;

    const finish = (err: Error | undefined, value?: T): void => {
      if (done) return;
      done = true;
      clearTimeout(deadlineTimer);
      clearTimeout(retryTimer);
      options.signal?.removeEventListener('abort', onAbort);
      ctrl.abort(err ?? new Error(`wait for ${what} finished`));
      if (err) reject(err);
      else resolve(value as T);
    };

    const deadlineTimer = setTimeout(() => {
      const parts = [`timed out after ${timeoutMs} ms waiting for ${what} (${attempts} attempts)`];
      if (lastError !== undefined) parts.push(`last error: ${errorMessage(lastError)}`);
      const extra = options.context?.();
      if (extra) parts.push(extra);
      finish(new TestkitError(TestkitErrorCode.Timeout, parts.join('\n'), { cause: lastError }));
    }, timeoutMs);

    const onAbort = (): void => {
      const reason: unknown = options.signal?.reason;
      finish(reason instanceof Error ? reason : new Error(`wait for ${what} aborted`));
    };
    if (options.signal?.aborted) {
      onAbort();
      return;
    }
    options.signal?.addEventListener('abort', onAbort, { once: true });

    options.failWhen?.then(
      (err) => finish(err),
      (err: unknown) => finish(err instanceof Error ? err : new Error(String(err))),
    );

    const attempt = async (): Promise<void> => {
      if (done) return;
      attempts++;
      try {
        const value = await check(ctrl.signal);
        if (value) {
          finish(undefined, value as T);
          return;
        }
      } catch (err) {
        lastError = err;
      }
      if (done) return;
      const remaining = timeoutMs - (Date.now() - started);
      retryTimer = setTimeout(() => void attempt(), Math.max(0, Math.min(intervalMs, remaining)));
    };
    void attempt();
  });
}
