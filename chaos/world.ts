import { join } from 'node:path';
import {
  freePort,
  httpsRequest,
  isPidAlive,
  type KubeCluster,
  type ManagedProcess,
  startToxiproxy,
  type Toxiproxy,
  type ToxiproxyProxy,
  Tracker,
} from '../src/testkit/index.js';
import {
  adminToken,
  hasUnreachableTaint,
  type HubProcess,
  readyStatus,
  sampleValue,
  startAgentProcess,
  startHubProcess,
  TestBed,
  until,
} from '../test/integration/harness.js';
import { ConfigMapWatch } from './kube-watch.js';
import { type Random, scenarioRandom } from './rng.js';

// The world the scenarios share (one child cluster, one toxiproxy), and one
// scenario's run in it: its own hub (data dir of its own), a toxiproxy link,
// an agent dialling the hub through it, a watch on the child, and the hub's
// record of what the agent acknowledged. finish() measures the invariants.

export interface Scale {
  name: 'small' | 'large';
  /** ConfigMaps in the scenario's desired state. */
  objects: number;
  /** Fault rounds (kills, cuts, stops) in the scenarios that repeat one. */
  rounds: number;
  /** How long a round of link cuts keeps the link down, and how long it keeps it up, at most. */
  cutDownMs: number;
  cutUpMs: number;
  /** Bytes of data in each ConfigMap. */
  objectBytes: number;
  /** Deadline for converging once the faults are lifted. */
  convergeTimeoutMs: number;
}

export const scales: Record<Scale['name'], Scale> = {
  small: { name: 'small', objects: 120, rounds: 2, cutDownMs: 600, cutUpMs: 1_500, objectBytes: 256, convergeTimeoutMs: 90_000 },
  large: { name: 'large', objects: 600, rounds: 8, cutDownMs: 1_500, cutUpMs: 4_000, objectBytes: 1024, convergeTimeoutMs: 300_000 },
};

/** Agent flags for a bad link: a short lease, and an agent that notices a dead link and redials quickly. */
export const weakLinkAgentArgs = [
  '--cluster-lease-duration=3s',
  '--cluster-status-update-frequency=1s',
  '--reconnect-period=200ms',
  '--max-reconnect-period=1s',
  '--register-timeout=2s',
  '--keepalive-time=1s',
  '--keepalive-timeout=1s',
];

export class World {
  private constructor(
    readonly bed: TestBed,
    readonly kube: KubeCluster,
    readonly toxi: Toxiproxy,
  ) {}

  static async open(): Promise<World> {
    const bed = await TestBed.create('chaos');
    try {
      const [kube, toxi] = await Promise.all([bed.kube('chaos-edge'), startToxiproxy({ baseDir: bed.dir, tracker: bed.tracker })]);
      return new World(bed, kube, toxi);
    } catch (err) {
      await bed.close().catch(() => undefined);
      throw err;
    }
  }

  /** Stops everything; rejects when a process or port of the world outlived it. */
  async close(): Promise<void> {
    await this.toxi.stop();
    await this.bed.close();
  }
}

export interface Row {
  scenario: string;
  faults: string[];
  converged: boolean;
  convergeMs: number;
  ackedLost: number;
  appliedTwice: number;
  leakedStreams: number;
  leakedProcesses: number;
  /** What went wrong, for the report (empty when the row passed). */
  problems: string[];
}

export function rowPassed(row: Row): boolean {
  return row.converged && row.ackedLost === 0 && row.appliedTwice === 0 && row.leakedStreams === 0 && row.leakedProcesses === 0 && row.problems.length === 0;
}

/** The hub's record of what the agent acknowledged, sampled while the scenario runs. */
class AckRecord {
  /** The highest revision acked to any run of the hub. */
  maxAcked = 0;
  /** Losses the hub counted in its runs that ended (a restart resets its counters). */
  private lostInEndedRuns = 0;
  private lostNow = 0;
  /** After a hub restart: the resume point must not be behind what the old run had acked. */
  private floor: number | undefined;
  readonly behindFloor: string[] = [];

  constructor(
    private readonly hub: () => HubProcess,
    private readonly cluster: string,
  ) {}

  /** Bumped when the hub dies and again when it is back: a scrape begun in an earlier epoch read another run. */
  private epoch = 0;

