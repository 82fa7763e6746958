import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { quoteBounded } from '../api/index.js';
import { type CacheOp, type OfflineCache, SealError, type SealKey } from '../cache/index.js';
import { defaultMaxFrameBytes, ErrorCode, Feature, FrameDecompressor, HawserError, wire } from '../tunnel/index.js';
import type { DesiredObject } from './apply-report.js';
import type { KubeObject } from './ownership.js';
import type { AgentFrameHandler, AgentHandlerFactory, AgentSessionContext, HubFrame } from './router.js';
import { readSyncState, type SyncState, syncStateCacheKey } from './sync-state.js';

// The agent's side of sync. Each group of objects the hub closes with a
// SyncEnd is written to the offline cache in ONE durable batch together with
// the new sync state ({hubIncarnation, lastAckedRevision}), and only then
// acknowledged: a crash between receiving and acking loses nothing, the hub
// sends the group again. A snapshot is staged (sync/stage/) and swapped in at
// its final SyncEnd, in one batch.
//
// Safety rule (an empty or restored hub never causes mass deletion): a
// snapshot is authoritative, and lets the apply engine prune, only when it
// comes from the incarnation the agent already follows (or the agent held
// nothing) and removes at most maxSnapshotRemovals of the objects the agent
// holds. Otherwise — another incarnation, a hub behind the agent (restored
// from a backup or emptied), or too many removals — the objects the snapshot
// lacks are kept (sync/kept/) and applied still, prune is held
// (HAWSER_SYNC_PRUNE_HELD, sent to the hub in every ApplyReport) until an
// operator confirms (confirmPrune). Deltas of the same incarnation are
// authoritative: a deleted Manifest is deleted in the cluster.

const objectPrefix = 'sync/obj/';
const stagePrefix = 'sync/stage/';
const keptPrefix = 'sync/kept/';
const holdKey = 'sync/hold';
/** Objects one group may hold at most (the hub closes groups far sooner): a hub past it breaks the protocol. */
const maxGroupObjects = 4096;
/** Frames a SyncCompressed may hold: sync's own, never another SyncCompressed. */
const compressibleFrames = new Set(['syncBegin', 'syncObject', 'syncEnd']);

/** What the cache holds per desired object. */
interface StoredObject {
  subscription: string;
  revision: number;
  /** The object, except a Secret when the receiver has a seal key: then `sealed`. */
  object?: KubeObject;
  /** A Secret sealed with AES-256-GCM (base64), bound to its object id. */
  sealed?: string;
}

/** Secrets fed through the hub are encrypted at rest in the agent's cache too. */
function isSecret(object: KubeObject): boolean {
  return object.apiVersion === 'v1' && object.kind === 'Secret';
}

/** The sync frames a SyncCompressed holds, decoded; throws a HawserError for anything else. */
function inflateFrames(decompressor: FrameDecompressor | undefined, compressed: wire.SyncCompressed): HubFrame[] {
  if (!decompressor) throw new HawserError(ErrorCode.UnexpectedFrame, `syncCompressed frame on a session without the "${Feature.CompressionDeflate}" feature`);
  return decompressor.inflate(compressed).map((bytes) => {
    let inner: wire.ConnectResponse;
    try {
      inner = wire.ConnectResponse.decode(bytes);
    } catch (err) {
      throw new HawserError(ErrorCode.SyncProtocol, `a frame of ${bytes.length} bytes inside compressed sync frames does not decode: ${(err as Error).message}`);
    }
    if (!inner.frame || !compressibleFrames.has(inner.frame.$case)) {
      throw new HawserError(ErrorCode.SyncProtocol, `compressed sync frames hold a ${inner.frame?.$case ?? 'empty'} frame; only syncBegin, syncObject and syncEnd may be compressed`);
    }
    return inner.frame;
  });
}

export interface PruneHold {
  code: string;
  reason: string;
  since: number;
}

export interface DesiredSet {
  objects: DesiredObject[];
  /** True only when the set is this cluster's authoritative desired state (see the safety rule). */
  allowPrune: boolean;
  revision: number;
  hold: PruneHold | undefined;
}

