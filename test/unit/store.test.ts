import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedStore } from '../../src/hub/store.js';
import { ErrorCode } from '../../src/tunnel/errors.js';

describe('EmbeddedStore', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });

  it('refuses a damaged store with HAWSER_CACHE_CORRUPT and leaves its files alone (never a fresh store over data)', async () => {
    const d = await mkdtemp(join(tmpdir(), 'hawser-store-'));
    dirs.push(d);
    const store = await EmbeddedStore.open(d);
    await store.put('ClusterCredential', 'h', { hash: 'h', clusterId: 'c', clusterName: 'n', issuedAt: 'now' });
    await store.close();
    for (const f of await readdir(d)) if (f === 'CURRENT' || f.startsWith('MANIFEST')) await rm(join(d, f));
    const before = (await readdir(d)).sort();

    const err = await EmbeddedStore.open(d).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.CacheCorrupt });
    expect((err as Error).message).toContain('move it aside');
    expect((await readdir(d)).sort()).toEqual(before);
  });
});
