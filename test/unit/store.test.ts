import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { OfflineCache } from '../../src/cache/index.js';
import { EmbeddedStore, type KubeObject, SealingStore } from '../../src/hub/store.js';
import { mountSmallDisk } from '../../src/testkit/index.js';
import { waitFor } from './support.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { storeConformance, type StoreHarness } from './store-conformance.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'hawser-store-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

function sub(name: string, replicas: number): KubeObject {
  return { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Subscription', metadata: { name, namespace: 'default' }, spec: { replicas } };
}

function embedded(options: { historyPerKind: number; recentEvents: number }): StoreHarness {
  return {
    historyPerKind: options.historyPerKind,
    async fresh() {
      const dir = join(await tempDir(), 'store');
      return { open: () => EmbeddedStore.open(dir, options) };
    },
  };
}

// Few recent events in memory: live watchers also read from disk.
storeConformance('EmbeddedStore (LevelDB), watchers mostly on disk', embedded({ historyPerKind: 8, recentEvents: 3 }));
storeConformance('EmbeddedStore (LevelDB), watchers in memory', embedded({ historyPerKind: 8, recentEvents: 1024 }));

// Every object sealed, so the whole suite runs through seal and open.
storeConformance('SealingStore over EmbeddedStore, sealing everything', {
  historyPerKind: 8,
  async fresh() {
    const dir = await tempDir();
    return {
      async open() {
        const inner = await EmbeddedStore.open(join(dir, 'store'), { historyPerKind: 8, recentEvents: 3 });
        return (await SealingStore.open(inner, join(dir, 'secret-key'), () => true)).store;
      },
    };
  },
});

describe('EmbeddedStore', () => {
  const own: string[] = [];
  afterEach(async () => {
    await Promise.all(own.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });

  it('refuses a damaged store with HAWSER_CACHE_CORRUPT and leaves its files alone (never a fresh store over data)', async () => {
    const d = await mkdtemp(join(tmpdir(), 'hawser-store-'));
    own.push(d);
    const store = await EmbeddedStore.open(d);
    await store.put('ClusterCredential', 'h', { hash: 'h', clusterId: 'c', clusterName: 'n', issuedAt: 'now' });
    await store.close();
    for (const f of await readdir(d)) if (f === 'CURRENT' || f.startsWith('MANIFEST')) await rm(join(d, f));
    const before = (await readdir(d)).sort();

    const err = await EmbeddedStore.open(d).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.CacheCorrupt });
    expect((err as Error).message).toContain('move it aside');
    expect((await readdir(d)).sort()).toEqual(before);
  });
});

describe('EmbeddedStore history and upgrades', () => {
  it('keeps history per kind: a chatty kind does not push another out', async () => {
    const store = await EmbeddedStore.open(join(await tempDir(), 'store'), { historyPerKind: 4 });
    try {
      const from = (await store.info()).resourceVersion;
      await store.put('Manifest', { namespace: 'c1', name: 'm' }, sub('m', 1));
      for (let i = 0; i < 20; i++) await store.put('ClusterCredential', `h${i}`, { hash: `h${i}`, clusterId: 'c', clusterName: 'n', issuedAt: 't' });
      const [first] = await collectUntil(store.watch('Manifest', { resourceVersion: from, signal: AbortSignal.timeout(10_000) }), 1);
      expect(first).toMatchObject({ type: 'ADDED', key: { namespace: 'c1', name: 'm' } });
      await expect(store.watch('ClusterCredential', { resourceVersion: from })[Symbol.asyncIterator]().next()).rejects.toMatchObject({
        code: ErrorCode.ResourceVersionTooOld,
      });
    } finally {
      await store.close();
    }
  });

  it('upgrades a store written before versions: objects kept with versions, old keys gone, older watches TOO_OLD', async () => {
    const dir = join(await tempDir(), 'store');
    const old = await OfflineCache.open({ dir });
    const cluster = { apiVersion: 'clusters.hawser.io/v1beta1', kind: 'ManagedCluster', metadata: { name: 'edge-1' }, spec: { clusterId: 'x' }, status: { conditions: [] } };
    await old.put('ManagedCluster/edge-1', cluster);
    await old.put('ClusterCredential/abc', { hash: 'abc', clusterId: 'x', clusterName: 'edge-1', issuedAt: 't' });
    await old.close();

    const store = await EmbeddedStore.open(dir);
    const info = await store.info();
    expect(info.resourceVersion).toBe('2');
    expect(await store.get('ManagedCluster', 'edge-1')).toEqual({ ...cluster, metadata: { name: 'edge-1', resourceVersion: '1' } });
    expect((await store.read('ClusterCredential', 'abc'))?.resourceVersion).toBe('2');
    await expect(store.watch('ManagedCluster', { resourceVersion: '0' })[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: ErrorCode.ResourceVersionTooOld });
    await store.close();

    const again = await EmbeddedStore.open(dir);
    expect(await again.info()).toEqual(info);
    await again.close();
    const raw = await OfflineCache.open({ dir });
    try {
      expect(await raw.entries('ManagedCluster/')).toEqual([]);
      expect(await raw.entries('ClusterCredential/')).toEqual([]);
    } finally {
      await raw.close();
    }
  });

  it('refuses unknown or non-positive options', async () => {
    const dir = join(await tempDir(), 'store');
    await expect(EmbeddedStore.open(dir, { historyPerKnd: 3 } as never)).rejects.toMatchObject({ code: ErrorCode.InvalidOption });
    await expect(EmbeddedStore.open(dir, { historyPerKind: 0 })).rejects.toMatchObject({ code: ErrorCode.InvalidOption });
  });
});

