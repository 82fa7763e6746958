import { randomUUID } from 'node:crypto';
import { quoteBounded } from '../../api/index.js';
import { CacheCorruptError, type CacheOp, OfflineCache } from '../../cache/index.js';
import { ErrorCode, HawserError } from '../../tunnel/index.js';
import { decodeKey, encodeKey, namespacePrefix, normalizeKey, parseResourceVersion } from './keys.js';
import type {
  Entry,
  HubStore,
  KeyOf,
  ListOptions,
  ListResult,
  Precondition,
  ResourceVersion,
  StoreInfo,
  StoreOp,
  StoredKind,
  StoredKinds,
  WatchEvent,
  WatchEventType,
  WatchOptions,
  WriteOptions,
} from './types.js';

// The embedded store: one LevelDB database in the hub's data directory.
//
// Layout (keys are utf8; key parts percent-encoded by keys.ts):
//   m/uid, m/rv               the store's id and its latest resourceVersion
//   m/compacted/<kind>        the newest version dropped from <kind>'s history
//   o/<kind>/<key>            { rv, value }: the object and the version that wrote it
//   e/<kind>/<rv, 16 digits>  { type, key, rv, value }: the kind's history
// Every write (object, history, m/rv, compaction) is one LevelDB batch, so a
// failed write leaves nothing, and history survives restarts.
//
// History: the last `historyPerKind` events of each kind (default 10,000) are
// kept on disk, per kind so one chatty kind (cluster status every heartbeat)
// never pushes another's (Manifests) out. A watcher that resumes within that
// window, also after a hub restart, replays the gap from disk; older is
// HAWSER_RESOURCE_VERSION_TOO_OLD and the caller lists again. Live watchers
// read the newest `recentEvents` (default 1,024) from memory; one that falls
// behind reads from disk instead, so a slow watcher costs no memory.

export interface EmbeddedStoreOptions {
  /** Events kept per kind on disk for watchers that resume. */
  historyPerKind: number;
  /** Newest events of all kinds kept in memory for live watchers. */
  recentEvents: number;
}

export const defaultEmbeddedStoreOptions: EmbeddedStoreOptions = { historyPerKind: 10_000, recentEvents: 1_024 };

interface ObjectRecord {
  rv: number;
  value: unknown;
}
interface EventRecord {
  kind: StoredKind;
  type: WatchEventType;
  /** encodeKey() text. */
  key: string;
  rv: number;
  value: unknown;
}
/**
 * An event as the write made it, kept in memory for live watchers: the value
 * as its JSON text (written to disk as it is), which each watcher parses into
 * its own copy.
 */
interface RecentEvent {
  kind: StoredKind;
  type: WatchEventType;
  key: string;
  rv: number;
  json: string;
}

const metaUid = 'm/uid';
const metaRv = 'm/rv';
const compactedKey = (kind: string) => `m/compacted/${kind}`;
const objectPrefix = (kind: string) => `o/${kind}/`;
const eventPrefix = (kind: string) => `e/${kind}/`;
const eventKey = (kind: string, rv: number) => `${eventPrefix(kind)}${String(rv).padStart(16, '0')}`;
const end = '\uffff';
/** Keys of the store before it had versions: `<kind>/<name>`. */
const legacyKinds: readonly StoredKind[] = ['ManagedCluster', 'ClusterRegistrationRequest', 'ClusterCredential'];
const eventPageSize = 256;

function conflict(kind: string, key: string, expect: Precondition, current: { rv: number } | undefined): HawserError {
  const want = 'absent' in expect ? 'absent' : `resourceVersion ${expect.resourceVersion}`;
  const have = current ? `resourceVersion ${current.rv}` : 'absent';
  return new HawserError(ErrorCode.StoreConflict, `${kind} ${quoteBounded(decodeURIComponent(key))}: expected ${want}, found ${have}`);
}

function meets(expect: Precondition | undefined, current: { rv: number } | undefined): boolean {
  if (!expect) return true;
  if ('absent' in expect) return current === undefined;
  const rv = parseResourceVersion(expect.resourceVersion, 'expect.resourceVersion');
  return current !== undefined && rv === current.rv;
}

/** The value as stored, as JSON text: its metadata.resourceVersion is the store's to set (left out without copying more than metadata). */
function storedJson(value: unknown): string {
  const o = value as { metadata?: Record<string, unknown> } | null;
  let json: string | undefined;
  if (o && typeof o === 'object' && o.metadata && typeof o.metadata === 'object' && 'resourceVersion' in o.metadata) {
    const { resourceVersion: _, ...metadata } = o.metadata;
    json = JSON.stringify({ ...o, metadata });
  } else json = JSON.stringify(value) as string | undefined;
  if (json === undefined) throw new TypeError('a stored value must be JSON');
  return json;
}

