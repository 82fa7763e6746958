import { readFile, rm } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensurePrivateDir, writeFileAtomic } from '../cache/index.js';
import { generateBootstrapToken, parseOperatorTokens } from '../hub/index.js';
import {
  DEFAULT_FAKE_NODES,
  type KubeCluster,
  kubectl,
  type ManagedProcess,
  requireTestbedBinary,
  startKubeCluster,
  startProcess,
  Tracker,
  waitUntil,
} from '../testkit/index.js';
import type { ManagedCluster } from '../api/index.js';
import { hubRequest } from './client.js';
import { type DemoClusterRecord, demoClusterSpecs, maxDemoClusters } from './demo-clusters.js';
import { configPath, type HubTarget, saveContext } from './config.js';
import { type CommandSpec, helpText, intFlag, parseFlags, stringFlag } from './flags.js';
import { clustersTable } from './table.js';

// The main job: real kube-apiservers (with etcd, kube-controller-manager,
// kube-scheduler and kwok's fake nodes, so Deployments really become ready)
// standing in for edge clusters, one hub, one agent beside each, all as
// separate processes.

export const demoSpec: CommandSpec = {
  usage: 'hawser demo [flags]',
  summary: 'Start a hub and agents next to local kube-apiservers (the main job). Ctrl-C stops everything.',
  flags: {
    clusters: { type: 'string', help: 'how many edge clusters (1-5), named edge-1..N', default: '3' },
    cluster: {
      type: 'string',
      multiple: true,
      help: 'an edge cluster NAME[:key=value,key=value] with the labels its agent registers (repeatable; replaces --clusters)',
    },
    'data-dir': { type: 'string', help: 'working directory', default: '.hawser/demo' },
    listen: { type: 'string', help: 'hub tunnel address', default: '127.0.0.1:7100' },
    'api-address': { type: 'string', help: 'hub API address', default: '127.0.0.1:7101' },
    context: { type: 'string', help: 'name of the context written into the hawser config (HAWSER_CONFIG, default ~/.hawser/config)', default: 'demo' },
  },
};

const mainScript = fileURLToPath(new URL('./main.js', import.meta.url));
const hawserBin = fileURLToPath(new URL('../../bin/hawser.js', import.meta.url));

