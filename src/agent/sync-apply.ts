import type { Logger } from 'pino';
import type { SyncMode } from '../api/core.js';
import { type Clock, ErrorCode, Feature, HawserError, type wire } from '../tunnel/index.js';
import { ReconcileLoop } from './apply-loop.js';
import type { Applier, ObjectReport, ReconcileReport } from './apply-report.js';
import type { AgentMetrics } from './metrics.js';
import type { AgentFrameHandler, AgentHandlerFactory, AgentSessionContext } from './router.js';
import type { PruneHold, Refusal, SyncReceiver } from './sync-receiver.js';

// Pull and Dual: the agent applies its cached desired set itself, on every
// committed sync group and every intervalMs, also while the hub is
// unreachable and after its own restart (the set is read from the cache).
// Each pass's report goes to the hub (ApplyReport) when a sync session is up;
// a new session gets the last one at once.

/** Feature gates the agent knows, as Clusternet's --feature-gates. */
export interface AgentFeatureGates {
  /** The hub may push applies (Push and Dual). Default false. */
  AppPusher: boolean;
}

export const defaultFeatureGates: AgentFeatureGates = { AppPusher: false };

/** Parses "AppPusher=true,Other=false"; an unknown gate or value is HAWSER_INVALID_OPTION. */
export function parseFeatureGates(text: string): AgentFeatureGates {
  const gates = { ...defaultFeatureGates };
  for (const part of text.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const match = /^([A-Za-z0-9]+)=(true|false)$/.exec(part);
    if (!match) throw new HawserError(ErrorCode.InvalidOption, `feature-gates entry ${JSON.stringify(part.slice(0, 64))} must be NAME=true|false`);
    const [, name, value] = match;
    if (!(name! in gates)) throw new HawserError(ErrorCode.InvalidOption, `feature-gates: unknown gate ${JSON.stringify(name)}; known: ${Object.keys(gates).join(', ')}`);
    gates[name as keyof AgentFeatureGates] = value === 'true';
  }
  return gates;
}

/**
 * The mode the agent runs: Push or Dual without the AppPusher gate is Pull,
 * as in Clusternet. Push keeps no desired state (src/agent/sync-push.ts);
 * Dual and Pull cache it and reconcile from it, also with the hub away.
 */
export function effectiveSyncMode(mode: SyncMode, gates: AgentFeatureGates): SyncMode {
  if (!gates.AppPusher && (mode === 'Push' || mode === 'Dual')) return 'Pull';
  return mode;
}

export interface SyncApplyOptions {
  receiver: SyncReceiver;
  applier: Applier;
  logger: Logger;
  clock?: Clock;
  /** Drift check period. */
  intervalMs: number;
  /** false (--use-cache-when-disconnected=false): passes run only while a sync session is up. Default true. */
  applyWhileDisconnected?: boolean;
  /** The offline cache's state, sent in every ApplyReport (offline_cache). */
  cacheReport?: () => Promise<wire.OfflineCacheReport>;
  /** Counts passes skipped because the hub is away (applyWhileDisconnected false). */
  metrics?: AgentMetrics;
}

export class SyncApplyLoop {
  private readonly loop: ReconcileLoop;
  private session: AgentSessionContext | undefined;
  private last: wire.ApplyReport | undefined;
  private readonly onCommitted = () => this.loop.trigger();

  constructor(private readonly options: SyncApplyOptions) {
    this.loop = new ReconcileLoop({
      intervalMs: options.intervalMs,
      run: (signal) => this.pass(signal),
      onError: (err) => options.logger.error({ err: (err as Error).message }, 'apply pass failed; trying again at the next interval'),
      ...(options.clock ? { clock: options.clock } : {}),
    });
  }

  get passes(): number {
    return this.loop.passes;
  }

  /** The last report made (and sent when a session was up). */
  get lastReport(): wire.ApplyReport | undefined {
    return this.last;
  }

  start(): void {
    this.options.receiver.on('committed', this.onCommitted);
    this.loop.start();
  }

  /** A pass as soon as possible (e.g. an owned object was deleted by hand). */
  trigger(): void {
    this.loop.trigger();
  }

  async stop(): Promise<void> {
    this.options.receiver.off('committed', this.onCommitted);
    await this.loop.stop();
  }

  /** For AgentCore.registerHandler: tracks the session the reports go to (takes no frames). */
  handlerFactory(): AgentHandlerFactory {
    return (session) => {
      if (session.negotiated.features.has(Feature.Sync)) {
        this.session = session;
        session.ended.addEventListener('abort', () => {
          if (this.session === session) this.session = undefined;
        });
        if (this.last) this.send(this.last);
      }
      const handler: AgentFrameHandler = { name: 'apply-report', kinds: [], queueLimit: 1, handle: () => undefined };
      return handler;
    };
  }

