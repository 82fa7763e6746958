import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { defaultMaxObjectBytes, quoteBounded } from '../api/core.js';
import { CacheCorruptError, type CacheOp, type CacheView, type CorruptEntry, type OfflineCache, SealError, type SealKey } from '../cache/index.js';
import { contentSha256, defaultMaxFrameBytes, desiredSetDigest, ErrorCode, Feature, FrameDecompressor, HawserError, syncObjectId, wire } from '../tunnel/index.js';
import type { DesiredObject } from './apply-report.js';
import type { KubeObject } from './ownership.js';
import type { AgentFrameHandler, AgentHandlerFactory, AgentSessionContext, HubFrame } from './router.js';
import { SerialQueue } from './serial.js';
import { ChunkAssembler, isChunkFrame } from './sync-chunks.js';
import { type HelloSyncFields, isSyncState, readSyncState, type SyncState, syncStateCacheKey } from './sync-state.js';

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
/** Objects not taken because they break a limit (the hub's or this agent's): reported on their subscription. */
const refusedPrefix = 'sync/refused/';
const holdKey = 'sync/hold';
/**
 * Set when records of the desired set were quarantined; cleared by the next
 * snapshot swapped in. While set, the set is not trusted for prune.
 */
const untrustedKey = 'sync/untrusted';
/** When the hub last confirmed the desired set (a group committed, a sync session up): for --cache-max-age. */
const confirmedKey = 'sync/confirmed';
/** Records of sync read at start and at every pass: checked, and quarantined when they do not check out. */
const checkedPrefixes = [objectPrefix, keptPrefix, refusedPrefix, stagePrefix] as const;
const checkedKeys = [syncStateCacheKey, holdKey, untrustedKey, confirmedKey] as const;
/** A large object's chunks (sync-chunks.ts): not read with the desired set. */
const partPrefix = 'sync/part/';
/** The key ranges holding checkedKeys and checkedPrefixes: all of sync/ except partPrefix ('0' follows '/'). */
const checkedRanges = [
  { gte: 'sync/', lt: partPrefix },
  { gte: 'sync/part0', lt: 'sync/\uffff' },
] as const;
function checkedRecord(key: string): boolean {
  return (checkedKeys as readonly string[]).includes(key) || checkedPrefixes.some((prefix) => key.startsWith(prefix));
}
/** Where the cache holds objects of the desired set (Push keeps none of them). */
export const desiredSetPrefixes = [objectPrefix, stagePrefix, keptPrefix] as const;
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
  /** Staged in a snapshot only: the object was refused; what the agent held of it stays. */
  refusal?: Refusal;
}

/** An object the agent does not hold because it breaks a limit. */
export interface Refusal {
  subscription: string;
  key: wire.SyncObjectKey;
  code: string;
  message: string;
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
  /** The snapshot that caused the hold (a confirmation must name it); absent in holds from before they were named. */
  incarnation?: string;
  revision?: number;
}

/** What an operator's confirmation names: the hold's snapshot. */
export interface HoldRef {
  incarnation: string;
  revision: number;
}

/** Why the desired set is not trusted for prune: records were quarantined since the last snapshot. */
export interface Untrusted {
  since: number;
  reason: string;
  /** The file the damaged records were moved to. */
  quarantinedTo: string;
}

/** Damaged records found and moved aside (event 'quarantined'). */
export interface QuarantineEvent {
  keys: string[];
  path: string;
  /** The whole database was moved aside (and salvaged), not records. */
  database?: boolean;
}

export interface DesiredSet {
  objects: DesiredObject[];
  /** True only when the set is this cluster's authoritative desired state (see the safety rule). */
  allowPrune: boolean;
  revision: number;
  hold: PruneHold | undefined;
  /** Objects refused for a limit: reported as errors (an older copy held stays desired). */
  refused: Refusal[];
  /** Set while records quarantined since the last snapshot keep prune off. */
  untrusted: Untrusted | undefined;
  /** When the hub last confirmed this set; 0: never. */
  confirmedAt: number;
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
  /** The largest object taken (decoded payload bytes; --max-object-bytes). Larger: HAWSER_SYNC_OBJECT_TOO_LARGE on its subscription. */
  maxObjectBytes: number;
  /** Desired-state bytes the cache holds at most (--cache-size-limit; 0: no limit). Past it: HAWSER_SYNC_CACHE_FULL. */
  maxCacheBytes: number;
}

export const defaultSyncReceiverOptions: SyncReceiverOptions = { maxRemovalShare: 0.5, minHeldRemovals: 10, maxObjectBytes: defaultMaxObjectBytes, maxCacheBytes: 0 };


export interface Received {
  id: string;
  op: wire.SyncOp;
  stored?: StoredObject;
  refusal?: Refusal;
}