export interface SyncReceiverOptions {
  /**
   * The most one SyncCompressed may inflate to (default: the largest frame
   * the transport takes); more is a decompression bomb, refused with
   * HAWSER_SYNC_DECOMPRESSION_LIMIT: the session ends, the next one starts a
   * new context.
   */
  maxDecompressedBytes?: number;
  /** A snapshot that would remove more than this share of the held objects is held (with at least minHeldRemovals). */
  maxRemovalShare: number;
  /** Removals up to this many are never held for their number alone. */
  minHeldRemovals: number;
}

export const defaultSyncReceiverOptions: SyncReceiverOptions = { maxRemovalShare: 0.5, minHeldRemovals: 10 };

function objectId(subscription: string, key: wire.SyncObjectKey): string {
  return [subscription, key.apiVersion, key.kind, key.namespace, key.name].map(encodeURIComponent).join('/');
}

interface Received {
  id: string;
  op: wire.SyncOp;
  stored?: StoredObject;
}

interface Run {
  incarnation: string;
  snapshot: boolean;
  reason: string;
  toRevision: number;
  /** The snapshot was swapped in; what follows are deltas. */
  swapped: boolean;
  pending: Received[];
}

/**
 * Emits 'committed' after every durable group (the apply loop re-reads the
 * desired set). One per agent, across sessions.
 */
