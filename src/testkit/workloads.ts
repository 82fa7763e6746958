import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TestkitError, TestkitErrorCode } from './errors.js';
import { httpsRequest } from './http.js';
import { ManagedProcess } from './process.js';
import { requireTestbedBinary } from './testbed.js';
import type { Tracker } from './tracker.js';

/** A fake node kwok keeps Ready; its capacity and allocatable are these values. */
export interface FakeNodeSpec {
  /** A DNS subdomain, e.g. "kwok-node-1". */
  name: string;
  /** Kubernetes quantity, e.g. "4" or "3500m". */
  cpu: string;
  /** Kubernetes quantity, e.g. "8Gi". */
  memory: string;
  /** Most pods the node takes. */
  pods: number;
  /** Extra node labels (kubernetes.io/hostname, os and arch are always set). */
  labels?: Readonly<Record<string, string>>;
}

/** The processes that make workloads run in a child cluster. */
export interface WorkloadComponents {
  readonly controllerManager: ManagedProcess;
  readonly scheduler: ManagedProcess;
  /** kwok's controller: plays the kubelet for the fake nodes. */
  readonly kwok: ManagedProcess;
  readonly nodes: readonly FakeNodeSpec[];
}

/** Two nodes of 4 CPU, 8Gi and 110 pods each, like a small real cluster. */
export const DEFAULT_FAKE_NODES: readonly FakeNodeSpec[] = [
  { name: 'kwok-node-1', cpu: '4', memory: '8Gi', pods: 110 },
  { name: 'kwok-node-2', cpu: '4', memory: '8Gi', pods: 110 },
];

/** The annotation kwok is told to manage; nodes without it are left alone. */
export const FAKE_NODE_ANNOTATION = 'kwok.x-k8s.io/node';
const FAKE_NODE_VALUE = 'fake';

const CONTROLLER_MANAGER_USER = 'system:kube-controller-manager';
const SCHEDULER_USER = 'system:kube-scheduler';
const KWOK_USER = 'kwok-controller';

/** Bearer tokens of the three components, written into the apiserver's token file. */
export interface WorkloadTokens {
  controllerManager: string;
  scheduler: string;
  kwok: string;
}

export function newWorkloadTokens(): WorkloadTokens {
  const t = (): string => randomBytes(24).toString('hex');
  return { controllerManager: t(), scheduler: t(), kwok: t() };
}

/**
 * Lines for kube-apiserver's --token-auth-file. The scheduler gets only what
 * the bootstrap RBAC roles give system:kube-scheduler. The controller manager
 * runs every controller under its own identity
 * (--use-service-account-credentials=false), which needs system:masters; so
 * does kwok, which writes node and pod status, leases and events.
 */
