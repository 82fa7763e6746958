import { describe, expect, it } from 'vitest';
import { KubeConfig } from '@kubernetes/client-node';
import { ApplyEngine, applyOrder, deleteOrder, observedStatus, phaseOf, ReconcileLoop } from '../../src/agent/index.js';
import {
  conflictingManagers,
  isOtherAgentManager,
  isOwnedBy,
  managedByLabel,
  otherOwners,
  stampOwnership,
  subscriptionsAnnotation,
  subscriptionsOf,
  subscriptionTagProblem,
} from '../../src/agent/ownership.js';
import { ErrorCode, ManualClock } from '../../src/tunnel/index.js';

const idA = '11111111-1111-4111-8111-111111111111';
const idB = '22222222-2222-4222-8222-222222222222';

describe('apply order', () => {
  const item = (group: string, kind: string, name: string, namespace?: string) => ({ group, kind, name, namespace });
  const set = [
    item('example.com', 'Widget', 'w', 'ns1'),
    item('admissionregistration.k8s.io', 'ValidatingWebhookConfiguration', 'hook'),
    item('apps', 'Deployment', 'web', 'ns1'),
    item('', 'ConfigMap', 'cfg', 'ns1'),
    item('apiextensions.k8s.io', 'CustomResourceDefinition', 'widgets.example.com'),
    item('', 'ServiceAccount', 'sa', 'ns1'),
    item('', 'Namespace', 'ns1'),
    item('', 'Service', 'svc', 'ns1'),
  ];

  it('namespaces, then CRDs, then config before workloads, custom kinds after, webhooks last', () => {
    expect(applyOrder(set).map((i) => i.kind)).toEqual([
      'Namespace',
      'CustomResourceDefinition',
      'ServiceAccount',
      'ConfigMap',
      'Service',
      'Deployment',
      'Widget',
      'ValidatingWebhookConfiguration',
    ]);
  });

  it('deletes in exactly the reverse order', () => {
    expect(deleteOrder(set)).toEqual(applyOrder(set).reverse());
  });

  it('is the same whatever order the set comes in', () => {
    expect(applyOrder([...set].reverse())).toEqual(applyOrder(set));
  });

  it('only the core Namespace and apiextensions CRD have phases of their own', () => {
    expect(phaseOf({ group: '', kind: 'Namespace' })).toBe('namespace');
    expect(phaseOf({ group: 'example.com', kind: 'Namespace' })).toBe('rest');
    expect(phaseOf({ group: 'apiextensions.k8s.io', kind: 'CustomResourceDefinition' })).toBe('crd');
    expect(phaseOf({ group: 'example.com', kind: 'CustomResourceDefinition' })).toBe('rest');
  });
});

describe('ownership marks', () => {
  it('stamps the cluster id label and the subscriptions, and drops server-owned fields and status', () => {
    const stamped = stampOwnership(
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'c', namespace: 'n', labels: { app: 'x' }, resourceVersion: '7', uid: 'u', managedFields: [], creationTimestamp: 't' },
        status: { phase: 'x' },
        data: { a: 'b' },
      },
      idA,
      ['team/b', 'team/a', 'team/b'],
    );
    expect(stamped).toEqual({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: 'c',
        namespace: 'n',
        labels: { app: 'x', [managedByLabel(idA)]: 'true' },
        annotations: { [subscriptionsAnnotation(idA)]: 'team/a,team/b' },
      },
      data: { a: 'b' },
    });
    expect(isOwnedBy(stamped.metadata, idA)).toBe(true);
    expect(isOwnedBy(stamped.metadata, idB)).toBe(false);
    expect(subscriptionsOf(stamped.metadata, idA)).toEqual(['team/a', 'team/b']);
  });

  it('label keys fit Kubernetes limits (name part at most 63 characters)', () => {
    expect(managedByLabel(idA).split('/')[1]!.length).toBeLessThanOrEqual(63);
    expect(subscriptionsAnnotation(idA).split('/')[1]!.length).toBeLessThanOrEqual(63);
  });

  it('names the other cluster ids that claim an object', () => {
    const meta = { labels: { [managedByLabel(idA)]: 'true', [managedByLabel(idB)]: 'true', app: 'x' } };
    expect(otherOwners(meta, idA)).toEqual([idB]);
    expect(otherOwners({ labels: { [managedByLabel(idA)]: 'true' } }, idA)).toEqual([]);
  });

  it('reads the field managers of an apply conflict and tells other agents from people', () => {
    const causes = [
      { type: 'FieldManagerConflict', message: 'conflict with "kubectl-edit" using apps/v1', field: '.spec.replicas' },
      { type: 'FieldManagerConflict', message: `conflict with "hawser-agent/${idB}"`, field: '.data.size' },
    ];
    expect(conflictingManagers(causes)).toEqual(['kubectl-edit', `hawser-agent/${idB}`]);
    expect(isOtherAgentManager(`hawser-agent/${idB}`, 'hawser-agent', idA)).toBe(true);
    expect(isOtherAgentManager(`hawser-agent/${idA}`, 'hawser-agent', idA)).toBe(false);
    expect(isOtherAgentManager('kubectl-edit', 'hawser-agent', idA)).toBe(false);
  });

  it('refuses subscription tags that are not namespace/name', () => {
    expect(subscriptionTagProblem('team/app')).toBeUndefined();
    expect(subscriptionTagProblem('app')).toMatch(/namespace\/name/);
    expect(subscriptionTagProblem('Team/app')).toBeDefined();
    expect(subscriptionTagProblem('team/a/b')).toBeDefined();
  });
});

