// A concurrency limit that follows measured latency (AIMD, as TCP does with
// its window): while handshakes finish near the fastest seen lately, the limit
// grows (by one per completion until the first sign of congestion, then by
// one per limit's worth of completions); when one takes longer than
// tolerance × floor + slack, the limit shrinks by a ratio, once per round
// (samples that started before the last cut do not cut again). A fixed limit
// is either too low for a quiet hub (the herd waits for slots the CPU could
// serve) or too high for a loaded one; this one finds the knee. Pure: time
// comes from the caller.

export interface ConcurrencyLimitOptions {
  /** The limit stays within [min, max]; it starts at initial. */
  min: number;
  max: number;
  initial: number;
  /** A sample above tolerance × floor + slackMs is congestion. */
  tolerance: number;
  slackMs: number;
  /** On congestion the limit is multiplied by this (0 < ratio < 1). */
  decreaseRatio: number;
  /** The floor is the fastest sample of the current and the previous window of this length. */
  floorWindowMs: number;
}

export const defaultConcurrencyLimitOptions: ConcurrencyLimitOptions = {
  // Not lower: a handshake waits on the store and the network as well as the CPU, and a
  // handful of slots leaves the CPU idle while they wait (measured: 8 % of a core).
  min: 16,
  max: 512,
  initial: 64,
  tolerance: 2,
  // Congestion is handshakes slower by a quarter second, not by a GC pause: what an agent
  // (30 s register timeout) and the connected agents' heartbeats would notice.
  slackMs: 250,
  decreaseRatio: 0.9,
  // A herd lasts tens of seconds: its own slow samples must not become the floor while it lasts.
  floorWindowMs: 60_000,
};

export class ConcurrencyLimit {
  private value: number;
  private slowStart = true;
  private lastCutAt = -Infinity;
  private windowStart = -Infinity;
  private windowMin = Infinity;
  private previousWindowMin = Infinity;

  constructor(readonly options: ConcurrencyLimitOptions) {
    const { min, max, initial, tolerance, slackMs, decreaseRatio, floorWindowMs } = options;
    if (!(Number.isInteger(min) && min >= 1 && Number.isInteger(max) && max >= min)) {
      throw new RangeError(`concurrency limit needs integers 1 <= min (${min}) <= max (${max})`);
    }
    if (!(initial >= min && initial <= max)) throw new RangeError(`concurrency limit needs min (${min}) <= initial (${initial}) <= max (${max})`);
    if (!(tolerance >= 1 && slackMs >= 0)) throw new RangeError(`concurrency limit needs tolerance >= 1 (${tolerance}) and slack >= 0 (${slackMs})`);
    if (!(decreaseRatio > 0 && decreaseRatio < 1)) throw new RangeError(`concurrency limit needs 0 < decreaseRatio (${decreaseRatio}) < 1`);
    if (!(floorWindowMs > 0)) throw new RangeError(`concurrency limit needs floorWindowMs > 0, got ${floorWindowMs}`);
    this.value = initial;
  }

  /** Slots allowed now. */
  get limit(): number {
    return Math.floor(this.value);
  }

  /** The fastest sample lately (Infinity before the first). */
  get floorMs(): number {
    return Math.min(this.windowMin, this.previousWindowMin);
  }

  /**
   * One handshake finished: it started at startedAt and took latencyMs;
   * inUse slots were taken when it finished (itself included). A limit that
   * was not reached says nothing about a higher one, so it only grows when used.
   */
  sample(nowMs: number, startedAt: number, latencyMs: number, inUse: number): void {
    if (nowMs - this.windowStart >= this.options.floorWindowMs) {
      this.previousWindowMin = this.windowMin;
      this.windowMin = Infinity;
      this.windowStart = nowMs;
    }
    this.windowMin = Math.min(this.windowMin, latencyMs);
    const { tolerance, slackMs, decreaseRatio, min, max } = this.options;
    if (latencyMs > tolerance * this.floorMs + slackMs) {
      // One cut per round: the samples of the same congested round all arrive late.
      if (startedAt < this.lastCutAt) return;
      this.value = Math.max(min, this.value * decreaseRatio);
      this.slowStart = false;
      this.lastCutAt = nowMs;
      return;
    }
    if (inUse < this.limit) return;
    this.value = Math.min(max, this.value + (this.slowStart ? 1 : 1 / this.value));
  }
}