/** The CLI as the user can type it from where they are: bin/hawser.js from a checkout. */
function relativeOrAbsolute(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

function listFlagRaw(p: ReturnType<typeof parseFlags>, name: string): string[] {
  const v = p.values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

export async function runDemo(argv: string[]): Promise<number> {
  const p = parseFlags(demoSpec, argv);
  if (p.help) return void say(helpText(demoSpec)), 0;
  const specs = demoClusterSpecs(listFlagRaw(p, 'cluster'), intFlag(p, 'clusters', 3, 1, maxDemoClusters));
  const count = specs.length;
  const dataDir = resolve(stringFlag(p, 'data-dir', '.hawser/demo')!);
  const listen = stringFlag(p, 'listen', '127.0.0.1:7100')!;
  const apiAddress = stringFlag(p, 'api-address', '127.0.0.1:7101')!;
  const contextName = stringFlag(p, 'context', 'demo')!;
  const logDir = join(dataDir, 'logs');
  const clustersFile = join(dataDir, 'clusters.json');
  // A fresh start each run: the demo's clusters are new, so old identities would not match.
  await rm(dataDir, { recursive: true, force: true });
  await ensurePrivateDir(dataDir);
  await ensurePrivateDir(logDir);
  await ensurePrivateDir(join(dataDir, 'clusters'));

  const tracker = new Tracker();
  const clusters: KubeCluster[] = [];
  const processes: ManagedProcess[] = [];
  let stopping: Promise<void> | undefined;
  const stopAll = () =>
    (stopping ??= (async () => {
      say('\nstopping agents, hub and clusters ...');
      await Promise.allSettled(processes.slice().reverse().map((proc) => proc.stop()));
      await Promise.allSettled(clusters.map((c) => c.stop()));
      say('stopped.');
    })());
  const onSignal = () => void stopAll().then(() => process.exit(0));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    const names = specs.map((s) => s.name);
    const nodes = DEFAULT_FAKE_NODES.map((n) => `${n.name} ${n.cpu} CPU ${n.memory}`).join(', ');
    say(`starting ${count} edge clusters: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (nodes ${nodes}) each ...`);
    const started = await Promise.all(
      names.map(async (name) => {
        const c = await startKubeCluster({ name, baseDir: join(dataDir, 'clusters'), tracker, workloads: true });
        clusters.push(c);
        say(`  ${name}: kube-apiserver ${c.version} at ${c.url} (ready in ${(c.startupMs / 1000).toFixed(1)}s)`);
        return c;
      }),
    );

    // Secrets go by environment, never argv: every local user can read a command line.
    const token = generateBootstrapToken();
    const hubDir = join(dataDir, 'hub');
    const hub = await startProcess({
      name: 'hub',
      command: process.execPath,
      // The demo is loopback only; /metrics open so curl works without a token. The API is HTTPS
      // even so (--api-tls): kubectl sends the operator's token through the hub only over TLS.
      args: [mainScript, 'hub', `--data-dir=${hubDir}`, `--listen=${listen}`, `--api-address=${apiAddress}`, '--auto-approve', '--metrics-anonymous', '--api-tls'],
      env: { HAWSER_BOOTSTRAP_TOKEN: token },
      logDir,
      tracker,
    });
    processes.push(hub);
    await hub.waitFor(/"hub ready"/, { timeoutMs: 60_000, what: 'hub ready' });
    const ready = hub
      .lines()
      .map((l) => (l.includes('"hub ready"') ? (JSON.parse(l) as { api: string; caFile: string; operatorTokensFile: string }) : undefined))
      .find(Boolean)!;
    // A wildcard bind is reached on loopback, which the serving certificate names.
    const apiUrl = ready.api.replace('://0.0.0.0:', '://127.0.0.1:').replace('://[::]:', '://[::1]:');
    // The hub generated an admin token; the CLI finds it through the config's context, like kubectl.
    const admin = parseOperatorTokens(await readFile(ready.operatorTokensFile, 'utf8'), ready.operatorTokensFile).find((o) => o.role === 'admin')!;
    const target: HubTarget = {
      server: apiUrl,
      token: admin.token,
      ...(apiUrl.startsWith('https:') ? { caPem: await readFile(ready.caFile, 'utf8') } : {}),
    };
    const config = configPath();
    await saveContext(
      config,
      {
        name: contextName,
        server: apiUrl,
        token: admin.token,
        ...(target.caPem ? { 'certificate-authority-data': Buffer.from(target.caPem).toString('base64') } : {}),
      },
      true,
    );
    say(`hub: tunnel ${listen}, API ${apiUrl}; context "${contextName}" (current) in ${config}`);
    // Through the hub, kubectl runs in each edge cluster as the operator (impersonated), and the
    // cluster's own RBAC decides: the demo grants its admin operator cluster-admin there, as a cluster admin would.
    await Promise.all(
      started.map((c) => kubectl(c, ['create', 'clusterrolebinding', 'hawser-operator-admin', '--clusterrole=cluster-admin', `--user=${admin.name}`])),
    );

    // The first cluster shows Push (Clusternet's AppPusher gate on): the hub drives each apply and its agent keeps
    // no desired state. The others register Dual without the gate, so they run as Pull: cached, applied offline too.
    const pushCluster = names[0]!;
    for (const [i, c] of started.entries()) {
      const push = names[i] === pushCluster;
      const agent = await startProcess({
        name: `agent-${names[i]}`,
        command: process.execPath,
        args: [
          mainScript,
          'agent',
          `--parent-url=${listen}`,
          `--parent-ca-file=${join(hubDir, 'pki', 'ca-bundle.crt')}`,
          `--cluster-reg-name=${names[i]}`,
          `--cluster-labels=${Object.entries(specs[i]!.labels).map(([k, v]) => `${k}=${v}`).join(',')}`,
          `--cache-dir=${join(dataDir, 'agents', names[i]!)}`,
          `--kubeconfig=${c.kubeconfigPath}`,
          '--cluster-status-update-frequency=10s',
          '--cluster-lease-duration=30s',
          '--reconnect-period=1s',
          '--max-reconnect-period=30s',
          ...(push ? ['--cluster-sync-mode=Push', '--feature-gates=AppPusher=true'] : []),
        ],
        env: { PARENT_CLUSTER_TOKEN: token },
        logDir,
        tracker,
      });
      processes.push(agent);
    }
    await waitUntil(
      async () => {
        const list = await hubRequest<{ items: ManagedCluster[] }>(target, 'GET', '/api/v1/clusters');
        return list.items.length === count && list.items.every((c) => c.status.readyz === true) ? list.items : undefined;
      },
      { timeoutMs: 90_000, what: `${count} clusters registered and ready`, intervalMs: 500 },
    ).then(async (items) => {
      say('');
      say(`sync modes: ${names.map((n) => `${n} ${n === pushCluster ? 'Push (AppPusher=true: the hub pushes each apply, the agent caches nothing)' : 'Pull (Dual asked, AppPusher off: the agent caches and applies offline too)'}`).join('; ')}`);
      say(clustersTable(items, Date.now()));
      // Ids and dedicated namespaces are new each run: the examples ask for them to be filled in.
      const records: DemoClusterRecord[] = started.map((c) => {
        const m = items.find((item) => item.metadata.name === c.name)!;
        return { name: c.name, id: m.spec.clusterId, labels: specs.find((s) => s.name === c.name)!.labels, dedicatedNamespace: m.metadata.namespace ?? '', kubeconfig: c.kubeconfigPath };
      });
      await writeFileAtomic(clustersFile, `${JSON.stringify(records, null, 2)}\n`, { mode: 0o600 });
    });

    const kubeconfigs = started.map((c) => `  ${c.name}: ${c.kubeconfigPath}`).join('\n');
    // The testbed's kubectl matches the clusters' version; the one on PATH may not be a real kubectl.
    const kubectlBin = requireTestbedBinary('kubectl');
    const cli = relativeOrAbsolute(hawserBin);
    say(`
hawser is running. In another terminal:

  ${cli} get clusters            # the table above, live (context "${contextName}")
  ${cli} get clusters -o yaml    # full ManagedCluster objects
  curl -s --cacert ${ready.caFile} ${apiUrl}/metrics | grep hawser_cluster

kubectl through the hub as operator "${admin.name}" (bound to cluster-admin in each edge cluster; the kubeconfig
holds your operator token, --output writes it 0600):

  ${cli} kubeconfig ${names[0]} --output ${names[0]}.kubeconfig
  ${kubectlBin} --kubeconfig ${names[0]}.kubeconfig get ns

Edge cluster kubeconfigs (${kubectlBin} --kubeconfig ...):
${kubeconfigs}
Clusters (name, id, labels, dedicated namespace, kubeconfig): ${clustersFile}
Logs: ${logDir}
Hub CA: ${ready.caFile}   operator tokens: ${ready.operatorTokensFile}

Press Ctrl-C to stop everything.`);
    await new Promise<never>(() => {});
    return 0;
  } catch (err) {
    await stopAll();
    throw err;
  }
}
