// bench/distribution: from one subscription change to its acknowledgement by
// every agent on one hub, and what the hub pays per subscribed cluster.
//
// A real `hawser hub` process and N real agents (startAgent, forked in swarms
// of --per-process; caches in /dev/shm; each agent's cluster is a fake
// reader/writer in memory, see distribution-swarm.ts). Once every agent is
// ready and has its first (empty) snapshot:
//   idle:   the hub with everyone connected and nothing subscribed: CPU over
//           --idle-window, RSS after forced GCs (the baseline);
//   create: `POST /api/v1/apply` (as `hawser apply` does) of a Subscription
//           feeding a Deployment and a ConfigMap to every cluster;
//   change: --rounds times, the Subscription applied again naming another
//           ConfigMap (pre-applied, so only the subscription changes).
// Per round, from the moment the apply is sent: the hub's render (its
// deployer's write of the subscription's status, seen on a watch of the
// API), each agent's acknowledgement (the group holding the new ConfigMap
// durable in its cache; the ack goes right after) and its apply to the fake
// cluster. Printed: p50/p99 over every agent of every change round, the
// ratios ack/render and change CPU/idle CPU, and CPU and RSS per subscribed
// cluster. Agents share the machine's cores with the hub: absolute times are
// pessimistic on a small machine; the ratios are the figure.
//
//   npm run bench:distribution                          # 100 agents
//   npm run bench:distribution -- --agents 1000         # on demand
//   npm run bench:distribution -- --cpu-prof /tmp/prof  # hub --cpu-prof (written at its exit)
//   npm run bench:distribution -- --hawser-bin ../main/bin/hawser.js  # another build's hub
import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { type BenchHub, benchApi, type BenchPki, findRepoRoot, makeBenchPki, readCpuMs, readRssBytes, sleep, startBenchHub } from './common.js';
import type { DistributionSwarmStats, DistributionSwarmTimes, FromDistributionSwarm, ToDistributionSwarm } from './distribution-swarm.js';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = findRepoRoot(here);
const bootstrapToken = 'abcdef.0123456789abcdef';
const operatorToken = 'hwo_bench-admin-0123456789abcdef';
const namespace = 'bench';
const gcFlags = ['--expose-gc', '--import', pathToFileURL(join(here, 'gc-on-signal.js')).href];

const { values: flags } = parseArgs({
  options: {
    agents: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '5' },
    'per-process': { type: 'string', default: '250' },
    ramp: { type: 'string', default: '40' },
    'idle-window': { type: 'string', default: '10' },
    'round-timeout': { type: 'string', default: '120' },
    /** Seconds for every agent to be ready after the ramp (a loaded hub refuses handshakes with HAWSER_HUB_BUSY; agents back off). */
    'ready-timeout': { type: 'string', default: '120' },
    'cpu-prof': { type: 'string' },
    /** Another build's bin/hawser.js for the hub (e.g. a baseline checkout); the agents are this checkout's. */
    'hawser-bin': { type: 'string' },
    label: { type: 'string', default: '' },
  },
});
const n = Number(flags.agents);
const rounds = Number(flags.rounds);
const perProcess = Number(flags['per-process']);
const rampPerSec = Number(flags.ramp);
const hawserBin = resolve(flags['hawser-bin'] ?? join(repoRoot, 'bin/hawser.js'));
const idleWindowMs = Number(flags['idle-window']) * 1000;
const roundTimeoutMs = Number(flags['round-timeout']) * 1000;
for (const [name, v] of [['agents', n], ['rounds', rounds], ['per-process', perProcess], ['ramp', rampPerSec], ['idle-window', idleWindowMs]] as const) {
  if (!(Number.isFinite(v) && v > 0)) throw new Error(`--${name} must be a positive number`);
}

function log(message: string): void {
  console.error(`[${new Date().toISOString().slice(11, 19)}] ${message}`);
}

const children = new Set<ChildProcess>();
function track(cp: ChildProcess): ChildProcess {
  children.add(cp);
  cp.once('exit', () => children.delete(cp));
  return cp;
}

