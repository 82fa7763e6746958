import type { Logger } from 'pino';
import { quoteBounded } from '../api/core.js';
import type { CacheOp, OfflineCache } from '../cache/index.js';
import { ErrorCode, Feature, HawserError, wire } from '../tunnel/index.js';
import type { Applier, DesiredObject, ObjectReport, ReconcileReport } from './apply-report.js';
import type { AgentFrameHandler, AgentHandlerFactory, AgentSessionContext, HubFrame } from './router.js';
import { SerialQueue } from './serial.js';
import { toWire } from './sync-apply.js';
import { decodeObject, defaultSyncReceiverOptions, holdFor, type HoldRef, type PruneHold, staleConfirmation, type SyncReceiverOptions } from './sync-receiver.js';
import { readSyncState, type SyncState, syncStateCacheKey } from './sync-state.js';

// Push mode (Clusternet's Push, with the AppPusher gate): the hub drives each
// apply. Every group of objects the hub closes with a SyncEnd is applied at
// once and acknowledged with what the apply did (SyncAck.push_result); the
// hub waits for it (its window) and keeps, in its own store, how far the
// pushes were applied: a reconnect resumes from there. The agent keeps no
// desired state: no object of the set reaches its cache. It keeps only the
// sync state (the incarnation it follows, for the safety rule) and a held
// prune. A snapshot is gathered in memory for the one apply it makes.
//
// Safety rule, as in Pull: a snapshot from another incarnation, or behind the
// revision the agent followed, is applied without prune (HAWSER_SYNC_PRUNE_HELD)
// until an operator confirms; then the hub pushes a snapshot again, which the
// agent prunes against. Deletes of the same incarnation run at once, except
// while a prune is held.

const holdKey = 'sync/hold';
/** Objects one snapshot may hold in memory at most. */
const maxSnapshotObjects = 100_000;

interface Pushed {
  key: wire.SyncObjectKey;
  subscription: string;
  object?: DesiredObject;
}

interface PushRun {
  incarnation: string;
  snapshot: boolean;
  toRevision: number;
  /** The snapshot's objects so far (partial groups). */
  staged: Pushed[];
  pending: Pushed[];
}

export class PushReceiver {
  private readonly options: SyncReceiverOptions;
  private readonly queue = new SerialQueue();

  constructor(
    private readonly cache: OfflineCache,
    private readonly applier: Applier,
    private readonly logger: Logger,
    private readonly now: () => number,
    options: Partial<SyncReceiverOptions> = {},
  ) {
    this.options = { ...defaultSyncReceiverOptions, ...options };
  }

  handlerFactory(): AgentHandlerFactory {
    return (session) => this.sessionHandler(session);
  }

  /** The prune held now, if any. */
  async hold(): Promise<PruneHold | undefined> {
    return this.cache.get<PruneHold>(holdKey);
  }

  /** The operator's confirmation of the hold named; HAWSER_PRUNE_CONFIRM_STALE when it is not the one held. */
  async confirmPrune(named: HoldRef): Promise<void> {
    await this.serial(async () => {
      staleConfirmation(await this.cache.get<PruneHold>(holdKey), named);
      await this.cache.batch([{ type: 'del', key: holdKey }]);
    });
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    return this.queue.run(work);
  }