/** The texts JSON.stringify gives an ObjectRecord and an EventRecord, around a value's JSON text (the cache's checksum is over them). */
const objectRecordJson = (rv: number, json: string) => `{"rv":${rv},"value":${json}}`;
const eventRecordJson = (e: RecentEvent) => `{"kind":${JSON.stringify(e.kind)},"type":${JSON.stringify(e.type)},"key":${JSON.stringify(e.key)},"rv":${e.rv},"value":${e.json}}`;

/** The value as stored: its metadata.resourceVersion is the store's to set. */
function withoutVersion(value: unknown): unknown {
  const copy = structuredClone(value) as { metadata?: Record<string, unknown> };
  if (copy && typeof copy === 'object' && copy.metadata && typeof copy.metadata === 'object') delete copy.metadata.resourceVersion;
  return copy;
}

/** Sets rv in metadata.resourceVersion, in place: for a value nobody else holds. */
function ownVersion<T>(value: unknown, rv: number): T {
  const o = value as { metadata?: Record<string, unknown> };
  if (o && typeof o === 'object' && o.metadata && typeof o.metadata === 'object') o.metadata.resourceVersion = String(rv);
  return o as T;
}

function closedError(): HawserError {
  return new HawserError(ErrorCode.StoreClosed, 'the hub store is closed');
}

export class EmbeddedStore implements HubStore {
  private rv = 0;
  private closed = false;
  private writeTail: Promise<unknown> = Promise.resolve();
  /** Per kind: versions of its kept history, oldest first. */
  private readonly history = new Map<StoredKind, number[]>();
  private readonly compacted = new Map<StoredKind, number>();
  /** Newest events of all kinds, oldest first; holds every event after recentFloor. */
  private recent: RecentEvent[] = [];
  private recentFloor = 0;
  private readonly waiters = new Set<() => void>();
  /**
   * The version of each object this store has written, by full key (deleted
   * ones leave): what a put checks its precondition against and tells ADDED
   * from MODIFIED by, without reading the object first. Set only by writes,
   * which run one at a time, after they landed.
   */
  private readonly versions = new Map<string, number>();

  /** Set after a failed write: LevelDB's log may end in a torn record, after which appended writes are lost on recovery. */
  private broken = false;
  private reopening: Promise<void> | undefined;

  private constructor(
    private db: OfflineCache,
    private readonly dir: string,
    private readonly uid: string,
    private readonly options: EmbeddedStoreOptions,
  ) {}

  /** A damaged store is refused (never quarantined: it is the fleet's registry), its files left as they were. */
  static async open(dir: string, options: Partial<EmbeddedStoreOptions> = {}): Promise<EmbeddedStore> {
    for (const k of Object.keys(options)) {
      if (!(k in defaultEmbeddedStoreOptions)) {
        throw new HawserError(ErrorCode.InvalidOption, `unknown store option ${quoteBounded(k)}; known: ${Object.keys(defaultEmbeddedStoreOptions).join(', ')}`);
      }
    }
    const o = { ...defaultEmbeddedStoreOptions, ...options };
    for (const [k, v] of Object.entries(o)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new HawserError(ErrorCode.InvalidOption, `store option ${k} must be a positive integer (is ${String(v)})`);
    }
    const db = await EmbeddedStore.openDb(dir);
    try {
      const uid = (await db.get<string>(metaUid)) ?? (await EmbeddedStore.initialize(db));
      const store = new EmbeddedStore(db, dir, uid, o);
      await store.load();
      return store;
    } catch (err) {
      await db.close().catch(() => undefined);
      throw err;
    }
  }

  private static async openDb(dir: string): Promise<OfflineCache> {
    try {
      return await OfflineCache.open({ dir, lruEntries: 4096, lruText: true });
    } catch (err) {
      if (!(err instanceof CacheCorruptError)) throw err;
      throw new HawserError(
        ErrorCode.CacheCorrupt,
        `hub store is damaged and was left unchanged: ${err.message}; restore ${dir} from a backup, or move it aside to start empty (agents then register again with their keys)`,
        { cause: err },
      );
    }
  }

  /**
   * After a failed write: reopen, so LevelDB recovers its log (dropping the
   * torn batch) and writes to a new one, and reload what is on disk (a write
   * reported failed may still have landed whole, e.g. when only its fsync
   * failed). One reopen at a time; until it succeeds every call retries it.
   */
  private recover(): Promise<void> {
    this.reopening ??= (async () => {
      await this.db.close().catch(() => undefined);
      this.db = await EmbeddedStore.openDb(this.dir);
      this.history.clear();
      this.compacted.clear();
      this.versions.clear();
      this.recent = [];
      await this.load();
      this.broken = false;
      for (const wake of this.waiters) wake();
      this.waiters.clear();
    })().finally(() => {
      this.reopening = undefined;
    });
    return this.reopening;
  }

