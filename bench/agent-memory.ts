// What the agent itself costs in memory (issue 7 §6): the RSS of a real agent
// process beside a real kube-apiserver, connected to a real hub, idle and
// then with a few hundred manifests synced, cached and applied. Measured in
// the same run as its floors: bare node, and node with the libraries the
// agent cannot do without (grpc-js, classic-level, pino, lru-cache, the
// protobuf runtime) loaded. Aim: ≤ 70 MB, what KubeEdge's EdgeCore needs.
//
//   npm run bench:agent-memory [-- --objects=300]
//   npm run bench:agent-memory -- --agent-node-flag=--semi-space-growth-factor=2   # the agent as V8 would size it
//
// RSS is read after forced full GCs (SIGUSR2 with --expose-gc, see
// gc-on-signal.ts), repeated until it settles.

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { freePort, httpsRequest, startKubeCluster, startProcess, type ManagedProcess } from '../src/testkit/index.js';
import { findRepoRoot, readRssBytes, sleep } from './common.js';

const run = promisify(execFile);
const here = import.meta.dirname;
const root = findRepoRoot(here);
const hawserBin = join(root, 'bin', 'hawser.js');
const gcFlags = ['--expose-gc', '--import', pathToFileURL(join(here, 'gc-on-signal.js')).href];

const objects = Number(/^--objects=(\d+)$/.exec(process.argv.find((a) => a.startsWith('--objects=')) ?? '')?.[1] ?? 300);
/** Extra node flags for the agent process (repeatable), e.g. to compare V8 heap settings. */
const agentNodeFlags = process.argv.filter((a) => a.startsWith('--agent-node-flag=')).map((a) => a.slice('--agent-node-flag='.length));
const bootstrapToken = 'abcdef.0123456789abcdef';
const adminToken = `hwo_bench-memory-${'0'.repeat(24)}`;
const mb = (bytes: number) => bytes / 1048576;

function log(message: string): void {
  process.stderr.write(`[agent-memory] ${message}\n`);
}

/** RSS after full GCs, repeated until three readings agree within 1 MB. */
async function rssAfterGc(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 20; i++) {
    process.kill(pid, 'SIGUSR2');
    await sleep(1_000);
    readings.push(readRssBytes(pid));
    const last = readings.slice(-3);
    if (i >= 4 && Math.max(...last) - Math.min(...last) < 1024 * 1024) break;
  }
  return readings[readings.length - 1]!;
}

/** The V8 heap's part of the agent's RSS as its preload wrote it after the last GC. */
async function heapOf(file: string): Promise<string> {
  const u = JSON.parse(await readFile(file, 'utf8')) as NodeJS.MemoryUsage;
  return `heap ${mb(u.heapTotal).toFixed(1)} MB (used ${mb(u.heapUsed).toFixed(1)}), external ${mb(u.external).toFixed(1)} MB (array buffers ${mb(u.arrayBuffers).toFixed(1)})`;
}

/** A node process that loads `modules`, collects garbage and reports its RSS. */
async function floor(modules: string[]): Promise<number> {
  const script = `${modules.map((m) => `await import(${JSON.stringify(m)});`).join('')} for (let i = 0; i < 6; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 200)); } console.log(process.memoryUsage().rss);`;
  const { stdout } = await run(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { cwd: root });
  return Number(stdout.trim());
}

