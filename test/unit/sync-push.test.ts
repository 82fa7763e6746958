import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentCore } from '../../src/agent/agent.js';
import { IdentityStore } from '../../src/agent/identity.js';
import { StaticClusterReader } from '../../src/agent/kube.js';
import type { ObjectReport } from '../../src/agent/apply-report.js';
import type { SyncMode } from '../../src/api/index.js';
import { SyncApplyLoop } from '../../src/agent/sync-apply.js';
import { PushReceiver } from '../../src/agent/sync-push.js';
import { desiredSetPrefixes, holdFor, staleConfirmation, SyncReceiver } from '../../src/agent/sync-receiver.js';
import { readSyncState, writeSyncState } from '../../src/agent/sync-state.js';
import { OfflineCache } from '../../src/cache/index.js';
import type { EmbeddedStore, KubeObject } from '../../src/hub/store.js';
import {
  confirmPrune,
  manifestsDigestAt,
  parseConfirmPrune,
  readSyncStatus,
  SyncSessions,
  SyncStats,
  syncHandlerFactory,
  syncStatusAfter,
} from '../../src/hub/sync/index.js';
import { ErrorCode } from '../../src/tunnel/errors.js';
import { Feature } from '../../src/tunnel/negotiate.js';
import { contentSha256, desiredSetDigest, wire } from '../../src/tunnel/index.js';
import { clusterNamespace, clusterStatus, RecordingApplier, edgeAgentOptions, silentLogger, startTestHub, type TestHub, tempDir, waitFor } from './support.js';

// Push mode, the hello digest and confirm-prune over the in-memory transport:
// a real HubCore + EmbeddedStore and a real AgentCore + OfflineCache.

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

interface Hub extends TestHub {
  stats: SyncStats;
  sessions: SyncSessions;
}

async function hub(): Promise<Hub> {
  const h = await startTestHub({ features: [Feature.Sync] });
  const stats = new SyncStats();
  const sessions = new SyncSessions();
  h.core.registerHandler(syncHandlerFactory({ store: h.store, logger: silentLogger, stats, sessions, metrics: h.metrics }));
  cleanups.push(() => h.close());
  return Object.assign(h, { stats, sessions });
}

/** Also records what it was asked to delete (Push deletes need `remove`). */
class PushApplier extends RecordingApplier {
  readonly removed: string[] = [];
  remove(targets: ReadonlyArray<{ apiVersion: string; kind: string; namespace: string; name: string; subscription: string }>): Promise<ObjectReport[]> {
    this.removed.push(...targets.map((t) => t.name));
    return Promise.resolve(targets.map((t) => ({ apiVersion: t.apiVersion, kind: t.kind, namespace: t.namespace, name: t.name, subscriptions: [t.subscription], action: 'deleted' as const, exists: false })));
  }
  applied(): string[] {
    return this.inputs.flatMap((i) => i.objects.map((o) => o.object.metadata.name ?? ''));
  }
}

async function agentHome(): Promise<string> {
  const dir = await tempDir('push-agent');
  cleanups.push(() => dir.remove());
  return dir.path;
}

/** An agent running `mode`: Push gets a PushReceiver, the others the caching receiver and apply loop. */
async function agent(h: TestHub, home: string, mode: SyncMode, applier: PushApplier, options: { applyReports?: boolean } = {}) {
  const cache = await OfflineCache.open({ dir: join(home, 'db') });
  const receiver = mode === 'Push' ? undefined : new SyncReceiver(cache, silentLogger, () => h.clock.now());
  const push = mode === 'Push' ? new PushReceiver(cache, applier, silentLogger, () => h.clock.now()) : undefined;
  const core = new AgentCore(
    edgeAgentOptions(h.token, { clusterSyncMode: mode, clusterSyncModeInEffect: mode }),
    {
      transport: h.transport.client(),
      reader: new StaticClusterReader(clusterStatus('ok')),
      cache,
      identityStore: new IdentityStore(home),
      logger: silentLogger,
      clock: h.clock,
      random: () => 0.5,
      syncResume: async () => ({ ...(await readSyncState(cache, silentLogger)), ...(receiver ? { desiredDigest: await receiver.digest() } : {}) }),
    },
  );
  let loop: SyncApplyLoop | undefined;
  if (push) core.registerHandler(push.handlerFactory());
  if (receiver) {
    core.registerHandler(receiver.handlerFactory());
    const l = new SyncApplyLoop({ receiver, applier, logger: silentLogger, clock: h.clock, intervalMs: 60_000 });
    loop = l;
    if (mode === 'Dual') receiver.applyOnCommit = (signal) => l.applyNow(signal);
    if (options.applyReports !== false) core.registerHandler(l.handlerFactory());
    l.start();
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
  return { core, cache, receiver, push, stop };
}

function manifest(ns: string, name: string, data = 'v1'): KubeObject {
  return {
    apiVersion: 'apps.clusternet.io/v1alpha1',
    kind: 'Manifest',
    metadata: { namespace: ns, name, labels: { 'apps.clusternet.io/subs.name': 'app', 'apps.clusternet.io/subs.namespace': 'default' } },
    template: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace: 'default', name }, data: { value: data } },
  };
}