  private sessionHandler(session: AgentSessionContext): AgentFrameHandler {
    const enabled = session.negotiated.features.has(Feature.Sync);
    let run: PushRun | undefined;
    return {
      name: 'sync',
      kinds: ['syncBegin', 'syncObject', 'syncEnd', 'confirmPrune'],
      queueLimit: 4096,
      admit: (frame) => (enabled ? undefined : new HawserError(ErrorCode.UnexpectedFrame, `${frame.$case} frame on a session without the "sync" feature`)),
      handle: async (frame: HubFrame) => {
        switch (frame.$case) {
          case 'syncBegin':
            run = { incarnation: frame.value.incarnation, snapshot: frame.value.snapshot, toRevision: Number(frame.value.toRevision), staged: [], pending: [] };
            return;
          case 'syncObject': {
            if (!run) throw new HawserError(ErrorCode.SyncProtocol, 'sync object before any SyncBegin');
            if (run.staged.length + run.pending.length >= maxSnapshotObjects) throw new HawserError(ErrorCode.SyncProtocol, `more than ${maxSnapshotObjects} objects in one push`);
            const received = decodeObject(frame.value, session.negotiated.features.has(Feature.LocalDigest));
            const key = frame.value.key!;
            run.pending.push({
              key,
              subscription: frame.value.subscription,
              ...(received.stored?.object ? { object: { subscription: frame.value.subscription, object: received.stored.object } } : {}),
            });
            return;
          }
          case 'syncEnd': {
            if (!run) throw new HawserError(ErrorCode.SyncProtocol, 'sync end before any SyncBegin');
            const r = run;
            const end = frame.value;
            if (end.partial && !r.snapshot) throw new HawserError(ErrorCode.SyncProtocol, `partial SyncEnd ${end.sequence} outside a snapshot`);
            let result: wire.ApplyReport | undefined;
            if (end.partial) {
              r.staged.push(...r.pending);
            } else {
              result = await this.serial(() => (r.snapshot ? this.applySnapshot(r, end, session.ended) : this.applyDeltas(r, end, session.ended)));
              // What follows a snapshot are deltas.
              r.snapshot = false;
              r.staged = [];
            }
            r.pending = [];
            await session.send({ frame: { $case: 'syncAck', value: { incarnation: r.incarnation, revision: end.revision, sequence: end.sequence, ...(result ? { pushResult: result } : {}) } } });
            return;
          }
          case 'confirmPrune':
            try {
              await this.confirmPrune({ incarnation: frame.value.incarnation, revision: Number(frame.value.revision) });
              this.logger.warn({ confirmedBy: quoteBounded(frame.value.confirmedBy, 64) }, 'an operator confirmed the held prune: the next snapshot prunes');
            } catch (err) {
              if (!(err instanceof HawserError) || err.code !== ErrorCode.PruneConfirmStale) throw err;
              this.logger.warn({ code: err.code }, err.message);
            }
            return;
          default:
            return;
        }
      },
    };
  }

  /** The whole set: applied, pruned against unless a hold stands or this snapshot calls for one. */
  private async applySnapshot(r: PushRun, end: wire.SyncEnd, signal: AbortSignal): Promise<wire.ApplyReport> {
    const state = await readSyncState(this.cache, this.logger);
    const previous = await this.cache.get<PruneHold>(holdKey);
    const fresh = holdFor(state, r, undefined, undefined, this.options, this.now());
    const hold = fresh ?? previous;
    const objects = [...r.staged, ...r.pending].flatMap((p) => (p.object ? [p.object] : []));
    const report = await this.applier.reconcile({ objects, allowPrune: !hold, signal });
    const ops: CacheOp[] = [{ type: 'put', key: syncStateCacheKey, value: { hubIncarnation: r.incarnation, lastAckedRevision: Number(end.revision) } satisfies SyncState }];
    if (fresh) {
      ops.push({ type: 'put', key: holdKey, value: fresh });
      this.logger.warn({ code: fresh.code, reason: fresh.reason }, 'pushed snapshot applied without prune: holding prune until an operator confirms');
    }
    await this.cache.batch(ops);
    return toWire(report, Number(end.revision), hold, this.now());
  }

  /** Changes of the incarnation followed: upserts applied, deletes run (held while a prune is held). */
  private async applyDeltas(r: PushRun, end: wire.SyncEnd, signal: AbortSignal): Promise<wire.ApplyReport> {
    const hold = await this.cache.get<PruneHold>(holdKey);
    const upserts = r.pending.flatMap((p) => (p.object ? [p.object] : []));
    const deletes = r.pending.filter((p) => !p.object).map((p) => ({ ...p.key, subscription: p.subscription }));
    const applied: ReconcileReport = upserts.length > 0 ? await this.applier.reconcile({ objects: upserts, allowPrune: false, signal }) : { objects: [], prune: { ran: false, errors: [] } };
    let removed: ObjectReport[] = [];
    if (deletes.length > 0 && !hold) {
      if (!this.applier.remove) throw new HawserError(ErrorCode.Internal, 'this applier cannot delete by name: Push needs one that can');
      removed = await this.applier.remove(deletes, signal);
    }
    await this.cache.put(syncStateCacheKey, { hubIncarnation: r.incarnation, lastAckedRevision: Number(end.revision) } satisfies SyncState);
    return toWire({ objects: [...applied.objects, ...removed], prune: { ran: removed.length > 0, errors: applied.prune.errors } }, Number(end.revision), hold, this.now());
  }
}
