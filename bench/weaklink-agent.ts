// One real agent for bench/weaklink, in a process of its own (forked, IPC to
// the orchestrator): startAgent as `hawser agent` runs it, applying to the
// kube-apiserver of its kubeconfig, or (--cluster fake) to a cluster in
// memory as bench/distribution's agents do. It reports every heartbeat
// round trip, every committed sync group (the desired objects it holds then)
// and every apply report.
import { pino } from 'pino';
import { type Applier, type ReconcileInput, type ReconcileReport, StaticClusterReader, startAgent } from '../src/agent/index.js';
import { benchClusterStatus } from './common.js';

export interface WeaklinkAgentStart {
  type: 'start';
  parentUrl: string;
  caFile: string;
  cacheDir: string;
  bootstrapToken: string;
  leaseDurationMs: number;
  enableCompression: boolean;
  /** Absent: a cluster in memory. */
  kubeconfig?: string;
}

export type FromWeaklinkAgent =
  | { type: 'state'; at: number; kind: string; code?: string }
  | { type: 'rtt'; at: number; ms: number }
  | { type: 'committed'; at: number; objects: number }
  | { type: 'report'; at: number; objects: number; errors: number; firstError?: string }
  | { type: 'fatal'; message: string };

const send = (m: FromWeaklinkAgent) => process.send?.(m);

/** Server-side apply as a map write. */
class MemoryCluster implements Applier {
  reconcile(input: ReconcileInput): Promise<ReconcileReport> {
    return Promise.resolve({
      objects: input.objects.map(({ subscription, object }) => ({
        apiVersion: object.apiVersion,
        kind: object.kind,
        ...(object.metadata.namespace ? { namespace: object.metadata.namespace } : {}),
        name: object.metadata.name ?? '',
        subscriptions: [subscription],
        action: 'applied' as const,
        exists: true,
      })),
      prune: { ran: input.allowPrune, errors: [] },
    });
  }
}

async function start(o: WeaklinkAgentStart): Promise<void> {
  const agent = await startAgent(
    {
      parentUrl: o.parentUrl,
      parentCaFile: o.caFile,
      clusterRegName: 'weaklink',
      clusterLabels: { bench: 'weaklink' },
      bootstrapToken: o.bootstrapToken,
      cacheDir: o.cacheDir,
      clusterLeaseDurationMs: o.leaseDurationMs,
      enableCompression: o.enableCompression,
      // Every other flag at the agent's defaults (main's reconnect behaviour).
      ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}),
    },
    {
      logger: pino({ level: 'warn' }, pino.destination(2)),
      ...(o.kubeconfig ? {} : { reader: new StaticClusterReader(benchClusterStatus), applier: () => new MemoryCluster() }),
    },
  );
  agent.core.on('rtt', (ms: number) => send({ type: 'rtt', at: Date.now(), ms }));
  agent.core.on('state', (s: { kind: string; reason?: { code?: string } }) => send({ type: 'state', at: Date.now(), kind: s.kind, ...(s.reason?.code ? { code: s.reason.code } : {}) }));
  const receiver = agent.sync;
  if (!receiver || !agent.apply) throw new Error(`the agent runs ${agent.syncMode}: the bench needs a caching agent`);
  receiver.on('committed', () => {
    const at = Date.now();
    receiver.desired().then(
      (d) => send({ type: 'committed', at, objects: d.objects.length }),
      (err: unknown) => send({ type: 'fatal', message: `desired(): ${(err as Error).message}` }),
    );
  });
  let last: unknown;
  setInterval(() => {
    const report = agent.apply?.lastReport;
    if (!report || report === last) return;
    last = report;
    const failed = report.objects.filter((x) => x.errorCode !== '');
    send({ type: 'report', at: Date.now(), objects: report.objects.length, errors: failed.length, ...(failed[0] ? { firstError: `${failed[0].key?.kind} ${failed[0].key?.name}: ${failed[0].errorCode}` } : {}) });
  }, 100);
}

process.on('message', (m: WeaklinkAgentStart) => {
  if (m.type === 'start') start(m).catch((err: unknown) => send({ type: 'fatal', message: (err as Error).stack ?? String(err) }));
});
