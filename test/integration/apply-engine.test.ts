import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApplyEngine, ReconcileLoop, type DesiredObject, fieldManagerFor, type KubeObject, loadKubeConfig, managedByLabel, type ObjectReport, subscriptionsAnnotation } from '../../src/agent/index.js';
import { KubeConfig } from '@kubernetes/client-node';
import { freePort, httpsRequest, type KubeCluster } from '../../src/testkit/index.js';
import { ErrorCode } from '../../src/tunnel/index.js';
import { TestBed, until } from './harness.js';

// The apply engine against a real kube-apiserver (no controller-manager:
// Deployments are applied, pruned and restored, never rolled out).

let bed: TestBed;
let kube: KubeCluster;
const engines: ApplyEngine[] = [];

beforeAll(async () => {
  bed = await TestBed.create('apply-engine');
  kube = await bed.kube('apply');
});

afterAll(async () => {
  for (const e of engines) e.close();
  await bed?.close();
});

function engine(clusterId: string = randomUUID()): ApplyEngine {
  const e = new ApplyEngine({ kubeConfig: loadKubeConfig(kube.kubeconfigPath), clusterId, fieldManager: 'hawser-agent', crdEstablishTimeoutMs: 60_000 });
  engines.push(e);
  return e;
}

/** An object as the API server returns it; tests read the fields they check. */
interface Live extends KubeObject {
  metadata: KubeObject['metadata'];
  spec?: { replicas?: number; size?: number };
  data?: Record<string, string>;
}

/** A request to the API server as the admin, outside the engine (a user's hand). */
async function api(method: string, path: string, body?: unknown, contentType = 'application/json') {
  const res = await httpsRequest(`${kube.url}${path}`, {
    ca: kube.caPem,
    token: kube.token,
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': contentType } }),
  });
  return { status: res.status, json: () => JSON.parse(res.body) as Live };
}

async function get(path: string) {
  const res = await api('GET', path);
  return res.status === 200 ? res.json() : undefined;
}

const sub = (name: string) => `team-a/${name}`;
const ns = (name: string): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
const cm = (namespace: string, name: string, data: Record<string, string> = { k: 'v' }): KubeObject => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { namespace, name },
  data,
});
const deployment = (namespace: string, name: string, replicas: number): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { namespace, name, labels: { app: name } },
  spec: {
    replicas,
    selector: { matchLabels: { app: name } },
    template: { metadata: { labels: { app: name } }, spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] } },
  },
});
const desired = (subscription: string, ...objects: KubeObject[]): DesiredObject[] => objects.map((object) => ({ subscription, object }));

function actionOf(reports: ObjectReport[], kind: string, name: string): string | undefined {
  const found = reports.filter((r) => r.kind === kind && r.name === name);
  expect(found, `${kind} ${name} reported once`).toHaveLength(1);
  return found[0]!.action;
}

