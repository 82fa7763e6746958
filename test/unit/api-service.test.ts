import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SourcedDocument } from '../../src/api/index.js';
import { documentsOfBody } from '../../src/hub/resources-http.js';
import { type ResourceEvent, ResourceService, resourceStoreOf } from '../../src/hub/resources.js';
import { EmbeddedStore } from '../../src/hub/store.js';

// ResourceService over the real embedded store: what an apply stores, keeps
// and refuses, all or nothing.

const subscription = (name: string, spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}) => ({
  apiVersion: 'apps.clusternet.io/v1alpha1',
  kind: 'Subscription',
  metadata: { name, namespace: 'default', ...metadata },
  spec: { subscribers: [{ clusterAffinity: {} }], feeds: [{ apiVersion: 'v1', kind: 'Namespace', name: 'foo' }], ...spec },
});

const docs = (...objects: unknown[]): SourcedDocument[] => objects.map((doc, i) => ({ source: `test.yaml, document ${i + 1}`, doc }));

describe('ResourceService', () => {
  let dir: string;
  let store: EmbeddedStore;
  let service: ResourceService;
  let clock: number;
  let uids: number;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hawser-resources-'));
    store = await EmbeddedStore.open(dir);
    clock = Date.parse('2026-11-22T12:00:00Z');
    uids = 0;
    service = new ResourceService({
      store: resourceStoreOf(store),
      clusterNamespaces: async () => new Set(['hawser-0a1b2c3d']),
      now: () => new Date(clock),
      newUid: () => `uid-${++uids}`,
      maxObjectBytes: 64 * 1024,
    });
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates, then leaves an unchanged object alone, then configures a changed one', async () => {
    const [created] = await service.apply(docs(subscription('a')));
    expect(created).toMatchObject({ kind: 'Subscription', namespace: 'default', name: 'a', action: 'created' });
    const stored = await service.get('Subscription', { namespace: 'default', name: 'a' });
    expect(stored.metadata).toMatchObject({ uid: 'uid-1', creationTimestamp: '2026-11-22T12:00:00.000Z', generation: 1, resourceVersion: created!.resourceVersion });
    expect(stored.apiVersion).toBe('apps.hawser.io/v1alpha1');

    clock += 60_000;
    const [unchanged] = await service.apply(docs(subscription('a')));
    expect(unchanged).toMatchObject({ action: 'unchanged', resourceVersion: created!.resourceVersion });

    const [relabelled] = await service.apply(docs(subscription('a', {}, { labels: { team: 'edge' } })));
    expect(relabelled!.action).toBe('configured');
    const afterLabels = await service.get('Subscription', { namespace: 'default', name: 'a' });
    expect(afterLabels.metadata).toMatchObject({ uid: 'uid-1', creationTimestamp: '2026-11-22T12:00:00.000Z', generation: 1 });

    await service.apply(docs(subscription('a', { priority: 9 }, { labels: { team: 'edge' } })));
    expect((await service.get('Subscription', { namespace: 'default', name: 'a' })).metadata.generation).toBe(2);
  });

  it("keeps the hub's status of a Subscription across applies", async () => {
    await service.apply(docs(subscription('a')));
    const current = await store.get('Subscription', { namespace: 'default', name: 'a' });
    await store.put('Subscription', { namespace: 'default', name: 'a' }, { ...current!, status: { bindingClusters: ['hawser-0a1b2c3d/edge-1'] } });
    await service.apply(docs(subscription('a', { priority: 3 })));
    const after = await service.get('Subscription', { namespace: 'default', name: 'a' });
    expect(after.status).toEqual({ bindingClusters: ['hawser-0a1b2c3d/edge-1'] });
    expect((after.spec as { priority: number }).priority).toBe(3);
  });

  it('stores nothing when any document is refused', async () => {
    await service.apply(docs(subscription('kept')));
    const before = (await store.info()).resourceVersion;
    const err = await service
      .apply(docs(subscription('kept', { priority: 1 }), subscription('new'), subscription('bad', { feeds: [{ apiVersion: 'apps/v1', kind: 'Service', name: 's' }] })))
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'HAWSER_UNKNOWN_KIND' });
    expect((err as Error).message).toContain('test.yaml, document 3');
    expect((err as Error).message).toContain('apps/v1 has no kind Service');
    expect((await store.info()).resourceVersion).toBe(before);
    expect((await service.list('Subscription')).items.map((s) => s.metadata.name)).toEqual(['kept']);
  });

  it('refuses one object twice in a request, and a Localization outside every cluster namespace', async () => {
    await expect(service.apply(docs(subscription('a'), subscription('a')))).rejects.toMatchObject({ code: 'HAWSER_INVALID_OBJECT' });
    const loc = (ns: string) => ({ apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Localization', metadata: { name: 'l', namespace: ns }, spec: {} });
    await expect(service.apply(docs(loc('elsewhere')))).rejects.toMatchObject({ code: 'HAWSER_UNKNOWN_CLUSTER_NAMESPACE' });
    expect((await service.apply(docs(loc('hawser-0a1b2c3d'))))[0]!.action).toBe('created');
  });

  it('applies over a resourceVersion only when the hub still has it', async () => {
    const [created] = await service.apply(docs(subscription('a')));
    await service.apply(docs(subscription('a', { priority: 2 })));
    await expect(service.apply(docs(subscription('a', { priority: 3 }, { resourceVersion: created!.resourceVersion })))).rejects.toMatchObject({ code: 'HAWSER_STORE_CONFLICT' });
    const current = await service.get('Subscription', { namespace: 'default', name: 'a' });
    expect((await service.apply(docs(subscription('a', { priority: 3 }, { resourceVersion: current.metadata.resourceVersion }))))[0]!.action).toBe('configured');
  });

  it('keeps native objects as feeds under their apiVersion and kind, and deletes what a file names', async () => {
    const deployment = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' }, spec: { replicas: 2 } };
    const [applied] = await service.apply(docs(deployment));
    expect(applied).toMatchObject({ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'default', name: 'web', action: 'created' });
    expect(await store.get('Feed', { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'default', name: 'web' })).toMatchObject({ spec: { replicas: 2 } });
    const deleted = await service.delete(docs(deployment, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'never', namespace: 'default' } }));
    expect(deleted.map((d) => [d.name, d.deleted])).toEqual([
      ['web', true],
      ['never', false],
    ]);
    await expect(service.deleteOne('Subscription', { namespace: 'default', name: 'none' })).rejects.toMatchObject({ code: 'HAWSER_NOT_FOUND' });
  });

  it('watches from now (existing objects as ADDED) and from a version', async () => {
    const [first] = await service.apply(docs(subscription('a')));
    const abort = new AbortController();
    const events = service.watch('Subscription', { namespace: 'default', signal: abort.signal })[Symbol.asyncIterator]();
    // The first event is the listed object: only then change it, so the order is certain.
    const seen: ResourceEvent[] = [(await events.next()).value as ResourceEvent];
    await service.apply(docs(subscription('a', { priority: 1 })));
    await service.deleteOne('Subscription', { namespace: 'default', name: 'a' });
    seen.push((await events.next()).value as ResourceEvent, (await events.next()).value as ResourceEvent);
    abort.abort();
    expect(seen.map((e) => [e.type, e.object.metadata.name])).toEqual([
      ['ADDED', 'a'],
      ['MODIFIED', 'a'],
      ['DELETED', 'a'],
    ]);
    const replay: string[] = [];
    const again = new AbortController();
    for await (const e of service.watch('Subscription', { resourceVersion: first!.resourceVersion!, signal: again.signal })) {
      replay.push(e.type);
      if (replay.length === 2) again.abort();
    }
    expect(replay).toEqual(['MODIFIED', 'DELETED']);
  });
});

