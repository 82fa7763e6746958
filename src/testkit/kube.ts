import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { TestkitError, TestkitErrorCode, errorMessage } from './errors.js';
import { httpsRequest } from './http.js';
import { freePort } from './ports.js';
import { ManagedProcess } from './process.js';
import {
  apiserverKubeletArgs,
  kwokKubeletArgs,
  kwokKubeletConfigYaml,
  makeKubeletTls,
  validateKubeletOptions,
  type KubeletOptions,
} from './kwok-kubelet.js';
import { requireTestbedBinary } from './testbed.js';
import { defaultTracker, type Tracker } from './tracker.js';
import {
  DEFAULT_FAKE_NODES,
  newWorkloadTokens,
  startWorkloads,
  validateFakeNodes,
  workloadTokenLines,
  type FakeNodeSpec,
  type WorkloadComponents,
} from './workloads.js';

export interface StartKubeClusterOptions {
  /** Cluster name: names processes, logs and the kubeconfig context. */
  name: string;
  /** Parent of the cluster's working directory. Default os.tmpdir(). */
  baseDir?: string;
  /** Keep the working directory after stop (also: HAWSER_TESTKIT_KEEP=1). */
  keepDir?: boolean;
  /** Deadline for the cluster to be ready. Default 120 s, 240 s with workloads. */
  startTimeoutMs?: number;
  /**
   * Also run kube-controller-manager, kube-scheduler and kwok with fake
   * nodes, so Deployments really get pods that become Running and Ready.
   * Default false: an apiserver alone is lighter.
   */
  workloads?: boolean;
  /** The fake nodes (only with workloads). Default DEFAULT_FAKE_NODES. */
  nodes?: readonly FakeNodeSpec[];
  /**
   * Only with workloads: kwok also serves the fake nodes' kubelet endpoint
   * (HTTPS on 127.0.0.1, verified by kube-apiserver), so `kubectl logs`, `exec`,
   * `attach` and `port-forward` work; see KubeletOptions. Default: no endpoint.
   */
  kubelet?: KubeletOptions;
  /** Appended to the kube-apiserver command line (later flags win). */
  extraApiserverArgs?: readonly string[];
  tracker?: Tracker;
}

export interface KubeCluster {
  readonly name: string;
  /** "https://127.0.0.1:<port>" */
  readonly url: string;
  /** Bearer token of an admin in group system:masters. */
  readonly token: string;
  /** PEM that verifies the API server's serving certificate. */
  readonly caPem: string;
  readonly kubeconfigPath: string;
  /** gitVersion from /version, e.g. "v1.33.13". */
  readonly version: string;
  /** Milliseconds from first spawn to ready (etcd, apiserver, default namespace). */
  readonly startupMs: number;
  readonly workDir: string;
  readonly etcd: ManagedProcess;
  readonly apiserver: ManagedProcess;
  /** kube-controller-manager, kube-scheduler, kwok and the fake nodes; undefined without workloads. */
  readonly workloads: WorkloadComponents | undefined;
  /**
   * Waits until etcd is healthy and kube-apiserver's /readyz is ok again,
   * e.g. after `etcd.restart()` or `apiserver.restart()`. Default 60 s.
   */
  waitReady(options?: { timeoutMs?: number }): Promise<void>;
  /** Stops kwok, scheduler and controller manager, then kube-apiserver, then etcd, and removes the working directory. */
  stop(): Promise<void>;
}

const SERVICE_CIDR = '10.96.0.0/16';
const SA_ISSUER = 'https://kubernetes.default.svc';
const PORT_RETRIES = 3;

function isPortClash(err: unknown): boolean {
  return /address already in use|bind: address/i.test(errorMessage(err));
}

/**
 * Starts a real etcd and a real kube-apiserver on fresh 127.0.0.1 ports,
 * waits until /readyz is ok and the default namespace exists, and writes a
 * kubeconfig with an admin token. With `workloads`, also kube-controller-manager,
 * kube-scheduler and kwok with fake nodes (see startWorkloads). Several clusters
 * can run at once.
 */
