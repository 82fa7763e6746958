import { join } from 'node:path';
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
import { silentLogger, tempDir } from './support.js';

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
