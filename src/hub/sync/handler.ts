import type { Logger } from 'pino';
import { boundedText, defaultMaxObjectBytes, type SyncMode } from '../../api/index.js';
import { contentSha256, defaultMaxFrameBytes, desiredSetDigest, ErrorCode, Feature, FrameCompressor, HawserError, syncObjectId, toHawserError, wire } from '../../tunnel/index.js';
import type { HubMetrics } from '../metrics.js';
import type { FrameHandler, HandlerFactory, SessionContext } from '../session.js';
import { type Entry, type HubStore, type KubeObject, parseResourceVersion } from '../store.js';
import { ChunkWindow, chunkTag, planChunks, resumePointFor } from './chunks.js';
import { type FeedChange, ManifestFanout } from './fanout.js';
import { frameBytes, type ManifestContent, manifestContent, objectPayload, refusedObjectFrame, syncChunkFrame, syncObjectFrame } from './objects.js';
import { readSyncStatus, writeApplyReport, writeSyncMode } from './status.js';

// The hub's side of sync, one per session with the "sync" feature. The
// revisioned log of a cluster is the store's watch of Manifests in the
// cluster's dedicated namespace: revisions are resourceVersions, the
// incarnation is the store's uid.
//
// - Same incarnation, a revision the store still has history for: only the
//   changes since then (deltas).
// - Otherwise (first sync, another incarnation, the agent ahead of the store
//   because the hub was restored or emptied, or history compacted past it):
//   a snapshot at the list's revision, then deltas. The agent decides what a
//   snapshot may delete (src/agent/sync-receiver.ts); the hub never asks.
//
// Objects go in groups, each closed by a SyncEnd the agent acknowledges once
// the group is durable. At most windowFrames frames / windowBytes bytes are
// unacknowledged: a slow agent holds the hub back, not the hub's memory, and
// the control stream keeps room for heartbeats.

export interface SyncOptions {
  /**
   * With compression negotiated, SyncBegin and whole-object frames queue
   * until this many bytes wait, then go as one SyncCompressed (longer runs
   * compress better). Every other frame (a group's end, a chunk) flushes the
   * run at once, and so does every wait for an ack: the agent acks only what
   * it received.
   */
  compressFlushBytes: number;
  /** Unacknowledged object frames at most. */
  windowFrames: number;
  /** Unacknowledged object bytes at most. */
  windowBytes: number;
  /** A group closes at this many objects (or bytes) so acks flow while a large set is sent. */
  groupFrames: number;
  groupBytes: number;
  /** Without the "chunks" feature, an object frame larger than this is not sent: HAWSER_SYNC_OBJECT_TOO_LARGE. */
  maxObjectFrameBytes: number;
  /** With "chunks": an object payload larger than this goes in chunks of this size (--sync-chunk-bytes). */
  chunkBytes: number;
  /** Chunk bytes sent and not yet acknowledged at most (an empty window always takes one chunk). */
  chunkWindowBytes: number;
  /**
   * Sync bytes on the wire (compressed, as sent) not yet acknowledged at
   * most, groups and chunks together. What is beyond the link's
   * bandwidth-delay product waits in the socket and toxiproxy-like middle
   * boxes ahead of every heartbeat ack, so this bounds how long one waits
   * and how long a cancelled transfer keeps the link busy. Groups close at
   * half of it so acks keep flowing.
   */
  inFlightBytes: number;
  /** The largest object payload sent (--max-object-bytes); larger ones are refused on their subscription's status. */
  maxObjectBytes: number;
}

// Sync shares the control stream. Heartbeat acks overtake sync frames queued
// in the hub (src/tunnel/queue.ts) but not what the socket and the link hold
// already: inFlightBytes bounds that. windowFrames/windowBytes bound what the
// agent holds unacknowledged (before compression).
export const defaultSyncOptions: SyncOptions = {
  compressFlushBytes: 64 * 1024,
  windowFrames: 256,
  windowBytes: 1024 * 1024,
  groupFrames: 64,
  groupBytes: 256 * 1024,
  // Room for the frame's envelope under the transport's limit.
  maxObjectFrameBytes: defaultMaxFrameBytes - 16 * 1024,
  // One chunk takes 1 s at 32 KB/s: a heartbeat ack waits behind at most that
  // much of a large object, whatever its size.
  chunkBytes: 32 * 1024,
  chunkWindowBytes: 128 * 1024,
  // At 32 KB/s with 300 ms each way the link holds ~20 KB: the rest, about one
  // chunk, is queue a heartbeat ack waits behind.
  inFlightBytes: 48 * 1024,
  maxObjectBytes: defaultMaxObjectBytes,
};

