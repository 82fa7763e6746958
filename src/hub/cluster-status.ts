import type { Logger } from 'pino';
import type { ManagedCluster } from '../api/index.js';
import type { Clock, wire } from '../tunnel/index.js';
import { applyStatusReport, markReachable, markUnreachable, readyValue } from './clusters.js';
import type { LeaseTracker } from './leases.js';
import type { HubMetrics } from './metrics.js';
import type { KeyedMutex } from './mutex.js';
import type { HubStore } from './store.js';

// Writes of a ManagedCluster's status: from heartbeats, on lease expiry, on
// renewal. Heartbeats only queue what they learned and never wait for the
// store; per cluster one write runs and at most one waits, into which every
// newer report is folded (only the newest matters: the agent repeats it).

/** What heartbeats told the hub about one cluster and the store has not heard yet. */
export interface StatusChange {
  /** Lease granted to the session, kept on the ManagedCluster. */
  leaseDurationMs: number;
  /** The newest full status report, and when it arrived. */
  report?: { status: wire.ClusterStatus; atMs: number };
  /** When the agent last said its status is as last reported (only lastObservedTime moves). */
  unchangedAtMs?: number;
  /** The lease was renewed in a way the store must hear of: after an expiry, or on a new session. */
  renewed?: boolean;
}

/** Folds a newer change into one still waiting: the newest report wins, nothing newer is lost. */
export function foldStatusChange(waiting: StatusChange | undefined, next: StatusChange): StatusChange {
  if (!waiting) return next;
  const report = next.report ?? waiting.report;
  // "Unchanged" refers to the last report sent: a newer full report supersedes an older flag.
  const unchangedAtMs = next.report ? next.unchangedAtMs : (next.unchangedAtMs ?? waiting.unchangedAtMs);
  return {
    leaseDurationMs: next.leaseDurationMs,
    ...(report ? { report } : {}),
    ...(unchangedAtMs !== undefined ? { unchangedAtMs } : {}),
    ...(waiting.renewed || next.renewed ? { renewed: true } : {}),
  };
}

/** True when the change needs a store write at all (a plain in-lease renewal does not). */
export function needsWrite(change: StatusChange): boolean {
  return change.report !== undefined || change.unchangedAtMs !== undefined || change.renewed === true;
}

interface Slot {
  waiting: StatusChange | undefined;
  running: Promise<void> | undefined;
}

export class ClusterStatusWriter {
  private readonly slots = new Map<string, Slot>();

  constructor(
    private readonly store: HubStore,
    private readonly mutex: KeyedMutex,
    private readonly leases: LeaseTracker,
    private readonly metrics: HubMetrics,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {}

  /** Queues a heartbeat's change; returns at once. */
  queue(name: string, change: StatusChange): void {
    if (!needsWrite(change)) return;
    let slot = this.slots.get(name);
    if (!slot) this.slots.set(name, (slot = { waiting: undefined, running: undefined }));
    slot.waiting = foldStatusChange(slot.waiting, change);
    slot.running ??= this.drain(name, slot);
  }

  private async drain(name: string, slot: Slot): Promise<void> {
    // Cleared in the same turn the slot is seen empty, so a queued change is never stranded.
    for (let change = slot.waiting; change; change = slot.waiting) {
      slot.waiting = undefined;
      await this.update(name, (cluster, now) => this.apply(name, cluster, change, now));
    }
    slot.running = undefined;
    this.slots.delete(name);
  }

  private apply(name: string, cluster: ManagedCluster, change: StatusChange, now: Date): ManagedCluster {
    let next = change.report ? applyStatusReport(cluster, change.report.status, new Date(change.report.atMs)) : cluster;
    if (change.unchangedAtMs !== undefined) {
      next = { ...next, status: { ...next.status, lastObservedTime: new Date(change.unchangedAtMs).toISOString() } };
    }
    // A store slower than a whole lease: the expiry came after this renewal and stands.
    next = this.leases.isExpired(name) ? markUnreachable(next, change.leaseDurationMs, now) : markReachable(next, now);
    next.status.leaseDurationSeconds = Math.round(change.leaseDurationMs / 1000);
    return next;
  }

  /**
   * One read-modify-write of a cluster, after every earlier one for it.
   * Status and lease changes skip the fsync: the agent repeats them. Failures
   * are logged; the next heartbeat tries again.
   */
  update(name: string, change: (c: ManagedCluster, now: Date) => ManagedCluster): Promise<void> {
    return this.mutex
      .run(`cluster-status/${name}`, async () => {
        const cluster = await this.store.get('ManagedCluster', name);
        if (!cluster) return;
        const next = change(cluster, new Date(this.clock.now()));
        if (next === cluster) return;
        await this.store.put('ManagedCluster', name, next, { durable: false });
        this.metrics.ready.set({ cluster: name }, readyValue(next));
      })
      .catch((err: unknown) => {
        this.logger.error({ err, cluster: name }, 'cannot update cluster');
      });
  }

  /** Resolves once every change queued so far is written (or failed and logged). */
  async settled(): Promise<void> {
    for (;;) {
      const running = [...this.slots.values()].map((s) => s.running);
      if (running.length === 0) return;
      await Promise.allSettled(running);
    }
  }
}