async function put(store: EmbeddedStore, ns: string, name: string, data = 'v1'): Promise<number> {
  return Number(await store.put('Manifest', { namespace: ns, name }, manifest(ns, name, data)));
}

async function cacheKeys(cache: OfflineCache): Promise<string[]> {
  const keys: string[] = [];
  for (const p of desiredSetPrefixes) keys.push(...(await cache.keys({ gte: p, lt: `${p}\uffff` })));
  return keys;
}

describe('sync digest (pure)', () => {
  it('is the same for the same set in any order, and differs when one content differs', () => {
    const a = [{ id: 'x', sha256: '1' }, { id: 'y', sha256: '2' }];
    expect(desiredSetDigest(a)).toBe(desiredSetDigest([...a].reverse()));
    expect(desiredSetDigest(a)).not.toBe(desiredSetDigest([{ id: 'x', sha256: '1' }, { id: 'y', sha256: '3' }]));
  });

  it('the hub computes it only for a revision no listed Manifest is newer than', () => {
    const item = (name: string, rv: number) => ({ key: { namespace: 'ns', name }, resourceVersion: String(rv), object: manifest('ns', name) });
    expect(manifestsDigestAt([item('a', 3), item('b', 5)], 4)).toBeUndefined();
    const digest = manifestsDigestAt([item('a', 3), item('b', 4)], 4);
    const sha = (name: string) => contentSha256(JSON.stringify(manifest('ns', name)['template']));
    expect(digest).toBe(desiredSetDigest([{ id: 'default%2Fapp/v1/ConfigMap/default/a', sha256: sha('a') }, { id: 'default%2Fapp/v1/ConfigMap/default/b', sha256: sha('b') }]));
  });
});

describe('held prune (pure)', () => {
  const options = { maxRemovalShare: 0.5, minHeldRemovals: 10 };
  it('a Push snapshot (no counts) is held for another incarnation or a revision behind, and names its snapshot', () => {
    const state = { hubIncarnation: 'old', lastAckedRevision: 9 };
    expect(holdFor(state, { incarnation: 'new', toRevision: 20 }, undefined, undefined, options, 1)).toMatchObject({ code: ErrorCode.SyncPruneHeld, incarnation: 'new', revision: 20 });
    expect(holdFor({ hubIncarnation: 'old', lastAckedRevision: 30 }, { incarnation: 'old', toRevision: 20 }, undefined, undefined, options, 1)).toMatchObject({ revision: 20 });
    expect(holdFor(state, { incarnation: 'old', toRevision: 20 }, undefined, undefined, options, 1)).toBeUndefined();
  });

  it('a confirmation must name the hold: another revision, another incarnation or no hold is HAWSER_PRUNE_CONFIRM_STALE', () => {
    const hold = { code: ErrorCode.SyncPruneHeld, reason: 'r', since: 0, incarnation: 'i', revision: 7 };
    expect(() => staleConfirmation(hold, { incarnation: 'i', revision: 7 })).not.toThrow();
    for (const named of [{ incarnation: 'i', revision: 8 }, { incarnation: 'j', revision: 7 }]) {
      expect(() => staleConfirmation(hold, named)).toThrow(expect.objectContaining({ code: ErrorCode.PruneConfirmStale }));
    }
    expect(() => staleConfirmation(undefined, { incarnation: 'i', revision: 7 })).toThrow(expect.objectContaining({ code: ErrorCode.PruneConfirmStale }));
  });

  it('the request names incarnation and revision; anything else is HAWSER_INVALID_OPTION', () => {
    expect(parseConfirmPrune({ incarnation: 'i', revision: 3 })).toEqual({ incarnation: 'i', revision: 3 });
    for (const bad of [{}, { incarnation: 'i' }, { incarnation: '', revision: 3 }, { incarnation: 'i', revision: -1 }, { incarnation: 'i', revision: '3' }]) {
      expect(() => parseConfirmPrune(bad)).toThrow(expect.objectContaining({ code: ErrorCode.InvalidOption }));
    }
  });
});

