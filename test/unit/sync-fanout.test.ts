import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedStore, type HubStore, type KubeObject, type StoredKind, type WatchOptions } from '../../src/hub/store.js';
import { type FeedChange, ManifestFanout } from '../../src/hub/sync/index.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { tempDir, waitFor } from './support.js';

// The hub's one Manifest watch fanned out to sessions by namespace: each
// follower sees its namespace's events after its revision, in order, once,
// whether they come from the ring, live, or a catch-up watch of its own.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** The embedded store, counting the watches opened on it. */
async function store(options: { historyPerKind?: number } = {}): Promise<{ store: HubStore; watches: Map<StoredKind, number> }> {
  const dir = await tempDir('fanout');
  const embedded = await EmbeddedStore.open(join(dir.path, 'store'), options.historyPerKind ? { historyPerKind: options.historyPerKind } : {});
  cleanups.push(async () => {
    await embedded.close();
    await dir.remove();
  });
  const watches = new Map<StoredKind, number>();
  const watch = embedded.watch.bind(embedded);
  embedded.watch = ((kind: StoredKind, o: WatchOptions) => {
    watches.set(kind, (watches.get(kind) ?? 0) + 1);
    return watch(kind, o);
  }) as HubStore['watch'];
  return { store: embedded, watches };
}

function manifest(namespace: string, name: string, data: string): KubeObject {
  return { apiVersion: 'apps.clusternet.io/v1alpha1', kind: 'Manifest', metadata: { name, namespace }, template: { data } };
}

async function put(s: HubStore, namespace: string, name: string, data: string): Promise<number> {
  return Number(await s.put('Manifest', { namespace, name }, manifest(namespace, name, data)));
}

/** A follower: what it received, as "name=data@rv" (or "DELETED name@rv", "failed CODE"). */
function follow(fanout: ManifestFanout, namespace: string, from: number) {
  const seen: string[] = [];
  const abort = new AbortController();
  const push = (c: FeedChange) => {
    if (c.type === 'failed') seen.push(`failed ${(c.error as { code?: string }).code}`);
    else if (c.event.type === 'DELETED') seen.push(`DELETED ${c.event.key.name}@${c.event.resourceVersion}`);
    else seen.push(`${c.event.key.name}=${(c.event.object.template as { data: string }).data}@${c.event.resourceVersion}`);
  };
  const done = fanout.follow(namespace, from, push, abort.signal);
  cleanups.push(async () => {
    abort.abort();
    await done;
  });
  return { seen, abort, done };
}

