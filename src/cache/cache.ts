import { createHash, randomBytes } from 'node:crypto';
import { cp, link, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { LRUCache } from 'lru-cache';
import { ensurePrivateDir, syncDir, writeFileAtomic } from './files.js';

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
  /** 2: the checksum covers the key too (a record moved to another key by a damaged byte is caught). Absent: value only. */
  v?: number;
  sha256: string;
  value: unknown;
}

function digest(json: string, key?: string): string {
  const hash = createHash('sha256');
  if (key !== undefined) hash.update(key).update('\0');
  return hash.update(json).digest('hex');
}

/** A record whose bytes do not check out, as stored (for the quarantine file). */
export interface CorruptEntry {
  key: string;
  /** The stored bytes, cut to 64 KiB. */
  raw: string;
  reason: string;
}

/** A range read that keeps going past damaged records. */
export interface ScanResult<T> {
  entries: Array<[string, T]>;
  corrupt: CorruptEntry[];
}

/** LevelDB's own corruption error (a table block or log that does not parse), as a CacheCorruptError. */
function levelError(err: unknown): unknown {
  const code = (err as { code?: string }).code;
  const message = (err as { cause?: Error }).cause?.message ?? (err as Error).message ?? String(err);
  if (code === 'LEVEL_CORRUPTION' || /Corruption:/.test(message)) return new CacheCorruptError(undefined, `LevelDB reports corruption: ${message.slice(0, 300)}`, { cause: err });
  return err;
}

/** One write of an atomic batch. */
/** `hot: false` keeps a put out of the LRU (written once, rarely read: a log entry). */
/** `putJson`: a put of a value the caller has as JSON text already (exactly what JSON.stringify gives), not serialised again. */
export type CacheOp =
  | { type: 'put'; key: string; value: unknown; hot?: boolean }
  | { type: 'putJson'; key: string; json: string; hot?: boolean }
  | { type: 'del'; key: string };

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
  /** As range, but damaged records are returned apart instead of failing the read. */
  scan<T>(range: CacheRange): Promise<ScanResult<T>>;
  close(): Promise<void>;
}

/** The stored text, and for the LRU (hot) a private copy of the value as it will read back. The checksum covers the key too. */
function encodeEnvelope(key: string, value: unknown, text?: string): { stored: string; json: string } {
  const json = text ?? (JSON.stringify(value) as string | undefined);
  if (json === undefined) throw new TypeError('an offline cache value must be JSON');
  // The text JSON.stringify({ v, sha256, value }) gives (stringifying parsed JSON gives that JSON back), without parsing it to build it.
  return { stored: `{"v":2,"sha256":${JSON.stringify(digest(json, key))},"value":${json}}`, json };
}

function decodeEnvelope<T>(key: string, raw: string): T {
  return decodeEnvelopeText<T>(key, raw).value;
}

/** The value, and its JSON text as the checksum covers it. */
function decodeEnvelopeText<T>(key: string, raw: string): { value: T; json: string } {
  let envelope: Envelope;
  try {
    envelope = JSON.parse(raw) as Envelope;
  } catch {
    throw new CacheCorruptError(key, 'not JSON');
  }
  if (typeof envelope !== 'object' || envelope === null) throw new CacheCorruptError(key, 'not an envelope');
  const json = JSON.stringify(envelope.value);
  if (json === undefined) throw new CacheCorruptError(key, 'no value');
  const expected = envelope.v === 2 ? digest(json, key) : envelope.v === undefined ? digest(json) : undefined;
  if (typeof envelope.sha256 !== 'string' || expected !== envelope.sha256) {
    throw new CacheCorruptError(key, 'checksum mismatch');
  }
  return { value: envelope.value as T, json };
}

type LevelSnapshot = ReturnType<ClassicLevel<string, string>['snapshot']>;

async function readRange<T>(db: ClassicLevel<string, string>, range: CacheRange, snapshot: LevelSnapshot | undefined): Promise<Array<[string, T]>> {
  const { entries, corrupt } = await scanRange<T>(db, range, snapshot);
  if (corrupt[0]) throw new CacheCorruptError(corrupt[0].key, corrupt[0].reason);
  return entries;
}