describe('documentsOfBody', () => {
  it("reads hawser's ApplyRequest with its sources, a v1 List, one JSON object, or YAML", () => {
    const obj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'foo' } };
    expect(documentsOfBody(JSON.stringify({ kind: 'ApplyRequest', items: [{ source: 'a.yaml, document 1', object: obj }] }), 'application/json')).toEqual([
      { source: 'a.yaml, document 1', doc: obj },
    ]);
    expect(documentsOfBody(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [obj, obj] }), 'application/json; charset=utf-8')).toHaveLength(2);
    expect(documentsOfBody(JSON.stringify(obj), 'application/json')).toEqual([{ source: 'document 1', doc: obj }]);
    expect(documentsOfBody('kind: Namespace\n---\nkind: ConfigMap\n', 'application/yaml').map((d) => (d.doc as { kind: string }).kind)).toEqual(['Namespace', 'ConfigMap']);
  });

  it('refuses a body that does not parse, with HAWSER_INVALID_YAML', () => {
    expect(() => documentsOfBody('{"kind":', 'application/json')).toThrow(expect.objectContaining({ code: 'HAWSER_INVALID_YAML' }));
    expect(() => documentsOfBody('a: [', 'text/plain')).toThrow(expect.objectContaining({ code: 'HAWSER_INVALID_YAML' }));
  });
});