export async function startKubeCluster(options: StartKubeClusterOptions): Promise<KubeCluster> {
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(options.name)) {
    throw new TestkitError(TestkitErrorCode.InvalidArgument, `startKubeCluster: name must be a DNS label, got "${options.name}"`);
  }
  if (options.nodes !== undefined && !options.workloads) {
    throw new TestkitError(TestkitErrorCode.InvalidArgument, `startKubeCluster: nodes need workloads: true (cluster "${options.name}")`);
  }
  if (options.kubelet !== undefined && !options.workloads) {
    throw new TestkitError(TestkitErrorCode.InvalidArgument, `startKubeCluster: kubelet needs workloads: true (cluster "${options.name}")`);
  }
  if (options.workloads) validateFakeNodes(options.nodes ?? DEFAULT_FAKE_NODES);
  if (options.kubelet !== undefined) validateKubeletOptions(options.kubelet);
  const etcdBin = requireTestbedBinary('etcd');
  const apiserverBin = requireTestbedBinary('kube-apiserver');
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(options, etcdBin, apiserverBin);
    } catch (err) {
      // Another process may take a port between freePort() and bind(); retry with new ones.
      if (attempt >= PORT_RETRIES || !isPortClash(err)) throw err;
    }
  }
}

async function startOnce(options: StartKubeClusterOptions, etcdBin: string, apiserverBin: string): Promise<KubeCluster> {
  const { name } = options;
  const tracker = options.tracker ?? defaultTracker;
  const keep = options.keepDir ?? process.env['HAWSER_TESTKIT_KEEP'] === '1';
  const timeoutMs = options.startTimeoutMs ?? (options.workloads ? 240_000 : 120_000);
  const started = Date.now();
  const deadline = started + timeoutMs;
  const remaining = (): number => Math.max(1, deadline - Date.now());

  const workDir = await mkdtemp(join(options.baseDir ?? tmpdir(), `hawser-kube-${name}-`));
  const logDir = join(workDir, 'logs');
  const certDir = join(workDir, 'certs');
  const etcdDataDir = join(workDir, 'etcd-data');
  await Promise.all([mkdir(logDir), mkdir(certDir), mkdir(etcdDataDir, { mode: 0o700 })]);

  const [clientPort, peerPort, securePort] = [
    await freePort({ owner: `etcd client (${name})`, tracker }),
    await freePort({ owner: `etcd peer (${name})`, tracker }),
    await freePort({ owner: `kube-apiserver (${name})`, tracker }),
  ];

  // Credentials: an admin token (and the workload components' tokens) and a service-account signing key pair.
  const token = randomBytes(24).toString('hex');
  const tokenFile = join(workDir, 'tokens.csv');
  const workloadTokens = options.workloads ? newWorkloadTokens() : undefined;
  const tokenLines = `${token},hawser-admin,hawser-admin,"system:masters"\n` + (workloadTokens ? workloadTokenLines(workloadTokens) : '');
  await writeFile(tokenFile, tokenLines, { mode: 0o600 });
  const sa = generateKeyPairSync('ec', {
    namedCurve: 'prime256v1',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const saPub = join(workDir, 'sa.pub');
  const saKey = join(workDir, 'sa.key');
  await Promise.all([writeFile(saPub, sa.publicKey), writeFile(saKey, sa.privateKey, { mode: 0o600 })]);

  const kubeletTls = options.kubelet ? await makeKubeletTls(join(certDir, 'kubelet')) : undefined;

  let etcd: ManagedProcess | undefined;
  let readyzDetail = '';
  let apiserver: ManagedProcess | undefined;
  // Workload components, stopped before the apiserver they talk to.
  const components: ManagedProcess[] = [];
  const cleanup = async (removeAll: boolean): Promise<void> => {
    await Promise.allSettled(components.map((c) => c.stop()));
    await Promise.allSettled([apiserver?.stop({ graceMs: 15_000 })]);
    await Promise.allSettled([etcd?.stop({ graceMs: 10_000 })]);
    if (removeAll && !keep) await rm(workDir, { recursive: true, force: true });
    else await rm(etcdDataDir, { recursive: true, force: true });
  };

  try {
    const etcdUrl = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    etcd = await ManagedProcess.start({
      name: `etcd-${name}`,
      command: etcdBin,
      args: [
        `--name=${name}`,
        `--data-dir=${etcdDataDir}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=${name}=${peerUrl}`,
        '--initial-cluster-state=new',
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
      logDir,
      ports: [clientPort, peerPort],
      stopGraceMs: 10_000,
      tracker,
    });
    await etcd.waitFor(
      (signal) => etcdHealthy(etcdUrl, signal),
      { timeoutMs: remaining(), what: `etcd ${etcdUrl}/health`, intervalMs: 100 },
    );
    const etcdReadyMs = Date.now() - started;

    const url = `https://127.0.0.1:${securePort}`;
    apiserver = await ManagedProcess.start({
      name: `kube-apiserver-${name}`,
      command: apiserverBin,
      args: [
        `--etcd-servers=${etcdUrl}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${securePort}`,
        `--cert-dir=${certDir}`,
        `--token-auth-file=${tokenFile}`,
        '--authorization-mode=RBAC',
        `--service-account-issuer=${SA_ISSUER}`,
        `--service-account-key-file=${saPub}`,
        `--service-account-signing-key-file=${saKey}`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        // Without a controller manager nothing creates each namespace's default
        // ServiceAccount, which this admission plugin requires of every pod.
        ...(options.workloads ? [] : ['--disable-admission-plugins=ServiceAccount']),
        '--enable-priority-and-fairness=false',
        // No Endpoints for the "kubernetes" Service: nothing routes there, and a
        // loopback advertise address is not a valid endpoint.
        '--endpoint-reconciler-type=none',
        '--allow-privileged=true',
        '--profiling=false',
        ...(kubeletTls ? apiserverKubeletArgs(kubeletTls) : []),
        ...(options.extraApiserverArgs ?? []),
      ],
      logDir,
      ports: [securePort],
      stopGraceMs: 15_000,
      tracker,
    });
    const api = apiserver;

    let caPem = '';
    let lastReadyz = '';
    await api.waitFor(
      async (signal) => {
        if (!caPem) {
          caPem = await readFile(join(certDir, 'apiserver.crt'), 'utf8').catch(() => '');
          if (!caPem.includes('END CERTIFICATE')) {
            caPem = '';
            return false;
          }
        }
        const res = await readyz(url, caPem, token, signal);
        lastReadyz = `${res.status} ${res.body.slice(0, 200)}`;
        return res.ok;
      },
      { timeoutMs: remaining(), what: `kube-apiserver ${url}/readyz`, intervalMs: 250 },
    ).catch(async (err: unknown) => {
      // Say which readyz checks are failing.
      const failing = caPem
        ? await httpsRequest(`${url}/readyz?verbose`, { ca: caPem, token, timeoutMs: 3_000 }).then(
            (r) => r.body.split('\n').filter((l) => l.includes('failed')).join('\n'),
            () => '',
          )
        : '';
      readyzDetail = `last /readyz answer: ${lastReadyz || 'none'}` + (failing ? `\nfailing readyz checks:\n${failing}` : '');
      throw err;
    });
    const apiserverReadyMs = Date.now() - started;

    // /readyz does not wait for the system namespaces controller.
    await api.waitFor(
      async (signal) => (await httpsRequest(`${url}/api/v1/namespaces/default`, { ca: caPem, token, signal, timeoutMs: 5_000 })).status === 200,
      { timeoutMs: remaining(), what: `namespace "default" on ${url}`, intervalMs: 100 },
    );

    const versionRes = await httpsRequest(`${url}/version`, { ca: caPem, token });
    const version = String((JSON.parse(versionRes.body) as { gitVersion?: unknown }).gitVersion ?? '');

    const kubeconfigPath = join(workDir, 'kubeconfig');
    await writeFile(kubeconfigPath, kubeconfigYaml({ name, url, caPem, token }), { mode: 0o600 });

    let kubelet: { kwokArgs: string[]; port: number; caPem: string } | undefined;
    if (options.kubelet && kubeletTls) {
      const port = await freePort({ owner: `kwok kubelet endpoint (${name})`, tracker });
      const configFile = join(workDir, 'kwok-kubelet.yaml');
      await writeFile(configFile, kwokKubeletConfigYaml(options.kubelet), { mode: 0o600 });
      kubelet = { kwokArgs: kwokKubeletArgs({ port, tls: kubeletTls, configFile }), port, caPem: await readFile(kubeletTls.caFile, 'utf8') };
    }
    const workloads = workloadTokens
      ? await startWorkloads(
          {
            name,
            workDir,
            logDir,
            api: { url, caPem, token },
            caFile: join(certDir, 'apiserver.crt'),
            saKeyFile: saKey,
            tokens: workloadTokens,
            nodes: options.nodes ?? DEFAULT_FAKE_NODES,
            tracker,
            remaining,
            kubeconfig: (user, userToken) => kubeconfigYaml({ name, url, caPem, token: userToken, user }),
            ...(kubelet ? { kubelet } : {}),
          },
          components,
        )
      : undefined;
    const workloadsReadyMs = workloads ? Date.now() - started : undefined;

    const startupMs = Date.now() - started;
    await writeFile(
      join(logDir, 'startup.json'),
      JSON.stringify({ name, url, etcdReadyMs, apiserverReadyMs, workloadsReadyMs, startupMs }, null, 2) + '\n',
    );

    let stopping: Promise<void> | undefined;
    const etcdProc = etcd;
    const ca = caPem;
    return {
      name,
      url,
      token,
      caPem,
      kubeconfigPath,
      version,
      startupMs,
      workDir,
      etcd: etcdProc,
      apiserver: api,
      workloads,
      async waitReady(waitOptions = {}) {
        const timeout = waitOptions.timeoutMs ?? 60_000;
        const until = Date.now() + timeout;
        await etcdProc.waitFor((signal) => etcdHealthy(etcdUrl, signal), { timeoutMs: timeout, what: `etcd ${etcdUrl}/health` });
        await api.waitFor(async (signal) => (await readyz(url, ca, token, signal)).ok, {
          timeoutMs: Math.max(1, until - Date.now()),
          what: `kube-apiserver ${url}/readyz`,
          intervalMs: 250,
        });
      },
      stop() {
        stopping ??= cleanup(true);
        return stopping;
      },
    };
  } catch (err) {
    const clash = isPortClash(err);
    await cleanup(clash);
    if (clash) throw err;
    const where = keep ? workDir : `${logDir} (kept for inspection; etcd data removed)`;
    const detail = readyzDetail ? `\n${readyzDetail}` : '';
    throw new TestkitError(TestkitErrorCode.KubeStart, `kube cluster "${name}" did not start; logs in ${where}\n${errorMessage(err)}${detail}`, {
      cause: err,
    });
  }
}

async function etcdHealthy(etcdUrl: string, signal: AbortSignal): Promise<boolean> {
  const res = await fetch(`${etcdUrl}/health`, { signal });
  const body = (await res.json()) as { health?: unknown };
  return res.ok && body.health === 'true';
}

async function readyz(url: string, ca: string, token: string, signal: AbortSignal): Promise<{ ok: boolean; status: number; body: string }> {
  const res = await httpsRequest(`${url}/readyz`, { ca, token, signal, timeoutMs: 5_000 });
  return { ok: res.status === 200 && res.body.trim() === 'ok', status: res.status, body: res.body };
}

/** A kubeconfig with one context; the user defaults to "<name>-admin". */
export function kubeconfigYaml(c: { name: string; url: string; caPem: string; token: string; user?: string }): string {
  const user = c.user ?? `${c.name}-admin`;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: c.name, cluster: { server: c.url, 'certificate-authority-data': Buffer.from(c.caPem).toString('base64') } }],
    users: [{ name: user, user: { token: c.token } }],
    contexts: [{ name: c.name, context: { cluster: c.name, user } }],
    'current-context': c.name,
    preferences: {},
  });
}