  async sample(): Promise<void> {
    const epoch = this.epoch;
    const text = await this.hub().metrics();
    if (epoch !== this.epoch) return;
    const labels = { cluster: this.cluster };
    this.maxAcked = Math.max(this.maxAcked, sampleValue(text, 'hawser_hub_sync_acked_revision', labels));
    this.lostNow = sampleValue(text, 'hawser_hub_sync_acked_lost_total', labels);
    // The new hub run sets the resume point once the agent's session started syncing (not at once with the session).
    if (this.floor !== undefined) {
      if (text.split('\n').some((l) => l.startsWith('hawser_hub_sync_resume_revision{') && l.includes(`cluster="${this.cluster}"`))) {
        const resumed = sampleValue(text, 'hawser_hub_sync_resume_revision', labels);
        if (resumed < this.floor) this.behindFloor.push(`after the hub restarted, the agent resumed at ${resumed}, behind the ${this.floor} it had acked`);
        this.floor = undefined;
      }
    }
  }

  /** Call right before the hub dies: the last sample of its run. */
  async hubEnding(): Promise<void> {
    await this.sample();
    this.lostInEndedRuns += this.lostNow;
    this.lostNow = 0;
    this.floor = this.maxAcked;
    this.epoch++;
  }

  /** Call once the restarted hub is ready. */
  hubRestarted(): void {
    this.epoch++;
  }

  get lost(): number {
    return this.lostInEndedRuns + this.lostNow + this.behindFloor.length;
  }
}

export interface RunOptions {
  /** Extra agent flags (after weakLinkAgentArgs). */
  agentArgs?: string[];
  /** The link is down when the agent starts: start() does not wait for Ready (call waitReady()). */
  linkDown?: boolean;
  /** Requests through the hub's proxy during the scenario (default true). */
  proxyLoad?: boolean;
}

/** A connection state change the agent logged. */
export interface AgentStateEvent {
  to: string;
  time: number;
  attempt?: number;
  delayMs?: number;
  code?: string;
  err?: string;
  [key: string]: unknown;
}

/** One scenario in the world. */
export class ScenarioRun {
  readonly faults: string[] = [];
  readonly problems: string[] = [];
  readonly namespace: string;
  readonly tracker = new Tracker();
  hub!: HubProcess;
  agent!: ManagedProcess;
  proxy!: ToxiproxyProxy;
  agentMetricsPort = 0;
  clusterId = '';
  private acks!: AckRecord;
  private watch!: ConfigMapWatch;
  private sampler: NodeJS.Timeout | undefined;
  private syncStartedAt = 0;
  readonly desired = new Map<string, Record<string, string>>();
  /** data.generation of the last desired state applied. */
  generation = 0;
  private readonly pids = new Set<number>();
  private proxyLoad: AbortController | undefined;
  private proxyLoadWanted = true;
  private proxyLoops: Promise<void> | undefined;
  /** Requests through the hub's proxy that answered (any HTTP status from the child) and that failed. */
  readonly proxied = { ok: 0, failed: 0, last: '' };
  /** Every connection state change the agent logged, across restarts. */
  readonly agentStates: AgentStateEvent[] = [];

  constructor(
    readonly world: World,
    readonly id: string,
    readonly seed: number,
    readonly scale: Scale,
    readonly random: Random = scenarioRandom(seed, id),
  ) {
    this.namespace = `chaos-${id}`;
  }

  get clusterName(): string {
    return `edge-${this.id}`;
  }

  log(message: string): void {
    console.log(`[chaos ${this.id}] ${message}`);
  }