describe('observed status', () => {
  it('keeps the replica counts and bounded conditions, nothing else', () => {
    const long = 'x'.repeat(5_000);
    const s = observedStatus({
      replicas: 3,
      readyReplicas: 1,
      observedGeneration: 4,
      conditions: [...Array.from({ length: 40 }, (_, i) => ({ type: `T${i}`, status: 'True', message: long })), { bogus: true }],
    });
    expect(s?.replicas).toBe(3);
    expect(s?.readyReplicas).toBe(1);
    expect(s).not.toHaveProperty('observedGeneration');
    expect(s?.conditions).toHaveLength(16);
    expect(s!.conditions![0]!.message!.length).toBeLessThan(300);
  });

  it('carries generation and observedGeneration together, so a stale status can be told', () => {
    expect(observedStatus({ observedGeneration: 3, replicas: 1 }, 4)).toEqual({ generation: 4, observedGeneration: 3, replicas: 1 });
    expect(observedStatus({ replicas: 1 }, 4)).toEqual({ replicas: 1 });
  });

  it('is absent for objects without status', () => {
    expect(observedStatus(undefined)).toBeUndefined();
    expect(observedStatus({})).toBeUndefined();
  });
});

describe('ApplyEngine options', () => {
  // No request is made: a config that points nowhere is enough.
  const kubeConfig = (): KubeConfig => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: false }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    return kc;
  };
  it('refuses a cluster id that is not a UUID (it goes into label keys)', () => {
    expect(() => new ApplyEngine({ kubeConfig: kubeConfig(), clusterId: 'edge-1', fieldManager: 'hawser-agent' })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidOption }),
    );
  });
  it('refuses a field manager with spaces', () => {
    expect(() => new ApplyEngine({ kubeConfig: kubeConfig(), clusterId: idA, fieldManager: 'hawser agent' })).toThrow(
      expect.objectContaining({ code: ErrorCode.InvalidOption }),
    );
  });
  it('applies as <manager>/<cluster id>', () => {
    const e = new ApplyEngine({ kubeConfig: kubeConfig(), clusterId: idA, fieldManager: 'hawser-agent' });
    expect(e.fieldManager).toBe(`hawser-agent/${idA}`);
    e.close();
  });
});

describe('ReconcileLoop', () => {
  function setup() {
    const clock = new ManualClock(0);
    const runs: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
    const errors: unknown[] = [];
    const loop = new ReconcileLoop({
      intervalMs: 1_000,
      clock,
      run: () => new Promise<void>((resolve, reject) => runs.push({ resolve, reject })),
      onError: (e) => errors.push(e),
    });
    const settle = () => new Promise((r) => setImmediate(r));
    return { clock, runs, errors, loop, settle };
  }

  it('runs a pass at start, then one interval after each pass ends', async () => {
    const { clock, runs, loop, settle } = setup();
    loop.start();
    expect(runs).toHaveLength(1);
    clock.advance(5_000); // a pass that takes long delays the next one; none overlap
    expect(runs).toHaveLength(1);
    runs[0]!.resolve();
    await settle();
    expect(loop.passes).toBe(1);
    clock.advance(999);
    expect(runs).toHaveLength(1);
    clock.advance(1);
    expect(runs).toHaveLength(2);
    runs[1]!.resolve();
    await settle();
    await loop.stop();
  });

  it('triggers during a pass coalesce into one more pass right after it', async () => {
    const { runs, loop, settle } = setup();
    loop.start();
    loop.trigger();
    loop.trigger();
    loop.trigger();
    expect(runs).toHaveLength(1);
    runs[0]!.resolve();
    await settle();
    expect(runs).toHaveLength(2);
    runs[1]!.resolve();
    await settle();
    expect(runs).toHaveLength(2);
    expect(loop.passes).toBe(2);
    await loop.stop();
  });

  it('a trigger while idle runs a pass now and restarts the interval', async () => {
    const { clock, runs, loop, settle } = setup();
    loop.start();
    runs[0]!.resolve();
    await settle();
    clock.advance(500);
    loop.trigger();
    expect(runs).toHaveLength(2);
    runs[1]!.resolve();
    await settle();
    clock.advance(999);
    expect(runs).toHaveLength(2);
    clock.advance(1);
    expect(runs).toHaveLength(3);
    runs[2]!.resolve();
    await settle();
    await loop.stop();
  });

  it('a failed pass is reported and the loop goes on', async () => {
    const { clock, runs, errors, loop, settle } = setup();
    loop.start();
    runs[0]!.reject(new Error('api down'));
    await settle();
    expect(errors).toEqual([new Error('api down')]);
    clock.advance(1_000);
    expect(runs).toHaveLength(2);
    runs[1]!.resolve();
    await settle();
    await loop.stop();
  });

  it('stop aborts the running pass, waits for it, and leaves no timer', async () => {
    const clock = new ManualClock(0);
    let aborted = false;
    const loop = new ReconcileLoop({
      intervalMs: 1_000,
      clock,
      run: (signal) =>
        new Promise<void>((resolve) =>
          signal.addEventListener('abort', () => {
            aborted = true;
            resolve();
          }),
        ),
    });
    loop.start();
    await loop.stop();
    expect(aborted).toBe(true);
    expect(clock.pendingTimers).toBe(0);
    loop.trigger();
    expect(loop.running).toBe(false);
  });
});
