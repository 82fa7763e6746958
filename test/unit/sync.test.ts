import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentCore } from '../../src/agent/agent.js';
import { IdentityStore } from '../../src/agent/identity.js';
import { StaticClusterReader } from '../../src/agent/kube.js';
import { effectiveSyncMode, parseFeatureGates, SyncApplyLoop } from '../../src/agent/sync-apply.js';
import { SyncReceiver } from '../../src/agent/sync-receiver.js';
import { readSyncState, writeSyncState } from '../../src/agent/sync-state.js';
import { OfflineCache, SealKey } from '../../src/cache/index.js';
import { EmbeddedStore, type KubeObject } from '../../src/hub/store.js';
import { type SyncOptions, SyncStats, syncHandlerFactory } from '../../src/hub/sync/index.js';
import { FrameCompressor } from '../../src/tunnel/compression.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import { wire } from '../../src/tunnel/index.js';
import type { Applier } from '../../src/agent/apply-report.js';
import { clusterNamespace, clusterStatus, RecordingApplier, edgeAgentOptions, metricValue, silentLogger, startTestHub, type TestHub, tempDir, waitFor, wholeSyncObject } from './support.js';

// Sync over the in-memory transport: a real hub (HubCore + EmbeddedStore) and
// a real agent (AgentCore + OfflineCache) in temp dirs, Manifests written
// into the store as the deployer writes them.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

interface Hub extends TestHub {
  stats: SyncStats;
}

async function hub(options: Partial<SyncOptions> = {}, features: string[] = [Feature.Sync]): Promise<Hub> {
  const h = await startTestHub({ features });
  const stats = new SyncStats();
  h.core.registerHandler(syncHandlerFactory({ store: h.store, logger: silentLogger, stats, options, metrics: h.metrics }));
  cleanups.push(() => h.close());
  return Object.assign(h, { stats });
}

async function agentHome(): Promise<string> {
  const dir = await tempDir('sync-agent');
  cleanups.push(() => dir.remove());
  return dir.path;
}

async function agent(h: TestHub, home: string, applier?: Applier, sealKey?: SealKey, features: string[] = [Feature.Sync]) {
  const cache = await OfflineCache.open({ dir: join(home, 'db') });
  const receiver = new SyncReceiver(cache, silentLogger, () => h.clock.now(), {}, sealKey);
  const core = new AgentCore(
    edgeAgentOptions(h.token, { features }),
    { transport: h.transport.client(), reader: new StaticClusterReader(clusterStatus('ok')), cache, identityStore: new IdentityStore(home), logger: silentLogger, clock: h.clock, random: () => 0.5 },
  );
  core.registerHandler(receiver.handlerFactory());
  const loop = applier ? new SyncApplyLoop({ receiver, applier, logger: silentLogger, clock: h.clock, intervalMs: 60_000 }) : undefined;
  if (loop) {
    core.registerHandler(loop.handlerFactory());
    loop.start();
    cleanups.push(() => loop.stop());
  }
  void core.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await core.stop();
    await cache.close();
  };
  cleanups.push(stop);
  return { core, cache, receiver, stop, loop };
}

function manifest(ns: string, i: number, data = 'v1'): KubeObject {
  return {
    apiVersion: 'apps.clusternet.io/v1alpha1',
    kind: 'Manifest',
    metadata: { namespace: ns, name: `cm-${i}`, labels: { 'apps.clusternet.io/subs.name': 'app', 'apps.clusternet.io/subs.namespace': 'default' } },
    template: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name: `cm-${i}` }, data: { value: data, pad: 'x'.repeat(200) } },
  };
}

/** Writes cm-0..cm-(count-1); returns the revision of the last write (heartbeats write the store too: never use info()). */
async function writeManifests(store: EmbeddedStore, ns: string, count: number): Promise<number> {
  const ops = Array.from({ length: count }, (_, i) => ({ op: 'put' as const, kind: 'Manifest' as const, key: { namespace: ns, name: `cm-${i}` }, value: manifest(ns, i) }));
  return Number((await store.batch(ops)).at(-1));
}