  /** Its hub, its link and its agent, Ready. */
  async start(options: RunOptions = {}): Promise<void> {
    this.proxyLoadWanted = options.proxyLoad ?? true;
    const began = performance.now();
    const dir = this.world.bed.dir;
    this.hub = await startHubProcess({ dataDir: join(dir, `hub-${this.id}`), logDir: join(dir, 'logs'), tracker: this.tracker, args: ['--auto-approve'] });
    this.remember(this.hub.proc);
    this.proxy = await this.world.toxi.createProxy(`link-${this.id}`, this.hub.tunnel);
    if (options.linkDown) await this.proxy.disable();
    this.agentMetricsPort = await freePort({ owner: `agent ${this.id} metrics`, tracker: this.tracker });
    this.agent = await startAgentProcess({
      name: this.clusterName,
      parentUrl: this.proxy.listen,
      caFile: this.hub.caFile,
      cacheDir: join(dir, 'agents', this.clusterName),
      kubeconfig: this.world.kube.kubeconfigPath,
      logDir: join(dir, 'logs'),
      tracker: this.tracker,
      args: [...weakLinkAgentArgs, `--metrics-address=127.0.0.1:${this.agentMetricsPort}`, ...(options.agentArgs ?? [])],
    });
    this.agent.onLine((line) => {
      if (!line.startsWith('{')) return;
      try {
        const e = JSON.parse(line) as AgentStateEvent;
        if (typeof e.to === 'string') this.agentStates.push(e);
      } catch {
        // not a log record
      }
    });
    this.remember(this.agent);
    this.acks = new AckRecord(() => this.hub, this.clusterName);
    this.watch = new ConfigMapWatch(this.world.kube, this.namespace);
    await this.watch.start();
    if (!options.linkDown) await this.waitReady();
    this.log(`hub and agent up in ${((performance.now() - began) / 1000).toFixed(1)} s`);
    this.sampler = setInterval(() => void this.acks.sample().catch(() => undefined), 200);
  }

  /** Waits until the hub has the cluster Ready (and so knows its id). */
  async waitReady(what = `${this.clusterName} Ready`): Promise<void> {
    const cluster = await until(what, async () => {
      const c = await this.hub.cluster(this.clusterName);
      return readyStatus(c) === 'True' && !hasUnreachableTaint(c) ? c : undefined;
    });
    this.clusterId = cluster.spec.clusterId;
    if (!this.proxyLoad && this.proxyLoadWanted) this.startProxyLoad();
  }

  /**
   * kubectl-like traffic through the hub's proxy while the faults hit: short
   * GETs and one long watch, each through a proxy stream on the tunnel, so
   * the stream gauges have something to leak.
   */
  private startProxyLoad(): void {
    const stop = new AbortController();
    this.proxyLoad = stop;
    const base = `${this.hub.apiUrl}/clusters/${this.clusterName}/api/v1/namespaces/${this.namespace}/configmaps`;
    const headers = { authorization: `Bearer ${adminToken}` };
    const loop = async (path: string, timeoutMs: number) => {
      while (!stop.signal.aborted) {
        try {
          const res = await fetch(`${base}${path}`, { headers, signal: AbortSignal.any([stop.signal, AbortSignal.timeout(timeoutMs)]) });
          await res.text();
          // The child answering 403 (the operator has no RBAC there) went the whole way too.
          if (res.status < 500) this.proxied.ok++;
          else {
            this.proxied.failed++;
            this.proxied.last = `HTTP ${res.status}`;
          }
        } catch (err) {
          if (!stop.signal.aborted) {
            this.proxied.failed++;
            this.proxied.last = (err as Error).message;
          }
        }
        await pause(300);
      }
    };
    this.proxyLoops = Promise.all([loop('?limit=3', 5_000), loop('?watch=true&timeoutSeconds=5', 15_000)]).then(() => undefined);
  }

  /** Records a failed expectation: the row fails and names it. */
  expect(ok: boolean, what: string): void {
    if (!ok) this.problems.push(what);
  }

  /** Kills the agent with SIGKILL and starts it again on the same cache. */
  async killAgent(): Promise<void> {
    this.agent.kill('SIGKILL');
    await this.agent.exited;
    await this.agent.restart();
    this.remember(this.agent);
  }

  /** Records a process's pid, so finish() can tell it is gone. */
  remember(proc: ManagedProcess): void {
    if (proc.pid !== undefined) this.pids.add(proc.pid);
  }