async function collectUntil<T>(iterable: AsyncIterable<T>, n: number): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) {
    out.push(item);
    if (out.length === n) break;
  }
  return out;
}

describe('EmbeddedStore batches without reading what they replace', () => {
  it('the versions a store wrote decide preconditions and ADDED/MODIFIED as the database would, across deletes, one batch and a reopen', async () => {
    const dir = join(await tempDir(), 'store');
    let store = await EmbeddedStore.open(dir);
    const seen: string[] = [];
    const abort = new AbortController();
    const watching = (async () => {
      for await (const e of store.watch('Subscription', { resourceVersion: '0', signal: abort.signal })) seen.push(`${e.type} ${e.key.name} ${(e.object.spec as { replicas: number }).replicas}`);
    })();
    const key = { namespace: 'default', name: 'a' };
    const v1 = await store.put('Subscription', key, sub('a', 1), { expect: { absent: true } });
    await expect(store.put('Subscription', key, sub('a', 9), { expect: { absent: true } })).rejects.toMatchObject({ code: ErrorCode.StoreConflict });
    const v2 = await store.put('Subscription', key, sub('a', 2), { expect: { resourceVersion: v1 } });
    await expect(store.put('Subscription', key, sub('a', 9), { expect: { resourceVersion: v1 } })).rejects.toMatchObject({ code: ErrorCode.StoreConflict });
    // Deleted and put again in one batch, then twice in one batch: DELETED, ADDED, MODIFIED, MODIFIED.
    const [, v4, v5] = await store.batch([
      { op: 'delete', kind: 'Subscription', key, expect: { resourceVersion: v2 } },
      { op: 'put', kind: 'Subscription', key, value: sub('a', 4), expect: { absent: true } },
      { op: 'put', kind: 'Subscription', key, value: sub('a', 5) },
    ]);
    expect(v5).not.toBe(v4);
    await expect(store.delete('Subscription', key, { expect: { resourceVersion: v4! } })).rejects.toMatchObject({ code: ErrorCode.StoreConflict });
    await waitFor('five events', () => seen.length >= 5);
    expect(seen).toEqual(['ADDED a 1', 'MODIFIED a 2', 'DELETED a 2', 'ADDED a 4', 'MODIFIED a 5']);
    abort.abort();
    await watching;
    await store.close();

    // A new instance knows no versions yet: it reads them, and agrees.
    store = await EmbeddedStore.open(dir);
    try {
      await expect(store.put('Subscription', key, sub('a', 9), { expect: { resourceVersion: v4! } })).rejects.toMatchObject({ code: ErrorCode.StoreConflict });
      const v6 = await store.put('Subscription', key, sub('a', 6), { expect: { resourceVersion: v5! } });
      const events = store.watch('Subscription', { resourceVersion: v5!, signal: AbortSignal.timeout(5_000) });
      for await (const e of events) {
        expect([e.type, e.resourceVersion]).toEqual(['MODIFIED', v6]);
        break;
      }
      expect(await store.delete('Subscription', key, { expect: { resourceVersion: v6 } })).toBeDefined();
      expect(await store.delete('Subscription', key)).toBeUndefined();
      await expect(store.put('Subscription', key, sub('a', 7), { expect: { resourceVersion: v6 } })).rejects.toMatchObject({ code: ErrorCode.StoreConflict });
      expect(await store.put('Subscription', key, sub('a', 7), { expect: { absent: true } })).toBeDefined();
    } finally {
      await store.close();
    }
  });
});