describe('sync status (pure)', () => {
  const report = (objects: Array<[string, string]>, held?: { incarnation: string; revision: number }): wire.ApplyReport => ({
    revision: 5,
    objects: objects.map(([name, action]) => ({ key: { apiVersion: 'v1', kind: 'ConfigMap', namespace: 'default', name }, subscriptions: ['default/app'], action, exists: action !== 'deleted', errorCode: '', errorMessage: '', observedStatusJson: '' })),
    pruneHeldReason: held ? 'held' : '',
    pruneHeldIncarnation: held?.incarnation ?? '',
    pruneHeldRevision: held?.revision ?? 0,
    pruneRan: false,
    appliedAtUnixMs: 0,
    objectsOmitted: 0,
  });
  it('a Push delta result merges into the rows (deleted rows go); a full report replaces them', () => {
    const first = syncStatusAfter(undefined, 'edge', report([['a', 'applied'], ['b', 'applied']]), { syncMode: 'Push' });
    const merged = syncStatusAfter(first, 'edge', report([['b', 'deleted'], ['c', 'applied']]), { merge: true });
    expect(merged.objects?.map((o) => o.name)).toEqual(['a', 'c']);
    expect(merged.syncMode).toBe('Push');
    expect(syncStatusAfter(merged, 'edge', report([['d', 'applied']]), {}).objects?.map((o) => o.name)).toEqual(['d']);
  });
  it('a held prune carries the exact command that releases it', () => {
    const s = syncStatusAfter(undefined, 'edge', report([], { incarnation: 'inc-1', revision: 42 }), {});
    expect(s.pruneHeld).toMatchObject({ incarnation: 'inc-1', revision: 42, command: 'hawser sync confirm-prune edge --incarnation inc-1 --revision 42' });
  });
});