async function writeSyncStateAt(home: string, state: { hubIncarnation: string; lastAckedRevision: number }): Promise<void> {
  const cache = await OfflineCache.open({ dir: join(home, 'db') });
  await writeSyncState(cache, state);
  await cache.close();
}

async function ackedRevision(a: { cache: OfflineCache }): Promise<number> {
  return (await readSyncState(a.cache, silentLogger)).lastAckedRevision;
}

describe('sync', () => {
  it('first sync delivers every Manifest of the cluster, durably, and acks the store revision', async () => {
    const h = await hub();
    const home = await agentHome();
    const a = await agent(h, home);
    const ns = await clusterNamespace(h);
    const wanted = await writeManifests(h.store, ns, 20);
    await h.store.put('Manifest', { namespace: 'other-cluster-ns', name: 'x' }, manifest('other-cluster-ns', 99));
    await waitFor('all acked', async () => (await ackedRevision(a)) >= wanted);
    const desired = await a.receiver.desired();
    expect(desired.objects.map((o) => o.object.metadata.name).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `cm-${i}`).sort());
    expect(desired.objects.every((o) => o.subscription === 'default/app')).toBe(true);
    expect(desired.allowPrune).toBe(true);
  });

  it('after a reconnect, one change out of 300 sends exactly one object: about one object of bytes', async () => {
    const h = await hub();
    const home = await agentHome();
    let a = await agent(h, home);
    const ns = await clusterNamespace(h);
    const first = await writeManifests(h.store, ns, 300);
    await waitFor('300 acked', async () => (await ackedRevision(a)) >= first);
    const counters = h.stats.of('edge');
    const perObject = counters.bytes / counters.objectFrames;
    await a.stop();
    const second = Number(await h.store.put('Manifest', { namespace: ns, name: 'cm-7' }, manifest(ns, 7, 'v2')));
    const objectsBefore = counters.objectFrames;
    const bytesBefore = counters.bytes;
    a = await agent(h, home);
    await waitFor('the change acked', async () => (await ackedRevision(a)) >= second);
    expect(counters.objectFrames - objectsBefore).toBe(1);
    expect(counters.snapshots).toBe(1);
    // One object frame plus SyncBegin and SyncEnd: well under two objects' bytes.
    expect(counters.bytes - bytesBefore).toBeLessThan(2 * perObject);
    const desired = await a.receiver.desired();
    expect(desired.objects).toHaveLength(300);
    expect(desired.objects.find((o) => o.object.metadata.name === 'cm-7')!.object['data']).toMatchObject({ value: 'v2' });
  });

  it('a Manifest deleted at the hub leaves the desired set, and prune stays allowed (same incarnation)', async () => {
    const h = await hub();
    const a = await agent(h, await agentHome());
    const ns = await clusterNamespace(h);
    await writeManifests(h.store, ns, 3);
    await waitFor('3 held', async () => (await a.receiver.desired()).objects.length === 3);
    await h.store.delete('Manifest', { namespace: ns, name: 'cm-1' });
    await waitFor('2 held', async () => (await a.receiver.desired()).objects.length === 2);
    expect((await a.receiver.desired()).allowPrune).toBe(true);
  });

  it('a hub of another incarnation: a snapshot, the agent keeps its objects and prune is held until confirmed', async () => {
    const h = await hub();
    const home = await agentHome();
    const a1 = await agent(h, home);
    const ns = await clusterNamespace(h);
    const rv = await writeManifests(h.store, ns, 5);
    await waitFor('5 acked', async () => (await ackedRevision(a1)) >= rv);
    await a1.stop();
    // The hub lost 4 of them, and the agent followed another hub incarnation (as after a restore onto a new store).
    for (const i of [1, 2, 3, 4]) await h.store.delete('Manifest', { namespace: ns, name: `cm-${i}` });
    await writeSyncStateAt(home, { hubIncarnation: 'an-older-hub', lastAckedRevision: rv });
    const a2 = await agent(h, home);
    const uid = (await h.store.info()).uid;
    await waitFor('the snapshot swapped in', async () => (await readSyncState(a2.cache, silentLogger)).hubIncarnation === uid);
    expect(h.stats.of('edge').snapshots).toBe(2);
    const desired = await a2.receiver.desired();
    expect(desired.objects).toHaveLength(5);
    expect(desired.allowPrune).toBe(false);
    expect(desired.hold?.code).toBe(ErrorCode.SyncPruneHeld);
    // The operator confirms: the kept objects go and prune runs again.
    await a2.receiver.confirmPrune();
    const confirmed = await a2.receiver.desired();
    expect(confirmed.allowPrune).toBe(true);
    expect(confirmed.objects.map((o) => o.object.metadata.name)).toEqual(['cm-0']);
  });

  it('a hub behind the agent (restored from a backup): a snapshot, objects kept, prune held', async () => {
    const h = await hub();
    const home = await agentHome();
    const a1 = await agent(h, home);
    const ns = await clusterNamespace(h);
    const rv = await writeManifests(h.store, ns, 3);
    await waitFor('3 acked', async () => (await ackedRevision(a1)) >= rv);
    await a1.stop();
    await h.store.delete('Manifest', { namespace: ns, name: 'cm-2' });
    const uid = (await h.store.info()).uid;
    // Same incarnation, but the agent holds a revision the store never reached.
    await writeSyncStateAt(home, { hubIncarnation: uid, lastAckedRevision: 1_000_000 });
    const a2 = await agent(h, home);
    await waitFor('the snapshot swapped in', async () => (await ackedRevision(a2)) < 1_000_000);
    const desired = await a2.receiver.desired();
    expect(desired.objects).toHaveLength(3);
    expect(desired.allowPrune).toBe(false);
    expect(desired.hold?.reason).toContain('behind');
  });

  it('a snapshot that would remove more than half of what the agent holds keeps the objects and holds prune', async () => {
    const h = await hub();
    const home = await agentHome();
    const a1 = await agent(h, home);
    const ns = await clusterNamespace(h);
    const rv = await writeManifests(h.store, ns, 30);
    await waitFor('30 acked', async () => (await ackedRevision(a1)) >= rv);
    await a1.stop();
    for (let i = 5; i < 30; i++) await h.store.delete('Manifest', { namespace: ns, name: `cm-${i}` });
    // Same incarnation, but no revision to resume from: the hub sends a snapshot of 5.
    await writeSyncStateAt(home, { hubIncarnation: (await h.store.info()).uid, lastAckedRevision: 0 });
    const a2 = await agent(h, home);
    await waitFor('the snapshot swapped in', async () => (await ackedRevision(a2)) > 0);
    const desired = await a2.receiver.desired();
    expect(desired.objects).toHaveLength(30);
    expect(desired.allowPrune).toBe(false);
    expect(desired.hold?.reason).toContain('remove 25 of the 30');
  });

  it('an object too large for one frame is not sent (HAWSER_SYNC_OBJECT_TOO_LARGE); the others are', async () => {
    const h = await hub({ maxObjectFrameBytes: 4096 });
    const a = await agent(h, await agentHome());
    const ns = await clusterNamespace(h);
    const big = manifest(ns, 1);
    (big['template'] as { data: Record<string, string> }).data['pad'] = 'x'.repeat(10_000);
    await h.store.put('Manifest', { namespace: ns, name: 'cm-1' }, big);
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'cm-2' }, manifest(ns, 2)));
    await waitFor('the small one acked', async () => (await ackedRevision(a)) >= rv);
    expect((await a.receiver.desired()).objects.map((o) => o.object.metadata.name)).toEqual(['cm-2']);
    expect(h.stats.of('edge').tooLarge).toEqual(['ConfigMap default/cm-1']);
  });

  it('acks only once durable: a crash between receiving and acking re-sends the group, nothing lost', async () => {
    const h = await hub();
    const home = await agentHome();
    const a = await agent(h, home);
    const ns = await clusterNamespace(h);
    await writeManifests(h.store, ns, 4);
    await waitFor('4 held', async () => (await a.receiver.desired()).objects.length === 4);
    // The cache refuses the next write (the crash): the group is not acked.
    const realBatch = a.cache.batch.bind(a.cache);
    let failed = 0;
    a.cache.batch = async () => {
      failed++;
      throw new Error('crash before the write');
    };
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'cm-9' }, manifest(ns, 9)));
    await waitFor('the write attempted', () => failed > 0);
    await a.stop().catch(() => undefined);
    a.cache.batch = realBatch;
    // Restart from the same cache: the change comes again.
    const b = await agent(h, home);
    await waitFor('the change acked after restart', async () => (await ackedRevision(b)) >= rv);
    expect((await b.receiver.desired()).objects).toHaveLength(5);
  });

  it('an agent that resumes behind a revision it acked is counted (HAWSER_SYNC_ACKED_REVISION_LOST); a clean reconnect is not', async () => {
    const h = await hub();
    const home = await agentHome();
    const a = await agent(h, home);
    const ns = await clusterNamespace(h);
    const rv = await writeManifests(h.store, ns, 5);
    await waitFor('5 acked', async () => (await ackedRevision(a)) >= rv);
    const acked = await waitFor('the hub saw the ack', async () => {
      const v = await metricValue(h.metrics, 'hawser_hub_sync_acked_revision', { cluster: 'edge' });
      return v >= rv ? v : undefined;
    });
    await a.stop();
    const clean = await agent(h, home);
    await waitFor('the clean resume', async () => (await metricValue(h.metrics, 'hawser_hub_sync_resume_revision', { cluster: 'edge' })) === acked);
    expect(h.stats.of('edge').ackedLost).toBe(0);
    await clean.stop();
    // The cache comes back one group short of what the agent acked (a write that did not survive a crash).
    const uid = (await h.store.info()).uid;
    await writeSyncStateAt(home, { hubIncarnation: uid, lastAckedRevision: acked - 1 });
    const behind = await agent(h, home);
    await waitFor('the loss counted', async () => (await metricValue(h.metrics, 'hawser_hub_sync_acked_lost_total', { cluster: 'edge' })) === 1);
    expect(await metricValue(h.metrics, 'hawser_hub_sync_resume_revision', { cluster: 'edge' })).toBe(acked - 1);
    expect(h.stats.of('edge').ackedLost).toBe(1);
    // Synced again from where it stands.
    await waitFor('acked again', async () => (await ackedRevision(behind)) >= rv);
  });

  it('the window bounds frames in flight: with acks withheld the hub stops at the window', async () => {
    const h = await hub({ windowFrames: 8, groupFrames: 4 });
    const home = await agentHome();
    const a = await agent(h, home);
    const ns = await clusterNamespace(h);
    // The agent stores nothing (so acks nothing) until the gate opens.
    const realBatch = a.cache.batch.bind(a.cache);
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    a.cache.batch = async (ops, options) => {
      await gate;
      return realBatch(ops, options);
    };
    const rv = await writeManifests(h.store, ns, 50);
    await waitFor('the window filled', () => h.stats.of('edge').objectFrames === 8);
    // Many event-loop turns later, still 8: nothing past the window went out.
    for (let i = 0; i < 200; i++) await new Promise<void>((r) => setImmediate(r));
    expect(h.stats.of('edge').objectFrames).toBe(8);
    open();
    await waitFor('all 50 acked once the agent stores again', async () => (await ackedRevision(a)) >= rv);
    expect((await a.receiver.desired()).objects).toHaveLength(50);
  });
});

