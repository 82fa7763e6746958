import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SyncReceiver } from '../../src/agent/sync-receiver.js';
import type { AgentFrameHandler } from '../../src/agent/router.js';
import { type CacheRange, OfflineCache } from '../../src/cache/index.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import { silentLogger, tempDir, wholeSyncObject } from './support.js';

// Every apply pass (each commit, every --apply-interval, on every idle agent)
// reads the desired set. A LevelDB iterator costs CPU even on an empty cache,
// so the read takes two iterators over sync/, not one per key and prefix.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('the desired-set read', () => {
  it('takes two range scans, skips sync/part/, and still returns every object', async () => {
    const dir = await tempDir('sync-read-cost');
    cleanups.push(() => dir.remove());
    const cache = await OfflineCache.open({ dir: join(dir.path, 'db') });
    cleanups.push(() => cache.close());
    const receiver = new SyncReceiver(cache, silentLogger, () => 1_000);
    const handler: AgentFrameHandler = receiver.handlerFactory()({
      clusterName: 'edge',
      negotiated: { protocolVersion: 1, features: new Set([Feature.Sync]) },
      send: () => Promise.resolve(),
      ended: new AbortController().signal,
    });
    await handler.handle({ $case: 'syncBegin', value: { incarnation: 'hub-1', fromRevision: 0, snapshot: true, toRevision: 3, reason: 'first-sync' } });
    for (const name of ['a', 'b']) await handler.handle({ $case: 'syncObject', value: wholeSyncObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data: { k: name } }) });
    await handler.handle({ $case: 'syncEnd', value: { revision: 3, sequence: 1, partial: false } });
    // A large object's chunk in flight: not part of the desired set, and not read with it.
    await cache.put('sync/part/chunk/x/0', { bytes: 'x'.repeat(1024) });

    const scans: CacheRange[] = [];
    const view = cache.view.bind(cache);
    cache.view = () => {
      const v = view();
      const scan = v.scan.bind(v);
      v.scan = (range) => {
        scans.push(range);
        return scan(range);
      };
      return v;
    };
    const desired = await receiver.desired();
    expect(desired.objects.map((o) => o.object.metadata.name).sort()).toEqual(['a', 'b']);
    expect(desired.revision).toBe(3);
    expect(desired.allowPrune).toBe(true);
    expect(scans).toHaveLength(2);
    for (const range of scans) expect('sync/part/chunk/x/0' >= (range.gte ?? '') && 'sync/part/chunk/x/0' < (range.lt ?? '')).toBe(false);
  });
});