/** What sync sent, per cluster, over the hub's life (tests and benchmarks count bytes here). */
export interface ClusterSyncCounters {
  objectFrames: number;
  /** Bytes of every sync frame sent as it went on the wire (protobuf encoding; SyncCompressed when compressed). */
  bytes: number;
  /** The same frames before compression (equal to bytes without it). */
  rawBytes: number;
  /** SyncCompressed frames sent, and of them those that started a new context. */
  compressedFrames: number;
  compressionResets: number;
  /** Frame bytes queued for the next compressed run now (0 whenever the sender waits for an ack). */
  queuedBytes: number;
  snapshots: number;
  /** Objects refused as too large, by "kind namespace/name". */
  tooLarge: string[];
  /** Chunk frames sent (feature "chunks"). */
  chunkFrames: number;
  /** Payload bytes of large objects not sent again because the agent held them from a cut transfer. */
  resumedBytes: number;
  /** Large objects not sent because a newer change of theirs was already in the store. */
  superseded: number;
  /** Large objects whose transfer stopped part way because a newer change of theirs came (feature "chunks"). */
  abandoned: number;
  /** Changes not sent because a newer change of the same Manifest waited behind them. */
  coalesced: number;
  /** The most sync bytes on the wire and not acknowledged at once (inFlightBytes bounds it, give or take one frame). */
  peakInFlightBytes: number;
  /** The highest revision the agent acknowledged to this hub run, and of which incarnation (a later hello must not start behind it). */
  acked: { incarnation: string; revision: number };
  /** Sessions whose hello resumed behind a revision the agent had acknowledged to this hub run. */
  ackedLost: number;
}

export class SyncStats {
  private readonly clusters = new Map<string, ClusterSyncCounters>();
  of(cluster: string): ClusterSyncCounters {
    let c = this.clusters.get(cluster);
    if (!c) this.clusters.set(cluster, (c = { objectFrames: 0, bytes: 0, rawBytes: 0, compressedFrames: 0, compressionResets: 0, queuedBytes: 0, snapshots: 0, tooLarge: [], chunkFrames: 0, resumedBytes: 0, superseded: 0, abandoned: 0, coalesced: 0, peakInFlightBytes: 0, acked: { incarnation: '', revision: 0 }, ackedLost: 0 }));
    return c;
  }
}

export interface SyncDeps {
  store: HubStore;
  logger: Logger;
  /** Sync bytes, chunks, resumed bytes and refusals are exported here too. */
  metrics?: HubMetrics;
  stats?: SyncStats;
  options?: Partial<SyncOptions>;
  /** The Manifest watch shared by sessions; one of its own by default. */
  feed?: ManifestFanout;
  /** Live sync sessions by cluster (for confirm-prune); one per hub. */
  sessions?: SyncSessions;
}

/** The live sync session of each cluster: what an operator's command reaches. */
export class SyncSessions {
  private readonly live = new Map<string, SessionSync>();
  /** @internal */
  add(s: SessionSync): void {
    this.live.set(s.clusterName, s);
    s.ended.addEventListener('abort', () => {
      if (this.live.get(s.clusterName) === s) this.live.delete(s.clusterName);
    }, { once: true });
  }
  get(clusterName: string): SessionSync | undefined {
    return this.live.get(clusterName);
  }
}

/** Registers with HubCore.registerHandler: every session that negotiated "sync" gets its Manifests. */
export function syncHandlerFactory(deps: SyncDeps): HandlerFactory {
  const options = { ...defaultSyncOptions, ...deps.options };
  const stats = deps.stats ?? new SyncStats();
  // One store watch of Manifests for every session (fanout.ts).
  const feed = deps.feed ?? new ManifestFanout(deps.store);
  return (session) => {
    const s = new SessionSync(session, deps.store, deps.logger, options, stats.of(session.clusterName), feed, deps.metrics);
    deps.sessions?.add(s);
    return s;
  };
}

const modeFromWire: Partial<Record<wire.SyncMode, SyncMode>> = {
  [wire.SyncMode.SYNC_MODE_PUSH]: 'Push',
  [wire.SyncMode.SYNC_MODE_PULL]: 'Pull',
  [wire.SyncMode.SYNC_MODE_DUAL]: 'Dual',
};

/**
 * The digest of a cluster's Manifests as the agent computes it over what it
 * holds (src/tunnel/sync-digest.ts), or undefined when it cannot be known at
 * `revision`: a Manifest written after it (the hub keeps no older content).
 * A deletion after `revision` cannot be seen here: it makes a mismatch, and a
 * snapshot, which is correct, only not the cheapest.
 */
export function manifestsDigestAt(items: ReadonlyArray<Entry<'Manifest'>>, revision: number): string | undefined {
  const entries: Array<{ id: string; sha256: string }> = [];
  for (const item of items) {
    if (parseResourceVersion(item.resourceVersion) > revision) return undefined;
    const content = manifestContent(item.object);
    if (!content.template) continue;
    entries.push({ id: syncObjectId(content.subscription, content.key), sha256: contentSha256(JSON.stringify(content.template)) });
  }
  return desiredSetDigest(entries);
}

