import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type Logger, pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { CacheMonitor } from '../../src/agent/cache-monitor.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { SyncReceiver } from '../../src/agent/sync-receiver.js';
import { OfflineCache } from '../../src/cache/index.js';
import type { ManagedCluster } from '../../src/api/index.js';
import { clustersTable } from '../../src/cli/table.js';
import { syncStatusAfter } from '../../src/hub/sync/status.js';
import { ManualClock } from '../../src/tunnel/clock.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import type { wire } from '../../src/tunnel/index.js';
import { mountSmallDisk } from '../../src/testkit/index.js';
import { silentLogger, tempDir, waitFor, wholeSyncObject } from './support.js';

// The cache policy: size and limit reported, a desired state the hub has not
// confirmed for longer than maxAge reported stale (and fresh again once it
// has), in the metrics, the ApplyReport and `hawser get clusters`.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function gauge(metrics: AgentMetrics, name: string): Promise<number> {
  const line = (await metrics.exposition()).text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.split(' ')[1]);
}

describe('CacheMonitor', () => {
  it('reports size and limit, stale past maxAge while disconnected, and confirms while connected', async () => {
    const dir = await tempDir('cache-monitor');
    cleanups.push(() => dir.remove());
    const cache = await OfflineCache.open({ dir: join(dir.path, 'db') });
    cleanups.push(() => cache.close());
    const clock = new ManualClock(1_000_000);
    const receiver = new SyncReceiver(cache, silentLogger, () => clock.now());
    // One committed snapshot: confirmed at 1,000,000.
    const h = receiver.handlerFactory()({ clusterName: 'edge', negotiated: { protocolVersion: 1, features: new Set([Feature.Sync]) }, send: () => Promise.resolve(), ended: new AbortController().signal });
    await h.handle({ $case: 'syncBegin', value: { incarnation: 'hub-1', fromRevision: 0, snapshot: true, toRevision: 1, reason: 'first-sync' } });
    await h.handle({ $case: 'syncEnd', value: { revision: 1, sequence: 1, partial: false } });
    let connected = false;
    const metrics = new AgentMetrics();
    const monitor = new CacheMonitor({ cache, receiver, metrics, logger: silentLogger, clock, limitBytes: 5_000_000, maxAgeMs: 60_000, cleanupIntervalMs: 10_000, connected: () => connected });

    let report = await monitor.check();
    expect(report).toMatchObject({ limitBytes: 5_000_000, maxAgeMs: 60_000, stale: false, confirmedAtUnixMs: 1_000_000 });
    expect(report.sizeBytes).toBeGreaterThan(0);
    expect(await gauge(metrics, 'hawser_agent_cache_size_bytes')).toBe(report.sizeBytes);
    expect(await gauge(metrics, 'hawser_agent_cache_size_limit_bytes')).toBe(5_000_000);

    clock.advance(60_001);
    report = await monitor.check();
    expect(report.stale).toBe(true);
    expect(await gauge(metrics, 'hawser_agent_cache_stale')).toBe(1);
    expect(await gauge(metrics, 'hawser_agent_cache_confirmed_age_seconds')).toBeCloseTo(60.001, 3);
    // Stale is a report only: the set is whole.
    expect((await receiver.desired()).revision).toBe(1);

    connected = true;
    report = await monitor.check();
    expect(report).toMatchObject({ stale: false, confirmedAtUnixMs: 1_060_001 });
    expect(await gauge(metrics, 'hawser_agent_cache_stale')).toBe(0);
  });
});

async function counter(metrics: AgentMetrics, name: string): Promise<number> {
  return gauge(metrics, name);
}

function capturingLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { logger: pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) }), lines };
}

