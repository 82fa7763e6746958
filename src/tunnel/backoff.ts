// Reconnect backoff: exponential envelope, full jitter, capped, and reset once
// a connection has stayed up for a stable period. Pure: randomness and time
// come from the caller.
//
// A dial that failed and a working connection that dropped are told apart. A
// connection is *healthy* once it was welcomed and the hub acked at least one
// of its heartbeats (the link carried a round trip after registration). When a
// healthy connection ends, the failed-dial count starts over and the next
// wait is one quick retry, jittered over a window (a hub killed with kill -9
// looks like this to every agent at once: the jitter spreads the herd). The
// quick retry is granted once per healthy connection; a connection that drops
// before its first ack counts as a failed dial, so a link that welcomes and
// dies at once still backs off exponentially rather than looping tightly.

export interface BackoffPolicy {
  readonly baseMs: number;
  readonly capMs: number;
  /** A connection up at least this long resets the attempt count. */
  readonly stableAfterMs: number;
  /**
   * After a healthy connection drops, the first redial waits uniform in
   * [0, quickRetryMs). Absent or 0: no quick retry (every wait is backoff).
   */
  readonly quickRetryMs?: number;
}

export const defaultBackoffPolicy: BackoffPolicy = {
  baseMs: 10_000,
  capMs: 5 * 60_000,
  stableAfterMs: 60_000,
  quickRetryMs: 1_500,
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

/** The quick retry's delay: uniform in [0, quickRetryMs). */
export function quickRetryDelayMs(policy: BackoffPolicy, random: () => number): number {
  const r = random();
  if (!(r >= 0 && r < 1)) throw new RangeError(`random() must return a number in [0, 1), got ${r}`);
  return Math.floor(r * (policy.quickRetryMs ?? 0));
}

/** Tracks attempts for one reconnect loop. */
export class Backoff {
  private attempt = 0;
  private connectedAt: number | undefined;
  private healthy = false;
  private quickRetry = false;

  constructor(
    readonly policy: BackoffPolicy,
    private readonly random: () => number = Math.random,
  ) {
    if (policy.baseMs <= 0 || policy.capMs < policy.baseMs) {
      throw new RangeError(`backoff needs 0 < base (${policy.baseMs}) <= cap (${policy.capMs})`);
    }
    const quick = policy.quickRetryMs ?? 0;
    if (!(quick >= 0 && quick <= policy.capMs)) {
      throw new RangeError(`backoff needs 0 <= quick retry window (${quick}) <= cap (${policy.capMs})`);
    }
  }

  get attempts(): number {
    return this.attempt;
  }

  /** Whether the next wait is the quick retry after a healthy connection dropped. */
  get quickRetryDue(): boolean {
    return this.quickRetry;
  }

  /**
   * Delay before the next dial; `retryAfterMs` from the hub is a floor, capped
   * (see retryAfterFloorMs). The quick retry does not count as a failed dial:
   * if it fails, the next wait is the first backoff step.
   */
  next(retryAfterMs = 0): number {
    let delay: number;
    if (this.quickRetry) {
      this.quickRetry = false;
      delay = quickRetryDelayMs(this.policy, this.random);
    } else {
      delay = backoffDelayMs(this.policy, this.attempt, this.random);
      this.attempt++;
    }
    return Math.max(delay, retryAfterFloorMs(this.policy, retryAfterMs));
  }

  /** The hub welcomed this connection. */
  markConnected(nowMs: number): void {
    this.connectedAt = nowMs;
    this.healthy = false;
  }

  /** The hub acked a heartbeat on the welcomed connection: it worked. */
  markHealthy(): void {
    if (this.connectedAt !== undefined) this.healthy = true;
  }

  /**
   * Call when a connection ends. A healthy one forgets earlier failures and
   * earns one quick retry (if the policy has a window); one stable for
   * stableAfterMs forgets them too. Anything else was a failed dial.
   * (Without a window, healthy alone resets nothing: the pre-quick-retry policy.)
   */
  markDisconnected(nowMs: number): void {
    // Without a quick-retry window the policy is the old one: only a stable connection resets.
    const quick = this.healthy && (this.policy.quickRetryMs ?? 0) > 0;
    if (quick || (this.connectedAt !== undefined && nowMs - this.connectedAt >= this.policy.stableAfterMs)) {
      this.attempt = 0;
    }
    this.quickRetry = quick;
    this.connectedAt = undefined;
    this.healthy = false;
  }
}