interface Run {
  incarnation: string;
  snapshot: boolean;
  reason: string;
  toRevision: number;
  /** The snapshot was swapped in; what follows are deltas. */
  swapped: boolean;
  pending: Received[];
  /** Payload bytes of `pending` (for the cache size limit). */
  pendingBytes: number;
  /** Written with the group: the chunks of objects completed in it. */
  cleanup: CacheOp[];
  /** The content sha256 of a chunked object refused at its first chunk: its other chunks are acked, not kept. */
  skipping: string | undefined;
}

/**
 * Emits 'committed' after every durable group (the apply loop re-reads the
 * desired set). One per agent, across sessions.
 */
export class SyncReceiver extends EventEmitter<{ committed: []; quarantined: [QuarantineEvent] }> {
  private readonly options: SyncReceiverOptions;
  /**
   * Dual (AppPusher): applies the cached set once a group is durable; its
   * report goes back in the group's ack, so the hub drives each apply and
   * waits for it. Unset (Pull): the ack says only that the group is durable.
   */
  applyOnCommit: ((signal: AbortSignal) => Promise<wire.ApplyReport>) | undefined;
  /** Writes on one cache go one at a time (a confirm never interleaves a swap). */
  private readonly queue = new SerialQueue();
  private readonly chunks: ChunkAssembler;
  /** Bytes of each desired object the cache holds (sync/obj/, sync/kept/), read once; undefined: read it again. */
  private sizes: Map<string, number> | undefined;
  private sizesTotal = 0;
  /**
   * Set by the cache monitor while the database's files take more than
   * --cache-size-limit even compacted (the bytes they take): objects that
   * would grow the desired state are refused until it is back under.
   */
  databaseBytesOverLimit: number | undefined;

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
    this.chunks = new ChunkAssembler(cache, logger);
  }

  /** For AgentCore.registerHelloSync: the partial large object held and this agent's object limit. */
  async helloFields(): Promise<HelloSyncFields> {
    const partialObject = await this.serial(() => this.chunks.helloPartial());
    return { ...(partialObject ? { partialObject } : {}), maxObjectBytes: this.options.maxObjectBytes };
  }

  /** For AgentCore.registerHandler. */
  handlerFactory(): AgentHandlerFactory {
    return (session) => this.sessionHandler(session);
  }

  /**
   * The desired set as the cache holds it now: works with the hub
   * unreachable and after a restart. Records that do not check out are
   * quarantined (see quarantine) and left out; the rest is returned.
   *
   * Prune rule: prune needs a desired set the agent trusts. Every record read
   * checked out, no record has been quarantined since the last snapshot from
   * the hub was swapped in (sync/untrusted), the agent follows a hub
   * incarnation, no prune is held, and every Secret opened. A record gone bad
   * therefore never removes its object from the cluster.
   */
  async desired(): Promise<DesiredSet> {
    const read = await this.readAll();
    if (read.corrupt.length > 0) await this.serial(() => this.quarantine(read.corrupt.map((c) => c.key)));
    const state = (read.single.get(syncStateCacheKey) as SyncState | undefined) ?? { hubIncarnation: '', lastAckedRevision: 0 };
    const hold = namedHold(read.single.get(holdKey) as PruneHold | undefined, state);
    const untrusted = read.corrupt.length > 0 ? await this.cache.get<Untrusted>(untrustedKey).catch(() => undefined) : (read.single.get(untrustedKey) as Untrusted | undefined);
    const objects: DesiredObject[] = [];
    let unreadable = 0;
    for (const [key, stored] of [...(read.ranges.get(objectPrefix) ?? []), ...(hold ? (read.ranges.get(keptPrefix) ?? []) : [])]) {
      const object = this.openStored(key.slice(key.indexOf('/', 'sync/'.length) + 1), stored as StoredObject);
      if (object) objects.push({ subscription: (stored as StoredObject).subscription, object });
      else unreadable++;
    }
    return {
      objects,
      // An object the agent cannot read is still desired: nothing may be pruned while it is missing.
      allowPrune: !hold && !untrusted && read.corrupt.length === 0 && state.hubIncarnation !== '' && unreadable === 0,
      revision: state.lastAckedRevision,
      hold,
      refused: (read.ranges.get(refusedPrefix) ?? []).map(([, r]) => r as Refusal),
      untrusted: untrusted ?? (read.corrupt.length > 0 ? { since: this.now(), reason: 'records quarantined', quarantinedTo: '' } : undefined),
      confirmedAt: (read.single.get(confirmedKey) as { atUnixMs?: number } | undefined)?.atUnixMs ?? 0,
    };
  }

  /**
   * readChecked on a view. LevelDB itself reporting corruption (a damaged
   * table file) salvages the database in place once (moved aside, repaired
   * copy opened, set untrusted) and reads again.
   */
  private async readAll(): Promise<Awaited<ReturnType<SyncReceiver['readChecked']>>> {
    for (let attempt = 0; ; attempt++) {
      const view = this.cache.view();
      try {
        return await this.readChecked(view);
      } catch (err) {
        if (!(err instanceof CacheCorruptError) || err.key !== undefined || attempt > 0) throw err;
      } finally {
        await view.close().catch(() => undefined);
      }
      await this.serial(async () => {
        const q = await this.cache.salvageInPlace(this.now);
        this.sizes = undefined;
        this.logger.error({ code: ErrorCode.CacheCorrupt, quarantinedTo: q.path, salvaged: q.salvaged }, 'offline cache: LevelDB reported corruption; database moved aside and salvaged; reconciling what checks out without prune, asking the hub for a snapshot');
        await this.cache.batch([{ type: 'put', key: untrustedKey, value: { since: this.now(), reason: 'database salvaged after LevelDB reported corruption', quarantinedTo: q.path } satisfies Untrusted }, ...(await this.resetRevisionOps())]);
        this.emit('quarantined', { keys: [], path: q.path, database: true });
      });
    }
  }

  /**
   * Every record sync keeps, read from one view, checksums verified one by one.
   * Two iterators over sync/ (skipping a large object's chunks under sync/part/,
   * which have their own checksum and may be megabytes), not one per key and
   * prefix: a LevelDB iterator costs ~0.5 ms of CPU even on an empty cache,
   * and every apply pass (each commit, every --apply-interval) reads this.
   */
  private async readChecked(view: CacheView): Promise<{ single: Map<string, unknown>; ranges: Map<string, Array<[string, unknown]>>; corrupt: CorruptEntry[] }> {
    const corrupt: CorruptEntry[] = [];
    const single = new Map<string, unknown>();
    const ranges = new Map<string, Array<[string, unknown]>>(checkedPrefixes.map((prefix) => [prefix, []]));
    for (const range of checkedRanges) {
      const scanned = await view.scan<unknown>(range);
      // Only sync's own records: another key in these ranges is someone else's to check.
      corrupt.push(...scanned.corrupt.filter((c) => checkedRecord(c.key)));
      for (const [key, value] of scanned.entries) {
        if ((checkedKeys as readonly string[]).includes(key)) single.set(key, value);
        else ranges.get(checkedPrefixes.find((prefix) => key.startsWith(prefix)) ?? '')?.push([key, value]);
      }
    }
    if (single.has(syncStateCacheKey) && !isSyncState(single.get(syncStateCacheKey))) {
      corrupt.push({ key: syncStateCacheKey, raw: JSON.stringify(single.get(syncStateCacheKey)).slice(0, 65536), reason: 'not a sync state' });
      single.delete(syncStateCacheKey);
    }
    return { single, ranges, corrupt };
  }

  /**
   * Checks every record of the desired set and quarantines the damaged ones
   * (at start, before the first hello, so that hello asks for a snapshot).
   * Returns how many were quarantined.
   */
  async verify(): Promise<number> {
    const { corrupt } = await this.readAll();
    if (corrupt.length === 0) return 0;
    return this.serial(() => this.quarantine(corrupt.map((c) => c.key)));
  }

  /**
   * Marks the whole desired set untrusted (a damaged database was salvaged:
   * records may be missing without a trace): no prune until a snapshot, and
   * the next hello asks for one.
   */
  async distrust(reason: string, quarantinedTo: string): Promise<void> {
    await this.serial(async () => {
      await this.cache.batch([{ type: 'put', key: untrustedKey, value: { since: this.now(), reason, quarantinedTo } satisfies Untrusted }, ...(await this.resetRevisionOps())]);
    });
  }

  /**
   * Moves the records at `keys` that still do not check out to a file beside
   * the database (kept for an operator), and in the same batch marks the set
   * untrusted and sets the acked revision to 0, so the next hello asks the
   * hub for everything (first-sync snapshot). One log line; the
   * 'quarantined' event feeds the metric and the hello's cache_quarantines.
   */
  private async quarantine(keys: readonly string[]): Promise<number> {
    const still: CorruptEntry[] = [];
    for (const key of new Set(keys)) {
      const { entries, corrupt } = await this.cache.scan<unknown>({ gte: key, lte: key });
      if (corrupt[0]) still.push(corrupt[0]);
      else if (key === syncStateCacheKey && entries[0] && !isSyncState(entries[0][1])) still.push({ key, raw: JSON.stringify(entries[0][1]).slice(0, 65536), reason: 'not a sync state' });
    }
    if (still.length === 0) return 0;
    const reason = `${still.length} damaged record(s) of the desired state quarantined`;
    const marker = (path: string): CacheOp => ({ type: 'put', key: untrustedKey, value: { since: this.now(), reason, quarantinedTo: path } satisfies Untrusted });
    const reset = still.some((c) => c.key === syncStateCacheKey) ? [] : await this.resetRevisionOps();
    // The file first, then one batch: the records go, the marker and the reset come (a crash between leaves the records, found again).
    const path = await this.cache.quarantineEntries(still, (file) => [marker(file), ...reset], this.now());
    this.sizes = undefined;
    this.logger.error(
      { code: ErrorCode.CacheCorrupt, records: still.length, keys: still.slice(0, 5).map((c) => quoteBounded(c.key, 200)), quarantinedTo: path },
      'offline cache: damaged desired-state records moved aside; reconciling the rest without prune, and asking the hub for a snapshot',
    );
    this.emit('quarantined', { keys: still.map((c) => c.key), path });
    return still.length;
  }

  /** Sets the acked revision to 0, keeping the incarnation: the next hello asks for a snapshot. */
  private async resetRevisionOps(): Promise<CacheOp[]> {
    const state = await readSyncState(this.cache, this.logger);
    if (state.lastAckedRevision === 0) return [];
    return [{ type: 'put', key: syncStateCacheKey, value: { hubIncarnation: state.hubIncarnation, lastAckedRevision: 0 } satisfies SyncState }];
  }

  /** Records that the hub confirmed the set now (a sync session is up). Not durable: losing it only makes the set look older. */
  async confirm(): Promise<void> {
    await this.serial(() => this.cache.put(confirmedKey, { atUnixMs: this.now() }, { durable: false }));
  }

  /** Desired-state bytes held (sync/obj/, sync/kept/), as counted for --cache-size-limit. */
  async desiredBytes(): Promise<number> {
    await this.serial(() => this.loadSizes());
    return this.sizesTotal;
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

  /**
   * The operator's confirmation: objects kept from before a held snapshot go,
   * and prune runs again. With `named`, only when the hold is the one named
   * (HAWSER_PRUNE_CONFIRM_STALE otherwise, nothing changed): a confirmation
   * never approves a later hold.
   */
  async confirmPrune(named?: HoldRef): Promise<void> {
    await this.serial(async () => {
      const hold = namedHold(await this.cache.get<PruneHold>(holdKey), await readSyncState(this.cache, this.logger));
      if (named) staleConfirmation(hold, named);
      const kept = await this.cache.keys({ gte: keptPrefix, lt: `${keptPrefix}\uffff` });
      await this.cache.batch([...kept.map((key) => ({ type: 'del' as const, key })), { type: 'del', key: holdKey }]);
    });
    this.emit('committed');
  }

  /**
   * The hello's desired_digest: over what the agent holds at its last acked
   * revision (sync/obj/; objects kept by a hold are not the hub's). An object
   * it cannot read counts with a hash no hub sends, so the hub snapshots.
   */
  async digest(): Promise<string> {
    const entries: Array<{ id: string; sha256: string }> = [];
    const { entries: held, corrupt } = await this.cache.scan<StoredObject>({ gte: objectPrefix, lt: `${objectPrefix}\uffff` });
    // Untrusted (records were quarantined): a digest no hub computes, so it sends a snapshot.
    if (corrupt.length > 0 || (await this.cache.get<Untrusted>(untrustedKey).catch(() => ({}) as Untrusted))) return 'untrusted';
    for (const [key, stored] of held) {
      const id = key.slice(objectPrefix.length);
      const object = this.openStored(id, stored);
      entries.push({ id, sha256: object ? contentSha256(JSON.stringify(object)) : 'unreadable' });
    }
    return desiredSetDigest(entries);
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    return this.queue.run(work);
  }

  private sessionHandler(session: AgentSessionContext): AgentFrameHandler {
    const enabled = session.negotiated.features.has(Feature.Sync);
    const chunked = enabled && session.negotiated.features.has(Feature.Chunks);
    let run: Run | undefined;
    // One context per session: a new session never assumes the last one's window.
    const decompressor = session.negotiated.features.has(Feature.CompressionDeflate)
      ? new FrameDecompressor(this.options.maxDecompressedBytes ?? defaultMaxFrameBytes)
      : undefined;
    const handler: AgentFrameHandler = {
      name: 'sync',
      kinds: ['syncBegin', 'syncObject', 'syncEnd', 'syncCompressed', 'confirmPrune'],
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
            run = {
              incarnation: frame.value.incarnation,
              snapshot: frame.value.snapshot,
              reason: frame.value.reason,
              toRevision: frame.value.toRevision,
              swapped: false,
              pending: [],
              pendingBytes: 0,
              cleanup: [],
              skipping: undefined,
            };
            if (run.snapshot) await this.serial(() => this.clearStage());
            return;
          case 'syncObject':
            if (!run) throw new HawserError(ErrorCode.SyncProtocol, 'sync object before any SyncBegin');
            if (run.pending.length >= maxGroupObjects) throw new HawserError(ErrorCode.SyncProtocol, `sync group of more than ${maxGroupObjects} objects without a SyncEnd`);
            await this.receiveObject(run, frame.value, chunked, session);
            return;
          case 'syncEnd': {
            if (!run) throw new HawserError(ErrorCode.SyncProtocol, 'sync end before any SyncBegin');
            const r = run;
            const end = frame.value;
            await this.serial(() => this.commit(r, end));
            if (r.cleanup.length > 0) this.chunks.committed();
            r.pending = [];
            r.pendingBytes = 0;
            r.cleanup = [];
            const result = !end.partial && this.applyOnCommit ? await this.applyOnCommit(session.ended) : undefined;
            await session.send({ frame: { $case: 'syncAck', value: { incarnation: r.incarnation, revision: end.revision, sequence: end.sequence, ...(result ? { pushResult: result } : {}) } } });
            return;
          }
          case 'confirmPrune':
            await this.confirmed(frame.value);
            return;
          default:
            return;
        }
      },
    };
    return handler;
  }

  /**
   * One SyncObject frame: a whole object, a refusal from the hub, or a chunk
   * (feature "chunks"), each chunk durable and acked before the next. An
   * object past this agent's limits is not taken: a refusal goes in the group
   * instead (reported on its subscription), and the stream goes on.
   */
  private async receiveObject(run: Run, o: wire.SyncObject, chunked: boolean, session: AgentSessionContext): Promise<void> {
    const id = objectKeyId(o);
    if (o.refusedCode) {
      if (!chunked) throw new HawserError(ErrorCode.SyncProtocol, `sync object ${id} refused by the hub, but "chunks" was not negotiated`);
      run.pending.push(this.refusedReceived(id, o, o.refusedCode, o.refusedMessage ?? ''));
      return;
    }
    const isChunk = isChunkFrame(o);
    if (isChunk && !chunked) throw new HawserError(ErrorCode.SyncProtocol, `sync object ${id} is chunk ${o.chunkIndex} of ${o.chunkCount}; chunks were not negotiated`);
    const first = !isChunk || Number(o.chunkOffset ?? 0) === 0;
    if (isChunk && !first && run.skipping === o.contentSha256) {
      await session.send({ frame: { $case: 'syncChunkAck', value: chunkAck(run.incarnation, o) } });
      return;
    }
    if (first && o.op === wire.SyncOp.SYNC_OP_UPSERT) {
      // A first chunk replaces the object held in part; a whole object comes beside it.
      const limit = await this.limitProblem(run, id, Number(o.totalSize), isChunk ? 0 : await this.serial(() => this.chunks.heldBytes()));
      if (limit) {
        run.pending.push(this.refusedReceived(id, o, limit.code, limit.message));
        this.logger.error({ code: limit.code, object: quoteBounded(id, 200), bytes: Number(o.totalSize) }, `sync object not taken: ${limit.message}`);
        if (isChunk) {
          run.skipping = o.contentSha256;
          await session.send({ frame: { $case: 'syncChunkAck', value: chunkAck(run.incarnation, o) } });
        }
        return;
      }
    }
    if (!isChunk) {
      run.pending.push(this.sealReceived(decodeObject(o, session.negotiated.features.has(Feature.LocalDigest))));
      run.pendingBytes += o.payload.length;
      // A whole copy (or a delete) of the object held in part: the chunks go with this group.
      run.cleanup.push(...(await this.serial(() => this.chunks.supersededOps(id))));
      return;
    }
    run.skipping = undefined;
    // A payload encoding applies to each chunk's slice on its own; this build sends chunks as they are.
    if (o.encoding !== wire.PayloadEncoding.PAYLOAD_ENCODING_IDENTITY && o.encoding !== wire.PayloadEncoding.PAYLOAD_ENCODING_UNSPECIFIED) {
      throw new HawserError(ErrorCode.SyncProtocol, `sync object ${id}: chunk with encoding ${o.encoding}, which this agent did not offer`);
    }
    const outcome = await this.serial(() => this.chunks.accept(id, run.incarnation, o));
    await session.send({ frame: { $case: 'syncChunkAck', value: outcome.ack } });
    if (outcome.kind === 'complete') {
      // The reassembled payload is decoded already.
      const whole = { ...o, encoding: wire.PayloadEncoding.PAYLOAD_ENCODING_IDENTITY, payload: outcome.payload, chunkIndex: 0, chunkCount: 1, chunkOffset: 0 };
      run.pending.push(this.sealReceived(decodeObject(whole)));
      run.pendingBytes += outcome.payload.length;
      run.cleanup.push(...outcome.cleanup);
    }
  }

  private refusedReceived(id: string, o: wire.SyncObject, code: string, message: string): Received {
    const refusal: Refusal = { subscription: o.subscription, key: o.key!, code: code.slice(0, 64), message: quoteBounded(message, 1024) };
    return { id, op: wire.SyncOp.SYNC_OP_UPSERT, refusal };
  }

  /** Why an object of `bytes` cannot be taken, if it cannot. */
  private async limitProblem(run: Run, id: string, bytes: number, partBytes: number): Promise<{ code: ErrorCode; message: string } | undefined> {
    const { maxObjectBytes, maxCacheBytes } = this.options;
    if (bytes > maxObjectBytes) {
      return { code: ErrorCode.SyncObjectTooLarge, message: `${bytes} bytes exceed the agent's --max-object-bytes of ${maxObjectBytes}` };
    }
    if (maxCacheBytes <= 0) return undefined;
    const sizes = await this.serial(() => this.loadSizes());
    const before = sizes.get(objectPrefix + id) ?? 0;
    // The database takes more than the limit on disk even compacted: no growth, only what shrinks or stays.
    if (this.databaseBytesOverLimit !== undefined && bytes > before) {
      return {
        code: ErrorCode.SyncCacheFull,
        message: `the offline cache's database takes ${this.databaseBytesOverLimit} bytes on disk even compacted, past its --cache-size-limit of ${maxCacheBytes}: ${bytes} bytes (held before: ${before}) not taken`,
      };
    }
    const held = this.sizesTotal - before + run.pendingBytes + partBytes;
    if (held + bytes > maxCacheBytes) {
      return { code: ErrorCode.SyncCacheFull, message: `${bytes} bytes would take the desired state this agent caches to ${held + bytes}, past its --cache-size-limit of ${maxCacheBytes}` };
    }
    return undefined;
  }

  private async loadSizes(): Promise<Map<string, number>> {
    if (this.sizes) return this.sizes;
    const sizes = new Map<string, number>();
    let total = 0;
    for (const prefix of [objectPrefix, keptPrefix]) {
      for (const key of await this.cache.keys({ gte: prefix, lt: `${prefix}\uffff` })) {
        const value = await this.cache.get<unknown>(key).catch(() => undefined);
        const size = value === undefined ? 0 : JSON.stringify(value).length;
        sizes.set(key, size);
        total += size;
      }
    }
    this.sizes = sizes;
    this.sizesTotal = total;
    return sizes;
  }

  /** Keeps the byte count in step with a batch just written. */
  private sized(ops: readonly CacheOp[]): void {
    const sizes = this.sizes;
    if (!sizes) return;
    for (const op of ops) {
      if (!op.key.startsWith(objectPrefix) && !op.key.startsWith(keptPrefix)) continue;
      this.sizesTotal -= sizes.get(op.key) ?? 0;
      sizes.delete(op.key);
      if (op.type === 'put') {
        const size = JSON.stringify(op.value).length;
        sizes.set(op.key, size);
        this.sizesTotal += size;
      }
    }
  }

  /** A ConfirmPrune from the hub: applied when it names the hold, logged and ignored when stale. */
  private async confirmed(c: wire.ConfirmPrune): Promise<void> {
    try {
      await this.confirmPrune({ incarnation: c.incarnation, revision: Number(c.revision) });
      this.logger.warn({ confirmedBy: quoteBounded(c.confirmedBy, 64), incarnation: quoteBounded(c.incarnation, 64), revision: Number(c.revision) }, 'an operator confirmed the held prune: prune runs again');
    } catch (err) {
      if (!(err instanceof HawserError) || err.code !== ErrorCode.PruneConfirmStale) throw err;
      this.logger.warn({ code: err.code, confirmedBy: quoteBounded(c.confirmedBy, 64) }, err.message);
    }
  }

  private async clearStage(): Promise<void> {
    const staged = await this.cache.keys({ gte: stagePrefix, lt: `${stagePrefix}\uffff` });
    if (staged.length > 0) await this.cache.batch(staged.map((key) => ({ type: 'del' as const, key })));
  }

  /** One durable batch per group: the objects and, unless only staged, the new sync state. */
  private async commit(run: Run, end: wire.SyncEnd): Promise<void> {
    if (run.snapshot && !run.swapped) {
      const staging: CacheOp[] = run.pending
        .filter((r) => r.stored || r.refusal)
        .map((r) => ({ type: 'put', key: stagePrefix + r.id, value: r.stored ?? ({ subscription: r.refusal!.subscription, revision: 0, refusal: r.refusal } satisfies StoredObject) }));
      if (end.partial) {
        if (staging.length > 0 || run.cleanup.length > 0) await this.cache.batch([...staging, ...run.cleanup]);
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
      if (r.op === wire.SyncOp.SYNC_OP_DELETE) ops.push({ type: 'del', key: objectPrefix + r.id }, { type: 'del', key: keptPrefix + r.id }, { type: 'del', key: refusedPrefix + r.id });
      // Refused: what the agent held of it stays desired (never pruned for a limit).
      else if (r.refusal) ops.push({ type: 'put', key: refusedPrefix + r.id, value: r.refusal });
      else ops.push({ type: 'put', key: objectPrefix + r.id, value: r.stored }, { type: 'del', key: refusedPrefix + r.id });
    }
    ops.push(...run.cleanup);
    ops.push({ type: 'put', key: syncStateCacheKey, value: { hubIncarnation: run.incarnation, lastAckedRevision: end.revision } satisfies SyncState });
    ops.push({ type: 'put', key: confirmedKey, value: { atUnixMs: this.now() } });
    await this.cache.batch(ops);
    this.sized(ops);
    this.emit('committed');
  }

  private async swap(run: Run, end: wire.SyncEnd, staging: CacheOp[]): Promise<void> {
    const stage = await this.cache.scan<StoredObject>({ gte: stagePrefix, lt: `${stagePrefix}\uffff` });
    if (stage.corrupt.length > 0) {
      // A staged object went bad: this snapshot is incomplete. Drop it; the next hello asks for another.
      await this.quarantine(stage.corrupt.map((c) => c.key));
      throw new HawserError(ErrorCode.CacheCorrupt, `${stage.corrupt.length} staged object(s) of the snapshot at revision ${end.revision} are damaged in the offline cache: asking the hub for the snapshot again`);
    }
    // Damaged held objects: moved aside; the snapshot says what is desired.
    const damaged = (await this.cache.scan<StoredObject>({ gte: objectPrefix, lt: `${objectPrefix}\uffff` })).corrupt;
    if (damaged.length > 0) await this.quarantine(damaged.map((c) => c.key));
    const state = await readSyncState(this.cache, this.logger);
    const staged = new Map<string, unknown>(stage.entries.map(([k, v]) => [k.slice(stagePrefix.length), v]));
    for (const op of staging) if (op.type === 'put') staged.set(op.key.slice(stagePrefix.length), op.value);
    const held = await this.cache.entries<StoredObject>(objectPrefix);
    // A refused object of the snapshot keeps the copy held of it: not a removal.
    const removed = held.filter(([k]) => !staged.has(k.slice(objectPrefix.length)));
    const hold = holdFor(state, run, removed.length, held.length, this.options, this.now());
    const ops: CacheOp[] = [];
    for (const key of await this.cache.keys({ gte: stagePrefix, lt: `${stagePrefix}\uffff` })) ops.push({ type: 'del', key });
    for (const [key] of removed) ops.push({ type: 'del', key });
    for (const key of await this.cache.keys({ gte: refusedPrefix, lt: `${refusedPrefix}\uffff` })) ops.push({ type: 'del', key });
    for (const [id, value] of staged) {
      const refusal = (value as StoredObject).refusal;
      if (refusal) ops.push({ type: 'put', key: refusedPrefix + id, value: refusal });
      else ops.push({ type: 'put', key: objectPrefix + id, value });
    }
    ops.push(...run.cleanup);
    if (hold && removed.length > 0) {
      for (const [key, value] of removed) ops.push({ type: 'put', key: keptPrefix + key.slice(objectPrefix.length), value });
      ops.push({ type: 'put', key: holdKey, value: hold });
      this.logger.warn({ code: hold.code, kept: removed.length, reason: hold.reason }, 'sync snapshot would remove objects: kept them and holding prune until an operator confirms');
    }
    ops.push({ type: 'put', key: syncStateCacheKey, value: { hubIncarnation: run.incarnation, lastAckedRevision: end.revision } satisfies SyncState });
    // A whole snapshot from the hub: the set is trusted again, and confirmed now.
    ops.push({ type: 'del', key: untrustedKey }, { type: 'put', key: confirmedKey, value: { atUnixMs: this.now() } });
    await this.cache.batch(ops);
    this.sizes = undefined;
  }

}

