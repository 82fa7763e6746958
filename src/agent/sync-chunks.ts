import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { quoteBounded } from '../api/core.js';
import type { CacheOp, OfflineCache } from '../cache/index.js';
import { ErrorCode, HawserError, type wire } from '../tunnel/index.js';

// Large objects in chunks (feature "chunks"), the agent's half. Each chunk is
// written to the offline cache (sync/part/) in one durable batch with the
// record of how far the object has got, and only then acknowledged; the
// next hello names that record so the hub resumes at the next chunk. The
// object leaves sync/part/ only whole and checked (sha256 and size of the
// reassembled payload), in the same batch that commits its group: a
// half-received object is never in the desired set.
//
// One partial object at a time: the hub sends large objects one after the
// other, so a new one starting at byte 0 replaces whatever was held.

const metaKey = 'sync/part/meta';
const chunkPrefix = 'sync/part/chunk/';
/** Chunks one object may have at most (with the default 32 KiB chunks: 128 MiB). */
export const maxChunksPerObject = 4096;

/** How far a chunked object has got, durably. */
interface PartMeta {
  id: string;
  subscription: string;
  key: wire.SyncObjectKey;
  revision: number;
  contentSha256: string;
  totalSize: number;
  receivedChunks: number;
  receivedBytes: number;
}

function isPartMeta(v: unknown): v is PartMeta {
  const m = v as PartMeta | undefined;
  return (
    typeof m?.id === 'string' &&
    typeof m.subscription === 'string' &&
    typeof m.key?.name === 'string' &&
    typeof m.contentSha256 === 'string' &&
    Number.isSafeInteger(m.totalSize) &&
    Number.isSafeInteger(m.receivedChunks) &&
    Number.isSafeInteger(m.receivedBytes) &&
    m.receivedBytes <= m.totalSize
  );
}

function chunkKey(index: number): string {
  return chunkPrefix + String(index).padStart(6, '0');
}

/** A frame that is one chunk of an object, not a whole object. */
export function isChunkFrame(o: wire.SyncObject): boolean {
  return o.chunkCount > 1 || o.chunkIndex > 0 || Number(o.chunkOffset ?? 0) > 0;
}

export type ChunkOutcome =
  /** Durable; send the ack. */
  | { kind: 'stored'; ack: wire.SyncChunkAck }
  /** The last chunk: the whole payload, checked; `cleanup` goes in the batch that commits it. */
  | { kind: 'complete'; ack: wire.SyncChunkAck; payload: Buffer; cleanup: CacheOp[] };

export class ChunkAssembler {
  /** undefined: not read yet; null: none held. */
  private meta: PartMeta | null | undefined;

  constructor(
    private readonly cache: OfflineCache,
    private readonly logger: Logger,
  ) {}

  /** What the hello says the agent holds: the hub resumes there if its content is unchanged. */
  async helloPartial(): Promise<wire.SyncPartialObject | undefined> {
    const m = await this.load();
    if (!m || m.receivedBytes === 0) return undefined;
    return {
      key: m.key,
      subscription: m.subscription,
      revision: m.revision,
      contentSha256: m.contentSha256,
      totalSize: m.totalSize,
      receivedChunks: m.receivedChunks,
      receivedBytes: m.receivedBytes,
    };
  }

  /** Payload bytes held in sync/part/ (they count against the cache size limit). */
  async heldBytes(): Promise<number> {
    return (await this.load())?.receivedBytes ?? 0;
  }