  /**
   * Dual: a pass over the cached set right after a group is committed, whose
   * report goes back in the group's ack (the hub waits for it), not on its own.
   */
  async applyNow(signal?: AbortSignal): Promise<wire.ApplyReport> {
    const desired = await this.options.receiver.desired();
    const report = withRefusals(
      await this.options.applier.reconcile({ objects: desired.objects, allowPrune: desired.allowPrune, ...(signal ? { signal } : {}) }),
      desired.refused,
    );
    const offlineCache = this.options.cacheReport ? await this.options.cacheReport().catch(() => undefined) : undefined;
    this.last = { ...toWire(report, desired.revision, desired.hold, this.options.clock?.now() ?? Date.now()), ...(offlineCache ? { offlineCache } : {}) };
    return this.last;
  }

  /** Passes skipped since the last one that ran (the first is logged). */
  private skipped = 0;

  private async pass(signal: AbortSignal): Promise<void> {
    // With the hub away, the cluster keeps what it has; the next session's commits trigger passes.
    if (this.options.applyWhileDisconnected === false && !this.session) {
      if (this.skipped++ === 0) {
        this.options.logger.info('hub unreachable: the cached desired state is not reconciled until it is back (--use-cache-when-disconnected=false)');
      }
      this.options.metrics?.applyPassesSkipped.inc({});
      return;
    }
    if (this.skipped > 0) this.options.logger.info({ skippedPasses: this.skipped }, 'hub reachable again: reconciling the desired state');
    this.skipped = 0;
    this.send(await this.applyNow(signal));
  }

  private send(report: wire.ApplyReport): void {
    const session = this.session;
    if (!session) return;
    session.send({ frame: { $case: 'applyReport', value: report } }).catch((err: unknown) => {
      this.options.logger.debug({ err: (err as Error).message }, 'apply report not sent; the next session gets the latest');
    });
  }
}

/**
 * Objects sync refused for a limit are errors on their subscription: the row
 * of a copy held from before (applied still) says so too, keeping what the
 * cluster showed of it.
 */
export function withRefusals(report: ReconcileReport, refused: readonly Refusal[]): ReconcileReport {
  if (refused.length === 0) return report;
  const rowKey = (o: { apiVersion: string; kind: string; namespace?: string | undefined; name: string }) => [o.apiVersion, o.kind, o.namespace ?? '', o.name].join('/');
  const byKey = new Map(refused.map((r) => [rowKey(r.key), r]));
  const objects: ObjectReport[] = report.objects.map((o) => {
    const r = byKey.get(rowKey(o));
    if (!r) return o;
    byKey.delete(rowKey(o));
    return { ...o, action: 'error', error: { code: r.code as ErrorCode, message: r.message } };
  });
  for (const r of byKey.values()) {
    objects.push({
      apiVersion: r.key.apiVersion,
      kind: r.key.kind,
      ...(r.key.namespace ? { namespace: r.key.namespace } : {}),
      name: r.key.name,
      subscriptions: [r.subscription],
      action: 'error',
      error: { code: r.code as ErrorCode, message: r.message },
    });
  }
  return { ...report, objects };
}

/** Rows of an ApplyReport add up to this many bytes at most (the frame limit is 4 MiB). */
export const maxApplyReportBytes = 2 * 1024 * 1024;

export function toWire(report: ReconcileReport, revision: number, hold: PruneHold | undefined, now: number): wire.ApplyReport {
  // Errors first, so a report cut to size still says what failed.
  const rows = [...report.objects].sort((a, b) => Number(b.action === 'error') - Number(a.action === 'error'));
  let bytes = 0;
  const kept = rows.filter((o) => (bytes += JSON.stringify(o).length + 32) <= maxApplyReportBytes);
  return {
    revision,
    pruneHeldReason: hold?.reason ?? '',
    pruneHeldIncarnation: hold?.incarnation ?? '',
    pruneHeldRevision: hold?.revision ?? 0,
    pruneRan: report.prune.ran,
    appliedAtUnixMs: now,
    objectsOmitted: rows.length - kept.length,
    objects: kept.map((o) => ({
      key: { apiVersion: o.apiVersion, kind: o.kind, namespace: o.namespace ?? '', name: o.name },
      subscriptions: o.subscriptions,
      action: o.action,
      ...(o.exists === undefined ? {} : { exists: o.exists }),
      errorCode: o.error?.code ?? '',
      errorMessage: o.error?.message ?? '',
      observedStatusJson: o.status ? JSON.stringify(o.status) : '',
    })),
  };
}