describe('CacheMonitor: disk use bounded', () => {
  it('keeps the newest quarantines within the file cap, drops the oldest (logged, counted), and counts the kept ones in the reported size', async () => {
    const dir = await tempDir('cache-quarantine-cap');
    cleanups.push(() => dir.remove());
    const cache = await OfflineCache.open({ dir: join(dir.path, 'db') });
    cleanups.push(() => cache.close());
    // A disk that keeps flipping bytes: a damaged-records file a minute, and one damaged database moved aside in between.
    const made: string[] = [];
    for (let i = 0; i < 6; i++) {
      await cache.put(`desired/o/${i}`, { i });
      made.push(await cache.quarantineEntries([{ key: `desired/o/${i}`, raw: 'x'.repeat(1000), reason: 'checksum mismatch' }], [], Date.UTC(2026, 0, 1, 0, i)));
    }
    const database = join(dir.path, 'db.quarantine-2026-01-01T00-02-30-000Z');
    await mkdir(database);
    await writeFile(join(database, '000005.ldb'), Buffer.alloc(3000));
    const { logger, lines } = capturingLogger();
    const metrics = new AgentMetrics();
    const monitor = new CacheMonitor({ cache, metrics, logger, limitBytes: 0, maxAgeMs: 0, cleanupIntervalMs: 10_000, connected: () => false, quarantineMaxFiles: 3 });

    const report = await monitor.check();
    const left = (await readdir(dir.path)).filter((n) => n.startsWith('db.quarantine-')).sort();
    expect(left).toEqual(made.slice(3).map((p) => basename(p)).sort());
    expect(await counter(metrics, 'hawser_agent_cache_quarantines_dropped_total')).toBe(4);
    const dropped = lines.filter((l) => l['code'] === 'HAWSER_CACHE_QUARANTINE_DROPPED');
    expect(dropped).toHaveLength(1);
    expect(dropped[0]).toMatchObject({ dropped: 4, maxFiles: 3 });
    // Reported disk use: the database plus what is kept beside it.
    const kept = (await cache.quarantines()).reduce((n, q) => n + q.bytes, 0);
    expect(kept).toBeGreaterThan(3000);
    expect(report.sizeBytes).toBe((await cache.sizeOnDisk()) + kept);
    expect(await gauge(metrics, 'hawser_agent_cache_quarantine_bytes')).toBe(kept);
    expect(await gauge(metrics, 'hawser_agent_cache_size_bytes')).toBe(report.sizeBytes);
  });

  it('keeps the quarantines within their byte budget (an eighth of --cache-size-limit), dropping the oldest first, a damaged database included', async () => {
    const dir = await tempDir('cache-quarantine-bytes');
    cleanups.push(() => dir.remove());
    const cache = await OfflineCache.open({ dir: join(dir.path, 'db') });
    cleanups.push(() => cache.close());
    const database = join(dir.path, 'db.quarantine-2026-01-01T00-00-00-000Z');
    await mkdir(join(database, 'lost'), { recursive: true });
    await writeFile(join(database, 'lost', '000005.ldb'), Buffer.alloc(40_000));
    const newer = await cache.quarantineEntries([{ key: 'desired/o/1', raw: 'y'.repeat(20_000), reason: 'not JSON' }], [], Date.UTC(2026, 0, 1, 1));
    const metrics = new AgentMetrics();
    // 400,000 / 8 = 50,000 bytes: the 20 KB file fits, the 40 KB database beside it does not.
    const monitor = new CacheMonitor({ cache, metrics, logger: silentLogger, limitBytes: 400_000, maxAgeMs: 0, cleanupIntervalMs: 10_000, connected: () => false });
    await monitor.check();
    expect((await cache.quarantines()).map((q) => q.path)).toEqual([newer]);
    expect(await counter(metrics, 'hawser_agent_cache_quarantines_dropped_total')).toBe(1);
  });

  it('quarantines give way to the desired state: within --cache-size-limit they get only the room the database leaves', async () => {
    const dir = await tempDir('cache-quarantine-room');
    cleanups.push(() => dir.remove());
    const cache = await OfflineCache.open({ dir: join(dir.path, 'db') });
    cleanups.push(() => cache.close());
    for (let i = 0; i < 20; i++) await cache.put(`desired/o/${i}`, { data: 'd'.repeat(10_000) });
    const older = await cache.quarantineEntries([{ key: 'desired/o/1', raw: 'a'.repeat(8_000), reason: 'not JSON' }], [], Date.UTC(2026, 0, 1, 0));
    const newer = await cache.quarantineEntries([{ key: 'desired/o/2', raw: 'b'.repeat(8_000), reason: 'not JSON' }], [], Date.UTC(2026, 0, 1, 1));
    const database = await cache.sizeOnDisk();
    // An eighth of the limit would keep both; the room the database leaves keeps one.
    const limitBytes = database + 12_000;
    expect(limitBytes / 8).toBeGreaterThan(16_500);
    const metrics = new AgentMetrics();
    const monitor = new CacheMonitor({ cache, metrics, logger: silentLogger, limitBytes, maxAgeMs: 0, cleanupIntervalMs: 10_000, connected: () => false });
    const report = await monitor.check();
    expect((await cache.quarantines()).map((q) => q.path)).toEqual([newer]);
    expect((await cache.quarantines()).map((q) => q.path)).not.toContain(older);
    expect(report.sizeBytes).toBeLessThanOrEqual(limitBytes);
  });

  it('a quarantine made by the receiver is trimmed at once, not at the next interval', async () => {
    const dir = await tempDir('cache-quarantine-event');
    cleanups.push(() => dir.remove());
    const cache = await OfflineCache.open({ dir: join(dir.path, 'db') });
    cleanups.push(() => cache.close());
    for (let i = 0; i < 3; i++) await cache.quarantineEntries([{ key: `k${i}`, raw: 'z', reason: 'r' }], [], Date.UTC(2026, 0, 1, 0, i));
    const receiver = new SyncReceiver(cache, silentLogger, () => Date.UTC(2026, 0, 1, 1));
    const metrics = new AgentMetrics();
    // Constructed for its subscription to the receiver's 'quarantined' event.
    // Constructed for its subscription to the receiver's 'quarantined' event.
    new CacheMonitor({ cache, receiver, metrics, logger: silentLogger, limitBytes: 0, maxAgeMs: 0, cleanupIntervalMs: 10_000, connected: () => false, quarantineMaxFiles: 2 });
    receiver.emit('quarantined', { keys: ['k'], path: 'x' });
    await waitFor('the oldest quarantine dropped', async () => (await counter(metrics, 'hawser_agent_cache_quarantines_dropped_total')) === 1);
    expect(await cache.quarantines()).toHaveLength(2);
  });

  it('compacts a database whose files take more than --cache-size-limit on disk; every acknowledged record is still there', async () => {
    const dir = await tempDir('cache-compact');
    cleanups.push(() => dir.remove());
    const cache = await OfflineCache.open({ dir: join(dir.path, 'db') });
    cleanups.push(() => cache.close());
    // 200 durable rewrites of 20 records of 5 KB: about 1 MB of write-ahead log for 100 KB of live records.
    for (let round = 0; round < 10; round++) for (let i = 0; i < 20; i++) await cache.put(`desired/o/${i}`, { round, data: String(round).repeat(5000) });
    const limitBytes = 400_000;
    expect(await cache.sizeOnDisk()).toBeGreaterThan(limitBytes);
    const { logger, lines } = capturingLogger();
    const metrics = new AgentMetrics();
    const monitor = new CacheMonitor({ cache, metrics, logger, limitBytes, maxAgeMs: 0, cleanupIntervalMs: 10_000, connected: () => false });
    const report = await monitor.check();
    expect(report.sizeBytes).toBeLessThanOrEqual(limitBytes);
    expect(await counter(metrics, 'hawser_agent_cache_compactions_total')).toBe(1);
    expect(lines.some((l) => l['code'] === 'HAWSER_SYNC_CACHE_FULL')).toBe(false);
    for (let i = 0; i < 20; i++) expect(await cache.get(`desired/o/${i}`)).toEqual({ round: 9, data: '9'.repeat(5000) });
    // Under the limit now: the next check does not compact again.
    await monitor.check();
    expect(await counter(metrics, 'hawser_agent_cache_compactions_total')).toBe(1);
  });
});

