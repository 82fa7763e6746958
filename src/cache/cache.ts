import { createHash, randomBytes } from 'node:crypto';
import { cp, link, mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { LRUCache } from 'lru-cache';
import { ensurePrivateDir } from './files.js';

// The agent's durable memory: identity, credential, and (later) desired
// manifests. LevelDB underneath, an LRU in front for hot reads. Each value
// carries a checksum so a damaged entry is detected rather than trusted.

export class CacheCorruptError extends Error {
  override readonly name = 'CacheCorruptError';
  /** Equal to ErrorCode.CacheCorrupt in src/tunnel (cache does not import tunnel). */
  readonly code = 'HAWSER_CACHE_CORRUPT';
  constructor(
    /** The entry key, or undefined when the database as a whole is damaged. */
    readonly key: string | undefined,
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(key === undefined ? reason : `offline cache entry "${key}" is corrupt: ${reason}`, options);
  }
}

/**
 * LevelDB recovers from a damaged write-ahead log by dropping records and
 * only says so in its info LOG (classic-level does not expose
 * paranoid_checks). This open's LOG is read after opening: any dropped bytes
 * or corruption means the database lost data silently.
 */
async function recoveryProblem(dir: string): Promise<string | undefined> {
  const log = await readFile(join(dir, 'LOG'), 'utf8').catch(() => '');
  const line = log.split('\n').find((l) => /dropping \d+ bytes|Corruption:/.test(l));
  return line ? `LevelDB dropped data while recovering: ${line.replace(/^\S+ \S+ /, '').slice(0, 300)}` : undefined;
}

/** Hard links of every file in dir (LevelDB never rewrites a file in place): the pre-open state, at no copy cost. */
async function snapshotByLinks(dir: string, files: readonly string[]): Promise<string> {
  const snapshot = `${dir}.preopen-${randomBytes(4).toString('hex')}`;
  await mkdir(snapshot, { mode: 0o700 });
  for (const f of files) if (f !== 'LOCK') await link(join(dir, f), join(snapshot, f));
  return snapshot;
}

interface Envelope {
  sha256: string;
  value: unknown;
}

function digest(json: string): string {
  return createHash('sha256').update(json).digest('hex');
}

/** One write of an atomic batch. */
/** `hot: false` keeps a put out of the LRU (written once, rarely read: a log entry). */
export type CacheOp = { type: 'put'; key: string; value: unknown; hot?: boolean } | { type: 'del'; key: string };

/** A key range; bounds as LevelDB takes them. */
export interface CacheRange {
  gt?: string;
  gte?: string;
  lt?: string;
  lte?: string;
  limit?: number;
  reverse?: boolean;
}

/** Reads that all see the database as it was when the view was made. Close it when done. */
export interface CacheView {
  get<T>(key: string): Promise<T | undefined>;
  range<T>(range: CacheRange): Promise<Array<[string, T]>>;
  close(): Promise<void>;
}

/** The stored text, and for the LRU (hot) a private copy of the value as it will read back. */
function encodeEnvelope(value: unknown, hot: boolean): { stored: string; value?: unknown } {
  const json = JSON.stringify(value) as string | undefined;
  if (json === undefined) throw new TypeError('an offline cache value must be JSON');
  // The text JSON.stringify({ sha256, value }) gives (stringifying parsed JSON gives that JSON back), without parsing it to build it.
  return { stored: `{"sha256":${JSON.stringify(digest(json))},"value":${json}}`, ...(hot ? { value: JSON.parse(json) as unknown } : {}) };
}

function decodeEnvelope<T>(key: string, raw: string): T {
  let envelope: Envelope;
  try {
    envelope = JSON.parse(raw) as Envelope;
  } catch {
    throw new CacheCorruptError(key, 'not JSON');
  }
  const json = JSON.stringify(envelope.value);
  if (typeof envelope.sha256 !== 'string' || digest(json) !== envelope.sha256) {
    throw new CacheCorruptError(key, 'checksum mismatch');
  }
  return envelope.value as T;
}

async function readRange<T>(db: ClassicLevel<string, string>, range: CacheRange, snapshot: ReturnType<ClassicLevel<string, string>['snapshot']> | undefined): Promise<Array<[string, T]>> {
  const out: Array<[string, T]> = [];
  const options = Object.fromEntries(Object.entries({ ...range, snapshot }).filter(([, v]) => v !== undefined));
  for await (const [key, raw] of db.iterator(options)) out.push([key, decodeEnvelope<T>(key, raw)]);
  return out;
}

export interface OfflineCacheOptions {
  /** Directory of the LevelDB database; created if missing. */
  dir: string;
  /** Entries kept decoded in memory. */
  lruEntries?: number;
}

export class OfflineCache {
  private readonly db: ClassicLevel<string, string>;
  private readonly lru: LRUCache<string, { value: unknown }>;

  private constructor(readonly dir: string, lruEntries: number) {
    this.db = new ClassicLevel<string, string>(dir, { valueEncoding: 'utf8', keyEncoding: 'utf8' });
    this.lru = new LRUCache({ max: lruEntries });
  }

  /**
   * Opens the database. Never creates a fresh database over a directory that
   * holds data, and detects records LevelDB dropped while recovering: both
   * throw CacheCorruptError with the directory left exactly as it was.
   */
  static async open(options: OfflineCacheOptions): Promise<OfflineCache> {
    await ensurePrivateDir(options.dir);
    const files = (await readdir(options.dir)).filter((f) => f !== 'LOCK' && f !== 'LOG' && f !== 'LOG.old');
    const hasData = files.length > 0;
    if (hasData && !files.includes('CURRENT')) {
      throw new CacheCorruptError(
        undefined,
        `offline cache in ${options.dir} holds data (${files.slice(0, 5).join(', ')}) but no CURRENT file: refusing to create a fresh database over it`,
      );
    }
    const snapshot = hasData ? await snapshotByLinks(options.dir, await readdir(options.dir)) : undefined;
    const cache = new OfflineCache(options.dir, options.lruEntries ?? 1024);
    let problem: string | undefined;
    try {
      await cache.db.open({ createIfMissing: !hasData });
      problem = await recoveryProblem(options.dir);
      if (problem) await cache.db.close();
    } catch (cause) {
      const code = (cause as { code?: string }).code;
      const reason = (cause as { cause?: Error }).cause?.message ?? (cause as Error).message;
      if (snapshot) await rm(snapshot, { recursive: true, force: true });
      // Locked, new, or no room to recover into (a full disk is not damage): not corrupt.
      if (code === 'LEVEL_LOCKED' || /lock|No space left on device|ENOSPC/i.test(reason) || !hasData) {
        throw new Error(`cannot open offline cache in ${options.dir}: ${reason}`, { cause });
      }
      throw new CacheCorruptError(undefined, `cannot open offline cache in ${options.dir}: ${reason}`, { cause });
    }
    if (problem && snapshot) {
      // Put the original bytes back, so nothing is lost until someone decides.
      await rm(options.dir, { recursive: true, force: true });
      await rename(snapshot, options.dir);
      throw new CacheCorruptError(undefined, `offline cache in ${options.dir} is damaged: ${problem}`);
    }
    if (snapshot) await rm(snapshot, { recursive: true, force: true });
    return cache;
  }

  /**
   * Opens the database; a damaged one is moved aside (kept, never deleted)
   * and a fresh one opened in its place. For caches whose contents can be
   * rebuilt (the agent's, from the hub); the hub's store must not do this.
   */
  static async openOrQuarantine(
    options: OfflineCacheOptions & { now?: () => number },
  ): Promise<{ cache: OfflineCache; quarantined?: { path: string; reason: string } }> {
    try {
      return { cache: await OfflineCache.open(options) };
    } catch (err) {
      if (!(err instanceof CacheCorruptError)) throw err;
      const stamp = new Date((options.now ?? Date.now)()).toISOString().replace(/[:.]/g, '-');
      const path = `${options.dir}.quarantine-${stamp}`;
      await rename(options.dir, path);
      return { cache: await OfflineCache.open(options), quarantined: { path, reason: err.message } };
    }
  }

  /**
   * Reads one entry out of a quarantined (damaged) database without
   * touching it: LevelDB recovers what it can on a copy, and the entry
   * counts only if its checksum holds. Undefined when it cannot be read.
   */
  static async salvage<T>(dir: string, key: string): Promise<T | undefined> {
    const copy = `${dir}.salvage-${randomBytes(4).toString('hex')}`;
    try {
      await cp(dir, copy, { recursive: true });
      await rm(join(copy, 'LOCK'), { force: true });
      const cache = new OfflineCache(copy, 1);
      await cache.db.open({ createIfMissing: false });
      try {
        return await cache.get<T>(key);
      } finally {
        await cache.db.close();
      }
    } catch {
      return undefined;
    } finally {
      await rm(copy, { recursive: true, force: true });
    }
  }

  /** Bumped by every write: a read that started before one must not fill the LRU with what it read. */
  private writeEpoch = 0;

  async get<T>(key: string): Promise<T | undefined> {
    const hit = this.lru.get(key);
    if (hit) return hit.value as T;
    const epoch = this.writeEpoch;
    const raw = await this.db.get(key);
    if (raw === undefined) return undefined;
    const value = decodeEnvelope<T>(key, raw);
    if (epoch === this.writeEpoch) this.lru.set(key, { value });
    return value;
  }

  /**
   * Durable when the promise resolves (synchronous LevelDB write), unless
   * `durable: false`: for data the next report replaces anyway.
   */
  async put(key: string, value: unknown, options: { durable?: boolean } = {}): Promise<void> {
    await this.batch([{ type: 'put', key, value }], options);
  }

  /** All the writes or none (one LevelDB write batch); durable as put. */
  async batch(ops: readonly CacheOp[], options: { durable?: boolean } = {}): Promise<void> {
    const encoded = ops.map((op) => (op.type === 'put' ? { type: 'put' as const, key: op.key, hot: op.hot ?? true, ...encodeEnvelope(op.value, op.hot ?? true) } : op));
    this.writeEpoch++;
    try {
      await this.db.batch(
        encoded.map((op) => (op.type === 'put' ? { type: 'put' as const, key: op.key, value: op.stored } : { type: 'del' as const, key: op.key })),
        { sync: options.durable ?? true },
      );
    } finally {
      // Whether it landed or not, what the LRU held for these keys may be stale now.
      for (const op of encoded) this.lru.delete(op.key);
      this.writeEpoch++;
    }
    for (const op of encoded) if (op.type === 'put' && op.hot) this.lru.set(op.key, { value: op.value });
  }

  /** Every entry whose key starts with prefix, in key order, as of one moment. */
  async entries<T>(prefix: string): Promise<Array<[string, T]>> {
    return this.range<T>({ gte: prefix, lt: `${prefix}\uffff` });
  }

  /** Entries in a key range, in key order (or reverse), as of one moment; checksums verified. */
  range<T>(range: CacheRange): Promise<Array<[string, T]>> {
    return readRange<T>(this.db, range, undefined);
  }

  /** Keys in a range, without reading their values. */
  async keys(range: CacheRange): Promise<string[]> {
    const options = Object.fromEntries(Object.entries(range).filter(([, v]) => v !== undefined));
    const out: string[] = [];
    for await (const key of this.db.keys(options)) out.push(key);
    return out;
  }

  /** A consistent view for several reads (LevelDB snapshot). */
  view(): CacheView {
    const snapshot = this.db.snapshot();
    const db = this.db;
    return {
      async get<T>(key: string): Promise<T | undefined> {
        const raw = await db.get(key, { snapshot });
        return raw === undefined ? undefined : decodeEnvelope<T>(key, raw);
      },
      range: <T>(range: CacheRange) => readRange<T>(db, range, snapshot),
      close: () => snapshot.close(),
    };
  }

  async delete(key: string): Promise<void> {
    await this.batch([{ type: 'del', key }]);
  }

  async close(): Promise<void> {
    this.lru.clear();
    await this.db.close();
  }
}