describe('Push mode', () => {
  it('the hub pushes, the agent applies each push and reports it; its cache holds nothing of the desired set', async () => {
    const h = await hub();
    const home = await agentHome();
    const applier = new PushApplier();
    const a = await agent(h, home, 'Push', applier);
    const ns = await clusterNamespace(h);
    await put(h.store, ns, 'cm-0');
    const rv = await put(h.store, ns, 'cm-1');
    const status = await waitFor('both reported applied', async () => {
      const s = await readSyncStatus(h.store, ns, 'edge');
      return (s?.objects?.length ?? 0) === 2 && (s?.push?.revision ?? 0) >= rv ? s : undefined;
    });
    expect(status.syncMode).toBe('Push');
    expect(status.objects?.every((o) => o.action === 'applied')).toBe(true);
    expect(applier.applied().sort()).toEqual(['cm-0', 'cm-1']);
    // The check can fail: a caching agent writes sync/obj/ keys (see the digest test below).
    expect(await cacheKeys(a.cache)).toEqual([]);
  });

  it('after a reconnect the hub re-pushes only what was not applied, from its own record, and deletes by name', async () => {
    const h = await hub();
    const home = await agentHome();
    const applier = new PushApplier();
    const a1 = await agent(h, home, 'Push', applier);
    const ns = await clusterNamespace(h);
    await put(h.store, ns, 'cm-0');
    const rv = await put(h.store, ns, 'cm-1');
    await waitFor('applied', async () => ((await readSyncStatus(h.store, ns, 'edge'))?.push?.revision ?? 0) >= rv);
    await a1.stop();
    // While it is away: one change, one delete. The agent's own state says nothing the hub uses.
    await put(h.store, ns, 'cm-0', 'v2');
    const deleted = Number(await h.store.delete('Manifest', { namespace: ns, name: 'cm-1' }));
    const again = new PushApplier();
    await agent(h, home, 'Push', again);
    await waitFor('re-pushed', async () => ((await readSyncStatus(h.store, ns, 'edge'))?.push?.revision ?? 0) >= deleted);
    expect(again.applied()).toEqual(['cm-0']);
    expect(again.removed).toEqual(['cm-1']);
    expect(h.stats.of('edge').snapshots).toBe(1);
    const rows = (await readSyncStatus(h.store, ns, 'edge'))?.objects ?? [];
    expect(rows.map((o) => o.name)).toEqual(['cm-0']);
  });

  it('a push that failed is not recorded as applied: the next session pushes it again', async () => {
    const h = await hub();
    const home = await agentHome();
    const applier = new PushApplier();
    applier.failing.add('cm-0');
    const a1 = await agent(h, home, 'Push', applier);
    const ns = await clusterNamespace(h);
    // The first (empty) snapshot is applied and recorded; cm-0 then comes as a push of its own.
    await waitFor('the first snapshot recorded', async () => (await readSyncStatus(h.store, ns, 'edge'))?.push);
    const rv = await put(h.store, ns, 'cm-0');
    await waitFor('the failure reported', async () => (await readSyncStatus(h.store, ns, 'edge'))?.objects?.some((o) => o.error?.code === ErrorCode.Unavailable));
    expect((await readSyncStatus(h.store, ns, 'edge'))?.push?.revision).toBeLessThan(rv);
    await a1.stop();
    const again = new PushApplier();
    await agent(h, home, 'Push', again);
    await waitFor('applied on the next session', async () => ((await readSyncStatus(h.store, ns, 'edge'))?.push?.revision ?? 0) >= rv);
    expect(again.applied()).toEqual(['cm-0']);
  });

  it('a snapshot from another incarnation applies without prune; confirm-prune names the hold, a stale one is refused, then a snapshot prunes', async () => {
    const h = await hub();
    const home = await agentHome();
    // The agent followed another hub before (its sync state says so).
    const pre = await OfflineCache.open({ dir: join(home, 'db') });
    await writeSyncState(pre, { hubIncarnation: 'an-older-hub', lastAckedRevision: 3 });
    await pre.close();
    const applier = new PushApplier();
    const a = await agent(h, home, 'Push', applier);
    const ns = await clusterNamespace(h);
    await put(h.store, ns, 'cm-0');
    const held = await waitFor('held', async () => (await readSyncStatus(h.store, ns, 'edge'))?.pruneHeld);
    expect(applier.inputs.every((i) => !i.allowPrune)).toBe(true);
    const uid = (await h.store.info()).uid;
    expect(held.incarnation).toBe(uid);
    await expect(confirmPrune(h.store, h.sessions, 'edge', { incarnation: uid, revision: held.revision + 1 }, 'ops')).rejects.toMatchObject({ code: ErrorCode.PruneConfirmStale });
    expect(await a.push!.hold()).toBeDefined();
    const result = await confirmPrune(h.store, h.sessions, 'edge', { incarnation: held.incarnation, revision: held.revision }, 'ops');
    expect(result.next).toContain('snapshot');
    await waitFor('pruned against a new snapshot', () => applier.inputs.some((i) => i.allowPrune));
    expect(await a.push!.hold()).toBeUndefined();
    await waitFor('status shows no hold', async () => (await readSyncStatus(h.store, ns, 'edge'))?.pruneHeld === undefined);
    expect(h.stats.of('edge').snapshots).toBe(2);
  });
});

describe('Dual mode (AppPusher)', () => {
  it('the hub drives each apply (the ack carries its result) and the agent also keeps the set in its cache', async () => {
    const h = await hub();
    const home = await agentHome();
    // No ApplyReport frames: what status shows can only come from the acks.
    const a = await agent(h, home, 'Dual', new PushApplier(), { applyReports: false });
    const ns = await clusterNamespace(h);
    await put(h.store, ns, 'cm-0');
    const status = await waitFor('the result in the ack', async () => {
      const s = await readSyncStatus(h.store, ns, 'edge');
      return s?.objects?.length === 1 ? s : undefined;
    });
    expect(status.syncMode).toBe('Dual');
    expect(status.push).toBeUndefined();
    expect((await cacheKeys(a.cache)).filter((k) => k.startsWith('sync/obj/'))).toHaveLength(1);
  });

  it('Pull acks without a result: with no ApplyReport frames, status gets no rows', async () => {
    const h = await hub();
    const home = await agentHome();
    const a = await agent(h, home, 'Pull', new PushApplier(), { applyReports: false });
    const ns = await clusterNamespace(h);
    const rv = await put(h.store, ns, 'cm-0');
    await waitFor('acked', async () => (await readSyncState(a.cache, silentLogger)).lastAckedRevision >= rv);
    expect((await readSyncStatus(h.store, ns, 'edge'))?.objects).toBeUndefined();
  });
});