describe('sync apply loop (Pull)', () => {
  it('applies each committed set and stores the agent report at the hub; from the cache alone after a restart with the hub gone', async () => {
    const h = await hub();
    const home = await agentHome();
    const applier = new RecordingApplier(() => ({ replicas: 1 }));
    const a = await agent(h, home, applier);
    const ns = await clusterNamespace(h);
    await writeManifests(h.store, ns, 3);
    await waitFor('a pass over 3 objects', () => applier.inputs.some((i) => i.objects.length === 3 && i.allowPrune));
    const status = await waitFor('the report stored at the hub', async () => {
      const s = await h.store.get('ClusterSyncStatus', { namespace: ns, name: 'edge' });
      return (s?.['status'] as { objects?: unknown[] } | undefined)?.objects?.length === 3 ? s : undefined;
    });
    expect((status['status'] as { objects: Array<{ status: unknown; action: string }> }).objects[0]).toMatchObject({ action: 'applied', status: { replicas: 1 } });
    await a.loop!.stop();
    await a.stop();
    await h.close();
    // The hub is gone; the agent restarts: its desired set comes from the cache.
    const cache = await OfflineCache.open({ dir: join(home, 'db') });
    cleanups.push(() => cache.close());
    const offline = new RecordingApplier(() => ({ replicas: 1 }));
    const again = new SyncApplyLoop({ receiver: new SyncReceiver(cache, silentLogger, () => 0), applier: offline, logger: silentLogger, clock: h.clock, intervalMs: 60_000 });
    again.start();
    cleanups.push(() => again.stop());
    await waitFor('a pass from the cache', () => offline.inputs.length > 0);
    expect(offline.inputs[0]!.objects.map((o) => o.object.metadata.name).sort()).toEqual(['cm-0', 'cm-1', 'cm-2']);
    expect(offline.inputs[0]!.allowPrune).toBe(true);
  });

  it('passes allowPrune=false while prune is held', async () => {
    const home = await agentHome();
    const cache = await OfflineCache.open({ dir: join(home, 'db') });
    cleanups.push(() => cache.close());
    await cache.batch([
      { type: 'put', key: 'sync/state', value: { hubIncarnation: 'hub-a', lastAckedRevision: 9 } },
      { type: 'put', key: 'sync/hold', value: { code: ErrorCode.SyncPruneHeld, reason: 'test', since: 0 } },
    ]);
    const applier = new RecordingApplier(() => ({ replicas: 1 }));
    const loop = new SyncApplyLoop({ receiver: new SyncReceiver(cache, silentLogger, () => 0), applier, logger: silentLogger, intervalMs: 60_000 });
    loop.start();
    cleanups.push(() => loop.stop());
    await waitFor('a pass', () => applier.inputs.length > 0);
    expect(applier.inputs[0]!.allowPrune).toBe(false);
    expect(loop.lastReport?.pruneHeldReason).toBe('test');
  });
});