export function workloadTokenLines(tokens: WorkloadTokens): string {
  return [
    `${tokens.controllerManager},${CONTROLLER_MANAGER_USER},${CONTROLLER_MANAGER_USER},"system:masters"`,
    `${tokens.scheduler},${SCHEDULER_USER},${SCHEDULER_USER}`,
    `${tokens.kwok},${KWOK_USER},${KWOK_USER},"system:masters"`,
  ].join('\n') + '\n';
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUANTITY = /^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/;

/** Throws TESTKIT_INVALID_ARGUMENT naming the first bad field. */
export function validateFakeNodes(nodes: readonly FakeNodeSpec[]): void {
  if (nodes.length === 0) {
    throw new TestkitError(TestkitErrorCode.InvalidArgument, 'startKubeCluster: nodes must name at least one node when workloads is set');
  }
  const seen = new Set<string>();
  for (const [i, node] of nodes.entries()) {
    const bad = (field: string, value: unknown): TestkitError =>
      new TestkitError(TestkitErrorCode.InvalidArgument, `startKubeCluster: nodes[${i}].${field} is not valid: ${JSON.stringify(value)}`);
    if (!DNS_SUBDOMAIN.test(node.name) || node.name.length > 253) throw bad('name', node.name);
    if (seen.has(node.name)) throw bad('name (duplicate)', node.name);
    seen.add(node.name);
    if (!QUANTITY.test(node.cpu)) throw bad('cpu', node.cpu);
    if (!QUANTITY.test(node.memory)) throw bad('memory', node.memory);
    if (!Number.isInteger(node.pods) || node.pods < 1) throw bad('pods', node.pods);
  }
}

interface ApiTarget {
  url: string;
  caPem: string;
  /** Admin token the testkit itself uses. */
  token: string;
}

export interface StartWorkloadsOptions {
  name: string;
  workDir: string;
  logDir: string;
  api: ApiTarget;
  /** File holding `api.caPem`: the root CA handed to pods' service-account volumes. */
  caFile: string;
  /** Private key kube-apiserver verifies service-account tokens with. */
  saKeyFile: string;
  tokens: WorkloadTokens;
  nodes: readonly FakeNodeSpec[];
  tracker: Tracker;
  /** Milliseconds left until the cluster's start deadline. */
  remaining: () => number;
  /** Writes a kubeconfig for one identity. */
  kubeconfig: (user: string, token: string) => string;
  /** kwok also serves the kubelet endpoint (see kwok-kubelet.ts): its flags, port and serving CA. */
  kubelet?: { kwokArgs: readonly string[]; port: number; caPem: string };
}

/**
 * Starts kube-controller-manager, kube-scheduler and kwok against a running
 * kube-apiserver, creates the fake nodes, and waits until each one is doing
 * its job: the controller manager has made the default ServiceAccount, the
 * scheduler has synced its caches, every node is Ready. On failure the caller stops
 * what was pushed into `started`.
 */
export async function startWorkloads(options: StartWorkloadsOptions, started: ManagedProcess[]): Promise<WorkloadComponents> {
  const { name, workDir, logDir, api, tracker, remaining } = options;
  const kcmBin = requireTestbedBinary('kube-controller-manager');
  const schedulerBin = requireTestbedBinary('kube-scheduler');
  const kwokBin = requireTestbedBinary('kwok');

  const write = async (file: string, text: string): Promise<string> => {
    const path = join(workDir, file);
    await writeFile(path, text, { mode: 0o600 });
    return path;
  };
  const [kcmConfig, schedulerConfig, kwokConfig] = await Promise.all([
    write('kube-controller-manager.kubeconfig', options.kubeconfig(CONTROLLER_MANAGER_USER, options.tokens.controllerManager)),
    write('kube-scheduler.kubeconfig', options.kubeconfig(SCHEDULER_USER, options.tokens.scheduler)),
    write('kwok.kubeconfig', options.kubeconfig(KWOK_USER, options.tokens.kwok)),
  ]);
  // kwok also reads ~/.kwok/kwok.yaml when it exists; a HOME of its own keeps it to our flags.
  const kwokHome = join(workDir, 'kwok-home');
  await mkdir(kwokHome, { mode: 0o700 });

  const get = (path: string, signal: AbortSignal) => httpsRequest(`${api.url}${path}`, { ca: api.caPem, token: api.token, signal, timeoutMs: 5_000 });

  await Promise.all(options.nodes.map((node) => createFakeNode(api, node)));

  // --secure-port=0: neither serves HTTPS, so they take no port. --leader-elect=false:
  // there is one of each, and one that misses a lease renewal on a busy machine
  // exits ("leaderelection lost"), taking the cluster's workloads down mid-test.
  const controllerManager = await ManagedProcess.start({
    name: `kube-controller-manager-${name}`,
    command: kcmBin,
    args: [
      `--kubeconfig=${kcmConfig}`,
      '--secure-port=0',
      `--cluster-name=${name}`,
      `--service-account-private-key-file=${options.saKeyFile}`,
      `--root-ca-file=${options.caFile}`,
      '--use-service-account-credentials=false',
      '--leader-elect=false',
      '--profiling=false',
    ],
    logDir,
    stopGraceMs: 10_000,
    tracker,
  });
  started.push(controllerManager);
  const scheduler = await ManagedProcess.start({
    name: `kube-scheduler-${name}`,
    command: schedulerBin,
    // server.go says "Handlers synced" at level 3 once it can schedule; only that file is raised.
    args: [`--kubeconfig=${schedulerConfig}`, '--secure-port=0', '--leader-elect=false', '--profiling=false', '--vmodule=server=3'],
    logDir,
    stopGraceMs: 10_000,
    tracker,
  });
  started.push(scheduler);
  // No --config and a fresh HOME: kwok plays its built-in stages (node-initialize,
  // node-heartbeat, pod-ready, pod-complete, pod-delete). A lease duration makes it
  // renew each node's Lease like a kubelet, so the node lifecycle controller keeps
  // the nodes Ready.
  const kwok = await ManagedProcess.start({
    name: `kwok-${name}`,
    command: kwokBin,
    args: [
      `--kubeconfig=${kwokConfig}`,
      '--manage-all-nodes=false',
      `--manage-nodes-with-annotation-selector=${FAKE_NODE_ANNOTATION}=${FAKE_NODE_VALUE}`,
      '--node-lease-duration-seconds=40',
      ...(options.kubelet?.kwokArgs ?? []),
    ],
    env: { HOME: kwokHome },
    logDir,
    ports: options.kubelet ? [options.kubelet.port] : [],
    stopGraceMs: 10_000,
    tracker,
  });
  started.push(kwok);

  await Promise.all([
    controllerManager.waitFor(async (signal) => (await get('/api/v1/namespaces/default/serviceaccounts/default', signal)).status === 200, {
      timeoutMs: remaining(),
      what: 'ServiceAccount default/default (made by the serviceaccount controller)',
      intervalMs: 250,
    }),
    scheduler.waitFor(/"Handlers synced"/, { timeoutMs: remaining(), what: 'kube-scheduler "Handlers synced" (its caches are filled)' }),
    kwok.waitFor(
      async (signal) => {
        const ready = await Promise.all(options.nodes.map(async (node) => nodeReady(await get(`/api/v1/nodes/${node.name}`, signal))));
        return ready.every(Boolean);
      },
      { timeoutMs: remaining(), what: `nodes ${options.nodes.map((n) => n.name).join(', ')} Ready`, intervalMs: 250 },
    ),
    ...(options.kubelet ? [waitKubeletEndpoint(kwok, options.kubelet, remaining())] : []),
  ]);

  return { controllerManager, scheduler, kwok, nodes: options.nodes };
}

function waitKubeletEndpoint(kwok: ManagedProcess, kubelet: { port: number; caPem: string }, timeoutMs: number): Promise<void> {
  const url = `https://127.0.0.1:${kubelet.port}/healthz`;
  return kwok.waitFor(async (signal) => (await httpsRequest(url, { ca: kubelet.caPem, signal, timeoutMs: 5_000 })).status === 200, {
    timeoutMs,
    what: `kwok kubelet endpoint ${url}`,
    intervalMs: 250,
  });
}

function nodeReady(res: { status: number; body: string }): boolean {
  if (res.status !== 200) return false;
  const node = JSON.parse(res.body) as { status?: { conditions?: Array<{ type: string; status: string }> } };
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** The Node object for a fake node: capacity and allocatable as given, no taints. */
export function fakeNodeObject(node: FakeNodeSpec): Record<string, unknown> {
  const resources = { cpu: node.cpu, memory: node.memory, pods: String(node.pods) };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: node.name,
      annotations: { [FAKE_NODE_ANNOTATION]: FAKE_NODE_VALUE, 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        ...node.labels,
        'kubernetes.io/hostname': node.name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        type: 'kwok',
      },
    },
    spec: {},
    // A node's status may be set on create; kwok's node-initialize stage keeps
    // capacity and allocatable and adds conditions, addresses and nodeInfo.
    status: { capacity: resources, allocatable: resources },
  };
}

async function createFakeNode(api: ApiTarget, node: FakeNodeSpec): Promise<void> {
  const res = await httpsRequest(`${api.url}/api/v1/nodes`, {
    ca: api.caPem,
    token: api.token,
    method: 'POST',
    body: JSON.stringify(fakeNodeObject(node)),
  });
  if (res.status !== 201) {
    throw new TestkitError(TestkitErrorCode.KubeStart, `creating fake node "${node.name}" failed: ${res.status} ${res.body.slice(0, 300)}`);
  }
}
