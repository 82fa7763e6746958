import type { Logger } from 'pino';
import { boundedText } from '../../api/index.js';
import { defaultMaxFrameBytes, ErrorCode, Feature, HawserError, toHawserError, wire } from '../../tunnel/index.js';
import type { FrameHandler, HandlerFactory, SessionContext } from '../session.js';
import { type HubStore, type KubeObject, parseResourceVersion } from '../store.js';
import { type FeedChange, ManifestFanout } from './fanout.js';
import { frameBytes, manifestContent, syncObjectFrame } from './objects.js';
import { writeApplyReport } from './status.js';

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
  /** Unacknowledged object frames at most. */
  windowFrames: number;
  /** Unacknowledged object bytes at most. */
  windowBytes: number;
  /** A group closes at this many objects (or bytes) so acks flow while a large set is sent. */
  groupFrames: number;
  groupBytes: number;
  /** An object frame larger than this is not sent: HAWSER_SYNC_OBJECT_TOO_LARGE (chunks come next). */
  maxObjectFrameBytes: number;
}

// Sync shares the control stream: a heartbeat ack the hub sends waits behind
// at most windowBytes of sync frames (1 MiB: about 8 s at 1 Mbit/s, inside
// the agent's 3 missed heartbeats). Lease renewals themselves travel agent ->
// hub and never wait behind sync. A stream of its own is the next step.
export const defaultSyncOptions: SyncOptions = {
  windowFrames: 256,
  windowBytes: 1024 * 1024,
  groupFrames: 64,
  groupBytes: 256 * 1024,
  // Room for the frame's envelope under the transport's limit.
  maxObjectFrameBytes: defaultMaxFrameBytes - 16 * 1024,
};

/** What sync sent, per cluster, over the hub's life (tests and benchmarks count bytes here). */
export interface ClusterSyncCounters {
  objectFrames: number;
  /** Bytes of every sync frame sent (protobuf encoding). */
  bytes: number;
  snapshots: number;
  /** Objects refused as too large, by "kind namespace/name". */
  tooLarge: string[];
}

export class SyncStats {
  private readonly clusters = new Map<string, ClusterSyncCounters>();
  of(cluster: string): ClusterSyncCounters {
    let c = this.clusters.get(cluster);
    if (!c) this.clusters.set(cluster, (c = { objectFrames: 0, bytes: 0, snapshots: 0, tooLarge: [] }));
    return c;
  }
}

export interface SyncDeps {
  store: HubStore;
  logger: Logger;
  stats?: SyncStats;
  options?: Partial<SyncOptions>;
  /** The Manifest watch shared by sessions; one of its own by default. */
  feed?: ManifestFanout;
}

/** Registers with HubCore.registerHandler: every session that negotiated "sync" gets its Manifests. */
export function syncHandlerFactory(deps: SyncDeps): HandlerFactory {
  const options = { ...defaultSyncOptions, ...deps.options };
  const stats = deps.stats ?? new SyncStats();
  // One store watch of Manifests for every session (fanout.ts).
  const feed = deps.feed ?? new ManifestFanout(deps.store);
  return (session) => new SessionSync(session, deps.store, deps.logger, options, stats.of(session.clusterName), feed);
}

interface Group {
  sequence: number;
  frames: number;
  bytes: number;
}

class SessionSync implements FrameHandler {
  readonly name = 'sync';
  readonly kinds = ['syncAck', 'applyReport'] as const;
  readonly queueLimit = 64;
  private readonly enabled: boolean;
  private incarnation = '';
  private namespace = '';
  private sequence = 0;
  /** Groups sent and not acknowledged, oldest first. */
  private readonly inFlight: Group[] = [];
  private open: Group | undefined;
  /** Revision of the last object sent: a group closed before the next object ends here. */
  private lastSent = 0;
  private wake: (() => void) | undefined;
  private readonly stop = new AbortController();

  constructor(
    private readonly session: SessionContext,
    private readonly store: HubStore,
    private readonly logger: Logger,
    private readonly options: SyncOptions,
    private readonly counters: ClusterSyncCounters,
    private readonly feed: ManifestFanout,
  ) {
    this.enabled = session.negotiated.features.has(Feature.Sync);
    session.ended.addEventListener('abort', () => this.close(), { once: true });
    if (this.enabled) void this.run().catch((err: unknown) => this.failed(err));
  }

  admit(frame: wire.ConnectRequest['frame']): HawserError | undefined {
    if (!this.enabled) return new HawserError(ErrorCode.UnexpectedFrame, `${frame?.$case} frame on a session without the "sync" feature`);
    return undefined;
  }

  async handle(frame: NonNullable<wire.ConnectRequest['frame']>): Promise<void> {
    if (frame.$case === 'syncAck') return this.acked(frame.value);
    if (frame.$case === 'applyReport' && this.namespace) {
      await writeApplyReport(this.store, this.namespace, this.session.clusterName, frame.value);
    }
  }

  close(): void {
    this.stop.abort();
    this.wake?.();
  }

  private acked(ack: wire.SyncAck): void {
    if (ack.incarnation !== this.incarnation || !this.inFlight.some((g) => g.sequence === ack.sequence)) {
      throw new HawserError(ErrorCode.SyncProtocol, `sync ack for group ${ack.sequence} of incarnation ${boundedText(ack.incarnation, 64)} was never sent on this session`);
    }
    while (this.inFlight.length > 0 && this.inFlight[0]!.sequence <= ack.sequence) this.inFlight.shift();
    this.wake?.();
  }

