// Behaviour that depends on time (backoff, heartbeats, leases) takes a Clock,
// so tests drive time by hand instead of sleeping.
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    // Ref'd on purpose: an agent backing off has nothing else keeping it alive.
    // Owners cancel their timers on stop.
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
};

/** A clock that moves only when told to; timers fire in due order. */
export class ManualClock implements Clock {
  private current: number;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();

  constructor(startMs = 0) {
    this.current = startMs;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = ++this.seq;
    this.timers.set(id, { at: this.current + Math.max(0, ms), fn });
    return { cancel: () => void this.timers.delete(id) };
  }

  get pendingTimers(): number {
    return this.timers.size;
  }

  /** Moves time forward by ms, firing each due timer at its own instant. */
  advance(ms: number): void {
    const target = this.current + ms;
    // A timer that keeps re-arming itself at the same instant would spin forever: fail loudly.
    for (let fired = 0; ; fired++) {
      if (fired > 1_000_000) throw new Error('ManualClock.advance: over a million timers fired; a timer re-arms itself with no delay');
      let nextId = -1;
      let nextAt = Infinity;
      for (const [id, t] of this.timers) {
        if (t.at <= target && (t.at < nextAt || (t.at === nextAt && id < nextId))) {
          nextAt = t.at;
          nextId = id;
        }
      }
      if (nextId < 0) break;
      const timer = this.timers.get(nextId)!;
      this.timers.delete(nextId);
      this.current = Math.max(this.current, timer.at);
      timer.fn();
    }
    this.current = target;
  }
}
