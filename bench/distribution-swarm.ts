import { join } from 'node:path';
import { pino } from 'pino';
import { type Applier, type ObjectReport, type ReconcileInput, type ReconcileReport, type RunningAgent, StaticClusterReader, startAgent } from '../src/agent/index.js';
import { agentName, benchClusterStatus } from './common.js';

// One forked process of bench/distribution.ts: many real agents (startAgent:
// the real handshake, heartbeats, sync receiver with its LevelDB cache in
// /dev/shm, and apply loop) whose cluster is a fake reader/writer held in
// memory. Each agent notes when an object name first appears in what it has
// durably stored and acknowledged (the receiver's 'committed' event: the ack
// is sent right after), and when its apply loop first hands it to the fake
// cluster. The parent asks for these times by object name (the round's
// marker).

export interface DistributionSwarmStart {
  type: 'start';
  target: string;
  caFile: string;
  first: number;
  count: number;
  rampPerSec: number;
  cacheRoot: string;
  bootstrapToken: string;
  labels: Record<string, string>;
}
export interface DistributionSwarmCollect {
  type: 'collect';
  id: number;
  marker: string;
}
export type ToDistributionSwarm = DistributionSwarmStart | DistributionSwarmCollect;

export interface DistributionSwarmStats {
  type: 'stats';
  started: number;
  ready: number;
  /** Agents that committed at least one sync group (their first snapshot). */
  synced: number;
  drops: number;
  errors: Record<string, number>;
}
export interface DistributionSwarmTimes {
  type: 'times';
  id: number;
  marker: string;
  /** Epoch ms per agent that has it: acknowledged (durable in its cache), applied to its fake cluster. */
  acked: number[];
  applied: number[];
}
export type FromDistributionSwarm = DistributionSwarmStats | DistributionSwarmTimes | { type: 'fatal'; message: string };

const stats: DistributionSwarmStats = { type: 'stats', started: 0, ready: 0, synced: 0, drops: 0, errors: {} };

function send(m: FromDistributionSwarm): void {
  process.send?.(m);
}

function countError(code: string): void {
  stats.errors[code] = (stats.errors[code] ?? 0) + 1;
}

interface BenchAgent {
  agent: RunningAgent;
  /** Object name -> epoch ms it was first seen in a committed group / applied. */
  acked: Map<string, number>;
  applied: Map<string, number>;
}
const agents: BenchAgent[] = [];

/** A cluster in memory: server-side apply is a map write; prune deletes what it owns and no longer wants. */
class FakeCluster implements Applier {
  private readonly objects = new Map<string, string>();
  constructor(private readonly onApplied: (names: string[], at: number) => void) {}

  reconcile(input: ReconcileInput): Promise<ReconcileReport> {
    const at = Date.now();
    const reports: ObjectReport[] = [];
    const wanted = new Set<string>();
    for (const { subscription, object } of input.objects) {
      const name = object.metadata.name ?? '';
      const id = `${object.apiVersion}/${object.kind}/${object.metadata.namespace ?? ''}/${name}`;
      wanted.add(id);
      const text = JSON.stringify(object);
      const unchanged = this.objects.get(id) === text;
      this.objects.set(id, text);
      reports.push({
        apiVersion: object.apiVersion,
        kind: object.kind,
        ...(object.metadata.namespace ? { namespace: object.metadata.namespace } : {}),
        name,
        subscriptions: [subscription],
        action: unchanged ? 'unchanged' : 'applied',
        exists: true,
      });
    }
    if (input.allowPrune) {
      for (const id of [...this.objects.keys()]) {
        if (wanted.has(id)) continue;
        this.objects.delete(id);
        const [group, version, kind, namespace, name] = id.split('/');
        const apiVersion = version === undefined ? group! : `${group}/${version}`;
        reports.push({ apiVersion, kind: kind!, ...(namespace ? { namespace } : {}), name: name!, subscriptions: [], action: 'deleted', exists: false });
      }
    }
    this.onApplied(input.objects.map((o) => o.object.metadata.name ?? ''), at);
    return Promise.resolve({ objects: reports, prune: { ran: input.allowPrune, errors: [] } });
  }
}

async function startOne(o: DistributionSwarmStart, index: number, reader: StaticClusterReader): Promise<void> {
  const name = agentName(index);
  const acked = new Map<string, number>();
  const applied = new Map<string, number>();
  const agent = await startAgent(
    {
      parentUrl: o.target,
      parentCaFile: o.caFile,
      clusterRegName: name,
      clusterLabels: o.labels,
      bootstrapToken: o.bootstrapToken,
      cacheDir: join(o.cacheRoot, name),
      clusterStatusUpdateFrequencyMs: 30_000,
      clusterLeaseDurationMs: 90_000,
      registerTimeoutMs: 60_000,
    },
    {
      logger: pino({ level: 'silent' }),
      reader,
      applier: () =>
        new FakeCluster((names, at) => {
          for (const n of names) if (!applied.has(n)) applied.set(n, at);
        }),
    },
  );
  const me: BenchAgent = { agent, acked, applied };
  agents.push(me);
  let synced = false;
  // These agents run Pull (the default gates): they cache, so they have a receiver.
  const receiver = agent.sync;
  if (!receiver) throw new Error(`agent ${name} runs ${agent.syncMode}: the bench needs a caching (Pull) agent`);
  receiver.on('committed', () => {
    const at = Date.now();
    if (!synced) {
      synced = true;
      stats.synced++;
    }
    receiver.desired().then(
      (d) => {
        for (const { object } of d.objects) {
          const name = object.metadata.name ?? '';
          if (!acked.has(name)) acked.set(name, at);
        }
      },
      () => countError('desired-read-failed'),
    );
  });
  let ready = false;
  agent.core.on('state', (s) => {
    if (s.kind === 'ready') {
      ready = true;
      stats.ready++;
      return;
    }
    if (ready) {
      ready = false;
      stats.ready--;
      stats.drops++;
    }
    if (s.kind === 'backing-off') countError(s.reason.code);
  });
}

function start(o: DistributionSwarmStart): void {
  const reader = new StaticClusterReader(benchClusterStatus);
  const began = Date.now();
  // Paced by the clock, not by completions: a slow hub must not slow the offered rate.
  const tick = () => {
    const due = Math.min(o.count, Math.ceil(((Date.now() - began) / 1000) * o.rampPerSec));
    while (stats.started < due) {
      const index = o.first + stats.started++;
      startOne(o, index, reader).catch((err: unknown) => {
        countError('start-failed');
        send({ type: 'fatal', message: `agent ${agentName(index)}: ${(err as Error).message}` });
      });
    }
    if (stats.started < o.count) setTimeout(tick, 20);
  };
  tick();
}

process.on('message', (m: ToDistributionSwarm) => {
  if (m.type === 'start') start(m);
  else if (m.type === 'collect') {
    const acked: number[] = [];
    const applied: number[] = [];
    for (const a of agents) {
      const k = a.acked.get(m.marker);
      if (k !== undefined) acked.push(k);
      const p = a.applied.get(m.marker);
      if (p !== undefined) applied.push(p);
    }
    send({ type: 'times', id: m.id, marker: m.marker, acked, applied });
  }
});
process.on('disconnect', () => process.exit(0));
setInterval(() => send({ ...stats }), 1_000);
