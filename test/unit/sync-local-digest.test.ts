import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentCore } from '../../src/agent/agent.js';
import { IdentityStore } from '../../src/agent/identity.js';
import { StaticClusterReader } from '../../src/agent/kube.js';
import type { AgentHandlerFactory, HubFrame } from '../../src/agent/router.js';
import { SyncReceiver } from '../../src/agent/sync-receiver.js';
import { readSyncState } from '../../src/agent/sync-state.js';
import { OfflineCache } from '../../src/cache/index.js';
import type { EmbeddedStore, KubeObject } from '../../src/hub/store.js';
import { type SyncOptions, SyncStats, syncHandlerFactory } from '../../src/hub/sync/index.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import { wire } from '../../src/tunnel/index.js';
import { clusterNamespace, clusterStatus, edgeAgentOptions, silentLogger, startTestHub, type TestHub, tempDir, waitFor, wholeSyncObject } from './support.js';

// Feature "sync.local-digest": a whole SyncObject goes without content_sha256
// when both sides name the feature, and the agent computes the digest itself.
// Chunks keep it. A hub or an agent without the feature keeps today's frames.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function hub(features: string[], options: Partial<SyncOptions> = {}): Promise<TestHub & { stats: SyncStats }> {
  const h = await startTestHub({ features });
  const stats = new SyncStats();
  h.core.registerHandler(syncHandlerFactory({ store: h.store, logger: silentLogger, stats, options, metrics: h.metrics }));
  cleanups.push(() => h.close());
  return Object.assign(h, { stats });
}

/** A real agent whose sync receiver also records every sync object frame it is handed. */
async function agent(h: TestHub, features: string[]) {
  const dir = await tempDir('local-digest');
  const cache = await OfflineCache.open({ dir: join(dir.path, 'db') });
  const receiver = new SyncReceiver(cache, silentLogger, () => h.clock.now(), {});
  const objects: wire.SyncObject[] = [];
  const inner = receiver.handlerFactory();
  const recording: AgentHandlerFactory = (session) => {
    const handler = inner(session);
    return {
      ...handler,
      handle: (frame: HubFrame) => {
        if (frame.$case === 'syncObject') objects.push(frame.value);
        return handler.handle(frame);
      },
    };
  };
  const core = new AgentCore(edgeAgentOptions(h.token, { features }), {
    transport: h.transport.client(),
    reader: new StaticClusterReader(clusterStatus('ok')),
    cache,
    identityStore: new IdentityStore(dir.path),
    logger: silentLogger,
    clock: h.clock,
    random: () => 0.5,
  });
  core.registerHandler(recording);
  void core.start();
  cleanups.push(async () => {
    await core.stop();
    await cache.close();
    await dir.remove();
  });
  return { cache, receiver, objects };
}

function manifest(ns: string, i: number, data = 'v1'): KubeObject {
  return {
    apiVersion: 'apps.clusternet.io/v1alpha1',
    kind: 'Manifest',
    metadata: { namespace: ns, name: `cm-${i}`, labels: { 'apps.clusternet.io/subs.name': 'app', 'apps.clusternet.io/subs.namespace': 'default' } },
    template: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name: `cm-${i}` }, data: { value: data } },
  };
}

async function writeManifests(store: EmbeddedStore, ns: string, count: number): Promise<number> {
  const ops = Array.from({ length: count }, (_, i) => ({ op: 'put' as const, kind: 'Manifest' as const, key: { namespace: ns, name: `cm-${i}` }, value: manifest(ns, i) }));
  return Number((await store.batch(ops)).at(-1));
}

const acked = async (a: { cache: OfflineCache }) => (await readSyncState(a.cache, silentLogger)).lastAckedRevision;