describe('Pull: digest in hello and confirm-prune', () => {
  it('a cache altered behind the agent (same revision) makes the hub send a snapshot (digest-mismatch) that converges', async () => {
    const h = await hub();
    const home = await agentHome();
    const a1 = await agent(h, home, 'Pull', new PushApplier());
    const ns = await clusterNamespace(h);
    await put(h.store, ns, 'cm-0');
    const rv = await put(h.store, ns, 'cm-1');
    await waitFor('acked', async () => (await readSyncState(a1.cache, silentLogger)).lastAckedRevision >= rv);
    expect(await cacheKeys(a1.cache)).toHaveLength(2);
    await a1.stop();
    // Someone edits the cache: one object's content changes, nothing else.
    const cache = await OfflineCache.open({ dir: join(home, 'db') });
    const [key, stored] = (await cache.entries<{ object: KubeObject }>('sync/obj/')).find(([k]) => k.endsWith('/cm-1'))!;
    await cache.put(key, { ...stored, object: { ...stored.object, data: { value: 'tampered' } } });
    await cache.close();
    const a2 = await agent(h, home, 'Pull', new PushApplier());
    await waitFor('converged', async () => (await a2.receiver!.desired()).objects.find((o) => o.object.metadata.name === 'cm-1')?.object['data']);
    await waitFor('converged to the hub', async () => (await a2.receiver!.desired()).objects.every((o) => (o.object['data'] as { value: string }).value === 'v1'));
    expect(h.stats.of('edge').snapshots).toBe(2);
    expect((await h.metrics.registry.getSingleMetricAsString('hawser_hub_sync_snapshots_total'))).toContain('reason="digest-mismatch"');
  });

  it('an unchanged cache resumes with deltas (the digest matches)', async () => {
    const h = await hub();
    const home = await agentHome();
    const a1 = await agent(h, home, 'Pull', new PushApplier());
    const ns = await clusterNamespace(h);
    const rv = await put(h.store, ns, 'cm-0');
    await waitFor('acked', async () => (await readSyncState(a1.cache, silentLogger)).lastAckedRevision >= rv);
    await a1.stop();
    await agent(h, home, 'Pull', new PushApplier());
    await waitFor('reconnected', async () => h.core.session('edge') !== undefined && h.sessions.get('edge') !== undefined);
    const rv2 = await put(h.store, ns, 'cm-1');
    await waitFor('the delta arrived', async () => ((await readSyncStatus(h.store, ns, 'edge'))?.revision ?? 0) >= rv2);
    expect(h.stats.of('edge').snapshots).toBe(1);
  });

  it('confirm-prune reaches a Pull agent: a stale confirmation changes nothing, the named one releases the hold', async () => {
    const h = await hub();
    const home = await agentHome();
    const a1 = await agent(h, home, 'Pull', new PushApplier());
    const ns = await clusterNamespace(h);
    await put(h.store, ns, 'cm-0');
    const rv = await put(h.store, ns, 'cm-1');
    await waitFor('acked', async () => (await readSyncState(a1.cache, silentLogger)).lastAckedRevision >= rv);
    await a1.stop();
    await h.store.delete('Manifest', { namespace: ns, name: 'cm-1' });
    const pre = await OfflineCache.open({ dir: join(home, 'db') });
    await writeSyncState(pre, { hubIncarnation: 'an-older-hub', lastAckedRevision: rv });
    await pre.close();
    const a2 = await agent(h, home, 'Pull', new PushApplier());
    const held = await waitFor('hold reported', async () => (await readSyncStatus(h.store, ns, 'edge'))?.pruneHeld);
    await expect(confirmPrune(h.store, h.sessions, 'edge', { incarnation: 'an-older-hub', revision: held.revision }, 'ops')).rejects.toMatchObject({ code: ErrorCode.PruneConfirmStale });
    expect((await a2.receiver!.desired()).allowPrune).toBe(false);
    await expect(confirmPrune(h.store, h.sessions, 'nobody', { incarnation: held.incarnation, revision: held.revision }, 'ops')).rejects.toMatchObject({ code: ErrorCode.NotFound });
    await confirmPrune(h.store, h.sessions, 'edge', { incarnation: held.incarnation, revision: held.revision }, 'ops');
    await waitFor('released', async () => (await a2.receiver!.desired()).allowPrune);
    expect((await a2.receiver!.desired()).objects.map((o) => o.object.metadata.name)).toEqual(['cm-0']);
    await waitFor('status shows no hold', async () => (await readSyncStatus(h.store, ns, 'edge'))?.pruneHeld === undefined);
    // Nothing held any more: a confirmation now is stale.
    await expect(confirmPrune(h.store, h.sessions, 'edge', { incarnation: held.incarnation, revision: held.revision }, 'ops')).rejects.toMatchObject({ code: ErrorCode.PruneConfirmStale });
  });

  it('an agent away from the hub cannot be reached: HAWSER_CLUSTER_OFFLINE', async () => {
    const h = await hub();
    const home = await agentHome();
    const pre = await OfflineCache.open({ dir: join(home, 'db') });
    await writeSyncState(pre, { hubIncarnation: 'an-older-hub', lastAckedRevision: 1 });
    await pre.close();
    const a = await agent(h, home, 'Push', new PushApplier());
    const ns = await clusterNamespace(h);
    await put(h.store, ns, 'cm-0');
    const held = await waitFor('held', async () => (await readSyncStatus(h.store, ns, 'edge'))?.pruneHeld);
    await a.stop();
    await waitFor('session gone', () => h.sessions.get('edge') === undefined);
    await expect(confirmPrune(h.store, h.sessions, 'edge', { incarnation: held.incarnation, revision: held.revision }, 'ops')).rejects.toMatchObject({ code: ErrorCode.ClusterOffline });
  });
});