async function scanRange<T>(db: ClassicLevel<string, string>, range: CacheRange, snapshot: LevelSnapshot | undefined): Promise<ScanResult<T>> {
  const entries: Array<[string, T]> = [];
  const corrupt: CorruptEntry[] = [];
  const options = Object.fromEntries(Object.entries({ ...range, snapshot }).filter(([, v]) => v !== undefined));
  try {
    for await (const [key, raw] of db.iterator(options)) {
      try {
        entries.push([key, decodeEnvelope<T>(key, raw)]);
      } catch (err) {
        corrupt.push({ key, raw: raw.slice(0, 65536), reason: (err as Error).message });
      }
    }
  } catch (err) {
    throw levelError(err);
  }
  return { entries, corrupt };
}

export interface OfflineCacheOptions {
  /** Directory of the LevelDB database; created if missing. */
  dir: string;
  /** Entries kept decoded in memory. */
  lruEntries?: number;
  /**
   * The LRU keeps each entry as its JSON text and every get returns its own
   * parsed copy (else one decoded value, shared by every get): for a caller
   * that copies what it reads anyway (the hub's store).
   */
  lruText?: boolean;
}

/** What openOrQuarantine did with a damaged database. */
export interface CacheQuarantine {
  /** Where the damaged database was moved (kept as it was, for an operator). */
  path: string;
  reason: string;
  /** With `salvage`: records were recovered from a copy of it (each still to be checked by its reader). */
  salvaged: boolean;
}

/** A quarantine beside the database: a damaged records' file or a damaged database moved aside. */
export interface QuarantineFile {
  path: string;
  /** Bytes on disk (all its files, for a database). */
  bytes: number;
  modifiedMs: number;
}

/** Bytes of the regular files in dir and below. */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) total += await bytesUnder(path);
    else if (entry.isFile()) total += (await stat(path).catch(() => undefined))?.size ?? 0;
  }
  return total;
}

export class OfflineCache {
  private db: ClassicLevel<string, string>;
  private readonly lru: LRUCache<string, { value?: unknown; json?: string }>;

  private constructor(
    readonly dir: string,
    lruEntries: number,
    private readonly lruText = false,
  ) {
    this.db = OfflineCache.level(dir);
    this.lru = new LRUCache({ max: lruEntries });
  }

  private static level(dir: string): ClassicLevel<string, string> {
    return new ClassicLevel<string, string>(dir, { valueEncoding: 'utf8', keyEncoding: 'utf8' });
  }

