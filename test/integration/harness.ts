import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type { ClusterRegistrationRequest, ManagedCluster } from '../../src/api/index.js';
import { type AgentKeyPair, generateAgentKeyPair, signHello, type wire } from '../../src/tunnel/index.js';
import {
  freePort,
  type KubeCluster,
  type ManagedProcess,
  startKubeCluster,
  type StartKubeClusterOptions,
  startProcess,
  Tracker,
  waitUntil,
} from '../../src/testkit/index.js';

// Real hub and agent processes from the compiled CLI (npm test builds it first).

/** Found by walking up, so that this file compiled elsewhere (the fuzzer's dist/fuzz) finds the same root. */
export const repoRoot = findRepoRoot(import.meta.dirname);

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'hawser') return dir;
    if (dirname(dir) === dir) throw new Error(`no hawser package.json above ${from}`);
  }
}
export const hawserBin = join(repoRoot, 'bin', 'hawser.js');
export const bootstrapToken = 'abcdef.0123456789abcdef';
/** Operators the harness's hubs know (--operator-tokens-file); hawser() logs in as the admin. */
export const adminToken = 'hwo_harness-admin-0123456789abcdef';
export const viewerToken = 'hwo_harness-viewer-0123456789abcdef';
export const operatorTokensYaml = `operators:
  - { name: harness-admin, role: admin, token: ${adminToken} }
  - { name: harness-viewer, role: viewer, token: ${viewerToken} }
`;
/** A config path that never exists: tests must not read or write the real ~/.hawser/config. */
export const noCliConfig = join(tmpdir(), 'hawser-harness-no-config', 'config');
const run = promisify(execFile);

export async function tempDir(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `hawser-${prefix}-`));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export interface HubProcess {
  proc: ManagedProcess;
  tunnel: string;
  tunnelPort: number;
  apiUrl: string;
  caFile: string;
  dataDir: string;
  /** The file the hub reads operators from (admin: adminToken, viewer: viewerToken). */
  operatorTokensFile: string;
  /** A raw API call; the admin's token unless `token` says otherwise (null: none). */
  api(method: string, path: string, token?: string | null): Promise<Response>;
  clusters(): Promise<ManagedCluster[]>;
  cluster(name: string): Promise<ManagedCluster | undefined>;
  requests(): Promise<ClusterRegistrationRequest[]>;
  metrics(): Promise<string>;
  /** Value of one sample, e.g. metric('hawser_hub_rejected_total', { code: 'X' }); 0 when absent. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
}

export async function startHubProcess(options: {
  dataDir: string;
  logDir: string;
  tracker?: Tracker;
  args?: string[];
  tunnelPort?: number;
  apiPort?: number;
  /** Added to the hub's environment; by default HAWSER_BOOTSTRAP_TOKEN=bootstrapToken. */
  env?: Record<string, string | undefined>;
}): Promise<HubProcess> {
  const tunnelPort = options.tunnelPort ?? (await freePort({ owner: 'hub tunnel', ...(options.tracker ? { tracker: options.tracker } : {}) }));
  const apiPort = options.apiPort ?? (await freePort({ owner: 'hub api', ...(options.tracker ? { tracker: options.tracker } : {}) }));
  // Beside the data dir, not in it: tests delete data dirs to simulate a lost hub.
  const operatorTokensFile = `${options.dataDir}.operator-tokens`;
  await writeFile(operatorTokensFile, operatorTokensYaml, { mode: 0o600 });
  const proc = await startProcess({
    name: 'hub',
    command: process.execPath,
    args: [
      hawserBin,
      'hub',
      `--data-dir=${options.dataDir}`,
      `--listen=127.0.0.1:${tunnelPort}`,
      `--api-address=127.0.0.1:${apiPort}`,
      `--operator-tokens-file=${operatorTokensFile}`,
      ...(options.args ?? []),
    ],
    env: { HAWSER_BOOTSTRAP_TOKEN: bootstrapToken, ...options.env },
    logDir: options.logDir,
    ports: [tunnelPort, apiPort],
    ...(options.tracker ? { tracker: options.tracker } : {}),
  });
  await proc.waitFor(/"hub ready"/, { timeoutMs: 60_000, what: 'hub ready' });
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const api = (method: string, path: string, token: string | null = adminToken) =>
    fetch(`${apiUrl}${path}`, { method, headers: token === null ? {} : { authorization: `Bearer ${token}` } });
  const get = async <T>(path: string): Promise<T> => {
    const res = await api('GET', path);
    if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  // A refused scrape must fail the test, not read as every sample being 0.
  const metrics = async () => {
    const res = await api('GET', '/metrics', viewerToken);
    if (!res.ok) throw new Error(`GET /metrics: HTTP ${res.status} ${await res.text()}`);
    return res.text();
  };
  return {
    proc,
    tunnel: `127.0.0.1:${tunnelPort}`,
    tunnelPort,
    apiUrl,
    caFile: join(options.dataDir, 'pki', 'ca.crt'),
    dataDir: options.dataDir,
    operatorTokensFile,
    api,
    clusters: async () => (await get<{ items: ManagedCluster[] }>('/api/v1/clusters')).items,
    cluster: async (name) => (await get<{ items: ManagedCluster[] }>('/api/v1/clusters')).items.find((c) => c.metadata.name === name),
    requests: async () => (await get<{ items: ClusterRegistrationRequest[] }>('/api/v1/clusterregistrationrequests')).items,
    metrics,
    metric: async (name, labels = {}) => sampleValue(await metrics(), name, labels),
  };
}

/** Reads one Prometheus sample from exposition text. */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return 0;
}