  /** The database, once any pending reopen is done. */
  private async usable(): Promise<OfflineCache> {
    this.checkOpen();
    if (this.reopening) await this.reopening;
    if (this.broken) await this.recover();
    this.checkOpen();
    return this.db;
  }

  /** A read; one that met the database closing under it for a reopen runs again on the new one. */
  private async reading<T>(read: (db: OfflineCache) => Promise<T>): Promise<T> {
    const db = await this.usable();
    try {
      return await read(db);
    } catch (err) {
      if (this.closed) throw closedError();
      if (db === this.db && !this.reopening && !this.broken) throw err;
      return read(await this.usable());
    }
  }

  /** A new store, or one written before versions: objects get versions 1..n, in one batch. */
  private static async initialize(db: OfflineCache): Promise<string> {
    const uid = randomUUID();
    const ops: CacheOp[] = [];
    let rv = 0;
    const migrated = new Set<StoredKind>();
    for (const kind of legacyKinds) {
      for (const [key, value] of await db.entries<unknown>(`${kind}/`)) {
        const name = key.slice(kind.length + 1);
        ops.push({ type: 'del', key }, { type: 'put', key: objectPrefix(kind) + encodeKey(kind, name), value: { rv: ++rv, value: withoutVersion(value) } });
        migrated.add(kind);
      }
    }
    // Watching from before the migration would miss the objects' ADDED events.
    for (const kind of migrated) ops.push({ type: 'put', key: compactedKey(kind), value: rv });
    ops.push({ type: 'put', key: metaRv, value: rv }, { type: 'put', key: metaUid, value: uid });
    await db.batch(ops);
    return uid;
  }

