import { describe, expect, it } from 'vitest';
import type { HubStore, KubeObject, ResourceVersion, StoredKind, WatchEvent } from '../../src/hub/store.js';
import { ErrorCode } from '../../src/tunnel/errors.js';

// The contract every HubStore backend passes: run it with a harness that
// makes empty stores (test/unit/store.test.ts runs it for each backend).

export interface StoreHarness {
  /** A new, empty store location; open() may be called again after close() (a restart). */
  fresh(): Promise<{ open(): Promise<HubStore> }>;
  /** Events the backend keeps per kind at least, and after which a version is compacted. */
  historyPerKind: number;
}

const deadlineMs = 10_000;

function feed(name: string, data: Record<string, string> = {}, namespace = 'default'): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data };
}
function sub(name: string, namespace = 'default', replicas = 1): KubeObject {
  return { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Subscription', metadata: { name, namespace }, spec: { replicas } };
}

/** The next n events, or a failure at the deadline (never a hang). */
async function take<K extends StoredKind>(iterator: AsyncIterator<WatchEvent<K>>, n: number): Promise<Array<WatchEvent<K>>> {
  const out: Array<WatchEvent<K>> = [];
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`only ${out.length} of ${n} watch events before the deadline`)), deadlineMs);
  });
  try {
    while (out.length < n) {
      const r = await Promise.race([iterator.next(), deadline]);
      if (r.done) throw new Error(`watch ended after ${out.length} of ${n} events`);
      out.push(r.value);
    }
    return out;
  } finally {
    clearTimeout(timer);
  }
}

const brief = <K extends StoredKind>(events: Array<WatchEvent<K>>) => events.map((e) => `${e.type} ${e.key.namespace ?? ''}/${e.key.name}`);

