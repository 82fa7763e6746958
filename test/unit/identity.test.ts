import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { IdentityStore } from '../../src/agent/identity.js';
import { openAgentCache } from '../../src/agent/run.js';
import { OfflineCache } from '../../src/cache/index.js';
import { ErrorCode } from '../../src/tunnel/errors.js';

describe('IdentityStore', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
  });
  async function dir(): Promise<string> {
    const d = await mkdtemp(join(tmpdir(), 'hawser-identity-'));
    dirs.push(d);
    return d;
  }

  it('creates one record with id, key and checksum, 0600, and loads the same again', async () => {
    const d = await dir();
    const store = new IdentityStore(d);
    const created = await store.loadOrCreate(undefined);
    expect(created.source).toBe('created');
    expect(created.identity.clusterId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await stat(store.path)).mode & 0o777).toBe(0o600);
    const file = JSON.parse(await readFile(store.path, 'utf8')) as { sha256: string };
    expect(file.sha256).toMatch(/^[0-9a-f]{64}$/);
    const again = await new IdentityStore(d).loadOrCreate(undefined);
    expect(again).toEqual({ identity: created.identity, source: 'file' });
  });

  it('recovers a damaged file from its backup', async () => {
    const d = await dir();
    const store = new IdentityStore(d);
    const { identity } = await store.loadOrCreate(undefined);
    await store.save({ ...identity, credential: 'hwc_x' });
    const text = await readFile(store.path, 'utf8');
    await writeFile(store.path, text.replace('hwc_x', 'hwc_y'));
    const loaded = await store.loadOrCreate(undefined);
    expect(loaded.source).toBe('backup');
    expect(loaded.damaged).toBe('checksum mismatch');
    expect(loaded.identity).toEqual({ ...identity, credential: 'hwc_x' });
    // Rewritten: the next load finds the file whole.
    expect((await store.loadOrCreate(undefined)).source).toBe('file');
  });

  it('fails with HAWSER_IDENTITY_CORRUPT and the recovery path when no copy holds the identity', async () => {
    const d = await dir();
    const store = new IdentityStore(d);
    await store.loadOrCreate(undefined);
    await writeFile(store.path, '{"version":1,');
    await rm(`${store.path}.bak`);
    const err = await store.loadOrCreate(undefined).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.IdentityCorrupt });
    expect((err as Error).message).toContain('hawser delete cluster');
  });

  it('migrates the legacy LevelDB identity key once, keeping the cluster id and credential', async () => {
    const d = await dir();
    const legacy = await OfflineCache.open({ dir: join(d, 'db') });
    await legacy.put('identity', { clusterId: '11111111-2222-4333-8444-555555555555', credential: 'hwc_old', clusterName: 'edge' });
    const store = new IdentityStore(d);
    const loaded = await store.loadOrCreate(legacy);
    expect(loaded.source).toBe('migrated');
    expect(loaded.identity).toMatchObject({ clusterId: '11111111-2222-4333-8444-555555555555', credential: 'hwc_old', clusterName: 'edge' });
    expect(loaded.identity.publicKey).not.toBe('');
    expect(await legacy.get('identity')).toBeUndefined();
    await legacy.close();
  });

  it('moves a cache from before the identity file into db/, migrates its identity once, and makes every file 0600', async () => {
    const d = await dir();
    // The old layout: LevelDB files directly in the cache dir, identity a key in it, files 0644.
    const old = await OfflineCache.open({ dir: d });
    await old.put('identity', { clusterId: '11111111-2222-4333-8444-555555555555', credential: 'hwc_old' });
    await old.put('manifest/a', 1);
    await old.close();
    await chmod(d, 0o755);
    for (const f of await readdir(d)) await chmod(join(d, f), 0o644);

    const { cache, quarantines } = await openAgentCache(d, pino({ level: 'silent' }));
    expect(quarantines).toBe(0);
    const loaded = await new IdentityStore(d).loadOrCreate(cache);
    expect(loaded).toMatchObject({ source: 'migrated', identity: { clusterId: '11111111-2222-4333-8444-555555555555', credential: 'hwc_old' } });
    expect(await cache.get('manifest/a')).toBe(1);
    await cache.close();
    expect((await readdir(d)).sort()).toEqual(['db', 'identity.json', 'identity.json.bak']);
    expect((await stat(d)).mode & 0o777).toBe(0o700);
    for (const f of await readdir(join(d, 'db'))) expect(((await stat(join(d, 'db', f))).mode & 0o777).toString(8)).toBe('600');
    // Once: a second start reads the file.
    const again = await openAgentCache(d, pino({ level: 'silent' }));
    expect((await new IdentityStore(d).loadOrCreate(again.cache)).source).toBe('file');
    await again.cache.close();
  });

  it('recovers the identity a quarantined legacy cache still holds', async () => {
    const d = await dir();
    const old = await OfflineCache.open({ dir: d });
    await old.put('identity', { clusterId: '11111111-2222-4333-8444-555555555555', credential: 'hwc_old' });
    for (let i = 0; i < 3; i++) await old.put(`manifest/${i}`, { pad: 'x'.repeat(200) });
    await old.close();
    const log = (await readdir(d)).find((f) => f.endsWith('.log'))!;
    const bytes = await readFile(join(d, log));
    bytes[bytes.indexOf('manifest/1') + 30]! ^= 0xff;
    await writeFile(join(d, log), bytes);

    const { cache, quarantines } = await openAgentCache(d, pino({ level: 'silent' }));
    expect(quarantines).toBe(1);
    const loaded = await new IdentityStore(d).loadOrCreate(cache);
    expect(loaded).toMatchObject({ source: 'quarantine', identity: { clusterId: '11111111-2222-4333-8444-555555555555', credential: 'hwc_old' } });
    await cache.close();
    // The quarantined copy is untouched.
    const quarantine = (await readdir(d)).find((f) => f.startsWith('db.quarantine-'))!;
    expect(await readFile(join(d, quarantine, log))).toEqual(bytes);
  });
});