export class SyncReceiver extends EventEmitter<{ committed: [] }> {
  private readonly options: SyncReceiverOptions;
  /** Writes on one cache go one at a time (a confirm never interleaves a swap). */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly cache: OfflineCache,
    private readonly logger: Logger,
    private readonly now: () => number,
    options: Partial<SyncReceiverOptions> = {},
    /** Seals Secrets before they reach the cache (the agent's <cache-dir>/secret-key). */
    private readonly sealKey?: SealKey,
  ) {
    super();
    this.options = { ...defaultSyncReceiverOptions, ...options };
  }

  /** For AgentCore.registerHandler. */
  handlerFactory(): AgentHandlerFactory {
    return (session) => this.sessionHandler(session);
  }

  /** The desired set as the cache holds it now: works with the hub unreachable and after a restart. */
  async desired(): Promise<DesiredSet> {
    const view = this.cache.view();
    try {
      const state = (await view.get<SyncState>(syncStateCacheKey)) ?? { hubIncarnation: '', lastAckedRevision: 0 };
      const hold = await view.get<PruneHold>(holdKey);
      const held = await view.range<StoredObject>({ gte: objectPrefix, lt: `${objectPrefix}\uffff` });
      const kept = hold ? await view.range<StoredObject>({ gte: keptPrefix, lt: `${keptPrefix}\uffff` }) : [];
      const objects: DesiredObject[] = [];
      let unreadable = 0;
      for (const [key, stored] of [...held, ...kept]) {
        const object = this.openStored(key.slice(key.indexOf('/', 'sync/'.length) + 1), stored);
        if (object) objects.push({ subscription: stored.subscription, object });
        else unreadable++;
      }
      return {
        objects,
        // An object the agent cannot read is still desired: nothing may be pruned while it is missing.
        allowPrune: !hold && state.hubIncarnation !== '' && unreadable === 0,
        revision: state.lastAckedRevision,
        hold,
      };
    } finally {
      await view.close();
    }
  }

  private sealReceived(received: Received): Received {
    const stored = received.stored;
    if (!stored?.object || !this.sealKey || !isSecret(stored.object)) return received;
    const sealed = this.sealKey.seal(Buffer.from(JSON.stringify(stored.object)), Buffer.from(received.id)).toString('base64');
    return { ...received, stored: { subscription: stored.subscription, revision: stored.revision, sealed } };
  }

  /** The object a cache entry holds, opening a sealed Secret; undefined (logged) when it cannot be read. */
  private openStored(id: string, stored: StoredObject): KubeObject | undefined {
    if (stored.object) return stored.object;
    try {
      if (!stored.sealed || !this.sealKey) throw new SealError('HAWSER_SECRET_KEY_FILE_INVALID', 'a sealed Secret is cached but the agent has no secret key');
      return JSON.parse(this.sealKey.open(Buffer.from(stored.sealed, 'base64'), Buffer.from(id)).toString('utf8')) as KubeObject;
    } catch (err) {
      const code = err instanceof SealError ? err.code : ErrorCode.CacheCorrupt;
      this.logger.error({ code, object: quoteBounded(id, 256) }, `a cached Secret cannot be opened: ${(err as Error).message}`);
      return undefined;
    }
  }

  /** The operator's confirmation: objects kept from before a held snapshot go, and prune runs again. */
  async confirmPrune(): Promise<void> {
    await this.serial(async () => {
      const kept = await this.cache.keys({ gte: keptPrefix, lt: `${keptPrefix}\uffff` });
      await this.cache.batch([...kept.map((key) => ({ type: 'del' as const, key })), { type: 'del', key: holdKey }]);
    });
    this.emit('committed');
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.chain.then(work, work);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private sessionHandler(session: AgentSessionContext): AgentFrameHandler {
    const enabled = session.negotiated.features.has(Feature.Sync);
    let run: Run | undefined;
    // One context per session: a new session never assumes the last one's window.
    const decompressor = session.negotiated.features.has(Feature.CompressionDeflate)
      ? new FrameDecompressor(this.options.maxDecompressedBytes ?? defaultMaxFrameBytes)
      : undefined;
    const handler: AgentFrameHandler = {
      name: 'sync',
      kinds: ['syncBegin', 'syncObject', 'syncEnd', 'syncCompressed'],
      // The hub's window bounds what it sends unacked; this is above it.
      queueLimit: 4096,
      admit: (frame) => (enabled ? undefined : new HawserError(ErrorCode.UnexpectedFrame, `${frame.$case} frame on a session without the "sync" feature`)),
      handle: async (frame: HubFrame) => {
        switch (frame.$case) {
          case 'syncCompressed':
            // The frames it holds are handled as if they came bare, in order.
            for (const inner of inflateFrames(decompressor, frame.value)) await handler.handle(inner);
            return;
          case 'syncBegin':
            run = { incarnation: frame.value.incarnation, snapshot: frame.value.snapshot, reason: frame.value.reason, toRevision: frame.value.toRevision, swapped: false, pending: [] };
            if (run.snapshot) await this.serial(() => this.clearStage());
            return;
          case 'syncObject':
            if (!run) throw new HawserError(ErrorCode.SyncProtocol, 'sync object before any SyncBegin');
            if (run.pending.length >= maxGroupObjects) throw new HawserError(ErrorCode.SyncProtocol, `sync group of more than ${maxGroupObjects} objects without a SyncEnd`);
            run.pending.push(this.sealReceived(decodeObject(frame.value)));
            return;
          case 'syncEnd': {
            if (!run) throw new HawserError(ErrorCode.SyncProtocol, 'sync end before any SyncBegin');
            const r = run;
            const end = frame.value;
            await this.serial(() => this.commit(r, end));
            r.pending = [];
            await session.send({ frame: { $case: 'syncAck', value: { incarnation: r.incarnation, revision: end.revision, sequence: end.sequence } } });
            return;
          }
          default:
            return;
        }
      },
    };
    return handler;
  }

  private async clearStage(): Promise<void> {
    const staged = await this.cache.keys({ gte: stagePrefix, lt: `${stagePrefix}\uffff` });
    if (staged.length > 0) await this.cache.batch(staged.map((key) => ({ type: 'del' as const, key })));
  }

  /** One durable batch per group: the objects and, unless only staged, the new sync state. */
  private async commit(run: Run, end: wire.SyncEnd): Promise<void> {
    if (run.snapshot && !run.swapped) {
      const staging: CacheOp[] = run.pending.filter((r) => r.stored).map((r) => ({ type: 'put', key: stagePrefix + r.id, value: r.stored }));
      if (end.partial) {
        if (staging.length > 0) await this.cache.batch(staging);
        return;
      }
      await this.swap(run, end, staging);
      run.swapped = true;
      this.emit('committed');
      return;
    }
    if (end.partial) throw new HawserError(ErrorCode.SyncProtocol, `partial SyncEnd ${end.sequence} outside a snapshot`);
    const ops: CacheOp[] = [];
    for (const r of run.pending) {
      if (r.op === wire.SyncOp.SYNC_OP_DELETE) ops.push({ type: 'del', key: objectPrefix + r.id }, { type: 'del', key: keptPrefix + r.id });
      else ops.push({ type: 'put', key: objectPrefix + r.id, value: r.stored });
    }
    ops.push({ type: 'put', key: syncStateCacheKey, value: { hubIncarnation: run.incarnation, lastAckedRevision: end.revision } satisfies SyncState });
    await this.cache.batch(ops);
    this.emit('committed');
  }

  private async swap(run: Run, end: wire.SyncEnd, staging: CacheOp[]): Promise<void> {
    const state = await readSyncState(this.cache, this.logger);
    const staged = new Map<string, unknown>((await this.cache.entries<StoredObject>(stagePrefix)).map(([k, v]) => [k.slice(stagePrefix.length), v]));
    for (const op of staging) if (op.type === 'put') staged.set(op.key.slice(stagePrefix.length), op.value);
    const held = await this.cache.entries<StoredObject>(objectPrefix);
    const removed = held.filter(([k]) => !staged.has(k.slice(objectPrefix.length)));
    const hold = this.holdFor(state, run, removed.length, held.length);
    const ops: CacheOp[] = [];
    for (const [key] of await this.cache.entries<unknown>(stagePrefix)) ops.push({ type: 'del', key });
    for (const [key] of removed) ops.push({ type: 'del', key });
    for (const [id, value] of staged) ops.push({ type: 'put', key: objectPrefix + id, value });
    if (hold && removed.length > 0) {
      for (const [key, value] of removed) ops.push({ type: 'put', key: keptPrefix + key.slice(objectPrefix.length), value });
      ops.push({ type: 'put', key: holdKey, value: hold });
      this.logger.warn({ code: hold.code, kept: removed.length, reason: hold.reason }, 'sync snapshot would remove objects: kept them and holding prune until an operator confirms');
    }
    ops.push({ type: 'put', key: syncStateCacheKey, value: { hubIncarnation: run.incarnation, lastAckedRevision: end.revision } satisfies SyncState });
    await this.cache.batch(ops);
  }

  private holdFor(state: SyncState, run: Run, removals: number, held: number): PruneHold | undefined {
    if (removals === 0) return undefined;
    let reason: string | undefined;
    if (state.hubIncarnation !== '' && state.hubIncarnation !== run.incarnation) {
      reason = `snapshot from hub incarnation ${run.incarnation.slice(0, 64)}, not ${state.hubIncarnation.slice(0, 64)} that this agent followed (hub restored or replaced)`;
    } else if (state.hubIncarnation !== '' && state.lastAckedRevision > run.toRevision) {
      reason = `snapshot at revision ${run.toRevision}, behind the ${state.lastAckedRevision} this agent holds (hub restored from a backup or emptied)`;
    } else if (removals > Math.max(this.options.minHeldRemovals, Math.floor(held * this.options.maxRemovalShare))) {
      reason = `snapshot would remove ${removals} of the ${held} objects this agent holds`;
    }
    return reason ? { code: ErrorCode.SyncPruneHeld, reason: `${reason}: ${removals} objects kept; prune held until an operator confirms`, since: this.now() } : undefined;
  }
}