  /**
   * Opens the database. Never creates a fresh database over a directory that
   * holds data, and detects records LevelDB dropped while recovering: both
   * throw CacheCorruptError with the directory left exactly as it was.
   */
  static async open(options: OfflineCacheOptions): Promise<OfflineCache> {
    await OfflineCache.finishSwap(options.dir);
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
    const cache = new OfflineCache(options.dir, options.lruEntries ?? 1024, options.lruText);
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
   * With `salvage`, the fresh one starts from what LevelDB's repair recovers
   * of a copy of the damaged one (records that fail their checksum stay
   * detectable: the reader decides what to keep), else empty.
   */
  static async openOrQuarantine(
    options: OfflineCacheOptions & { now?: () => number; salvage?: boolean },
  ): Promise<{ cache: OfflineCache; quarantined?: CacheQuarantine }> {
    try {
      return { cache: await OfflineCache.open(options) };
    } catch (err) {
      if (!(err instanceof CacheCorruptError)) throw err;
      const path = await OfflineCache.moveAside(options.dir, options.now ?? Date.now);
      const salvaged = options.salvage ? await OfflineCache.salvageInto(path, options) : undefined;
      return { cache: salvaged ?? (await OfflineCache.open(options)), quarantined: { path, reason: err.message, salvaged: salvaged !== undefined } };
    }
  }

  private static async moveAside(dir: string, now: () => number): Promise<string> {
    const stamp = new Date(now()).toISOString().replace(/[:.]/g, '-');
    let path = `${dir}.quarantine-${stamp}`;
    // Two quarantines in one millisecond (a reopen right after one) must not collide.
    if (await stat(path).then(() => true, () => false)) path = `${path}-${randomBytes(3).toString('hex')}`;
    await rename(dir, path);
    return path;
  }

  /** A copy of the quarantined database, repaired by LevelDB and opened at dir; undefined when that fails (dir removed). */
  private static async salvageInto(quarantined: string, options: OfflineCacheOptions): Promise<OfflineCache | undefined> {
    try {
      await cp(quarantined, options.dir, { recursive: true });
      await rm(join(options.dir, 'LOCK'), { force: true });
      await ClassicLevel.repair(options.dir);
      // Repair's own LOG says what it dropped; that is known already, not a new loss.
      for (const f of ['LOG', 'LOG.old', 'lost']) await rm(join(options.dir, f), { recursive: true, force: true });
      return await OfflineCache.open(options);
    } catch {
      await rm(options.dir, { recursive: true, force: true });
      return undefined;
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
    if (hit) return (hit.json !== undefined ? JSON.parse(hit.json) : hit.value) as T;
    const epoch = this.writeEpoch;
    let raw: string | undefined;
    try {
      raw = await this.reading((db) => db.get(key));
    } catch (err) {
      throw levelError(err);
    }
    if (raw === undefined) return undefined;
    const { value, json } = decodeEnvelopeText<T>(key, raw);
    if (epoch === this.writeEpoch) this.lru.set(key, this.lruText ? { json } : { value });
    return value;
  }

  /**
   * Durable when the promise resolves (synchronous LevelDB write), unless
   * `durable: false`: for data the next report replaces anyway.
   */
  async put(key: string, value: unknown, options: { durable?: boolean } = {}): Promise<void> {
    await this.batch([{ type: 'put', key, value }], options);
  }

  /** Times the database was closed and opened again after a failed write. */
  reopens = 0;
  /** A write failed: LevelDB's log may end in a torn record, so the next write reopens first. */
  private broken = false;

  /**
   * All the writes or none (one LevelDB write batch); durable as put. A
   * failed write (disk full, I/O error) rejects; the next write first closes
   * and opens the database again (replaying its log: what was durable stays,
   * the failed batch is wholly there or wholly absent, a torn tail is
   * dropped), so one failure does not leave the cache broken. Reads go on
   * meanwhile.
   */
  async batch(ops: readonly CacheOp[], options: { durable?: boolean } = {}): Promise<void> {
    const encoded = ops.map((op) =>
      op.type === 'del'
        ? op
        : { type: 'put' as const, key: op.key, hot: op.hot ?? true, ...encodeEnvelope(op.key, op.type === 'put' ? op.value : undefined, op.type === 'putJson' ? op.json : undefined) },
    );
    while (this.compacting) await this.compacting.catch(() => undefined);
    if (this.broken) await this.reopen();
    this.writeEpoch++;
    const write = this.db.batch(
      encoded.map((op) => (op.type === 'put' ? { type: 'put' as const, key: op.key, value: op.stored } : { type: 'del' as const, key: op.key })),
      { sync: options.durable ?? true },
    );
    this.writing.add(write);
    try {
      await write;
    } catch (err) {
      if ((err as { code?: string }).code !== 'LEVEL_DATABASE_NOT_OPEN') this.broken = true;
      throw levelError(err);
    } finally {
      this.writing.delete(write);
      // Whether it landed or not, what the LRU held for these keys may be stale now.
      for (const op of encoded) this.lru.delete(op.key);
      this.writeEpoch++;
    }
    // A private copy for the LRU (the caller may change its value), or the text itself.
    for (const op of encoded) if (op.type === 'put' && op.hot) this.lru.set(op.key, this.lruText ? { json: op.json } : { value: JSON.parse(op.json) as unknown });
  }

  /** One reopen at a time. One that fails (still no room) opens the old handle again and rejects; the next write tries again. */
  private reopening: Promise<void> | undefined;

  private async reopen(): Promise<void> {
    this.reopening ??= (async () => {
      const old = this.db;
      await old.close();
      const fresh = OfflineCache.level(this.dir);
      try {
        await fresh.open({ createIfMissing: false });
      } catch (err) {
        await old.open({ createIfMissing: false }).catch(() => undefined);
        const reason = (err as { cause?: Error }).cause?.message ?? (err as Error).message;
        throw new Error(`offline cache in ${this.dir}: cannot reopen after a failed write: ${reason}`, { cause: err });
      }
      this.db = fresh;
      this.lru.clear();
      this.broken = false;
      this.reopens++;
    })().finally(() => (this.reopening = undefined));
    await this.reopening;
  }

  /** Every entry whose key starts with prefix, in key order, as of one moment. */
  async entries<T>(prefix: string): Promise<Array<[string, T]>> {
    return this.range<T>({ gte: prefix, lt: `${prefix}\uffff` });
  }

  /** Entries in a key range, in key order (or reverse), as of one moment; checksums verified. */
  range<T>(range: CacheRange): Promise<Array<[string, T]>> {
    return this.reading((db) => readRange<T>(db, range, undefined));
  }

  /** As range, but a record that fails its checksum is returned apart instead of failing the read. */
  scan<T>(range: CacheRange): Promise<ScanResult<T>> {
    return this.reading((db) => scanRange<T>(db, range, undefined));
  }

  /** Keys in a range, without reading their values. */
  async keys(range: CacheRange): Promise<string[]> {
    const options = Object.fromEntries(Object.entries(range).filter(([, v]) => v !== undefined));
    const out: string[] = [];
    try {
      await this.reading(async (db) => {
        for await (const key of db.keys(options)) out.push(key);
      });
    } catch (err) {
      throw levelError(err);
    }
    return out;
  }

  /** Reads and views under way: compact() closes the database only once they are done. */
  private readonly reads = new Set<Promise<unknown>>();

  /** A read on the open database, after any swap under way, that a swap waits for. */
  private async reading<T>(read: (db: ClassicLevel<string, string>) => Promise<T>): Promise<T> {
    while (this.swapping) await this.swapping;
    const done = read(this.db);
    this.reads.add(done);
    try {
      return await done;
    } finally {
      this.reads.delete(done);
    }
  }

  /** A consistent view for several reads (LevelDB snapshot); a compaction's swap waits until it is closed. */
  view(): CacheView {
    let closed!: () => void;
    const open = new Promise<void>((resolve) => (closed = resolve));
    const takeNow = () => {
      this.reads.add(open);
      return { db: this.db, snapshot: this.db.snapshot() };
    };
    // As of now; during a compaction's swap (writes wait for it: nothing changes meanwhile), once it is done.
    let taken: Promise<{ db: ClassicLevel<string, string>; snapshot: LevelSnapshot }> | undefined = this.swapping ? undefined : Promise.resolve(takeNow());
    const take = () =>
      (taken ??= (async () => {
        while (this.swapping) await this.swapping;
        return takeNow();
      })());
    return {
      async get<T>(key: string): Promise<T | undefined> {
        const { db, snapshot } = await take();
        let raw: string | undefined;
        try {
          raw = await db.get(key, { snapshot });
        } catch (err) {
          throw levelError(err);
        }
        return raw === undefined ? undefined : decodeEnvelope<T>(key, raw);
      },
      range: async <T>(range: CacheRange) => {
        const { db, snapshot } = await take();
        return readRange<T>(db, range, snapshot);
      },
      scan: async <T>(range: CacheRange) => {
        const { db, snapshot } = await take();
        return scanRange<T>(db, range, snapshot);
      },
      close: async () => {
        if (taken) await (await taken).snapshot.close();
        this.reads.delete(open);
        closed();
      },
    };
  }

  /**
   * Moves damaged records aside: their stored bytes go to a file beside the
   * database (<dir>.quarantine-<time>.json, 0600, for an operator to look
   * at), then they are deleted, with `alongside` (given the file's path) in
   * the same batch. Returns the file's path.
   */
  async quarantineEntries(corrupt: readonly CorruptEntry[], alongside: readonly CacheOp[] | ((path: string) => CacheOp[]), now: number): Promise<string> {
    const stamp = new Date(now).toISOString().replace(/[:.]/g, '-');
    const path = `${this.dir}.quarantine-${stamp}-${randomBytes(3).toString('hex')}.json`;
    await writeFileAtomic(path, `${JSON.stringify({ quarantinedAt: new Date(now).toISOString(), records: corrupt }, null, 1)}\n`, { mode: 0o600 });
    await this.batch([...corrupt.map((c) => ({ type: 'del' as const, key: c.key })), ...(typeof alongside === 'function' ? alongside(path) : alongside)]);
    return path;
  }

  /**
   * The database reports corruption while open (a damaged table file): it is
   * closed, moved aside (kept), and what LevelDB's repair recovers of a copy
   * is opened in its place (empty when nothing can be). Reads and writes go
   * on against the new one.
   */
  async salvageInPlace(now: () => number = Date.now): Promise<CacheQuarantine> {
    await this.compacting?.catch(() => undefined);
    await this.reopening?.catch(() => undefined);
    await this.db.close();
    const path = await OfflineCache.moveAside(this.dir, now);
    const salvaged = await OfflineCache.salvageInto(path, { dir: this.dir });
    const next = salvaged ?? (await OfflineCache.open({ dir: this.dir }));
    this.db = next.db;
    this.lru.clear();
    this.broken = false;
    this.writeEpoch++;
    return { path, reason: 'LevelDB reported corruption while reading', salvaged: salvaged !== undefined };
  }

  /** Bytes the database's files take on disk now. */
  async sizeOnDisk(): Promise<number> {
    return bytesUnder(this.dir);
  }

  /**
   * What was moved aside beside the database (damaged records' files and
   * damaged databases), newest first, with the bytes each takes on disk.
   */
  async quarantines(): Promise<QuarantineFile[]> {
    const parent = dirname(this.dir);
    const prefix = `${basename(this.dir)}.quarantine-`;
    const out: Array<QuarantineFile & { name: string }> = [];
    for (const name of await readdir(parent).catch(() => [] as string[])) {
      if (!name.startsWith(prefix)) continue;
      const path = join(parent, name);
      const s = await stat(path).catch(() => undefined);
      if (!s) continue;
      out.push({ path, bytes: s.isDirectory() ? await bytesUnder(path) : s.size, modifiedMs: s.mtimeMs, name });
    }
    // The name carries the ISO time it was made (mtime is the damaged files' own for a database moved aside).
    return out.sort((a, b) => (a.name < b.name ? 1 : a.name > b.name ? -1 : b.modifiedMs - a.modifiedMs)).map(({ path, bytes, modifiedMs }) => ({ path, bytes, modifiedMs }));
  }

  /**
   * Keeps the newest quarantines that fit in `maxFiles` and `maxBytes`
   * together and removes the rest (oldest first to go). Returns what was removed.
   */
  async trimQuarantines(limit: { maxFiles: number; maxBytes: number }): Promise<QuarantineFile[]> {
    const dropped: QuarantineFile[] = [];
    let files = 0;
    let bytes = 0;
    for (const q of await this.quarantines()) {
      if (files < limit.maxFiles && bytes + q.bytes <= limit.maxBytes) {
        files++;
        bytes += q.bytes;
        continue;
      }
      await rm(q.path, { recursive: true, force: true });
      dropped.push(q);
    }
    return dropped;
  }

  /** Set while compact() rewrites the database: writes wait for it. */
  private compacting: Promise<void> | undefined;
  /** Writes under way (compact() waits for them before it copies). */
  private readonly writing = new Set<Promise<unknown>>();

  /**
   * Rewrites the database with only its live records: overwritten and
   * deleted versions and the write-ahead log go. (LevelDB's compactRange
   * leaves a table at its last level as it is, old versions and all.) The
   * records are copied as stored into <dir>.compact-*, made durable, and
   * swapped in by two renames; open() finishes or undoes a swap a crash
   * cut. Writes wait meanwhile; reads go on. Takes about the live bytes
   * again on disk while it runs.
   */
  compact(): Promise<void> {
    this.compacting ??= this.rewrite().finally(() => (this.compacting = undefined));
    return this.compacting;
  }

  private async rewrite(): Promise<void> {
    await this.reopening?.catch(() => undefined);
    await Promise.allSettled([...this.writing]);
    const suffix = randomBytes(4).toString('hex');
    const copy = `${this.dir}.compact-${suffix}`;
    await ensurePrivateDir(copy);
    const fresh = OfflineCache.level(copy);
    try {
      await fresh.open({ createIfMissing: true });
      let ops: Array<{ type: 'put'; key: string; value: string }> = [];
      let bytes = 0;
      // Every batch durable: the copy is whole on disk before it is swapped in.
      for await (const [key, value] of this.db.iterator()) {
        ops.push({ type: 'put', key, value });
        bytes += key.length + value.length;
        if (bytes >= 1024 * 1024) {
          await fresh.batch(ops, { sync: true });
          ops = [];
          bytes = 0;
        }
      }
      if (ops.length > 0) await fresh.batch(ops, { sync: true });
      await fresh.close();
    } catch (err) {
      await fresh.close().catch(() => undefined);
      await rm(copy, { recursive: true, force: true });
      throw levelError(err);
    }
    const old = `${this.dir}.old-${suffix}`;
    let swapped!: () => void;
    // New reads wait out the swap; those under way (and open views) finish on the old database first.
    this.swapping = new Promise<void>((resolve) => (swapped = resolve));
    try {
      await Promise.allSettled([...this.reads]);
      await this.swap(copy, old);
    } finally {
      this.swapping = undefined;
      swapped();
    }
    await rm(old, { recursive: true, force: true });
  }

  /** Reads wait on this while compact() swaps the database. */
  private swapping: Promise<void> | undefined;

  private async swap(copy: string, old: string): Promise<void> {
    await this.db.close();
    try {
      await rename(this.dir, old);
      await rename(copy, this.dir);
      await syncDir(dirname(this.dir));
    } catch (err) {
      // Undo what was done; the old database opens again as it was.
      if (!(await stat(this.dir).then(() => true, () => false))) await rename(old, this.dir).catch(() => undefined);
      await rm(copy, { recursive: true, force: true });
      await this.db.open({ createIfMissing: false });
      throw err;
    }
    const next = OfflineCache.level(this.dir);
    await next.open({ createIfMissing: false });
    this.db = next;
    this.lru.clear();
    this.writeEpoch++;
  }

  /**
   * A compaction's swap cut by a crash: with the database directory gone,
   * the old one (whole) goes back; with it there, the swap finished and the
   * old one goes. A copy never swapped in is removed.
   */
  private static async finishSwap(dir: string): Promise<void> {
    const parent = dirname(dir);
    const base = basename(dir);
    const names = await readdir(parent).catch(() => [] as string[]);
    const olds = names.filter((n) => n.startsWith(`${base}.old-`));
    if (!names.includes(base) && olds.length === 1) await rename(join(parent, olds[0]!), dir);
    else for (const n of olds) await rm(join(parent, n), { recursive: true, force: true });
    for (const n of names.filter((n) => n.startsWith(`${base}.compact-`))) await rm(join(parent, n), { recursive: true, force: true });
  }

  async delete(key: string): Promise<void> {
    await this.batch([{ type: 'del', key }]);
  }

  async close(): Promise<void> {
    this.lru.clear();
    await this.compacting?.catch(() => undefined);
    await this.reopening?.catch(() => undefined);
    await this.db.close();
  }
}
