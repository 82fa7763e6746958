import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';
import { CacheCorruptError, OfflineCache } from '../../src/cache/index.js';

describe('OfflineCache', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  async function dir(): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'hawser-cache-'));
    dirs.push(d);
    return join(d, 'db');
  }

  it('keeps values across a close and reopen', async () => {
    const path = await dir();
    const a = await OfflineCache.open({ dir: path });
    await a.put('identity', { clusterId: 'x', credential: 'c' });
    await a.put('manifest/b', 2, { durable: false });
    await a.close();
    const b = await OfflineCache.open({ dir: path });
    expect(await b.get('identity')).toEqual({ clusterId: 'x', credential: 'c' });
    expect(await b.get('missing')).toBeUndefined();
    await b.put('manifest/a', 1);
    expect(await b.entries('manifest/')).toEqual([
      ['manifest/a', 1],
      ['manifest/b', 2],
    ]);
    await b.delete('manifest/a');
    expect(await b.entries('manifest/')).toEqual([['manifest/b', 2]]);
    await b.close();
  });

  it('putJson stores text a caller serialised as a put of its value would, checksum and all', async () => {
    const path = await dir();
    const a = await OfflineCache.open({ dir: path });
    const value = { rv: 3, value: { metadata: { name: 'a' }, data: { k: 'v' } } };
    await a.batch([
      { type: 'putJson', key: 'o/a', json: JSON.stringify(value) },
      { type: 'putJson', key: 'e/a', json: JSON.stringify(value), hot: false },
      { type: 'put', key: 'o/b', value },
    ]);
    expect(await a.get('o/a')).toEqual(value);
    await a.close();
    const b = await OfflineCache.open({ dir: path });
    // Read from disk: each record checks out against its checksum.
    expect(await b.scan({ gte: '', lt: '\uffff' })).toEqual({ entries: [['e/a', value], ['o/a', value], ['o/b', value]], corrupt: [] });
    await b.close();
  });

  it('lruText: every get, from memory or disk, is its own copy', async () => {
    const path = await dir();
    const a = await OfflineCache.open({ dir: path, lruText: true });
    const value = { data: { k: 'v' } };
    await a.put('a', value);
    value.data.k = 'changed by the writer';
    const first = await a.get<typeof value>('a');
    first!.data.k = 'changed by a reader';
    expect(await a.get('a')).toEqual({ data: { k: 'v' } });
    await a.close();
    const b = await OfflineCache.open({ dir: path, lruText: true });
    const fromDisk = await b.get<typeof value>('a');
    fromDisk!.data.k = 'changed';
    expect(await b.get('a')).toEqual({ data: { k: 'v' } });
    await b.close();
  });

  it('detects a damaged entry instead of trusting it', async () => {
    const path = await dir();
    const a = await OfflineCache.open({ dir: path });
    await a.put('identity', { clusterId: 'x' });
    await a.close();
    // Flip the stored value behind the cache's back, keeping the old checksum.
    const raw = new ClassicLevel<string, string>(path);
    const stored = JSON.parse(await raw.get('identity') as string) as { sha256: string; value: unknown };
    await raw.put('identity', JSON.stringify({ ...stored, value: { clusterId: 'y' } }));
    await raw.put('garbage', '{not json');
    await raw.close();

    const b = await OfflineCache.open({ dir: path });
    const err = await b.get('identity').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CacheCorruptError);
    expect((err as CacheCorruptError).code).toBe('HAWSER_CACHE_CORRUPT');
    expect((err as Error).message).toContain('"identity"');
    await expect(b.get('garbage')).rejects.toThrow(/"garbage" is corrupt: not JSON/);
    await b.close();
  });

  it('names the directory when it cannot open', async () => {
    const path = await dir();
    const a = await OfflineCache.open({ dir: path });
    // LevelDB holds a lock: a second opener (another agent on the same dir) is refused.
    await expect(OfflineCache.open({ dir: path })).rejects.toThrow(path);
    await a.close();
  });

  /** A database holding `keys`, closed, with the path of its write-ahead log. */
  async function filled(path: string, keys: string[]): Promise<string> {
    const a = await OfflineCache.open({ dir: path });
    for (const k of keys) await a.put(k, { k, pad: 'x'.repeat(100) });
    await a.close();
    const log = (await readdir(path)).find((f) => f.endsWith('.log'));
    if (!log) throw new Error('no write-ahead log');
    return join(path, log);
  }

  it('detects a record LevelDB would drop silently for one flipped byte in its log, and leaves the bytes as they were', async () => {
    const path = await dir();
    const log = await filled(path, ['a', 'identity', 'z']);
    const bytes = await readFile(log);
    bytes[bytes.indexOf('identity') + 20]! ^= 0xff;
    await writeFile(log, bytes);

    const err = await OfflineCache.open({ dir: path }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CacheCorruptError);
    expect((err as CacheCorruptError).code).toBe('HAWSER_CACHE_CORRUPT');
    expect((err as Error).message).toContain('checksum mismatch');
    // The damaged log is still there, unchanged: nothing was "recovered" away.
    expect(await readFile(log)).toEqual(bytes);
  });

  it('quarantines a damaged database (kept, renamed) and opens a fresh one', async () => {
    const path = await dir();
    const log = await filled(path, ['a', 'identity', 'z']);
    const bytes = await readFile(log);
    bytes[bytes.indexOf('identity') + 20]! ^= 0xff;
    await writeFile(log, bytes);

    const { cache, quarantined } = await OfflineCache.openOrQuarantine({ dir: path, now: () => Date.UTC(2025, 0, 1) });
    expect(quarantined?.path).toBe(`${path}.quarantine-2025-01-01T00-00-00-000Z`);
    expect(await readFile(join(quarantined!.path, basename(log)))).toEqual(bytes);
    expect(await cache.get('a')).toBeUndefined();
    await cache.put('a', 1);
    await cache.close();
    // The next open is clean: nothing left to quarantine.
    const again = await OfflineCache.openOrQuarantine({ dir: path });
    expect(again.quarantined).toBeUndefined();
    expect(await again.cache.get('a')).toBe(1);
    await again.cache.close();
  });

  it('never creates a fresh database over data whose CURRENT and MANIFEST are gone', async () => {
    const path = await dir();
    const log = await filled(path, ['identity']);
    for (const f of await readdir(path)) if (f === 'CURRENT' || f.startsWith('MANIFEST')) await rm(join(path, f));
    const err = await OfflineCache.open({ dir: path }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CacheCorruptError);
    expect((err as Error).message).toContain('no CURRENT file');
    const { cache, quarantined } = await OfflineCache.openOrQuarantine({ dir: path });
    expect(await readdir(quarantined!.path)).toContain(basename(log));
    await cache.close();
  });

  it('compact() rewrites the database with its live records only: smaller on disk, every record and a write made meanwhile kept', async () => {
    const path = await dir();
    const cache = await OfflineCache.open({ dir: path });
    for (let round = 0; round < 10; round++) for (let i = 0; i < 20; i++) await cache.put(`o/${i}`, { round, data: String(round).repeat(4000) });
    await cache.delete('o/19');
    const before = await cache.sizeOnDisk();
    const compacting = cache.compact();
    // A write while it runs waits for the swap and lands in the new database.
    const during = cache.put('o/new', { written: 'during' });
    await compacting;
    await during;
    expect(await cache.sizeOnDisk()).toBeLessThan(before / 5);
    expect((await readdir(join(path, '..'))).filter((n) => n !== 'db')).toEqual([]);
    await cache.close();
    const again = await OfflineCache.open({ dir: path });
    for (let i = 0; i < 19; i++) expect(await again.get(`o/${i}`)).toEqual({ round: 9, data: '9'.repeat(4000) });
    expect(await again.get('o/19')).toBeUndefined();
    expect(await again.get('o/new')).toEqual({ written: 'during' });
    await again.close();
  });

  it('compact() waits for a view open on the old database; reads go on meanwhile, and see the same records after', async () => {
    const path = await dir();
    const cache = await OfflineCache.open({ dir: path });
    for (let round = 0; round < 3; round++) for (let i = 0; i < 10; i++) await cache.put(`o/${i}`, { round });
    const view = cache.view();
    expect(await view.get('o/1')).toEqual({ round: 2 });
    let compacted = false;
    const compacting = cache.compact().then(() => (compacted = true));
    // The view reads on through the copy; the swap cannot happen under it.
    expect((await view.range({ gte: 'o/', lt: 'o/~' })).length).toBe(10);
    expect(await cache.get('o/3')).toEqual({ round: 2 });
    expect(compacted).toBe(false);
    await view.close();
    await compacting;
    expect(await cache.range({ gte: 'o/', lt: 'o/~' })).toEqual([...Array(10).keys()].map((i) => [`o/${i}`, { round: 2 }]));
    const after = cache.view();
    expect(await after.get('o/9')).toEqual({ round: 2 });
    await after.close();
    await cache.close();
  });

  it("a compaction's swap cut by a crash: open() puts the old database back when the new one was not renamed in yet, and drops leftovers", async () => {
    const path = await dir();
    const cache = await OfflineCache.open({ dir: path });
    await cache.put('acked', { revision: 7 });
    await cache.close();
    // Crash between the two renames: the database moved to .old-*, the copy still at .compact-*.
    await rename(path, `${path}.old-0badc0de`);
    await mkdir(`${path}.compact-0badc0de`);
    await writeFile(join(`${path}.compact-0badc0de`, 'CURRENT'), 'partial');
    const reopened = await OfflineCache.open({ dir: path });
    expect(await reopened.get('acked')).toEqual({ revision: 7 });
    await reopened.close();
    expect((await readdir(join(path, '..'))).sort()).toEqual(['db']);
    // Crash after the second rename: the new database in place, the old one left beside it.
    await mkdir(`${path}.old-12345678`);
    await writeFile(join(`${path}.old-12345678`, 'CURRENT'), 'stale');
    const after = await OfflineCache.open({ dir: path });
    expect(await after.get('acked')).toEqual({ revision: 7 });
    await after.close();
    expect((await readdir(join(path, '..'))).sort()).toEqual(['db']);
  });

  it('creates its directory 0700', async () => {
    const path = await dir();
    const a = await OfflineCache.open({ dir: path });
    expect((await stat(path)).mode & 0o777).toBe(0o700);
    await a.close();
  });
});
