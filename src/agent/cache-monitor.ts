import { readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { OfflineCache } from '../cache/index.js';
import { type Clock, ErrorCode, systemClock, type TimerHandle, type wire } from '../tunnel/index.js';
import type { AgentMetrics } from './metrics.js';
import type { SyncReceiver } from './sync-receiver.js';

// The offline cache's policy, checked every cleanup interval: its size on
// disk against --cache-size-limit, and the age of the desired state against
// --cache-max-age. Stale is only reported (metric, log line, ApplyReport,
// `hawser get clusters`): nothing is ever removed from the cluster because
// of age. While a sync session is up the hub confirms the set (it pushes
// every change), so each check then records "confirmed now".

/** Stale: the hub has not confirmed the set for longer than maxAge (0: never stale). Pure. */
export function isStale(confirmedAt: number, now: number, maxAgeMs: number): boolean {
  return maxAgeMs > 0 && now - confirmedAt > maxAgeMs;
}

export interface CacheMonitorOptions {
  cache: OfflineCache;
  /** Absent in Push (no desired state kept): only the size is watched. */
  receiver?: SyncReceiver;
  metrics: AgentMetrics;
  logger: Logger;
  clock?: Clock;
  limitBytes: number;
  maxAgeMs: number;
  cleanupIntervalMs: number;
  /** A sync session is up now. */
  connected: () => boolean;
  /** Quarantines kept beside the database at most (newest kept). Default quarantineLimitDefaults. */
  quarantineMaxFiles?: number;
  /** Their bytes at most; default: an eighth of limitBytes (256 MiB with no limit), and never more than the room the database leaves under limitBytes. */
  quarantineMaxBytes?: number;
}

/** Newest quarantines kept: enough for an operator to see a pattern, bounded when a disk keeps flipping bytes. */
export const quarantineMaxFilesDefault = 16;

/** The quarantine byte budget for a size limit: an eighth of it, 256 MiB with none. */
export function quarantineMaxBytesFor(limitBytes: number): number {
  return limitBytes > 0 ? Math.floor(limitBytes / 8) : 256 * 1024 * 1024;
}

export class CacheMonitor {
  private readonly clock: Clock;
  private timer: TimerHandle | undefined;
  private stopped = true;
  private last: wire.OfflineCacheReport | undefined;
  private wasStale = false;
  private quarantined = 0;
  private running: Promise<void> | undefined;

  constructor(private readonly o: CacheMonitorOptions) {
    this.clock = o.clock ?? systemClock;
    o.receiver?.on('quarantined', (e) => {
      this.quarantined += e.keys.length;
      if (e.database) o.metrics.cacheQuarantines.inc({ what: 'database' });
      else o.metrics.cacheQuarantines.inc({ what: 'record' }, e.keys.length);
      // Each new file may take the quarantines past their cap: trim now, not at the next interval.
      void this.trimQuarantines().catch((err: unknown) => o.logger.warn({ err: (err as Error).message }, 'offline cache: cannot trim quarantines; trying again at the next cleanup interval'));
    });
  }

  private trimming: Promise<number> | undefined;

  /** Drops the oldest quarantines past the cap (logged, counted); returns the bytes the kept ones take. One at a time. */
  trimQuarantines(): Promise<number> {
    const run = async (): Promise<number> => {
      const { cache, metrics, logger } = this.o;
      const maxFiles = this.o.quarantineMaxFiles ?? quarantineMaxFilesDefault;
      // Quarantines give way to the desired state: within the limit, they get only the room the database leaves.
      const room = this.o.limitBytes > 0 ? Math.max(0, this.o.limitBytes - (await cache.sizeOnDisk())) : Number.POSITIVE_INFINITY;
      const maxBytes = Math.min(this.o.quarantineMaxBytes ?? quarantineMaxBytesFor(this.o.limitBytes), room);
      const dropped = await cache.trimQuarantines({ maxFiles, maxBytes });
      if (dropped.length > 0) {
        metrics.cacheQuarantinesDropped.inc({}, dropped.length);
        logger.warn(
          { code: ErrorCode.CacheQuarantineDropped, dropped: dropped.length, droppedBytes: dropped.reduce((n, q) => n + q.bytes, 0), oldest: dropped.at(-1)!.path, maxFiles, maxBytes, limitBytes: this.o.limitBytes },
          'offline cache: removed the oldest quarantined data past the cap (a disk that keeps damaging data should be replaced)',
        );
      }
      const kept = (await cache.quarantines()).reduce((n, q) => n + q.bytes, 0);
      metrics.cacheQuarantineBytes.set(kept);
      return kept;
    };
    const next = (this.trimming ?? Promise.resolve(0)).catch(() => 0).then(run);
    this.trimming = next;
    return next.finally(() => {
      if (this.trimming === next) this.trimming = undefined;
    });
  }

  /** Compactions run because the database's files took more than the limit. */
  compactions = 0;

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.tick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.running;
  }

  /** The last check's report (for ApplyReport.offline_cache); checks now when there was none. */
  async report(): Promise<wire.OfflineCacheReport> {
    return this.last ?? (await this.check());
  }

  /** One check: confirm when connected, measure, report stale, tidy leftovers of crashed opens. */
  async check(): Promise<wire.OfflineCacheReport> {
    const { cache, receiver, metrics, logger } = this.o;
    const now = this.clock.now();
    if (receiver && this.o.connected()) await receiver.confirm().catch(() => undefined);
    const desired = receiver ? await receiver.desired().catch(() => undefined) : undefined;
    await removeLeftovers(cache.dir);
    let databaseBytes = await cache.sizeOnDisk();
    if (this.o.limitBytes > 0 && databaseBytes > this.o.limitBytes) databaseBytes = await this.compact(databaseBytes);
    if (receiver) receiver.databaseBytesOverLimit = this.o.limitBytes > 0 && databaseBytes > this.o.limitBytes ? databaseBytes : undefined;
    const sizeBytes = databaseBytes + (await this.trimQuarantines());
    const desiredBytes = receiver ? await receiver.desiredBytes().catch(() => 0) : 0;
    const confirmedAt = desired?.confirmedAt ?? 0;
    // A set never confirmed (nothing synced yet) is empty, not stale.
    const stale = confirmedAt > 0 && isStale(confirmedAt, now, this.o.maxAgeMs);
    metrics.cacheSizeBytes.set(sizeBytes);
    metrics.cacheDesiredBytes.set(desiredBytes);
    metrics.cacheSizeLimitBytes.set(this.o.limitBytes);
    metrics.cacheStale.set(stale ? 1 : 0);
    metrics.cacheConfirmedAge.set(confirmedAt > 0 ? Math.max(0, now - confirmedAt) / 1000 : 0);
    if (stale && !this.wasStale) {
      logger.warn(
        { code: ErrorCode.CacheStale, confirmedAt: new Date(confirmedAt).toISOString(), maxAgeMs: this.o.maxAgeMs },
        'offline cache: the desired state is older than --cache-max-age (the hub has not confirmed it since); still reconciled, nothing removed for its age',
      );
    } else if (!stale && this.wasStale) {
      logger.info('offline cache: the hub confirmed the desired state again; no longer stale');
    }
    this.wasStale = stale;
    if (this.o.limitBytes > 0 && desiredBytes > this.o.limitBytes) {
      logger.warn({ code: ErrorCode.SyncCacheFull, desiredBytes, limitBytes: this.o.limitBytes }, 'offline cache holds more desired state than --cache-size-limit (limit lowered since): new objects are refused');
    }
    this.last = {
      sizeBytes,
      desiredBytes,
      limitBytes: this.o.limitBytes,
      confirmedAtUnixMs: confirmedAt,
      maxAgeMs: this.o.maxAgeMs,
      stale,
      quarantinedRecords: this.quarantined,
      untrustedReason: desired?.untrusted?.reason ?? '',
    };
    return this.last;
  }

  /**
   * The database's files past the limit (old versions, the write-ahead log):
   * LevelDB compacts them down to the live records. Returns the size after.
   */
  private async compact(before: number): Promise<number> {
    const { cache, metrics, logger } = this.o;
    try {
      await cache.compact();
    } catch (err) {
      // No room for the copy, say: the database stays as it was; the rest of the check goes on.
      logger.warn({ code: ErrorCode.SyncCacheFull, err: (err as Error).message, beforeBytes: before, limitBytes: this.o.limitBytes }, 'offline cache: cannot compact the database (left as it was); trying again at the next cleanup interval');
      return before;
    }
    this.compactions++;
    metrics.cacheCompactions.inc({});
    const after = await cache.sizeOnDisk();
    const fields = { beforeBytes: before, afterBytes: after, limitBytes: this.o.limitBytes };
    if (after > this.o.limitBytes) logger.warn({ code: ErrorCode.SyncCacheFull, ...fields }, 'offline cache: the database takes more than --cache-size-limit on disk even compacted; objects that would grow the desired state are refused (HAWSER_SYNC_CACHE_FULL) until it is back under');
    else logger.info(fields, 'offline cache: the database took more than --cache-size-limit on disk; compacted');
    return after;
  }

  private tick(): void {
    this.running = this.check()
      .then(
        () => undefined,
        (err: unknown) => this.o.logger.warn({ err: (err as Error).message }, 'offline cache check failed; trying again at the next cleanup interval'),
      )
      .finally(() => {
        this.running = undefined;
        if (!this.stopped) this.timer = this.clock.setTimeout(() => this.tick(), this.o.cleanupIntervalMs);
      });
  }
}

/** Copies an open or a salvage left behind when the agent died during it (never a quarantine: that one is kept). */
async function removeLeftovers(dbDir: string): Promise<void> {
  const parent = dirname(dbDir);
  const base = basename(dbDir);
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    if (name.startsWith(`${base}.preopen-`) || /\.salvage-[0-9a-f]{8}$/.test(name)) await rm(join(parent, name), { recursive: true, force: true });
  }
}
