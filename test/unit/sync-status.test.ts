import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedStore } from '../../src/hub/store.js';
import { appliedAtRefreshMs, readSyncStatus, writeApplyReport } from '../../src/hub/sync/status.js';
import { wire } from '../../src/tunnel/index.js';
import { tempDir } from './support.js';

// An agent reports after every apply pass (every 30 s, and after each group it
// commits): a report that changes nothing a reader sees is not written.

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function store(): Promise<EmbeddedStore> {
  const dir = await tempDir('sync-status');
  const s = await EmbeddedStore.open(dir.path);
  cleanup.push(() => dir.remove(), () => s.close());
  return s;
}

const t0 = Date.UTC(2026, 10, 23, 4, 0, 0);

function report(revision: number, at: number, rows: Array<[string, number?]>, held?: { incarnation: string; revision: number }): wire.ApplyReport {
  return {
    revision,
    objects: rows.map(([name, ready]) => ({
      key: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'default', name },
      subscriptions: ['default/app'],
      action: 'applied',
      exists: true,
      errorCode: '',
      errorMessage: '',
      observedStatusJson: ready === undefined ? '' : JSON.stringify({ replicas: 2, readyReplicas: ready }),
    })),
    pruneHeldReason: held ? 'held' : '',
    pruneHeldIncarnation: held?.incarnation ?? '',
    pruneHeldRevision: held?.revision ?? 0,
    pruneRan: true,
    appliedAtUnixMs: at,
    objectsOmitted: 0,
  };
}

describe('writeApplyReport', () => {
  it('writes a report that changes what readers see, and not one that only moves appliedAt within appliedAtRefreshMs', async () => {
    const s = await store();
    const version = async () => (await s.read('ClusterSyncStatus', { namespace: 'clusternet-a', name: 'a' }))?.resourceVersion;
    await writeApplyReport(s, 'clusternet-a', 'a', report(3, t0, [['web', 1]]), { syncMode: 'Pull' });
    const first = await version();
    expect(first).toBeDefined();

    // The next periodic pass: the same rows, a later time.
    await writeApplyReport(s, 'clusternet-a', 'a', report(3, t0 + 30_000, [['web', 1]]), { syncMode: 'Pull' });
    expect(await version()).toBe(first);
    expect((await readSyncStatus(s, 'clusternet-a', 'a'))?.appliedAt).toBe(new Date(t0).toISOString());

    // Each of these changes something a reader sees: an object's observed status, the revision, a held prune, the mode.
    const changes: wire.ApplyReport[] = [
      report(3, t0 + 60_000, [['web', 2]]),
      report(4, t0 + 90_000, [['web', 2]]),
      report(4, t0 + 120_000, [['web', 2]], { incarnation: 'inc', revision: 4 }),
    ];
    let last = first;
    for (const r of changes) {
      await writeApplyReport(s, 'clusternet-a', 'a', r, { syncMode: 'Pull' });
      const now = await version();
      expect(now).not.toBe(last);
      expect((await readSyncStatus(s, 'clusternet-a', 'a'))?.appliedAt).toBe(new Date(r.appliedAtUnixMs).toISOString());
      last = now;
    }
    await writeApplyReport(s, 'clusternet-a', 'a', changes[2]!, { syncMode: 'Dual' });
    expect(await version()).not.toBe(last);
    expect((await readSyncStatus(s, 'clusternet-a', 'a'))?.syncMode).toBe('Dual');
    last = await version();

    // Nothing else changed, but appliedAt has moved on by the refresh interval: written, so it never goes staler than that.
    const later = report(4, t0 + 120_000 + appliedAtRefreshMs, [['web', 2]], { incarnation: 'inc', revision: 4 });
    await writeApplyReport(s, 'clusternet-a', 'a', later, { syncMode: 'Dual' });
    expect(await version()).not.toBe(last);
    expect((await readSyncStatus(s, 'clusternet-a', 'a'))?.appliedAt).toBe(new Date(later.appliedAtUnixMs).toISOString());
  });

  it('a Push record that moves is written even when the rows are the same', async () => {
    const s = await store();
    const version = async () => (await s.read('ClusterSyncStatus', { namespace: 'clusternet-a', name: 'a' }))?.resourceVersion;
    await writeApplyReport(s, 'clusternet-a', 'a', report(1, t0, [['web']]), { syncMode: 'Push', push: { incarnation: 'inc', revision: 1 } });
    const first = await version();
    await writeApplyReport(s, 'clusternet-a', 'a', report(1, t0 + 1_000, [['web']]), { syncMode: 'Push', merge: true, push: { incarnation: 'inc', revision: 1 } });
    expect(await version()).toBe(first);
    await writeApplyReport(s, 'clusternet-a', 'a', report(1, t0 + 2_000, [['web']]), { syncMode: 'Push', merge: true, push: { incarnation: 'inc', revision: 2 } });
    expect(await version()).not.toBe(first);
    expect((await readSyncStatus(s, 'clusternet-a', 'a'))?.push).toEqual({ incarnation: 'inc', revision: 2 });
  });
});