describe('feature gates', () => {
  it('parses AppPusher; Push and Dual without it run as Pull', () => {
    expect(parseFeatureGates('')).toEqual({ AppPusher: false });
    expect(parseFeatureGates('AppPusher=true')).toEqual({ AppPusher: true });
    expect(() => parseFeatureGates('AppPusher=yes')).toThrow(expect.objectContaining({ code: ErrorCode.InvalidOption }) as Error);
    expect(() => parseFeatureGates('Nope=true')).toThrow(expect.objectContaining({ code: ErrorCode.InvalidOption }) as Error);
    expect(effectiveSyncMode('Dual', { AppPusher: false })).toBe('Pull');
    expect(effectiveSyncMode('Push', { AppPusher: false })).toBe('Pull');
    expect(effectiveSyncMode('Dual', { AppPusher: true })).toBe('Dual');
    expect(effectiveSyncMode('Pull', { AppPusher: true })).toBe('Pull');
  });
});

describe('sync receiver refuses frames that break the protocol', () => {
  async function handler() {
    const home = await agentHome();
    const cache = await OfflineCache.open({ dir: join(home, 'db') });
    cleanups.push(() => cache.close());
    const sent: unknown[] = [];
    const h = new SyncReceiver(cache, silentLogger, () => 0).handlerFactory()({
      clusterName: 'edge',
      negotiated: { protocolVersion: 1, features: new Set([Feature.Sync]) },
      send: (frame) => Promise.resolve(void sent.push(frame)),
      ended: new AbortController().signal,
    });
    await h.handle({ $case: 'syncBegin', value: { incarnation: 'i', fromRevision: 0, snapshot: true, toRevision: 5, reason: 'first-sync' } });
    return { h, sent };
  }
  const object = (over: Partial<wire.SyncObject>): wire.SyncObject => wholeSyncObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' } }, { revision: 3, ...over });

  it('takes a well-formed object, and refuses a bad checksum, chunks and zstd with HAWSER_SYNC_PROTOCOL', async () => {
    const { h, sent } = await handler();
    await h.handle({ $case: 'syncObject', value: object({}) });
    await h.handle({ $case: 'syncEnd', value: { revision: 5, sequence: 1, partial: false } });
    expect(sent).toHaveLength(1);
    for (const bad of [{ contentSha256: '00' }, { chunkCount: 2 }, { encoding: wire.PayloadEncoding.PAYLOAD_ENCODING_ZSTD }]) {
      await expect(Promise.resolve().then(() => h.handle({ $case: 'syncObject', value: object(bad) }))).rejects.toMatchObject({ code: ErrorCode.SyncProtocol });
    }
  });
});