interface Group {
  sequence: number;
  frames: number;
  bytes: number;
  /** Bytes of it on the wire so far (compressed). */
  wire: number;
  /** Its SyncEnd is on the wire: an ack for it will come. */
  ended: boolean;
}

const newGroup = (sequence: number, frames = 0): Group => ({ sequence, frames, bytes: 0, wire: 0, ended: false });

export class SessionSync implements FrameHandler {
  readonly name = 'sync';
  /** The mode the agent runs; undefined from an agent before the hello said it (it caches: served as Dual). */
  readonly syncMode: SyncMode | undefined;
  /** Push: the agent applies each group and acks with its result; the hub's record is where sync resumes. */
  private readonly push: boolean;
  /** A push result had errors: the record stays where it was, so a reconnect re-pushes from there. */
  private pushBlocked = false;
  /** An operator asked for a new snapshot (Push, after confirm-prune): the delta loop ends and one is sent. */
  private resnapshot: string | undefined;
  readonly kinds = ['syncAck', 'syncChunkAck', 'applyReport'] as const;
  readonly queueLimit = 64;
  private readonly enabled: boolean;
  /** Feature "chunks": large objects in chunks, refusals sent to the agent. */
  private readonly chunked: boolean;
  private readonly chunkWindow = new ChunkWindow();
  /** Where the agent's cut transfer stopped; used by the first chunked object and then dropped. */
  private resumePartial: wire.SyncPartialObject | undefined;
  /** The smaller of the hub's limit and the agent's own. */
  private readonly maxObjectBytes: number;
  private incarnation = '';
  private namespace = '';
  private sequence = 0;
  /** Groups sent and not acknowledged, oldest first. */
  private readonly inFlight: Group[] = [];
  private open: Group | undefined;
  /** Revision of the last object sent: a group closed before the next object ends here. */
  private lastSent = 0;
  /** Sequences of groups that end a snapshot: their push result replaces the status rows. */
  private readonly snapshotSequences = new Set<number>();
  private wake: (() => void) | undefined;
  private readonly stop = new AbortController();
  /** Whole objects go without their sha256 (feature "sync.local-digest"); chunks keep it. */
  private readonly localDigest: boolean;
  /** The session's compression context, when negotiated (a new session: a new context). */
  private readonly compressor: FrameCompressor | undefined;
  /** This session's sync bytes before and after compression: the ratio that sizes groups on the wire. */
  private rawSent = 0;
  private wireSent = 0;

  constructor(
    private readonly session: SessionContext,
    private readonly store: HubStore,
    private readonly logger: Logger,
    private readonly options: SyncOptions,
    private readonly counters: ClusterSyncCounters,
    private readonly feed: ManifestFanout,
    private readonly metrics?: HubMetrics,
  ) {
    this.enabled = session.negotiated.features.has(Feature.Sync);
    this.chunked = this.enabled && session.negotiated.features.has(Feature.Chunks);
    this.localDigest = this.enabled && session.negotiated.features.has(Feature.LocalDigest);
    this.resumePartial = this.chunked ? session.resume.partialObject : undefined;
    const agentLimit = this.chunked ? (session.resume.maxObjectBytes ?? 0) : 0;
    this.maxObjectBytes = agentLimit > 0 ? Math.min(agentLimit, options.maxObjectBytes) : options.maxObjectBytes;
    this.syncMode = modeFromWire[session.resume.syncModeInEffect ?? wire.SyncMode.SYNC_MODE_UNSPECIFIED];
    this.push = this.syncMode === 'Push';
    session.ended.addEventListener('abort', () => this.close(), { once: true });
    this.compressor = session.negotiated.features.has(Feature.CompressionDeflate) ? new FrameCompressor() : undefined;
    if (this.enabled) void this.run().catch((err: unknown) => this.failed(err));
  }

  admit(frame: wire.ConnectRequest['frame']): HawserError | undefined {
    if (!this.enabled) return new HawserError(ErrorCode.UnexpectedFrame, `${frame?.$case} frame on a session without the "sync" feature`);
    return undefined;
  }

  get clusterName(): string {
    return this.session.clusterName;
  }

  get ended(): AbortSignal {
    return this.session.ended;
  }

  async handle(frame: NonNullable<wire.ConnectRequest['frame']>): Promise<void> {
    if (frame.$case === 'syncAck') {
      this.acked(frame.value);
      if (frame.value.pushResult) await this.pushed(frame.value, frame.value.pushResult);
      return;
    }
    if (frame.$case === 'syncChunkAck') return this.chunkAcked(frame.value);
    if (frame.$case === 'applyReport' && this.namespace) {
      await writeApplyReport(this.store, this.namespace, this.session.clusterName, frame.value, this.syncMode ? { syncMode: this.syncMode } : {});
    }
  }

