import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApplyEngine, type KubeObject, loadKubeConfig, type ObjectReport } from '../../src/agent/index.js';
import { httpsRequest, type KubeCluster, startKubeCluster, waitUntil } from '../../src/testkit/index.js';
import { TestBed } from './harness.js';

// The apply engine in a child cluster that runs workloads (controller-manager,
// scheduler, kwok's fake nodes): what it reads back is what the controllers
// write, and a prune really takes the pods away.

let bed: TestBed;
let kube: KubeCluster;
let engine: ApplyEngine;

beforeAll(async () => {
  bed = await TestBed.create('apply-workloads');
  kube = await startKubeCluster({ name: 'apply-wl', baseDir: bed.dir, tracker: bed.tracker, workloads: true });
  engine = new ApplyEngine({ kubeConfig: loadKubeConfig(kube.kubeconfigPath), clusterId: randomUUID(), fieldManager: 'hawser-agent' });
});

afterAll(async () => {
  engine?.close();
  await kube?.stop();
  await bed?.close();
});

const web = (replicas: number): KubeObject => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { namespace: 'shop', name: 'web' },
  spec: {
    replicas,
    selector: { matchLabels: { app: 'web' } },
    template: {
      metadata: { labels: { app: 'web' } },
      spec: { containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10', resources: { requests: { cpu: '100m', memory: '64Mi' } } }] },
    },
  },
});
const set = (replicas: number) => [
  { subscription: 'team/shop', object: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop' } } },
  { subscription: 'team/shop', object: web(replicas) },
];

async function podCount(): Promise<number> {
  const res = await httpsRequest(`${kube.url}/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb`, { ca: kube.caPem, token: kube.token });
  const list = JSON.parse(res.body) as { items: Array<{ metadata: { deletionTimestamp?: string } }> };
  return list.items.filter((p) => !p.metadata.deletionTimestamp).length;
}

/** Reconciles until the Deployment's report satisfies `done`. */
async function reconcileUntil(replicas: number, what: string, done: (r: ObjectReport) => boolean): Promise<ObjectReport> {
  return (await waitUntil(
    async () => {
      const report = await engine.reconcile({ objects: set(replicas), allowPrune: true });
      const d = report.objects.find((o) => o.kind === 'Deployment');
      return d && done(d) ? d : undefined;
    },
    { timeoutMs: 120_000, what, intervalMs: 500 },
  )) as ObjectReport;
}

describe('apply engine with controllers', () => {
  it('reports the readiness the controllers observe, follows a change of replicas, and a prune removes the pods', async () => {
    const ready = await reconcileUntil(2, 'web ready with 2 replicas', (d) => d.status?.readyReplicas === 2);
    expect(ready.status).toMatchObject({ replicas: 2, readyReplicas: 2, availableReplicas: 2, updatedReplicas: 2 });
    expect(ready.status?.observedGeneration).toBe(ready.status?.generation);
    expect(ready.status?.conditions?.find((c) => c.type === 'Available')?.status).toBe('True');

    const scaled = await reconcileUntil(1, 'web down to 1 replica', (d) => d.status?.replicas === 1 && d.status.readyReplicas === 1);
    expect(scaled.status?.observedGeneration).toBe(scaled.status?.generation);
    await waitUntil(async () => (await podCount()) === 1, { timeoutMs: 60_000, what: 'one web pod' });

    const pruned = await engine.reconcile({ objects: [], allowPrune: true });
    expect(pruned.objects.map((o) => `${o.kind}:${o.action}`)).toEqual(['Deployment:deleted', 'Namespace:deleted']);
    await waitUntil(async () => (await podCount()) === 0, { timeoutMs: 60_000, what: 'no web pods' });
  });
});