function startHub(dir: string, pki: BenchPki): Promise<BenchHub> {
  return startBenchHub({
    bin: hawserBin,
    dir,
    bootstrapToken,
    operatorToken,
    pki,
    nodeFlags: [...gcFlags, ...(flags['cpu-prof'] ? ['--cpu-prof', '--cpu-prof-dir', resolve(flags['cpu-prof'])] : [])],
    track,
  });
}

/** RSS after forced full GCs, repeated until it stops moving (as bench/agents does). */
async function rssAfterGc(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 12; i++) {
    process.kill(pid, 'SIGUSR2');
    await sleep(700);
    readings.push(readRssBytes(pid));
    const last = readings.slice(-3);
    if (i >= 3 && Math.max(...last) - Math.min(...last) < 1024 * 1024) break;
  }
  return readings[readings.length - 1]!;
}

class Swarm {
  readonly cp: ChildProcess;
  stats: DistributionSwarmStats = { type: 'stats', started: 0, ready: 0, synced: 0, drops: 0, errors: {} };
  private nextId = 0;
  private readonly waiting = new Map<number, (t: DistributionSwarmTimes) => void>();

  constructor(start: ToDistributionSwarm) {
    this.cp = track(fork(join(here, 'distribution-swarm.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--no-deprecation'] }));
    this.cp.on('message', (m: FromDistributionSwarm) => {
      if (m.type === 'stats') this.stats = m;
      else if (m.type === 'times') this.waiting.get(m.id)?.(m);
      else if (m.type === 'fatal') log(`swarm: ${m.message}`);
    });
    this.cp.send(start);
  }

  collect(marker: string): Promise<DistributionSwarmTimes> {
    const id = ++this.nextId;
    return new Promise((resolve) => {
      this.waiting.set(id, (t) => {
        this.waiting.delete(id);
        resolve(t);
      });
      this.cp.send({ type: 'collect', id, marker } satisfies ToDistributionSwarm);
    });
  }
}

async function api(hub: BenchHub, method: string, path: string, body?: string): Promise<unknown> {
  return JSON.parse(await benchApi(hub, method, path, body)) as unknown;
}

const configMapName = (round: number) => `dist-r${round}`;

function feedsYaml(): string {
  const docs = [
    [
      'apiVersion: apps/v1',
      'kind: Deployment',
      `metadata: {name: web, namespace: ${namespace}}`,
      'spec:',
      '  replicas: 2',
      '  selector: {matchLabels: {app: web}}',
      '  template:',
      '    metadata: {labels: {app: web}}',
      '    spec: {containers: [{name: web, image: "nginx:1.27", resources: {requests: {cpu: 100m, memory: 64Mi}}}]}',
    ].join('\n'),
  ];
  const payload = 'x'.repeat(512);
  for (let r = 0; r <= rounds; r++) docs.push(`apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ${configMapName(r)}, namespace: ${namespace}}\ndata: {round: "${r}", payload: "${payload}"}`);
  return docs.join('\n---\n');
}

function subscriptionYaml(round: number): string {
  return [
    'apiVersion: apps.clusternet.io/v1alpha1',
    'kind: Subscription',
    `metadata: {name: dist, namespace: ${namespace}}`,
    'spec:',
    '  subscribers: [{clusterAffinity: {matchLabels: {bench: distribution}}}]',
    '  feeds:',
    `  - {apiVersion: apps/v1, kind: Deployment, name: web, namespace: ${namespace}}`,
    `  - {apiVersion: v1, kind: ConfigMap, name: ${configMapName(round)}, namespace: ${namespace}}`,
  ].join('\n');
}

/**
 * Resolves with the time of the first event on the subscription after
 * `afterRv` whose status names `want` clusters at a new revision: the
 * deployer's one batch (Manifests, Bases, status) for the change.
 */
