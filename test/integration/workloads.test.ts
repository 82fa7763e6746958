import { afterAll, describe, expect, it } from 'vitest';
import {
  assertNoLeaks,
  closeAll,
  isPidAlive,
  kubectl,
  startKubeCluster,
  waitUntil,
  type FakeNodeSpec,
  type KubeCluster,
} from '../../src/testkit/index.js';

// A child cluster that really runs workloads: kube-controller-manager,
// kube-scheduler and kwok's fake nodes, driven with the testbed's kubectl.

const NODES: FakeNodeSpec[] = [
  { name: 'wl-node-1', cpu: '2', memory: '4Gi', pods: 20, labels: { zone: 'a' } },
  { name: 'wl-node-2', cpu: '2', memory: '4Gi', pods: 20, labels: { zone: 'b' } },
];

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}
interface DeploymentStatus {
  replicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  unavailableReplicas?: number;
}
interface Pod {
  metadata: { name: string };
  spec: { nodeName?: string };
  status: { phase: string; podIP?: string; conditions?: Condition[] };
}

function deployment(name: string, replicas: number, cpu: string): string {
  return JSON.stringify({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'default' },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [{ name: 'app', image: 'registry.k8s.io/pause:3.10', resources: { requests: { cpu, memory: '64Mi' } } }],
        },
      },
    },
  });
}

async function deploymentStatus(cluster: KubeCluster, name: string): Promise<DeploymentStatus> {
  const { stdout } = await kubectl(cluster, ['get', 'deployment', name, '-n', 'default', '-o', 'json']);
  return (JSON.parse(stdout) as { status: DeploymentStatus }).status;
}

async function pods(cluster: KubeCluster, app: string): Promise<Pod[]> {
  const { stdout } = await kubectl(cluster, ['get', 'pods', '-n', 'default', '-l', `app=${app}`, '-o', 'json']);
  return (JSON.parse(stdout) as { items: Pod[] }).items;
}

const unschedulable = (pod: Pod): Condition | undefined =>
  pod.status.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable');

