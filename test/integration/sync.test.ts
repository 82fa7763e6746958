import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedStore, SealingStore } from '../../src/hub/store.js';
import { httpsRequest, type KubeCluster, type ManagedProcess } from '../../src/testkit/index.js';
import { type HubProcess, TestBed, until } from './harness.js';

// A real hub and agent process beside a real kube-apiserver: a Manifest the
// hub holds appears in the child cluster; deleted by hand there, it comes back
// from the agent's cache with the hub stopped, also after the agent restarts.

describe('sync to a real cluster (Pull)', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hub: HubProcess;
  let agent: ManagedProcess;

  beforeAll(async () => {
    bed = await TestBed.create('sync');
    kube = await bed.kube('edge-s');
    hub = await bed.hub(['--auto-approve']);
    agent = await bed.agent('edge-s', hub, kube, ['--reconnect-period=500ms', '--max-reconnect-period=2s']);
  });

  afterAll(() => bed?.close());

  const configMapPath = '/api/v1/namespaces/default/configmaps/synced';
  const configMap = async () => httpsRequest(`${kube.url}${configMapPath}`, { ca: kube.caPem, token: kube.token });

  it('applies a Manifest from the hub, and restores a hand-deleted object from the cache with the hub down', async () => {
    const cluster = await until('edge-s registered', () => hub.cluster('edge-s'));
    const ns = cluster.metadata.namespace!;
    // Write the Manifest as the deployer would, into the hub's own store (hub stopped: the store is its alone).
    await hub.proc.stop();
    const inner = await EmbeddedStore.open(join(hub.dataDir, 'store'));
    const { store } = await SealingStore.open(inner, join(hub.dataDir, 'secret-key'));
    await store.put('Manifest', { namespace: ns, name: 'synced' }, {
      apiVersion: 'apps.clusternet.io/v1alpha1',
      kind: 'Manifest',
      metadata: { namespace: ns, name: 'synced', labels: { 'apps.clusternet.io/subs.name': 'app', 'apps.clusternet.io/subs.namespace': 'default' } },
      template: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name: 'synced' }, data: { greeting: 'hello' } },
    });
    await store.close();
    await hub.proc.restart();

    const applied = await until('the ConfigMap in the child', async () => {
      const r = await configMap();
      return r.status === 200 ? (JSON.parse(r.body) as { data: Record<string, string> }) : undefined;
    });
    expect(applied.data).toEqual({ greeting: 'hello' });

    // Hub down; someone deletes the object by hand: the agent puts it back from its cache.
    await hub.proc.stop();
    const deleted = await httpsRequest(`${kube.url}${configMapPath}`, { ca: kube.caPem, token: kube.token, method: 'DELETE' });
    expect(deleted.status).toBe(200);
    await until('restored with the hub down', async () => (await configMap()).status === 200);

    // The agent restarts while the hub is still down: its desired set comes from its cache.
    await agent.stop();
    const again = await httpsRequest(`${kube.url}${configMapPath}`, { ca: kube.caPem, token: kube.token, method: 'DELETE' });
    expect(again.status).toBe(200);
    expect((await configMap()).status).toBe(404);
    await agent.restart();
    await until('restored after the agent restarted, hub still down', async () => (await configMap()).status === 200);
  });
});