  /**
   * Stores one chunk durably. A chunk at byte 0 starts the object afresh
   * (dropping any other partial one); any other must continue exactly where
   * the held record stops, or the hub broke the protocol (HAWSER_SYNC_PROTOCOL).
   * The last chunk reassembles the whole: a wrong checksum or size drops the
   * chunks (HAWSER_SYNC_CHECKSUM_MISMATCH, logged), so the next session
   * fetches the object from its start.
   */
  async accept(id: string, incarnation: string, o: wire.SyncObject): Promise<ChunkOutcome> {
    const what = `sync object ${quoteBounded(id, 200)}`;
    const offset = Number(o.chunkOffset ?? 0);
    const total = Number(o.totalSize);
    const slice = Buffer.from(o.payload);
    if (!o.key) throw new HawserError(ErrorCode.SyncProtocol, `${what}: chunk without a key`);
    if (!/^[0-9a-f]{64}$/.test(o.contentSha256)) throw new HawserError(ErrorCode.SyncProtocol, `${what}: content_sha256 ${quoteBounded(o.contentSha256, 80)} is not a sha256`);
    if (o.chunkIndex >= o.chunkCount || o.chunkCount > maxChunksPerObject) {
      throw new HawserError(ErrorCode.SyncProtocol, `${what}: chunk ${o.chunkIndex} of ${o.chunkCount} (at most ${maxChunksPerObject} chunks)`);
    }
    if (offset + slice.length > total || (slice.length === 0 && offset !== total)) {
      throw new HawserError(ErrorCode.SyncProtocol, `${what}: chunk of ${slice.length} bytes at ${offset} does not fit total_size ${total}`);
    }
    const ops: CacheOp[] = [];
    let meta = await this.load();
    if (offset === 0) {
      if (o.chunkIndex !== 0) throw new HawserError(ErrorCode.SyncProtocol, `${what}: chunk ${o.chunkIndex} at byte 0`);
      if (meta) ops.push(...(await this.dropOps()));
      meta = { id, subscription: o.subscription, key: o.key, revision: Number(o.revision), contentSha256: o.contentSha256, totalSize: total, receivedChunks: 0, receivedBytes: 0 };
    } else if (!meta || meta.id !== id || meta.contentSha256 !== o.contentSha256 || meta.totalSize !== total || meta.receivedBytes !== offset || meta.receivedChunks !== o.chunkIndex) {
      const held = meta ? `chunk ${meta.receivedChunks} at byte ${meta.receivedBytes} of ${quoteBounded(meta.id, 200)}` : 'nothing';
      throw new HawserError(ErrorCode.SyncProtocol, `${what}: chunk ${o.chunkIndex} at byte ${offset} does not continue what this agent holds (${held})`);
    }
    const next: PartMeta = { ...meta, revision: Number(o.revision), receivedChunks: meta.receivedChunks + 1, receivedBytes: offset + slice.length };
    if (slice.length > 0) ops.push({ type: 'put', key: chunkKey(o.chunkIndex), value: slice.toString('base64'), hot: false });
    ops.push({ type: 'put', key: metaKey, value: next, hot: false });
    await this.cache.batch(ops);
    this.meta = next;
    const ack: wire.SyncChunkAck = { incarnation, key: o.key, subscription: o.subscription, contentSha256: o.contentSha256, chunkIndex: o.chunkIndex, receivedBytes: next.receivedBytes };
    if (next.receivedBytes < total) return { kind: 'stored', ack };
    const payload = await this.reassemble();
    const sha = createHash('sha256').update(payload).digest('hex');
    if (sha !== next.contentSha256 || payload.length !== total) {
      await this.discard();
      const error = new HawserError(
        ErrorCode.SyncChecksumMismatch,
        `${what}: reassembled ${payload.length} bytes have sha256 ${sha.slice(0, 16)}…, not ${next.contentSha256.slice(0, 16)}… of ${total} bytes; chunks dropped, fetching it again from its start`,
      );
      this.logger.error({ code: error.code, object: quoteBounded(id, 200), bytes: payload.length, totalSize: total }, error.message);
      throw error;
    }
    return { kind: 'complete', ack, payload, cleanup: await this.dropOps() };
  }

  /** Deletes of the partial object's chunks when it is `id` (a whole copy or a delete of it supersedes them); none otherwise. */
  async supersededOps(id: string): Promise<CacheOp[]> {
    const m = await this.load();
    return m && m.id === id ? this.dropOps() : [];
  }

  /** The partial object was committed (its cleanup ops went in the batch): forget it. */
  committed(): void {
    this.meta = null;
  }

  /** Drops the partial object durably. */
  async discard(): Promise<void> {
    const ops = await this.dropOps();
    if (ops.length > 0) await this.cache.batch(ops);
    this.meta = null;
  }

  private async dropOps(): Promise<CacheOp[]> {
    const keys = await this.cache.keys({ gte: chunkPrefix, lt: `${chunkPrefix}\uffff` });
    return [...keys.map((key) => ({ type: 'del' as const, key })), { type: 'del', key: metaKey }];
  }

  /** The chunks held, in order; a damaged one gives what cannot match the checksum. */
  private async reassemble(): Promise<Buffer> {
    try {
      const chunks = await this.cache.entries<string>(chunkPrefix);
      return Buffer.concat(chunks.map(([, value]) => Buffer.from(value, 'base64')));
    } catch {
      return Buffer.alloc(0);
    }
  }

  private async load(): Promise<PartMeta | null> {
    if (this.meta !== undefined) return this.meta;
    let stored: unknown;
    try {
      stored = await this.cache.get<unknown>(metaKey);
    } catch (err) {
      this.logger.error({ code: ErrorCode.CacheCorrupt, key: metaKey, err: (err as Error).message }, 'partial sync object in the offline cache is unreadable; dropping it');
      stored = { corrupt: true };
    }
    if (stored !== undefined && !isPartMeta(stored)) {
      await this.discard();
      return null;
    }
    this.meta = stored ?? null;
    return this.meta;
  }
}