  /**
   * A Push group's result: merged into the cluster's status (a snapshot's
   * replaces it), and the hub's record of what was applied moves to the
   * group's revision, unless this or an earlier push of the session failed.
   */
  private async pushed(ack: wire.SyncAck, result: wire.ApplyReport): Promise<void> {
    if (this.syncMode === 'Dual') {
      // Dual: a pass over the agent's whole cached set; the agent's cache, not the hub's record, is where it resumes.
      await writeApplyReport(this.store, this.namespace, this.session.clusterName, result, { syncMode: 'Dual' });
      return;
    }
    if (!this.push) throw new HawserError(ErrorCode.SyncProtocol, `a push result from an agent that runs ${this.syncMode ?? 'an unknown mode'}`);
    if (result.objects.some((o) => o.errorCode !== '')) this.pushBlocked = true;
    const snapshot = this.snapshotSequences.delete(Number(ack.sequence));
    await writeApplyReport(this.store, this.namespace, this.session.clusterName, result, {
      syncMode: 'Push',
      merge: !snapshot,
      ...(this.pushBlocked ? {} : { push: { incarnation: this.incarnation, revision: Number(ack.revision) } }),
    });
  }

  /**
   * Sends the agent an operator's confirmation of the hold it names. A Push
   * agent holds no desired set to prune from: a snapshot follows, which it
   * prunes against now that the hold is gone.
   */
  async confirmPrune(named: { incarnation: string; revision: number }, confirmedBy: string): Promise<void> {
    await this.session.send({ frame: { $case: 'confirmPrune', value: { incarnation: named.incarnation, revision: named.revision, confirmedBy } } });
    if (this.push) {
      this.resnapshot = 'prune-confirmed';
      this.wake?.();
    }
  }

  close(): void {
    this.stop.abort();
    this.wake?.();
  }

  /**
   * An agent that comes back holding less than it acknowledged lost durable
   * state (a cache that did not survive a crash, or was wiped): counted and
   * logged, then synced from where it stands.
   */
  private checkResume(incarnation: string, resumeRevision: number): void {
    const cluster = this.session.clusterName;
    this.metrics?.syncResumeRevision.set({ cluster }, resumeRevision);
    const acked = this.counters.acked;
    if (acked.incarnation !== incarnation || resumeRevision >= acked.revision) return;
    this.counters.ackedLost++;
    this.metrics?.syncAckedLost.inc({ cluster });
    this.logger.error({ cluster, code: ErrorCode.SyncAckedRevisionLost, acked: acked.revision, resumed: resumeRevision }, 'agent resumed behind a revision it had acknowledged');
  }

  private acked(ack: wire.SyncAck): void {
    if (ack.incarnation !== this.incarnation || !this.inFlight.some((g) => g.sequence === ack.sequence)) {
      throw new HawserError(ErrorCode.SyncProtocol, `sync ack for group ${ack.sequence} of incarnation ${boundedText(ack.incarnation, 64)} was never sent on this session`);
    }
    const revision = Number(ack.revision);
    const acked = this.counters.acked;
    if (acked.incarnation !== ack.incarnation || revision > acked.revision) {
      this.counters.acked = { incarnation: ack.incarnation, revision };
      this.metrics?.syncAckedRevision.set({ cluster: this.session.clusterName }, revision);
    }
    while (this.inFlight.length > 0 && this.inFlight[0]!.sequence <= ack.sequence) this.inFlight.shift();
    this.wake?.();
  }

  private chunkAcked(ack: wire.SyncChunkAck): void {
    if (!this.chunked || ack.incarnation !== this.incarnation || !this.chunkWindow.acked(chunkTag(ack.subscription, ack.key, ack.contentSha256), ack.chunkIndex)) {
      throw new HawserError(ErrorCode.SyncProtocol, `sync chunk ack for chunk ${ack.chunkIndex} of ${boundedText(ack.key?.name ?? '', 64)} was never sent on this session`);
    }
    this.wake?.();
  }

  private failed(err: unknown): void {
    if (this.stop.signal.aborted) return;
    const e = toHawserError(err);
    if (e.code === ErrorCode.StoreClosed) return;
    this.logger.error({ cluster: this.session.clusterName, code: e.code, err: e.message }, 'sync stopped for this session; it starts again when the agent reconnects');
  }

  private async run(): Promise<void> {
    // The resume point is worked out in a frame of its own: run() waits for the whole
    // session, and what its frame holds (the ManagedCluster, a listing) would stay with it.
    const start = await this.resumePoint();
    let reason = start.reason;
    let revision: number;
    if (!reason) {
      const first = await this.deltas(start.from, { from: start.from, to: start.current });
      if (first === 'ended') return;
      if (first === 'too-old') reason = 'history-compacted';
      revision = first === 'too-old' ? 0 : start.from;
    }
    for (;;) {
      if (reason || this.resnapshot) {
        reason ||= this.resnapshot!;
        this.resnapshot = undefined;
        revision = await this.snapshot(reason);
        reason = '';
      }
      if ((await this.deltas(revision!, undefined)) !== 'restart') return;
    }
  }

