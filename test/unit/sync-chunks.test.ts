import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentCore } from '../../src/agent/agent.js';
import { IdentityStore } from '../../src/agent/identity.js';
import { StaticClusterReader } from '../../src/agent/kube.js';
import type { AgentHandlerFactory } from '../../src/agent/router.js';
import { SyncApplyLoop, withRefusals } from '../../src/agent/sync-apply.js';
import { SyncReceiver, type SyncReceiverOptions } from '../../src/agent/sync-receiver.js';
import { readSyncState } from '../../src/agent/sync-state.js';
import { OfflineCache } from '../../src/cache/index.js';
import type { KubeObject } from '../../src/hub/store.js';
import { type SyncOptions, SyncStats, syncHandlerFactory } from '../../src/hub/sync/index.js';
import { planChunks } from '../../src/hub/sync/chunks.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import { wire } from '../../src/tunnel/index.js';
import type { Applier, ReconcileReport } from '../../src/agent/apply-report.js';
import { clusterNamespace, clusterStatus, RecordingApplier, edgeAgentOptions, metricValue, silentLogger, startTestHub, type TestHub, tempDir, waitFor } from './support.js';

// Large objects in resumable chunks (feature "chunks") over the in-memory
// transport: a real hub (HubCore + EmbeddedStore) and a real agent (AgentCore
// + OfflineCache). A cut is made by an agent that takes only the first k
// chunk frames and then stops: exactly k chunks are durable and acked.

const chunkBytes = 16 * 1024;
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

interface Hub extends TestHub {
  stats: SyncStats;
}

async function hub(options: Partial<SyncOptions> = {}): Promise<Hub> {
  const h = await startTestHub({ features: [Feature.Sync, Feature.Chunks] });
  const stats = new SyncStats();
  h.core.registerHandler(syncHandlerFactory({ store: h.store, logger: silentLogger, stats, metrics: h.metrics, options: { chunkBytes, chunkWindowBytes: 2 * chunkBytes, ...options } }));
  cleanups.push(() => h.close());
  return Object.assign(h, { stats });
}

async function agentHome(): Promise<string> {
  const dir = await tempDir('chunks-agent');
  cleanups.push(() => dir.remove());
  return dir.path;
}

interface AgentSetup {
  options?: Partial<SyncReceiverOptions>;
  applier?: Applier;
  /** Wraps the receiver's handler (e.g. to cut the transfer). */
  wrap?: (factory: AgentHandlerFactory) => AgentHandlerFactory;
  logger?: pino.Logger;
}

async function agent(h: TestHub, home: string, setup: AgentSetup = {}) {
  const logger = setup.logger ?? silentLogger;
  const cache = await OfflineCache.open({ dir: join(home, 'db') });
  const receiver = new SyncReceiver(cache, logger, () => h.clock.now(), setup.options ?? {});
  const core = new AgentCore(
    edgeAgentOptions(h.token, { backoff: { baseMs: 1, capMs: 5, stableAfterMs: 60_000 }, features: [Feature.Sync, Feature.Chunks] }),
    {
      transport: h.transport.client(),
      reader: new StaticClusterReader(clusterStatus('ok')),
      cache,
      identityStore: new IdentityStore(home),
      logger,
      clock: h.clock,
      random: () => 0,
      // As the agent does: every hello names the large object held in part.
      syncResume: async () => ({ ...(await readSyncState(cache, logger)), ...(await receiver.helloFields()) }),
    },
  );
  const factory = receiver.handlerFactory();
  core.registerHandler(setup.wrap ? setup.wrap(factory) : factory);
  const loop = setup.applier ? new SyncApplyLoop({ receiver, applier: setup.applier, logger, clock: h.clock, intervalMs: 60_000 }) : undefined;
  if (loop) {
    core.registerHandler(loop.handlerFactory());
    loop.start();
  }
  void core.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await loop?.stop();
    await core.stop();
    await cache.close();
  };
  cleanups.push(stop);
  return { core, cache, receiver, stop };
}