describe('sync: Secrets at rest in the agent cache', () => {
  const password = 'hunter2-do-not-store-me';
  const encoded = Buffer.from(password).toString('base64');
  const secretManifest = (ns: string): KubeObject => ({
    apiVersion: 'apps.clusternet.io/v1alpha1',
    kind: 'Manifest',
    metadata: { namespace: ns, name: 'db-secret', labels: { 'apps.clusternet.io/subs.name': 'app', 'apps.clusternet.io/subs.namespace': 'default' } },
    template: { apiVersion: 'v1', kind: 'Secret', metadata: { namespace: 'default', name: 'db' }, data: { password: encoded } },
  });
  async function cacheBytes(home: string): Promise<string> {
    const dir = join(home, 'db');
    const names = await readdir(dir);
    return (await Promise.all(names.map((n) => readFile(join(dir, n)).catch(() => Buffer.alloc(0))))).map((b) => b.toString('latin1')).join('');
  }

  it.each([{ sealed: true }, { sealed: false }])('a fed Secret reaches the apply loop intact; sealed, its value is nowhere in the cache files (%o)', async ({ sealed }) => {
    const h = await hub();
    const home = await agentHome();
    const a = await agent(h, home, undefined, sealed ? SealKey.generate() : undefined);
    const ns = await clusterNamespace(h);
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'db-secret' }, secretManifest(ns)));
    await waitFor('acked', async () => (await ackedRevision(a)) >= rv);
    const desired = await a.receiver.desired();
    expect(desired.objects.map((o) => o.object.data)).toEqual([{ password: encoded }]);
    await a.stop();
    // Unsealed the value is there to find: the check can fail.
    expect((await cacheBytes(home)).includes(encoded)).toBe(!sealed);
  });

  it('a sealed Secret whose bytes changed is left out, and nothing may be pruned meanwhile', async () => {
    const h = await hub();
    const home = await agentHome();
    const a = await agent(h, home, undefined, SealKey.generate());
    const ns = await clusterNamespace(h);
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'db-secret' }, secretManifest(ns)));
    await waitFor('acked', async () => (await ackedRevision(a)) >= rv);
    const [entry] = await a.cache.entries<{ sealed: string }>('sync/obj/');
    const bytes = Buffer.from(entry![1].sealed, 'base64');
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0x01, bytes.length - 1);
    await a.cache.put(entry![0], { ...entry![1], sealed: bytes.toString('base64') });
    const desired = await a.receiver.desired();
    expect(desired.objects).toEqual([]);
    expect(desired.allowPrune).toBe(false);
  });
});

