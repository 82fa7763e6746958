import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';
import { CacheCorruptError, OfflineCache } from '../../src/cache/index.js';
import { mountSmallDisk } from '../../src/testkit/index.js';

// Damaged records are found one by one (the rest stays readable), moved
// aside into a file an operator can read, and a damaged database is
// salvaged on a copy; a failed write does not leave the database broken.

describe('OfflineCache: damaged records and failed writes', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  async function dir(): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'hawser-cache-'));
    dirs.push(d);
    return join(d, 'db');
  }

  async function rawPut(path: string, key: string, value: string): Promise<void> {
    const raw = new ClassicLevel<string, string>(path);
    await raw.put(key, value);
    await raw.close();
  }

  it('scan returns the records that check out and the damaged ones apart; range still refuses', async () => {
    const path = await dir();
    const a = await OfflineCache.open({ dir: path });
    await a.batch([1, 2, 3].map((i) => ({ type: 'put' as const, key: `obj/${i}`, value: { i } })));
    await a.close();
    const raw = new ClassicLevel<string, string>(path);
    const stored = (await raw.get('obj/2'))!;
    await raw.put('obj/2', stored.replace('"i":2', '"i":7'));
    await raw.put('obj/4', stored.slice(0, 20));
    await raw.close();

    const b = await OfflineCache.open({ dir: path });
    const { entries, corrupt } = await b.scan<{ i: number }>({ gte: 'obj/', lt: 'obj/\uffff' });
    expect(entries).toEqual([
      ['obj/1', { i: 1 }],
      ['obj/3', { i: 3 }],
    ]);
    expect(corrupt.map((c) => [c.key, c.reason])).toEqual([
      ['obj/2', expect.stringContaining('checksum mismatch')],
      ['obj/4', expect.stringContaining('not JSON')],
    ]);
    await expect(b.entries('obj/')).rejects.toBeInstanceOf(CacheCorruptError);
    const view = b.view();
    expect((await view.scan({ gte: 'obj/', lt: 'obj/\uffff' })).corrupt).toHaveLength(2);
    await view.close();
    await b.close();
  });

  it('binds each checksum to its key: a record moved under another key does not check out', async () => {
    const path = await dir();
    const a = await OfflineCache.open({ dir: path });
    await a.put('obj/a', { x: 1 });
    await a.close();
    const raw = new ClassicLevel<string, string>(path);
    await raw.put('obj/b', (await raw.get('obj/a'))!);
    // A record from before keys were bound (no "v") still reads.
    await raw.put('old', JSON.stringify({ sha256: '2ed6e6ef4ec3e2c1d0e8ff7bee8c67ac5c0ea7e3658c6d1a2c58b49b9a0e7c4b', value: 1 }));
    await raw.close();
    const b = await OfflineCache.open({ dir: path });
    expect(await b.get('obj/a')).toEqual({ x: 1 });
    await expect(b.get('obj/b')).rejects.toThrow(/"obj\/b" is corrupt: checksum mismatch/);
    await b.close();
  });

  it('quarantineEntries writes the damaged bytes to a 0600 file beside the database and deletes them, with other writes in the same batch', async () => {
    const path = await dir();
    const a = await OfflineCache.open({ dir: path });
    await a.put('obj/1', { i: 1 });
    await a.close();
    await rawPut(path, 'obj/2', '{"v":2,"sha256":"00","value":{"i":2}}');
    const b = await OfflineCache.open({ dir: path });
    const { corrupt } = await b.scan({ gte: 'obj/', lt: 'obj/\uffff' });
    const file = await b.quarantineEntries(corrupt, [{ type: 'put', key: 'marker', value: true }], Date.UTC(2026, 0, 2));
    expect(file.startsWith(`${path}.quarantine-2026-01-02T00-00-00-000Z-`)).toBe(true);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const kept = JSON.parse(await readFile(file, 'utf8')) as { records: Array<{ key: string; raw: string; reason: string }> };
    expect(kept.records).toEqual([{ key: 'obj/2', raw: '{"v":2,"sha256":"00","value":{"i":2}}', reason: expect.stringContaining('checksum mismatch') }]);
    expect(await b.scan({ gte: 'obj/', lt: 'obj/\uffff' })).toEqual({ entries: [['obj/1', { i: 1 }]], corrupt: [] });
    expect(await b.get('marker')).toBe(true);
    await b.close();
  });

  it('salvages a database LevelDB cannot open cleanly: moved aside as it was, records recovered on a copy, the damaged one detectable', async () => {
    const path = await dir();
    const a = await OfflineCache.open({ dir: path });
    for (const k of ['a', 'b', 'c']) await a.put(k, { k, pad: 'x'.repeat(100) });
    await a.close();
    const log = join(path, (await readdir(path)).find((f) => f.endsWith('.log'))!);
    const bytes = await readFile(log);
    // Inside b's value: the log record's CRC fails, so a plain open drops data (detected), and repair keeps it (unchecked).
    bytes[bytes.indexOf('"k":"b"') + 20]! ^= 0x01;
    await writeFile(log, bytes);

    const { cache, quarantined } = await OfflineCache.openOrQuarantine({ dir: path, salvage: true, now: () => Date.UTC(2026, 0, 1) });
    expect(quarantined).toMatchObject({ path: `${path}.quarantine-2026-01-01T00-00-00-000Z`, salvaged: true });
    expect(await readFile(join(quarantined!.path, log.slice(path.length + 1)))).toEqual(bytes);
    const { entries, corrupt } = await cache.scan<{ k: string }>({});
    expect(entries.map(([k]) => k)).toEqual(['a', 'c']);
    expect(corrupt.map((c) => [c.key, c.reason])).toEqual([['b', expect.stringContaining('checksum mismatch')]]);
    await cache.put('d', 1);
    await cache.close();
    const again = await OfflineCache.openOrQuarantine({ dir: path, salvage: true });
    expect(again.quarantined).toBeUndefined();
    expect(await again.cache.get('d')).toBe(1);
    await again.cache.close();
  });

  it('a write that fails for a full disk rejects, and the next one succeeds once there is room (the database was reopened, not left broken)', async () => {
    const disk = await mountSmallDisk(2 * 1024 * 1024);
    try {
      const path = join(disk.path, 'db');
      const cache = await OfflineCache.open({ dir: path });
      await cache.put('before', { v: 1 });
      await disk.fill();
      const big = 'y'.repeat(256 * 1024);
      const failed = await cache.put('big', big).catch((e: unknown) => e);
      expect((failed as Error).message).toMatch(/No space left on device|ENOSPC|IO error/i);
      expect(cache.reopens).toBe(0);
      // Still full: the reopen fails too, with a clear error, and reads go on.
      await expect(cache.put('big', big)).rejects.toThrow(/No space left on device|cannot reopen/);
      expect(await cache.get('before')).toEqual({ v: 1 });
      await disk.unfill();
      await cache.put('after', { v: 2 });
      expect(cache.reopens).toBe(1);
      expect(await cache.get('before')).toEqual({ v: 1 });
      expect(await cache.get('after')).toEqual({ v: 2 });
      await cache.close();
      const reopened = await OfflineCache.open({ dir: path });
      expect(await reopened.get('after')).toEqual({ v: 2 });
      expect(await reopened.sizeOnDisk()).toBeGreaterThan(0);
      await reopened.close();
    } finally {
      await disk.close();
    }
  });
});
