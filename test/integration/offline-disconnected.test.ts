import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, httpsRequest, type KubeCluster, type ManagedProcess } from '../../src/testkit/index.js';
import { hawser, type HubProcess, jsonLines, sampleValue, startAgentProcess, TestBed, until } from './harness.js';

// §5 --use-cache-when-disconnected, against a real hub, real agent processes
// and a real kube-apiserver: a ConfigMap synced; hub and agent stopped; the
// ConfigMap deleted by hand in the child cluster; the agent started again
// with the hub still down. With the flag false it leaves the cluster as it
// is (its reconcile passes run and are skipped) until the hub is back; with
// true (the default) it restores the object from its cache, hub down.

describe('--use-cache-when-disconnected (real hub, agent, kube-apiserver)', () => {
  let bed: TestBed;
  let kube: KubeCluster;
  let hub: HubProcess;
  let metricsPort: number;
  const name = 'edge-ud';
  const baseArgs = () => ['--reconnect-period=300ms', '--max-reconnect-period=1s', '--apply-interval=1s', `--metrics-address=127.0.0.1:${metricsPort}`];
  const startAgent = (extra: string[]): Promise<ManagedProcess> =>
    startAgentProcess({
      name,
      parentUrl: hub.tunnel,
      caFile: hub.caFile,
      cacheDir: join(bed.dir, 'agents', name),
      kubeconfig: kube.kubeconfigPath,
      logDir: bed.logDir,
      tracker: bed.tracker,
      args: [...baseArgs(), ...extra],
    });

  beforeAll(async () => {
    bed = await TestBed.create('offline-disconnected');
    kube = await bed.kube(name);
    hub = await bed.hub(['--auto-approve']);
    metricsPort = await freePort({ owner: 'agent metrics', tracker: bed.tracker });
  }, 180_000);

  afterAll(() => bed?.close());

  const cmPath = '/api/v1/namespaces/default/configmaps/cm-d';
  const kubeGet = () => httpsRequest(`${kube.url}${cmPath}`, { ca: kube.caPem, token: kube.token });
  const kubeDelete = async () => expect((await httpsRequest(`${kube.url}${cmPath}`, { ca: kube.caPem, token: kube.token, method: 'DELETE' })).status).toBe(200);
  const agentMetric = async (metric: string) => sampleValue(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text(), metric, {});

  /** Synced with the hub up, then agent and hub stopped and cm-d deleted by hand. */
  async function syncThenGoDark(extra: string[]): Promise<void> {
    const agent = await startAgent(extra);
    await until('cm-d in the child', async () => (await kubeGet()).status === 200, 90_000);
    await agent.stop();
    await hub.proc.stop();
    await kubeDelete();
  }

  it('false: an agent restarted with the hub unreachable does not reconcile from its cache; the hub back, it does', { timeout: 240_000 }, async () => {
    const first = await startAgent([]);
    const cluster = await until(`${name} registered`, () => hub.cluster(name));
    const file = join(bed.dir, 'app.yaml');
    await writeFile(
      file,
      [
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-d, namespace: default}\ndata: {k: v}',
        [
          'apiVersion: apps.clusternet.io/v1alpha1\nkind: Subscription\nmetadata: {name: app-ud, namespace: default}\nspec:',
          `  subscribers: [{clusterAffinity: {matchLabels: {clusters.clusternet.io/cluster-id: ${cluster.spec.clusterId}}}}]`,
          '  feeds: [{apiVersion: v1, kind: ConfigMap, name: cm-d, namespace: default}]',
        ].join('\n'),
      ].join('\n---\n'),
    );
    expect((await hawser(['apply', '-f', file, `--hub=${hub.apiUrl}`])).stderr).toBe('');
    await until('cm-d in the child', async () => (await kubeGet()).status === 200, 90_000);
    await first.stop();
    await hub.proc.stop();
    await kubeDelete();

    const agent = await startAgent(['--use-cache-when-disconnected=false']);
    // Three passes that would each have applied the cached set ran and were skipped.
    await until('three reconcile passes skipped', async () => (await agentMetric('hawser_agent_apply_passes_skipped_total')) >= 3, 60_000);
    expect((await kubeGet()).status).toBe(404);
    expect(jsonLines(agent).filter((l) => /not reconciled until it is back/.test(String(l['msg'])))).toHaveLength(1);

    await hub.proc.restart();
    await until('cm-d applied once the hub is back', async () => (await kubeGet()).status === 200, 90_000);
    expect(jsonLines(agent).some((l) => /hub reachable again/.test(String(l['msg'])))).toBe(true);
    await agent.stop();
  });

  it('true (the default): an agent restarted with the hub unreachable restores the object from its cache', { timeout: 240_000 }, async () => {
    await syncThenGoDark([]);
    const agent = await startAgent(['--use-cache-when-disconnected=true']);
    await until('cm-d restored from the cache, hub down', async () => (await kubeGet()).status === 200, 60_000);
    expect(await agentMetric('hawser_agent_apply_passes_skipped_total')).toBe(0);
    await agent.stop();
    await hub.proc.restart();
  });
});
