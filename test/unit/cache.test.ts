import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
});