describe('CacheMonitor on a small real disk', () => {
  it('a disk that keeps flipping bytes: rewrites and quarantines round after round stay within --cache-size-limit, and the 3 MB disk never fills', async () => {
    const disk = await mountSmallDisk(3 * 1024 * 1024);
    cleanups.push(() => disk.close());
    const cache = await OfflineCache.open({ dir: join(disk.path, 'db') });
    cleanups.push(() => cache.close());
    const limitBytes = 1024 * 1024;
    const metrics = new AgentMetrics();
    const monitor = new CacheMonitor({ cache, metrics, logger: silentLogger, limitBytes, maxAgeMs: 0, cleanupIntervalMs: 10_000, connected: () => false });
    // 40 rounds of 100 KB rewritten and 64 KB quarantined: 6.5 MB written in all, on a 3 MB disk.
    for (let round = 0; round < 40; round++) {
      for (let i = 0; i < 20; i++) await cache.put(`desired/o/${i}`, { round, data: randomBytes(2_500).toString('hex') });
      await cache.quarantineEntries([{ key: `desired/o/${round % 20}`, raw: randomBytes(32_768).toString('hex'), reason: 'checksum mismatch' }], [], Date.UTC(2026, 0, 1, 0, round));
      const report = await monitor.check();
      expect(report.sizeBytes).toBeLessThanOrEqual(limitBytes);
    }
    expect(await counter(metrics, 'hawser_agent_cache_quarantines_dropped_total')).toBeGreaterThan(0);
    expect(await counter(metrics, 'hawser_agent_cache_compactions_total')).toBeGreaterThan(0);
    // Every record written last (and not quarantined) reads back.
    expect(await cache.get(`desired/o/0`)).toMatchObject({ round: 39 });
  });
});