function decodeObject(o: wire.SyncObject): Received {
  if (!o.key) throw new HawserError(ErrorCode.SyncProtocol, 'sync object without a key');
  const id = objectId(o.subscription, o.key);
  if (o.op === wire.SyncOp.SYNC_OP_DELETE) return { id, op: o.op };
  if (o.op !== wire.SyncOp.SYNC_OP_UPSERT) throw new HawserError(ErrorCode.SyncProtocol, `sync object ${id} has op ${o.op}`);
  if (o.encoding !== wire.PayloadEncoding.PAYLOAD_ENCODING_IDENTITY && o.encoding !== wire.PayloadEncoding.PAYLOAD_ENCODING_UNSPECIFIED) {
    throw new HawserError(ErrorCode.SyncProtocol, `sync object ${id} has encoding ${o.encoding}, which this agent did not offer`);
  }
  if (o.chunkCount > 1 || o.chunkIndex !== 0) throw new HawserError(ErrorCode.SyncProtocol, `sync object ${id} is chunk ${o.chunkIndex} of ${o.chunkCount}; chunks were not negotiated`);
  const sha = createHash('sha256').update(o.payload).digest('hex');
  if (sha !== o.contentSha256 || o.payload.length !== Number(o.totalSize)) {
    throw new HawserError(ErrorCode.SyncProtocol, `sync object ${id}: payload of ${o.payload.length} bytes does not match its checksum and size ${o.totalSize}`);
  }
  let object: KubeObject;
  try {
    object = JSON.parse(Buffer.from(o.payload).toString('utf8')) as KubeObject;
  } catch {
    throw new HawserError(ErrorCode.SyncProtocol, `sync object ${id}: payload is not JSON`);
  }
  return { id, op: o.op, stored: { subscription: o.subscription, revision: Number(o.revision), object } };
}