describe('writeApplyReport: the offline cache part', () => {
  const mib = 1024 * 1024;
  function withCache(at: number, cache: Partial<wire.OfflineCacheReport>): wire.ApplyReport {
    return {
      ...report(3, at, [['web', 1]]),
      offlineCache: {
        sizeBytes: 4 * mib,
        desiredBytes: mib,
        limitBytes: 512 * mib,
        confirmedAtUnixMs: at,
        maxAgeMs: 0,
        stale: false,
        quarantinedRecords: 0,
        untrustedReason: '',
        ...cache,
      } as wire.OfflineCacheReport,
    };
  }

  it('a size that drifts a little and a confirmedAt that moves with each pass are no write; what a reader acts on is', async () => {
    const s = await store();
    const version = async () => (await s.read('ClusterSyncStatus', { namespace: 'clusternet-a', name: 'a' }))?.resourceVersion;
    await writeApplyReport(s, 'clusternet-a', 'a', withCache(t0, {}), { syncMode: 'Pull' });
    const first = await version();
    expect(first).toBeDefined();

    // The next pass: LevelDB's log grew by a few KB, the hub confirmed again.
    await writeApplyReport(s, 'clusternet-a', 'a', withCache(t0 + 30_000, { sizeBytes: 4 * mib + 12_345 }), { syncMode: 'Pull' });
    expect(await version()).toBe(first);
    expect((await readSyncStatus(s, 'clusternet-a', 'a'))?.offlineCache?.sizeBytes).toBe(4 * mib);

    // Each of these is something a reader acts on: written.
    const changes: Array<Partial<wire.OfflineCacheReport>> = [
      { sizeBytes: 40 * mib }, // grew by much (toward its limit)
      { sizeBytes: 40 * mib, stale: true },
      { sizeBytes: 40 * mib, stale: true, quarantinedRecords: 1 },
      { sizeBytes: 40 * mib, stale: true, quarantinedRecords: 1, limitBytes: 64 * mib },
      { sizeBytes: 40 * mib, stale: true, quarantinedRecords: 1, limitBytes: 64 * mib, untrustedReason: 'checksum' },
      { sizeBytes: 40 * mib, stale: true, quarantinedRecords: 1, limitBytes: 64 * mib, untrustedReason: 'checksum', confirmedAtUnixMs: 0 }, // never confirmed
    ];
    let last = first;
    let at = t0 + 30_000;
    for (const c of changes) {
      at += 30_000;
      await writeApplyReport(s, 'clusternet-a', 'a', withCache(at, c), { syncMode: 'Pull' });
      const now = await version();
      expect(now, JSON.stringify(c)).not.toBe(last);
      last = now;
    }

    // Drift only, but appliedAt moved on by the refresh interval: written with the newest figures.
    const later = withCache(at + appliedAtRefreshMs, { ...changes.at(-1), sizeBytes: 40 * mib + 1 });
    await writeApplyReport(s, 'clusternet-a', 'a', later, { syncMode: 'Pull' });
    expect(await version()).not.toBe(last);
    expect((await readSyncStatus(s, 'clusternet-a', 'a'))?.offlineCache?.sizeBytes).toBe(40 * mib + 1);
  });
});