function watchRender(hub: BenchHub, signal: AbortSignal): { next(afterRv: number, before: Map<string, string>): Promise<number> } {
  type Sub = { metadata: { name: string; resourceVersion: string }; status?: { clusters?: Array<{ cluster: string; revision?: string }> } };
  const events: Array<{ at: number; object: Sub }> = [];
  let wake: (() => void) | undefined;
  void (async () => {
    const res = await fetch(`${hub.apiUrl}/api/v1/resources/subscriptions?watch=true&namespace=${namespace}`, { headers: { authorization: `Bearer ${operatorToken}` }, signal });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffered = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const at = Date.now();
      buffered += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (!line.trim()) continue;
        const e = JSON.parse(line) as { object?: Sub };
        if (e.object?.metadata?.name === 'dist') events.push({ at, object: e.object });
        wake?.();
      }
    }
  })().catch(() => undefined);
  return {
    async next(afterRv, before) {
      const deadline = Date.now() + roundTimeoutMs;
      for (;;) {
        for (const e of events) {
          if (Number(e.object.metadata.resourceVersion) <= afterRv) continue;
          const rows = e.object.status?.clusters ?? [];
          if (rows.length >= n && rows.every((r) => r.revision !== undefined && r.revision !== before.get(r.cluster))) return e.at;
        }
        if (Date.now() > deadline) throw new Error('the deployer did not render the change in time');
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 200);
        });
      }
    },
  };
}