export function storeConformance(name: string, harness: StoreHarness): void {
  describe(`HubStore conformance: ${name}`, () => {
    async function open(): Promise<{ store: HubStore; reopen(): Promise<HubStore> }> {
      const location = await harness.fresh();
      return { store: await location.open(), reopen: () => location.open() };
    }

    it('versions every write with a store-wide, increasing resourceVersion that survives a reopen', async () => {
      const { store, reopen } = await open();
      const empty = await store.info();
      const a = await store.put('Subscription', { namespace: 'default', name: 'a' }, sub('a'));
      const b = await store.put('ClusterCredential', 'h1', { hash: 'h1', clusterId: 'c', clusterName: 'n', issuedAt: 't' });
      const a2 = await store.put('Subscription', { namespace: 'default', name: 'a' }, sub('a', 'default', 2));
      expect(Number(a)).toBeGreaterThan(Number(empty.resourceVersion));
      expect(Number(b)).toBeGreaterThan(Number(a));
      expect(Number(a2)).toBeGreaterThan(Number(b));
      expect((await store.info()).resourceVersion).toBe(a2);
      // Objects with metadata carry it there; records without it get it from read().
      expect((await store.get('Subscription', { namespace: 'default', name: 'a' }))?.metadata.resourceVersion).toBe(a2);
      expect((await store.read('ClusterCredential', 'h1'))?.resourceVersion).toBe(b);
      expect((await store.read('ClusterCredential', 'h1'))?.object).toEqual({ hash: 'h1', clusterId: 'c', clusterName: 'n', issuedAt: 't' });
      await store.close();

      const again = await reopen();
      try {
        expect(await again.info()).toEqual({ uid: empty.uid, resourceVersion: a2 });
        expect((await again.get('Subscription', { namespace: 'default', name: 'a' }))?.spec).toEqual({ replicas: 2 });
        const c = await again.put('Subscription', { namespace: 'default', name: 'c' }, sub('c'));
        expect(Number(c)).toBeGreaterThan(Number(a2));
      } finally {
        await again.close();
      }
    });

    it('ignores a resourceVersion the caller wrote into metadata, and hands out copies', async () => {
      const { store } = await open();
      try {
        const rv = await store.put('Subscription', { namespace: 'default', name: 'a' }, { ...sub('a'), metadata: { name: 'a', namespace: 'default', resourceVersion: '999999' } });
        const got = (await store.get('Subscription', { namespace: 'default', name: 'a' }))!;
        expect(got.metadata.resourceVersion).toBe(rv);
        (got.spec as { replicas: number }).replicas = 42;
        expect((await store.get('Subscription', { namespace: 'default', name: 'a' }))?.spec).toEqual({ replicas: 1 });
      } finally {
        await store.close();
      }
    });

    it('watchers each get their own copy, unchanged by the writer or another watcher changing theirs; a put then delete in one batch shows the put', async () => {
      const { store } = await open();
      try {
        const start = (await store.info()).resourceVersion;
        const first = store.watch('Subscription', { resourceVersion: start })[Symbol.asyncIterator]();
        const second = store.watch('Subscription', { resourceVersion: start })[Symbol.asyncIterator]();
        const written = sub('a');
        await store.put('Subscription', { namespace: 'default', name: 'a' }, written);
        (written.spec as { replicas: number }).replicas = 7;
        const [one] = await take(first, 1);
        (one!.object.spec as { replicas: number }).replicas = 42;
        one!.object.metadata.labels = { changed: 'yes' };
        const [two] = await take(second, 1);
        expect(two!.object.spec).toEqual({ replicas: 1 });
        expect(two!.object.metadata.labels).toBeUndefined();
        expect((await store.get('Subscription', { namespace: 'default', name: 'a' }))?.spec).toEqual({ replicas: 1 });
        const [, gone] = await store.batch([
          { op: 'put', kind: 'Subscription', key: { namespace: 'default', name: 'b' }, value: sub('b', 'default', 3) },
          { op: 'delete', kind: 'Subscription', key: { namespace: 'default', name: 'b' } },
        ]);
        const tail = await take(first, 2);
        expect(brief(tail)).toEqual(['ADDED default/b', 'DELETED default/b']);
        expect(tail[1]!.object.spec).toEqual({ replicas: 3 });
        expect(tail[1]!.object.metadata.resourceVersion).toBe(gone);
        await first.return?.();
        await second.return?.();
      } finally {
        await store.close();
      }
    });

    it('compare-and-swap: writes on the expected version, refuses a stale one, and create-only refuses an existing object', async () => {
      const { store } = await open();
      try {
        const key = { namespace: 'default', name: 'a' };
        const created = await store.put('Subscription', key, sub('a'), { expect: { absent: true } });
        await expect(store.put('Subscription', key, sub('a', 'default', 5), { expect: { absent: true } })).rejects.toMatchObject({ code: ErrorCode.StoreConflict });
        const updated = await store.put('Subscription', key, sub('a', 'default', 2), { expect: { resourceVersion: created } });
        const stale = await store.put('Subscription', key, sub('a', 'default', 3), { expect: { resourceVersion: created } }).catch((e: unknown) => e);
        expect(stale).toMatchObject({ code: ErrorCode.StoreConflict });
        expect((stale as Error).message).toContain(created);
        expect((stale as Error).message).toContain(updated);
        expect((await store.get('Subscription', key))?.spec).toEqual({ replicas: 2 });
        await expect(store.put('Subscription', { name: 'missing' }, sub('missing'), { expect: { resourceVersion: updated } })).rejects.toMatchObject({ code: ErrorCode.StoreConflict });
        await expect(store.delete('Subscription', key, { expect: { resourceVersion: created } })).rejects.toMatchObject({ code: ErrorCode.StoreConflict });
        expect(await store.get('Subscription', key)).toBeDefined();
        const deleted = await store.delete('Subscription', key, { expect: { resourceVersion: updated } });
        expect(Number(deleted)).toBeGreaterThan(Number(updated));
        expect(await store.get('Subscription', key)).toBeUndefined();
        expect(await store.delete('Subscription', key)).toBeUndefined();
        await expect(store.put('Subscription', key, sub('a'), { expect: { resourceVersion: 'abc' } })).rejects.toMatchObject({ code: ErrorCode.InvalidResourceVersion });
      } finally {
        await store.close();
      }
    });

    it('concurrent compare-and-swap writers on one version: exactly one wins', async () => {
      const { store } = await open();
      try {
        const key = { namespace: 'default', name: 'a' };
        const rv = await store.put('Subscription', key, sub('a'));
        const results = await Promise.allSettled(
          Array.from({ length: 12 }, (_, i) => store.put('Subscription', key, sub('a', 'default', 100 + i), { expect: { resourceVersion: rv } })),
        );
        const won = results.filter((r) => r.status === 'fulfilled');
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        expect(won).toHaveLength(1);
        expect(lost.map((r) => (r.reason as { code: string }).code)).toEqual(Array(11).fill(ErrorCode.StoreConflict));
        const winner = results.findIndex((r) => r.status === 'fulfilled');
        expect((await store.get('Subscription', key))?.spec).toEqual({ replicas: 100 + winner });
        const creators = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => store.put('Subscription', { name: 'new' }, sub(`n${i}`, ''), { expect: { absent: true } })));
        expect(creators.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      } finally {
        await store.close();
      }
    });

    it('batch: all or nothing; a failing condition in the middle writes nothing and makes no event', async () => {
      const { store } = await open();
      try {
        const before = await store.put('Subscription', { namespace: 'default', name: 'a' }, sub('a'));
        const controller = new AbortController();
        const events = store.watch('Subscription', { resourceVersion: before, signal: controller.signal })[Symbol.asyncIterator]();
        const err = await store
          .batch([
            { op: 'put', kind: 'Subscription', key: { namespace: 'default', name: 'b' }, value: sub('b') },
            { op: 'put', kind: 'Subscription', key: { namespace: 'default', name: 'a' }, value: sub('a', 'default', 9), expect: { absent: true } },
            { op: 'delete', kind: 'Subscription', key: { namespace: 'default', name: 'a' } },
          ])
          .catch((e: unknown) => e);
        expect(err).toMatchObject({ code: ErrorCode.StoreConflict });
        expect((await store.info()).resourceVersion).toBe(before);
        expect(await store.get('Subscription', { namespace: 'default', name: 'b' })).toBeUndefined();
        expect((await store.get('Subscription', { namespace: 'default', name: 'a' }))?.spec).toEqual({ replicas: 1 });

        // Ops see the ones before them; each write takes a larger version.
        const rvs = await store.batch([
          { op: 'put', kind: 'Subscription', key: { namespace: 'default', name: 'c' }, value: sub('c'), expect: { absent: true } },
          { op: 'put', kind: 'Feed', key: { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name: 'c' }, value: feed('c') },
          { op: 'delete', kind: 'Subscription', key: { namespace: 'default', name: 'c' } },
          { op: 'delete', kind: 'Subscription', key: { namespace: 'default', name: 'never' } },
        ]);
        expect(rvs[3]).toBeUndefined();
        const written = rvs.slice(0, 3).map(Number);
        expect(written[0]).toBeGreaterThan(Number(before));
        expect(written[1]).toBeGreaterThan(written[0]!);
        expect(written[2]).toBeGreaterThan(written[1]!);
        expect(await store.get('Subscription', { namespace: 'default', name: 'c' })).toBeUndefined();
        expect(await store.get('Feed', { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name: 'c' })).toBeDefined();

        // The failed batch left no event: the first events are the good batch's.
        expect(brief(await take(events, 2))).toEqual(['ADDED default/c', 'DELETED default/c']);
        controller.abort();
      } finally {
        await store.close();
      }
    });

    it('watch: events in version order, DELETED with the last state at the deletion version', async () => {
      const { store } = await open();
      try {
        const start = (await store.info()).resourceVersion;
        const controller = new AbortController();
        const events = store.watch('Subscription', { resourceVersion: start, signal: controller.signal })[Symbol.asyncIterator]();
        const pending = take(events, 4);
        await store.put('Subscription', { namespace: 'default', name: 'a' }, sub('a'));
        await store.put('ManagedCluster', 'ignored', { apiVersion: 'clusters.hawser.io/v1beta1', kind: 'ManagedCluster', metadata: { name: 'ignored' }, spec: { clusterId: 'x', clusterType: 'EdgeCluster', syncMode: 'Pull', taints: [] }, status: { conditions: [] } });
        await store.put('Subscription', { namespace: 'default', name: 'b' }, sub('b'));
        await store.put('Subscription', { namespace: 'default', name: 'a' }, sub('a', 'default', 2));
        const deleted = await store.delete('Subscription', { namespace: 'default', name: 'a' });
        const got = await pending;
        expect(brief(got)).toEqual(['ADDED default/a', 'ADDED default/b', 'MODIFIED default/a', 'DELETED default/a']);
        const versions = got.map((e) => Number(e.resourceVersion));
        expect(versions).toEqual([...versions].sort((x, y) => x - y));
        expect(new Set(versions).size).toBe(4);
        expect(got[3]!.resourceVersion).toBe(deleted);
        expect(got[3]!.object.spec).toEqual({ replicas: 2 });
        expect(got[3]!.object.metadata.resourceVersion).toBe(deleted);
        expect(got.every((e) => e.kind === 'Subscription' && e.object.metadata.resourceVersion === e.resourceVersion)).toBe(true);
        controller.abort();
      } finally {
        await store.close();
      }
    });

    it('watch from an old version replays the gap, also after a reopen', async () => {
      const { store, reopen } = await open();
      const from = (await store.info()).resourceVersion;
      await store.put('Subscription', { namespace: 'default', name: 'a' }, sub('a'));
      await store.put('Subscription', { namespace: 'default', name: 'b' }, sub('b'));
      await store.delete('Subscription', { namespace: 'default', name: 'a' });
      const controller = new AbortController();
      const replay = store.watch('Subscription', { resourceVersion: from, signal: controller.signal })[Symbol.asyncIterator]();
      expect(brief(await take(replay, 3))).toEqual(['ADDED default/a', 'ADDED default/b', 'DELETED default/a']);
      // Replay then live, in one stream.
      await store.put('Subscription', { namespace: 'default', name: 'c' }, sub('c'));
      expect(brief(await take(replay, 1))).toEqual(['ADDED default/c']);
      controller.abort();
      await store.close();

      const again = await reopen();
      try {
        const after = again.watch('Subscription', { resourceVersion: from, signal: AbortSignal.abort() });
        expect(await collect(after)).toEqual([]);
        const c2 = new AbortController();
        const resumed = again.watch('Subscription', { resourceVersion: from, signal: c2.signal })[Symbol.asyncIterator]();
        expect(brief(await take(resumed, 4))).toEqual(['ADDED default/a', 'ADDED default/b', 'DELETED default/a', 'ADDED default/c']);
        c2.abort();
      } finally {
        await again.close();
      }
    });

    it('watch from a compacted version fails TOO_OLD; from a version not reached, TOO_NEW; from text, INVALID', async () => {
      const { store } = await open();
      try {
        const from = (await store.info()).resourceVersion;
        for (let i = 0; i < harness.historyPerKind + 3; i++) await store.put('Subscription', { namespace: 'default', name: `s${i}` }, sub(`s${i}`));
        const now = (await store.info()).resourceVersion;
        await expect(collect(store.watch('Subscription', { resourceVersion: from }))).rejects.toMatchObject({ code: ErrorCode.ResourceVersionTooOld });
        await expect(collect(store.watch('Subscription', { resourceVersion: String(Number(now) + 10) }))).rejects.toMatchObject({
          code: ErrorCode.ResourceVersionTooNew,
        });
        await expect(collect(store.watch('Subscription', { resourceVersion: 'x1' }))).rejects.toMatchObject({ code: ErrorCode.InvalidResourceVersion });
        // The newest events are still there.
        const controller = new AbortController();
        const recent = store.watch('Subscription', { resourceVersion: String(Number(now) - 2), signal: controller.signal })[Symbol.asyncIterator]();
        expect((await take(recent, 2)).map((e) => e.key.name)).toEqual([`s${harness.historyPerKind + 1}`, `s${harness.historyPerKind + 2}`]);
        controller.abort();
      } finally {
        await store.close();
      }
    });

    it('watch ends when its signal aborts (also while waiting), and with STORE_CLOSED when the store closes', async () => {
      const { store } = await open();
      const controller = new AbortController();
      const iterator = store.watch('Subscription', { resourceVersion: (await store.info()).resourceVersion, signal: controller.signal })[Symbol.asyncIterator]();
      const waiting = iterator.next();
      controller.abort();
      expect(await waiting).toMatchObject({ done: true });
      expect(await collect(store.watch('Subscription', { resourceVersion: '0', signal: AbortSignal.abort() }))).toEqual([]);

      const open2 = store.watch('Subscription', { resourceVersion: (await store.info()).resourceVersion })[Symbol.asyncIterator]();
      const pending = open2.next().catch((e: unknown) => e);
      await store.close();
      expect(await pending).toMatchObject({ code: ErrorCode.StoreClosed });
    });

    it('list then watch from the list version: no gap and nothing twice, while writers run', async () => {
      const { store } = await open();
      try {
        for (let i = 0; i < 5; i++) await store.put('Subscription', { namespace: 'default', name: `s${i}` }, sub(`s${i}`));
        // Fewer writes than the kept history: this test is about the seam between list and watch.
        const writers = Promise.all(
          Array.from({ length: Math.min(30, harness.historyPerKind - 1) }, (_, i) =>
            i % 3 === 2
              ? store.delete('Subscription', { namespace: 'default', name: `s${i % 5}` })
              : store.put('Subscription', { namespace: 'default', name: `s${i % 7}` }, sub(`s${i % 7}`, 'default', i)),
          ),
        );
        const listed = await store.list('Subscription');
        await writers;
        const final = await store.list('Subscription');
        const state = new Map(listed.items.map((e) => [e.key.name, e.resourceVersion]));
        const controller = new AbortController();
        const iterator = store.watch('Subscription', { resourceVersion: listed.resourceVersion, signal: controller.signal })[Symbol.asyncIterator]();
        const seen = new Set<ResourceVersion>();
        while (state.size !== final.items.length || [...state].some(([k, v]) => final.items.find((e) => e.key.name === k)?.resourceVersion !== v)) {
          const [e] = await take(iterator, 1);
          expect(Number(e!.resourceVersion)).toBeGreaterThan(Number(listed.resourceVersion));
          expect(seen.has(e!.resourceVersion)).toBe(false);
          seen.add(e!.resourceVersion);
          if (e!.type === 'DELETED') state.delete(e!.key.name);
          else state.set(e!.key.name, e!.resourceVersion);
        }
        expect(Math.max(...[...seen].map(Number), Number(listed.resourceVersion))).toBe(Number(final.resourceVersion));
        controller.abort();
      } finally {
        await store.close();
      }
    });

    it('keys: namespaces (also none), names with dots and slashes, feeds by apiVersion/kind; list and watch filter by namespace', async () => {
      const { store } = await open();
      try {
        const start = (await store.info()).resourceVersion;
        await store.put('Subscription', { namespace: 'a', name: 'x.y' }, sub('x.y', 'a'));
        await store.put('Subscription', { namespace: 'a.b', name: 'x' }, sub('x', 'a.b'));
        await store.put('Subscription', { name: 'a/x' }, sub('a/x', ''));
        await store.put('Subscription', 'top', sub('top', ''));
        await store.put('Feed', { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'a', name: 'web' }, { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'a' } });
        await store.put('Feed', { apiVersion: 'v1', kind: 'Service', namespace: 'a', name: 'web' }, { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'a' } });
        await store.put('Feed', { apiVersion: 'v1', kind: 'Namespace', name: 'a' }, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'a' } });

        const names = async (namespace?: string) => (await store.list('Subscription', namespace === undefined ? {} : { namespace })).items.map((e) => e.key);
        expect(await names('a')).toEqual([{ namespace: 'a', name: 'x.y' }]);
        expect(await names('a.b')).toEqual([{ namespace: 'a.b', name: 'x' }]);
        expect((await names('')).map((k) => k.name).sort()).toEqual(['a/x', 'top']);
        expect(await names()).toHaveLength(4);
        expect(await store.get('Subscription', 'a/x')).toBeDefined();
        expect(await store.get('Subscription', { namespace: 'a', name: 'x' })).toBeUndefined();

        const feeds = await store.list('Feed', { namespace: 'a' });
        expect(feeds.items.map((e) => `${e.key.apiVersion} ${e.key.kind} ${e.key.name}`).sort()).toEqual(['apps/v1 Deployment web', 'v1 Service web']);
        expect((await store.list('Feed', { namespace: '' })).items.map((e) => e.key)).toEqual([{ apiVersion: 'v1', kind: 'Namespace', name: 'a' }]);
        expect((await store.get('Feed', { apiVersion: 'v1', kind: 'Service', namespace: 'a', name: 'web' }))?.kind).toBe('Service');

        const controller = new AbortController();
        const inA = store.watch('Subscription', { resourceVersion: start, namespace: 'a', signal: controller.signal })[Symbol.asyncIterator]();
        const prefixed = store.watch('Subscription', { resourceVersion: start, namePrefix: 'to', signal: controller.signal })[Symbol.asyncIterator]();
        await store.put('Subscription', { namespace: 'a', name: 'z' }, sub('z', 'a'));
        expect(brief(await take(inA, 2))).toEqual(['ADDED a/x.y', 'ADDED a/z']);
        expect(brief(await take(prefixed, 1))).toEqual(['ADDED /top']);
        controller.abort();

        await expect(store.put('Subscription', { name: '' }, sub(''))).rejects.toMatchObject({ code: ErrorCode.InvalidStoreKey });
        await expect(store.put('Feed', { name: 'x' } as never, feed('x'))).rejects.toMatchObject({ code: ErrorCode.InvalidStoreKey });
      } finally {
        await store.close();
      }
    });
  });
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}