/** A receiver handler that takes the first `k` chunk frames and drops every sync frame after them: the cut. */
function cutAfterChunks(k: number): (factory: AgentHandlerFactory) => AgentHandlerFactory {
  let chunks = 0;
  return (factory) => (session) => {
    const inner = factory(session);
    return {
      ...inner,
      handle: async (frame) => {
        if (chunks >= k) return;
        if (frame.$case === 'syncObject' && frame.value.chunkCount > 1) chunks++;
        await inner.handle(frame);
      },
    };
  };
}

/** A ConfigMap Manifest with `bytes` of incompressible data. */
function bigManifest(ns: string, name: string, bytes: number, seed = 'a'): KubeObject {
  const data = randomBytes(Math.ceil(bytes / 2)).toString('hex').slice(0, bytes);
  return {
    apiVersion: 'apps.clusternet.io/v1alpha1',
    kind: 'Manifest',
    metadata: { namespace: ns, name, labels: { 'apps.clusternet.io/subs.name': 'app', 'apps.clusternet.io/subs.namespace': 'default' } },
    template: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name }, data: { seed, blob: data } },
  };
}

function templateBytes(m: KubeObject): number {
  return Buffer.byteLength(JSON.stringify(m['template']));
}

async function ackedRevision(a: { cache: OfflineCache }): Promise<number> {
  return (await readSyncState(a.cache, silentLogger)).lastAckedRevision;
}

async function heldObject(a: { receiver: SyncReceiver }, name: string): Promise<unknown> {
  return (await a.receiver.desired()).objects.find((o) => o.object.metadata.name === name)?.object;
}

describe('chunk plan', () => {
  it('slices from the start, or from a resume point with indexes continuing; a point that holds all gives one empty slice', () => {
    expect(planChunks(40, 16)).toEqual({ count: 3, slices: [{ index: 0, offset: 0, length: 16 }, { index: 1, offset: 16, length: 16 }, { index: 2, offset: 32, length: 8 }] });
    expect(planChunks(40, 16, { receivedChunks: 2, receivedBytes: 32 })).toEqual({ count: 3, slices: [{ index: 2, offset: 32, length: 8 }] });
    expect(planChunks(40, 16, { receivedChunks: 3, receivedBytes: 40 })).toEqual({ count: 4, slices: [{ index: 3, offset: 40, length: 0 }] });
  });
});