describe('apply engine (real kube-apiserver)', () => {
  it('applies a Namespace, a CRD and a custom resource of it in one set, whatever order they come in', async () => {
    const crd: KubeObject = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'widgets.example.com' },
      spec: {
        group: 'example.com',
        scope: 'Namespaced',
        names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', properties: { spec: { type: 'object', properties: { size: { type: 'integer' } } } } } } }],
      },
    };
    const widget: KubeObject = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { namespace: 'order', name: 'w1' }, spec: { size: 3 } };
    const e = engine();
    // Listed backwards: the custom resource first, its namespace last.
    const report = await e.reconcile({ objects: desired(sub('order'), widget, crd, ns('order')), allowPrune: false });
    expect(report.objects.map((r) => [r.kind, r.action, r.error?.code])).toEqual([
      ['Namespace', 'applied', undefined],
      ['CustomResourceDefinition', 'applied', undefined],
      ['Widget', 'applied', undefined],
    ]);
    const live = await get('/apis/example.com/v1/namespaces/order/widgets/w1');
    expect(live?.spec).toEqual({ size: 3 });
    expect(live?.metadata.labels?.[managedByLabel(e.clusterId)]).toBe('true');
    expect(live?.metadata.annotations?.[subscriptionsAnnotation(e.clusterId)]).toBe('team-a/order');
  });

  it('a custom resource whose CRD is not in the cluster is reported as such; the rest apply', async () => {
    const e = engine();
    const gadget: KubeObject = { apiVersion: 'gadgets.example.com/v1', kind: 'Gadget', metadata: { namespace: 'default', name: 'g1' } };
    const report = await e.reconcile({ objects: desired(sub('nocrd'), gadget, cm('default', 'beside-gadget')), allowPrune: false });
    const g = report.objects.find((r) => r.kind === 'Gadget')!;
    expect(g.action).toBe('error');
    expect(g.error?.code).toBe(ErrorCode.KindNotServed);
    expect(g.exists).toBe(false);
    expect(g.error?.message).toContain('gadgets.example.com/Gadget');
    expect(actionOf(report.objects, 'ConfigMap', 'beside-gadget')).toBe('applied');
  });

  it('a CRD the API server refuses blocks its custom resources with a clear error; the rest apply', async () => {
    const e = engine();
    const badCrd: KubeObject = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      // The name must be <plural>.<group>: refused.
      metadata: { name: 'wrong.example.net' },
      spec: {
        group: 'example.net',
        scope: 'Namespaced',
        names: { plural: 'bolts', singular: 'bolt', kind: 'Bolt' },
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object' } } }],
      },
    };
    const bolt: KubeObject = { apiVersion: 'example.net/v1', kind: 'Bolt', metadata: { namespace: 'default', name: 'b1' } };
    const report = await e.reconcile({ objects: desired(sub('bolts'), bolt, badCrd, cm('default', 'beside-bolt')), allowPrune: false });
    expect(report.objects.map((r) => [r.kind, r.action, r.error?.code])).toEqual([
      ['CustomResourceDefinition', 'error', ErrorCode.ApplyRejected],
      ['ConfigMap', 'applied', undefined],
      ['Bolt', 'error', ErrorCode.CrdNotEstablished],
    ]);
    expect(report.objects.find((r) => r.kind === 'Bolt')?.error?.message).toContain('wrong.example.net');
  });

  it('an object the API server refuses is an error for it alone; the others apply', async () => {
    const e = engine();
    const badService: KubeObject = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { namespace: 'bad', name: 'bad-port' },
      spec: { ports: [{ port: 99_999 }] },
    };
    const report = await e.reconcile({ objects: desired(sub('bad'), ns('bad'), badService, cm('bad', 'good'), deployment('bad', 'web', 1)), allowPrune: false });
    const bad = report.objects.find((r) => r.kind === 'Service')!;
    expect(bad.action).toBe('error');
    expect(bad.error?.code).toBe(ErrorCode.ApplyRejected);
    expect(bad.exists).toBe(false);
    expect(bad.error?.message).toContain('99999');
    expect(bad.error!.message.length).toBeLessThanOrEqual(1100);
    expect(actionOf(report.objects, 'ConfigMap', 'good')).toBe('applied');
    expect(actionOf(report.objects, 'Deployment', 'web')).toBe('applied');
    expect(await get('/api/v1/namespaces/bad/configmaps/good')).toBeDefined();
    expect(await get('/api/v1/namespaces/bad/services/bad-port')).toBeUndefined();
  });

  it('a desired object without a name is an error for it alone', async () => {
    const e = engine();
    const nameless = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default' } } as KubeObject;
    const report = await e.reconcile({ objects: desired(sub('nameless'), nameless, cm('default', 'named')), allowPrune: false });
    expect(report.objects.map((r) => [r.name, r.action, r.error?.code])).toEqual([
      ['', 'error', ErrorCode.InvalidManifest],
      ['named', 'applied', undefined],
    ]);
  });

  it('one object desired by two subscriptions is applied once and names both; other content for it is refused', async () => {
    const e = engine();
    const objects: DesiredObject[] = [
      { subscription: 'team-a/one', object: cm('default', 'common', { v: '1' }) },
      { subscription: 'team-b/two', object: cm('default', 'common', { v: '1' }) },
      { subscription: 'team-c/three', object: cm('default', 'common', { v: 'other' }) },
    ];
    const report = await e.reconcile({ objects, allowPrune: false });
    expect(report.objects.map((r) => [r.subscriptions, r.action, r.error?.code])).toEqual([
      [['team-c/three'], 'error', ErrorCode.InvalidManifest],
      [['team-a/one', 'team-b/two'], 'applied', undefined],
    ]);
    const live = await get('/api/v1/namespaces/default/configmaps/common');
    expect(live?.data).toEqual({ v: '1' });
    expect(live?.metadata.annotations?.[subscriptionsAnnotation(e.clusterId)]).toBe('team-a/one,team-b/two');
  });

  it('applying the same set twice reports unchanged, also from a new engine (an agent restart)', async () => {
    const clusterId = randomUUID();
    const set = desired(sub('twice'), ns('twice'), cm('twice', 'c1'), deployment('twice', 'web', 2));
    const first = await engine(clusterId).reconcile({ objects: set, allowPrune: true });
    expect(first.objects.map((r) => r.action)).toEqual(['applied', 'applied', 'applied']);
    const again = await engine(clusterId).reconcile({ objects: set, allowPrune: true });
    expect(again.objects.map((r) => r.action)).toEqual(['unchanged', 'unchanged', 'unchanged']);
    const e = engines.at(-1)!;
    const third = await e.reconcile({ objects: set, allowPrune: true });
    expect(third.objects.map((r) => r.action)).toEqual(['unchanged', 'unchanged', 'unchanged']);
  });

  it('puts back an object deleted by hand and a managed field changed by hand', async () => {
    const e = engine();
    const set = desired(sub('drift'), ns('drift'), cm('drift', 'settings', { mode: 'fast' }), deployment('drift', 'web', 2));
    await e.reconcile({ objects: set, allowPrune: false });

    expect((await api('DELETE', '/api/v1/namespaces/drift/configmaps/settings')).status).toBe(200);
    // kubectl scale / kubectl edit: another field manager takes the fields over.
    const scaled = await api('PATCH', '/apis/apps/v1/namespaces/drift/deployments/web?fieldManager=kubectl-edit', { spec: { replicas: 5 } }, 'application/merge-patch+json');
    expect(scaled.status).toBe(200);
    expect((await get('/apis/apps/v1/namespaces/drift/deployments/web'))?.spec?.replicas).toBe(5);

    const report = await e.reconcile({ objects: set, allowPrune: false });
    expect(actionOf(report.objects, 'ConfigMap', 'settings')).toBe('applied');
    expect(actionOf(report.objects, 'Deployment', 'web')).toBe('applied');
    expect(actionOf(report.objects, 'Namespace', 'drift')).toBe('unchanged');
    expect((await get('/api/v1/namespaces/drift/configmaps/settings'))?.data).toEqual({ mode: 'fast' });
    expect((await get('/apis/apps/v1/namespaces/drift/deployments/web'))?.spec?.replicas).toBe(2);

    // A hand edit of a field hawser does not set stays: it is not drift.
    const annotated = await api('PATCH', '/api/v1/namespaces/drift/configmaps/settings?fieldManager=kubectl-annotate', { metadata: { annotations: { note: 'by hand' } } }, 'application/merge-patch+json');
    expect(annotated.status).toBe(200);
    const after = await e.reconcile({ objects: set, allowPrune: false });
    expect(actionOf(after.objects, 'ConfigMap', 'settings')).toBe('unchanged');
    expect((await get('/api/v1/namespaces/drift/configmaps/settings'))?.metadata.annotations?.['note']).toBe('by hand');
  });

  it('reads back the observed status fields', async () => {
    const e = engine();
    const set = desired(sub('status'), ns('status'), deployment('status', 'web', 3));
    await e.reconcile({ objects: set, allowPrune: false });
    // No controller-manager runs: write the status a controller would.
    const res = await api(
      'PATCH',
      '/apis/apps/v1/namespaces/status/deployments/web/status',
      { status: { observedGeneration: 1, replicas: 3, readyReplicas: 2, availableReplicas: 2, updatedReplicas: 3, conditions: [{ type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: 'not yet' }] } },
      'application/merge-patch+json',
    );
    expect(res.status).toBe(200);
    const report = await e.reconcile({ objects: set, allowPrune: false });
    const web = report.objects.find((r) => r.kind === 'Deployment')!;
    expect(web.action).toBe('unchanged');
    expect(web.status).toEqual({
      generation: 1,
      observedGeneration: 1,
      replicas: 3,
      readyReplicas: 2,
      availableReplicas: 2,
      updatedReplicas: 3,
      conditions: [{ type: 'Available', status: 'False', reason: 'MinimumReplicasUnavailable', message: 'not yet' }],
    });
  });

  it('prunes only its own objects: another cluster id and a hand-made object keep theirs', async () => {
    const a = engine();
    const b = engine();
    await a.reconcile({ objects: desired(sub('shared'), ns('shared'), cm('shared', 'a1'), cm('shared', 'a2'), deployment('shared', 'a-web', 1)), allowPrune: true });
    // A second registration pointing at the same cluster: the same Namespace, its own ConfigMap.
    const bReport = await b.reconcile({ objects: desired('team-b/other', ns('shared'), cm('shared', 'b1')), allowPrune: true });
    expect(bReport.objects.map((r) => r.action)).toEqual(['applied', 'applied']);
    const handMade = await api('POST', '/api/v1/namespaces/shared/configmaps', cm('shared', 'by-hand'));
    expect(handMade.status).toBe(201);
    const handDeploy = await api('POST', '/apis/apps/v1/namespaces/shared/deployments', deployment('shared', 'hand-web', 1));
    expect(handDeploy.status).toBe(201);

    // a2 and a-web leave A's desired set.
    const pruned = await a.reconcile({ objects: desired(sub('shared'), ns('shared'), cm('shared', 'a1')), allowPrune: true });
    expect(pruned.objects.filter((r) => r.action === 'deleted').map((r) => `${r.kind}/${r.name}`).sort()).toEqual(['ConfigMap/a2', 'Deployment/a-web']);
    expect(pruned.objects.map((r) => `${r.kind}/${r.name}:${r.exists}`).sort()).toEqual(['ConfigMap/a1:true', 'ConfigMap/a2:false', 'Deployment/a-web:false', 'Namespace/shared:true']);
    expect(await get('/api/v1/namespaces/shared/configmaps/a2')).toBeUndefined();
    expect(await get('/apis/apps/v1/namespaces/shared/deployments/a-web')).toBeUndefined();
    expect(await get('/api/v1/namespaces/shared/configmaps/b1')).toBeDefined();
    expect(await get('/api/v1/namespaces/shared/configmaps/by-hand')).toBeDefined();
    expect(await get('/apis/apps/v1/namespaces/shared/deployments/hand-web')).toBeDefined();

    // A's whole subscription goes: its ConfigMap is deleted; the Namespace B also claims is only released.
    const emptied = await a.reconcile({ objects: [], allowPrune: true });
    expect(emptied.objects.map((r) => `${r.kind}/${r.name}:${r.action}`).sort()).toEqual(['ConfigMap/a1:deleted', 'Namespace/shared:released']);
    const shared = await get('/api/v1/namespaces/shared');
    expect(shared?.metadata.deletionTimestamp).toBeUndefined();
    expect(shared?.metadata.labels?.[managedByLabel(a.clusterId)]).toBeUndefined();
    expect(shared?.metadata.labels?.[managedByLabel(b.clusterId)]).toBe('true');
    expect(await get('/api/v1/namespaces/shared/configmaps/b1')).toBeDefined();
    expect(await get('/api/v1/namespaces/shared/configmaps/by-hand')).toBeDefined();

    // B, from a fresh engine (a restart: nothing remembered), still sees its set as its own.
    const bAgain = await engine(b.clusterId).reconcile({ objects: desired('team-b/other', ns('shared'), cm('shared', 'b1')), allowPrune: true });
    expect(bAgain.objects.map((r) => r.action)).toEqual(['unchanged', 'unchanged']);
  });

  it('a restarted engine prunes what an earlier one applied (found by listing every kind once)', async () => {
    const clusterId = randomUUID();
    await engine(clusterId).reconcile({ objects: desired(sub('restart'), ns('restart'), cm('restart', 'keep'), cm('restart', 'old'), deployment('restart', 'old-web', 1)), allowPrune: true });
    const report = await engine(clusterId).reconcile({ objects: desired(sub('restart'), ns('restart'), cm('restart', 'keep')), allowPrune: true });
    expect(report.prune.errors).toEqual([]);
    expect(report.objects.filter((r) => r.action === 'deleted').map((r) => `${r.kind}/${r.name}`).sort()).toEqual(['ConfigMap/old', 'Deployment/old-web']);
    expect(await get('/api/v1/namespaces/restart/configmaps/keep')).toBeDefined();
  });

  it('deletes in reverse order: custom resources, then their CRD, then the namespace', async () => {
    const clusterId = randomUUID();
    const crd: KubeObject = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'sprockets.example.org' },
      spec: {
        group: 'example.org',
        scope: 'Namespaced',
        names: { plural: 'sprockets', singular: 'sprocket', kind: 'Sprocket' },
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
      },
    };
    const sprocket: KubeObject = { apiVersion: 'example.org/v1', kind: 'Sprocket', metadata: { namespace: 'gears', name: 's1' } };
    const e = engine(clusterId);
    const applied = await e.reconcile({ objects: desired(sub('gears'), sprocket, ns('gears'), crd, cm('gears', 'c')), allowPrune: true });
    expect(applied.objects.every((r) => r.action === 'applied')).toBe(true);
    const gone = await e.reconcile({ objects: [], allowPrune: true });
    expect(gone.objects.map((r) => `${r.kind}:${r.action}`)).toEqual(['Sprocket:deleted', 'ConfigMap:deleted', 'CustomResourceDefinition:deleted', 'Namespace:deleted']);
  });

  it('a CRD whose custom resources are not all its own is kept at prune: a hand-made one would go with it', async () => {
    const e = engine();
    const crd: KubeObject = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'cogs.example.org' },
      spec: {
        group: 'example.org',
        scope: 'Cluster',
        names: { plural: 'cogs', singular: 'cog', kind: 'Cog' },
        versions: [{ name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } }],
      },
    };
    const ours: KubeObject = { apiVersion: 'example.org/v1', kind: 'Cog', metadata: { name: 'ours' } };
    const applied = await e.reconcile({ objects: desired(sub('cogs'), crd, ours), allowPrune: true });
    expect(applied.objects.map((r) => r.action)).toEqual(['applied', 'applied']);
    expect((await api('POST', '/apis/example.org/v1/cogs', { apiVersion: 'example.org/v1', kind: 'Cog', metadata: { name: 'by-hand' } })).status).toBe(201);

    const pruned = await e.reconcile({ objects: [], allowPrune: true });
    expect(pruned.objects.map((r) => [r.kind, r.action, r.error?.code])).toEqual([
      ['Cog', 'deleted', undefined],
      ['CustomResourceDefinition', 'error', ErrorCode.PruneBlocked],
    ]);
    expect(await get('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/cogs.example.org')).toBeDefined();
    expect(await get('/apis/example.org/v1/cogs/by-hand')).toBeDefined();
  });

  it('allowPrune=false keeps everything, even with an empty desired set', async () => {
    const e = engine();
    await e.reconcile({ objects: desired(sub('keep'), ns('keep'), cm('keep', 'c1'), deployment('keep', 'web', 1)), allowPrune: true });
    const report = await e.reconcile({ objects: [], allowPrune: false });
    expect(report.objects).toEqual([]);
    expect(report.prune.ran).toBe(false);
    expect(await get('/api/v1/namespaces/keep/configmaps/c1')).toBeDefined();
    expect(await get('/apis/apps/v1/namespaces/keep/deployments/web')).toBeDefined();
    expect((await get('/api/v1/namespaces/keep'))?.metadata.deletionTimestamp).toBeUndefined();
  });

  it('two cluster ids setting one field to different values: a conflict is reported, nothing is forced', async () => {
    const a = engine();
    const b = engine();
    await a.reconcile({ objects: desired(sub('fight'), ns('fight'), cm('fight', 'both', { size: 'small' })), allowPrune: false });
    const report = await b.reconcile({ objects: desired('team-b/fight', cm('fight', 'both', { size: 'large' })), allowPrune: false });
    const both = report.objects.find((r) => r.name === 'both')!;
    expect(both.action).toBe('error');
    expect(both.error?.code).toBe(ErrorCode.ApplyConflict);
    expect(both.error?.message).toContain(fieldManagerFor('hawser-agent', a.clusterId));
    expect((await get('/api/v1/namespaces/fight/configmaps/both'))?.data).toEqual({ size: 'small' });
  });

  it('an API server that cannot be reached: every object reports Unavailable, nothing is pruned, nothing throws', async () => {
    const port = await freePort({ owner: 'closed api server', tracker: bed.tracker });
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'gone', server: `https://127.0.0.1:${port}`, caData: Buffer.from(kube.caPem).toString('base64') }],
      users: [{ name: 'u', token: kube.token }],
      contexts: [{ name: 'gone', cluster: 'gone', user: 'u' }],
      currentContext: 'gone',
    });
    const e = new ApplyEngine({ kubeConfig: kc, clusterId: randomUUID(), fieldManager: 'hawser-agent' });
    engines.push(e);
    const report = await e.reconcile({ objects: desired(sub('down'), ns('down'), cm('down', 'c')), allowPrune: true });
    expect(report.objects.map((r) => [r.kind, r.action, r.error?.code])).toEqual([
      ['Namespace', 'error', ErrorCode.Unavailable],
      ['ConfigMap', 'error', ErrorCode.Unavailable],
    ]);
    expect(report.prune.ran).toBe(true);
    expect(report.prune.errors.length).toBeGreaterThan(0);
  });

  it('with a watch, a hand-deleted object comes back without waiting for the interval', async () => {
    const e = engine();
    const set = desired(sub('watched'), ns('watched'), cm('watched', 'c1'), deployment('watched', 'web', 1));
    const reports: string[][] = [];
    // An hour: only the watch can bring a pass within this test.
    const loop = new ReconcileLoop({
      intervalMs: 3_600_000,
      run: async (signal) => {
        const r = await e.reconcile({ objects: set, allowPrune: true, signal });
        reports.push(r.objects.map((o) => `${o.kind}/${o.name}:${o.action}`));
      },
    });
    const watch = e.watchOwned({ onDeleted: () => loop.trigger(), retryMs: 200 });
    try {
      loop.start();
      await until('first pass', async () => loop.passes >= 1 && !loop.running);
      expect(watch.watching).toEqual(['/ConfigMap', '/Namespace', 'apps/Deployment']);
      // A delete before a watch is open is not seen by it: wait for them.
      await watch.established();
      expect((await api('DELETE', '/api/v1/namespaces/watched/configmaps/c1')).status).toBe(200);
      expect((await api('DELETE', '/apis/apps/v1/namespaces/watched/deployments/web')).status).toBe(200);
      await until('c1 and web restored', async () => (await get('/api/v1/namespaces/watched/configmaps/c1')) && (await get('/apis/apps/v1/namespaces/watched/deployments/web')));
    } finally {
      await loop.stop();
      await watch.close();
    }
    expect(watch.watching).toEqual([]);
  });
});