  /** Where this session's sync starts: deltas from `from` (up to `current`), or a snapshot for `reason`. */
  private async resumePoint(): Promise<{ reason: string; from: number; current: number }> {
    const cluster = await this.store.get('ManagedCluster', this.session.clusterName);
    this.namespace = cluster?.metadata.namespace ?? '';
    if (!this.namespace) throw new HawserError(ErrorCode.NotFound, `cluster ${this.session.clusterName} has no dedicated namespace`);
    if (this.syncMode) await writeSyncMode(this.store, this.namespace, this.session.clusterName, this.syncMode);
    const info = await this.store.info();
    this.incarnation = info.uid;
    const current = parseResourceVersion(info.resourceVersion);
    // A Push agent keeps nothing: its sync resumes where the hub's record of its applied pushes says.
    const record = this.push ? (await readSyncStatus(this.store, this.namespace, this.session.clusterName))?.push : undefined;
    const { hubIncarnation, lastAckedRevision } = this.push
      ? { hubIncarnation: record?.incarnation ?? '', lastAckedRevision: record?.revision ?? 0 }
      : this.session.resume;
    if (!this.push) this.checkResume(info.uid, hubIncarnation === info.uid ? lastAckedRevision : 0);
    let reason = '';
    if (hubIncarnation === '' || lastAckedRevision === 0) reason = 'first-sync';
    else if (hubIncarnation !== info.uid) reason = 'other-incarnation';
    else if (lastAckedRevision > current) reason = 'agent-ahead';
    else if (!this.push && this.session.resume.desiredDigest) {
      const listed = await this.store.list('Manifest', { namespace: this.namespace });
      const ours = manifestsDigestAt(listed.items, lastAckedRevision);
      if (ours !== undefined && ours !== this.session.resume.desiredDigest) reason = 'digest-mismatch';
    }
    return { reason, from: lastAckedRevision, current };
  }

  /** Everything in the cluster's namespace at one revision; returns it. */
  private async snapshot(reason: string): Promise<number> {
    const listed = await this.store.list('Manifest', { namespace: this.namespace });
    const revision = parseResourceVersion(listed.resourceVersion);
    this.counters.snapshots++;
    this.metrics?.syncSnapshots.inc({ cluster: this.session.clusterName, reason });
    this.logger.info({ cluster: this.session.clusterName, reason, revision, objects: listed.items.length }, 'sync: sending a snapshot');
    await this.sendFrame({ frame: { $case: 'syncBegin', value: { incarnation: this.incarnation, fromRevision: 0, snapshot: true, toRevision: revision, reason } } });
    for (const item of listed.items) {
      if (this.stop.signal.aborted) return revision;
      await this.sendObject(item.object, parseResourceVersion(item.resourceVersion), wire.SyncOp.SYNC_OP_UPSERT, true, revision);
    }
    await this.endGroup(revision, false, true, true);
    return revision;
  }

  /**
   * Watches from `from` and sends each change. With `begin`, a SyncBegin for
   * deltas goes out before the first change; a compacted history before any
   * change is 'too-old' (the caller snapshots instead).
   */
  private async deltas(from: number, begin: { from: number; to: number } | undefined): Promise<'too-old' | 'ended' | 'restart'> {
    const queue: FeedChange[] = [];
    // The newest revision queued of each Manifest: a change with a newer one behind it is not sent.
    const newest = new Map<string, number>();
    let notify: (() => void) | undefined;
    const watching = new AbortController();
    const stopWatching = () => watching.abort();
    this.stop.signal.addEventListener('abort', stopWatching, { once: true });
    const reader = this.feed.follow(
      this.namespace,
      from,
      (change) => {
        queue.push(change);
        if (change.type === 'event') newest.set(change.event.object.metadata.name, parseResourceVersion(change.event.resourceVersion));
        notify?.();
      },
      watching.signal,
    );
    let begun = false;
    let last = from;
    try {
      while (!this.stop.signal.aborted) {
        if (this.resnapshot) {
          if (this.open) await this.endGroup(last, false, false);
          return 'restart';
        }
        const change = queue.shift();
        if (!change) {
          // Nothing more ready: close the group so the agent can store and ack it.
          if (this.open) await this.endGroup(last, false, false);
          // Idle: the session holds no compression window; the next change starts a context from the dictionary.
          this.compressor?.reset();
          await new Promise<void>((resolve) => {
            notify = resolve;
            this.wake = resolve;
            if (queue.length > 0 || this.stop.signal.aborted || this.resnapshot) resolve();
          });
          notify = undefined;
          continue;
        }
        if (change.type === 'failed') {
          const error = toHawserError(change.error);
          if (!begun && begin && error.code === ErrorCode.ResourceVersionTooOld) return 'too-old';
          throw error;
        }
        if (!begun && begin) {
          await this.sendFrame({
            frame: { $case: 'syncBegin', value: { incarnation: this.incarnation, fromRevision: begin.from, snapshot: false, toRevision: begin.to, reason: '' } },
          });
        }
        begun = true;
        const { event } = change;
        const revision = parseResourceVersion(event.resourceVersion);
        const name = event.object.metadata.name;
        // Changed again since (a subscription changed mid-transfer): only the newer rendering goes.
        if ((newest.get(name) ?? revision) > revision) {
          this.counters.coalesced++;
          continue;
        }
        last = revision;
        const op = event.type === 'DELETED' ? wire.SyncOp.SYNC_OP_DELETE : wire.SyncOp.SYNC_OP_UPSERT;
        await this.sendObject(event.object, last, op, false, last, () => (newest.get(name) ?? revision) > revision);
        if (newest.get(name) === revision) newest.delete(name);
      }
      return 'ended';
    } finally {
      this.stop.signal.removeEventListener('abort', stopWatching);
      watching.abort();
      await reader;
    }
  }