describe('ManifestFanout', () => {
  it('serves many followers from one store watch, each its own namespace, in order, once', async () => {
    const { store: s, watches } = await store();
    const fanout = new ManifestFanout(s);
    const start = Number((await s.info()).resourceVersion);
    const followers = ['ns-a', 'ns-b', 'ns-c'].map((ns) => ({ ns, f: follow(fanout, ns, start) }));
    await waitFor('followers registered', () => (watches.get('Manifest') === 1 ? true : undefined));
    const a1 = await put(s, 'ns-a', 'one', 'x');
    const b1 = await put(s, 'ns-b', 'one', 'y');
    const a2 = await put(s, 'ns-a', 'one', 'z');
    const aDel = Number(await s.delete('Manifest', { namespace: 'ns-a', name: 'one' }));
    await waitFor('ns-a delivered', () => (followers[0]!.f.seen.length === 3 ? true : undefined));
    await waitFor('ns-b delivered', () => (followers[1]!.f.seen.length === 1 ? true : undefined));
    expect(followers[0]!.f.seen).toEqual([`one=x@${a1}`, `one=z@${a2}`, `DELETED one@${aDel}`]);
    expect(followers[1]!.f.seen).toEqual([`one=y@${b1}`]);
    expect(followers[2]!.f.seen).toEqual([]);
    // One watch of Manifests however many follow.
    expect(watches.get('Manifest')).toBe(1);
  });

  it('replays from the ring what came after the follower\'s revision and before it followed', async () => {
    const { store: s, watches } = await store();
    const fanout = new ManifestFanout(s);
    const first = follow(fanout, 'ns-a', Number((await s.info()).resourceVersion));
    const r1 = await put(s, 'ns-a', 'one', '1');
    const r2 = await put(s, 'ns-a', 'two', '2');
    const r3 = await put(s, 'ns-a', 'three', '3');
    await waitFor('first follower has all', () => (first.seen.length === 3 ? true : undefined));
    const late = follow(fanout, 'ns-a', r1);
    await waitFor('late follower replayed', () => (late.seen.length === 2 ? true : undefined));
    expect(late.seen).toEqual([`two=2@${r2}`, `three=3@${r3}`]);
    const r4 = await put(s, 'ns-a', 'one', '4');
    await waitFor('late follower live', () => (late.seen.length === 3 ? true : undefined));
    expect(late.seen[2]).toBe(`one=4@${r4}`);
    expect(watches.get('Manifest')).toBe(1);
    expect(fanout.catchingUp).toBe(0);
  });

  it('a follower from before the ring catches up on a watch of its own, then switches to the ring without a gap or a repeat', async () => {
    const { store: s, watches } = await store();
    const r1 = await put(s, 'ns-a', 'one', 'before-start');
    const r2 = await put(s, 'ns-b', 'one', 'other-namespace');
    const fanout = new ManifestFanout(s, 2);
    // Starts the fan-out at the store's revision now (r2): r1 is not in its ring.
    const other = follow(fanout, 'ns-b', r2);
    await waitFor('fan-out started', () => (watches.get('Manifest') === 1 ? true : undefined));
    const behind = follow(fanout, 'ns-a', 0);
    await waitFor('caught up on its own watch', () => (behind.seen.length === 1 && fanout.catchingUp === 1 ? true : undefined));
    expect(behind.seen).toEqual([`one=before-start@${r1}`]);
    expect(watches.get('Manifest')).toBe(2);
    // The next event of its namespace is in the ring: it switches there and its own watch ends.
    const r3 = await put(s, 'ns-a', 'one', 'after');
    const r4 = await put(s, 'ns-a', 'two', 'from-the-ring');
    const r5 = await put(s, 'ns-a', 'three', 'live');
    await waitFor('all delivered', () => (behind.seen.length === 4 ? true : undefined));
    expect(behind.seen).toEqual([`one=before-start@${r1}`, `one=after@${r3}`, `two=from-the-ring@${r4}`, `three=live@${r5}`]);
    await waitFor('own watch ended', () => (fanout.catchingUp === 0 ? true : undefined));
    expect(other.seen).toEqual([]);
  });

  it('a follower the ring has moved past catches up; one the store has compacted past fails with HAWSER_RESOURCE_VERSION_TOO_OLD', async () => {
    const { store: s } = await store({ historyPerKind: 3 });
    const fanout = new ManifestFanout(s, 2);
    const start = Number((await s.info()).resourceVersion);
    const live = follow(fanout, 'ns-a', start);
    const revisions: number[] = [];
    for (let i = 0; i < 5; i++) revisions.push(await put(s, 'ns-a', `m${i}`, String(i)));
    await waitFor('live follower has all', () => (live.seen.length === 5 ? true : undefined));
    // Ring holds the last 2 (after revisions[2]); the store's history the last 3 (after revisions[1]).
    const fromStore = follow(fanout, 'ns-a', revisions[1]!);
    await waitFor('served', () => (fromStore.seen.length === 3 ? true : undefined));
    expect(fromStore.seen).toEqual([`m2=2@${revisions[2]}`, `m3=3@${revisions[3]}`, `m4=4@${revisions[4]}`]);
    const tooOld = follow(fanout, 'ns-a', start);
    await tooOld.done;
    expect(tooOld.seen).toEqual([`failed ${ErrorCode.ResourceVersionTooOld}`]);
  });

  it('an aborted follower ends and receives nothing more', async () => {
    const { store: s } = await store();
    const fanout = new ManifestFanout(s);
    const f = follow(fanout, 'ns-a', Number((await s.info()).resourceVersion));
    const r1 = await put(s, 'ns-a', 'one', '1');
    await waitFor('delivered', () => (f.seen.length === 1 ? true : undefined));
    f.abort.abort();
    await f.done;
    await put(s, 'ns-a', 'one', '2');
    const witness = follow(fanout, 'ns-a', r1);
    await waitFor('witness saw the write', () => (witness.seen.length === 1 ? true : undefined));
    expect(f.seen).toEqual([`one=1@${r1}`]);
  });

  it('a closed store ends every follower with HAWSER_STORE_CLOSED', async () => {
    const dir = await tempDir('fanout-closed');
    cleanups.push(() => dir.remove());
    const s = await EmbeddedStore.open(join(dir.path, 'store'));
    const fanout = new ManifestFanout(s);
    const start = Number((await s.info()).resourceVersion);
    const a = follow(fanout, 'ns-a', start);
    const b = follow(fanout, 'ns-b', start);
    await put(s, 'ns-a', 'one', '1');
    await waitFor('delivered', () => (a.seen.length === 1 ? true : undefined));
    await s.close();
    await Promise.all([a.done, b.done]);
    expect(a.seen[1]).toBe(`failed ${ErrorCode.StoreClosed}`);
    expect(b.seen).toEqual([`failed ${ErrorCode.StoreClosed}`]);
  });

  it('refuses a ring of no events', async () => {
    const { store: s } = await store();
    expect(() => new ManifestFanout(s, 0)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidOption }));
  });
});
