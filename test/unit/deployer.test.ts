import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { ManagedCluster } from '../../src/api/index.js';
import { Deployer, type DeployerStatus, type ManifestObject, manifestName, reconcileSubscription, type ReconcileResult, toManifest } from '../../src/hub/deployer/index.js';
import { clusterNamespacesOf, ResourceService, resourceStoreOf } from '../../src/hub/resources.js';
import { EmbeddedStore, type HubStore, type KubeObject, SealingStore } from '../../src/hub/store.js';
import { ManualClock } from '../../src/tunnel/clock.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const examples = resolve(repoRoot, '../shared/examples/clusternet');
const startMs = Date.parse('2026-11-22T12:00:00Z');
const unreachable = 'node.clusternet.io/unreachable';

interface Harness {
  store: HubStore;
  clock: ManualClock;
  deployer: Deployer;
  results: Array<{ key: string; result: ReconcileResult }>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function harness(options: { sealing?: boolean; start?: boolean; historyPerKind?: number; healthIntervalMs?: number } = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'hawser-deployer-'));
  const embedded = await EmbeddedStore.open(join(dir, 'store'), options.historyPerKind ? { historyPerKind: options.historyPerKind, recentEvents: 2 } : {});
  // As startHub opens it: Secrets (also in Manifests) and Descriptions sealed at rest.
  const store: HubStore = options.sealing ? (await SealingStore.open(embedded, join(dir, 'secret-key'))).store : embedded;
  const clock = new ManualClock(startMs);
  const results: Harness['results'] = [];
  // The clock is a ManualClock: reports are folded in as they come unless a test says otherwise.
  const deployer = new Deployer(store, { clock, healthIntervalMs: options.healthIntervalMs ?? 0, onReconciled: (key, result) => results.push({ key: `${key.namespace}/${key.name}`, result }) });
  cleanups.push(async () => {
    await deployer.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  if (options.start !== false) deployer.start();
  return { store, clock, deployer, results };
}

function docs(path: string): KubeObject[] {
  return parseAllDocuments(readFileSync(join(examples, path), 'utf8')).map((d) => d.toJS() as KubeObject);
}

function clusterObject(name: string, labels: Record<string, string>): ManagedCluster {
  return {
    apiVersion: 'clusters.clusternet.io/v1beta1',
    kind: 'ManagedCluster',
    metadata: { name, namespace: `clusternet-${name}`, labels },
    spec: { clusterId: randomUUID(), clusterType: 'EdgeCluster', syncMode: 'Pull', taints: [] },
    status: { conditions: [{ type: 'Ready', status: 'True', reason: 'ClusterReady', message: '', lastTransitionTime: new Date(startMs).toISOString() }] },
  } as unknown as ManagedCluster;
}

async function addCluster(store: HubStore, name: string, labels: Record<string, string>): Promise<ManagedCluster> {
  const c = clusterObject(name, labels);
  await store.put('ManagedCluster', name, c);
  return c;
}

/** Puts an object where the API would: Subscriptions etc. under their kind, everything else as a Feed. */
async function apply(store: HubStore, object: KubeObject): Promise<void> {
  const { namespace, name } = object.metadata;
  const key = { ...(namespace ? { namespace } : {}), name };
  switch (object.kind) {
    case 'Subscription':
    case 'Description':
    case 'Localization':
    case 'Globalization':
      await store.put(object.kind, key, object);
      return;
    default:
      await store.put('Feed', { apiVersion: object.apiVersion, kind: object.kind, ...key }, object);
  }
}

async function manifestsIn(store: HubStore, namespace: string): Promise<ManifestObject[]> {
  return (await store.list('Manifest', { namespace })).items.map((e) => e.object as ManifestObject);
}

function templateOf(ms: readonly ManifestObject[], kind: string): KubeObject {
  const found = ms.find((m) => m.template.kind === kind);
  expect(found, `a Manifest of kind ${kind}`).toBeDefined();
  return found!.template;
}

async function statusOf(store: HubStore, namespace: string, name: string): Promise<DeployerStatus> {
  return (await store.get('Subscription', { namespace, name }))!.status as DeployerStatus;
}

const waitFor = <T>(fn: () => Promise<T>): Promise<T> => vi.waitFor(fn, { timeout: 15_000, interval: 20 });

function deployment(name: string, replicas: number): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'web' },
    spec: { replicas, selector: { matchLabels: { app: name } }, template: { metadata: { labels: { app: name } }, spec: { containers: [{ name, image: 'nginx:1.25' }] } } },
  };
}

function staticSubscription(weights: Record<string, number>, extra: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: 'apps.clusternet.io/v1alpha1',
    kind: 'Subscription',
    metadata: { name: 'divided', namespace: 'default' },
    spec: {
      subscribers: Object.entries(weights).map(([cluster, weight]) => ({
        clusterAffinity: { matchLabels: { 'clusters.clusternet.io/cluster-name': cluster } },
        weight,
      })),
      schedulingStrategy: 'Dividing',
      dividingScheduling: { type: 'Static' },
      feeds: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', namespace: 'web' }],
      ...extra,
    },
  };
}

async function replicasByCluster(store: HubStore, clusters: readonly string[]): Promise<number[]> {
  const out: number[] = [];
  for (const c of clusters) {
    const ms = await manifestsIn(store, `clusternet-${c}`);
    out.push(ms.length === 0 ? 0 : ((templateOf(ms, 'Deployment').spec as { replicas: number }).replicas));
  }
  return out;
}

