import { readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ClassicLevel } from 'classic-level';
import { afterEach, describe, expect, it } from 'vitest';
import { SyncReceiver } from '../../src/agent/sync-receiver.js';
import { readSyncState } from '../../src/agent/sync-state.js';
import type { AgentFrameHandler } from '../../src/agent/router.js';
import { OfflineCache } from '../../src/cache/index.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import { wire } from '../../src/tunnel/index.js';
import { mountSmallDisk } from '../../src/testkit/index.js';
import { silentLogger, tempDir, wholeSyncObject } from './support.js';

// A damaged record of the desired set: detected, moved aside (kept in a
// file), the rest reconciled without prune, and the next hello asks the hub
// for a snapshot; a snapshot makes the set trusted again.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function configMap(name: string): wire.SyncObject {
  return wholeSyncObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'default' }, data: { name } });
}

async function setup() {
  const dir = await tempDir('sync-corrupt');
  cleanups.push(() => dir.remove());
  const path = join(dir.path, 'db');
  let cache = await OfflineCache.open({ dir: path });
  let clock = 1_000;
  const receiver = () => new SyncReceiver(cache, silentLogger, () => clock);
  const handler = (r: SyncReceiver): AgentFrameHandler =>
    r.handlerFactory()({
      clusterName: 'edge',
      negotiated: { protocolVersion: 1, features: new Set([Feature.Sync]) },
      send: () => Promise.resolve(),
      ended: new AbortController().signal,
    });
  async function snapshot(r: SyncReceiver, revision: number, names: string[]): Promise<void> {
    const h = handler(r);
    await h.handle({ $case: 'syncBegin', value: { incarnation: 'hub-1', fromRevision: 0, snapshot: true, toRevision: revision, reason: 'first-sync' } });
    for (const n of names) await h.handle({ $case: 'syncObject', value: configMap(n) });
    await h.handle({ $case: 'syncEnd', value: { revision, sequence: 1, partial: false } });
  }
  /** Changes a record's stored bytes behind the cache's back. */
  async function damage(key: string, change: (raw: string) => string): Promise<void> {
    await cache.close();
    const raw = new ClassicLevel<string, string>(path);
    await raw.put(key, change((await raw.get(key))!));
    await raw.close();
    cache = await OfflineCache.open({ dir: path });
  }
  cleanups.push(() => cache.close());
  return {
    path,
    get cache() {
      return cache;
    },
    receiver,
    snapshot,
    damage,
    tick: (ms: number) => (clock += ms),
  };
}

describe('sync receiver: a damaged desired state', () => {
  it('keeps the records that check out, quarantines the bad one into a file, refuses prune, and resets the revision so the hub sends a snapshot', async () => {
    const s = await setup();
    const r = s.receiver();
    await s.snapshot(r, 5, ['a', 'b', 'c']);
    expect((await r.desired()).allowPrune).toBe(true);
    await s.damage('sync/obj/default%2Fapp/v1/ConfigMap/default/b', (raw) => raw.replace('"name":"b"', '"name":"x"'));

    const after = s.receiver();
    const events: Array<{ keys: string[]; path: string }> = [];
    after.on('quarantined', (e) => events.push(e));
    const desired = await after.desired();
    expect(desired.objects.map((o) => o.object.metadata.name)).toEqual(['a', 'c']);
    expect(desired.allowPrune).toBe(false);
    expect(desired.untrusted?.reason).toContain('1 damaged record');
    expect(events).toHaveLength(1);
    expect(events[0]!.keys).toEqual(['sync/obj/default%2Fapp/v1/ConfigMap/default/b']);
    // Kept for an operator, beside the database.
    expect(dirname(events[0]!.path)).toBe(dirname(s.path));
    expect(await readFile(events[0]!.path, 'utf8')).toContain('"name\\":\\"x\\"');
    expect(await readSyncState(s.cache, silentLogger)).toEqual({ hubIncarnation: 'hub-1', lastAckedRevision: 0 });
    expect(await after.digest()).toBe('untrusted');
    // Found once: the next pass reads the rest, still without prune.
    const again = await after.desired();
    expect(again.objects.map((o) => o.object.metadata.name)).toEqual(['a', 'c']);
    expect(again.allowPrune).toBe(false);
    expect(events).toHaveLength(1);

    // The hub's snapshot: trusted again, with prune.
    await s.snapshot(after, 6, ['a', 'b', 'c']);
    const healed = await after.desired();
    expect(healed.objects.map((o) => o.object.metadata.name)).toEqual(['a', 'b', 'c']);
    expect(healed.allowPrune).toBe(true);
    expect(healed.untrusted).toBeUndefined();
    expect(await after.digest()).not.toBe('untrusted');
  });

  it('a truncated record and a damaged sync state: both quarantined at verify(), the rest kept', async () => {
    const s = await setup();
    await s.snapshot(s.receiver(), 5, ['a', 'b']);
    await s.damage('sync/obj/default%2Fapp/v1/ConfigMap/default/a', (raw) => raw.slice(0, raw.length / 2));
    await s.damage('sync/state', (raw) => raw.replace('hub-1', 'hub-2'));
    const r = s.receiver();
    expect(await r.verify()).toBe(2);
    expect(await r.verify()).toBe(0);
    expect(await readSyncState(s.cache, silentLogger)).toEqual({ hubIncarnation: '', lastAckedRevision: 0 });
    const desired = await r.desired();
    expect(desired.objects.map((o) => o.object.metadata.name)).toEqual(['b']);
    expect(desired.allowPrune).toBe(false);
    expect((await readdir(dirname(s.path))).filter((f) => f.includes('.quarantine-'))).toHaveLength(1);
  });

  it('distrust() (a salvaged database) keeps the set and refuses prune until a snapshot', async () => {
    const s = await setup();
    const r = s.receiver();
    await s.snapshot(r, 5, ['a']);
    await r.distrust('database salvaged', '/somewhere');
    const desired = await r.desired();
    expect(desired.objects).toHaveLength(1);
    expect(desired.allowPrune).toBe(false);
    expect(desired.untrusted).toMatchObject({ reason: 'database salvaged', quarantinedTo: '/somewhere' });
    expect((await readSyncState(s.cache, silentLogger)).lastAckedRevision).toBe(0);
    await s.snapshot(r, 6, ['a']);
    expect((await r.desired()).allowPrune).toBe(true);
  });

  it('records when the hub last confirmed the set: at each commit, and on confirm()', async () => {
    const s = await setup();
    const r = s.receiver();
    expect((await r.desired()).confirmedAt).toBe(0);
    await s.snapshot(r, 5, ['a']);
    expect((await r.desired()).confirmedAt).toBe(1_000);
    s.tick(5_000);
    await r.confirm();
    expect((await r.desired()).confirmedAt).toBe(6_000);
  });
});

