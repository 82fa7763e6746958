import { describe, expect, it } from 'vitest';
import { clusterHealth, healthConditions } from '../../src/hub/deployer/health.js';
import type { KubeObject } from '../../src/hub/store.js';

const report = (objects: unknown[], pruneHeldReason?: string): KubeObject =>
  ({ apiVersion: 'hawser.io/v1alpha1', kind: 'ClusterSyncStatus', metadata: { name: 'c', namespace: 'n' }, status: { objects, ...(pruneHeldReason ? { pruneHeldReason } : {}) } }) as KubeObject;
const row = (kind: string, name: string, extra: Record<string, unknown> = {}) => ({ apiVersion: 'v1', kind, namespace: 'default', name, subscriptions: ['default/s'], action: 'applied', exists: true, ...extra });

describe('clusterHealth', () => {
  it("counts only this subscription's objects, and a workload is ready only with the replicas the Manifest asks for", () => {
    const h = clusterHealth(
      report([
        row('Deployment', 'web', { status: { replicas: 2, readyReplicas: 2 } }),
        row('ConfigMap', 'other', { subscriptions: ['default/another'] }),
        row('Service', 'web'),
      ]),
      'default/s',
      new Map([['Deployment/default/web', 5]]),
    );
    expect(h).toEqual({ applied: 2, reported: 2, ready: { ready: 0, workloads: 1 }, errors: [] });
  });

  it('a workload whose controller has not seen the current spec is not ready', () => {
    const h = clusterHealth(report([row('Deployment', 'web', { status: { replicas: 2, readyReplicas: 2, generation: 3, observedGeneration: 2 } })]), 'default/s', new Map());
    expect(h.ready).toEqual({ ready: 0, workloads: 1 });
  });

  it('keeps at most five errors a cluster and the prune hold', () => {
    const errors = Array.from({ length: 8 }, (_, i) => row('ConfigMap', `c${i}`, { action: 'error', exists: false, error: { code: 'HAWSER_APPLY_REJECTED', message: 'no' } }));
    const h = clusterHealth(report(errors, 'HAWSER_SYNC_PRUNE_HELD: hub incarnation changed'), 'default/s', new Map());
    expect(h.errors).toHaveLength(5);
    expect(h.applied).toBe(0);
    expect(h.pruneHeld).toContain('HAWSER_SYNC_PRUNE_HELD');
  });
});

describe('healthConditions', () => {
  const ok = { applied: 2, reported: 2, errors: [] };
  it('Pending until every cluster reported all its manifests; then Ready or NotReady', () => {
    expect(healthConditions([{ cluster: 'a', manifests: 2, health: ok }, { cluster: 'b', manifests: 2 }]).map((c) => `${c.type}=${c.status}/${c.reason}`)).toEqual([
      'Applied=Unknown/Pending',
      'Healthy=Unknown/Pending',
    ]);
    expect(healthConditions([{ cluster: 'a', manifests: 2, health: { ...ok, ready: { ready: 1, workloads: 1 } } }]).map((c) => c.status)).toEqual(['True', 'True']);
    const notReady = healthConditions([{ cluster: 'a', manifests: 2, health: { ...ok, ready: { ready: 0, workloads: 1 } } }]);
    expect(notReady[1]).toMatchObject({ status: 'False', reason: 'NotReady', message: 'workloads not ready in a (0/1)' });
  });

  it('an apply error anywhere is Applied=False naming the cluster and the object', () => {
    const [applied] = healthConditions([{ cluster: 'a', manifests: 1, health: { applied: 0, reported: 1, errors: [{ object: 'Service/default/x', code: 'HAWSER_APPLY_REJECTED', message: 'm' }] } }]);
    expect(applied).toMatchObject({ status: 'False', reason: 'ApplyFailed', message: 'apply failed in a: HAWSER_APPLY_REJECTED Service/default/x' });
  });

  it('no clusters: Unknown', () => {
    expect(healthConditions([]).map((c) => c.status)).toEqual(['Unknown', 'Unknown']);
  });
});
