import type { Logger } from 'pino';
import type { ManagedCluster } from '../api/index.js';
import { type Clock, ErrorCode, type HawserError, type TimerHandle, type wire } from '../tunnel/index.js';
import { applyStatusReport, markReachable, markUnreachable, readyValue } from './clusters.js';
import type { LeaseTracker } from './leases.js';
import type { HubMetrics } from './metrics.js';
import type { KeyedMutex } from './mutex.js';
import type { HubStore, StoreOp } from './store.js';

// Writes of a ManagedCluster's status: from heartbeats, on lease expiry, on
// renewal. Heartbeats only queue what they learned and never wait for the
// store; per cluster one write runs and at most one waits, into which every
// newer report is folded (only the newest matters: the agent repeats it).
//
// A heartbeat that says "status unchanged" moves only lastObservedTime. At
// 10,000 idle agents that was a whole ManagedCluster rewrite (JSON, sha256,
// LevelDB) every few milliseconds, for one timestamp. It now stays in memory:
// readers see it through liveView(), and it reaches the store with the next
// write of that cluster or in one batch per flush interval.

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

/** Only lastObservedTime moves: kept in memory until a flush. */
export function isObservationOnly(change: StatusChange): boolean {
  return change.unchangedAtMs !== undefined && change.report === undefined && change.renewed !== true;
}

/**
 * How often observed times held in memory are written, in one batch. Readers
 * never wait for it (liveView); it only bounds what a crashed hub forgets of
 * a timestamp that is cosmetic after a restart (every cluster gets a lease).
 */
export const defaultObservedFlushIntervalMs = 300_000;

/** A report's identity, without when it was observed. */
function reportKey(status: wire.ClusterStatus): string {
  return JSON.stringify({ ...status, observedAtUnixMs: 0 });
}

function withObservedTime(cluster: ManagedCluster, atMs: number): ManagedCluster {
  if (atMs <= Date.parse(cluster.status.lastObservedTime ?? '')) return cluster;
  return { ...cluster, status: { ...cluster.status, lastObservedTime: new Date(atMs).toISOString() } };
}

interface Slot {
  waiting: StatusChange | undefined;
  running: Promise<void> | undefined;
}