async function revisions(hub: BenchHub): Promise<Map<string, string>> {
  const sub = (await api(hub, 'GET', `/api/v1/resources/subscriptions/dist?namespace=${namespace}`).catch(() => undefined)) as
    | { status?: { clusters?: Array<{ cluster: string; revision?: string }> } }
    | undefined;
  return new Map((sub?.status?.clusters ?? []).map((r) => [r.cluster, r.revision ?? '']));
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

interface RoundResult {
  round: number;
  kind: 'create' | 'change';
  renderMs: number;
  ackMs: number[];
  applyMs: number[];
  /** Hub CPU from the apply until every agent acked. */
  hubCpuMs: number;
  allAckedMs: number;
  /** Hub CPU from then until it is quiet again (agents' apply reports folded into status). */
  settleCpuMs: number;
  settleMs: number;
}

/** Waits until the hub uses under 5 % of a core over a second (max 60 s); returns CPU ms and ms spent. */
async function settle(pid: number): Promise<{ cpuMs: number; ms: number }> {
  const began = Date.now();
  const cpu0 = readCpuMs(pid);
  for (let i = 0; i < 60; i++) {
    const a = readCpuMs(pid);
    await sleep(1_000);
    if (readCpuMs(pid) - a < 50) break;
  }
  return { cpuMs: readCpuMs(pid) - cpu0, ms: Date.now() - began };
}

async function runRound(hub: BenchHub, swarms: Swarm[], render: ReturnType<typeof watchRender>, round: number): Promise<RoundResult> {
  const marker = configMapName(round);
  const before = await revisions(hub);
  const cpu0 = readCpuMs(hub.pid);
  const t0 = Date.now();
  const applied = (await api(hub, 'POST', '/api/v1/apply', subscriptionYaml(round))) as { items: Array<{ resourceVersion?: string }> };
  const appliedRv = Number(applied.items[0]?.resourceVersion ?? '0');
  const renderedAt = render.next(appliedRv, before);
  const deadline = Date.now() + roundTimeoutMs;
  let times: DistributionSwarmTimes[] = [];
  for (;;) {
    times = await Promise.all(swarms.map((s) => s.collect(marker)));
    const acked = times.reduce((a, t) => a + t.acked.length, 0);
    const done = times.reduce((a, t) => a + t.applied.length, 0);
    if (acked >= n && done >= n) break;
    if (Date.now() > deadline) throw new Error(`round ${round}: ${acked}/${n} acked, ${done}/${n} applied after ${roundTimeoutMs} ms`);
    await sleep(50);
  }
  const cpu1 = readCpuMs(hub.pid);
  const ackMs = times.flatMap((t) => t.acked).map((at) => at - t0).sort((a, b) => a - b);
  const applyMs = times.flatMap((t) => t.applied).map((at) => at - t0).sort((a, b) => a - b);
  const renderMs = (await renderedAt) - t0;
  const s = await settle(hub.pid);
  const result: RoundResult = {
    round,
    kind: round === 0 ? 'create' : 'change',
    renderMs,
    ackMs,
    applyMs,
    hubCpuMs: cpu1 - cpu0,
    allAckedMs: ackMs[ackMs.length - 1]!,
    settleCpuMs: s.cpuMs,
    settleMs: s.ms,
  };
  log(
    `round ${round} (${result.kind}): render ${renderMs} ms, ack p50 ${percentile(ackMs, 50)} p99 ${percentile(ackMs, 99)} max ${result.allAckedMs} ms, ` +
      `apply p99 ${percentile(applyMs, 99)} ms, hub CPU ${result.hubCpuMs} ms to all acked + ${s.cpuMs} ms over ${s.ms} ms to settle`,
  );
  return result;
}

function fmt(v: number, digits = 0): string {
  return Number.isFinite(v) ? v.toFixed(digits) : '-';
}

async function main(): Promise<void> {
  const root = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'hawser-bench-distribution-'));
  if (flags['cpu-prof']) mkdirSync(resolve(flags['cpu-prof']), { recursive: true });
  const swarms: Swarm[] = [];
  const watchAbort = new AbortController();
  let hub: BenchHub | undefined;
  try {
    const pki = await makeBenchPki(root);
    hub = await startHub(join(root, 'hub'), pki);
    await sleep(2_000);
    const emptyRss = await rssAfterGc(hub.pid);

    log(`starting ${n} agents at ${rampPerSec}/s in ${Math.ceil(n / perProcess)} process(es)`);
    const processes = Math.ceil(n / perProcess);
    for (let w = 0; w < processes; w++) {
      const first = w * perProcess;
      swarms.push(
        new Swarm({
          type: 'start',
          target: hub.target,
          caFile: pki.caFile,
          first,
          count: Math.min(perProcess, n - first),
          rampPerSec: rampPerSec / processes,
          cacheRoot: join(root, 'agents'),
          bootstrapToken,
          labels: { bench: 'distribution' },
        }),
      );
    }
    const readyDeadline = Date.now() + (n / rampPerSec) * 1000 + Number(flags['ready-timeout']) * 1000;
    for (;;) {
      const ready = swarms.reduce((a, s) => a + s.stats.ready, 0);
      const synced = swarms.reduce((a, s) => a + s.stats.synced, 0);
      if (ready >= n && synced >= n) break;
      if (Date.now() > readyDeadline) throw new Error(`only ${ready}/${n} ready, ${synced}/${n} synced; errors ${JSON.stringify(swarms.map((s) => s.stats.errors))}`);
      await sleep(500);
    }
    log(`all ${n} agents ready and synced; idle window ${idleWindowMs / 1000}s`);
    await api(hub, 'POST', '/api/v1/apply', feedsYaml());
    await settle(hub.pid);
    const idleCpu0 = readCpuMs(hub.pid);
    await sleep(idleWindowMs);
    const idleCpuPerSec = ((readCpuMs(hub.pid) - idleCpu0) / idleWindowMs) * 1000;
    const idleRss = await rssAfterGc(hub.pid);
    log(`idle: hub CPU ${fmt(idleCpuPerSec / 10, 1)} % of a core, RSS ${fmt(idleRss / 1048576, 1)} MB (${fmt(emptyRss / 1048576, 1)} MB with no agents)`);

    const render = watchRender(hub, watchAbort.signal);
    const results: RoundResult[] = [];
    for (let r = 0; r <= rounds; r++) results.push(await runRound(hub, swarms, render, r));
    const subscribedRss = await rssAfterGc(hub.pid);

    const changes = results.filter((r) => r.kind === 'change');
    const ack = changes.flatMap((r) => r.ackMs).sort((a, b) => a - b);
    const apply = changes.flatMap((r) => r.applyMs).sort((a, b) => a - b);
    const renders = changes.map((r) => r.renderMs).sort((a, b) => a - b);
    const create = results[0]!;
    const changeCpuMs = changes.reduce((a, r) => a + r.hubCpuMs, 0) / changes.length;
    const changeWallMs = changes.reduce((a, r) => a + r.allAckedMs, 0) / changes.length;
    const idleCpuSameSpan = (idleCpuPerSec * changeWallMs) / 1000;
    const settleCpuMs = changes.reduce((a, r) => a + r.settleCpuMs, 0) / changes.length;
    const summary = {
      agents: n,
      rounds,
      cores: cpus().length,
      node: process.version,
      commit: gitHead(dirname(dirname(hawserBin))),
      label: flags.label,
      ackP50Ms: percentile(ack, 50),
      ackP99Ms: percentile(ack, 99),
      applyP50Ms: percentile(apply, 50),
      applyP99Ms: percentile(apply, 99),
      renderP50Ms: percentile(renders, 50),
      createAckP99Ms: percentile(create.ackMs, 99),
      createRenderMs: create.renderMs,
      changeHubCpuMs: changeCpuMs,
      changeSettleCpuMs: settleCpuMs,
      idleHubCpuPercent: idleCpuPerSec / 10,
      emptyRssBytes: emptyRss,
      idleRssBytes: idleRss,
      subscribedRssBytes: subscribedRss,
    };
    console.log(`\ndistribution to ${n} agents on one hub (${cpus().length} cores, ${process.version}, ${summary.commit})\n`);
    console.log('| | value | baseline | ratio |\n|---|---|---|---|');
    console.log(`| change -> ack p50 / p99 | ${fmt(summary.ackP50Ms)} / ${fmt(summary.ackP99Ms)} ms | render ${fmt(summary.renderP50Ms)} ms (p50 of ${changes.length}) | p99/render ${fmt(summary.ackP99Ms / summary.renderP50Ms, 2)} |`);
    console.log(`| change -> applied p50 / p99 | ${fmt(summary.applyP50Ms)} / ${fmt(summary.applyP99Ms)} ms | ack p99 ${fmt(summary.ackP99Ms)} ms | ${fmt(summary.applyP99Ms / summary.ackP99Ms, 2)} |`);
    console.log(`| create -> ack p99 | ${fmt(summary.createAckP99Ms)} ms | render ${fmt(create.renderMs)} ms | ${fmt(summary.createAckP99Ms / create.renderMs, 2)} |`);
    console.log(`| hub CPU per change, to all acked | ${fmt(changeCpuMs)} ms (${fmt(changeCpuMs / n, 2)} ms/cluster) | idle over the same span ${fmt(idleCpuSameSpan)} ms | ${fmt(changeCpuMs / idleCpuSameSpan, 1)} |`);
    console.log(`| hub CPU per change, status fold-in after | ${fmt(settleCpuMs)} ms (${fmt(settleCpuMs / n, 2)} ms/cluster) | change to all acked ${fmt(changeCpuMs)} ms | ${fmt(settleCpuMs / changeCpuMs, 2)} |`);
    console.log(`| hub RSS subscribed | ${fmt(subscribedRss / 1048576, 1)} MB (${fmt((subscribedRss - idleRss) / n / 1024, 1)} KB/cluster over idle) | idle ${fmt(idleRss / 1048576, 1)} MB (${fmt((idleRss - emptyRss) / n / 1024, 1)} KB/agent) | ${fmt(subscribedRss / idleRss, 2)} |`);
    const out = join(repoRoot, 'bench', 'results', `distribution-${n}-${new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19)}.json`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify({ summary, results }, null, 2)}\n`);
    console.log(`\nresults: ${out}`);
  } finally {
    watchAbort.abort();
    for (const s of swarms) s.cp.kill('SIGKILL');
    if (hub) {
      hub.cp.kill('SIGTERM');
      await new Promise<void>((r) => (hub!.cp.exitCode !== null ? r() : hub!.cp.once('exit', () => r())));
      if (hub.cp.exitCode !== 0) log(`hub exited with ${hub.cp.exitCode}; its log: ${readFileSync(hub.logFile, 'utf8').slice(-2000)}`);
    }
    for (const c of children) c.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  }
}

/** The hub's commit: of the checkout holding its bin/hawser.js. */
function gitHead(cwd: string): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8' }).trim();
    return dirty ? `${head}+changes` : head;
  } catch {
    return 'unknown';
  }
}

main().catch((err: unknown) => {
  console.error(err);
  for (const c of children) c.kill('SIGKILL');
  process.exit(1);
});