/** A realistic mix: ConfigMaps with a few KB of data, Services, Deployments (no controllers run them). */
function manifests(n: number): string {
  const docs: string[] = ['apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}'];
  const feeds: string[] = ['{apiVersion: v1, kind: Namespace, name: bench}'];
  for (let i = 0; i < n; i++) {
    const name = `obj-${String(i).padStart(4, '0')}`;
    if (i % 3 === 0) {
      docs.push(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${name}, namespace: bench, labels: {app: ${name}}}\ndata:\n  config.yaml: |\n${Array.from({ length: 40 }, (_, k) => `    key${k}: value-${i}-${k}-${'x'.repeat(40)}`).join('\n')}`);
      feeds.push(`{apiVersion: v1, kind: ConfigMap, name: ${name}, namespace: bench}`);
    } else if (i % 3 === 1) {
      docs.push(`apiVersion: v1\nkind: Service\nmetadata: {name: ${name}, namespace: bench, labels: {app: ${name}}}\nspec:\n  selector: {app: ${name}}\n  ports: [{name: http, port: 80, targetPort: 8080}, {name: metrics, port: 9090}]`);
      feeds.push(`{apiVersion: v1, kind: Service, name: ${name}, namespace: bench}`);
    } else {
      docs.push(
        `apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ${name}, namespace: bench, labels: {app: ${name}}}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: ${name}}}\n  template:\n    metadata: {labels: {app: ${name}}}\n    spec:\n      containers:\n      - name: app\n        image: registry.example/app:1.${i}\n        ports: [{containerPort: 8080}]\n        env: [{name: MODE, value: edge}, {name: INDEX, value: "${i}"}]\n        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 64Mi}}`,
      );
      feeds.push(`{apiVersion: apps/v1, kind: Deployment, name: ${name}, namespace: bench}`);
    }
  }
  docs.push(`apiVersion: apps.clusternet.io/v1alpha1\nkind: Subscription\nmetadata: {name: memory-bench, namespace: default}\nspec:\n  subscribers: [{clusterAffinity: {matchLabels: {bench: memory}}}]\n  feeds:\n${feeds.map((f) => `  - ${f}`).join('\n')}`);
  return docs.join('\n---\n');
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'hawser-bench-memory-'));
  const processes: ManagedProcess[] = [];
  const kube = await startKubeCluster({ name: 'memory', baseDir: dir });
  try {
    log('floors: bare node, and the libraries the agent needs');
    const bare = await floor([]);
    const stack = await floor(['@grpc/grpc-js', 'classic-level', 'pino', 'lru-cache', '@bufbuild/protobuf/wire']);

    const memoryFile = join(dir, 'agent-memory.json');
    const tunnelPort = await freePort();
    const apiPort = await freePort();
    const tokens = join(dir, 'operator-tokens.yaml');
    await writeFile(tokens, `operators:\n  - name: bench\n    role: admin\n    token: ${adminToken}\n`, { mode: 0o600 });
    log('starting the hub');
    const hub = await startProcess({
      name: 'hub',
      command: process.execPath,
      args: [hawserBin, 'hub', `--data-dir=${join(dir, 'hub')}`, `--listen=127.0.0.1:${tunnelPort}`, `--api-address=127.0.0.1:${apiPort}`, `--operator-tokens-file=${tokens}`, '--auto-approve'],
      env: { HAWSER_BOOTSTRAP_TOKEN: bootstrapToken },
      logDir: join(dir, 'logs'),
    });
    processes.push(hub);
    await hub.waitFor(/"hub ready"/, { timeoutMs: 60_000, what: 'hub ready' });
    log('starting the agent');
    const agent = await startProcess({
      name: 'agent',
      command: process.execPath,
      args: [
        ...gcFlags,
        ...agentNodeFlags,
        hawserBin,
        'agent',
        `--parent-url=127.0.0.1:${tunnelPort}`,
        `--parent-ca-file=${join(dir, 'hub', 'pki', 'ca.crt')}`,
        '--cluster-reg-name=memory',
        '--cluster-labels=bench=memory',
        `--cache-dir=${join(dir, 'agent')}`,
        `--kubeconfig=${kube.kubeconfigPath}`,
      ],
      env: { PARENT_CLUSTER_TOKEN: bootstrapToken, HAWSER_BENCH_MEMORY_FILE: memoryFile },
      logDir: join(dir, 'logs'),
    });
    processes.push(agent);
    await agent.waitFor(/"agent ready"/, { timeoutMs: 60_000, what: 'agent welcomed' });
    await sleep(3_000);
    const idle = await rssAfterGc(agent.pid!);
    const idleHeap = await heapOf(memoryFile);
    log(`idle agent: ${mb(idle).toFixed(1)} MB; applying ${objects} objects`);

    const file = join(dir, 'objects.yaml');
    await writeFile(file, manifests(objects));
    await run(process.execPath, [hawserBin, 'apply', '-f', file, `--hub=http://127.0.0.1:${apiPort}`], { env: { ...process.env, HAWSER_TOKEN: adminToken, HAWSER_CONFIG: join(dir, 'no-config') } });
    const started = Date.now();
    for (;;) {
      const counts = await Promise.all(
        ['/api/v1/namespaces/bench/configmaps', '/api/v1/namespaces/bench/services', '/apis/apps/v1/namespaces/bench/deployments'].map(async (path) => {
          const r = await httpsRequest(`${kube.url}${path}?labelSelector=app`, { ca: kube.caPem, token: kube.token });
          return r.status === 200 ? (JSON.parse(r.body) as { items: unknown[] }).items.length : 0;
        }),
      );
      const applied = counts.reduce((a, b) => a + b, 0);
      if (applied >= objects) break;
      if (Date.now() - started > 300_000) throw new Error(`only ${applied} of ${objects} objects applied after 5 minutes`);
      await sleep(1_000);
    }
    log(`all ${objects} applied in ${((Date.now() - started) / 1000).toFixed(1)} s; settling`);
    await sleep(5_000);
    const loaded = await rssAfterGc(agent.pid!);
    const loadedHeap = await heapOf(memoryFile);

    const aim = 70 * 1048576;
    const rows: Array<[string, number]> = [
      ['node, nothing loaded', bare],
      ['node + grpc-js, classic-level, pino, lru-cache, protobuf', stack],
      ['hawser agent, connected, idle', idle],
      [`hawser agent, ${objects} objects synced, cached, applied`, loaded],
    ];
    console.log(`\nagent RSS after GC (aim ≤ 70 MB; Node ${process.version}${agentNodeFlags.length > 0 ? `; agent run with ${agentNodeFlags.join(' ')}` : ''})\n`);
    console.log(`${'process'.padEnd(62)} ${'RSS MB'.padStart(8)} ${'÷ floor'.padStart(8)} ${'÷ aim'.padStart(7)}`);
    for (const [name, bytes] of rows) console.log(`${name.padEnd(62)} ${mb(bytes).toFixed(1).padStart(8)} ${(bytes / stack).toFixed(2).padStart(8)} ${(bytes / aim).toFixed(2).padStart(7)}`);
    console.log(`\nagent idle: ${idleHeap}\nagent with ${objects} objects: ${loadedHeap}`);
  } finally {
    for (const p of processes.reverse()) await p.stop();
    await kube.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