  /** `newer` tells whether a newer change of this Manifest waits in the feed (deltas only: a snapshot sends every object it listed). */
  private async sendObject(manifest: KubeObject, revision: number, op: wire.SyncOp, partial: boolean, groupRevision: number, newer?: () => boolean): Promise<void> {
    const content = manifestContent(manifest);
    const payload = objectPayload(content, op);
    if (payload.length > this.maxObjectBytes) {
      const limit = this.maxObjectBytes < this.options.maxObjectBytes ? "the agent's --max-object-bytes" : "the hub's --max-object-bytes";
      return this.refuse(content, revision, payload.length, `${payload.length} bytes exceed ${limit} of ${this.maxObjectBytes}`, partial, groupRevision);
    }
    if (this.chunked && payload.length > this.options.chunkBytes) {
      // A change the watch replays may be stale already: a large one is not worth sending when a newer one follows.
      if (!partial && (await this.superseded(manifest, revision))) return;
      return this.sendChunked(content, revision, op, payload, partial, groupRevision, newer);
    }
    const frame = syncObjectFrame(content, revision, op, payload, { localDigest: this.localDigest });
    const bytes = frameBytes(frame);
    if (bytes > this.options.maxObjectFrameBytes) {
      return this.refuse(content, revision, payload.length, `a frame of ${bytes} bytes exceeds ${this.options.maxObjectFrameBytes} and the agent did not offer "chunks"`, partial, groupRevision);
    }
    await this.sendInGroup(frame, bytes, revision, partial, groupRevision);
  }

  /** One object frame in the open group (closing it first when full). */
  private async sendInGroup(frame: wire.ConnectResponse, bytes: number, revision: number, partial: boolean, groupRevision: number): Promise<void> {
    if (this.open && (this.open.frames >= this.options.groupFrames || this.open.bytes + bytes > this.options.groupBytes || this.groupWireFull(bytes))) {
      await this.endGroup(partial ? groupRevision : this.lastSent, partial, false);
    }
    await this.waitForWindow(bytes);
    const group = (this.open ??= newGroup(++this.sequence));
    group.frames++;
    group.bytes += bytes;
    this.counters.objectFrames++;
    this.lastSent = revision;
    group.wire += await this.sendFrame(frame, bytes);
  }

  /**
   * The open group would pass half the in-flight bound on the wire with a
   * frame of `bytes` more (what waits for compression counted at the
   * session's ratio so far): it closes, so its ack can come while the next
   * one is sent.
   */
  private groupWireFull(bytes: number): boolean {
    if (!this.open) return false;
    const ratio = this.rawSent > 0 ? Math.min(1, this.wireSent / this.rawSent) : 1;
    const waiting = (this.compressor?.pendingBytes ?? 0) + bytes;
    return this.open.wire + waiting * ratio > this.options.inFlightBytes / 2;
  }

  /**
   * An object past a limit is not sent. With "chunks" the agent hears of it
   * (a refused frame in the group), keeps what it held and reports the code
   * on the object's subscription; an older agent only misses it (logged).
   */
  private async refuse(content: ManifestContent, revision: number, size: number, why: string, partial: boolean, groupRevision: number): Promise<void> {
    const what = `${content.key.kind} ${content.key.namespace}/${content.key.name}`;
    this.counters.tooLarge.push(what);
    this.metrics?.syncRefused.inc({ cluster: this.session.clusterName, code: ErrorCode.SyncObjectTooLarge });
    const message = `${what} of subscription ${content.subscription}: ${why}`;
    this.logger.error({ cluster: this.session.clusterName, code: ErrorCode.SyncObjectTooLarge, object: what, bytes: size }, `object not synced: ${message}`);
    if (!this.chunked) return;
    const frame = refusedObjectFrame(content, revision, size, ErrorCode.SyncObjectTooLarge, message);
    await this.sendInGroup(frame, frameBytes(frame), revision, partial, groupRevision);
  }