describe('CacheMonitor: no room to compact', () => {
  it('a compaction that fails for a full disk leaves the database as it was, and the check still reports', async () => {
    const disk = await mountSmallDisk(2 * 1024 * 1024);
    cleanups.push(() => disk.close());
    const cache = await OfflineCache.open({ dir: join(disk.path, 'db') });
    cleanups.push(() => cache.close());
    for (let i = 0; i < 20; i++) await cache.put(`desired/o/${i}`, { data: randomBytes(5_000).toString('hex') });
    const before = await cache.sizeOnDisk();
    await disk.fill(0);
    const { logger, lines } = capturingLogger();
    const metrics = new AgentMetrics();
    const monitor = new CacheMonitor({ cache, metrics, logger, limitBytes: 100_000, maxAgeMs: 0, cleanupIntervalMs: 10_000, connected: () => false });
    const report = await monitor.check();
    expect(report.sizeBytes).toBe(before);
    expect(await counter(metrics, 'hawser_agent_cache_compactions_total')).toBe(0);
    expect(lines.some((l) => l['code'] === 'HAWSER_SYNC_CACHE_FULL' && /cannot compact/.test(String(l['msg'])))).toBe(true);
    expect((await readdir(disk.path)).filter((n) => n.startsWith('db.'))).toEqual([]);
    await disk.unfill();
    for (let i = 0; i < 20; i++) expect(await cache.get(`desired/o/${i}`)).toMatchObject({ data: expect.any(String) });
    // Room again: the next check compacts.
    await monitor.check();
    expect(await counter(metrics, 'hawser_agent_cache_compactions_total')).toBe(1);
  });
});