describe('sync compression (feature compression.deflate.k8s1)', () => {
  const both = [Feature.Sync, Feature.CompressionDeflate];

  it('negotiated: frames go compressed in one context, every Manifest arrives, and the wire carries a fraction of the bytes', async () => {
    const h = await hub({}, both);
    const a = await agent(h, await agentHome(), undefined, undefined, both);
    const ns = await clusterNamespace(h);
    const wanted = await writeManifests(h.store, ns, 200);
    await waitFor('all acked', async () => (await ackedRevision(a)) >= wanted);
    const desired = await a.receiver.desired();
    expect(desired.objects.map((o) => o.object.metadata.name).sort()).toEqual(Array.from({ length: 200 }, (_, i) => `cm-${i}`).sort());
    const c = h.stats.of('edge');
    expect(c.compressedFrames).toBeGreaterThan(0);
    expect(c.bytes * 4).toBeLessThan(c.rawBytes);
    // The hub's metric says the same: bytes before and after compression.
    expect(await metricValue(h.metrics, 'hawser_hub_sync_raw_bytes_total', { cluster: 'edge' })).toBe(c.rawBytes);
    expect(await metricValue(h.metrics, 'hawser_hub_sync_sent_bytes_total', { cluster: 'edge' })).toBe(c.bytes);
  });

  it('a peer that offers no compression still syncs: the hub sends frames bare', async () => {
    const h = await hub({}, both);
    const a = await agent(h, await agentHome(), undefined, undefined, [Feature.Sync]);
    const ns = await clusterNamespace(h);
    const wanted = await writeManifests(h.store, ns, 50);
    await waitFor('all acked', async () => (await ackedRevision(a)) >= wanted);
    expect((await a.receiver.desired()).objects).toHaveLength(50);
    const c = h.stats.of('edge');
    expect(c.compressedFrames).toBe(0);
    expect(c.bytes).toBe(c.rawBytes);
  });

  it('an agent offering compression to a hub without it syncs bare', async () => {
    const h = await hub({}, [Feature.Sync]);
    const a = await agent(h, await agentHome(), undefined, undefined, both);
    const ns = await clusterNamespace(h);
    const wanted = await writeManifests(h.store, ns, 20);
    await waitFor('all acked', async () => (await ackedRevision(a)) >= wanted);
    expect((await a.receiver.desired()).objects).toHaveLength(20);
    expect(h.stats.of('edge').compressedFrames).toBe(0);
  });

  it('a reconnect rebuilds the context: the new session starts with a reset, and a change arrives intact', async () => {
    const h = await hub({}, both);
    const home = await agentHome();
    let a = await agent(h, home, undefined, undefined, both);
    const ns = await clusterNamespace(h);
    const first = await writeManifests(h.store, ns, 100);
    await waitFor('100 acked', async () => (await ackedRevision(a)) >= first);
    const c = h.stats.of('edge');
    const resetsBefore = c.compressionResets;
    await a.stop();
    const second = Number(await h.store.put('Manifest', { namespace: ns, name: 'cm-7' }, manifest(ns, 7, 'v2')));
    a = await agent(h, home, undefined, undefined, both);
    await waitFor('the change acked', async () => (await ackedRevision(a)) >= second);
    expect(c.compressionResets).toBe(resetsBefore + 1);
    const desired = await a.receiver.desired();
    expect(desired.objects.find((o) => o.object.metadata.name === 'cm-7')!.object['data']).toMatchObject({ value: 'v2' });
  });
});

