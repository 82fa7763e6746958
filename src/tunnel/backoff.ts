// Reconnect backoff: exponential envelope, full jitter, capped, and reset once
// a connection has stayed up for a stable period. Pure: randomness and time
// come from the caller.

export interface BackoffPolicy {
  readonly baseMs: number;
  readonly capMs: number;
  /** A connection up at least this long resets the attempt count. */
  readonly stableAfterMs: number;
}

export const defaultBackoffPolicy: BackoffPolicy = {
  baseMs: 10_000,
  capMs: 5 * 60_000,
  stableAfterMs: 60_000,
};

/** Upper bound of the delay before dial number `attempt` (0-based): min(cap, base * 2^attempt). */
export function backoffCeilingMs(policy: BackoffPolicy, attempt: number): number {
  // 2^attempt overflows to Infinity long before it matters; min() keeps it finite.
  return Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, attempt));
}

/** Full jitter: uniform in [0, ceiling). `random` returns [0, 1). */
export function backoffDelayMs(policy: BackoffPolicy, attempt: number, random: () => number): number {
  const r = random();
  if (!(r >= 0 && r < 1)) throw new RangeError(`random() must return a number in [0, 1), got ${r}`);
  return Math.floor(r * backoffCeilingMs(policy, attempt));
}

/**
 * The hub's retry-after, as a floor the agent will honour: at most the backoff
 * cap. Node fires a timer over 2^31-1 ms after 1 ms, so an uncapped huge value
 * from a hub would turn into an instant redial loop; junk (NaN, negative) is 0.
 */
export function retryAfterFloorMs(policy: BackoffPolicy, retryAfterMs: number): number {
  if (!(retryAfterMs > 0)) return 0;
  return Math.min(policy.capMs, Math.floor(retryAfterMs));
}

/** Tracks attempts for one reconnect loop. */
export class Backoff {
  private attempt = 0;
  private connectedAt: number | undefined;

  constructor(
    readonly policy: BackoffPolicy,
    private readonly random: () => number = Math.random,
  ) {
    if (policy.baseMs <= 0 || policy.capMs < policy.baseMs) {
      throw new RangeError(`backoff needs 0 < base (${policy.baseMs}) <= cap (${policy.capMs})`);
    }
  }

  get attempts(): number {
    return this.attempt;
  }

  /** Delay before the next dial; `retryAfterMs` from the hub is a floor, capped (see retryAfterFloorMs). */
  next(retryAfterMs = 0): number {
    const delay = backoffDelayMs(this.policy, this.attempt, this.random);
    this.attempt++;
    return Math.max(delay, retryAfterFloorMs(this.policy, retryAfterMs));
  }

  markConnected(nowMs: number): void {
    this.connectedAt = nowMs;
  }

  /** Call when a connection ends: a stable one forgets earlier failures. */
  markDisconnected(nowMs: number): void {
    if (this.connectedAt !== undefined && nowMs - this.connectedAt >= this.policy.stableAfterMs) {
      this.attempt = 0;
    }
    this.connectedAt = undefined;
  }
}