  /**
   * A large object in chunks, in a group of its own (what came before is
   * acked on its own; the object commits as soon as its last chunk is in).
   * At most chunkWindowBytes wait for the agent's chunk acks, so heartbeat
   * acks never queue behind more. A transfer the agent holds part of (its
   * hello) resumes where it stopped when the content is still the same.
   */
  private async sendChunked(
    content: ManifestContent,
    revision: number,
    op: wire.SyncOp,
    payload: Buffer,
    partial: boolean,
    groupRevision: number,
    newer: (() => boolean) | undefined,
  ): Promise<void> {
    if (this.open) await this.endGroup(partial ? groupRevision : this.lastSent, partial, false);
    await this.waitForWindow(0);
    const whole = (syncObjectFrame(content, revision, op, payload).frame as { value: wire.SyncObject }).value;
    const resume = resumePointFor(this.resumePartial, { subscription: content.subscription, key: content.key, contentSha256: whole.contentSha256, totalSize: payload.length });
    // The agent drops what it holds when another large object starts: only the first one may resume.
    this.resumePartial = undefined;
    if (resume) {
      this.counters.resumedBytes += resume.receivedBytes;
      this.metrics?.syncResumedBytes.inc({ cluster: this.session.clusterName }, resume.receivedBytes);
      this.logger.info(
        { cluster: this.session.clusterName, object: `${content.key.kind} ${content.key.namespace}/${content.key.name}`, fromChunk: resume.receivedChunks, fromByte: resume.receivedBytes, totalSize: payload.length },
        'resuming a large object where the agent stopped',
      );
    }
    const { slices, count } = planChunks(payload.length, this.options.chunkBytes, resume);
    const tag = chunkTag(content.subscription, content.key, whole.contentSha256);
    for (const slice of slices) {
      const frame = syncChunkFrame(whole, payload.subarray(slice.offset, slice.offset + slice.length), slice.index, count, slice.offset);
      const bytes = frameBytes(frame);
      await this.waitForChunkWindow(bytes);
      if (newer?.() && payload.length - slice.offset > this.options.chunkBytes) {
        // A newer rendering waits in the feed: the rest of this one would be
        // wasted. Only a last chunk is worth finishing (what is in flight
        // cannot be called back). The agent drops the chunks it holds when the
        // newer copy, or a delete, comes.
        this.counters.abandoned++;
        this.logger.info(
          { cluster: this.session.clusterName, object: `${content.key.kind} ${content.key.namespace}/${content.key.name}`, atByte: slice.offset, totalSize: payload.length },
          'a newer rendering of a large object came mid-transfer: sending it instead',
        );
        return;
      }
      this.counters.chunkFrames++;
      this.metrics?.syncChunks.inc({ cluster: this.session.clusterName });
      await this.sendFrame(frame, bytes, () => this.chunkWindow.sent(tag, slice.index, bytes));
    }
    this.open = newGroup(++this.sequence, 1);
    this.counters.objectFrames++;
    this.lastSent = revision;
    await this.endGroup(partial ? groupRevision : revision, partial, false);
  }

  /** The Manifest changed (or went) after this revision: its next event in the watch sends the newer state. */
  private async superseded(manifest: KubeObject, revision: number): Promise<boolean> {
    const current = await this.store.read('Manifest', { namespace: manifest.metadata.namespace ?? '', name: manifest.metadata.name });
    if (current && parseResourceVersion(current.resourceVersion) <= revision) return false;
    this.counters.superseded++;
    return true;
  }