describe('sync compression with chunks', () => {
  it('a large object goes in chunks, each compressed and flushed at once (the chunk window never waits on a queued chunk), and arrives whole', async () => {
    const all = [Feature.Sync, Feature.Chunks, Feature.CompressionDeflate];
    const chunkBytes = 16 * 1024;
    const h = await hub({ chunkBytes, chunkWindowBytes: 2 * chunkBytes }, all);
    const a = await agent(h, await agentHome(), undefined, undefined, all);
    const ns = await clusterNamespace(h);
    const lines = Array.from({ length: 4000 }, (_, i) => `line ${i}: ${createHash('sha256').update(String(i)).digest('hex').slice(0, 16)}`).join('\n');
    const big = manifest(ns, 0, lines);
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'cm-0' }, big));
    await waitFor('acked', async () => (await ackedRevision(a)) >= rv);
    const held = (await a.receiver.desired()).objects.find((o) => o.object.metadata.name === 'cm-0')!;
    expect(held.object).toEqual(big['template']);
    const c = h.stats.of('edge');
    const size = Buffer.byteLength(JSON.stringify(big['template']));
    expect(c.chunkFrames).toBe(Math.ceil(size / chunkBytes));
    expect(c.compressedFrames).toBeGreaterThan(c.chunkFrames);
    expect(c.bytes * 1.5).toBeLessThan(c.rawBytes);
  });
});

