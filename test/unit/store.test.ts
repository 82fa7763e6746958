import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { EmbeddedStore, SealingStore } from '../../src/hub/store.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { storeConformance, type StoreHarness } from './store-conformance.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'hawser-store-'));
  dirs.push(d);
  return d;
}
afterAll(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

function embedded(options: { historyPerKind: number; recentEvents: number }): StoreHarness {
  return {
    historyPerKind: options.historyPerKind,
    async fresh() {
      const dir = join(await tempDir(), 'store');
      return { open: () => EmbeddedStore.open(dir, options) };
    },
  };
}

// Few recent events in memory: live watchers also read from disk.
storeConformance('EmbeddedStore (LevelDB), watchers mostly on disk', embedded({ historyPerKind: 8, recentEvents: 3 }));
storeConformance('EmbeddedStore (LevelDB), watchers in memory', embedded({ historyPerKind: 8, recentEvents: 1024 }));

// Every object sealed, so the whole suite runs through seal and open.
storeConformance('SealingStore over EmbeddedStore, sealing everything', {
  historyPerKind: 8,
  async fresh() {
    const dir = await tempDir();
    return {
      async open() {
        const inner = await EmbeddedStore.open(join(dir, 'store'), { historyPerKind: 8, recentEvents: 3 });
        return (await SealingStore.open(inner, join(dir, 'secret-key'), () => true)).store;
      },
    };
  },
});

describe('EmbeddedStore', () => {
  const own: string[] = [];
  afterEach(async () => {
    await Promise.all(own.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });

  it('refuses a damaged store with HAWSER_CACHE_CORRUPT and leaves its files alone (never a fresh store over data)', async () => {
    const d = await mkdtemp(join(tmpdir(), 'hawser-store-'));
    own.push(d);
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