/**
 * The hold a snapshot calls for, or undefined. `removals`/`held` count the
 * objects it would remove of those held; undefined (Push: the agent holds no
 * set) checks the incarnation and revision only.
 */
export function holdFor(
  state: SyncState,
  snapshot: { incarnation: string; toRevision: number },
  removals: number | undefined,
  held: number | undefined,
  options: Pick<SyncReceiverOptions, 'maxRemovalShare' | 'minHeldRemovals'>,
  now: number,
): PruneHold | undefined {
  if (removals === 0) return undefined;
  let reason: string | undefined;
  if (state.hubIncarnation !== '' && state.hubIncarnation !== snapshot.incarnation) {
    reason = `snapshot from hub incarnation ${snapshot.incarnation.slice(0, 64)}, not ${state.hubIncarnation.slice(0, 64)} that this agent followed (hub restored or replaced)`;
  } else if (state.hubIncarnation !== '' && state.lastAckedRevision > snapshot.toRevision) {
    reason = `snapshot at revision ${snapshot.toRevision}, behind the ${state.lastAckedRevision} this agent holds (hub restored from a backup or emptied)`;
  } else if (removals !== undefined && held !== undefined && removals > Math.max(options.minHeldRemovals, Math.floor(held * options.maxRemovalShare))) {
    reason = `snapshot would remove ${removals} of the ${held} objects this agent holds`;
  }
  if (!reason) return undefined;
  const kept = removals === undefined ? 'objects it lacks are kept' : `${removals} objects kept`;
  return { code: ErrorCode.SyncPruneHeld, reason: `${reason}: ${kept}; prune held until an operator confirms`, since: now, incarnation: snapshot.incarnation, revision: snapshot.toRevision };
}