describe('sync: large objects in chunks', () => {
  it('an object above the chunk size travels in chunks of at most the chunk size and arrives whole', async () => {
    const h = await hub();
    const a = await agent(h, await agentHome());
    const ns = await clusterNamespace(h);
    const big = bigManifest(ns, 'big', 200_000);
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'big' }, big));
    await waitFor('acked', async () => (await ackedRevision(a)) >= rv);
    expect(await heldObject(a, 'big')).toEqual(big['template']);
    const size = templateBytes(big);
    expect(h.stats.of('edge').chunkFrames).toBe(Math.ceil(size / chunkBytes));
    // Bounded frames: the whole object's bytes plus a small envelope per chunk, never one big frame.
    expect(h.stats.of('edge').bytes).toBeLessThan(size + 1024 * h.stats.of('edge').chunkFrames + 4096);
    expect(await metricValue(h.metrics, 'hawser_hub_sync_chunks_total', { cluster: 'edge' })).toBe(h.stats.of('edge').chunkFrames);
    // Nothing of the transfer is left in the cache once the object is in.
    expect((await a.receiver.helloFields()).partialObject).toBeUndefined();
  });

  it('cut after chunk k, the next session resumes at chunk k+1: only the rest crosses the wire', async () => {
    const h = await hub();
    const home = await agentHome();
    const k = 5;
    const first = await agent(h, home, { wrap: cutAfterChunks(k) });
    const ns = await clusterNamespace(h);
    const big = bigManifest(ns, 'big', 200_000);
    const size = templateBytes(big);
    const count = Math.ceil(size / chunkBytes);
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'big' }, big));
    await waitFor('k chunks durable', async () => (await first.receiver.helloFields()).partialObject?.receivedChunks === k);
    await first.stop();
    // A half-received object is never in the desired set.
    const reopened = await OfflineCache.open({ dir: join(home, 'db') });
    const offline = new SyncReceiver(reopened, silentLogger, () => 0);
    expect((await offline.desired()).objects).toEqual([]);
    expect((await offline.helloFields()).partialObject).toMatchObject({ receivedChunks: k, receivedBytes: k * chunkBytes, totalSize: size });
    await reopened.close();

    const chunksBefore = h.stats.of('edge').chunkFrames;
    const second = await agent(h, home);
    await waitFor('acked after the resume', async () => (await ackedRevision(second)) >= rv);
    expect(await heldObject(second, 'big')).toEqual(big['template']);
    // Restarting from zero would send all `count` chunks again; a resume sends count - k.
    expect(h.stats.of('edge').chunkFrames - chunksBefore).toBe(count - k);
    expect(h.stats.of('edge').resumedBytes).toBe(k * chunkBytes);
    expect(await metricValue(h.metrics, 'hawser_hub_sync_resumed_bytes_total', { cluster: 'edge' })).toBe(k * chunkBytes);
  });

  it('an object changed during the cut is sent anew from its first chunk, and the newer rendering is what arrives', async () => {
    const h = await hub();
    const home = await agentHome();
    const first = await agent(h, home, { wrap: cutAfterChunks(3) });
    const ns = await clusterNamespace(h);
    // The first (empty) snapshot acked: the old rendering then travels as a delta the next session replays.
    await waitFor('the first snapshot acked', async () => (await ackedRevision(first)) > 0);
    await h.store.put('Manifest', { namespace: ns, name: 'big' }, bigManifest(ns, 'big', 200_000, 'old'));
    await waitFor('3 chunks durable', async () => (await first.receiver.helloFields()).partialObject?.receivedChunks === 3);
    await first.stop();
    const newer = bigManifest(ns, 'big', 150_000, 'new');
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'big' }, newer));
    const chunksBefore = h.stats.of('edge').chunkFrames;
    const second = await agent(h, home);
    await waitFor('acked', async () => (await ackedRevision(second)) >= rv);
    expect(await heldObject(second, 'big')).toEqual(newer['template']);
    expect(h.stats.of('edge').resumedBytes).toBe(0);
    // Skipped: in the feed's queue behind the newer change (coalesced), or found stale in the store (superseded).
    await waitFor('the stale replay skipped', () => h.stats.of('edge').superseded + h.stats.of('edge').coalesced === 1);
    expect(h.stats.of('edge').chunkFrames - chunksBefore).toBe(Math.ceil(templateBytes(newer) / chunkBytes));
  });

  it('all chunks durable but the group not committed: the next session completes it with one empty chunk', async () => {
    const h = await hub();
    const home = await agentHome();
    const first = await agent(h, home, { wrap: cutAfterChunks(3) });
    const ns = await clusterNamespace(h);
    const big = bigManifest(ns, 'big', 3 * chunkBytes - 300);
    const size = templateBytes(big);
    expect(Math.ceil(size / chunkBytes)).toBe(3);
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'big' }, big));
    await waitFor('all 3 chunks durable', async () => (await first.receiver.helloFields()).partialObject?.receivedBytes === size);
    await first.stop();
    const before = h.stats.of('edge').chunkFrames;
    const second = await agent(h, home);
    await waitFor('acked', async () => (await ackedRevision(second)) >= rv);
    expect(await heldObject(second, 'big')).toEqual(big['template']);
    expect(h.stats.of('edge').chunkFrames - before).toBe(1);
  });

  it('a reassembled object that fails its checksum is dropped (HAWSER_SYNC_CHECKSUM_MISMATCH, logged) and fetched again from its start', async () => {
    const h = await hub();
    const home = await agentHome();
    const first = await agent(h, home, { wrap: cutAfterChunks(4) });
    const ns = await clusterNamespace(h);
    const big = bigManifest(ns, 'big', 120_000);
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'big' }, big));
    await waitFor('4 chunks durable', async () => (await first.receiver.helloFields()).partialObject?.receivedChunks === 4);
    await first.stop();
    // A stored chunk whose bytes changed (its cache entry is well-formed: only the whole's checksum can tell).
    const cache = await OfflineCache.open({ dir: join(home, 'db') });
    const key = 'sync/part/chunk/000001';
    const stored = Buffer.from((await cache.get<string>(key))!, 'base64');
    stored[10] = stored[10]! ^ 0x01;
    await cache.put(key, stored.toString('base64'));
    await cache.close();

    const lines: string[] = [];
    const logger = pino({ level: 'error' }, new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(chunk.toString()), done()) }));
    const chunksBefore = h.stats.of('edge').chunkFrames;
    const second = await agent(h, home, { logger });
    // The failed session reconnects after its (manual-clock) backoff.
    await waitFor('acked after the refetch', async () => {
      h.clock.advance(10);
      return (await ackedRevision(second)) >= rv;
    });
    expect(await heldObject(second, 'big')).toEqual(big['template']);
    const count = Math.ceil(templateBytes(big) / chunkBytes);
    // The resumed rest (count - 4), then the whole object again from chunk 0.
    expect(h.stats.of('edge').chunkFrames - chunksBefore).toBe(count - 4 + count);
    const logged = lines.map((l) => JSON.parse(l) as { code?: string }).filter((l) => l.code === ErrorCode.SyncChecksumMismatch);
    expect(logged).toHaveLength(1);
  });

  it('chunks in flight stay within the chunk window while the agent withholds its acks; heartbeats are acked meanwhile', async () => {
    const h = await hub({ chunkWindowBytes: 3 * chunkBytes });
    const a = await agent(h, await agentHome());
    const ns = await clusterNamespace(h);
    const realBatch = a.cache.batch.bind(a.cache);
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    a.cache.batch = async (ops, options) => {
      await gate;
      return realBatch(ops, options);
    };
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'big' }, bigManifest(ns, 'big', 300_000)));
    // Each chunk frame is a little over chunkBytes: two fit in a window of three chunk sizes, a third does not.
    await waitFor('the chunk window filled', () => h.stats.of('edge').chunkFrames === 2);
    for (let i = 0; i < 200; i++) await new Promise<void>((r) => setImmediate(r));
    expect(h.stats.of('edge').chunkFrames).toBe(2);
    // The transfer is stalled at its window, the lease is not: a heartbeat goes out and its ack comes back.
    let acks = 0;
    a.core.on('rtt', () => acks++);
    await waitFor('a heartbeat acked during the transfer', () => {
      h.clock.advance(1_000);
      return acks > 0;
    });
    expect(h.stats.of('edge').chunkFrames).toBe(2);
    open();
    await waitFor('all acked once the agent stores again', async () => (await ackedRevision(a)) >= rv);
  });
});