  /** Applies the desired state at the hub: a Namespace and `count` ConfigMaps, fed to this cluster by one Subscription. */
  async applyDesired(count = this.scale.objects): Promise<void> {
    const generation = this.generation + 1;
    const items: unknown[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: this.namespace } }];
    const feeds: unknown[] = [{ apiVersion: 'v1', kind: 'Namespace', name: this.namespace }];
    const desired = new Map<string, Record<string, string>>();
    for (let i = 0; i < count; i++) {
      const name = `cm-${String(i).padStart(4, '0')}`;
      const data = { generation: String(generation), payload: randomText(this.random, this.scale.objectBytes) };
      desired.set(name, data);
      items.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: this.namespace, labels: { 'chaos.hawser.io/scenario': this.id } }, data });
      feeds.push({ apiVersion: 'v1', kind: 'ConfigMap', name, namespace: this.namespace });
    }
    items.push({
      apiVersion: 'apps.clusternet.io/v1alpha1',
      kind: 'Subscription',
      metadata: { name: `chaos-${this.id}`, namespace: 'default' },
      spec: { subscribers: [{ clusterAffinity: { matchLabels: { 'clusters.clusternet.io/cluster-id': this.clusterId } } }], feeds },
    });
    const body = JSON.stringify({ kind: 'ApplyRequest', items: items.map((object, i) => ({ source: `chaos[${i}]`, object })) });
    // The operator's side is not under test: a kept-alive connection the hub closed meanwhile is retried.
    const res = await until(`${this.id}: desired state ${generation} applied at the hub`, () =>
      fetch(`${this.hub.apiUrl}/api/v1/apply`, { method: 'POST', headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' }, body }),
    );
    if (!res.ok) throw new Error(`apply at the hub: HTTP ${res.status} ${(await res.text()).slice(0, 500)}`);
    // Only what the hub took is desired.
    this.generation = generation;
    this.desired.clear();
    for (const [name, data] of desired) this.desired.set(name, data);
    this.syncStartedAt ||= performance.now();
  }

  /** True when the child holds exactly the desired ConfigMaps with exactly their data. */
  async converged(): Promise<boolean> {
    const r = await httpsRequest(`${this.world.kube.url}/api/v1/namespaces/${this.namespace}/configmaps?labelSelector=${encodeURIComponent(`chaos.hawser.io/scenario=${this.id}`)}`, {
      ca: this.world.kube.caPem,
      token: this.world.kube.token,
    });
    if (r.status !== 200) return false;
    const items = (JSON.parse(r.body) as { items: Array<{ metadata: { name: string }; data?: Record<string, string> }> }).items;
    if (items.length !== this.desired.size) return false;
    return items.every((cm) => {
      const want = this.desired.get(cm.metadata.name);
      return want !== undefined && JSON.stringify(cm.data ?? {}) === JSON.stringify(want);
    });
  }

  /** Kills the hub with SIGKILL and starts it again on the same data dir and ports. */
  async killHub(): Promise<void> {
    await this.acks.hubEnding();
    this.hub.proc.kill('SIGKILL');
    await this.hub.proc.exited;
    await this.hub.proc.restart();
    this.remember(this.hub.proc);
    await this.hub.proc.waitFor(/"hub ready"/, { timeoutMs: 60_000, what: 'hub ready after SIGKILL' });
    this.acks.hubRestarted();
  }

  /** The hub's ManagedCluster Ready status and taint, for the lease scenarios. */
  async clusterReady(): Promise<{ ready: string | undefined; tainted: boolean }> {
    const c = await this.hub.cluster(this.clusterName);
    return { ready: readyStatus(c), tainted: hasUnreachableTaint(c) };
  }

  async hubMetric(name: string, labels: Record<string, string> = {}): Promise<number> {
    return this.hub.metric(name, labels);
  }

  async agentMetric(name: string): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${this.agentMetricsPort}/metrics`);
    if (!res.ok) throw new Error(`agent metrics: HTTP ${res.status}`);
    return sampleValue(await res.text(), name);
  }

  /** Lifts every fault, waits for convergence, measures the invariants, and stops its processes. */
  async finish(): Promise<Row> {
    await this.proxy.enable().catch(() => undefined);
    for (const t of await this.proxy.toxics().catch(() => [])) await this.proxy.removeToxic(t.name).catch(() => undefined);
    for (const p of [this.agent, this.hub.proc]) p.kill('SIGCONT');
    let converged = false;
    let convergeMs = Number.NaN;
    const phase = performance.now();
    if (this.generation === 0) this.problems.push('no desired state was applied');
    else try {
      await until(`${this.id} converged`, async () => (await this.converged()) || undefined, this.scale.convergeTimeoutMs);
      converged = true;
      convergeMs = performance.now() - this.syncStartedAt;
    } catch (err) {
      this.problems.push((err as Error).message.split('\n')[0]!);
    }
    this.log(`converge wait ${((performance.now() - phase) / 1000).toFixed(1)} s`);
    // Acks of the last group may trail the apply by a moment: the record wants the settled state.
    await until(`${this.id} acks sampled`, async () => {
      await this.acks.sample();
      return true;
    }).catch(() => undefined);
    if (this.sampler) clearInterval(this.sampler);
    await this.acks.sample().catch((err: unknown) => this.problems.push(`hub metrics: ${(err as Error).message}`));
    this.problems.push(...this.acks.behindFloor);

    // A record that saw no ack would make "0 lost" say nothing.
    if (this.generation > 0 && this.acks.maxAcked === 0) this.problems.push('the hub recorded no ack from the agent');
    const ackedLost = this.acks.lost;

    await this.watch.close();
    if (this.watch.failure) this.problems.push(`child watch: ${this.watch.failure.message}`);
    const twice = this.watch.changedNeedlessly();
    // A watch that missed the objects would make "0 applied twice" say nothing.
    const unseen = [...this.desired.keys()].filter((name) => (this.watch.history.get(name)?.added ?? 0) === 0);
    if (unseen.length > 0) this.problems.push(`the child watch never saw ${unseen.length} desired objects created`);
    if (twice.length > 0) this.problems.push(`changed needlessly, re-created or deleted: ${twice.slice(0, 5).join(', ')}${twice.length > 5 ? ', ...' : ''}`);

    this.proxyLoad?.abort();
    await this.proxyLoops;
    this.log(`through the hub's proxy: ${this.proxied.ok} answered, ${this.proxied.failed} failed (last: ${this.proxied.last})`);
    this.expect(this.proxied.ok > 0 || !this.proxyLoadWanted, `no request through the hub's proxy succeeded (${this.proxied.failed} failed)`);
    let leakedStreams = 0;
    if (this.agent.running) {
      const open = await waitZero(() => this.agentMetric('hawser_agent_proxy_streams_open'));
      if (open > 0) this.problems.push(`agent proxy streams open: ${open}`);
      leakedStreams += open;
    }
    await this.agent.stop();
    for (const name of ['hawser_hub_connected_agents', 'hawser_hub_open_streams', 'hawser_hub_proxy_streams_open']) {
      const open = await waitZero(() => this.hub.metric(name));
      if (open > 0) this.problems.push(`${name} is ${open} after the agent stopped`);
      leakedStreams += open;
    }
    await this.hub.proc.stop();
    this.log(`checks and stop ${((performance.now() - phase) / 1000).toFixed(1)} s`);
    await this.proxy.delete().catch(() => undefined);
    this.world.bed.tracker.untrackPort(this.proxy.port);
    const leaks = await this.tracker.findLeaks();
    const leakedPids = [...this.pids].filter((pid) => isPidAlive(pid));
    for (const l of leaks) this.problems.push(l.description);
    if (leakedPids.length > 0) this.problems.push(`pids still alive: ${leakedPids.join(', ')}`);
    await this.tracker.closeAll();
    return {
      scenario: this.id,
      faults: this.faults,
      converged,
      convergeMs,
      ackedLost,
      appliedTwice: twice.length,
      leakedStreams,
      leakedProcesses: new Set([...leakedPids, ...leaks.flatMap((l) => (l.pid === undefined ? [] : [l.pid]))]).size + leaks.filter((l) => l.kind === 'port').length,
      problems: this.problems,
    };
  }

  /** Stops whatever still runs after a scenario threw. */
  async abort(): Promise<void> {
    if (this.sampler) clearInterval(this.sampler);
    this.proxyLoad?.abort();
    await this.watch?.close();
    for (const p of this.tracker.trackedProcesses()) (p as ManagedProcess).kill?.('SIGCONT');
    await this.tracker.closeAll();
    await this.proxy?.delete().catch(() => undefined);
  }
}

/** A gauge that should fall to 0: its value once it does, or what it still is after 15 s. */
async function waitZero(read: () => Promise<number>): Promise<number> {
  let last = Number.NaN;
  try {
    await until('gauge at 0', async () => {
      last = await read();
      return last === 0 || undefined;
    }, 15_000);
    return 0;
  } catch {
    return Number.isNaN(last) ? 1 : last;
  }
}

function randomText(random: Random, bytes: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  for (let i = 0; i < bytes; i++) s += alphabet[Math.floor(random() * alphabet.length)];
  return s;
}

/** Waits `ms` (between fault steps: the faults are timed, the checks are not). */
export function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