export interface AgentProcessOptions {
  name: string;
  parentUrl: string;
  caFile: string;
  cacheDir: string;
  kubeconfig: string;
  logDir: string;
  tracker?: Tracker;
  token?: string;
  args?: string[];
}

export async function startAgentProcess(o: AgentProcessOptions): Promise<ManagedProcess> {
  return startProcess({
    name: `agent-${o.name}`,
    command: process.execPath,
    args: [
      hawserBin,
      'agent',
      `--parent-url=${o.parentUrl}`,
      `--parent-ca-file=${o.caFile}`,
      `--cluster-reg-name=${o.name}`,
      `--cache-dir=${o.cacheDir}`,
      `--kubeconfig=${o.kubeconfig}`,
      ...(o.args ?? []),
    ],
    env: { PARENT_CLUSTER_TOKEN: o.token ?? bootstrapToken },
    logDir: o.logDir,
    ...(o.tracker ? { tracker: o.tracker } : {}),
  });
}

/**
 * Runs the real CLI; never throws on a non-zero exit. It logs in as the
 * harness admin (HAWSER_TOKEN) with no config file, unless `env` says
 * otherwise; a value of undefined removes that variable.
 */
export async function hawser(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const merged: Record<string, string | undefined> = { ...process.env, HAWSER_CONFIG: noCliConfig, HAWSER_TOKEN: adminToken, ...env };
  for (const key of Object.keys(merged)) if (merged[key] === undefined) delete merged[key];
  try {
    const { stdout, stderr } = await run(process.execPath, [hawserBin, ...args], { env: merged, timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

export function readyStatus(c: ManagedCluster | undefined): string | undefined {
  return c?.status.conditions.find((x) => x.type === 'Ready')?.status;
}

export function hasUnreachableTaint(c: ManagedCluster | undefined): boolean {
  return Boolean(c?.spec.taints.some((t) => t.key === 'node.clusternet.io/unreachable' && t.effect === 'NoSchedule'));
}

export function until<T>(what: string, check: () => Promise<T | undefined | false | null>, timeoutMs = 60_000): Promise<T> {
  return waitUntil(async () => (await check().catch(() => undefined)) ?? undefined, { timeoutMs, what, intervalMs: 100 }) as Promise<T>;
}

/** Agent log lines as parsed JSON (pino), skipping anything else. */
export function jsonLines(proc: ManagedProcess): Array<Record<string, unknown>> {
  return proc
    .lines()
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return {};
      }
    });
}

/**
 * One test file's world: a temp dir, a tracker, and the real clusters, hub
 * and agents it starts. close() stops them all and fails on any leak.
 */
export class TestBed {
  readonly tracker = new Tracker();
  private readonly clusters: KubeCluster[] = [];

  private constructor(private readonly temp: { path: string; remove(): Promise<void> }) {}

  static async create(prefix: string): Promise<TestBed> {
    return new TestBed(await tempDir(prefix));
  }

  get dir(): string {
    return this.temp.path;
  }

  get logDir(): string {
    return join(this.temp.path, 'logs');
  }

  /** A child cluster; with `workloads`, Deployments really get Ready pods on kwok's fake nodes. */
  async kube(name: string, options: Pick<StartKubeClusterOptions, 'workloads' | 'nodes' | 'startTimeoutMs'> = {}): Promise<KubeCluster> {
    const cluster = await startKubeCluster({ name, baseDir: this.dir, tracker: this.tracker, ...options });
    this.clusters.push(cluster);
    return cluster;
  }

  hub(args: string[] = [], env?: Record<string, string | undefined>): Promise<HubProcess> {
    return startHubProcess({ dataDir: join(this.dir, 'hub'), logDir: this.logDir, tracker: this.tracker, args, ...(env ? { env } : {}) });
  }

  /** An agent beside `kube`, dialling the hub (or `parentUrl`, e.g. a toxiproxy in between). */
  agent(name: string, hub: HubProcess, kube: KubeCluster, args: string[] = [], parentUrl = hub.tunnel): Promise<ManagedProcess> {
    return startAgentProcess({
      name,
      parentUrl,
      caFile: hub.caFile,
      cacheDir: join(this.dir, 'agents', name),
      kubeconfig: kube.kubeconfigPath,
      logDir: this.logDir,
      tracker: this.tracker,
      args,
    });
  }

  async close(): Promise<void> {
    await this.tracker.closeAll();
    await Promise.allSettled(this.clusters.map((c) => c.stop()));
    await this.tracker.assertNoLeaks();
    await this.temp.remove();
  }
}

/**
 * A hello frame signed as a real agent signs it (proof of possession of its
 * key), for tests that speak the wire protocol directly.
 */
export function signedHello(
  fields: Omit<wire.Hello, 'publicKey' | 'proof' | 'cacheQuarantines'> & Partial<Pick<wire.Hello, 'cacheQuarantines'>>,
  key: AgentKeyPair = generateAgentKeyPair(),
): wire.ConnectRequest {
  const hello: wire.Hello = { ...fields, publicKey: Buffer.alloc(0), cacheQuarantines: fields.cacheQuarantines ?? 0 };
  return { frame: { $case: 'hello', value: signHello(hello, key, Date.now()) } };
}
