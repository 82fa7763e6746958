// Reconnect backoff: exponential envelope, full jitter, capped, and reset once
// a connection has stayed up for a stable period. Pure: randomness and time
// come from the caller.
//
// Three ways a dial can end lead to three different waits:
// - a dial or handshake that failed (or a connection that dropped before the
//   hub acked a heartbeat on it): exponential full-jitter backoff;
// - a connection that worked (welcomed, a heartbeat acked) and then dropped:
//   the failed-dial count starts over and the next redial waits uniform in a
//   quick window (up to 1.5 s); if that redial fails, one more within a second,
//   wider window (up to 5 s); only then the exponential backoff, from its first
//   step. A link that works for 30 s between drops therefore returns within
//   seconds after every drop, forever, and a hub killed with kill -9 (which
//   looks like this to every agent at once) sees its herd spread over both
//   windows rather than at one instant;
// - the hub answered "busy, retry after T" (HAWSER_HUB_BUSY): the hub is up and
//   spread the herd itself, so the agent waits T (capped) and that answer is
//   not a failed dial: neither the count nor the windows still due change.
// A connection the hub welcomed that drops before its first heartbeat ack was
// working too (the hub is up and took this agent; the link dropped): it earns
// the same windows and forgets earlier failed dials, so a link that drops every
// 30 s returns within seconds wherever the drop lands. Only after
// maxUnackedWelcomes of them in a row, with no ack between, does it count as a
// failed dial: a link that welcomes and dies at once every time still backs
// off rather than looping tightly.

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
  /**
   * If the quick redial fails, the next waits uniform in [0, secondRetryMs)
   * before the exponential backoff starts. Absent or 0: straight to backoff.
   */
  readonly secondRetryMs?: number;
  /**
   * Welcomed connections that dropped before their first heartbeat ack, in a
   * row, that still earn the retry windows; the next one is a failed dial.
   * Absent or 0: every such drop is a failed dial.
   */
  readonly maxUnackedWelcomes?: number;
}

export const defaultBackoffPolicy: BackoffPolicy = {
  baseMs: 10_000,
  capMs: 5 * 60_000,
  stableAfterMs: 60_000,
  quickRetryMs: 1_500,
  // A hub restarted by its supervisor answers again within a few seconds.
  secondRetryMs: 5_000,
  // A drop in the second between a welcome and its first ack is rare on a real link; three in a row is a pattern.
  maxUnackedWelcomes: 3,
};

/** Which rule chose a wait (logged by the agent; the link tests read it). */
export type RetryKind = 'quick' | 'second' | 'backoff' | 'retry-after';

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
  return windowDelayMs(policy.quickRetryMs ?? 0, random);
}

/** Uniform in [0, windowMs). */
function windowDelayMs(windowMs: number, random: () => number): number {
  const r = random();
  if (!(r >= 0 && r < 1)) throw new RangeError(`random() must return a number in [0, 1), got ${r}`);
  return Math.floor(r * windowMs);
}

/** Tracks attempts for one reconnect loop. */
export class Backoff {
  private attempt = 0;
  private connectedAt: number | undefined;
  private healthy = false;
  /** Welcomed connections in a row that dropped before their first ack. */
  private unackedWelcomes = 0;
  /** Retry windows still due after a healthy connection dropped, in order. */
  private windows: Array<'quick' | 'second'> = [];
  private lastKind: RetryKind | undefined;

  constructor(
    readonly policy: BackoffPolicy,
    private readonly random: () => number = Math.random,
  ) {
    const maxUnacked = policy.maxUnackedWelcomes ?? 0;
    if (!(Number.isInteger(maxUnacked) && maxUnacked >= 0)) throw new RangeError(`backoff needs a whole maxUnackedWelcomes >= 0, got ${maxUnacked}`);
    if (policy.baseMs <= 0 || policy.capMs < policy.baseMs) {
      throw new RangeError(`backoff needs 0 < base (${policy.baseMs}) <= cap (${policy.capMs})`);
    }
    for (const [what, ms] of [
      ['quick retry window', policy.quickRetryMs ?? 0],
      ['second retry window', policy.secondRetryMs ?? 0],
    ] as const) {
      if (!(ms >= 0 && ms <= policy.capMs)) throw new RangeError(`backoff needs 0 <= ${what} (${ms}) <= cap (${policy.capMs})`);
    }
  }