describe('testkit: child cluster with controller manager, scheduler and kwok nodes', () => {
  let cluster: KubeCluster | undefined;
  async function workloadCluster(): Promise<KubeCluster> {
    cluster ??= await startKubeCluster({ name: 'wl', workloads: true, nodes: NODES });
    return cluster;
  }

  afterAll(async () => {
    await cluster?.stop();
    await closeAll();
  }, 90_000);

  it('starts with fake nodes Ready whose capacity and allocatable are what was set', { timeout: 300_000 }, async () => {
    const c = await workloadCluster();
    console.log(`[workloads] cluster ${c.name} with ${NODES.length} kwok nodes ready in ${c.startupMs} ms`);
    expect(c.workloads?.controllerManager.running).toBe(true);
    expect(c.workloads?.scheduler.running).toBe(true);
    expect(c.workloads?.kwok.running).toBe(true);

    const { stdout } = await kubectl(c, ['get', 'nodes', '-o', 'json']);
    const nodes = (
      JSON.parse(stdout) as {
        items: Array<{
          metadata: { name: string; labels: Record<string, string> };
          status: { capacity: Record<string, string>; allocatable: Record<string, string>; conditions: Condition[] };
        }>;
      }
    ).items;
    expect(nodes.map((n) => n.metadata.name).sort()).toEqual(NODES.map((n) => n.name));
    for (const spec of NODES) {
      const node = nodes.find((n) => n.metadata.name === spec.name)!;
      const want = { cpu: spec.cpu, memory: spec.memory, pods: String(spec.pods) };
      expect(node.status.capacity).toEqual(want);
      expect(node.status.allocatable).toEqual(want);
      expect(node.metadata.labels).toMatchObject({ ...spec.labels, 'kubernetes.io/hostname': spec.name });
      expect(node.status.conditions).toContainEqual(expect.objectContaining({ type: 'Ready', status: 'True' }));
    }
  });

  it('a Deployment of 3 replicas applied with kubectl reaches readyReplicas 3 on the fake nodes', { timeout: 300_000 }, async () => {
    const c = await workloadCluster();
    await kubectl(c, ['apply', '-f', '-'], { input: deployment('web', 3, '100m') });
    // kubectl wait watches; no polling from here.
    await kubectl(c, ['wait', 'deployment/web', '-n', 'default', '--for=jsonpath={.status.readyReplicas}=3', '--timeout=180s'], {
      timeoutMs: 200_000,
    });
    const status = await deploymentStatus(c, 'web');
    expect(status).toMatchObject({ replicas: 3, readyReplicas: 3, availableReplicas: 3 });
    const webPods = await pods(c, 'web');
    expect(webPods).toHaveLength(3);
    for (const pod of webPods) {
      expect(pod.status.phase).toBe('Running');
      expect(NODES.map((n) => n.name)).toContain(pod.spec.nodeName);
      expect(pod.status.podIP).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
      expect(pod.status.conditions).toContainEqual(expect.objectContaining({ type: 'Ready', status: 'True' }));
    }
  });

  it('a Deployment whose requests exceed the nodes’ capacity stays partly pending', { timeout: 300_000 }, async () => {
    const c = await workloadCluster();
    // 1500m each: every 2-CPU node takes one (beside at most 200m of "web"), the third fits nowhere.
    await kubectl(c, ['apply', '-f', '-'], { input: deployment('big', 3, '1500m') });
    const pending = await waitUntil(
      async () => {
        const all = await pods(c, 'big');
        const stuck = all.filter((p) => unschedulable(p));
        const running = all.filter((p) => p.status.phase === 'Running');
        return all.length === 3 && stuck.length === 1 && running.length === 2 ? stuck : undefined;
      },
      { timeoutMs: 180_000, what: 'deployment "big": 2 pods Running and 1 Unschedulable', intervalMs: 1_000 },
    );
    expect(pending).toHaveLength(1);
    expect(unschedulable(pending[0]!)?.message).toMatch(/Insufficient cpu/);
    expect(pending[0]!.spec.nodeName).toBeUndefined();
    await kubectl(c, ['wait', 'deployment/big', '-n', 'default', '--for=jsonpath={.status.readyReplicas}=2', '--timeout=120s'], {
      timeoutMs: 140_000,
    });
    const status = await deploymentStatus(c, 'big');
    expect(status).toMatchObject({ replicas: 3, readyReplicas: 2, unavailableReplicas: 1 });
  });

  it('scaling down and deleting remove the pods (kwok finishes deleted pods, the garbage collector the orphans)', { timeout: 300_000 }, async () => {
    const c = await workloadCluster();
    // Applied again (unchanged if the tests above ran), so this test also runs alone.
    await kubectl(c, ['apply', '-f', '-'], { input: deployment('web', 3, '100m') });
    await kubectl(c, ['apply', '-f', '-'], { input: deployment('big', 3, '1500m') });
    await kubectl(c, ['wait', 'deployment/web', '-n', 'default', '--for=jsonpath={.status.readyReplicas}=3', '--timeout=180s'], {
      timeoutMs: 200_000,
    });
    await kubectl(c, ['scale', 'deployment/web', '-n', 'default', '--replicas=1']);
    await kubectl(c, ['delete', 'deployment/big', '-n', 'default', '--wait=false']);
    await waitUntil(async () => (await pods(c, 'web')).length === 1 && (await pods(c, 'big')).length === 0, {
      timeoutMs: 180_000,
      what: 'deployment "web" down to 1 pod and every pod of "big" gone',
      intervalMs: 1_000,
    });
    expect(await deploymentStatus(c, 'web')).toMatchObject({ replicas: 1, readyReplicas: 1 });
  });

  it('stops kwok, scheduler, controller manager, apiserver and etcd, leaving nothing behind', { timeout: 300_000 }, async () => {
    const c = await workloadCluster();
    const w = c.workloads!;
    const pids = [w.kwok.pid, w.scheduler.pid, w.controllerManager.pid, c.apiserver.pid, c.etcd.pid];
    await c.stop();
    cluster = undefined;
    for (const pid of pids) {
      expect(pid).toBeTypeOf('number');
      expect(isPidAlive(pid as number)).toBe(false);
    }
    await assertNoLeaks();
  });
});