/**
 * A hold stored before holds named their snapshot names the one the agent
 * swapped in with it (its sync state then), so an operator can still confirm it.
 */
function namedHold(hold: PruneHold | undefined, state: SyncState): PruneHold | undefined {
  if (!hold || hold.incarnation !== undefined) return hold;
  return { ...hold, incarnation: state.hubIncarnation, revision: state.lastAckedRevision };
}

/** Throws HAWSER_PRUNE_CONFIRM_STALE unless `hold` is the one `named`. */
export function staleConfirmation(hold: PruneHold | undefined, named: HoldRef): void {
  if (!hold) throw new HawserError(ErrorCode.PruneConfirmStale, `no prune is held: confirmation of incarnation ${quoteBounded(named.incarnation, 64)} revision ${named.revision} released nothing`);
  if (hold.incarnation !== named.incarnation || hold.revision !== named.revision) {
    throw new HawserError(
      ErrorCode.PruneConfirmStale,
      `the held prune is for incarnation ${quoteBounded(hold.incarnation ?? '', 64)} revision ${hold.revision ?? 0}, not incarnation ${quoteBounded(named.incarnation, 64)} revision ${named.revision}: nothing released`,
    );
  }
}

function objectKeyId(o: wire.SyncObject): string {
  if (!o.key) throw new HawserError(ErrorCode.SyncProtocol, 'sync object without a key');
  return syncObjectId(o.subscription, o.key);
}