  private async waitForChunkWindow(bytes: number): Promise<void> {
    while (!this.chunkWindow.fits(bytes, this.options.chunkWindowBytes)) {
      if (this.stop.signal.aborted) throw new HawserError(ErrorCode.Cancelled, 'session ended');
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /** Closes the open group (an empty final snapshot group too: the agent swaps at it); returns its sequence. */
  private async endGroup(revision: number, partial: boolean, always: boolean, endsSnapshot = false): Promise<number | undefined> {
    if (!this.open && !always) return undefined;
    const group = this.open ?? newGroup(++this.sequence);
    this.open = undefined;
    this.inFlight.push(group);
    // Before the send: the agent's ack (with its result) may come back before the send resolves.
    if (endsSnapshot) this.snapshotSequences.add(group.sequence);
    group.wire += await this.sendFrame({ frame: { $case: 'syncEnd', value: { revision, sequence: group.sequence, partial } } }, undefined, () => (group.ended = true));
    return group.sequence;
  }

  private unacked(): { frames: number; bytes: number } {
    let frames = this.open?.frames ?? 0;
    let bytes = this.open?.bytes ?? 0;
    for (const g of this.inFlight) {
      frames += g.frames;
      bytes += g.bytes;
    }
    return { frames, bytes };
  }

  private async waitForWindow(bytes: number): Promise<void> {
    for (;;) {
      const u = this.unacked();
      // An empty window always takes one object, however large.
      if (u.frames === 0 || (u.frames + 1 <= this.options.windowFrames && u.bytes + bytes <= this.options.windowBytes)) return;
      if (this.stop.signal.aborted) throw new HawserError(ErrorCode.Cancelled, 'session ended');
      // The agent acks closed groups only: close ours so the window can drain.
      if (this.open && this.inFlight.length === 0) throw new HawserError(ErrorCode.Internal, 'sync window smaller than one group');
      await this.waitForAck();
    }
  }

  /** Waits until an ack (or the end) wakes the sender; frames still queued for compression go first. */
  private async waitForAck(): Promise<void> {
    const sent = await this.flushCompressed();
    if (this.open) this.open.wire += sent;
    await new Promise<void>((resolve) => (this.wake = resolve));
  }

  /**
   * Sends one sync frame, or queues it for the next compressed run; returns
   * the bytes that went on the wire now (a run flushed with it). `onWire` runs
   * just before the frame goes on the wire, after the wait for room (frames
   * that never queue: chunks, SyncEnd).
   */
  private async sendFrame(frame: wire.ConnectResponse, bytes?: number, onWire?: () => void): Promise<number> {
    if (this.stop.signal.aborted) throw new HawserError(ErrorCode.Cancelled, 'session ended');
    if (!this.compressor) {
      bytes ??= frameBytes(frame);
      this.counters.rawBytes += bytes;
      this.metrics?.syncRawBytes.inc({ cluster: this.session.clusterName }, bytes);
      this.rawSent += bytes;
      await this.transmit(frame, bytes, onWire);
      return bytes;
    }
    const encoded = wire.ConnectResponse.encode(frame).finish();
    this.counters.rawBytes += encoded.length;
    this.metrics?.syncRawBytes.inc({ cluster: this.session.clusterName }, encoded.length);
    let sent = 0;
    // A frame that would make the run too long goes with the next one.
    if (this.compressor.pendingBytes > 0 && this.compressor.pendingBytes + encoded.length > this.options.compressFlushBytes) sent += await this.flushCompressed();
    this.compressor.add(encoded);
    this.counters.queuedBytes = this.compressor.pendingBytes;
    const f = frame.frame;
    const queues = f?.$case === 'syncBegin' || (f?.$case === 'syncObject' && f.value.chunkCount <= 1);
    if (!queues || this.compressor.pendingBytes >= this.options.compressFlushBytes) sent += await this.flushCompressed(queues ? undefined : onWire);
    return sent;
  }

  private async flushCompressed(onWire?: () => void): Promise<number> {
    const rawBytes = this.compressor?.pendingBytes ?? 0;
    const run = this.compressor?.flush();
    this.counters.queuedBytes = 0;
    if (!run) return 0;
    const frame: wire.ConnectResponse = { frame: { $case: 'syncCompressed', value: run } };
    const bytes = frameBytes(frame);
    this.rawSent += rawBytes;
    this.counters.compressedFrames++;
    if (run.reset) this.counters.compressionResets++;
    await this.transmit(frame, bytes, onWire);
    return bytes;
  }

  /**
   * Puts one frame on the wire once the bytes in flight leave room for it
   * (inFlightBytes): while anything an ack will free is in flight, the sender
   * waits for that ack rather than queue more behind the next heartbeat ack.
   */
  private async transmit(frame: wire.ConnectResponse, bytes: number, onWire?: () => void): Promise<void> {
    for (;;) {
      if (this.stop.signal.aborted) throw new HawserError(ErrorCode.Cancelled, 'session ended');
      const inFlight = this.wireInFlight();
      if (inFlight === 0 || inFlight + bytes <= this.options.inFlightBytes || !this.ackDue()) break;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    onWire?.();
    this.wireSent += bytes;
    this.counters.bytes += bytes;
    this.metrics?.syncSentBytes.inc({ cluster: this.session.clusterName }, bytes);
    this.counters.peakInFlightBytes = Math.max(this.counters.peakInFlightBytes, this.wireInFlight() + bytes);
    await this.session.send(frame);
  }

  /** Sync bytes on the wire and not acknowledged: groups (the open one too) and chunks. */
  private wireInFlight(): number {
    let bytes = this.chunkWindow.bytes + (this.open?.wire ?? 0);
    for (const g of this.inFlight) bytes += g.wire;
    return bytes;
  }

  /** Something on the wire will be acknowledged: a chunk, or a group whose end went out. */
  private ackDue(): boolean {
    return this.chunkWindow.chunks > 0 || this.inFlight.some((g) => g.ended);
  }
}
