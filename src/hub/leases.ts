import type { Clock, TimerHandle } from '../tunnel/index.js';

// Tracks one lease per cluster and calls back when one runs out. A single
// timer points at the soonest expiry, so 10,000 leases cost one timer.

export interface LeaseEvents {
  expired(clusterName: string): void;
}

export class LeaseTracker {
  private expiries = new Map<string, number>();
  private expired = new Set<string>();
  private timer: TimerHandle | undefined;
  private timerAt = Infinity;

  constructor(
    private readonly clock: Clock,
    private readonly events: LeaseEvents,
  ) {}

  /** Renews (or starts) a lease; returns whether it had expired before. */
  renew(clusterName: string, durationMs: number): { expiresAt: number; wasExpired: boolean } {
    const expiresAt = this.clock.now() + durationMs;
    this.expiries.set(clusterName, expiresAt);
    const wasExpired = this.expired.delete(clusterName);
    // Renewals only move expiries later, so the timer needs moving only when
    // this lease is now the soonest; a sweep finds the true next one.
    if (expiresAt < this.timerAt) this.scheduleAt(expiresAt);
    return { expiresAt, wasExpired };
  }

  isExpired(clusterName: string): boolean {
    return this.expired.has(clusterName);
  }

  expiresAt(clusterName: string): number | undefined {
    return this.expiries.get(clusterName);
  }

  forget(clusterName: string): void {
    this.expiries.delete(clusterName);
    this.expired.delete(clusterName);
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private scheduleAt(soonest: number): void {
    this.timer?.cancel();
    this.timerAt = soonest;
    if (soonest === Infinity) {
      this.timer = undefined;
      return;
    }
    this.timer = this.clock.setTimeout(() => this.sweep(), Math.max(0, soonest - this.clock.now()));
  }

  private sweep(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.clock.now();
    const due: string[] = [];
    let soonest = Infinity;
    for (const [name, at] of this.expiries) {
      if (at <= now) due.push(name);
      else if (at < soonest) soonest = at;
    }
    for (const name of due) {
      this.expiries.delete(name);
      this.expired.add(name);
    }
    this.scheduleAt(soonest);
    for (const name of due) this.events.expired(name);
  }
}