  private failed(err: unknown): void {
    if (this.stop.signal.aborted) return;
    const e = toHawserError(err);
    if (e.code === ErrorCode.StoreClosed) return;
    this.logger.error({ cluster: this.session.clusterName, code: e.code, err: e.message }, 'sync stopped for this session; it starts again when the agent reconnects');
  }

  private async run(): Promise<void> {
    const cluster = await this.store.get('ManagedCluster', this.session.clusterName);
    this.namespace = cluster?.metadata.namespace ?? '';
    if (!this.namespace) throw new HawserError(ErrorCode.NotFound, `cluster ${this.session.clusterName} has no dedicated namespace`);
    const info = await this.store.info();
    this.incarnation = info.uid;
    const current = parseResourceVersion(info.resourceVersion);
    const { hubIncarnation, lastAckedRevision } = this.session.resume;
    let reason = '';
    if (hubIncarnation === '' || lastAckedRevision === 0) reason = 'first-sync';
    else if (hubIncarnation !== info.uid) reason = 'other-incarnation';
    else if (lastAckedRevision > current) reason = 'agent-ahead';
    if (!reason) {
      const first = await this.deltas(lastAckedRevision, { from: lastAckedRevision, to: current });
      if (first === 'too-old') reason = 'history-compacted';
      else return;
    }
    const revision = await this.snapshot(reason);
    await this.deltas(revision, undefined);
  }

  /** Everything in the cluster's namespace at one revision; returns it. */
  private async snapshot(reason: string): Promise<number> {
    const listed = await this.store.list('Manifest', { namespace: this.namespace });
    const revision = parseResourceVersion(listed.resourceVersion);
    this.counters.snapshots++;
    await this.sendFrame({ frame: { $case: 'syncBegin', value: { incarnation: this.incarnation, fromRevision: 0, snapshot: true, toRevision: revision, reason } } });
    for (const item of listed.items) {
      if (this.stop.signal.aborted) return revision;
      await this.sendObject(item.object, parseResourceVersion(item.resourceVersion), wire.SyncOp.SYNC_OP_UPSERT, true, revision);
    }
    await this.endGroup(revision, false, true);
    return revision;
  }

  /**
   * Watches from `from` and sends each change. With `begin`, a SyncBegin for
   * deltas goes out before the first change; a compacted history before any
   * change is 'too-old' (the caller snapshots instead).
   */
  private async deltas(from: number, begin: { from: number; to: number } | undefined): Promise<'too-old' | 'ended'> {
    const queue: FeedChange[] = [];
    let notify: (() => void) | undefined;
    const watching = new AbortController();
    const stopWatching = () => watching.abort();
    this.stop.signal.addEventListener('abort', stopWatching, { once: true });
    const reader = this.feed.follow(
      this.namespace,
      from,
      (change) => {
        queue.push(change);
        notify?.();
      },
      watching.signal,
    );
    let begun = false;
    let last = from;
    try {
      while (!this.stop.signal.aborted) {
        const change = queue.shift();
        if (!change) {
          // Nothing more ready: close the group so the agent can store and ack it.
          if (this.open) await this.endGroup(last, false, false);
          await new Promise<void>((resolve) => {
            notify = resolve;
            this.wake = resolve;
            if (queue.length > 0 || this.stop.signal.aborted) resolve();
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
        last = parseResourceVersion(event.resourceVersion);
        const op = event.type === 'DELETED' ? wire.SyncOp.SYNC_OP_DELETE : wire.SyncOp.SYNC_OP_UPSERT;
        await this.sendObject(event.object, last, op, false, last);
      }
      return 'ended';
    } finally {
      this.stop.signal.removeEventListener('abort', stopWatching);
      watching.abort();
      await reader;
    }
  }

  private async sendObject(manifest: KubeObject, revision: number, op: wire.SyncOp, partial: boolean, groupRevision: number): Promise<void> {
    const content = manifestContent(manifest);
    const frame = syncObjectFrame(content, revision, op);
    const bytes = frameBytes(frame);
    if (bytes > this.options.maxObjectFrameBytes) {
      const what = `${content.key.kind} ${content.key.namespace}/${content.key.name}`;
      this.counters.tooLarge.push(what);
      this.logger.error(
        { cluster: this.session.clusterName, code: ErrorCode.SyncObjectTooLarge, object: what, bytes, limit: this.options.maxObjectFrameBytes },
        'object too large for one sync frame: not sent (chunked sync comes with the "chunks" feature)',
      );
      return;
    }
    if (this.open && (this.open.frames >= this.options.groupFrames || this.open.bytes + bytes > this.options.groupBytes)) {
      await this.endGroup(partial ? groupRevision : this.lastSent, partial, false);
    }
    await this.waitForWindow(bytes);
    this.open ??= { sequence: ++this.sequence, frames: 0, bytes: 0 };
    this.open.frames++;
    this.open.bytes += bytes;
    this.counters.objectFrames++;
    this.lastSent = revision;
    await this.sendFrame(frame, bytes);
  }

  /** Closes the open group (an empty final snapshot group too: the agent swaps at it). */
  private async endGroup(revision: number, partial: boolean, always: boolean): Promise<void> {
    if (!this.open && !always) return;
    const group = this.open ?? { sequence: ++this.sequence, frames: 0, bytes: 0 };
    this.open = undefined;
    this.inFlight.push(group);
    await this.sendFrame({ frame: { $case: 'syncEnd', value: { revision, sequence: group.sequence, partial } } });
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
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private async sendFrame(frame: wire.ConnectResponse, bytes = frameBytes(frame)): Promise<void> {
    if (this.stop.signal.aborted) throw new HawserError(ErrorCode.Cancelled, 'session ended');
    this.counters.bytes += bytes;
    await this.session.send(frame);
  }
}