describe('EmbeddedStore on a full disk', () => {
  it('a batch that cannot be written leaves nothing: no object, no version, no event, also after a restart', async () => {
    const disk = await mountSmallDisk(2 * 1024 * 1024);
    try {
      const dir = join(disk.path, 'store');
      let store = await EmbeddedStore.open(dir);
      const before = await store.put('Subscription', { namespace: 'default', name: 'kept' }, sub('kept', 1));
      const controller = new AbortController();
      const events = store.watch('Subscription', { resourceVersion: before, signal: controller.signal })[Symbol.asyncIterator]();
      await disk.fill();
      const big = 'x'.repeat(256 * 1024);
      const err = await store
        .batch([
          { op: 'put', kind: 'Subscription', key: { namespace: 'default', name: 'a' }, value: { ...sub('a', 2), spec: { big } } },
          { op: 'put', kind: 'Subscription', key: { namespace: 'default', name: 'b' }, value: { ...sub('b', 3), spec: { big } } },
          { op: 'delete', kind: 'Subscription', key: { namespace: 'default', name: 'kept' } },
        ])
        .catch((e: unknown) => e);
      expect(String((err as Error).message ?? err)).toMatch(/No space left on device/);
      // Until there is room again the store may not even read (LevelDB needs room to recover its log).
      await disk.unfill();
      expect((await store.info()).resourceVersion).toBe(before);
      expect(await store.get('Subscription', { namespace: 'default', name: 'a' })).toBeUndefined();
      expect(await store.get('Subscription', { namespace: 'default', name: 'kept' })).toBeDefined();
      // Appended to LevelDB's log behind the torn batch, this write used to vanish at the next open.
      const after = await store.put('Subscription', { namespace: 'default', name: 'c' }, sub('c', 4));
      expect(Number(after)).toBe(Number(before) + 1);
      // The failed batch made no event: the watcher's next one is this put.
      expect((await events.next()).value).toMatchObject({ type: 'ADDED', key: { name: 'c' }, resourceVersion: after });
      controller.abort();
      await store.close();

      store = await EmbeddedStore.open(dir);
      try {
        expect((await store.list('Subscription')).items.map((e) => e.key.name)).toEqual(['c', 'kept']);
        const replay = store.watch('Subscription', { resourceVersion: before, signal: AbortSignal.timeout(10_000) });
        const first = await replay[Symbol.asyncIterator]().next();
        expect(first.value).toMatchObject({ type: 'ADDED', key: { name: 'c' }, resourceVersion: after });
      } finally {
        await store.close();
      }
    } finally {
      await disk.close();
    }
  });
});

describe('OfflineCache batch and views (what the store builds on)', () => {
  it('a view reads the database as it was when made; batches apply in order; keys() lists without values', async () => {
    const cache = await OfflineCache.open({ dir: join(await tempDir(), 'db') });
    try {
      await cache.batch([
        { type: 'put', key: 'a', value: 1 },
        { type: 'put', key: 'log/1', value: 'x', hot: false },
      ]);
      const view = cache.view();
      await cache.batch([
        { type: 'put', key: 'a', value: 2 },
        { type: 'del', key: 'log/1' },
        { type: 'put', key: 'b', value: 3 },
      ]);
      expect(await view.get('a')).toBe(1);
      expect(await view.range({ gte: '', lt: '\uffff' })).toEqual([
        ['a', 1],
        ['log/1', 'x'],
      ]);
      await view.close();
      expect(await cache.range({ gte: '', lt: '\uffff' })).toEqual([
        ['a', 2],
        ['b', 3],
      ]);
      expect(await cache.keys({ gt: 'a' })).toEqual(['b']);
    } finally {
      await cache.close();
    }
  });
});