type StatusRow = { name: string; action: string; error?: { code: string; message: string } };

async function statusRows(h: TestHub, ns: string, count: number): Promise<StatusRow[]> {
  return waitFor(`a ClusterSyncStatus of ${count} rows`, async () => {
    const s = await h.store.get('ClusterSyncStatus', { namespace: ns, name: 'edge' });
    const rows = (s?.['status'] as { objects?: StatusRow[] } | undefined)?.objects;
    return rows?.length === count && rows.some((r) => r.action === 'error') ? rows : undefined;
  });
}

describe('sync limits: a clear error on the subscription, the other objects still sync', () => {
  it("an object past the hub's --max-object-bytes is refused: HAWSER_SYNC_OBJECT_TOO_LARGE in the agent's report at the hub", async () => {
    const h = await hub({ maxObjectBytes: 100_000 });
    const applier = new RecordingApplier();
    const a = await agent(h, await agentHome(), { applier });
    const ns = await clusterNamespace(h);
    await h.store.put('Manifest', { namespace: ns, name: 'huge' }, bigManifest(ns, 'huge', 150_000));
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'small' }, bigManifest(ns, 'small', 50_000)));
    await waitFor('acked', async () => (await ackedRevision(a)) >= rv);
    expect((await a.receiver.desired()).objects.map((o) => o.object.metadata.name)).toEqual(['small']);
    const rows = await statusRows(h, ns, 2);
    expect(rows.find((r) => r.name === 'huge')).toMatchObject({ action: 'error', error: { code: ErrorCode.SyncObjectTooLarge } });
    expect(rows.find((r) => r.name === 'small')).toMatchObject({ action: 'applied' });
    // Nothing of the refused object crossed the wire but its refusal.
    expect(h.stats.of('edge').bytes).toBeLessThan(80_000);
  });

  it("the agent's own --max-object-bytes goes in its hello: the hub refuses on its behalf and sends nothing of the object", async () => {
    const h = await hub();
    const a = await agent(h, await agentHome(), { options: { maxObjectBytes: 100_000 } });
    const ns = await clusterNamespace(h);
    await h.store.put('Manifest', { namespace: ns, name: 'huge' }, bigManifest(ns, 'huge', 150_000));
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'small' }, bigManifest(ns, 'small', 1_000)));
    await waitFor('acked', async () => (await ackedRevision(a)) >= rv);
    const desired = await a.receiver.desired();
    expect(desired.objects.map((o) => o.object.metadata.name)).toEqual(['small']);
    expect(desired.refused.map((r) => [r.key.name, r.code])).toEqual([['huge', ErrorCode.SyncObjectTooLarge]]);
    expect(h.stats.of('edge').chunkFrames).toBe(0);
  });

  it('an agent enforces its limit itself too: a too-large chunked object is refused, its chunks acked and dropped, the stream goes on', async () => {
    const home = await agentHome();
    const cache = await OfflineCache.open({ dir: join(home, 'db') });
    cleanups.push(() => cache.close());
    const sent: wire.ConnectRequest[] = [];
    const h = new SyncReceiver(cache, silentLogger, () => 0, { maxObjectBytes: 1024 }).handlerFactory()({
      clusterName: 'edge',
      negotiated: { protocolVersion: 1, features: new Set([Feature.Sync, Feature.Chunks]) },
      send: (frame) => Promise.resolve(void sent.push(frame)),
      ended: new AbortController().signal,
    });
    const payload = Buffer.from(JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' }, data: { x: 'y'.repeat(3000) } }));
    const whole: wire.SyncObject = {
      key: { apiVersion: 'v1', kind: 'ConfigMap', namespace: '', name: 'a' },
      subscription: 'default/app',
      revision: 3,
      op: wire.SyncOp.SYNC_OP_UPSERT,
      encoding: wire.PayloadEncoding.PAYLOAD_ENCODING_IDENTITY,
      contentSha256: createHash('sha256').update(payload).digest('hex'),
      totalSize: payload.length,
      chunkIndex: 0,
      chunkCount: 2,
      payload: Buffer.alloc(0),
    };
    const half = Math.ceil(payload.length / 2);
    await h.handle({ $case: 'syncBegin', value: { incarnation: 'i', fromRevision: 0, snapshot: false, toRevision: 3, reason: '' } });
    await h.handle({ $case: 'syncObject', value: { ...whole, payload: payload.subarray(0, half) } });
    await h.handle({ $case: 'syncObject', value: { ...whole, chunkIndex: 1, chunkOffset: half, payload: payload.subarray(half) } });
    await h.handle({ $case: 'syncEnd', value: { revision: 3, sequence: 1, partial: false } });
    expect(sent.map((f) => f.frame?.$case)).toEqual(['syncChunkAck', 'syncChunkAck', 'syncAck']);
    const receiver = new SyncReceiver(cache, silentLogger, () => 0);
    const desired = await receiver.desired();
    expect(desired.objects).toEqual([]);
    expect(desired.refused.map((r) => r.code)).toEqual([ErrorCode.SyncObjectTooLarge]);
    expect((await receiver.helloFields()).partialObject).toBeUndefined();
  });

  it('past --cache-size-limit an object is refused (HAWSER_SYNC_CACHE_FULL) and the copy held before stays desired', async () => {
    const h = await hub();
    const a = await agent(h, await agentHome(), { options: { maxCacheBytes: 200_000 } });
    const ns = await clusterNamespace(h);
    const first = bigManifest(ns, 'one', 120_000, 'v1');
    let rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'one' }, first));
    await waitFor('one acked', async () => (await ackedRevision(a)) >= rv);
    // A second object would take the cache past its limit; a small third still fits.
    await h.store.put('Manifest', { namespace: ns, name: 'two' }, bigManifest(ns, 'two', 120_000));
    rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'three' }, bigManifest(ns, 'three', 1_000)));
    await waitFor('three acked', async () => (await ackedRevision(a)) >= rv);
    let desired = await a.receiver.desired();
    expect(desired.objects.map((o) => o.object.metadata.name).sort()).toEqual(['one', 'three']);
    expect(desired.refused.map((r) => [r.key.name, r.code])).toEqual([['two', ErrorCode.SyncCacheFull]]);
    // `one` grown past the limit: refused, and the copy held of it stays.
    rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'one' }, bigManifest(ns, 'one', 250_000, 'v2')));
    await waitFor('acked', async () => (await ackedRevision(a)) >= rv);
    desired = await a.receiver.desired();
    expect(desired.objects.find((o) => o.object.metadata.name === 'one')?.object).toEqual(first['template']);
    expect(desired.refused.map((r) => r.key.name).sort()).toEqual(['one', 'two']);
  });
});