/** The ack of a chunk this agent does not keep (its object was refused): frees the hub's window all the same. */
function chunkAck(incarnation: string, o: wire.SyncObject): wire.SyncChunkAck {
  return { incarnation, key: o.key, subscription: o.subscription, contentSha256: o.contentSha256, chunkIndex: o.chunkIndex, receivedBytes: Number(o.chunkOffset ?? 0) + o.payload.length };
}

/**
 * A whole object's frame, checked against its size and sha256. With the
 * feature "sync.local-digest" the hub may leave the sha256 out: the payload's
 * own digest is then all there is (TLS and each compressed run's CRC-32 guard
 * it on the way); one that is sent is still checked.
 */
export function decodeObject(o: wire.SyncObject, localDigest = false): Received {
  const id = objectKeyId(o);
  if (o.op === wire.SyncOp.SYNC_OP_DELETE) return { id, op: o.op };
  if (o.op !== wire.SyncOp.SYNC_OP_UPSERT) throw new HawserError(ErrorCode.SyncProtocol, `sync object ${id} has op ${o.op}`);
  if (o.encoding !== wire.PayloadEncoding.PAYLOAD_ENCODING_IDENTITY && o.encoding !== wire.PayloadEncoding.PAYLOAD_ENCODING_UNSPECIFIED) {
    throw new HawserError(ErrorCode.SyncProtocol, `sync object ${id} has encoding ${o.encoding}, which this agent did not offer`);
  }
  if (o.chunkCount > 1 || o.chunkIndex !== 0) throw new HawserError(ErrorCode.SyncProtocol, `sync object ${id} is chunk ${o.chunkIndex} of ${o.chunkCount}; chunks were not negotiated`);
  const sha = createHash('sha256').update(o.payload).digest('hex');
  if ((sha !== o.contentSha256 && !(localDigest && o.contentSha256 === '')) || o.payload.length !== Number(o.totalSize)) {
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