  /** Failed dials counted toward the exponential envelope since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** Whether the next wait is the quick retry after a healthy connection dropped. */
  get quickRetryDue(): boolean {
    return this.windows[0] === 'quick';
  }

  /** The rule that chose the last wait next() returned. */
  get lastRetryKind(): RetryKind | undefined {
    return this.lastKind;
  }

  /**
   * Delay before the next dial after a failed dial or a drop; `retryAfterMs`
   * (a rate limit, a full store, an operator's mistake) is a floor, capped
   * (see retryAfterFloorMs). A retry window does not count as a failed dial:
   * after both windows failed, the wait is the first backoff step.
   */
  next(retryAfterMs = 0): number {
    let delay: number;
    const window = this.windows.shift();
    if (window !== undefined) {
      delay = windowDelayMs((window === 'quick' ? this.policy.quickRetryMs : this.policy.secondRetryMs) ?? 0, this.random);
      this.lastKind = window;
    } else {
      delay = backoffDelayMs(this.policy, this.attempt, this.random);
      this.attempt++;
      this.lastKind = 'backoff';
    }
    const floor = retryAfterFloorMs(this.policy, retryAfterMs);
    if (floor > delay) this.lastKind = 'retry-after';
    return Math.max(delay, floor);
  }

  /**
   * Delay after the hub answered busy with a retry-after: the hub is up and
   * spread its refusals, so its word (capped) is the wait. Not a failed dial:
   * the count and the windows still due stay as they were.
   */
  nextAfterBusy(retryAfterMs: number): number {
    const floor = retryAfterFloorMs(this.policy, retryAfterMs);
    if (floor === 0) return this.next();
    this.lastKind = 'retry-after';
    return floor;
  }

  /** The hub welcomed this connection. */
  markConnected(nowMs: number): void {
    this.connectedAt = nowMs;
    this.healthy = false;
  }

  /** The hub acked a heartbeat on the welcomed connection: it worked. */
  markHealthy(): void {
    if (this.connectedAt === undefined) return;
    this.healthy = true;
    this.unackedWelcomes = 0;
  }

  /**
   * Call when a session ends (a dial that failed, or a connection that
   * dropped). A healthy connection (or a welcomed one that dropped before its
   * first ack, up to maxUnackedWelcomes in a row) forgets earlier failures and
   * earns the retry windows (those the policy has); one stable for
   * stableAfterMs forgets them too. Anything else was a failed dial.
   * (Without a quick window, healthy alone resets nothing: the pre-quick-retry policy.)
   */
  markDisconnected(nowMs: number): void {
    // Welcomed but never acked: working, up to maxUnackedWelcomes in a row.
    const unacked = this.connectedAt !== undefined && !this.healthy;
    if (unacked) this.unackedWelcomes++;
    const worked = this.healthy || (unacked && this.unackedWelcomes <= (this.policy.maxUnackedWelcomes ?? 0));
    const quick = worked && (this.policy.quickRetryMs ?? 0) > 0;
    if (quick || (this.connectedAt !== undefined && nowMs - this.connectedAt >= this.policy.stableAfterMs)) {
      this.attempt = 0;
    }
    if (quick) this.windows = (this.policy.secondRetryMs ?? 0) > 0 ? ['quick', 'second'] : ['quick'];
    // A welcomed connection past that allowance is a failed dial and ends the windows;
    // a dial that failed before any welcome leaves the windows still due as they were.
    else if (this.connectedAt !== undefined) this.windows = [];
    this.connectedAt = undefined;
    this.healthy = false;
  }
}