describe('chunk frames that break the protocol', () => {
  async function handler(options: Partial<SyncReceiverOptions> = {}) {
    const home = await agentHome();
    const cache = await OfflineCache.open({ dir: join(home, 'db') });
    cleanups.push(() => cache.close());
    const receiver = new SyncReceiver(cache, silentLogger, () => 0, options);
    const h = receiver.handlerFactory()({
      clusterName: 'edge',
      negotiated: { protocolVersion: 1, features: new Set([Feature.Sync, Feature.Chunks]) },
      send: () => Promise.resolve(),
      ended: new AbortController().signal,
    });
    await h.handle({ $case: 'syncBegin', value: { incarnation: 'i', fromRevision: 0, snapshot: false, toRevision: 3, reason: '' } });
    return { h, receiver, cache };
  }
  const payload = Buffer.from(JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' }, data: { x: 'y'.repeat(3000) } }));
  const half = Math.ceil(payload.length / 2);
  const chunk = (index: number, over: Partial<wire.SyncObject> = {}): wire.SyncObject => ({
    key: { apiVersion: 'v1', kind: 'ConfigMap', namespace: '', name: 'a' },
    subscription: 'default/app',
    revision: 3,
    op: wire.SyncOp.SYNC_OP_UPSERT,
    encoding: wire.PayloadEncoding.PAYLOAD_ENCODING_IDENTITY,
    contentSha256: createHash('sha256').update(payload).digest('hex'),
    totalSize: payload.length,
    chunkIndex: index,
    chunkCount: 2,
    chunkOffset: index === 0 ? 0 : half,
    payload: index === 0 ? payload.subarray(0, half) : payload.subarray(half),
    ...over,
  });
  const handled = (h: Awaited<ReturnType<typeof handler>>['h'], o: wire.SyncObject) => Promise.resolve().then(() => h.handle({ $case: 'syncObject', value: o }));

  it('a chunk that does not continue what the agent holds, or comes encoded, is HAWSER_SYNC_PROTOCOL', async () => {
    const { h } = await handler();
    await expect(handled(h, chunk(1))).rejects.toMatchObject({ code: ErrorCode.SyncProtocol });
    await handled(h, chunk(0));
    await expect(handled(h, chunk(1, { chunkOffset: half + 1 }))).rejects.toMatchObject({ code: ErrorCode.SyncProtocol });
    await expect(handled(h, chunk(1, { encoding: wire.PayloadEncoding.PAYLOAD_ENCODING_ZSTD }))).rejects.toMatchObject({ code: ErrorCode.SyncProtocol });
  });

  it('a delete of the object held in part drops its chunks with the group', async () => {
    const { h, receiver, cache } = await handler();
    await handled(h, chunk(0));
    expect((await receiver.helloFields()).partialObject?.receivedChunks).toBe(1);
    await handled(h, { ...chunk(0), op: wire.SyncOp.SYNC_OP_DELETE, payload: Buffer.alloc(0), chunkCount: 1, totalSize: 0 });
    await h.handle({ $case: 'syncEnd', value: { revision: 3, sequence: 1, partial: false } });
    expect((await receiver.helloFields()).partialObject).toBeUndefined();
    // Durably: a receiver opened afresh on the cache finds none either.
    expect((await new SyncReceiver(cache, silentLogger, () => 0).helloFields()).partialObject).toBeUndefined();
  });

  it('chunks held count against --cache-size-limit: a whole object that fits alone but not beside them is HAWSER_SYNC_CACHE_FULL', async () => {
    const { h, receiver } = await handler({ maxCacheBytes: payload.length + 1000 });
    await handled(h, chunk(0));
    const other = Buffer.from(JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'b' }, data: { x: 'z'.repeat(payload.length - 500) } }));
    const whole = { ...chunk(0), key: { apiVersion: 'v1', kind: 'ConfigMap', namespace: '', name: 'b' }, chunkCount: 1, totalSize: other.length, payload: other };
    expect(other.length).toBeLessThan(payload.length + 1000);
    await handled(h, { ...whole, contentSha256: createHash('sha256').update(other).digest('hex') });
    await h.handle({ $case: 'syncEnd', value: { revision: 3, sequence: 1, partial: false } });
    expect((await receiver.desired()).refused.map((r) => [r.key.name, r.code])).toEqual([['b', ErrorCode.SyncCacheFull]]);
  });

  it('a whole that fails its checksum is HAWSER_SYNC_CHECKSUM_MISMATCH and its chunks are dropped', async () => {
    const { h, receiver } = await handler();
    const wrong = createHash('sha256').update('something else').digest('hex');
    await handled(h, chunk(0, { contentSha256: wrong }));
    expect((await receiver.helloFields()).partialObject?.receivedChunks).toBe(1);
    await expect(handled(h, chunk(1, { contentSha256: wrong }))).rejects.toMatchObject({ code: ErrorCode.SyncChecksumMismatch });
    expect((await receiver.helloFields()).partialObject).toBeUndefined();
    expect((await receiver.desired()).objects).toEqual([]);
  });
});

describe('refusals in the apply report', () => {
  it('a refused object with a copy held from before turns its row into an error; one never held gets an error row of its own', () => {
    const report: ReconcileReport = {
      objects: [{ apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name: 'old', subscriptions: ['default/app'], action: 'unchanged', exists: true }],
      prune: { ran: true, errors: [] },
    };
    const refusal = (name: string) => ({ subscription: 'default/app', key: { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name }, code: ErrorCode.SyncCacheFull, message: 'full' });
    const merged = withRefusals(report, [refusal('old'), refusal('new')]);
    expect(merged.objects).toEqual([
      { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name: 'old', subscriptions: ['default/app'], action: 'error', exists: true, error: { code: ErrorCode.SyncCacheFull, message: 'full' } },
      { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name: 'new', subscriptions: ['default/app'], action: 'error', error: { code: ErrorCode.SyncCacheFull, message: 'full' } },
    ]);
    expect(withRefusals(report, [])).toBe(report);
  });
});