describe('CacheMonitor: a database over the limit even compacted', () => {
  it('refuses objects that would grow the desired state (HAWSER_SYNC_CACHE_FULL) and keeps taking what does not', async () => {
    const dir = await tempDir('cache-over-limit');
    cleanups.push(() => dir.remove());
    const cache = await OfflineCache.open({ dir: join(dir.path, 'db') });
    cleanups.push(() => cache.close());
    const session = { clusterName: 'edge', negotiated: { protocolVersion: 1, features: new Set([Feature.Sync]) }, send: () => Promise.resolve(), ended: new AbortController().signal };
    const cm = (name: string, data: string) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data: { k: data } });
    // Desired objects, and beside them records that do not count as desired state (here: one of data that does not compress).
    const filler = await new SyncReceiver(cache, silentLogger, () => 1).handlerFactory()(session);
    await filler.handle({ $case: 'syncBegin', value: { incarnation: 'hub-1', fromRevision: 0, snapshot: true, toRevision: 1, reason: 'first-sync' } });
    for (let i = 0; i < 20; i++) await filler.handle({ $case: 'syncObject', value: wholeSyncObject(cm(`cm-${i}`, randomBytes(8).toString('hex'))) });
    await filler.handle({ $case: 'syncEnd', value: { revision: 1, sequence: 1, partial: false } });
    await cache.put('other/blob', randomBytes(40_000).toString('base64'));
    await cache.compact();
    const desiredBytes = await new SyncReceiver(cache, silentLogger, () => 1).desiredBytes();
    const compacted = await cache.sizeOnDisk();
    expect(compacted).toBeGreaterThan(desiredBytes + 2_000);
    const limitBytes = desiredBytes + 1_000;

    const receiver = new SyncReceiver(cache, silentLogger, () => 2, { maxCacheBytes: limitBytes });
    const monitor = new CacheMonitor({ cache, receiver, metrics: new AgentMetrics(), logger: silentLogger, limitBytes, maxAgeMs: 0, cleanupIntervalMs: 10_000, connected: () => false });
    await monitor.check();
    expect(receiver.databaseBytesOverLimit).toBeGreaterThan(limitBytes);
    const h = receiver.handlerFactory()(session);
    await h.handle({ $case: 'syncBegin', value: { incarnation: 'hub-1', fromRevision: 1, snapshot: false, toRevision: 2, reason: '' } });
    // A new object fits the desired-state count but would grow a database already past the limit: refused.
    await h.handle({ $case: 'syncObject', value: wholeSyncObject(cm('new', 'x'), { revision: 2 }) });
    // One that shrinks is taken.
    await h.handle({ $case: 'syncObject', value: wholeSyncObject(cm('cm-0', ''), { revision: 2 }) });
    await h.handle({ $case: 'syncEnd', value: { revision: 2, sequence: 1, partial: false } });
    const desired = await receiver.desired();
    expect(desired.refused.map((r) => [r.key.name, r.code])).toEqual([['new', 'HAWSER_SYNC_CACHE_FULL']]);
    expect(desired.objects.find((o) => o.object.metadata.name === 'cm-0')?.object).toEqual(cm('cm-0', ''));
    expect(desired.objects).toHaveLength(20);
  });
});

describe('offline cache in cluster status', () => {
  const report = (offlineCache: wire.OfflineCacheReport): wire.ApplyReport => ({
    revision: 3, objects: [], pruneHeldReason: '', pruneRan: true, appliedAtUnixMs: 0, objectsOmitted: 0, pruneHeldIncarnation: '', pruneHeldRevision: 0, offlineCache,
  });
  const cluster = (sync: unknown): ManagedCluster =>
    ({ apiVersion: 'clusters.clusternet.io/v1beta1', kind: 'ManagedCluster', metadata: { name: 'edge-1', namespace: 'clusternet-x' }, spec: { clusterId: 'id', clusterType: 'EdgeCluster', syncMode: 'Pull' }, status: { conditions: [], sync } }) as unknown as ManagedCluster;

  it('get clusters says stale once the max age has passed since the hub last confirmed it (the agent may be away), and untrusted when it is', () => {
    const at = Date.UTC(2026, 0, 1);
    const body = syncStatusAfter(undefined, 'edge-1', report({ sizeBytes: 1000, desiredBytes: 500, limitBytes: 2000, confirmedAtUnixMs: at, maxAgeMs: 3600_000, stale: false, quarantinedRecords: 0, untrustedReason: '' }), {});
    expect(body.offlineCache).toEqual({ sizeBytes: 1000, desiredBytes: 500, limitBytes: 2000, confirmedAt: '2026-01-01T00:00:00.000Z', maxAgeMs: 3600_000, stale: false, quarantinedRecords: 0 });
    expect(clustersTable([cluster(body)], at + 3600_000)).not.toContain('stale');
    expect(clustersTable([cluster(body)], at + 3600_001)).toContain('edge-1: offline cache stale: desired state last confirmed by the hub 60m ago (max age 60m)');
    const untrusted = syncStatusAfter(body, 'edge-1', report({ sizeBytes: 1000, desiredBytes: 500, limitBytes: 2000, confirmedAtUnixMs: at, maxAgeMs: 0, stale: false, quarantinedRecords: 2, untrustedReason: '2 damaged record(s)' }), {});
    expect(clustersTable([cluster(untrusted)], at + 10 * 3600_000)).toContain('edge-1: offline cache untrusted (no prune until the hub\'s snapshot): 2 damaged record(s)');
    expect(clustersTable([cluster(untrusted)], at + 10 * 3600_000)).not.toContain('stale');
  });
});