export class ClusterStatusWriter {
  private readonly slots = new Map<string, Slot>();
  /** lastObservedTime per cluster from unchanged heartbeats, newer than the store's. */
  private readonly observed = new Map<string, number>();
  /** Per cluster, the status report last written (its identity, without when it was observed). */
  private readonly writtenReport = new Map<string, string>();
  private flushTimer: TimerHandle | undefined;
  private flushing: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: HubStore,
    private readonly mutex: KeyedMutex,
    private readonly leases: LeaseTracker,
    private readonly metrics: HubMetrics,
    private readonly logger: Logger,
    private readonly clock: Clock,
    private readonly observedFlushIntervalMs = defaultObservedFlushIntervalMs,
  ) {}

  /** Queues a heartbeat's change; returns at once. */
  queue(name: string, change: StatusChange): void {
    if (!needsWrite(change)) return;
    // The agent repeats a full report now and then, changed or not: one equal to the last
    // written is only an observation (a restarted hub holds none, so its first is written).
    if (change.report && change.renewed !== true && this.writtenReport.get(name) === reportKey(change.report.status)) {
      change = { leaseDurationMs: change.leaseDurationMs, unchangedAtMs: change.report.atMs };
    }
    if (isObservationOnly(change)) {
      this.observed.set(name, Math.max(change.unchangedAtMs!, this.observed.get(name) ?? 0));
      this.flushTimer ??= this.stopped ? undefined : this.clock.setTimeout(() => this.onFlushTimer(), this.observedFlushIntervalMs);
      return;
    }
    let slot = this.slots.get(name);
    if (!slot) this.slots.set(name, (slot = { waiting: undefined, running: undefined }));
    slot.waiting = foldStatusChange(slot.waiting, change);
    slot.running ??= this.drain(name, slot);
  }

  private async drain(name: string, slot: Slot): Promise<void> {
    // Cleared in the same turn the slot is seen empty, so a queued change is never stranded.
    for (let change = slot.waiting; change; change = slot.waiting) {
      slot.waiting = undefined;
      const written = await this.update(name, (cluster, now) => this.apply(name, cluster, change, now));
      if (change.report) {
        if (written) this.writtenReport.set(name, reportKey(change.report.status));
        else this.writtenReport.delete(name);
      }
    }
    slot.running = undefined;
    this.slots.delete(name);
  }

  private apply(name: string, cluster: ManagedCluster, change: StatusChange, now: Date): ManagedCluster {
    let next = change.report ? applyStatusReport(cluster, change.report.status, new Date(change.report.atMs)) : cluster;
    if (change.unchangedAtMs !== undefined) next = withObservedTime(next, change.unchangedAtMs);
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
  update(name: string, change: (c: ManagedCluster, now: Date) => ManagedCluster): Promise<boolean> {
    return this.mutex
      .run(`cluster-status/${name}`, async () => {
        const cluster = await this.store.get('ManagedCluster', name);
        if (!cluster) return false;
        // Every write carries the newest observed time, so memory need not hold it any longer.
        const held = this.observed.get(name);
        this.observed.delete(name);
        const changed = change(cluster, new Date(this.clock.now()));
        const next = held === undefined ? changed : withObservedTime(changed, held);
        if (next === cluster) {
          if (held !== undefined) this.observed.set(name, Math.max(held, this.observed.get(name) ?? 0));
          return true;
        }
        await this.store.put('ManagedCluster', name, next, { durable: false });
        this.metrics.ready.set({ cluster: name }, readyValue(next));
        return true;
      })
      .catch((err: unknown) => {
        this.logger.error({ err, cluster: name }, 'cannot update cluster');
        return false;
      });
  }

  /** The next report of this cluster is written whatever it holds. */
  forgetReport(name: string): void {
    this.writtenReport.delete(name);
  }

  /** The cluster as readers should see it: with an observed time still held in memory. */
  liveView(cluster: ManagedCluster): ManagedCluster {
    const held = this.observed.get(cluster.metadata.name);
    return held === undefined ? cluster : withObservedTime(cluster, held);
  }

  private onFlushTimer(): void {
    this.flushTimer = undefined;
    void this.flushObserved();
  }

  /**
   * Writes every observed time held in memory, in one store batch. Each put
   * expects the version it read; when a cluster was written meanwhile, the
   * batch is refused whole and each cluster goes through its own
   * read-modify-write instead (which carries the held time).
   */
  flushObserved(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    const held = [...this.observed];
    if (held.length === 0) return;
    const ops: StoreOp[] = [];
    for (const [name] of held) {
      const entry = await this.store.read('ManagedCluster', name);
      const next = entry && this.liveView(entry.object);
      if (!entry || next === entry.object) {
        this.observed.delete(name);
        continue;
      }
      ops.push({ op: 'put', kind: 'ManagedCluster', key: name, value: next!, expect: { resourceVersion: entry.resourceVersion } });
    }
    if (ops.length === 0) return;
    try {
      await this.store.batch(ops, { durable: false });
      // Only what was written leaves memory: a newer heartbeat during the write stays.
      for (const [name, atMs] of held) if (this.observed.get(name) === atMs) this.observed.delete(name);
    } catch (err) {
      if ((err as HawserError).code !== ErrorCode.StoreConflict) {
        this.logger.error({ err, clusters: ops.length }, 'cannot write observed times');
        return;
      }
      await Promise.all(held.map(([name]) => (this.observed.has(name) ? this.update(name, (c) => c) : undefined)));
    }
  }

  /** Stops the flush timer; then settled() and flushObserved() write what is left. */
  stop(): void {
    this.stopped = true;
    this.flushTimer?.cancel();
    this.flushTimer = undefined;
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