  private async load(): Promise<void> {
    this.rv = (await this.db.get<number>(metaRv)) ?? 0;
    this.recentFloor = this.rv;
    for (const [key, value] of await this.db.entries<number>('m/compacted/')) {
      this.compacted.set(key.slice('m/compacted/'.length) as StoredKind, value);
    }
    for (const key of await this.db.keys({ gte: 'e/', lt: `e/${end}` })) {
      const slash = key.lastIndexOf('/');
      const kind = key.slice(2, slash) as StoredKind;
      const versions = this.history.get(kind) ?? [];
      versions.push(Number(key.slice(slash + 1)));
      this.history.set(kind, versions);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw closedError();
  }

  async info(): Promise<StoreInfo> {
    await this.usable();
    return { uid: this.uid, resourceVersion: String(this.rv) };
  }

  async get<K extends StoredKind>(kind: K, key: KeyOf<K>): Promise<StoredKinds[K] | undefined> {
    return (await this.read(kind, key))?.object;
  }

  async read<K extends StoredKind>(kind: K, key: KeyOf<K>): Promise<Entry<K> | undefined> {
    this.checkOpen();
    const full = objectPrefix(kind) + encodeKey(kind, key);
    const record = await this.reading((db) => db.get<ObjectRecord>(full));
    if (!record) return undefined;
    // The cache hands out its own copy of each get (lruText): the caller's as it is.
    return { key: normalizeKey(kind, key), object: ownVersion(record.value, record.rv), resourceVersion: String(record.rv) };
  }

  async list<K extends StoredKind>(kind: K, options: ListOptions = {}): Promise<ListResult<K>> {
    this.checkOpen();
    const prefix = objectPrefix(kind) + (options.namespace === undefined ? '' : namespacePrefix(options.namespace));
    const { rv, records } = await this.reading(async (db) => {
      const view = db.view();
      try {
        return { rv: (await view.get<number>(metaRv)) ?? 0, records: await view.range<ObjectRecord>({ gte: prefix, lt: prefix + end }) };
      } finally {
        await view.close();
      }
    });
    // A range read decodes its own copies (never the cache's): each is the caller's as it is.
    const items = records.map(([k, record]) => ({
      key: decodeKey(kind, k.slice(objectPrefix(kind).length)),
      object: ownVersion<StoredKinds[K]>(record.value, record.rv),
      resourceVersion: String(record.rv),
    }));
    return { items, resourceVersion: String(rv) };
  }

  async put<K extends StoredKind>(
    kind: K,
    key: KeyOf<K>,
    value: StoredKinds[K],
    options: WriteOptions & { expect?: Precondition } = {},
  ): Promise<ResourceVersion> {
    const [rv] = await this.batch([{ op: 'put', kind, key, value, expect: options.expect } as StoreOp], options);
    return rv!;
  }

  async delete<K extends StoredKind>(kind: K, key: KeyOf<K>, options: WriteOptions & { expect?: Precondition } = {}): Promise<ResourceVersion | undefined> {
    const [rv] = await this.batch([{ op: 'delete', kind, key, expect: options.expect } as StoreOp], options);
    return rv;
  }

  batch(ops: readonly StoreOp[], options: WriteOptions = {}): Promise<Array<ResourceVersion | undefined>> {
    const run = this.writeTail.then(() => this.write(ops, options));
    this.writeTail = run.catch(() => undefined);
    return run;
  }

  /** One batch; writes run one at a time, so what is read here is what the batch replaces. */
  private async write(ops: readonly StoreOp[], options: WriteOptions): Promise<Array<ResourceVersion | undefined>> {
    const db = await this.usable();
    // What each op replaces, in one pass: a version the store knows, else the record (read together); a delete's value for its event.
    const keys = ops.map((op) => encodeKey(op.kind, op.key));
    const known = new Map<string, ObjectRecord | undefined>();
    const unknown = new Set<string>();
    for (const [i, op] of ops.entries()) {
      const full = objectPrefix(op.kind) + keys[i]!;
      const version = op.op === 'put' ? this.versions.get(full) : undefined;
      if (version !== undefined) known.set(full, { rv: version, value: undefined });
      else unknown.add(full);
    }
    await Promise.all([...unknown].map(async (full) => known.set(full, await db.get<ObjectRecord>(full))));
    const pending = new Map<string, { rv: number; json: string } | undefined>();
    const events: RecentEvent[] = [];
    const results: Array<ResourceVersion | undefined> = [];
    let rv = this.rv;
    for (const [i, op] of ops.entries()) {
      const key = keys[i]!;
      const full = objectPrefix(op.kind) + key;
      const current = pending.has(full) ? pending.get(full) : known.get(full);
      if (!meets(op.expect, current)) throw conflict(op.kind, key, op.expect!, current);
      if (op.op === 'delete' && !current) {
        results.push(undefined);
        continue;
      }
      rv++;
      // Serialised once: the object's record, its event on disk and in memory all hold this text.
      if (op.op === 'put') {
        const json = storedJson(op.value);
        pending.set(full, { rv, json });
        events.push({ kind: op.kind, type: current ? 'MODIFIED' : 'ADDED', key, rv, json });
      } else {
        pending.set(full, undefined);
        // The last state: the record read above, or (deleted after a put in this batch) that put's text.
        const last = current as ObjectRecord | { rv: number; json: string };
        events.push({ kind: op.kind, type: 'DELETED', key, rv, json: 'json' in last ? last.json : storedJson(last.value) });
      }
      results.push(String(rv));
    }
    if (events.length === 0) return results;

    const cacheOps: CacheOp[] = [];
    for (const [key, record] of pending) cacheOps.push(record ? { type: 'putJson', key, json: objectRecordJson(record.rv, record.json) } : { type: 'del', key });
    for (const e of events) cacheOps.push({ type: 'putJson', key: eventKey(e.kind, e.rv), json: eventRecordJson(e), hot: false });
    cacheOps.push({ type: 'put', key: metaRv, value: rv });
    const history = this.compact(events, cacheOps);
    try {
      await db.batch(cacheOps, { durable: options.durable ?? true });
    } catch (err) {
      this.broken = true;
      await this.recover().catch(() => undefined);
      throw err;
    }

    this.rv = rv;
    for (const [key, record] of pending) {
      if (record) this.versions.set(key, record.rv);
      else this.versions.delete(key);
    }
    for (const [kind, versions] of history) this.history.set(kind, versions);
    this.recent.push(...events);
    if (this.recent.length > this.options.recentEvents) {
      const dropped = this.recent.splice(0, this.recent.length - this.options.recentEvents);
      this.recentFloor = dropped[dropped.length - 1]!.rv;
    }
    for (const wake of this.waiters) wake();
    this.waiters.clear();
    return results;
  }

  /**
   * Adds the deletes that keep each kind's history at its bound; returns each
   * touched kind's history as it will be. Raises the compaction mark before
   * the write, so a watcher reading from disk meanwhile learns its events may
   * be gone (TOO_OLD), never silently misses them.
   */
  private compact(events: readonly RecentEvent[], cacheOps: CacheOp[]): Map<StoredKind, number[]> {
    const next = new Map<StoredKind, number[]>();
    for (const e of events) {
      if (!next.has(e.kind)) next.set(e.kind, [...(this.history.get(e.kind) ?? [])]);
      next.get(e.kind)!.push(e.rv);
    }
    for (const [kind, versions] of next) {
      const excess = versions.length - this.options.historyPerKind;
      if (excess <= 0) continue;
      // A delete after a put of the same key in one batch wins: an event past the bound is never stored.
      for (const old of versions.slice(0, excess)) cacheOps.push({ type: 'del', key: eventKey(kind, old) });
      const mark = versions[excess - 1]!;
      cacheOps.push({ type: 'put', key: compactedKey(kind), value: mark });
      this.compacted.set(kind, Math.max(this.compacted.get(kind) ?? 0, mark));
      next.set(kind, versions.slice(excess));
    }
    return next;
  }

  watch<K extends StoredKind>(kind: K, options: WatchOptions): AsyncIterable<WatchEvent<K>> {
    return { [Symbol.asyncIterator]: () => this.events(kind, options) };
  }

  private async *events<K extends StoredKind>(kind: K, options: WatchOptions): AsyncGenerator<WatchEvent<K>> {
    const { signal } = options;
    let after = parseResourceVersion(options.resourceVersion);
    this.checkOpen();
    if (after > this.rv) {
      throw new HawserError(
        ErrorCode.ResourceVersionTooNew,
        `watch ${kind} from resourceVersion ${after}: the store is at ${this.rv} (restored from a backup?); list again`,
      );
    }
    const nsPrefix = options.namespace === undefined ? undefined : namespacePrefix(options.namespace);
    const wanted = (e: EventRecord | RecentEvent): boolean =>
      e.kind === kind &&
      (nsPrefix === undefined || e.key.startsWith(nsPrefix)) &&
      (options.namePrefix === undefined || decodeKey(kind, e.key).name.startsWith(options.namePrefix));
    while (!signal?.aborted) {
      this.checkOpen();
      const { events, upTo } = await this.next(kind, after);
      for (const e of events) {
        if (signal?.aborted) return;
        after = e.rv;
        if (!wanted(e)) continue;
        yield {
          type: e.type,
          kind,
          key: decodeKey(kind, e.key),
          // Each its own copy: parsed from the write's text, or decoded from disk for this watcher alone.
          object: ownVersion<StoredKinds[K]>('json' in e ? JSON.parse(e.json) : e.value, e.rv),
          resourceVersion: String(e.rv),
        };
      }
      after = Math.max(after, upTo);
      if (after >= this.rv) await this.changed(signal);
    }
  }

  /** Events of kind after a version: from memory when it reaches back that far, else from disk. */
  private async next(kind: StoredKind, after: number): Promise<{ events: Array<EventRecord | RecentEvent>; upTo: number }> {
    this.checkHistory(kind, after);
    if (after >= this.recentFloor) {
      // The ring is in version order: start at the first event after `after` (every watcher wakes on every write; scanning the whole ring each time cost O(ring) per wake).
      let lo = 0;
      let hi = this.recent.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (this.recent[mid]!.rv <= after) lo = mid + 1;
        else hi = mid;
      }
      const events: RecentEvent[] = [];
      for (let i = lo; i < this.recent.length; i++) if (this.recent[i]!.kind === kind) events.push(this.recent[i]!);
      return { events, upTo: this.rv };
    }
    const upTo = this.rv;
    const page = await this.reading((db) => db.range<EventRecord>({ gt: eventKey(kind, after), lt: eventPrefix(kind) + end, limit: eventPageSize }));
    // Again after the read: compaction raises the mark before it deletes.
    this.checkHistory(kind, after);
    const events = page.map(([, e]) => e);
    return { events, upTo: events.length === eventPageSize ? events[events.length - 1]!.rv : upTo };
  }

  private checkHistory(kind: StoredKind, after: number): void {
    const compacted = this.compacted.get(kind) ?? 0;
    if (after < compacted) {
      throw new HawserError(
        ErrorCode.ResourceVersionTooOld,
        `watch ${kind} from resourceVersion ${after}: its history up to ${compacted} is compacted; list again and watch from the list's resourceVersion`,
      );
    }
  }

  private changed(signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted || this.closed) return resolve();
      const wake = () => {
        signal?.removeEventListener('abort', wake);
        this.waiters.delete(wake);
        resolve();
      };
      this.waiters.add(wake);
      signal?.addEventListener('abort', wake, { once: true });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const wake of this.waiters) wake();
    this.waiters.clear();
    await this.writeTail;
    await this.reopening?.catch(() => undefined);
    await this.db.close();
  }
}
