import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { ClassicLevel } from 'classic-level';
import { LRUCache } from 'lru-cache';

// The agent's durable memory: identity, credential, and (later) desired
// manifests. LevelDB underneath, an LRU in front for hot reads. Each value
// carries a checksum so a damaged entry is detected rather than trusted.

export class CacheCorruptError extends Error {
  override readonly name = 'CacheCorruptError';
  readonly code = 'HAWSER_CACHE_CORRUPT';
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super(`offline cache entry "${key}" is corrupt: ${reason}`);
  }
}

interface Envelope {
  sha256: string;
  value: unknown;
}

function digest(json: string): string {
  return createHash('sha256').update(json).digest('hex');
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

  static async open(options: OfflineCacheOptions): Promise<OfflineCache> {
    await mkdir(options.dir, { recursive: true });
    const cache = new OfflineCache(options.dir, options.lruEntries ?? 1024);
    try {
      await cache.db.open();
    } catch (cause) {
      const reason = (cause as { cause?: Error }).cause?.message ?? (cause as Error).message;
      throw new Error(`cannot open offline cache in ${options.dir}: ${reason}`, { cause });
    }
    return cache;
  }

  async get<T>(key: string): Promise<T | undefined> {
    const hit = this.lru.get(key);
    if (hit) return hit.value as T;
    const raw = await this.db.get(key);
    if (raw === undefined) return undefined;
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
    this.lru.set(key, { value: envelope.value });
    return envelope.value as T;
  }

  /**
   * Durable when the promise resolves (synchronous LevelDB write), unless
   * `durable: false`: for data the next report replaces anyway.
   */
  async put(key: string, value: unknown, options: { durable?: boolean } = {}): Promise<void> {
    const json = JSON.stringify(value);
    await this.db.put(key, JSON.stringify({ sha256: digest(json), value: JSON.parse(json) }), { sync: options.durable ?? true });
    this.lru.set(key, { value: JSON.parse(json) });
  }

  /** Every entry whose key starts with prefix, in key order. */
  async entries<T>(prefix: string): Promise<Array<[string, T]>> {
    const out: Array<[string, T]> = [];
    for await (const key of this.db.keys({ gte: prefix, lt: `${prefix}\uffff` })) {
      const value = await this.get<T>(key);
      if (value !== undefined) out.push([key, value]);
    }
    return out;
  }

  async delete(key: string): Promise<void> {
    await this.db.del(key, { sync: true });
    this.lru.delete(key);
  }

  async close(): Promise<void> {
    this.lru.clear();
    await this.db.close();
  }
}