describe('Push receiver refuses what breaks the protocol', () => {
  async function handler() {
    const home = await agentHome();
    const cache = await OfflineCache.open({ dir: join(home, 'db') });
    cleanups.push(() => cache.close());
    const sent: wire.ConnectRequest[] = [];
    const applier = new PushApplier();
    const receiver = new PushReceiver(cache, applier, silentLogger, () => 0);
    const h = receiver.handlerFactory()({
      clusterName: 'edge',
      negotiated: { protocolVersion: 1, features: new Set([Feature.Sync]) },
      send: (frame) => Promise.resolve(void sent.push(frame)),
      ended: new AbortController().signal,
    });
    return { h, sent, receiver, cache, applier };
  }

  it('a partial SyncEnd outside a snapshot, or objects before any SyncBegin: HAWSER_SYNC_PROTOCOL, nothing applied', async () => {
    const { h, applier } = await handler();
    await expect(Promise.resolve().then(() => h.handle({ $case: 'syncEnd', value: { revision: 1, sequence: 1, partial: false } }))).rejects.toMatchObject({ code: ErrorCode.SyncProtocol });
    await h.handle({ $case: 'syncBegin', value: { incarnation: 'i', fromRevision: 3, snapshot: false, toRevision: 5, reason: '' } });
    await expect(Promise.resolve().then(() => h.handle({ $case: 'syncEnd', value: { revision: 5, sequence: 1, partial: true } }))).rejects.toMatchObject({ code: ErrorCode.SyncProtocol });
    expect(applier.inputs).toEqual([]);
  });

  it('a stale ConfirmPrune frame is logged and changes nothing; the named one clears the hold', async () => {
    const { h, receiver, cache } = await handler();
    await writeSyncState(cache, { hubIncarnation: 'old', lastAckedRevision: 2 });
    await h.handle({ $case: 'syncBegin', value: { incarnation: 'new', fromRevision: 0, snapshot: true, toRevision: 9, reason: 'other-incarnation' } });
    await h.handle({ $case: 'syncEnd', value: { revision: 9, sequence: 1, partial: false } });
    expect(await receiver.hold()).toMatchObject({ incarnation: 'new', revision: 9 });
    await h.handle({ $case: 'confirmPrune', value: { incarnation: 'new', revision: 8, confirmedBy: 'ops' } });
    expect(await receiver.hold()).toBeDefined();
    await h.handle({ $case: 'confirmPrune', value: { incarnation: 'new', revision: 9, confirmedBy: 'ops' } });
    expect(await receiver.hold()).toBeUndefined();
  });
});