describe('sync.local-digest negotiated', () => {
  const both = [Feature.Sync, Feature.LocalDigest];

  it('whole objects travel without content_sha256, and arrive intact: the agent holds exactly the templates', async () => {
    const h = await hub(both);
    const a = await agent(h, both);
    const ns = await clusterNamespace(h);
    const rv = await writeManifests(h.store, ns, 30);
    await waitFor('all acked', async () => (await acked(a)) >= rv);
    const upserts = a.objects.filter((o) => o.op === wire.SyncOp.SYNC_OP_UPSERT);
    expect(upserts).toHaveLength(30);
    expect(upserts.map((o) => o.contentSha256)).toEqual(Array.from({ length: 30 }, () => ''));
    const desired = await a.receiver.desired();
    const held = new Map(desired.objects.map((o) => [o.object.metadata.name, o.object]));
    expect(held.size).toBe(30);
    for (let i = 0; i < 30; i++) expect(held.get(`cm-${i}`)).toEqual(manifest(ns, i)['template']);
    // A delete goes without the digest of its empty payload too.
    const deleted = Number(await h.store.delete('Manifest', { namespace: ns, name: 'cm-3' }));
    await waitFor('the delete acked', async () => (await acked(a)) >= deleted);
    expect(a.objects.filter((o) => o.op === wire.SyncOp.SYNC_OP_DELETE).map((o) => o.contentSha256)).toEqual(['']);
    expect((await a.receiver.desired()).objects).toHaveLength(29);
  });

  it('chunks keep their content_sha256 (reassembled across connections) and the object arrives whole', async () => {
    const all = [...both, Feature.Chunks];
    const h = await hub(all, { chunkBytes: 1024 });
    const a = await agent(h, all);
    const ns = await clusterNamespace(h);
    const big = manifest(ns, 0, 'y'.repeat(5000));
    const rv = Number(await h.store.put('Manifest', { namespace: ns, name: 'cm-0' }, big));
    await waitFor('acked', async () => (await acked(a)) >= rv);
    const payload = Buffer.from(JSON.stringify(big['template']));
    expect(a.objects.length).toBeGreaterThan(1);
    expect(new Set(a.objects.map((o) => o.contentSha256))).toEqual(new Set([sha256(payload)]));
    expect((await a.receiver.desired()).objects[0]!.object).toEqual(big['template']);
  });
});

describe('sync.local-digest offered by one side only: today\'s frames', () => {
  it.each([
    ['an older agent (the hub offers it)', [Feature.Sync, Feature.LocalDigest], [Feature.Sync]],
    ['an older hub (the agent offers it)', [Feature.Sync], [Feature.Sync, Feature.LocalDigest]],
  ])('%s: every object carries the sha256 of its payload and arrives', async (_, hubFeatures, agentFeatures) => {
    const h = await hub(hubFeatures);
    const a = await agent(h, agentFeatures);
    const ns = await clusterNamespace(h);
    const rv = await writeManifests(h.store, ns, 10);
    await waitFor('all acked', async () => (await acked(a)) >= rv);
    expect(a.objects).toHaveLength(10);
    for (const o of a.objects) expect(o.contentSha256).toBe(sha256(o.payload));
    expect((await a.receiver.desired()).objects).toHaveLength(10);
  });
});

describe('sync receiver and the digest of a whole object', () => {
  async function handler(features: string[]) {
    const dir = await tempDir('local-digest-receiver');
    const cache = await OfflineCache.open({ dir: join(dir.path, 'db') });
    cleanups.push(async () => {
      await cache.close();
      await dir.remove();
    });
    const sent: unknown[] = [];
    const h = new SyncReceiver(cache, silentLogger, () => 0).handlerFactory()({
      clusterName: 'edge',
      negotiated: { protocolVersion: 1, features: new Set(features) },
      send: (frame) => Promise.resolve(void sent.push(frame)),
      ended: new AbortController().signal,
    });
    await h.handle({ $case: 'syncBegin', value: { incarnation: 'i', fromRevision: 0, snapshot: true, toRevision: 5, reason: 'first-sync' } });
    return { h, sent };
  }
  const object = (over: Partial<wire.SyncObject>): wire.SyncObject => wholeSyncObject({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a' } }, { revision: 3, contentSha256: '', ...over });
  const payload = object({}).payload;
  const handled = (h: Awaited<ReturnType<typeof handler>>['h'], o: wire.SyncObject) => Promise.resolve().then(() => h.handle({ $case: 'syncObject', value: o }));

  it('negotiated: takes an object without a digest and acks its group', async () => {
    const { h, sent } = await handler([Feature.Sync, Feature.LocalDigest]);
    await handled(h, object({}));
    await h.handle({ $case: 'syncEnd', value: { revision: 5, sequence: 1, partial: false } });
    expect(sent).toEqual([{ frame: { $case: 'syncAck', value: expect.objectContaining({ revision: 5, sequence: 1 }) } }]);
  });

  it('negotiated: a digest that is sent is still checked, and so is the size (HAWSER_SYNC_PROTOCOL)', async () => {
    const { h } = await handler([Feature.Sync, Feature.LocalDigest]);
    await expect(handled(h, object({ contentSha256: sha256(Buffer.from('other')) }))).rejects.toMatchObject({ code: ErrorCode.SyncProtocol });
    const { h: h2 } = await handler([Feature.Sync, Feature.LocalDigest]);
    await expect(handled(h2, object({ totalSize: payload.length + 1 }))).rejects.toMatchObject({ code: ErrorCode.SyncProtocol });
  });

  it('not negotiated: an object without its digest is refused (HAWSER_SYNC_PROTOCOL)', async () => {
    const { h } = await handler([Feature.Sync]);
    await expect(handled(h, object({}))).rejects.toMatchObject({ code: ErrorCode.SyncProtocol });
  });
});
