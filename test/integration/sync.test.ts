import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpsRequest, type KubeCluster, type ManagedProcess } from '../../src/testkit/index.js';
import { hawser, type HubProcess, TestBed, until } from './harness.js';

// A real hub and agent process beside a real kube-apiserver: a Subscription
// applied with the CLI is rendered by the hub's deployer, synced, and applied
// by the agent in the child cluster; deleted by hand there, it comes back
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
    // What an operator does: a ConfigMap fed by a Subscription that picks this cluster by id.
    // The hub's deployer renders it into the cluster's Manifest; sync carries it to the agent.
    const file = join(bed.dir, 'synced.yaml');
    await writeFile(
      file,
      [
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: synced, namespace: default}\ndata: {greeting: hello}',
        'apiVersion: apps.clusternet.io/v1alpha1\nkind: Subscription\nmetadata: {name: app, namespace: default}\nspec:',
        `  subscribers: [{clusterAffinity: {matchLabels: {clusters.clusternet.io/cluster-id: ${cluster.spec.clusterId}}}}]`,
        '  feeds: [{apiVersion: v1, kind: ConfigMap, name: synced, namespace: default}]',
      ].join('\n').replace('hello}\napiVersion', 'hello}\n---\napiVersion'),
    );
    const applyResult = await hawser(['apply', '-f', file, `--hub=${hub.apiUrl}`]);
    expect(applyResult.stderr).toBe('');
    expect(applyResult.code).toBe(0);

    const applied = await until('the ConfigMap in the child', async () => {
      const r = await configMap();
      return r.status === 200 ? (JSON.parse(r.body) as { data: Record<string, string> }) : undefined;
    });
    expect(applied.data).toEqual({ greeting: 'hello' });
    // The agent offers compression by default: the sync frames went compressed.
    const rawBytes = await hub.metric('hawser_hub_sync_raw_bytes_total', { cluster: 'edge-s' });
    expect(rawBytes).toBeGreaterThan(0);
    expect(await hub.metric('hawser_hub_sync_sent_bytes_total', { cluster: 'edge-s' })).toBeLessThan(rawBytes);
    // The agent's report comes back: the subscription is Applied and Healthy in its cluster.
    const subs = await until('the subscription Applied and Healthy', async () => {
      const r = await hawser(['get', 'subs', `--hub=${hub.apiUrl}`]);
      return /^app\s+Replication\s+1\s+1\s+True\s+True\s+True\s/m.test(r.stdout) ? r.stdout : undefined;
    });
    expect(subs).toMatch(/^NAME\s+STRATEGY/);
    const described = await hawser(['describe', 'subscription', 'app', `--hub=${hub.apiUrl}`]);
    expect(described.stdout).toMatch(/^\s+edge-s\s+\S+\s+1\s+1\/1\s/m);

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