describe('sync compression and the window', () => {
  it('with acks withheld the hub stops at the window, and nothing it sent waits in its compression queue', async () => {
    const both = [Feature.Sync, Feature.CompressionDeflate];
    // The window (8) fills in the middle of a group (5): its first 3 objects must reach the agent.
    const h = await hub({ windowFrames: 8, groupFrames: 5 }, both);
    const a = await agent(h, await agentHome(), undefined, undefined, both);
    const ns = await clusterNamespace(h);
    const realBatch = a.cache.batch.bind(a.cache);
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    a.cache.batch = async (ops, options) => {
      await gate;
      return realBatch(ops, options);
    };
    const rv = await writeManifests(h.store, ns, 50);
    await waitFor('the window filled', () => h.stats.of('edge').objectFrames === 8);
    for (let i = 0; i < 200; i++) await new Promise<void>((r) => setImmediate(r));
    expect(h.stats.of('edge').objectFrames).toBe(8);
    expect(h.stats.of('edge').queuedBytes).toBe(0);
    open();
    await waitFor('all 50 acked once the agent stores again', async () => (await ackedRevision(a)) >= rv);
    expect((await a.receiver.desired()).objects).toHaveLength(50);
  });
});

describe('sync receiver refuses compressed frames that break the protocol', () => {
  async function handler(features: string[]) {
    const home = await agentHome();
    const cache = await OfflineCache.open({ dir: join(home, 'db') });
    cleanups.push(() => cache.close());
    const sent: unknown[] = [];
    const h = new SyncReceiver(cache, silentLogger, () => 0, { maxDecompressedBytes: 64 * 1024 }).handlerFactory()({
      clusterName: 'edge',
      negotiated: { protocolVersion: 1, features: new Set(features) },
      send: (frame) => Promise.resolve(void sent.push(frame)),
      ended: new AbortController().signal,
    });
    return { h, sent };
  }
  const handle = (h: Awaited<ReturnType<typeof handler>>['h'], frame: Parameters<typeof h.handle>[0]) => Promise.resolve().then(() => h.handle(frame));
  const run = (...frames: wire.ConnectResponse[]) => {
    const c = new FrameCompressor();
    for (const f of frames) c.add(wire.ConnectResponse.encode(f).finish());
    return c.flush()!;
  };
  const begin: wire.ConnectResponse = { frame: { $case: 'syncBegin', value: { incarnation: 'i', fromRevision: 0, snapshot: true, toRevision: 5, reason: 'first-sync' } } };

  it('takes a compressed run of sync frames and acks its group', async () => {
    const { h, sent } = await handler([Feature.Sync, Feature.CompressionDeflate]);
    await handle(h, { $case: 'syncCompressed', value: run(begin, { frame: { $case: 'syncEnd', value: { revision: 5, sequence: 1, partial: false } } }) });
    expect(sent).toEqual([{ frame: { $case: 'syncAck', value: { incarnation: 'i', revision: 5, sequence: 1 } } }]);
  });

  it('without the feature negotiated: HAWSER_UNEXPECTED_FRAME', async () => {
    const { h } = await handler([Feature.Sync]);
    await expect(handle(h, { $case: 'syncCompressed', value: run(begin) })).rejects.toMatchObject({ code: ErrorCode.UnexpectedFrame });
  });

  it('a decompression bomb past the object limit: HAWSER_SYNC_DECOMPRESSION_LIMIT', async () => {
    const { h } = await handler([Feature.Sync, Feature.CompressionDeflate]);
    const c = new FrameCompressor();
    c.add(Buffer.alloc(1 << 20));
    await expect(handle(h, { $case: 'syncCompressed', value: c.flush()! })).rejects.toMatchObject({ code: ErrorCode.SyncDecompressionLimit });
  });

  it('a frame other than sync inside, or bytes that are no frame: HAWSER_SYNC_PROTOCOL', async () => {
    const { h } = await handler([Feature.Sync, Feature.CompressionDeflate]);
    const ack: wire.ConnectResponse = { frame: { $case: 'heartbeatAck', value: { sequence: 1, leaseExpiresAtUnixMs: 0 } } };
    await expect(handle(h, { $case: 'syncCompressed', value: run(ack) })).rejects.toMatchObject({ code: ErrorCode.SyncProtocol });
    const { h: h2 } = await handler([Feature.Sync, Feature.CompressionDeflate]);
    const c = new FrameCompressor();
    c.add(Buffer.from([0xff, 0xff, 0xff]));
    await expect(handle(h2, { $case: 'syncCompressed', value: c.flush()! })).rejects.toMatchObject({ code: ErrorCode.SyncProtocol });
  });
});