describe('sync receiver: LevelDB itself reports corruption', () => {
  it('a table file that no longer opens: the database is moved aside and salvaged in place, the set untrusted, reads go on', async () => {
    const s = await setup();
    await s.snapshot(s.receiver(), 5, ['a', 'b']);
    // Reopen twice: the log becomes a table file.
    await s.damage('sync/state', (raw) => raw);
    await s.damage('sync/state', (raw) => raw);
    const table = (await readdir(s.path)).find((f) => f.endsWith('.ldb'))!;
    const bytes = await readFile(join(s.path, table));
    bytes.fill(0, bytes.length - 8);
    await writeFile(join(s.path, table), bytes);

    const r = s.receiver();
    const events: Array<{ database?: boolean; path: string }> = [];
    r.on('quarantined', (e) => events.push(e));
    const desired = await r.desired();
    expect(events.filter((e) => e.database)).toHaveLength(1);
    expect(await readdir(events[0]!.path)).toContain(table);
    expect(desired.allowPrune).toBe(false);
    expect(desired.untrusted?.reason).toContain('database salvaged');
    expect((await readSyncState(s.cache, silentLogger)).lastAckedRevision).toBe(0);
    // Writable again: the hub's snapshot makes it whole.
    await s.snapshot(r, 6, ['a', 'b']);
    expect((await r.desired()).objects.map((o) => o.object.metadata.name)).toEqual(['a', 'b']);
    expect((await r.desired()).allowPrune).toBe(true);
  });
});

describe('sync receiver: a full disk', () => {
  it('a group that cannot be stored fails its session (not acked, no crash); with room again the next one is stored, and the cache survives a restart', async () => {
    const disk = await mountSmallDisk(2 * 1024 * 1024);
    cleanups.push(() => disk.close());
    const path = join(disk.path, 'db');
    const cache = await OfflineCache.open({ dir: path });
    const receiver = new SyncReceiver(cache, silentLogger, () => 0);
    const sent: string[] = [];
    const h = receiver.handlerFactory()({
      clusterName: 'edge',
      negotiated: { protocolVersion: 1, features: new Set([Feature.Sync]) },
      send: (frame) => Promise.resolve(void sent.push(frame.frame?.$case ?? '')),
      ended: new AbortController().signal,
    });
    await h.handle({ $case: 'syncBegin', value: { incarnation: 'hub-1', fromRevision: 0, snapshot: false, toRevision: 1, reason: '' } });
    await h.handle({ $case: 'syncObject', value: configMap('a') });
    await disk.fill();
    await expect(h.handle({ $case: 'syncEnd', value: { revision: 1, sequence: 1, partial: false } })).rejects.toThrow(/No space left on device|IO error/);
    expect(sent).toEqual([]);
    await disk.unfill();
    await h.handle({ $case: 'syncBegin', value: { incarnation: 'hub-1', fromRevision: 0, snapshot: false, toRevision: 2, reason: '' } });
    await h.handle({ $case: 'syncObject', value: configMap('b') });
    await h.handle({ $case: 'syncEnd', value: { revision: 2, sequence: 2, partial: false } });
    expect(sent).toEqual(['syncAck']);
    expect(cache.reopens).toBe(1);
    await cache.close();
    const again = await OfflineCache.open({ dir: path });
    expect((await new SyncReceiver(again, silentLogger, () => 0).desired()).objects.map((o) => o.object.metadata.name)).toEqual(['b']);
    expect(await readSyncState(again, silentLogger)).toEqual({ hubIncarnation: 'hub-1', lastAckedRevision: 2 });
    await again.close();
  });
});