describe('deployer', () => {
  it.each([{ sealing: false }, { sealing: true }])('replication example: the full Description in the two production clusters only (%o)', async (options) => {
    const { store, deployer } = await harness(options);
    await addCluster(store, 'west', { environment: 'production', region: 'us-west' });
    await addCluster(store, 'east', { environment: 'production', region: 'us-east' });
    await addCluster(store, 'stage', { environment: 'staging', region: 'us-west' });
    for (const d of [...docs('replication/description.yaml'), ...docs('replication/subscription.yaml')]) await apply(store, d);

    for (const c of ['west', 'east']) {
      const ms = await waitFor(async () => {
        const found = await manifestsIn(store, `clusternet-${c}`);
        expect(found).toHaveLength(2);
        return found;
      });
      expect((templateOf(ms, 'Deployment').spec as { replicas: number }).replicas).toBe(3);
      expect(templateOf(ms, 'Service').metadata.name).toBe('nginx-svc');
      for (const m of ms) {
        expect(m.metadata.labels).toEqual({ 'apps.clusternet.io/subs.name': 'nginx-replicated', 'apps.clusternet.io/subs.namespace': 'default' });
        expect(m.metadata.name).toBe(manifestName({ namespace: 'default', name: 'nginx-replicated' }, m.metadata.annotations['apps.hawser.io/feed-key']!));
      }
    }
    await deployer.settled();
    expect(await manifestsIn(store, 'clusternet-stage')).toEqual([]);
    const status = await statusOf(store, 'default', 'nginx-replicated');
    expect(status.bindingClusters).toEqual(['clusternet-east/east', 'clusternet-west/west']);
    expect(status.conditions.find((c) => c.type === 'Scheduled')?.status).toBe('True');
    expect(status.clusters?.map((r) => r.manifests)).toEqual([2, 2]);
    expect((await store.list('Base')).items.map((e) => e.object.metadata.namespace).sort()).toEqual(['clusternet-east', 'clusternet-west']);
  });

  it('overrides example: 5 replicas and the regional image in one cluster, the labels in both', async () => {
    const { store } = await harness();
    await addCluster(store, 'west', { environment: 'production', region: 'us-west' });
    await addCluster(store, 'east', { environment: 'production', region: 'us-east' });
    const [localization] = docs('overrides/localization.yaml');
    localization!.metadata.namespace = 'clusternet-west';
    for (const d of [...docs('replication/description.yaml'), ...docs('overrides/globalization.yaml'), localization!, ...docs('replication/subscription.yaml')]) {
      await apply(store, d);
    }
    const west = await waitFor(async () => {
      const ms = await manifestsIn(store, 'clusternet-west');
      expect((templateOf(ms, 'Deployment').spec as { replicas: number }).replicas).toBe(5);
      return ms;
    });
    const d = templateOf(west, 'Deployment') as KubeObject & { spec: { replicas: number; template: { spec: { containers: Array<{ image: string }> } } } };
    expect(d.spec.template.spec.containers[0]!.image).toBe('us-west-registry.example.com/nginx:1.25');
    expect(d.metadata.labels).toEqual({ 'monitoring.example.com/enabled': 'true', team: 'platform' });
    expect(templateOf(west, 'Service').metadata.labels).toEqual({ 'monitoring.example.com/enabled': 'true', team: 'platform' });
    const east = await waitFor(async () => {
      const ms = await manifestsIn(store, 'clusternet-east');
      expect(templateOf(ms, 'Deployment').metadata.labels).toEqual({ 'monitoring.example.com/enabled': 'true', team: 'platform' });
      return ms;
    });
    const e = templateOf(east, 'Deployment') as typeof d;
    expect(e.spec.replicas).toBe(3);
    expect(e.spec.template.spec.containers[0]!.image).toBe('nginx:1.25');
  });

  it('a failing override keeps the previous rendering and is reported on the subscription and the Localization', async () => {
    const { store } = await harness();
    await addCluster(store, 'west', { environment: 'production', region: 'us-west' });
    for (const d of [...docs('replication/description.yaml'), ...docs('replication/subscription.yaml')]) await apply(store, d);
    await waitFor(async () => expect(await manifestsIn(store, 'clusternet-west')).toHaveLength(2));
    await apply(store, {
      apiVersion: 'apps.clusternet.io/v1alpha1',
      kind: 'Localization',
      metadata: { name: 'bad', namespace: 'clusternet-west' },
      spec: {
        overridePolicy: 'ApplyNow',
        feed: { apiVersion: 'apps/v1', kind: 'Deployment', name: 'nginx', namespace: 'default' },
        overrides: [{ name: 'missing-path', type: 'JSONPatch', value: '[{"op":"replace","path":"/spec/nope/x","value":1}]' }],
      },
    });
    const status = await waitFor(async () => {
      const s = await statusOf(store, 'default', 'nginx-replicated');
      expect(s.overrideFailures).toHaveLength(1);
      return s;
    });
    expect(status.overrideFailures[0]).toMatchObject({ cluster: 'clusternet-west/west', code: 'HAWSER_OVERRIDE_FAILED', override: 'Localization/clusternet-west/bad:missing-path' });
    expect(status.conditions.find((c) => c.type === 'Rendered')?.status).toBe('False');
    const loc = await waitFor(async () => {
      const l = await store.get('Localization', { namespace: 'clusternet-west', name: 'bad' });
      expect((l!.status as { failures?: unknown[] } | undefined)?.failures).toHaveLength(1);
      return l!;
    });
    expect((loc.status as { failures: Array<{ subscription: string }> }).failures[0]!.subscription).toBe('default/nginx-replicated');
    const ms = await manifestsIn(store, 'clusternet-west');
    expect((templateOf(ms, 'Deployment').spec as { replicas: number }).replicas).toBe(3);
  });

  it('an ApplyLater override waits for the next change; status names it meanwhile', async () => {
    const { store, deployer } = await harness();
    await addCluster(store, 'west', { environment: 'production', region: 'us-west' });
    const [description] = docs('replication/description.yaml');
    for (const d of [description!, ...docs('replication/subscription.yaml')]) await apply(store, d);
    await waitFor(async () => expect(await manifestsIn(store, 'clusternet-west')).toHaveLength(2));
    const [localization] = docs('overrides/localization.yaml');
    localization!.metadata.namespace = 'clusternet-west';
    delete (localization!.spec as { overridePolicy?: string }).overridePolicy;
    await apply(store, localization!);
    await waitFor(async () =>
      expect((await statusOf(store, 'default', 'nginx-replicated')).clusters?.[0]?.waiting).toEqual(['Localization/clusternet-west/nginx-localization-us-west']),
    );
    await deployer.settled();
    expect((templateOf(await manifestsIn(store, 'clusternet-west'), 'Deployment').spec as { replicas: number }).replicas).toBe(3);

    // The next change of the Description brings the waiting override with it.
    const changed = structuredClone(description!);
    (changed.spec as { raw: KubeObject[] }).raw[0]!.metadata.annotations = { changed: 'yes' };
    await apply(store, changed);
    await waitFor(async () => expect((templateOf(await manifestsIn(store, 'clusternet-west'), 'Deployment').spec as { replicas: number }).replicas).toBe(5));
  });

  it('Manifests of a subscription deleted while the deployer was down are deleted when it starts', async () => {
    const { store, deployer } = await harness();
    await addCluster(store, 'west', { environment: 'production', region: 'us-west' });
    for (const d of [...docs('replication/description.yaml'), ...docs('replication/subscription.yaml')]) await apply(store, d);
    await waitFor(async () => expect(await manifestsIn(store, 'clusternet-west')).toHaveLength(2));
    await deployer.stop();
    await store.delete('Subscription', { namespace: 'default', name: 'nginx-replicated' });
    expect(await manifestsIn(store, 'clusternet-west')).toHaveLength(2);
    const again = new Deployer(store, { clock: new ManualClock(startMs) });
    again.start();
    try {
      await waitFor(async () => expect(await manifestsIn(store, 'clusternet-west')).toEqual([]));
    } finally {
      await again.stop();
    }
  });

  it('reconciles queued subscriptions in the scheduler\'s order: higher priority first', async () => {
    const { store, deployer, results } = await harness({ start: false });
    await addCluster(store, 'a', {});
    await apply(store, deployment('web', 1));
    for (const [name, priority] of [['low', 1], ['high', 5], ['mid', 3]] as const) {
      const sub = staticSubscription({ a: 1 }, { priority });
      sub.metadata.name = name;
      await apply(store, sub);
    }
    deployer.start();
    await waitFor(async () => expect(results.length).toBeGreaterThanOrEqual(3));
    await deployer.settled();
    // Each once: the other kinds' first lists queue nothing more.
    expect(results.map((r) => r.key)).toEqual(['default/high', 'default/mid', 'default/low']);
  });

  it('Static dividing over three clusters by weight conserves the sum, and re-divides when the Deployment changes', async () => {
    const { store } = await harness();
    const names = ['a', 'b', 'c'];
    for (const n of names) await addCluster(store, n, {});
    await apply(store, deployment('web', 6));
    await apply(store, staticSubscription({ a: 1, b: 2, c: 3 }));
    await waitFor(async () => expect(await replicasByCluster(store, names)).toEqual([1, 2, 3]));
    await apply(store, deployment('web', 12));
    await waitFor(async () => expect(await replicasByCluster(store, names)).toEqual([2, 4, 6]));
    const status = await statusOf(store, 'default', 'divided');
    expect(status.replicas).toEqual({ 'apps/v1/Deployment/web/web': [2, 4, 6] });
  });

  it.each([{ sealing: false }, { sealing: true }])('reads its Manifests from a view the store watch keeps: one changed or added outside it is seen by the next render (%o)', async (options) => {
    const { store } = await harness(options);
    await addCluster(store, 'a', {});
    await apply(store, deployment('web', 2));
    await apply(store, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', namespace: 'web' }, data: { k: 'v' } });
    await apply(store, staticSubscription({ a: 1 }));
    const ns = 'clusternet-a';
    await waitFor(async () => expect(await replicasByCluster(store, ['a'])).toEqual([2]));
    const [rendered] = await manifestsIn(store, ns);
    // Outside the deployer: its Deployment scaled to 9, and a stray Manifest of the same subscription.
    await store.put('Manifest', { namespace: ns, name: rendered!.metadata.name }, { ...rendered!, template: { ...rendered!.template, spec: { ...(rendered!.template.spec as object), replicas: 9 } } });
    await store.put('Manifest', { namespace: ns, name: 'stray' }, { ...rendered!, metadata: { ...rendered!.metadata, name: 'stray' } });
    const seen = store.watch('Manifest', { resourceVersion: String(Number((await store.info()).resourceVersion) - 2) })[Symbol.asyncIterator]();
    await seen.next();
    await seen.next();
    await seen.return?.();
    // A change that renders again (one more feed) and leaves the Deployment as it was: a view that missed the two writes would keep 9 and the stray.
    await apply(store, staticSubscription({ a: 1 }, { feeds: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', namespace: 'web' }, { apiVersion: 'v1', kind: 'ConfigMap', name: 'cfg', namespace: 'web' }] }));
    await waitFor(async () => {
      const ms = await manifestsIn(store, ns);
      expect(ms.map((m) => m.template.kind).sort()).toEqual(['ConfigMap', 'Deployment']);
      expect((templateOf(ms, 'Deployment').spec as { replicas: number }).replicas).toBe(2);
    });
  });

  it('a feed applied after its subscription is reported missing, then deploys when it appears', async () => {
    const { store, deployer } = await harness();
    await addCluster(store, 'a', {});
    await apply(store, staticSubscription({ a: 1 }));
    await waitFor(async () => expect((await statusOf(store, 'default', 'divided'))?.missingFeeds).toEqual([{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', namespace: 'web' }]));
    await deployer.settled();
    expect(await manifestsIn(store, 'clusternet-a')).toEqual([]);
    await apply(store, deployment('web', 2));
    await waitFor(async () => expect(await replicasByCluster(store, ['a'])).toEqual([2]));
    await waitFor(async () => expect((await statusOf(store, 'default', 'divided')).missingFeeds).toEqual([]));
  });

  it('HelmChart feeds are reported unsupported while the other feeds deploy', async () => {
    const { store } = await harness();
    await addCluster(store, 'a', {});
    await apply(store, deployment('web', 1));
    await apply(store, { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'HelmChart', metadata: { name: 'chart', namespace: 'default' }, spec: { repo: 'https://example.com', chart: 'x', version: '1' } });
    const sub = staticSubscription({ a: 1 });
    (sub.spec as { feeds: unknown[] }).feeds.push({ apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'HelmChart', name: 'chart', namespace: 'default' });
    await apply(store, sub);
    await waitFor(async () => expect(await replicasByCluster(store, ['a'])).toEqual([1]));
    const status = await waitFor(async () => {
      const s = await statusOf(store, 'default', 'divided');
      expect(s.unsupported).toHaveLength(1);
      return s;
    });
    expect(status.unsupported[0]).toMatchObject({ code: 'HAWSER_UNSUPPORTED', feed: { kind: 'HelmChart', name: 'chart' } });
  });

  it('a watch that fell behind the kept history relists and still sees the change', async () => {
    const { store, deployer, results } = await harness({ historyPerKind: 2 });
    await addCluster(store, 'a', {});
    await apply(store, staticSubscription({ a: 1 }));
    await waitFor(async () => expect(results.length).toBeGreaterThan(0));
    await deployer.settled();
    // Five Feeds in one batch: the Feed watcher wakes up past the two events kept (HAWSER_RESOURCE_VERSION_TOO_OLD).
    await store.batch(
      [deployment('web', 3), deployment('w1', 1), deployment('w2', 1), deployment('w3', 1), deployment('w4', 1)].reverse().map((d) => ({
        op: 'put' as const,
        kind: 'Feed' as const,
        key: { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'web', name: d.metadata.name },
        value: d,
      })),
    );
    await waitFor(async () => expect(await replicasByCluster(store, ['a'])).toEqual([3]));
  });

  it('a scheduling error is the Scheduled condition\'s reason, and what was placed stays', async () => {
    const { store } = await harness();
    await addCluster(store, 'a', {});
    await apply(store, deployment('web', 2));
    await apply(store, staticSubscription({ a: 1 }));
    await waitFor(async () => expect(await replicasByCluster(store, ['a'])).toEqual([2]));
    // As the API applies a spec change: status (the placement) stays, as with Kubernetes' status subresource.
    const current = (await store.get('Subscription', { namespace: 'default', name: 'divided' }))!;
    await store.put('Subscription', { namespace: 'default', name: 'divided' }, { ...current, spec: staticSubscription({ nowhere: 1 }).spec });
    const scheduled = await waitFor(async () => {
      const c = (await statusOf(store, 'default', 'divided')).conditions.find((x) => x.type === 'Scheduled');
      expect(c?.status).toBe('False');
      return c!;
    });
    expect(scheduled.reason).toBe('HAWSER_NO_MATCHING_CLUSTERS');
    expect(scheduled.message).toContain('clusternet-a/a');
    expect(await replicasByCluster(store, ['a'])).toEqual([2]);
    expect((await statusOf(store, 'default', 'divided')).bindingClusters).toEqual(['clusternet-a/a']);
  });

  it('a deleted subscription takes its Manifests and Bases with it', async () => {
    const { store } = await harness();
    await addCluster(store, 'west', { environment: 'production', region: 'us-west' });
    for (const d of [...docs('replication/description.yaml'), ...docs('replication/subscription.yaml')]) await apply(store, d);
    await waitFor(async () => expect(await manifestsIn(store, 'clusternet-west')).toHaveLength(2));
    await store.delete('Subscription', { namespace: 'default', name: 'nginx-replicated' });
    await waitFor(async () => expect(await manifestsIn(store, 'clusternet-west')).toEqual([]));
    await waitFor(async () => expect((await store.list('Base')).items).toEqual([]));
  });

  it('writes one reconcile as one batch (consecutive versions) and writes nothing when nothing changed', async () => {
    const { store, deployer, results } = await harness();
    await addCluster(store, 'west', { environment: 'production', region: 'us-west' });
    await addCluster(store, 'east', { environment: 'production', region: 'us-east' });
    for (const d of docs('replication/description.yaml')) await apply(store, d);
    await deployer.settled();
    const from = (await store.info()).resourceVersion;
    const abort = new AbortController();
    const seen: number[] = [];
    const watching = (async () => {
      for await (const e of store.watch('Manifest', { resourceVersion: from, signal: abort.signal })) {
        seen.push(Number(e.resourceVersion));
        if (seen.length === 4) abort.abort();
      }
    })();
    for (const d of docs('replication/subscription.yaml')) await apply(store, d);
    await waitFor(async () => expect(seen).toHaveLength(4));
    await watching;
    expect(seen[3]! - seen[0]!).toBe(3);
    const written = await waitFor(async () => {
      const w = results.filter((r) => r.result.batch);
      expect(w.length).toBeGreaterThan(0);
      return w;
    });
    expect(seen.map(String).every((v) => written[0]!.result.batch!.includes(v))).toBe(true);

    // An unrelated Globalization: every subscription looks again, nothing is written.
    await deployer.settled();
    const before = results.length;
    await apply(store, { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Globalization', metadata: { name: 'other' }, spec: { feed: { apiVersion: 'v1', kind: 'ConfigMap', name: 'x', namespace: 'y' }, overrides: [] } });
    const rv = (await store.info()).resourceVersion;
    await waitFor(async () => expect(results.length).toBeGreaterThan(before));
    await deployer.settled();
    expect(results.slice(before).every((r) => r.result.batch === undefined)).toBe(true);
    expect((await store.info()).resourceVersion).toBe(rv);
  });

  it('the reschedule annotation is honoured and cleared', async () => {
    const { store } = await harness();
    await addCluster(store, 'a', {});
    await apply(store, deployment('web', 1));
    const sub = staticSubscription({ a: 1 });
    sub.metadata.annotations = { 'apps.clusternet.io/reschedule': 'true', keep: 'me' };
    await apply(store, sub);
    await waitFor(async () => {
      const s = await store.get('Subscription', { namespace: 'default', name: 'divided' });
      expect(s!.metadata.annotations).toEqual({ keep: 'me' });
      expect((s!.status as DeployerStatus).bindingClusters).toEqual(['clusternet-a/a']);
    });
  });

  it('an unreachable cluster keeps its share while tolerated, loses it when the toleration runs out, and gets it back', async () => {
    const { store, clock, deployer } = await harness();
    const names = ['a', 'b'];
    const clusters = new Map<string, ManagedCluster>();
    for (const n of names) clusters.set(n, await addCluster(store, n, {}));
    await apply(store, deployment('web', 4));
    await apply(store, staticSubscription({ a: 1, b: 1 }, { clusterTolerations: [{ key: unreachable, operator: 'Exists', effect: 'NoSchedule', tolerationSeconds: 60 }] }));
    await waitFor(async () => expect(await replicasByCluster(store, names)).toEqual([2, 2]));

    const b = clusters.get('b')!;
    await store.put('ManagedCluster', 'b', { ...b, spec: { ...b.spec, taints: [{ key: unreachable, effect: 'NoSchedule', timeAdded: new Date(clock.now()).toISOString() }] } });
    await waitFor(async () => expect((await statusOf(store, 'default', 'divided')).clusters?.find((r) => r.cluster === 'clusternet-b/b')?.held).toBe('TemporarilyTolerated'));
    await deployer.settled();
    expect(await replicasByCluster(store, names)).toEqual([2, 2]);

    clock.advance(59_000);
    await deployer.settled();
    expect(await replicasByCluster(store, names)).toEqual([2, 2]);

    clock.advance(1_000);
    await waitFor(async () => expect(await replicasByCluster(store, names)).toEqual([4, 0]));
    expect((await statusOf(store, 'default', 'divided')).bindingClusters).toEqual(['clusternet-a/a']);

    await store.put('ManagedCluster', 'b', b);
    await waitFor(async () => expect(await replicasByCluster(store, names)).toEqual([2, 2]));
  });
});

describe('Manifest shape (the sync layer reads it)', () => {
  it('names a Manifest from the subscription and the feed key, stable and distinct', () => {
    const sub = { namespace: 'default', name: 'nginx-replicated' };
    const name = manifestName(sub, 'apps/v1/Deployment/default/nginx');
    expect(name).toMatch(/^deployment-nginx-[0-9a-f]{20}$/);
    expect(manifestName(sub, 'apps/v1/Deployment/default/nginx')).toBe(name);
    expect(manifestName({ namespace: 'other', name: 'nginx-replicated' }, 'apps/v1/Deployment/default/nginx')).not.toBe(name);
    expect(manifestName(sub, 'v1/Namespace/Foo_Bar')).toMatch(/^namespace-foo-bar-[0-9a-f]{20}$/);
    expect(manifestName(sub, 'v1/Service/default/nginx-svc')).toMatch(/^service-nginx-svc-[0-9a-f]{20}$/);
    expect(manifestName(sub, 'rbac.authorization.k8s.io/v1/ClusterRole/admin')).toMatch(/^clusterrole-admin-[0-9a-f]{20}$/);
  });

  it('carries the rendered object in template, the feed key in an annotation and the subscription in labels', () => {
    const template = deployment('web', 2) as Parameters<typeof toManifest>[2]['template'];
    const feed = { apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'web', name: 'web' };
    expect(toManifest({ namespace: 'default', name: 's' }, 'clusternet-a', { key: 'apps/v1/Deployment/web/web', feed, template })).toEqual({
      apiVersion: 'apps.clusternet.io/v1alpha1',
      kind: 'Manifest',
      metadata: {
        name: manifestName({ namespace: 'default', name: 's' }, 'apps/v1/Deployment/web/web'),
        namespace: 'clusternet-a',
        labels: { 'apps.clusternet.io/subs.name': 's', 'apps.clusternet.io/subs.namespace': 'default' },
        annotations: { 'apps.hawser.io/feed-key': 'apps/v1/Deployment/web/web' },
      },
      template,
      feed,
    });
  });
});

describe('deployer behind the API', () => {
  // What `hawser apply` stores (aliases canonicalised, defaults filled in, feeds
  // as written) is what the deployer reads: the examples go through both.
  it('the examples applied through the ResourceService render in the matching clusters', async () => {
    const { store } = await harness({ sealing: true });
    await addCluster(store, 'west', { environment: 'production', region: 'us-west' });
    await addCluster(store, 'east', { environment: 'production', region: 'us-east' });
    await addCluster(store, 'stage', { environment: 'staging', region: 'us-west' });
    const service = new ResourceService({ store: resourceStoreOf(store), clusterNamespaces: () => clusterNamespacesOf(store) });
    const [localization] = docs('overrides/localization.yaml');
    localization!.metadata.namespace = 'clusternet-west';
    const all = [...docs('replication/description.yaml'), ...docs('replication/subscription.yaml'), ...docs('overrides/globalization.yaml'), localization!];
    await service.apply(all.map((doc, i) => ({ source: `document ${i + 1}`, doc })));

    const west = await waitFor(async () => {
      const found = await manifestsIn(store, 'clusternet-west');
      expect(found).toHaveLength(2);
      expect((templateOf(found, 'Deployment').spec as { replicas: number }).replicas).toBe(5);
      return found;
    });
    expect(templateOf(west, 'Deployment').metadata.labels).toMatchObject({ team: 'platform' });
    const east = await waitFor(async () => {
      const found = await manifestsIn(store, 'clusternet-east');
      expect(found).toHaveLength(2);
      expect(templateOf(found, 'Deployment').metadata.labels).toMatchObject({ team: 'platform' });
      return found;
    });
    expect((templateOf(east, 'Deployment').spec as { replicas: number }).replicas).toBe(3);
    expect(await manifestsIn(store, 'clusternet-stage')).toEqual([]);
  });
});

describe('deployer: what agents report back', () => {
  const report = (ns: string, cluster: string, objects: unknown[]) => ({
    apiVersion: 'hawser.io/v1alpha1',
    kind: 'ClusterSyncStatus',
    metadata: { name: cluster, namespace: ns },
    status: { revision: 1, appliedAt: new Date(startMs).toISOString(), pruneRan: true, objects },
  });
  const deploymentRow = (ready: number, extra: Record<string, unknown> = {}) => ({
    apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'default', name: 'nginx', subscriptions: ['default/nginx-replicated'],
    action: 'applied', exists: true, status: { replicas: 3, readyReplicas: ready }, ...extra,
  });
  const serviceRow = { apiVersion: 'v1', kind: 'Service', namespace: 'default', name: 'nginx-svc', subscriptions: ['default/nginx-replicated'], action: 'applied', exists: true };
  const conditions = async (store: HubStore) =>
    Object.fromEntries((await statusOf(store, 'default', 'nginx-replicated')).conditions.filter((c) => c.type === 'Applied' || c.type === 'Healthy').map((c) => [c.type, `${c.status}/${c.reason}`]));

  it('Applied and Healthy follow the agents: pending, applied but not ready, ready, failed', async () => {
    const { store } = await harness();
    await addCluster(store, 'west', { environment: 'production', region: 'us-west' });
    await addCluster(store, 'east', { environment: 'production', region: 'us-east' });
    for (const d of [...docs('replication/description.yaml'), ...docs('replication/subscription.yaml')]) await apply(store, d);
    await waitFor(async () => expect(await conditions(store)).toEqual({ Applied: 'Unknown/Pending', Healthy: 'Unknown/Pending' }));

    await store.put('ClusterSyncStatus', { namespace: 'clusternet-west', name: 'west' }, report('clusternet-west', 'west', [deploymentRow(1), serviceRow]));
    await store.put('ClusterSyncStatus', { namespace: 'clusternet-east', name: 'east' }, report('clusternet-east', 'east', [deploymentRow(3), serviceRow]));
    await waitFor(async () => expect(await conditions(store)).toEqual({ Applied: 'True/Applied', Healthy: 'False/NotReady' }));
    const rows = (await statusOf(store, 'default', 'nginx-replicated')).clusters!;
    expect(rows.map((r) => [r.cluster, r.health?.applied, r.health?.ready])).toEqual([
      ['clusternet-east/east', 2, { ready: 1, workloads: 1 }],
      ['clusternet-west/west', 2, { ready: 0, workloads: 1 }],
    ]);

    await store.put('ClusterSyncStatus', { namespace: 'clusternet-west', name: 'west' }, report('clusternet-west', 'west', [deploymentRow(3), serviceRow]));
    await waitFor(async () => expect(await conditions(store)).toEqual({ Applied: 'True/Applied', Healthy: 'True/Ready' }));

    const rejected = { ...serviceRow, action: 'error', exists: false, error: { code: 'HAWSER_APPLY_REJECTED', message: 'port out of range' } };
    await store.put('ClusterSyncStatus', { namespace: 'clusternet-east', name: 'east' }, report('clusternet-east', 'east', [deploymentRow(3), rejected]));
    await waitFor(async () => expect(await conditions(store)).toEqual({ Applied: 'False/ApplyFailed', Healthy: 'Unknown/ApplyFailed' }));
    const east = (await statusOf(store, 'default', 'nginx-replicated')).clusters!.find((r) => r.cluster.endsWith('/east'))!;
    expect(east.health?.errors).toEqual([{ object: 'Service/default/nginx-svc', code: 'HAWSER_APPLY_REJECTED', message: 'port out of range' }]);
  });
});

describe('deployer: clusters and agent reports from its watches', () => {
  /** Counts the store's list/get calls by kind (the store itself, its `this` kept). */
  function countReads(store: HubStore): Map<string, number> {
    const calls = new Map<string, number>();
    const list = store.list.bind(store);
    const get = store.get.bind(store);
    store.list = ((kind, options) => {
      calls.set(`list ${kind}`, (calls.get(`list ${kind}`) ?? 0) + 1);
      return list(kind, options);
    }) as HubStore['list'];
    store.get = ((kind, key) => {
      calls.set(`get ${kind}`, (calls.get(`get ${kind}`) ?? 0) + 1);
      return get(kind, key);
    }) as HubStore['get'];
    return calls;
  }

  it('a reconcile lists no ManagedClusters and reads no ClusterSyncStatus: the watches hold them, a cluster added later is placed', async () => {
    const { store, deployer } = await harness({ start: false });
    const calls = countReads(store);
    await addCluster(store, 'a', {});
    await addCluster(store, 'b', {});
    await apply(store, deployment('web', 4));
    await store.put('ClusterSyncStatus', { namespace: 'clusternet-a', name: 'a' }, {
      apiVersion: 'hawser.io/v1alpha1',
      kind: 'ClusterSyncStatus',
      metadata: { name: 'a', namespace: 'clusternet-a' },
      status: { objects: [{ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'web', name: 'web', subscriptions: ['default/divided'], action: 'applied', exists: true }] },
    });
    deployer.start();
    await apply(store, staticSubscription({ a: 1, b: 1 }));
    await waitFor(async () => expect(await replicasByCluster(store, ['a', 'b'])).toEqual([2, 2]));
    await addCluster(store, 'c', {});
    await apply(store, staticSubscription({ a: 1, b: 1, c: 2 }));
    await waitFor(async () => expect(await replicasByCluster(store, ['a', 'b', 'c'])).toEqual([1, 1, 2]));
    await deployer.settled();
    // The agent's report reached the status through the watch.
    const a = (await statusOf(store, 'default', 'divided')).clusters!.find((r) => r.cluster.endsWith('/a'))!;
    expect(a.health?.applied).toBe(1);
    // Once each, by the deployer's own watches; none per reconcile.
    expect(calls.get('list ManagedCluster')).toBe(1);
    expect(calls.get('list ClusterSyncStatus')).toBe(1);
    expect(calls.get('get ClusterSyncStatus')).toBeUndefined();
  });

  it('reconciles wait for the first list of clusters: a slow one never makes a restarted deployer drop what is placed', async () => {
    const { store, deployer } = await harness();
    await addCluster(store, 'a', {});
    await addCluster(store, 'b', {});
    await apply(store, deployment('web', 4));
    await apply(store, staticSubscription({ a: 1, b: 1 }));
    await waitFor(async () => expect(await replicasByCluster(store, ['a', 'b'])).toEqual([2, 2]));
    await deployer.settled();
    await deployer.stop();

    // A restart whose list of ManagedClusters takes its time.
    const calls = countReads(store);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let subscriptionsListed = false;
    const list = store.list.bind(store);
    store.list = (async (kind, options) => {
      if (kind === 'ManagedCluster') await held;
      const result = await list(kind, options);
      if (kind === 'Subscription') subscriptionsListed = true;
      return result;
    }) as HubStore['list'];
    const results: string[] = [];
    const again = new Deployer(store, { clock: new ManualClock(startMs), onReconciled: (key) => results.push(key.name) });
    again.start();
    try {
      await waitFor(async () => expect(subscriptionsListed).toBe(true));
      await settle();
      // Queued, not started: a reconcile begins by reading its Subscription.
      expect(calls.get('get Subscription')).toBeUndefined();
      release();
      await waitFor(async () => expect(results).toContain('divided'));
      await again.settled();
      expect(await replicasByCluster(store, ['a', 'b'])).toEqual([2, 2]);
    } finally {
      release();
      await again.stop();
    }
  });
});

describe('deployer: an agent report alone', () => {
  it('folds into the health rows without scheduling or rendering again, and writes what a full reconcile would', async () => {
    const { store, deployer, clock } = await harness();
    await addCluster(store, 'a', {});
    await addCluster(store, 'b', {});
    await apply(store, deployment('web', 4));
    await apply(store, staticSubscription({ a: 1, b: 1 }));
    await waitFor(async () => expect(await replicasByCluster(store, ['a', 'b'])).toEqual([2, 2]));
    await deployer.settled();
    let bases = 0;
    const list = store.list.bind(store);
    store.list = ((kind, options) => {
      if (kind === 'Base') bases++;
      return list(kind, options);
    }) as HubStore['list'];
    await store.put('ClusterSyncStatus', { namespace: 'clusternet-a', name: 'a' }, {
      apiVersion: 'hawser.io/v1alpha1',
      kind: 'ClusterSyncStatus',
      metadata: { name: 'a', namespace: 'clusternet-a' },
      status: { objects: [{ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'web', name: 'web', subscriptions: ['default/divided'], action: 'applied', exists: true, status: { replicas: 2, readyReplicas: 2 } }] },
    });
    await waitFor(async () => expect((await statusOf(store, 'default', 'divided')).clusters!.find((r) => r.cluster.endsWith('/a'))!.health?.ready).toEqual({ ready: 1, workloads: 1 }));
    await deployer.settled();
    expect(bases).toBe(0);
    // A full reconcile now finds nothing to write: the fold wrote what it would have.
    await deployer.stop();
    const folded = await statusOf(store, 'default', 'divided');
    const full = await reconcileSubscription(store, { namespace: 'default', name: 'divided' }, clock.now());
    expect(await statusOf(store, 'default', 'divided')).toEqual(folded);
    expect(full.batch).toBeUndefined();
  });
});

describe('deployer: an agent report alone, without reading the Manifests', () => {
  it('the asked replicas come from the rendering (by revision): no Manifest is read per report, and a scale-up is not ready until its pods are', async () => {
    const { store, deployer } = await harness();
    await addCluster(store, 'a', {});
    await addCluster(store, 'b', {});
    await apply(store, deployment('web', 4));
    await apply(store, staticSubscription({ a: 1, b: 1 }));
    await waitFor(async () => expect(await replicasByCluster(store, ['a', 'b'])).toEqual([2, 2]));
    await deployer.settled();
    let manifestReads = 0;
    const list = store.list.bind(store);
    store.list = ((kind, options) => {
      if (kind === 'Manifest') manifestReads++;
      return list(kind, options);
    }) as HubStore['list'];
    const reportA = (replicas: number, ready: number) =>
      store.put('ClusterSyncStatus', { namespace: 'clusternet-a', name: 'a' }, {
        apiVersion: 'hawser.io/v1alpha1',
        kind: 'ClusterSyncStatus',
        metadata: { name: 'a', namespace: 'clusternet-a' },
        status: { objects: [{ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'web', name: 'web', subscriptions: ['default/divided'], action: 'applied', exists: true, status: { replicas, readyReplicas: ready } }] },
      });
    const readyOfA = async () => (await statusOf(store, 'default', 'divided')).clusters!.find((r) => r.cluster.endsWith('/a'))!.health?.ready;
    // The child still runs 1 replica, all ready; 2 are asked: not ready.
    await reportA(1, 1);
    await waitFor(async () => expect(await readyOfA()).toEqual({ ready: 0, workloads: 1 }));
    await reportA(2, 2);
    await waitFor(async () => expect(await readyOfA()).toEqual({ ready: 1, workloads: 1 }));
    await deployer.settled();
    expect(manifestReads).toBe(0);
  });
});

describe('deployer: reports folded in at most every healthIntervalMs', () => {
  it('the first report is folded in at once; those within the interval after it, together when it has passed', async () => {
    const { store, deployer, clock, results } = await harness({ healthIntervalMs: 1_000 });
    await addCluster(store, 'a', {});
    await addCluster(store, 'b', {});
    await apply(store, deployment('web', 4));
    await apply(store, staticSubscription({ a: 1, b: 1 }));
    await waitFor(async () => expect(await replicasByCluster(store, ['a', 'b'])).toEqual([2, 2]));
    await deployer.settled();
    const reportOf = (cluster: string, ready: number) =>
      store.put('ClusterSyncStatus', { namespace: `clusternet-${cluster}`, name: cluster }, {
        apiVersion: 'hawser.io/v1alpha1',
        kind: 'ClusterSyncStatus',
        metadata: { name: cluster, namespace: `clusternet-${cluster}` },
        status: { objects: [{ apiVersion: 'apps/v1', kind: 'Deployment', namespace: 'web', name: 'web', subscriptions: ['default/divided'], action: 'applied', exists: true, status: { replicas: 2, readyReplicas: ready } }] },
      });
    const readyOf = async (cluster: string) => (await statusOf(store, 'default', 'divided')).clusters!.find((r) => r.cluster.endsWith(`/${cluster}`))!.health?.ready;
    const runs = () => results.filter((r) => r.key === 'default/divided').length;
    await reportOf('a', 2);
    await waitFor(async () => expect(await readyOf('a')).toEqual({ ready: 1, workloads: 1 }));
    await deployer.settled();
    const before = runs();
    await reportOf('b', 1);
    await reportOf('a', 0);
    await settle();
    await deployer.settled();
    // Within the interval: not yet.
    expect(runs()).toBe(before);
    expect(await readyOf('a')).toEqual({ ready: 1, workloads: 1 });
    clock.advance(1_000);
    await waitFor(async () => expect([await readyOf('a'), await readyOf('b')]).toEqual([{ ready: 0, workloads: 1 }, { ready: 0, workloads: 1 }]));
    await deployer.settled();
    expect(runs()).toBe(before + 1);
  });
});

describe('deployer: a subscription over many clusters', () => {
  it('reads what is placed in one list past 32 clusters: a changed feed replaces the old Manifest in all 40, narrowing drops the rest', async () => {
    const { store, deployer } = await harness();
    const names = Array.from({ length: 40 }, (_, i) => `c${String(i).padStart(2, '0')}`);
    for (const [i, name] of names.entries()) await addCluster(store, name, { fleet: 'many', ...(i < 5 ? { pick: 'yes' } : {}) });
    for (const n of ['one', 'two']) await apply(store, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: n, namespace: 'web' }, data: { n } });
    const subscription = (feed: string, labels: Record<string, string>): KubeObject => ({
      apiVersion: 'apps.clusternet.io/v1alpha1',
      kind: 'Subscription',
      metadata: { name: 'many', namespace: 'default' },
      spec: { subscribers: [{ clusterAffinity: { matchLabels: labels } }], feeds: [{ apiVersion: 'v1', kind: 'ConfigMap', name: feed, namespace: 'web' }] },
    });
    const placedIn = async (c: string) => (await manifestsIn(store, `clusternet-${c}`)).map((m) => m.template.metadata.name);
    await apply(store, subscription('one', { fleet: 'many' }));
    await waitFor(async () => expect(await Promise.all(names.map(placedIn))).toEqual(names.map(() => ['one'])));
    await deployer.settled();
    await apply(store, subscription('two', { fleet: 'many' }));
    await waitFor(async () => expect(await Promise.all(names.map(placedIn))).toEqual(names.map(() => ['two'])));
    await deployer.settled();
    await apply(store, subscription('two', { pick: 'yes' }));
    await waitFor(async () => expect(await Promise.all(names.map(placedIn))).toEqual(names.map((_, i) => (i < 5 ? ['two'] : []))));
    await deployer.settled();
    expect((await store.list('Base')).items).toHaveLength(5);
  });
});

/** Lets queued I/O and microtasks run for a number of event-loop turns. */
async function settle(turns = 50): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}
