import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpsRequest, type KubeCluster, type ManagedProcess } from '../../src/testkit/index.js';
import { hawser, type HubProcess, readyStatus, TestBed, until } from './harness.js';

// Two agents beside two real kube-apiservers register through a real hub.

describe('registration and status against real kube-apiservers', () => {
  let bed: TestBed;
  let kubeA: KubeCluster;
  let kubeB: KubeCluster;
  let hub: HubProcess;
  const agents: Record<string, ManagedProcess> = {};

  beforeAll(async () => {
    bed = await TestBed.create('clusters');
    [kubeA, kubeB] = await Promise.all([bed.kube('edge-a'), bed.kube('edge-b')]);
    // A real Node object with a Ready condition and capacity, as a kubelet would report it.
    const node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'edge-a-node-1' },
      status: {
        capacity: { cpu: '4', memory: '8Gi', pods: '110' },
        allocatable: { cpu: '3500m', memory: '7Gi', pods: '110' },
        conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'ready' }],
      },
    };
    const created = await httpsRequest(`${kubeA.url}/api/v1/nodes`, {
      ca: kubeA.caPem,
      token: kubeA.token,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(node),
    });
    expect(created.status).toBe(201);

    hub = await bed.hub(['--auto-approve']);
    for (const kube of [kubeA, kubeB]) {
      agents[kube.name] = await bed.agent(kube.name, hub, kube, [
        `--cluster-labels=site=${kube.name},tier=edge`,
        '--cluster-status-update-frequency=1s',
        '--cluster-lease-duration=10s',
        '--reconnect-period=500ms',
        '--max-reconnect-period=2s',
      ]);
    }
  });

  afterAll(() => bed?.close());

  it('shows both clusters Ready with the real version and health', async () => {
    const clusters = await until('both clusters ready with status', async () => {
      const list = await hub.clusters();
      return list.length === 2 && list.every((c) => readyStatus(c) === 'True' && c.status.k8sVersion) ? list : undefined;
    });
    for (const c of clusters) {
      expect(c.status.k8sVersion).toBe(kubeA.version);
      expect(c.status.healthz).toBe(true);
      expect(c.status.livez).toBe(true);
      expect(c.status.readyz).toBe(true);
      expect(c.status.platform).toMatch(/^linux\//);
      expect(c.metadata.labels?.['site']).toBe(c.metadata.name);
      expect(c.metadata.namespace).toMatch(/^hawser-[0-9a-f]{8}$/);
      expect(c.spec.taints).toEqual([]);
    }
    const a = clusters.find((c) => c.metadata.name === 'edge-a')!;
    expect(a.status.apiserverURL).toBe(kubeA.url);
    expect(a.status.nodeStatistics).toEqual({ readyNodes: 1, notReadyNodes: 0, unknownNodes: 0 });
    expect(a.status.capacity).toMatchObject({ cpu: '4', memory: `${8 * 1024 * 1024}Ki`, pods: '110' });
    expect(a.status.allocatable).toMatchObject({ cpu: '3500m' });
    expect(a.status.serviceCIDR).toBe('10.96.0.0/16');

    // The CLI reads the same through the hub's API.
    const table = await hawser(['get', 'clusters', `--hub=${hub.apiUrl}`]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+CLUSTER ID\s+SYNC MODE\s+KUBERNETES\s+READYZ\s+READY\s+AGE\s+PRUNE$/);
    for (const name of ['edge-a', 'edge-b']) {
      const row = lines.find((l) => l.startsWith(`${name} `));
      // Dual without AppPusher runs as Pull: shown once the agent's sync session has said so.
      expect(row).toMatch(new RegExp(`^${name}\\s+[0-9a-f-]{36}\\s+(Dual|Pull \\(Dual asked\\))\\s+${kubeA.version.replace(/\./g, '\\.')}\\s+ok\\s+True\\s+\\S+\\s+-$`));
    }
    const json = await hawser(['get', 'clusters', '-o', 'json'], { HAWSER_HUB: hub.apiUrl });
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { items: Array<{ metadata: { name: string }; status: { readyz: boolean } }> };
    expect(parsed.items.map((i) => i.metadata.name).sort()).toEqual(['edge-a', 'edge-b']);
    const yaml = await hawser(['get', 'clusters', 'edge-b', '-o', 'yaml', `--hub=${hub.apiUrl}`]);
    expect(yaml.stdout).toMatch(/kind: ManagedCluster/);
    expect(yaml.stdout).toMatch(/readyz: true/);
  });

  it('reports a failing API server as not ready, and recovers', async () => {
    await kubeB.apiserver.stop();
    const down = await until('edge-b reported not ready', async () => {
      const c = await hub.cluster('edge-b');
      return c && c.status.readyz === false ? c : undefined;
    });
    // The agent's lease is still renewed: the cluster is reachable, its API server is not.
    expect(readyStatus(down)).toBe('False');
    expect(down.spec.taints).toEqual([]);
    await kubeB.apiserver.restart();
    await kubeB.waitReady();
    await until('edge-b ready again', async () => readyStatus(await hub.cluster('edge-b')) === 'True');
  });

  it('an agent restarted with the same cache comes back as the same cluster', async () => {
    const before = await hub.cluster('edge-a');
    const requestsBefore = await hub.requests();
    const sessionsBefore = await hub.metric('hawser_hub_sessions_total', { cluster: 'edge-a' });
    const registeredBefore = await hub.metric('hawser_hub_registrations_total', { result: 'registered' });
    await agents['edge-a']!.stop();
    await agents['edge-a']!.restart();
    await until('edge-a reconnected', async () => (await hub.metric('hawser_hub_sessions_total', { cluster: 'edge-a' })) > sessionsBefore);
    const after = await hub.cluster('edge-a');
    expect(after?.spec.clusterId).toBe(before?.spec.clusterId);
    expect(after?.metadata.creationTimestamp).toBe(before?.metadata.creationTimestamp);
    expect((await hub.requests()).map((r) => r.metadata.name).sort()).toEqual(requestsBefore.map((r) => r.metadata.name).sort());
    expect(await hub.metric('hawser_hub_registrations_total', { result: 'registered' })).toBe(registeredBefore);
    expect(await hub.metric('hawser_hub_registrations_total', { result: 'reconnected' })).toBeGreaterThan(0);
  });

  it('a restarted hub keeps its clusters, and agents come back with their credentials', async () => {
    const before = await hub.clusters();
    await hub.proc.stop();
    await hub.proc.restart();
    await hub.proc.waitFor(/"hub ready"/, { timeoutMs: 60_000, what: 'hub ready again' });
    await until('both agents reconnected to the new hub process', async () =>
      (await hub.metric('hawser_hub_registrations_total', { result: 'reconnected' })) >= 2,
    );
    const after = await hub.clusters();
    expect(after.map((c) => [c.metadata.name, c.spec.clusterId]).sort()).toEqual(before.map((c) => [c.metadata.name, c.spec.clusterId]).sort());
    expect(await hub.metric('hawser_hub_registrations_total', { result: 'registered' })).toBe(0);
    for (const name of ['edge-a', 'edge-b']) {
      await until(`${name} ready after the hub restart`, async () => readyStatus(await hub.cluster(name)) === 'True');
    }
  });
});
